//! Real-time signals fed by ingest: what is read right now, what is read after what, and what
//! each user has just read.
//!
//! Consumes acked clicks (`Signals::observe`, called when a request is acked, before the events
//! reach the lake) and answers serving's questions: the trending ranking, an article's
//! co-visited neighbours, a user's recent reads, and the watermark. Everything is driven by event
//! time: the watermark is the newest event time seen, and a click more than `max_lateness_ms`
//! behind it is not counted (it still reaches the lake), so backfills and replays behave like
//! live traffic. Memory is bounded by [`SignalLimits`], read from the `[signals]` section
//! ([`Settings`]); [`Signals::stats`] reports it.
//!
//! Pure in-memory state with no I/O: a node shares it between ingest and serve in-process, and
//! split roles carry the clicks to other nodes through `newsrec-feed`.

mod covisit;
mod decay;
mod reads;
mod settings;
mod trending;

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

pub use covisit::{CoVisitLimits, CoVisitation};
pub use reads::{HistoryLimits, ReadHistory};
pub use settings::{Settings, SettingsError};
pub use trending::{Trending, TrendingLimits, TrendingSnapshot};

/// Every bound and rate of the signals, in event-time milliseconds (from [`Settings::limits`]).
#[derive(Debug, Clone, Copy)]
pub struct SignalLimits {
    pub trending: TrendingLimits,
    pub covisit: CoVisitLimits,
    pub reads: HistoryLimits,
    /// Clicks older than this behind the watermark are not counted.
    pub max_lateness_ms: i64,
}

impl Default for SignalLimits {
    /// The `[signals]` defaults with the read history's own.
    fn default() -> SignalLimits {
        Settings::default().limits(HistoryLimits::default())
    }
}

/// What memory the signals hold (reported in metrics and by `eval --protocol replay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalStats {
    pub watermark_ms: i64,
    pub clicks: u64,
    pub late_clicks: u64,
    pub trending_articles: usize,
    pub covisit_sources: usize,
    pub covisit_edges: usize,
    pub users: usize,
    /// Approximate bytes of all three structures.
    pub memory_bytes: usize,
}

/// Whether a click was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    Counted,
    /// More than `max_lateness_ms` behind the watermark.
    TooLate,
}

/// The signals of one node.
#[derive(Debug)]
pub struct Signals {
    limits: SignalLimits,
    trending: Trending,
    covisit: CoVisitation,
    reads: ReadHistory,
    clicks: AtomicU64,
    late: AtomicU64,
}

impl Signals {
    pub fn new(limits: SignalLimits) -> Arc<Signals> {
        Arc::new(Signals {
            limits,
            trending: Trending::new(limits.trending),
            covisit: CoVisitation::new(limits.covisit),
            reads: ReadHistory::new(limits.reads),
            clicks: AtomicU64::new(0),
            late: AtomicU64::new(0),
        })
    }

    pub fn limits(&self) -> &SignalLimits {
        &self.limits
    }

    /// One acked click: counts it in trending, links it to the user's recent reads, records it.
    pub fn observe(&self, user_id: &str, article_id: &str, ts_ms: i64) -> Observed {
        let watermark = self.reads.watermark_ms().max(ts_ms);
        if ts_ms < watermark - self.limits.max_lateness_ms {
            self.late.fetch_add(1, Ordering::Relaxed);
            return Observed::TooLate;
        }
        self.clicks.fetch_add(1, Ordering::Relaxed);
        self.trending.add(article_id, ts_ms, watermark);
        let previous = self.reads.recent(user_id);
        self.covisit.observe(article_id, ts_ms, &previous);
        self.reads.record(user_id, article_id, ts_ms);
        Observed::Counted
    }

    /// Newest event time seen (epoch ms), 0 before any.
    pub fn watermark_ms(&self) -> i64 {
        self.reads.watermark_ms()
    }

    /// The trending ranking as of the watermark.
    pub fn trending(&self) -> Arc<TrendingSnapshot> {
        self.trending.top(self.watermark_ms())
    }

    /// The strongest co-visited neighbours of `article_id`, best first.
    pub fn covisited(&self, article_id: &str, n: usize) -> Vec<(Arc<str>, f64)> {
        self.covisit.neighbours(article_id, self.watermark_ms(), n)
    }

    /// Like [`Signals::covisited`], with the total weight of all of the article's edges.
    pub fn covisit_neighbourhood(&self, article_id: &str, n: usize) -> (Vec<(Arc<str>, f64)>, f64) {
        self.covisit
            .neighbourhood(article_id, self.watermark_ms(), n)
    }

    /// The user's reads within the TTL, oldest first.
    pub fn recent_reads(&self, user_id: &str) -> Vec<(String, i64)> {
        self.reads.recent(user_id)
    }

    pub fn stats(&self) -> SignalStats {
        SignalStats {
            watermark_ms: self.watermark_ms(),
            clicks: self.clicks.load(Ordering::Relaxed),
            late_clicks: self.late.load(Ordering::Relaxed),
            trending_articles: self.trending.len(),
            covisit_sources: self.covisit.sources(),
            covisit_edges: self.covisit.edges(),
            users: self.reads.users(),
            memory_bytes: self.trending.memory_bytes()
                + self.covisit.memory_bytes()
                + self.reads.memory_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_clicks_are_not_counted_and_the_rest_are() {
        let signals = Signals::new(SignalLimits::default());
        assert_eq!(signals.observe("u", "a", 10_000_000), Observed::Counted);
        assert_eq!(signals.observe("u", "b", 10_000_100), Observed::Counted);
        assert_eq!(signals.observe("v", "c", 1), Observed::TooLate);
        let stats = signals.stats();
        assert_eq!((stats.clicks, stats.late_clicks), (2, 1));
        assert_eq!(signals.recent_reads("u").len(), 2);
        assert_eq!(&*signals.covisited("a", 5)[0].0, "b");
        assert_eq!(signals.trending().items.len(), 2);
        assert!(stats.memory_bytes > 0);
    }
}
