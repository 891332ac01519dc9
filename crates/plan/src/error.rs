//! The planner's one error type: every way a workload, a price file or a run manifest can be
//! refused, each message saying what to change.

/// Why a plan could not be made. Messages are lowercase, carry no trailing period and say what to
/// do, so the command line can print them as they are.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// A required workload value was given neither as a flag nor in the workload file.
    #[error("the workload has no {what}: pass --{flag} or set `{key}` in the workload file")]
    MissingInput {
        what: &'static str,
        flag: &'static str,
        key: &'static str,
    },

    /// A workload value is outside the range the rules are defined for.
    #[error("{what} is {value}, which is out of range: {expected}")]
    OutOfRange {
        what: &'static str,
        value: String,
        expected: &'static str,
    },

    /// One event is bigger than the largest record any stream accepts, so no stream design fits.
    #[error(
        "an event of {event_bytes} bytes is over the {record_limit_bytes}-byte (1 MB) record \
         limit of every stream and delivery stream, so no ingestion design can carry it: keep \
         large payloads in the object store and send a reference in the event"
    )]
    EventOverRecordLimit {
        event_bytes: u64,
        record_limit_bytes: u64,
    },

    /// Producer-side aggregation packs more bytes into one record than a record may hold.
    #[error(
        "{events_per_record} events of {event_bytes} bytes make a {record_bytes}-byte record, \
         over the {record_limit_bytes}-byte (1 MB) record limit: set --events-per-record to at \
         most {largest_events_per_record}"
    )]
    AggregatedRecordOverLimit {
        events_per_record: u64,
        event_bytes: u64,
        record_bytes: u64,
        record_limit_bytes: u64,
        largest_events_per_record: u64,
    },

    /// The retrain cadence is not in a form the planner reads.
    #[error(
        "cannot read the retrain interval `{text}`: write it as `every 24h`, `24h`, `90m`, `7d`, \
         `hourly`, `daily` or `weekly`"
    )]
    InvalidRetrainInterval { text: String },

    /// The workload file is not valid TOML or has a key the planner does not know.
    #[error("cannot read the workload file {origin}: {message}")]
    InvalidWorkloadFile { origin: String, message: String },

    /// The price file is not valid TOML.
    #[error("cannot read the price file {origin}: {message}")]
    InvalidPriceFile { origin: String, message: String },

    /// The price file names a price the planner does not have.
    #[error(
        "unknown price `{key}` in the price file {origin}: use one of the known prices ({known})"
    )]
    UnknownPrice {
        key: String,
        origin: String,
        known: String,
    },

    /// A price in the price file has the wrong shape or a negative value.
    #[error("price `{key}` in the price file {origin} is invalid: {reason}")]
    InvalidPrice {
        key: String,
        origin: String,
        reason: String,
    },

    /// The run manifest is not JSON.
    #[error(
        "cannot read the run manifest {origin} as JSON: {message}; pass the manifest written by \
         the training run, or --train-hours instead"
    )]
    InvalidManifest { origin: String, message: String },

    /// The run manifest has no usable training time.
    #[error(
        "the run manifest {origin} has no positive number at `timings.total_ms` (the training \
         time in milliseconds): pass --train-hours instead"
    )]
    ManifestWithoutTrainingTime { origin: String },
}
