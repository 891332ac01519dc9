//! The feed against a real Redis: delivery (order, exactly once, fan-out), replay of the
//! retained tail, the `MAXLEN ~` bound, bad entries, and Redis going away under a publisher
//! and under a subscriber.
//!
//! Set `NEWSREC_TEST_REDIS_URL` (e.g. `redis://127.0.0.1:6379`) to run them; unset, each test
//! prints a note and passes, and set with Redis down, each fails. Every test uses its own
//! stream key and deletes it at the end. Outages are made with a TCP proxy in front of Redis
//! that the test kills and restarts, so the Redis server itself is never disturbed.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use newsrec_feed::{
    ApplyClicks, Click, FeedError, FeedPublisher, FeedSettings, FeedSubscriber, StartAt,
    decode_clicks, encode_clicks,
};
use tokio::{
    net::{TcpListener, TcpStream},
    task::{JoinHandle, JoinSet},
};

const URL_VARIABLE: &str = "NEWSREC_TEST_REDIS_URL";

/// The test Redis url, or None (the test is skipped) when the variable is not set.
fn test_redis(test: &str) -> Option<String> {
    match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("skipped {test}: set {URL_VARIABLE}=redis://127.0.0.1:6379 to run it");
            None
        }
    }
}

/// A stream key no other test (or test run) uses, deleted when dropped, passed or failed.
struct TestStream {
    url: String,
    name: String,
}

impl TestStream {
    fn new(url: &str, case: &str) -> TestStream {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        TestStream {
            url: url.to_owned(),
            name: format!("newsrec-test:feed:{}-{nanos}-{case}", std::process::id()),
        }
    }

    fn settings(&self) -> FeedSettings {
        self.settings_at(&self.url)
    }

    /// The same stream, reached through another url (a proxy).
    fn settings_at(&self, url: &str) -> FeedSettings {
        FeedSettings {
            redis_url: url.to_owned(),
            stream: self.name.clone(),
            ..FeedSettings::default()
        }
    }

    async fn connection(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(self.url.as_str()).unwrap();
        client
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|error| panic!("{URL_VARIABLE} is set but redis is down: {error}"))
    }

    async fn len(&self) -> u64 {
        redis::cmd("XLEN")
            .arg(&self.name)
            .query_async(&mut self.connection().await)
            .await
            .unwrap()
    }

    async fn add_raw(&self, field: &str, value: &[u8]) {
        redis::cmd("XADD")
            .arg(&self.name)
            .arg("*")
            .arg(field)
            .arg(value)
            .query_async::<String>(&mut self.connection().await)
            .await
            .unwrap();
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        // A plain blocking connection: works whichever runtime (if any) is dropping us.
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        if let Ok(mut connection) = client.get_connection_with_timeout(Duration::from_secs(2)) {
            let _ = redis::cmd("DEL")
                .arg(&self.name)
                .query::<()>(&mut connection);
        }
    }
}

/// A callback that records every click it is given.
fn collector() -> (Arc<Mutex<Vec<Click>>>, ApplyClicks) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let apply: ApplyClicks = Arc::new(move |clicks: &[Click]| {
        sink.lock().unwrap().extend_from_slice(clicks);
    });
    (seen, apply)
}

fn click(n: u64) -> Click {
    Click {
        user_id: format!("u{}", n % 97),
        article_id: format!("a{n}"),
        ts_ms: 1_700_000_000_000 + i64::try_from(n).unwrap(),
    }
}

fn clicks(range: std::ops::Range<u64>) -> Vec<Click> {
    range.map(click).collect()
}

/// Polls `done` every 20 ms until it holds or `limit` passes; false on timeout.
async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

fn seen_len(seen: &Mutex<Vec<Click>>) -> usize {
    seen.lock().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_clicks_reach_two_subscribers_in_order_exactly_once() {
    let Some(url) = test_redis("ten_thousand_clicks_reach_two_subscribers_in_order_exactly_once")
    else {
        return;
    };
    let stream = TestStream::new(&url, "fanout");
    let publisher = FeedPublisher::connect(stream.settings()).await.unwrap();
    // Published before the subscribers start: StartAt::Now must not replay it.
    publisher.publish(&clicks(1_000_000..1_000_003));
    assert!(publisher.flush(Duration::from_secs(10)).await);

    let (seen_a, apply_a) = collector();
    let (seen_b, apply_b) = collector();
    let subscriber_a = FeedSubscriber::start(stream.settings(), StartAt::Now, apply_a)
        .await
        .unwrap();
    let subscriber_b = FeedSubscriber::start(stream.settings(), StartAt::Now, apply_b)
        .await
        .unwrap();

    let expected = clicks(0..10_000);
    for call in expected.chunks(50) {
        publisher.publish(call);
    }
    assert!(
        publisher.flush(Duration::from_secs(10)).await,
        "{:?}",
        publisher.stats()
    );
    let flushed = Instant::now();
    let stats = publisher.stats();
    assert_eq!(stats.published_entries, 201);
    assert_eq!(stats.published_clicks, 10_003);
    assert_eq!(stats.dropped_clicks, 0);
    assert_eq!(stats.queued_clicks, 0);

    let all_arrived = wait_until(Duration::from_secs(5), || {
        seen_len(&seen_a) >= expected.len() && seen_len(&seen_b) >= expected.len()
    })
    .await;
    assert!(
        all_arrived,
        "after 5 s: a has {}, b has {} of {}",
        seen_len(&seen_a),
        seen_len(&seen_b),
        expected.len()
    );
    eprintln!(
        "all clicks reached both subscribers {:?} after flush",
        flushed.elapsed()
    );
    // Give duplicates, if any, time to show up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (name, seen, subscriber) in [("a", &seen_a, &subscriber_a), ("b", &seen_b, &subscriber_b)] {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), expected.len(), "subscriber {name}: clicks seen");
        assert!(
            *seen == expected,
            "subscriber {name}: clicks out of order or altered"
        );
        let stats = subscriber.stats();
        assert_eq!(stats.entries, 200, "subscriber {name}");
        assert_eq!(stats.clicks, 10_000, "subscriber {name}");
        assert_eq!(stats.bad_entries, 0, "subscriber {name}");
        assert_eq!(stats.reconnects, 0, "subscriber {name}");
        assert!(stats.last_id.is_some(), "subscriber {name}");
        assert_eq!(
            stats.lag_ms, 0,
            "subscriber {name}: caught up after a quiet second"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_subscriber_replays_the_retained_tail_and_max_len_bounds_the_stream() {
    let Some(url) =
        test_redis("a_late_subscriber_replays_the_retained_tail_and_max_len_bounds_the_stream")
    else {
        return;
    };
    let stream = TestStream::new(&url, "replay");
    let max_len: u64 = 100;
    let publisher = FeedPublisher::connect(FeedSettings {
        max_len,
        ..stream.settings()
    })
    .await
    .unwrap();
    let clicks_per_call: u64 = 3;
    let calls: u64 = 1000;
    let expected = clicks(0..calls * clicks_per_call);
    for call in expected.chunks(clicks_per_call as usize) {
        publisher.publish(call);
    }
    assert!(publisher.flush(Duration::from_secs(10)).await);
    assert_eq!(publisher.stats().published_entries, calls);

    // `MAXLEN ~` trims whole radix-tree nodes only, so the stream may keep up to one node
    // (stream-node-max-entries, 100 by default) more than asked, never fewer.
    let node_entries: u64 = redis::cmd("CONFIG")
        .arg("GET")
        .arg("stream-node-max-entries")
        .query_async::<Vec<String>>(&mut stream.connection().await)
        .await
        .ok()
        .and_then(|reply| reply.get(1)?.parse().ok())
        .unwrap_or(100);
    let retained = stream.len().await;
    assert!(
        (max_len..=max_len + node_entries).contains(&retained),
        "XLEN {retained} after {calls} entries with max_len {max_len} (nodes of {node_entries})"
    );

    let (seen, apply) = collector();
    let subscriber = FeedSubscriber::start(stream.settings(), StartAt::Beginning, apply)
        .await
        .unwrap();
    let tail_len = usize::try_from(retained * clicks_per_call).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || seen_len(&seen) >= tail_len).await,
        "replayed {} of {tail_len} clicks",
        seen_len(&seen)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        *seen.lock().unwrap() == expected[expected.len() - tail_len..],
        "the replay is not exactly the newest {retained} entries, in order"
    );
    assert_eq!(subscriber.stats().entries, retained);

    // And it keeps following the live stream after the replay.
    publisher.publish(&clicks(5000..5003));
    assert!(publisher.flush(Duration::from_secs(10)).await);
    assert!(wait_until(Duration::from_secs(5), || seen_len(&seen) == tail_len + 3).await);
    assert_eq!(seen.lock().unwrap()[tail_len..], clicks(5000..5003)[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_entries_are_skipped_counted_and_later_entries_still_arrive() {
    let Some(url) =
        test_redis("garbage_entries_are_skipped_counted_and_later_entries_still_arrive")
    else {
        return;
    };
    let stream = TestStream::new(&url, "garbage");
    let publisher = FeedPublisher::connect(stream.settings()).await.unwrap();
    let (seen, apply) = collector();
    let subscriber = FeedSubscriber::start(stream.settings(), StartAt::Now, apply)
        .await
        .unwrap();

    publisher.publish(&clicks(0..5));
    assert!(publisher.flush(Duration::from_secs(10)).await);
    let valid = encode_clicks(&clicks(100..103)).unwrap();
    stream.add_raw("c", b"not a click payload").await;
    stream.add_raw("c", &[9, 0]).await; // a version from the future
    stream.add_raw("c", &valid[..valid.len() - 1]).await; // truncated
    stream.add_raw("other", &valid).await; // no `c` field
    publisher.publish(&clicks(5..10));
    assert!(publisher.flush(Duration::from_secs(10)).await);

    assert!(
        wait_until(Duration::from_secs(5), || {
            subscriber.stats().bad_entries == 4 && seen_len(&seen) == 10
        })
        .await,
        "{:?}, {} clicks seen",
        subscriber.stats(),
        seen_len(&seen)
    );
    assert!(*seen.lock().unwrap() == clicks(0..10));
    let stats = subscriber.stats();
    assert_eq!((stats.entries, stats.clicks), (2, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_whose_redis_dies_never_blocks_counts_drops_and_recovers() {
    let Some(url) =
        test_redis("a_publisher_whose_redis_dies_never_blocks_counts_drops_and_recovers")
    else {
        return;
    };
    let stream = TestStream::new(&url, "publisher-outage");
    let mut proxy = Proxy::start(&url).await;
    let queue_clicks = 1000;
    let publisher = FeedPublisher::connect(FeedSettings {
        queue_clicks,
        ..stream.settings_at(&proxy.url)
    })
    .await
    .unwrap();
    publisher.publish(&clicks(0..10));
    assert!(publisher.flush(Duration::from_secs(10)).await);

    proxy.kill().await;
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let calls: u64 = 2000;
    for call in 0..calls {
        let before = Instant::now();
        publisher.publish(&clicks(1000 + call * 10..1000 + call * 10 + 10));
        slowest = slowest.max(before.elapsed());
    }
    let took = started.elapsed();
    // Each failed write takes the redis client up to seconds; a publish that waited on one
    // would make these 2000 calls take minutes.
    assert!(
        took < Duration::from_secs(2),
        "{calls} publish calls took {took:?} (slowest {slowest:?}) with redis down"
    );
    // The queue is bounded: right away, everything beyond it and the batch in flight (at most
    // 256 entries of 10 clicks) is counted as dropped.
    let stats = publisher.stats();
    assert!(stats.queued_clicks <= queue_clicks as u64, "{stats:?}");
    assert!(
        stats.dropped_clicks >= calls * 10 - queue_clicks as u64 - 2560,
        "{stats:?}"
    );
    assert!(
        !publisher.flush(Duration::from_secs(5)).await,
        "a flush cannot succeed while redis is down"
    );
    assert_eq!(publisher.stats().published_entries, 1, "nothing written");

    proxy.restart().await;
    // The first write after the outage may still fail (the client notices the dead connection
    // then); keep publishing a probe until a flush reports it written.
    let recovered = async {
        for probe in 0.. {
            publisher.publish(&clicks(90_000 + probe..90_001 + probe));
            if publisher.flush(Duration::from_secs(3)).await {
                return probe;
            }
        }
        unreachable!()
    };
    let probe = tokio::time::timeout(Duration::from_secs(20), recovered)
        .await
        .expect("the publisher did not recover within 20 s of redis coming back");
    // [[id, [field, value]]]
    let newest: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XREVRANGE")
        .arg(&stream.name)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut stream.connection().await)
        .await
        .unwrap();
    assert_eq!(newest[0].1[0], b"c");
    assert_eq!(
        decode_clicks(&newest[0].1[1]).unwrap(),
        clicks(90_000 + probe..90_001 + probe),
        "the newest entry is the last probe"
    );
    let final_stats = publisher.stats();
    let accounted = final_stats.published_clicks + final_stats.dropped_clicks;
    assert_eq!(
        accounted,
        10 + calls * 10 + probe + 1,
        "every click is published or dropped, once: {final_stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_loses_redis_resumes_without_gaps_or_duplicates() {
    let Some(url) = test_redis("a_subscriber_that_loses_redis_resumes_without_gaps_or_duplicates")
    else {
        return;
    };
    let stream = TestStream::new(&url, "subscriber-outage");
    let mut proxy = Proxy::start(&url).await;
    let publisher = FeedPublisher::connect(stream.settings()).await.unwrap();
    let (seen, apply) = collector();
    let subscriber = FeedSubscriber::start(stream.settings_at(&proxy.url), StartAt::Now, apply)
        .await
        .unwrap();

    let expected = clicks(0..1000);
    for call in expected[..500].chunks(10) {
        publisher.publish(call);
    }
    assert!(publisher.flush(Duration::from_secs(10)).await);
    assert!(wait_until(Duration::from_secs(5), || seen_len(&seen) == 500).await);

    proxy.kill().await;
    for call in expected[500..].chunks(10) {
        publisher.publish(call);
    }
    assert!(publisher.flush(Duration::from_secs(10)).await);
    // Long enough for the subscriber to notice and fail a few reconnects.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        seen_len(&seen),
        500,
        "nothing arrives while redis is unreachable"
    );
    proxy.restart().await;

    assert!(
        wait_until(Duration::from_secs(15), || seen_len(&seen) >= 1000).await,
        "{} of 1000 clicks after reconnecting; {:?}",
        seen_len(&seen),
        subscriber.stats()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        *seen.lock().unwrap() == expected,
        "clicks lost, repeated or reordered across the reconnect"
    );
    let stats = subscriber.stats();
    assert_eq!(stats.entries, 100);
    assert!(stats.reconnects >= 1, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_follows_a_stream_recreated_with_lower_ids() {
    // Redis restarted without persistence, or the key was deleted: the new stream's ids can
    // be below the subscriber's position. Pinned with explicit ids, since the clock would
    // usually hide it.
    let Some(url) = test_redis("a_subscriber_follows_a_stream_recreated_with_lower_ids") else {
        return;
    };
    let stream = TestStream::new(&url, "recreated");
    let far_future = "9000000000000-0";
    redis::cmd("XADD")
        .arg(&stream.name)
        .arg(far_future)
        .arg("c")
        .arg(encode_clicks(&clicks(0..1)).unwrap())
        .query_async::<String>(&mut stream.connection().await)
        .await
        .unwrap();
    let mut proxy = Proxy::start(&url).await;
    let (seen, apply) = collector();
    let subscriber =
        FeedSubscriber::start(stream.settings_at(&proxy.url), StartAt::Beginning, apply)
            .await
            .unwrap();
    assert!(wait_until(Duration::from_secs(5), || seen_len(&seen) == 1).await);

    proxy.kill().await;
    redis::cmd("DEL")
        .arg(&stream.name)
        .query_async::<()>(&mut stream.connection().await)
        .await
        .unwrap();
    let publisher = FeedPublisher::connect(stream.settings()).await.unwrap();
    publisher.publish(&clicks(1..4));
    assert!(publisher.flush(Duration::from_secs(10)).await);
    proxy.restart().await;

    assert!(
        wait_until(Duration::from_secs(15), || seen_len(&seen) == 4).await,
        "{:?}",
        subscriber.stats()
    );
    assert!(*seen.lock().unwrap() == clicks(0..4));
}

#[tokio::test]
async fn connecting_to_a_closed_port_fails_and_names_the_url() {
    // Needs no redis: a port nothing listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let settings = FeedSettings {
        redis_url: format!("redis://user:secret@127.0.0.1:{port}/0"),
        stream: "newsrec-test:feed:closed".into(),
        ..FeedSettings::default()
    };
    let publisher_error = FeedPublisher::connect(settings.clone()).await.unwrap_err();
    let (_, apply) = collector();
    let subscriber_error = FeedSubscriber::start(settings, StartAt::Now, apply)
        .await
        .unwrap_err();
    for error in [publisher_error, subscriber_error] {
        assert!(matches!(error, FeedError::Unreachable { .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains(&format!("127.0.0.1:{port}")),
            "no url: {message}"
        );
        assert!(
            message.contains("newsrec-test:feed:closed"),
            "no stream: {message}"
        );
        assert!(
            message.contains("check that redis is running"),
            "no hint: {message}"
        );
        assert!(!message.contains("secret"), "password shown: {message}");
    }
}

#[tokio::test]
async fn a_url_that_is_not_redis_is_refused() {
    let settings = FeedSettings {
        redis_url: "http://127.0.0.1:6379".into(),
        ..FeedSettings::default()
    };
    let error = FeedPublisher::connect(settings).await.unwrap_err();
    assert!(matches!(error, FeedError::InvalidUrl { .. }), "{error:?}");
    assert!(
        error.to_string().contains("http://127.0.0.1:6379"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_is_not_a_stream_is_refused_at_start() {
    let Some(url) = test_redis("a_key_that_is_not_a_stream_is_refused_at_start") else {
        return;
    };
    let stream = TestStream::new(&url, "wrong-type");
    redis::cmd("SET")
        .arg(&stream.name)
        .arg("a string")
        .query_async::<()>(&mut stream.connection().await)
        .await
        .unwrap();
    let error = FeedPublisher::connect(stream.settings()).await.unwrap_err();
    assert!(
        matches!(&error, FeedError::NotAStream { found, .. } if found == "string"),
        "{error:?}"
    );
    let (_, apply) = collector();
    let error = FeedSubscriber::start(stream.settings(), StartAt::Beginning, apply)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("is a redis string, not a stream"),
        "{error}"
    );
}

/// A TCP proxy in front of the test Redis that can be killed (listener closed, every
/// connection cut) and restarted on the same port: Redis "dies" for whoever connects through
/// it while the test keeps its own direct connections.
struct Proxy {
    url: String,
    port: u16,
    upstream: String,
    task: Option<JoinHandle<()>>,
}

impl Proxy {
    async fn start(redis_url: &str) -> Proxy {
        let mut url = redis::parse_redis_url(redis_url)
            .unwrap_or_else(|| panic!("{URL_VARIABLE}={redis_url} is not a redis:// url"));
        let upstream = format!(
            "{}:{}",
            url.host_str()
                .expect("the proxy tests need a tcp redis url with a host"),
            url.port().unwrap_or(6379)
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(port)).unwrap();
        let mut proxy = Proxy {
            url: url.to_string(),
            port,
            upstream,
            task: None,
        };
        proxy.task = Some(tokio::spawn(serve(listener, proxy.upstream.clone())));
        proxy
    }

    /// Closes the listener and cuts every proxied connection.
    async fn kill(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            // Dropping the task drops its JoinSet, which aborts every connection's task.
            let _ = task.await;
        }
    }

    async fn restart(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(error) if Instant::now() < deadline => {
                    eprintln!("rebinding the proxy port {}: {error}; retrying", self.port);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("cannot rebind the proxy port {}: {error}", self.port),
            }
        };
        self.task = Some(tokio::spawn(serve(listener, self.upstream.clone())));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn serve(listener: TcpListener, upstream: String) {
    let mut connections = JoinSet::new();
    while let Ok((mut inbound, _)) = listener.accept().await {
        while connections.try_join_next().is_some() {}
        let upstream = upstream.clone();
        connections.spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}
