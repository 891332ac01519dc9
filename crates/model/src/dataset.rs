//! The training matrix: each user's distinct items with a time-decayed affinity.
//!
//! Built once from raw interactions and shared by every model of a run, so all models see the
//! same data. Rows are compressed (CSR) and sorted by item id, which lets callers intersect and
//! exclude with binary search.

/// One click, already interned: dense user and item ids and the event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Interaction {
    pub user: u32,
    pub item: u32,
    pub ts_ms: i64,
}

/// `0.5^(age / half_life)`, with age = `anchor_ms - ts_ms` clamped at zero.
///
/// A non-positive half-life means "no decay" (every event weighs 1).
pub fn decay_weight(anchor_ms: i64, ts_ms: i64, half_life_ms: f64) -> f64 {
    if half_life_ms <= 0.0 {
        return 1.0;
    }
    let age = (anchor_ms - ts_ms).max(0) as f64;
    (-std::f64::consts::LN_2 * age / half_life_ms).exp()
}

/// Users × items with decayed affinities, plus per-item click statistics.
#[derive(Debug, Clone)]
pub struct Dataset {
    n_users: usize,
    n_items: usize,
    row_offsets: Vec<usize>,
    row_items: Vec<u32>,
    row_affinity: Vec<f32>,
    /// Distinct users per item.
    item_user_count: Vec<u32>,
    /// End of the training window: every decay is anchored here.
    anchor_ms: i64,
}

impl Dataset {
    /// Builds the matrix. Repeated clicks of a user on an item add up their decayed weights.
    ///
    /// Ids must be below `n_users` / `n_items`; an out-of-range id is a caller bug.
    pub fn build(
        n_users: usize,
        n_items: usize,
        interactions: &[Interaction],
        anchor_ms: i64,
        affinity_half_life_ms: f64,
    ) -> Dataset {
        let mut sorted: Vec<Interaction> = interactions.to_vec();
        sorted.sort_unstable_by_key(|it| (it.user, it.item, it.ts_ms));
        // One row per (user, item), its decayed weights summed in time order.
        let mut rows: Vec<(u32, u32, f32)> = Vec::new();
        for it in &sorted {
            let weight = decay_weight(anchor_ms, it.ts_ms, affinity_half_life_ms) as f32;
            match rows.last_mut() {
                Some((user, item, affinity)) if (*user, *item) == (it.user, it.item) => {
                    *affinity += weight;
                }
                _ => rows.push((it.user, it.item, weight)),
            }
        }
        Dataset::from_affinities(n_users, n_items, &rows, anchor_ms)
    }

    /// Builds the matrix from affinities already summed per (user, item), as the daily job
    /// sums them from hourly rollups. `rows` must be sorted by user then item, without repeats
    /// and with ids below `n_users` / `n_items` (a caller bug otherwise).
    pub fn from_affinities(
        n_users: usize,
        n_items: usize,
        rows: &[(u32, u32, f32)],
        anchor_ms: i64,
    ) -> Dataset {
        let mut row_offsets = vec![0usize; n_users + 1];
        let mut row_items = Vec::with_capacity(rows.len());
        let mut row_affinity = Vec::with_capacity(rows.len());
        let mut item_user_count = vec![0u32; n_items];
        for &(user, item, affinity) in rows {
            debug_assert!((user as usize) < n_users && (item as usize) < n_items);
            row_items.push(item);
            row_affinity.push(affinity);
            row_offsets[user as usize + 1] += 1;
            item_user_count[item as usize] += 1;
        }
        for user in 0..n_users {
            row_offsets[user + 1] += row_offsets[user];
        }
        Dataset {
            n_users,
            n_items,
            row_offsets,
            row_items,
            row_affinity,
            item_user_count,
            anchor_ms,
        }
    }

    pub fn n_users(&self) -> usize {
        self.n_users
    }

    pub fn n_items(&self) -> usize {
        self.n_items
    }

    pub fn anchor_ms(&self) -> i64 {
        self.anchor_ms
    }

    /// Distinct (user, item) pairs.
    pub fn n_pairs(&self) -> usize {
        self.row_items.len()
    }

    /// The user's distinct items, sorted ascending (empty for an unknown user).
    pub fn user_items(&self, user: u32) -> &[u32] {
        match self.row_range(user) {
            Some(range) => &self.row_items[range],
            None => &[],
        }
    }

    /// The user's affinities, aligned with [`Dataset::user_items`].
    pub fn user_affinities(&self, user: u32) -> &[f32] {
        match self.row_range(user) {
            Some(range) => &self.row_affinity[range],
            None => &[],
        }
    }

    /// Number of distinct users who clicked `item`.
    pub fn item_user_count(&self, item: u32) -> u32 {
        self.item_user_count
            .get(item as usize)
            .copied()
            .unwrap_or(0)
    }

    /// Item → users lists (CSR), for models that walk the matrix by column.
    pub(crate) fn item_users(&self) -> (Vec<usize>, Vec<u32>) {
        let mut offsets = vec![0usize; self.n_items + 1];
        for (item, count) in self.item_user_count.iter().enumerate() {
            offsets[item + 1] = offsets[item] + *count as usize;
        }
        let mut cursor = offsets.clone();
        let mut users = vec![0u32; self.row_items.len()];
        for user in 0..self.n_users {
            for &item in self.user_items(user as u32) {
                users[cursor[item as usize]] = user as u32;
                cursor[item as usize] += 1;
            }
        }
        (offsets, users)
    }

    fn row_range(&self, user: u32) -> Option<std::ops::Range<usize>> {
        let user = user as usize;
        (user < self.n_users).then(|| self.row_offsets[user]..self.row_offsets[user + 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_clicks_sum_and_rows_are_sorted() {
        let day = 86_400_000;
        let clicks = [
            Interaction {
                user: 1,
                item: 5,
                ts_ms: 0,
            },
            Interaction {
                user: 1,
                item: 2,
                ts_ms: day,
            },
            Interaction {
                user: 1,
                item: 5,
                ts_ms: day,
            },
            Interaction {
                user: 0,
                item: 5,
                ts_ms: day,
            },
        ];
        let data = Dataset::build(3, 6, &clicks, day, day as f64);
        assert_eq!(data.user_items(1), &[2, 5]);
        let affinity = data.user_affinities(1);
        assert!((affinity[0] - 1.0).abs() < 1e-6);
        assert!((affinity[1] - 1.5).abs() < 1e-6);
        assert_eq!(data.user_items(2), &[] as &[u32]);
        assert_eq!(data.user_items(99), &[] as &[u32]);
        assert_eq!(data.item_user_count(5), 2);
        let (offsets, users) = data.item_users();
        assert_eq!(&users[offsets[5]..offsets[6]], &[0, 1]);
    }

    #[test]
    fn decay_halves_per_half_life() {
        assert!((decay_weight(10, 0, 10.0) - 0.5).abs() < 1e-12);
        assert_eq!(decay_weight(0, 10, 10.0), 1.0);
        assert_eq!(decay_weight(100, 0, 0.0), 1.0);
    }
}
