//! The lake read from outside: DuckDB (`pip install duckdb`) reads the Hive-partitioned folder
//! as it is and counts exactly the events written.
//!
//! Runs when `NEWSREC_TEST_DUCKDB=1` (CI sets it after installing duckdb); fails, not skips,
//! when it is set and DuckDB cannot be run.

use std::process::Command;

use newsrec_event::ClickEvent;
use newsrec_lake::Lake;

#[tokio::test]
async fn duckdb_reads_the_lake_with_hive_partitioning() {
    if std::env::var("NEWSREC_TEST_DUCKDB").as_deref() != Ok("1") {
        eprintln!("skipped: set NEWSREC_TEST_DUCKDB=1 (with python3 and duckdb installed) to run");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
    let base = 1_506_816_000_000; // 2017-10-01T00:00:00Z
    // 30 hours of events in several writes: two days, many hour folders, several objects each.
    let events: Vec<ClickEvent> = (0..3_000)
        .map(|i| {
            ClickEvent::click(&format!("u{}", i % 50), &format!("a{i}"), base + i * 36_000).unwrap()
        })
        .collect();
    for (seq, chunk) in events.chunks(700).enumerate() {
        lake.write_events("node-1", seq as u64, &[std::sync::Arc::new(chunk.to_vec())])
            .await
            .unwrap();
    }
    let query = format!(
        "import duckdb\n\
         rows = duckdb.sql(\"\"\"SELECT count(*), count(DISTINCT dt), count(DISTINCT (dt, hour)), \
         min(typeof(dt)), min(typeof(hour)), count(DISTINCT event_id) FROM read_parquet('{}/events/*/*/*.parquet', \
         hive_partitioning = true, hive_types = {{'dt': 'DATE', 'hour': 'INTEGER'}})\"\"\").fetchall()\n\
         print(*rows[0], sep=',')",
        dir.path().display()
    );
    let output = Command::new("python3")
        .arg("-c")
        .arg(&query)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "duckdb failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let expected_hours = 30; // 3000 events × 36 s = 30 h
    assert_eq!(
        printed,
        format!("3000,2,{expected_hours},DATE,INTEGER,3000"),
        "duckdb saw {printed}"
    );
}
