//! The `[signals]` section: the signals' bounds in the units an operator thinks in (minutes,
//! seconds), and where the clicks that feed them are shared between nodes.
//!
//! [`Settings::limits`] is the one conversion to the event-time milliseconds the structures
//! run on. The read history's bounds are keys of `[serve]` (serving filters with them), so the
//! caller passes them in.

use serde::{Deserialize, Serialize};

use crate::{CoVisitLimits, HistoryLimits, SignalLimits, TrendingLimits};

/// The `[signals]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Half-life of an article's click count, minutes of event time.
    pub trending_half_life_min: u32,
    /// Articles whose counts are kept.
    pub trending_max_articles: usize,
    /// Articles in the ranked trending snapshot.
    pub trending_snapshot: usize,
    /// The snapshot is re-ranked after this many ms once clicks arrived.
    pub refresh_ms: u64,
    /// Half-life of a co-visitation edge, minutes.
    pub covisit_half_life_min: u32,
    /// A read links to the reader's earlier reads within this many minutes...
    pub covisit_window_min: u32,
    /// ...at most this many of them.
    pub covisit_lookback: usize,
    /// Weight of the backward edge B → A when A was read before B (the forward edge counts 1).
    pub covisit_backward_weight: f64,
    /// Neighbours kept per article (the weakest makes way).
    pub covisit_max_neighbours: usize,
    /// Articles with neighbours kept.
    pub covisit_max_articles: usize,
    /// Clicks this far behind the newest event time are not counted (they still reach the lake).
    pub max_lateness_s: u64,
    /// Empty: signals live in this node, fed by its own ingest. `redis://host:port`: ingest nodes
    /// publish acked clicks to a Redis stream and serving nodes consume it (split roles).
    pub share: String,
    /// The Redis stream name.
    pub share_stream: String,
    /// Entries the stream retains (approximate): a serving node that starts replays them.
    pub share_max_len: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            trending_half_life_min: 60,
            trending_max_articles: 200_000,
            trending_snapshot: 200,
            refresh_ms: 250,
            covisit_half_life_min: 20,
            covisit_window_min: 30,
            covisit_lookback: 3,
            covisit_backward_weight: 0.0,
            covisit_max_neighbours: 50,
            covisit_max_articles: 200_000,
            max_lateness_s: 3_600,
            share: String::new(),
            share_stream: "newsrec:clicks".into(),
            share_max_len: 1_000_000,
        }
    }
}

/// A `[signals]` setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct SettingsError {
    /// The key inside the section, e.g. `covisit_window_min`.
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
        for (key, minutes) in [
            ("trending_half_life_min", self.trending_half_life_min),
            ("covisit_half_life_min", self.covisit_half_life_min),
            ("covisit_window_min", self.covisit_window_min),
        ] {
            if !(1..=10_080).contains(&minutes) {
                return invalid(key, format!("must be 1..=10080 minutes, got {minutes}"));
            }
        }
        for (key, count) in [
            ("trending_max_articles", self.trending_max_articles),
            ("trending_snapshot", self.trending_snapshot),
            ("covisit_max_neighbours", self.covisit_max_neighbours),
            ("covisit_max_articles", self.covisit_max_articles),
            ("covisit_lookback", self.covisit_lookback),
        ] {
            if !(1..=100_000_000).contains(&count) {
                return invalid(key, format!("must be 1..=100000000, got {count}"));
            }
        }
        if !(0.0..=10.0).contains(&self.covisit_backward_weight) {
            return invalid(
                "covisit_backward_weight",
                format!("must be 0..=10, got {}", self.covisit_backward_weight),
            );
        }
        if !self.share.is_empty()
            && !self.share.starts_with("redis://")
            && !self.share.starts_with("rediss://")
        {
            return invalid(
                "share",
                format!("must be empty or a redis:// URL, got {:?}", self.share),
            );
        }
        if self.share_stream.is_empty() || self.share_max_len == 0 {
            return invalid(
                "share_stream",
                "the stream needs a name and share_max_len >= 1".into(),
            );
        }
        Ok(())
    }

    /// The bounds in event-time milliseconds, with the read history's `reads`.
    pub fn limits(&self, reads: HistoryLimits) -> SignalLimits {
        let minutes = |m: u32| i64::from(m) * 60_000;
        SignalLimits {
            trending: TrendingLimits {
                half_life_ms: minutes(self.trending_half_life_min),
                max_articles: self.trending_max_articles,
                snapshot_len: self.trending_snapshot,
                refresh_ms: self.refresh_ms as i64,
            },
            covisit: CoVisitLimits {
                half_life_ms: minutes(self.covisit_half_life_min),
                window_ms: minutes(self.covisit_window_min),
                lookback: self.covisit_lookback,
                backward_weight: self.covisit_backward_weight,
                max_neighbours: self.covisit_max_neighbours,
                max_articles: self.covisit_max_articles,
            },
            reads,
            max_lateness_ms: self.max_lateness_s as i64 * 1000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_and_seconds_become_milliseconds() {
        let settings = Settings {
            trending_half_life_min: 2,
            covisit_window_min: 3,
            max_lateness_s: 4,
            ..Settings::default()
        };
        settings.validate().unwrap();
        let limits = settings.limits(HistoryLimits::default());
        assert_eq!(limits.trending.half_life_ms, 120_000);
        assert_eq!(limits.covisit.window_ms, 180_000);
        assert_eq!(limits.covisit.half_life_ms, 20 * 60_000);
        assert_eq!(limits.max_lateness_ms, 4_000);
        assert_eq!(limits.reads, HistoryLimits::default());
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        let key = |edit: fn(&mut Settings)| {
            let mut settings = Settings::default();
            edit(&mut settings);
            settings.validate().unwrap_err().key
        };
        assert_eq!(key(|s| s.covisit_window_min = 0), "covisit_window_min");
        assert_eq!(key(|s| s.trending_snapshot = 0), "trending_snapshot");
        assert_eq!(
            key(|s| s.covisit_backward_weight = f64::NAN),
            "covisit_backward_weight"
        );
        assert_eq!(key(|s| s.share = "http://x".into()), "share");
        assert_eq!(key(|s| s.share_max_len = 0), "share_stream");
    }
}
