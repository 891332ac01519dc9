//! Why a native ingest request failed, and the one mapping from that failure to its HTTP reply;
//! also the one `Retry-After` rule of both ingest routes.
//!
//! [`IngestError`]'s `IntoResponse` answers the status from [`IngestError::status`] with a JSON
//! body `{"error": "..."}`. A refusal the client should retry (full backlog, full disk, a log that
//! cannot be written, a node that is stopping) carries `Retry-After`, as does the Firehose route's
//! `ServiceUnavailableException` ([`add_retry_after`]). A server fault's body never carries the
//! text of the failure beneath it (log paths, I/O errors): that detail is logged instead.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::pipeline::SubmitError;
use newsrec_wal::AppendError;

/// Seconds a refused client is told to wait before retrying.
const RETRY_AFTER_SECONDS: &str = "1";

/// Why a request as a whole failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    #[error("request body exceeds {limit} bytes; split it into smaller requests")]
    BodyTooLarge { limit: usize },
    #[error("cannot read request body: {0}")]
    BodyRead(String),
    #[error(transparent)]
    Body(#[from] newsrec_event::BodyError),
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// A fault of this node; `0` is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl IngestError {
    /// The one place ingest errors become HTTP statuses.
    pub fn status(&self) -> StatusCode {
        match self {
            IngestError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::BodyRead(_) | IngestError::Body(_) => StatusCode::BAD_REQUEST,
            IngestError::Submit(SubmitError::Backpressure { .. }) => StatusCode::TOO_MANY_REQUESTS,
            IngestError::Submit(SubmitError::Log(AppendError::DiskFull(_))) => {
                StatusCode::INSUFFICIENT_STORAGE
            }
            IngestError::Submit(_) => StatusCode::SERVICE_UNAVAILABLE,
            IngestError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `error` field of the reply: the full message, except for failures that carry the
    /// text of an error beneath them, which get a fixed message saying what the client can do.
    pub fn public_message(&self) -> String {
        match self {
            IngestError::Submit(SubmitError::Log(AppendError::DiskFull(_))) => {
                "the disk holding the write-ahead log is full; nothing of this request was kept; \
                 retry later"
                    .to_owned()
            }
            IngestError::Submit(SubmitError::Log(
                AppendError::Io(_) | AppendError::Poisoned(_),
            )) => "the write-ahead log cannot be written; nothing of this request was kept; retry \
                   against another node"
                .to_owned(),
            IngestError::Submit(SubmitError::Lake(_)) => {
                "events are logged but the lake write did not complete; retry the request (event \
                 ids make the retry idempotent)"
                    .to_owned()
            }
            IngestError::Internal(_) => "internal error".to_owned(),
            IngestError::BodyTooLarge { .. }
            | IngestError::BodyRead(_)
            | IngestError::Body(_)
            | IngestError::Submit(
                SubmitError::Backpressure { .. }
                | SubmitError::ShuttingDown
                | SubmitError::Log(AppendError::TooLarge { .. } | AppendError::Closed),
            ) => self.to_string(),
        }
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            IngestError::Internal(_) => tracing::error!(error = %self, "ingest request failed"),
            // Nothing of the request is stored: worth a line even when the client retries.
            IngestError::Submit(_) => tracing::warn!(error = %self, "request not stored"),
            IngestError::BodyTooLarge { .. } | IngestError::BodyRead(_) | IngestError::Body(_) => {}
        }
        let body = serde_json::json!({ "error": self.public_message() });
        add_retry_after((status, Json(body)).into_response())
    }
}

/// Adds `Retry-After` when the status says the node refused for now and the same request may
/// succeed later: 429 (backlog full), 503 (log unwritable, node stopping, Firehose throttling)
/// and 507 (disk full).
pub(crate) fn add_retry_after(mut response: Response) -> Response {
    if matches!(
        response.status(),
        StatusCode::TOO_MANY_REQUESTS
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::INSUFFICIENT_STORAGE
    ) {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECONDS),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// The text of a lower-level failure, which a client must never see.
    const DETAIL: &str = "/var/lib/newsrec/secret-wal/00000042.seg: Input/output error";

    async fn reply(error: IngestError) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, serde_json::from_slice(&bytes).unwrap())
    }

    fn every_error() -> Vec<IngestError> {
        vec![
            IngestError::BodyTooLarge { limit: 1024 },
            IngestError::BodyRead("connection reset".into()),
            IngestError::Body(newsrec_event::BodyError::TooManyRecords {
                records: 11,
                limit: 10,
            }),
            IngestError::Submit(SubmitError::Backpressure {
                backlog: 10,
                limit: 8,
            }),
            IngestError::Submit(SubmitError::ShuttingDown),
            IngestError::Submit(SubmitError::Log(AppendError::DiskFull(DETAIL.into()))),
            IngestError::Submit(SubmitError::Log(AppendError::Io(DETAIL.into()))),
            IngestError::Submit(SubmitError::Log(AppendError::Poisoned(DETAIL.into()))),
            IngestError::Submit(SubmitError::Log(AppendError::TooLarge {
                bytes: 10,
                limit: 8,
            })),
            IngestError::Submit(SubmitError::Log(AppendError::Closed)),
            IngestError::Submit(SubmitError::Lake(DETAIL.into())),
            IngestError::Internal(DETAIL.into()),
        ]
    }

    #[tokio::test]
    async fn every_error_maps_to_its_status_and_retry_after() {
        let expected = [
            (413, false),
            (400, false),
            (400, false),
            (429, true),
            (503, true),
            (507, true),
            (503, true),
            (503, true),
            (503, true),
            (503, true),
            (503, true),
            (500, false),
        ];
        let errors = every_error();
        assert_eq!(errors.len(), expected.len());
        for (error, (status, retry)) in errors.into_iter().zip(expected) {
            let debug = format!("{error:?}");
            let message = error.public_message();
            let (got_status, headers, body) = reply(error).await;
            assert_eq!(got_status.as_u16(), status, "{debug}");
            assert_eq!(headers.get(header::RETRY_AFTER).is_some(), retry, "{debug}");
            if retry {
                assert_eq!(headers[header::RETRY_AFTER], "1");
            }
            assert_eq!(body, serde_json::json!({ "error": message }), "{debug}");
        }
    }

    #[tokio::test]
    async fn client_faults_keep_their_full_message() {
        let error = IngestError::BodyTooLarge { limit: 1024 };
        let (_, _, body) = reply(error).await;
        assert_eq!(
            body["error"],
            "request body exceeds 1024 bytes; split it into smaller requests"
        );
        let backpressure = IngestError::Submit(SubmitError::Backpressure {
            backlog: 10,
            limit: 8,
        });
        let message = backpressure.to_string();
        let (_, _, body) = reply(backpressure).await;
        assert_eq!(body["error"], message);
    }

    #[tokio::test]
    async fn server_faults_send_no_internal_detail() {
        for error in every_error() {
            if !error.status().is_server_error() {
                continue;
            }
            let debug = format!("{error:?}");
            let (_, _, body) = reply(error).await;
            let text = body.to_string();
            assert!(!text.contains("secret-wal"), "{debug}: {text}");
            assert!(!text.contains("Input/output"), "{debug}: {text}");
        }
        // The detail is still in the error itself, for the log.
        assert!(
            IngestError::Internal(DETAIL.into())
                .to_string()
                .contains("secret-wal")
        );
    }
}
