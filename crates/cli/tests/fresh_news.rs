//! Fresh news over HTTP: clicks acked by ingest reach serving's real-time signals (trending,
//! co-visitation, recent reads) within a second, in one node and with split roles through the
//! Redis of this machine (`NEWSREC_TEST_REDIS_URL`).

use std::{
    path::Path,
    time::{Duration, Instant},
};

use newsrec_cli::node::{Node, NodeOptions, Role};
use newsrec_config::Config;
use newsrec_kv::{EmbeddedStore, conformance};
use serde_json::Value;

/// Event time of the test's "today" (2026-11-05T10:00Z).
const NOW: i64 = 1_793_872_800_000;

fn config() -> Config {
    let mut config = Config::default();
    config.serve.refresh_interval_ms = 100;
    config
}

async fn start(config: Config, dir: &Path, role: Role) -> Node {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Node::start(
        NodeOptions {
            role,
            config,
            data_dir: dir.to_owned(),
            metrics: None,
        },
        listener,
    )
    .await
    .unwrap()
}

/// Publishes a generation into the node's embedded store, as `newsrec publish` from another
/// process would, and waits until the node serves it.
async fn publish(dir: &Path, base: &str) {
    let store = EmbeddedStore::open(dir.join("kv")).unwrap();
    let generation =
        conformance::publish(&store, "run-1", &[("known", &["old1", "old2", "old3"])]).await;
    let started = Instant::now();
    loop {
        let health: Value = reqwest::get(format!("{base}/healthz"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if health["generation"].as_u64() == Some(generation) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{health}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn post(base: &str, clicks: &[(String, &str, i64)]) {
    let body: String = clicks
        .iter()
        .map(|(user, article, ts)| {
            format!("{{\"user_id\":\"{user}\",\"article_id\":\"{article}\",\"ts\":{ts}}}\n")
        })
        .collect();
    let reply: Value = reqwest::Client::new()
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
        Some(clicks.len() as u64),
        "{reply}"
    );
}

async fn list(base: &str, user: &str) -> Vec<(String, String)> {
    let reply: Value = reqwest::get(format!("{base}/v1/users/{user}/recommendations?k=10"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    reply["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{reply}"))
        .iter()
        .map(|item| {
            (
                item["article_id"].as_str().unwrap().to_owned(),
                item["source"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Polls `user`'s list until `check` holds or `within` passes; returns the time it took.
async fn until(
    base: &str,
    user: &str,
    within: Duration,
    check: impl Fn(&[(String, String)]) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let items = list(base, user).await;
        if check(&items) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{user}'s list never got there within {within:?}: {items:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn has(items: &[(String, String)], article: &str, source: &str) -> bool {
    items.iter().any(|(id, s)| id == article && s == source)
}

/// The scenario both topologies must pass: `ingest` takes clicks, `serve` answers.
async fn fresh_news_scenario(ingest: &str, serve: &str) {
    // An article first read two days ago, then yesterday's steady reading, then this
    // morning's story clicked by 40 readers.
    post(
        ingest,
        &[("archivist".to_owned(), "ancient-hot", NOW - 50 * 3_600_000)],
    )
    .await;
    let steady: Vec<(String, &str, i64)> = (0..30)
        .map(|i| (format!("steady{i}"), "old1", NOW - 3_600_000 + i))
        .collect();
    post(ingest, &steady).await;
    let acked = Instant::now();
    let burst: Vec<(String, &str, i64)> = (0..40)
        .map(|i| (format!("reader{i}"), "fresh-hot", NOW + i))
        .collect();
    post(ingest, &burst).await;
    let took = until(serve, "cold-user", Duration::from_secs(1), |items| {
        items
            .first()
            .is_some_and(|(id, s)| id == "fresh-hot" && s == "trending")
    })
    .await;
    eprintln!(
        "fresh-hot led a cold user's list {took:?} after the poll began, {:?} after the ack",
        acked.elapsed()
    );

    // Readers of "story-a" go on to "fresh-b"; a reader of "story-a" is sent there next.
    let mut path = Vec::new();
    for i in 0..8 {
        path.push((format!("path{i}"), "story-a", NOW + 60_000 + i * 10));
        path.push((format!("path{i}"), "fresh-b", NOW + 120_000 + i * 10));
    }
    post(ingest, &path).await;
    post(ingest, &[("me".to_owned(), "story-a", NOW + 180_000)]).await;
    until(serve, "me", Duration::from_secs(2), |items| {
        has(items, "fresh-b", "covisit")
    })
    .await;
    let mine = list(serve, "me").await;
    assert!(
        !mine.iter().any(|(id, _)| id == "story-a"),
        "read, so never served: {mine:?}"
    );
    assert_eq!(mine[0].0, "fresh-b", "{mine:?}");

    // A daily-list reader who read one of their list's articles never gets it back.
    post(ingest, &[("known".to_owned(), "old2", NOW + 190_000)]).await;
    until(serve, "known", Duration::from_secs(2), |items| {
        !items.iter().any(|(id, _)| id == "old2")
    })
    .await;

    // Expired articles are never served, however hot: one registered with an expiry an hour
    // ago, and one first clicked 50 hours ago (past the default 48 h age, nothing registered).
    let expired = format!(
        r#"[{{"article_id":"recalled","published_at":{},"expires_at":{}}}]"#,
        NOW - 7_200_000,
        NOW - 3_600_000
    );
    let reply = reqwest::Client::new()
        .put(format!("{serve}/v1/articles"))
        .body(expired)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let storm: Vec<(String, &str, i64)> = (0..500)
        .flat_map(|i| {
            let user = format!("storm{i}");
            [
                (user.clone(), "recalled", NOW + 200_000 + i),
                (user, "ancient-hot", NOW + 200_500 + i),
            ]
        })
        .collect();
    post(ingest, &storm).await;
    // A marker clicked after the storm: once a cold user sees it, the storm has been applied.
    let marker: Vec<(String, &str, i64)> = (0..600)
        .map(|i| (format!("marker{i}"), "marker", NOW + 210_000 + i))
        .collect();
    post(ingest, &marker).await;
    until(serve, "cold-user", Duration::from_secs(2), |items| {
        items.iter().any(|(id, _)| id == "marker")
    })
    .await;
    for user in ["cold-user", "me", "known", "storm1", "marker1"] {
        let items = list(serve, user).await;
        assert!(
            !items
                .iter()
                .any(|(id, _)| id == "recalled" || id == "ancient-hot"),
            "{user}: {items:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_articles_reach_lists_within_a_second_on_one_node() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(config(), dir.path(), Role::All).await;
    let base = format!("http://{}", node.addr());
    publish(dir.path(), &base).await;
    fresh_news_scenario(&base, &base).await;

    let stats = node.signals().unwrap().stats();
    assert!(stats.clicks >= 1 + 30 + 40 + 1_000 + 600, "{stats:?}");
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_roles_share_the_signals_through_redis() {
    let Ok(url) = std::env::var("NEWSREC_TEST_REDIS_URL") else {
        eprintln!("NEWSREC_TEST_REDIS_URL is not set: split roles through Redis not tested");
        return;
    };
    let stream = format!(
        "newsrec-test:clicks:{}:{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let mut shared = config();
    shared.signals.share = url.clone();
    shared.signals.share_stream = stream.clone();
    let (ingest_dir, serve_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ingest = start(shared.clone(), ingest_dir.path(), Role::Ingest).await;
    let serve = start(shared.clone(), serve_dir.path(), Role::Serve).await;
    let (ingest_base, serve_base) = (
        format!("http://{}", ingest.addr()),
        format!("http://{}", serve.addr()),
    );
    // Each role answers only its own routes.
    let status = reqwest::get(format!("{ingest_base}/v1/users/x/recommendations"))
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404, "an ingest node does not serve");
    publish(serve_dir.path(), &serve_base).await;
    fresh_news_scenario(&ingest_base, &serve_base).await;

    // A serving node started later catches up from the stream's retained clicks.
    let late_dir = tempfile::tempdir().unwrap();
    let late = start(shared.clone(), late_dir.path(), Role::Serve).await;
    let late_base = format!("http://{}", late.addr());
    publish(late_dir.path(), &late_base).await;
    until(&late_base, "me", Duration::from_secs(2), |items| {
        has(items, "fresh-b", "covisit") && !items.iter().any(|(id, _)| id == "story-a")
    })
    .await;

    ingest.shutdown().await.unwrap();
    serve.shutdown().await.unwrap();
    late.shutdown().await.unwrap();
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("DEL")
        .arg(&stream)
        .query_async(&mut connection)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_serve_only_node_without_a_shared_feed_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = Node::start(
        NodeOptions {
            role: Role::Serve,
            config: config(),
            data_dir: dir.path().to_owned(),
            metrics: None,
        },
        listener,
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("signals.share"), "{error}");
}
