//! Getting clicks into the lake: the HTTP ingest endpoint and the historical import.
//!
//! Consumes HTTP request bodies (NDJSON or JSON arrays) and log files (CSV, NDJSON, Parquet);
//! produces validated events written as Parquet objects in the lake, acknowledging a request only
//! once its events are durably stored. Load is bounded at each step: body size, records per
//! request, batch size and age, and the queue in front of the lake writer.

mod http;
pub mod import;
mod pipeline;

pub use http::{AcceptedHook, IngestError, IngestReply, IngestState, router};
pub use pipeline::{
    AckMode, IngestHandle, PipelineOptions, PipelineStats, PipelineTask, ReplayReport, StartError,
    Submission, SubmitError, start,
};
