//! `newsrec train --spot`: managed spot training, played locally.
//!
//! Runs the job as a child process (`newsrec train` with the same run id each time), interrupts
//! it on a schedule the way a spot reclaim would (SIGTERM, then SIGKILL after a grace period),
//! waits a simulated capacity delay, starts it again (it resumes from its checkpoints), and
//! gives up when the wall-clock budget `--max-wait` or the machine-time budget `--max-run` is
//! spent, as SageMaker's `MaxWaitTimeInSeconds` / `MaxRuntimeInSeconds` do. The report counts
//! machine time the way SageMaker bills it: every second a child ran, including work that an
//! interruption threw away, is training time; billable time is that time at the spot price,
//! expressed in on-demand seconds, so savings = (1 − billable / training) × 100.

use std::{
    process::ExitStatus,
    time::{Duration, Instant},
};

use anyhow::Context;
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;
use tokio::process::{Child, Command};

use newsrec_config::Config;

use super::{EXIT_INTERRUPTED, Globals, TrainArgs};

/// Exit code when `--max-run` or `--max-wait` ran out before the job finished (as timeout(1)).
pub const EXIT_BUDGET_SPENT: u8 = 124;

/// How long an interrupted child gets to checkpoint and exit before SIGKILL (EC2 gives two
/// minutes' notice).
const STOP_GRACE: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, clap::Args)]
pub struct SpotArgs {
    /// Run the job as managed spot training: a child process, interrupted and restarted
    #[arg(long)]
    pub spot: bool,
    /// Budget of machine time across all starts (e.g. 2h); SageMaker's max run
    #[arg(long, requires = "spot", value_parser = parse_duration)]
    pub max_run: Option<Duration>,
    /// Budget of wall-clock time including waits for capacity (e.g. 6h); SageMaker's max wait
    #[arg(long, requires = "spot", value_parser = parse_duration)]
    pub max_wait: Option<Duration>,
    /// Interrupt each start after this long (e.g. 30s)
    #[arg(long, requires = "spot", value_parser = parse_duration, conflicts_with = "interrupt_prob")]
    pub interrupt_every: Option<Duration>,
    /// Interrupt with this probability in each second a start runs (0..1)
    #[arg(long, requires = "spot")]
    pub interrupt_prob: Option<f64>,
    /// Seed of the random interruptions
    #[arg(long, requires = "spot", default_value_t = 1)]
    pub seed: u64,
    /// Simulated wait for capacity after an interruption (default train.spot.capacity_delay_ms)
    #[arg(long, requires = "spot", value_parser = parse_duration)]
    pub capacity_delay: Option<Duration>,
    /// Report as a table or one JSON line
    #[arg(long, requires = "spot", value_enum, default_value_t = crate::output::Format::Table)]
    pub format: crate::output::Format,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e} (examples: 30s, 2h, 500ms)"))
}

/// How a spot run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpotOutcome {
    Completed,
    MaxRunReached,
    MaxWaitReached,
    /// The job failed for a reason other than an interruption (its exit code is reported).
    Failed,
}

/// What a spot run did and what it cost.
#[derive(Debug, Clone, Serialize)]
pub struct SpotReport {
    pub run_id: String,
    pub outcome: SpotOutcome,
    pub exit_code: Option<i32>,
    pub wall_s: f64,
    /// Seconds children ran (all starts, including work an interruption threw away).
    pub training_s: f64,
    /// Seconds spent waiting for capacity.
    pub waiting_s: f64,
    /// Training time at the spot price, in on-demand seconds.
    pub billable_s: f64,
    pub starts: u32,
    pub interruptions: u32,
    pub savings_pct: f64,
    pub on_demand_price_per_hour: f64,
    pub spot_price_per_hour: f64,
    pub spot_cost_usd: f64,
    /// The same machine time on demand.
    pub on_demand_cost_usd: f64,
}

impl SpotReport {
    fn priced(mut self) -> SpotReport {
        let ratio = self.spot_price_per_hour / self.on_demand_price_per_hour;
        self.billable_s = self.training_s * ratio;
        self.savings_pct = if self.training_s > 0.0 {
            (1.0 - self.billable_s / self.training_s) * 100.0
        } else {
            0.0
        };
        self.spot_cost_usd = self.training_s / 3600.0 * self.spot_price_per_hour;
        self.on_demand_cost_usd = self.training_s / 3600.0 * self.on_demand_price_per_hour;
        self
    }
}

/// When the next start is interrupted.
enum Schedule {
    Never,
    Every(Duration),
    /// Each whole second with probability p.
    Random {
        p: f64,
        rng: Box<StdRng>,
    },
}

impl Schedule {
    fn next_interruption(&mut self) -> Option<Duration> {
        match self {
            Schedule::Never => None,
            Schedule::Every(every) => Some(*every),
            Schedule::Random { p, rng } => {
                // Seconds until the first success of a Bernoulli(p) per second (geometric).
                let mut seconds = 1u64;
                while !rng.random_bool(*p) {
                    seconds += 1;
                    if seconds > 366 * 86_400 {
                        return None;
                    }
                }
                Some(Duration::from_secs(seconds))
            }
        }
    }
}

/// Runs the job to completion or budget under the given interruption schedule.
pub async fn run(
    config: &Config,
    globals: &Globals,
    args: &TrainArgs,
    run_id: &str,
) -> anyhow::Result<SpotReport> {
    let spot = &args.spot;
    let mut schedule = match (spot.interrupt_every, spot.interrupt_prob) {
        (Some(every), _) => {
            anyhow::ensure!(!every.is_zero(), "--interrupt-every must be > 0");
            Schedule::Every(every)
        }
        (None, Some(p)) => {
            anyhow::ensure!(
                p > 0.0 && p <= 1.0,
                "--interrupt-prob must be in (0, 1], got {p}"
            );
            Schedule::Random {
                p,
                rng: Box::new(StdRng::seed_from_u64(spot.seed)),
            }
        }
        (None, None) => Schedule::Never,
    };
    if let (Some(run), Some(wait)) = (spot.max_run, spot.max_wait) {
        anyhow::ensure!(
            wait >= run,
            "--max-wait ({}) must be at least --max-run ({}), as in SageMaker",
            humantime::format_duration(wait),
            humantime::format_duration(run)
        );
    }
    let capacity_delay = spot
        .capacity_delay
        .unwrap_or(Duration::from_millis(config.train.spot.capacity_delay_ms));
    let started = Instant::now();
    let mut report = SpotReport {
        run_id: run_id.to_owned(),
        outcome: SpotOutcome::Completed,
        exit_code: None,
        wall_s: 0.0,
        training_s: 0.0,
        waiting_s: 0.0,
        billable_s: 0.0,
        starts: 0,
        interruptions: 0,
        savings_pct: 0.0,
        on_demand_price_per_hour: config.train.spot.on_demand_price_per_hour,
        spot_price_per_hour: config.train.spot.spot_price_per_hour,
        spot_cost_usd: 0.0,
        on_demand_cost_usd: 0.0,
    };
    let mut training = Duration::ZERO;
    let mut waiting = Duration::ZERO;
    loop {
        let wait_left = spot
            .max_wait
            .map(|max| max.saturating_sub(started.elapsed()));
        let run_left = spot.max_run.map(|max| max.saturating_sub(training));
        if wait_left.is_some_and(|left| left.is_zero()) {
            report.outcome = SpotOutcome::MaxWaitReached;
            break;
        }
        if run_left.is_some_and(|left| left.is_zero()) {
            report.outcome = SpotOutcome::MaxRunReached;
            break;
        }
        let interrupt_in = schedule.next_interruption();
        // The earliest of: the scheduled interruption, the end of either budget.
        let mut limits = vec![];
        if let Some(at) = interrupt_in {
            limits.push((at, SpotOutcome::Completed));
        }
        if let Some(left) = run_left {
            limits.push((left, SpotOutcome::MaxRunReached));
        }
        if let Some(left) = wait_left {
            limits.push((left, SpotOutcome::MaxWaitReached));
        }
        let limit = limits.into_iter().min_by_key(|(at, _)| *at);

        report.starts += 1;
        tracing::info!(start = report.starts, run_id, "starting the training job");
        let attempt_started = Instant::now();
        let mut child = spawn_job(globals, args, run_id)?;
        let status = match limit {
            None => Some(child.wait().await?),
            Some((at, _)) => tokio::time::timeout(at, child.wait())
                .await
                .ok()
                .transpose()?,
        };
        let (status, stopped_by) = match status {
            Some(status) => (status, None),
            None => {
                let (_, reason) = limit.unwrap_or((Duration::ZERO, SpotOutcome::Completed));
                (stop_child(&mut child).await?, Some(reason))
            }
        };
        training += attempt_started.elapsed();
        report.exit_code = status.code();
        match (status.success(), stopped_by) {
            (true, _) => {
                report.outcome = SpotOutcome::Completed;
                break;
            }
            (false, Some(SpotOutcome::Completed)) => {
                report.interruptions += 1;
                tracing::warn!(
                    start = report.starts,
                    "interrupted the job (simulated spot reclaim)"
                );
            }
            (false, Some(budget)) => {
                report.outcome = budget;
                break;
            }
            (false, None) if status.code() == Some(i32::from(EXIT_INTERRUPTED)) => {
                // Stopped by something else (a real spot notice, a signal): treated as a reclaim.
                report.interruptions += 1;
            }
            (false, None) => {
                report.outcome = SpotOutcome::Failed;
                break;
            }
        }
        let delay = match spot.max_wait {
            Some(max) => capacity_delay.min(max.saturating_sub(started.elapsed())),
            None => capacity_delay,
        };
        tokio::time::sleep(delay).await;
        waiting += delay;
    }
    report.wall_s = started.elapsed().as_secs_f64();
    report.training_s = training.as_secs_f64();
    report.waiting_s = waiting.as_secs_f64();
    Ok(report.priced())
}

/// `newsrec [globals] train …` for one start: the same run id every time, so it resumes.
fn spawn_job(globals: &Globals, args: &TrainArgs, run_id: &str) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("locating the newsrec binary")?;
    let mut command = Command::new(exe);
    if let Some(config) = &globals.config {
        command.arg("--config").arg(config);
    }
    command
        .arg("--data-dir")
        .arg(&globals.data_dir)
        .arg("--log")
        .arg(&globals.log)
        .arg("train")
        .arg("--run-id")
        .arg(run_id);
    if let Some(date) = args.date {
        command.arg("--date").arg(date.to_string());
    }
    if let Some(days) = args.window_days {
        command.arg("--window-days").arg(days.to_string());
    }
    if let Some(dir) = &args.checkpoint_dir {
        command.arg("--checkpoint-dir").arg(dir);
    }
    if args.keep_checkpoints {
        command.arg("--keep-checkpoints");
    }
    if let Some(url) = &args.spot_notice_url {
        command.arg("--spot-notice-url").arg(url);
    }
    if args.spot.format == crate::output::Format::Json {
        // The JSON line must be the only thing on stdout; the job's own summary goes to stderr.
        command.stdout(std::io::stderr());
    }
    command.kill_on_drop(true);
    command.spawn().context("starting the training job")
}

/// SIGTERM, then SIGKILL if the child has not exited within the grace period.
async fn stop_child(child: &mut Child) -> anyhow::Result<ExitStatus> {
    if let Some(pid) = child.id() {
        let pid = Pid::from_raw(i32::try_from(pid).context("child pid out of range")?);
        // It may have exited on its own in the meantime; then there is nothing to signal.
        let _ = kill(pid, Signal::SIGTERM);
    }
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(status) => Ok(status?),
        Err(_) => {
            tracing::warn!("the job did not stop within the grace period; killing it");
            child.kill().await?;
            Ok(child.wait().await?)
        }
    }
}

/// Prints the report; a run that did not complete is an error with the documented exit code.
pub fn finish(report: SpotReport, args: &SpotArgs) -> anyhow::Result<()> {
    match args.format {
        crate::output::Format::Json => println!("{}", serde_json::to_string(&report)?),
        crate::output::Format::Table => print!("{}", table(&report)),
    }
    match report.outcome {
        SpotOutcome::Completed => Ok(()),
        SpotOutcome::Failed => Err(anyhow::anyhow!(
            "the training job failed (exit code {:?}); see its messages above",
            report.exit_code
        )),
        budget => Err(anyhow::Error::new(BudgetSpent {
            what: if budget == SpotOutcome::MaxRunReached {
                "--max-run"
            } else {
                "--max-wait"
            },
            run_id: report.run_id.clone(),
        })),
    }
}

/// A spot run stopped by its time budget; its checkpoints are kept for a later start.
#[derive(Debug, thiserror::Error)]
#[error(
    "{what} reached before run {run_id} finished; its checkpoints are kept: start it again with --run-id {run_id} to resume"
)]
pub struct BudgetSpent {
    what: &'static str,
    run_id: String,
}

fn table(report: &SpotReport) -> String {
    let rows = vec![
        vec!["run".to_owned(), report.run_id.clone()],
        vec!["outcome".to_owned(), format!("{:?}", report.outcome)],
        vec!["wall time".to_owned(), format!("{:.1} s", report.wall_s)],
        vec![
            "training time".to_owned(),
            format!("{:.1} s", report.training_s),
        ],
        vec![
            "waiting for capacity".to_owned(),
            format!("{:.1} s", report.waiting_s),
        ],
        vec![
            "billable time".to_owned(),
            format!("{:.1} s", report.billable_s),
        ],
        vec!["starts".to_owned(), report.starts.to_string()],
        vec!["interruptions".to_owned(), report.interruptions.to_string()],
        vec![
            "cost".to_owned(),
            format!(
                "${:.6} spot vs ${:.6} on demand (${}/h vs ${}/h)",
                report.spot_cost_usd,
                report.on_demand_cost_usd,
                report.spot_price_per_hour,
                report.on_demand_price_per_hour
            ),
        ],
        vec![
            "savings".to_owned(),
            format!(
                "{:.1} % = (1 - billable / training) x 100",
                report.savings_pct
            ),
        ],
    ];
    crate::output::table(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn savings_follow_the_price_ratio() {
        let report = SpotReport {
            run_id: "r".into(),
            outcome: SpotOutcome::Completed,
            exit_code: Some(0),
            wall_s: 130.0,
            training_s: 100.0,
            waiting_s: 30.0,
            billable_s: 0.0,
            starts: 3,
            interruptions: 2,
            savings_pct: 0.0,
            on_demand_price_per_hour: 0.23,
            spot_price_per_hour: 0.07,
            spot_cost_usd: 0.0,
            on_demand_cost_usd: 0.0,
        }
        .priced();
        assert!((report.billable_s - 100.0 * 0.07 / 0.23).abs() < 1e-9);
        assert!((report.savings_pct - 69.565_217_391).abs() < 1e-6);
        assert!((report.spot_cost_usd - 100.0 / 3600.0 * 0.07).abs() < 1e-12);
    }

    #[test]
    fn random_schedules_repeat_with_the_seed() {
        let draw = |seed| {
            let mut schedule = Schedule::Random {
                p: 0.2,
                rng: Box::new(StdRng::seed_from_u64(seed)),
            };
            (0..20)
                .map(|_| schedule.next_interruption().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let mut certain = Schedule::Random {
            p: 1.0,
            rng: Box::new(StdRng::seed_from_u64(1)),
        };
        assert_eq!(certain.next_interruption(), Some(Duration::from_secs(1)));
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("soon").unwrap_err().contains("examples"));
    }
}
