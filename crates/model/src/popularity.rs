//! Popularity with exponential time decay, anchored at the end of the training window.
//!
//! In news, recency dominates: an article's clicks of the last hours say more about tomorrow
//! than its clicks of last week, so each click weighs `0.5^(age / half_life)`.

use serde::{Deserialize, Serialize};

use crate::{Interaction, ModelError, Recommender, ScoredItem, dataset::decay_weight, top_k};

/// Hyperparameters of [`PopularityModel`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PopularityParams {
    /// Half-life of a click's weight, in hours (0 = plain counts).
    pub half_life_hours: f64,
}

impl Default for PopularityParams {
    fn default() -> Self {
        PopularityParams {
            half_life_hours: 2.0,
        }
    }
}

impl PopularityParams {
    /// Why these parameters cannot be used, naming the field; [`PopularityModel::fit`] refuses
    /// them too.
    pub fn validate(&self) -> Result<(), ModelError> {
        if !(self.half_life_hours >= 0.0 && self.half_life_hours.is_finite()) {
            return Err(ModelError::InvalidParameter {
                name: "half_life_hours",
                reason: format!("must be a finite number >= 0, got {}", self.half_life_hours),
            });
        }
        Ok(())
    }
}

/// Items ranked by decayed click count.
#[derive(Debug, Clone)]
pub struct PopularityModel {
    scores: Vec<f32>,
    /// Every item with a positive score, best first.
    ranked: Vec<ScoredItem>,
}

impl PopularityModel {
    pub fn fit(
        n_items: usize,
        interactions: &[Interaction],
        anchor_ms: i64,
        params: &PopularityParams,
    ) -> Result<PopularityModel, ModelError> {
        params.validate()?;
        let half_life_ms = params.half_life_hours * 3_600_000.0;
        let mut scores = vec![0f64; n_items];
        for it in interactions {
            scores[it.item as usize] += decay_weight(anchor_ms, it.ts_ms, half_life_ms);
        }
        Ok(PopularityModel::from_scores(scores))
    }

    /// The model of already-summed scores, one per item id (decayed masses summed elsewhere, as
    /// the daily job does from hourly rollups). Items ranked by score, ties by id.
    pub fn from_scores(scores: Vec<f64>) -> PopularityModel {
        let scores: Vec<f32> = scores.into_iter().map(|s| s as f32).collect();
        let candidates = scores
            .iter()
            .enumerate()
            .filter(|(_, score)| **score > 0.0)
            .map(|(item, score)| ScoredItem {
                item: item as u32,
                score: *score,
            })
            .collect::<Vec<_>>();
        let count = candidates.len();
        let ranked = top_k(candidates, count);
        PopularityModel { scores, ranked }
    }

    /// The decayed score of `item` (0 for unknown items).
    pub fn score(&self, item: u32) -> f32 {
        self.scores.get(item as usize).copied().unwrap_or(0.0)
    }

    /// All items with a positive score, best first.
    pub fn ranked(&self) -> &[ScoredItem] {
        &self.ranked
    }

    /// The best score (0 when nothing was clicked).
    pub fn max_score(&self) -> f32 {
        self.ranked.first().map_or(0.0, |top| top.score)
    }
}

impl Recommender for PopularityModel {
    fn name(&self) -> &'static str {
        "popularity"
    }

    fn recommend(&self, _user: u32, k: usize, exclude: &[u32]) -> Vec<ScoredItem> {
        self.ranked
            .iter()
            .filter(|scored| exclude.binary_search(&scored.item).is_err())
            .take(k)
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_clicks_outweigh_old_ones() {
        let hour = 3_600_000;
        let anchor = 100 * hour;
        let mut clicks = Vec::new();
        // Item 0: three clicks two days ago; item 1: two clicks in the last hour.
        for user in 0..3 {
            clicks.push(Interaction {
                user,
                item: 0,
                ts_ms: anchor - 48 * hour,
            });
        }
        for user in 0..2 {
            clicks.push(Interaction {
                user,
                item: 1,
                ts_ms: anchor - hour / 2,
            });
        }
        let decayed = PopularityModel::fit(
            3,
            &clicks,
            anchor,
            &PopularityParams {
                half_life_hours: 2.0,
            },
        )
        .unwrap();
        let items: Vec<u32> = decayed
            .recommend(0, 10, &[])
            .iter()
            .map(|s| s.item)
            .collect();
        assert_eq!(items, [1, 0]);
        let counts = PopularityModel::fit(
            3,
            &clicks,
            anchor,
            &PopularityParams {
                half_life_hours: 0.0,
            },
        )
        .unwrap();
        let items: Vec<u32> = counts
            .recommend(0, 10, &[0])
            .iter()
            .map(|s| s.item)
            .collect();
        assert_eq!(items, [1]);
        assert!(
            PopularityModel::fit(
                3,
                &clicks,
                anchor,
                &PopularityParams {
                    half_life_hours: -1.0
                }
            )
            .is_err()
        );
    }
}
