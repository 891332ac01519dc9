//! One training run: rollups, fit, backtest, choose, write lists, write the manifest (last).
//!
//! The run is a chain of units of work, each followed by a checkpoint (`checkpoint.rs`): each
//! hour's rollup (kept in the lake, so it is its own checkpoint), each ALS iteration of the backtest and of the served models, each evaluation, each
//! part of the lists. A start resumes after the last unit its checkpoints record; the units
//! are deterministic, so a run interrupted any number of times writes the same bytes as one
//! that never was.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use chrono::{NaiveDate, SecondsFormat, Utc};
use newsrec_lake::{
    Lake, TimeWindow,
    layout::{self, ALS_FACTORS_OBJECT, FALLBACK_TABLE, SIMILAR_TABLE},
    manifest::{
        DataCounts, DataWindow, Evaluation, Execution, MANIFEST_VERSION, ModelEntry, RollupUse,
        RunManifest, RunOutputs, Timings,
    },
    recs::{UserRecs, fallback_to_batch, recs_to_batch, similar_to_batch},
};
use newsrec_lake_query::QueryEngine;
use newsrec_model::{AlsFactors, AlsTraining, Dataset, EvalMetrics};
use newsrec_rollup::{RollupError, RollupProgress, ensure_rollups};
use rayon::prelude::*;

use crate::{
    FittedModels, ModelKind, Settings, TrainError, blocking,
    checkpoint::{
        AlsProgress, CHECKPOINT_FORMAT_VERSION, CheckpointStore, DayEvaluation, RunState,
        decode_als_model, encode_als_model,
    },
    control::{ProgressFn, StopSignal, TrainProgress, peak_rss_bytes},
    lists::{self, Names},
    window::{ArticleIndex, Reader, ReaderSample, ReaderStream, RollupSpan, WindowArticles},
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
pub(crate) enum Fit {
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
pub(crate) struct Progress<'a> {
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
/// previous start already recorded. The input is the hourly rollups of the run's span, brought
/// up to date first (an hour is a unit of work of its own: one summarised is kept whatever
/// happens next).
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
    let (input, mut progress, resumed_from) = open_run(lake, request, control).await?;
    let read_ms = elapsed_ms(started);

    let fit_started = Instant::now();
    backtest(lake, &input, request, &mut progress).await?;
    let served = fit_served(lake, &input, request, &mut progress).await?;
    let fit_ms = elapsed_ms(fit_started);

    let eval_started = Instant::now();
    evaluate_served(&input, &served, request.date, &mut progress).await?;
    let eval_ms = elapsed_ms(eval_started);
    let evaluations = recorded_evaluations(&progress.state);
    log_evaluations(&evaluations);
    let (chosen, chosen_because) =
        choose_model(&evaluations, request.settings.select_metric.name())?;

    let write_started = Instant::now();
    let (outputs, readers) =
        write_outputs(lake, request, &input, &served, chosen, &mut progress).await?;
    let write_ms = elapsed_ms(write_started);

    let manifest = run_manifest(RunSummary {
        request,
        input: &input,
        served: &served,
        readers,
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
            rollups: Some(input.rollups.clone()),
        },
    })?;
    lake.write_manifest(&request.run_id, &manifest).await?;
    if !request.keep_checkpoints {
        progress.store.clear().await?;
    }
    Ok(manifest)
}

/// What a run reads: the query engine, the rollup keys of its span (the backtest window to D
/// included), and the article ids every window and test day of the run shares.
pub(crate) struct RunInput {
    pub(crate) engine: QueryEngine,
    pub(crate) span: RollupSpan,
    pub(crate) index: ArticleIndex,
    pub(crate) rollups: RollupUse,
}

impl RunInput {
    /// Brings the rollups of `span` up to date and opens them; `stop` is asked between hours.
    pub(crate) async fn open(
        lake: &Lake,
        span: TimeWindow,
        settings: &Settings,
        control: &JobControl,
    ) -> Result<RunInput, TrainError> {
        let engine = QueryEngine::new(lake, &settings.engine_settings())?;
        let report = ensure_rollups(
            lake,
            &engine,
            span,
            &settings.rollup_settings(),
            &|step: &RollupProgress| {
                control.report("rollups", step.done as u64, step.total as u64);
            },
            &|| control.stop.raised(),
        )
        .await?;
        tracing::info!(
            hours = report.hours,
            reused = report.reused,
            computed = report.computed,
            damaged = report.damaged,
            clicks = report.counts.clicks,
            "rollups ready"
        );
        let rollups = RollupUse {
            hours: report.hours as u64,
            reused: report.reused as u64,
            computed: report.computed as u64,
            bytes: report.rollup_bytes,
        };
        let span = RollupSpan {
            hours: report.markers.into_iter().collect(),
        };
        let index = ArticleIndex::of_span(lake, &span).await?;
        Ok(RunInput {
            engine,
            span,
            index,
            rollups,
        })
    }
}

/// The models of one window, the sample of readers they were fitted and evaluated with, and
/// why ALS was left out when it was.
pub(crate) struct WindowModels {
    pub(crate) articles: WindowArticles,
    pub(crate) sample: ReaderSample,
    pub(crate) models: FittedModels,
    pub(crate) als_left_out: Option<String>,
}

/// Opens the run's checkpoints and its input (rollups brought up to date), and records this
/// start; refuses a window without clicks.
async fn open_run<'a>(
    lake: &Lake,
    request: &TrainRequest,
    control: &'a JobControl,
) -> Result<(RunInput, Progress<'a>, Option<String>), TrainError> {
    let store = CheckpointStore::new(
        request.checkpoints.clone().unwrap_or_else(|| lake.clone()),
        &request.run_id,
    )?;
    let fingerprint = request.fingerprint()?;
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
    let settings = &request.settings;
    // One span covers the backtest window [D-1-W, D-1), its test day D-1, and D itself.
    let backtest_day = request.date - chrono::Days::new(1);
    let span = TimeWindow::days(
        settings.window_for(backtest_day).start_date(),
        request.date + chrono::Days::new(1),
    );
    let input = match RunInput::open(lake, span, settings, control).await {
        Err(TrainError::Rollup(RollupError::Interrupted { reason, .. })) => {
            // The hours summarised so far are in the lake; the state records this start, with
            // no input digest yet (the next start adopts the one it finds).
            let mut state = match loaded {
                Some(loaded) => loaded.state,
                None => fresh_state(&fingerprint, String::new()),
            };
            state.starts += 1;
            state.seq += 1;
            store.save_state(&state).await?;
            return Err(TrainError::Interrupted {
                reason,
                location: store.location(),
            });
        }
        other => other?,
    };
    // The hours before D: what the lists and the backtest are made of. D itself may still be
    // arriving while the job runs (it only feeds the served evaluation, recorded once done), so
    // a resume must not start over because of it.
    let digest = input
        .span
        .digest_before(settings.window_for(request.date).end_ms);
    let (state, resumed_from) = match loaded {
        Some(loaded) if loaded.state.dataset_digest == digest => {
            tracing::info!(checkpoint = loaded.object, "resuming");
            (loaded.state, Some(loaded.object))
        }
        // Earlier starts stopped while bringing the rollups up to date.
        Some(mut loaded) if loaded.state.dataset_digest.is_empty() => {
            tracing::info!(checkpoint = loaded.object, "resuming after the rollups");
            loaded.state.dataset_digest = digest;
            (loaded.state, Some(loaded.object))
        }
        Some(loaded) => {
            tracing::warn!(
                checkpoint = loaded.object,
                "the lake changed since the checkpoint (its rollups differ); starting over"
            );
            (fresh_state(&fingerprint, digest), None)
        }
        None => (fresh_state(&fingerprint, digest), None),
    };
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
    let window = settings.window_for(request.date);
    let counts = input.span.counts(window);
    tracing::info!(
        clicks = counts.clicks,
        hours = input.rollups.hours,
        resumed_from = resumed_from.as_deref().unwrap_or("-"),
        start = progress.state.starts,
        "input ready"
    );
    if counts.clicks == 0 {
        return Err(TrainError::EmptyWindow {
            start: window.start_date(),
            end: request.date,
        });
    }
    progress.unit_done(true).await?;
    Ok((input, progress, resumed_from))
}

/// The backtest: the same configuration trained on the window before D-1 and evaluated on D-1
/// (no figures when there are no clicks before that window).
async fn backtest(
    lake: &Lake,
    input: &RunInput,
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
    if input.span.counts(backtest_window).clicks > 0 {
        let fitted = fit_window(
            lake,
            input,
            backtest_window,
            settings,
            Some((Fit::Backtest, progress)),
        )
        .await?;
        let metrics = evaluate_window(input, &fitted, backtest_day).await?;
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
    input: &RunInput,
    request: &TrainRequest,
    progress: &mut Progress<'_>,
) -> Result<WindowModels, TrainError> {
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
    let fitted = fit_window(lake, input, window, settings, Some((Fit::Serve, progress))).await?;
    if let (Some(als), None) = (&fitted.models.als, &progress.state.serve_factors) {
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
    Ok(fitted)
}

/// P1 of the served models on D itself, when the lake already holds clicks of D.
async fn evaluate_served(
    input: &RunInput,
    served: &WindowModels,
    day: NaiveDate,
    progress: &mut Progress<'_>,
) -> Result<(), TrainError> {
    if progress.state.served.is_some() {
        return Ok(());
    }
    let mut figures = Vec::new();
    if input.span.counts(day_window(day)).clicks > 0 {
        let metrics = evaluate_window(input, served, day).await?;
        figures.push(DayEvaluation {
            role: SERVED_ROLE.into(),
            test_day: day.to_string(),
            metrics: owned_metrics(metrics),
        });
    }
    progress.state.served = Some(figures);
    progress.unit_done(true).await
}

/// The UTC day `day` as a window.
pub(crate) fn day_window(day: NaiveDate) -> TimeWindow {
    TimeWindow::days(day, day + chrono::Days::new(1))
}

/// P1 of a window's models on `day`, over the window's sample of readers.
pub(crate) async fn evaluate_window(
    input: &RunInput,
    fitted: &WindowModels,
    day: NaiveDate,
) -> Result<Vec<(ModelKind, EvalMetrics)>, TrainError> {
    let test = fitted
        .sample
        .test_set(&input.engine, &input.span, &input.index, day_window(day))
        .await?;
    Ok(fitted.models.evaluate_on(&test))
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
/// similar-article lists; returns what the manifest records of them, and the readers of the
/// window (all of them, counted while their lists were made).
async fn write_outputs(
    lake: &Lake,
    request: &TrainRequest,
    input: &RunInput,
    served: &WindowModels,
    chosen: ModelKind,
    progress: &mut Progress<'_>,
) -> Result<(RunOutputs, ReaderCounts), TrainError> {
    let settings = &request.settings;
    let readers = if served.sample.complete {
        write_sample_lists(
            lake,
            &request.run_id,
            input,
            served,
            chosen,
            settings,
            progress,
        )
        .await?
    } else {
        write_streamed_lists(
            lake,
            &request.run_id,
            input,
            served,
            chosen,
            settings,
            progress,
        )
        .await?
    };
    let names = Names {
        users: &served.sample.users,
        items: input.index.names(),
    };
    let fallback = lists::fallback_list(names, &served.models, settings.fallback_k);
    let fallback_batch = fallback_to_batch(&fallback).map_err(internal)?;
    lake.write_run_table(&request.run_id, FALLBACK_TABLE, vec![fallback_batch])
        .await?;
    let similar = lists::similar_lists(names, &served.models, settings.similar_k);
    let similar_batch = similar_to_batch(&similar).map_err(internal)?;
    lake.write_run_table(&request.run_id, SIMILAR_TABLE, vec![similar_batch])
        .await?;
    let outputs = RunOutputs {
        users: progress.state.users_written,
        rows: progress.state.rows_written,
        top_k: settings.top_k,
        parts: progress.state.parts.clone(),
        fallback: FALLBACK_TABLE.into(),
        similar: Some(SIMILAR_TABLE.into()),
        similar_articles: similar.len() as u64,
        als_factors: served
            .models
            .als
            .as_ref()
            .map(|_| ALS_FACTORS_OBJECT.to_owned()),
    };
    Ok((outputs, readers))
}

/// The readers of the served window and their distinct (reader, article) pairs.
#[derive(Debug, Clone, Copy, Default)]
struct ReaderCounts {
    readers: u64,
    pairs: u64,
}

/// Lists when every reader of the window is in the sample: straight from its histories, in
/// parts of `list_part_users`, skipping the parts a previous start wrote.
async fn write_sample_lists(
    lake: &Lake,
    run_id: &str,
    input: &RunInput,
    served: &WindowModels,
    chosen: ModelKind,
    settings: &Settings,
    progress: &mut Progress<'_>,
) -> Result<ReaderCounts, TrainError> {
    let (top_k, part_users) = (settings.top_k, settings.list_part_users.max(1));
    let dataset = served.models.dataset();
    let users: Vec<u32> = (0..dataset.n_users() as u32)
        .filter(|u| !dataset.user_items(*u).is_empty())
        .collect();
    let total = users.len().div_ceil(part_users) as u64;
    let names = Names {
        users: &served.sample.users,
        items: input.index.names(),
    };
    let mut parts = PartWriter::default();
    for index in progress.state.parts.len()..total as usize {
        progress.control.report("lists", index as u64, total);
        let chunk = &users[index * part_users..((index + 1) * part_users).min(users.len())];
        let lists = crate::cpu(|| lists::user_lists(names, &served.models, chosen, top_k, chunk))?;
        parts.write(lake, run_id, index, lists, progress).await?;
        progress.control.report("lists", index as u64 + 1, total);
    }
    parts.finish(progress).await?;
    Ok(ReaderCounts {
        readers: users.len() as u64,
        pairs: dataset.n_pairs() as u64,
    })
}

/// Lists for a window with more readers than the sample: every reader streamed in id order
/// from the rollups, `list_part_users` readers per part; the readers of parts a previous start
/// wrote are read past (the order is the same every time) and only counted.
async fn write_streamed_lists(
    lake: &Lake,
    run_id: &str,
    input: &RunInput,
    served: &WindowModels,
    chosen: ModelKind,
    settings: &Settings,
    progress: &mut Progress<'_>,
) -> Result<ReaderCounts, TrainError> {
    let (top_k, part_users) = (settings.top_k, settings.list_part_users.max(1));
    let window = served.articles.window;
    let mut stream = ReaderStream::open(&input.engine, &input.span, window, settings).await?;
    let mut counts = ReaderCounts::default();
    let mut part: Vec<Reader> = Vec::with_capacity(part_users.min(1 << 16));
    // The part being gathered, and how many readers it has (those of parts already written
    // are counted, not kept).
    let (mut index, mut in_part) = (0usize, 0usize);
    let mut parts = PartWriter::default();
    loop {
        let next = stream.next(&input.engine, &input.index).await?;
        let ended = next.is_none();
        if let Some(reader) = next {
            counts.readers += 1;
            counts.pairs += reader.items.len() as u64;
            in_part += 1;
            if index >= progress.state.parts.len() {
                part.push(reader);
            }
        }
        if in_part == part_users || (ended && in_part > 0) {
            if index >= progress.state.parts.len() {
                progress.control.report("lists", index as u64, 0);
                // Readers are scored in parallel; the order of the part stays that of the
                // stream.
                let lists = crate::cpu(|| {
                    part.par_iter()
                        .map(|reader| {
                            lists::reader_list(
                                input.index.names(),
                                &served.models,
                                chosen,
                                top_k,
                                reader,
                            )
                        })
                        .filter_map(Result::transpose)
                        .collect::<Result<Vec<_>, _>>()
                })?;
                parts.write(lake, run_id, index, lists, progress).await?;
            }
            part.clear();
            in_part = 0;
            index += 1;
        }
        if ended {
            break;
        }
    }
    parts.finish(progress).await?;
    Ok(counts)
}

/// A list part being encoded and stored while the next one is gathered and scored.
type PartWrite = tokio::task::JoinHandle<Result<WrittenPart, TrainError>>;

/// What a stored list part adds to the state.
struct WrittenPart {
    name: String,
    rows: u64,
    users: u64,
}

/// Stores list parts one behind the one being made: each part is written in the background and
/// recorded in the state when the next one is handed over (or at the end).
#[derive(Default)]
struct PartWriter {
    writing: Option<PartWrite>,
}

impl PartWriter {
    /// Finishes the part in flight, if any, then starts writing part `index`.
    async fn write(
        &mut self,
        lake: &Lake,
        run_id: &str,
        index: usize,
        lists: Vec<UserRecs>,
        progress: &mut Progress<'_>,
    ) -> Result<(), TrainError> {
        if let Some(previous) = self.writing.take() {
            finish_part(previous, progress).await?;
        }
        self.writing = Some(start_part(lake, run_id, index, lists));
        Ok(())
    }

    /// Finishes the last part.
    async fn finish(self, progress: &mut Progress<'_>) -> Result<(), TrainError> {
        match self.writing {
            Some(last) => finish_part(last, progress).await,
            None => Ok(()),
        }
    }
}

/// Starts writing list part `index` in the background.
fn start_part(lake: &Lake, run_id: &str, index: usize, lists: Vec<UserRecs>) -> PartWrite {
    let (lake, run_id) = (lake.clone(), run_id.to_owned());
    tokio::spawn(async move {
        let batch = recs_to_batch(&lists).map_err(internal)?;
        let rows = batch.num_rows() as u64;
        let name = layout::recs_part_name(index);
        lake.write_run_table(&run_id, &name, vec![batch]).await?;
        tracing::info!(part = %name, users = lists.len(), "wrote lists");
        Ok(WrittenPart {
            name,
            rows,
            // Users whose list comes out empty (nothing left after exclusions) are not
            // written.
            users: lists.len() as u64,
        })
    })
}

/// Waits for a part's write, records it in the state, and ends the unit of work (a checkpoint
/// when one is due; a raised stop ends the run here).
async fn finish_part(write: PartWrite, progress: &mut Progress<'_>) -> Result<(), TrainError> {
    let written = write
        .await
        .map_err(|join| TrainError::Internal(join.to_string()))??;
    let state = &mut progress.state;
    state.rows_written += written.rows;
    state.users_written += written.users;
    state.parts.push(written.name);
    progress.unit_done(false).await
}

/// Everything the manifest records about a finished run.
struct RunSummary<'a> {
    request: &'a TrainRequest,
    input: &'a RunInput,
    served: &'a WindowModels,
    readers: ReaderCounts,
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
        input,
        served,
        ..
    } = summary;
    let settings = &request.settings;
    let day = request.date;
    let window = settings.window_for(day);
    let counts = input.span.counts(window);
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
    let mut notes = Vec::new();
    if !served.sample.complete {
        notes.push(format!(
            "P1 figures are over a sample of {} readers (train.eval_sample_users) of the window's {}",
            served.sample.users.len(),
            summary.readers.readers
        ));
    }
    notes.extend(served.als_left_out.clone());
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
            clicks: counts.clicks,
            duplicates: counts.duplicates,
            other_events: counts.other_events,
            users: summary.readers.readers,
            items: served.articles.articles,
            pairs: summary.readers.pairs,
        },
        models: model_entries(&served.models, settings)?,
        evaluations,
        chosen_model: summary.chosen.name().to_owned(),
        chosen_because: summary.chosen_because,
        outputs: summary.outputs,
        timings: summary.timings,
        execution: summary.execution,
        notes,
    })
}

fn fresh_state(fingerprint: &str, input_digest: String) -> RunState {
    RunState {
        fingerprint: fingerprint.to_owned(),
        dataset_digest: input_digest,
        ..RunState::default()
    }
}

/// Fits every model of `window` from the rollups: popularity and co-visitation from the
/// article sums, the sample's histories for personal scores, and ALS (one checkpointed
/// iteration at a time, continuing from the state's slot for `fit`) when the sample is every
/// reader of the window.
pub(crate) async fn fit_window(
    lake: &Lake,
    input: &RunInput,
    window: TimeWindow,
    settings: &Settings,
    checkpointed: Option<(Fit, &mut Progress<'_>)>,
) -> Result<WindowModels, TrainError> {
    let started = Instant::now();
    let articles = WindowArticles::read(lake, &input.span, &input.index, window, settings).await?;
    let articles_ms = elapsed_ms(started);
    let sample =
        ReaderSample::read(&input.engine, &input.span, &input.index, window, settings).await?;
    tracing::info!(
        window = %layout::Partition::of_ts(window.end_ms).date,
        articles = articles.articles,
        pairs = articles.pairs,
        readers = sample.users.len(),
        complete = sample.complete,
        articles_ms,
        sample_ms = elapsed_ms(started) - articles_ms,
        "window read"
    );
    let popularity = articles.popularity_model(input.index.len());
    let (als, als_left_out) = match settings.als.params() {
        None => (None, None),
        Some(_) if !sample.complete => (
            None,
            Some(format!(
                "ALS left out of the window before {}: it has more readers than train.eval_sample_users ({}), and factors for all of them would not fit the memory target",
                layout::Partition::of_ts(window.end_ms).date,
                settings.eval_sample_users
            )),
        ),
        Some(params) => {
            let training = match checkpointed {
                Some((fit, progress)) => fit_als(&sample.dataset, params, fit, progress).await?,
                None => {
                    let mut training = crate::cpu(|| AlsTraining::start(&sample.dataset, params))?;
                    while !training.is_done() {
                        crate::cpu(|| training.step());
                    }
                    training
                }
            };
            (Some(training.finish(popularity.clone())), None)
        }
    };
    let cooccurrence =
        articles.cooccurrence_model(sample.dataset.clone(), popularity.clone(), settings);
    Ok(WindowModels {
        articles,
        sample,
        models: FittedModels {
            popularity,
            cooccurrence,
            als,
        },
        als_left_out,
    })
}

/// ALS on `dataset`, one checkpointed iteration at a time from the state's slot for `fit`.
async fn fit_als(
    dataset: &Dataset,
    params: newsrec_model::AlsParams,
    fit: Fit,
    progress: &mut Progress<'_>,
) -> Result<AlsTraining, TrainError> {
    let saved = fit.als_slot(&mut progress.state).clone();
    let total = params.iterations as u64;
    let mut training = crate::cpu(|| match saved {
        None => AlsTraining::start(dataset, params),
        Some(saved) => AlsTraining::resume(dataset, params, saved.factors, saved.iteration),
    })?;
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
    Ok(training)
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

fn elapsed_ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}
