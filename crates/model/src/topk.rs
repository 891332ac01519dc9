//! Top-k selection with a total, deterministic order: higher score first, then lower item id.

use serde::{Deserialize, Serialize};

/// An item with its score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoredItem {
    pub item: u32,
    pub score: f32,
}

/// The ranking order: `Less` when `a` ranks before `b`.
pub(crate) fn better(a: &ScoredItem, b: &ScoredItem) -> std::cmp::Ordering {
    b.score.total_cmp(&a.score).then(a.item.cmp(&b.item))
}

/// Keeps the best `k` of `candidates`, best first.
///
/// Runs in O(n + k log k): a selection puts the k best in front, then only they are sorted.
pub fn top_k(mut candidates: Vec<ScoredItem>, k: usize) -> Vec<ScoredItem> {
    if k == 0 {
        return Vec::new();
    }
    if candidates.len() > k {
        candidates.select_nth_unstable_by(k - 1, better);
        candidates.truncate(k);
    }
    candidates.sort_unstable_by(better);
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn top_k_equals_full_sort_prefix(
            scores in proptest::collection::vec(0u8..20, 0..200),
            k in 0usize..50,
        ) {
            let candidates: Vec<ScoredItem> = scores
                .iter()
                .enumerate()
                .map(|(item, score)| ScoredItem { item: item as u32, score: f32::from(*score) })
                .collect();
            let mut sorted = candidates.clone();
            sorted.sort_by(better);
            sorted.truncate(k);
            let picked = top_k(candidates, k);
            prop_assert_eq!(picked, sorted);
        }
    }
}
