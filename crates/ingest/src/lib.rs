//! Getting clicks into the lake: the HTTP ingest endpoint and the historical import.
//!
//! Consumes HTTP request bodies (NDJSON or JSON arrays) and log files (CSV, NDJSON, Parquet);
//! produces validated events written as Parquet objects in the lake, acknowledging a request only
//! once its events are durably stored. Load is bounded at each step: body size, records per
//! request, batch size and age, and the queue in front of the lake writer. [`firehose`] parses the
//! Amazon Data Firehose API (`PutRecord`, `PutRecordBatch`) for producers that already speak it.

mod batcher;
pub mod firehose;
mod http;
pub mod import;

pub use batcher::{BatchLimits, BatcherHandle, BatcherTask, SubmitError, spawn_batcher};
pub use http::{AcceptedHook, IngestError, IngestReply, IngestState, router};
