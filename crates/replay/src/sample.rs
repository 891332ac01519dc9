//! Which clicks protocol P2 asks about: the first click of an evaluated user on each of their
//! truth articles (P1's rules: the user has training clicks, the article is not among them),
//! at most `max` per day, drawn uniformly with a seed.

use std::collections::HashSet;

use newsrec_model::{Dataset, Interaction};
use rand::{SeedableRng, seq::index::sample};

/// Indexes into `day_clicks` (sorted by time) of the sampled clicks, ascending; and how many
/// clicks were eligible before sampling.
pub fn sampled_clicks(
    train: &Dataset,
    day_clicks: &[Interaction],
    max: usize,
    seed: u64,
) -> (Vec<usize>, usize) {
    let mut seen: HashSet<(u32, u32)> = HashSet::new();
    let eligible: Vec<usize> = day_clicks
        .iter()
        .enumerate()
        .filter(|(_, click)| {
            let history = train.user_items(click.user);
            !history.is_empty()
                && history.binary_search(&click.item).is_err()
                && seen.insert((click.user, click.item))
        })
        .map(|(index, _)| index)
        .collect();
    let total = eligible.len();
    if total <= max {
        return (eligible, total);
    }
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut chosen: Vec<usize> = sample(&mut rng, total, max)
        .into_iter()
        .map(|i| eligible[i])
        .collect();
    chosen.sort_unstable();
    (chosen, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn click(user: u32, item: u32, ts_ms: i64) -> Interaction {
        Interaction { user, item, ts_ms }
    }

    #[test]
    fn first_click_of_known_users_on_new_articles_only() {
        // User 0 read item 0 in training; user 1 has no training clicks.
        let train = Dataset::build(2, 3, &[click(0, 0, 0)], 1, 3_600_000.0);
        let day = [
            click(0, 0, 10), // read in training: not truth
            click(0, 1, 11), // first click on truth: sampled
            click(1, 1, 12), // unknown user
            click(0, 1, 13), // second click on the same article
            click(0, 2, 14),
        ];
        assert_eq!(sampled_clicks(&train, &day, 100, 1), (vec![1, 4], 2));
        let (one, total) = sampled_clicks(&train, &day, 1, 1);
        assert_eq!((one.len(), total), (1, 2));
        assert_eq!(
            sampled_clicks(&train, &day, 1, 1).0,
            one,
            "same seed, same sample"
        );
    }
}
