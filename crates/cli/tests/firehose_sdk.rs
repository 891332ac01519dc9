//! The Firehose-compatible API through real clients: boto3 (the AWS SDK for Python) against a
//! running node, when `NEWSREC_TEST_BOTO3=1` (set by `.ci/run`, which installs it; the test
//! fails rather than skips if boto3 is then missing), and raw HTTP for inputs an SDK cannot
//! produce (malformed base64, wrong types, oversize bodies).

use std::collections::HashMap;

use newsrec_cli::node::{Node, NodeOptions};
use newsrec_config::Config;
use newsrec_ingest::AckMode;
use serde_json::Value;

async fn start() -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.ingest.ack = AckMode::Lake;
    config.ingest.buffer_interval_s = 0;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node = Node::start(
        NodeOptions {
            role: newsrec_cli::node::Role::All,
            config,
            data_dir: dir.path().to_owned(),
            metrics: None,
        },
        listener,
    )
    .await
    .unwrap();
    (node, dir)
}

async fn lake_ids(node: &Node) -> HashMap<String, usize> {
    newsrec_testkit::lake_event_ids(node.lake()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_puts_records_and_sees_the_service_errors() {
    if std::env::var("NEWSREC_TEST_BOTO3").is_err() {
        eprintln!("NEWSREC_TEST_BOTO3 not set: the boto3 test runs in CI (.ci/run)");
        return;
    }
    let (node, _dir) = start().await;
    let endpoint = format!("http://{}", node.addr());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/firehose_sdk.py");
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .arg(&endpoint)
        .output()
        .await
        .expect("running python3");
    assert!(
        output.status.success(),
        "boto3 script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        seen["put_record_id"]
            .as_str()
            .unwrap()
            .starts_with("node-1-")
    );
    assert_eq!(seen["batch_failed"], 0, "{seen}");
    let ids: Vec<&str> = seen["batch_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().expect("every record has a RecordId"))
        .collect();
    assert_eq!(ids.len(), 102);
    assert_eq!(
        ids.iter().collect::<std::collections::HashSet<_>>().len(),
        102,
        "record ids are unique"
    );
    assert_eq!(
        seen["too_many"]["code"], "InvalidArgumentException",
        "{seen}"
    );
    assert_eq!(seen["too_many"]["status"], 400);
    assert!(
        seen["too_many"]["message"]
            .as_str()
            .unwrap()
            .contains("501 records")
    );
    assert_eq!(seen["too_large_record"]["code"], "InvalidArgumentException");
    assert!(
        seen["too_large_record"]["message"]
            .as_str()
            .unwrap()
            .contains("1024001 bytes")
    );
    assert!(
        seen["bad_stream"]["code"]
            .as_str()
            .unwrap()
            .ends_with("Exception")
    );

    // 1 + 300 + 1 valid events reached the lake, once each; the refused ones went to errors/.
    let found = lake_ids(&node).await;
    assert_eq!(found.len(), 302, "{:?}", found.len());
    assert!(found.values().all(|n| *n == 1));
    let from_refused_call = found
        .keys()
        .filter_map(|id| id.strip_prefix("fh-")?.parse::<u32>().ok())
        .filter(|n| (5000..5501).contains(n))
        .count();
    assert_eq!(from_refused_call, 0, "the 501-record call stored nothing");
    let errors = node
        .lake()
        .read_errors(chrono::Utc::now().date_naive())
        .await
        .unwrap();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().all(|e| e.source == "firehose"));
    assert_eq!(errors[0].record, 100);
    assert_eq!(errors[0].line, Some(1));
    assert!(
        errors[1].error_message.contains("UTF-8"),
        "{}",
        errors[1].error_message
    );
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_bad_calls_get_the_exceptions_the_sdks_expect() {
    let (node, _dir) = start().await;
    let url = format!("http://{}/", node.addr());
    let client = reqwest::Client::new();
    let call = |target: &'static str, body: Vec<u8>| {
        client
            .post(&url)
            .header("X-Amz-Target", target)
            .header("Content-Type", "application/x-amz-json-1.1")
            .body(body)
            .send()
    };
    let batch = "Firehose_20150804.PutRecordBatch";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            batch,
            br#"{"DeliveryStreamName":"s","Records":[{"Data":"!!not base64"}]}"#.to_vec(),
            "SerializationException",
        ),
        (
            batch,
            br#"{"DeliveryStreamName":"s","Records":[{"Data":42}]}"#.to_vec(),
            "SerializationException",
        ),
        (
            batch,
            br#"{"DeliveryStreamName":"s","Records":"nope"}"#.to_vec(),
            "SerializationException",
        ),
        (
            batch,
            b"{\"DeliveryStreamName\":\"s\",\"Records\":[{\"Data\":\"\xff\"}]}".to_vec(),
            "SerializationException",
        ),
        (
            batch,
            br#"{"DeliveryStreamName":"s","Records":[]}"#.to_vec(),
            "InvalidArgumentException",
        ),
        (
            "Firehose_20150804.DeleteDeliveryStream",
            b"{}".to_vec(),
            "UnknownOperationException",
        ),
    ];
    for (target, body, exception) in cases {
        let response = call(target, body.clone()).await.unwrap();
        assert_eq!(response.status(), 400, "{}", String::from_utf8_lossy(&body));
        let reply: Value = response.json().await.unwrap();
        assert_eq!(reply["__type"], exception, "{reply}");
        assert!(!reply["message"].as_str().unwrap().is_empty());
    }
    // A body over the cap: refused before parsing.
    let huge = vec![b' '; newsrec_ingest::firehose::MAX_BODY_BYTES + 1];
    let response = call(batch, huge).await.unwrap();
    assert_eq!(response.status(), 400);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["__type"], "InvalidArgumentException");
    assert!(lake_ids(&node).await.is_empty(), "bad calls store nothing");
    node.shutdown().await.unwrap();
}
