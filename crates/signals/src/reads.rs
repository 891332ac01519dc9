//! Recent reads per user, fed by ingest, so an article read after the last publish is never
//! recommended back and the user's last reads can seed co-visitation; plus the event-time
//! watermark serving uses as "now".
//!
//! Memory is bounded: at most `max_reads_per_user` reads per user (oldest dropped) and at most
//! `max_users` users (when full, the stalest of a few sampled users of the shard is evicted:
//! an exact oldest-first scan would cost a pass over the shard on every new user at capacity).
//! Reads older than `ttl` behind the watermark are dropped: by then the next daily lists already
//! exclude them. Time is event time, so replays and backfills behave like live traffic.

use std::{
    collections::{HashMap, VecDeque},
    hash::{BuildHasher, RandomState},
    sync::{
        Mutex,
        atomic::{AtomicI64, AtomicUsize, Ordering},
    },
};

const SHARDS: usize = 64;
/// Users looked at to pick one to evict when a shard is full.
const EVICTION_SAMPLE: usize = 8;

/// One shard: user id → (article id, event time) oldest first.
type Shard = Mutex<HashMap<String, VecDeque<(String, i64)>>>;

/// Bounds of a [`ReadHistory`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    pub max_users: usize,
    pub max_reads_per_user: usize,
    pub ttl_ms: i64,
}

impl Default for HistoryLimits {
    /// Also the defaults of serving's `history_*` keys, which set these limits on a node.
    fn default() -> HistoryLimits {
        HistoryLimits {
            max_users: 1_000_000,
            max_reads_per_user: 100,
            ttl_ms: 48 * 3_600_000,
        }
    }
}

/// Recent reads of each user.
#[derive(Debug)]
pub struct ReadHistory {
    limits: HistoryLimits,
    hasher: RandomState,
    shards: Vec<Shard>,
    watermark_ms: AtomicI64,
    users: AtomicUsize,
}

impl ReadHistory {
    pub fn new(limits: HistoryLimits) -> ReadHistory {
        ReadHistory {
            limits,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            watermark_ms: AtomicI64::new(0),
            users: AtomicUsize::new(0),
        }
    }

    /// Newest event time seen (epoch ms), 0 before any.
    pub fn watermark_ms(&self) -> i64 {
        self.watermark_ms.load(Ordering::Relaxed)
    }

    /// Users currently tracked.
    pub fn users(&self) -> usize {
        self.users.load(Ordering::Relaxed)
    }

    /// Records that `user_id` read `article_id` at `ts_ms`.
    pub fn record(&self, user_id: &str, article_id: &str, ts_ms: i64) {
        self.watermark_ms.fetch_max(ts_ms, Ordering::Relaxed);
        let horizon = self.watermark_ms() - self.limits.ttl_ms;
        if ts_ms < horizon {
            return;
        }
        let per_shard = self.limits.max_users.div_ceil(SHARDS).max(1);
        let mut shard = self
            .shard(user_id)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !shard.contains_key(user_id) && shard.len() >= per_shard {
            let stalest = shard
                .iter()
                .take(EVICTION_SAMPLE)
                .min_by_key(|(_, reads)| reads.back().map_or(i64::MIN, |(_, ts)| *ts))
                .map(|(user, _)| user.clone());
            if let Some(stalest) = stalest {
                shard.remove(&stalest);
                self.users.fetch_sub(1, Ordering::Relaxed);
            }
        }
        let reads = shard.entry(user_id.to_owned()).or_insert_with(|| {
            self.users.fetch_add(1, Ordering::Relaxed);
            VecDeque::new()
        });
        while reads.front().is_some_and(|(_, ts)| *ts < horizon) {
            reads.pop_front();
        }
        if reads.len() >= self.limits.max_reads_per_user {
            reads.pop_front();
        }
        reads.push_back((article_id.to_owned(), ts_ms));
    }

    /// Articles `user_id` read within the TTL, oldest first.
    pub fn reads(&self, user_id: &str) -> Vec<String> {
        self.recent(user_id).into_iter().map(|(a, _)| a).collect()
    }

    /// Reads of `user_id` within the TTL with their event times, oldest first.
    pub fn recent(&self, user_id: &str) -> Vec<(String, i64)> {
        let horizon = self.watermark_ms() - self.limits.ttl_ms;
        let shard = self
            .shard(user_id)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        shard
            .get(user_id)
            .map(|reads| {
                reads
                    .iter()
                    .filter(|(_, ts)| *ts >= horizon)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Approximate bytes held (ids, times, table slots).
    pub fn memory_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
                shard
                    .iter()
                    .map(|(user, reads)| {
                        user.len()
                            + reads.capacity() * std::mem::size_of::<(String, i64)>()
                            + reads.iter().map(|(a, _)| a.len()).sum::<usize>()
                    })
                    .sum::<usize>()
                    + shard.capacity()
                        * (std::mem::size_of::<(String, VecDeque<(String, i64)>)>() + 1)
            })
            .sum()
    }

    fn shard(&self, user_id: &str) -> &Shard {
        &self.shards[(self.hasher.hash_one(user_id) as usize) % SHARDS]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_per_user_and_in_users_and_by_ttl() {
        let history = ReadHistory::new(HistoryLimits {
            max_users: SHARDS,
            max_reads_per_user: 2,
            ttl_ms: 1000,
        });
        history.record("u", "a", 10);
        history.record("u", "b", 20);
        history.record("u", "c", 30);
        assert_eq!(history.reads("u"), ["b", "c"]);
        history.record("other", "x", 2000);
        assert!(
            history.reads("u").is_empty(),
            "older than the TTL behind the watermark"
        );
        for user in 0..SHARDS * 10 {
            history.record(&format!("user{user}"), "a", 2000);
        }
        assert!(history.users() <= SHARDS, "{}", history.users());
    }
}
