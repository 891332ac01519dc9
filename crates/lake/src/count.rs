//! Counting the lake's events without reading them: each event object's Parquet footer records
//! its row count, so a count costs two small range reads per object, whatever the object's size.

use futures::TryStreamExt;
use object_store::{ObjectMeta, ObjectStoreExt, path::Path};
use parquet::file::{
    FOOTER_SIZE,
    metadata::{FooterTail, ParquetMetaDataReader},
};

use crate::{Lake, LakeError, layout};

/// What the lake's event objects hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventCount {
    /// Event objects (`events/dt=…/hour=…/*.parquet`).
    pub objects: u64,
    /// Events in them, as their footers record.
    pub events: u64,
    /// Their size.
    pub bytes: u64,
}

impl Lake {
    /// Counts every event object of any time, its events and its bytes. Objects are written
    /// whole or not at all, so every object listed is a committed one.
    pub async fn count_events(&self) -> Result<EventCount, LakeError> {
        let prefix = Path::from(layout::EVENTS_PREFIX);
        let objects: Vec<ObjectMeta> = self
            .store()
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|source| LakeError::store(&prefix, source))?;
        let mut count = EventCount::default();
        for meta in objects {
            if layout::parse_event_object_path(&meta.location).is_none() {
                continue;
            }
            count.events += self.footer_rows(&meta).await?;
            count.objects += 1;
            count.bytes += meta.size;
        }
        Ok(count)
    }

    /// The row count a Parquet object's footer records.
    async fn footer_rows(&self, meta: &ObjectMeta) -> Result<u64, LakeError> {
        let path = &meta.location;
        let bad = |reason: String| LakeError::bad_object(path, reason);
        let read = |range: std::ops::Range<u64>| async move {
            self.store()
                .get_range(path, range)
                .await
                .map_err(|source| LakeError::store(path, source))
        };
        let tail_size = FOOTER_SIZE as u64;
        if meta.size < tail_size {
            return Err(bad(format!("{} bytes is too short for Parquet", meta.size)));
        }
        let tail = read(meta.size - tail_size..meta.size).await?;
        let footer = FooterTail::try_from(tail.as_ref()).map_err(|error| bad(error.to_string()))?;
        let metadata_size = footer.metadata_length() as u64;
        let Some(metadata_start) = meta.size.checked_sub(tail_size + metadata_size) else {
            return Err(bad(format!(
                "its footer claims {metadata_size} bytes of metadata in a {}-byte object",
                meta.size
            )));
        };
        let metadata = read(metadata_start..meta.size - tail_size).await?;
        let metadata = ParquetMetaDataReader::decode_metadata(&metadata)
            .map_err(|error| bad(error.to_string()))?;
        u64::try_from(metadata.file_metadata().num_rows())
            .map_err(|_| bad("its footer records a negative row count".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use newsrec_event::ClickEvent;

    use super::*;

    #[tokio::test]
    async fn counts_events_from_footers_across_partitions_and_ignores_other_objects() {
        let lake = Lake::open("memory://").unwrap();
        assert_eq!(lake.count_events().await.unwrap(), EventCount::default());
        let hour_ms = 3_600_000;
        let start = 1_764_633_600_000; // 2025-12-02T00:00Z
        let events: Vec<ClickEvent> = (0..250)
            .map(|i| ClickEvent::click(&format!("u{i}"), "a1", start + (i % 3) * hour_ms).unwrap())
            .collect();
        let written = lake
            .write_events("node-a", 1, &[Arc::new(events)])
            .await
            .unwrap();
        assert_eq!(written.len(), 3, "one object per hour touched");
        let more = vec![ClickEvent::click("u9", "a2", start + 30 * hour_ms).unwrap()];
        let more = lake
            .write_events("node-b", 7, &[Arc::new(more)])
            .await
            .unwrap();
        // Objects that are not event objects do not count.
        lake.put_object(&Path::from("events/README.txt"), "not parquet")
            .await
            .unwrap();
        lake.put_object(&Path::from("runs/r1/manifest.json"), "{}")
            .await
            .unwrap();

        let count = lake.count_events().await.unwrap();
        assert_eq!(count.objects, 4);
        assert_eq!(count.events, 251);
        let bytes: usize = written.iter().chain(&more).map(|object| object.bytes).sum();
        assert_eq!(count.bytes, bytes as u64);
    }

    #[tokio::test]
    async fn a_damaged_event_object_is_named() {
        let lake = Lake::open("memory://").unwrap();
        let path =
            layout::event_object_path(layout::Partition::of_ts(1_764_633_600_000), "node-a", 1);
        lake.put_object(&path, "PAR1 truncated").await.unwrap();
        let error = lake.count_events().await.unwrap_err();
        assert!(error.to_string().contains(path.as_ref()), "{error}");
    }
}
