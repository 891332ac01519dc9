//! `newsrec bench ingest`: durable, acknowledged ingest of a `newsrec up` node against NATS
//! JetStream (file storage), same events, same machine, same run.
//!
//! This process is the load generator; the node and the peer are child processes, so the node's
//! peak RSS (VmHWM) is its own. The steady profile drives each system with N keep-alive
//! connections in a closed loop; the spike profile drives the node open-loop at a base rate, then
//! a multiple of it, then the base again, and reports 429s, p99 and RSS per window.

mod bodies;
mod load;
mod processes;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use newsrec_lake::{EventCount, Lake};
use serde::Serialize;

use self::{
    bodies::BodyTemplate,
    load::{Outcome, Phase, Sample, Summary, Target},
    processes::Server,
};
use crate::{BenchError, Format, Report, median};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// Closed loop for --duration, then the same against the peer
    Steady,
    /// Open loop: base rate, --spike-factor × base, base again (node only)
    Spike,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PeerSync {
    /// `sync_interval: always`: JetStream fsyncs every write before it acks (comparable to ack=wal)
    Always,
    /// The server's default periodic sync (acks before fsync; weaker than ack=wal)
    Interval,
}

#[derive(Debug, clap::Args)]
pub struct IngestBenchArgs {
    #[arg(long, value_enum, default_value_t = Profile::Steady)]
    pub profile: Profile,
    /// Length of each steady run
    #[arg(long, default_value = "60", value_name = "SECONDS")]
    pub duration: u64,
    /// Concurrent keep-alive connections (steady profile, both sides)
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Events per request
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Steady runs per side; medians are reported
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Node ack mode: wal, lake or none
    #[arg(long, default_value = "wal")]
    pub ack: String,
    /// Spike profile: base rate in events/s
    #[arg(long, default_value_t = 20_000)]
    pub spike_base_rate: u64,
    /// Spike profile: the spike is this multiple of the base rate
    #[arg(long, default_value_t = 10)]
    pub spike_factor: u64,
    /// Spike profile: seconds at the base rate before and after the spike
    #[arg(long, default_value_t = 60)]
    pub spike_base_s: u64,
    /// Spike profile: seconds at the spike rate
    #[arg(long, default_value_t = 30)]
    pub spike_high_s: u64,
    /// Spike profile: report window
    #[arg(long, default_value_t = 10)]
    pub window_s: u64,
    /// The JetStream server binary for the peer (NATS ≥ 2.10 for --peer-sync always)
    #[arg(long, default_value = "nats-server")]
    pub nats_server: PathBuf,
    /// How the peer makes writes durable
    #[arg(long, value_enum, default_value_t = PeerSync::Always)]
    pub peer_sync: PeerSync,
    /// Measure the node only
    #[arg(long)]
    pub no_peer: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Serialize)]
struct SteadyReport {
    stage: &'static str,
    profile: &'static str,
    ack: String,
    duration_s: u64,
    connections: usize,
    batch: usize,
    event_bytes: f64,
    runs: usize,
    events_per_sec: f64,
    mb_per_sec: f64,
    p50_ack_ms: f64,
    p99_ack_ms: f64,
    max_ack_ms: f64,
    throttled: u64,
    failed: u64,
    acked_events: u64,
    lake_objects: u64,
    lake_events: u64,
    lake_mib: f64,
    peak_rss_mib: f64,
    peer: String,
    peer_events_per_sec: Option<f64>,
    peer_p50_ack_ms: Option<f64>,
    peer_p99_ack_ms: Option<f64>,
    peer_max_ack_ms: Option<f64>,
    peer_peak_rss_mib: Option<f64>,
    ratio: Option<f64>,
}

#[derive(Debug, Serialize)]
struct SpikeWindow {
    from_s: u64,
    offered_events_per_sec: f64,
    acked_events_per_sec: f64,
    throttled: u64,
    failed: u64,
    p99_ack_ms: f64,
    rss_mib: f64,
}

#[derive(Debug, Serialize)]
struct SpikeReport {
    stage: &'static str,
    profile: &'static str,
    ack: String,
    base_rate: u64,
    spike_rate: u64,
    throttled: u64,
    failed: u64,
    late_batches: u64,
    acked_events: u64,
    lake_events: u64,
    p99_ack_ms: f64,
    max_ack_ms: f64,
    peak_rss_mib: f64,
    windows: Vec<SpikeWindow>,
}

pub(crate) async fn run(args: IngestBenchArgs) -> Result<Report, BenchError> {
    if !(1..=500).contains(&args.batch) {
        return Err(BenchError::InvalidArgs(
            "--batch must be 1..=500 (the node's per-request limit)".into(),
        ));
    }
    if args.connections == 0 || args.runs == 0 {
        return Err(BenchError::InvalidArgs(
            "--connections and --runs must be > 0".into(),
        ));
    }
    match args.profile {
        Profile::Steady => steady(args).await,
        Profile::Spike => spike(args).await,
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn node_env(args: &IngestBenchArgs) -> Vec<(&'static str, String)> {
    vec![("NEWSREC_INGEST__ACK", args.ack.clone())]
}

/// Stops the node (it flushes on SIGTERM) and counts what reached its lake.
async fn stop_and_count(node: Server, dir: &Path) -> Result<EventCount, BenchError> {
    node.stop(Duration::from_secs(300))?;
    let lake = dir.join("lake");
    let lake = Lake::open(&lake.display().to_string())?;
    Ok(lake.count_events().await?)
}

/// Fails when fewer events reached the lake than the node acknowledged.
fn check_nothing_lost(lake: &EventCount, acked_events: u64) -> Result<(), BenchError> {
    if lake.events < acked_events {
        return Err(BenchError::AckedDataLost {
            lake_events: lake.events,
            acked_events,
        });
    }
    Ok(())
}

fn templates(connections: usize, batch: usize) -> Vec<Vec<BodyTemplate>> {
    let now = now_ms();
    (0..connections)
        .map(|c| {
            (0..4)
                .map(|v| BodyTemplate::render(c, v, batch, now))
                .collect()
        })
        .collect()
}

async fn steady(args: IngestBenchArgs) -> Result<Report, BenchError> {
    let scratch = tempfile::tempdir().map_err(BenchError::io("creating a scratch folder"))?;
    let duration = Duration::from_secs(args.duration);
    let sample_template = BodyTemplate::render(0, 0, args.batch, now_ms());
    let event_bytes = sample_template.len() as f64 / sample_template.events() as f64;
    let peer_name = if args.no_peer {
        "none".to_owned()
    } else {
        format!(
            "{}, JetStream file storage, {}",
            processes::nats_version(&args.nats_server),
            match args.peer_sync {
                PeerSync::Always => "sync_interval always",
                PeerSync::Interval => "default sync interval",
            }
        )
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let (mut lake, mut rss, mut peer_rss) = (EventCount::default(), Vec::new(), Vec::new());
    for run in 1..=args.runs {
        let dir = scratch.path().join(format!("node-{run}"));
        eprintln!(
            "run {run}/{}: newsrec (ack={}) for {} s with {} connections…",
            args.runs, args.ack, args.duration, args.connections
        );
        let node = processes::start_node(&dir, &node_env(&args))?;
        let target = Target::Newsrec {
            addr: node.addr.clone(),
        };
        let samples =
            load::closed_loop(&target, templates(args.connections, args.batch), duration).await?;
        rss.push(node.peak_rss_mib().unwrap_or(0.0));
        eprintln!("  stopping the node (final flush) and counting the lake…");
        lake = stop_and_count(node, &dir).await?;
        let summary = load::summarize(&samples, args.duration as f64);
        check_nothing_lost(&lake, summary.acked_events)?;
        ours.push(summary);
        std::fs::remove_dir_all(&dir).ok();

        if !args.no_peer {
            eprintln!(
                "run {run}/{}: NATS JetStream for {} s…",
                args.runs, args.duration
            );
            let dir = scratch.path().join(format!("nats-{run}"));
            let nats =
                processes::start_nats(&args.nats_server, &dir, args.peer_sync == PeerSync::Always)?;
            load::create_nats_stream(&nats.addr).await?;
            let target = Target::Nats {
                addr: nats.addr.clone(),
            };
            let samples =
                load::closed_loop(&target, templates(args.connections, args.batch), duration)
                    .await?;
            peer_rss.push(nats.peak_rss_mib().unwrap_or(0.0));
            nats.stop(Duration::from_secs(60))?;
            theirs.push(load::summarize(&samples, args.duration as f64));
            std::fs::remove_dir_all(&dir).ok();
        }
    }
    let pick = |runs: &[Summary], f: fn(&Summary) -> f64| {
        median(&mut runs.iter().map(f).collect::<Vec<_>>(), 0.0)
    };
    let events_per_sec = pick(&ours, |s| s.events_per_sec);
    let peer_events_per_sec = (!theirs.is_empty()).then(|| pick(&theirs, |s| s.events_per_sec));
    let report = SteadyReport {
        stage: "ingest",
        profile: "steady",
        ack: args.ack.clone(),
        duration_s: args.duration,
        connections: args.connections,
        batch: args.batch,
        event_bytes,
        runs: args.runs,
        events_per_sec,
        mb_per_sec: pick(&ours, |s| s.mb_per_sec),
        p50_ack_ms: pick(&ours, |s| s.p50_ack_ms),
        p99_ack_ms: pick(&ours, |s| s.p99_ack_ms),
        max_ack_ms: pick(&ours, |s| s.max_ack_ms),
        throttled: ours.iter().map(|s| s.throttled).sum(),
        failed: ours.iter().map(|s| s.failed).sum(),
        acked_events: ours.last().map_or(0, |s| s.acked_events),
        lake_objects: lake.objects,
        lake_events: lake.events,
        lake_mib: lake.bytes as f64 / (1 << 20) as f64,
        peak_rss_mib: median(&mut rss, 0.0),
        peer: peer_name,
        peer_events_per_sec,
        peer_p50_ack_ms: (!theirs.is_empty()).then(|| pick(&theirs, |s| s.p50_ack_ms)),
        peer_p99_ack_ms: (!theirs.is_empty()).then(|| pick(&theirs, |s| s.p99_ack_ms)),
        peer_max_ack_ms: (!theirs.is_empty()).then(|| pick(&theirs, |s| s.max_ack_ms)),
        peer_peak_rss_mib: (!peer_rss.is_empty()).then(|| median(&mut peer_rss, 0.0)),
        ratio: peer_events_per_sec.map(|peer| events_per_sec / peer.max(1e-9)),
    };
    Report::of(args.format, &report, steady_table)
}

fn steady_table(report: &SteadyReport) -> (Vec<Vec<String>>, Vec<String>) {
    let ms = |value: f64| format!("{value:.2}");
    let opt = |value: Option<f64>, f: &dyn Fn(f64) -> String| value.map_or("-".into(), f);
    let rows = vec![
        [
            "",
            "events/s",
            "MB/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "peak RSS MiB",
        ]
        .map(String::from)
        .to_vec(),
        vec![
            format!("newsrec (ack={})", report.ack),
            format!("{:.0}", report.events_per_sec),
            format!("{:.1}", report.mb_per_sec),
            ms(report.p50_ack_ms),
            ms(report.p99_ack_ms),
            ms(report.max_ack_ms),
            format!("{:.0}", report.peak_rss_mib),
        ],
        vec![
            "NATS JetStream".into(),
            opt(report.peer_events_per_sec, &|v| format!("{v:.0}")),
            "-".into(),
            opt(report.peer_p50_ack_ms, &ms),
            opt(report.peer_p99_ack_ms, &ms),
            opt(report.peer_max_ack_ms, &ms),
            opt(report.peer_peak_rss_mib, &|v| format!("{v:.0}")),
        ],
    ];
    let mut notes = vec![
        format!(
            "{} connections x {}-event batches (~{:.0} B/event), {} s, median of {} run(s); peer: {}",
            report.connections,
            report.batch,
            report.event_bytes,
            report.duration_s,
            report.runs,
            report.peer
        ),
        format!(
            "lake (last run): {} objects, {} events, {:.1} MiB; acknowledged {}; 429/503: {}; failed: {}",
            report.lake_objects,
            report.lake_events,
            report.lake_mib,
            report.acked_events,
            report.throttled,
            report.failed
        ),
    ];
    if let Some(ratio) = report.ratio {
        notes.push(format!("ratio newsrec / peer (events/s): {ratio:.2}x"));
    }
    (rows, notes)
}

async fn spike(args: IngestBenchArgs) -> Result<Report, BenchError> {
    let scratch = tempfile::tempdir().map_err(BenchError::io("creating a scratch folder"))?;
    let dir = scratch.path().join("node");
    let node = processes::start_node(&dir, &node_env(&args))?;
    let spike_rate = args.spike_base_rate * args.spike_factor;
    let phases = [
        Phase {
            duration: Duration::from_secs(args.spike_base_s),
            events_per_sec: args.spike_base_rate,
        },
        Phase {
            duration: Duration::from_secs(args.spike_high_s),
            events_per_sec: spike_rate,
        },
        Phase {
            duration: Duration::from_secs(args.spike_base_s),
            events_per_sec: args.spike_base_rate,
        },
    ];
    eprintln!(
        "spike: {} events/s for {} s, {spike_rate} for {} s, {} for {} s…",
        args.spike_base_rate,
        args.spike_base_s,
        args.spike_high_s,
        args.spike_base_rate,
        args.spike_base_s
    );
    // RSS of the node, sampled each second while the load runs.
    let pid = node.pid();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sampler = tokio::spawn(async move {
        let mut series = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => series.push(processes::rss_mib_of(pid).unwrap_or(0.0)),
                _ = &mut stop_rx => return series,
            }
        }
    });
    let target = Target::Newsrec {
        addr: node.addr.clone(),
    };
    let batches: Vec<BodyTemplate> = templates(16, args.batch).into_iter().flatten().collect();
    let (samples, late) = load::open_loop(&target, batches, &phases, 256).await?;
    let _ = stop_tx.send(());
    let rss_series = sampler.await?;
    let peak = node.peak_rss_mib().unwrap_or(0.0);
    let lake = stop_and_count(node, &dir).await?;
    let total_s = phases.iter().map(|p| p.duration.as_secs()).sum::<u64>();
    let overall = load::summarize(&samples, total_s as f64);
    let window = args.window_s.max(1);
    let windows = (0..total_s.div_ceil(window))
        .map(|w| {
            let (from, to) = ((w * window) as f64, ((w + 1) * window) as f64);
            let in_window: Vec<Sample> = samples
                .iter()
                .filter(|s| s.sent_at_s >= from && s.sent_at_s < to)
                .copied()
                .collect();
            let summary = load::summarize(&in_window, window as f64);
            let offered: u64 = in_window.iter().map(|s| u64::from(s.events)).sum();
            let rss = rss_series
                .iter()
                .skip(w as usize * window as usize)
                .take(window as usize)
                .fold(0.0f64, |max, &v| max.max(v));
            SpikeWindow {
                from_s: w * window,
                offered_events_per_sec: offered as f64 / window as f64,
                acked_events_per_sec: summary.events_per_sec,
                throttled: summary.throttled,
                failed: summary.failed,
                p99_ack_ms: summary.p99_ack_ms,
                rss_mib: rss,
            }
        })
        .collect();
    let report = SpikeReport {
        stage: "ingest",
        profile: "spike",
        ack: args.ack.clone(),
        base_rate: args.spike_base_rate,
        spike_rate,
        throttled: overall.throttled,
        failed: overall.failed,
        late_batches: late,
        acked_events: overall.acked_events,
        lake_events: lake.events,
        p99_ack_ms: overall.p99_ack_ms,
        max_ack_ms: overall.max_ack_ms,
        peak_rss_mib: peak,
        windows,
    };
    check_nothing_lost(&lake, overall.acked_events)?;
    if samples.iter().any(|s| s.outcome == Outcome::Failed) {
        eprintln!("note: some requests failed outright (connection errors or unexpected statuses)");
    }
    Report::of(args.format, &report, spike_table)
}

fn spike_table(report: &SpikeReport) -> (Vec<Vec<String>>, Vec<String>) {
    let mut rows = vec![
        [
            "from s",
            "offered ev/s",
            "acked ev/s",
            "429/503",
            "failed",
            "p99 ms",
            "RSS MiB",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for w in &report.windows {
        rows.push(vec![
            w.from_s.to_string(),
            format!("{:.0}", w.offered_events_per_sec),
            format!("{:.0}", w.acked_events_per_sec),
            w.throttled.to_string(),
            w.failed.to_string(),
            format!("{:.2}", w.p99_ack_ms),
            format!("{:.0}", w.rss_mib),
        ]);
    }
    let overall = format!(
        "overall: acked {} events, lake {} events; 429/503 {}; failed {}; p99 {:.2} ms, max {:.2} ms; peak RSS {:.0} MiB; batches sent late (256 in flight) {}",
        report.acked_events,
        report.lake_events,
        report.throttled,
        report.failed,
        report.p99_ack_ms,
        report.max_ack_ms,
        report.peak_rss_mib,
        report.late_batches
    );
    (rows, vec![overall])
}
