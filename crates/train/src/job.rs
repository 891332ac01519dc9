//! One training run: read, fit, backtest, choose, write lists, write the manifest (last).

use std::{collections::BTreeMap, time::Instant};

use chrono::{NaiveDate, SecondsFormat, Utc};
use newsrec_lake::{
    Lake, TimeWindow,
    manifest::{
        DataCounts, DataWindow, Evaluation, MANIFEST_VERSION, ModelEntry, RunManifest, RunOutputs,
        Timings,
    },
    recs::{RankedArticle, UserRecs, fallback_to_batch, recs_to_batch, similar_to_batch},
};
use newsrec_model::{EvalMetrics, Recommender};
use rayon::prelude::*;

use crate::{ClickLog, FittedModels, TrainError, TrainSettings};

/// The similar-articles table of a run.
const SIMILAR_TABLE: &str = "similar.parquet";

/// Users per `recs-NNNNN.parquet` part.
const USERS_PER_PART: usize = 50_000;

/// P1 figures of every model on one test day.
struct DayEvaluation {
    /// `backtest` (trained before D-1, tested on D-1) or `served` (the written models, on D).
    role: &'static str,
    test_day: NaiveDate,
    metrics: Vec<(&'static str, EvalMetrics)>,
}

/// What to train.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    /// The serving day D: models train on `[D - window_days, D)`.
    pub date: NaiveDate,
    pub run_id: String,
    pub settings: TrainSettings,
}

/// Runs the job and returns the manifest it wrote.
pub async fn train(lake: &Lake, request: &TrainRequest) -> Result<RunManifest, TrainError> {
    let started = Instant::now();
    let settings = &request.settings;
    if !["hr@10", "recall@10", "ndcg@10"].contains(&settings.select_metric.as_str()) {
        return Err(TrainError::Settings(format!(
            "select_metric {:?} is not hr@10, recall@10 or ndcg@10",
            settings.select_metric
        )));
    }
    newsrec_lake::layout::validate_name("run id", &request.run_id)?;
    let day = request.date;
    let window = settings.window_for(day);
    let backtest_day = day - chrono::Days::new(1);
    // One read covers the backtest window [D-1-W, D-1), its test day D-1, and D itself.
    let span = TimeWindow::days(
        settings.window_for(backtest_day).start_date(),
        day + chrono::Days::new(1),
    );
    let log = ClickLog::read(lake, span).await?;
    let read_ms = elapsed_ms(started);
    let train_clicks = log.slice(window).len();
    tracing::info!(
        clicks = log.clicks.len(),
        users = log.users.len(),
        items = log.items.len(),
        read_ms,
        "read the lake"
    );
    if train_clicks == 0 {
        return Err(TrainError::EmptyWindow {
            start: window.start_date(),
            end: day,
        });
    }

    let settings_for_fit = settings.clone();
    let fitted = tokio::task::spawn_blocking(move || -> Result<_, TrainError> {
        let fit_started = Instant::now();
        let models = FittedModels::fit(&log, window, &settings_for_fit)?;
        let fit_ms = elapsed_ms(fit_started);
        let eval_started = Instant::now();
        let mut evaluations = Vec::new();
        let backtest_window = settings_for_fit.window_for(backtest_day);
        if !log.slice(backtest_window).is_empty() {
            let backtest = FittedModels::fit(&log, backtest_window, &settings_for_fit)?;
            evaluations.push(DayEvaluation {
                role: "backtest",
                test_day: backtest_day,
                metrics: backtest.evaluate(&log, backtest_day),
            });
        }
        if !log
            .slice(TimeWindow::days(day, day + chrono::Days::new(1)))
            .is_empty()
        {
            evaluations.push(DayEvaluation {
                role: "served",
                test_day: day,
                metrics: models.evaluate(&log, day),
            });
        }
        let eval_ms = elapsed_ms(eval_started);
        Ok((log, models, evaluations, fit_ms, eval_ms))
    })
    .await
    .map_err(|join| TrainError::Internal(join.to_string()))??;
    let (log, models, evaluations, fit_ms, eval_ms) = fitted;
    for DayEvaluation {
        role,
        test_day,
        metrics,
    } in &evaluations
    {
        for (name, m) in metrics {
            tracing::info!(role, %test_day, model = name, hr = m.hit_rate, ndcg = m.ndcg, users = m.users, "P1");
        }
    }

    let (chosen, chosen_because) = choose_model(&evaluations, &settings.select_metric);
    let write_started = Instant::now();
    let (users, parts, rows) =
        write_lists(lake, &request.run_id, &log, &models, chosen, settings.top_k).await?;
    let fallback: Vec<RankedArticle> = models
        .popularity
        .ranked()
        .iter()
        .take(settings.fallback_k)
        .map(|scored| RankedArticle {
            article_id: log.items[scored.item as usize].clone(),
            score: scored.score,
        })
        .collect();
    let fallback_batch =
        fallback_to_batch(&fallback).map_err(|e| TrainError::Internal(e.to_string()))?;
    lake.write_run_table(&request.run_id, "fallback.parquet", vec![fallback_batch])
        .await?;
    let similar = similar_lists(&log, &models, settings.similar_k);
    let similar_articles = similar.len() as u64;
    let similar_batch =
        similar_to_batch(&similar).map_err(|e| TrainError::Internal(e.to_string()))?;
    lake.write_run_table(&request.run_id, SIMILAR_TABLE, vec![similar_batch])
        .await?;
    let write_ms = elapsed_ms(write_started);

    let dataset = models.dataset();
    let manifest = RunManifest {
        manifest_version: MANIFEST_VERSION,
        run_id: request.run_id.clone(),
        newsrec_version: env!("CARGO_PKG_VERSION").into(),
        created_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        serving_date: day.to_string(),
        window: DataWindow {
            start: window.start_date().to_string(),
            end: day.to_string(),
            start_ms: window.start_ms,
            end_ms: window.end_ms,
        },
        config: serde_json::to_value(settings).map_err(|e| TrainError::Internal(e.to_string()))?,
        counts: DataCounts {
            clicks: train_clicks as u64,
            duplicates: log.duplicates,
            other_events: log.other_events,
            users: (0..dataset.n_users() as u32)
                .filter(|u| !dataset.user_items(*u).is_empty())
                .count() as u64,
            items: (0..dataset.n_items() as u32)
                .filter(|i| dataset.item_user_count(*i) > 0)
                .count() as u64,
            pairs: dataset.n_pairs() as u64,
        },
        models: vec![
            ModelEntry {
                name: "popularity".into(),
                params: serde_json::to_value(&settings.popularity).unwrap_or_default(),
                stats: BTreeMap::from([("items".into(), models.popularity.ranked().len() as u64)]),
            },
            ModelEntry {
                name: "cooccurrence".into(),
                params: serde_json::to_value(&settings.cooccurrence).unwrap_or_default(),
                stats: BTreeMap::from([(
                    "neighbour_pairs".into(),
                    models.cooccurrence.n_neighbour_pairs() as u64,
                )]),
            },
        ]
        .into_iter()
        .chain(models.als.as_ref().map(|als| ModelEntry {
            name: "als".into(),
            params: serde_json::to_value(als.params()).unwrap_or_default(),
            stats: BTreeMap::from([(
                "factor_values".into(),
                (als.factors().user.len() + als.factors().item.len()) as u64,
            )]),
        }))
        .collect(),
        evaluations: evaluations
            .iter()
            .map(
                |DayEvaluation {
                     role,
                     test_day,
                     metrics,
                 }| Evaluation {
                    role: (*role).into(),
                    test_date: test_day.to_string(),
                    metrics: metrics
                        .iter()
                        .map(|(name, m)| {
                            (
                                (*name).to_owned(),
                                serde_json::to_value(m).unwrap_or_default(),
                            )
                        })
                        .collect(),
                },
            )
            .collect(),
        chosen_model: chosen.to_owned(),
        chosen_because,
        outputs: RunOutputs {
            users,
            rows,
            top_k: settings.top_k,
            parts,
            fallback: "fallback.parquet".into(),
            similar: Some(SIMILAR_TABLE.into()),
            similar_articles,
        },
        timings: Timings {
            read_ms,
            fit_ms,
            eval_ms,
            write_ms,
            total_ms: elapsed_ms(started),
        },
    };
    lake.write_manifest(&request.run_id, &manifest).await?;
    Ok(manifest)
}

/// Picks the model with the best backtest figure; co-occurrence (the personalised model) when
/// there is no backtest to decide by or on a tie.
fn choose_model(evaluations: &[DayEvaluation], metric: &str) -> (&'static str, String) {
    let Some(DayEvaluation {
        test_day, metrics, ..
    }) = evaluations
        .iter()
        .find(|evaluation| evaluation.role == "backtest")
    else {
        return (
            "cooccurrence",
            "no clicks before the window to backtest on; the personalised model is the default"
                .into(),
        );
    };
    let mut best: Option<(&'static str, f64)> = None;
    for (name, m) in metrics {
        let value = m.get(metric).unwrap_or(0.0);
        let better = match best {
            None => true,
            Some((best_name, best_value)) => {
                value > best_value
                    || (value == best_value
                        && *name == "cooccurrence"
                        && best_name != "cooccurrence")
            }
        };
        if better {
            best = Some((name, value));
        }
    }
    let (name, _) = best.unwrap_or(("cooccurrence", 0.0));
    let figures = metrics
        .iter()
        .map(|(n, m)| format!("{n} {:.4}", m.get(metric).unwrap_or(0.0)))
        .collect::<Vec<_>>()
        .join(", ");
    (
        name,
        format!("best {metric} on the {test_day} backtest: {figures}"),
    )
}

async fn write_lists(
    lake: &Lake,
    run_id: &str,
    log: &ClickLog,
    models: &FittedModels,
    chosen: &str,
    top_k: usize,
) -> Result<(u64, Vec<String>, u64), TrainError> {
    let dataset = models.dataset();
    let model: &dyn Recommender = match (chosen, &models.als) {
        ("popularity", _) => &models.popularity,
        ("als", Some(als)) => als,
        _ => &models.cooccurrence,
    };
    let users: Vec<u32> = (0..dataset.n_users() as u32)
        .filter(|u| !dataset.user_items(*u).is_empty())
        .collect();
    let mut parts = Vec::new();
    let mut rows = 0u64;
    // Users whose list comes out empty (nothing left after exclusions) are not written.
    let mut written_users = 0u64;
    for (index, chunk) in users.chunks(USERS_PER_PART).enumerate() {
        let lists: Vec<UserRecs> = chunk
            .par_iter()
            .map(|&user| UserRecs {
                user_id: log.users[user as usize].clone(),
                items: model
                    .recommend(user, top_k, dataset.user_items(user))
                    .into_iter()
                    .map(|scored| RankedArticle {
                        article_id: log.items[scored.item as usize].clone(),
                        score: scored.score,
                    })
                    .collect(),
            })
            .filter(|list| !list.items.is_empty())
            .collect();
        let batch = recs_to_batch(&lists).map_err(|e| TrainError::Internal(e.to_string()))?;
        rows += batch.num_rows() as u64;
        written_users += lists.len() as u64;
        let name = format!("recs-{index:05}.parquet");
        lake.write_run_table(run_id, &name, vec![batch]).await?;
        tracing::info!(part = %name, users = lists.len(), "wrote lists");
        parts.push(name);
    }
    Ok((written_users, parts, rows))
}

fn elapsed_ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

/// Each trained article's most similar articles (the co-occurrence neighbours), best first.
fn similar_lists(log: &ClickLog, models: &FittedModels, k: usize) -> Vec<UserRecs> {
    let dataset = models.dataset();
    (0..log.items.len() as u32)
        .filter(|item| dataset.item_user_count(*item) > 0)
        .filter_map(|item| {
            let neighbours = models.cooccurrence.neighbours(item);
            (!neighbours.is_empty()).then(|| UserRecs {
                user_id: log.items[item as usize].clone(),
                items: neighbours
                    .iter()
                    .take(k)
                    .map(|n| RankedArticle {
                        article_id: log.items[n.item as usize].clone(),
                        score: n.score,
                    })
                    .collect(),
            })
        })
        .collect()
}
