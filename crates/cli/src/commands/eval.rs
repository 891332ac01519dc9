//! `newsrec eval`: protocol P1 (next-day lists) or P2 (`--protocol replay`: the day's clicks
//! through the serving code) for each day of a range, per-day rows and the mean.

use std::path::Path;

use chrono::NaiveDate;
use newsrec_config::Config;
use newsrec_train::{EvalReport, evaluate_range};

use anyhow::Context;
use newsrec_replay::{
    ModelKind, P2Metrics, ReplayProgress, ReplayReport, ReplayRequest, replay_range,
};

use crate::{output, settings::open_lake};

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
    /// p1: each model's next-day lists; replay: P2, each day's clicks replayed through serving
    #[arg(long, value_enum, default_value_t = Protocol::P1)]
    pub protocol: Protocol,
    /// P2: most sampled clicks per day
    #[arg(long, default_value_t = 20_000)]
    pub sample: usize,
    /// P2: seed of the click sample
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// P2: the model whose daily lists are served
    #[arg(long, value_enum, default_value_t = DailyModelArg::Cooccurrence)]
    pub daily_model: DailyModelArg,
    /// P2: hours of clicks before the first day that warm the signals up
    #[arg(long, default_value_t = 24)]
    pub warmup_hours: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    P1,
    Replay,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DailyModelArg {
    Popularity,
    Cooccurrence,
    Als,
}

pub async fn run(config: &Config, data_dir: &Path, args: EvalArgs) -> anyhow::Result<()> {
    let lake = open_lake(config, data_dir)?;
    let mut settings = config.train.clone();
    if let Some(days) = args.window_days {
        anyhow::ensure!(
            (1..=365).contains(&days),
            "--window-days must be 1..=365, got {days}"
        );
        settings.window_days = days;
    }
    let started = std::time::Instant::now();
    if args.protocol == Protocol::Replay {
        return replay(config, lake, settings, &args, started).await;
    }
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

async fn replay(
    config: &Config,
    lake: newsrec_lake::Lake,
    settings: newsrec_train::Settings,
    args: &EvalArgs,
    started: std::time::Instant,
) -> anyhow::Result<()> {
    anyhow::ensure!(args.sample >= 1, "--sample must be at least 1");
    let scratch = tempfile::tempdir().context("creating a scratch folder for the serving store")?;
    let request = ReplayRequest {
        from: args.from,
        to: args.to,
        sample: args.sample,
        seed: args.seed,
        daily_model: match args.daily_model {
            DailyModelArg::Popularity => ModelKind::Popularity,
            DailyModelArg::Cooccurrence => ModelKind::Cooccurrence,
            DailyModelArg::Als => ModelKind::Als,
        },
        train: settings,
        signals: config.signals.limits(config.serve.history_limits()),
        blend: config.serve.blend,
        article_max_age_ms: config.serve.article_max_age_ms(),
        warmup_hours: args.warmup_hours,
        store_dir: scratch.path().join("kv"),
    };
    let tty = matches!(args.format, EvalFormat::Table);
    let report = replay_range(&lake, &request, &|event| match event {
        ReplayProgress::Fitting { date } if tty => eprintln!("{date}: fitting the daily model"),
        ReplayProgress::DayDone(day) if tty => eprintln!(
            "{}: {} clicks replayed, {} sampled of {} eligible, {:.1} s",
            day.date, day.clicks, day.sampled, day.eligible, day.seconds
        ),
        _ => {}
    })
    .await?;
    match args.format {
        EvalFormat::Json => println!("{}", serde_json::to_string(&replay_json(&report))?),
        EvalFormat::Table => {
            print!("{}", replay_table(&report));
            println!(
                "({} days in {:.1} s; daily lists from {})",
                report.days.len(),
                started.elapsed().as_secs_f64(),
                serde_json::to_value(request.daily_model)?
                    .as_str()
                    .unwrap_or("?")
            );
        }
    }
    Ok(())
}

/// `{"days": [...], "mean": {"<variant>": {"hr@10": x, "mrr@10": x}}}` (the shape).
fn replay_json(report: &ReplayReport) -> serde_json::Value {
    let variants = |list: &[(String, P2Metrics)]| -> serde_json::Value {
        list.iter()
            .map(|(name, m)| {
                (
                    name.clone(),
                    serde_json::json!({"hr@10": m.hit_rate, "mrr@10": m.mrr}),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    serde_json::json!({
        "protocol": "replay",
        "daily_model": report.daily_model,
        "days": report.days.iter().map(|day| serde_json::json!({
            "date": day.date,
            "clicks": day.clicks,
            "eligible": day.eligible,
            "sampled": day.sampled,
            "variants": variants(&day.variants),
            "signals": day.signals,
            "seconds": day.seconds,
        })).collect::<Vec<_>>(),
        "mean": variants(&report.mean),
    })
}

fn replay_table(report: &ReplayReport) -> String {
    let mut rows = vec![vec![
        "test day".to_owned(),
        "variant".to_owned(),
        "sampled".to_owned(),
        "HR@10".to_owned(),
        "MRR@10".to_owned(),
    ]];
    for day in &report.days {
        for (name, m) in &day.variants {
            rows.push(vec![
                day.date.clone(),
                name.clone(),
                day.sampled.to_string(),
                format!("{:.4}", m.hit_rate),
                format!("{:.4}", m.mrr),
            ]);
        }
    }
    for (name, m) in &report.mean {
        rows.push(vec![
            "mean".to_owned(),
            name.clone(),
            String::new(),
            format!("{:.4}", m.hit_rate),
            format!("{:.4}", m.mrr),
        ]);
    }
    if let Some(last) = report.days.last() {
        rows.push(vec![
            "signals".to_owned(),
            format!("{} MiB", last.signals.memory_bytes >> 20),
            format!("{} users", last.signals.users),
            format!("{} articles", last.signals.trending_articles),
            format!("{} edges", last.signals.covisit_edges),
        ]);
    }
    output::table(&rows)
}
