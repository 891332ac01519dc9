//! Protocol P2, replay evaluation: each day's clicks in event-time order through the serving
//! code itself, with the daily lists of a model trained before the day.
//!
//! For each test day D: the daily model is fitted on `[D - window, D)` and its lists for the
//! users P2 will ask about are published as a new generation of an embedded store in a scratch
//! folder. Then every click of D, in event-time order, goes through the same path as an acked
//! click on a node (`newsrec_serve::observe_click`: signals and article first-click times);
//! just before a sampled click (see [`sample`]) each variant's list is requested through
//! `newsrec_serve::recommend` — the function the HTTP route calls — with k = 10, and the rank of
//! the clicked article gives HR@10 and MRR@10. The signals run across the whole range (warmed up
//! on the hours before the first day), as on a node that never restarts.
//!
//! Variants differ only in the blend: `daily` (the daily list alone), `trending` (decayed
//! clicks alone) and `newsrec` (the configured blend).

pub mod sample;

use std::{path::PathBuf, sync::Arc, time::Instant};

use chrono::{Datelike, NaiveDate};
use newsrec_kv::{EmbeddedStore, KvError};
use newsrec_lake::{Lake, TimeWindow};
use newsrec_publish::GenerationPublisher;
use newsrec_serve::{Blend, RecommendError, ServeState, articles::ArticleRegistry};
use newsrec_signals::{SignalLimits, SignalStats, Signals};
pub use newsrec_train::ModelKind;
use newsrec_train::{ClickLog, FittedModels, TrainError, lists};
use serde::{Deserialize, Serialize};

/// The list length P2 evaluates.
pub const P2_K: usize = 10;

/// Generations kept in the scratch store (the current one included).
const KEEP_GENERATIONS: usize = 2;

/// What to replay and how.
#[derive(Debug, Clone)]
pub struct ReplayRequest {
    pub from: NaiveDate,
    /// Inclusive.
    pub to: NaiveDate,
    /// Most sampled clicks per day.
    pub sample: usize,
    pub seed: u64,
    pub daily_model: ModelKind,
    pub train: newsrec_train::Settings,
    pub signals: SignalLimits,
    /// The blend of the `newsrec` variant.
    pub blend: Blend,
    pub article_max_age_ms: i64,
    /// Hours of clicks before the first day fed to the signals first.
    pub warmup_hours: u32,
    /// Scratch folder of the embedded store the daily lists are published to.
    pub store_dir: PathBuf,
}

/// HR@10 and MRR@10 of one variant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct P2Metrics {
    #[serde(rename = "hr@10")]
    pub hit_rate: f64,
    #[serde(rename = "mrr@10")]
    pub mrr: f64,
}

/// One test day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayDay {
    pub date: String,
    pub clicks: usize,
    /// Clicks P2's rules make eligible, and how many were sampled.
    pub eligible: usize,
    pub sampled: usize,
    pub users_published: usize,
    /// Variant name → figures, in variant order.
    pub variants: Vec<(String, P2Metrics)>,
    /// The signals at the end of the day.
    pub signals: SignalsAtEnd,
    pub seconds: f64,
}

/// Memory and counts of the signals (see `newsrec_signals::SignalStats`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SignalsAtEnd {
    pub clicks: u64,
    pub trending_articles: usize,
    pub covisit_sources: usize,
    pub covisit_edges: usize,
    pub users: usize,
    pub memory_bytes: usize,
}

impl From<SignalStats> for SignalsAtEnd {
    fn from(stats: SignalStats) -> SignalsAtEnd {
        SignalsAtEnd {
            clicks: stats.clicks,
            trending_articles: stats.trending_articles,
            covisit_sources: stats.covisit_sources,
            covisit_edges: stats.covisit_edges,
            users: stats.users,
            memory_bytes: stats.memory_bytes,
        }
    }
}

/// The whole replay: per-day rows and the mean of the daily figures per variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayReport {
    pub protocol: String,
    pub daily_model: ModelKind,
    pub days: Vec<ReplayDay>,
    pub mean: Vec<(String, P2Metrics)>,
}

/// Progress of a replay.
#[derive(Debug, Clone, Copy)]
pub enum ReplayProgress<'a> {
    Fitting {
        date: NaiveDate,
    },
    Replaying {
        date: NaiveDate,
        done: usize,
        total: usize,
    },
    DayDone(&'a ReplayDay),
}

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("--from {from} is after --to {to}")]
    EmptyRange { from: NaiveDate, to: NaiveDate },
    #[error("invalid setting: {0}")]
    Settings(String),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error("scratch serving store {dir}: {source}")]
    Store { dir: String, source: KvError },
    #[error("serving failed during the replay: {0}")]
    Serve(#[from] RecommendError),
    #[error("no clicks on {0} in the lake")]
    EmptyDay(NaiveDate),
    #[error("internal error: {0}")]
    Internal(String),
}

/// The variants every replay reports, in order.
pub fn variants(blend: Blend) -> Vec<(&'static str, Blend)> {
    vec![
        ("trending", Blend::trending_only()),
        ("daily", Blend::daily_only()),
        ("newsrec", blend),
    ]
}

/// Replays each day of `from..=to` (see the module doc).
pub async fn replay_range(
    lake: &Lake,
    request: &ReplayRequest,
    progress: &(dyn Fn(ReplayProgress<'_>) + Sync),
) -> Result<ReplayReport, ReplayError> {
    if request.from > request.to {
        return Err(ReplayError::EmptyRange {
            from: request.from,
            to: request.to,
        });
    }
    request
        .blend
        .validate()
        .map_err(|error| ReplayError::Settings(format!("blend.{error}")))?;
    let warmup_ms = i64::from(request.warmup_hours) * 3_600_000;
    if warmup_ms > i64::from(request.train.window_days) * 86_400_000 {
        return Err(ReplayError::Settings(format!(
            "--warmup-hours {} is longer than the training window ({} days)",
            request.warmup_hours, request.train.window_days
        )));
    }
    let read_window = TimeWindow::days(
        request.train.window_for(request.from).start_date(),
        request.to + chrono::Days::new(1),
    );
    let log = Arc::new(ClickLog::read(lake, read_window).await?);
    let store_error = |source| ReplayError::Store {
        dir: request.store_dir.display().to_string(),
        source,
    };
    let store = Arc::new(EmbeddedStore::open(&request.store_dir).map_err(store_error)?);
    let signals = Signals::new(request.signals);
    let articles = Arc::new(ArticleRegistry::in_memory(request.article_max_age_ms));
    let state = ServeState {
        store: store.clone(),
        default_k: P2_K,
        max_k: P2_K,
        metrics: None,
        signals: Some(Arc::clone(&signals)),
        blend: request.blend,
        articles: Some(Arc::clone(&articles)),
    };
    let observe = |index: usize| {
        let click = &log.clicks[index];
        newsrec_serve::observe_click(
            &signals,
            Some(&articles),
            &log.users[click.user as usize],
            &log.items[click.item as usize],
            click.ts_ms,
        );
    };
    let first_ms = TimeWindow::days(request.from, request.from).start_ms;
    let warmup = log
        .clicks
        .partition_point(|c| c.ts_ms < first_ms - warmup_ms)
        ..log.clicks.partition_point(|c| c.ts_ms < first_ms);
    warmup.for_each(observe);

    let variants = variants(request.blend);
    let mut days = Vec::new();
    let mut date = request.from;
    while date <= request.to {
        let started = Instant::now();
        progress(ReplayProgress::Fitting { date });
        let day_window = TimeWindow::days(date, date + chrono::Days::new(1));
        let day_range = log
            .clicks
            .partition_point(|c| c.ts_ms < day_window.start_ms)
            ..log.clicks.partition_point(|c| c.ts_ms < day_window.end_ms);
        if day_range.is_empty() {
            return Err(ReplayError::EmptyDay(date));
        }
        let models = fit(Arc::clone(&log), date, request).await?;
        let seed = request.seed ^ (date.num_days_from_ce() as u64).wrapping_mul(0x9E37_79B9);
        let (sampled, eligible) = sample::sampled_clicks(
            models.dataset(),
            &log.clicks[day_range.clone()],
            request.sample,
            seed,
        );
        let users_published = publish_day(
            store.as_ref(),
            &log,
            &models,
            request,
            date,
            &sampled,
            day_range.start,
        )
        .await?;

        let mut sums = vec![P2Metrics::default(); variants.len()];
        let mut next_sample = sampled.iter().peekable();
        for (offset, index) in day_range.clone().enumerate() {
            if next_sample.next_if_eq(&&offset).is_some() {
                let click = &log.clicks[index];
                let user = &log.users[click.user as usize];
                let article = &log.items[click.item as usize];
                for ((_, blend), sum) in variants.iter().zip(&mut sums) {
                    let list = newsrec_serve::recommend(&state, user, P2_K, &[], blend).await?;
                    if let Some(rank) = list
                        .items
                        .iter()
                        .position(|item| &item.article_id == article)
                    {
                        sum.hit_rate += 1.0;
                        sum.mrr += 1.0 / (rank as f64 + 1.0);
                    }
                }
            }
            observe(index);
            if offset % 20_000 == 0 {
                progress(ReplayProgress::Replaying {
                    date,
                    done: offset,
                    total: day_range.len(),
                });
            }
        }
        let n = sampled.len().max(1) as f64;
        let day = ReplayDay {
            date: date.to_string(),
            clicks: day_range.len(),
            eligible,
            sampled: sampled.len(),
            users_published,
            variants: variants
                .iter()
                .zip(&sums)
                .map(|((name, _), sum)| {
                    (
                        (*name).to_owned(),
                        P2Metrics {
                            hit_rate: sum.hit_rate / n,
                            mrr: sum.mrr / n,
                        },
                    )
                })
                .collect(),
            signals: signals.stats().into(),
            seconds: started.elapsed().as_secs_f64(),
        };
        progress(ReplayProgress::DayDone(&day));
        days.push(day);
        date = date + chrono::Days::new(1);
    }
    let mean = variants
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            let n = days.len() as f64;
            let sum = days
                .iter()
                .fold(P2Metrics::default(), |acc, day| P2Metrics {
                    hit_rate: acc.hit_rate + day.variants[i].1.hit_rate,
                    mrr: acc.mrr + day.variants[i].1.mrr,
                });
            (
                (*name).to_owned(),
                P2Metrics {
                    hit_rate: sum.hit_rate / n,
                    mrr: sum.mrr / n,
                },
            )
        })
        .collect();
    Ok(ReplayReport {
        protocol: "P2 replay".into(),
        daily_model: request.daily_model,
        days,
        mean,
    })
}

/// The models of serving day `date` (only the daily model's family is fitted).
async fn fit(
    log: Arc<ClickLog>,
    date: NaiveDate,
    request: &ReplayRequest,
) -> Result<FittedModels, ReplayError> {
    let mut settings = request.train.clone();
    if request.daily_model != ModelKind::Als {
        settings.als.enabled = false;
    } else if !settings.als.enabled {
        return Err(ReplayError::Settings(
            "the daily model is ALS but ALS is turned off in [train.als]".into(),
        ));
    }
    let window = settings.window_for(date);
    tokio::task::spawn_blocking(move || FittedModels::fit(&log, window, &settings))
        .await
        .map_err(|join| ReplayError::Internal(join.to_string()))?
        .map_err(ReplayError::from)
}

/// Publishes the daily lists of the users with a sampled click as a new generation, through
/// the same list-making as `newsrec train` and the same publisher as `newsrec publish` (lists,
/// fallback, verify, switch, prune). Returns the number of users with a list.
async fn publish_day(
    store: &EmbeddedStore,
    log: &ClickLog,
    models: &FittedModels,
    request: &ReplayRequest,
    date: NaiveDate,
    sampled: &[usize],
    day_start: usize,
) -> Result<usize, ReplayError> {
    let store_error = |source: KvError| ReplayError::Store {
        dir: request.store_dir.display().to_string(),
        source,
    };
    let mut users: Vec<u32> = sampled
        .iter()
        .map(|offset| log.clicks[day_start + offset].user)
        .collect();
    users.sort_unstable();
    users.dedup();
    let lists = lists::user_lists(
        log.into(),
        models,
        request.daily_model,
        request.train.top_k,
        &users,
    )?;
    let published = lists.len();
    let fallback = lists::fallback_list(log.into(), models, request.train.fallback_k);
    let mut publisher = GenerationPublisher::start(store, &format!("replay-{date}"), published)
        .await
        .map_err(store_error)?;
    publisher
        .put_users(lists, &mut |_| {})
        .await
        .map_err(store_error)?;
    publisher
        .put_fallback(fallback)
        .await
        .map_err(store_error)?;
    publisher
        .finish(published as u64, KEEP_GENERATIONS)
        .await
        .map_err(store_error)?;
    Ok(published)
}
