//! The native HTTP ingest endpoint, `POST /v1/events`.
//!
//! Takes NDJSON or a JSON array, at most `max_body_bytes`. Valid records are kept even when
//! others in the same body are refused; the reply counts the accepted ones and lists each
//! refused one with its index (and line) and reason, and the refused records themselves go to
//! the lake's error output. When the reply is sent depends on the ack mode (see
//! [`AckMode`]): by default once the request is fsynced in the write-ahead log. Status codes:
//! 200 when anything was accepted (202 with `ack = none`), 400 when every record was refused
//! or the body cannot be split into records, 413 for an oversize body, 429 + `Retry-After`
//! when the backlog bound is reached, 507 when the log's disk is full, 503 when the log cannot
//! be written or the node is stopping, 500 for a fault of this node; the error replies are made
//! by [`IngestError`]. On any error status nothing of the request is acknowledged; retry it
//! (event ids make the retry idempotent downstream).

mod firehose;

use axum::{
    Json, Router,
    body::Body,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use std::sync::Arc;

use newsrec_event::{ClickEvent, Rejection, parse_body};
use serde::Serialize;

use crate::error::IngestError;
use crate::pipeline::{AckMode, IngestHandle, Submission};
use newsrec_lake::ErrorRecord;

/// Called with a request's events once they are acknowledged (e.g. to update real-time signals).
pub type AcceptedHook = Arc<dyn Fn(&[ClickEvent]) + Send + Sync>;

/// What the ingest routes need.
#[derive(Clone)]
pub struct IngestState {
    pub pipeline: IngestHandle,
    pub ack: AckMode,
    /// Names this node in Firehose record ids.
    pub node_id: String,
    pub max_body_bytes: usize,
    pub max_records_per_request: usize,
    pub on_accepted: Option<AcceptedHook>,
}

impl std::fmt::Debug for IngestState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestState")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_records_per_request", &self.max_records_per_request)
            .field("on_accepted", &self.on_accepted.is_some())
            .finish_non_exhaustive()
    }
}

/// The reply to a request whose body could be split into records.
#[derive(Debug, Serialize)]
pub struct IngestReply {
    pub accepted: usize,
    pub rejected: Vec<Rejection>,
}

/// The ingest routes.
pub fn router(state: IngestState) -> Router {
    Router::new()
        .route("/v1/events", post(post_events))
        .route("/", post(firehose::post_firehose))
        .with_state(state)
}

async fn post_events(
    State(state): State<IngestState>,
    body: Body,
) -> Result<Response, IngestError> {
    let limited = http_body_util::Limited::new(body, state.max_body_bytes);
    let bytes = http_body_util::BodyExt::collect(limited)
        .await
        .map_err(|error| {
            if error.is::<http_body_util::LengthLimitError>() {
                IngestError::BodyTooLarge {
                    limit: state.max_body_bytes,
                }
            } else {
                IngestError::BodyRead(error.to_string())
            }
        })?
        .to_bytes();
    metrics::counter!("newsrec_ingest_bytes_total").increment(bytes.len() as u64);
    let max_records = state.max_records_per_request;
    let parsed = tokio::task::spawn_blocking(move || parse_body(&bytes, max_records))
        .await
        .map_err(|join| IngestError::Internal(format!("parsing the body: {join}")))??;
    let accepted = parsed.events.len();
    metrics::counter!("newsrec_ingest_events_rejected_total")
        .increment(parsed.rejected.len() as u64);
    if let Some(first) = parsed.rejected.first() {
        tracing::info!(accepted, rejected = parsed.rejected.len(), first = %first, "records rejected");
    }
    let received_ms = chrono::Utc::now().timestamp_millis();
    let errors = parsed
        .rejected
        .iter()
        .map(|rejection| {
            ErrorRecord::validation(
                received_ms,
                "native",
                rejection.index,
                rejection.line,
                &rejection.reason,
                rejection.raw.as_bytes(),
            )
        })
        .collect();
    let events = Arc::new(parsed.events);
    let submission = Submission {
        events: Arc::clone(&events),
        errors,
    };
    state.pipeline.submit(submission, state.ack).await?;
    // Only acknowledged events reach the hook, so it never sees an event the log lacks.
    if let Some(hook) = &state.on_accepted {
        hook(&events);
    }
    metrics::counter!("newsrec_ingest_events_accepted_total").increment(accepted as u64);
    let status = if accepted == 0 && !parsed.rejected.is_empty() {
        StatusCode::BAD_REQUEST
    } else if state.ack == AckMode::None {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(IngestReply {
            accepted,
            rejected: parsed.rejected,
        }),
    )
        .into_response())
}
