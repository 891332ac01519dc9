//! Firehose service errors: what went wrong, which AWS exception the SDKs see for it, and the one
//! mapping from exception to HTTP status.
//!
//! The SDKs branch on the exception name (`__type` in the body), not on the status: a wrong name
//! turns a retryable failure into a fatal one or the reverse, so each variant's [`ErrorKind`] is
//! chosen to match what Firehose itself answers for the same fault. A fault of this node is sent
//! with a fixed message ([`FirehoseError::public_message`]); the failure beneath it, which can
//! name the node's paths, is only in the error's `Display`, for the log.

use serde::Serialize;

use super::reply::{WireResponse, json_body};
use super::request::data_field;
use super::{MAX_CALL_BYTES, MAX_RECORD_BYTES, MAX_RECORDS_PER_CALL, MAX_STREAM_NAME_CHARS, Op};

/// The AWS exception an error is reported as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `X-Amz-Target` names no operation this endpoint serves.
    UnknownOperation,
    /// The body is not the operation's JSON shape, or a `Data` is not base64.
    Serialization,
    /// A service limit or a field constraint is violated.
    InvalidArgument,
    /// The named stream does not exist here.
    ResourceNotFound,
    /// Back off and retry: throttled, or the durable write failed.
    ServiceUnavailable,
    /// A fault of this node; retrying may succeed.
    InternalFailure,
}

impl ErrorKind {
    /// The exception name sent as `__type`.
    pub fn exception_name(self) -> &'static str {
        match self {
            ErrorKind::UnknownOperation => "UnknownOperationException",
            ErrorKind::Serialization => "SerializationException",
            ErrorKind::InvalidArgument => "InvalidArgumentException",
            ErrorKind::ResourceNotFound => "ResourceNotFoundException",
            ErrorKind::ServiceUnavailable => "ServiceUnavailableException",
            ErrorKind::InternalFailure => "InternalFailure",
        }
    }

    /// The one place Firehose errors become HTTP statuses. Client faults are all 400, as in the
    /// AWS JSON protocol; 5xx makes every SDK retry with backoff.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::UnknownOperation
            | ErrorKind::Serialization
            | ErrorKind::InvalidArgument
            | ErrorKind::ResourceNotFound => 400,
            ErrorKind::ServiceUnavailable => 503,
            ErrorKind::InternalFailure => 500,
        }
    }
}

/// Why a call failed as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FirehoseError {
    #[error(
        "{}; send X-Amz-Target Firehose_20150804.PutRecord or Firehose_20150804.PutRecordBatch",
        describe_target(target)
    )]
    UnknownOperation { target: String },
    /// `field` is the JSON path (`Records[3].Data`), or `request body` for the body as a whole.
    #[error("{field}: {reason}")]
    Serialization { field: String, reason: String },
    #[error(
        "DeliveryStreamName: {} is not 1 to {MAX_STREAM_NAME_CHARS} characters of [a-zA-Z0-9_.-]",
        shown(name)
    )]
    InvalidStreamName { name: String },
    #[error("Records: at least 1 record required")]
    NoRecords,
    #[error(
        "Records: {records} records, at most {MAX_RECORDS_PER_CALL} allowed in one call; split the \
         batch"
    )]
    TooManyRecords { records: usize },
    #[error(
        "{}: {bytes} bytes after base64 decoding, at most {MAX_RECORD_BYTES} allowed",
        data_field(*op, *index)
    )]
    RecordTooLarge { op: Op, index: usize, bytes: usize },
    /// `bytes` is the decoded total of records `0..=index`, the first prefix over the limit.
    #[error(
        "Records: {bytes} bytes after base64 decoding up to Records[{index}], at most \
         {MAX_CALL_BYTES} allowed in one call; split the batch"
    )]
    CallTooLarge { index: usize, bytes: usize },
    /// The route's raw body cap (see [`super::MAX_BODY_BYTES`]) was exceeded.
    #[error(
        "request body exceeds {limit} bytes; send at most {MAX_CALL_BYTES} bytes of decoded data \
         per call"
    )]
    BodyTooLarge { limit: usize },
    #[error("Firehose stream {} is not served by this node", shown(stream))]
    StreamNotFound { stream: String },
    /// Throttled: the node cannot take more data now. The message is the service's own wording,
    /// which some producers match on.
    #[error("Slow down.")]
    SlowDown,
    /// The data could not be stored durably; nothing of the call is acknowledged. `detail` is
    /// logged, never sent.
    #[error("{detail}; retry the call")]
    Unavailable { detail: String },
    /// `detail` is logged, never sent.
    #[error("internal failure: {detail}; retry the call")]
    Internal { detail: String },
}

impl FirehoseError {
    /// The exception this error is reported as; callers branch on it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            FirehoseError::UnknownOperation { .. } => ErrorKind::UnknownOperation,
            FirehoseError::Serialization { .. } => ErrorKind::Serialization,
            FirehoseError::InvalidStreamName { .. }
            | FirehoseError::NoRecords
            | FirehoseError::TooManyRecords { .. }
            | FirehoseError::RecordTooLarge { .. }
            | FirehoseError::CallTooLarge { .. }
            | FirehoseError::BodyTooLarge { .. } => ErrorKind::InvalidArgument,
            FirehoseError::StreamNotFound { .. } => ErrorKind::ResourceNotFound,
            FirehoseError::SlowDown | FirehoseError::Unavailable { .. } => {
                ErrorKind::ServiceUnavailable
            }
            FirehoseError::Internal { .. } => ErrorKind::InternalFailure,
        }
    }

    /// The HTTP status this error is answered with ([`ErrorKind::status`]).
    pub fn status(&self) -> u16 {
        self.kind().status()
    }

    /// The `message` sent: the full message for a caller's fault or throttling, a fixed one for
    /// a fault of this node.
    pub fn public_message(&self) -> String {
        match self {
            FirehoseError::Unavailable { .. } => {
                "the data could not be stored durably; retry the call".to_owned()
            }
            FirehoseError::Internal { .. } => "internal failure; retry the call".to_owned(),
            FirehoseError::UnknownOperation { .. }
            | FirehoseError::Serialization { .. }
            | FirehoseError::InvalidStreamName { .. }
            | FirehoseError::NoRecords
            | FirehoseError::TooManyRecords { .. }
            | FirehoseError::RecordTooLarge { .. }
            | FirehoseError::CallTooLarge { .. }
            | FirehoseError::BodyTooLarge { .. }
            | FirehoseError::StreamNotFound { .. }
            | FirehoseError::SlowDown => self.to_string(),
        }
    }

    /// The full reply: status, content type and `{"__type": "...", "message": "..."}`.
    pub fn to_wire(&self) -> WireResponse {
        let kind = self.kind();
        WireResponse::json(
            kind.status(),
            json_body(&ErrorBody {
                exception: kind.exception_name(),
                message: self.public_message(),
            }),
        )
    }
}

#[derive(Serialize)]
struct ErrorBody {
    #[serde(rename = "__type")]
    exception: &'static str,
    message: String,
}

/// Most characters of a caller's string echoed in a message: enough to recognise it, while a
/// 6 MiB "stream name" still gives a short message.
const SHOWN_CHARS: usize = 80;

/// A caller-supplied string quoted and escaped for a message, cut at [`SHOWN_CHARS`].
fn shown(text: &str) -> String {
    match text.char_indices().nth(SHOWN_CHARS) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &text[..cut], text.len()),
    }
}

fn describe_target(target: &str) -> String {
    if target.is_empty() {
        "the X-Amz-Target header is missing".to_owned()
    } else {
        format!("operation {} is not supported", shown(target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire_json(error: &FirehoseError) -> (u16, serde_json::Value) {
        let wire = error.to_wire();
        assert_eq!(wire.content_type, "application/x-amz-json-1.1");
        (wire.status, serde_json::from_slice(&wire.body).unwrap())
    }

    #[test]
    fn every_error_maps_to_its_exception_and_status() {
        let cases = [
            (
                FirehoseError::UnknownOperation { target: "x".into() },
                "UnknownOperationException",
                400,
            ),
            (
                FirehoseError::Serialization {
                    field: "Records".into(),
                    reason: "r".into(),
                },
                "SerializationException",
                400,
            ),
            (
                FirehoseError::InvalidStreamName { name: "".into() },
                "InvalidArgumentException",
                400,
            ),
            (FirehoseError::NoRecords, "InvalidArgumentException", 400),
            (
                FirehoseError::TooManyRecords { records: 501 },
                "InvalidArgumentException",
                400,
            ),
            (
                FirehoseError::RecordTooLarge {
                    op: Op::PutRecord,
                    index: 0,
                    bytes: 1,
                },
                "InvalidArgumentException",
                400,
            ),
            (
                FirehoseError::CallTooLarge { index: 5, bytes: 1 },
                "InvalidArgumentException",
                400,
            ),
            (
                FirehoseError::BodyTooLarge { limit: 1 },
                "InvalidArgumentException",
                400,
            ),
            (
                FirehoseError::StreamNotFound { stream: "s".into() },
                "ResourceNotFoundException",
                400,
            ),
            (FirehoseError::SlowDown, "ServiceUnavailableException", 503),
            (
                FirehoseError::Unavailable {
                    detail: "lake write failed".into(),
                },
                "ServiceUnavailableException",
                503,
            ),
            (
                FirehoseError::Internal { detail: "x".into() },
                "InternalFailure",
                500,
            ),
        ];
        for (error, exception, status) in cases {
            let (got_status, body) = wire_json(&error);
            assert_eq!(got_status, status, "{error:?}");
            assert_eq!(body["__type"], exception, "{error:?}");
            assert_eq!(body["message"], error.public_message());
            if status < 500 {
                assert_eq!(body["message"], error.to_string());
            }
            assert_eq!(body.as_object().unwrap().len(), 2);
        }
    }

    #[test]
    fn faults_of_the_node_send_no_internal_detail() {
        let detail = "writing the write-ahead log failed (/var/lib/newsrec/secret-wal: Input/output \
                      error)";
        for error in [
            FirehoseError::Unavailable {
                detail: detail.into(),
            },
            FirehoseError::Internal {
                detail: detail.into(),
            },
        ] {
            assert!(error.to_string().contains("secret-wal"), "kept for the log");
            let (status, body) = wire_json(&error);
            assert!(status >= 500);
            let message = body["message"].as_str().unwrap();
            assert!(!message.contains("secret-wal"), "{message}");
            assert!(message.ends_with("retry the call"), "{message}");
        }
    }

    #[test]
    fn throttling_uses_the_service_wording() {
        let (status, body) = wire_json(&FirehoseError::SlowDown);
        assert_eq!(status, 503);
        assert_eq!(
            body,
            serde_json::json!({"__type": "ServiceUnavailableException", "message": "Slow down."})
        );
    }

    #[test]
    fn echoed_names_are_escaped_and_cut() {
        let error = FirehoseError::StreamNotFound {
            stream: "a\"b\n".into(),
        };
        assert_eq!(
            error.to_string(),
            r#"Firehose stream "a\"b\n" is not served by this node"#
        );
        let long = "x".repeat(10_000);
        let message = FirehoseError::InvalidStreamName { name: long }.to_string();
        assert!(message.len() < 200, "{message}");
        assert!(message.contains("… (10000 bytes)"), "{message}");
        // Cutting never splits a multi-byte character.
        let wide = "é".repeat(100);
        let message = FirehoseError::StreamNotFound { stream: wide }.to_string();
        assert!(message.contains(&"é".repeat(80)), "{message}");
    }
}
