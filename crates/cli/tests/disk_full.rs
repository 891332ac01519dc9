//! A full disk under the write-ahead log, for real: a node whose data folder is a small tmpfs
//! answers 507 while the disk is full, keeps running, takes events again once space is freed,
//! and the lake holds every acknowledged event exactly once and no refused one.
//!
//! Mounting needs root; the test runs when `NEWSREC_TEST_TMPFS=1` (`.ci/run` sets it) and then
//! fails, not skips, if the mount does not work.

use std::{
    collections::HashMap,
    io::Write,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use newsrec_lake::Lake;

/// Unmounts when dropped, so a failing test does not leave a mount behind.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "NEWSREC_TEST_TMPFS is set but mounting a tmpfs failed ({status}); run as root"
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn body(request: usize) -> (String, Vec<String>) {
    let mut ids = Vec::new();
    let mut body = String::new();
    for i in 0..100 {
        let id = format!("r{request}-e{i}");
        body.push_str(&format!(
            r#"{{"event_id":"{id}","user_id":"u{i}","article_id":"a{}","ts":1764000000000,"referrer":"https://news.example/{}"}}"#,
            request % 50,
            "x".repeat(100)
        ));
        body.push('\n');
        ids.push(id);
    }
    (body, ids)
}

/// Posts request number `request`: its status, reply text and event ids.
async fn post(client: &reqwest::Client, base: &str, request: usize) -> (u16, String, Vec<String>) {
    let (body, ids) = body(request);
    let response = client
        .post(format!("{base}/v1/events"))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap(), ids)
}

/// Fills the file system at `dir` with a ballast file, leaving about `leave` bytes free.
fn fill(dir: &Path, leave: u64) -> std::path::PathBuf {
    let path = dir.join("ballast");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![7u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.flush();
    let written = file.metadata().unwrap().len();
    file.set_len(written.saturating_sub(leave)).unwrap();
    file.sync_all().unwrap();
    path
}

async fn lake_ids(lake_dir: &Path) -> HashMap<String, usize> {
    newsrec_testkit::lake_event_ids(&Lake::open(lake_dir.to_str().unwrap()).unwrap()).await
}

fn start_node(data_dir: &Path, lake_dir: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_newsrec"))
        .args(["up", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data_dir)
        // The lake is elsewhere: this test is about the log's disk.
        .env("NEWSREC_LAKE__URI", lake_dir)
        .env("NEWSREC_INGEST__BUFFER_INTERVAL_S", "1")
        .env("NEWSREC_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting newsrec up")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_log_disk_answers_507_and_loses_nothing_acknowledged() {
    if std::env::var("NEWSREC_TEST_TMPFS").ok().as_deref() != Some("1") {
        eprintln!("skipped: set NEWSREC_TEST_TMPFS=1 (root) to run the disk-full test");
        return;
    }
    let tmpfs = Tmpfs::mount("16m");
    let lake_dir = tempfile::tempdir().unwrap();
    let port = newsrec_testkit::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut child = start_node(tmpfs.path(), lake_dir.path(), port);
    let started = Instant::now();
    while client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .map(|r| !r.status().is_success())
        .unwrap_or(true)
    {
        assert!(child.try_wait().unwrap().is_none(), "node exited at start");
        assert!(started.elapsed() < Duration::from_secs(30), "never healthy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let ballast = fill(tmpfs.path(), 200 * 1024);
    let (mut acked, mut refused) = (Vec::new(), Vec::new());
    let (mut request, mut refusals) = (0, 0);
    // Post until the disk is full and a few refusals more.
    while refusals < 3 {
        assert!(request < 2_000, "the disk never filled");
        let (status, text, ids) = post(&client, &base, request).await;
        request += 1;
        match status {
            200 => acked.extend(ids),
            507 => {
                assert!(text.contains("error"), "{text}");
                refusals += 1;
                refused.extend(ids);
            }
            other => panic!("unexpected status {other}: {text}"),
        }
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the node died on a full disk"
    );

    // Space comes back: the same node takes events again.
    std::fs::remove_file(&ballast).unwrap();
    for _ in 0..3 {
        let (status, text, ids) = post(&client, &base, request).await;
        request += 1;
        assert_eq!(status, 200, "{text}");
        acked.extend(ids);
    }

    // Every acknowledged event reaches the lake once; no refused one does.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ids = lake_ids(lake_dir.path()).await;
        let missing = acked.iter().filter(|id| !ids.contains_key(*id)).count();
        if missing == 0 {
            assert!(
                ids.values().all(|count| *count == 1),
                "an event is in the lake twice"
            );
            let leaked = refused.iter().filter(|id| ids.contains_key(*id)).count();
            assert_eq!(leaked, 0, "events of refused requests reached the lake");
            eprintln!(
                "{} events acknowledged, {} refused with 507, all acknowledged in the lake once",
                acked.len(),
                refused.len()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} acknowledged events missing from the lake"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    child.kill().unwrap();
    let _ = child.wait();
}
