//! A lake that cannot be written: requests are acknowledged from the log until the backlog bound,
//! then refused with 429 + Retry-After; once the lake is back, every acknowledged event reaches
//! it exactly once and requests are accepted again. Also `ack = none` answers 202.

use std::time::Duration;

use axum::{
    body::Body,
    http::{Request, StatusCode},
};
use newsrec_ingest::{AckMode, IngestState, PipelineOptions, router};
use newsrec_lake::{EventColumns, Lake, TimeWindow, layout};
use tower::ServiceExt;

fn body(request: usize) -> String {
    (0..20)
        .map(|i| {
            format!(
                "{{\"event_id\":\"r{request}-{i}\",\"user_id\":\"u{i}\",\"article_id\":\"a{request}\",\"ts\":1506852000000}}\n"
            )
        })
        .collect()
}

async fn lake_ids(lake: &Lake) -> Vec<String> {
    let window = TimeWindow {
        start_ms: 946_684_800_000,
        end_ms: 4_102_444_800_000,
    };
    let mut ids: Vec<String> = lake
        .read_events(window, EventColumns::All)
        .await
        .unwrap()
        .iter()
        .flat_map(|b| newsrec_event::events_from_batch(b).unwrap())
        .map(|e| e.event_id)
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_lake_gives_429_and_loses_nothing_acknowledged() {
    let lake_dir = tempfile::tempdir().unwrap();
    let wal_dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(lake_dir.path().to_str().unwrap()).unwrap();
    // A file where the events folder must go: every object write fails until it is removed.
    let blocker = lake_dir.path().join(layout::EVENTS_PREFIX);
    std::fs::write(&blocker, b"not a folder").unwrap();
    let options = PipelineOptions {
        node_id: "bp".into(),
        wal_dir: wal_dir.path().to_owned(),
        wal: Default::default(),
        buffer_bytes: 1 << 20,
        buffer_interval: Duration::ZERO,
        max_backlog_bytes: 16 * 1024,
    };
    let (pipeline, task, _) = newsrec_ingest::start(lake.clone(), options).await.unwrap();
    let app = router(IngestState {
        pipeline: pipeline.clone(),
        ack: AckMode::Wal,
        node_id: "test-node".into(),
        max_body_bytes: 1 << 20,
        max_records_per_request: 1000,
        on_accepted: None,
    });
    let mut acked = Vec::new();
    let mut refused = 0;
    for request in 0..200 {
        let response = app
            .clone()
            .oneshot(
                Request::post("/v1/events")
                    .body(Body::from(body(request)))
                    .unwrap(),
            )
            .await
            .unwrap();
        match response.status() {
            StatusCode::OK => acked.push(request),
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(response.headers()["retry-after"], "1");
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        !acked.is_empty(),
        "the log takes requests while the lake is down"
    );
    assert!(refused > 0, "the backlog bound was never reached");

    // The lake comes back: the retry (backing off from 100 ms) writes everything acknowledged.
    std::fs::remove_file(&blocker).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while pipeline
        .stats()
        .backlog_bytes
        .load(std::sync::atomic::Ordering::Acquire)
        > 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "backlog never drained"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = app
        .clone()
        .oneshot(
            Request::post("/v1/events")
                .body(Body::from(body(999)))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "accepting again");
    acked.push(999);
    task.shutdown().await;
    let mut expected: Vec<String> = acked
        .iter()
        .flat_map(|request| (0..20).map(move |i| format!("r{request}-{i}")))
        .collect();
    expected.sort();
    assert_eq!(
        lake_ids(&lake).await,
        expected,
        "each acked event exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_none_answers_202_and_still_stores() {
    let wal_dir = tempfile::tempdir().unwrap();
    let lake = Lake::open("memory://").unwrap();
    let options = PipelineOptions {
        node_id: "n".into(),
        wal_dir: wal_dir.path().to_owned(),
        wal: Default::default(),
        buffer_bytes: 1 << 20,
        buffer_interval: Duration::from_secs(900),
        max_backlog_bytes: 1 << 24,
    };
    let (pipeline, task, _) = newsrec_ingest::start(lake.clone(), options).await.unwrap();
    let app = router(IngestState {
        pipeline,
        ack: AckMode::None,
        node_id: "test-node".into(),
        max_body_bytes: 1 << 20,
        max_records_per_request: 1000,
        on_accepted: None,
    });
    let response = app
        .oneshot(
            Request::post("/v1/events")
                .body(Body::from(body(1)))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    // The interval is 15 min: only the shutdown flush puts them in the lake.
    task.shutdown().await;
    assert_eq!(lake_ids(&lake).await.len(), 20);
}
