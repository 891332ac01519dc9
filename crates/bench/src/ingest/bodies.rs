//! Realistic request bodies for the ingest benchmark: NDJSON batches of ~200-byte click events
//! whose ids are unique per request without re-rendering the JSON.
//!
//! Rendering 500 events per request in the load generator would cost the generator as much CPU
//! as the node spends parsing them, on a machine where the two share two cores. So each
//! connection renders a few templates once, and every request copies one and writes its request
//! number into the fixed-width digits of each `event_id`: every event sent is distinct, and the
//! generator's per-request work is a memcpy.

use bytes::Bytes;
use rand::{Rng, SeedableRng, rngs::SmallRng};

/// Width of the request-number field inside each event id.
const SEQUENCE_DIGITS: usize = 10;

/// Referrers a portal's pages send, for realistic event sizes.
const REFERRERS: [&str; 6] = [
    "https://news.example.com/",
    "https://news.example.com/politics/",
    "https://news.example.com/sport/football/",
    "https://www.google.com/",
    "https://t.co/",
    "https://news.example.com/economy/markets/",
];

/// One pre-rendered batch and where its per-request digits go.
#[derive(Debug, Clone)]
pub struct BodyTemplate {
    text: Vec<u8>,
    /// Byte offsets of each event's request-number digits.
    sequence_at: Vec<usize>,
    /// Byte range of each event's line (without the newline), for the peer's one-message-per-event.
    lines: Vec<(usize, usize)>,
}

impl BodyTemplate {
    /// Renders `events` events of connection `connection`, with event times in the hour before
    /// `now_ms` (so objects land in one or two hourly partitions, as live traffic does).
    pub fn render(connection: usize, variant: usize, events: usize, now_ms: i64) -> BodyTemplate {
        let mut rng = SmallRng::seed_from_u64(((connection as u64) << 16) | variant as u64);
        let mut text = Vec::with_capacity(events * 220);
        let mut sequence_at = Vec::with_capacity(events);
        let mut lines = Vec::with_capacity(events);
        for index in 0..events {
            let start = text.len();
            // Power-law-ish article popularity: a few articles take most clicks.
            let article = (rng.random::<f64>().powi(3) * 20_000.0) as u32;
            let user = rng.random_range(0..2_000_000u32);
            let ts_ms = now_ms - rng.random_range(0..3_600_000i64);
            let prefix = format!("{{\"event_id\":\"c{connection:03}-");
            text.extend_from_slice(prefix.as_bytes());
            sequence_at.push(text.len());
            text.extend_from_slice(&[b'0'; SEQUENCE_DIGITS]);
            let rest = format!(
                "-{index:04}\",\"user_id\":\"u{user:07}\",\"article_id\":\"a{article:06}\",\"ts\":{ts_ms},\"type\":\"click\",\"session_id\":\"s{user:07}-{session:03}\",\"dwell_ms\":{dwell},\"referrer\":\"{referrer}\"}}",
                session = rng.random_range(0..200u32),
                dwell = rng.random_range(500..180_000u32),
                referrer = REFERRERS[rng.random_range(0..REFERRERS.len())],
            );
            text.extend_from_slice(rest.as_bytes());
            lines.push((start, text.len()));
            text.push(b'\n');
        }
        BodyTemplate {
            text,
            sequence_at,
            lines,
        }
    }

    /// The body of request number `sequence`: the template with the number in every event id.
    pub fn body(&self, sequence: u64) -> Bytes {
        let mut text = self.text.clone();
        let digits = format!(
            "{:0width$}",
            sequence % 10u64.pow(SEQUENCE_DIGITS as u32),
            width = SEQUENCE_DIGITS
        );
        for &at in &self.sequence_at {
            text[at..at + SEQUENCE_DIGITS].copy_from_slice(digits.as_bytes());
        }
        Bytes::from(text)
    }

    /// Byte ranges of the events (one line each) inside a body made by [`BodyTemplate::body`].
    pub fn lines(&self) -> &[(usize, usize)] {
        &self.lines
    }

    pub fn events(&self) -> usize {
        self.lines.len()
    }

    pub fn len(&self) -> usize {
        self.text.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_parse_as_valid_distinct_events_of_about_200_bytes() {
        let template = BodyTemplate::render(3, 1, 500, 1_764_650_000_000);
        let first = template.body(7);
        let second = template.body(8);
        let a = newsrec_event::parse_body(&first, 500).unwrap();
        let b = newsrec_event::parse_body(&second, 500).unwrap();
        assert!(a.rejected.is_empty(), "{:?}", a.rejected.first());
        assert_eq!(a.events.len(), 500);
        let mut ids: Vec<&str> = a
            .events
            .iter()
            .chain(&b.events)
            .map(|e| e.event_id.as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 1000, "event ids repeat across requests");
        let mean = template.len() as f64 / template.events() as f64;
        assert!((170.0..260.0).contains(&mean), "mean event size {mean}");
        let (start, end) = template.lines()[42];
        assert!(
            newsrec_event::parse_body(&first[start..end], 1)
                .unwrap()
                .rejected
                .is_empty()
        );
    }
}
