//! Publishing: a training run's lists from the lake into the serving store, as a new generation.
//!
//! Consumes `runs/<run_id>/` (manifest, `recs-*.parquet`, `fallback.parquet`); produces a sealed,
//! activated generation in a [`RecStore`]. Order of operations, so that a publish that dies at
//! any point leaves the previous generation served: write every list into a new, invisible
//! generation; verify its user count against the manifest; seal; switch the pointer; only then
//! delete generations beyond the configured number. Running it again simply starts a fresh
//! generation and finishes the job. Before any of that, the quality [`gate`] compares the run
//! with the one being served and refuses a clearly worse one.

pub mod gate;
mod generation;
mod settings;

use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::ArrowError;

use newsrec_kv::{Generation, KvError, RecStore};
use newsrec_lake::{
    Lake, LakeError, RunManifest,
    recs::{fallback_from_batches, recs_from_batches, similar_from_batches},
};

use gate::Baseline;
pub use gate::{GateDecision, GateMode};
pub use generation::{GenerationPublisher, Published};
pub use settings::{Settings, SettingsError};

/// Why a publish failed. The previously current generation is still served in every case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    #[error("run {run_id:?} is not complete (no manifest): train it first, or pick another run")]
    RunNotFound { run_id: String },
    #[error("the lake holds no complete training run; run `newsrec train` first")]
    NoRuns,
    #[error("run {run_id:?}: {source}")]
    Lake { run_id: String, source: LakeError },
    #[error("run {run_id:?}: table {table} is unreadable: {reason}")]
    BadTable {
        run_id: String,
        table: String,
        reason: String,
    },
    #[error(
        "run {run_id:?} refused by the quality gate: {reason}; publish it anyway with --force, \
         or turn the gate off with publish.gate = false"
    )]
    GateRefused { run_id: String, reason: String },
    #[error(
        "quality gate: the served run {served_run_id:?} is unreadable: {source}; repair its \
         manifest, or publish {run_id:?} with --force"
    )]
    GateBaseline {
        run_id: String,
        served_run_id: String,
        source: LakeError,
    },
    #[error(transparent)]
    Store(#[from] KvError),
}

/// Progress of a publish, reported after each stored batch.
#[derive(Debug, Clone, Copy)]
pub struct PublishProgress {
    pub users_done: u64,
    pub users_total: u64,
}

/// What a publish did.
#[derive(Debug, Clone)]
pub struct PublishReport {
    pub run_id: String,
    pub generation: Generation,
    pub users: u64,
    pub elapsed: Duration,
    /// Generations deleted afterwards.
    pub pruned: Vec<Generation>,
    /// The quality gate's verdict (`passed` is false only when the publish was forced); `None`
    /// when the gate is off.
    pub gate: Option<GateDecision>,
}

impl PublishReport {
    /// Users written per second.
    pub fn users_per_sec(&self) -> f64 {
        self.users as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Settings of a publish.
#[derive(Debug, Clone, Copy)]
pub struct PublishOptions {
    /// Users per store write.
    pub batch_users: usize,
    /// Sealed generations kept, the new current one included (see `RecStore::prune`).
    pub keep_generations: usize,
    /// Whether a run worse than the served one is refused.
    pub gate: GateMode,
}

/// The newest complete run (by manifest creation time, then run id).
pub async fn latest_run(lake: &Lake) -> Result<String, PublishError> {
    let runs = lake
        .list_runs()
        .await
        .map_err(|source| PublishError::Lake {
            run_id: "*".into(),
            source,
        })?;
    let mut newest: Option<(String, String)> = None;
    for run_id in runs {
        let manifest: RunManifest =
            lake.read_manifest(&run_id)
                .await
                .map_err(|source| PublishError::Lake {
                    run_id: run_id.clone(),
                    source,
                })?;
        let key = (manifest.created_at, run_id);
        if newest.as_ref().is_none_or(|current| key > *current) {
            newest = Some(key);
        }
    }
    newest.map(|(_, run_id)| run_id).ok_or(PublishError::NoRuns)
}

/// Reads one keyed-lists table of a run.
async fn read_lists<T>(
    lake: &Lake,
    run_id: &str,
    table: &str,
    decode: fn(&[RecordBatch]) -> Result<Vec<T>, ArrowError>,
) -> Result<Vec<T>, PublishError> {
    let batches =
        lake.read_run_table(run_id, table)
            .await
            .map_err(|source| PublishError::Lake {
                run_id: run_id.to_owned(),
                source,
            })?;
    decode(&batches).map_err(|error| PublishError::BadTable {
        run_id: run_id.to_owned(),
        table: table.to_owned(),
        reason: error.to_string(),
    })
}

/// What the gate compares `run_id` with: the manifest of the served generation's run.
async fn served_baseline(
    lake: &Lake,
    store: &dyn RecStore,
    run_id: &str,
) -> Result<Baseline, PublishError> {
    // A long-lived handle may predate another process's publish: compare with what is served now.
    store.refresh().await?;
    let Some(current) = store.current().await? else {
        return Ok(Baseline::NoGeneration);
    };
    match lake.read_manifest::<RunManifest>(&current.run_id).await {
        Ok(manifest) => Ok(Baseline::Run(Box::new(manifest))),
        // Old runs may be cleaned out of the lake; that must not block publishing new ones.
        Err(source) if source.is_not_found() => Ok(Baseline::RunGone {
            run_id: current.run_id,
        }),
        Err(source) => Err(PublishError::GateBaseline {
            run_id: run_id.to_owned(),
            served_run_id: current.run_id,
            source,
        }),
    }
}

/// Applies the gate to `manifest` as `mode` says; an error when the run is refused.
async fn apply_gate(
    lake: &Lake,
    store: &dyn RecStore,
    run_id: &str,
    manifest: &RunManifest,
    mode: GateMode,
) -> Result<Option<GateDecision>, PublishError> {
    let decision = match mode {
        GateMode::Off => return Ok(None),
        GateMode::Enforce { tolerance } => {
            let baseline = served_baseline(lake, store, run_id).await?;
            let decision = gate::check(manifest, &baseline, tolerance);
            if !decision.passed {
                tracing::warn!(run_id, reason = %decision.reason, "quality gate refused the run");
                return Err(PublishError::GateRefused {
                    run_id: run_id.to_owned(),
                    reason: decision.reason,
                });
            }
            decision
        }
        // Forced: still compare, so that the report says what was overridden, but an unreadable
        // served run is only a note (forcing is how an operator gets past a broken lake).
        GateMode::Force { tolerance } => match served_baseline(lake, store, run_id).await {
            Ok(baseline) => gate::check(manifest, &baseline, tolerance),
            Err(PublishError::GateBaseline {
                served_run_id,
                source,
                ..
            }) => GateDecision::fail(format!(
                "the served run {served_run_id:?} is unreadable ({source}), not compared"
            )),
            Err(other) => return Err(other),
        },
    };
    tracing::info!(run_id, passed = decision.passed, reason = %decision.reason, "quality gate");
    Ok(Some(decision))
}

/// Publishes `run_id` into `store` and makes it current.
pub async fn publish_run(
    lake: &Lake,
    store: &dyn RecStore,
    run_id: &str,
    options: PublishOptions,
    progress: &(dyn Fn(PublishProgress) + Sync),
) -> Result<PublishReport, PublishError> {
    let started = Instant::now();
    let lake_error = |source: LakeError| PublishError::Lake {
        run_id: run_id.to_owned(),
        source,
    };
    let manifest: RunManifest = lake.read_manifest(run_id).await.map_err(|source| {
        if source.is_not_found() {
            PublishError::RunNotFound {
                run_id: run_id.to_owned(),
            }
        } else {
            lake_error(source)
        }
    })?;
    let gate = apply_gate(lake, store, run_id, &manifest, options.gate).await?;
    let users_total = manifest.outputs.users;
    let mut publisher = GenerationPublisher::start(store, run_id, options.batch_users).await?;
    let generation = publisher.generation();
    tracing::info!(run_id, generation, users = users_total, "publishing");
    for part in &manifest.outputs.parts {
        let lists = read_lists(lake, run_id, part, recs_from_batches).await?;
        publisher
            .put_users(lists, &mut |users_done| {
                progress(PublishProgress {
                    users_done,
                    users_total,
                })
            })
            .await?;
    }
    let fallback_batches = lake
        .read_run_table(run_id, &manifest.outputs.fallback)
        .await
        .map_err(lake_error)?;
    let fallback =
        fallback_from_batches(&fallback_batches).map_err(|error| PublishError::BadTable {
            run_id: run_id.to_owned(),
            table: manifest.outputs.fallback.clone(),
            reason: error.to_string(),
        })?;
    publisher.put_fallback(fallback).await?;
    if let Some(table) = &manifest.outputs.similar {
        let lists = read_lists(lake, run_id, table, similar_from_batches).await?;
        publisher.put_similar(lists).await?;
    }
    // Seals only if the store holds exactly the users the manifest promises.
    let Published { info, pruned } = publisher
        .finish(users_total, options.keep_generations)
        .await?;
    let report = PublishReport {
        run_id: run_id.to_owned(),
        generation: info.generation,
        users: info.users,
        elapsed: started.elapsed(),
        pruned,
        gate,
    };
    tracing::info!(
        run_id,
        generation,
        users = report.users,
        per_sec = report.users_per_sec() as u64,
        "published"
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    use newsrec_kv::EmbeddedStore;
    use newsrec_testkit::runs::{RunSpec, write_run, write_scored_run};

    const OPTIONS: PublishOptions = PublishOptions {
        batch_users: 2,
        keep_generations: 1,
        gate: GateMode::Enforce { tolerance: 0.05 },
    };

    #[tokio::test]
    async fn publishes_and_a_short_run_never_replaces_the_served_one() {
        let lake = Lake::open("memory://").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        write_run(
            &lake,
            &RunSpec {
                run_id: "good",
                users: 5,
                items: 1,
                promised_users: 5,
            },
        )
        .await
        .unwrap();
        let report = publish_run(&lake, &store, "good", OPTIONS, &|_| {})
            .await
            .unwrap();
        assert_eq!(report.users, 5);
        assert_eq!(latest_run(&lake).await.unwrap(), "good");

        // A run whose tables hold fewer users than its manifest promises is refused.
        write_run(
            &lake,
            &RunSpec {
                run_id: "short",
                users: 3,
                items: 1,
                promised_users: 4,
            },
        )
        .await
        .unwrap();
        let error = publish_run(&lake, &store, "short", OPTIONS, &|_| {})
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("holds 3 users, expected 4"),
            "{error}"
        );
        let served = store.user_list("u0").await.unwrap().unwrap();
        assert_eq!(served.items[0].article_id, "good-0");

        let missing = publish_run(&lake, &store, "nope", OPTIONS, &|_| {})
            .await
            .unwrap_err();
        assert!(
            matches!(missing, PublishError::RunNotFound { .. }),
            "{missing}"
        );
    }

    #[tokio::test]
    async fn the_gate_refuses_a_worse_run_until_forced() {
        let lake = Lake::open("memory://").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        write_scored_run(&lake, "good", 3, 0.20).await.unwrap();
        write_scored_run(&lake, "worse", 3, 0.10).await.unwrap();

        let first = publish_run(&lake, &store, "good", OPTIONS, &|_| {})
            .await
            .unwrap();
        let gate = first.gate.unwrap();
        assert!(
            gate.passed && gate.reason.contains("no generation is served"),
            "{gate}"
        );

        let refused = publish_run(&lake, &store, "worse", OPTIONS, &|_| {})
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, PublishError::GateRefused { run_id, .. } if run_id == "worse"),
            "{refused}"
        );
        let message = refused.to_string();
        assert!(
            message.contains("0.1000") && message.contains("0.2000") && message.contains("--force"),
            "{message}"
        );
        // Refused before anything was written: the good run is served and no generation leaked.
        let current = store.current().await.unwrap().unwrap();
        assert_eq!(
            (current.run_id.as_str(), current.generation),
            ("good", first.generation)
        );

        let forced = PublishOptions {
            gate: GateMode::Force { tolerance: 0.05 },
            ..OPTIONS
        };
        let report = publish_run(&lake, &store, "worse", forced, &|_| {})
            .await
            .unwrap();
        let gate = report.gate.unwrap();
        assert!(
            !gate.passed && gate.reason.contains("is below 0.1900"),
            "{gate}"
        );
        assert_eq!(store.current().await.unwrap().unwrap().run_id, "worse");

        // A served run that is not in the lake (cleaned up; here another lake) compares with
        // nothing, and the gate off compares not at all.
        let other_lake = Lake::open("memory://").unwrap();
        write_scored_run(&other_lake, "again", 3, 0.01)
            .await
            .unwrap();
        let report = publish_run(&other_lake, &store, "again", OPTIONS, &|_| {})
            .await
            .unwrap();
        let gate = report.gate.unwrap();
        assert!(
            gate.passed && gate.reason.contains("no longer in the lake"),
            "{gate}"
        );
        let off = PublishOptions {
            gate: GateMode::Off,
            ..OPTIONS
        };
        let report = publish_run(&lake, &store, "good", off, &|_| {})
            .await
            .unwrap();
        assert_eq!(report.gate, None);
    }
}
