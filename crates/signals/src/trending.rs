//! Per-article decayed click counts and the ranked "trending now" list serving reads.
//!
//! Every acked click adds one to its article's count, decayed with a half-life in event time.
//! Serving does not rank on each request: it reads a snapshot of the top articles, recomputed by
//! the first reader that finds it stale: clicks since, and `refresh_ms` of event time passed (or no
//! ranking yet). The rule reads no clock, so the list is a pure function of the clicks and the
//! watermark: two replays of the same clicks serve the same lists, and on a live node, where
//! event time follows the wall clock, a burst shows within `refresh_ms`.
//!
//! Memory bound: at most `max_articles` counts. A new article at capacity first drops counts
//! that have decayed below [`FORGET_BELOW`]; if none has, the weakest tenth goes.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use crate::decay::Decayed;

/// A count this small is noise (one click, about seven half-lives ago).
pub const FORGET_BELOW: f64 = 0.01;

/// Settings of [`Trending`].
#[derive(Debug, Clone, Copy)]
pub struct TrendingLimits {
    pub half_life_ms: i64,
    pub max_articles: usize,
    /// Articles kept in the ranked snapshot.
    pub snapshot_len: usize,
    pub refresh_ms: i64,
}

/// The ranked trending list at one moment.
#[derive(Debug, Clone, Default)]
pub struct TrendingSnapshot {
    /// Event time the ranking was computed at.
    pub at_ms: i64,
    /// Best first: article id and decayed clicks at `at_ms`.
    pub items: Vec<(Arc<str>, f64)>,
    version: u64,
}

#[derive(Debug)]
struct Computed {
    snapshot: Arc<TrendingSnapshot>,
    /// Whether a ranking was made (the empty initial snapshot is always stale once clicked).
    ranked: bool,
}

/// Decayed click counts per article.
#[derive(Debug)]
pub struct Trending {
    limits: TrendingLimits,
    counts: Mutex<HashMap<Arc<str>, Decayed>>,
    version: AtomicU64,
    computed: RwLock<Computed>,
    ranking: Mutex<()>,
}

impl Trending {
    pub fn new(limits: TrendingLimits) -> Trending {
        Trending {
            limits,
            counts: Mutex::default(),
            version: AtomicU64::new(0),
            computed: RwLock::new(Computed {
                snapshot: Arc::default(),
                ranked: false,
            }),
            ranking: Mutex::default(),
        }
    }

    /// Articles with a count.
    pub fn len(&self) -> usize {
        lock(&self.counts).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate bytes held (keys, values, table overhead).
    pub fn memory_bytes(&self) -> usize {
        let counts = lock(&self.counts);
        counts.keys().map(|key| key.len()).sum::<usize>()
            + counts.capacity() * (std::mem::size_of::<(Arc<str>, Decayed)>() + 1)
    }

    /// One click on `article_id` at `ts_ms`; `now_ms` is the watermark.
    pub fn add(&self, article_id: &str, ts_ms: i64, now_ms: i64) {
        let half_life = self.limits.half_life_ms;
        let mut counts = lock(&self.counts);
        if let Some(count) = counts.get_mut(article_id) {
            count.add(1.0, ts_ms, half_life);
        } else {
            if counts.len() >= self.limits.max_articles {
                forget(&mut counts, self.limits.max_articles, now_ms, half_life);
            }
            counts.insert(Arc::from(article_id), Decayed::new(1.0, ts_ms));
        }
        self.version.fetch_add(1, Ordering::Release);
    }

    /// The decayed count of one article at `now_ms` (0 when unknown).
    pub fn count(&self, article_id: &str, now_ms: i64) -> f64 {
        lock(&self.counts)
            .get(article_id)
            .map_or(0.0, |count| count.at(now_ms, self.limits.half_life_ms))
    }

    /// The ranked list as of `now_ms`, recomputed when stale (see the module doc).
    pub fn top(&self, now_ms: i64) -> Arc<TrendingSnapshot> {
        let (snapshot, ranked) = {
            let computed = self.computed.read().unwrap_or_else(|p| p.into_inner());
            (Arc::clone(&computed.snapshot), computed.ranked)
        };
        let version = self.version.load(Ordering::Acquire);
        let stale = snapshot.version != version
            && (!ranked || now_ms - snapshot.at_ms >= self.limits.refresh_ms);
        if !stale {
            return snapshot;
        }
        // One reader ranks; the others keep serving the previous snapshot meanwhile.
        let Ok(_ranking) = self.ranking.try_lock() else {
            return snapshot;
        };
        let fresh = Arc::new(self.rank(now_ms, version));
        let mut computed = self.computed.write().unwrap_or_else(|p| p.into_inner());
        computed.snapshot = Arc::clone(&fresh);
        computed.ranked = true;
        fresh
    }

    fn rank(&self, now_ms: i64, version: u64) -> TrendingSnapshot {
        let half_life = self.limits.half_life_ms;
        let mut items: Vec<(Arc<str>, f64)> = lock(&self.counts)
            .iter()
            .map(|(article, count)| (Arc::clone(article), count.at(now_ms, half_life)))
            .filter(|(_, count)| *count >= FORGET_BELOW)
            .collect();
        let n = self.limits.snapshot_len.min(items.len());
        let order =
            |a: &(Arc<str>, f64), b: &(Arc<str>, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if n < items.len() && n > 0 {
            items.select_nth_unstable_by(n - 1, order);
            items.truncate(n);
        }
        items.sort_unstable_by(order);
        items.truncate(n);
        TrendingSnapshot {
            at_ms: now_ms,
            items,
            version,
        }
    }
}

/// Makes room for one more count: drops the forgotten ones, else the weakest tenth.
fn forget(
    counts: &mut HashMap<Arc<str>, Decayed>,
    max_articles: usize,
    now_ms: i64,
    half_life_ms: i64,
) {
    counts.retain(|_, count| count.at(now_ms, half_life_ms) >= FORGET_BELOW);
    if counts.len() < max_articles || counts.is_empty() {
        return;
    }
    let mut values: Vec<f64> = counts
        .values()
        .map(|c| c.at(now_ms, half_life_ms))
        .collect();
    let cut = (counts.len() / 10).max(1) - 1;
    values.select_nth_unstable_by(cut, f64::total_cmp);
    let threshold = values[cut];
    let mut dropped = 0;
    counts.retain(|_, count| {
        if dropped <= cut && count.at(now_ms, half_life_ms) <= threshold {
            dropped += 1;
            false
        } else {
            true
        }
    });
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trending(max_articles: usize) -> Trending {
        Trending::new(TrendingLimits {
            half_life_ms: 3_600_000,
            max_articles,
            snapshot_len: 3,
            refresh_ms: 0,
        })
    }

    #[test]
    fn ranks_recent_clicks_above_older_ones() {
        let trending = trending(100);
        for _ in 0..4 {
            trending.add("old", 0, 0);
        }
        for _ in 0..3 {
            trending.add("new", 3 * 3_600_000, 3 * 3_600_000);
        }
        trending.add("one", 3 * 3_600_000, 3 * 3_600_000);
        let top = trending.top(3 * 3_600_000);
        let ids: Vec<&str> = top.items.iter().map(|(id, _)| &**id).collect();
        // "old" has 4 clicks three half-lives ago: 0.5 now.
        assert_eq!(ids, ["new", "one", "old"]);
        assert!((top.items[2].1 - 0.5).abs() < 1e-9);
    }

    #[test]
    fn stays_within_its_article_bound() {
        let trending = trending(50);
        for i in 0..1_000 {
            trending.add(&format!("a{i}"), i, i);
        }
        assert!(trending.len() <= 50, "{}", trending.len());
        assert_eq!(trending.top(1_000).items[0].0.as_ref(), "a999");
    }

    #[test]
    fn snapshot_is_reused_until_refresh_is_due() {
        let trending = Trending::new(TrendingLimits {
            half_life_ms: 3_600_000,
            max_articles: 10,
            snapshot_len: 10,
            refresh_ms: 60_000,
        });
        trending.add("a", 0, 0);
        assert_eq!(trending.top(0).items.len(), 1, "the first read ranks");
        trending.add("b", 1, 1);
        assert_eq!(trending.top(1).items.len(), 1, "not due yet");
        assert_eq!(trending.top(60_001).items.len(), 2, "due by event time");
    }

    #[test]
    fn wall_time_never_refreshes_the_snapshot() {
        // Replays must be reproducible: only event time may make a snapshot due, however long
        // the reader takes between two requests.
        let trending = Trending::new(TrendingLimits {
            half_life_ms: 3_600_000,
            max_articles: 10,
            snapshot_len: 10,
            refresh_ms: 5,
        });
        trending.add("a", 0, 0);
        assert_eq!(trending.top(0).items.len(), 1);
        trending.add("b", 1, 1);
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert_eq!(
            trending.top(1).items.len(),
            1,
            "30 ms of wall time, 1 ms of event time"
        );
        assert_eq!(trending.top(5).items.len(), 2, "due by event time");
    }
}
