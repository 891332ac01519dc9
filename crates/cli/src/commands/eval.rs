//! `newsrec eval`: protocol P1 for each day of a range, per-day rows and the mean.

use std::path::Path;

use chrono::NaiveDate;
use newsrec_config::Config;
use newsrec_train::{EvalReport, evaluate_range};

use crate::{
    output,
    settings::{open_lake, train_settings},
};

#[derive(Debug, Clone, Copy, Default, clap::ValueEnum)]
pub enum EvalFormat {
    #[default]
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// First test day (UTC)
    #[arg(long, value_parser = super::parse_day)]
    pub from: NaiveDate,
    /// Last test day, inclusive
    #[arg(long, value_parser = super::parse_day)]
    pub to: NaiveDate,
    /// Days of training data before each test day (default: train.window_days, 7)
    #[arg(long)]
    pub window_days: Option<u32>,
    /// Output format
    #[arg(long, value_enum, default_value_t = EvalFormat::Table)]
    pub format: EvalFormat,
}

pub async fn run(config: &Config, data_dir: &Path, args: EvalArgs) -> anyhow::Result<()> {
    let lake = open_lake(config, data_dir)?;
    let mut settings = train_settings(config);
    if let Some(days) = args.window_days {
        anyhow::ensure!(
            (1..=365).contains(&days),
            "--window-days must be 1..=365, got {days}"
        );
        settings.window_days = days;
    }
    let started = std::time::Instant::now();
    let report = evaluate_range(&lake, args.from, args.to, &settings).await?;
    match args.format {
        EvalFormat::Json => println!("{}", serde_json::to_string(&report)?),
        EvalFormat::Table => {
            print!("{}", table(&report));
            println!(
                "({} days in {:.1} s)",
                report.days.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

/// Per-day rows and the mean, one row per model.
pub fn table(report: &EvalReport) -> String {
    let mut rows = vec![output::metric_header(&["test day", "model"])];
    for day in &report.days {
        for (model, m) in &day.models {
            let figures = [m.hit_rate, m.recall, m.ndcg, m.coverage, m.truth_in_train];
            rows.push(output::metric_row(
                vec![day.date.clone(), model.clone()],
                m.users,
                figures,
            ));
        }
    }
    for (model, m) in &report.mean {
        let figures = [m.hit_rate, m.recall, m.ndcg, f64::NAN, f64::NAN];
        rows.push(output::metric_row(
            vec!["mean".into(), model.clone()],
            m.users,
            figures,
        ));
    }
    output::table(&rows)
}
