//! What an hour's rollup holds: its tables, what each row means, their schemas, and the settings
//! each depends on. The pass computing them is `summary.rs`.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::RollupError;

/// The settings rollups are computed with. Each table depends on some of them; a change
/// recomputes only the tables it touches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RollupSettings {
    /// Half-life, in hours, of the decayed click mass in `articles` (popularity's half-life).
    /// 0: no decay (the mass is the click count).
    pub decay_half_life_hours: f64,
    /// A session's first this many distinct articles form its co-visitation pairs; bounds the
    /// pairs of one session (a crawler reading thousands of articles adds at most n·(n-1)).
    pub session_articles: u32,
    /// Partners kept per article and hour in `pairs`, the most co-visited first.
    pub pairs_per_article: u32,
}

impl Default for RollupSettings {
    fn default() -> Self {
        RollupSettings {
            decay_half_life_hours: 2.0,
            session_articles: 20,
            pairs_per_article: 100,
        }
    }
}

impl RollupSettings {
    /// Why these settings cannot be used, naming the field.
    pub fn validate(&self) -> Result<(), RollupError> {
        if !(self.decay_half_life_hours >= 0.0 && self.decay_half_life_hours.is_finite()) {
            return Err(RollupError::Settings {
                name: "decay_half_life_hours",
                reason: format!(
                    "must be a finite number >= 0, got {}",
                    self.decay_half_life_hours
                ),
            });
        }
        // Below 0.05 h the weight of an hour's first click (2^-20) rounds to nothing in the
        // fixed-point mass; such a half-life would ignore the hour anyway.
        if self.decay_half_life_hours > 0.0 && self.decay_half_life_hours < 0.05 {
            return Err(RollupError::Settings {
                name: "decay_half_life_hours",
                reason: format!(
                    "must be 0 or at least 0.05, got {}",
                    self.decay_half_life_hours
                ),
            });
        }
        if !(2..=1_000).contains(&self.session_articles) {
            return Err(RollupError::Settings {
                name: "session_articles",
                reason: format!("must be 2..=1000, got {}", self.session_articles),
            });
        }
        if !(1..=10_000).contains(&self.pairs_per_article) {
            return Err(RollupError::Settings {
                name: "pairs_per_article",
                reason: format!("must be 1..=10000, got {}", self.pairs_per_article),
            });
        }
        Ok(())
    }
}

/// Fixed-point scale of the decayed click mass: integer sums are the same whatever order the
/// engine adds them in, which a float sum is not, and rollups must be byte-identical however
/// they were computed.
pub const DECAY_SCALE: f64 = 1e9;

/// One table of an hour's rollup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RollupTable {
    /// One row per article clicked in the hour: `article_id`, `clicks`, distinct `users`,
    /// distinct `sessions` (among those whose first `session_articles` include it),
    /// `first_ms`, `last_ms`, and `decay_e9`, the sum over its clicks of
    /// `0.5^((hour_end - ts) / half_life)` times [`DECAY_SCALE`]. Popularity over any window
    /// ending at or after the hour is `Σ decay_e9 · 0.5^((end - hour_end) / half_life)`.
    Articles,
    /// Session co-visitation: `article_id`, `other_id`, `sessions` that read both (each
    /// direction is a row), the `pairs_per_article` best partners per article.
    Pairs,
    /// One row per user and article read in the hour: `user_id`, `article_id`, `clicks`,
    /// `first_ms`, `last_ms`; sorted by user, then article.
    UserArticles,
}

impl RollupTable {
    /// Every table, in the order they are computed and listed in the key.
    pub const ALL: [RollupTable; 3] = [
        RollupTable::Articles,
        RollupTable::Pairs,
        RollupTable::UserArticles,
    ];

    /// The table's name in the key and in logs.
    pub fn name(self) -> &'static str {
        match self {
            RollupTable::Articles => "articles",
            RollupTable::Pairs => "pairs",
            RollupTable::UserArticles => "user_articles",
        }
    }

    /// The object name inside the hour's rollup folder.
    pub fn object_name(self) -> String {
        format!("{}.parquet", self.name())
    }

    /// The schema of the table's object.
    pub fn schema(self) -> SchemaRef {
        let text = |name| Field::new(name, DataType::Utf8, false);
        let int = |name| Field::new(name, DataType::Int64, false);
        let fields = match self {
            RollupTable::Articles => vec![
                text("article_id"),
                int("clicks"),
                int("users"),
                int("sessions"),
                int("first_ms"),
                int("last_ms"),
                int("decay_e9"),
            ],
            RollupTable::Pairs => vec![text("article_id"), text("other_id"), int("sessions")],
            RollupTable::UserArticles => vec![
                text("user_id"),
                text("article_id"),
                int("clicks"),
                int("first_ms"),
                int("last_ms"),
            ],
        };
        Arc::new(Schema::new(fields))
    }

    /// The settings this table depends on, as the canonical text its hash is taken of.
    pub(crate) fn settings_text(self, settings: &RollupSettings) -> String {
        match self {
            RollupTable::Articles => format!(
                "articles/1 decay_half_life_hours={} session_articles={}",
                settings.decay_half_life_hours, settings.session_articles
            ),
            RollupTable::Pairs => format!(
                "pairs/1 session_articles={} pairs_per_article={}",
                settings.session_articles, settings.pairs_per_article
            ),
            RollupTable::UserArticles => "user_articles/1".to_owned(),
        }
    }
}

/// SQL counting the hour's events: all of them, and the click rows before deduplication (the
/// clicks after it are the sum of `articles.clicks`). Plain sums: a distinct count here would
/// hold every event id of the hour in memory.
pub(crate) fn counts_sql(events: &str) -> String {
    format!(
        "SELECT CAST(COUNT(*) AS BIGINT) AS events,
                CAST(COALESCE(SUM(CASE WHEN type = 'click' THEN 1 ELSE 0 END), 0) AS BIGINT)
                  AS click_rows
         FROM {events}"
    )
}
