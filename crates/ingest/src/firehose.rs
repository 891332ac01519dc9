//! The Amazon Data Firehose wire protocol without the HTTP: `PutRecord` and `PutRecordBatch`
//! calls in, decoded records and validated click events out, and the reply and error bodies the
//! AWS SDKs expect back.
//!
//! The protocol is AWS JSON 1.1: `POST /` with `X-Amz-Target: Firehose_20150804.<Operation>` and
//! `Content-Type: application/x-amz-json-1.1`; each record's `Data` is base64 (standard alphabet,
//! padded). For newsrec a record's decoded data holds click events as NDJSON (or one JSON array),
//! validated by [`newsrec_event::parse_body`]; a bad line costs only that line, a record that is
//! not UTF-8 only that record.
//!
//! Everything here is pure (no I/O, no clock, no async), so it is unit-, property- and
//! fuzz-tested alone (`fuzz/` at the repository root). The route that serves it owns the raw body
//! cap ([`MAX_BODY_BYTES`]), the stream lookup, the durable write and the log position that
//! record ids are made from. Parsing a full call is a few milliseconds of CPU: run it with
//! `spawn_blocking`.
//!
//! A route's flow: [`parse_request`] → [`records_to_events`] → durable write → [`record_id`] per
//! record → [`PutRecordReply`] or [`PutRecordBatchReply`], each sent with `to_wire()`; any
//! [`FirehoseError`] is answered with [`FirehoseError::to_wire`].

mod error;
mod records;
mod reply;
mod request;

pub use error::{ErrorKind, FirehoseError};
pub use records::{Location, RecordOutcome, RecordsParsed, RejectedLine, records_to_events};
pub use reply::{
    CONTENT_TYPE, PutRecordBatchReply, PutRecordReply, RecordErrorCode, RecordResponse,
    WireResponse, record_id,
};
pub use request::{FirehoseRequest, Op, parse_request};

/// Most records in one `PutRecordBatch` call (a Firehose service limit).
pub const MAX_RECORDS_PER_CALL: usize = 500;
/// Most bytes of one record's data after base64 decoding: 1,000 KiB (a Firehose service limit).
pub const MAX_RECORD_BYTES: usize = 1_024_000;
/// Most bytes of decoded data in one call, all records together: 4 MiB (a Firehose service
/// limit).
pub const MAX_CALL_BYTES: usize = 4 * 1024 * 1024;
/// Longest `DeliveryStreamName`, in characters (all ASCII).
pub const MAX_STREAM_NAME_CHARS: usize = 64;
/// The raw body cap the route should apply before calling [`parse_request`]: a full call's data
/// in base64 is 5,592,408 bytes, and this leaves room for the JSON around 500 records and for
/// encoders that escape `/` as `\/` (about 1.6% of random base64).
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;
