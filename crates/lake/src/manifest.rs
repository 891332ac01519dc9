//! The run manifest (`runs/<run_id>/manifest.json`, format v1): what a training run did.
//!
//! Written last by `train`, so its presence marks a complete run; read by `publish` (outputs),
//! `plan` (timings) and people (config, data window, counts, metrics). Metrics and model
//! hyperparameters are kept as JSON values so this crate stays independent of the models.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The manifest format version this build writes.
pub const MANIFEST_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunManifest {
    pub manifest_version: u32,
    pub run_id: String,
    pub newsrec_version: String,
    pub created_at: String,
    /// The day the run's lists are meant to be served (D).
    pub serving_date: String,
    /// Training data window [start, end), dates and epoch milliseconds.
    pub window: DataWindow,
    /// The training configuration as given (all sections that shaped the run).
    pub config: serde_json::Value,
    pub counts: DataCounts,
    /// Each model fitted, with its hyperparameters.
    pub models: Vec<ModelEntry>,
    /// P1 evaluations: the backtest on D-1 and, when the lake holds D, the served models on D.
    pub evaluations: Vec<Evaluation>,
    /// The model whose lists were written.
    pub chosen_model: String,
    /// Why it was chosen (metric and values).
    pub chosen_because: String,
    pub outputs: RunOutputs,
    pub timings: Timings,
    /// How the run executed: starts, resumption, checkpoints, memory (absent in older runs).
    #[serde(default)]
    pub execution: Execution,
    /// What a reader of the figures should know: a model left out and why, a sampled
    /// evaluation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// How a run executed, across the starts it took.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    /// Times the job started on this run (1 when never interrupted).
    pub starts: u32,
    /// The checkpoint the final start resumed from, if it resumed.
    pub resumed_from: Option<String>,
    /// Checkpoints the final start wrote, and the time it spent writing them.
    pub checkpoints_written: u64,
    pub checkpoint_ms: u64,
    /// Peak resident memory of the final start's process (Linux), in bytes.
    pub peak_rss_bytes: Option<u64>,
    /// The hourly rollups the run read (absent in runs before rollups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollups: Option<RollupUse>,
}

/// The hourly rollups a run read: how many hours of its span, how many it found up to date, how
/// many it (re)computed, and their bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RollupUse {
    pub hours: u64,
    pub reused: u64,
    pub computed: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataWindow {
    pub start: String,
    pub end: String,
    pub start_ms: i64,
    pub end_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataCounts {
    /// Clicks in the window after deduplication.
    pub clicks: u64,
    /// Events dropped because their event id was seen before.
    pub duplicates: u64,
    /// Events of other types (views) not used for training.
    pub other_events: u64,
    pub users: u64,
    pub items: u64,
    /// Distinct (user, item) pairs.
    pub pairs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    pub name: String,
    pub params: serde_json::Value,
    /// Size figures of the fitted model (e.g. neighbour pairs).
    pub stats: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// `backtest` (trained on the window before D-1, tested on D-1) or `served` (tested on D).
    pub role: String,
    pub test_date: String,
    /// Per model: `{"hr@10": x, "recall@10": x, "ndcg@10": x, "users": n, ...}`.
    pub metrics: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOutputs {
    /// Users with a list.
    pub users: u64,
    /// Rows over all parts.
    pub rows: u64,
    pub top_k: usize,
    /// `recs-NNNNN.parquet` objects in order.
    pub parts: Vec<String>,
    /// The fallback list object.
    pub fallback: String,
    /// The similar-articles object and how many articles it lists (absent in older runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similar: Option<String>,
    #[serde(default)]
    pub similar_articles: u64,
    /// The ALS factors object (`als-factors.ckpt`, checkpoint framing), when ALS was fitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub als_factors: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub read_ms: u64,
    pub fit_ms: u64,
    pub eval_ms: u64,
    pub write_ms: u64,
    pub total_ms: u64,
}
