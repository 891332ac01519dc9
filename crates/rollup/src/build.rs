//! Bringing the rollups of a window up to date: for each event hour, reuse the tables whose key
//! still matches and recompute the others, one hour at a time (the hour is the unit of work: an
//! interrupted run keeps every hour it finished).

use std::{collections::BTreeMap, time::Instant};

use arrow_array::{Array, Int64Array, RecordBatch};
use arrow_select::coalesce::BatchCoalescer;
use futures::TryStreamExt;
use newsrec_lake::{
    Lake, TableEncoder, TimeWindow,
    layout::{self, Partition, ROLLUP_MARKER},
};
use newsrec_lake_query::QueryEngine;
use object_store::ObjectMeta;
use serde::Serialize;

use crate::{
    RollupError, RollupSettings, RollupTable,
    marker::{HourCounts, RollupMarker, SourceKey, TableEntry, digest, settings_hash},
    tables::counts_sql,
};

/// Rows per batch handed to the Parquet encoder. Fixed, so that the same rows always make the
/// same pages, whatever batch sizes the engine produced them in.
const ENCODE_BATCH_ROWS: usize = 8192;
/// The name the hour being summarised is registered under in the engine.
const HOUR_TABLE: &str = "hour_events";

/// Where a rollup refresh is, reported after each hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupProgress {
    pub done: usize,
    pub total: usize,
    /// The hour just finished (`dt=…/hour=…`).
    pub hour: String,
    /// Tables recomputed for it (0: all reused).
    pub tables_computed: usize,
}

/// What a refresh found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RollupReport {
    /// Hours of the window holding events.
    pub hours: usize,
    /// Hours whose every table was reused.
    pub reused: usize,
    /// Hours with at least one table recomputed.
    pub computed: usize,
    /// Tables recomputed, over all hours.
    pub tables_computed: usize,
    /// Tables found damaged or missing (digest mismatch, unreadable key) and recomputed.
    pub damaged: usize,
    /// The window's event counts, summed over its hours.
    pub counts: HourCounts,
    /// Bytes of the window's event objects.
    pub source_bytes: u64,
    /// Bytes of the window's rollup tables.
    pub rollup_bytes: u64,
    /// Each hour's key, in hour order.
    #[serde(skip)]
    pub markers: Vec<(Partition, RollupMarker)>,
}

/// Brings the rollups of every event hour overlapping `window` up to date and returns their
/// keys. `progress` is called after each hour; `stop` is asked before each hour, and a reason
/// it returns ends the refresh with [`RollupError::Interrupted`] (the hours done are kept).
pub async fn ensure_rollups(
    lake: &Lake,
    engine: &QueryEngine,
    window: TimeWindow,
    settings: &RollupSettings,
    progress: &(dyn Fn(&RollupProgress) + Send + Sync),
    stop: &(dyn Fn() -> Option<String> + Send + Sync),
) -> Result<RollupReport, RollupError> {
    settings.validate()?;
    let mut hours: BTreeMap<Partition, Vec<ObjectMeta>> = BTreeMap::new();
    for meta in lake.list_event_objects(window).await? {
        if let Some(partition) = layout::parse_event_object_path(&meta.location) {
            hours.entry(partition).or_default().push(meta);
        }
    }
    let total = hours.len();
    let mut report = RollupReport {
        hours: total,
        ..RollupReport::default()
    };
    for (done, (partition, objects)) in hours.into_iter().enumerate() {
        if let Some(reason) = stop() {
            return Err(RollupError::Interrupted {
                reason,
                done,
                total,
            });
        }
        let outcome = ensure_hour(lake, engine, partition, &objects, settings).await?;
        report.source_bytes += outcome.marker.source.bytes;
        report.rollup_bytes += outcome.marker.tables.values().map(|t| t.bytes).sum::<u64>();
        let counts = outcome.marker.counts;
        report.counts.events += counts.events;
        report.counts.clicks += counts.clicks;
        report.counts.duplicates += counts.duplicates;
        report.counts.other_events += counts.other_events;
        report.tables_computed += outcome.tables_computed;
        report.damaged += outcome.damaged;
        if outcome.tables_computed == 0 {
            report.reused += 1;
        } else {
            report.computed += 1;
        }
        progress(&RollupProgress {
            done: done + 1,
            total,
            hour: partition.label(),
            tables_computed: outcome.tables_computed,
        });
        report.markers.push((partition, outcome.marker));
    }
    Ok(report)
}

struct HourOutcome {
    marker: RollupMarker,
    tables_computed: usize,
    damaged: usize,
}

/// One hour: reuse what its key vouches for, recompute the rest, then write the key.
async fn ensure_hour(
    lake: &Lake,
    engine: &QueryEngine,
    partition: Partition,
    objects: &[ObjectMeta],
    settings: &RollupSettings,
) -> Result<HourOutcome, RollupError> {
    let source = SourceKey::of(objects);
    let (old, mut damaged) = read_marker(lake, partition).await?;
    let same_source = old
        .as_ref()
        .is_some_and(|marker| marker.format_matches() && marker.source == source);
    let mut tables = BTreeMap::new();
    let mut stale = Vec::new();
    for table in RollupTable::ALL {
        let hash = settings_hash(table, settings);
        let entry = old
            .as_ref()
            .filter(|_| same_source)
            .and_then(|marker| marker.tables.get(table.name()))
            .filter(|entry| entry.settings == hash && entry.object == table.object_name());
        match entry {
            Some(entry) if table_intact(lake, partition, entry).await? => {
                tables.insert(table.name().to_owned(), entry.clone());
            }
            Some(_) => {
                damaged += 1;
                stale.push(table);
            }
            None => stale.push(table),
        }
    }
    let mut counts = match (&old, same_source) {
        (Some(marker), true) => marker.counts,
        _ => HourCounts::default(),
    };
    if let (true, Some(marker)) = (stale.is_empty(), &old) {
        return Ok(HourOutcome {
            marker: marker.clone(),
            tables_computed: 0,
            damaged,
        });
    }
    let started = Instant::now();
    let paths: Vec<_> = objects.iter().map(|meta| meta.location.clone()).collect();
    let query_error = |source| RollupError::Query {
        hour: partition.label(),
        source,
    };
    engine
        .register_events(HOUR_TABLE, &paths)
        .await
        .map_err(query_error)?;
    if !same_source {
        let (events, click_rows) = count_events(engine, partition).await?;
        counts.events = events;
        counts.other_events = events - click_rows;
        counts.duplicates = click_rows;
    }
    for &table in &stale {
        let (entry, clicks) = compute_table(lake, engine, partition, table, settings).await?;
        if !same_source && let Some(clicks) = clicks {
            counts.clicks = clicks;
            counts.duplicates = counts.duplicates.saturating_sub(clicks);
        }
        tables.insert(table.name().to_owned(), entry);
    }
    let marker = RollupMarker {
        format: layout::ROLLUP_FORMAT.to_owned(),
        hour: partition.label(),
        source,
        counts,
        tables,
    };
    let json = serde_json::to_vec_pretty(&marker)
        .map_err(|error| RollupError::Internal(error.to_string()))?;
    lake.put_object(&partition.rollup_object_path(ROLLUP_MARKER), json)
        .await?;
    tracing::info!(
        hour = %partition.label(),
        tables = stale.len(),
        clicks = counts.clicks,
        ms = started.elapsed().as_millis() as u64,
        "rollup computed"
    );
    Ok(HourOutcome {
        marker,
        tables_computed: stale.len(),
        damaged,
    })
}

/// The hour's key, if there is a readable one; an unreadable key counts as one damaged object
/// and is recomputed, never trusted.
async fn read_marker(
    lake: &Lake,
    partition: Partition,
) -> Result<(Option<RollupMarker>, usize), RollupError> {
    let path = partition.rollup_object_path(ROLLUP_MARKER);
    let bytes = match lake.get_object(&path).await {
        Ok(bytes) => bytes,
        Err(error) if error.is_not_found() => return Ok((None, 0)),
        Err(error) => return Err(error.into()),
    };
    match serde_json::from_slice::<RollupMarker>(&bytes) {
        Ok(marker) => Ok((Some(marker), 0)),
        Err(error) => {
            tracing::warn!(object = %path, %error, "unreadable rollup key; recomputing the hour");
            Ok((None, 1))
        }
    }
}

/// True when the table object is there with the bytes its key recorded.
async fn table_intact(
    lake: &Lake,
    partition: Partition,
    entry: &TableEntry,
) -> Result<bool, RollupError> {
    let path = partition.rollup_object_path(&entry.object);
    let bytes = match lake.get_object(&path).await {
        Ok(bytes) => bytes,
        Err(error) if error.is_not_found() => {
            tracing::warn!(object = %path, "rollup table missing; recomputing it");
            return Ok(false);
        }
        Err(error) => return Err(error.into()),
    };
    let intact = bytes.len() as u64 == entry.bytes && digest(&bytes) == entry.digest;
    if !intact {
        tracing::warn!(object = %path, "rollup table does not match its key; recomputing it");
    }
    Ok(intact)
}

/// The hour's event rows and click rows (before deduplication).
async fn count_events(
    engine: &QueryEngine,
    partition: Partition,
) -> Result<(u64, u64), RollupError> {
    let doing = format!("counting the events of {}", partition.label());
    let batches = engine
        .collect(&counts_sql(HOUR_TABLE), &doing)
        .await
        .map_err(|source| RollupError::Query {
            hour: partition.label(),
            source,
        })?;
    let shape = |reason: &str| RollupError::Shape {
        hour: partition.label(),
        table: "counts",
        reason: reason.to_owned(),
    };
    let batch = batches
        .iter()
        .find(|batch| batch.num_rows() > 0)
        .ok_or_else(|| shape("no row"))?;
    let value = |index: usize| -> Result<u64, RollupError> {
        let column = batch
            .column(index)
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| shape("a column that is not a 64-bit integer"))?;
        Ok(u64::try_from(column.value(0)).unwrap_or(0))
    };
    Ok((value(0)?, value(1)?))
}

/// Computes one table of the hour and stores it; returns its entry and, for `articles`, the
/// hour's distinct clicks.
async fn compute_table(
    lake: &Lake,
    engine: &QueryEngine,
    partition: Partition,
    table: RollupTable,
    settings: &RollupSettings,
) -> Result<(TableEntry, Option<u64>), RollupError> {
    let hour = partition.label();
    let doing = format!("computing the {} rollup of {hour}", table.name());
    let sql = table.sql(HOUR_TABLE, partition.start_ms() + 3_600_000, settings);
    let mut stream = engine
        .stream(&sql, &doing)
        .await
        .map_err(|source| RollupError::Query {
            hour: hour.clone(),
            source,
        })?;
    let schema = table.schema();
    let path = partition.rollup_object_path(&table.object_name());
    let mut encoder = TableEncoder::new(&path, schema.clone())?;
    let mut coalescer = BatchCoalescer::new(schema.clone(), ENCODE_BATCH_ROWS);
    let mut clicks = 0u64;
    let shape = |reason: String| RollupError::Shape {
        hour: hour.clone(),
        table: table.name(),
        reason,
    };
    let arrow = |error: arrow_schema::ArrowError| shape(error.to_string());
    while let Some(batch) = stream
        .try_next()
        .await
        .map_err(|source| RollupError::Query {
            hour: hour.clone(),
            source: engine.error(&doing, source),
        })?
    {
        let batch = RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
            .map_err(|error| shape(format!("rows that do not fit the table's schema: {error}")))?;
        if table == RollupTable::Articles
            && let Some(column) = batch.column(1).as_any().downcast_ref::<Int64Array>()
        {
            clicks += column
                .iter()
                .flatten()
                .map(|v| v.max(0) as u64)
                .sum::<u64>();
        }
        coalescer.push_batch(batch).map_err(arrow)?;
        while let Some(full) = coalescer.next_completed_batch() {
            encoder.write(&full)?;
        }
    }
    coalescer.finish_buffered_batch().map_err(arrow)?;
    while let Some(rest) = coalescer.next_completed_batch() {
        encoder.write(&rest)?;
    }
    let rows = encoder.rows();
    let bytes = encoder.finish()?;
    let entry = TableEntry {
        object: table.object_name(),
        settings: settings_hash(table, settings),
        rows,
        bytes: bytes.len() as u64,
        digest: digest(&bytes),
    };
    lake.put_object(&path, bytes).await?;
    Ok((entry, (table == RollupTable::Articles).then_some(clicks)))
}
