//! The training capacity decision: spot, spot with an on-demand fallback, or on-demand, from the
//! buffer ratio (deadline ÷ training time), the job's length and whether a miss is critical.

use serde::Serialize;

/// Buffer ratios above this leave room for several interruptions and restarts: spot is safe.
pub const SPOT_SAFE_ABOVE_BUFFER_RATIO: f64 = 4.0;
/// Buffer ratios below this leave room for about one restart: a critical job runs on-demand.
pub const CRITICAL_ON_DEMAND_BELOW_BUFFER_RATIO: f64 = 3.0;
/// Jobs shorter than this run on-demand: the spot saving on so little time is smaller than the
/// cost of one interruption (startup, data loading, a lost partial run).
pub const SHORT_JOB_HOURS: f64 = 0.5;

/// Where the training job runs. Ordered from least to most spot, so "a longer deadline never
/// flips spot to on-demand" reads as "the choice never decreases".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CapacityChoice {
    OnDemand,
    /// Start on spot; if interrupted late enough that the deadline is at risk, rerun on-demand.
    SpotWithOnDemandFallback,
    Spot,
}

impl CapacityChoice {
    /// A short human name for tables.
    pub fn describe(self) -> &'static str {
        match self {
            CapacityChoice::OnDemand => "on-demand",
            CapacityChoice::SpotWithOnDemandFallback => "spot with on-demand fallback",
            CapacityChoice::Spot => "spot",
        }
    }

    /// Whether the expected bill uses the spot price.
    pub fn bills_spot(self) -> bool {
        self != CapacityChoice::OnDemand
    }
}

/// Which rule picked the capacity, checked in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainingRule {
    /// The deadline is shorter than one training run: no capacity meets it; spot is refused.
    DeadlineShorterThanTraining,
    /// The job is under 30 minutes.
    ShortJob,
    /// Buffer ratio above 4×.
    AmpleBuffer,
    /// Buffer ratio from 3× to 4×.
    ModerateBuffer,
    /// Buffer ratio below 3× and a miss is critical.
    TightBufferCritical,
    /// Buffer ratio below 3× and a miss is not critical.
    TightBufferNotCritical,
}

impl TrainingRule {
    /// The rule's name, as in the JSON output.
    pub fn key(self) -> &'static str {
        match self {
            TrainingRule::DeadlineShorterThanTraining => "deadline_shorter_than_training",
            TrainingRule::ShortJob => "short_job",
            TrainingRule::AmpleBuffer => "ample_buffer",
            TrainingRule::ModerateBuffer => "moderate_buffer",
            TrainingRule::TightBufferCritical => "tight_buffer_critical",
            TrainingRule::TightBufferNotCritical => "tight_buffer_not_critical",
        }
    }
}

/// The training part of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapacityDecision {
    pub choice: CapacityChoice,
    pub rule: TrainingRule,
    /// deadline ÷ training time.
    pub buffer_ratio: f64,
    /// The rule in words, with this workload's numbers.
    pub reason: String,
    /// Set when the deadline cannot be met at all: what to change.
    pub deadline_unmeetable: Option<String>,
}

/// Applies the spot rules. Inputs are hours and must be positive (see
/// [`crate::Workload::validate`]).
pub fn decide_capacity(
    training_hours: f64,
    deadline_hours: f64,
    critical: bool,
) -> CapacityDecision {
    let buffer_ratio = deadline_hours / training_hours;
    let ratio_text = format!(
        "buffer ratio = {deadline_hours:.2} h deadline ÷ {training_hours:.2} h training = \
         {buffer_ratio:.2}×"
    );
    let (choice, rule, reason, deadline_unmeetable) = if deadline_hours < training_hours {
        let warning = format!(
            "the {deadline_hours:.2} h deadline is shorter than one {training_hours:.2} h \
             training run, so no capacity meets it: shorten the run (more or larger instances, \
             less data) or move the deadline"
        );
        (
            CapacityChoice::OnDemand,
            TrainingRule::DeadlineShorterThanTraining,
            format!(
                "{ratio_text}, below 1×: spot is refused because even an uninterrupted run misses \
                 the deadline; on-demand is priced, and misses it too"
            ),
            Some(warning),
        )
    } else if training_hours < SHORT_JOB_HOURS {
        (
            CapacityChoice::OnDemand,
            TrainingRule::ShortJob,
            format!(
                "the job runs {:.0} min, under 30 min: the spot saving is smaller than the cost \
                 of one interruption, so on-demand ({ratio_text})",
                training_hours * 60.0
            ),
            None,
        )
    } else if buffer_ratio > SPOT_SAFE_ABOVE_BUFFER_RATIO {
        (
            CapacityChoice::Spot,
            TrainingRule::AmpleBuffer,
            format!("{ratio_text}, above 4×: time for several interruptions, spot is safe"),
            None,
        )
    } else if buffer_ratio >= CRITICAL_ON_DEMAND_BELOW_BUFFER_RATIO {
        (
            CapacityChoice::SpotWithOnDemandFallback,
            TrainingRule::ModerateBuffer,
            format!(
                "{ratio_text}, between 3× and 4×: start on spot, rerun on-demand if an \
                 interruption puts the deadline at risk"
            ),
            None,
        )
    } else if critical {
        (
            CapacityChoice::OnDemand,
            TrainingRule::TightBufferCritical,
            format!(
                "{ratio_text}, below 3×, and a miss is critical: room for about one restart is \
                 not enough, on-demand"
            ),
            None,
        )
    } else {
        (
            CapacityChoice::SpotWithOnDemandFallback,
            TrainingRule::TightBufferNotCritical,
            format!(
                "{ratio_text}, below 3×, but a miss is not critical: start on spot, fall back to \
                 on-demand after an interruption"
            ),
            None,
        )
    };
    CapacityDecision {
        choice,
        rule,
        buffer_ratio,
        reason,
        deadline_unmeetable,
    }
}
