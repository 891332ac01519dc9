//! Co-visitation: which articles readers of A went on to read, decayed in event time.
//!
//! When a user reads B, each of their recent reads A (at most `lookback`, within `window_ms`
//! before B) strengthens the edge A → B by one, and B → A by `backward_weight` (readers of B
//! also came from A: weaker, but it gives a fresh article neighbours before anyone has read on
//! from it). Edge weights decay with `half_life_ms`.
//!
//! Memory bounds: at most `max_neighbours` edges per article — a new neighbour of a full article
//! replaces the weakest one at that moment (a stale edge makes way for a live one; a strong
//! edge survives a burst of one-off neighbours only while it stays stronger than they are) —
//! and at most `max_articles` source articles, where a new one at capacity evicts the stalest
//! (by its newest edge) of a few sampled sources of its shard.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use crate::{decay::Decayed, trending::lock};

const SHARDS: usize = 64;
/// Sources looked at to pick one to evict when a shard is full.
const EVICTION_SAMPLE: usize = 8;

/// Settings of [`CoVisitation`].
#[derive(Debug, Clone, Copy)]
pub struct CoVisitLimits {
    pub half_life_ms: i64,
    pub window_ms: i64,
    pub lookback: usize,
    pub backward_weight: f64,
    pub max_neighbours: usize,
    pub max_articles: usize,
}

type Neighbours = Vec<(Arc<str>, Decayed)>;
type Shard = Mutex<HashMap<Arc<str>, Neighbours>>;

/// Decayed co-visitation edges per article.
#[derive(Debug)]
pub struct CoVisitation {
    limits: CoVisitLimits,
    hasher: RandomState,
    shards: Vec<Shard>,
    sources: AtomicUsize,
    edges: AtomicUsize,
}

impl CoVisitation {
    pub fn new(limits: CoVisitLimits) -> CoVisitation {
        CoVisitation {
            limits,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            sources: AtomicUsize::new(0),
            edges: AtomicUsize::new(0),
        }
    }

    pub fn limits(&self) -> &CoVisitLimits {
        &self.limits
    }

    /// Source articles with at least one edge.
    pub fn sources(&self) -> usize {
        self.sources.load(Ordering::Relaxed)
    }

    /// Edges held.
    pub fn edges(&self) -> usize {
        self.edges.load(Ordering::Relaxed)
    }

    /// Approximate bytes held: per edge its id and count, per source its id and table slot.
    pub fn memory_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let shard = lock(shard);
                shard
                    .iter()
                    .map(|(source, neighbours)| {
                        source.len()
                            + neighbours.capacity() * std::mem::size_of::<(Arc<str>, Decayed)>()
                            + neighbours
                                .iter()
                                .map(|(id, _)| id.len() + 16)
                                .sum::<usize>()
                    })
                    .sum::<usize>()
                    + shard.capacity() * (std::mem::size_of::<(Arc<str>, Neighbours)>() + 1)
            })
            .sum()
    }

    /// `user` read `article` at `ts_ms`; `previous` are their earlier reads, oldest first.
    pub fn observe(&self, article: &str, ts_ms: i64, previous: &[(String, i64)]) {
        if previous.iter().any(|(read, _)| read == article) {
            // A re-read says nothing new about what follows what.
            return;
        }
        let from = previous
            .iter()
            .rev()
            .filter(|(_, at)| ts_ms - *at <= self.limits.window_ms && *at <= ts_ms)
            .take(self.limits.lookback);
        for (read, _) in from {
            self.strengthen(read, article, 1.0, ts_ms);
            if self.limits.backward_weight > 0.0 {
                self.strengthen(article, read, self.limits.backward_weight, ts_ms);
            }
        }
    }

    /// The strongest neighbours of `article` at `now_ms`, best first.
    pub fn neighbours(&self, article: &str, now_ms: i64, n: usize) -> Vec<(Arc<str>, f64)> {
        self.neighbourhood(article, now_ms, n).0
    }

    /// The strongest `n` neighbours of `article` at `now_ms`, best first, and the total weight
    /// of all its edges (how much evidence there is about what follows it).
    pub fn neighbourhood(
        &self,
        article: &str,
        now_ms: i64,
        n: usize,
    ) -> (Vec<(Arc<str>, f64)>, f64) {
        let half_life = self.limits.half_life_ms;
        let shard = lock(self.shard(article));
        let Some(edges) = shard.get(article) else {
            return (Vec::new(), 0.0);
        };
        let mut out: Vec<(Arc<str>, f64)> = edges
            .iter()
            .map(|(id, weight)| (Arc::clone(id), weight.at(now_ms, half_life)))
            .collect();
        let total = out.iter().map(|(_, weight)| weight).sum();
        out.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out.truncate(n);
        (out, total)
    }

    fn strengthen(&self, from: &str, to: &str, weight: f64, ts_ms: i64) {
        let half_life = self.limits.half_life_ms;
        let per_shard = self.limits.max_articles.div_ceil(SHARDS).max(1);
        let mut shard = lock(self.shard(from));
        if !shard.contains_key(from) && shard.len() >= per_shard {
            let stalest = shard
                .iter()
                .take(EVICTION_SAMPLE)
                .min_by_key(|(_, edges)| edges.iter().map(|(_, w)| newest(w)).max())
                .map(|(source, _)| Arc::clone(source));
            if let Some(stalest) = stalest
                && let Some(edges) = shard.remove(&stalest)
            {
                self.sources.fetch_sub(1, Ordering::Relaxed);
                self.edges.fetch_sub(edges.len(), Ordering::Relaxed);
            }
        }
        let edges = shard.entry(Arc::from(from)).or_insert_with(|| {
            self.sources.fetch_add(1, Ordering::Relaxed);
            Vec::new()
        });
        if let Some((_, existing)) = edges.iter_mut().find(|(id, _)| &**id == to) {
            existing.add(weight, ts_ms, half_life);
            return;
        }
        if edges.len() >= self.limits.max_neighbours {
            let weakest = edges
                .iter()
                .enumerate()
                .min_by(|a, b| {
                    a.1.1
                        .at(ts_ms, half_life)
                        .total_cmp(&b.1.1.at(ts_ms, half_life))
                })
                .map(|(index, _)| index);
            if let Some(weakest) = weakest {
                edges.swap_remove(weakest);
                self.edges.fetch_sub(1, Ordering::Relaxed);
            }
        }
        edges.push((Arc::from(to), Decayed::new(weight, ts_ms)));
        self.edges.fetch_add(1, Ordering::Relaxed);
    }

    fn shard(&self, article: &str) -> &Shard {
        &self.shards[(self.hasher.hash_one(article) as usize) % SHARDS]
    }
}

fn newest(weight: &Decayed) -> i64 {
    weight.at_ms()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covisit(max_neighbours: usize, max_articles: usize) -> CoVisitation {
        CoVisitation::new(CoVisitLimits {
            half_life_ms: 3_600_000,
            window_ms: 3_600_000,
            lookback: 2,
            backward_weight: 0.5,
            max_neighbours,
            max_articles,
        })
    }

    fn reads(items: &[(&str, i64)]) -> Vec<(String, i64)> {
        items.iter().map(|(a, t)| ((*a).to_owned(), *t)).collect()
    }

    #[test]
    fn forward_edges_outweigh_backward_ones() {
        let co = covisit(10, 100);
        co.observe("b", 10, &reads(&[("a", 0)]));
        co.observe("b", 20, &reads(&[("a", 5)]));
        let from_a = co.neighbours("a", 20, 5);
        assert_eq!(&*from_a[0].0, "b");
        let from_b = co.neighbours("b", 20, 5);
        assert_eq!(&*from_b[0].0, "a");
        assert!(from_a[0].1 > from_b[0].1);
    }

    #[test]
    fn window_and_lookback_limit_the_edges() {
        let co = covisit(10, 100);
        co.observe(
            "d",
            4_000_000,
            &reads(&[
                ("old", 0),
                ("a", 3_900_000),
                ("b", 3_950_000),
                ("c", 3_990_000),
            ]),
        );
        assert!(
            co.neighbours("old", 4_000_000, 5).is_empty(),
            "outside the window"
        );
        assert!(
            co.neighbours("a", 4_000_000, 5).is_empty(),
            "beyond the lookback of 2"
        );
        assert_eq!(co.neighbours("c", 4_000_000, 5).len(), 1);
        co.observe("c", 4_000_001, &reads(&[("c", 3_990_000)]));
        assert_eq!(co.edges(), 4, "a re-read adds nothing");
    }

    #[test]
    fn bounded_in_neighbours_and_sources() {
        // Room for every source: only the neighbour bound applies.
        let co = covisit(3, 100_000);
        for i in 0..100 {
            co.observe(&format!("n{i}"), i, &reads(&[("hub", 0)]));
        }
        assert_eq!(co.neighbours("hub", 100, 10).len(), 3);
        // 64 sources over 64 shards: one per shard, so the hub itself may be evicted when a
        // new source lands in its shard; the bounds hold whatever the hashes.
        let co = covisit(3, 64);
        for i in 0..100 {
            co.observe(&format!("n{i}"), i, &reads(&[("hub", 0)]));
        }
        assert!(co.neighbours("hub", 100, 10).len() <= 3);
        assert!(co.sources() <= 64 + 1, "{}", co.sources());
        let edges: usize = co.edges();
        assert!(edges <= 64 * 3, "{edges}");
    }
}
