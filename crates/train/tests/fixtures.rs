//! Checkpoint format version 1 (`docs/checkpoint-format.md`), pinned by one fixture per kind:
//! `testdata/checkpoint-v1.dataset.ckpt`, `checkpoint-v1.state.ckpt` and
//! `checkpoint-v1.als-factors.ckpt`. A run interrupted under an earlier build must resume, and a
//! run's ALS factors must stay readable. A failing test here means the on-disk format changed
//! (the framing, or the postcard payload of `ClickLog`, `RunState` or `AlsFactors`): bump
//! `CHECKPOINT_FORMAT_VERSION`, keep a reader for version 1, and add fixtures for the new version
//! beside these rather than editing them. (A run's `als-factors.ckpt` outlives the run; the
//! checkpoints of a run in progress may instead be refused by version, which
//! `docs/checkpoint-format.md` allows, with a test that a version 1 object is refused.)
//!
//! Regenerate (only when creating a new version's fixtures, never to make a test pass):
//! `cargo test -p newsrec-train --test fixtures -- --ignored write_fixtures`.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use newsrec_lake::{Lake, layout};
use newsrec_model::{AlsFactors, EvalMetrics, Interaction};
use newsrec_train::{
    CheckpointStore, ClickLog,
    checkpoint::{
        AlsProgress, CHECKPOINT_FORMAT_VERSION, DayEvaluation, RunState, decode_als_model,
        encode_als_model,
    },
};

const RUN_ID: &str = "fixture-run";
const FINGERPRINT: &str = "fixture fingerprint";
/// XXH3-128 of the dataset fixture's payload, as `load_dataset` reports it and states record it.
const DATASET_DIGEST: &str = "6e5d2a770139569255f8d2889acc3153";
/// XXH3-128 of the ALS factors fixture's bytes, as a state records it.
const FACTORS_DIGEST: &str = "60cebead044d905123f72da605caa74b";

fn fixture_path(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("testdata/checkpoint-v1.{kind}.ckpt"))
}

fn fixture_log() -> ClickLog {
    let click = |user, item, ts_ms| Interaction { user, item, ts_ms };
    ClickLog {
        users: vec!["u1".into(), "reader-ü".into(), "u3".into()],
        items: vec!["a1".into(), "a2".into()],
        clicks: vec![
            click(0, 0, 1_506_816_000_000),
            click(1, 0, 1_506_816_000_250),
            click(1, 1, 1_506_819_600_000),
            click(2, 1, 1_506_902_400_000),
        ],
        duplicates: 3,
        other_events: 7,
    }
}

fn fixture_factors() -> AlsFactors {
    AlsFactors {
        factors: 2,
        user: vec![0.5, -1.25, 3.0, 0.0, 1.0e-3, -0.0],
        item: vec![2.0, 0.25, -4.5, 1.5],
    }
}

fn metrics(hit_rate: f64, users: usize) -> EvalMetrics {
    EvalMetrics {
        hit_rate,
        recall: hit_rate / 2.0,
        ndcg: hit_rate / 4.0,
        users,
        coverage: 0.125,
        truth_in_train: 0.75,
    }
}

/// A state with every field set: an ALS fit in progress, finished evaluations, list parts.
fn fixture_state() -> RunState {
    RunState {
        seq: 12,
        fingerprint: FINGERPRINT.into(),
        dataset_digest: DATASET_DIGEST.into(),
        starts: 2,
        backtest_als: None,
        backtest: Some(vec![DayEvaluation {
            role: "backtest".into(),
            test_day: "2017-10-02".into(),
            metrics: vec![
                ("popularity".into(), metrics(0.5, 3)),
                ("cooccurrence".into(), metrics(0.75, 2)),
            ],
        }]),
        serve_als: Some(AlsProgress {
            iteration: 4,
            factors: fixture_factors(),
        }),
        serve_factors: Some(FACTORS_DIGEST.into()),
        served: Some(Vec::new()),
        parts: vec![layout::recs_part_name(0), layout::recs_part_name(1)],
        users_written: 3,
        rows_written: 29,
    }
}

fn read_fixture(kind: &str) -> Vec<u8> {
    std::fs::read(fixture_path(kind)).unwrap()
}

/// A checkpoint store holding `objects` (name, bytes) under the fixture run's folder.
async fn store_with(objects: &[(String, Vec<u8>)]) -> CheckpointStore {
    let lake = Lake::open("memory://").unwrap();
    for (name, bytes) in objects {
        lake.put_object(&layout::checkpoint_object_path(RUN_ID, name), bytes.clone())
            .await
            .unwrap();
    }
    CheckpointStore::new(lake, RUN_ID).unwrap()
}

/// The three fixtures as today's writer produces them: (kind, bytes).
async fn write_with_todays_writer() -> Vec<(&'static str, Vec<u8>)> {
    let lake = Lake::open("memory://").unwrap();
    let store = CheckpointStore::new(lake.clone(), RUN_ID).unwrap();
    let digest = store
        .save_dataset(&Arc::new(fixture_log()), FINGERPRINT)
        .await
        .unwrap();
    assert_eq!(digest, DATASET_DIGEST);
    store.save_state(&fixture_state()).await.unwrap();
    let object = |name: &str| layout::checkpoint_object_path(RUN_ID, name);
    let dataset = lake
        .get_object(&object(layout::DATASET_CHECKPOINT))
        .await
        .unwrap();
    let state = lake
        .get_object(&object(&layout::state_checkpoint_name(12)))
        .await
        .unwrap();
    let factors = encode_als_model(&fixture_factors()).unwrap();
    assert_eq!(
        format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&factors)),
        FACTORS_DIGEST,
        "the state records the factors object's digest, as a run does"
    );
    vec![
        ("dataset", dataset.to_vec()),
        ("state", state.to_vec()),
        ("als-factors", factors),
    ]
}

#[tokio::test]
async fn dataset_v1_fixture_loads_field_by_field() {
    assert_eq!(CHECKPOINT_FORMAT_VERSION, 1);
    let store = store_with(&[(
        layout::DATASET_CHECKPOINT.to_owned(),
        read_fixture("dataset"),
    )])
    .await;
    let saved = store.load_dataset().await.unwrap().unwrap();
    let expected = fixture_log();
    assert_eq!(saved.fingerprint, FINGERPRINT);
    assert_eq!(saved.digest, DATASET_DIGEST);
    assert_eq!(saved.log.users, expected.users);
    assert_eq!(saved.log.items, expected.items);
    assert_eq!(saved.log.clicks, expected.clicks);
    assert_eq!(saved.log.duplicates, expected.duplicates);
    assert_eq!(saved.log.other_events, expected.other_events);
}

#[tokio::test]
async fn state_v1_fixture_loads_field_by_field() {
    let name = layout::state_checkpoint_name(12);
    let store = store_with(&[(name.clone(), read_fixture("state"))]).await;
    let loaded = store.load_latest_state().await.unwrap().unwrap();
    assert!(loaded.skipped.is_empty(), "{:?}", loaded.skipped);
    assert!(loaded.object.ends_with(&name), "{}", loaded.object);
    let (state, expected) = (loaded.state, fixture_state());
    assert_eq!(state.seq, expected.seq);
    assert_eq!(state.fingerprint, expected.fingerprint);
    assert_eq!(state.dataset_digest, expected.dataset_digest);
    assert_eq!(state.starts, expected.starts);
    assert_eq!(state.backtest_als, expected.backtest_als);
    assert_eq!(state.backtest, expected.backtest);
    assert_eq!(state.serve_als, expected.serve_als);
    assert_eq!(state.serve_factors, expected.serve_factors);
    assert_eq!(state.served, expected.served);
    assert_eq!(state.parts, expected.parts);
    assert_eq!(state.users_written, expected.users_written);
    assert_eq!(state.rows_written, expected.rows_written);
}

#[test]
fn als_factors_v1_fixture_decodes_field_by_field() {
    let factors = decode_als_model("fixture", &read_fixture("als-factors")).unwrap();
    let expected = fixture_factors();
    assert_eq!(factors.factors, expected.factors);
    let bits = |values: &[f32]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&factors.user), bits(&expected.user));
    assert_eq!(bits(&factors.item), bits(&expected.item));
}

/// Stricter than reading: today's writer still produces version 1's exact bytes.
#[tokio::test]
async fn todays_writer_writes_the_v1_bytes() {
    for (kind, bytes) in write_with_todays_writer().await {
        assert!(
            bytes == read_fixture(kind),
            "{kind} checkpoint bytes differ"
        );
    }
}

#[tokio::test]
#[ignore = "writes testdata/checkpoint-v1.*.ckpt; run only to create a new version's fixtures"]
async fn write_fixtures() {
    for (kind, bytes) in write_with_todays_writer().await {
        std::fs::write(fixture_path(kind), bytes).unwrap();
    }
}
