//! `newsrec demo`: the whole pipeline on one machine in a minute.
//!
//! Starts a node in-process, sends a synthetic clickstream (several days with an election-night
//! spike) through its HTTP ingest, trains for the last day, publishes from a separate store
//! handle (as another process would), waits for the serving node to pick the generation up,
//! queries a few users over HTTP and prints the P1 table of every model. With `--csv` it
//! backfills real logs through `import` instead of the synthetic stream.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use futures::{StreamExt, TryStreamExt};
use newsrec_config::Config;
use newsrec_event::ClickEvent;
use newsrec_kv::EmbeddedStore;
use newsrec_publish::publish_run;
use newsrec_testkit::{SynthConfig, generate};
use newsrec_train::{TrainRequest, train};

use super::{
    import::{ImportArgs, import_into},
    train::summary,
};
use crate::{
    node::{Node, NodeOptions},
    output::progress_bar,
};

/// Events per HTTP request the demo sends, and requests in flight.
const EVENTS_PER_REQUEST: usize = 2_000;
const REQUESTS_IN_FLIGHT: usize = 4;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Real click logs (Globo.com CSV columns) to backfill instead of the synthetic stream
    #[arg(long, num_args = 1.., value_name = "FILE")]
    pub csv: Vec<PathBuf>,
    /// Synthetic readers
    #[arg(long, default_value_t = 4_000)]
    pub users: usize,
    /// Synthetic days (the election night is the day before the last)
    #[arg(long, default_value_t = 5)]
    pub days: u32,
    /// Seed of the synthetic stream
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

pub async fn run(mut config: Config, data_dir: &Path, args: DemoArgs) -> anyhow::Result<()> {
    ensure!(
        args.days >= 3,
        "--days must be at least 3 (training, backtest and test days)"
    );
    let demo_dir = data_dir.join("demo");
    if demo_dir.exists() {
        std::fs::remove_dir_all(&demo_dir)
            .with_context(|| format!("clearing {}", demo_dir.display()))?;
    }
    // The demo keeps everything in its own folder, whatever the config names.
    config.lake.uri.clear();
    config.kv.uri.clear();
    config.ingest.wal_dir.clear();
    // Training follows ingest within seconds here, so the buffer is flushed every second
    // instead of the production default.
    config.ingest.buffer_interval_s = config.ingest.buffer_interval_s.min(1);
    println!("demo data in {}", demo_dir.display());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let node = Node::start(
        NodeOptions {
            role: crate::node::Role::All,
            config: config.clone(),
            data_dir: demo_dir.clone(),
            metrics: None,
        },
        listener,
    )
    .await?;
    let base = format!("http://{}", node.addr());
    let client = reqwest::Client::new();

    let (serving_day, sample_users) = if args.csv.is_empty() {
        let synth = SynthConfig {
            users: args.users,
            days: args.days,
            spike_day: args.days - 2,
            seed: args.seed,
            ..SynthConfig::default()
        };
        let stream = generate(&synth);
        println!(
            "synthetic stream: {} clicks over {} days from {} readers, {} articles, election night on {} ({}x traffic 19-24h)",
            stream.events.len(),
            synth.days,
            synth.users,
            stream.articles.len(),
            synth.start + chrono::Days::new(u64::from(synth.spike_day)),
            synth.spike_factor
        );
        send_events(&client, &base, &stream.events).await?;
        ensure!(
            node.wait_until_committed(Duration::from_secs(60)).await,
            "ingested events did not reach the lake within 60 s"
        );
        (
            synth.start + chrono::Days::new(u64::from(synth.days - 1)),
            vec!["user0".to_owned(), "user1".to_owned(), "user42".to_owned()],
        )
    } else {
        let started = Instant::now();
        let report = import_into(
            node.lake(),
            &config.node_id,
            ImportArgs::globo(args.csv.clone()),
        )
        .await?;
        println!(
            "imported {} clicks ({} rejected) from {} files in {:.1} s",
            report.imported,
            report.rejected,
            report.files,
            started.elapsed().as_secs_f64()
        );
        // Real logs carry stray clicks far from the bulk (clock skew); the serving day is the
        // last day holding at least 1 % of the busiest day's clicks.
        let busiest = report.events_per_day.values().copied().max().unwrap_or(0);
        let Some(last_day) = report
            .events_per_day
            .iter()
            .rev()
            .find(|(_, count)| **count * 100 >= busiest)
            .map(|(day, _)| *day)
        else {
            bail!("the CSV files held no valid clicks")
        };
        let serving_day = last_day;
        (serving_day, Vec::new())
    };

    let run_id = super::train::default_run_id(serving_day);
    let started = Instant::now();
    let manifest = train(
        node.lake(),
        &TrainRequest::new(serving_day, run_id.clone(), config.train.clone()),
    )
    .await?;
    println!("\ntrained in {:.1} s", started.elapsed().as_secs_f64());
    print!("{}", summary(&manifest));

    // Publish through a second handle on the store folder, exactly as `newsrec publish` run from
    // another process would, and watch the serving node pick it up.
    let publisher = EmbeddedStore::open(demo_dir.join("kv"))?;
    let options = config.publish.options(false);
    let report = publish_run(node.lake(), &publisher, &run_id, options, &|_| {}).await?;
    println!(
        "\npublished generation {} ({} users, {:.0} users/s)",
        report.generation,
        report.users,
        report.users_per_sec()
    );
    let waited = wait_for_generation(&client, &base, report.generation).await?;
    println!(
        "the serving node picked it up after {} ms",
        waited.as_millis()
    );

    let mut users = sample_users;
    if users.is_empty() {
        // Real logs: the first users of the manifest's lists.
        let batches = node
            .lake()
            .read_run_table(&run_id, &manifest.outputs.parts[0])
            .await?;
        let lists = newsrec_lake::recs::recs_from_batches(&batches)?;
        users = lists
            .iter()
            .take(2)
            .map(|list| list.user_id.clone())
            .collect();
    }
    users.push("someone-new".into());
    println!();
    for user in users {
        let reply: serde_json::Value = client
            .get(format!("{base}/v1/users/{user}/recommendations?k=5"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let items: Vec<&str> = reply["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i["article_id"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "GET /v1/users/{user}/recommendations?k=5 -> {} {:?}",
            reply["source"].as_str().unwrap_or("?"),
            items
        );
    }
    node.shutdown().await?;
    println!("\nP1 metrics (next-day evaluation, every model):");
    print!("{}", super::train::metrics_table(&manifest));
    Ok(())
}

async fn send_events(
    client: &reqwest::Client,
    base: &str,
    events: &[ClickEvent],
) -> anyhow::Result<()> {
    let bar = progress_bar(
        events.len() as u64,
        "ingesting [{bar:40}] {pos}/{len} events {per_sec}",
    );
    let started = Instant::now();
    let url = format!("{base}/v1/events");
    let accepted: Vec<usize> = futures::stream::iter(events.chunks(EVENTS_PER_REQUEST))
        .map(|chunk| {
            let body: String = chunk
                .iter()
                .map(|event| format!("{}\n", event.to_json()))
                .collect();
            let request = client
                .post(&url)
                .header("content-type", "application/x-ndjson")
                .body(body);
            let bar = bar.clone();
            async move {
                let reply: serde_json::Value =
                    request.send().await?.error_for_status()?.json().await?;
                let accepted = reply["accepted"].as_u64().unwrap_or(0) as usize;
                bar.inc(accepted as u64);
                anyhow::Ok(accepted)
            }
        })
        .buffer_unordered(REQUESTS_IN_FLIGHT)
        .try_collect()
        .await?;
    bar.finish_and_clear();
    let accepted: usize = accepted.iter().sum();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "sent {} events over HTTP in {:.1} s ({:.0} events/s), {accepted} acknowledged after the lake write",
        events.len(),
        seconds,
        events.len() as f64 / seconds.max(1e-9)
    );
    ensure!(
        accepted == events.len(),
        "only {accepted} of {} events were accepted",
        events.len()
    );
    Ok(())
}

async fn wait_for_generation(
    client: &reqwest::Client,
    base: &str,
    generation: u64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(15) {
        let health: serde_json::Value = client
            .get(format!("{base}/healthz"))
            .send()
            .await?
            .json()
            .await?;
        if health["generation"].as_u64() == Some(generation) {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the serving node did not pick up generation {generation} within 15 s")
}
