//! SAR-style item-to-item co-occurrence, blended with the decayed popularity prior.
//!
//! Two items co-occur when one user clicked both inside the training window. Their similarity is
//! Jaccard (`c_ij / (c_ii + c_jj - c_ij)`) or lift (`c_ij / (c_ii * c_jj)`), counted in distinct
//! users. A user's score for item `j` is `Σ_i affinity(u, i) · sim(i, j)` over the items `i` the
//! user read, with affinity decayed by age; the final score blends that (normalised to the
//! user's best) with popularity (normalised to the best item), because in news an article
//! nobody reads any more is a poor suggestion however similar it is.

use std::collections::HashMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{Dataset, ModelError, PopularityModel, Recommender, ScoredItem, top_k};

/// How co-occurrence counts become a similarity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Similarity {
    Jaccard,
    Lift,
}

/// How the personal score and the popularity prior combine (both normalised to 0..=1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PriorBlend {
    /// `(1 - w) * personal + w * popularity`.
    Linear,
    /// `popularity^w * (personal + 0.01)^(1 - w)`: personal taste re-ranks what is popular now.
    Geometric,
}

/// Added to the personal part in the geometric blend.
const GEOMETRIC_FLOOR: f32 = 0.01;

/// Hyperparameters of [`CooccurrenceModel`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CooccurrenceParams {
    pub similarity: Similarity,
    /// Half-life of a click's weight in the user's affinity, in hours (0 = no decay).
    pub affinity_half_life_hours: f64,
    /// Pairs seen by fewer distinct users are ignored (noise floor).
    pub min_cooccurrence: u32,
    /// Neighbours kept per item (memory bound: items × neighbours).
    pub neighbours: usize,
    /// Weight of the popularity prior in the blend, 0..=1.
    pub popularity_weight: f32,
    /// How the personal score and the popularity prior combine.
    pub blend: PriorBlend,
    /// How many of the most popular items join every user's candidates.
    pub popular_candidates: usize,
}

impl Default for CooccurrenceParams {
    fn default() -> Self {
        CooccurrenceParams {
            similarity: Similarity::Jaccard,
            affinity_half_life_hours: 24.0,
            min_cooccurrence: 2,
            neighbours: 100,
            popularity_weight: 0.5,
            blend: PriorBlend::Linear,
            popular_candidates: 200,
        }
    }
}

impl CooccurrenceParams {
    /// Why these parameters cannot be used, naming the field; [`CooccurrenceModel::fit`] refuses
    /// them too. The size bounds keep memory (items × neighbours) and work per user in reach.
    pub fn validate(&self) -> Result<(), ModelError> {
        let invalid = |name, reason: String| Err(ModelError::InvalidParameter { name, reason });
        if !(self.affinity_half_life_hours >= 0.0 && self.affinity_half_life_hours.is_finite()) {
            return invalid(
                "affinity_half_life_hours",
                format!(
                    "must be a finite number >= 0, got {}",
                    self.affinity_half_life_hours
                ),
            );
        }
        if self.min_cooccurrence == 0 {
            return invalid("min_cooccurrence", "must be at least 1".into());
        }
        if !(1..=10_000).contains(&self.neighbours) {
            return invalid(
                "neighbours",
                format!("must be 1..=10000, got {}", self.neighbours),
            );
        }
        if !(0.0..=1.0).contains(&self.popularity_weight) {
            return invalid(
                "popularity_weight",
                format!("must be 0..=1, got {}", self.popularity_weight),
            );
        }
        if self.popular_candidates > 100_000 {
            return invalid(
                "popular_candidates",
                format!("must be at most 100000, got {}", self.popular_candidates),
            );
        }
        Ok(())
    }
}

/// Each item's best neighbours from co-occurrence counts summed elsewhere: `item_counts[i]` is
/// how many sessions (or users) read item `i`, `pairs` every `(i, j, together)` with `i != j`
/// (each direction once). Pairs below `min_cooccurrence` are noise; the similarity is the
/// configured one, the `neighbours` best kept per item (ties by id).
pub fn neighbours_from_counts(
    item_counts: &[u64],
    pairs: impl IntoIterator<Item = (u32, u32, u64)>,
    params: &CooccurrenceParams,
) -> Vec<Vec<ScoredItem>> {
    let mut per_item: Vec<Vec<ScoredItem>> = vec![Vec::new(); item_counts.len()];
    for (item, other, together) in pairs {
        if together < u64::from(params.min_cooccurrence) || item == other {
            continue;
        }
        let (Some(&own), Some(&theirs)) = (
            item_counts.get(item as usize),
            item_counts.get(other as usize),
        ) else {
            continue;
        };
        let (own, theirs, together) = (own as f64, theirs as f64, together as f64);
        let similarity = match params.similarity {
            Similarity::Jaccard => together / (own + theirs - together).max(together),
            Similarity::Lift => together / (own * theirs).max(1.0),
        };
        per_item[item as usize].push(ScoredItem {
            item: other,
            score: similarity as f32,
        });
    }
    per_item
        .into_par_iter()
        .map(|candidates| top_k(candidates, params.neighbours))
        .collect()
}

/// Fitted co-occurrence model: each item's top neighbours, plus the popularity prior.
#[derive(Debug, Clone)]
pub struct CooccurrenceModel {
    params: CooccurrenceParams,
    neighbour_offsets: Vec<usize>,
    neighbours: Vec<ScoredItem>,
    dataset: Dataset,
    popularity: PopularityModel,
}

impl CooccurrenceModel {
    /// Fits the model. `dataset` must have been built with the affinity half-life of `params`.
    pub fn fit(
        dataset: Dataset,
        popularity: PopularityModel,
        params: CooccurrenceParams,
    ) -> Result<CooccurrenceModel, ModelError> {
        params.validate()?;
        let n_items = dataset.n_items();
        let (item_offsets, item_users) = dataset.item_users();
        let per_item: Vec<Vec<ScoredItem>> = (0..n_items as u32)
            .into_par_iter()
            .map_init(
                || (vec![0u32; n_items], Vec::<u32>::new()),
                |(counts, touched), item| {
                    let users =
                        &item_users[item_offsets[item as usize]..item_offsets[item as usize + 1]];
                    for &user in users {
                        for &other in dataset.user_items(user) {
                            if other == item {
                                continue;
                            }
                            if counts[other as usize] == 0 {
                                touched.push(other);
                            }
                            counts[other as usize] += 1;
                        }
                    }
                    let own = f64::from(dataset.item_user_count(item));
                    let mut candidates = Vec::new();
                    for &other in touched.iter() {
                        let together = counts[other as usize];
                        counts[other as usize] = 0;
                        if together < params.min_cooccurrence {
                            continue;
                        }
                        let theirs = f64::from(dataset.item_user_count(other));
                        let together = f64::from(together);
                        let similarity = match params.similarity {
                            Similarity::Jaccard => together / (own + theirs - together),
                            Similarity::Lift => together / (own * theirs),
                        };
                        candidates.push(ScoredItem {
                            item: other,
                            score: similarity as f32,
                        });
                    }
                    touched.clear();
                    top_k(candidates, params.neighbours)
                },
            )
            .collect();
        Ok(CooccurrenceModel::from_neighbours(
            per_item, dataset, popularity, params,
        ))
    }

    /// The model of neighbour lists computed elsewhere (one per item id, best first), as the
    /// daily job computes them from hourly co-visitation rollups ([`neighbours_from_counts`]).
    /// `dataset` holds the histories [`Recommender::recommend`] looks users up in; callers that
    /// stream users score them with [`CooccurrenceModel::recommend_history`] instead.
    pub fn from_neighbours(
        per_item: Vec<Vec<ScoredItem>>,
        dataset: Dataset,
        popularity: PopularityModel,
        params: CooccurrenceParams,
    ) -> CooccurrenceModel {
        let mut neighbour_offsets = Vec::with_capacity(per_item.len() + 1);
        neighbour_offsets.push(0);
        let mut neighbours = Vec::with_capacity(per_item.iter().map(Vec::len).sum());
        for list in per_item {
            neighbours.extend(list);
            neighbour_offsets.push(neighbours.len());
        }
        CooccurrenceModel {
            params,
            neighbour_offsets,
            neighbours,
            dataset,
            popularity,
        }
    }

    /// The item's most similar items, best first.
    pub fn neighbours(&self, item: u32) -> &[ScoredItem] {
        let item = item as usize;
        if item + 1 >= self.neighbour_offsets.len() {
            return &[];
        }
        &self.neighbours[self.neighbour_offsets[item]..self.neighbour_offsets[item + 1]]
    }

    /// Stored neighbour pairs (for the manifest's size figures).
    pub fn n_neighbour_pairs(&self) -> usize {
        self.neighbours.len()
    }

    pub fn params(&self) -> &CooccurrenceParams {
        &self.params
    }

    pub fn dataset(&self) -> &Dataset {
        &self.dataset
    }
}

impl Recommender for CooccurrenceModel {
    fn name(&self) -> &'static str {
        "cooccurrence"
    }

    fn recommend(&self, user: u32, k: usize, exclude: &[u32]) -> Vec<ScoredItem> {
        self.recommend_history(
            self.dataset.user_items(user),
            self.dataset.user_affinities(user),
            k,
            exclude,
        )
    }
}

impl CooccurrenceModel {
    /// The best `k` items for a reader whose history is `history` (item ids) with the decayed
    /// `affinities` of each, never an item of `exclude` (sorted ascending).
    pub fn recommend_history(
        &self,
        history: &[u32],
        affinities: &[f32],
        k: usize,
        exclude: &[u32],
    ) -> Vec<ScoredItem> {
        let mut personal: HashMap<u32, f32> = HashMap::with_capacity(history.len() * 16);
        for (item, affinity) in history.iter().zip(affinities) {
            for neighbour in self.neighbours(*item) {
                *personal.entry(neighbour.item).or_insert(0.0) += affinity * neighbour.score;
            }
        }
        let max_personal = personal.values().copied().fold(0.0f32, f32::max);
        let max_popular = self.popularity.max_score();
        let weight = self.params.popularity_weight;
        let blend = |item: u32, personal_score: f32| {
            let personal_part = if max_personal > 0.0 {
                personal_score / max_personal
            } else {
                0.0
            };
            let popular_part = if max_popular > 0.0 {
                self.popularity.score(item) / max_popular
            } else {
                0.0
            };
            match self.params.blend {
                PriorBlend::Linear => (1.0 - weight) * personal_part + weight * popular_part,
                // The floor lets a popular item nobody's history points to still rank, below
                // equally popular items that the history does point to.
                PriorBlend::Geometric => {
                    popular_part.powf(weight) * (personal_part + GEOMETRIC_FLOOR).powf(1.0 - weight)
                }
            }
        };
        let mut candidates: Vec<ScoredItem> = personal
            .iter()
            .map(|(&item, &score)| ScoredItem {
                item,
                score: blend(item, score),
            })
            .collect();
        for popular in self
            .popularity
            .ranked()
            .iter()
            .take(self.params.popular_candidates.max(k))
        {
            if !personal.contains_key(&popular.item) {
                candidates.push(ScoredItem {
                    item: popular.item,
                    score: blend(popular.item, 0.0),
                });
            }
        }
        candidates
            .retain(|scored| exclude.binary_search(&scored.item).is_err() && scored.score > 0.0);
        top_k(candidates, k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Interaction, PopularityParams};
    use proptest::prelude::*;

    fn fit(
        clicks: &[Interaction],
        n_users: usize,
        n_items: usize,
        params: CooccurrenceParams,
    ) -> CooccurrenceModel {
        let anchor = clicks.iter().map(|c| c.ts_ms).max().unwrap_or(0) + 1;
        let dataset = Dataset::build(
            n_users,
            n_items,
            clicks,
            anchor,
            params.affinity_half_life_hours * 3.6e6,
        );
        let popularity =
            PopularityModel::fit(n_items, clicks, anchor, &PopularityParams::default()).unwrap();
        CooccurrenceModel::fit(dataset, popularity, params).unwrap()
    }

    #[test]
    fn recommends_what_readers_of_the_same_items_read() {
        // Users 0..4 read items 0 and 1; user 5 read only item 0, so item 1 is the suggestion,
        // even though item 2 (read by 6..9 only) is more popular.
        let mut clicks = Vec::new();
        for user in 0..4 {
            clicks.push(Interaction {
                user,
                item: 0,
                ts_ms: 1000,
            });
            clicks.push(Interaction {
                user,
                item: 1,
                ts_ms: 1000,
            });
        }
        clicks.push(Interaction {
            user: 5,
            item: 0,
            ts_ms: 1000,
        });
        for user in 6..12 {
            clicks.push(Interaction {
                user,
                item: 2,
                ts_ms: 1000,
            });
        }
        let params = CooccurrenceParams {
            popularity_weight: 0.2,
            ..CooccurrenceParams::default()
        };
        let model = fit(&clicks, 12, 3, params);
        let picked: Vec<u32> = model.recommend(5, 2, &[0]).iter().map(|s| s.item).collect();
        assert_eq!(picked, [1, 2]);
        // An unknown user gets popularity order.
        let cold: Vec<u32> = model.recommend(99, 3, &[]).iter().map(|s| s.item).collect();
        assert_eq!(cold[0], 2);
    }

    #[test]
    fn out_of_range_parameters_are_named() {
        let name = |params: CooccurrenceParams| match params.validate() {
            Err(ModelError::InvalidParameter { name, .. }) => name,
            Ok(()) => "none",
        };
        let default = CooccurrenceParams::default;
        assert_eq!(name(default()), "none");
        let neighbours = CooccurrenceParams {
            neighbours: 10_001,
            ..default()
        };
        assert_eq!(name(neighbours), "neighbours");
        let candidates = CooccurrenceParams {
            popular_candidates: 100_001,
            ..default()
        };
        assert_eq!(name(candidates), "popular_candidates");
        let weight = CooccurrenceParams {
            popularity_weight: 1.5,
            ..default()
        };
        assert_eq!(name(weight), "popularity_weight");
    }

    proptest! {
        // Jaccard similarity is symmetric: sim(i, j) == sim(j, i) whenever both are kept.
        #[test]
        fn jaccard_is_symmetric(pairs in proptest::collection::vec((0u32..15, 0u32..8), 1..120)) {
            let clicks: Vec<Interaction> =
                pairs.iter().map(|&(user, item)| Interaction { user, item, ts_ms: 0 }).collect();
            let params = CooccurrenceParams { min_cooccurrence: 1, neighbours: 100, ..CooccurrenceParams::default() };
            let model = fit(&clicks, 15, 8, params);
            for item in 0..8u32 {
                for neighbour in model.neighbours(item) {
                    let back = model.neighbours(neighbour.item).iter().find(|s| s.item == item);
                    prop_assert!(back.is_some(), "{} -> {} not mirrored", item, neighbour.item);
                    prop_assert!((back.unwrap().score - neighbour.score).abs() < 1e-6);
                }
            }
        }

        // Recommendations never contain an excluded item and are sorted best first.
        #[test]
        fn exclusions_hold(pairs in proptest::collection::vec((0u32..10, 0u32..12), 1..80), user in 0u32..10) {
            let clicks: Vec<Interaction> =
                pairs.iter().map(|&(user, item)| Interaction { user, item, ts_ms: 0 }).collect();
            let model = fit(&clicks, 10, 12, CooccurrenceParams { min_cooccurrence: 1, ..CooccurrenceParams::default() });
            let exclude = model.dataset().user_items(user).to_vec();
            let recs = model.recommend(user, 5, &exclude);
            prop_assert!(recs.iter().all(|s| exclude.binary_search(&s.item).is_err()));
            prop_assert!(recs.windows(2).all(|w| w[0].score >= w[1].score));
        }
    }
}
