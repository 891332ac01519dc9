//! `newsrec train`: one daily training run, summarised.

use std::path::Path;

use chrono::NaiveDate;
use newsrec_config::Config;
use newsrec_lake::RunManifest;
use newsrec_train::{TrainRequest, train};

use crate::{
    output,
    settings::{open_lake, train_settings},
};

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Serving day D (UTC): models train on [D - window, D)
    #[arg(long, value_parser = super::parse_day)]
    pub date: NaiveDate,
    /// Days of training data (default: train.window_days of the config, 7)
    #[arg(long)]
    pub window_days: Option<u32>,
    /// Run id (default: <date>-<UTC time now>); letters, digits, '.', '_', '-'
    #[arg(long)]
    pub run_id: Option<String>,
}

pub async fn run(config: &Config, data_dir: &Path, args: TrainArgs) -> anyhow::Result<()> {
    let lake = open_lake(config, data_dir)?;
    let mut settings = train_settings(config);
    if let Some(days) = args.window_days {
        anyhow::ensure!(
            (1..=365).contains(&days),
            "--window-days must be 1..=365, got {days}"
        );
        settings.window_days = days;
    }
    let run_id = args.run_id.unwrap_or_else(|| default_run_id(args.date));
    let manifest = train(
        &lake,
        &TrainRequest {
            date: args.date,
            run_id,
            settings,
        },
    )
    .await?;
    print!("{}", summary(&manifest));
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
        "wrote {} lists ({} rows, top {}) in {} parts; read {} ms, fit {} ms, eval {} ms, write {} ms, total {} ms\n",
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
