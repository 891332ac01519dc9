//! Crash path on purpose: `kill -9` of a `newsrec up` node while clients post events, then a
//! restart. Every event of every acknowledged request must be in the lake exactly once, and no
//! event may be there twice. Trials: `NEWSREC_CRASH_TRIALS` (default 3; `scripts/crash-trials.sh`
//! runs 20 and prints the tally).

use std::{
    collections::HashMap,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use newsrec_lake::Lake;
use rand::{Rng, SeedableRng, rngs::SmallRng};

fn start_node(dir: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_newsrec"))
        .args(["up", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir)
        // Small buffers and a short interval: flushes (and commit markers) happen all through
        // the load, so the kill lands before, during and after them.
        .env("NEWSREC_INGEST__BUFFER_SIZE_MIB", "1")
        .env("NEWSREC_INGEST__BUFFER_INTERVAL_S", "0")
        .env("NEWSREC_INGEST__MAX_BACKLOG_MIB", "64")
        .env("NEWSREC_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting newsrec up")
}

async fn wait_healthy(client: &reqwest::Client, base: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = client.get(format!("{base}/healthz")).send().await
            && response.status().is_success()
        {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("node exited during start: {status}");
        }
        assert!(Instant::now() < deadline, "node did not become healthy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Event ids in the lake, with how often each occurs.
async fn lake_ids(dir: &Path) -> HashMap<String, usize> {
    newsrec_testkit::lake_event_ids(&Lake::open(dir.join("lake").to_str().unwrap()).unwrap()).await
}

/// One trial: returns (acked events, events found for unacked requests).
async fn trial(trial: u64) -> (usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let port = newsrec_testkit::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut child = start_node(dir.path(), port);
    wait_healthy(&client, &base, &mut child).await;

    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let sent: Arc<Mutex<Vec<String>>> = Arc::default();
    let senders: Vec<_> = (0..6)
        .map(|conn| {
            let (client, base) = (client.clone(), base.clone());
            let (acked, sent) = (Arc::clone(&acked), Arc::clone(&sent));
            tokio::spawn(async move {
                for request in 0.. {
                    let ids: Vec<String> = (0..50)
                        .map(|i| format!("t{trial}-c{conn}-r{request}-e{i}"))
                        .collect();
                    let body: String = ids
                        .iter()
                        .enumerate()
                        .map(|(i, id)| {
                            format!(
                                "{{\"event_id\":\"{id}\",\"user_id\":\"u{}\",\"article_id\":\"a{}\",\"ts\":{}}}\n",
                                i % 17,
                                request % 31,
                                1_506_816_000_000 + request * 1_000 + i as u64
                            )
                        })
                        .collect();
                    sent.lock().unwrap().extend(ids.iter().cloned());
                    match client.post(format!("{base}/v1/events")).body(body).send().await {
                        Ok(response) if response.status() == reqwest::StatusCode::OK => {
                            acked.lock().unwrap().extend(ids);
                        }
                        Ok(response) if response.status().is_server_error() || response.status() == 429 => {}
                        Ok(response) => panic!("unexpected status {}", response.status()),
                        // The node is gone: stop sending.
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();

    let mut rng = SmallRng::seed_from_u64(trial);
    tokio::time::sleep(Duration::from_millis(rng.random_range(300..1200))).await;
    child.kill().unwrap(); // SIGKILL: no flush, no shutdown path
    child.wait().unwrap();
    for sender in senders {
        sender.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        !acked.is_empty(),
        "trial {trial}: nothing was acked before the kill"
    );

    // Restart: the replay writes what the lake lacks before the node listens.
    let mut child = start_node(dir.path(), port);
    wait_healthy(&client, &base, &mut child).await;
    child.kill().unwrap();
    child.wait().unwrap();

    let found = lake_ids(dir.path()).await;
    let twice: Vec<_> = found.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(
        twice.is_empty(),
        "trial {trial}: events in the lake twice: {twice:?}"
    );
    let missing: Vec<_> = acked.iter().filter(|id| !found.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "trial {trial}: {} of {} acked events missing from the lake, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    let sent = sent.lock().unwrap().len();
    assert!(
        found.len() <= sent,
        "trial {trial}: the lake holds events never sent"
    );
    (acked.len(), found.len() - acked.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_acked_event_and_duplicates_none() {
    let trials: u64 = std::env::var("NEWSREC_CRASH_TRIALS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    for number in 0..trials {
        let (acked, unacked_kept) = trial(number).await;
        // The tally line the trial script collects.
        println!(
            "crash trial {number}: ok, {acked} acked events all present once, {unacked_kept} unacked events also kept"
        );
    }
}
