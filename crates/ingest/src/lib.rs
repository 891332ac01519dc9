//! Getting clicks into the lake: the HTTP ingest endpoint and the historical import.
//!
//! Consumes HTTP request bodies (NDJSON or JSON arrays) and log files (CSV, NDJSON, Parquet);
//! produces validated events written as Parquet objects in the lake, acknowledging a request only
//! once its events are durably stored (see [`AckMode`]). Load is bounded at each step: body size,
//! records per request, buffer size and age, and the backlog not yet in the lake. [`firehose`] parses the
//! Amazon Data Firehose API (`PutRecord`, `PutRecordBatch`) for producers that already speak it.

mod error;
pub mod firehose;
mod http;
pub mod import;
mod pipeline;
mod settings;

pub use error::IngestError;
pub use http::{AcceptedHook, IngestReply, IngestState, router};
pub use pipeline::{
    AckMode, IngestHandle, PipelineOptions, PipelineStats, PipelineTask, ReplayReport, StartError,
    Submission, SubmitError, start,
};
pub use settings::{Settings, SettingsError};
