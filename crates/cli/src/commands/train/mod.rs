//! `newsrec train`: one daily training run, checkpointed, interruptible, summarised; and the
//! `--spot` runner that plays managed spot training locally.

mod sagemaker;
mod spot;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use chrono::NaiveDate;
use newsrec_config::Config;
use newsrec_lake::{Lake, RunManifest, layout};
use newsrec_train::{
    JobControl, StopSignal, TrainProgress, TrainRequest, spot::EXIT_INTERRUPTED, train_with,
};

pub use sagemaker::SageMaker;
pub use spot::SpotArgs;

use crate::{output, settings::open_lake};

#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// Serving day D (UTC): models train on [D - window, D); under SageMaker the `date`
    /// hyperparameter may give it
    #[arg(long, value_parser = super::parse_day)]
    pub date: Option<NaiveDate>,
    /// Days of training data (default: train.window_days of the config, 7)
    #[arg(long)]
    pub window_days: Option<u32>,
    /// Run id (default: <date>-<UTC time now>); letters, digits, '.', '_', '-'. Starting a run
    /// id again resumes it from its checkpoints.
    #[arg(long)]
    pub run_id: Option<String>,
    /// Checkpoint store: a folder or s3:// URI (default: train.checkpoint.uri, else the lake;
    /// /opt/ml/checkpoints under SageMaker)
    #[arg(long, env = "NEWSREC_CHECKPOINT_DIR")]
    pub checkpoint_dir: Option<String>,
    /// Keep the checkpoints once the run is complete
    #[arg(long)]
    pub keep_checkpoints: bool,
    /// Watch the EC2 spot interruption notice at this metadata base URL (default: train.spot
    /// when train.spot.notice is true)
    #[arg(long)]
    pub spot_notice_url: Option<String>,
    #[command(flatten)]
    pub spot: SpotArgs,
}

/// The global options a child job must be given again.
#[derive(Debug, Clone)]
pub struct Globals {
    pub config: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub log: String,
}

pub async fn run(config: &Config, globals: &Globals, args: TrainArgs) -> anyhow::Result<()> {
    if args.spot.spot {
        let run_id = match (&args.run_id, args.date) {
            (Some(run_id), _) => run_id.clone(),
            (None, Some(date)) => default_run_id(date),
            (None, None) => anyhow::bail!("--spot needs --date (or --run-id)"),
        };
        return spot::run(config, globals, &args, &run_id).await;
    }
    let sagemaker = SageMaker::detect(|name| std::env::var(name).ok())?;
    let date = match (args.date, &sagemaker) {
        (Some(date), _) => date,
        (None, Some(sm)) => {
            let text = sm.hyperparameter("date").context(
                "give --date, or a `date` hyperparameter (YYYY-MM-DD) to the SageMaker job",
            )?;
            super::parse_day(&text).map_err(|e| anyhow::anyhow!("hyperparameter date: {e}"))?
        }
        (None, None) => anyhow::bail!("give --date YYYY-MM-DD: the serving day to train for"),
    };
    let lake = match (&sagemaker, config.lake.uri.is_empty()) {
        (
            Some(SageMaker {
                train_channel: Some(channel),
                ..
            }),
            true,
        ) => Lake::open(&channel.display().to_string()).with_context(|| {
            format!(
                "opening the train channel {} as the lake",
                channel.display()
            )
        })?,
        _ => open_lake(config, &globals.data_dir)?,
    };
    let mut settings = config.train.clone();
    let window_days = match (args.window_days, &sagemaker) {
        (Some(days), _) => Some(days),
        (None, Some(sm)) => sm
            .hyperparameter("window_days")
            .map(|text| {
                text.parse()
                    .context("hyperparameter window_days is not a number")
            })
            .transpose()?,
        (None, None) => None,
    };
    if let Some(days) = window_days {
        anyhow::ensure!(
            (1..=365).contains(&days),
            "--window-days must be 1..=365, got {days}"
        );
        settings.window_days = days;
    }
    let run_id = args
        .run_id
        .clone()
        .or_else(|| {
            sagemaker
                .as_ref()
                .and_then(|sm| sm.hyperparameter("run_id"))
        })
        .unwrap_or_else(|| default_run_id(date));
    let checkpoint_uri = args
        .checkpoint_dir
        .clone()
        .or_else(|| {
            (!config.train.checkpoint.uri.is_empty()).then(|| config.train.checkpoint.uri.clone())
        })
        .or_else(|| {
            sagemaker
                .as_ref()
                .map(|_| sagemaker::CHECKPOINT_DIR.to_owned())
        });
    let checkpoints = checkpoint_uri
        .map(|uri| Lake::open(&uri).with_context(|| format!("opening the checkpoint store {uri}")))
        .transpose()?;
    let request = TrainRequest {
        date,
        run_id: run_id.clone(),
        settings,
        checkpoints,
        keep_checkpoints: args.keep_checkpoints || config.train.checkpoint.keep,
        checkpoint_interval: Duration::from_secs(config.train.checkpoint.min_interval_s),
    };

    let stop = StopSignal::new();
    tokio::spawn(stop_on_signals(stop.clone()));
    let notice_url = args.spot_notice_url.clone().or_else(|| {
        config
            .train
            .spot
            .notice
            .then(|| config.train.spot.metadata_url.clone())
    });
    let watcher = notice_url.map(|url| {
        tokio::spawn(newsrec_train::spot::notice::watch(
            url,
            Duration::from_millis(config.train.spot.notice_poll_ms),
            stop.clone(),
        ))
    });
    let bar = output::progress_bar(0, "{msg:>14} [{bar:40}] {pos}/{len} {elapsed}");
    let progress_bar = bar.clone();
    let control = JobControl {
        stop,
        progress: Some(Arc::new(move |progress: TrainProgress| {
            progress_bar.set_message(progress.stage);
            progress_bar.set_length(progress.total);
            progress_bar.set_position(progress.done);
        })),
    };
    let outcome = train_with(&lake, &request, &control).await;
    bar.finish_and_clear();
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    let manifest = outcome?;
    print!("{}", summary(&manifest));
    if let Some(model_dir) = sagemaker.as_ref().and_then(|sm| sm.model_dir.as_ref()) {
        copy_run_to(&lake, &run_id, model_dir)?;
    }
    Ok(())
}

/// Raises `stop` on SIGTERM (spot reclaim, SageMaker stop, `kill`) or SIGINT (Ctrl-C); a
/// second signal ends the process at once, for when the current unit is too slow to wait for.
pub(crate) async fn stop_on_signals(stop: StopSignal) {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "cannot watch SIGTERM");
                return;
            }
        };
    for count in 0.. {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        };
        if count > 0 {
            eprintln!("{name} again: exiting without waiting for the current unit");
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
        tracing::warn!(
            signal = name,
            "stopping after the current unit of work and its checkpoint"
        );
        stop.raise(name);
    }
}

/// Copies a complete run's objects into SageMaker's model folder (local lakes only).
fn copy_run_to(lake: &Lake, run_id: &str, model_dir: &Path) -> anyhow::Result<()> {
    let from = lake
        .local_folder(&layout::run_prefix(run_id))
        .with_context(|| {
            format!(
                "the run is in {}; copying it to {} needs a local lake",
                lake.uri(),
                model_dir.display()
            )
        })?;
    let copied = sagemaker::copy_outputs(&from, model_dir)?;
    println!("copied {copied} run files to {}", model_dir.display());
    Ok(())
}

/// `<date>-<UTC now>`: sorts by serving day, then by when it was trained.
pub fn default_run_id(date: NaiveDate) -> String {
    format!("{date}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S"))
}

/// A readable summary of a run.
pub fn summary(manifest: &RunManifest) -> String {
    let mut out = format!(
        "run {} trained for {} on [{}, {}): {} clicks, {} users, {} articles ({} duplicates dropped)\n",
        manifest.run_id,
        manifest.serving_date,
        manifest.window.start,
        manifest.window.end,
        manifest.counts.clicks,
        manifest.counts.users,
        manifest.counts.items,
        manifest.counts.duplicates,
    );
    out.push_str(&metrics_table(manifest));
    out.push_str(&format!(
        "serving model: {} ({})\n",
        manifest.chosen_model, manifest.chosen_because
    ));
    out.push_str(&format!(
        "wrote {} lists ({} rows, top {}) in {} parts; rollups {} ms, fit {} ms, eval {} ms, write {} ms, total {} ms\n",
        manifest.outputs.users,
        manifest.outputs.rows,
        manifest.outputs.top_k,
        manifest.outputs.parts.len(),
        manifest.timings.read_ms,
        manifest.timings.fit_ms,
        manifest.timings.eval_ms,
        manifest.timings.write_ms,
        manifest.timings.total_ms,
    ));
    if let Some(rollups) = &manifest.execution.rollups {
        out.push_str(&format!(
            "rollups: {} hours, {} reused, {} computed ({} bytes)\n",
            rollups.hours, rollups.reused, rollups.computed, rollups.bytes
        ));
    }
    for note in &manifest.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out
}

/// The P1 figures of a run as a table (one row per evaluation and model).
pub fn metrics_table(manifest: &RunManifest) -> String {
    if manifest.evaluations.is_empty() {
        return "no P1 evaluation: the lake holds no clicks of the day before or of the serving day\n".into();
    }
    let mut rows = vec![output::metric_header(&["evaluation", "test day", "model"])];
    for evaluation in &manifest.evaluations {
        for (model, metrics) in &evaluation.metrics {
            let figure = |key: &str| {
                metrics
                    .get(key)
                    .and_then(serde_json::Value::as_f64)
                    .unwrap_or(f64::NAN)
            };
            let users = metrics
                .get("users")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0) as usize;
            let leading = vec![
                evaluation.role.clone(),
                evaluation.test_date.clone(),
                model.clone(),
            ];
            let figures = [
                figure("hr@10"),
                figure("recall@10"),
                figure("ndcg@10"),
                figure("coverage"),
                figure("truth_in_train"),
            ];
            rows.push(output::metric_row(leading, users, figures));
        }
    }
    output::table(&rows)
}
