//! Hourly rollups: each event hour of the lake summarised once into the compact tables the
//! models need, and reused by every later daily run.
//!
//! Consumes the lake's event partitions through the query engine (`newsrec-lake-query`, which
//! deduplicates by `event_id` and spills past its memory budget); produces, per hour,
//! `rollups/v1/dt=…/hour=…/` with one Parquet object per [`RollupTable`] and a key
//! (`rollup.json`) written last. The key records what the hour was computed from (a
//! fingerprint of the hour's object listing) and with which settings (a hash per table), so
//! [`ensure_rollups`] recomputes exactly the tables of the hours that changed: a late event or a
//! re-import changes the listing, a settings change changes a table's hash, and a damaged or
//! missing table object fails its digest. The layout is `docs/lake-layout.md`.

mod build;
mod marker;
mod summary;
mod tables;

pub use build::{RollupProgress, RollupReport, ensure_rollups};
pub use marker::{HourCounts, RollupMarker, SourceKey, TableEntry};
pub use tables::{DECAY_SCALE, RollupSettings, RollupTable};

/// Why rollups could not be brought up to date.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RollupError {
    #[error(transparent)]
    Lake(#[from] newsrec_lake::LakeError),
    #[error("summarising {hour}: {source}")]
    Query {
        hour: String,
        source: newsrec_lake_query::QueryError,
    },
    #[error("summarising {hour}: the {table} query returned {reason}")]
    Shape {
        hour: String,
        table: &'static str,
        reason: String,
    },
    #[error("invalid rollup setting {name}: {reason}")]
    Settings { name: &'static str, reason: String },
    #[error("interrupted ({reason}) after {done} of {total} hours; the hours done are kept")]
    Interrupted {
        reason: String,
        done: usize,
        total: usize,
    },
    #[error("internal error: {0}")]
    Internal(String),
}
