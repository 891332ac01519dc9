//! `newsrec bench scale --clicks N`: the daily cycle on a synthetic news lake of N clicks, cold
//! (no rollups) then warm (the next day, the earlier days' rollups present), each `newsrec
//! train` in a child process of its own so its peak memory is its own; then the warm run's
//! lists published into an embedded store.
//!
//! The lake is generated once per size and seed and cached under `<data-dir>/bench-scale/`:
//! ten days of clicks with the shape of a news site (new articles every hour with lives of a
//! few hours, power-law appeal, sessions of 1 to 10 clicks, skewed reader activity, N/20
//! readers, a day/night cycle). Day 8 is trained cold (window days 1–7, backtest window days
//! 0–6, the rollups of days 0–8), then day 9 warm (window days 2–8): the warm run summarises
//! the one new day (day 9, its test day) and reuses the rest, as a daily run does. There is no peer: no other tool trains these models; the figures are
//! newsrec's own against the targets of `docs/scale.md`.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    time::Instant,
};

use chrono::NaiveDate;
use newsrec_event::ClickEvent;
use newsrec_lake::{Lake, ObjectPath, RunManifest};
use rand::{Rng, SeedableRng, rngs::SmallRng};
use rand_distr::{Distribution, Exp, Pareto, weighted::WeightedIndex};
use serde::{Deserialize, Serialize};

use crate::{BenchError, Format, Report};

#[derive(Debug, clap::Args)]
pub struct ScaleBenchArgs {
    /// Clicks in the generated lake (ten days; a 7-day window holds about 7/10 of them)
    #[arg(long, default_value_t = 20_000_000)]
    pub clicks: u64,
    /// Seed of the generated lake
    #[arg(long, default_value_t = 11)]
    pub seed: u64,
    /// Runs of the cold/warm cycle; medians are reported
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Folder the lakes are generated and cached in (default: <data-dir>/bench-scale)
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

const DAYS: u32 = 10;
const FIRST_DAY: (i32, u32, u32) = (2026, 3, 1);
const HOUR_MS: i64 = 3_600_000;
/// Relative traffic by hour of day (UTC).
const DIURNAL: [f64; 24] = [
    0.2, 0.1, 0.1, 0.1, 0.1, 0.2, 0.5, 0.9, 1.2, 1.2, 1.1, 1.0, 1.1, 1.0, 0.9, 0.9, 1.0, 1.1, 1.3,
    1.4, 1.3, 1.0, 0.7, 0.4,
];

/// What a cached lake was generated with; a lake whose record differs is generated again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Generated {
    generator: u32,
    clicks: u64,
    days: u32,
    seed: u64,
    written: u64,
    lake_bytes: u64,
}

/// One cold/warm cycle.
#[derive(Debug, Clone, Serialize)]
struct Cycle {
    cold_s: f64,
    warm_s: f64,
    window_clicks: u64,
    cold_peak_rss_mib: f64,
    warm_peak_rss_mib: f64,
    /// The warm run's stages, seconds: rollups, fit (backtest included), eval, write.
    warm_stages_s: [f64; 4],
    cold_stages_s: [f64; 4],
    rollup_bytes: u64,
    readers: u64,
    publish_users_per_s: f64,
    publish_bytes_per_user: f64,
}

/// The report: `clicks`, `cold_s`, `warm_s`, `clicks_per_s` (window clicks / warm wall),
/// `peak_rss_mib` (the larger of the two runs), and the rest.
#[derive(Debug, Clone, Serialize)]
struct ScaleReport {
    clicks: u64,
    window_clicks: u64,
    readers: u64,
    cold_s: f64,
    warm_s: f64,
    clicks_per_s: f64,
    cold_clicks_per_s: f64,
    peak_rss_mib: f64,
    lake_bytes: u64,
    rollup_bytes: u64,
    generate_s: Option<f64>,
    runs: usize,
    cycles: Vec<Cycle>,
    publish_users_per_s: f64,
    publish_bytes_per_user: f64,
    cores: usize,
}

pub async fn run(data_dir: &Path, args: ScaleBenchArgs) -> Result<Report, BenchError> {
    if args.clicks < 10_000 {
        return Err(BenchError::Unexpected(format!(
            "--clicks {} is too small to shape ten days of news; give at least 10000",
            args.clicks
        )));
    }
    let root = args
        .dir
        .clone()
        .unwrap_or_else(|| data_dir.join("bench-scale"))
        .join(format!("clicks-{}-seed-{}", args.clicks, args.seed));
    let lake_dir = root.join("lake");
    let (generated, generate_s) = ensure_lake(&lake_dir, &root, &args).await?;
    let lake = Lake::open(lake_dir.to_str().unwrap_or_default())?;
    let mut cycles = Vec::new();
    for run in 0..args.runs.max(1) {
        eprintln!("bench scale: cycle {} of {}", run + 1, args.runs.max(1));
        cycles.push(cycle(&lake, &root).await?);
    }
    let pick = |field: fn(&Cycle) -> f64| {
        let mut values: Vec<f64> = cycles.iter().map(field).collect();
        crate::median(&mut values, f64::NAN)
    };
    let cold_s = pick(|c| c.cold_s);
    let warm_s = pick(|c| c.warm_s);
    let peak = pick(|c| c.cold_peak_rss_mib.max(c.warm_peak_rss_mib));
    let publish_users_per_s = pick(|c| c.publish_users_per_s);
    let publish_bytes_per_user = pick(|c| c.publish_bytes_per_user);
    let last = cycles
        .last()
        .cloned()
        .ok_or_else(|| BenchError::Unexpected("no cycle".into()))?;
    let report = ScaleReport {
        clicks: generated.written,
        window_clicks: last.window_clicks,
        readers: last.readers,
        cold_s,
        warm_s,
        clicks_per_s: last.window_clicks as f64 / warm_s,
        cold_clicks_per_s: last.window_clicks as f64 / cold_s,
        peak_rss_mib: peak,
        lake_bytes: generated.lake_bytes,
        rollup_bytes: last.rollup_bytes,
        generate_s,
        runs: cycles.len(),
        cycles,
        publish_users_per_s,
        publish_bytes_per_user,
        cores: std::thread::available_parallelism().map_or(1, usize::from),
    };
    Report::of(args.format, &report, render)
}

fn render(report: &ScaleReport) -> (Vec<Vec<String>>, Vec<String>) {
    let stages = |s: [f64; 4]| format!("{:.1} / {:.1} / {:.1} / {:.1}", s[0], s[1], s[2], s[3]);
    let last = report.cycles.last();
    let rows = vec![
        vec![
            "run".into(),
            "wall s".into(),
            "window clicks/s".into(),
            "peak RSS MiB".into(),
            "rollups / fit / eval / write s".into(),
        ],
        vec![
            "cold (no rollups)".into(),
            format!("{:.1}", report.cold_s),
            format!("{:.0}", report.cold_clicks_per_s),
            format!("{:.0}", last.map_or(0.0, |c| c.cold_peak_rss_mib)),
            last.map_or(String::new(), |c| stages(c.cold_stages_s)),
        ],
        vec![
            "warm (next day)".into(),
            format!("{:.1}", report.warm_s),
            format!("{:.0}", report.clicks_per_s),
            format!("{:.0}", last.map_or(0.0, |c| c.warm_peak_rss_mib)),
            last.map_or(String::new(), |c| stages(c.warm_stages_s)),
        ],
    ];
    let notes = vec![
        format!(
            "lake: {} clicks over {DAYS} days, {} in the warm window, {} readers; {:.1} MiB of events, {:.1} MiB of rollups",
            report.clicks,
            report.window_clicks,
            report.readers,
            report.lake_bytes as f64 / 1048576.0,
            report.rollup_bytes as f64 / 1048576.0
        ),
        format!(
            "publish (embedded store): {:.0} users/s, {:.0} bytes per user",
            report.publish_users_per_s, report.publish_bytes_per_user
        ),
        format!(
            "medians of {} cycle(s) on {} cores; each run is `newsrec train` in a child process with the default config",
            report.runs, report.cores
        ),
    ];
    (rows, notes)
}

fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(FIRST_DAY.0, FIRST_DAY.1, FIRST_DAY.2).unwrap_or_default()
}

/// The cached lake of `args`, generated when missing or generated with other parameters.
async fn ensure_lake(
    lake_dir: &Path,
    root: &Path,
    args: &ScaleBenchArgs,
) -> Result<(Generated, Option<f64>), BenchError> {
    let record_path = root.join("generated.json");
    let wanted = |written, lake_bytes| Generated {
        generator: 2,
        clicks: args.clicks,
        days: DAYS,
        seed: args.seed,
        written,
        lake_bytes,
    };
    if let Ok(text) = std::fs::read_to_string(&record_path)
        && let Ok(found) = serde_json::from_str::<Generated>(&text)
        && found == wanted(found.written, found.lake_bytes)
    {
        eprintln!("bench scale: reusing the lake in {}", lake_dir.display());
        return Ok((found, None));
    }
    if lake_dir.exists() {
        std::fs::remove_dir_all(lake_dir)
            .map_err(BenchError::io(format!("clearing {}", lake_dir.display())))?;
    }
    std::fs::create_dir_all(root)
        .map_err(BenchError::io(format!("creating {}", root.display())))?;
    let lake = Lake::open(lake_dir.to_str().unwrap_or_default())?;
    let started = Instant::now();
    let (written, lake_bytes) = generate(&lake, args).await?;
    let generate_s = started.elapsed().as_secs_f64();
    let generated = wanted(written, lake_bytes);
    std::fs::write(&record_path, serde_json::to_vec_pretty(&generated)?)
        .map_err(BenchError::io(format!("writing {}", record_path.display())))?;
    Ok((generated, Some(generate_s)))
}

/// An article of the generated catalogue.
struct Article {
    id: String,
    published_ms: i64,
    appeal: f64,
}

/// Writes `args.clicks` clicks over ten days, one object per hour; returns the clicks and
/// bytes written.
async fn generate(lake: &Lake, args: &ScaleBenchArgs) -> Result<(u64, u64), BenchError> {
    let mut rng = SmallRng::seed_from_u64(args.seed);
    let readers = (args.clicks / 20).max(100);
    let hours = DAYS as usize * 24;
    let weight_sum: f64 = (0..hours).map(|h| DIURNAL[h % 24]).sum();
    let start_ms = first_day()
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp_millis())
        .unwrap_or_default();
    // About 125 new articles an hour (3,000 a day), appeal heavy-tailed, lives of a few hours.
    let appeal = Pareto::new(1.0, 1.2).map_err(|e| BenchError::Unexpected(e.to_string()))?;
    let gap = Exp::new(1.0 / 90_000.0).map_err(|e| BenchError::Unexpected(e.to_string()))?;
    let mut catalogue: Vec<Article> = Vec::new();
    let (mut written, mut bytes) = (0u64, 0u64);
    let mut progress_at = Instant::now();
    for hour in 0..hours {
        let hour_start = start_ms + hour as i64 * HOUR_MS;
        for n in 0..125 {
            catalogue.push(Article {
                id: format!("a{hour:03}-{n:03}"),
                published_ms: hour_start + rng.random_range(0..HOUR_MS),
                appeal: appeal.sample(&mut rng),
            });
        }
        // Articles older than two days no longer draw clicks.
        catalogue.retain(|a| hour_start - a.published_ms < 48 * HOUR_MS);
        let live: Vec<&Article> = catalogue
            .iter()
            .filter(|a| a.published_ms < hour_start + HOUR_MS)
            .collect();
        let weights: Vec<f64> = live
            .iter()
            .map(|a| {
                let age_h =
                    ((hour_start + HOUR_MS / 2 - a.published_ms).max(0)) as f64 / HOUR_MS as f64;
                a.appeal * 0.5f64.powf(age_h / 4.0)
            })
            .collect();
        let pick =
            WeightedIndex::new(&weights).map_err(|e| BenchError::Unexpected(e.to_string()))?;
        let target = (args.clicks as f64 * DIURNAL[hour % 24] / weight_sum).round() as u64;
        let mut events = Vec::with_capacity(target as usize + 16);
        let mut made = 0u64;
        while made < target {
            // Skewed activity: a few readers read a lot.
            let reader = (readers as f64 * rng.random::<f64>().powi(3)) as u64;
            let session = format!("s{hour}-{}", rng.random::<u32>());
            let length = 1 + (rng.random::<f64>().powi(2) * 10.0) as u64;
            let mut ts = hour_start + rng.random_range(0..HOUR_MS);
            for _ in 0..length.min(target - made) {
                let article = live[pick.sample(&mut rng)];
                let ts_clamped = ts.max(article.published_ms);
                let mut event = ClickEvent::click(&format!("r{reader}"), &article.id, ts_clamped)
                    .map_err(|e| BenchError::Unexpected(e.to_string()))?;
                event.session_id = Some(session.clone());
                event.event_id = newsrec_event::derive_event_id(
                    &event.user_id,
                    &event.article_id,
                    event.ts_ms,
                    event.event_type,
                    event.session_id.as_deref(),
                );
                events.push(event);
                made += 1;
                ts += gap.sample(&mut rng) as i64;
            }
        }
        written += events.len() as u64;
        let objects = lake
            .write_events("bench-scale", hour as u64, &[Arc::new(events)])
            .await?;
        bytes += objects.iter().map(|o| o.bytes as u64).sum::<u64>();
        if progress_at.elapsed().as_secs() >= 10 {
            eprintln!(
                "bench scale: generated {written} clicks ({} of {hours} hours)",
                hour + 1
            );
            progress_at = Instant::now();
        }
    }
    Ok((written, bytes))
}

/// One cold run (rollups and runs deleted first) and one warm run the next day, then the
/// warm run published.
async fn cycle(lake: &Lake, root: &Path) -> Result<Cycle, BenchError> {
    for prefix in ["rollups", "runs", "checkpoints"] {
        for path in lake.list_objects(&ObjectPath::from(prefix)).await? {
            lake.delete_object(&path).await?;
        }
    }
    let cold_day = first_day() + chrono::Days::new(8);
    let (cold_s, cold) = train(root, cold_day, "cold").await?;
    let (warm_s, warm) = train(root, cold_day + chrono::Days::new(1), "warm").await?;
    let stages = |m: &RunManifest| {
        let t = &m.timings;
        [t.read_ms, t.fit_ms, t.eval_ms, t.write_ms].map(|ms| ms as f64 / 1000.0)
    };
    let rss = |m: &RunManifest| m.execution.peak_rss_bytes.unwrap_or(0) as f64 / 1048576.0;
    let (publish_users_per_s, publish_bytes_per_user) = publish(lake, root, "warm").await?;
    Ok(Cycle {
        cold_s,
        warm_s,
        window_clicks: warm.counts.clicks,
        cold_peak_rss_mib: rss(&cold),
        warm_peak_rss_mib: rss(&warm),
        warm_stages_s: stages(&warm),
        cold_stages_s: stages(&cold),
        rollup_bytes: warm.execution.rollups.as_ref().map_or(0, |r| r.bytes),
        readers: warm.counts.users,
        publish_users_per_s,
        publish_bytes_per_user,
    })
}

/// `newsrec train --date day` in a child process with the default config; its wall time and
/// manifest.
async fn train(
    root: &Path,
    day: NaiveDate,
    run_id: &str,
) -> Result<(f64, RunManifest), BenchError> {
    let exe = std::env::current_exe().map_err(BenchError::io("finding the newsrec binary"))?;
    let log = root.join(format!("{run_id}.log"));
    let log_file = std::fs::File::create(&log)
        .map_err(BenchError::io(format!("creating {}", log.display())))?;
    eprintln!(
        "bench scale: training {day} ({run_id}), log in {}",
        log.display()
    );
    let started = Instant::now();
    let status = tokio::task::spawn_blocking({
        let root = root.to_path_buf();
        let day = day.to_string();
        let run_id = run_id.to_owned();
        move || {
            Command::new(exe)
                .arg("--data-dir")
                .arg(&root)
                .args(["train", "--date", &day, "--run-id", &run_id])
                .env_remove("NEWSREC_CONFIG")
                .env("NEWSREC_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log_file)
                .status()
        }
    })
    .await
    .map_err(|e| BenchError::Unexpected(e.to_string()))?
    .map_err(BenchError::io("running newsrec train"))?;
    let wall = started.elapsed().as_secs_f64();
    if !status.success() {
        return Err(BenchError::Unexpected(format!(
            "newsrec train --date {day} failed ({status}); see {}",
            log.display()
        )));
    }
    let lake = Lake::open(root.join("lake").to_str().unwrap_or_default())?;
    let manifest = lake.read_manifest(run_id).await?;
    Ok((wall, manifest))
}

/// Publishes `run_id` into a fresh embedded store; users per second and store bytes per user.
async fn publish(lake: &Lake, root: &Path, run_id: &str) -> Result<(f64, f64), BenchError> {
    let dir = root.join("kv");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(BenchError::io(format!("clearing {}", dir.display())))?;
    }
    let store = newsrec_kv_open::open(
        "",
        &newsrec_kv_open::OpenOptions {
            embedded_dir: &dir,
            serving: false,
        },
    )
    .await
    .map_err(|e| BenchError::Unexpected(format!("opening the embedded store: {e}")))?;
    // The default publish settings, the gate off: there is no served run to compare with.
    let mut options = newsrec_publish::Settings::default().options(true);
    options.gate = newsrec_publish::GateMode::Off;
    let report = newsrec_publish::publish_run(lake, store.as_ref(), run_id, options, &|_| {})
        .await
        .map_err(|e| BenchError::Unexpected(format!("publishing {run_id}: {e}")))?;
    drop(store);
    let bytes = folder_bytes(&dir);
    Ok((
        report.users_per_sec(),
        bytes as f64 / (report.users.max(1)) as f64,
    ))
}

fn folder_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| {
                    let path = entry.path();
                    if path.is_dir() {
                        folder_bytes(&path)
                    } else {
                        entry.metadata().map_or(0, |m| m.len())
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}
