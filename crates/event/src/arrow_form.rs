//! The Arrow form of events: the versioned lake schema and conversions both ways.
//!
//! Version 1 columns, in order: `event_id`, `user_id`, `article_id` (utf8, required), `ts`
//! (timestamp ms UTC, required), `type` (utf8 `click`/`view`, required), `session_id` (utf8),
//! `dwell_ms` (int64), `referrer` (utf8). The version lives in the schema metadata under
//! [`SCHEMA_VERSION_KEY`]. Partition columns (`dt`, `hour`) are *not* stored in the files: readers
//! such as DuckDB, Spark and Athena derive them from the Hive-style path.

use std::{collections::HashMap, sync::Arc};

use arrow_array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
    builder::{Int64Builder, StringBuilder, TimestampMillisecondBuilder},
};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::{ClickEvent, EventType};

/// Schema metadata key holding the event schema version.
pub const SCHEMA_VERSION_KEY: &str = "newsrec.event_schema_version";
/// The event schema version this build writes.
pub const EVENT_SCHEMA_VERSION: u32 = 1;

/// The lake schema of events, version [`EVENT_SCHEMA_VERSION`].
pub fn arrow_schema() -> SchemaRef {
    let fields = vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("article_id", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("type", DataType::Utf8, false),
        Field::new("session_id", DataType::Utf8, true),
        Field::new("dwell_ms", DataType::Int64, true),
        Field::new("referrer", DataType::Utf8, true),
    ];
    let metadata = HashMap::from([(
        SCHEMA_VERSION_KEY.to_owned(),
        EVENT_SCHEMA_VERSION.to_string(),
    )]);
    Arc::new(Schema::new_with_metadata(fields, metadata))
}

/// Builds one record batch from events, in order.
///
/// Takes any exact-size iterator of borrowed events so a writer can encode a selection of
/// shared buffers (one hour's events out of many requests) without copying them first.
pub fn events_to_batch<'a, I>(events: I) -> Result<RecordBatch, ArrowError>
where
    I: IntoIterator<Item = &'a ClickEvent>,
    I::IntoIter: ExactSizeIterator + Clone,
{
    let events = events.into_iter();
    let count = events.len();
    // Exact byte sizes first: a string column that grows by doubling copies its bytes again at
    // every step, which showed up as the largest cost of a flush.
    let mut sizes = [0usize; 6];
    for event in events.clone() {
        sizes[0] += event.event_id.len();
        sizes[1] += event.user_id.len();
        sizes[2] += event.article_id.len();
        sizes[3] += event.event_type.as_str().len();
        sizes[4] += event.session_id.as_deref().map_or(0, str::len);
        sizes[5] += event.referrer.as_deref().map_or(0, str::len);
    }
    let mut event_id = StringBuilder::with_capacity(count, sizes[0]);
    let mut user_id = StringBuilder::with_capacity(count, sizes[1]);
    let mut article_id = StringBuilder::with_capacity(count, sizes[2]);
    let mut ts = TimestampMillisecondBuilder::with_capacity(count).with_timezone("UTC");
    let mut event_type = StringBuilder::with_capacity(count, sizes[3]);
    let mut session_id = StringBuilder::with_capacity(count, sizes[4]);
    let mut dwell_ms = Int64Builder::with_capacity(count);
    let mut referrer = StringBuilder::with_capacity(count, sizes[5]);
    for event in events {
        event_id.append_value(&event.event_id);
        user_id.append_value(&event.user_id);
        article_id.append_value(&event.article_id);
        ts.append_value(event.ts_ms);
        event_type.append_value(event.event_type.as_str());
        session_id.append_option(event.session_id.as_deref());
        dwell_ms.append_option(event.dwell_ms.map(i64::from));
        referrer.append_option(event.referrer.as_deref());
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(event_id.finish()),
        Arc::new(user_id.finish()),
        Arc::new(article_id.finish()),
        Arc::new(ts.finish()),
        Arc::new(event_type.finish()),
        Arc::new(session_id.finish()),
        Arc::new(dwell_ms.finish()),
        Arc::new(referrer.finish()),
    ];
    RecordBatch::try_new(arrow_schema(), columns)
}

/// Reads events back from a batch in the lake schema (any column order; extra columns ignored).
pub fn events_from_batch(batch: &RecordBatch) -> Result<Vec<ClickEvent>, ArrowError> {
    let event_id = string_column(batch, "event_id")?;
    let user_id = string_column(batch, "user_id")?;
    let article_id = string_column(batch, "article_id")?;
    let ts = column::<TimestampMillisecondArray>(batch, "ts")?;
    let event_type = string_column(batch, "type")?;
    let session_id = string_column(batch, "session_id")?;
    let dwell_ms = column::<Int64Array>(batch, "dwell_ms")?;
    let referrer = string_column(batch, "referrer")?;
    let optional = |array: &StringArray, row: usize| {
        (!array.is_null(row)).then(|| array.value(row).to_owned())
    };
    (0..batch.num_rows())
        .map(|row| {
            let type_text = event_type.value(row);
            let parsed_type = EventType::parse(type_text).ok_or_else(|| {
                ArrowError::InvalidArgumentError(format!(
                    "row {row}: column \"type\": unknown event type {type_text:?}"
                ))
            })?;
            Ok(ClickEvent {
                event_id: event_id.value(row).to_owned(),
                user_id: user_id.value(row).to_owned(),
                article_id: article_id.value(row).to_owned(),
                ts_ms: ts.value(row),
                event_type: parsed_type,
                session_id: optional(session_id, row),
                dwell_ms: (!dwell_ms.is_null(row))
                    .then(|| u32::try_from(dwell_ms.value(row)).unwrap_or(u32::MAX)),
                referrer: optional(referrer, row),
            })
        })
        .collect()
}

fn string_column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray, ArrowError> {
    column::<StringArray>(batch, name)
}

fn column<'a, T: Array + 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, ArrowError> {
    let array = batch
        .column_by_name(name)
        .ok_or_else(|| ArrowError::SchemaError(format!("column \"{name}\" is missing")))?;
    array.as_any().downcast_ref::<T>().ok_or_else(|| {
        ArrowError::SchemaError(format!(
            "column \"{name}\" has type {}, not the lake schema's",
            array.data_type()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trip_keeps_every_field() {
        let mut full = ClickEvent::click("u1", "a1", 1_506_859_200_000).unwrap();
        full.event_type = EventType::View;
        full.session_id = Some("s1".into());
        full.dwell_ms = Some(42);
        full.referrer = Some("https://example.com".into());
        let bare = ClickEvent::click("u2", "a2", 1_506_859_300_000).unwrap();
        let events = vec![full, bare];
        let batch = events_to_batch(&events).unwrap();
        assert_eq!(batch.schema().metadata()[SCHEMA_VERSION_KEY], "1");
        assert_eq!(events_from_batch(&batch).unwrap(), events);
    }
}
