//! One pass over an hour's deduplicated clicks, sorted by reader, session and time, that
//! summarises the hour into its three rollup tables at once.
//!
//! The engine deduplicates the hour and sorts it (both spill past its budget); this pass then
//! holds only the hour's articles, its co-visitation pair counts and the reader at hand. Sorted
//! input makes each reader and each session a run of consecutive rows, so the distinct readers
//! of an article, a session's first articles and a reader's per-article counts need no join
//! and no hash table over readers. The pair counts follow the hour's distinct pairs; past a cap
//! derived from the memory budget they are handed to the engine as partial counts
//! ([`QueryEngine::spill_writer`]) and summed there, which gives the same rows.

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, StringViewArray,
    builder::{ArrayBuilder, Int64Builder, StringBuilder},
};
use futures::TryStreamExt;
use newsrec_lake::TableEncoder;
use newsrec_lake_query::{Materialized, QueryEngine, SpillWriter};

use crate::{RollupError, RollupSettings, RollupTable, tables::DECAY_SCALE};

/// Hash maps keyed by dense article ids and names: foldhash, several times faster than SipHash
/// on short keys.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Rows per batch handed to the Parquet encoder. Fixed, so that the same rows always make the
/// same pages, whatever batch sizes the engine produced them in.
pub(crate) const ENCODE_BATCH_ROWS: usize = 8192;

/// Bytes one entry of the pair map costs, table overhead included, for sizing its cap.
const PAIR_ENTRY_BYTES: u64 = 32;

/// The cap on distinct pairs held for one hour under an engine budget of `budget` bytes: an
/// eighth of the budget (two hours run side by side, each beside the engine's own use).
pub(crate) fn pair_cap(budget: u64) -> usize {
    usize::try_from(budget / 8 / PAIR_ENTRY_BYTES)
        .unwrap_or(usize::MAX)
        .max(1024)
}

/// SQL for the pass's input: the deduplicated clicks of `clicks` (as
/// [`newsrec_lake_query::dedup_clicks_sql`] gives them) as `user_id`, `session` (events without
/// a session id form one per reader), `article_id`, `ts_ms`, sorted by all four.
pub(crate) fn ordered_clicks_sql(clicks: &str) -> String {
    format!(
        "SELECT user_id, COALESCE(session_id, '') AS session, article_id, ts_ms
         FROM ({clicks})
         ORDER BY user_id, session, ts_ms, article_id"
    )
}

/// One article's figures in the hour (a row of `articles`).
#[derive(Debug, Clone, Copy, Default)]
struct ArticleStats {
    clicks: i64,
    users: i64,
    sessions: i64,
    first_ms: i64,
    last_ms: i64,
    decay_e9: i64,
}

/// The hour's articles by dense id, in the order the pass met them.
#[derive(Debug, Default)]
struct Articles {
    names: indexmap::IndexSet<String, foldhash::fast::RandomState>,
    stats: Vec<ArticleStats>,
}

impl Articles {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(id) = self.names.get_index_of(name) {
            return id as u32;
        }
        self.stats.push(ArticleStats {
            first_ms: i64::MAX,
            last_ms: i64::MIN,
            ..ArticleStats::default()
        });
        self.names.insert_full(name.to_owned()).0 as u32
    }

    /// Dense ids ordered by article name (the tables' order).
    fn by_name(&self) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.names.len() as u32).collect();
        order.sort_unstable_by(|a, b| self.names[*a as usize].cmp(&self.names[*b as usize]));
        order
    }
}

/// What one reader read in the hour: per article, clicks, first and last click.
#[derive(Debug, Default)]
struct Reader {
    name: String,
    reads: HashMap<u32, (i64, i64, i64)>,
}

/// The session at hand: its key and its first distinct articles, in first-click order.
#[derive(Debug, Default)]
struct Session {
    key: String,
    kept: Vec<u32>,
}

/// A table's rows on their way to its Parquet object, in batches of [`ENCODE_BATCH_ROWS`].
pub(crate) struct TableSink {
    table: RollupTable,
    encoder: TableEncoder,
    coalescer: arrow_select::coalesce::BatchCoalescer,
}

impl TableSink {
    pub(crate) fn new(
        table: RollupTable,
        path: &newsrec_lake::ObjectPath,
    ) -> Result<Self, RollupError> {
        let schema = table.schema();
        Ok(TableSink {
            table,
            encoder: TableEncoder::new(path, schema.clone())?,
            coalescer: arrow_select::coalesce::BatchCoalescer::new(schema, ENCODE_BATCH_ROWS),
        })
    }

    fn push(&mut self, hour: &str, columns: Vec<ArrayRef>) -> Result<(), RollupError> {
        let shape = |error: arrow_schema::ArrowError| RollupError::Shape {
            hour: hour.to_owned(),
            table: self.table.name(),
            reason: format!("rows that do not fit the table's schema: {error}"),
        };
        let batch = RecordBatch::try_new(self.table.schema(), columns).map_err(shape)?;
        self.coalescer.push_batch(batch).map_err(shape)?;
        while let Some(full) = self.coalescer.next_completed_batch() {
            self.encoder.write(&full)?;
        }
        Ok(())
    }

    /// The object's rows and bytes.
    pub(crate) fn finish(mut self, hour: &str) -> Result<(u64, bytes::Bytes), RollupError> {
        self.coalescer
            .finish_buffered_batch()
            .map_err(|error| RollupError::Shape {
                hour: hour.to_owned(),
                table: self.table.name(),
                reason: error.to_string(),
            })?;
        while let Some(rest) = self.coalescer.next_completed_batch() {
            self.encoder.write(&rest)?;
        }
        let rows = self.encoder.rows();
        Ok((rows, self.encoder.finish()?.into()))
    }
}

/// `user_articles` rows gathered across readers (most read one or two articles an hour) and
/// handed to their sink a batch at a time.
struct UserArticleRows {
    sink: TableSink,
    user: StringBuilder,
    article: StringBuilder,
    clicks: Int64Builder,
    first_ms: Int64Builder,
    last_ms: Int64Builder,
}

impl UserArticleRows {
    fn new(sink: TableSink) -> Self {
        UserArticleRows {
            sink,
            user: StringBuilder::new(),
            article: StringBuilder::new(),
            clicks: Int64Builder::new(),
            first_ms: Int64Builder::new(),
            last_ms: Int64Builder::new(),
        }
    }

    fn flush(&mut self, hour: &str) -> Result<(), RollupError> {
        if self.clicks.is_empty() {
            return Ok(());
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.user.finish()),
            Arc::new(self.article.finish()),
            Arc::new(self.clicks.finish()),
            Arc::new(self.first_ms.finish()),
            Arc::new(self.last_ms.finish()),
        ];
        self.sink.push(hour, columns)
    }
}

/// `pairs` rows (article, partner, sessions) being gathered into a batch.
#[derive(Default)]
struct PairRows {
    article: StringBuilder,
    other: StringBuilder,
    sessions: Int64Builder,
}

impl PairRows {
    fn append(&mut self, article: &str, other: &str, sessions: i64) {
        self.article.append_value(article);
        self.other.append_value(other);
        self.sessions.append_value(sessions);
    }

    fn len(&self) -> usize {
        self.sessions.len()
    }

    /// The rows gathered so far, as the table's columns; the builders start over.
    fn take(&mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.article.finish()),
            Arc::new(self.other.finish()),
            Arc::new(self.sessions.finish()),
        ]
    }
}

/// A text column of the pass's input, as the engine gives it.
enum Text<'a> {
    Plain(&'a StringArray),
    View(&'a StringViewArray),
}

impl Text<'_> {
    fn of<'a>(batch: &'a RecordBatch, index: usize, hour: &str) -> Result<Text<'a>, RollupError> {
        let column = batch.column(index);
        if column.null_count() > 0 {
            return Err(input_shape(hour, format!("nulls in text column {index}")));
        }
        if let Some(plain) = column.as_any().downcast_ref::<StringArray>() {
            return Ok(Text::Plain(plain));
        }
        if let Some(view) = column.as_any().downcast_ref::<StringViewArray>() {
            return Ok(Text::View(view));
        }
        Err(input_shape(
            hour,
            format!("column {index} of type {}, not text", column.data_type()),
        ))
    }

    fn value(&self, row: usize) -> &str {
        match self {
            Text::Plain(array) => array.value(row),
            Text::View(array) => array.value(row),
        }
    }
}

fn input_shape(hour: &str, reason: String) -> RollupError {
    RollupError::Shape {
        hour: hour.to_owned(),
        table: "ordered clicks",
        reason,
    }
}

/// The pass over one hour.
pub(crate) struct HourSummary<'e> {
    hour: String,
    hour_end_ms: i64,
    /// The decay's half-life in ms; 0: no decay.
    half_life_ms: f64,
    session_articles: usize,
    pairs_per_article: usize,
    articles: Articles,
    pairs: HashMap<(u32, u32), i64>,
    pair_cap: usize,
    /// Partial pair counts handed to the engine once the map passed its cap.
    spilled: Option<SpillWriter<'e>>,
    engine: &'e QueryEngine,
    spill_name: String,
    reader: Option<Reader>,
    session: Option<Session>,
    /// Where `user_articles` rows go, when that table is being computed.
    user_articles: Option<UserArticleRows>,
    /// A reader's reads, sorted when they end (kept to reuse its allocation).
    reads_scratch: Vec<(u32, (i64, i64, i64))>,
    clicks: u64,
}

impl<'e> HourSummary<'e> {
    /// A pass over the hour labelled `hour` ending at `hour_end_ms`; `user_articles` receives
    /// that table's rows as readers end (`None`: not computed). Pairs past `pair_cap` are
    /// spilled to the engine as table `spill_name`.
    pub(crate) fn new(
        hour: String,
        hour_end_ms: i64,
        settings: &RollupSettings,
        engine: &'e QueryEngine,
        spill_name: String,
        pair_cap: usize,
        user_articles: Option<TableSink>,
    ) -> Self {
        HourSummary {
            hour,
            hour_end_ms,
            half_life_ms: settings.decay_half_life_hours * 3_600_000.0,
            session_articles: settings.session_articles as usize,
            pairs_per_article: settings.pairs_per_article as usize,
            articles: Articles::default(),
            pairs: HashMap::default(),
            pair_cap,
            spilled: None,
            engine,
            spill_name,
            reader: None,
            session: None,
            user_articles: user_articles.map(UserArticleRows::new),
            reads_scratch: Vec::new(),
            clicks: 0,
        }
    }

    /// The weight of a click at `ts_ms` at the hour's end, in fixed point.
    fn decay(&self, ts_ms: i64) -> i64 {
        if self.half_life_ms > 0.0 {
            let age = (self.hour_end_ms - ts_ms) as f64;
            (DECAY_SCALE * 0.5f64.powf(age / self.half_life_ms)).round() as i64
        } else {
            DECAY_SCALE as i64
        }
    }

    /// Takes the next batch of [`ordered_clicks_sql`]'s rows.
    pub(crate) fn push(&mut self, batch: &RecordBatch) -> Result<(), RollupError> {
        if batch.num_columns() != 4 {
            return Err(input_shape(
                &self.hour,
                format!("{} columns, not 4", batch.num_columns()),
            ));
        }
        let users = Text::of(batch, 0, &self.hour)?;
        let sessions = Text::of(batch, 1, &self.hour)?;
        let articles = Text::of(batch, 2, &self.hour)?;
        let times = batch
            .column(3)
            .as_any()
            .downcast_ref::<Int64Array>()
            .filter(|times| times.null_count() == 0)
            .ok_or_else(|| {
                input_shape(&self.hour, "a time column that is not an integer".into())
            })?;
        for row in 0..batch.num_rows() {
            let user = users.value(row);
            if self.reader.as_ref().is_none_or(|open| open.name != user) {
                self.end_session()?;
                self.end_reader()?;
                let mut reader = self.reader.take().unwrap_or_default();
                reader.name.clear();
                reader.name.push_str(user);
                self.reader = Some(reader);
            }
            let session = sessions.value(row);
            if self.session.as_ref().is_none_or(|open| open.key != session) {
                self.end_session()?;
                let mut open = self.session.take().unwrap_or_default();
                open.key.clear();
                open.key.push_str(session);
                self.session = Some(open);
            }
            let ts = times.value(row);
            let article = self.articles.intern(articles.value(row));
            let weight = self.decay(ts);
            let stats = &mut self.articles.stats[article as usize];
            stats.clicks += 1;
            stats.first_ms = stats.first_ms.min(ts);
            stats.last_ms = stats.last_ms.max(ts);
            stats.decay_e9 += weight;
            if let Some(reader) = &mut self.reader {
                let read = reader.reads.entry(article).or_insert((0, ts, ts));
                read.0 += 1;
                read.1 = read.1.min(ts);
                read.2 = read.2.max(ts);
            }
            // Rows come by time, then article: a session's first distinct articles in
            // first-click order are the first ones met.
            if let Some(open) = &mut self.session
                && open.kept.len() < self.session_articles
                && !open.kept.contains(&article)
            {
                open.kept.push(article);
            }
            self.clicks += 1;
        }
        Ok(())
    }

    /// Counts the session at hand: one session for each of its kept articles, one for each
    /// ordered pair of them.
    fn end_session(&mut self) -> Result<(), RollupError> {
        let Some(open) = &mut self.session else {
            return Ok(());
        };
        for (i, &a) in open.kept.iter().enumerate() {
            self.articles.stats[a as usize].sessions += 1;
            for (j, &b) in open.kept.iter().enumerate() {
                if i != j {
                    *self.pairs.entry((a, b)).or_insert(0) += 1;
                }
            }
        }
        open.kept.clear();
        if self.pairs.len() > self.pair_cap {
            self.spill_pairs()?;
        }
        Ok(())
    }

    /// Counts the reader at hand as a reader of each article they read, and writes their
    /// `user_articles` rows, by article name.
    fn end_reader(&mut self) -> Result<(), RollupError> {
        let Some(reader) = &mut self.reader else {
            return Ok(());
        };
        if reader.reads.is_empty() {
            return Ok(());
        }
        let mut reads = std::mem::take(&mut self.reads_scratch);
        reads.extend(reader.reads.drain());
        for (article, _) in &reads {
            self.articles.stats[*article as usize].users += 1;
        }
        if let Some(rows) = &mut self.user_articles {
            let names = &self.articles.names;
            reads.sort_unstable_by(|a, b| names[a.0 as usize].cmp(&names[b.0 as usize]));
            for (article, (clicks, first_ms, last_ms)) in &reads {
                rows.user.append_value(&reader.name);
                rows.article.append_value(&names[*article as usize]);
                rows.clicks.append_value(*clicks);
                rows.first_ms.append_value(*first_ms);
                rows.last_ms.append_value(*last_ms);
            }
            if rows.clicks.len() >= ENCODE_BATCH_ROWS {
                rows.flush(&self.hour)?;
            }
        }
        reads.clear();
        self.reads_scratch = reads;
        Ok(())
    }

    /// Hands the pair map to the engine as partial counts and empties it.
    fn spill_pairs(&mut self) -> Result<(), RollupError> {
        let query = |source| RollupError::Query {
            hour: self.hour.clone(),
            source,
        };
        if self.spilled.is_none() {
            let writer = self
                .engine
                .spill_writer(&self.spill_name, RollupTable::Pairs.schema())
                .map_err(query)?;
            self.spilled = Some(writer);
        }
        let names = &self.articles.names;
        let mut rows = PairRows::default();
        let mut pairs = self.pairs.drain().peekable();
        while pairs.peek().is_some() {
            for ((a, b), n) in pairs.by_ref().take(ENCODE_BATCH_ROWS) {
                rows.append(&names[a as usize], &names[b as usize], n);
            }
            let batch = RecordBatch::try_new(RollupTable::Pairs.schema(), rows.take())
                .map_err(|error| RollupError::Internal(error.to_string()))?;
            if let Some(writer) = &mut self.spilled {
                writer.write(&batch).map_err(|source| RollupError::Query {
                    hour: self.hour.clone(),
                    source,
                })?;
            }
        }
        tracing::debug!(hour = %self.hour, cap = self.pair_cap, "pair counts past the cap handed to the engine");
        Ok(())
    }

    /// Ends the pass: closes the last reader and session, and returns the hour's distinct
    /// clicks and the sink of `user_articles`.
    pub(crate) fn end_input(&mut self) -> Result<(u64, Option<TableSink>), RollupError> {
        self.end_session()?;
        self.end_reader()?;
        let sink = match self.user_articles.take() {
            Some(mut rows) => {
                rows.flush(&self.hour)?;
                Some(rows.sink)
            }
            None => None,
        };
        Ok((self.clicks, sink))
    }

    /// Writes the `articles` rows, by article name.
    pub(crate) fn write_articles(&self, sink: &mut TableSink) -> Result<(), RollupError> {
        for chunk in self.articles.by_name().chunks(ENCODE_BATCH_ROWS) {
            let stats: Vec<&ArticleStats> = chunk
                .iter()
                .map(|id| &self.articles.stats[*id as usize])
                .collect();
            let names: ArrayRef = Arc::new(StringArray::from_iter_values(
                chunk
                    .iter()
                    .map(|id| self.articles.names[*id as usize].as_str()),
            ));
            let ints = |pick: fn(&ArticleStats) -> i64| -> ArrayRef {
                Arc::new(Int64Array::from_iter_values(stats.iter().map(|s| pick(s))))
            };
            sink.push(
                &self.hour,
                vec![
                    names,
                    ints(|s| s.clicks),
                    ints(|s| s.users),
                    ints(|s| s.sessions),
                    ints(|s| s.first_ms),
                    ints(|s| s.last_ms),
                    ints(|s| s.decay_e9),
                ],
            )?;
        }
        Ok(())
    }

    /// Writes the `pairs` rows: per article (by name), its `pairs_per_article` partners read
    /// in the most sessions, ties by partner name. Summed by the engine when counts were
    /// spilled, here otherwise; both give the same rows.
    pub(crate) async fn write_pairs(&mut self, sink: &mut TableSink) -> Result<(), RollupError> {
        if self.spilled.is_some() {
            self.spill_pairs()?;
            let writer = self.spilled.take().expect("spilled above");
            let query = |source| RollupError::Query {
                hour: self.hour.clone(),
                source,
            };
            let partial: Materialized<'_> = writer.finish().await.map_err(query)?;
            let doing = format!("summing the spilled pair counts of {}", self.hour);
            let sql = format!(
                "SELECT article_id, other_id, sessions FROM (
                   SELECT article_id, other_id, sessions,
                          ROW_NUMBER() OVER (PARTITION BY article_id
                                             ORDER BY sessions DESC, other_id) AS rank
                   FROM (SELECT article_id, other_id, CAST(SUM(sessions) AS BIGINT) AS sessions
                         FROM {} GROUP BY article_id, other_id))
                 WHERE rank <= {}
                 ORDER BY article_id, sessions DESC, other_id",
                partial.name(),
                self.pairs_per_article
            );
            let mut stream = self.engine.stream(&sql, &doing).await.map_err(query)?;
            while let Some(batch) = stream
                .try_next()
                .await
                .map_err(|source| query(self.engine.error(&doing, source)))?
            {
                sink.push(&self.hour, batch.columns().to_vec())?;
            }
            return Ok(());
        }
        let mut partners: Vec<Vec<(u32, i64)>> = vec![Vec::new(); self.articles.names.len()];
        for (&(a, b), &n) in &self.pairs {
            partners[a as usize].push((b, n));
        }
        let names = &self.articles.names;
        let mut rows = PairRows::default();
        for a in self.articles.by_name() {
            let list = &mut partners[a as usize];
            list.sort_unstable_by(|x, y| {
                y.1.cmp(&x.1)
                    .then_with(|| names[x.0 as usize].cmp(&names[y.0 as usize]))
            });
            for &(b, n) in list.iter().take(self.pairs_per_article) {
                rows.append(&names[a as usize], &names[b as usize], n);
            }
            if rows.len() >= ENCODE_BATCH_ROWS {
                sink.push(&self.hour, rows.take())?;
            }
        }
        sink.push(&self.hour, rows.take())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use newsrec_lake::Lake;
    use newsrec_lake_query::EngineSettings;

    /// Input rows sorted as the pass takes them: 600 readers, one session each of 6 clicks on
    /// 150 articles.
    fn ordered_clicks() -> RecordBatch {
        let mut rows = Vec::new();
        for reader in 0..600u64 {
            for click in 0..6u64 {
                let article = (reader * 37 + click * click * 11 + click) % 150;
                rows.push((
                    format!("u{reader:04}"),
                    click as i64,
                    format!("a{article:03}"),
                ));
            }
        }
        rows.sort();
        let users: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        let articles: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
        RecordBatch::try_from_iter(vec![
            ("user_id", Arc::new(StringArray::from(users)) as ArrayRef),
            (
                "session",
                Arc::new(StringArray::from(vec!["s"; rows.len()])),
            ),
            ("article_id", Arc::new(StringArray::from(articles))),
            (
                "ts_ms",
                Arc::new(Int64Array::from_iter_values(
                    rows.iter().map(|r| 1_000 + r.1),
                )),
            ),
        ])
        .unwrap()
    }

    async fn pairs_bytes(engine: &QueryEngine, cap: usize) -> (bool, bytes::Bytes) {
        let settings = RollupSettings {
            pairs_per_article: 7,
            ..RollupSettings::default()
        };
        let mut summary = HourSummary::new(
            "test hour".into(),
            3_600_000,
            &settings,
            engine,
            format!("spilled_pairs_{cap}"),
            cap,
            None,
        );
        summary.push(&ordered_clicks()).unwrap();
        summary.end_input().unwrap();
        let spilled = summary.spilled.is_some();
        let path = newsrec_lake::ObjectPath::from("pairs.parquet");
        let mut sink = TableSink::new(RollupTable::Pairs, &path).unwrap();
        summary.write_pairs(&mut sink).await.unwrap();
        (spilled, sink.finish("test hour").unwrap().1)
    }

    #[tokio::test]
    async fn pairs_summed_by_the_engine_past_the_cap_equal_pairs_summed_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
        let engine = QueryEngine::new(
            &lake,
            &EngineSettings {
                spill_dir: Some(dir.path().join("spill")),
                ..EngineSettings::default()
            },
        )
        .unwrap();
        let (held_spilled, held) = pairs_bytes(&engine, usize::MAX).await;
        let (capped_spilled, capped) = pairs_bytes(&engine, 1024).await;
        assert!(!held_spilled, "no cap: the pairs stay in memory");
        assert!(
            capped_spilled,
            "a cap of 1,024 pairs spills these sessions' pairs"
        );
        assert_eq!(held, capped);
        // The engine keeps a folder of its own there; the spilled counts' file is gone.
        let spilled_files = std::fs::read_dir(dir.path().join("spill"))
            .unwrap()
            .filter(|entry| {
                let name = entry.as_ref().unwrap().file_name();
                name.to_string_lossy().contains("spilled_pairs")
            })
            .count();
        assert_eq!(spilled_files, 0, "the spilled counts are deleted");
    }
}
