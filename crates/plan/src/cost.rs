//! The monthly bill of each design: the managed-cloud design the decisions picked, and newsrec on
//! its own instances. Each line keeps its quantity, the named price it uses and the formula, so
//! every dollar in the output can be traced to a workload number and a price-table entry.
//!
//! Volumes are billed at the *average* rate; capacity (shards, brokers, nodes) is sized at *peak*,
//! because a month of traffic is paid by the byte while capacity must hold the worst minute.

use serde::Serialize;

use crate::ingestion::{IngestionChoice, IngestionPlan, KAFKA_REPLICATION_FACTOR, ceil_count};
use crate::prices::{PriceName, PriceTable};
use crate::training::{CapacityChoice, CapacityDecision};
use crate::workload::Workload;

/// Hours in a billing month, as cloud price lists count them.
pub const HOURS_PER_MONTH: f64 = 730.0;
/// Seconds in a billing month.
pub const SECONDS_PER_MONTH: f64 = HOURS_PER_MONTH * 3600.0;
/// Bytes in a billed GB (decimal, as everywhere in the planner).
pub const BYTES_PER_GB: f64 = 1e9;
/// A delivery stream bills each record rounded up to a multiple of this (5 KB).
pub const DELIVERY_STREAM_BILLING_INCREMENT_BYTES: u64 = 5_000;
/// A multi-consumer stream bills one PUT payload unit per started 25 KB of a record.
pub const PUT_PAYLOAD_UNIT_BYTES: u64 = 25_000;
/// Hours a Kafka-API stream retains events; matches the retention a shard-hour includes, since
/// the lake, not the stream, is the long-term store.
pub const STREAM_RETENTION_HOURS: f64 = 24.0;
/// Size of one user's stored recommendation list: within one key-value write unit (1 KB) and one
/// read unit (4 KB), so each publish is one write and each lookup one read.
pub const RECOMMENDATION_ITEM_BYTES: f64 = 1_000.0;

/// One line of a bill.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostLine {
    /// What is paid for.
    pub item: String,
    /// How much of it a month, in `quantity_unit`.
    pub quantity: f64,
    pub quantity_unit: String,
    /// The price-table entry used.
    pub price: PriceName,
    pub unit_price: f64,
    pub monthly_usd: f64,
    /// How the quantity was computed, with this workload's numbers.
    pub formula: String,
}

/// One design's monthly bill.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostEstimate {
    pub design: String,
    pub lines: Vec<CostLine>,
    pub monthly_total_usd: f64,
}

impl CostEstimate {
    fn new(design: String, lines: Vec<CostLine>) -> CostEstimate {
        let monthly_total_usd = lines.iter().map(|line| line.monthly_usd).sum();
        CostEstimate {
            design,
            lines,
            monthly_total_usd,
        }
    }
}

/// Monthly training cost of each capacity choice in each design, so the output can show what the
/// decision saves or costs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainingCosts {
    pub runs_per_month: f64,
    pub managed_on_demand_usd: f64,
    /// Spot including the expected interruption overhead.
    pub managed_spot_usd: f64,
    pub newsrec_on_demand_usd: f64,
    /// Spot including the expected interruption overhead.
    pub newsrec_spot_usd: f64,
}

/// How many newsrec nodes the workload needs, from the measured per-node throughput.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewsrecNodes {
    pub peak_events_per_second: f64,
    pub ingest_nodes: u64,
    pub peak_requests_per_second: f64,
    pub serve_nodes: u64,
}

/// Training runs a month at the retrain cadence.
pub fn training_runs_per_month(retrain_interval_hours: f64) -> f64 {
    HOURS_PER_MONTH / retrain_interval_hours
}

/// What training costs a month on each capacity in each design.
pub fn training_costs(workload: &Workload, prices: &PriceTable) -> TrainingCosts {
    let runs_per_month = training_runs_per_month(workload.retrain_interval_hours);
    let hours = runs_per_month * workload.training_hours;
    let spot_hours = hours * (1.0 + prices.value(PriceName::SpotInterruptionOverhead));
    TrainingCosts {
        runs_per_month,
        managed_on_demand_usd: hours * prices.value(PriceName::ManagedTrainingOnDemandHour),
        managed_spot_usd: spot_hours * prices.value(PriceName::ManagedTrainingSpotHour),
        newsrec_on_demand_usd: hours * prices.value(PriceName::NewsrecTrainingOnDemandHour),
        newsrec_spot_usd: spot_hours * prices.value(PriceName::NewsrecTrainingSpotHour),
    }
}

/// Sizes newsrec's ingest and serve nodes at peak; each tier has at least one node.
pub fn size_newsrec_nodes(workload: &Workload) -> NewsrecNodes {
    let peak_events_per_second = workload.events_per_second * workload.peak_factor;
    let peak_requests_per_second = workload.serving_requests_per_second * workload.peak_factor;
    NewsrecNodes {
        peak_events_per_second,
        ingest_nodes: ceil_count(
            peak_events_per_second / workload.ingest_events_per_second_per_node,
        )
        .max(1),
        peak_requests_per_second,
        serve_nodes: ceil_count(
            peak_requests_per_second / workload.serve_requests_per_second_per_node,
        )
        .max(1),
    }
}

/// The managed design's monthly bill.
pub fn managed_cost(
    workload: &Workload,
    ingestion: &IngestionPlan,
    capacity: &CapacityDecision,
    prices: &PriceTable,
) -> CostEstimate {
    let line =
        |item: &str, quantity: f64, quantity_unit: &str, price: PriceName, formula: String| {
            priced_line(prices, item, quantity, quantity_unit, price, formula)
        };
    let sizing = &ingestion.sizing;
    let average_bytes_per_second = workload.events_per_second * workload.event_bytes as f64;
    let monthly_records =
        workload.events_per_second * SECONDS_PER_MONTH / ingestion.sizing.events_per_record as f64;
    let mut lines = Vec::new();

    // Every design feeds the lake through a delivery stream: directly, or reading the stream.
    let billed_record_bytes = sizing
        .record_bytes
        .div_ceil(DELIVERY_STREAM_BILLING_INCREMENT_BYTES)
        * DELIVERY_STREAM_BILLING_INCREMENT_BYTES;
    let delivery_item = match ingestion.choice {
        IngestionChoice::DeliveryStream => "delivery stream ingestion",
        IngestionChoice::MultiConsumerStream | IngestionChoice::KafkaApiStream => {
            "lake delivery (delivery stream reading the stream)"
        }
    };
    lines.push(line(
        delivery_item,
        monthly_records * billed_record_bytes as f64 / BYTES_PER_GB,
        "GB billed",
        PriceName::DeliveryStreamPerGb,
        format!(
            "{} records/month × {} B ({} B records rounded up to 5 KB)",
            plain(monthly_records),
            plain(billed_record_bytes as f64),
            plain(sizing.record_bytes as f64)
        ),
    ));

    match ingestion.choice {
        IngestionChoice::DeliveryStream => {}
        IngestionChoice::MultiConsumerStream => {
            lines.push(line(
                "stream shards",
                sizing.shards as f64 * HOURS_PER_MONTH,
                "shard-hours",
                PriceName::StreamShardHour,
                format!("{} shards × 730 h", sizing.shards),
            ));
            let units_per_record = sizing.record_bytes.div_ceil(PUT_PAYLOAD_UNIT_BYTES);
            lines.push(line(
                "stream PUT payload units",
                monthly_records * units_per_record as f64 / 1e6,
                "million units",
                PriceName::StreamPutPayloadUnitsPerMillion,
                format!(
                    "{} records/month × {units_per_record} unit(s) of 25 KB",
                    plain(monthly_records)
                ),
            ));
        }
        IngestionChoice::KafkaApiStream => {
            let brokers = ingestion.kafka.as_ref().map_or(0, |kafka| kafka.brokers);
            lines.push(line(
                "Kafka brokers",
                brokers as f64 * HOURS_PER_MONTH,
                "broker-hours",
                PriceName::KafkaBrokerHour,
                format!("{brokers} brokers × 730 h"),
            ));
            lines.push(line(
                "Kafka broker storage",
                average_bytes_per_second
                    * STREAM_RETENTION_HOURS
                    * 3600.0
                    * KAFKA_REPLICATION_FACTOR as f64
                    / BYTES_PER_GB,
                "GB-months",
                PriceName::KafkaStoragePerGbMonth,
                format!(
                    "{} B/s × 24 h retention × {KAFKA_REPLICATION_FACTOR} replicas",
                    plain(average_bytes_per_second)
                ),
            ));
        }
    }

    lines.push(lake_storage_line(
        workload,
        prices,
        "lake object storage",
        PriceName::ObjectStoragePerGbMonth,
    ));
    lines.push(training_line(
        workload,
        capacity.choice,
        prices,
        PriceName::ManagedTrainingOnDemandHour,
        PriceName::ManagedTrainingSpotHour,
    ));

    let runs_per_month = training_runs_per_month(workload.retrain_interval_hours);
    lines.push(line(
        "key-value reads",
        workload.serving_requests_per_second * SECONDS_PER_MONTH / 1e6,
        "million reads",
        PriceName::KvReadPerMillion,
        format!(
            "{} requests/s × {} s/month, one read each",
            plain(workload.serving_requests_per_second),
            plain(SECONDS_PER_MONTH)
        ),
    ));
    lines.push(line(
        "key-value writes",
        workload.users as f64 * runs_per_month / 1e6,
        "million writes",
        PriceName::KvWritePerMillion,
        format!(
            "{} users × {runs_per_month:.2} publishes/month, one write each",
            plain(workload.users as f64)
        ),
    ));
    lines.push(line(
        "key-value storage",
        workload.users as f64 * RECOMMENDATION_ITEM_BYTES / BYTES_PER_GB,
        "GB-months",
        PriceName::KvStoragePerGbMonth,
        format!("{} users × 1 KB list", plain(workload.users as f64)),
    ));

    let design = format!("managed cloud ({})", ingestion.choice.describe());
    CostEstimate::new(design, lines)
}

/// newsrec's monthly bill on its own instances.
pub fn newsrec_cost(
    workload: &Workload,
    nodes: &NewsrecNodes,
    capacity: &CapacityDecision,
    prices: &PriceTable,
) -> CostEstimate {
    let lines = vec![
        priced_line(
            prices,
            "ingest nodes",
            nodes.ingest_nodes as f64 * HOURS_PER_MONTH,
            "instance-hours",
            PriceName::NewsrecNodeHour,
            format!(
                "{} node(s) (ceil({} events/s at peak ÷ {} per node), at least 1) × 730 h",
                nodes.ingest_nodes,
                plain(nodes.peak_events_per_second),
                plain(workload.ingest_events_per_second_per_node)
            ),
        ),
        priced_line(
            prices,
            "serve nodes",
            nodes.serve_nodes as f64 * HOURS_PER_MONTH,
            "instance-hours",
            PriceName::NewsrecNodeHour,
            format!(
                "{} node(s) (ceil({} requests/s at peak ÷ {} per node), at least 1) × 730 h",
                nodes.serve_nodes,
                plain(nodes.peak_requests_per_second),
                plain(workload.serve_requests_per_second_per_node)
            ),
        ),
        training_line(
            workload,
            capacity.choice,
            prices,
            PriceName::NewsrecTrainingOnDemandHour,
            PriceName::NewsrecTrainingSpotHour,
        ),
        lake_storage_line(
            workload,
            prices,
            "lake storage",
            PriceName::NewsrecStoragePerGbMonth,
        ),
    ];
    CostEstimate::new("newsrec on its own instances".to_owned(), lines)
}

/// Steady-state lake size once the retention window is full.
fn lake_storage_line(
    workload: &Workload,
    prices: &PriceTable,
    item: &str,
    price: PriceName,
) -> CostLine {
    let average_bytes_per_second = workload.events_per_second * workload.event_bytes as f64;
    priced_line(
        prices,
        item,
        average_bytes_per_second * 86_400.0 * workload.lake_retention_days / BYTES_PER_GB,
        "GB-months",
        price,
        format!(
            "{} B/s × 86,400 s × {} days retained (raw event bytes)",
            plain(average_bytes_per_second),
            plain(workload.lake_retention_days)
        ),
    )
}

/// Training instance-hours on the chosen capacity; spot carries the expected interruption
/// overhead, and a fallback is billed at the spot expectation (the on-demand worst case is in
/// [`TrainingCosts`]).
fn training_line(
    workload: &Workload,
    choice: CapacityChoice,
    prices: &PriceTable,
    on_demand_price: PriceName,
    spot_price: PriceName,
) -> CostLine {
    let runs_per_month = training_runs_per_month(workload.retrain_interval_hours);
    let base_hours = runs_per_month * workload.training_hours;
    let run_text = format!(
        "{runs_per_month:.2} runs/month × {:.2} h",
        workload.training_hours
    );
    if choice.bills_spot() {
        let overhead = prices.value(PriceName::SpotInterruptionOverhead);
        priced_line(
            prices,
            &format!("training ({})", choice.describe()),
            base_hours * (1.0 + overhead),
            "instance-hours",
            spot_price,
            format!("{run_text} × (1 + {overhead:.2} interruption overhead)",),
        )
    } else {
        priced_line(
            prices,
            "training (on-demand)",
            base_hours,
            "instance-hours",
            on_demand_price,
            run_text,
        )
    }
}

fn priced_line(
    prices: &PriceTable,
    item: &str,
    quantity: f64,
    quantity_unit: &str,
    price: PriceName,
    formula: String,
) -> CostLine {
    let unit_price = prices.value(price);
    CostLine {
        item: item.to_owned(),
        quantity,
        quantity_unit: quantity_unit.to_owned(),
        price,
        unit_price,
        monthly_usd: quantity * unit_price,
        formula,
    }
}

/// A number for a formula: whole and large numbers grouped by thousands without decimals, small
/// fractional ones with two decimals.
pub(crate) fn plain(value: f64) -> String {
    if value >= 100.0 || (value >= 0.0 && value.fract() == 0.0) {
        crate::render::group_thousands(value.round() as u64)
    } else {
        format!("{value:.2}")
    }
}
