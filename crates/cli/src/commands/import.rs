//! `newsrec import`: backfill click logs into the lake with a progress bar.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use anyhow::bail;
use newsrec_config::Config;
use newsrec_ingest::import::{
    ColumnMap, ImportFormat, ImportOptions, ImportReport, TimeUnit, import_files,
};
use newsrec_lake::Lake;

use crate::{output::progress_bar, settings::open_lake};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FormatArg {
    Csv,
    Ndjson,
    Parquet,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TimeUnitArg {
    /// Epoch milliseconds
    Ms,
    /// Epoch seconds
    S,
    /// RFC 3339 text
    Rfc3339,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// File format (gzip-compressed CSV/NDJSON is detected)
    #[arg(value_enum)]
    pub format: FormatArg,
    /// Files to import, in order
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Column holding the user id
    #[arg(long, default_value = "user_id")]
    pub user_col: String,
    /// Column holding the article id
    #[arg(long, default_value = "article_id")]
    pub item_col: String,
    /// Column holding the click time
    #[arg(long, default_value = "ts")]
    pub time_col: String,
    /// How the time column is written
    #[arg(long, value_enum, default_value = "ms")]
    pub time_unit: TimeUnitArg,
    /// Column holding the session id (optional)
    #[arg(long)]
    pub session_col: Option<String>,
}

impl ImportArgs {
    /// The column mapping of the Globo.com click logs in `../shared/data/globo-clicks`.
    pub fn globo(files: Vec<PathBuf>) -> ImportArgs {
        ImportArgs {
            format: FormatArg::Csv,
            files,
            user_col: "user_id".into(),
            item_col: "click_article_id".into(),
            time_col: "click_timestamp".into(),
            time_unit: TimeUnitArg::Ms,
            session_col: Some("session_id".into()),
        }
    }
}

pub async fn run(config: &Config, data_dir: &Path, args: ImportArgs) -> anyhow::Result<()> {
    let lake = open_lake(config, data_dir)?;
    let started = Instant::now();
    let report = import_into(&lake, &config.node_id, args).await?;
    print_report(&report, started.elapsed().as_secs_f64());
    Ok(())
}

/// Imports into `lake` with a progress bar; shared with `newsrec demo --csv`.
pub async fn import_into(
    lake: &Lake,
    node_id: &str,
    args: ImportArgs,
) -> anyhow::Result<ImportReport> {
    for file in &args.files {
        if !file.is_file() {
            bail!("{} is not a readable file", file.display());
        }
    }
    let total: u64 = args
        .files
        .iter()
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.len())
        .sum();
    let bar = progress_bar(
        total,
        "importing [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    );
    let progress_bar = bar.clone();
    let options = ImportOptions {
        format: match args.format {
            FormatArg::Csv => ImportFormat::Csv,
            FormatArg::Ndjson => ImportFormat::Ndjson,
            FormatArg::Parquet => ImportFormat::Parquet,
        },
        columns: ColumnMap {
            user: args.user_col,
            item: args.item_col,
            time: args.time_col,
            unit: match args.time_unit {
                TimeUnitArg::Ms => TimeUnit::Millis,
                TimeUnitArg::S => TimeUnit::Seconds,
                TimeUnitArg::Rfc3339 => TimeUnit::Rfc3339,
            },
            session: args.session_col,
        },
        // Unique per import run, so a second import never overwrites the first one's objects.
        writer: format!(
            "import-{node_id}-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%3f")
        ),
        chunk_events: 500_000,
    };
    let report = import_files(
        lake,
        args.files,
        options,
        Arc::new(move |bytes| progress_bar.set_position(bytes)),
    )
    .await?;
    bar.finish_and_clear();
    Ok(report)
}

fn print_report(report: &ImportReport, seconds: f64) {
    println!(
        "imported {} of {} rows from {} files into {} lake objects in {seconds:.1} s ({:.0} rows/s); {} rejected",
        report.imported,
        report.rows,
        report.files,
        report.objects,
        report.rows as f64 / seconds.max(1e-9),
        report.rejected
    );
    for error in &report.sample_errors {
        println!("  rejected {error}");
    }
    if report.rejected as usize > report.sample_errors.len() {
        println!(
            "  … and {} more",
            report.rejected as usize - report.sample_errors.len()
        );
    }
}
