//! The `[train]` section: what shapes a run (window, list lengths, the models' parameters, the
//! metric that picks the served model) and how it is executed (checkpoints, spot notice).
//!
//! One serde type read straight from the node's TOML file; [`Settings::validate`] holds the
//! bounds, delegating each model's parameters to the model's own check so that a bound exists
//! once. ALS is the one section whose TOML form differs from the model's parameters (an
//! `enabled` switch, and `f64` numbers so that a value like 0.01 reads and prints back as
//! written); [`AlsSettings::params`] is the only conversion.

use chrono::NaiveDate;
use newsrec_lake::TimeWindow;
use newsrec_lake_query::EngineSettings;
use newsrec_model::{AlsParams, CooccurrenceParams, ModelError, PopularityParams};
use newsrec_rollup::RollupSettings;
use serde::{Deserialize, Serialize};

/// The `[train]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Days of clicks before the serving day that a model trains on.
    pub window_days: u32,
    /// Length of each user's published list.
    pub top_k: usize,
    /// Length of the fallback (popularity) list.
    pub fallback_k: usize,
    /// Length of each article's similar-articles list (`GET /v1/articles/{id}/similar`).
    pub similar_k: usize,
    /// The backtest metric that picks the served model.
    pub select_metric: Metric,
    pub popularity: PopularityParams,
    pub cooccurrence: CooccurrenceParams,
    pub als: AlsSettings,
    /// Users per `recs-NNNNN.parquet` part (one checkpointed unit of work each).
    pub list_part_users: usize,
    /// Readers whose P1 figures are computed (a deterministic sample by a hash of their id), so
    /// the backtest's cost stops growing with the audience. Windows with no more readers than
    /// this evaluate everyone; ALS is fitted only then (its factors for every reader would
    /// not fit the memory target), and the manifest says when it was left out.
    pub eval_sample_users: usize,
    /// MiB the query engine reading the lake may hold in its sorts and aggregations; past it
    /// they spill to `spill_dir`. Decoded batches in flight come on top (a few MiB per core).
    pub memory_limit_mib: u64,
    /// Folder for the engine's spill files; empty: the system's temporary folder.
    pub spill_dir: String,
    pub rollups: RollupShape,
    pub checkpoint: CheckpointSettings,
    pub spot: SpotSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            window_days: 7,
            top_k: 50,
            fallback_k: 200,
            similar_k: 20,
            select_metric: Metric::Ndcg,
            popularity: PopularityParams::default(),
            cooccurrence: CooccurrenceParams::default(),
            als: AlsSettings::default(),
            list_part_users: 50_000,
            eval_sample_users: 250_000,
            memory_limit_mib: 1536,
            spill_dir: String::new(),
            rollups: RollupShape::default(),
            checkpoint: CheckpointSettings::default(),
            spot: SpotSettings::default(),
        }
    }
}

/// A backtest metric at k = 10, named as in the manifest's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Metric {
    #[serde(rename = "hr@10")]
    HitRate,
    #[serde(rename = "recall@10")]
    Recall,
    #[serde(rename = "ndcg@10")]
    Ndcg,
}

impl Metric {
    /// The metric's name in the manifest and in `EvalMetrics::get`: `hr@10`, `recall@10`,
    /// `ndcg@10`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::HitRate => "hr@10",
            Metric::Recall => "recall@10",
            Metric::Ndcg => "ndcg@10",
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `[train.als]`: implicit-feedback ALS, fitted and evaluated in every run when enabled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlsSettings {
    pub enabled: bool,
    pub factors: usize,
    pub regularization: f64,
    pub alpha: f64,
    pub iterations: usize,
    pub cg_steps: usize,
    pub seed: u64,
    pub popularity_weight: f32,
}

impl Default for AlsSettings {
    fn default() -> Self {
        let params = AlsParams::default();
        AlsSettings {
            enabled: true,
            factors: params.factors,
            // Written as decimals, not widened from the model's f32, so that the example file
            // shows 0.01 (a test keeps the two equal once narrowed).
            regularization: 0.01,
            alpha: 40.0,
            iterations: params.iterations,
            cg_steps: params.cg_steps,
            seed: params.seed,
            popularity_weight: params.popularity_weight,
        }
    }
}

impl AlsSettings {
    /// The model's parameters; `None` when ALS is turned off.
    pub fn params(&self) -> Option<AlsParams> {
        self.enabled.then(|| self.model_params())
    }

    fn model_params(&self) -> AlsParams {
        AlsParams {
            factors: self.factors,
            regularization: self.regularization as f32,
            alpha: self.alpha as f32,
            iterations: self.iterations,
            cg_steps: self.cg_steps,
            seed: self.seed,
            popularity_weight: self.popularity_weight,
        }
    }
}

/// `[train.rollups]`: the shape of the hourly co-visitation rollups (`docs/lake-layout.md`).
/// Their decay half-life is `popularity.half_life_hours`; a change of any of them recomputes
/// the rollup tables it touches, nothing else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RollupShape {
    /// A session's first this many distinct articles form its co-visitation pairs.
    pub session_articles: u32,
    /// Partners kept per article and hour.
    pub pairs_per_article: u32,
}

impl Default for RollupShape {
    fn default() -> Self {
        let defaults = RollupSettings::default();
        RollupShape {
            session_articles: defaults.session_articles,
            pairs_per_article: defaults.pairs_per_article,
        }
    }
}

/// `[train.checkpoint]`: where a run's checkpoints go and how often.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointSettings {
    /// Checkpoint store: empty = the lake (`checkpoints/<run_id>/`), else a folder or URI
    /// (`s3://…`). Under SageMaker the default is `/opt/ml/checkpoints`.
    pub uri: String,
    /// Keep a run's checkpoints after it completes (they are deleted by default).
    pub keep: bool,
    /// Least seconds between checkpoints inside a stage (ALS iterations, list parts); stage
    /// ends and stops always checkpoint. 0: after every unit of work.
    pub min_interval_s: u64,
}

impl Default for CheckpointSettings {
    fn default() -> Self {
        CheckpointSettings {
            uri: String::new(),
            keep: false,
            min_interval_s: 30,
        }
    }
}

/// `[train.spot]`: the EC2 spot interruption notice and the local `--spot` runner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpotSettings {
    /// Poll the EC2 spot interruption notice and checkpoint and exit when one appears.
    pub notice: bool,
    /// Base URL of the instance metadata service (IMDSv2).
    pub metadata_url: String,
    pub notice_poll_ms: u64,
    /// Simulated wait for spot capacity after an interruption (`--spot` runner), ms.
    pub capacity_delay_ms: u64,
}

impl Default for SpotSettings {
    fn default() -> Self {
        SpotSettings {
            notice: false,
            metadata_url: "http://169.254.169.254".into(),
            notice_poll_ms: 5_000,
            capacity_delay_ms: 2_000,
        }
    }
}

/// A `[train]` setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct SettingsError {
    /// The key inside the section, e.g. `als.iterations`.
    pub key: String,
    pub reason: String,
}

impl Settings {
    /// The training window of serving day `day`: `[day - window_days, day)`.
    pub fn window_for(&self, day: NaiveDate) -> TimeWindow {
        TimeWindow::days(day - chrono::Days::new(u64::from(self.window_days)), day)
    }

    /// The query engine's budget and spill folder.
    pub fn engine_settings(&self) -> EngineSettings {
        EngineSettings {
            memory_limit_bytes: self.memory_limit_mib.saturating_mul(1 << 20),
            spill_dir: (!self.spill_dir.is_empty()).then(|| self.spill_dir.clone().into()),
            threads: 0,
        }
    }

    /// What the hourly rollups are computed with.
    pub fn rollup_settings(&self) -> RollupSettings {
        RollupSettings {
            decay_half_life_hours: self.popularity.half_life_hours,
            session_articles: self.rollups.session_articles,
            pairs_per_article: self.rollups.pairs_per_article,
        }
    }

    /// Range-checks every value; the first one out of range is named.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |key: &str, reason: String| {
            Err(SettingsError {
                key: key.into(),
                reason,
            })
        };
        for (key, value, max) in [
            ("window_days", self.window_days as usize, 365),
            ("top_k", self.top_k, 1000),
            ("fallback_k", self.fallback_k, 10_000),
            ("similar_k", self.similar_k, 1000),
            ("list_part_users", self.list_part_users, 10_000_000),
            ("eval_sample_users", self.eval_sample_users, 10_000_000),
        ] {
            if !(1..=max).contains(&value) {
                return invalid(key, format!("must be 1..={max}, got {value}"));
            }
        }
        // Below 16 MiB a query's spilling operators cannot each hold one batch of their state.
        if !(16..=1 << 30).contains(&self.memory_limit_mib) {
            return invalid(
                "memory_limit_mib",
                format!("must be 16..=1073741824, got {}", self.memory_limit_mib),
            );
        }
        if let Err(newsrec_rollup::RollupError::Settings { name, reason }) =
            self.rollup_settings().validate()
        {
            let key = match name {
                "decay_half_life_hours" => "popularity.half_life_hours".to_owned(),
                other => format!("rollups.{other}"),
            };
            return Err(SettingsError { key, reason });
        }
        let model = |section: &'static str| {
            move |error: ModelError| match error {
                ModelError::InvalidParameter { name, reason } => SettingsError {
                    key: format!("{section}.{name}"),
                    reason,
                },
                other => SettingsError {
                    key: section.into(),
                    reason: other.to_string(),
                },
            }
        };
        self.popularity.validate().map_err(model("popularity"))?;
        self.cooccurrence
            .validate()
            .map_err(model("cooccurrence"))?;
        self.als.model_params().validate().map_err(model("als"))?;
        let spot = &self.spot;
        if spot.notice_poll_ms == 0 {
            return invalid("spot.notice_poll_ms", "must be > 0".into());
        }
        Ok(())
    }

    /// What a run's output depends on, as the manifest records it (`config`) and the
    /// checkpoint fingerprint hashes it. Checkpoint, spot and memory settings change how a run
    /// is executed, never what it writes, so a run resumes whatever they are now.
    pub(crate) fn run_config(&self) -> RunConfig<'_> {
        RunConfig {
            window_days: self.window_days,
            top_k: self.top_k,
            fallback_k: self.fallback_k,
            similar_k: self.similar_k,
            select_metric: self.select_metric,
            popularity: &self.popularity,
            cooccurrence: &self.cooccurrence,
            als: self.als.params(),
            list_part_users: self.list_part_users,
            eval_sample_users: self.eval_sample_users,
            rollups: &self.rollups,
        }
    }
}

/// See [`Settings::run_config`]; the field order is the manifest's.
#[derive(Debug, Serialize)]
pub(crate) struct RunConfig<'a> {
    window_days: u32,
    top_k: usize,
    fallback_k: usize,
    similar_k: usize,
    select_metric: Metric,
    popularity: &'a PopularityParams,
    cooccurrence: &'a CooccurrenceParams,
    /// `None` (JSON `null`): ALS is not fitted.
    als: Option<AlsParams>,
    list_part_users: usize,
    eval_sample_users: usize,
    rollups: &'a RollupShape,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_match_the_models() {
        let settings = Settings::default();
        settings.validate().unwrap();
        assert_eq!(settings.als.params(), Some(AlsParams::default()));
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        let key = |edit: fn(&mut Settings)| {
            let mut settings = Settings::default();
            edit(&mut settings);
            settings.validate().unwrap_err().key
        };
        assert_eq!(key(|s| s.window_days = 0), "window_days");
        assert_eq!(key(|s| s.list_part_users = 0), "list_part_users");
        assert_eq!(key(|s| s.als.iterations = 1001), "als.iterations");
        assert_eq!(key(|s| s.als.cg_steps = 0), "als.cg_steps");
        assert_eq!(
            key(|s| s.cooccurrence.neighbours = 0),
            "cooccurrence.neighbours"
        );
        assert_eq!(
            key(|s| s.popularity.half_life_hours = -1.0),
            "popularity.half_life_hours"
        );
        assert_eq!(key(|s| s.spot.notice_poll_ms = 0), "spot.notice_poll_ms");
        assert_eq!(key(|s| s.memory_limit_mib = 15), "memory_limit_mib");
        assert_eq!(
            key(|s| s.rollups.session_articles = 1),
            "rollups.session_articles"
        );
        assert_eq!(
            key(|s| s.popularity.half_life_hours = 0.01),
            "popularity.half_life_hours"
        );
        // Off is still checked: turning ALS back on must not meet a bad value.
        assert_eq!(
            key(|s| {
                s.als.enabled = false;
                s.als.factors = 0;
            }),
            "als.factors"
        );
    }

    #[test]
    fn the_metric_reads_and_writes_its_manifest_name() {
        for metric in [Metric::HitRate, Metric::Recall, Metric::Ndcg] {
            let json = serde_json::to_string(&metric).unwrap();
            assert_eq!(json, format!("\"{}\"", metric.name()));
            assert_eq!(serde_json::from_str::<Metric>(&json).unwrap(), metric);
        }
        assert!(serde_json::from_str::<Metric>("\"ndcg@20\"").is_err());
    }

    #[test]
    fn the_run_config_is_the_manifest_form() {
        let mut settings = Settings::default();
        let config = serde_json::to_value(settings.run_config()).unwrap();
        assert_eq!(config["select_metric"], "ndcg@10");
        assert_eq!(config["als"]["regularization"], 0.01f32 as f64);
        assert!(config.get("checkpoint").is_none() && config.get("spot").is_none());
        settings.als.enabled = false;
        let config = serde_json::to_value(settings.run_config()).unwrap();
        assert!(config["als"].is_null());
    }
}
