//! The `[serve]` section: the listener, list lengths, keys, load shedding, article expiry, the
//! read history's bounds, and the blend (`[serve.blend]`, [`Blend`]).
//!
//! Hours become the event-time milliseconds the node runs on here ([`Settings::article_max_age_ms`],
//! [`Settings::history_limits`]) and nowhere else.

use newsrec_signals::HistoryLimits;
use serde::{Deserialize, Serialize};

use crate::Blend;

const HOUR_MS: i64 = 3_600_000;

/// The `[serve]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address `newsrec up` listens on.
    pub listen: String,
    /// List length when a request gives no `k`.
    pub default_k: usize,
    /// Largest `k` a request may ask for.
    pub max_k: usize,
    /// How often a serving node checks the store for a new generation.
    pub refresh_interval_ms: u64,
    /// Bearer keys accepted by the recommendation routes; empty = open.
    pub api_keys: Vec<String>,
    /// Bearer keys accepted by the admin routes (article registration); empty = open.
    pub admin_keys: Vec<String>,
    /// An article is not served once this many hours have passed since it was published (or,
    /// publish time unknown, since its first click), unless it has its own expiry.
    pub article_max_age_hours: u32,
    /// Recommendation requests served at once; more wait up to `queue_budget_ms`...
    pub max_in_flight: usize,
    /// ...and are then refused with a fast 503 + Retry-After.
    pub queue_budget_ms: u64,
    /// Users whose recent reads this node remembers (for filtering read articles).
    pub history_max_users: usize,
    /// Recent reads remembered per user.
    pub history_reads_per_user: usize,
    /// How long a read is remembered, hours of event time.
    pub history_ttl_hours: u32,
    pub blend: Blend,
}

impl Default for Settings {
    fn default() -> Self {
        // The read history's defaults are its own (signals); these keys only set them.
        let history = HistoryLimits::default();
        Settings {
            listen: "127.0.0.1:8080".into(),
            default_k: 10,
            max_k: 100,
            refresh_interval_ms: 1_000,
            api_keys: Vec::new(),
            admin_keys: Vec::new(),
            article_max_age_hours: 48,
            max_in_flight: 512,
            queue_budget_ms: 50,
            history_max_users: history.max_users,
            history_reads_per_user: history.max_reads_per_user,
            history_ttl_hours: (history.ttl_ms / HOUR_MS) as u32,
            blend: Blend::default(),
        }
    }
}

/// A `[serve]` setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct SettingsError {
    /// The key inside the section, e.g. `blend.daily_weight`.
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
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return invalid(
                "listen",
                format!(
                    "must be an address like 127.0.0.1:8080, got {:?}",
                    self.listen
                ),
            );
        }
        if !(1..=1000).contains(&self.max_k) || self.default_k == 0 || self.default_k > self.max_k {
            return invalid(
                "default_k",
                format!(
                    "need 1 <= default_k ({}) <= max_k ({}) <= 1000",
                    self.default_k, self.max_k
                ),
            );
        }
        for (key, value, min, max) in [
            ("refresh_interval_ms", self.refresh_interval_ms, 50, 600_000),
            (
                "article_max_age_hours",
                u64::from(self.article_max_age_hours),
                1,
                24 * 3650,
            ),
            ("max_in_flight", self.max_in_flight as u64, 1, 100_000),
            (
                "history_max_users",
                self.history_max_users as u64,
                1,
                100_000_000,
            ),
            (
                "history_reads_per_user",
                self.history_reads_per_user as u64,
                1,
                10_000,
            ),
            (
                "history_ttl_hours",
                u64::from(self.history_ttl_hours),
                1,
                24 * 365,
            ),
        ] {
            if !(min..=max).contains(&value) {
                return invalid(key, format!("must be {min}..={max}, got {value}"));
            }
        }
        if self.queue_budget_ms > 10_000 {
            return invalid(
                "queue_budget_ms",
                format!("must be at most 10000, got {}", self.queue_budget_ms),
            );
        }
        self.blend.validate().map_err(|error| SettingsError {
            key: format!("blend.{}", error.key),
            reason: error.reason,
        })
    }

    /// `article_max_age_hours` in milliseconds.
    pub fn article_max_age_ms(&self) -> i64 {
        i64::from(self.article_max_age_hours) * HOUR_MS
    }

    /// The read history's bounds from the `history_*` keys.
    pub fn history_limits(&self) -> HistoryLimits {
        HistoryLimits {
            max_users: self.history_max_users,
            max_reads_per_user: self.history_reads_per_user,
            ttl_ms: i64::from(self.history_ttl_hours) * HOUR_MS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_keep_the_read_history_s_own() {
        let settings = Settings::default();
        settings.validate().unwrap();
        assert_eq!(settings.history_limits(), HistoryLimits::default());
        assert_eq!(settings.article_max_age_ms(), 48 * HOUR_MS);
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        let key = |edit: fn(&mut Settings)| {
            let mut settings = Settings::default();
            edit(&mut settings);
            settings.validate().unwrap_err().key
        };
        assert_eq!(key(|s| s.listen = "localhost".into()), "listen");
        assert_eq!(key(|s| s.default_k = 101), "default_k");
        assert_eq!(key(|s| s.history_ttl_hours = 0), "history_ttl_hours");
        assert_eq!(key(|s| s.blend.daily_weight = 2.0), "blend.daily_weight");
        assert_eq!(
            key(|s| s.blend.covisit_prior = 1001.0),
            "blend.covisit_prior"
        );
        assert_eq!(key(|s| s.blend.covisit_seeds = 101), "blend.covisit_seeds");
    }
}
