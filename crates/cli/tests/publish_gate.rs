//! The publish quality gate from the command line: a good run is published, a clearly worse one
//! is refused with both figures and the way out, and `--force` publishes it.

use std::{path::Path, process::Output};

use newsrec_kv::{EmbeddedStore, RecStore};
use newsrec_lake::Lake;
use newsrec_testkit::runs::write_scored_run;

fn publish(data_dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_newsrec"))
        .args(["--data-dir", data_dir.to_str().unwrap(), "--log", "warn"])
        .arg("publish")
        .args(args)
        .env_remove("NEWSREC_CONFIG")
        .env_remove("NEWSREC_PUBLISH__GATE")
        .env_remove("NEWSREC_PUBLISH__GATE_TOLERANCE")
        .output()
        .unwrap()
}

async fn served_run(kv: &Path) -> String {
    let store = EmbeddedStore::open(kv).unwrap();
    store.current().await.unwrap().unwrap().run_id
}

#[tokio::test]
async fn a_worse_run_is_refused_until_forced() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
    write_scored_run(&lake, "good", 10, 0.20).await.unwrap();
    write_scored_run(&lake, "worse", 10, 0.10).await.unwrap();
    let kv = dir.path().join("kv");

    let first = publish(dir.path(), &["good"]);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "{first:?}");
    assert!(
        stdout.contains("quality gate passed: no generation is served yet"),
        "{stdout}"
    );

    let refused = publish(dir.path(), &["worse"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        stderr.contains("run \"worse\" refused by the quality gate: ndcg@10 0.1000")
            && stderr.contains("below 0.1900, the served 0.2000 (run \"good\"")
            && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(served_run(&kv).await, "good");

    let forced = publish(dir.path(), &["worse", "--force"]);
    let stdout = String::from_utf8_lossy(&forced.stdout);
    assert!(forced.status.success(), "{forced:?}");
    assert!(
        stdout.contains("quality gate failed: ndcg@10 0.1000")
            && stdout.contains("published anyway (--force)"),
        "{stdout}"
    );
    assert_eq!(served_run(&kv).await, "worse");
}
