//! Crash path on purpose: `kill -9` of a `newsrec publish` process midway leaves the previous
//! generation served; running the same publish again completes it.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use newsrec_kv::{EmbeddedStore, RecStore};
use newsrec_lake::{
    Lake,
    manifest::{DataCounts, DataWindow, MANIFEST_VERSION, RunManifest, RunOutputs, Timings},
    recs::{RankedArticle, UserRecs, fallback_to_batch, recs_to_batch},
};

const USERS_PER_PART: usize = 20_000;

async fn write_run(lake: &Lake, run_id: &str, users: usize, items: usize) {
    let mut parts = Vec::new();
    for (index, start) in (0..users).step_by(USERS_PER_PART).enumerate() {
        let lists: Vec<UserRecs> = (start..(start + USERS_PER_PART).min(users))
            .map(|user| UserRecs {
                user_id: format!("u{user}"),
                items: (0..items)
                    .map(|rank| RankedArticle {
                        article_id: format!("{run_id}-{rank}"),
                        score: 1.0 / (rank as f32 + 1.0),
                    })
                    .collect(),
            })
            .collect();
        let name = format!("recs-{index:05}.parquet");
        lake.write_run_table(run_id, &name, vec![recs_to_batch(&lists).unwrap()])
            .await
            .unwrap();
        parts.push(name);
    }
    let fallback = [RankedArticle {
        article_id: format!("{run_id}-fallback"),
        score: 1.0,
    }];
    lake.write_run_table(
        run_id,
        "fallback.parquet",
        vec![fallback_to_batch(&fallback).unwrap()],
    )
    .await
    .unwrap();
    let manifest = RunManifest {
        manifest_version: MANIFEST_VERSION,
        run_id: run_id.into(),
        newsrec_version: "test".into(),
        created_at: "2026-11-22T00:00:00Z".into(),
        serving_date: "2026-11-22".into(),
        window: DataWindow {
            start: "2026-11-15".into(),
            end: "2026-11-22".into(),
            start_ms: 0,
            end_ms: 1,
        },
        config: serde_json::Value::Null,
        counts: DataCounts::default(),
        models: Vec::new(),
        evaluations: Vec::new(),
        chosen_model: "popularity".into(),
        chosen_because: "test".into(),
        outputs: RunOutputs {
            users: users as u64,
            rows: (users * items) as u64,
            top_k: items,
            parts,
            fallback: "fallback.parquet".into(),
            similar: None,
            similar_articles: 0,
        },
        timings: Timings::default(),
    };
    lake.write_manifest(run_id, &manifest).await.unwrap();
}

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
    write_run(&lake, "old", 100, 5).await;
    write_run(&lake, "big", 200_000, 20).await;
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
