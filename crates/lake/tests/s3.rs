//! The lake on an S3 protocol server (moto in CI): events written, partitioned and read back,
//! through a single PUT and through a multipart upload.
//!
//! Runs when `NEWSREC_TEST_S3_ENDPOINT` (e.g. http://127.0.0.1:5077) and `NEWSREC_TEST_S3_BUCKET`
//! (an existing bucket) are set; fails, not skips, when they are set and the server is down.

use newsrec_event::ClickEvent;
use newsrec_lake::{EventColumns, Lake, TimeWindow};

fn settings(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("aws_endpoint_url", endpoint.to_owned()),
        ("aws_access_key_id", "test".to_owned()),
        ("aws_secret_access_key", "test".to_owned()),
        ("aws_region", "us-east-1".to_owned()),
    ]
}

#[tokio::test]
async fn events_round_trip_through_s3_with_and_without_multipart() {
    let (Ok(endpoint), Ok(bucket)) = (
        std::env::var("NEWSREC_TEST_S3_ENDPOINT"),
        std::env::var("NEWSREC_TEST_S3_BUCKET"),
    ) else {
        eprintln!(
            "skipped: set NEWSREC_TEST_S3_ENDPOINT and NEWSREC_TEST_S3_BUCKET to run against S3"
        );
        return;
    };
    let settings = settings(&endpoint);
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let base = 1_506_816_000_000; // 2017-10-01T00:00:00Z
    let events: Vec<ClickEvent> = (0..2_000)
        .map(|i| {
            ClickEvent::click(
                &format!("user{i}"),
                &format!("a{}", i % 97),
                base + i * 3_000,
            )
            .unwrap()
        })
        .collect();
    let window = TimeWindow {
        start_ms: base,
        end_ms: base + 86_400_000,
    };
    for (name, threshold) in [("single-put", usize::MAX), ("multipart", 1)] {
        let uri = format!(
            "s3://{bucket}/newsrec-test-{}-{nanos}-{name}",
            std::process::id()
        );
        let lake = Lake::open_with(&uri, &settings)
            .unwrap()
            .with_multipart_threshold(threshold);
        let written = lake
            .write_events("node-1", 7, &[std::sync::Arc::new(events.clone())])
            .await
            .unwrap();
        assert_eq!(written.len(), 2, "{name}: 6000 s of events span two hours");
        let read: usize = lake
            .read_events(window, EventColumns::All)
            .await
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum();
        assert_eq!(read, events.len(), "{name}: every event comes back");
        let objects = lake.list_event_objects(window).await.unwrap();
        assert!(
            objects[0]
                .location
                .as_ref()
                .starts_with("events/dt=2017-10-01/hour=00/node-1-"),
            "{name}: {objects:?}"
        );
    }
}
