//! Benchmarks of newsrec's stages against their peers, on the same machine in the same run:
//! `serve` (recommendation lookups over HTTP vs Redis GET), `ingest` (durable acknowledged
//! ingest vs NATS JetStream) and `train` (ALS fit time and P1 quality vs the `implicit` library);
//! and `scale`, the daily cycle at a given lake size against the targets of `docs/scale.md`.
//!
//! Consumes the parsed `newsrec bench …` arguments ([`BenchArgs`]) and a [`Host`]: what only the
//! binary can give, a node wired the way `newsrec up` wires it and the click import it runs
//! with a progress bar. Produces a [`Report`] (one JSON line, or a table and the lines under it)
//! that the binary prints; progress goes to stderr while a benchmark runs. `ingest` starts the
//! node as a child process of the running executable (`newsrec up`), so load and node never
//! share a runtime and the node's memory is its own.

mod error;
mod ingest;
mod scale;
mod serve;
mod train;

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use newsrec_config::Config;
use newsrec_lake::Lake;
use newsrec_signals::Signals;
use serde::Serialize;

pub use error::{BenchError, BoxError};
pub use ingest::{IngestBenchArgs, PeerSync, Profile};
pub use scale::ScaleBenchArgs;
pub use serve::ServeBenchArgs;
pub use train::{DatasetChoice, TrainBenchArgs};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub stage: BenchStage,
}

#[derive(Debug, clap::Subcommand)]
pub enum BenchStage {
    /// Recommendation lookups over HTTP vs Redis GET
    Serve(ServeBenchArgs),
    /// Durable acknowledged ingest over HTTP vs NATS JetStream
    Ingest(IngestBenchArgs),
    /// ALS fit time and P1 quality vs the `implicit` library
    Train(TrainBenchArgs),
    /// The daily cycle (rollups, models, lists) on a synthetic news lake, cold then warm
    Scale(ScaleBenchArgs),
}

/// How a benchmark reports: a table for people, one JSON line for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
}

/// A benchmark's result, ready to print on stdout.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// `--format json`: the one line.
    Json(String),
    /// `--format table`: the rows of the table (the first is its header; none when the result
    /// is a single line) and the lines printed under it.
    Table {
        rows: Vec<Vec<String>>,
        notes: Vec<String>,
    },
}

impl Report {
    /// `figures` as one JSON line, or the table `render` makes of them.
    fn of<T: Serialize>(
        format: Format,
        figures: &T,
        render: impl FnOnce(&T) -> (Vec<Vec<String>>, Vec<String>),
    ) -> Result<Report, BenchError> {
        Ok(match format {
            Format::Json => Report::Json(serde_json::to_string(figures)?),
            Format::Table => {
                let (rows, notes) = render(figures);
                Report::Table { rows, notes }
            }
        })
    }
}

/// What the benchmarks need from the binary that runs them.
pub trait Host {
    /// A node started by [`Host::start_node`].
    type Node: ServingNode;

    /// Starts a node running ingest and serve with `config` on `listener`, its local state in
    /// `data_dir`, wired as `newsrec up` wires it.
    fn start_node(
        &self,
        config: Config,
        data_dir: &Path,
        listener: tokio::net::TcpListener,
    ) -> impl Future<Output = Result<Self::Node, BoxError>>;

    /// The node's data folder (`--data-dir`), where benchmarks cache what they generate.
    fn data_dir(&self) -> &Path;

    /// Imports the Globo.com click logs `files` (`clicks-YYYY-MM-DD.csv.gz`) into `lake`.
    fn import_globo(
        &self,
        lake: &Lake,
        files: Vec<PathBuf>,
    ) -> impl Future<Output = Result<(), BoxError>>;
}

/// A running node, as `bench serve` measures it.
pub trait ServingNode {
    fn addr(&self) -> SocketAddr;
    /// The node's real-time signals, when it serves.
    fn signals(&self) -> Option<&Arc<Signals>>;
    /// Stops the node gracefully.
    fn shutdown(self) -> impl Future<Output = Result<(), BoxError>>;
}

/// Runs the benchmark `args` names.
pub async fn run<H: Host>(
    host: &H,
    config: &Config,
    args: BenchArgs,
) -> Result<Report, BenchError> {
    match args.stage {
        BenchStage::Serve(args) => serve::run(host, config, args).await,
        BenchStage::Ingest(args) => ingest::run(args).await,
        BenchStage::Train(args) => train::run(host, args).await,
        BenchStage::Scale(args) => scale::run(host.data_dir(), args).await,
    }
}

/// The median of `values` (the upper one of an even count); `empty` when there are none.
fn median(values: &mut [f64], empty: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(empty)
}
