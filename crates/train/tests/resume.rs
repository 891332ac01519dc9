//! Checkpoint and resume in-process: a run stopped at a unit boundary, its newest checkpoint
//! damaged, then resumed, writes the same bytes as a run never stopped.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use chrono::NaiveDate;
use newsrec_lake::{Lake, ObjectPath, layout};
use newsrec_testkit::{SynthConfig, fill_lake};
use newsrec_train::{
    AlsSettings, JobControl, Settings, StopSignal, TrainError, TrainProgress, TrainRequest, train,
    train_with,
};

fn settings() -> Settings {
    Settings {
        als: AlsSettings {
            factors: 8,
            iterations: 6,
            ..AlsSettings::default()
        },
        list_part_users: 250,
        ..Settings::default()
    }
}

async fn lake_with_clicks() -> (Lake, NaiveDate) {
    let lake = Lake::open("memory://").unwrap();
    let synth = SynthConfig {
        users: 1_200,
        days: 6,
        sessions_per_day: 2_000,
        spike_day: 4,
        ..SynthConfig::default()
    };
    fill_lake(&lake, &synth).await.unwrap();
    (lake, synth.start + chrono::Days::new(5))
}

/// Every object of a run but its manifest (which records times), by name.
async fn run_objects(lake: &Lake, run_id: &str) -> BTreeMap<String, Vec<u8>> {
    let mut objects = BTreeMap::new();
    for path in lake
        .list_objects(&layout::run_prefix(run_id))
        .await
        .unwrap()
    {
        let name = path.filename().unwrap().to_owned();
        if name != layout::MANIFEST_FILE {
            objects.insert(name, lake.get_object(&path).await.unwrap().to_vec());
        }
    }
    objects
}

async fn state_objects(lake: &Lake, run_id: &str) -> Vec<ObjectPath> {
    let mut states: Vec<ObjectPath> = lake
        .list_objects(&layout::checkpoint_prefix(run_id))
        .await
        .unwrap()
        .into_iter()
        .filter(|path| layout::parse_state_checkpoint_name(path.filename().unwrap()).is_some())
        .collect();
    states.sort_by_key(|path| path.to_string());
    states
}

/// A control that raises stop once `stage` reports `done` units.
fn stop_at(stage: &'static str, done: u64) -> JobControl {
    let stop = StopSignal::new();
    let raiser = stop.clone();
    let seen = Arc::new(Mutex::new(Vec::new()));
    JobControl {
        stop,
        progress: Some(Arc::new(move |progress: TrainProgress| {
            seen.lock().unwrap().push(progress);
            if progress.stage == stage && progress.done == done {
                raiser.raise(format!("test stop at {stage} {done}"));
            }
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_newest_checkpoint_falls_back_and_output_is_identical() {
    let (lake, day) = lake_with_clicks().await;
    let reference = train(&lake, &TrainRequest::new(day, "reference", settings()))
        .await
        .unwrap();
    assert_eq!(reference.execution.starts, 1);
    assert!(
        reference.outputs.parts.len() >= 3,
        "{:?}",
        reference.outputs
    );
    assert!(
        state_objects(&lake, "reference").await.is_empty(),
        "checkpoints are deleted once the run is complete"
    );

    let request = TrainRequest::new(day, "interrupted", settings());
    let error = train_with(&lake, &request, &stop_at("ALS", 4))
        .await
        .unwrap_err();
    assert!(matches!(error, TrainError::Interrupted { .. }), "{error}");
    assert!(error.to_string().contains("test stop at ALS 4"), "{error}");
    let states = state_objects(&lake, "interrupted").await;
    assert_eq!(
        states.len(),
        2,
        "the newest two states are kept: {states:?}"
    );

    // Damage the newest state: the run must resume from the one before.
    let newest = states.last().unwrap().clone();
    let mut bytes = lake.get_object(&newest).await.unwrap().to_vec();
    let at = bytes.len() - 7;
    bytes[at] ^= 0x5a;
    lake.put_object(&newest, bytes).await.unwrap();

    let resumed = train(&lake, &request).await.unwrap();
    assert_eq!(resumed.execution.starts, 2);
    assert_eq!(
        resumed.execution.resumed_from.as_deref(),
        Some(states[0].to_string().as_str()),
        "resumed from the state before the damaged one"
    );
    assert_eq!(resumed.outputs, {
        let mut outputs = reference.outputs.clone();
        outputs.als_factors = resumed.outputs.als_factors.clone();
        outputs
    });
    assert_eq!(resumed.evaluations, reference.evaluations);
    assert_eq!(
        run_objects(&lake, "interrupted").await,
        run_objects(&lake, "reference").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_between_list_parts_and_at_every_stage_resume_to_the_same_bytes() {
    let (lake, day) = lake_with_clicks().await;
    train(&lake, &TrainRequest::new(day, "reference", settings()))
        .await
        .unwrap();
    let request = TrainRequest::new(day, "stepwise", settings());
    let stops = [
        ("rollups", 3),
        ("backtest ALS", 1),
        ("backtest ALS", 6),
        ("ALS", 2),
        ("lists", 1),
        ("lists", 2),
    ];
    for (stage, done) in stops {
        let error = train_with(&lake, &request, &stop_at(stage, done))
            .await
            .unwrap_err();
        assert!(
            matches!(error, TrainError::Interrupted { .. }),
            "{stage} {done}: {error}"
        );
    }
    let finished = train(&lake, &request).await.unwrap();
    assert_eq!(finished.execution.starts, stops.len() as u32 + 1);
    assert_eq!(
        run_objects(&lake, "stepwise").await,
        run_objects(&lake, "reference").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_of_another_request_are_refused() {
    let (lake, day) = lake_with_clicks().await;
    let request = TrainRequest::new(day, "shared-id", settings());
    let error = train_with(&lake, &request, &stop_at("ALS", 1))
        .await
        .unwrap_err();
    assert!(matches!(error, TrainError::Interrupted { .. }), "{error}");
    let mut other = settings();
    other.top_k = 7;
    let error = train(&lake, &TrainRequest::new(day, "shared-id", other))
        .await
        .unwrap_err();
    assert!(
        matches!(error, TrainError::CheckpointMismatch { .. }),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains(layout::checkpoint_prefix("shared-id").as_ref()),
        "{error}"
    );
    // How a run is executed (checkpoint cadence, spot notice) is not part of what it computes,
    // so the same request with other execution settings resumes.
    let mut same_work = settings();
    same_work.checkpoint.min_interval_s = 0;
    same_work.spot.notice = true;
    train(&lake, &TrainRequest::new(day, "shared-id", same_work))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_out_of_range_are_refused_with_their_key() {
    let lake = Lake::open("memory://").unwrap();
    let mut bad = settings();
    bad.als.iterations = 0;
    let day = NaiveDate::from_ymd_opt(2024, 1, 8).unwrap();
    let error = train(&lake, &TrainRequest::new(day, "bad", bad))
        .await
        .unwrap_err();
    assert!(matches!(error, TrainError::Settings(_)), "{error}");
    assert!(
        error
            .to_string()
            .contains("als.iterations: must be 1..=1000"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_served_factors_are_refitted_to_the_same_bytes() {
    let (lake, day) = lake_with_clicks().await;
    train(&lake, &TrainRequest::new(day, "reference", settings()))
        .await
        .unwrap();
    let request = TrainRequest::new(day, "refit", settings());
    let error = train_with(&lake, &request, &stop_at("lists", 1))
        .await
        .unwrap_err();
    assert!(matches!(error, TrainError::Interrupted { .. }), "{error}");
    let factors = layout::run_object_path("refit", layout::ALS_FACTORS_OBJECT);
    let mut bytes = lake.get_object(&factors).await.unwrap().to_vec();
    bytes[100] ^= 1;
    lake.put_object(&factors, bytes).await.unwrap();
    train(&lake, &request).await.unwrap();
    assert_eq!(
        run_objects(&lake, "refit").await,
        run_objects(&lake, "reference").await
    );
}
