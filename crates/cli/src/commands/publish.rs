//! `newsrec publish` and `newsrec rollback`.

use std::path::Path;

use anyhow::bail;
use newsrec_config::Config;
use newsrec_publish::{latest_run, publish_run};

use crate::{
    output::progress_bar,
    settings::{open_lake, open_store},
};

#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// Run to publish (see runs/ in the lake)
    pub run_id: Option<String>,
    /// Publish the newest complete run
    #[arg(long, conflicts_with = "run_id")]
    pub latest: bool,
    /// Publish even if the run scores worse than the served one beyond publish.gate_tolerance
    #[arg(long)]
    pub force: bool,
}

pub async fn run(config: &Config, data_dir: &Path, args: PublishArgs) -> anyhow::Result<()> {
    let lake = open_lake(config, data_dir)?;
    let store = open_store(config, data_dir, false).await?;
    let run_id = match (args.run_id, args.latest) {
        (Some(run_id), _) => run_id,
        (None, true) => latest_run(&lake).await?,
        (None, false) => bail!("give a run id or --latest"),
    };
    let bar = progress_bar(
        0,
        "publishing [{bar:40}] {pos}/{len} users {per_sec} eta {eta}",
    );
    let options = config.publish.options(args.force);
    let report = publish_run(&lake, store.as_ref(), &run_id, options, &|progress| {
        bar.set_length(progress.users_total);
        bar.set_position(progress.users_done);
    })
    .await?;
    bar.finish_and_clear();
    match &report.gate {
        None => println!("quality gate off (publish.gate = false)"),
        Some(gate) if gate.passed => println!("{gate}"),
        Some(gate) => println!("{gate}; published anyway (--force)"),
    }
    println!(
        "published run {} as generation {}: {} users in {:.2} s ({:.0} users/s){}",
        report.run_id,
        report.generation,
        report.users,
        report.elapsed.as_secs_f64(),
        report.users_per_sec(),
        if report.pruned.is_empty() {
            String::new()
        } else {
            format!("; deleted generations {:?}", report.pruned)
        }
    );
    Ok(())
}

pub async fn rollback(config: &Config, data_dir: &Path) -> anyhow::Result<()> {
    let store = open_store(config, data_dir, false).await?;
    let generation = newsrec_kv::rollback(store.as_ref()).await?;
    let info = store.current().await?;
    println!(
        "serving generation {generation} (run {}) again",
        info.map(|info| info.run_id).unwrap_or_default()
    );
    Ok(())
}
