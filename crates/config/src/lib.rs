//! Node configuration: one versioned TOML file, overridden by `NEWSREC_*` environment variables,
//! validated into typed sections.
//!
//! Consumes an optional file path and the process environment; produces a [`Config`] whose every
//! value has been range-checked. Unknown keys are errors (a typo must not silently fall back to a
//! default). Every key is documented in `config/newsrec.example.toml`, whose values are the
//! defaults (a test keeps the two equal). Environment variables use `__` between levels:
//! `NEWSREC_INGEST__MAX_BODY_BYTES=1048576`. This crate holds plain data only, so that `serve`
//! can depend on it without depending on the models.

use std::path::Path;

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

/// The config file format version this build reads.
pub const CONFIG_VERSION: u32 = 1;

/// Top-level keys; environment variables outside these are not config (e.g. test settings).
const SECTIONS: &[&str] = &[
    "version", "node_id", "lake", "ingest", "train", "publish", "serve", "signals", "kv",
];

/// The whole node configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub version: u32,
    /// Names this node's lake objects (`<node_id>-<seq>.parquet`); unique per ingest node.
    pub node_id: String,
    pub lake: LakeConfig,
    pub ingest: IngestConfig,
    pub train: TrainConfig,
    pub publish: PublishConfig,
    pub serve: ServeConfig,
    pub signals: SignalsConfig,
    pub kv: KvConfig,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// Object-store URI of the lake; empty means `<data-dir>/lake`.
    pub uri: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Most records accepted in one request.
    pub max_records_per_request: usize,
    /// When a request is answered: after the write-ahead log's fsync, after the lake object,
    /// or at once (at-most-once).
    pub ack: AckSetting,
    /// Buffered events are written to the lake when they reach this size (MiB, 1..=128)...
    pub buffer_size_mib: u32,
    /// ...or when the oldest has waited this long (seconds, 0..=900; 0 = at once).
    pub buffer_interval_s: u32,
    /// Accepted bytes not yet in the lake past which requests get 429 (MiB).
    pub max_backlog_mib: u32,
    /// Folder of the write-ahead log; empty means `<data-dir>/wal`.
    pub wal_dir: String,
    /// Bearer keys accepted by `POST /v1/events`; empty = open (e.g. browsers on a trusted site).
    pub write_keys: Vec<String>,
    /// Origins allowed to post events from a browser (CORS); empty = no CORS headers.
    pub cors_origins: Vec<String>,
}

/// `ingest.ack`: when an ingest request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckSetting {
    /// After the request is fsynced in the write-ahead log.
    #[default]
    Wal,
    /// After the request's events are in a committed lake object.
    Lake,
    /// At once (202): a crash can lose acknowledged events.
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Days of clicks before the serving day that a model trains on.
    pub window_days: u32,
    /// Length of each user's published list.
    pub top_k: usize,
    /// Length of the fallback (popularity) list.
    pub fallback_k: usize,
    /// Length of each article's similar-articles list (`GET /v1/articles/{id}/similar`).
    pub similar_k: usize,
    /// The metric that picks the served model: `hr@10`, `recall@10` or `ndcg@10`.
    pub select_metric: String,
    pub popularity: PopularityConfig,
    pub cooccurrence: CooccurrenceConfig,
    pub als: AlsConfig,
    /// Users per part of a run's lists (each part is one checkpointed unit of work).
    pub list_part_users: usize,
    pub checkpoint: CheckpointConfig,
    pub spot: SpotConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Checkpoint store: empty = the lake (`checkpoints/<run_id>/`), else a folder or URI
    /// (`s3://…`). Under SageMaker the default is `/opt/ml/checkpoints`.
    pub uri: String,
    /// Keep a run's checkpoints after it completes (they are deleted by default).
    pub keep: bool,
    /// Least seconds between checkpoints inside a stage (ALS iterations, list parts); stage
    /// ends and stops always checkpoint. 0: after every unit of work.
    pub min_interval_s: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpotConfig {
    /// Poll the EC2 spot interruption notice and checkpoint and exit when one appears.
    pub notice: bool,
    /// Base URL of the instance metadata service (IMDSv2).
    pub metadata_url: String,
    pub notice_poll_ms: u64,
    /// Simulated wait for spot capacity after an interruption (`--spot` runner), ms.
    pub capacity_delay_ms: u64,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            uri: String::new(),
            keep: false,
            min_interval_s: 30,
        }
    }
}

impl Default for SpotConfig {
    fn default() -> Self {
        SpotConfig {
            notice: false,
            metadata_url: "http://169.254.169.254".into(),
            notice_poll_ms: 5_000,
            capacity_delay_ms: 2_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlsConfig {
    /// Fit and evaluate implicit-feedback ALS in every run.
    pub enabled: bool,
    pub factors: usize,
    // f64 here so a TOML value like 0.01 round-trips exactly; the model takes f32.
    pub regularization: f64,
    pub alpha: f64,
    pub iterations: usize,
    pub cg_steps: usize,
    pub seed: u64,
    pub popularity_weight: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PopularityConfig {
    /// Half-life of a click's weight, hours; 0 means plain counts.
    pub half_life_hours: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CooccurrenceConfig {
    /// `jaccard` or `lift`.
    pub similarity: String,
    pub affinity_half_life_hours: f64,
    pub min_cooccurrence: u32,
    pub neighbours: usize,
    pub popularity_weight: f32,
    /// `linear` or `geometric`.
    pub blend: String,
    pub popular_candidates: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublishConfig {
    /// Sealed generations kept besides the current one (for rollback).
    pub keep_generations: usize,
    /// Users written per store batch.
    pub batch_users: usize,
    /// Refuse to publish a run that scores clearly worse than the served one (`--force`
    /// overrides).
    pub gate: bool,
    /// How much worse the new run's chosen model may score on `train.select_metric` (backtest),
    /// as a fraction of the served run's figure (0..=1; 0.05 = up to 5 % lower). Relative,
    /// because the two runs are tested on different days and figures move with the news.
    pub gate_tolerance: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Address `newsrec up` listens on.
    pub listen: String,
    /// List length when a request gives no `k`.
    pub default_k: usize,
    /// Largest `k` a request may ask for.
    pub max_k: usize,
    /// How often a serving node checks the store for a new generation.
    pub refresh_interval_ms: u64,
    /// Bearer keys accepted by the recommendation routes; empty = open.
    pub api_keys: Vec<String>,
    /// Bearer keys accepted by the admin routes (article registration); empty = open.
    pub admin_keys: Vec<String>,
    /// An article is not served once this many hours have passed since it was published (or,
    /// publish time unknown, since its first click), unless it has its own expiry.
    pub article_max_age_hours: u32,
    /// Recommendation requests served at once; more wait up to `queue_budget_ms`...
    pub max_in_flight: usize,
    /// ...and are then refused with a fast 503 + Retry-After.
    pub queue_budget_ms: u64,
    /// Users whose recent reads this node remembers (for filtering read articles).
    pub history_max_users: usize,
    /// Recent reads remembered per user.
    pub history_reads_per_user: usize,
    /// How long a read is remembered, hours of event time.
    pub history_ttl_hours: u32,
    pub blend: BlendConfig,
}

/// How a list blends the daily model with the real-time signals (`docs/signals.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlendConfig {
    /// α: share of the score from the daily list, 0..=1.
    pub daily_weight: f64,
    /// Scales trending; 0 turns it off.
    pub trending_weight: f64,
    /// Scales co-visitation evidence; 0 turns it off.
    pub covisit_weight: f64,
    /// κ: co-visitation evidence (decayed clicks) that weighs as much as trending.
    pub covisit_prior: f64,
    /// Top trending articles considered per request.
    pub trending_candidates: usize,
    /// The user's newest reads whose co-visited neighbours are candidates.
    pub covisit_seeds: usize,
    /// Neighbours taken per seed.
    pub covisit_candidates: usize,
}

impl Default for BlendConfig {
    fn default() -> Self {
        BlendConfig {
            daily_weight: 0.02,
            trending_weight: 1.0,
            covisit_weight: 1.0,
            covisit_prior: 5.0,
            trending_candidates: 100,
            covisit_seeds: 3,
            covisit_candidates: 30,
        }
    }
}

/// Real-time signals fed by ingest: trending, co-visitation, and where they are shared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignalsConfig {
    /// Half-life of an article's click count, minutes of event time.
    pub trending_half_life_min: u32,
    /// Articles whose counts are kept.
    pub trending_max_articles: usize,
    /// Articles in the ranked trending snapshot.
    pub trending_snapshot: usize,
    /// The snapshot is re-ranked after this many ms of event time once clicks arrived.
    pub refresh_ms: u64,
    /// Half-life of a co-visitation edge, minutes.
    pub covisit_half_life_min: u32,
    /// A read links to the reader's earlier reads within this many minutes...
    pub covisit_window_min: u32,
    /// ...at most this many of them.
    pub covisit_lookback: usize,
    /// Weight of the backward edge B → A when A was read before B (the forward edge counts 1).
    pub covisit_backward_weight: f64,
    /// Neighbours kept per article (the weakest makes way).
    pub covisit_max_neighbours: usize,
    /// Articles with neighbours kept.
    pub covisit_max_articles: usize,
    /// Clicks this far behind the newest event time are not counted (they still reach the lake).
    pub max_lateness_s: u64,
    /// Empty: signals live in this node, fed by its own ingest. `redis://host:port`: ingest nodes
    /// publish acked clicks to a Redis stream and serving nodes consume it (split roles).
    pub share: String,
    /// The Redis stream name.
    pub share_stream: String,
    /// Entries the stream retains (approximate): a serving node that starts replays them.
    pub share_max_len: u64,
}

impl Default for SignalsConfig {
    fn default() -> Self {
        SignalsConfig {
            trending_half_life_min: 60,
            trending_max_articles: 200_000,
            trending_snapshot: 200,
            refresh_ms: 250,
            covisit_half_life_min: 20,
            covisit_window_min: 30,
            covisit_lookback: 3,
            covisit_backward_weight: 0.0,
            covisit_max_neighbours: 50,
            covisit_max_articles: 200_000,
            max_lateness_s: 3_600,
            share: String::new(),
            share_stream: "newsrec:clicks".into(),
            share_max_len: 1_000_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KvConfig {
    /// Serving store; empty means the embedded store in `<data-dir>/kv`.
    pub uri: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            version: CONFIG_VERSION,
            node_id: "node-1".into(),
            lake: LakeConfig::default(),
            ingest: IngestConfig::default(),
            train: TrainConfig::default(),
            publish: PublishConfig::default(),
            serve: ServeConfig::default(),
            signals: SignalsConfig::default(),
            kv: KvConfig::default(),
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_body_bytes: 4 * 1024 * 1024,
            max_records_per_request: 10_000,
            ack: AckSetting::Wal,
            buffer_size_mib: 16,
            buffer_interval_s: 60,
            max_backlog_mib: 256,
            wal_dir: String::new(),
            write_keys: Vec::new(),
            cors_origins: Vec::new(),
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            window_days: 7,
            top_k: 50,
            fallback_k: 200,
            similar_k: 20,
            select_metric: "ndcg@10".into(),
            popularity: PopularityConfig::default(),
            cooccurrence: CooccurrenceConfig::default(),
            als: AlsConfig::default(),
            list_part_users: 50_000,
            checkpoint: CheckpointConfig::default(),
            spot: SpotConfig::default(),
        }
    }
}

impl Default for AlsConfig {
    fn default() -> Self {
        AlsConfig {
            enabled: true,
            factors: 64,
            regularization: 0.01,
            alpha: 40.0,
            iterations: 15,
            cg_steps: 3,
            seed: 42,
            popularity_weight: 0.5,
        }
    }
}

impl Default for PopularityConfig {
    fn default() -> Self {
        PopularityConfig {
            half_life_hours: 2.0,
        }
    }
}

impl Default for CooccurrenceConfig {
    fn default() -> Self {
        CooccurrenceConfig {
            similarity: "jaccard".into(),
            affinity_half_life_hours: 24.0,
            min_cooccurrence: 2,
            neighbours: 100,
            popularity_weight: 0.5,
            blend: "linear".into(),
            popular_candidates: 200,
        }
    }
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            keep_generations: 3,
            batch_users: 5_000,
            gate: true,
            gate_tolerance: 0.05,
        }
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: "127.0.0.1:8080".into(),
            default_k: 10,
            max_k: 100,
            refresh_interval_ms: 1_000,
            api_keys: Vec::new(),
            admin_keys: Vec::new(),
            article_max_age_hours: 48,
            max_in_flight: 512,
            queue_budget_ms: 50,
            history_max_users: 1_000_000,
            history_reads_per_user: 100,
            history_ttl_hours: 48,
            blend: BlendConfig::default(),
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("config file {path} not found")]
    NotFound { path: String },
    #[error("invalid configuration: {0}")]
    Parse(Box<figment::Error>),
    #[error("invalid configuration: {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl Config {
    /// Defaults, then the file (when given), then `NEWSREC_*` environment variables; validated.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::NotFound {
                    path: path.display().to_string(),
                });
            }
            figment = figment.merge(Toml::file(path));
        }
        let env = Env::prefixed("NEWSREC_").split("__").filter(|key| {
            let top = key
                .as_str()
                .split('.')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            SECTIONS.contains(&top.as_str())
        });
        figment = figment.merge(env);
        Config::from_figment(figment)
    }

    /// Parses a TOML document over the defaults (no environment); validated.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let figment =
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(text));
        Config::from_figment(figment)
    }

    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let config: Config = figment
            .extract()
            .map_err(|error| ConfigError::Parse(Box::new(error)))?;
        config.validate()?;
        Ok(config)
    }

    /// Range-checks every value.
    fn validate_signals(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: String| Err(ConfigError::Invalid { key, reason });
        let signals = &self.signals;
        for (key, minutes) in [
            (
                "signals.trending_half_life_min",
                signals.trending_half_life_min,
            ),
            (
                "signals.covisit_half_life_min",
                signals.covisit_half_life_min,
            ),
            ("signals.covisit_window_min", signals.covisit_window_min),
        ] {
            if !(1..=10_080).contains(&minutes) {
                return invalid(key, format!("must be 1..=10080 minutes, got {minutes}"));
            }
        }
        for (key, count) in [
            (
                "signals.trending_max_articles",
                signals.trending_max_articles,
            ),
            ("signals.trending_snapshot", signals.trending_snapshot),
            (
                "signals.covisit_max_neighbours",
                signals.covisit_max_neighbours,
            ),
            ("signals.covisit_max_articles", signals.covisit_max_articles),
            ("signals.covisit_lookback", signals.covisit_lookback),
        ] {
            if !(1..=100_000_000).contains(&count) {
                return invalid(key, format!("must be 1..=100000000, got {count}"));
            }
        }
        if !(0.0..=10.0).contains(&signals.covisit_backward_weight) {
            return invalid(
                "signals.covisit_backward_weight",
                format!("must be 0..=10, got {}", signals.covisit_backward_weight),
            );
        }
        if !signals.share.is_empty()
            && !signals.share.starts_with("redis://")
            && !signals.share.starts_with("rediss://")
        {
            return invalid(
                "signals.share",
                format!("must be empty or a redis:// URL, got {:?}", signals.share),
            );
        }
        if signals.share_stream.is_empty() || signals.share_max_len == 0 {
            return invalid(
                "signals.share_stream",
                "the stream needs a name and share_max_len >= 1".into(),
            );
        }
        let blend = &self.serve.blend;
        if !(0.0..=1.0).contains(&blend.daily_weight) {
            return invalid(
                "serve.blend.daily_weight",
                format!("must be 0..=1, got {}", blend.daily_weight),
            );
        }
        for (key, weight) in [
            ("serve.blend.trending_weight", blend.trending_weight),
            ("serve.blend.covisit_weight", blend.covisit_weight),
            ("serve.blend.covisit_prior", blend.covisit_prior),
        ] {
            if !(weight.is_finite() && (0.0..=1000.0).contains(&weight)) {
                return invalid(key, format!("must be 0..=1000, got {weight}"));
            }
        }
        if blend.covisit_weight > 0.0 && blend.trending_weight > 0.0 && blend.covisit_prior <= 0.0 {
            return invalid(
                "serve.blend.covisit_prior",
                "must be > 0 when trending and co-visitation are both on".into(),
            );
        }
        if blend.daily_weight + blend.trending_weight + blend.covisit_weight <= 0.0 {
            return invalid(
                "serve.blend",
                "at least one of daily_weight, trending_weight, covisit_weight must be > 0".into(),
            );
        }
        if blend.trending_candidates > 10_000
            || blend.covisit_seeds > 100
            || blend.covisit_candidates > 10_000
        {
            return invalid(
                "serve.blend",
                "trending_candidates and covisit_candidates at most 10000, covisit_seeds at most 100".into(),
            );
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: String| Err(ConfigError::Invalid { key, reason });
        if self.version != CONFIG_VERSION {
            return invalid(
                "version",
                format!(
                    "this build reads version {CONFIG_VERSION}, the file says {}",
                    self.version
                ),
            );
        }
        let node_ok = !self.node_id.is_empty()
            && self.node_id.len() <= 48
            && self
                .node_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !node_ok {
            return invalid(
                "node_id",
                format!("must be 1-48 of [A-Za-z0-9_-], got {:?}", self.node_id),
            );
        }
        let ingest = &self.ingest;
        if !(1024..=256 * 1024 * 1024).contains(&ingest.max_body_bytes) {
            return invalid(
                "ingest.max_body_bytes",
                format!("must be 1 KiB..=256 MiB, got {}", ingest.max_body_bytes),
            );
        }
        if !(1..=1_000_000).contains(&ingest.max_records_per_request) {
            return invalid(
                "ingest.max_records_per_request",
                format!(
                    "must be 1..=1000000, got {}",
                    ingest.max_records_per_request
                ),
            );
        }
        if !(1..=128).contains(&ingest.buffer_size_mib) {
            return invalid(
                "ingest.buffer_size_mib",
                format!("must be 1..=128, got {}", ingest.buffer_size_mib),
            );
        }
        if ingest.buffer_interval_s > 900 {
            return invalid(
                "ingest.buffer_interval_s",
                format!("must be 0..=900 seconds, got {}", ingest.buffer_interval_s),
            );
        }
        if ingest.max_backlog_mib < 2 * ingest.buffer_size_mib || ingest.max_backlog_mib > 65_536 {
            return invalid(
                "ingest.max_backlog_mib",
                format!(
                    "must be at least twice ingest.buffer_size_mib ({}) and at most 65536, got {}",
                    ingest.buffer_size_mib, ingest.max_backlog_mib
                ),
            );
        }
        self.validate_signals()?;
        let train = &self.train;
        if !(1..=365).contains(&train.window_days) {
            return invalid(
                "train.window_days",
                format!("must be 1..=365, got {}", train.window_days),
            );
        }
        if !(1..=1000).contains(&train.top_k) {
            return invalid(
                "train.top_k",
                format!("must be 1..=1000, got {}", train.top_k),
            );
        }
        if !(1..=10_000).contains(&train.fallback_k) {
            return invalid(
                "train.fallback_k",
                format!("must be 1..=10000, got {}", train.fallback_k),
            );
        }
        if !(1..=1000).contains(&train.similar_k) {
            return invalid(
                "train.similar_k",
                format!("must be 1..=1000, got {}", train.similar_k),
            );
        }
        if !["hr@10", "recall@10", "ndcg@10"].contains(&train.select_metric.as_str()) {
            return invalid(
                "train.select_metric",
                format!(
                    "must be hr@10, recall@10 or ndcg@10, got {:?}",
                    train.select_metric
                ),
            );
        }
        if !(train.popularity.half_life_hours >= 0.0
            && train.popularity.half_life_hours.is_finite())
        {
            return invalid(
                "train.popularity.half_life_hours",
                format!("must be >= 0, got {}", train.popularity.half_life_hours),
            );
        }
        if !(1..=10_000_000).contains(&train.list_part_users) {
            return invalid(
                "train.list_part_users",
                format!("must be 1..=10000000, got {}", train.list_part_users),
            );
        }
        let spot = &train.spot;
        if spot.notice_poll_ms == 0 {
            return invalid("train.spot.notice_poll_ms", "must be > 0".into());
        }
        let co = &train.cooccurrence;
        if !["jaccard", "lift"].contains(&co.similarity.as_str()) {
            return invalid(
                "train.cooccurrence.similarity",
                format!("must be jaccard or lift, got {:?}", co.similarity),
            );
        }
        if !(co.affinity_half_life_hours >= 0.0 && co.affinity_half_life_hours.is_finite()) {
            return invalid(
                "train.cooccurrence.affinity_half_life_hours",
                format!("must be >= 0, got {}", co.affinity_half_life_hours),
            );
        }
        if co.min_cooccurrence == 0 {
            return invalid(
                "train.cooccurrence.min_cooccurrence",
                "must be at least 1".into(),
            );
        }
        if !(1..=10_000).contains(&co.neighbours) {
            return invalid(
                "train.cooccurrence.neighbours",
                format!("must be 1..=10000, got {}", co.neighbours),
            );
        }
        if !(0.0..=1.0).contains(&co.popularity_weight) {
            return invalid(
                "train.cooccurrence.popularity_weight",
                format!("must be 0..=1, got {}", co.popularity_weight),
            );
        }
        if !["linear", "geometric"].contains(&co.blend.as_str()) {
            return invalid(
                "train.cooccurrence.blend",
                format!("must be linear or geometric, got {:?}", co.blend),
            );
        }
        if co.popular_candidates > 100_000 {
            return invalid(
                "train.cooccurrence.popular_candidates",
                format!("must be at most 100000, got {}", co.popular_candidates),
            );
        }
        let als = &train.als;
        if !(1..=1024).contains(&als.factors) {
            return invalid(
                "train.als.factors",
                format!("must be 1..=1024, got {}", als.factors),
            );
        }
        if !(als.regularization >= 0.0 && als.regularization.is_finite()) {
            return invalid(
                "train.als.regularization",
                format!("must be >= 0, got {}", als.regularization),
            );
        }
        if !(als.alpha >= 0.0 && als.alpha.is_finite()) {
            return invalid(
                "train.als.alpha",
                format!("must be >= 0, got {}", als.alpha),
            );
        }
        if !(1..=1000).contains(&als.iterations) {
            return invalid(
                "train.als.iterations",
                format!("must be 1..=1000, got {}", als.iterations),
            );
        }
        if !(1..=100).contains(&als.cg_steps) {
            return invalid(
                "train.als.cg_steps",
                format!("must be 1..=100, got {}", als.cg_steps),
            );
        }
        if !(0.0..=1.0).contains(&als.popularity_weight) {
            return invalid(
                "train.als.popularity_weight",
                format!("must be 0..=1, got {}", als.popularity_weight),
            );
        }
        if !(1..=100_000).contains(&self.publish.batch_users) {
            return invalid(
                "publish.batch_users",
                format!("must be 1..=100000, got {}", self.publish.batch_users),
            );
        }
        // `contains` is false for NaN too.
        if !(0.0..=1.0).contains(&self.publish.gate_tolerance) {
            return invalid(
                "publish.gate_tolerance",
                format!(
                    "must be a fraction 0..=1 (0.05 = 5 %), got {}",
                    self.publish.gate_tolerance
                ),
            );
        }
        let serve = &self.serve;
        if serve.listen.parse::<std::net::SocketAddr>().is_err() {
            return invalid(
                "serve.listen",
                format!(
                    "must be an address like 127.0.0.1:8080, got {:?}",
                    serve.listen
                ),
            );
        }
        if !(1..=1000).contains(&serve.max_k)
            || serve.default_k == 0
            || serve.default_k > serve.max_k
        {
            return invalid(
                "serve.default_k",
                format!(
                    "need 1 <= default_k ({}) <= max_k ({}) <= 1000",
                    serve.default_k, serve.max_k
                ),
            );
        }
        if !(50..=600_000).contains(&serve.refresh_interval_ms) {
            return invalid(
                "serve.refresh_interval_ms",
                format!("must be 50..=600000, got {}", serve.refresh_interval_ms),
            );
        }
        if !(1..=24 * 3650).contains(&serve.article_max_age_hours) {
            return invalid(
                "serve.article_max_age_hours",
                format!("must be 1..=87600, got {}", serve.article_max_age_hours),
            );
        }
        if !(1..=100_000).contains(&serve.max_in_flight) {
            return invalid(
                "serve.max_in_flight",
                format!("must be 1..=100000, got {}", serve.max_in_flight),
            );
        }
        if serve.queue_budget_ms > 10_000 {
            return invalid(
                "serve.queue_budget_ms",
                format!("must be at most 10000, got {}", serve.queue_budget_ms),
            );
        }
        if !(1..=100_000_000).contains(&serve.history_max_users) {
            return invalid(
                "serve.history_max_users",
                format!("must be 1..=100000000, got {}", serve.history_max_users),
            );
        }
        if !(1..=10_000).contains(&serve.history_reads_per_user) {
            return invalid(
                "serve.history_reads_per_user",
                format!("must be 1..=10000, got {}", serve.history_reads_per_user),
            );
        }
        if !(1..=24 * 365).contains(&serve.history_ttl_hours) {
            return invalid(
                "serve.history_ttl_hours",
                format!("must be 1..=8760, got {}", serve.history_ttl_hours),
            );
        }
        for origin in &self.ingest.cors_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return invalid(
                    "ingest.cors_origins",
                    format!("each origin must start with http:// or https://, got {origin:?}"),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../config/newsrec.example.toml");

    #[test]
    fn the_example_file_documents_exactly_the_defaults() {
        let parsed = Config::from_toml(EXAMPLE).unwrap();
        assert_eq!(parsed, Config::default());
        // Every key of the defaults appears in the example (uncommented).
        let example: toml::Table = toml::from_str(EXAMPLE).unwrap();
        let defaults: toml::Table = toml::Table::try_from(Config::default()).unwrap();
        assert_eq!(example, defaults);
    }

    #[test]
    fn a_wrong_key_is_named() {
        let error = Config::from_toml("[ingest]\nmax_body_byte = 10\n").unwrap_err();
        let message = error.to_string();
        assert!(message.contains("max_body_byte"), "{message}");
    }

    #[test]
    fn out_of_range_values_are_refused_with_the_key() {
        let error = Config::from_toml("[train]\nwindow_days = 0\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid configuration: train.window_days: must be 1..=365, got 0"
        );
        let error = Config::from_toml("version = 2\n").unwrap_err();
        assert!(error.to_string().contains("version"), "{error}");
        // A percentage where a fraction belongs.
        let error = Config::from_toml("[publish]\ngate_tolerance = 5.0\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid configuration: publish.gate_tolerance: must be a fraction 0..=1 (0.05 = 5 %), got 5"
        );
    }

    #[test]
    // figment's Jail closure must return figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    fn environment_overrides_the_file_and_ignores_foreign_variables() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("n.toml", "[ingest]\nmax_body_bytes = 2048\n")?;
            jail.set_env("NEWSREC_INGEST__BUFFER_INTERVAL_S", "5");
            jail.set_env("NEWSREC_TEST_REDIS_URL", "redis://127.0.0.1/");
            let config = Config::load(Some(Path::new("n.toml"))).unwrap();
            assert_eq!(config.ingest.max_body_bytes, 2048);
            assert_eq!(config.ingest.buffer_interval_s, 5);
            Ok(())
        });
        assert!(matches!(
            Config::load(Some(Path::new("/nonexistent.toml"))),
            Err(ConfigError::NotFound { .. })
        ));
    }

    proptest::proptest! {
        // Fuzz: arbitrary text is parsed or refused with an error, never a panic.
        #[test]
        fn arbitrary_text_never_panics(text in "[a-z_\\[\\]=\"0-9. \n]{0,200}") {
            let _ = Config::from_toml(&text);
        }
    }
}
