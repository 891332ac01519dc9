//! Every object name of the lake: the only place a name or prefix is spelled (the design is
//! `docs/lake-layout.md`; keep the two in step). Other crates build names by calling these
//! functions, so changing a name here changes it everywhere, and the test at the end pins each
//! one to the bytes existing lakes hold.
//!
//! ```text
//! events/dt=YYYY-MM-DD/hour=HH/<writer>-<seq:020>.parquet   clicks, by event time (UTC)
//! errors/dt=YYYY-MM-DD/hour=HH/<writer>-<seq:020>.ndjson    refused records, by arrival time
//! runs/<run_id>/recs-NNNNN.parquet                          one training run's list parts,
//! runs/<run_id>/fallback.parquet                            its fallback list,
//! runs/<run_id>/similar.parquet                             its similar-article lists,
//! runs/<run_id>/als-factors.ckpt                            its ALS factors,
//! runs/<run_id>/manifest.json                               and its manifest (written last)
//! checkpoints/<run_id>/dataset.ckpt                         a run in progress: its click log
//! rollups/v1/dt=YYYY-MM-DD/hour=HH/<table>.parquet         one event hour summarised (rollup)
//! rollups/v1/dt=YYYY-MM-DD/hour=HH/rollup.json             and its key (written last)
//! checkpoints/<run_id>/state-<seq:010>.ckpt                 and its progress
//! ```
//!
//! Names inside a run's or a checkpoint folder are returned as strings, because the manifest
//! stores them that way and readers take them from it; folders and whole objects as [`Path`]s.

use chrono::{DateTime, NaiveDate, Timelike, Utc};
use object_store::path::Path;

use crate::LakeError;

/// Top-level prefix of event partitions.
pub const EVENTS_PREFIX: &str = "events";
/// Top-level prefix of the error output (refused records).
pub const ERRORS_PREFIX: &str = "errors";
/// Top-level prefix of training runs.
pub const RUNS_PREFIX: &str = "runs";
/// Top-level prefix of the checkpoints of runs in progress (in the lake or another store).
pub const CHECKPOINTS_PREFIX: &str = "checkpoints";

/// Top-level prefix of the hourly rollups, followed by their format version.
pub const ROLLUPS_PREFIX: &str = "rollups";
/// The rollup format this build writes and reads: a folder of its own, so a new format is
/// written beside the old one instead of over it.
pub const ROLLUP_FORMAT: &str = "v1";
/// An hour's rollup key, written after its tables: its presence marks a complete rollup.
pub const ROLLUP_MARKER: &str = "rollup.json";

/// A run's manifest, written last: its presence marks a complete run.
pub const MANIFEST_FILE: &str = "manifest.json";
/// A run's fallback list (`recs::fallback_schema`).
pub const FALLBACK_TABLE: &str = "fallback.parquet";
/// A run's similar-article lists (`recs::similar_schema`).
pub const SIMILAR_TABLE: &str = "similar.parquet";
/// The served ALS model's factors, in checkpoint framing, next to the lists.
pub const ALS_FACTORS_OBJECT: &str = "als-factors.ckpt";
/// A run in progress's click log, written once.
pub const DATASET_CHECKPOINT: &str = "dataset.ckpt";

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

impl Partition {
    /// `rollups/v1/dt=YYYY-MM-DD/hour=HH`: the folder of this hour's rollup.
    pub fn rollup_prefix(&self) -> Path {
        Path::from(format!(
            "{ROLLUPS_PREFIX}/{ROLLUP_FORMAT}/dt={}/hour={:02}",
            self.date, self.hour
        ))
    }

    /// `rollups/v1/dt=YYYY-MM-DD/hour=HH/<name>`
    pub fn rollup_object_path(&self, name: &str) -> Path {
        self.rollup_prefix().join(name)
    }

    /// `dt=YYYY-MM-DD/hour=HH`, as logs and errors name the hour.
    pub fn label(&self) -> String {
        format!("dt={}/hour={:02}", self.date, self.hour)
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

/// `runs/<run_id>`: the folder of one training run.
pub fn run_prefix(run_id: &str) -> Path {
    Path::from(format!("{RUNS_PREFIX}/{run_id}"))
}

/// `runs/<run_id>/<name>`
pub fn run_object_path(run_id: &str, name: &str) -> Path {
    Path::from(format!("{RUNS_PREFIX}/{run_id}/{name}"))
}

/// The run id of a manifest path (`runs/<run_id>/manifest.json`), or `None` for any other path.
pub fn parse_run_manifest_path(path: &Path) -> Option<&str> {
    let mut parts = path.as_ref().split('/');
    let (prefix, run_id, file) = (parts.next()?, parts.next()?, parts.next()?);
    (prefix == RUNS_PREFIX && file == MANIFEST_FILE && parts.next().is_none()).then_some(run_id)
}

/// `recs-NNNNN.parquet`: part `index` (from 0) of a run's user lists; zero-padded so names sort.
pub fn recs_part_name(index: usize) -> String {
    format!("recs-{index:05}.parquet")
}

/// `checkpoints/<run_id>`: the folder of one run's checkpoints.
pub fn checkpoint_prefix(run_id: &str) -> Path {
    Path::from(format!("{CHECKPOINTS_PREFIX}/{run_id}"))
}

/// `checkpoints/<run_id>/<name>`
pub fn checkpoint_object_path(run_id: &str, name: &str) -> Path {
    checkpoint_prefix(run_id).join(name)
}

/// `state-<seq:010>.ckpt`: a run's progress after its `seq`-th saved state; zero-padded so
/// names sort by sequence.
pub fn state_checkpoint_name(seq: u64) -> String {
    format!("state-{seq:010}.ckpt")
}

/// The sequence number a state checkpoint's file name holds, or `None` for any other name.
pub fn parse_state_checkpoint_name(name: &str) -> Option<u64> {
    name.strip_prefix("state-")?
        .strip_suffix(".ckpt")?
        .parse()
        .ok()
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

    /// Existing lakes hold these names: a failure here means a change would orphan their
    /// objects (a lake written before it could no longer be read, published or resumed). Add a
    /// new name beside the old one instead, with a reader for both.
    #[test]
    fn every_name_is_pinned_to_the_layout_existing_lakes_hold() {
        let partition = Partition {
            date: NaiveDate::from_ymd_opt(2017, 10, 1).unwrap(),
            hour: 5,
        };
        let date = partition.date;
        let pinned: Vec<(String, &str)> = vec![
            (
                partition.prefix().to_string(),
                "events/dt=2017-10-01/hour=05",
            ),
            (day_prefix(date).to_string(), "events/dt=2017-10-01"),
            (
                event_object_path(partition, "node-1", 7).to_string(),
                "events/dt=2017-10-01/hour=05/node-1-00000000000000000007.parquet",
            ),
            (error_day_prefix(date).to_string(), "errors/dt=2017-10-01"),
            (
                error_object_path(partition, "node-1", 7).to_string(),
                "errors/dt=2017-10-01/hour=05/node-1-00000000000000000007.ndjson",
            ),
            (Path::from(RUNS_PREFIX).to_string(), "runs"),
            (run_prefix("r-1").to_string(), "runs/r-1"),
            (
                run_object_path("r-1", MANIFEST_FILE).to_string(),
                "runs/r-1/manifest.json",
            ),
            (
                run_object_path("r-1", &recs_part_name(0)).to_string(),
                "runs/r-1/recs-00000.parquet",
            ),
            (recs_part_name(12_345), "recs-12345.parquet"),
            (
                run_object_path("r-1", FALLBACK_TABLE).to_string(),
                "runs/r-1/fallback.parquet",
            ),
            (
                run_object_path("r-1", SIMILAR_TABLE).to_string(),
                "runs/r-1/similar.parquet",
            ),
            (
                run_object_path("r-1", ALS_FACTORS_OBJECT).to_string(),
                "runs/r-1/als-factors.ckpt",
            ),
            (checkpoint_prefix("r-1").to_string(), "checkpoints/r-1"),
            (
                partition.rollup_prefix().to_string(),
                "rollups/v1/dt=2017-10-01/hour=05",
            ),
            (
                partition.rollup_object_path(ROLLUP_MARKER).to_string(),
                "rollups/v1/dt=2017-10-01/hour=05/rollup.json",
            ),
            (partition.label(), "dt=2017-10-01/hour=05"),
            (
                checkpoint_object_path("r-1", DATASET_CHECKPOINT).to_string(),
                "checkpoints/r-1/dataset.ckpt",
            ),
            (
                checkpoint_object_path("r-1", &state_checkpoint_name(42)).to_string(),
                "checkpoints/r-1/state-0000000042.ckpt",
            ),
        ];
        for (built, literal) in pinned {
            assert_eq!(built, literal);
        }
    }

    #[test]
    fn names_parse_back() {
        let manifest = run_object_path("2017-10-09_a.b", MANIFEST_FILE);
        assert_eq!(parse_run_manifest_path(&manifest), Some("2017-10-09_a.b"));
        for other in [
            "runs/r/fallback.parquet",
            "runs/r/x/manifest.json",
            "runs/manifest.json",
            "checkpoints/r/manifest.json",
        ] {
            assert_eq!(parse_run_manifest_path(&Path::from(other)), None, "{other}");
        }
        assert_eq!(
            parse_state_checkpoint_name(&state_checkpoint_name(7)),
            Some(7)
        );
        assert_eq!(parse_state_checkpoint_name(DATASET_CHECKPOINT), None);
        assert_eq!(parse_state_checkpoint_name("state-x.ckpt"), None);
        assert_eq!(parse_state_checkpoint_name("state-1.ckpt.tmp"), None);
    }
}
