//! `newsrec bench serve`: serving throughput and latency against a Redis GET peer, same machine,
//! same run.
//!
//! Publishes a synthetic generation (N users × K items) into a fresh embedded store, starts a
//! node, drives `GET /v1/users/{random known user}/recommendations?k=10` with `wrk` (a separate
//! process, keep-alive connections), then drives `redis-benchmark -t get` against the local Redis
//! with values of the same size as a stored list. Both load generators run one thread
//! (redis-benchmark is single-threaded; wrk gets `-t 1` to match), so on a 2-core machine the
//! server under test keeps a core. Each side runs `--runs` times; the table shows medians and
//! the ratio of medians.

use std::{io::Write, path::Path, process::Command, sync::Arc, time::Instant};

use newsrec_config::Config;
use newsrec_kv::{RecItem, RecStore, UserList, encode_items};
use newsrec_kv_open::OpenOptions;
use serde::Serialize;

use crate::{BenchError, Format, Host, Report, ServingNode, median};

#[derive(Debug, clap::Args)]
pub struct ServeBenchArgs {
    /// Users in the published generation
    #[arg(long, default_value_t = 1_000_000)]
    pub users: usize,
    /// Items per user list
    #[arg(long, default_value_t = 50)]
    pub items: usize,
    /// Length of each load run
    #[arg(long, default_value = "30", value_name = "SECONDS")]
    pub duration: u64,
    /// Concurrent connections (both sides)
    #[arg(long, default_value_t = 50)]
    pub connections: usize,
    /// Runs per side; medians are reported
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Redis to measure as the peer
    #[arg(long, default_value = "127.0.0.1:6379")]
    pub redis: String,
    /// Clicks fed to the node's real-time signals before the load (about one Globo day), so
    /// the blend has trending, co-visitation and recent reads to work with; 0 = daily lists only
    #[arg(long, default_value_t = 250_000)]
    pub warm_clicks: usize,
    /// Serving store to measure: empty for the embedded store; redis://host:port/db to publish
    /// into and serve from Redis (under the prefix `newsrec-bench`, removed afterwards); or
    /// dynamodb://newsrec-bench?endpoint=URL&create=true (that table name only; always
    /// publish-only)
    #[arg(long, default_value = "", value_name = "URI")]
    pub kv: String,
    /// Measure the publish rate only (no load runs): for stores whose test endpoint is no
    /// performance peer, such as moto's DynamoDB
    #[arg(long)]
    pub publish_only: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// The Redis key prefix and DynamoDB table `bench serve --kv` owns: never a deployment's.
const BENCH_NAMESPACE: &str = "newsrec-bench";

/// How long the benchmark waits for the node to cache the generation (1M users take seconds).
const WARM_WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

/// One side's figures.
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct LoadFigures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
struct ServeBenchReport {
    stage: &'static str,
    store: &'static str,
    users: usize,
    items: usize,
    value_bytes: usize,
    publish_users_per_sec: f64,
    store_bytes_per_million_users: u64,
    warm_clicks: usize,
    signals_memory_bytes: usize,
    runs: usize,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: Option<f64>,
    peer: &'static str,
    peer_rps: f64,
    peer_p50_ms: f64,
    peer_p99_ms: f64,
    ratio: f64,
}

/// The figures of a `--publish-only` run (keys in the order the JSON line has always had).
#[derive(Debug, Serialize)]
struct PublishReport {
    items: usize,
    publish_users_per_sec: f64,
    stage: &'static str,
    store: &'static str,
    store_bytes_per_million_users: u64,
    users: usize,
    value_bytes: usize,
}

pub(crate) async fn run<H: Host>(
    host: &H,
    config: &Config,
    args: ServeBenchArgs,
) -> Result<Report, BenchError> {
    for tool in ["wrk", "redis-benchmark"] {
        let found = Command::new(tool).arg("--version").output().is_ok()
            || Command::new("which")
                .arg(tool)
                .output()
                .is_ok_and(|o| o.status.success());
        if !found {
            return Err(BenchError::Missing(format!(
                "{tool} is not installed: apt-get install -y wrk redis-tools"
            )));
        }
    }
    let dir = tempfile::tempdir().map_err(BenchError::io("creating a scratch folder"))?;
    let (store_name, kv_uri, store) = open_bench_store(&args.kv, &dir.path().join("kv")).await?;
    eprintln!(
        "publishing {} users x {} items into a fresh {store_name} store…",
        args.users, args.items
    );
    let (publish_rate, value_bytes) =
        publish_synthetic(store.as_ref(), args.users, args.items).await?;
    // Only the embedded store's size is read off here (Redis's memory is shared with others).
    let per_million = if kv_uri.is_empty() {
        let store_bytes = folder_bytes(&dir.path().join("kv"))?;
        (store_bytes as f64 * 1_000_000.0 / args.users.max(1) as f64) as u64
    } else {
        0
    };
    if args.publish_only || store_name == "dynamodb" {
        if !kv_uri.is_empty() {
            clear_bench_store(store.as_ref(), args.items).await?;
        }
        let report = PublishReport {
            items: args.items,
            publish_users_per_sec: publish_rate,
            stage: "serve",
            store: store_name,
            store_bytes_per_million_users: per_million,
            users: args.users,
            value_bytes,
        };
        return Report::of(args.format, &report, |report| {
            let line = format!(
                "publish to {store_name}: {} users x {} items at {publish_rate:.0} users/s",
                report.users, report.items
            );
            (Vec::new(), vec![line])
        });
    }

    let mut node_config = config.clone();
    node_config.lake.uri.clear();
    node_config.kv.uri = kv_uri.clone();
    node_config.serve.api_keys.clear();
    // The benchmark measures lookups, not shedding: let every connection in.
    node_config.serve.max_in_flight = node_config.serve.max_in_flight.max(args.connections * 2);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(BenchError::io("binding a loopback port for the node"))?;
    let node = host
        .start_node(node_config, dir.path(), listener)
        .await
        .map_err(BenchError::Host)?;
    let signals_memory_bytes = match node.signals() {
        Some(signals) => {
            eprintln!(
                "feeding {} clicks to the node's real-time signals…",
                args.warm_clicks
            );
            warm_signals(signals, args.users, args.warm_clicks);
            signals.stats().memory_bytes
        }
        None => 0,
    };
    // A node that has served for a while has the generation in memory, as Redis has its keys:
    // measure that state, after the warming the node does on its own.
    let warm_started = std::time::Instant::now();
    let health = format!("http://{}/healthz", node.addr());
    loop {
        let reply: serde_json::Value = reqwest::get(&health).await?.json().await?;
        if reply["warming"] != serde_json::Value::Bool(true) {
            break;
        }
        if warm_started.elapsed() > WARM_WAIT_LIMIT {
            return Err(BenchError::Unexpected(format!(
                "the node still reports warming after {WARM_WAIT_LIMIT:?}; its log says why (kv-warm)"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    eprintln!(
        "the node cached the generation in {:.1} s",
        warm_started.elapsed().as_secs_f64()
    );
    let script = dir.path().join("random-user.lua");
    std::fs::File::create(&script)
        .and_then(|mut file| file.write_all(wrk_script(args.users).as_bytes()))
        .map_err(BenchError::io(format!("writing {}", script.display())))?;

    let mut ours = Vec::new();
    let mut peer = Vec::new();
    for run in 1..=args.runs {
        eprintln!(
            "run {run}/{}: wrk against newsrec for {} s…",
            args.runs, args.duration
        );
        let url = format!("http://{}/v1/users/u0/recommendations?k=10", node.addr());
        let (connections, duration, script) = (args.connections, args.duration, script.clone());
        ours.push(
            tokio::task::spawn_blocking(move || run_wrk(&url, connections, duration, &script))
                .await??,
        );
        eprintln!(
            "run {run}/{}: redis-benchmark GET ({value_bytes}-byte values)…",
            args.runs
        );
        let (redis, connections) = (args.redis.clone(), args.connections);
        // As many requests as newsrec served in the same time, so both runs last about as long.
        let requests =
            ((ours.last().map_or(0.0, |f| f.rps) * args.duration as f64) as u64).max(100_000);
        peer.push(
            tokio::task::spawn_blocking(move || {
                run_redis_benchmark(&redis, connections, value_bytes, requests)
            })
            .await??,
        );
    }
    node.shutdown().await.map_err(BenchError::Host)?;
    if !kv_uri.is_empty() {
        clear_bench_store(store.as_ref(), args.items).await?;
    }

    let ours = median_figures(&ours);
    let theirs = median_figures(&peer);
    let report = ServeBenchReport {
        stage: "serve",
        store: store_name,
        users: args.users,
        items: args.items,
        value_bytes,
        publish_users_per_sec: publish_rate,
        store_bytes_per_million_users: per_million,
        warm_clicks: args.warm_clicks,
        signals_memory_bytes,
        runs: args.runs,
        rps: ours.rps,
        p50_ms: ours.p50_ms,
        p99_ms: ours.p99_ms,
        p999_ms: ours.p999_ms,
        peer: "redis GET",
        peer_rps: theirs.rps,
        peer_p50_ms: theirs.p50_ms,
        peer_p99_ms: theirs.p99_ms,
        ratio: ours.rps / theirs.rps.max(1e-9),
    };
    Report::of(args.format, &report, |report| {
        let ms = |value: f64| format!("{value:.3}");
        let rows = vec![
            ["system", "req/s", "p50 ms", "p99 ms", "p99.9 ms"]
                .map(String::from)
                .to_vec(),
            vec![
                format!("newsrec HTTP (k=10, {store_name}, {} users)", args.users),
                format!("{:.0}", ours.rps),
                ms(ours.p50_ms),
                ms(ours.p99_ms),
                ours.p999_ms.map_or("-".into(), ms),
            ],
            vec![
                format!("redis GET ({value_bytes} B values)"),
                format!("{:.0}", theirs.rps),
                ms(theirs.p50_ms),
                ms(theirs.p99_ms),
                "-".into(),
            ],
        ];
        let size = if per_million > 0 {
            format!("{:.0} MiB", per_million as f64 / (1024.0 * 1024.0))
        } else {
            "not measured".into()
        };
        let notes = vec![
            format!(
                "ratio newsrec/redis: {:.2}x (medians of {} runs of {} s, {} connections)",
                report.ratio, args.runs, args.duration, args.connections
            ),
            format!(
                "publish to {store_name}: {publish_rate:.0} users/s; store: {size} per million users ({}-item lists)",
                args.items
            ),
            format!(
                "blend on: signals warmed with {} clicks, {:.1} MiB",
                args.warm_clicks,
                signals_memory_bytes as f64 / (1024.0 * 1024.0)
            ),
        ];
        (rows, notes)
    })
}

/// Opens the store `--kv` names, empty, for the benchmark to publish into: its name for the
/// report, the uri the node opens it with (empty for the embedded store in `embedded_dir`), and
/// the store. Redis is used under the benchmark's own prefix, DynamoDB only in the benchmark's
/// own table.
async fn open_bench_store(
    kv: &str,
    embedded_dir: &Path,
) -> Result<(&'static str, String, Arc<dyn RecStore>), BenchError> {
    let (name, uri) = bench_store_uri(kv)?;
    let options = OpenOptions {
        embedded_dir,
        serving: false,
    };
    let store = newsrec_kv_open::open(&uri, &options).await?;
    Ok((name, uri, store))
}

/// The store `--kv` names and the uri to open it with (Redis under the benchmark's own prefix,
/// DynamoDB only in the benchmark's own table).
fn bench_store_uri(kv: &str) -> Result<(&'static str, String), BenchError> {
    if kv.is_empty() {
        return Ok(("embedded", String::new()));
    }
    if let Some(rest) = kv.strip_prefix("dynamodb://") {
        let table = rest.split('?').next().unwrap_or_default();
        if table != BENCH_NAMESPACE {
            return Err(BenchError::InvalidArgs(format!(
                "bench serve publishes only into the table {BENCH_NAMESPACE:?}, so a deployment's table is never touched: use dynamodb://{BENCH_NAMESPACE}?endpoint=…&create=true"
            )));
        }
        return Ok(("dynamodb", kv.to_owned()));
    }
    if !kv.starts_with("redis://") {
        return Err(BenchError::InvalidArgs(format!(
            "bench serve --kv takes redis://host:port/db, dynamodb://{BENCH_NAMESPACE}?… or nothing (the embedded store), got {kv:?}"
        )));
    }
    if kv.contains("prefix=") {
        return Err(BenchError::InvalidArgs(format!(
            "bench serve writes under its own prefix {BENCH_NAMESPACE:?}, so a deployment's keys are never touched: drop prefix= from {kv:?}"
        )));
    }
    let separator = if kv.contains('?') { '&' } else { '?' };
    Ok(("redis", format!("{kv}{separator}prefix={BENCH_NAMESPACE}")))
}

/// Deletes the benchmark's lists from a shared store: an empty generation takes over, so prune
/// may delete the big one (a few small keys stay under the benchmark's own namespace).
async fn clear_bench_store(store: &dyn RecStore, items: usize) -> Result<(), BenchError> {
    publish_synthetic(store, 0, items).await?;
    store.prune(0).await?;
    Ok(())
}

/// Publishes `users` synthetic lists; returns (users/s, bytes of one encoded list).
async fn publish_synthetic(
    store: &dyn RecStore,
    users: usize,
    items: usize,
) -> Result<(f64, usize), BenchError> {
    let started = Instant::now();
    let mut writer = store.create_generation("bench").await?;
    let list = |user: usize| -> Vec<RecItem> {
        (0..items)
            .map(|rank| RecItem {
                article_id: format!(
                    "{}",
                    100_000 + user.wrapping_mul(7919).wrapping_add(rank * 104_729) % 400_000
                ),
                score: 1.0 / (rank as f32 + 1.0),
            })
            .collect()
    };
    let value_bytes = encode_items(&list(0))?.len();
    for start in (0..users).step_by(20_000) {
        let batch: Vec<UserList> = (start..(start + 20_000).min(users))
            .map(|user| UserList {
                user_id: format!("u{user}"),
                items: list(user),
            })
            .collect();
        writer.put_users(batch).await?;
    }
    writer.put_fallback(list(usize::MAX / 2)).await?;
    let info = writer.finish(users as u64).await?;
    store.activate(info.generation).await?;
    Ok((users as f64 / started.elapsed().as_secs_f64(), value_bytes))
}

fn folder_bytes(dir: &Path) -> Result<u64, BenchError> {
    let sizes = || -> std::io::Result<u64> {
        let mut total = 0;
        for entry in std::fs::read_dir(dir)? {
            let metadata = entry?.metadata()?;
            if metadata.is_file() {
                total += metadata.len();
            }
        }
        Ok(total)
    };
    sizes().map_err(BenchError::io(format!("measuring {}", dir.display())))
}

/// Two hours of synthetic reading by the generation's users (testkit's recent reading), so
/// lists blend trending, co-visitation and recent reads.
fn warm_signals(signals: &newsrec_signals::Signals, users: usize, clicks: usize) {
    let end_ms = chrono::Utc::now().timestamp_millis();
    for click in newsrec_testkit::recent_reading(users, clicks, end_ms, 11) {
        newsrec_serve::observe_click(
            signals,
            None,
            &click.user_id,
            &click.article_id,
            click.ts_ms,
        );
    }
}

/// A wrk script requesting a random known user each time and printing percentiles as JSON.
fn wrk_script(users: usize) -> String {
    format!(
        r#"math.randomseed(42)
request = function()
  return wrk.format("GET", "/v1/users/u" .. math.random(0, {last}) .. "/recommendations?k=10")
end
done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format('{{"requests":%d,"errors":%d,"non2xx":%d,"rps":%f,"p50_us":%f,"p99_us":%f,"p999_us":%f}}\n',
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, summary.requests / seconds,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"#,
        last = users.saturating_sub(1)
    )
}

fn run_wrk(
    url: &str,
    connections: usize,
    seconds: u64,
    script: &Path,
) -> Result<LoadFigures, BenchError> {
    let output = Command::new("wrk")
        .args([
            "-t",
            "1",
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{seconds}s"),
            "-s",
        ])
        .arg(script)
        .arg(url)
        .output()
        .map_err(BenchError::io("running wrk"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|line| line.starts_with('{'))
        .ok_or_else(|| BenchError::Unexpected(format!("wrk printed no summary: {stdout}")))?;
    let summary: serde_json::Value = serde_json::from_str(line)?;
    let figure = |key: &str| summary[key].as_f64().unwrap_or(f64::NAN);
    if figure("non2xx") > 0.0 || figure("errors") > 0.0 {
        return Err(BenchError::Unexpected(format!(
            "wrk saw {} non-2xx answers and {} socket errors: {line}",
            figure("non2xx"),
            figure("errors")
        )));
    }
    Ok(LoadFigures {
        rps: figure("rps"),
        p50_ms: figure("p50_us") / 1000.0,
        p99_ms: figure("p99_us") / 1000.0,
        p999_ms: Some(figure("p999_us") / 1000.0),
    })
}

/// Database redis-benchmark uses, emptied afterwards, so the benchmark never touches others.
const REDIS_BENCH_DB: &str = "15";

fn run_redis_benchmark(
    address: &str,
    connections: usize,
    value_bytes: usize,
    requests: u64,
) -> Result<LoadFigures, BenchError> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| BenchError::InvalidArgs("--redis must be host:port".into()))?;
    let common = |test: &str, count: u64| {
        let mut command = Command::new("redis-benchmark");
        command.args([
            "-h",
            host,
            "-p",
            port,
            "--dbnum",
            REDIS_BENCH_DB,
            "-c",
            &connections.to_string(),
        ]);
        command.args([
            "-t",
            test,
            "-n",
            &count.to_string(),
            "-d",
            &value_bytes.to_string(),
            "-r",
            "100000",
            "--csv",
        ]);
        command
    };
    // Fill the keyspace GET will read (100k keys of the same size as a stored list).
    let fill = common("set", 300_000)
        .output()
        .map_err(BenchError::io("running redis-benchmark"))?;
    if !fill.status.success() {
        return Err(BenchError::Unexpected(format!(
            "redis-benchmark could not write to {address}: {}",
            String::from_utf8_lossy(&fill.stderr)
        )));
    }
    let output = common("get", requests)
        .output()
        .map_err(BenchError::io("running redis-benchmark"))?;
    let _ = Command::new("redis-cli")
        .args(["-h", host, "-p", port, "-n", REDIS_BENCH_DB, "flushdb"])
        .output();
    let stdout = String::from_utf8_lossy(&output.stdout);
    parse_redis_csv(&stdout).ok_or_else(|| {
        BenchError::Unexpected(format!("unexpected redis-benchmark output: {stdout}"))
    })
}

/// Parses `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"`.
fn parse_redis_csv(text: &str) -> Option<LoadFigures> {
    let mut lines = text.lines().filter(|line| !line.trim().is_empty());
    let header: Vec<String> = lines
        .next()?
        .split(',')
        .map(|cell| cell.trim_matches('"').to_owned())
        .collect();
    let row: Vec<String> = lines
        .find(|line| line.starts_with("\"GET"))?
        .split(',')
        .map(|cell| cell.trim_matches('"').to_owned())
        .collect();
    let value = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .and_then(|i| row.get(i))
            .and_then(|v| v.parse::<f64>().ok())
    };
    Some(LoadFigures {
        rps: value("rps")?,
        p50_ms: value("p50_latency_ms")?,
        p99_ms: value("p99_latency_ms")?,
        p999_ms: None,
    })
}

fn median_figures(runs: &[LoadFigures]) -> LoadFigures {
    let mid = |mut values: Vec<f64>| median(&mut values, f64::NAN);
    LoadFigures {
        rps: mid(runs.iter().map(|f| f.rps).collect()),
        p50_ms: mid(runs.iter().map(|f| f.p50_ms).collect()),
        p99_ms: mid(runs.iter().map(|f| f.p99_ms).collect()),
        p999_ms: runs
            .iter()
            .map(|f| f.p999_ms)
            .collect::<Option<Vec<_>>>()
            .map(mid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_redis_benchmark_csv() {
        let text = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\"GET\",\"120481.93\",\"0.224\",\"0.056\",\"0.215\",\"0.311\",\"0.463\",\"1.903\"\n";
        let figures = parse_redis_csv(text).unwrap();
        assert_eq!(figures.rps, 120481.93);
        assert_eq!(figures.p99_ms, 0.463);
        assert!(parse_redis_csv("garbage").is_none());
    }

    #[test]
    fn medians() {
        let f = |rps| LoadFigures {
            rps,
            p50_ms: rps,
            p99_ms: rps,
            p999_ms: None,
        };
        assert_eq!(median_figures(&[f(3.0), f(1.0), f(2.0)]).rps, 2.0);
    }

    #[test]
    fn the_publish_only_line_keeps_its_keys_and_their_order() {
        let report = PublishReport {
            items: 50,
            publish_users_per_sec: 1234.5,
            stage: "serve",
            store: "dynamodb",
            store_bytes_per_million_users: 0,
            users: 1000,
            value_bytes: 480,
        };
        let line = match Report::of(Format::Json, &report, |_| unreachable!()).unwrap() {
            Report::Json(line) => line,
            table => panic!("{table:?}"),
        };
        // The line as it has always been written: a JSON object with sorted keys.
        let before = serde_json::json!({
            "stage": "serve",
            "store": "dynamodb",
            "users": 1000,
            "items": 50,
            "value_bytes": 480,
            "publish_users_per_sec": 1234.5,
            "store_bytes_per_million_users": 0,
        });
        assert_eq!(line, before.to_string());
    }

    #[test]
    fn the_benchmark_never_writes_into_a_deployments_namespace() {
        assert_eq!(bench_store_uri("").unwrap(), ("embedded", String::new()));
        assert_eq!(
            bench_store_uri("redis://127.0.0.1:6379/3").unwrap(),
            (
                "redis",
                "redis://127.0.0.1:6379/3?prefix=newsrec-bench".into()
            )
        );
        assert_eq!(
            bench_store_uri("redis://h/3?db=1").unwrap().1,
            "redis://h/3?db=1&prefix=newsrec-bench"
        );
        let refused = bench_store_uri("redis://h/3?prefix=newsrec").unwrap_err();
        assert!(refused.to_string().contains("drop prefix="), "{refused}");
        let refused = bench_store_uri("dynamodb://prod-lists?create=true").unwrap_err();
        assert!(refused.to_string().contains("newsrec-bench"), "{refused}");
        assert_eq!(
            bench_store_uri("dynamodb://newsrec-bench?endpoint=http://h:1")
                .unwrap()
                .0,
            "dynamodb"
        );
        assert!(bench_store_uri("s3://bucket").is_err());
    }
}
