//! `newsrec train --spot`: the flags of the spot runner (`newsrec_train::spot`), the command of
//! each start, and the report.

use std::time::Duration;

use newsrec_config::Config;
use newsrec_train::spot::{Interruptions, SpotOptions, SpotPrices, run_spot};
use tokio::process::Command;

use super::{Globals, TrainArgs};
use crate::output::{self, Format};

#[derive(Debug, Clone, clap::Args)]
pub struct SpotArgs {
    /// Run the job as managed spot training: a child process, interrupted and restarted
    #[arg(long)]
    pub spot: bool,
    /// Budget of machine time across all starts (e.g. 2h); SageMaker's max run
    #[arg(long, requires = "spot", value_parser = parse_duration)]
    pub max_run: Option<Duration>,
    /// Budget of wall-clock time including waits for capacity (e.g. 6h); SageMaker's max wait
    #[arg(long, requires = "spot", value_parser = parse_duration)]
    pub max_wait: Option<Duration>,
    /// Interrupt each start after this long (e.g. 30s)
    #[arg(long, requires = "spot", value_parser = parse_duration, conflicts_with = "interrupt_prob")]
    pub interrupt_every: Option<Duration>,
    /// Interrupt with this probability in each second a start runs (0..1)
    #[arg(long, requires = "spot")]
    pub interrupt_prob: Option<f64>,
    /// Seed of the random interruptions
    #[arg(long, requires = "spot", default_value_t = 1)]
    pub seed: u64,
    /// Simulated wait for capacity after an interruption (default train.spot.capacity_delay_ms)
    #[arg(long, requires = "spot", value_parser = parse_duration)]
    pub capacity_delay: Option<Duration>,
    /// Report as a table or one JSON line
    #[arg(long, requires = "spot", value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e} (examples: 30s, 2h, 500ms)"))
}

/// Plays run `run_id` as managed spot training, priced at the planner's prices of the training
/// instance, prints the report, and fails unless the run completed.
pub async fn run(
    config: &Config,
    globals: &Globals,
    args: &TrainArgs,
    run_id: &str,
) -> anyhow::Result<()> {
    let spot = &args.spot;
    let options = SpotOptions {
        max_run: spot.max_run,
        max_wait: spot.max_wait,
        interruptions: match (spot.interrupt_every, spot.interrupt_prob) {
            (Some(every), _) => Interruptions::Every(every),
            (None, Some(probability)) => Interruptions::Random {
                probability,
                seed: spot.seed,
            },
            (None, None) => Interruptions::Never,
        },
        capacity_delay: spot
            .capacity_delay
            .unwrap_or(Duration::from_millis(config.train.spot.capacity_delay_ms)),
        prices: SpotPrices::default(),
    };
    let report = run_spot(run_id, &options, || job(globals, args, run_id)?.spawn()).await?;
    match spot.format {
        Format::Json => println!("{}", serde_json::to_string(&report)?),
        Format::Table => print!("{}", output::table(&report.table_rows())),
    }
    Ok(report.completed()?)
}

/// `newsrec [globals] train …` for one start: the same run id every time, so it resumes.
fn job(globals: &Globals, args: &TrainArgs, run_id: &str) -> std::io::Result<Command> {
    let mut command = Command::new(std::env::current_exe()?);
    if let Some(config) = &globals.config {
        command.arg("--config").arg(config);
    }
    command
        .arg("--data-dir")
        .arg(&globals.data_dir)
        .arg("--log")
        .arg(&globals.log)
        .arg("train")
        .arg("--run-id")
        .arg(run_id);
    if let Some(date) = args.date {
        command.arg("--date").arg(date.to_string());
    }
    if let Some(days) = args.window_days {
        command.arg("--window-days").arg(days.to_string());
    }
    if let Some(dir) = &args.checkpoint_dir {
        command.arg("--checkpoint-dir").arg(dir);
    }
    if args.keep_checkpoints {
        command.arg("--keep-checkpoints");
    }
    if let Some(url) = &args.spot_notice_url {
        command.arg("--spot-notice-url").arg(url);
    }
    if args.spot.format == Format::Json {
        // The JSON line must be the only thing on stdout; the job's own summary goes to stderr.
        command.stdout(std::io::stderr());
    }
    command.kill_on_drop(true);
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("soon").unwrap_err().contains("examples"));
    }
}
