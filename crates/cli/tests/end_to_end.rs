//! End to end, in-process: clicks over HTTP → lake → train → publish (from a second store
//! handle, as another process) → the running node serves personalised lists.

use std::time::{Duration, Instant};

use newsrec_cli::node::{Node, NodeOptions};
use newsrec_config::Config;
use newsrec_kv::EmbeddedStore;
use newsrec_publish::{GateMode, PublishOptions, publish_run};
use newsrec_testkit::{SynthConfig, generate};
use newsrec_train::{TrainRequest, train};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicks_in_recommendations_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.ingest.ack = newsrec_ingest::AckMode::Lake;
    config.ingest.buffer_interval_s = 0;
    config.serve.refresh_interval_ms = 100;
    // Expiry has its own tests; here lists are compared with what training wrote.
    config.serve.article_max_age_hours = 24 * 365;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node = Node::start(
        NodeOptions {
            role: newsrec_cli::node::Role::All,
            config: config.clone(),
            data_dir: dir.path().to_owned(),
            metrics: None,
        },
        listener,
    )
    .await
    .unwrap();
    let base = format!("http://{}", node.addr());
    let client = reqwest::Client::new();

    // Before any publish the API says so instead of serving nothing.
    let status = client
        .get(format!("{base}/v1/users/user0/recommendations"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 503);

    let synth = SynthConfig {
        users: 300,
        days: 4,
        sessions_per_day: 900,
        spike_day: 2,
        ..SynthConfig::default()
    };
    let stream = generate(&synth);
    for chunk in stream.events.chunks(1_000) {
        let body: String = chunk
            .iter()
            .map(|event| format!("{}\n", event.to_json()))
            .collect();
        let reply: Value = client
            .post(format!("{base}/v1/events"))
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            reply["accepted"].as_u64(),
            Some(chunk.len() as u64),
            "{reply}"
        );
    }

    let serving_day = synth.start + chrono::Days::new(u64::from(synth.days - 1));
    let request = TrainRequest::new(serving_day, "e2e", config.train.clone());
    let manifest = train(node.lake(), &request).await.unwrap();
    assert!(manifest.outputs.users > 100, "{:?}", manifest.outputs);
    assert_eq!(
        manifest.evaluations.len(),
        2,
        "backtest on D-1 and served on D"
    );

    let publisher = EmbeddedStore::open(dir.path().join("kv")).unwrap();
    let options = PublishOptions {
        batch_users: 100,
        keep_generations: 2,
        gate: GateMode::Enforce { tolerance: 0.05 },
    };
    let report = publish_run(node.lake(), &publisher, "e2e", options, &|_| {})
        .await
        .unwrap();

    let started = Instant::now();
    loop {
        let health: Value = client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if health["generation"].as_u64() == Some(report.generation) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the node never picked up the generation: {health}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let get = |user: &str| {
        let url = format!("{base}/v1/users/{user}/recommendations?k=10");
        let client = client.clone();
        async move {
            client
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let ids = |reply: &Value| -> Vec<String> {
        reply["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["article_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let stranger = get("nobody-we-know").await;
    assert_eq!(stranger["source"], "fallback", "{stranger}");
    assert_eq!(ids(&stranger).len(), 10);
    let reader = get("user0").await;
    assert_eq!(reader["source"], "daily", "{reader}");
    assert_eq!(reader["generation"].as_u64(), Some(report.generation));
    assert_eq!(ids(&reader).len(), 10);
    assert_ne!(
        ids(&reader),
        ids(&stranger),
        "a reader with history gets more than the fallback"
    );

    // Similar articles come from the same generation as the lists.
    let similar = node
        .lake()
        .read_run_table("e2e", newsrec_lake::layout::SIMILAR_TABLE)
        .await
        .unwrap();
    let similar = newsrec_lake::recs::similar_from_batches(&similar).unwrap();
    assert!(!similar.is_empty(), "the run wrote similar-article lists");
    let article = &similar[0];
    let reply: Value = client
        .get(format!(
            "{base}/v1/articles/{}/similar?k=3",
            article.article_id
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let served: Vec<&str> = reply["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["article_id"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = article
        .items
        .iter()
        .take(3)
        .map(|i| i.article_id.as_str())
        .collect();
    assert_eq!(served, expected, "{reply}");

    // A click posted after the publish is filtered out at once (the node sees its own ingest).
    let top = ids(&reader)[0].clone();
    let click = format!(
        r#"{{"user_id":"user0","article_id":"{top}","ts":{}}}"#,
        stream.events.last().unwrap().ts_ms
    );
    let reply: Value = client
        .post(format!("{base}/v1/events"))
        .body(click)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["accepted"], 1, "{reply}");
    let after = get("user0").await;
    assert!(
        !ids(&after).contains(&top),
        "{top} was read after the publish: {after}"
    );

    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_keys_cors_and_openapi_on_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.ingest.buffer_interval_s = 0;
    config.ingest.write_keys = vec!["writer".into()];
    config.ingest.cors_origins = vec!["https://news.example".into()];
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
    let base = format!("http://{}", node.addr());
    let client = reqwest::Client::new();
    let event = r#"{"user_id":"u","article_id":"a","ts":1506852000000}"#;

    let refused = client
        .post(format!("{base}/v1/events"))
        .body(event)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let accepted = client
        .post(format!("{base}/v1/events"))
        .bearer_auth("writer")
        .body(event)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200);

    // A browser's preflight from the configured origin is allowed; another origin is not.
    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, format!("{base}/v1/events"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,authorization",
            )
            .send()
    };
    let allowed = preflight("https://news.example").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://news.example"
    );
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    let document: Value = client
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(document["openapi"], "3.0.3");
    node.shutdown().await.unwrap();
}
