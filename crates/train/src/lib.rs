//! The daily training job and the offline evaluation, over windows of the lake.
//!
//! Consumes the hourly rollups (`newsrec-rollup`) of the lake's events for `[D - window, D)`
//! (plus D-1 and D for evaluation), bringing them up to date first; produces,
//! under `runs/<run_id>/`, top-K lists per user (in parts), the fallback list, each article's
//! similar articles and the ALS factors as Parquet, then the run manifest. It fits every
//! configured model (decayed popularity, SAR-style co-occurrence, implicit-feedback ALS),
//! backtests the same configuration with protocol P1 on D-1 (and on D when the lake already holds
//! D), and writes the lists of the model that scored best on the backtest. Every unit of work is
//! followed by a checkpoint ([`checkpoint`]), so an interrupted job resumes to the same bytes.
//! The models themselves are in `newsrec-model`; this crate is the I/O and orchestration around
//! them. [`spot`] runs the job as managed spot training would: a child process interrupted and
//! restarted until done or out of budget, with a savings report priced from `newsrec-plan`.

pub mod checkpoint;
mod clicklog;
mod control;
mod evaluate;
mod job;
pub mod lists;
mod models;
mod settings;
pub mod spot;
pub mod window;

pub use checkpoint::CheckpointStore;
pub use clicklog::ClickLog;
pub use control::{ProgressFn, StopSignal, TrainProgress, peak_rss_bytes};
pub use evaluate::{DayReport, EvalReport, MeanMetrics, evaluate_range};
pub use job::{JobControl, TrainRequest, train, train_with};
pub use models::{FittedModels, ModelKind};
pub use settings::{
    AlsSettings, CheckpointSettings, Metric, RollupShape, Settings, SettingsError, SpotSettings,
};

use chrono::NaiveDate;
use newsrec_lake::TimeWindow;
use newsrec_model::{Dataset, ModelError, PopularityModel, TestSet};

/// Why a training or evaluation run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    #[error(transparent)]
    Lake(#[from] newsrec_lake::LakeError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Query(#[from] newsrec_lake_query::QueryError),
    #[error(transparent)]
    Rollup(#[from] newsrec_rollup::RollupError),
    #[error("unexpected lake data: {0}")]
    Schema(String),
    #[error(
        "no clicks in the training window {start}..{end} (end exclusive); import or ingest clicks for those days first"
    )]
    EmptyWindow { start: NaiveDate, end: NaiveDate },
    #[error("invalid setting: {0}")]
    Settings(String),
    #[error("checkpoint {object} is unusable: {reason}")]
    Checkpoint { object: String, reason: String },
    #[error(
        "the checkpoints in {location} belong to another request for run {run_id:?} (other day or settings); use a new --run-id, or delete that folder to start over"
    )]
    CheckpointMismatch { location: String, run_id: String },
    #[error(
        "interrupted ({reason}); progress is saved in {location}: run the same command with the same run id to resume"
    )]
    Interrupted { reason: String, location: String },
    #[error("the {0} model was not fitted (is it turned off in the settings?)")]
    ModelNotFitted(ModelKind),
    #[error("internal error: {0}")]
    Internal(String),
}

/// The training matrix of `window` (affinities decayed as co-occurrence is configured, anchored
/// at the window's end) and the decayed-popularity model every other model leans on.
pub fn training_data(
    log: &ClickLog,
    window: TimeWindow,
    settings: &Settings,
) -> Result<(Dataset, PopularityModel), TrainError> {
    let clicks = log.slice(window);
    let dataset = Dataset::build(
        log.users.len(),
        log.items.len(),
        clicks,
        window.end_ms,
        settings.cooccurrence.affinity_half_life_hours * 3_600_000.0,
    );
    let popularity =
        PopularityModel::fit(log.items.len(), clicks, window.end_ms, &settings.popularity)?;
    Ok((dataset, popularity))
}

/// P1's test set: the clicks of `test_day` against the training matrix.
pub fn test_set(log: &ClickLog, train: &Dataset, test_day: NaiveDate) -> TestSet {
    let day = TimeWindow::days(test_day, test_day + chrono::Days::new(1));
    let test_clicks: Vec<(u32, u32)> = log.slice(day).iter().map(|c| (c.user, c.item)).collect();
    TestSet::build(train, &test_clicks)
}

/// Runs CPU-heavy work that borrows from the caller: in place on a multi-threaded runtime (the
/// other tasks, a signal watcher or a spot-notice poller, move to other threads), inline on a
/// single-threaded one (tests).
pub(crate) fn cpu<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// Runs CPU-heavy or blocking work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TrainError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| TrainError::Internal(join.to_string()))
}
