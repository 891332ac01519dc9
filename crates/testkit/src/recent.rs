//! A short burst of recent reading, for warming real-time state (trending, co-visitation,
//! recent reads) before a measurement, as a node that has served for a while would have it.

use newsrec_event::ClickEvent;
use rand::{Rng, SeedableRng, rngs::SmallRng};
use rand_distr::Zipf;

/// How far back the burst reaches: two hours before its end.
const SPAN_MS: i64 = 7_200_000;

/// Articles the burst reads, `fresh1` to `fresh5000`, by Zipf appeal.
const ARTICLES: f64 = 5_000.0;

/// `clicks` clicks evenly spread over the two hours before `end_ms`, in sessions of three by
/// readers drawn uniformly from `u0..u{users - 1}` (the user ids a synthetic generation of
/// `users` lists holds), each on one of 5,000 articles `fresh<rank>` drawn from a Zipf law of
/// exponent 1.1. The same seed gives the same clicks.
pub fn recent_reading(
    users: usize,
    clicks: usize,
    end_ms: i64,
    seed: u64,
) -> impl Iterator<Item = ClickEvent> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let zipf = Zipf::new(ARTICLES, 1.1).expect("valid Zipf parameters");
    let step = SPAN_MS / clicks.max(1) as i64;
    let mut user = 0;
    (0..clicks).map(move |i| {
        if i % 3 == 0 {
            user = rng.random_range(0..users.max(1));
        }
        let article = rng.sample(zipf) as u64;
        ClickEvent::click(
            &format!("u{user}"),
            &format!("fresh{article}"),
            end_ms - SPAN_MS + i as i64 * step,
        )
        .expect("synthetic ids and times are valid")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_of_three_known_readers_in_the_last_two_hours() {
        let end_ms = 1_764_650_000_000;
        let clicks: Vec<ClickEvent> = recent_reading(50, 3_000, end_ms, 11).collect();
        assert_eq!(clicks.len(), 3_000);
        assert_eq!(
            clicks,
            recent_reading(50, 3_000, end_ms, 11).collect::<Vec<_>>()
        );
        assert_ne!(
            clicks,
            recent_reading(50, 3_000, end_ms, 12).collect::<Vec<_>>()
        );
        for session in clicks.chunks(3) {
            assert!(session.iter().all(|c| c.user_id == session[0].user_id));
        }
        for click in &clicks {
            let user: usize = click.user_id[1..].parse().unwrap();
            let article: u64 = click.article_id["fresh".len()..].parse().unwrap();
            assert!(user < 50 && (1..=5_000).contains(&article), "{click:?}");
            assert!((end_ms - SPAN_MS..end_ms).contains(&click.ts_ms));
        }
        assert!(clicks.windows(2).all(|w| w[0].ts_ms < w[1].ts_ms));
        // Zipf appeal: the first-ranked article is the most read.
        let top = clicks.iter().filter(|c| c.article_id == "fresh1").count();
        let tenth = clicks.iter().filter(|c| c.article_id == "fresh10").count();
        assert!(top > 5 * tenth.max(1), "fresh1 {top}, fresh10 {tenth}");
    }
}
