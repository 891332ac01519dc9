//! The capacity and cost planner behind `newsrec plan`: it answers the architecture questions a
//! team asks before running the pipeline (delivery stream or multi-consumer stream and how many
//! shards, spot or on-demand training, what a month costs) with numbers and the rule that produced
//! each one.
//!
//! Consumes a workload description ([`WorkloadInput`], from flags, a TOML file and optionally a
//! training run manifest's contents) and a [`PriceTable`] (the compiled-in `config/prices.toml`,
//! optionally overridden by a user's price file's contents). Produces a [`Plan`]: the ingestion
//! choice and shard sizing, the training capacity choice, the managed-cloud monthly bill next to
//! newsrec's, the source of every price used, and warnings; render it with [`render_table`] or
//! serialize it as JSON. The crate does no I/O: callers read files and pass their contents.

mod cost;
mod error;
mod ingestion;
mod prices;
mod render;
mod training;
mod workload;

pub use cost::{
    BYTES_PER_GB, CostEstimate, CostLine, DELIVERY_STREAM_BILLING_INCREMENT_BYTES, HOURS_PER_MONTH,
    NewsrecNodes, PUT_PAYLOAD_UNIT_BYTES, RECOMMENDATION_ITEM_BYTES, SECONDS_PER_MONTH,
    STREAM_RETENTION_HOURS, TrainingCosts, managed_cost, newsrec_cost, size_newsrec_nodes,
    training_costs, training_runs_per_month,
};
pub use error::PlanError;
pub use ingestion::{
    AGGREGATION_TARGET_RECORD_BYTES, BindingLimit, DELIVERY_STREAM_DEFAULT_QUOTA_BYTES_PER_SECOND,
    IngestionChoice, IngestionPlan, IngestionRule, KAFKA_BROKER_BYTES_PER_SECOND,
    KAFKA_MIN_BROKERS, KAFKA_REPLICATION_FACTOR, KafkaSizing, RECORD_LIMIT_BYTES,
    SHARD_READ_BYTES_PER_SECOND, SHARD_WRITE_BYTES_PER_SECOND, SHARD_WRITE_RECORDS_PER_SECOND,
    ShardSizing, check_record_size, decide_ingestion, size_kafka, size_shards,
};
pub use prices::{DEFAULT_PRICES_ORIGIN, DEFAULT_PRICES_TOML, Price, PriceName, PriceTable};
pub use render::render_table;
pub use training::{
    CRITICAL_ON_DEMAND_BELOW_BUFFER_RATIO, CapacityChoice, CapacityDecision, SHORT_JOB_HOURS,
    SPOT_SAFE_ABOVE_BUFFER_RATIO, TrainingRule, decide_capacity,
};
pub use workload::{
    DEFAULT_INGEST_EVENTS_PER_SECOND_PER_NODE, DEFAULT_LAKE_RETENTION_DAYS, DEFAULT_PEAK_FACTOR,
    DEFAULT_RETRAIN_INTERVAL_HOURS, DEFAULT_SERVE_REQUESTS_PER_SECOND_PER_NODE,
    DEFAULT_TRAINING_HOURS, Workload, WorkloadInput, default_events_per_record,
    parse_retrain_interval, training_hours_from_manifest,
};

use serde::Serialize;

/// Everything `newsrec plan` reports: each decision with the rule that fired, both bills, the
/// prices used with their sources, and what to be careful about.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub workload: Workload,
    pub ingestion: IngestionPlan,
    pub training: CapacityDecision,
    pub training_costs: TrainingCosts,
    pub newsrec_nodes: NewsrecNodes,
    pub managed: CostEstimate,
    pub newsrec: CostEstimate,
    /// Managed total − newsrec total; positive when newsrec is cheaper.
    pub monthly_saving_with_newsrec_usd: f64,
    pub prices_used: Vec<PriceUse>,
    pub warnings: Vec<String>,
}

/// A price the plan used, with its unit and source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PriceUse {
    pub name: PriceName,
    pub value: f64,
    pub unit: &'static str,
    pub source: String,
}

/// Makes the plan for a workload at the given prices.
pub fn plan(workload: &Workload, prices: &PriceTable) -> Result<Plan, PlanError> {
    workload.validate()?;
    let ingestion = decide_ingestion(
        workload.events_per_second,
        workload.peak_factor,
        workload.event_bytes,
        workload.events_per_record,
        workload.consumers,
        workload.kafka_ecosystem_required,
    )?;
    let training = decide_capacity(
        workload.training_hours,
        workload.deadline_hours,
        workload.critical,
    );
    let training_costs = training_costs(workload, prices);
    let newsrec_nodes = size_newsrec_nodes(workload);
    let managed = managed_cost(workload, &ingestion, &training, prices);
    let newsrec = newsrec_cost(workload, &newsrec_nodes, &training, prices);
    let monthly_saving_with_newsrec_usd = managed.monthly_total_usd - newsrec.monthly_total_usd;

    let mut used: Vec<PriceName> = managed
        .lines
        .iter()
        .chain(&newsrec.lines)
        .map(|line| line.price)
        .collect();
    if training.choice.bills_spot() {
        used.push(PriceName::SpotInterruptionOverhead);
    }
    let prices_used = PriceName::ALL
        .into_iter()
        .filter(|name| used.contains(name))
        .map(|name| PriceUse {
            name,
            value: prices.value(name),
            unit: name.unit(),
            source: prices.get(name).source.clone(),
        })
        .collect();

    let warnings = warnings(workload, &ingestion, &training);
    Ok(Plan {
        workload: workload.clone(),
        ingestion,
        training,
        training_costs,
        newsrec_nodes,
        managed,
        newsrec,
        monthly_saving_with_newsrec_usd,
        prices_used,
        warnings,
    })
}

/// What a reader should not miss: a deadline nothing meets, a quota to raise, numbers that are
/// defaults rather than measurements.
fn warnings(
    workload: &Workload,
    ingestion: &IngestionPlan,
    training: &CapacityDecision,
) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(unmeetable) = &training.deadline_unmeetable {
        warnings.push(unmeetable.clone());
    }
    if workload.deadline_hours > workload.retrain_interval_hours {
        warnings.push(format!(
            "the {:.2} h deadline is longer than the {:.2} h retrain interval: a run delayed past \
             the next start overlaps it; retrain less often or shorten the deadline",
            workload.deadline_hours, workload.retrain_interval_hours
        ));
    }
    if ingestion.choice == IngestionChoice::DeliveryStream
        && ingestion.sizing.peak_bytes_per_second > DELIVERY_STREAM_DEFAULT_QUOTA_BYTES_PER_SECOND
    {
        warnings.push(format!(
            "peak {:.2} MB/s is over a delivery stream's default 5 MiB/s quota: request a quota \
             increase before launch",
            ingestion.sizing.peak_bytes_per_second / 1e6
        ));
    }
    let defaulted = |key: &str| workload.defaulted.iter().any(|name| name == key);
    if defaulted("train_hours") {
        warnings.push(format!(
            "training time is the {DEFAULT_TRAINING_HOURS} h default: pass --train-hours or \
             --manifest with the last run's manifest"
        ));
    }
    if defaulted("ingest_events_per_sec_per_node") || defaulted("serve_rps_per_node") {
        warnings.push(
            "newsrec node throughput is a placeholder default: replace it with `newsrec bench` \
             figures (--ingest-events-per-sec-per-node, --serve-rps-per-node)"
                .to_owned(),
        );
    }
    warnings
}

#[cfg(test)]
mod tests;
