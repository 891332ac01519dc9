//! Managed spot training, played locally: the runner behind `newsrec train --spot`.
//!
//! Runs the job as a child process that the binary starts (`newsrec train` with the same run id
//! each time), interrupts it on a schedule the way a spot reclaim would (SIGTERM, then SIGKILL
//! after a grace period), waits a simulated capacity delay, starts it again (it resumes from its
//! checkpoints), and gives up when the wall-clock budget `max_wait` or the machine-time budget
//! `max_run` is spent, as SageMaker's `MaxWaitTimeInSeconds` / `MaxRuntimeInSeconds` do. The
//! report counts machine time the way SageMaker bills it: every second a child ran, including
//! work that an interruption threw away, is training time; billable time is that time at the
//! spot price, expressed in on-demand seconds, so savings = (1 − billable / training) × 100.
//! Prices come from the planner's price table (`config/prices.toml`), so `newsrec plan` and the
//! runner price the same machine the same way. [`notice`] watches EC2's own interruption notice
//! for a job running on real spot capacity.

pub mod notice;
mod report;
mod schedule;

use std::{
    process::ExitStatus,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use tokio::process::Child;

pub use report::{SpotOutcome, SpotPrices, SpotReport};
pub use schedule::Interruptions;

use schedule::Schedule;

/// Exit code of a job stopped by SIGTERM, SIGINT or a spot notice after saving its progress
/// (`EX_TEMPFAIL`: run the same command again to resume).
pub const EXIT_INTERRUPTED: u8 = 75;

/// Exit code when `max_run` or `max_wait` ran out before the job finished (as timeout(1)).
pub const EXIT_BUDGET_SPENT: u8 = 124;

/// How long an interrupted child gets to checkpoint and exit before SIGKILL (EC2 gives two
/// minutes' notice).
const STOP_GRACE: Duration = Duration::from_secs(120);

/// How a spot run is played.
#[derive(Debug, Clone, PartialEq)]
pub struct SpotOptions {
    /// Budget of machine time across all starts (SageMaker's max run).
    pub max_run: Option<Duration>,
    /// Budget of wall-clock time including waits for capacity (SageMaker's max wait).
    pub max_wait: Option<Duration>,
    pub interruptions: Interruptions,
    /// Simulated wait for capacity after an interruption.
    pub capacity_delay: Duration,
    pub prices: SpotPrices,
}

impl SpotOptions {
    /// Refuses a schedule that cannot run and budgets SageMaker would refuse.
    pub fn validate(&self) -> Result<(), SpotError> {
        self.interruptions.validate()?;
        if let (Some(run), Some(wait)) = (self.max_run, self.max_wait)
            && wait < run
        {
            return Err(SpotError::InvalidOptions(format!(
                "--max-wait ({}) must be at least --max-run ({}), as in SageMaker",
                humantime::format_duration(wait),
                humantime::format_duration(run)
            )));
        }
        Ok(())
    }
}

/// Why a spot run did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpotError {
    /// Options that cannot run (named by the flags of `newsrec train --spot`).
    #[error("{0}")]
    InvalidOptions(String),
    #[error("starting the training job")]
    Start(#[source] std::io::Error),
    #[error("waiting for the training job")]
    Wait(#[source] std::io::Error),
    /// A budget ran out; the run's checkpoints are kept for a later start.
    #[error(
        "{what} reached before run {run_id} finished; its checkpoints are kept: start it again with --run-id {run_id} to resume"
    )]
    BudgetSpent { what: &'static str, run_id: String },
    /// The job failed for a reason other than an interruption.
    #[error("the training job failed (exit code {exit_code:?}); see its messages above")]
    JobFailed { exit_code: Option<i32> },
}

/// Runs the job to completion or budget: `start_job` starts one attempt of run `run_id` (the
/// same run id every time, so it resumes). Every outcome is a report; [`SpotReport::completed`]
/// turns the ones that are not a completed run into their error.
pub async fn run_spot(
    run_id: &str,
    options: &SpotOptions,
    mut start_job: impl FnMut() -> std::io::Result<Child>,
) -> Result<SpotReport, SpotError> {
    options.validate()?;
    let mut schedule = Schedule::new(&options.interruptions);
    let started = Instant::now();
    let mut report = SpotReport::new(run_id, options.prices);
    let mut training = Duration::ZERO;
    let mut waiting = Duration::ZERO;
    loop {
        let wait_left = options
            .max_wait
            .map(|max| max.saturating_sub(started.elapsed()));
        let run_left = options.max_run.map(|max| max.saturating_sub(training));
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
        let mut child = start_job().map_err(SpotError::Start)?;
        let status = match limit {
            None => Some(child.wait().await.map_err(SpotError::Wait)?),
            Some((at, _)) => tokio::time::timeout(at, child.wait())
                .await
                .ok()
                .transpose()
                .map_err(SpotError::Wait)?,
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
        let delay = match options.max_wait {
            Some(max) => options
                .capacity_delay
                .min(max.saturating_sub(started.elapsed())),
            None => options.capacity_delay,
        };
        tokio::time::sleep(delay).await;
        waiting += delay;
    }
    report.wall_s = started.elapsed().as_secs_f64();
    report.training_s = training.as_secs_f64();
    report.waiting_s = waiting.as_secs_f64();
    Ok(report.priced())
}

/// SIGTERM, then SIGKILL if the child has not exited within the grace period.
async fn stop_child(child: &mut Child) -> Result<ExitStatus, SpotError> {
    if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
        // It may have exited on its own in the meantime; then there is nothing to signal.
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(status) => status.map_err(SpotError::Wait),
        Err(_) => {
            tracing::warn!("the job did not stop within the grace period; killing it");
            child.kill().await.map_err(SpotError::Wait)?;
            child.wait().await.map_err(SpotError::Wait)
        }
    }
}
