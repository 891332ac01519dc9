//! Writing events into hourly partitions and reading a time window back.
//!
//! A write groups events by the hour of their event time, so a late event lands in its own
//! hour's folder, and puts one zstd Parquet object per touched partition, sorted by time. Reads
//! list only the day folders the window touches, skip hours outside it, and filter rows to the
//! exact window; objects are read in path order so every reader sees the same row order.

use std::{collections::BTreeMap, sync::Arc};

use arrow_array::{Array, BooleanArray, RecordBatch, TimestampMillisecondArray};
use bytes::Bytes;
use chrono::NaiveDate;
use futures::{StreamExt, TryStreamExt};
use newsrec_event::{ClickEvent, events_to_batch};
use object_store::{ObjectMeta, ObjectStoreExt, PutPayload, WriteMultipart, path::Path};
use parquet::{
    arrow::{ArrowWriter, ProjectionMask, arrow_reader::ParquetRecordBatchReaderBuilder},
    basic::{Compression, ZstdLevel},
    file::properties::WriterProperties,
};

use crate::{
    Lake, LakeError,
    layout::{self, Partition},
};

/// How many objects a reader fetches at once.
const READ_CONCURRENCY: usize = 8;

/// A half-open interval of event time, `[start_ms, end_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    pub start_ms: i64,
    pub end_ms: i64,
}

impl TimeWindow {
    /// Whole UTC days `[first, end)`.
    pub fn days(first: NaiveDate, end: NaiveDate) -> TimeWindow {
        TimeWindow {
            start_ms: layout::day_start_ms(first),
            end_ms: layout::day_start_ms(end),
        }
    }

    /// The UTC day of the window's first millisecond.
    pub fn start_date(&self) -> NaiveDate {
        Partition::of_ts(self.start_ms).date
    }

    pub fn contains(&self, ts_ms: i64) -> bool {
        (self.start_ms..self.end_ms).contains(&ts_ms)
    }

    /// The UTC days the window touches, in order.
    pub fn touched_days(&self) -> Vec<NaiveDate> {
        if self.end_ms <= self.start_ms {
            return Vec::new();
        }
        let first = Partition::of_ts(self.start_ms).date;
        let last = Partition::of_ts(self.end_ms - 1).date;
        first.iter_days().take_while(|day| *day <= last).collect()
    }
}

/// Which event columns a reader wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventColumns {
    /// Every column of the lake schema.
    All,
    /// What training needs: `event_id`, `user_id`, `article_id`, `ts`, `type`, `session_id`.
    Training,
}

impl EventColumns {
    fn names(self) -> Option<&'static [&'static str]> {
        match self {
            EventColumns::All => None,
            EventColumns::Training => Some(&[
                "event_id",
                "user_id",
                "article_id",
                "ts",
                "type",
                "session_id",
            ]),
        }
    }
}

/// One object a write produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenObject {
    pub path: Path,
    pub events: usize,
    pub bytes: usize,
}

impl Lake {
    /// Writes events as batch `seq` of `writer`: one Parquet object per hour partition touched.
    ///
    /// The events come as shared chunks (one per request, say) in order; they are grouped and
    /// encoded by reference, so a caller that keeps its buffer for a retry pays no copy.
    /// Returns only after every object is stored (and, on a local lake, fsynced). The object
    /// names are a function of `(partition, writer, seq)`, so writing the same batch again
    /// replaces the same objects instead of adding copies.
    pub async fn write_events(
        &self,
        writer: &str,
        seq: u64,
        chunks: &[Arc<Vec<ClickEvent>>],
    ) -> Result<Vec<WrittenObject>, LakeError> {
        layout::validate_name("writer name", writer)?;
        let chunks = chunks.to_vec();
        let writer_name = writer.to_owned();
        // Grouping, sorting and encoding are CPU work: all of it off the async threads at once.
        let encoded =
            tokio::task::spawn_blocking(move || encode_partitions(&writer_name, seq, &chunks))
                .await
                .map_err(|join| LakeError::bad_object(layout::EVENTS_PREFIX, join))??;
        let mut written = Vec::with_capacity(encoded.len());
        for (path, events, body) in encoded {
            let bytes = body.len();
            self.put_object(&path, body).await?;
            written.push(WrittenObject {
                path,
                events,
                bytes,
            });
        }
        Ok(written)
    }

    /// Lists the event objects whose hour partition overlaps `window`, sorted by path.
    pub async fn list_event_objects(
        &self,
        window: TimeWindow,
    ) -> Result<Vec<ObjectMeta>, LakeError> {
        let mut objects = Vec::new();
        for day in window.touched_days() {
            let prefix = layout::day_prefix(day);
            let listed: Vec<ObjectMeta> = self
                .store()
                .list(Some(&prefix))
                .try_collect()
                .await
                .map_err(|source| LakeError::store(&prefix, source))?;
            objects.extend(listed.into_iter().filter(|meta| {
                layout::parse_event_object_path(&meta.location).is_some_and(|partition| {
                    let start = partition.start_ms();
                    start < window.end_ms && start + 3_600_000 > window.start_ms
                })
            }));
        }
        objects.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(objects)
    }

    /// True when the lake holds at least one event object for `day`.
    pub async fn has_events_on(&self, day: NaiveDate) -> Result<bool, LakeError> {
        let window = TimeWindow::days(day, day.succ_opt().unwrap_or(day));
        Ok(!self.list_event_objects(window).await?.is_empty())
    }

    /// Reads the events with time in `window`, as record batches in the lake schema (or the
    /// projection `columns` asks for), in a deterministic order.
    pub async fn read_events(
        &self,
        window: TimeWindow,
        columns: EventColumns,
    ) -> Result<Vec<RecordBatch>, LakeError> {
        let objects = self.list_event_objects(window).await?;
        let batches: Vec<Vec<RecordBatch>> = futures::stream::iter(objects)
            .map(|meta| async move {
                let bytes = self.get_object(&meta.location).await?;
                let path = meta.location.clone();
                tokio::task::spawn_blocking(move || decode_events(&path, bytes, window, columns))
                    .await
                    .map_err(|join| LakeError::bad_object(&meta.location, join))?
            })
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(batches.into_iter().flatten().collect())
    }

    /// Stores bytes at `path` (atomic: readers see the whole object or none).
    pub async fn put_object(&self, path: &Path, bytes: impl Into<Bytes>) -> Result<(), LakeError> {
        let bytes = bytes.into();
        let store_error = |source| LakeError::store(path, source);
        if bytes.len() <= self.multipart_threshold {
            self.store()
                .put(path, PutPayload::from(bytes))
                .await
                .map_err(store_error)?;
            return self.sync_local(path).await;
        }
        // Large objects go up in parts; the object appears only when the upload completes.
        let upload = self
            .store()
            .put_multipart(path)
            .await
            .map_err(store_error)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, crate::MULTIPART_PART_BYTES);
        writer.put(bytes);
        writer.finish().await.map_err(store_error)?;
        self.sync_local(path).await
    }

    /// Paths of every object under `prefix`, in no particular order.
    pub async fn list_objects(&self, prefix: &Path) -> Result<Vec<Path>, LakeError> {
        let objects: Vec<_> = self
            .store()
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(|source| LakeError::store(prefix, source))?;
        Ok(objects.into_iter().map(|object| object.location).collect())
    }

    /// Deletes the object at `path`; one already gone is not an error.
    pub async fn delete_object(&self, path: &Path) -> Result<(), LakeError> {
        match self.store().delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(LakeError::store(path, source)),
        }
    }

    /// Fetches the whole object at `path`.
    pub async fn get_object(&self, path: &Path) -> Result<Bytes, LakeError> {
        let result = self
            .store()
            .get(path)
            .await
            .map_err(|source| LakeError::store(path, source))?;
        result
            .bytes()
            .await
            .map_err(|source| LakeError::store(path, source))
    }
}

/// The Parquet settings of every object newsrec writes.
pub(crate) fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_created_by(format!("newsrec {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The most rows in one row group of a table the lake encodes with [`TableEncoder`].
const TABLE_ROW_GROUP_ROWS: usize = 128 * 1024;

/// Encodes a table as Parquet while its batches arrive, so a caller streaming a large result
/// holds the encoded bytes and one row group, never the decoded rows. The settings are those
/// of every object the lake holds; the same rows in the same batch sizes give the same bytes.
pub struct TableEncoder {
    path: Path,
    writer: ArrowWriter<Vec<u8>>,
    rows: u64,
}

impl std::fmt::Debug for TableEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableEncoder")
            .field("path", &self.path)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl TableEncoder {
    /// An encoder for the object at `path` (named in errors) with `schema`.
    pub fn new(path: &Path, schema: arrow_schema::SchemaRef) -> Result<TableEncoder, LakeError> {
        // Row groups of at most 128Ki rows: a reader merging many tables at once (the hours of
        // a window) holds a row group of each.
        let properties = writer_properties()
            .into_builder()
            .set_max_row_group_row_count(Some(TABLE_ROW_GROUP_ROWS))
            .build();
        let writer =
            ArrowWriter::try_new(Vec::new(), schema, Some(properties)).map_err(|source| {
                LakeError::Encode {
                    path: path.to_string(),
                    source,
                }
            })?;
        Ok(TableEncoder {
            path: path.clone(),
            writer,
            rows: 0,
        })
    }

    /// Appends a batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), LakeError> {
        self.rows += batch.num_rows() as u64;
        self.writer
            .write(batch)
            .map_err(|source| LakeError::Encode {
                path: self.path.to_string(),
                source,
            })
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The finished Parquet bytes.
    pub fn finish(self) -> Result<Vec<u8>, LakeError> {
        let path = self.path;
        self.writer
            .into_inner()
            .map_err(|source| LakeError::Encode {
                path: path.to_string(),
                source,
            })
    }
}

/// Encodes batches (all of one schema) as one Parquet file.
pub(crate) fn encode_batches(path: &Path, batches: &[RecordBatch]) -> Result<Vec<u8>, LakeError> {
    let encode_error = |source| LakeError::Encode {
        path: path.to_string(),
        source,
    };
    let Some(first) = batches.first() else {
        return Err(LakeError::bad_object(path, "nothing to write"));
    };
    let mut buffer = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buffer, first.schema(), Some(writer_properties()))
        .map_err(encode_error)?;
    for batch in batches {
        writer.write(batch).map_err(encode_error)?;
    }
    writer.close().map_err(encode_error)?;
    Ok(buffer)
}

/// One encoded object per hour partition: its path, event count and Parquet bytes.
fn encode_partitions(
    writer: &str,
    seq: u64,
    chunks: &[Arc<Vec<ClickEvent>>],
) -> Result<Vec<(Path, usize, Vec<u8>)>, LakeError> {
    let mut by_partition: BTreeMap<Partition, Vec<&ClickEvent>> = BTreeMap::new();
    for event in chunks.iter().flat_map(|chunk| chunk.iter()) {
        by_partition
            .entry(Partition::of_ts(event.ts_ms))
            .or_default()
            .push(event);
    }
    let mut encoded = Vec::with_capacity(by_partition.len());
    for (partition, mut group) in by_partition {
        // Stable, so events of the same millisecond keep their arrival order.
        group.sort_by_key(|event| event.ts_ms);
        let path = layout::event_object_path(partition, writer, seq);
        let batch = events_to_batch(group.iter().copied())
            .map_err(|error| LakeError::bad_object(&path, error))?;
        let body = encode_batches(&path, &[batch])?;
        encoded.push((path, group.len(), body));
    }
    Ok(encoded)
}

/// Decodes a Parquet object, optionally projected to `columns`.
pub(crate) fn decode_batches(
    path: &Path,
    bytes: Bytes,
    columns: Option<&[&str]>,
) -> Result<Vec<RecordBatch>, LakeError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|error| LakeError::bad_object(path, error))?;
    let builder = match columns {
        None => builder,
        Some(names) => {
            let schema = Arc::clone(builder.schema());
            let mut roots = Vec::with_capacity(names.len());
            for name in names {
                let index = schema.index_of(name).map_err(|_| {
                    LakeError::bad_object(path, format!("column \"{name}\" is missing"))
                })?;
                roots.push(index);
            }
            let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
            builder.with_projection(mask)
        }
    };
    let reader = builder
        .build()
        .map_err(|error| LakeError::bad_object(path, error))?;
    reader
        .map(|batch| batch.map_err(|error| LakeError::bad_object(path, error)))
        .collect()
}

fn decode_events(
    path: &Path,
    bytes: Bytes,
    window: TimeWindow,
    columns: EventColumns,
) -> Result<Vec<RecordBatch>, LakeError> {
    let batches = decode_batches(path, bytes, columns.names())?;
    let mut kept = Vec::with_capacity(batches.len());
    for batch in batches {
        let ts = batch
            .column_by_name("ts")
            .and_then(|column| column.as_any().downcast_ref::<TimestampMillisecondArray>())
            .ok_or_else(|| {
                LakeError::bad_object(path, "column \"ts\" is missing or not a timestamp")
            })?;
        let inside: BooleanArray = ts
            .iter()
            .map(|ts| Some(ts.is_some_and(|ts| window.contains(ts))))
            .collect();
        if inside.true_count() == batch.num_rows() {
            kept.push(batch);
        } else if inside.true_count() > 0 {
            let filtered = arrow_select::filter::filter_record_batch(&batch, &inside)
                .map_err(|error| LakeError::bad_object(path, error))?;
            kept.push(filtered);
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use newsrec_event::events_from_batch;

    fn click(user: &str, ts_ms: i64) -> ClickEvent {
        ClickEvent::click(user, "a1", ts_ms).unwrap()
    }

    #[tokio::test]
    async fn writes_partition_by_event_time_and_reads_window_back() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
        let hour = 3_600_000;
        let base = 1_506_816_000_000; // 2017-10-01T00:00:00Z
        let events = vec![
            click("late", base + 30 * hour),
            click("a", base),
            click("b", base + hour + 5),
        ];
        let written = lake
            .write_events("w1", 1, &[Arc::new(events.clone())])
            .await
            .unwrap();
        assert_eq!(written.len(), 3);
        assert!(
            dir.path()
                .join("events/dt=2017-10-02/hour=06/w1-00000000000000000001.parquet")
                .is_file()
        );

        let window = TimeWindow {
            start_ms: base,
            end_ms: base + 24 * hour,
        };
        let batches = lake.read_events(window, EventColumns::All).await.unwrap();
        let read: Vec<String> = batches
            .iter()
            .flat_map(|b| events_from_batch(b).unwrap())
            .map(|e| e.user_id)
            .collect();
        assert_eq!(read, ["a", "b"]);

        // A window cutting an hour in the middle filters rows exactly.
        let narrow = TimeWindow {
            start_ms: base + hour + 1,
            end_ms: base + 2 * hour,
        };
        let batches = lake
            .read_events(narrow, EventColumns::Training)
            .await
            .unwrap();
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
        assert_eq!(batches[0].num_columns(), 6);

        // Writing the same (writer, seq) again replaces, never duplicates.
        lake.write_events("w1", 1, &[Arc::new(events.clone())])
            .await
            .unwrap();
        let again = lake.read_events(window, EventColumns::All).await.unwrap();
        assert_eq!(again.iter().map(RecordBatch::num_rows).sum::<usize>(), 2);
        assert!(
            lake.has_events_on(NaiveDate::from_ymd_opt(2017, 10, 2).unwrap())
                .await
                .unwrap()
        );
        assert!(
            !lake
                .has_events_on(NaiveDate::from_ymd_opt(2017, 10, 3).unwrap())
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn a_corrupt_object_is_named_in_the_error() {
        let lake = Lake::open("memory://").unwrap();
        let path = Path::from("events/dt=2017-10-01/hour=00/x-00000000000000000001.parquet");
        lake.put_object(&path, Bytes::from_static(b"not parquet"))
            .await
            .unwrap();
        let window = TimeWindow::days(
            NaiveDate::from_ymd_opt(2017, 10, 1).unwrap(),
            NaiveDate::from_ymd_opt(2017, 10, 2).unwrap(),
        );
        let error = lake
            .read_events(window, EventColumns::All)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("x-00000000000000000001.parquet"),
            "{error}"
        );
    }
}
