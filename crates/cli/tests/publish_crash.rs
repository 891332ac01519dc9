//! Crash path on purpose: `kill -9` of a `newsrec publish` process midway leaves the previous
//! generation served; running the same publish again completes it.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use newsrec_kv::{EmbeddedStore, RecStore};
use newsrec_lake::Lake;
use newsrec_testkit::runs::{RunSpec, write_run};

fn publish(data_dir: &Path, run_id: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_newsrec"))
        .args([
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--log",
            "warn",
            "publish",
            run_id,
        ])
        .env_remove("NEWSREC_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn partial_exists(kv: &Path) -> bool {
    std::fs::read_dir(kv)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_publish_keeps_the_old_generation_and_a_rerun_completes() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
    write_run(
        &lake,
        &RunSpec {
            run_id: "old",
            users: 100,
            items: 5,
            promised_users: 100,
        },
    )
    .await
    .unwrap();
    write_run(
        &lake,
        &RunSpec {
            run_id: "big",
            users: 200_000,
            items: 20,
            promised_users: 200_000,
        },
    )
    .await
    .unwrap();
    assert!(publish(dir.path(), "old").wait().unwrap().success());

    let kv = dir.path().join("kv");
    let mut killed = 0;
    for _ in 0..3 {
        let mut child = publish(dir.path(), "big");
        let started = Instant::now();
        while !partial_exists(&kv) && started.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(5));
        }
        // Let it load a little, then kill it before it can seal and switch.
        std::thread::sleep(Duration::from_millis(150));
        let finished = child.try_wait().unwrap().is_some();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if finished {
            continue;
        }
        killed += 1;
        let reader = EmbeddedStore::open(&kv).unwrap();
        let current = reader
            .current()
            .await
            .unwrap()
            .expect("a generation is still served");
        assert_eq!(
            current.run_id, "old",
            "a killed publish must never become current"
        );
        let list = reader
            .user_list("u0")
            .await
            .unwrap()
            .expect("u0 keeps its list");
        assert_eq!(list.items[0].article_id, "old-0");
        assert_eq!(
            reader.user_list("u150000").await.unwrap(),
            None,
            "nothing of the killed run leaks"
        );
    }
    assert!(
        killed > 0,
        "publish finished every time before it could be killed; make the run bigger"
    );

    assert!(
        publish(dir.path(), "big").wait().unwrap().success(),
        "rerunning the publish completes it"
    );
    let reader = EmbeddedStore::open(&kv).unwrap();
    let current = reader.current().await.unwrap().unwrap();
    assert_eq!((current.run_id.as_str(), current.users), ("big", 200_000));
    assert_eq!(
        reader.user_list("u150000").await.unwrap().unwrap().items[0].article_id,
        "big-0"
    );
}
