//! The `[ingest]` section: request bounds, when a request is acknowledged, the buffer and
//! backlog bounds, the write-ahead log's folder, write keys and CORS origins.
//!
//! MiB and seconds become the pipeline's bytes and durations in [`Settings::pipeline_options`]
//! and nowhere else.

use std::{path::PathBuf, time::Duration};

use newsrec_wal::WalOptions;
use serde::{Deserialize, Serialize};

use crate::{AckMode, PipelineOptions};

/// The `[ingest]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Most records accepted in one request.
    pub max_records_per_request: usize,
    /// When a request is answered: after the write-ahead log's fsync, after the lake object,
    /// or at once (at-most-once).
    pub ack: AckMode,
    /// Buffered events are written to the lake when they reach this size (MiB, 1..=128)...
    pub buffer_size_mib: u32,
    /// ...or when the oldest has waited this long (seconds, 0..=900; 0 = at once).
    pub buffer_interval_s: u32,
    /// Accepted bytes not yet in the lake past which requests get 429 (MiB).
    pub max_backlog_mib: u32,
    /// Folder of the write-ahead log; empty means `<data-dir>/wal`.
    pub wal_dir: String,
    /// Bearer keys accepted by `POST /v1/events`; empty = open (e.g. browsers on a trusted site).
    pub write_keys: Vec<String>,
    /// Origins allowed to post events from a browser (CORS); empty = no CORS headers.
    pub cors_origins: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_body_bytes: 4 * 1024 * 1024,
            max_records_per_request: 10_000,
            ack: AckMode::Wal,
            buffer_size_mib: 16,
            buffer_interval_s: 60,
            max_backlog_mib: 256,
            wal_dir: String::new(),
            write_keys: Vec::new(),
            cors_origins: Vec::new(),
        }
    }
}

/// An `[ingest]` setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct SettingsError {
    /// The key inside the section, e.g. `buffer_size_mib`.
    pub key: String,
    pub reason: String,
}

impl Settings {
    /// Range-checks every value; the first one out of range is named.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |key: &str, reason: String| {
            Err(SettingsError {
                key: key.into(),
                reason,
            })
        };
        if !(1024..=256 * 1024 * 1024).contains(&self.max_body_bytes) {
            return invalid(
                "max_body_bytes",
                format!("must be 1 KiB..=256 MiB, got {}", self.max_body_bytes),
            );
        }
        if !(1..=1_000_000).contains(&self.max_records_per_request) {
            return invalid(
                "max_records_per_request",
                format!("must be 1..=1000000, got {}", self.max_records_per_request),
            );
        }
        if !(1..=128).contains(&self.buffer_size_mib) {
            return invalid(
                "buffer_size_mib",
                format!("must be 1..=128, got {}", self.buffer_size_mib),
            );
        }
        if self.buffer_interval_s > 900 {
            return invalid(
                "buffer_interval_s",
                format!("must be 0..=900 seconds, got {}", self.buffer_interval_s),
            );
        }
        if self.max_backlog_mib < 2 * self.buffer_size_mib || self.max_backlog_mib > 65_536 {
            return invalid(
                "max_backlog_mib",
                format!(
                    "must be at least twice buffer_size_mib ({}) and at most 65536, got {}",
                    self.buffer_size_mib, self.max_backlog_mib
                ),
            );
        }
        for origin in &self.cors_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return invalid(
                    "cors_origins",
                    format!("each origin must start with http:// or https://, got {origin:?}"),
                );
            }
        }
        Ok(())
    }

    /// The pipeline of node `node_id` with its write-ahead log in `wal_dir` (`wal_dir` of the
    /// section when set, else the node's default folder).
    pub fn pipeline_options(&self, node_id: String, wal_dir: PathBuf) -> PipelineOptions {
        PipelineOptions {
            node_id,
            wal_dir,
            wal: WalOptions::default(),
            buffer_bytes: u64::from(self.buffer_size_mib) << 20,
            buffer_interval: Duration::from_secs(u64::from(self.buffer_interval_s)),
            max_backlog_bytes: u64::from(self.max_backlog_mib) << 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mebibytes_and_seconds_become_bytes_and_durations() {
        let settings = Settings {
            buffer_size_mib: 2,
            buffer_interval_s: 5,
            max_backlog_mib: 4,
            ..Settings::default()
        };
        settings.validate().unwrap();
        let options = settings.pipeline_options("n".into(), PathBuf::from("w"));
        assert_eq!(options.buffer_bytes, 2 << 20);
        assert_eq!(options.buffer_interval, Duration::from_secs(5));
        assert_eq!(options.max_backlog_bytes, 4 << 20);
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        let key = |edit: fn(&mut Settings)| {
            let mut settings = Settings::default();
            edit(&mut settings);
            settings.validate().unwrap_err().key
        };
        assert_eq!(key(|s| s.max_body_bytes = 10), "max_body_bytes");
        assert_eq!(key(|s| s.max_backlog_mib = 31), "max_backlog_mib");
        assert_eq!(
            key(|s| s.cors_origins = vec!["news.example".into()]),
            "cors_origins"
        );
    }

    #[test]
    fn the_ack_mode_reads_its_lowercase_names() {
        for (name, mode) in [
            ("wal", AckMode::Wal),
            ("lake", AckMode::Lake),
            ("none", AckMode::None),
        ] {
            let json = format!("\"{name}\"");
            assert_eq!(serde_json::from_str::<AckMode>(&json).unwrap(), mode);
            assert_eq!(serde_json::to_string(&mode).unwrap(), json);
        }
    }
}
