//! One training run: read, fit, backtest, choose, write lists, write the manifest (last).
//!
//! The run is a chain of units of work, each followed by a checkpoint (`checkpoint.rs`): the
//! dataset, each ALS iteration of the backtest and of the served models, each evaluation, each
//! part of the lists. A start resumes after the last unit its checkpoints record; the units
//! are deterministic, so a run interrupted any number of times writes the same bytes as one
//! that never was.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{NaiveDate, SecondsFormat, Utc};
use newsrec_lake::{
    Lake, TimeWindow,
    layout::{self, ALS_FACTORS_OBJECT, FALLBACK_TABLE, SIMILAR_TABLE},
    manifest::{
        DataCounts, DataWindow, Evaluation, Execution, MANIFEST_VERSION, ModelEntry, RunManifest,
        RunOutputs, Timings,
    },
    recs::{fallback_to_batch, recs_to_batch, similar_to_batch},
};
use newsrec_model::{AlsFactors, AlsTraining, CooccurrenceModel, EvalMetrics};

use crate::{
    ClickLog, FittedModels, ModelKind, Settings, TrainError, blocking,
    checkpoint::{
        AlsProgress, CHECKPOINT_FORMAT_VERSION, CheckpointStore, DayEvaluation, RunState,
        decode_als_model, encode_als_model,
    },
    control::{ProgressFn, StopSignal, TrainProgress, peak_rss_bytes},
    lists, training_data,
};

/// The evaluation of the configuration, trained before D-1 and tested on D-1.
const BACKTEST_ROLE: &str = "backtest";
/// The evaluation of the written models on D (when the lake holds D).
const SERVED_ROLE: &str = "served";

/// What to train.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    /// The serving day D: models train on `[D - window_days, D)`.
    pub date: NaiveDate,
    pub run_id: String,
    pub settings: Settings,
    /// Where checkpoints go (`checkpoints/<run_id>/` in it); `None`: the lake itself.
    pub checkpoints: Option<Lake>,
    /// Keep the checkpoints once the run is complete (by default they are deleted).
    pub keep_checkpoints: bool,
    /// Least time between checkpoints inside a stage (ALS iterations, list parts); stage ends
    /// and stops are always checkpointed. Zero: after every unit.
    pub checkpoint_interval: Duration,
}

impl TrainRequest {
    /// A request with checkpoints in the lake, deleted when the run completes.
    pub fn new(date: NaiveDate, run_id: impl Into<String>, settings: Settings) -> Self {
        TrainRequest {
            date,
            run_id: run_id.into(),
            settings,
            checkpoints: None,
            keep_checkpoints: false,
            checkpoint_interval: Duration::ZERO,
        }
    }

    /// What identifies the work: a checkpoint of another fingerprint is never resumed from.
    fn fingerprint(&self) -> Result<String, TrainError> {
        let settings = serde_json::to_string(&self.settings.run_config())
            .map_err(|e| TrainError::Internal(e.to_string()))?;
        let identity = format!(
            "v{CHECKPOINT_FORMAT_VERSION}\n{}\n{}\n{settings}",
            self.date, self.run_id
        );
        Ok(format!(
            "{:032x}",
            xxhash_rust::xxh3::xxh3_128(identity.as_bytes())
        ))
    }
}

/// Steering for a running job: a stop request and an optional progress callback.
#[derive(Clone, Default)]
pub struct JobControl {
    pub stop: StopSignal,
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for JobControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobControl")
            .field("stop", &self.stop)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl JobControl {
    fn report(&self, stage: &'static str, done: u64, total: u64) {
        if let Some(progress) = &self.progress {
            progress(TrainProgress { stage, done, total });
        }
    }
}

/// Runs the job to completion without outside control.
pub async fn train(lake: &Lake, request: &TrainRequest) -> Result<RunManifest, TrainError> {
    train_with(lake, request, &JobControl::default()).await
}

/// Which ALS fit of a run a checkpoint slot holds.
#[derive(Debug, Clone, Copy)]
enum Fit {
    /// Trained on the window before D-1, evaluated on D-1.
    Backtest,
    /// Trained on the window before D: the models whose lists are written.
    Serve,
}

impl Fit {
    fn als_slot(self, state: &mut RunState) -> &mut Option<AlsProgress> {
        match self {
            Fit::Backtest => &mut state.backtest_als,
            Fit::Serve => &mut state.serve_als,
        }
    }

    fn stage(self) -> &'static str {
        match self {
            Fit::Backtest => "backtest ALS",
            Fit::Serve => "ALS",
        }
    }
}

/// The run's checkpoints, the state they hold, and the bookkeeping of this start.
struct Progress<'a> {
    store: CheckpointStore,
    state: RunState,
    control: &'a JobControl,
    /// Least time between two checkpoints that are not forced.
    interval: Duration,
    last_saved: Instant,
    written: u64,
    write_ms: u64,
}

impl Progress<'_> {
    /// Records the end of a unit: saves the state as the next checkpoint when `force`d (the
    /// end of a stage), when a stop is requested, or when `interval` has passed since the last
    /// one; then honours a stop request.
    async fn unit_done(&mut self, force: bool) -> Result<(), TrainError> {
        let stop = self.control.stop.raised();
        if force || stop.is_some() || self.last_saved.elapsed() >= self.interval {
            let started = Instant::now();
            self.state.seq += 1;
            self.store.save_state(&self.state).await?;
            self.written += 1;
            self.write_ms += elapsed_ms(started);
            self.last_saved = Instant::now();
        }
        match stop {
            Some(reason) => Err(TrainError::Interrupted {
                reason,
                location: self.store.location(),
            }),
            None => Ok(()),
        }
    }
}

/// Runs the job, resuming from the run's latest valid checkpoint, and returns the manifest it
/// wrote. A raised stop ends it after the current unit of work and its checkpoint, with
/// [`TrainError::Interrupted`].
///
/// Each step below is one function; each ends with a checkpoint, and each skips the work a
/// previous start already recorded.
pub async fn train_with(
    lake: &Lake,
    request: &TrainRequest,
    control: &JobControl,
) -> Result<RunManifest, TrainError> {
    let started = Instant::now();
    request
        .settings
        .validate()
        .map_err(|error| TrainError::Settings(error.to_string()))?;
    layout::validate_name("run id", &request.run_id)?;
    let (log, mut progress, resumed_from) = open_run(lake, request, control).await?;
    let read_ms = elapsed_ms(started);

    let fit_started = Instant::now();
    backtest(&log, request, &mut progress).await?;
    let models = fit_served(lake, &log, request, &mut progress).await?;
    let fit_ms = elapsed_ms(fit_started);

    let eval_started = Instant::now();
    evaluate_served(&log, &models, request.date, &mut progress).await?;
    let eval_ms = elapsed_ms(eval_started);
    let evaluations = recorded_evaluations(&progress.state);
    log_evaluations(&evaluations);
    let (chosen, chosen_because) =
        choose_model(&evaluations, request.settings.select_metric.name())?;

    let write_started = Instant::now();
    let outputs = write_outputs(lake, request, &log, &models, chosen, &mut progress).await?;
    let write_ms = elapsed_ms(write_started);

    let manifest = run_manifest(RunSummary {
        request,
        log: &log,
        models: &models,
        evaluations: &evaluations,
        chosen,
        chosen_because,
        outputs,
        timings: Timings {
            read_ms,
            fit_ms,
            eval_ms,
            write_ms,
            total_ms: elapsed_ms(started),
        },
        execution: Execution {
            starts: progress.state.starts,
            resumed_from,
            checkpoints_written: progress.written,
            checkpoint_ms: progress.write_ms,
            peak_rss_bytes: peak_rss_bytes(),
        },
    })?;
    lake.write_manifest(&request.run_id, &manifest).await?;
    if !request.keep_checkpoints {
        progress.store.clear().await?;
    }
    Ok(manifest)
}

/// Opens the run's checkpoints and the click log to train on (resumed or read afresh), and
/// records this start; refuses a window without clicks.
async fn open_run<'a>(
    lake: &Lake,
    request: &TrainRequest,
    control: &'a JobControl,
) -> Result<(Arc<ClickLog>, Progress<'a>, Option<String>), TrainError> {
    let started = Instant::now();
    let store = CheckpointStore::new(
        request.checkpoints.clone().unwrap_or_else(|| lake.clone()),
        &request.run_id,
    )?;
    let fingerprint = request.fingerprint()?;
    let (log, state, resumed_from) = resume_or_read(lake, request, &store, &fingerprint).await?;
    let mut progress = Progress {
        store,
        state,
        control,
        interval: request.checkpoint_interval,
        last_saved: Instant::now(),
        written: 0,
        write_ms: 0,
    };
    progress.state.starts += 1;
    let window = request.settings.window_for(request.date);
    tracing::info!(
        clicks = log.clicks.len(),
        users = log.users.len(),
        items = log.items.len(),
        read_ms = elapsed_ms(started),
        resumed_from = resumed_from.as_deref().unwrap_or("-"),
        start = progress.state.starts,
        "dataset ready"
    );
    if log.slice(window).is_empty() {
        return Err(TrainError::EmptyWindow {
            start: window.start_date(),
            end: request.date,
        });
    }
    progress.unit_done(true).await?;
    Ok((log, progress, resumed_from))
}

/// The backtest: the same configuration trained on the window before D-1 and evaluated on D-1
/// (no figures when there are no clicks before that window).
async fn backtest(
    log: &Arc<ClickLog>,
    request: &TrainRequest,
    progress: &mut Progress<'_>,
) -> Result<(), TrainError> {
    if progress.state.backtest.is_some() {
        return Ok(());
    }
    let settings = &request.settings;
    let backtest_day = request.date - chrono::Days::new(1);
    let backtest_window = settings.window_for(backtest_day);
    let mut figures = Vec::new();
    if !log.slice(backtest_window).is_empty() {
        let models = fit_models(log, backtest_window, settings, Fit::Backtest, progress).await?;
        let metrics = blocking({
            let log = Arc::clone(log);
            move || models.evaluate(&log, backtest_day)
        })
        .await?;
        figures.push(DayEvaluation {
            role: BACKTEST_ROLE.into(),
            test_day: backtest_day.to_string(),
            metrics: owned_metrics(metrics),
        });
    }
    progress.state.backtest = Some(figures);
    progress.state.backtest_als = None;
    progress.unit_done(true).await
}

/// The served models, trained on the window before D. A served ALS that an earlier start
/// finished is loaded from the run's factors object; one fitted now is written there at once.
async fn fit_served(
    lake: &Lake,
    log: &Arc<ClickLog>,
    request: &TrainRequest,
    progress: &mut Progress<'_>,
) -> Result<Arc<FittedModels>, TrainError> {
    let settings = &request.settings;
    let factors_path = layout::run_object_path(&request.run_id, ALS_FACTORS_OBJECT);
    if let Some(digest) = progress.state.serve_factors.clone() {
        match load_factors(lake, &factors_path, digest).await {
            Ok(factors) => {
                let iteration = settings.als.params().map_or(0, |p| p.iterations);
                progress.state.serve_als = Some(AlsProgress { iteration, factors });
            }
            Err(TrainError::Checkpoint { object, reason }) => {
                // Refitting is deterministic, so a damaged or missing object costs only time.
                tracing::warn!(object, reason, "refitting the served ALS");
                progress.state.serve_factors = None;
            }
            Err(other) => return Err(other),
        }
    }
    let window = settings.window_for(request.date);
    let models = Arc::new(fit_models(log, window, settings, Fit::Serve, progress).await?);
    if let (Some(als), None) = (&models.als, &progress.state.serve_factors) {
        // Written once, as soon as the fit ends: the run's model object, and what later
        // checkpoints point at instead of carrying the factors along.
        let factors = als.factors().clone();
        let (bytes, digest) = blocking(move || -> Result<_, TrainError> {
            let bytes = encode_als_model(&factors)?;
            let digest = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&bytes));
            Ok((bytes, digest))
        })
        .await??;
        lake.put_object(&factors_path, bytes).await?;
        progress.state.serve_factors = Some(digest);
        progress.state.serve_als = None;
        progress.unit_done(true).await?;
    }
    // Only the ALS in progress rides in the checkpoints.
    progress.state.serve_als = None;
    Ok(models)
}

/// P1 of the served models on D itself, when the lake already holds clicks of D.
async fn evaluate_served(
    log: &Arc<ClickLog>,
    models: &Arc<FittedModels>,
    day: NaiveDate,
    progress: &mut Progress<'_>,
) -> Result<(), TrainError> {
    if progress.state.served.is_some() {
        return Ok(());
    }
    let mut figures = Vec::new();
    if !log
        .slice(TimeWindow::days(day, day + chrono::Days::new(1)))
        .is_empty()
    {
        let metrics = blocking({
            let (log, models) = (Arc::clone(log), Arc::clone(models));
            move || models.evaluate(&log, day)
        })
        .await?;
        figures.push(DayEvaluation {
            role: SERVED_ROLE.into(),
            test_day: day.to_string(),
            metrics: owned_metrics(metrics),
        });
    }
    progress.state.served = Some(figures);
    progress.unit_done(true).await
}

/// The backtest's and the served models' figures, in that order.
fn recorded_evaluations(state: &RunState) -> Vec<DayEvaluation> {
    state
        .backtest
        .iter()
        .chain(state.served.iter())
        .flatten()
        .cloned()
        .collect()
}

fn log_evaluations(evaluations: &[DayEvaluation]) {
    for evaluation in evaluations {
        for (name, m) in &evaluation.metrics {
            tracing::info!(
                role = evaluation.role,
                test_day = evaluation.test_day,
                model = name,
                hr = m.hit_rate,
                ndcg = m.ndcg,
                users = m.users,
                "P1"
            );
        }
    }
}

/// Writes the run's tables: the lists (checkpointed part by part), the fallback list and the
/// similar-article lists; returns what the manifest records of them.
async fn write_outputs(
    lake: &Lake,
    request: &TrainRequest,
    log: &Arc<ClickLog>,
    models: &Arc<FittedModels>,
    chosen: ModelKind,
    progress: &mut Progress<'_>,
) -> Result<RunOutputs, TrainError> {
    let settings = &request.settings;
    write_lists(
        lake,
        &request.run_id,
        log,
        models,
        chosen,
        settings,
        progress,
    )
    .await?;
    let fallback = lists::fallback_list(log, models, settings.fallback_k);
    let fallback_batch = fallback_to_batch(&fallback).map_err(internal)?;
    lake.write_run_table(&request.run_id, FALLBACK_TABLE, vec![fallback_batch])
        .await?;
    let similar = lists::similar_lists(log, models, settings.similar_k);
    let similar_batch = similar_to_batch(&similar).map_err(internal)?;
    lake.write_run_table(&request.run_id, SIMILAR_TABLE, vec![similar_batch])
        .await?;
    Ok(RunOutputs {
        users: progress.state.users_written,
        rows: progress.state.rows_written,
        top_k: settings.top_k,
        parts: progress.state.parts.clone(),
        fallback: FALLBACK_TABLE.into(),
        similar: Some(SIMILAR_TABLE.into()),
        similar_articles: similar.len() as u64,
        als_factors: models.als.as_ref().map(|_| ALS_FACTORS_OBJECT.to_owned()),
    })
}

/// Everything the manifest records about a finished run.
struct RunSummary<'a> {
    request: &'a TrainRequest,
    log: &'a ClickLog,
    models: &'a FittedModels,
    evaluations: &'a [DayEvaluation],
    chosen: ModelKind,
    chosen_because: String,
    outputs: RunOutputs,
    timings: Timings,
    execution: Execution,
}

/// The manifest of a finished run (written last: its presence marks the run complete).
fn run_manifest(summary: RunSummary<'_>) -> Result<RunManifest, TrainError> {
    let RunSummary {
        request,
        log,
        models,
        ..
    } = summary;
    let settings = &request.settings;
    let day = request.date;
    let window = settings.window_for(day);
    let dataset = models.dataset();
    let evaluations = summary
        .evaluations
        .iter()
        .map(|evaluation| {
            Ok(Evaluation {
                role: evaluation.role.clone(),
                test_date: evaluation.test_day.clone(),
                metrics: evaluation
                    .metrics
                    .iter()
                    .map(|(name, m)| Ok((name.clone(), to_json(m)?)))
                    .collect::<Result<_, TrainError>>()?,
            })
        })
        .collect::<Result<_, TrainError>>()?;
    Ok(RunManifest {
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
        config: to_json(settings.run_config())?,
        counts: DataCounts {
            clicks: log.slice(window).len() as u64,
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
        models: model_entries(models, settings)?,
        evaluations,
        chosen_model: summary.chosen.name().to_owned(),
        chosen_because: summary.chosen_because,
        outputs: summary.outputs,
        timings: summary.timings,
        execution: summary.execution,
    })
}

/// The click log and state to continue from: the latest valid checkpoint's, or a fresh read of
/// the lake (saved at once, so later starts train on exactly the same clicks).
async fn resume_or_read(
    lake: &Lake,
    request: &TrainRequest,
    store: &CheckpointStore,
    fingerprint: &str,
) -> Result<(Arc<ClickLog>, RunState, Option<String>), TrainError> {
    let loaded = store.load_latest_state().await?;
    if let Some(loaded) = &loaded {
        for (object, reason) in &loaded.skipped {
            tracing::warn!(object, reason, "skipped a damaged checkpoint");
        }
        if loaded.state.fingerprint != fingerprint {
            return Err(TrainError::CheckpointMismatch {
                location: store.location(),
                run_id: request.run_id.clone(),
            });
        }
    }
    let saved = match store.load_dataset().await {
        Ok(saved) => saved,
        Err(TrainError::Checkpoint { object, reason }) => {
            tracing::warn!(
                object,
                reason,
                "the dataset checkpoint is damaged; reading the lake again"
            );
            None
        }
        Err(other) => return Err(other),
    };
    if let Some(saved) = saved {
        if saved.fingerprint != fingerprint {
            return Err(TrainError::CheckpointMismatch {
                location: store.location(),
                run_id: request.run_id.clone(),
            });
        }
        match loaded {
            Some(loaded) if loaded.state.dataset_digest == saved.digest => {
                tracing::info!(checkpoint = loaded.object, "resuming");
                return Ok((Arc::new(saved.log), loaded.state, Some(loaded.object)));
            }
            Some(loaded) => tracing::warn!(
                checkpoint = loaded.object,
                "the checkpoint refers to another dataset; starting over from the saved dataset"
            ),
            None => {}
        }
        return Ok((
            Arc::new(saved.log),
            fresh_state(fingerprint, saved.digest),
            None,
        ));
    }
    let settings = &request.settings;
    // One read covers the backtest window [D-1-W, D-1), its test day D-1, and D itself.
    let backtest_day = request.date - chrono::Days::new(1);
    let span = TimeWindow::days(
        settings.window_for(backtest_day).start_date(),
        request.date + chrono::Days::new(1),
    );
    let log = Arc::new(ClickLog::read(lake, span).await?);
    let digest = store.save_dataset(&log, fingerprint).await?;
    Ok((log, fresh_state(fingerprint, digest), None))
}

/// The served ALS factors a previous start wrote, checked against the digest its state
/// recorded; a missing, altered or undecodable object is a [`TrainError::Checkpoint`].
async fn load_factors(
    lake: &Lake,
    path: &newsrec_lake::ObjectPath,
    digest: String,
) -> Result<AlsFactors, TrainError> {
    let object = path.to_string();
    let bytes = match lake.get_object(path).await {
        Ok(bytes) => bytes,
        Err(error) if error.is_not_found() => {
            return Err(TrainError::Checkpoint {
                object,
                reason: "missing".into(),
            });
        }
        Err(error) => return Err(error.into()),
    };
    blocking(move || {
        let found = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&bytes));
        if found != digest {
            return Err(TrainError::Checkpoint {
                object,
                reason: format!("digest {found}, the checkpoint recorded {digest}"),
            });
        }
        decode_als_model(&object, &bytes)
    })
    .await?
}

fn fresh_state(fingerprint: &str, dataset_digest: String) -> RunState {
    RunState {
        fingerprint: fingerprint.to_owned(),
        dataset_digest,
        ..RunState::default()
    }
}

/// Fits every model on `window`; ALS one checkpointed iteration at a time, continuing from the
/// state's slot for `fit`.
async fn fit_models(
    log: &Arc<ClickLog>,
    window: TimeWindow,
    settings: &Settings,
    fit: Fit,
    progress: &mut Progress<'_>,
) -> Result<FittedModels, TrainError> {
    let saved = fit.als_slot(&mut progress.state).clone();
    let (dataset, popularity, mut als) = blocking({
        let (log, settings) = (Arc::clone(log), settings.clone());
        move || -> Result<_, TrainError> {
            let (dataset, popularity) = training_data(&log, window, &settings)?;
            let als = match (settings.als.params(), saved) {
                (None, _) => None,
                (Some(params), None) => Some(AlsTraining::start(&dataset, params)?),
                (Some(params), Some(saved)) => Some(AlsTraining::resume(
                    &dataset,
                    params,
                    saved.factors,
                    saved.iteration,
                )?),
            };
            Ok((dataset, popularity, als))
        }
    })
    .await??;
    if let Some(mut training) = als.take() {
        let total = settings.als.params().map_or(0, |p| p.iterations) as u64;
        progress
            .control
            .report(fit.stage(), training.iteration() as u64, total);
        while !training.is_done() {
            training = blocking(move || {
                training.step();
                training
            })
            .await?;
            *fit.als_slot(&mut progress.state) = Some(AlsProgress {
                iteration: training.iteration(),
                factors: training.factors().clone(),
            });
            progress
                .control
                .report(fit.stage(), training.iteration() as u64, total);
            progress.unit_done(false).await?;
        }
        als = Some(training);
    }
    let params = settings.cooccurrence.clone();
    blocking(move || -> Result<_, TrainError> {
        let als = als.map(|training| training.finish(popularity.clone()));
        let cooccurrence = CooccurrenceModel::fit(dataset, popularity.clone(), params)?;
        Ok(FittedModels {
            popularity,
            cooccurrence,
            als,
        })
    })
    .await?
}

fn owned_metrics(metrics: Vec<(ModelKind, EvalMetrics)>) -> Vec<(String, EvalMetrics)> {
    metrics
        .into_iter()
        .map(|(kind, m)| (kind.name().to_owned(), m))
        .collect()
}

/// A manifest value; failing to encode one is a bug, reported rather than written as null.
fn to_json(value: impl serde::Serialize) -> Result<serde_json::Value, TrainError> {
    serde_json::to_value(value).map_err(internal)
}

fn internal(error: impl std::fmt::Display) -> TrainError {
    TrainError::Internal(error.to_string())
}

/// Each fitted model with its hyperparameters and size, for the manifest.
fn model_entries(
    models: &FittedModels,
    settings: &Settings,
) -> Result<Vec<ModelEntry>, TrainError> {
    let mut entries = vec![
        ModelEntry {
            name: ModelKind::Popularity.name().into(),
            params: to_json(&settings.popularity)?,
            stats: BTreeMap::from([("items".into(), models.popularity.ranked().len() as u64)]),
        },
        ModelEntry {
            name: ModelKind::Cooccurrence.name().into(),
            params: to_json(&settings.cooccurrence)?,
            stats: BTreeMap::from([(
                "neighbour_pairs".into(),
                models.cooccurrence.n_neighbour_pairs() as u64,
            )]),
        },
    ];
    if let Some(als) = &models.als {
        entries.push(ModelEntry {
            name: ModelKind::Als.name().into(),
            params: to_json(als.params())?,
            stats: BTreeMap::from([(
                "factor_values".into(),
                (als.factors().user.len() + als.factors().item.len()) as u64,
            )]),
        });
    }
    Ok(entries)
}

/// Picks the model with the best backtest figure; co-occurrence (the personalised model) when
/// there is no backtest to decide by or on a tie.
fn choose_model(
    evaluations: &[DayEvaluation],
    metric: &str,
) -> Result<(ModelKind, String), TrainError> {
    let Some(DayEvaluation {
        test_day, metrics, ..
    }) = evaluations
        .iter()
        .find(|evaluation| evaluation.role == BACKTEST_ROLE)
    else {
        return Ok((
            ModelKind::Cooccurrence,
            "no clicks before the window to backtest on; the personalised model is the default"
                .into(),
        ));
    };
    let mut best: Option<(ModelKind, f64)> = None;
    for (name, m) in metrics {
        let kind = ModelKind::from_name(name)
            .ok_or_else(|| internal(format!("the backtest names an unknown model {name:?}")))?;
        let value = m.get(metric).unwrap_or(0.0);
        let better = match best {
            None => true,
            Some((best_kind, best_value)) => {
                value > best_value
                    || (value == best_value
                        && kind == ModelKind::Cooccurrence
                        && best_kind != ModelKind::Cooccurrence)
            }
        };
        if better {
            best = Some((kind, value));
        }
    }
    let (kind, _) = best.unwrap_or((ModelKind::Cooccurrence, 0.0));
    let figures = metrics
        .iter()
        .map(|(n, m)| format!("{n} {:.4}", m.get(metric).unwrap_or(0.0)))
        .collect::<Vec<_>>()
        .join(", ");
    Ok((
        kind,
        format!("best {metric} on the {test_day} backtest: {figures}"),
    ))
}

/// Writes the lists in parts of `list_part_users` users, one checkpointed unit per part,
/// skipping the parts a previous start already wrote.
async fn write_lists(
    lake: &Lake,
    run_id: &str,
    log: &Arc<ClickLog>,
    models: &Arc<FittedModels>,
    chosen: ModelKind,
    settings: &Settings,
    progress: &mut Progress<'_>,
) -> Result<(), TrainError> {
    let (top_k, part_users) = (settings.top_k, settings.list_part_users.max(1));
    let dataset = models.dataset();
    let users: Arc<Vec<u32>> = Arc::new(
        (0..dataset.n_users() as u32)
            .filter(|u| !dataset.user_items(*u).is_empty())
            .collect(),
    );
    let total = users.len().div_ceil(part_users) as u64;
    for index in progress.state.parts.len()..total as usize {
        progress.control.report("lists", index as u64, total);
        let lists = blocking({
            let (log, models, users) = (Arc::clone(log), Arc::clone(models), Arc::clone(&users));
            move || {
                let chunk = &users[index * part_users..((index + 1) * part_users).min(users.len())];
                lists::user_lists(&log, &models, chosen, top_k, chunk)
            }
        })
        .await??;
        let batch = recs_to_batch(&lists).map_err(internal)?;
        let name = layout::recs_part_name(index);
        lake.write_run_table(run_id, &name, vec![batch.clone()])
            .await?;
        tracing::info!(part = %name, users = lists.len(), "wrote lists");
        let state = &mut progress.state;
        state.rows_written += batch.num_rows() as u64;
        // Users whose list comes out empty (nothing left after exclusions) are not written.
        state.users_written += lists.len() as u64;
        state.parts.push(name);
        progress.control.report("lists", index as u64 + 1, total);
        progress.unit_done(false).await?;
    }
    Ok(())
}

fn elapsed_ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}
