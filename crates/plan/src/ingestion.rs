//! The ingestion decision: which managed stream design carries the clickstream (a delivery
//! stream, a multi-consumer stream, or a Kafka-API stream), and how many shards it needs at peak.
//!
//! The limits below are the published per-shard and per-record quotas of the managed streams the
//! price table prices. They are quotas, not prices, so they live here rather than in the price
//! file. Units are decimal (1 MB = 1,000,000 bytes): the quotas are published as "MB", and reading
//! them as decimal can only over-provision, never under-provision.

use serde::Serialize;

use crate::error::PlanError;

/// Largest record a stream or delivery stream accepts, in bytes (1 MB).
pub const RECORD_LIMIT_BYTES: u64 = 1_000_000;
/// Bytes per second one shard accepts from producers (1 MB/s).
pub const SHARD_WRITE_BYTES_PER_SECOND: f64 = 1_000_000.0;
/// Records per second one shard accepts from producers.
pub const SHARD_WRITE_RECORDS_PER_SECOND: f64 = 1_000.0;
/// Bytes per second one shard serves to readers, shared by all consumers that poll it (2 MB/s).
pub const SHARD_READ_BYTES_PER_SECOND: f64 = 2_000_000.0;
/// Size the producer aggregates small events up to when the workload does not say how many events
/// share a record: the Kinesis Producer Library's default `AggregationMaxSize`.
pub const AGGREGATION_TARGET_RECORD_BYTES: u64 = 51_200;
/// Default direct-put throughput quota of one delivery stream in the largest regions (5 MiB/s).
/// Above it the stream still works once AWS raises the quota, so it is a warning, not a rule.
pub const DELIVERY_STREAM_DEFAULT_QUOTA_BYTES_PER_SECOND: f64 = 5.0 * 1_048_576.0;
/// Brokers in the smallest Kafka cluster the plan proposes: one per availability zone.
pub const KAFKA_MIN_BROKERS: u64 = 3;
/// Copies Kafka keeps of each partition.
pub const KAFKA_REPLICATION_FACTOR: u64 = 3;
/// Traffic one broker (the priced broker type) carries in and out, bytes per second. A planning
/// figure, deliberately below the instance's network and disk baselines; measure before trusting.
pub const KAFKA_BROKER_BYTES_PER_SECOND: f64 = 40_000_000.0;

/// Which managed design carries the clickstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IngestionChoice {
    /// A managed delivery stream (Firehose-style) writing straight into the lake; billed per GB,
    /// scales itself, one consumer (the lake).
    DeliveryStream,
    /// A sharded multi-consumer stream (Kinesis-style); each consumer reads the whole stream.
    MultiConsumerStream,
    /// A managed Kafka cluster (MSK-style), for when the Kafka API and tools are required.
    KafkaApiStream,
}

impl IngestionChoice {
    /// A short human name for tables.
    pub fn describe(self) -> &'static str {
        match self {
            IngestionChoice::DeliveryStream => "managed delivery stream",
            IngestionChoice::MultiConsumerStream => "multi-consumer stream",
            IngestionChoice::KafkaApiStream => "Kafka-API stream",
        }
    }
}

/// Which decision rule picked the design.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IngestionRule {
    /// Several consumers process the stream differently and the Kafka ecosystem is required.
    SeveralConsumersKafkaRequired,
    /// Several consumers process the stream differently; the Kafka ecosystem is not required.
    SeveralConsumers,
    /// One consumer, but the Kafka ecosystem is required, which a delivery stream cannot offer.
    KafkaRequiredSingleConsumer,
    /// One consumer and no Kafka requirement.
    SingleConsumer,
}

impl IngestionRule {
    /// The rule's name, as in the JSON output.
    pub fn key(self) -> &'static str {
        match self {
            IngestionRule::SeveralConsumersKafkaRequired => "several_consumers_kafka_required",
            IngestionRule::SeveralConsumers => "several_consumers",
            IngestionRule::KafkaRequiredSingleConsumer => "kafka_required_single_consumer",
            IngestionRule::SingleConsumer => "single_consumer",
        }
    }
}

/// Which limit set the shard count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingLimit {
    /// Peak bytes per second ÷ 1 MB/s per shard.
    WriteBytes,
    /// Peak records per second ÷ 1,000 records/s per shard.
    WriteRecords,
    /// Consumers × peak bytes per second ÷ 2 MB/s per shard.
    ReadBytes,
    /// No traffic: a stream still needs one shard.
    MinimumOneShard,
}

/// The shard arithmetic, every intermediate kept so the output can show its working.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShardSizing {
    pub peak_events_per_second: f64,
    pub peak_bytes_per_second: f64,
    pub events_per_record: u64,
    pub record_bytes: u64,
    pub peak_records_per_second: f64,
    /// ceil(peak bytes/s ÷ 1 MB/s).
    pub shards_for_write_bytes: u64,
    /// ceil(peak records/s ÷ 1,000).
    pub shards_for_write_records: u64,
    /// ceil(consumers × peak bytes/s ÷ 2 MB/s).
    pub shards_for_read_bytes: u64,
    /// The largest of the three, and at least one.
    pub shards: u64,
    pub binding_limit: BindingLimit,
}

/// The ingestion part of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IngestionPlan {
    pub choice: IngestionChoice,
    pub rule: IngestionRule,
    /// The rule in words, with this workload's numbers.
    pub reason: String,
    pub sizing: ShardSizing,
    /// Partitions and brokers, for the Kafka-API design only.
    pub kafka: Option<KafkaSizing>,
}

/// Kafka cluster size for the Kafka-API design.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KafkaSizing {
    /// One partition per shard-equivalent: a partition is planned at the same 1 MB/s.
    pub partitions: u64,
    /// Producer bytes × replication + consumer bytes, per second, at peak.
    pub peak_broker_traffic_bytes_per_second: f64,
    pub brokers: u64,
}

/// Refuses an event, or an aggregated record, over the record limit; returns the record size.
pub fn check_record_size(event_bytes: u64, events_per_record: u64) -> Result<u64, PlanError> {
    if event_bytes > RECORD_LIMIT_BYTES {
        return Err(PlanError::EventOverRecordLimit {
            event_bytes,
            record_limit_bytes: RECORD_LIMIT_BYTES,
        });
    }
    let record_bytes = event_bytes.saturating_mul(events_per_record.max(1));
    if record_bytes > RECORD_LIMIT_BYTES {
        return Err(PlanError::AggregatedRecordOverLimit {
            events_per_record,
            event_bytes,
            record_bytes,
            record_limit_bytes: RECORD_LIMIT_BYTES,
            largest_events_per_record: RECORD_LIMIT_BYTES / event_bytes.max(1),
        });
    }
    Ok(record_bytes)
}

/// Shards needed at peak: ceil(max(MB/s ÷ 1 MB/s, records/s ÷ 1,000)), raised if the read side
/// (every consumer reads every byte, 2 MB/s per shard shared by the consumers) needs more, and at
/// least one.
pub fn size_shards(
    peak_events_per_second: f64,
    event_bytes: u64,
    events_per_record: u64,
    consumers: u32,
) -> Result<ShardSizing, PlanError> {
    let record_bytes = check_record_size(event_bytes, events_per_record)?;
    let events_per_record = events_per_record.max(1);
    let peak_bytes_per_second = peak_events_per_second * event_bytes as f64;
    let peak_records_per_second = peak_events_per_second / events_per_record as f64;
    let shards_for_write_bytes = ceil_count(peak_bytes_per_second / SHARD_WRITE_BYTES_PER_SECOND);
    let shards_for_write_records =
        ceil_count(peak_records_per_second / SHARD_WRITE_RECORDS_PER_SECOND);
    let shards_for_read_bytes =
        ceil_count(f64::from(consumers) * peak_bytes_per_second / SHARD_READ_BYTES_PER_SECOND);

    // Ties go to the write-bytes rule, the one the decision rules state first.
    let (shards, binding_limit) = [
        (shards_for_write_bytes, BindingLimit::WriteBytes),
        (shards_for_write_records, BindingLimit::WriteRecords),
        (shards_for_read_bytes, BindingLimit::ReadBytes),
        (1, BindingLimit::MinimumOneShard),
    ]
    .into_iter()
    .fold((0, BindingLimit::MinimumOneShard), |best, candidate| {
        if candidate.0 > best.0 {
            candidate
        } else {
            best
        }
    });

    Ok(ShardSizing {
        peak_events_per_second,
        peak_bytes_per_second,
        events_per_record,
        record_bytes,
        peak_records_per_second,
        shards_for_write_bytes,
        shards_for_write_records,
        shards_for_read_bytes,
        shards,
        binding_limit,
    })
}

/// Brokers for the Kafka-API design: enough for producer traffic times replication plus every
/// consumer's reads, at least three, and a multiple of three so each availability zone holds the
/// same number.
pub fn size_kafka(sizing: &ShardSizing, consumers: u32) -> KafkaSizing {
    let peak_broker_traffic_bytes_per_second =
        sizing.peak_bytes_per_second * (KAFKA_REPLICATION_FACTOR as f64 + f64::from(consumers));
    let by_traffic =
        ceil_count(peak_broker_traffic_bytes_per_second / KAFKA_BROKER_BYTES_PER_SECOND);
    let brokers = by_traffic
        .max(KAFKA_MIN_BROKERS)
        .div_ceil(KAFKA_MIN_BROKERS)
        * KAFKA_MIN_BROKERS;
    KafkaSizing {
        partitions: sizing.shards,
        peak_broker_traffic_bytes_per_second,
        brokers,
    }
}

/// Picks the design by the decision rules and sizes it.
pub fn decide_ingestion(
    events_per_second: f64,
    peak_factor: f64,
    event_bytes: u64,
    events_per_record: u64,
    consumers: u32,
    kafka_ecosystem_required: bool,
) -> Result<IngestionPlan, PlanError> {
    let sizing = size_shards(
        events_per_second * peak_factor,
        event_bytes,
        events_per_record,
        consumers,
    )?;
    let several_consumers = consumers >= 2;
    let (choice, rule, reason) = match (several_consumers, kafka_ecosystem_required) {
        (true, true) => (
            IngestionChoice::KafkaApiStream,
            IngestionRule::SeveralConsumersKafkaRequired,
            format!(
                "{consumers} consumers process the events differently, so each needs its own \
                 read of one retained stream; the Kafka ecosystem is required, so the stream \
                 speaks the Kafka API"
            ),
        ),
        (true, false) => (
            IngestionChoice::MultiConsumerStream,
            IngestionRule::SeveralConsumers,
            format!(
                "{consumers} consumers process the events differently, so each needs its own \
                 read of one retained stream; the Kafka ecosystem is not required, so a sharded \
                 stream is simpler and cheaper to run than a broker cluster"
            ),
        ),
        (false, true) => (
            IngestionChoice::KafkaApiStream,
            IngestionRule::KafkaRequiredSingleConsumer,
            "one consumer would fit a delivery stream, but the Kafka ecosystem is required and \
             a delivery stream does not speak the Kafka API"
                .to_owned(),
        ),
        (false, false) => (
            IngestionChoice::DeliveryStream,
            IngestionRule::SingleConsumer,
            "one consumer (the lake) and no Kafka requirement: a managed delivery stream writes \
             straight to the lake, scales itself and is billed per GB, with no shards to run; \
             the shard count is shown for comparison"
                .to_owned(),
        ),
    };
    let kafka = (choice == IngestionChoice::KafkaApiStream).then(|| size_kafka(&sizing, consumers));
    Ok(IngestionPlan {
        choice,
        rule,
        reason,
        sizing,
        kafka,
    })
}

/// ceil(x) as a count. The tolerance keeps an exact quotient that floating point lands a hair
/// above an integer (6.000000000001) from costing a whole extra shard; subtracting a constant keeps
/// the function monotone, which the "more events never fewer shards" property relies on.
pub(crate) fn ceil_count(quotient: f64) -> u64 {
    let adjusted = (quotient - 1e-9).ceil();
    if adjusted <= 0.0 {
        0
    } else {
        // `as` saturates at u64::MAX for absurd inputs, which keeps monotonicity.
        adjusted as u64
    }
}
