//! The serving blend: one ranked list from the user's daily list, what is trending now, and what
//! readers of the user's last reads went on to read.
//!
//! Each source is read as a probability of the next click:
//! - trending `t(B)`: B's decayed clicks / the sum over the top `trending_candidates`;
//! - co-visitation from a recent read A: `(c·e(A→B) + κ·t(B)) / (c·n(A) + κ)`, where `e` is the
//!   decayed edge weight, `n(A)` the total weight of A's edges, `c` = `covisit_weight` and
//!   κ = `covisit_prior`. This is trending smoothed toward what A's readers read next: with no
//!   evidence about A it is trending, and the more readers went on from A, the more their
//!   choices count. The `covisit_seeds` newest reads are mixed with weights 1, ½, ¼ …; a user
//!   with no recent read gets `t(B)` alone;
//! - daily `d(B)`: 1/(rank + 1) over the user's stored list, normalised to sum to 1.
//!
//! The score is `α·d(B) + (1 − α)·personal(B)` with α = `daily_weight` (and `trending_weight`
//! scaling `t`, so 0 turns trending off). Each item's `source` is the part that contributed
//! most. Ties go to the smaller id, so a list is a pure function of its inputs (replay
//! evaluation relies on that). Filtering (reads, exclusions, expiry) happens before ranking, so
//! a filtered article never takes a slot.

use std::{collections::HashMap, sync::Arc};

use serde::{Deserialize, Serialize};

use crate::{Item, SettingsError, Source};

/// Weights and candidate counts of the blend: the `[serve.blend]` section.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Blend {
    /// α: share of the score from the daily list, 0..=1.
    pub daily_weight: f64,
    /// Scales trending; 0 turns it off.
    pub trending_weight: f64,
    /// Scales co-visitation evidence; 0 turns it off.
    pub covisit_weight: f64,
    /// κ: how much co-visitation evidence (decayed clicks) weighs as much as trending.
    pub covisit_prior: f64,
    /// Top trending articles considered per request.
    pub trending_candidates: usize,
    /// The user's newest reads whose co-visited neighbours are candidates.
    pub covisit_seeds: usize,
    /// Neighbours taken per seed.
    pub covisit_candidates: usize,
}

impl Default for Blend {
    fn default() -> Blend {
        Blend {
            daily_weight: 0.02,
            trending_weight: 1.0,
            covisit_weight: 1.0,
            covisit_prior: 5.0,
            trending_candidates: 100,
            covisit_seeds: 3,
            covisit_candidates: 30,
        }
    }
}

impl Blend {
    /// The published daily list alone (what serving did before real-time signals).
    pub fn daily_only() -> Blend {
        Blend {
            daily_weight: 1.0,
            trending_weight: 0.0,
            covisit_weight: 0.0,
            ..Blend::default()
        }
    }

    /// Plain trending: the decayed click ranking, nothing personal.
    pub fn trending_only() -> Blend {
        Blend {
            daily_weight: 0.0,
            trending_weight: 1.0,
            covisit_weight: 0.0,
            ..Blend::default()
        }
    }

    /// Range-checks every value; the first one out of range is named (relative to
    /// `[serve.blend]`). The caps keep a request's work bounded.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |key: &str, reason: String| {
            Err(SettingsError {
                key: key.into(),
                reason,
            })
        };
        if !(0.0..=1.0).contains(&self.daily_weight) {
            return invalid(
                "daily_weight",
                format!("must be 0..=1, got {}", self.daily_weight),
            );
        }
        for (key, weight) in [
            ("trending_weight", self.trending_weight),
            ("covisit_weight", self.covisit_weight),
            ("covisit_prior", self.covisit_prior),
        ] {
            if !(weight.is_finite() && (0.0..=1000.0).contains(&weight)) {
                return invalid(key, format!("must be 0..=1000, got {weight}"));
            }
        }
        if self.covisit_weight > 0.0 && self.trending_weight > 0.0 && self.covisit_prior <= 0.0 {
            return invalid(
                "covisit_prior",
                "must be > 0 when trending and co-visitation are both on".into(),
            );
        }
        if self.daily_weight + self.trending_weight + self.covisit_weight <= 0.0 {
            return invalid(
                "daily_weight",
                "daily_weight, trending_weight and covisit_weight are all 0: at least one must be > 0"
                    .into(),
            );
        }
        for (key, count, max) in [
            ("trending_candidates", self.trending_candidates, 10_000),
            ("covisit_seeds", self.covisit_seeds, 100),
            ("covisit_candidates", self.covisit_candidates, 10_000),
        ] {
            if count > max {
                return invalid(key, format!("must be at most {max}, got {count}"));
            }
        }
        Ok(())
    }
}

/// One seed's strongest neighbours (id, decayed edge weight) and the total weight of its edges.
pub(crate) type Neighbourhood = (Vec<(Arc<str>, f64)>, f64);

/// Parts of one candidate: daily, trending, co-visitation.
type Parts = [f64; 3];

/// The candidates of one request, gathered per source. They borrow their ids from the sources
/// (the stored list, the trending snapshot, the neighbourhoods): a request hashes each id once
/// and copies only the `k` it returns.
#[derive(Debug)]
pub(crate) struct Candidates<'a> {
    index: HashMap<&'a str, usize, foldhash::fast::FixedState>,
    parts: Vec<(&'a str, Parts)>,
    /// The weight trending keeps in the personal part (1 without co-visitation evidence).
    trending_share: f64,
}

impl Default for Candidates<'_> {
    fn default() -> Self {
        Candidates {
            index: HashMap::with_capacity_and_hasher(256, foldhash::fast::FixedState::default()),
            parts: Vec::with_capacity(256),
            trending_share: 1.0,
        }
    }
}

const DAILY: usize = 0;
const TRENDING: usize = 1;
const COVISIT: usize = 2;

impl<'a> Candidates<'a> {
    fn part(&mut self, article_id: &'a str) -> &mut Parts {
        let next = self.parts.len();
        let slot = *self.index.entry(article_id).or_insert(next);
        if slot == next {
            self.parts.push((article_id, [0.0; 3]));
        }
        &mut self.parts[slot].1
    }

    /// The user's daily list, best first.
    pub(crate) fn add_daily(&mut self, ids: impl ExactSizeIterator<Item = &'a str>) {
        let harmonic: f64 = (1..=ids.len()).map(|r| 1.0 / r as f64).sum();
        for (rank, id) in ids.enumerate() {
            let part = self.part(id);
            part[DAILY] = part[DAILY].max(1.0 / (rank as f64 + 1.0) / harmonic);
        }
    }

    /// The trending ranking, best first.
    pub(crate) fn add_trending(&mut self, items: &'a [(Arc<str>, f64)]) {
        let total: f64 = items.iter().map(|(_, count)| count).sum();
        if total <= 0.0 {
            return;
        }
        for (id, count) in items {
            self.part(id)[TRENDING] = count / total;
        }
    }

    /// Each seed's neighbours and total edge weight, the newest read's first.
    pub(crate) fn add_covisit(&mut self, per_seed: &'a [Neighbourhood], blend: &Blend) {
        if per_seed.is_empty() {
            return;
        }
        let (c, prior) = (blend.covisit_weight, blend.covisit_prior);
        let weights: Vec<f64> = (0..per_seed.len()).map(|i| 0.5f64.powi(i as i32)).collect();
        let sum: f64 = weights.iter().sum();
        self.trending_share = 0.0;
        for ((neighbours, total), w) in per_seed.iter().zip(&weights) {
            let denominator = c * total + prior;
            if denominator <= 0.0 {
                continue;
            }
            self.trending_share += w / sum * prior / denominator;
            for (id, edge) in neighbours {
                self.part(id)[COVISIT] += w / sum * c * edge / denominator;
            }
        }
    }

    /// The best `k` candidates that `keep` accepts, scored by `blend`.
    pub(crate) fn rank(self, blend: &Blend, k: usize, keep: impl Fn(&str) -> bool) -> Vec<Item> {
        let alpha = blend.daily_weight;
        let trending = (1.0 - alpha) * blend.trending_weight * self.trending_share;
        let weights = [alpha, trending, 1.0 - alpha];
        let mut scored: Vec<(f64, &'a str, Parts)> = self
            .parts
            .into_iter()
            .filter_map(|(id, parts)| {
                let contributions = [0, 1, 2].map(|i| parts[i] * weights[i]);
                let score: f64 = contributions.iter().sum();
                (score > 0.0).then_some((score, id, contributions))
            })
            .collect();
        let by_score = |a: &(f64, &str, Parts), b: &(f64, &str, Parts)| {
            b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1))
        };
        // Only the head is needed: rank a prefix a few filtered articles longer than k, and the
        // rest only when filters ate into it.
        let mut ranked = 0;
        let mut items = Vec::with_capacity(k.min(scored.len()));
        while items.len() < k && ranked < scored.len() {
            let rest = &mut scored[ranked..];
            let head = (2 * k).max(16).min(rest.len());
            if head < rest.len() {
                rest.select_nth_unstable_by(head - 1, by_score);
            }
            rest[..head].sort_unstable_by(by_score);
            for (score, id, contributions) in &rest[..head] {
                if items.len() >= k {
                    break;
                }
                if keep(id) {
                    items.push(Item {
                        article_id: (*id).to_owned(),
                        score: *score as f32,
                        source: main_source(contributions),
                    });
                }
            }
            ranked += head;
        }
        items
    }
}

/// The part that contributed most (the earlier source on a tie).
fn main_source(contributions: &Parts) -> Source {
    let sources = [Source::Daily, Source::Trending, Source::Covisit];
    let best = (0..3)
        .max_by(|&a, &b| {
            contributions[a]
                .total_cmp(&contributions[b])
                .then(b.cmp(&a))
        })
        .unwrap_or(DAILY);
    sources[best]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(items: &[Item]) -> Vec<(&str, Source)> {
        items
            .iter()
            .map(|i| (i.article_id.as_str(), i.source))
            .collect()
    }

    fn arc(items: &[(&str, f64)]) -> Vec<(Arc<str>, f64)> {
        items.iter().map(|(id, w)| (Arc::from(*id), *w)).collect()
    }

    #[test]
    fn daily_only_keeps_the_model_order() {
        let trending = arc(&[("z", 9.0)]);
        let mut candidates = Candidates::default();
        candidates.add_daily(["c", "a", "b"].into_iter());
        candidates.add_trending(&trending);
        let items = candidates.rank(&Blend::daily_only(), 10, |_| true);
        assert_eq!(
            ids(&items),
            [
                ("c", Source::Daily),
                ("a", Source::Daily),
                ("b", Source::Daily)
            ]
        );
    }

    #[test]
    fn evidence_about_the_last_read_outweighs_trending_as_it_grows() {
        let blend = Blend {
            daily_weight: 0.0,
            covisit_prior: 10.0,
            ..Blend::default()
        };
        let trending = arc(&[("hot", 9.0), ("next", 1.0)]);
        let ranked = |edges: f64| {
            let seeds = [(arc(&[("next", edges)]), edges)];
            let mut candidates = Candidates::default();
            candidates.add_trending(&trending);
            candidates.add_covisit(&seeds, &blend);
            candidates
                .rank(&blend, 10, |_| true)
                .into_iter()
                .map(|item| (item.article_id, item.source))
                .collect::<Vec<_>>()
        };
        let owned = |expected: [(&str, Source); 2]| {
            expected
                .map(|(id, source)| (id.to_owned(), source))
                .to_vec()
        };
        // Little evidence: (1 + 10·0.1)/(1 + 10) = 0.18 < 10·0.9/11 = 0.82.
        assert_eq!(
            ranked(1.0),
            owned([("hot", Source::Trending), ("next", Source::Trending)])
        );
        // Much evidence: (100 + 1)/110 = 0.92 > 9/110.
        assert_eq!(
            ranked(100.0),
            owned([("next", Source::Covisit), ("hot", Source::Trending)])
        );
    }

    #[test]
    fn no_recent_read_means_trending_and_filters_apply_before_ranking() {
        let blend = Blend::default();
        let trending = arc(&[("a", 5.0), ("b", 3.0), ("c", 1.0)]);
        let mut candidates = Candidates::default();
        candidates.add_trending(&trending);
        candidates.add_covisit(&[], &blend);
        let items = candidates.rank(&blend, 2, |id| id != "a");
        assert_eq!(
            ids(&items),
            [("b", Source::Trending), ("c", Source::Trending)]
        );
        let total = (3.0 / 9.0 * (1.0 - blend.daily_weight)) as f32;
        assert!((items[0].score - total).abs() < 1e-6, "{}", items[0].score);
    }

    #[test]
    fn bad_settings_are_refused() {
        let blend = Blend {
            daily_weight: f64::NAN,
            ..Blend::default()
        };
        assert_eq!(blend.validate().unwrap_err().key, "daily_weight");
        let blend = Blend {
            daily_weight: 1.5,
            ..Blend::default()
        };
        assert!(blend.validate().is_err());
        let zero = Blend {
            daily_weight: 0.0,
            trending_weight: 0.0,
            covisit_weight: 0.0,
            ..Blend::default()
        };
        assert!(zero.validate().is_err());
        let no_prior = Blend {
            covisit_prior: 0.0,
            ..Blend::default()
        };
        assert_eq!(no_prior.validate().unwrap_err().key, "covisit_prior");
        // Weights and candidate counts are capped, so a request's work stays bounded.
        let heavy = Blend {
            trending_weight: 1e6,
            ..Blend::default()
        };
        assert_eq!(heavy.validate().unwrap_err().key, "trending_weight");
        let many = Blend {
            covisit_candidates: 10_001,
            ..Blend::default()
        };
        assert_eq!(many.validate().unwrap_err().key, "covisit_candidates");
        Blend::daily_only().validate().unwrap();
        Blend::trending_only().validate().unwrap();
    }

    proptest::proptest! {
        /// Ranking only the head (in chunks, when filters eat into it) gives the list a full
        /// sort of every candidate would.
        #[test]
        fn the_partial_ranking_equals_a_full_sort(
            daily in proptest::collection::vec(0u16..300, 0..60),
            trending in proptest::collection::vec((0u16..300, 0.01f64..100.0), 0..120),
            seeds in proptest::collection::vec(
                (proptest::collection::vec((0u16..300, 0.01f64..10.0), 0..40), 0.0f64..50.0),
                0..4,
            ),
            k in 1usize..40,
            dropped in 0u16..300,
        ) {
            let name = |id: &u16| format!("a{id}");
            let daily: Vec<String> = daily.iter().map(name).collect();
            let trending: Vec<(Arc<str>, f64)> =
                trending.iter().map(|(id, count)| (Arc::from(name(id)), *count)).collect();
            let seeds: Vec<Neighbourhood> = seeds
                .iter()
                .map(|(edges, total)| {
                    let edges: Vec<(Arc<str>, f64)> =
                        edges.iter().map(|(id, w)| (Arc::from(name(id)), *w)).collect();
                    let sum: f64 = edges.iter().map(|(_, w)| w).sum();
                    (edges, total + sum)
                })
                .collect();
            let blend = Blend::default();
            // Drops about every other id, so long filtered stretches occur.
            let keep = |id: &str| id.len() % 2 == (dropped % 2) as usize || id.ends_with('7');
            let gather = || {
                let mut candidates = Candidates::default();
                candidates.add_daily(daily.iter().map(String::as_str));
                candidates.add_trending(&trending);
                candidates.add_covisit(&seeds, &blend);
                candidates
            };
            let got = gather().rank(&blend, k, keep);
            // The reference: every candidate scored, fully sorted, filtered, cut at k.
            let mut all = gather().rank(&blend, usize::MAX / 4, |_| true);
            all.retain(|item| keep(&item.article_id));
            all.truncate(k);
            proptest::prop_assert_eq!(got, all);
        }
    }
}
