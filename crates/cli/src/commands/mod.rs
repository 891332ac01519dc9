//! The command line: global options, one module per command.

mod bench;
mod demo;
mod eval;
mod import;
pub mod plan;
mod publish;
mod rollup;
mod train;
mod up;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use newsrec_config::Config;
use newsrec_train::spot;

/// newsrec: personalised news recommendations, self-hosted. Clicks in over HTTP, a lake of
/// Parquet, a daily model, lists served in milliseconds.
#[derive(Debug, Parser)]
#[command(name = "newsrec", version, about, propagate_version = true)]
pub struct Cli {
    /// Folder for the lake, the serving store and local state
    #[arg(
        long,
        global = true,
        env = "NEWSREC_DATA_DIR",
        default_value = "./newsrec-data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,

    /// Config file (every key: config/newsrec.example.toml); NEWSREC_* env vars override it
    #[arg(long, global = true, env = "NEWSREC_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log filter (tracing syntax), e.g. info, newsrec_train=debug
    #[arg(long, global = true, env = "NEWSREC_LOG", default_value = "info")]
    pub log: String,

    #[command(subcommand)]
    pub command: Command,
}

impl Command {
    /// True for the batch jobs over the lake (train, rollup, eval, import): they run once and
    /// exit, and allocate and free large buffers batch after batch.
    pub fn is_batch_job(&self) -> bool {
        matches!(
            self,
            Command::Train(_) | Command::Rollup(_) | Command::Eval(_) | Command::Import(_)
        )
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run ingest and serve on one node
    Up(up::UpArgs),
    /// Backfill historical click logs into the lake
    Import(import::ImportArgs),
    /// Train the daily models for a serving day and write a run to the lake
    Train(train::TrainArgs),
    /// Summarise each lake hour of a range of days into rollups (train does its window itself)
    Rollup(rollup::RollupArgs),
    /// Evaluate every model with protocol P1 over a range of days
    Eval(eval::EvalArgs),
    /// Load a run's lists into the serving store as a new generation and switch to it
    Publish(publish::PublishArgs),
    /// Switch serving back to the previous generation
    Rollback,
    /// Synthetic (or --csv real) clicks end to end: ingest, train, publish, serve, metrics
    Demo(demo::DemoArgs),
    /// Capacity and cost plan for a workload
    Plan(plan::PlanArgs),
    /// Benchmark a stage against its peer on this machine (newsrec bench serve)
    Bench(newsrec_bench::BenchArgs),
}

/// Sets up logging to stderr.
pub fn init_logging(cli: &Cli) {
    // The demo prints its own narrative; its logs stay quiet unless asked for.
    let level = if matches!(cli.command, Command::Demo(_)) && cli.log == "info" {
        "warn"
    } else {
        cli.log.as_str()
    };
    // The NATS client (used by `bench ingest` as the peer) logs every connect and close at info;
    // that is noise next to newsrec's own lines, so it is held at warn unless asked for by name.
    let directives = if level.contains("async_nats") {
        level.to_string()
    } else {
        format!("{level},async_nats=warn")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// The process exit code for a failed command: [`spot::EXIT_INTERRUPTED`] (75) when a job
/// stopped on a signal or spot notice after saving its progress, [`spot::EXIT_BUDGET_SPENT`]
/// (124) when a `--spot` run spent its time budget, 1 otherwise.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if matches!(
            cause.downcast_ref::<newsrec_train::TrainError>(),
            Some(newsrec_train::TrainError::Interrupted { .. })
        ) {
            return spot::EXIT_INTERRUPTED;
        }
        if matches!(
            cause.downcast_ref::<spot::SpotError>(),
            Some(spot::SpotError::BudgetSpent { .. })
        ) {
            return spot::EXIT_BUDGET_SPENT;
        }
    }
    1
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let load_config = || load_config(cli.config.as_deref());
    match cli.command {
        Command::Up(args) => up::run(load_config()?, &cli.data_dir, args).await,
        Command::Import(args) => import::run(&load_config()?, &cli.data_dir, args).await,
        Command::Train(args) => {
            let globals = train::Globals {
                config: cli.config.clone(),
                data_dir: cli.data_dir.clone(),
                log: cli.log.clone(),
            };
            train::run(&load_config()?, &globals, args).await
        }
        Command::Eval(args) => eval::run(&load_config()?, &cli.data_dir, args).await,
        Command::Rollup(args) => rollup::run(&load_config()?, &cli.data_dir, args).await,
        Command::Publish(args) => publish::run(&load_config()?, &cli.data_dir, args).await,
        Command::Rollback => publish::rollback(&load_config()?, &cli.data_dir).await,
        Command::Demo(args) => demo::run(load_config()?, &cli.data_dir, args).await,
        Command::Plan(args) => plan::run(&args),
        Command::Bench(args) => bench::run(&load_config()?, &cli.data_dir, args).await,
    }
}

fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    Config::load(path).context("loading the configuration")
}

/// Parses a `YYYY-MM-DD` day.
fn parse_day(text: &str) -> Result<chrono::NaiveDate, String> {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("expected a date like 2017-10-09, got {text:?}"))
}
