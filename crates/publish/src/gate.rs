//! The quality gate: a run that scores clearly worse than the one being served is not published.
//!
//! Why: a training run can go wrong without failing (a day of broken click tracking, a bad
//! setting), and its lists would silently replace better ones. The gate compares the new run's
//! chosen model with the served run's chosen model on the new run's `select_metric`, each taken
//! from its own run's `backtest` evaluation (the `served` one only when a run has no backtest).
//! The two runs are tested on different days, so their figures move with the news even when
//! nothing is wrong: the tolerance is relative (0.05 = the new figure may be up to 5 % lower).
//!
//! The decision is pure (manifests in, verdict out); [`crate::publish_run`] reads the manifests
//! and refuses or publishes. When there is nothing to compare with (no generation served, the
//! served run gone from the lake, a figure missing) the gate passes and says why: it must never
//! block the first publish, nor a lake whose old runs were cleaned up.

use std::fmt;

use newsrec_lake::{RunManifest, manifest::Evaluation};

/// The evaluation the gate prefers: the same-configuration backtest on D-1, present in every run.
const BACKTEST: &str = "backtest";
/// The evaluation on D itself, only in runs trained after D was in the lake.
const SERVED: &str = "served";

/// How a publish applies the gate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GateMode {
    /// Refuse a run whose figure is below the served run's by more than `tolerance` (relative).
    Enforce { tolerance: f64 },
    /// Compare and report, but publish whatever the verdict (`newsrec publish --force`).
    Force { tolerance: f64 },
    /// Do not compare at all (`publish.gate = false`).
    Off,
}

/// What the run being published is compared with.
#[derive(Debug, Clone, PartialEq)]
pub enum Baseline {
    /// No generation is served yet.
    NoGeneration,
    /// A generation is served, but its run's manifest is no longer in the lake.
    RunGone { run_id: String },
    /// The manifest of the served generation's run.
    Run(Box<RunManifest>),
}

/// The gate's verdict and, in one line, why.
#[derive(Debug, Clone, PartialEq)]
pub struct GateDecision {
    /// False when the run is worse than the tolerance allows (it was published only if forced).
    pub passed: bool,
    /// Which figures were compared, or why nothing was.
    pub reason: String,
}

impl GateDecision {
    fn pass(reason: String) -> GateDecision {
        GateDecision {
            passed: true,
            reason,
        }
    }

    pub(crate) fn fail(reason: String) -> GateDecision {
        GateDecision {
            passed: false,
            reason,
        }
    }
}

impl fmt::Display for GateDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed { "passed" } else { "failed" };
        write!(f, "quality gate {verdict}: {}", self.reason)
    }
}

/// One run's figure on the compared metric, with where it comes from.
struct Figure<'a> {
    value: f64,
    run_id: &'a str,
    model: &'a str,
    evaluation: &'a Evaluation,
}

impl fmt::Display for Figure<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.4} (run {:?}, model {}, {} on {})",
            self.value, self.run_id, self.model, self.evaluation.role, self.evaluation.test_date
        )
    }
}

/// The chosen model's `metric` in the run's backtest (or, lacking one, served) evaluation; the
/// error says what is missing.
fn figure<'a>(run: &'a RunManifest, metric: &str) -> Result<Figure<'a>, String> {
    let by_role = |role: &str| run.evaluations.iter().find(|e| e.role == role);
    let evaluation = by_role(BACKTEST)
        .or_else(|| by_role(SERVED))
        .ok_or_else(|| format!("run {:?} has no backtest or served evaluation", run.run_id))?;
    let value = evaluation
        .metrics
        .get(&run.chosen_model)
        .and_then(|metrics| metrics.get(metric))
        .and_then(|value| value.as_f64())
        .ok_or_else(|| {
            format!(
                "run {:?} has no {metric} for its chosen model {} in its {} evaluation",
                run.run_id, run.chosen_model, evaluation.role
            )
        })?;
    Ok(Figure {
        value,
        run_id: &run.run_id,
        model: &run.chosen_model,
        evaluation,
    })
}

/// `0.05` → `5`, `0.025` → `2.5`: the tolerance as people write it.
fn percent(fraction: f64) -> f64 {
    (fraction * 1000.0).round() / 10.0
}

/// Decides whether `new` may replace the served run: refused when its figure is below the
/// baseline's times `1 - tolerance` (`tolerance` a fraction in `0..=1`).
pub fn check(new: &RunManifest, baseline: &Baseline, tolerance: f64) -> GateDecision {
    debug_assert!(
        (0.0..=1.0).contains(&tolerance),
        "tolerance {tolerance} is validated by the config"
    );
    let current = match baseline {
        Baseline::NoGeneration => {
            return GateDecision::pass(
                "no generation is served yet, nothing to compare with".into(),
            );
        }
        Baseline::RunGone { run_id } => {
            return GateDecision::pass(format!(
                "the served run {run_id:?} is no longer in the lake, nothing to compare with"
            ));
        }
        Baseline::Run(current) => current,
    };
    let Some(metric) = new.config.get("select_metric").and_then(|m| m.as_str()) else {
        return GateDecision::pass(format!(
            "run {:?} names no select_metric in its config, nothing to compare",
            new.run_id
        ));
    };
    let (new_figure, current_figure) = match (figure(new, metric), figure(current, metric)) {
        (Ok(new_figure), Ok(current_figure)) => (new_figure, current_figure),
        (Err(missing), _) | (_, Err(missing)) => {
            return GateDecision::pass(format!("{missing}, nothing to compare"));
        }
    };
    let floor = current_figure.value * (1.0 - tolerance);
    let percent = percent(tolerance);
    if new_figure.value < floor {
        GateDecision::fail(format!(
            "{metric} {new_figure} is below {floor:.4}, the served {current_figure} less the \
             {percent} % tolerance"
        ))
    } else {
        GateDecision::pass(format!(
            "{metric} {new_figure} against the served {current_figure}, at least {floor:.4} \
             needed ({percent} % tolerance)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    /// A run whose chosen model scored `ndcg` in the evaluation of `role`. Built from JSON, as
    /// the manifest is stored, so that fields added to the format later (with defaults, as v1
    /// requires) do not touch these tests.
    fn run(run_id: &str, model: &str, role: &str, ndcg: Option<f64>) -> RunManifest {
        let metrics = match ndcg {
            Some(ndcg) => json!({"hr@10": 0.5, "recall@10": 0.4, "ndcg@10": ndcg, "users": 100}),
            None => json!({"hr@10": 0.5, "users": 100}),
        };
        serde_json::from_value(json!({
            "manifest_version": 1,
            "run_id": run_id,
            "newsrec_version": "test",
            "created_at": "2026-11-22T00:00:00Z",
            "serving_date": "2026-11-22",
            "window": {"start": "2026-11-15", "end": "2026-11-22", "start_ms": 0, "end_ms": 1},
            "config": {"select_metric": "ndcg@10", "top_k": 50},
            "counts": {"clicks": 0, "duplicates": 0, "other_events": 0, "users": 0, "items": 0,
                       "pairs": 0},
            "models": [],
            "evaluations": [{"role": role, "test_date": "2026-11-21", "metrics": {model: metrics}}],
            "chosen_model": model,
            "chosen_because": "test",
            "outputs": {"users": 1, "rows": 1, "top_k": 1, "parts": [],
                        "fallback": "fallback.parquet"},
            "timings": {"read_ms": 0, "fit_ms": 0, "eval_ms": 0, "write_ms": 0, "total_ms": 0}
        }))
        .unwrap()
    }

    fn served(run: RunManifest) -> Baseline {
        Baseline::Run(Box::new(run))
    }

    #[test]
    fn a_better_run_passes_and_names_both_figures() {
        let old = run("old", "cooccurrence", BACKTEST, Some(0.20));
        let new = run("new", "als", BACKTEST, Some(0.25));
        let decision = check(&new, &served(old), 0.05);
        assert!(decision.passed, "{decision}");
        assert_eq!(
            decision.reason,
            "ndcg@10 0.2500 (run \"new\", model als, backtest on 2026-11-21) against the served \
             0.2000 (run \"old\", model cooccurrence, backtest on 2026-11-21), at least 0.1900 \
             needed (5 % tolerance)"
        );
    }

    #[test]
    fn a_run_worse_within_the_tolerance_passes() {
        let old = run("old", "als", BACKTEST, Some(0.20));
        let new = run("new", "als", BACKTEST, Some(0.191));
        assert!(check(&new, &served(old.clone()), 0.05).passed);
        // Exactly at the floor is still within.
        let at_floor = run("new", "als", BACKTEST, Some(0.20 * (1.0 - 0.05)));
        assert!(check(&at_floor, &served(old), 0.05).passed);
    }

    #[test]
    fn a_run_worse_beyond_the_tolerance_is_refused_with_the_figures() {
        let old = run("old", "als", BACKTEST, Some(0.20));
        let new = run("new", "popularity", BACKTEST, Some(0.15));
        let decision = check(&new, &served(old.clone()), 0.05);
        assert!(!decision.passed);
        assert_eq!(
            decision.reason,
            "ndcg@10 0.1500 (run \"new\", model popularity, backtest on 2026-11-21) is below \
             0.1900, the served 0.2000 (run \"old\", model als, backtest on 2026-11-21) less the \
             5 % tolerance"
        );
        // A looser tolerance lets the same run through; none refuses any drop.
        assert!(check(&new, &served(old.clone()), 0.3).passed);
        let slightly_worse = run("new", "als", BACKTEST, Some(0.1999));
        assert!(!check(&slightly_worse, &served(old), 0.0).passed);
    }

    #[test]
    fn nothing_served_passes_and_says_so() {
        let new = run("new", "als", BACKTEST, Some(0.01));
        let decision = check(&new, &Baseline::NoGeneration, 0.05);
        assert!(decision.passed);
        assert!(
            decision.reason.contains("no generation is served"),
            "{decision}"
        );
        let gone = Baseline::RunGone {
            run_id: "old".into(),
        };
        let decision = check(&new, &gone, 0.05);
        assert!(decision.passed);
        assert!(
            decision.reason.contains("\"old\" is no longer in the lake"),
            "{decision}"
        );
    }

    #[test]
    fn a_missing_figure_passes_and_names_what_is_missing() {
        let old = run("old", "als", BACKTEST, Some(0.20));
        let no_ndcg = run("new", "als", BACKTEST, None);
        let decision = check(&no_ndcg, &served(old.clone()), 0.05);
        assert!(decision.passed);
        assert_eq!(
            decision.reason,
            "run \"new\" has no ndcg@10 for its chosen model als in its backtest evaluation, \
             nothing to compare"
        );

        let mut no_evaluation = run("new", "als", BACKTEST, Some(0.01));
        no_evaluation.evaluations.clear();
        let decision = check(&no_evaluation, &served(old.clone()), 0.05);
        assert!(decision.passed);
        assert!(
            decision.reason.contains("no backtest or served evaluation"),
            "{decision}"
        );

        let old_without = run("old", "als", BACKTEST, None);
        let new = run("new", "als", BACKTEST, Some(0.01));
        let decision = check(&new, &served(old_without), 0.05);
        assert!(decision.passed);
        assert!(
            decision.reason.starts_with("run \"old\" has no ndcg@10"),
            "{decision}"
        );

        // The testkit's runs carry no training config at all.
        let mut no_config = run("new", "als", BACKTEST, Some(0.01));
        no_config.config = serde_json::Value::Null;
        let decision = check(&no_config, &served(old), 0.05);
        assert!(decision.passed);
        assert!(decision.reason.contains("no select_metric"), "{decision}");
    }

    #[test]
    fn the_served_evaluation_stands_in_only_for_a_missing_backtest() {
        let old = run("old", "als", SERVED, Some(0.20));
        let new = run("new", "als", BACKTEST, Some(0.10));
        let decision = check(&new, &served(old), 0.05);
        assert!(!decision.passed);
        assert!(
            decision.reason.contains("served on 2026-11-21"),
            "{decision}"
        );

        // With both, the backtest counts, even when the served figure would refuse.
        let mut both = run("new", "als", BACKTEST, Some(0.20));
        both.evaluations.push(Evaluation {
            role: SERVED.into(),
            test_date: "2026-11-22".into(),
            metrics: BTreeMap::from([("als".to_owned(), json!({"ndcg@10": 0.01}))]),
        });
        let old = run("old", "als", BACKTEST, Some(0.20));
        assert!(check(&both, &served(old), 0.05).passed);
    }

    #[test]
    fn the_new_runs_metric_is_compared() {
        let mut old = run("old", "als", BACKTEST, Some(0.20));
        old.config = json!({"select_metric": "hr@10"});
        let mut new = run("new", "als", BACKTEST, Some(0.20));
        new.config = json!({"select_metric": "recall@10"});
        let decision = check(&new, &served(old), 0.05);
        assert!(
            decision.reason.starts_with("recall@10 0.4000"),
            "{decision}"
        );
    }
}
