//! The query engine that reads the lake for training: Apache DataFusion over the lake's object
//! store, inside a fixed memory budget that spills to disk past it.
//!
//! Consumes a [`Lake`] and [`EngineSettings`]; produces a [`QueryEngine`] on which callers
//! register sets of lake objects as tables ([`QueryEngine::register_events`],
//! [`QueryEngine::register_parquet`], or [`QueryEngine::register_sorted_union`] for objects
//! each already sorted, which are then merged rather than sorted), hand it rows computed
//! outside it to aggregate within its budget ([`QueryEngine::spill_writer`]), and run SQL whose
//! results stream out in record batches.
//! It owns the engine's configuration (memory pool, spill folder, parallelism) and the one
//! deduplicating view of an hour's clicks ([`dedup_clicks_sql`]) every summary is computed from.
//! What is computed from the clicks belongs to the callers (`newsrec-rollup`).

use std::{path::PathBuf, sync::Arc};

use arrow_array::RecordBatch;
use datafusion::{
    datasource::{
        file_format::parquet::ParquetFormat,
        listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl},
    },
    error::DataFusionError,
    execution::{
        SendableRecordBatchStream,
        disk_manager::{DiskManagerBuilder, DiskManagerMode},
        memory_pool::FairSpillPool,
        runtime_env::RuntimeEnvBuilder,
    },
    prelude::{ParquetReadOptions, SessionConfig, SessionContext},
};
use futures::TryStreamExt;
use newsrec_lake::{Lake, ObjectPath};

/// A query result arriving batch by batch.
pub use datafusion::execution::SendableRecordBatchStream as RecordBatchStream;

/// The URL the lake's object store is registered under inside the engine. Object paths are
/// relative to the lake's root, as the lake's own methods take them.
const LAKE_URL: &str = "newsrec-lake://lake/";

/// How much the engine may use of the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSettings {
    /// Bytes the engine's operators (sorts, aggregations, joins) may hold at once; past it they
    /// spill to `spill_dir`. Decoded input batches in flight come on top (a few per thread).
    pub memory_limit_bytes: u64,
    /// Where spill files go; `None`: the system's temporary folder.
    pub spill_dir: Option<PathBuf>,
    /// Parallel partitions per query (0: one per core).
    pub threads: usize,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            memory_limit_bytes: 1 << 30,
            spill_dir: None,
            threads: 0,
        }
    }
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    #[error(
        "the query engine ran out of its memory budget of {limit_mib} MiB while {doing} ({source}); raise train.memory_limit, or free space in the spill folder"
    )]
    MemoryExhausted {
        limit_mib: u64,
        doing: String,
        source: DataFusionError,
    },
    #[error("query engine error while {doing}: {source}")]
    Engine {
        doing: String,
        source: DataFusionError,
    },
    #[error("cannot set up the query engine: {0}")]
    Setup(String),
}

/// A DataFusion session over one lake.
pub struct QueryEngine {
    ctx: SessionContext,
    settings: EngineSettings,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl QueryEngine {
    /// A session reading `lake`, with a fair spilling memory pool of the configured size.
    pub fn new(lake: &Lake, settings: &EngineSettings) -> Result<QueryEngine, QueryError> {
        let setup = |error: DataFusionError| QueryError::Setup(error.to_string());
        let mode = match &settings.spill_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|error| {
                    QueryError::Setup(format!(
                        "cannot create spill folder {}: {error}",
                        dir.display()
                    ))
                })?;
                DiskManagerMode::Directories(vec![dir.clone()])
            }
            None => DiskManagerMode::OsTmpDirectory,
        };
        let limit = usize::try_from(settings.memory_limit_bytes).unwrap_or(usize::MAX);
        let runtime = RuntimeEnvBuilder::new()
            // Fair: each spilling operator of a query gets its share instead of the first
            // one starving the rest into failing.
            .with_memory_pool(Arc::new(FairSpillPool::new(limit)))
            .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(mode))
            .build_arc()
            .map_err(setup)?;
        // At least two partitions: with one, DataFusion plans joins as hash joins whatever
        // `prefer_hash_join` says, and a hash join holds its whole build side in memory.
        let threads = if settings.threads == 0 {
            std::thread::available_parallelism().map_or(1, usize::from)
        } else {
            settings.threads
        }
        .max(2);
        // Each spilling operator's first allocation is about one batch of its state, and it must
        // fit the operator's share of the pool: batches shrink with the budget (8,192 rows from
        // 1 GiB up, 128 at 16 MiB; small budgets work, slowly).
        let batch_rows = usize::try_from(settings.memory_limit_bytes >> 17)
            .unwrap_or(usize::MAX)
            .clamp(64, 8192);
        let mut config = SessionConfig::new()
            .with_target_partitions(threads)
            .with_batch_size(batch_rows)
            .with_information_schema(false);
        // A sort-merge join spills; a hash join holds its whole build side in memory, which
        // grows with the hour's traffic.
        config.options_mut().optimizer.prefer_hash_join = false;
        // A sort sets this much aside to merge what it spilled (10 MiB by default): an eighth
        // of the budget up to that, so a small budget still holds the merge of a sort of an
        // hour's clicks by reader (three text keys) and the other sorts' reservations.
        config.options_mut().execution.sort_spill_reservation_bytes =
            usize::try_from(settings.memory_limit_bytes / 8)
                .unwrap_or(usize::MAX)
                .clamp(16 << 10, 10 << 20);
        // Statistics would read every file's footer up front to plan; the queries here scan
        // whole tables anyway.
        config.options_mut().execution.collect_statistics = false;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        let url = url::Url::parse(LAKE_URL).map_err(|e| QueryError::Setup(e.to_string()))?;
        ctx.runtime_env()
            .register_object_store(&url, Arc::clone(lake.store()));
        Ok(QueryEngine {
            ctx,
            settings: settings.clone(),
        })
    }

    /// The settings the engine was built with.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Registers the event objects `objects` (lake paths) as table `name`, in the lake's
    /// event schema. Objects written before a column existed read that column as null.
    pub async fn register_events(
        &self,
        name: &str,
        objects: &[ObjectPath],
    ) -> Result<(), QueryError> {
        self.register_parquet(name, objects, newsrec_event::arrow_schema())
            .await
    }

    /// Registers the Parquet objects `objects` (lake paths) as table `name` with `schema`,
    /// replacing a table of that name.
    pub async fn register_parquet(
        &self,
        name: &str,
        objects: &[ObjectPath],
        schema: arrow_schema::SchemaRef,
    ) -> Result<(), QueryError> {
        let doing = || format!("registering table {name}");
        let engine = |source| QueryError::Engine {
            doing: doing(),
            source,
        };
        let urls = objects
            .iter()
            .map(|path| ListingTableUrl::parse(format!("{LAKE_URL}{path}")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(engine)?;
        // Drop the metadata (the schema version tag): files written by other versions of the
        // writer carry their own and would not merge with it.
        let schema = Arc::new(arrow_schema::Schema::new(schema.fields().clone()));
        self.ctx.deregister_table(name).map_err(engine)?;
        if urls.is_empty() {
            let empty =
                datafusion::datasource::MemTable::try_new(schema, vec![vec![]]).map_err(engine)?;
            self.ctx
                .register_table(name, Arc::new(empty))
                .map_err(engine)?;
            return Ok(());
        }
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .with_schema(schema);
        let table = ListingTable::try_new(config).map_err(engine)?;
        self.ctx
            .register_table(name, Arc::new(table))
            .map_err(engine)?;
        Ok(())
    }

    /// Drops table `name`, if there is one.
    pub fn deregister(&self, name: &str) -> Result<(), QueryError> {
        self.ctx
            .deregister_table(name)
            .map(drop)
            .map_err(|source| QueryError::Engine {
                doing: format!("dropping table {name}"),
                source,
            })
    }

    /// Registers each of `objects` as a table of its own (`{prefix}_0`, `{prefix}_1`, …) whose
    /// rows are declared sorted by `order` (each object must be sorted so, ascending), and
    /// returns the SQL reading all of them, sorted by `order`, as one result of `columns`.
    /// The engine then merges the objects' rows as they stream instead of sorting them all:
    /// its memory follows the number of objects (a batch and a row group of each), not their
    /// rows.
    pub async fn register_sorted_union(
        &self,
        prefix: &str,
        objects: &[ObjectPath],
        schema: arrow_schema::SchemaRef,
        columns: &[&str],
        order: &[&str],
    ) -> Result<String, QueryError> {
        let doing = || format!("registering the sorted tables {prefix}_*");
        let engine = |source| QueryError::Engine {
            doing: doing(),
            source,
        };
        let schema = Arc::new(arrow_schema::Schema::new(schema.fields().clone()));
        let select = columns.join(", ");
        let order_by = order.join(", ");
        if objects.is_empty() {
            self.register_parquet(prefix, &[], schema).await?;
            return Ok(format!("SELECT {select} FROM {prefix} ORDER BY {order_by}"));
        }
        let sort_order: Vec<_> = order
            .iter()
            .map(|column| datafusion::prelude::col(*column).sort(true, false))
            .collect();
        let mut parts = Vec::with_capacity(objects.len());
        for (index, path) in objects.iter().enumerate() {
            let name = format!("{prefix}_{index}");
            let url = ListingTableUrl::parse(format!("{LAKE_URL}{path}")).map_err(engine)?;
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet")
                .with_file_sort_order(vec![sort_order.clone()]);
            let config = ListingTableConfig::new(url)
                .with_listing_options(options)
                .with_schema(Arc::clone(&schema));
            let table = ListingTable::try_new(config).map_err(engine)?;
            self.ctx.deregister_table(name.as_str()).map_err(engine)?;
            self.ctx
                .register_table(name.as_str(), Arc::new(table))
                .map_err(engine)?;
            parts.push(format!("SELECT {select} FROM {name}"));
        }
        Ok(format!(
            "SELECT {select} FROM ({}) ORDER BY {order_by}",
            parts.join(" UNION ALL ")
        ))
    }

    /// Runs `sql` and streams its result; `doing` names the work in errors ("summarising
    /// events/dt=…/hour=…").
    pub async fn stream(
        &self,
        sql: &str,
        doing: &str,
    ) -> Result<SendableRecordBatchStream, QueryError> {
        let frame = self
            .ctx
            .sql(sql)
            .await
            .map_err(|source| self.error(doing, source))?;
        frame
            .execute_stream()
            .await
            .map_err(|source| self.error(doing, source))
    }

    /// Runs `sql` and collects the result (for results bounded by their own nature: one row
    /// per article, per pair kept, …).
    pub async fn collect(&self, sql: &str, doing: &str) -> Result<Vec<RecordBatch>, QueryError> {
        let stream = self.stream(sql, doing).await?;
        stream
            .try_collect()
            .await
            .map_err(|source| self.error(doing, source))
    }

    /// A new file in the spill folder for table `name`, deleted when the guard drops.
    fn spill_file(&self, name: &str) -> Materialized<'_> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let folder = self
            .settings
            .spill_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        let unique = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = folder.join(format!(
            "newsrec-{}-{unique}-{name}.parquet",
            std::process::id()
        ));
        Materialized {
            engine: self,
            name: name.to_owned(),
            path,
        }
    }

    /// A writer of rows computed outside the engine (`schema`), kept in the spill folder and
    /// registered as table `name` by [`SpillWriter::finish`], for the engine to aggregate or
    /// sort within its budget what the caller could not hold.
    pub fn spill_writer(
        &self,
        name: &str,
        schema: arrow_schema::SchemaRef,
    ) -> Result<SpillWriter<'_>, QueryError> {
        let guard = self.spill_file(name);
        let io = |error: std::io::Error| {
            QueryError::Setup(format!(
                "cannot write spill file {}: {error}",
                guard.path.display()
            ))
        };
        let file = std::fs::File::create(&guard.path).map_err(io)?;
        // Uncompressed: read once, soon, from local disk; compressing would cost more than
        // reading the extra bytes.
        let properties = datafusion::parquet::file::properties::WriterProperties::builder()
            .set_compression(datafusion::parquet::basic::Compression::UNCOMPRESSED)
            .build();
        let writer = datafusion::parquet::arrow::ArrowWriter::try_new(
            file,
            schema.clone(),
            Some(properties),
        )
        .map_err(|error| QueryError::Setup(format!("cannot start a spill file: {error}")))?;
        Ok(SpillWriter {
            guard,
            writer,
            schema,
        })
    }

    /// Maps an engine error to [`QueryError`], naming a memory budget that was too small.
    pub fn error(&self, doing: &str, source: DataFusionError) -> QueryError {
        if matches!(source.find_root(), DataFusionError::ResourcesExhausted(_)) {
            return QueryError::MemoryExhausted {
                limit_mib: self.settings.memory_limit_bytes >> 20,
                doing: doing.to_owned(),
                source,
            };
        }
        QueryError::Engine {
            doing: doing.to_owned(),
            source,
        }
    }
}

/// Rows kept as a table in the spill folder ([`QueryEngine::spill_writer`]); dropping it drops
/// the table and deletes its file.
pub struct Materialized<'a> {
    engine: &'a QueryEngine,
    name: String,
    path: PathBuf,
}

impl Materialized<'_> {
    /// The table's name in the engine.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Materialized<'_> {
    fn location(&self) -> Result<&str, QueryError> {
        self.path.to_str().ok_or_else(|| {
            QueryError::Setup(format!(
                "spill file {} is not a UTF-8 path",
                self.path.display()
            ))
        })
    }
}

/// Rows written to the spill folder by the caller, see [`QueryEngine::spill_writer`].
pub struct SpillWriter<'a> {
    guard: Materialized<'a>,
    writer: datafusion::parquet::arrow::ArrowWriter<std::fs::File>,
    schema: arrow_schema::SchemaRef,
}

impl std::fmt::Debug for SpillWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpillWriter")
            .field("table", &self.guard)
            .finish_non_exhaustive()
    }
}

impl<'a> SpillWriter<'a> {
    /// Appends `batch` (of the writer's schema).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), QueryError> {
        self.writer.write(batch).map_err(|error| {
            QueryError::Setup(format!(
                "cannot write spill file {}: {error}",
                self.guard.path.display()
            ))
        })
    }

    /// Closes the file and registers it as the writer's table.
    pub async fn finish(self) -> Result<Materialized<'a>, QueryError> {
        let SpillWriter {
            guard,
            writer,
            schema,
        } = self;
        writer.close().map_err(|error| {
            QueryError::Setup(format!(
                "cannot finish spill file {}: {error}",
                guard.path.display()
            ))
        })?;
        let doing = format!("registering spilled table {}", guard.name);
        let schema = arrow_schema::Schema::new(schema.fields().clone());
        let engine = guard.engine;
        engine
            .ctx
            .deregister_table(guard.name.as_str())
            .map_err(|source| engine.error(&doing, source))?;
        engine
            .ctx
            .register_parquet(
                guard.name.as_str(),
                guard.location()?,
                ParquetReadOptions::default().schema(&schema),
            )
            .await
            .map_err(|source| engine.error(&doing, source))?;
        Ok(guard)
    }
}

impl std::fmt::Debug for Materialized<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Materialized")
            .field("name", &self.name)
            .field("path", &self.path)
            .finish()
    }
}

impl Drop for Materialized<'_> {
    fn drop(&mut self) {
        let _ = self.engine.ctx.deregister_table(self.name.as_str());
        if let Err(error) = std::fs::remove_file(&self.path)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), %error, "cannot remove a spilled table");
        }
    }
}

/// SQL for the deduplicated clicks of event table `table`: one row per `event_id` (the
/// first by time, then by content, so the choice is deterministic), clicks only, with the
/// event time as `ts_ms` (milliseconds since the epoch).
///
/// Duplicates are removed within the table the query reads. The callers read one hour
/// partition at a time, and a duplicate (a client retry, an overlapping import) carries the
/// same event time, so it lands in the same partition: per-hour deduplication removes every
/// copy of an event whose copies agree on its time.
pub fn dedup_clicks_sql(table: &str) -> String {
    // A sort by event id and a rank (the sort spills), rather than `DISTINCT ON`, whose
    // per-group first-value accumulators cost several times more per row.
    format!(
        "SELECT event_id, user_id, article_id, ts_ms, session_id FROM ( \
           SELECT event_id, user_id, article_id, CAST(ts AS BIGINT) AS ts_ms, session_id, \
                  ROW_NUMBER() OVER (PARTITION BY event_id \
                                     ORDER BY ts, user_id, article_id, session_id) AS copy \
           FROM {table} WHERE type = 'click') \
         WHERE copy = 1"
    )
}

#[cfg(test)]
mod tests;
