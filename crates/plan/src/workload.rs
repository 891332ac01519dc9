//! The workload description: what the team tells the planner (flags, a TOML file, a run
//! manifest), the defaults that fill the gaps, and the checks that keep every later formula inside
//! the range it is defined for.
//!
//! [`WorkloadInput`] is the raw, all-optional form whose keys mirror the command-line flags
//! (`--events-per-sec` is `events_per_sec`), so a file and a command line read the same way.
//! [`WorkloadInput::resolve`] turns it into a [`Workload`] with every value present and checked.

use serde::{Deserialize, Serialize};

use crate::error::PlanError;
use crate::ingestion::{AGGREGATION_TARGET_RECORD_BYTES, check_record_size};

/// Peak traffic ÷ average traffic when not given: 1, so shards are sized for the stated rate.
pub const DEFAULT_PEAK_FACTOR: f64 = 1.0;
/// Training run length when neither `--train-hours` nor a run manifest says.
pub const DEFAULT_TRAINING_HOURS: f64 = 1.0;
/// Retrain cadence when not given: daily.
pub const DEFAULT_RETRAIN_INTERVAL_HOURS: f64 = 24.0;
/// Ingest throughput of one newsrec node, events per second, until `newsrec bench` measures it.
pub const DEFAULT_INGEST_EVENTS_PER_SECOND_PER_NODE: f64 = 20_000.0;
/// Serving throughput of one newsrec node, requests per second, until `newsrec bench` measures it.
pub const DEFAULT_SERVE_REQUESTS_PER_SECOND_PER_NODE: f64 = 5_000.0;
/// How long the lake keeps raw events, in days, when not given.
pub const DEFAULT_LAKE_RETENTION_DAYS: f64 = 90.0;

/// The workload as given: every value optional, keys named like the command-line flags.
///
/// Read it from a TOML file with [`WorkloadInput::from_toml`], build one from flags, combine the
/// two with [`WorkloadInput::overridden_by`] and finish with [`WorkloadInput::resolve`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadInput {
    /// Average events per second over the day.
    pub events_per_sec: Option<f64>,
    /// Bytes per event as sent on the wire.
    pub event_bytes: Option<u64>,
    /// Peak events per second ÷ average events per second (at least 1).
    pub peak_factor: Option<f64>,
    /// Events the producer packs into one stream record; derived from event size when absent.
    pub events_per_record: Option<u64>,
    /// Independent consumers that each read the whole stream and process it differently.
    pub consumers: Option<u32>,
    /// Whether the Kafka API and its tools (Connect, Streams, existing clients) are required.
    pub kafka_ecosystem: Option<bool>,
    /// Length of one training run, hours.
    pub train_hours: Option<f64>,
    /// Time by which a training run must be finished once started, hours.
    pub deadline_hours: Option<f64>,
    /// Whether a missed training deadline is an incident (not merely a stale model).
    pub critical: Option<bool>,
    /// Retrain cadence, such as `every 24h` or `weekly`.
    pub retrain: Option<String>,
    /// Average recommendation requests per second.
    pub serving_rps: Option<f64>,
    /// Users with a stored recommendation list.
    pub users: Option<u64>,
    /// Measured ingest throughput of one newsrec node, events per second.
    pub ingest_events_per_sec_per_node: Option<f64>,
    /// Measured serving throughput of one newsrec node, requests per second.
    pub serve_rps_per_node: Option<f64>,
    /// Days the lake keeps raw events.
    pub lake_retention_days: Option<f64>,
    /// Where `train_hours` came from when it was not typed in (a run manifest); set by
    /// [`WorkloadInput::apply_manifest`], never read from a file.
    #[serde(skip)]
    pub train_hours_origin: Option<String>,
}

/// A complete, checked workload: every value present and inside the range its rule is defined
/// for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workload {
    pub events_per_second: f64,
    pub event_bytes: u64,
    pub peak_factor: f64,
    pub events_per_record: u64,
    /// Where `events_per_record` came from: the input, or derived from the aggregation target.
    pub events_per_record_source: String,
    pub consumers: u32,
    pub kafka_ecosystem_required: bool,
    pub training_hours: f64,
    /// Where `training_hours` came from: the input, a run manifest, or the default.
    pub training_hours_source: String,
    pub deadline_hours: f64,
    /// Where `deadline_hours` came from: the input, or the retrain interval.
    pub deadline_hours_source: String,
    pub critical: bool,
    pub retrain_interval_hours: f64,
    pub serving_requests_per_second: f64,
    pub users: u64,
    pub ingest_events_per_second_per_node: f64,
    pub serve_requests_per_second_per_node: f64,
    pub lake_retention_days: f64,
    /// Input keys that took their default, so the output can say which numbers nobody gave.
    pub defaulted: Vec<String>,
}

impl WorkloadInput {
    /// Reads a TOML workload file's contents. Unknown keys are refused, naming the key, so a typo
    /// cannot silently fall back to a default.
    /// `origin` names the file in error messages.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, PlanError> {
        toml::from_str(text).map_err(|error| PlanError::InvalidWorkloadFile {
            origin: origin.to_owned(),
            message: error.message().to_owned(),
        })
    }

    /// Returns `self` with every value that `overrides` sets replaced by that value; used so
    /// command-line flags win over the workload file.
    pub fn overridden_by(self, overrides: WorkloadInput) -> WorkloadInput {
        // A typed-in training time also replaces any manifest origin the base carried.
        let train_hours_origin = if overrides.train_hours.is_some() {
            overrides.train_hours_origin
        } else {
            self.train_hours_origin
        };
        WorkloadInput {
            events_per_sec: overrides.events_per_sec.or(self.events_per_sec),
            event_bytes: overrides.event_bytes.or(self.event_bytes),
            peak_factor: overrides.peak_factor.or(self.peak_factor),
            events_per_record: overrides.events_per_record.or(self.events_per_record),
            consumers: overrides.consumers.or(self.consumers),
            kafka_ecosystem: overrides.kafka_ecosystem.or(self.kafka_ecosystem),
            train_hours: overrides.train_hours.or(self.train_hours),
            deadline_hours: overrides.deadline_hours.or(self.deadline_hours),
            critical: overrides.critical.or(self.critical),
            retrain: overrides.retrain.or(self.retrain),
            serving_rps: overrides.serving_rps.or(self.serving_rps),
            users: overrides.users.or(self.users),
            ingest_events_per_sec_per_node: overrides
                .ingest_events_per_sec_per_node
                .or(self.ingest_events_per_sec_per_node),
            serve_rps_per_node: overrides.serve_rps_per_node.or(self.serve_rps_per_node),
            lake_retention_days: overrides.lake_retention_days.or(self.lake_retention_days),
            train_hours_origin,
        }
    }

    /// Reads the training time from a run manifest's contents (`timings.total_ms`, milliseconds)
    /// and uses it when no training time was typed in. A training time given as a flag or in the
    /// workload file wins because it is a deliberate statement; the manifest is still checked, so a
    /// broken manifest passed on purpose is reported rather than ignored.
    pub fn apply_manifest(&mut self, manifest_json: &str, origin: &str) -> Result<(), PlanError> {
        let manifest_training_hours = training_hours_from_manifest(manifest_json, origin)?;
        if self.train_hours.is_none() {
            self.train_hours = Some(manifest_training_hours);
            self.train_hours_origin = Some(format!("run manifest {origin} (timings.total_ms)"));
        }
        Ok(())
    }

    /// Fills the gaps with defaults and checks every value.
    pub fn resolve(self) -> Result<Workload, PlanError> {
        let mut defaulted = Vec::new();

        let events_per_second = self.events_per_sec.ok_or(PlanError::MissingInput {
            what: "events per second",
            flag: "events-per-sec",
            key: "events_per_sec",
        })?;
        let event_bytes = self.event_bytes.ok_or(PlanError::MissingInput {
            what: "event size",
            flag: "event-bytes",
            key: "event_bytes",
        })?;
        let peak_factor = or_default(
            self.peak_factor,
            "peak_factor",
            DEFAULT_PEAK_FACTOR,
            &mut defaulted,
        );
        let retrain_interval_hours = match &self.retrain {
            Some(text) => parse_retrain_interval(text)?,
            None => or_default(
                None,
                "retrain",
                DEFAULT_RETRAIN_INTERVAL_HOURS,
                &mut defaulted,
            ),
        };
        let (training_hours, training_hours_source) = match self.train_hours {
            Some(hours) => (
                hours,
                self.train_hours_origin
                    .unwrap_or_else(|| "given (--train-hours or workload file)".to_owned()),
            ),
            None => (
                or_default(None, "train_hours", DEFAULT_TRAINING_HOURS, &mut defaulted),
                "default: no --train-hours and no --manifest given".to_owned(),
            ),
        };
        // A run that is still going when the next one is due is late, so by default the deadline
        // is the retrain interval.
        let (deadline_hours, deadline_hours_source) = match self.deadline_hours {
            Some(hours) => (hours, "given".to_owned()),
            None => {
                defaulted.push("deadline_hours".to_owned());
                (retrain_interval_hours, "the retrain interval".to_owned())
            }
        };
        let serving_requests_per_second =
            or_default(self.serving_rps, "serving_rps", 0.0, &mut defaulted);
        let ingest_events_per_second_per_node = or_default(
            self.ingest_events_per_sec_per_node,
            "ingest_events_per_sec_per_node",
            DEFAULT_INGEST_EVENTS_PER_SECOND_PER_NODE,
            &mut defaulted,
        );
        let serve_requests_per_second_per_node = or_default(
            self.serve_rps_per_node,
            "serve_rps_per_node",
            DEFAULT_SERVE_REQUESTS_PER_SECOND_PER_NODE,
            &mut defaulted,
        );
        let lake_retention_days = or_default(
            self.lake_retention_days,
            "lake_retention_days",
            DEFAULT_LAKE_RETENTION_DAYS,
            &mut defaulted,
        );
        let (events_per_record, events_per_record_source) = match self.events_per_record {
            Some(count) => (count, "given".to_owned()),
            None => {
                defaulted.push("events_per_record".to_owned());
                (
                    default_events_per_record(event_bytes),
                    format!(
                        "derived: fills a {} B aggregated record",
                        crate::render::group_thousands(AGGREGATION_TARGET_RECORD_BYTES)
                    ),
                )
            }
        };
        let consumers = or_default(self.consumers, "consumers", 1, &mut defaulted);
        let kafka_ecosystem_required = or_default(
            self.kafka_ecosystem,
            "kafka_ecosystem",
            false,
            &mut defaulted,
        );
        let critical = or_default(self.critical, "critical", false, &mut defaulted);
        let users = or_default(self.users, "users", 0, &mut defaulted);

        let workload = Workload {
            events_per_second,
            event_bytes,
            peak_factor,
            events_per_record,
            events_per_record_source,
            consumers,
            kafka_ecosystem_required,
            training_hours,
            training_hours_source,
            deadline_hours,
            deadline_hours_source,
            critical,
            retrain_interval_hours,
            serving_requests_per_second,
            users,
            ingest_events_per_second_per_node,
            serve_requests_per_second_per_node,
            lake_retention_days,
            defaulted,
        };
        workload.validate()?;
        Ok(workload)
    }
}

impl Workload {
    /// Checks every value against the range its rule is defined for. [`crate::plan`] calls this
    /// too, so a `Workload` built by hand gets the same checks as a resolved one.
    pub fn validate(&self) -> Result<(), PlanError> {
        at_least(
            "events per second",
            self.events_per_second,
            0.0,
            "0 or more",
        )?;
        if self.event_bytes == 0 {
            return Err(out_of_range(
                "event size",
                self.event_bytes,
                "at least 1 byte",
            ));
        }
        at_least(
            "peak factor",
            self.peak_factor,
            1.0,
            "1 or more (peak traffic ÷ average traffic)",
        )?;
        if self.events_per_record == 0 {
            return Err(out_of_range(
                "events per record",
                self.events_per_record,
                "at least 1",
            ));
        }
        // Over-limit events are refused with their own message, before any sizing.
        check_record_size(self.event_bytes, self.events_per_record)?;
        if self.consumers == 0 {
            return Err(out_of_range(
                "consumers",
                self.consumers,
                "at least 1 (the lake writer)",
            ));
        }
        positive("training hours", self.training_hours)?;
        positive("deadline hours", self.deadline_hours)?;
        positive("retrain interval hours", self.retrain_interval_hours)?;
        at_least(
            "serving requests per second",
            self.serving_requests_per_second,
            0.0,
            "0 or more",
        )?;
        positive(
            "ingest events per second per node",
            self.ingest_events_per_second_per_node,
        )?;
        positive(
            "serve requests per second per node",
            self.serve_requests_per_second_per_node,
        )?;
        at_least(
            "lake retention days",
            self.lake_retention_days,
            0.0,
            "0 or more",
        )?;
        Ok(())
    }
}

/// Events per record when none is given: as many as fit the aggregation target, at least one.
///
/// Producers that aggregate (the Kinesis Producer Library does by default) pack small events into
/// records of up to 51,200 bytes, because the per-shard limit of 1,000 records per second would
/// otherwise bind long before the 1 MB/s byte limit.
pub fn default_events_per_record(event_bytes: u64) -> u64 {
    (AGGREGATION_TARGET_RECORD_BYTES / event_bytes.max(1)).max(1)
}

/// Reads a retrain cadence into hours: `every 24h`, `24h`, `90m`, `7d`, `1w`, `hourly`, `daily`,
/// `weekly` (case and surrounding spaces ignored).
pub fn parse_retrain_interval(text: &str) -> Result<f64, PlanError> {
    let invalid = || PlanError::InvalidRetrainInterval {
        text: text.to_owned(),
    };
    let lowered = text.trim().to_ascii_lowercase();
    let without_every = lowered
        .strip_prefix("every")
        .map(|rest| rest.trim_start_matches([' ', '-', '_']))
        .unwrap_or(&lowered)
        .trim();
    let hours = match without_every {
        "hour" | "hourly" => 1.0,
        "day" | "daily" => 24.0,
        "week" | "weekly" => 168.0,
        spelled => {
            let split_at = spelled
                .find(|character: char| character.is_ascii_alphabetic())
                .ok_or_else(invalid)?;
            let (number, unit) = spelled.split_at(split_at);
            let amount: f64 = number.trim().parse().map_err(|_| invalid())?;
            let hours_per_unit = match unit.trim() {
                "m" | "min" | "mins" | "minute" | "minutes" => 1.0 / 60.0,
                "h" | "hr" | "hrs" | "hour" | "hours" => 1.0,
                "d" | "day" | "days" => 24.0,
                "w" | "week" | "weeks" => 168.0,
                _ => return Err(invalid()),
            };
            amount * hours_per_unit
        }
    };
    if hours.is_finite() && hours > 0.0 {
        Ok(hours)
    } else {
        Err(invalid())
    }
}

/// Reads a run manifest's training time, `timings.total_ms` (milliseconds), as hours.
pub fn training_hours_from_manifest(manifest_json: &str, origin: &str) -> Result<f64, PlanError> {
    let manifest: serde_json::Value =
        serde_json::from_str(manifest_json).map_err(|error| PlanError::InvalidManifest {
            origin: origin.to_owned(),
            message: error.to_string(),
        })?;
    let total_milliseconds = manifest
        .pointer("/timings/total_ms")
        .and_then(serde_json::Value::as_f64)
        .filter(|milliseconds| milliseconds.is_finite() && *milliseconds > 0.0)
        .ok_or_else(|| PlanError::ManifestWithoutTrainingTime {
            origin: origin.to_owned(),
        })?;
    Ok(total_milliseconds / 3_600_000.0)
}

/// The given value, or the default with its key recorded as defaulted.
fn or_default<T>(value: Option<T>, key: &str, default: T, defaulted: &mut Vec<String>) -> T {
    value.unwrap_or_else(|| {
        defaulted.push(key.to_owned());
        default
    })
}

fn out_of_range(what: &'static str, value: impl ToString, expected: &'static str) -> PlanError {
    PlanError::OutOfRange {
        what,
        value: value.to_string(),
        expected,
    }
}

fn at_least(
    what: &'static str,
    value: f64,
    minimum: f64,
    expected: &'static str,
) -> Result<(), PlanError> {
    if value.is_finite() && value >= minimum {
        Ok(())
    } else {
        Err(out_of_range(what, value, expected))
    }
}

fn positive(what: &'static str, value: f64) -> Result<(), PlanError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(out_of_range(what, value, "more than 0"))
    }
}
