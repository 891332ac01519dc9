//! The price table: every price the cost model uses, with its unit and the source it came from.
//!
//! The defaults are `config/prices.toml`, compiled in with `include_str!`, so the shipped file and
//! the numbers the planner uses cannot drift apart. A price file passed by the user overrides any
//! subset; unknown keys are refused so a typo never falls back to a default unnoticed.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::PlanError;

/// The shipped price table, `config/prices.toml`.
pub const DEFAULT_PRICES_TOML: &str = include_str!("../../../config/prices.toml");

/// Where the compiled-in defaults say they come from when printed as a file name.
pub const DEFAULT_PRICES_ORIGIN: &str = "config/prices.toml (compiled in)";

/// One named price. The names are the keys of the price file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceName {
    DeliveryStreamPerGb,
    StreamShardHour,
    StreamPutPayloadUnitsPerMillion,
    KafkaBrokerHour,
    KafkaStoragePerGbMonth,
    ObjectStoragePerGbMonth,
    ManagedTrainingOnDemandHour,
    ManagedTrainingSpotHour,
    KvReadPerMillion,
    KvWritePerMillion,
    KvStoragePerGbMonth,
    SpotInterruptionOverhead,
    NewsrecNodeHour,
    NewsrecTrainingOnDemandHour,
    NewsrecTrainingSpotHour,
    NewsrecStoragePerGbMonth,
}

impl PriceName {
    /// Every price, in the order the price file lists them.
    pub const ALL: [PriceName; 16] = [
        PriceName::DeliveryStreamPerGb,
        PriceName::StreamShardHour,
        PriceName::StreamPutPayloadUnitsPerMillion,
        PriceName::KafkaBrokerHour,
        PriceName::KafkaStoragePerGbMonth,
        PriceName::ObjectStoragePerGbMonth,
        PriceName::ManagedTrainingOnDemandHour,
        PriceName::ManagedTrainingSpotHour,
        PriceName::KvReadPerMillion,
        PriceName::KvWritePerMillion,
        PriceName::KvStoragePerGbMonth,
        PriceName::SpotInterruptionOverhead,
        PriceName::NewsrecNodeHour,
        PriceName::NewsrecTrainingOnDemandHour,
        PriceName::NewsrecTrainingSpotHour,
        PriceName::NewsrecStoragePerGbMonth,
    ];

    /// The key in the price file.
    pub fn key(self) -> &'static str {
        match self {
            PriceName::DeliveryStreamPerGb => "delivery_stream_per_gb",
            PriceName::StreamShardHour => "stream_shard_hour",
            PriceName::StreamPutPayloadUnitsPerMillion => "stream_put_payload_units_per_million",
            PriceName::KafkaBrokerHour => "kafka_broker_hour",
            PriceName::KafkaStoragePerGbMonth => "kafka_storage_per_gb_month",
            PriceName::ObjectStoragePerGbMonth => "object_storage_per_gb_month",
            PriceName::ManagedTrainingOnDemandHour => "managed_training_on_demand_hour",
            PriceName::ManagedTrainingSpotHour => "managed_training_spot_hour",
            PriceName::KvReadPerMillion => "kv_read_per_million",
            PriceName::KvWritePerMillion => "kv_write_per_million",
            PriceName::KvStoragePerGbMonth => "kv_storage_per_gb_month",
            PriceName::SpotInterruptionOverhead => "spot_interruption_overhead",
            PriceName::NewsrecNodeHour => "newsrec_node_hour",
            PriceName::NewsrecTrainingOnDemandHour => "newsrec_training_on_demand_hour",
            PriceName::NewsrecTrainingSpotHour => "newsrec_training_spot_hour",
            PriceName::NewsrecStoragePerGbMonth => "newsrec_storage_per_gb_month",
        }
    }

    /// What one unit of the price buys. Fixed here, not in the file, because the formulas depend
    /// on it.
    pub fn unit(self) -> &'static str {
        match self {
            PriceName::DeliveryStreamPerGb => "USD per GB ingested (5 KB record increments)",
            PriceName::StreamShardHour => "USD per shard-hour",
            PriceName::StreamPutPayloadUnitsPerMillion => "USD per million 25 KB PUT units",
            PriceName::KafkaBrokerHour => "USD per broker-hour",
            PriceName::KafkaStoragePerGbMonth
            | PriceName::ObjectStoragePerGbMonth
            | PriceName::KvStoragePerGbMonth
            | PriceName::NewsrecStoragePerGbMonth => "USD per GB-month",
            PriceName::ManagedTrainingOnDemandHour
            | PriceName::ManagedTrainingSpotHour
            | PriceName::NewsrecNodeHour
            | PriceName::NewsrecTrainingOnDemandHour
            | PriceName::NewsrecTrainingSpotHour => "USD per instance-hour",
            PriceName::KvReadPerMillion => "USD per million reads",
            PriceName::KvWritePerMillion => "USD per million writes",
            PriceName::SpotInterruptionOverhead => "fraction of extra instance time",
        }
    }

    /// Finds a price by its file key.
    pub fn from_key(key: &str) -> Option<PriceName> {
        PriceName::ALL.into_iter().find(|name| name.key() == key)
    }
}

/// One price and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Price {
    pub value: f64,
    pub source: String,
}

/// A complete price table: every [`PriceName`] has a [`Price`].
#[derive(Debug, Clone, PartialEq)]
pub struct PriceTable {
    // Invariant: holds every PriceName. `defaults` starts complete and overrides only replace.
    prices: BTreeMap<PriceName, Price>,
}

impl PriceTable {
    /// The shipped prices, `config/prices.toml`.
    pub fn defaults() -> PriceTable {
        let entries = parse_price_entries(DEFAULT_PRICES_TOML, DEFAULT_PRICES_ORIGIN)
            .expect("config/prices.toml is a valid price file: the crate's tests parse it");
        let prices: BTreeMap<PriceName, Price> = entries.into_iter().collect();
        assert_eq!(
            prices.len(),
            PriceName::ALL.len(),
            "config/prices.toml must set every price: the crate's tests check it"
        );
        PriceTable { prices }
    }

    /// Returns the table with every price set in `price_file_toml` replaced. `origin` names the
    /// file in error messages and is the source of prices given as bare numbers.
    pub fn with_overrides(
        mut self,
        price_file_toml: &str,
        origin: &str,
    ) -> Result<PriceTable, PlanError> {
        for (name, price) in parse_price_entries(price_file_toml, origin)? {
            self.prices.insert(name, price);
        }
        Ok(self)
    }

    /// One price.
    pub fn get(&self, name: PriceName) -> &Price {
        &self.prices[&name]
    }

    /// A price's value.
    pub fn value(&self, name: PriceName) -> f64 {
        self.get(name).value
    }

    /// Every price, in file order.
    pub fn iter(&self) -> impl Iterator<Item = (PriceName, &Price)> {
        self.prices.iter().map(|(name, price)| (*name, price))
    }
}

impl Default for PriceTable {
    fn default() -> Self {
        PriceTable::defaults()
    }
}

/// Reads the prices a price file sets. Each is a bare number or `{ value = …, source = "…" }`.
fn parse_price_entries(text: &str, origin: &str) -> Result<Vec<(PriceName, Price)>, PlanError> {
    let table: toml::Table =
        text.parse()
            .map_err(|error: toml::de::Error| PlanError::InvalidPriceFile {
                origin: origin.to_owned(),
                message: error.message().to_owned(),
            })?;
    let invalid = |key: &str, reason: String| PlanError::InvalidPrice {
        key: key.to_owned(),
        origin: origin.to_owned(),
        reason,
    };
    let mut entries = Vec::with_capacity(table.len());
    for (key, entry) in &table {
        let name = PriceName::from_key(key).ok_or_else(|| PlanError::UnknownPrice {
            key: key.clone(),
            origin: origin.to_owned(),
            known: PriceName::ALL.map(PriceName::key).join(", "),
        })?;
        let (value, source) = match entry {
            toml::Value::Table(fields) => {
                if let Some(unknown) = fields
                    .keys()
                    .find(|field| *field != "value" && *field != "source")
                {
                    return Err(invalid(
                        key,
                        format!(
                            "unknown field `{unknown}`: write a bare number or \
                             {{ value = …, source = \"…\" }}"
                        ),
                    ));
                }
                let value = fields.get("value").and_then(number).ok_or_else(|| {
                    invalid(key, "it has no number at `value`: add one".to_owned())
                })?;
                let source = match fields.get("source") {
                    None => format!("override from {origin}"),
                    Some(toml::Value::String(source)) => source.clone(),
                    Some(_) => {
                        return Err(invalid(
                            key,
                            "`source` must be a string: quote it".to_owned(),
                        ));
                    }
                };
                (value, source)
            }
            bare => {
                let value = number(bare).ok_or_else(|| {
                    invalid(
                        key,
                        "write a bare number or { value = …, source = \"…\" }".to_owned(),
                    )
                })?;
                (value, format!("override from {origin}"))
            }
        };
        if !(value.is_finite() && value >= 0.0) {
            return Err(invalid(
                key,
                format!("{value} is not a price: use 0 or more"),
            ));
        }
        entries.push((name, Price { value, source }));
    }
    Ok(entries)
}

/// A TOML integer or float as f64 (`0` and `0.0` both mean zero dollars).
fn number(value: &toml::Value) -> Option<f64> {
    match value {
        toml::Value::Float(float) => Some(*float),
        toml::Value::Integer(integer) => Some(*integer as f64),
        _ => None,
    }
}
