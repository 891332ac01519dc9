//! Publishing: a training run's lists from the lake into the serving store, as a new generation.
//!
//! Consumes `runs/<run_id>/` (manifest, `recs-*.parquet`, `fallback.parquet`); produces a sealed,
//! activated generation in a [`RecStore`]. Order of operations, so that a publish that dies at
//! any point leaves the previous generation served: write every list into a new, invisible
//! generation; verify its user count against the manifest; seal; switch the pointer; only then
//! delete generations beyond the configured number. Running it again simply starts a fresh
//! generation and finishes the job.

use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::ArrowError;

use newsrec_kv::{Generation, KvError, RecItem, RecStore, SimilarList, UserList};
use newsrec_lake::{
    Lake, LakeError, RunManifest,
    recs::{
        RankedArticle, UserRecs, fallback_from_batches, recs_from_batches, similar_from_batches,
    },
};

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
    /// Sealed generations kept besides the current one.
    pub keep_generations: usize,
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
async fn read_lists(
    lake: &Lake,
    run_id: &str,
    table: &str,
    decode: fn(&[RecordBatch]) -> Result<Vec<UserRecs>, ArrowError>,
) -> Result<Vec<UserRecs>, PublishError> {
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

fn rec_items(items: Vec<RankedArticle>) -> Vec<RecItem> {
    items
        .into_iter()
        .map(|it| RecItem {
            article_id: it.article_id,
            score: it.score,
        })
        .collect()
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
    let users_total = manifest.outputs.users;
    let mut writer = store.create_generation(run_id).await?;
    let generation = writer.generation();
    tracing::info!(run_id, generation, users = users_total, "publishing");
    let batch_size = options.batch_users.max(1);
    let mut users_done = 0u64;
    for part in &manifest.outputs.parts {
        let lists = read_lists(lake, run_id, part, recs_from_batches).await?;
        let mut lists = lists.into_iter().peekable();
        while lists.peek().is_some() {
            let batch: Vec<UserList> = lists
                .by_ref()
                .take(batch_size)
                .map(|user| UserList {
                    user_id: user.user_id,
                    items: rec_items(user.items),
                })
                .collect();
            users_done += batch.len() as u64;
            writer.put_users(batch).await?;
            progress(PublishProgress {
                users_done,
                users_total,
            });
        }
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
    writer.put_fallback(rec_items(fallback)).await?;
    if let Some(table) = &manifest.outputs.similar {
        let lists = read_lists(lake, run_id, table, similar_from_batches).await?;
        let mut lists = lists.into_iter().peekable();
        while lists.peek().is_some() {
            let batch: Vec<SimilarList> = lists
                .by_ref()
                .take(batch_size)
                .map(|list| SimilarList {
                    article_id: list.user_id,
                    items: rec_items(list.items),
                })
                .collect();
            writer.put_similar(batch).await?;
        }
    }
    // Seals only if the store holds exactly the users the manifest promises.
    let info = writer.finish(users_total).await?;
    store.activate(info.generation).await?;
    let pruned = store.prune(options.keep_generations).await?;
    let report = PublishReport {
        run_id: run_id.to_owned(),
        generation: info.generation,
        users: info.users,
        elapsed: started.elapsed(),
        pruned,
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
    use newsrec_testkit::runs::{RunSpec, write_run};

    const OPTIONS: PublishOptions = PublishOptions {
        batch_users: 2,
        keep_generations: 1,
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
}
