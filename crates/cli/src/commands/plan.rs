//! `newsrec plan`: reads the workload (flags, an optional TOML file, an optional run manifest) and
//! the optional price file, and prints the plan as a table or as one JSON line. The rules, the
//! cost model and the rendering live in `newsrec-plan`; this file only reads files and maps flags.

use std::path::{Path, PathBuf};

use anyhow::Context;
use newsrec_plan::{PriceTable, WorkloadInput};

/// How `newsrec plan` prints the plan.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PlanFormat {
    /// A readable report with the rule behind each choice.
    #[default]
    Table,
    /// The whole plan as one JSON line.
    Json,
}

/// Capacity and cost plan: ingestion design and shards, spot or on-demand training, and the
/// monthly bill of the managed design next to newsrec's.
#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// TOML workload file; its keys are these flags' names with underscores, and flags override it
    #[arg(long, value_name = "FILE")]
    pub workload: Option<PathBuf>,

    /// Price file overriding any subset of the built-in prices (config/prices.toml)
    #[arg(long, value_name = "FILE")]
    pub prices: Option<PathBuf>,

    /// Last training run's manifest; its timings.total_ms sets the training time unless given
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,

    /// Output format
    #[arg(long, value_enum, default_value_t = PlanFormat::Table)]
    pub format: PlanFormat,

    /// Average events per second
    #[arg(long, value_name = "N")]
    pub events_per_sec: Option<f64>,

    /// Bytes per event on the wire
    #[arg(long, value_name = "BYTES")]
    pub event_bytes: Option<u64>,

    /// Peak ÷ average traffic; shards and nodes are sized at peak [default: 1]
    #[arg(long, value_name = "X")]
    pub peak_factor: Option<f64>,

    /// Events the producer aggregates into one stream record [default: as many as fit 51,200 B]
    #[arg(long, value_name = "N")]
    pub events_per_record: Option<u64>,

    /// Independent consumers that each read the whole stream and process it differently
    /// [default: 1]
    #[arg(long, value_name = "N")]
    pub consumers: Option<u32>,

    /// The Kafka API and its tools are required (`--kafka-ecosystem=false` to override a file)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub kafka_ecosystem: Option<bool>,

    /// Hours one training run takes [default: from --manifest, else 1]
    #[arg(long, value_name = "HOURS")]
    pub train_hours: Option<f64>,

    /// Hours by which a training run must finish [default: the retrain interval]
    #[arg(long, value_name = "HOURS")]
    pub deadline_hours: Option<f64>,

    /// A missed training deadline is an incident (`--critical=false` to override a file)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub critical: Option<bool>,

    /// Retrain cadence, such as `every 24h`, `12h`, `daily`, `weekly` [default: every 24h]
    #[arg(long, value_name = "INTERVAL", num_args = 1..=2)]
    pub retrain: Vec<String>,

    /// Average recommendation requests per second [default: 0]
    #[arg(long, value_name = "N")]
    pub serving_rps: Option<f64>,

    /// Users with a stored recommendation list [default: 0]
    #[arg(long, value_name = "N")]
    pub users: Option<u64>,

    /// Measured ingest throughput of one newsrec node, events/s [default: 20000, a placeholder]
    #[arg(long, value_name = "N")]
    pub ingest_events_per_sec_per_node: Option<f64>,

    /// Measured serving throughput of one newsrec node, requests/s [default: 5000, a placeholder]
    #[arg(long, value_name = "N")]
    pub serve_rps_per_node: Option<f64>,

    /// Days the lake keeps raw events [default: 90]
    #[arg(long, value_name = "DAYS")]
    pub lake_retention_days: Option<f64>,
}

impl PlanArgs {
    /// The workload values given as flags; unset flags stay unset so a file's values survive.
    fn flag_values(&self) -> WorkloadInput {
        WorkloadInput {
            events_per_sec: self.events_per_sec,
            event_bytes: self.event_bytes,
            peak_factor: self.peak_factor,
            events_per_record: self.events_per_record,
            consumers: self.consumers,
            kafka_ecosystem: self.kafka_ecosystem,
            train_hours: self.train_hours,
            deadline_hours: self.deadline_hours,
            critical: self.critical,
            // `--retrain every 24h` arrives as two values; `--retrain 24h` as one.
            retrain: (!self.retrain.is_empty()).then(|| self.retrain.join(" ")),
            serving_rps: self.serving_rps,
            users: self.users,
            ingest_events_per_sec_per_node: self.ingest_events_per_sec_per_node,
            serve_rps_per_node: self.serve_rps_per_node,
            lake_retention_days: self.lake_retention_days,
            train_hours_origin: None,
        }
    }
}

/// Runs `newsrec plan`: prints the table, or the plan as one JSON line, to stdout.
pub fn run(args: &PlanArgs) -> anyhow::Result<()> {
    let file_values = match &args.workload {
        Some(path) => {
            WorkloadInput::from_toml(&read(path, "workload file")?, &path.display().to_string())?
        }
        None => WorkloadInput::default(),
    };
    let mut input = file_values.overridden_by(args.flag_values());
    if let Some(path) = &args.manifest {
        input.apply_manifest(&read(path, "run manifest")?, &path.display().to_string())?;
    }
    let prices = match &args.prices {
        Some(path) => PriceTable::defaults()
            .with_overrides(&read(path, "price file")?, &path.display().to_string())?,
        None => PriceTable::defaults(),
    };
    let plan = newsrec_plan::plan(&input.resolve()?, &prices)?;
    match args.format {
        PlanFormat::Table => print!("{}", newsrec_plan::render_table(&plan)),
        PlanFormat::Json => println!("{}", serde_json::to_string(&plan)?),
    }
    Ok(())
}

fn read(path: &Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} {}: check the path", path.display()))
}
