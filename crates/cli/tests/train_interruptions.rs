//! The training job as spot capacity treats it, through the real binary: interrupted at random
//! points by SIGTERM and `kill -9`, stopped by a spot notice served on loopback, and run by the
//! `--spot` runner under a wall-clock budget. Every finished run must write the same bytes as an
//! uninterrupted one.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use newsrec_lake::{Lake, RunManifest, layout};
use newsrec_testkit::{SynthConfig, fill_lake};
use rand::{Rng, SeedableRng, rngs::StdRng};

const SERVING_DAY: &str = "2026-11-08";
const EXIT_INTERRUPTED: i32 = 75;

/// A data folder whose lake holds a week of synthetic clicks, and a config sized so a run is a
/// few seconds of many small units.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    async fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&dir.path().join("lake").display().to_string()).unwrap();
        fill_lake(
            &lake,
            &SynthConfig {
                users: 6_000,
                days: 8,
                sessions_per_day: 6_000,
                spike_day: 6,
                ..SynthConfig::default()
            },
        )
        .await
        .unwrap();
        let config = dir.path().join("newsrec.toml");
        std::fs::write(
            &config,
            "[train]\nlist_part_users = 400\n\
             [train.checkpoint]\nmin_interval_s = 0\n\
             [train.als]\nfactors = 32\niterations = 12\n\
             [train.spot]\nnotice_poll_ms = 100\ncapacity_delay_ms = 300\n",
        )
        .unwrap();
        Setup { dir, config }
    }

    fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_newsrec"));
        command
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--config")
            .arg(&self.config)
            .arg("--log")
            .arg("warn")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    fn train(&self, run_id: &str, extra: &[&str]) -> Command {
        let mut args = vec!["train", "--date", SERVING_DAY, "--run-id", run_id];
        args.extend_from_slice(extra);
        self.command(&args)
    }

    fn manifest(&self, run_id: &str) -> RunManifest {
        let path = self.run_dir(run_id).join(layout::MANIFEST_FILE);
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    }

    fn run_dir(&self, run_id: &str) -> PathBuf {
        self.data_dir()
            .join("lake")
            .join(layout::run_prefix(run_id).as_ref())
    }

    fn checkpoint_dir(&self, run_id: &str) -> PathBuf {
        self.data_dir()
            .join("lake")
            .join(layout::checkpoint_prefix(run_id).as_ref())
    }

    /// Every file of a run but its manifest (which records times), by name.
    fn run_files(&self, run_id: &str) -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(self.run_dir(run_id))
            .unwrap()
            .map(|entry| entry.unwrap())
            .filter(|entry| entry.file_name() != layout::MANIFEST_FILE)
            .map(|entry| {
                (
                    entry.file_name().to_string_lossy().into_owned(),
                    std::fs::read(entry.path()).unwrap(),
                )
            })
            .collect()
    }

    /// Runs `run_id` uninterrupted; returns how long it took.
    fn reference(&self, run_id: &str) -> Duration {
        let started = Instant::now();
        let output = self.train(run_id, &[]).output().unwrap();
        assert!(output.status.success(), "{}", describe(&output));
        started.elapsed()
    }
}

fn describe(output: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn wait_with_deadline(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    let started = Instant::now();
    while started.elapsed() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// The sequence number of the newest state checkpoint in `dir` (0 when there is none).
fn newest_state(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().to_string_lossy().into_owned();
            layout::parse_state_checkpoint_name(&name)
        })
        .max()
        .unwrap_or(0)
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sigterm_and_kill9_interruptions_give_the_uninterrupted_bytes() {
    let setup = Setup::new().await;
    let full = setup.reference("reference");
    eprintln!("uninterrupted run: {full:?}");
    let reference = setup.manifest("reference");
    assert!(
        reference.outputs.parts.len() >= 5,
        "{:?}",
        reference.outputs
    );

    let seed: u64 = std::env::var("NEWSREC_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("interruption schedule seed {seed} (NEWSREC_TEST_SEED={seed} repeats it)");
    let mut rng = StdRng::seed_from_u64(seed);
    // Six cut points drawn over the run's units of work (its checkpoints), so across seeds they
    // fall in every stage: rollups, ALS iterations, evaluations, list parts. Each cut lands at a
    // random moment inside the unit after its target checkpoint.
    let units = reference.execution.checkpoints_written;
    assert!(units >= 20, "{:?}", reference.execution);
    let mut targets: Vec<u64> = (0..6).map(|_| rng.random_range(1..units - 1)).collect();
    targets.sort();
    let (mut terms, mut kills, mut graceful) = (0, 0, 0);
    for target in &targets {
        let mut child = setup.train("interrupted", &[]).spawn().unwrap();
        let started = Instant::now();
        while newest_state(&setup.checkpoint_dir("interrupted")) < *target {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the job ended ({status:?}) before checkpoint {target}; seed {seed}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "stuck before {target}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..40)));
        let by_term = rng.random_bool(0.5);
        if by_term {
            sigterm(&child);
        } else {
            child.kill().unwrap();
        }
        let status = wait_with_deadline(&mut child, Duration::from_secs(60))
            .expect("an interrupted job exits within a unit of work");
        if status.success() {
            // The cut came after the last unit (only possible for the highest targets): the
            // run is complete, and the comparison below still holds.
            break;
        }
        if by_term {
            terms += 1;
            if status.code() == Some(EXIT_INTERRUPTED) {
                graceful += 1;
            }
        } else {
            kills += 1;
        }
    }
    assert!(
        terms + kills >= 5,
        "only {} interruptions; seed {seed}",
        terms + kills
    );
    let output = setup.train("interrupted", &[]).output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    eprintln!(
        "cuts after checkpoints {targets:?} of {units}: {terms} SIGTERM ({graceful} checkpointed and exited {EXIT_INTERRUPTED}), {kills} kill -9"
    );
    assert!(
        terms == 0 || graceful > 0,
        "no SIGTERM led to a checkpoint and exit code {EXIT_INTERRUPTED}; seed {seed}"
    );
    let resumed = setup.manifest("interrupted");
    assert!(resumed.execution.starts >= 2, "{:?}", resumed.execution);
    assert_eq!(resumed.outputs.parts, reference.outputs.parts);
    assert_eq!(resumed.evaluations, reference.evaluations);
    assert_eq!(
        setup.run_files("interrupted"),
        setup.run_files("reference"),
        "seed {seed}"
    );
    let left: Vec<String> = std::fs::read_dir(setup.checkpoint_dir("interrupted"))
        .map(|entries| {
            entries
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "checkpoints left after completion: {left:?}"
    );
}

/// A stand-in for the EC2 instance metadata service: IMDSv2 token, then 404 on the spot
/// notice until `notice` is set.
async fn fake_imds(notice: Arc<AtomicBool>, token_requests: Arc<AtomicUsize>) -> String {
    use axum::{
        Router,
        http::{HeaderMap, StatusCode},
        routing::{get, put},
    };
    let app = Router::new()
        .route(
            "/latest/api/token",
            put(move |headers: HeaderMap| {
                let token_requests = Arc::clone(&token_requests);
                async move {
                    if !headers.contains_key("x-aws-ec2-metadata-token-ttl-seconds") {
                        return (StatusCode::BAD_REQUEST, String::new());
                    }
                    token_requests.fetch_add(1, Ordering::SeqCst);
                    (StatusCode::OK, "test-token".to_owned())
                }
            }),
        )
        .route(
            "/latest/meta-data/spot/instance-action",
            get(move |headers: HeaderMap| {
                let notice = Arc::clone(&notice);
                async move {
                    if headers
                        .get("x-aws-ec2-metadata-token")
                        .is_none_or(|token| token != "test-token")
                    {
                        return (StatusCode::UNAUTHORIZED, String::new());
                    }
                    if notice.load(Ordering::SeqCst) {
                        (
                            StatusCode::OK,
                            r#"{"action": "terminate", "time": "2026-12-02T17:00:00Z"}"#.to_owned(),
                        )
                    } else {
                        (StatusCode::NOT_FOUND, String::new())
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spot_notice_makes_the_job_checkpoint_and_exit_within_its_bound() {
    let setup = Setup::new().await;
    let notice = Arc::new(AtomicBool::new(false));
    let token_requests = Arc::new(AtomicUsize::new(0));
    let url = fake_imds(Arc::clone(&notice), Arc::clone(&token_requests)).await;

    let mut child = setup
        .train("noticed", &["--spot-notice-url", &url])
        .spawn()
        .unwrap();
    // Let it get into its work (it has asked for a token by then), then announce the reclaim.
    let started = Instant::now();
    while token_requests.load(Ordering::SeqCst) == 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "never polled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    notice.store(true, Ordering::SeqCst);
    let noticed = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let status = wait_with_deadline(&mut child, Duration::from_secs(30));
        (status, child)
    })
    .await
    .unwrap();
    let (status, child) = status;
    let status = status.expect("the job stops within 30 s of a notice");
    let stopped_in = noticed.elapsed();
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        status.code(),
        Some(EXIT_INTERRUPTED),
        "{}",
        describe(&output)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("spot interruption notice"), "{stderr}");
    // The bound: one poll interval (100 ms) plus one unit of work plus its checkpoint.
    assert!(stopped_in < Duration::from_secs(10), "took {stopped_in:?}");
    eprintln!("stopped {stopped_in:?} after the notice");
    let states = std::fs::read_dir(setup.checkpoint_dir("noticed"))
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("state-")
        })
        .count();
    assert!(states >= 1, "a checkpoint was written");

    // Capacity is back: the same command resumes and completes.
    notice.store(false, Ordering::SeqCst);
    let output = setup
        .train("noticed", &["--spot-notice-url", &url])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(setup.manifest("noticed").execution.starts, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spot_runner_honours_max_wait_and_its_report_adds_up() {
    let setup = Setup::new().await;
    let output = setup
        .train(
            "budgeted",
            &[
                "--spot",
                "--interrupt-every",
                "700ms",
                "--capacity-delay",
                "300ms",
                "--max-wait",
                "2s",
                "--format",
                "json",
            ],
        )
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(124), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--max-wait reached"), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let figure = |key: &str| report[key].as_f64().unwrap();
    assert_eq!(report["outcome"], "max_wait_reached", "{report}");
    // Max wait is a wall-clock bound; the last start gets its SIGTERM at the bound and needs up
    // to one unit of work to stop.
    assert!(figure("wall_s") >= 2.0, "{report}");
    assert!(figure("wall_s") < 2.0 + 10.0, "{report}");
    assert!(report["interruptions"].as_u64().unwrap() >= 1, "{report}");
    assert!(
        figure("training_s") + figure("waiting_s") <= figure("wall_s") + 0.05,
        "{report}"
    );
    // Priced as `newsrec plan` prices newsrec's training instance: one price table.
    let prices = newsrec_plan::PriceTable::defaults();
    let on_demand = prices.value(newsrec_plan::PriceName::NewsrecTrainingOnDemandHour);
    let spot = prices.value(newsrec_plan::PriceName::NewsrecTrainingSpotHour);
    assert_eq!(figure("on_demand_price_per_hour"), on_demand, "{report}");
    assert_eq!(figure("spot_price_per_hour"), spot, "{report}");
    let ratio = spot / on_demand;
    assert!(
        (figure("billable_s") - figure("training_s") * ratio).abs() < 1e-6,
        "{report}"
    );
    assert!(
        (figure("savings_pct") - (1.0 - figure("billable_s") / figure("training_s")) * 100.0).abs()
            < 1e-9,
        "{report}"
    );
    assert!(
        (figure("spot_cost_usd") - figure("training_s") / 3600.0 * spot).abs() < 1e-12,
        "{report}"
    );
    // The run is not complete, and its checkpoints wait for the next attempt.
    assert!(
        !setup
            .run_dir("budgeted")
            .join(layout::MANIFEST_FILE)
            .exists()
    );
    let states = std::fs::read_dir(setup.checkpoint_dir("budgeted"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| {
            layout::parse_state_checkpoint_name(&entry.file_name().to_string_lossy()).is_some()
        })
        .count();
    assert!(states > 0, "the run's progress waits in its checkpoints");

    // Without a budget, random interruptions still end in the run being complete.
    let output = setup
        .train(
            "budgeted",
            &[
                "--spot",
                "--interrupt-prob",
                "0.5",
                "--seed",
                "3",
                "--capacity-delay",
                "100ms",
            ],
        )
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("savings"), "{stdout}");
    assert!(setup.manifest("budgeted").execution.starts >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_as_a_sagemaker_training_container() {
    let setup = Setup::new().await;
    let model_dir = setup.data_dir().join("opt-ml-model");
    let checkpoints = setup.data_dir().join("opt-ml-checkpoints");
    // SageMaker's variables: the lake arrives as the `train` channel, the day as a (stringified)
    // hyperparameter; no --date, no --data-dir lake. The checkpoint folder is moved off
    // /opt/ml/checkpoints with NEWSREC_CHECKPOINT_DIR, as a job's CheckpointConfig.LocalPath would.
    let mut command = Command::new(env!("CARGO_BIN_EXE_newsrec"));
    command
        .args(["--data-dir"])
        .arg(setup.data_dir().join("unused"))
        .arg("--config")
        .arg(&setup.config)
        .args(["--log", "warn", "train"])
        .env("SM_CHANNEL_TRAIN", setup.data_dir().join("lake"))
        .env("SM_MODEL_DIR", &model_dir)
        .env(
            "SM_HPS",
            format!(r#"{{"date": "{SERVING_DAY}", "run_id": "sagemaker-1", "window_days": "5"}}"#),
        )
        .env("NEWSREC_CHECKPOINT_DIR", &checkpoints);
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let manifest: RunManifest =
        serde_json::from_slice(&std::fs::read(model_dir.join(layout::MANIFEST_FILE)).unwrap())
            .unwrap();
    assert_eq!(manifest.run_id, "sagemaker-1");
    assert_eq!(
        manifest.window.start, "2026-11-03",
        "window_days from SM_HPS"
    );
    for part in &manifest.outputs.parts {
        assert!(
            model_dir.join(part).is_file(),
            "{part} copied to SM_MODEL_DIR"
        );
    }
    assert!(model_dir.join(layout::ALS_FACTORS_OBJECT).is_file());
    assert!(
        !setup
            .data_dir()
            .join("unused/lake")
            .join(layout::RUNS_PREFIX)
            .exists(),
        "the --data-dir lake is not used when the train channel is given"
    );

    // A bad hyperparameter is named.
    let output = Command::new(env!("CARGO_BIN_EXE_newsrec"))
        .args(["--data-dir"])
        .arg(setup.data_dir())
        .args(["--log", "warn", "train"])
        .env("SM_MODEL_DIR", &model_dir)
        .env("SM_HPS", r#"{"date": "yesterday"}"#)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("hyperparameter date"), "{stderr}");
}
