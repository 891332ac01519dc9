//! Synthetic news clickstreams for the demo, tests and benchmarks.
//!
//! Consumes a [`SynthConfig`] (sizes, days, seed); produces click events sorted by time and the
//! article catalogue behind them. The stream has the shape that makes news recommendation hard:
//! readers with favourite topics, power-law article appeal, articles that age within hours, a
//! day/night cycle, and an election-night spike of many times the normal traffic on one evening.
//! The same config and seed always give the same stream. [`runs`] writes training runs of a
//! given shape straight into a lake, for tests that need one without training; [`fill_lake`]
//! writes a stream into one; [`recent_reading`] is a burst of the last two hours' clicks, for
//! warming real-time signals before a benchmark.

mod recent;
pub mod runs;

pub use recent::recent_reading;

use chrono::NaiveDate;
use newsrec_event::ClickEvent;
use rand::{Rng, SeedableRng, rngs::SmallRng};
use rand_distr::{Distribution, Exp, Pareto, weighted::WeightedIndex};

/// Shape and size of a synthetic stream.
#[derive(Debug, Clone)]
pub struct SynthConfig {
    pub start: NaiveDate,
    pub days: u32,
    pub users: usize,
    pub topics: usize,
    pub articles_per_day: usize,
    /// Sessions on an ordinary day (clicks are 2–6 per session).
    pub sessions_per_day: usize,
    /// Day index (0-based) of the election night.
    pub spike_day: u32,
    /// Traffic multiplier over the election-night hours (19:00–23:59 UTC).
    pub spike_factor: f64,
    /// Hours after which an article's appeal has halved.
    pub article_half_life_hours: f64,
    pub seed: u64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            start: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap_or_default(),
            days: 5,
            users: 4_000,
            topics: 12,
            articles_per_day: 150,
            sessions_per_day: 6_000,
            spike_day: 3,
            spike_factor: 15.0,
            article_half_life_hours: 8.0,
            seed: 7,
        }
    }
}

/// One article of the synthetic catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct Article {
    pub article_id: String,
    pub topic: usize,
    pub published_ms: i64,
}

/// A generated stream.
#[derive(Debug, Clone)]
pub struct Synthetic {
    /// Sorted by time.
    pub events: Vec<ClickEvent>,
    pub articles: Vec<Article>,
}

const HOUR_MS: i64 = 3_600_000;
const ELECTION_HOURS: std::ops::Range<u32> = 19..24;

/// Relative traffic by hour of day (UTC): quiet nights, morning and evening peaks.
const DIURNAL: [f64; 24] = [
    0.2, 0.1, 0.1, 0.1, 0.1, 0.2, 0.5, 0.9, 1.2, 1.2, 1.1, 1.0, 1.1, 1.0, 0.9, 0.9, 1.0, 1.1, 1.3,
    1.4, 1.3, 1.0, 0.7, 0.4,
];

/// Generates the stream for `config` and writes it into `lake` (one writer, hourly objects),
/// for tests that need a lake of clicks without running ingest.
pub async fn fill_lake(
    lake: &newsrec_lake::Lake,
    config: &SynthConfig,
) -> Result<Synthetic, newsrec_lake::LakeError> {
    let synthetic = generate(config);
    let events = std::sync::Arc::new(synthetic.events.clone());
    lake.write_events("testkit", 1, &[events]).await?;
    Ok(synthetic)
}

/// A loopback port free at the time of asking, for tests that start a node in a child process.
///
/// # Panics
/// When no port can be bound: this is test support.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("binding a loopback port")
        .port()
}

/// How many times each event id occurs among all the lake's events (any time), for tests that
/// check "every acknowledged event exactly once".
///
/// # Panics
/// On an unreadable lake: this is test support.
pub async fn lake_event_ids(lake: &newsrec_lake::Lake) -> std::collections::HashMap<String, usize> {
    let all_time = newsrec_lake::TimeWindow {
        start_ms: 946_684_800_000,
        end_ms: 4_102_444_800_000,
    };
    let mut counts = std::collections::HashMap::new();
    let batches = lake
        .read_events(all_time, newsrec_lake::EventColumns::All)
        .await
        .expect("reading the lake");
    for batch in batches {
        for event in newsrec_event::events_from_batch(&batch).expect("decoding lake events") {
            *counts.entry(event.event_id).or_insert(0) += 1;
        }
    }
    counts
}

/// Generates the stream for `config`.
pub fn generate(config: &SynthConfig) -> Synthetic {
    let mut rng = SmallRng::seed_from_u64(config.seed);
    let topics = config.topics.max(1);
    let start_ms = config
        .start
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp_millis())
        .unwrap_or_default();

    // Catalogue: articles published through each day (mostly daytime), appeal ~ Pareto.
    let pareto: Pareto<f64> = Pareto::new(1.0, 1.2).expect("valid pareto");
    let mut articles = Vec::new();
    let mut appeal = Vec::new();
    for day in 0..config.days {
        for index in 0..config.articles_per_day {
            let hour = rng.random_range(5..22) as i64;
            let published_ms = start_ms
                + i64::from(day) * 24 * HOUR_MS
                + hour * HOUR_MS
                + rng.random_range(0..HOUR_MS);
            articles.push(Article {
                article_id: format!("d{day}-a{index}"),
                topic: rng.random_range(0..topics),
                published_ms,
            });
            appeal.push(pareto.sample(&mut rng).min(50.0));
        }
    }
    let mut by_topic: Vec<Vec<usize>> = vec![Vec::new(); topics];
    for (index, article) in articles.iter().enumerate() {
        by_topic[article.topic].push(index);
    }
    for list in &mut by_topic {
        list.sort_by_key(|&index| articles[index].published_ms);
    }

    // Readers: activity ~ Zipf-like, one or two favourite topics.
    let activity: Vec<f64> = (0..config.users)
        .map(|rank| 1.0 / (rank as f64 + 10.0).powf(0.8))
        .collect();
    let pick_user = WeightedIndex::new(&activity).expect("positive weights");
    let favourites: Vec<[usize; 2]> = (0..config.users)
        .map(|_| [rng.random_range(0..topics), rng.random_range(0..topics)])
        .collect();

    let diurnal_total: f64 = DIURNAL.iter().sum();
    let gap: Exp<f64> = Exp::new(1.0 / 90.0).expect("valid rate"); // seconds between clicks in a session
    let mut events = Vec::new();
    for day in 0..config.days {
        for hour in 0..24u32 {
            let mut rate = config.sessions_per_day as f64 * DIURNAL[hour as usize] / diurnal_total;
            if day == config.spike_day && ELECTION_HOURS.contains(&hour) {
                rate *= config.spike_factor;
            }
            let sessions = rate.round() as usize;
            let hour_start = start_ms + i64::from(day) * 24 * HOUR_MS + i64::from(hour) * HOUR_MS;
            for _ in 0..sessions {
                let user = pick_user.sample(&mut rng);
                let mut ts = hour_start + rng.random_range(0..HOUR_MS);
                let session_id = format!("s{}", events.len());
                let clicks = rng.random_range(2..=6);
                let mut read = Vec::new();
                for _ in 0..clicks {
                    let topic = if rng.random_bool(0.8) {
                        favourites[user][rng.random_range(0..2)]
                    } else {
                        rng.random_range(0..topics)
                    };
                    let Some(article) = pick_article(
                        &mut rng,
                        &articles,
                        &appeal,
                        &by_topic[topic],
                        ts,
                        config.article_half_life_hours,
                    ) else {
                        continue;
                    };
                    if read.contains(&article) {
                        continue;
                    }
                    read.push(article);
                    let mut event = ClickEvent::click(
                        &format!("user{user}"),
                        &articles[article].article_id,
                        ts,
                    )
                    .expect("valid synthetic event");
                    event.session_id = Some(session_id.clone());
                    events.push(event);
                    ts += (gap.sample(&mut rng) * 1000.0) as i64 + 5_000;
                }
            }
        }
    }
    events.sort_by_key(|event| event.ts_ms);
    Synthetic { events, articles }
}

/// Picks an article of one topic already published at `ts`, weighted by appeal × freshness.
fn pick_article(
    rng: &mut SmallRng,
    articles: &[Article],
    appeal: &[f64],
    topic: &[usize],
    ts: i64,
    half_life_hours: f64,
) -> Option<usize> {
    let published = topic.partition_point(|&index| articles[index].published_ms <= ts);
    // Only the last two days matter: older articles have decayed to nothing.
    let horizon = ts - 48 * HOUR_MS;
    let first = topic[..published].partition_point(|&index| articles[index].published_ms < horizon);
    let candidates = &topic[first..published];
    if candidates.is_empty() {
        return None;
    }
    let weights: Vec<f64> = candidates
        .iter()
        .map(|&index| {
            let age_hours = (ts - articles[index].published_ms) as f64 / HOUR_MS as f64;
            appeal[index] * 0.5f64.powf(age_hours / half_life_hours)
        })
        .collect();
    let pick = WeightedIndex::new(&weights).ok()?;
    Some(candidates[pick.sample(rng)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_sorted_and_spiky() {
        let config = SynthConfig {
            users: 500,
            sessions_per_day: 800,
            ..SynthConfig::default()
        };
        let first = generate(&config);
        let second = generate(&config);
        assert_eq!(first.events, second.events);
        assert!(first.events.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms));
        let start_ms = config
            .start
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis();
        let clicks_in = |day: u32, hour: i64| {
            let from = start_ms + i64::from(day) * 24 * HOUR_MS + hour * HOUR_MS;
            first
                .events
                .iter()
                .filter(|e| (from..from + HOUR_MS).contains(&e.ts_ms))
                .count()
        };
        let spike = clicks_in(config.spike_day, 20);
        let normal = clicks_in(config.spike_day - 1, 20);
        assert!(spike >= 10 * normal, "spike {spike} vs normal {normal}");
        // No click on an article before it was published.
        let published: std::collections::HashMap<&str, i64> = first
            .articles
            .iter()
            .map(|a| (a.article_id.as_str(), a.published_ms))
            .collect();
        assert!(
            first
                .events
                .iter()
                .all(|e| published[e.article_id.as_str()] <= e.ts_ms)
        );
    }
}
