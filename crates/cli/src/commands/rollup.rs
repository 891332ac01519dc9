//! `newsrec rollup`: bring the hourly rollups of a range of days up to date, ahead of `train`
//! (which refreshes the rollups of its own window first) or for other readers of the lake.

use std::path::Path;

use anyhow::Context;
use chrono::NaiveDate;
use newsrec_config::Config;
use newsrec_lake::TimeWindow;
use newsrec_lake_query::QueryEngine;
use newsrec_rollup::{RollupProgress, ensure_rollups};
use newsrec_train::StopSignal;

use crate::{output, settings::open_lake};

#[derive(Debug, clap::Args)]
pub struct RollupArgs {
    /// First day (UTC)
    #[arg(long, value_parser = super::parse_day)]
    pub from: NaiveDate,
    /// Last day, inclusive
    #[arg(long, value_parser = super::parse_day)]
    pub to: NaiveDate,
    /// Output format
    #[arg(long, value_enum, default_value_t = output::Format::Table)]
    pub format: output::Format,
}

pub async fn run(config: &Config, data_dir: &Path, args: RollupArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.from <= args.to,
        "--from {} is after --to {}",
        args.from,
        args.to
    );
    let settings = &config.train;
    settings.validate().context("the [train] settings")?;
    let lake = open_lake(config, data_dir)?;
    let engine = QueryEngine::new(&lake, &settings.engine_settings())?;
    let window = TimeWindow::days(args.from, args.to + chrono::Days::new(1));
    let stop = StopSignal::new();
    tokio::spawn(super::train::stop_on_signals(stop.clone()));
    let bar = output::progress_bar(0, "rollups {bar:40} {pos}/{len} hours {msg}");
    let report = ensure_rollups(
        &lake,
        &engine,
        window,
        &settings.rollup_settings(),
        &|step: &RollupProgress| {
            bar.set_length(step.total as u64);
            bar.set_position(step.done as u64);
            bar.set_message(step.hour.clone());
        },
        &|| stop.raised(),
    )
    .await?;
    bar.finish_and_clear();
    match args.format {
        output::Format::Json => println!("{}", serde_json::to_string(&report)?),
        output::Format::Table => {
            let counts = report.counts;
            let rows = vec![
                vec!["".to_owned(), "value".to_owned()],
                vec!["hours with events".into(), report.hours.to_string()],
                vec!["hours reused".into(), report.reused.to_string()],
                vec!["hours computed".into(), report.computed.to_string()],
                vec!["tables computed".into(), report.tables_computed.to_string()],
                vec!["damaged, recomputed".into(), report.damaged.to_string()],
                vec!["clicks".into(), counts.clicks.to_string()],
                vec!["duplicates dropped".into(), counts.duplicates.to_string()],
                vec!["other events".into(), counts.other_events.to_string()],
                vec!["event bytes".into(), report.source_bytes.to_string()],
                vec!["rollup bytes".into(), report.rollup_bytes.to_string()],
            ];
            print!("{}", output::table(&rows));
        }
    }
    Ok(())
}
