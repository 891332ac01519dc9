//! Why a serving request failed, and the one mapping from that failure to its HTTP reply.
//!
//! Every route and middleware of this crate answers an error through [`ServeError`]'s
//! `IntoResponse`: the status from [`ServeError::status`], a JSON body `{"error": "..."}`,
//! `Retry-After` on every 503 and `WWW-Authenticate` on every 401. A server fault (a store that
//! cannot be read, a registry that cannot be written) is answered with a fixed message and its
//! detail is logged instead: the detail can name the store's hosts, paths and keys, which a
//! caller has no use for.
//!
//! Store failures are classified once, by [`store_failure`]: a store that is unavailable may
//! answer a retry (503 + `Retry-After`), a corrupt value will not (500).

use std::fmt;

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use newsrec_event::FieldError;
use newsrec_kv::{ErrorKind, KvError};

use crate::RecommendError;

/// Seconds a client is told to wait before retrying a 503.
const RETRY_AFTER_SECONDS: &str = "1";

/// What kind of store failure a read met; it decides the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreFailure {
    /// The store cannot be reached or read right now; a retry may succeed.
    Unavailable,
    /// The store answered with a value it cannot decode; retrying returns the same value.
    Corrupt,
}

impl StoreFailure {
    /// The status a failed read is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            StoreFailure::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            StoreFailure::Corrupt => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message a caller sees; the store's own error is only logged.
    pub fn public_message(self) -> &'static str {
        match self {
            StoreFailure::Unavailable => "store unavailable",
            StoreFailure::Corrupt => INTERNAL_MESSAGE,
        }
    }
}

impl fmt::Display for StoreFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreFailure::Unavailable => "unavailable",
            StoreFailure::Corrupt => "corrupt",
        })
    }
}

/// The one classification of a store error for serving, by the error's kind.
///
/// Only a value the store cannot decode is corrupt (500: a retry reads the same bytes). Every
/// other kind is answered as unavailable (503 + `Retry-After`): timeouts and lost connections,
/// but also a generation pruned between reading the pointer and the list, which the next
/// request reads afresh. Reads never take the publish lock nor parse a uri, so the remaining
/// kinds do not reach here in practice; unavailable is the answer a client can act on.
pub fn store_failure(error: &KvError) -> StoreFailure {
    match error.kind() {
        ErrorKind::Corrupt => StoreFailure::Corrupt,
        _ => StoreFailure::Unavailable,
    }
}

/// A store read that failed, classified by [`store_failure`].
#[derive(Debug, thiserror::Error)]
#[error("store {failure}: {source}")]
pub struct StoreError {
    pub failure: StoreFailure,
    pub source: KvError,
}

impl From<KvError> for StoreError {
    fn from(source: KvError) -> StoreError {
        StoreError {
            failure: store_failure(&source),
            source,
        }
    }
}

/// The message of every 500 whose detail is only logged.
const INTERNAL_MESSAGE: &str = "internal error";

/// Why a serving request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// A query parameter or body the route cannot use; the message says what to send instead.
    #[error("{0}")]
    BadRequest(String),
    /// A user or article id in the path that the event contract would refuse.
    #[error("{} {}", .0.field, .0.reason)]
    InvalidId(#[from] FieldError),
    #[error("{0}")]
    NotFound(String),
    #[error("missing API key: send Authorization: Bearer <key>")]
    MissingKey,
    #[error("invalid API key")]
    InvalidKey,
    /// Shed by the concurrency limit.
    #[error("overloaded: too many requests in flight; retry shortly")]
    Overloaded,
    #[error("no generation is published yet: run `newsrec train` then `newsrec publish`")]
    NothingPublished,
    /// A list read failed.
    #[error(transparent)]
    Store(StoreError),
    /// The health probe's store read failed; answered with the probe's `status` field as well.
    #[error("health probe: {0}")]
    Unhealthy(StoreError),
    /// A fault of this node; `0` is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<KvError> for ServeError {
    fn from(error: KvError) -> ServeError {
        ServeError::Store(error.into())
    }
}

impl From<RecommendError> for ServeError {
    fn from(error: RecommendError) -> ServeError {
        match error {
            RecommendError::NothingPublished => ServeError::NothingPublished,
            RecommendError::Store(error) => error.into(),
        }
    }
}

impl ServeError {
    /// The one place serving errors become HTTP statuses.
    pub fn status(&self) -> StatusCode {
        match self {
            ServeError::BadRequest(_) | ServeError::InvalidId(_) => StatusCode::BAD_REQUEST,
            ServeError::NotFound(_) => StatusCode::NOT_FOUND,
            ServeError::MissingKey | ServeError::InvalidKey => StatusCode::UNAUTHORIZED,
            ServeError::Overloaded | ServeError::NothingPublished => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ServeError::Store(error) | ServeError::Unhealthy(error) => error.failure.status(),
            ServeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `error` field of the reply: the full message for a caller's fault or a refusal, a
    /// fixed one for a server fault.
    pub fn public_message(&self) -> String {
        match self.server_fault() {
            Some((message, _)) => message.to_owned(),
            None => self.to_string(),
        }
    }

    /// For a server fault, the fixed message sent in place of the error's own text and whether
    /// the fault is transient; `None` for a caller's fault or a refusal, whose text is the reply.
    fn server_fault(&self) -> Option<(&'static str, bool)> {
        match self {
            ServeError::Store(error) | ServeError::Unhealthy(error) => Some((
                error.failure.public_message(),
                error.failure == StoreFailure::Unavailable,
            )),
            ServeError::Internal(_) => Some((INTERNAL_MESSAGE, false)),
            ServeError::BadRequest(_)
            | ServeError::InvalidId(_)
            | ServeError::NotFound(_)
            | ServeError::MissingKey
            | ServeError::InvalidKey
            | ServeError::Overloaded
            | ServeError::NothingPublished => None,
        }
    }
}

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        // The reply leaves a server fault's detail out: this line is where it is kept.
        match self.server_fault() {
            Some((_, true)) => tracing::warn!(error = %self, "request failed"),
            Some((_, false)) => tracing::error!(error = %self, "request failed"),
            None => {}
        }
        let status = self.status();
        let message = self.public_message();
        let body = match &self {
            ServeError::Unhealthy(_) => serde_json::json!({ "status": message, "error": message }),
            _ => serde_json::json!({ "error": message }),
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A store error whose text is what a caller must never see.
    fn kv_error() -> KvError {
        KvError::Io {
            path: "/var/lib/newsrec/secret-kv".into(),
            source: std::io::Error::other("disk controller reset"),
        }
    }

    fn store(failure: StoreFailure) -> StoreError {
        StoreError {
            failure,
            source: kv_error(),
        }
    }

    async fn reply(error: ServeError) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, serde_json::from_slice(&bytes).unwrap())
    }

    #[test]
    fn store_errors_are_classified_by_their_kind() {
        assert_eq!(store_failure(&kv_error()), StoreFailure::Unavailable);
        let error = ServeError::from(kv_error());
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);

        let vanished = KvError::NoSuchGeneration(7);
        assert_eq!(store_failure(&vanished), StoreFailure::Unavailable);

        let corrupt = KvError::Corrupt {
            generation: 7,
            key: "u1".into(),
            source: newsrec_kv::decode_items(b"\xff\xff").unwrap_err(),
        };
        assert_eq!(store_failure(&corrupt), StoreFailure::Corrupt);
        assert_eq!(
            ServeError::from(corrupt).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let bad_record = KvError::BadRecord {
            backend: "redis",
            reason: "generation info is not JSON".into(),
        };
        assert_eq!(store_failure(&bad_record), StoreFailure::Corrupt);
    }

    #[test]
    fn store_failures_map_to_their_status() {
        assert_eq!(
            StoreFailure::Unavailable.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            StoreFailure::Corrupt.status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            StoreFailure::Unavailable.public_message(),
            "store unavailable"
        );
        assert_eq!(StoreFailure::Corrupt.public_message(), "internal error");
    }

    #[tokio::test]
    async fn every_error_maps_to_its_status_headers_and_body() {
        let invalid_id = newsrec_event::validate_id("user_id", "a\nb").unwrap_err();
        let cases = [
            (
                ServeError::BadRequest("k must be 1..=10, got 0".into()),
                StatusCode::BAD_REQUEST,
                "k must be 1..=10, got 0",
            ),
            (
                ServeError::InvalidId(invalid_id),
                StatusCode::BAD_REQUEST,
                "user_id must not contain control characters (found one at character 1)",
            ),
            (
                ServeError::NotFound("no similar articles".into()),
                StatusCode::NOT_FOUND,
                "no similar articles",
            ),
            (
                ServeError::MissingKey,
                StatusCode::UNAUTHORIZED,
                "missing API key: send Authorization: Bearer <key>",
            ),
            (
                ServeError::InvalidKey,
                StatusCode::UNAUTHORIZED,
                "invalid API key",
            ),
            (
                ServeError::Overloaded,
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded: too many requests in flight; retry shortly",
            ),
            (
                ServeError::NothingPublished,
                StatusCode::SERVICE_UNAVAILABLE,
                "no generation is published yet: run `newsrec train` then `newsrec publish`",
            ),
            (
                ServeError::Store(store(StoreFailure::Unavailable)),
                StatusCode::SERVICE_UNAVAILABLE,
                "store unavailable",
            ),
            (
                ServeError::Store(store(StoreFailure::Corrupt)),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
            ),
            (
                ServeError::Internal("registry write failed".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
            ),
        ];
        for (error, status, message) in cases {
            let debug = format!("{error:?}");
            let (got_status, headers, body) = reply(error).await;
            assert_eq!(got_status, status, "{debug}");
            assert_eq!(body, serde_json::json!({ "error": message }), "{debug}");
            assert_eq!(
                headers
                    .get(header::RETRY_AFTER)
                    .map(|v| v.to_str().unwrap()),
                (status == StatusCode::SERVICE_UNAVAILABLE).then_some("1"),
                "{debug}"
            );
            assert_eq!(
                headers
                    .get(header::WWW_AUTHENTICATE)
                    .map(|v| v.to_str().unwrap()),
                (status == StatusCode::UNAUTHORIZED).then_some("Bearer"),
                "{debug}"
            );
            assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{debug}");
        }
    }

    #[tokio::test]
    async fn the_health_probe_keeps_its_status_field() {
        let (status, headers, body) =
            reply(ServeError::Unhealthy(store(StoreFailure::Unavailable))).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "1");
        assert_eq!(
            body,
            serde_json::json!({ "status": "store unavailable", "error": "store unavailable" })
        );
        let (status, headers, body) =
            reply(ServeError::Unhealthy(store(StoreFailure::Corrupt))).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(headers.get(header::RETRY_AFTER).is_none());
        assert_eq!(body["error"], "internal error");
    }

    #[tokio::test]
    async fn server_faults_send_no_internal_detail() {
        let faults = [
            ServeError::Store(store(StoreFailure::Unavailable)),
            ServeError::Store(store(StoreFailure::Corrupt)),
            ServeError::Unhealthy(store(StoreFailure::Unavailable)),
            ServeError::Unhealthy(store(StoreFailure::Corrupt)),
            ServeError::Internal(
                "article registry /var/lib/newsrec/secret-kv: disk controller reset".into(),
            ),
        ];
        for error in faults {
            let detail = error.to_string();
            assert!(detail.contains("secret-kv"), "the log keeps it: {detail}");
            let (status, _, body) = reply(error).await;
            assert!(status.is_server_error(), "{status}");
            let text = body.to_string();
            assert!(!text.contains("secret-kv"), "{text}");
            assert!(!text.contains("disk controller"), "{text}");
        }
    }
}
