//! Protocol P1, next-day evaluation: the yardstick of every offline quality figure (train's
//! backtest and model choice, `newsrec eval`, the publish gate).
//!
//! Evaluated users have at least one training click and at least one test-day click on an
//! article they did not click in training. Truth(u) = distinct articles clicked on the test day
//! minus those clicked in training; the list is the model's top 10 excluding training clicks.
//! HR@10 = share of users with a hit, Recall@10 = hits / |truth|, NDCG@10 binary with IDCG over
//! min(10, |truth|). Coverage is the share of training items recommended to anyone;
//! `truth_in_train` the share of truth pairs whose article occurs in training, the ceiling of a
//! model that only knows training items.

use std::collections::BTreeSet;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{Dataset, Recommender};

/// The list length P1 evaluates.
pub const P1_K: usize = 10;

/// The evaluated users of a test day and their truth sets.
#[derive(Debug, Clone, Default)]
pub struct TestSet {
    users: Vec<(u32, Vec<u32>)>,
}

impl TestSet {
    /// Applies P1's user and truth rules to the test day's `(user, item)` clicks.
    pub fn build(train: &Dataset, test_clicks: &[(u32, u32)]) -> TestSet {
        let mut sorted = test_clicks.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut users: Vec<(u32, Vec<u32>)> = Vec::new();
        for (user, item) in sorted {
            let history = train.user_items(user);
            if history.is_empty() || history.binary_search(&item).is_ok() {
                continue;
            }
            match users.last_mut() {
                Some((last, truth)) if *last == user => truth.push(item),
                _ => users.push((user, vec![item])),
            }
        }
        TestSet { users }
    }

    /// Number of evaluated users.
    pub fn n_users(&self) -> usize {
        self.users.len()
    }

    /// The evaluated users with their truth sets (sorted).
    pub fn users(&self) -> &[(u32, Vec<u32>)] {
        &self.users
    }
}

/// P1 figures of one model on one test day.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    #[serde(rename = "hr@10")]
    pub hit_rate: f64,
    #[serde(rename = "recall@10")]
    pub recall: f64,
    #[serde(rename = "ndcg@10")]
    pub ndcg: f64,
    pub users: usize,
    pub coverage: f64,
    pub truth_in_train: f64,
}

impl EvalMetrics {
    /// The metric named `name` (`hr@10`, `recall@10`, `ndcg@10`, `coverage`), if it exists.
    pub fn get(&self, name: &str) -> Option<f64> {
        match name {
            "hr@10" => Some(self.hit_rate),
            "recall@10" => Some(self.recall),
            "ndcg@10" => Some(self.ndcg),
            "coverage" => Some(self.coverage),
            _ => None,
        }
    }
}

/// Runs P1 for `model` on `test`, where `train` is the dataset the model was fitted on.
pub fn evaluate_p1(model: &dyn Recommender, train: &Dataset, test: &TestSet) -> EvalMetrics {
    struct UserOutcome {
        hit: bool,
        recall: f64,
        ndcg: f64,
        truth_pairs: usize,
        truth_in_train: usize,
        recommended: Vec<u32>,
    }
    let outcomes: Vec<UserOutcome> = test
        .users
        .par_iter()
        .map(|(user, truth)| {
            let list = model.recommend(*user, P1_K, train.user_items(*user));
            let mut dcg = 0.0;
            let mut hits = 0usize;
            for (rank, scored) in list.iter().enumerate() {
                if truth.binary_search(&scored.item).is_ok() {
                    hits += 1;
                    dcg += 1.0 / ((rank + 2) as f64).log2();
                }
            }
            let ideal: f64 = (0..truth.len().min(P1_K))
                .map(|rank| 1.0 / ((rank + 2) as f64).log2())
                .sum();
            UserOutcome {
                hit: hits > 0,
                recall: hits as f64 / truth.len() as f64,
                ndcg: dcg / ideal,
                truth_pairs: truth.len(),
                truth_in_train: truth
                    .iter()
                    .filter(|item| train.item_user_count(**item) > 0)
                    .count(),
                recommended: list.iter().map(|scored| scored.item).collect(),
            }
        })
        .collect();
    let users = outcomes.len();
    let mean = |value: fn(&UserOutcome) -> f64| {
        if users == 0 {
            0.0
        } else {
            outcomes.iter().map(value).sum::<f64>() / users as f64
        }
    };
    let recommended: BTreeSet<u32> = outcomes
        .iter()
        .flat_map(|o| o.recommended.iter().copied())
        .collect();
    let train_items = (0..train.n_items() as u32)
        .filter(|item| train.item_user_count(*item) > 0)
        .count();
    let truth_pairs: usize = outcomes.iter().map(|o| o.truth_pairs).sum();
    let truth_in_train: usize = outcomes.iter().map(|o| o.truth_in_train).sum();
    EvalMetrics {
        hit_rate: mean(|o| if o.hit { 1.0 } else { 0.0 }),
        recall: mean(|o| o.recall),
        ndcg: mean(|o| o.ndcg),
        users,
        coverage: if train_items == 0 {
            0.0
        } else {
            recommended.len() as f64 / train_items as f64
        },
        truth_in_train: if truth_pairs == 0 {
            0.0
        } else {
            truth_in_train as f64 / truth_pairs as f64
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Interaction, ScoredItem};

    /// Recommends a fixed list to everyone, minus exclusions.
    struct Fixed(Vec<u32>);

    impl Recommender for Fixed {
        fn name(&self) -> &'static str {
            "fixed"
        }
        fn recommend(&self, _user: u32, k: usize, exclude: &[u32]) -> Vec<ScoredItem> {
            self.0
                .iter()
                .filter(|item| exclude.binary_search(item).is_err())
                .take(k)
                .map(|&item| ScoredItem { item, score: 1.0 })
                .collect()
        }
    }

    #[test]
    fn p1_rules_and_metrics_by_hand() {
        // Items 0..3 in train; item 9 appears only on the test day.
        let train_clicks = [
            Interaction {
                user: 0,
                item: 0,
                ts_ms: 0,
            },
            Interaction {
                user: 1,
                item: 1,
                ts_ms: 0,
            },
            Interaction {
                user: 2,
                item: 2,
                ts_ms: 0,
            },
            Interaction {
                user: 3,
                item: 3,
                ts_ms: 0,
            },
        ];
        let train = Dataset::build(5, 10, &train_clicks, 1, 0.0);
        let test_clicks = [
            (0, 0), // re-read of a train item: not truth
            (0, 1),
            (0, 9),
            (1, 1), // user 1 only re-reads: not evaluated
            (2, 3),
            (4, 2), // user 4 has no train clicks: not evaluated
        ];
        let test = TestSet::build(&train, &test_clicks);
        assert_eq!(test.users(), &[(0, vec![1, 9]), (2, vec![3])]);
        // List for user 0 (excl. 0): [1, 2, 3, ...] → hit at rank 1; user 2 (excl. 2): [0, 1, 3] → hit at rank 3.
        let metrics = evaluate_p1(&Fixed(vec![0, 1, 2, 3]), &train, &test);
        assert_eq!(metrics.users, 2);
        assert!((metrics.hit_rate - 1.0).abs() < 1e-12);
        assert!((metrics.recall - (0.5 + 1.0) / 2.0).abs() < 1e-12);
        let user0 = 1.0 / (1.0 + 1.0 / 3f64.log2());
        let user2 = (1.0 / 4f64.log2()) / 1.0;
        assert!(
            (metrics.ndcg - (user0 + user2) / 2.0).abs() < 1e-12,
            "{metrics:?}"
        );
        assert!((metrics.truth_in_train - 2.0 / 3.0).abs() < 1e-12);
        assert!((metrics.coverage - 1.0).abs() < 1e-12);
        let miss = evaluate_p1(&Fixed(vec![2]), &train, &test);
        assert_eq!(miss.hit_rate, 0.0);
    }
}
