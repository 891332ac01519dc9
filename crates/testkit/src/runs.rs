//! Training runs written straight into a lake, for tests of `publish` and the serving path that
//! need a run of a given shape without training one.

use std::collections::BTreeMap;

use newsrec_lake::{
    Lake, LakeError,
    layout::{FALLBACK_TABLE, recs_part_name},
    manifest::{
        DataCounts, DataWindow, Evaluation, MANIFEST_VERSION, RunManifest, RunOutputs, Timings,
    },
    recs::{RankedArticle, UserRecs, fallback_to_batch, recs_to_batch},
};

/// Users per `recs-NNNNN.parquet` part, as training writes them.
const USERS_PER_PART: usize = 20_000;

/// The shape of a synthetic run.
#[derive(Debug, Clone)]
pub struct RunSpec<'a> {
    pub run_id: &'a str,
    /// Users `u0..u{users}`, each with `items` articles `<run_id>-<rank>`.
    pub users: usize,
    pub items: usize,
    /// Users the manifest promises (normally `users`; another value makes a broken run).
    pub promised_users: u64,
}

/// Writes the run's lists, a one-article fallback (`<run_id>-fallback`) and, last, its manifest.
pub async fn write_run(lake: &Lake, spec: &RunSpec<'_>) -> Result<RunManifest, LakeError> {
    let RunSpec {
        run_id,
        users,
        items,
        promised_users,
    } = *spec;
    let bad = |error: arrow_schema::ArrowError| LakeError::BadObject {
        path: run_id.to_owned(),
        reason: error.to_string(),
    };
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
        let name = recs_part_name(index);
        lake.write_run_table(run_id, &name, vec![recs_to_batch(&lists).map_err(bad)?])
            .await?;
        parts.push(name);
    }
    let fallback = [RankedArticle {
        article_id: format!("{run_id}-fallback"),
        score: 1.0,
    }];
    lake.write_run_table(
        run_id,
        FALLBACK_TABLE,
        vec![fallback_to_batch(&fallback).map_err(bad)?],
    )
    .await?;
    let manifest = RunManifest {
        manifest_version: MANIFEST_VERSION,
        run_id: run_id.into(),
        newsrec_version: "testkit".into(),
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
        chosen_because: "written by the testkit".into(),
        outputs: RunOutputs {
            users: promised_users,
            rows: (users * items) as u64,
            top_k: items,
            parts,
            fallback: FALLBACK_TABLE.into(),
            similar: None,
            similar_articles: 0,
            als_factors: None,
        },
        timings: Timings::default(),
        execution: Default::default(),
        notes: Vec::new(),
    };
    lake.write_manifest(run_id, &manifest).await?;
    Ok(manifest)
}

/// Writes a complete run (`users` users, one article each) whose chosen model scored `ndcg`
/// on NDCG@10, its `select_metric`, in the backtest: what the publish gate compares.
pub async fn write_scored_run(
    lake: &Lake,
    run_id: &str,
    users: usize,
    ndcg: f64,
) -> Result<RunManifest, LakeError> {
    let spec = RunSpec {
        run_id,
        users,
        items: 1,
        promised_users: users as u64,
    };
    let mut manifest = write_run(lake, &spec).await?;
    manifest.config = serde_json::json!({"select_metric": "ndcg@10"});
    manifest.evaluations = vec![Evaluation {
        role: "backtest".into(),
        test_date: "2026-11-21".into(),
        metrics: BTreeMap::from([(
            manifest.chosen_model.clone(),
            serde_json::json!({"hr@10": 0.5, "recall@10": 0.3, "ndcg@10": ndcg, "users": users}),
        )]),
    }];
    lake.write_manifest(run_id, &manifest).await?;
    Ok(manifest)
}
