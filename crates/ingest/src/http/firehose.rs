//! The Firehose-compatible route: `POST /` with `X-Amz-Target: Firehose_20150804.PutRecord` or
//! `…PutRecordBatch`, served over the same durable path as the native endpoint.
//!
//! The call is parsed and validated by [`crate::firehose`]; its valid events and its refused
//! lines (kept under the lake's `errors/`, as the managed service's error output keeps records
//! it could not process) become one write-ahead-log record, answered per `ack` like the native
//! endpoint. Record ids come from that record's log position, so they are unique and stable. A
//! refused line does not fail its record (resending it would not help; its bytes and reason are
//! in `errors/`), exactly as with the managed service. A full backlog answers
//! `ServiceUnavailableException` ("Slow down.") with `Retry-After`, which the SDKs retry.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::{
    error::add_retry_after,
    firehose::{
        self, FirehoseError, Op, PutRecordBatchReply, PutRecordReply, RecordResponse, WireResponse,
        parse_request, record_id, records_to_events,
    },
    http::IngestState,
    pipeline::{Submission, SubmitError},
};
use newsrec_lake::ErrorRecord;

fn wire(response: WireResponse) -> Response {
    add_retry_after(
        (
            StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            [(header::CONTENT_TYPE, response.content_type)],
            response.body,
        )
            .into_response(),
    )
}

fn failure(error: &FirehoseError) -> Response {
    metrics::counter!("newsrec_ingest_firehose_errors_total", "exception" => error.kind().exception_name())
        .increment(1);
    match error {
        // The reply leaves the detail out: this line is where it is kept.
        FirehoseError::Unavailable { .. } => tracing::warn!(%error, "firehose call not stored"),
        FirehoseError::Internal { .. } => tracing::error!(%error, "firehose call failed"),
        _ => tracing::info!(%error, "firehose call refused"),
    }
    wire(error.to_wire())
}

pub(crate) async fn post_firehose(
    State(state): State<IngestState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let limited = http_body_util::Limited::new(body, firehose::MAX_BODY_BYTES);
    let bytes = match http_body_util::BodyExt::collect(limited).await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            return failure(&FirehoseError::BodyTooLarge {
                limit: firehose::MAX_BODY_BYTES,
            });
        }
        Err(error) => {
            return failure(&FirehoseError::Serialization {
                field: "request body".into(),
                reason: error.to_string(),
            });
        }
    };
    metrics::counter!("newsrec_ingest_bytes_total").increment(bytes.len() as u64);
    let max_events = state.max_records_per_request;
    let parsed = tokio::task::spawn_blocking(move || {
        parse_request(&target, &bytes).map(|request| {
            let outcome = records_to_events(&request.records, max_events);
            (request, outcome)
        })
    })
    .await;
    let (request, outcome) = match parsed {
        Ok(Ok(parsed)) => parsed,
        Ok(Err(error)) => return failure(&error),
        Err(join) => {
            return failure(&FirehoseError::Internal {
                detail: format!("parsing the call: {join}"),
            });
        }
    };
    let received_ms = chrono::Utc::now().timestamp_millis();
    let errors: Vec<ErrorRecord> = outcome
        .rejected_lines()
        .map(|line| {
            let at = match line.at {
                firehose::Location::Line(number) => Some(number),
                firehose::Location::Element(_) | firehose::Location::WholeRecord => None,
            };
            ErrorRecord::validation(
                received_ms,
                "firehose",
                line.record,
                at,
                &line.reason,
                &line.raw,
            )
        })
        .collect();
    let accepted = outcome.accepted();
    metrics::counter!("newsrec_ingest_events_rejected_total").increment(errors.len() as u64);
    if let Some(first) = outcome.rejected_lines().next() {
        tracing::info!(stream = %request.stream, accepted, rejected = errors.len(), first = %first, "records rejected");
    }
    let events: Arc<Vec<_>> = Arc::new(
        outcome
            .records
            .into_iter()
            .flat_map(|record| record.events)
            .collect(),
    );
    let submitted = state
        .pipeline
        .submit(
            Submission {
                events: Arc::clone(&events),
                errors,
            },
            state.ack,
        )
        .await;
    let position = match submitted {
        Ok(Some(lsn)) => lsn,
        // ack = none: not yet in the log; the next position is as unique for an id.
        Ok(None) => state
            .pipeline
            .wal_stats()
            .next_lsn
            .load(std::sync::atomic::Ordering::Relaxed),
        Err(SubmitError::Backpressure { .. } | SubmitError::ShuttingDown) => {
            return failure(&FirehoseError::SlowDown);
        }
        Err(error) => {
            return failure(&FirehoseError::Unavailable {
                detail: error.to_string(),
            });
        }
    };
    if let Some(hook) = &state.on_accepted {
        hook(&events);
    }
    metrics::counter!("newsrec_ingest_events_accepted_total").increment(accepted as u64);
    match request.op {
        Op::PutRecord => {
            wire(PutRecordReply::new(record_id(&state.node_id, position, 0)).to_wire())
        }
        Op::PutRecordBatch => {
            let responses = (0..request.records.len())
                .map(|index| RecordResponse::Stored {
                    record_id: record_id(&state.node_id, position, index),
                })
                .collect();
            wire(PutRecordBatchReply::new(responses).to_wire())
        }
    }
}
