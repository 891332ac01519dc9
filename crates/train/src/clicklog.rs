//! The clicks of a time span, read from the lake once, deduplicated and interned to dense ids.
//!
//! Interning follows the lake's deterministic read order, so the same lake gives the same ids and
//! therefore the same models. Every training window and test day of a run (or of a multi-day
//! evaluation) is a slice of one log, so ids agree across them.

use std::collections::{HashMap, HashSet};

use arrow_array::{Array, RecordBatch, StringArray, TimestampMillisecondArray};
use newsrec_lake::{EventColumns, Lake, TimeWindow};
use newsrec_model::Interaction;

use crate::TrainError;

/// Interned, deduplicated clicks sorted by time.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct ClickLog {
    pub users: Vec<String>,
    pub items: Vec<String>,
    /// Sorted by `ts_ms` (stable: ties keep lake order).
    pub clicks: Vec<Interaction>,
    pub duplicates: u64,
    pub other_events: u64,
}

impl ClickLog {
    /// Reads every event with time in `window`.
    pub async fn read(lake: &Lake, window: TimeWindow) -> Result<ClickLog, TrainError> {
        let batches = lake.read_events(window, EventColumns::Training).await?;
        tokio::task::spawn_blocking(move || ClickLog::from_batches(&batches))
            .await
            .map_err(|join| TrainError::Internal(join.to_string()))?
    }

    /// Builds the log from lake batches (training projection or full schema).
    pub fn from_batches(batches: &[RecordBatch]) -> Result<ClickLog, TrainError> {
        let mut log = ClickLog::default();
        let mut user_ids: HashMap<String, u32> = HashMap::new();
        let mut item_ids: HashMap<String, u32> = HashMap::new();
        let mut seen: HashSet<u128> = HashSet::new();
        for batch in batches {
            let event_id = string_column(batch, "event_id")?;
            let user_id = string_column(batch, "user_id")?;
            let article_id = string_column(batch, "article_id")?;
            let event_type = string_column(batch, "type")?;
            let ts = batch
                .column_by_name("ts")
                .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
                .ok_or_else(|| {
                    TrainError::Schema("column \"ts\" is missing or not a timestamp".into())
                })?;
            for row in 0..batch.num_rows() {
                if event_type.value(row) != "click" {
                    log.other_events += 1;
                    continue;
                }
                if !seen.insert(xxhash_rust::xxh3::xxh3_128(event_id.value(row).as_bytes())) {
                    log.duplicates += 1;
                    continue;
                }
                let user = intern(&mut user_ids, &mut log.users, user_id.value(row));
                let item = intern(&mut item_ids, &mut log.items, article_id.value(row));
                log.clicks.push(Interaction {
                    user,
                    item,
                    ts_ms: ts.value(row),
                });
            }
        }
        log.clicks.sort_by_key(|click| click.ts_ms);
        Ok(log)
    }

    /// The clicks with time in `window` (a contiguous slice, since clicks are sorted).
    pub fn slice(&self, window: TimeWindow) -> &[Interaction] {
        let start = self
            .clicks
            .partition_point(|click| click.ts_ms < window.start_ms);
        let end = self
            .clicks
            .partition_point(|click| click.ts_ms < window.end_ms);
        &self.clicks[start..end.max(start)]
    }
}

fn intern(ids: &mut HashMap<String, u32>, names: &mut Vec<String>, name: &str) -> u32 {
    if let Some(&id) = ids.get(name) {
        return id;
    }
    let id = names.len() as u32;
    names.push(name.to_owned());
    ids.insert(name.to_owned(), id);
    id
}

fn string_column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray, TrainError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| TrainError::Schema(format!("column \"{name}\" is missing or not text")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use newsrec_event::{ClickEvent, EventType, events_to_batch};

    #[test]
    fn dedups_by_event_id_skips_views_and_sorts_by_time() {
        let a = ClickEvent::click("u1", "a1", 2_000_000_000_000).unwrap();
        let b = ClickEvent::click("u2", "a1", 1_000_000_000_000).unwrap();
        let mut view = ClickEvent::click("u3", "a2", 1_500_000_000_000).unwrap();
        view.event_type = EventType::View;
        let batch = events_to_batch(&[a.clone(), b, view, a]).unwrap();
        let log = ClickLog::from_batches(&[batch]).unwrap();
        assert_eq!(log.duplicates, 1);
        assert_eq!(log.other_events, 1);
        assert_eq!(log.users, ["u1", "u2"]);
        assert_eq!(
            log.clicks.iter().map(|c| c.user).collect::<Vec<_>>(),
            [1, 0]
        );
        let window = TimeWindow {
            start_ms: 1_500_000_000_000,
            end_ms: 3_000_000_000_000,
        };
        assert_eq!(log.slice(window).len(), 1);
    }
}
