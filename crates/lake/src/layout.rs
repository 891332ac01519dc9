//! Object paths of the lake (the design is `docs/lake-layout.md`; keep the two in step).
//!
//! ```text
//! events/dt=YYYY-MM-DD/hour=HH/<writer>-<seq:020>.parquet   clicks, by event time (UTC)
//! errors/dt=YYYY-MM-DD/hour=HH/<writer>-<seq:020>.ndjson    refused records, by arrival time
//! runs/<run_id>/manifest.json                               one training run's manifest
//! runs/<run_id>/<name>                                      its other outputs
//! ```

use chrono::{DateTime, NaiveDate, Timelike, Utc};
use object_store::path::Path;

use crate::LakeError;

/// Top-level prefix of event partitions.
pub const EVENTS_PREFIX: &str = "events";
/// Top-level prefix of the error output (refused records).
pub const ERRORS_PREFIX: &str = "errors";
/// Top-level prefix of training runs.
pub const RUNS_PREFIX: &str = "runs";
/// File name of a run's manifest.
pub const MANIFEST_FILE: &str = "manifest.json";

/// One hourly event partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partition {
    pub date: NaiveDate,
    pub hour: u32,
}

impl Partition {
    /// The partition holding event time `ts_ms`.
    pub fn of_ts(ts_ms: i64) -> Partition {
        let time = DateTime::<Utc>::from_timestamp_millis(ts_ms).unwrap_or_default();
        Partition {
            date: time.date_naive(),
            hour: time.hour(),
        }
    }

    /// First millisecond of the partition.
    pub fn start_ms(&self) -> i64 {
        day_start_ms(self.date) + i64::from(self.hour) * 3_600_000
    }

    /// `events/dt=YYYY-MM-DD/hour=HH`
    pub fn prefix(&self) -> Path {
        Path::from(format!(
            "{EVENTS_PREFIX}/dt={}/hour={:02}",
            self.date, self.hour
        ))
    }
}

/// `events/dt=YYYY-MM-DD`
pub fn day_prefix(date: NaiveDate) -> Path {
    Path::from(format!("{EVENTS_PREFIX}/dt={date}"))
}

/// First millisecond of a UTC day.
pub fn day_start_ms(date: NaiveDate) -> i64 {
    date.and_hms_opt(0, 0, 0)
        .map(|time| time.and_utc().timestamp_millis())
        .unwrap_or_default()
}

/// The object holding batch `seq` of `writer` in `partition`.
pub fn event_object_path(partition: Partition, writer: &str, seq: u64) -> Path {
    Path::from(format!(
        "{EVENTS_PREFIX}/dt={}/hour={:02}/{writer}-{seq:020}.parquet",
        partition.date, partition.hour
    ))
}

/// The error-output object of batch `seq` of `writer` for arrival hour `partition`.
pub fn error_object_path(partition: Partition, writer: &str, seq: u64) -> Path {
    Path::from(format!(
        "{ERRORS_PREFIX}/dt={}/hour={:02}/{writer}-{seq:020}.ndjson",
        partition.date, partition.hour
    ))
}

/// `errors/dt=YYYY-MM-DD`
pub fn error_day_prefix(date: NaiveDate) -> Path {
    Path::from(format!("{ERRORS_PREFIX}/dt={date}"))
}

/// The partition an event object path belongs to, or `None` when the path is not one.
pub fn parse_event_object_path(path: &Path) -> Option<Partition> {
    let mut parts = path.parts();
    if parts.next()?.as_ref() != EVENTS_PREFIX {
        return None;
    }
    let date = parts
        .next()?
        .as_ref()
        .strip_prefix("dt=")?
        .parse::<NaiveDate>()
        .ok()?;
    let hour = parts
        .next()?
        .as_ref()
        .strip_prefix("hour=")?
        .parse::<u32>()
        .ok()?;
    let file = parts.next()?;
    if hour > 23 || !file.as_ref().ends_with(".parquet") || parts.next().is_some() {
        return None;
    }
    Some(Partition { date, hour })
}

/// `runs/<run_id>/<name>`
pub fn run_object_path(run_id: &str, name: &str) -> Path {
    Path::from(format!("{RUNS_PREFIX}/{run_id}/{name}"))
}

/// Checks a writer name or run id: 1–64 of `[A-Za-z0-9._-]`, not starting with `.`.
///
/// These names become path segments, so anything else is refused rather than escaped.
pub fn validate_name(what: &'static str, value: &str) -> Result<(), LakeError> {
    let invalid = |reason| LakeError::InvalidName {
        what,
        value: value.to_owned(),
        reason,
    };
    if value.is_empty() || value.len() > 64 {
        return Err(invalid("must be 1 to 64 characters"));
    }
    if value.starts_with('.') {
        return Err(invalid("must not start with '.'"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(invalid("may hold only letters, digits, '.', '_' and '-'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_paths_round_trip() {
        let partition = Partition::of_ts(1_506_834_000_000); // 2017-10-01T05:00:00Z
        assert_eq!(partition.hour, 5);
        let path = event_object_path(partition, "node-1", 7);
        assert_eq!(
            path.as_ref(),
            "events/dt=2017-10-01/hour=05/node-1-00000000000000000007.parquet"
        );
        assert_eq!(parse_event_object_path(&path), Some(partition));
        assert_eq!(partition.start_ms(), 1_506_834_000_000);
        assert_eq!(
            parse_event_object_path(&Path::from("events/dt=x/hour=05/a.parquet")),
            None
        );
        assert_eq!(
            parse_event_object_path(&Path::from("runs/r/manifest.json")),
            None
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("run id", "2017-10-09_a.b").is_ok());
        assert!(validate_name("run id", "../x").is_err());
        assert!(validate_name("run id", "a/b").is_err());
        assert!(validate_name("run id", "").is_err());
    }
}
