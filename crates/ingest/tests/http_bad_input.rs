//! Bad input at the HTTP level: each refused record is named with its reason, and the valid
//! records of the same request are stored.

use std::time::Duration;

use axum::{
    body::Body,
    http::{Request, StatusCode},
};
use http_body_util::BodyExt;
use newsrec_ingest::{AckMode, IngestState, PipelineOptions, PipelineTask, router};
use newsrec_lake::{EventColumns, Lake, TimeWindow};
use serde_json::Value;
use tower::ServiceExt;

/// Ingest with `ack = lake`, so a reply means the lake already holds the request.
async fn app(
    lake: &Lake,
    max_body_bytes: usize,
) -> (axum::Router, PipelineTask, tempfile::TempDir) {
    let wal = tempfile::tempdir().unwrap();
    let options = PipelineOptions {
        node_id: "test-node".into(),
        wal_dir: wal.path().to_owned(),
        wal: Default::default(),
        buffer_bytes: 1 << 20,
        buffer_interval: Duration::from_millis(10),
        max_backlog_bytes: 1 << 24,
    };
    let (pipeline, task, _) = newsrec_ingest::start(lake.clone(), options).await.unwrap();
    (
        router(IngestState {
            pipeline,
            ack: AckMode::Lake,
            node_id: "test-node".into(),
            max_body_bytes,
            max_records_per_request: 100,
            on_accepted: None,
        }),
        task,
        wal,
    )
}

async fn post(app: &axum::Router, body: impl Into<Body>) -> (StatusCode, Value) {
    let request = Request::post("/v1/events").body(body.into()).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

async fn stored_users(lake: &Lake) -> Vec<String> {
    let window = TimeWindow {
        start_ms: 946_684_800_000,
        end_ms: 4_102_444_800_000,
    };
    let batches = lake.read_events(window, EventColumns::All).await.unwrap();
    let mut users: Vec<String> = batches
        .iter()
        .flat_map(|b| newsrec_event::events_from_batch(b).unwrap())
        .map(|e| e.user_id)
        .collect();
    users.sort();
    users
}

#[tokio::test]
async fn each_bad_record_is_named_and_the_good_ones_are_kept() {
    let lake = Lake::open("memory://").unwrap();
    let (app, task, _wal) = app(&lake, 64 * 1024).await;
    let body = [
        r#"{"user_id":"good1","article_id":"a1","ts":"2017-10-01T10:00:00Z"}"#,
        r#"{"user_id":"broken","article_id":"a1","ts":"#,
        r#"{"article_id":"a1","ts":1506852000000}"#,
        r#"{"user_id":"late","article_id":"a1","ts":"yesterday"}"#,
        r#"{"user_id":"","article_id":"a1","ts":1506852000000}"#,
        r#"{"user_id":"good2","article_id":"","ts":1506852000000}"#,
        r#"{"user_id":"good3","article_id":"a2","ts":1506852000000,"type":"view","dwell_ms":1200}"#,
    ]
    .join("\n");
    let (status, reply) = post(&app, body).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["accepted"], 2);
    let rejected: Vec<(u64, String)> = reply["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(rejected.len(), 5);
    assert_eq!(rejected[0].0, 2);
    assert!(
        rejected[0]
            .1
            .starts_with("field \"record\": malformed JSON"),
        "{}",
        rejected[0].1
    );
    assert_eq!(
        rejected[1],
        (3, "field \"user_id\": is required but missing".to_owned())
    );
    assert_eq!(
        rejected[2],
        (
            4,
            "field \"ts\": expected RFC 3339 or epoch millis, got \"yesterday\"".to_owned()
        )
    );
    assert_eq!(
        rejected[3],
        (5, "field \"user_id\": must not be empty".to_owned())
    );
    assert_eq!(
        rejected[4],
        (6, "field \"article_id\": must not be empty".to_owned())
    );
    // The reply came after the write: the valid records are already in the lake,
    assert_eq!(stored_users(&lake).await, ["good1", "good3"]);
    // and the refused ones are in its error output, each with its reason and its bytes.
    let today = chrono::Utc::now().date_naive();
    let errors = lake.read_errors(today).await.unwrap();
    assert_eq!(errors.len(), 5);
    assert_eq!(errors[1].line, Some(3));
    assert_eq!(
        errors[1].error_message,
        "field \"user_id\": is required but missing"
    );
    assert_eq!(errors[1].source, "native");
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&errors[2].raw_data)
        .unwrap();
    assert_eq!(
        raw,
        br#"{"user_id":"late","article_id":"a1","ts":"yesterday"}"#
    );
    task.shutdown().await;
}

#[tokio::test]
async fn oversize_body_is_413_and_stores_nothing() {
    let lake = Lake::open("memory://").unwrap();
    let (app, task, _wal) = app(&lake, 1024).await;
    let line = r#"{"user_id":"u","article_id":"a1","ts":1506852000000}"#;
    let body = vec![line; 100].join("\n");
    let (status, reply) = post(&app, body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        reply["error"],
        "request body exceeds 1024 bytes; split it into smaller requests"
    );
    assert!(stored_users(&lake).await.is_empty());
    task.shutdown().await;
}

#[tokio::test]
async fn json_array_bodies_and_all_bad_bodies() {
    let lake = Lake::open("memory://").unwrap();
    let (app, task, _wal) = app(&lake, 64 * 1024).await;
    let (status, reply) = post(
        &app,
        r#"[{"user_id":"arr","article_id":"a","ts":1506852000000}, 7]"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reply["rejected"][0]["index"], 1);
    assert_eq!(
        reply["rejected"][0]["reason"],
        "field \"record\": expected a JSON object, got number 7"
    );
    let (status, reply) = post(&app, r#"{"user_id":"u"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "nothing accepted: {reply}");
    let (status, reply) = post(&app, "[{").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("not a valid JSON array")
    );
    let (status, _) = post(&app, "").await;
    assert_eq!(status, StatusCode::OK, "an empty body is a no-op");
    assert_eq!(stored_users(&lake).await, ["arr"]);
    task.shutdown().await;
}
