//! Bringing the rollups of a window up to date: for each event hour, reuse the tables whose key
//! still matches and recompute the others, a couple of hours side by side (the hour is the unit
//! of work: an interrupted run keeps every hour it finished). An hour is deduplicated and sorted
//! once by the engine, and summarised into all its tables in one pass ([`HourSummary`]).

use std::{collections::BTreeMap, time::Instant};

use arrow_array::{Array, Int64Array};
use futures::{StreamExt, TryStreamExt};
use newsrec_lake::{
    Lake, TimeWindow,
    layout::{self, Partition, ROLLUP_MARKER},
};
use newsrec_lake_query::{QueryEngine, dedup_clicks_sql};
use object_store::ObjectMeta;
use serde::Serialize;

use crate::{
    RollupError, RollupSettings, RollupTable,
    marker::{HourCounts, RollupMarker, SourceKey, TableEntry, digest, settings_hash},
    summary::{HourSummary, TableSink, ordered_clicks_sql, pair_cap},
    tables::counts_sql,
};

/// Hours summarised at once. An hour's queries leave one of two cores idle part of the time
/// (plans, single-stream steps, writes); a second hour fills it. Both share the engine's memory
/// budget, so a budget below [`TWO_HOURS_BUDGET`] runs one hour at a time.
const HOURS_AT_ONCE: usize = 2;
/// The smallest engine budget that runs [`HOURS_AT_ONCE`] hours side by side.
const TWO_HOURS_BUDGET: u64 = 256 << 20;

/// The names an hour's events, its deduplicated clicks (spilled under a small budget) and its
/// spilled pair counts (when there are too many to hold) are registered under in the engine:
/// distinct per hour, since hours run side by side.
fn table_names(partition: Partition) -> [String; 3] {
    let tag = format!("{}_{:02}", partition.date.format("%Y%m%d"), partition.hour);
    ["events", "clicks", "pairs"].map(|what| format!("hour_{what}_{tag}"))
}

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
    // Hours are independent: a few run side by side, and their outcomes are taken in hour
    // order. The stop is asked before each hour starts; hours already started finish, so an
    // interruption keeps every hour it reports done.
    let mut pending = hours.into_iter();
    let mut stopped = None;
    let mut running = futures::stream::FuturesOrdered::new();
    let at_once = if engine.settings().memory_limit_bytes >= TWO_HOURS_BUDGET {
        HOURS_AT_ONCE
    } else {
        1
    };
    loop {
        while stopped.is_none() && running.len() < at_once {
            let Some((partition, objects)) = pending.next() else {
                break;
            };
            if let Some(reason) = stop() {
                stopped = Some(reason);
                break;
            }
            running.push_back(async move {
                let outcome = ensure_hour(lake, engine, partition, &objects, settings).await;
                (partition, outcome)
            });
        }
        let Some((partition, outcome)) = running.next().await else {
            break;
        };
        let outcome = outcome?;
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
            done: report.markers.len() + 1,
            total,
            hour: partition.label(),
            tables_computed: outcome.tables_computed,
        });
        report.markers.push((partition, outcome.marker));
    }
    if let Some(reason) = stopped {
        return Err(RollupError::Interrupted {
            reason,
            done: report.markers.len(),
            total,
        });
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
    let [events_table, clicks_table, pairs_table] = table_names(partition);
    let paths: Vec<_> = objects.iter().map(|meta| meta.location.clone()).collect();
    let hour = partition.label();
    let query_error = |source| RollupError::Query {
        hour: hour.clone(),
        source,
    };
    engine
        .register_events(&events_table, &paths)
        .await
        .map_err(query_error)?;
    if !same_source {
        let (events, click_rows) = count_events(engine, partition, &events_table).await?;
        counts.events = events;
        counts.other_events = events - click_rows;
        counts.duplicates = click_rows;
    }
    // The engine deduplicates the hour and sorts it by reader and session (both spill past
    // the budget); one pass over the sorted rows then gives every table.
    let user_articles = RollupTable::UserArticles;
    let user_articles = stale
        .contains(&user_articles)
        .then(|| {
            TableSink::new(
                user_articles,
                &partition.rollup_object_path(&user_articles.object_name()),
            )
        })
        .transpose()?;
    let mut summary = HourSummary::new(
        hour.clone(),
        partition.start_ms() + 3_600_000,
        settings,
        engine,
        pairs_table,
        pair_cap(engine.settings().memory_limit_bytes),
        user_articles,
    );
    let step = Instant::now();
    // Under a small budget the two sorts of one query (by event id, then by reader) would
    // share the pool and can starve each other: the deduplicated clicks are spilled first and
    // sorted by a second query. Either way the pass sees the same rows in the same order.
    let deduplicated = if engine.settings().memory_limit_bytes < TWO_HOURS_BUDGET {
        let doing = format!("deduplicating the clicks of {hour}");
        let mut stream = engine
            .stream(&dedup_clicks_sql(&events_table), &doing)
            .await
            .map_err(query_error)?;
        let mut writer = engine
            .spill_writer(&clicks_table, stream.schema())
            .map_err(query_error)?;
        while let Some(batch) = stream
            .try_next()
            .await
            .map_err(|source| query_error(engine.error(&doing, source)))?
        {
            writer.write(&batch).map_err(query_error)?;
        }
        Some(writer.finish().await.map_err(query_error)?)
    } else {
        None
    };
    let clicks_sql = match &deduplicated {
        Some(table) => format!(
            "SELECT event_id, user_id, article_id, ts_ms, session_id FROM {}",
            table.name()
        ),
        None => dedup_clicks_sql(&events_table),
    };
    let doing = format!("deduplicating and sorting the clicks of {hour}");
    let mut stream = engine
        .stream(&ordered_clicks_sql(&clicks_sql), &doing)
        .await
        .map_err(query_error)?;
    while let Some(batch) = stream
        .try_next()
        .await
        .map_err(|source| query_error(engine.error(&doing, source)))?
    {
        summary.push(&batch)?;
    }
    drop(stream);
    drop(deduplicated);
    let (clicks, user_articles) = summary.end_input()?;
    tracing::debug!(%hour, ms = step.elapsed().as_millis() as u64, "hour deduplicated, sorted and summarised");
    if !same_source {
        counts.clicks = clicks;
        counts.duplicates = counts.duplicates.saturating_sub(clicks);
    }
    for &table in &stale {
        let (rows, bytes) = match table {
            RollupTable::Articles => {
                let mut sink =
                    TableSink::new(table, &partition.rollup_object_path(&table.object_name()))?;
                summary.write_articles(&mut sink)?;
                sink.finish(&hour)?
            }
            RollupTable::Pairs => {
                let mut sink =
                    TableSink::new(table, &partition.rollup_object_path(&table.object_name()))?;
                summary.write_pairs(&mut sink).await?;
                sink.finish(&hour)?
            }
            // Written during the pass, below.
            RollupTable::UserArticles => continue,
        };
        let entry = store_table(lake, partition, table, settings, rows, bytes).await?;
        tables.insert(table.name().to_owned(), entry);
    }
    if let Some(sink) = user_articles {
        let (rows, bytes) = sink.finish(&hour)?;
        let table = RollupTable::UserArticles;
        tables.insert(
            table.name().to_owned(),
            store_table(lake, partition, table, settings, rows, bytes).await?,
        );
    }
    drop(summary);
    engine.deregister(&events_table).map_err(query_error)?;
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
    events_table: &str,
) -> Result<(u64, u64), RollupError> {
    let doing = format!("counting the events of {}", partition.label());
    let batches = engine
        .collect(&counts_sql(events_table), &doing)
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

/// Stores one computed table of the hour and returns its entry in the key.
async fn store_table(
    lake: &Lake,
    partition: Partition,
    table: RollupTable,
    settings: &RollupSettings,
    rows: u64,
    bytes: bytes::Bytes,
) -> Result<TableEntry, RollupError> {
    let entry = TableEntry {
        object: table.object_name(),
        settings: settings_hash(table, settings),
        rows,
        bytes: bytes.len() as u64,
        digest: digest(&bytes),
    };
    lake.put_object(&partition.rollup_object_path(&table.object_name()), bytes)
        .await?;
    Ok(entry)
}
