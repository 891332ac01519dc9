//! The job on rollups: a run that reuses the rollups of earlier runs writes the same rollups and
//! lists as one that computes them all from scratch, and a memory budget far below the lake
//! changes nothing but where the engine keeps its sorts.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use newsrec_lake::{Lake, ObjectPath, layout};
use newsrec_testkit::{SynthConfig, fill_lake};
use newsrec_train::{AlsSettings, Settings, TrainRequest, train};

fn settings() -> Settings {
    Settings {
        als: AlsSettings {
            factors: 8,
            iterations: 3,
            ..AlsSettings::default()
        },
        list_part_users: 300,
        ..Settings::default()
    }
}

async fn lake_with_clicks(dir: &std::path::Path) -> (Lake, NaiveDate) {
    lake_of(dir, 1_500).await
}

async fn lake_of(dir: &std::path::Path, sessions_per_day: usize) -> (Lake, NaiveDate) {
    let lake = Lake::open(dir.to_str().unwrap()).unwrap();
    let synth = SynthConfig {
        users: 1_000,
        days: 7,
        sessions_per_day,
        spike_day: 4,
        ..SynthConfig::default()
    };
    fill_lake(&lake, &synth).await.unwrap();
    (lake, synth.start + chrono::Days::new(6))
}

/// Every object under `prefix` but manifests (which record times), by path.
async fn objects(lake: &Lake, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let mut found = BTreeMap::new();
    for path in lake.list_objects(&ObjectPath::from(prefix)).await.unwrap() {
        if path.filename() != Some(layout::MANIFEST_FILE) {
            found.insert(
                path.to_string(),
                lake.get_object(&path).await.unwrap().to_vec(),
            );
        }
    }
    found
}

async fn delete_all(lake: &Lake, prefix: &str) {
    for path in lake.list_objects(&ObjectPath::from(prefix)).await.unwrap() {
        lake.delete_object(&path).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_on_earlier_rollups_equals_a_run_from_scratch_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, day) = lake_with_clicks(dir.path()).await;
    // Yesterday's run leaves the rollups of its span; today's reuses them and adds its own.
    let yesterday = train(
        &lake,
        &TrainRequest::new(day - chrono::Days::new(1), "yesterday", settings()),
    )
    .await
    .unwrap();
    assert_eq!(yesterday.execution.rollups.as_ref().unwrap().reused, 0);
    let incremental = train(&lake, &TrainRequest::new(day, "today", settings()))
        .await
        .unwrap();
    let used = incremental.execution.rollups.clone().unwrap();
    assert!(used.reused > 0 && used.computed > 0, "{used:?}");
    assert_eq!(used.reused + used.computed, used.hours);
    let rollups_incremental = objects(&lake, "rollups").await;
    let run_incremental = objects(&lake, "runs/today").await;

    delete_all(&lake, "rollups").await;
    delete_all(&lake, "runs/today").await;
    let scratch = train(&lake, &TrainRequest::new(day, "today", settings()))
        .await
        .unwrap();
    assert_eq!(scratch.execution.rollups.as_ref().unwrap().reused, 0);
    let rollups_scratch = objects(&lake, "rollups").await;
    // The scratch run computed only its own span; every rollup it wrote is the same bytes.
    for (path, bytes) in &rollups_scratch {
        assert!(
            rollups_incremental.get(path) == Some(bytes),
            "{path} differs"
        );
    }
    assert_eq!(objects(&lake, "runs/today").await, run_incremental);
    assert_eq!(scratch.evaluations, incremental.evaluations);
    assert_eq!(scratch.counts, incremental.counts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_budget_below_the_lake_gives_the_same_run() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, day) = lake_of(&dir.path().join("lake"), 16_000).await;
    let lake_bytes: u64 = {
        let mut total = 0;
        for path in lake
            .list_objects(&ObjectPath::from("events"))
            .await
            .unwrap()
        {
            total += lake.get_object(&path).await.unwrap().len() as u64;
        }
        total
    };
    let roomy = train(&lake, &TrainRequest::new(day, "roomy", settings()))
        .await
        .unwrap();
    let roomy_objects = objects(&lake, "runs/roomy").await;
    delete_all(&lake, "rollups").await;

    let tight_settings = Settings {
        memory_limit_mib: 16,
        spill_dir: dir.path().join("spill").display().to_string(),
        ..settings()
    };
    eprintln!("lake bytes {lake_bytes}");
    assert!(
        lake_bytes > 16 << 20,
        "the lake ({lake_bytes} bytes) is larger than the budget"
    );
    let tight = train(&lake, &TrainRequest::new(day, "tight", tight_settings))
        .await
        .unwrap();
    assert_eq!(tight.evaluations, roomy.evaluations);
    let tight_objects = objects(&lake, "runs/tight").await;
    assert_eq!(
        tight_objects.into_values().collect::<Vec<_>>(),
        roomy_objects.into_values().collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_larger_than_the_sample_streams_its_readers_and_leaves_als_out() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, day) = lake_with_clicks(dir.path()).await;
    let all = train(&lake, &TrainRequest::new(day, "all", settings()))
        .await
        .unwrap();
    assert!(all.notes.is_empty(), "{:?}", all.notes);
    assert!(all.outputs.als_factors.is_some());
    let sampled_settings = Settings {
        eval_sample_users: 100,
        ..settings()
    };
    let sampled = train(&lake, &TrainRequest::new(day, "sampled", sampled_settings))
        .await
        .unwrap();
    // Every reader still gets a list, from the stream; the counts are the window's.
    assert_eq!(sampled.counts, all.counts);
    assert_eq!(sampled.outputs.users, all.outputs.users);
    assert!(sampled.outputs.als_factors.is_none());
    assert!(
        sampled
            .notes
            .iter()
            .any(|note| note.contains("ALS left out")),
        "{:?}",
        sampled.notes
    );
    for evaluation in &sampled.evaluations {
        assert!(!evaluation.metrics.contains_key("als"));
        for figures in evaluation.metrics.values() {
            assert!(figures["users"].as_u64().unwrap() <= 100, "{figures}");
        }
    }
}
