//! A training window read from the hourly rollups: the articles it knows, their decayed
//! popularity and co-visitation neighbours, and a deterministic sample of its readers with their
//! histories. Memory follows articles, pairs and the sample, never clicks; the readers outside
//! the sample are streamed by [`stream_readers`] when their lists are written.

use std::collections::BTreeMap;

/// Hash maps keyed by ids read row by row: foldhash, several times faster than SipHash on
/// short strings and pairs, and lookups are all these maps do.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

use arrow_array::{Array, Int64Array, RecordBatch, StringArray};
use futures::{StreamExt, TryStreamExt};
use newsrec_lake::{Lake, TimeWindow, layout::Partition};
use newsrec_lake_query::{QueryEngine, RecordBatchStream};
use newsrec_model::{
    CooccurrenceModel, Dataset, PopularityModel, TestSet, decay_weight, neighbours_from_counts,
};
use newsrec_rollup::{HourCounts, RollupMarker, RollupTable};

use crate::{Settings, TrainError};

/// Hours whose rollup tables are read and decoded ahead of the one being summed.
const READ_AHEAD_HOURS: usize = 4;

/// Dense article ids of one run, shared by all its windows and test days, in the order the
/// rollups first name them (so the same rollups always give the same ids).
#[derive(Debug, Default, Clone)]
pub struct ArticleIndex {
    names: Vec<String>,
    ids: HashMap<String, u32>,
}

impl ArticleIndex {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        id
    }

    /// The article of dense id `id`.
    pub fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }

    /// Every article name, by id.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }
}

impl ArticleIndex {
    /// The ids of every article of `span`, in hour order then article order: fixed by the
    /// rollups alone, whatever a run reads first (a resumed run skips what an earlier start
    /// did, and must still give every article the same id).
    pub async fn of_span(lake: &Lake, span: &RollupSpan) -> Result<ArticleIndex, TrainError> {
        let mut index = ArticleIndex::default();
        for (hour, marker) in &span.hours {
            for batch in read_table(lake, *hour, marker, RollupTable::Articles).await? {
                let ids = text_column(&batch, 0)?;
                for row in 0..batch.num_rows() {
                    index.intern(ids.value(row));
                }
            }
        }
        Ok(index)
    }

    fn id(&self, name: &str) -> Result<u32, TrainError> {
        self.get(name).ok_or_else(|| {
            TrainError::Schema(format!(
                "article {name:?} of a rollup is in no articles rollup of the run's span"
            ))
        })
    }
}

/// The rollup keys of a run's span, by hour.
#[derive(Debug, Clone, Default)]
pub struct RollupSpan {
    pub hours: BTreeMap<Partition, RollupMarker>,
}

impl RollupSpan {
    /// The hours inside `window`.
    fn hours_in(&self, window: TimeWindow) -> impl Iterator<Item = (&Partition, &RollupMarker)> {
        self.hours
            .iter()
            .filter(move |(hour, _)| window.contains(hour.start_ms()))
    }

    /// The window's summed event counts.
    pub fn counts(&self, window: TimeWindow) -> HourCounts {
        let mut sum = HourCounts::default();
        for (_, marker) in self.hours_in(window) {
            sum.events += marker.counts.events;
            sum.clicks += marker.counts.clicks;
            sum.duplicates += marker.counts.duplicates;
            sum.other_events += marker.counts.other_events;
        }
        sum
    }

    /// The objects of `table` for the hours of `window`.
    fn objects(&self, window: TimeWindow, table: RollupTable) -> Vec<newsrec_lake::ObjectPath> {
        self.hours_in(window)
            .map(|(hour, _)| hour.rollup_object_path(&table.object_name()))
            .collect()
    }

    /// A digest of the keys of the hours before `end_ms`: a checkpoint taken over other
    /// rollups of those hours (the lake changed between two starts) is not resumed from.
    pub fn digest_before(&self, end_ms: i64) -> String {
        let mut text = String::new();
        for (hour, marker) in self
            .hours
            .iter()
            .filter(|(hour, _)| hour.start_ms() < end_ms)
        {
            text.push_str(&hour.label());
            for (name, table) in &marker.tables {
                text.push_str(&format!(" {name}={}", table.digest));
            }
            text.push('\n');
        }
        format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
    }
}

/// The article-level models of a window: decayed popularity and co-visitation neighbours.
#[derive(Debug, Clone)]
pub struct WindowArticles {
    pub window: TimeWindow,
    /// Decayed popularity at the window's end, by article id (ids the window never saw: 0).
    pub popularity: Vec<f64>,
    /// Neighbours by article id, best first.
    pub neighbours: Vec<Vec<newsrec_model::ScoredItem>>,
    /// Articles clicked in the window.
    pub articles: u64,
    /// Co-visitation pairs summed over the window (before pruning).
    pub pairs: u64,
}

impl WindowArticles {
    /// Sums the `articles` and `pairs` rollups of the window's hours.
    pub async fn read(
        lake: &Lake,
        span: &RollupSpan,
        index: &ArticleIndex,
        window: TimeWindow,
        settings: &Settings,
    ) -> Result<WindowArticles, TrainError> {
        let half_life_ms = settings.popularity.half_life_hours * 3_600_000.0;
        let mut popularity: Vec<f64> = Vec::new();
        let mut sessions: Vec<u64> = Vec::new();
        let mut pairs: HashMap<(u32, u32), u64> = HashMap::default();
        let mut seen = 0u64;
        // The next hours' tables are fetched and decoded (on blocking threads) while this
        // one is summed; taken in hour order, so float sums add up the same way every time.
        let mut hours = futures::stream::iter(span.hours_in(window))
            .map(|(hour, marker)| async move {
                let articles = read_table(lake, *hour, marker, RollupTable::Articles).await?;
                let pairs = read_table(lake, *hour, marker, RollupTable::Pairs).await?;
                Ok::<_, TrainError>((*hour, articles, pairs))
            })
            .buffered(READ_AHEAD_HOURS);
        while let Some((hour, article_batches, pair_batches)) = hours.try_next().await? {
            let hour_end = hour.start_ms() + 3_600_000;
            // The hour's clicks are decayed to its end in the rollup; one factor carries them
            // to the window's end.
            let carry = decay_weight(window.end_ms, hour_end, half_life_ms);
            for batch in article_batches {
                let ids = text_column(&batch, 0)?;
                let session_counts = int_column(&batch, 3)?;
                let decay = int_column(&batch, 6)?;
                for row in 0..batch.num_rows() {
                    let id = index.id(ids.value(row))? as usize;
                    if id >= popularity.len() {
                        popularity.resize(id + 1, 0.0);
                        sessions.resize(id + 1, 0);
                    }
                    if popularity[id] == 0.0 && sessions[id] == 0 {
                        seen += 1;
                    }
                    popularity[id] += decay.value(row) as f64 / newsrec_rollup::DECAY_SCALE * carry;
                    sessions[id] += session_counts.value(row).max(0) as u64;
                }
            }
            for batch in pair_batches {
                let ids = text_column(&batch, 0)?;
                let others = text_column(&batch, 1)?;
                let together = int_column(&batch, 2)?;
                for row in 0..batch.num_rows() {
                    let a = index.id(ids.value(row))?;
                    let b = index.id(others.value(row))?;
                    *pairs.entry((a, b)).or_insert(0) += together.value(row).max(0) as u64;
                }
            }
        }
        sessions.resize(index.len(), 0);
        popularity.resize(index.len(), 0.0);
        let pair_count = pairs.len() as u64;
        let neighbours = neighbours_from_counts(
            &sessions,
            pairs.into_iter().map(|((a, b), n)| (a, b, n)),
            &settings.cooccurrence,
        );
        Ok(WindowArticles {
            window,
            popularity,
            neighbours,
            articles: seen,
            pairs: pair_count,
        })
    }

    /// The popularity model, sized to `n_items`.
    pub fn popularity_model(&self, n_items: usize) -> PopularityModel {
        let mut scores = self.popularity.clone();
        scores.resize(n_items.max(scores.len()), 0.0);
        PopularityModel::from_scores(scores)
    }

    /// The co-visitation model over `dataset` (the sample's histories).
    pub fn cooccurrence_model(
        &self,
        dataset: Dataset,
        popularity: PopularityModel,
        settings: &Settings,
    ) -> CooccurrenceModel {
        let mut neighbours = self.neighbours.clone();
        neighbours.resize(dataset.n_items().max(neighbours.len()), Vec::new());
        CooccurrenceModel::from_neighbours(
            neighbours,
            dataset,
            popularity,
            settings.cooccurrence.clone(),
        )
    }
}

/// One reader's rows of a window: (article id, clicks, last click) per hour they read it.
type ReaderRows = Vec<(u32, i64, i64)>;

/// The readers of a window with the smallest hashes of their id (at most `limit` of them), with
/// their histories: a sample that is the same whichever order the rollups are read in, and the
/// same for every model. When the window has no more readers than `limit` it is all of them.
#[derive(Debug, Clone)]
pub struct ReaderSample {
    /// Reader ids, in sample order (by hash); the dense user ids of [`ReaderSample::dataset`].
    pub users: Vec<String>,
    pub dataset: Dataset,
    /// True when every reader of the window is in the sample.
    pub complete: bool,
}

impl ReaderSample {
    /// Reads the sample from the `user_articles` rollups of `window`.
    pub async fn read(
        engine: &QueryEngine,
        span: &RollupSpan,
        index: &ArticleIndex,
        window: TimeWindow,
        settings: &Settings,
    ) -> Result<ReaderSample, TrainError> {
        let limit = settings.eval_sample_users.max(1);
        let objects = span.objects(window, RollupTable::UserArticles);
        let table = "window_readers";
        register(engine, table, &objects).await?;
        let doing = format!("sampling the readers of {}", describe(window));
        let mut stream = engine
            .stream(
                &format!("SELECT user_id, article_id, clicks, last_ms FROM {table}"),
                &doing,
            )
            .await
            .map_err(query)?;
        let mut sample: BTreeMap<u64, Vec<(String, ReaderRows)>> = BTreeMap::new();
        let mut size = 0usize;
        let mut complete = true;
        while let Some(batch) = next_batch(engine, &mut stream, &doing).await? {
            let users = text_column(&batch, 0)?;
            let articles = text_column(&batch, 1)?;
            let clicks = int_column(&batch, 2)?;
            let last = int_column(&batch, 3)?;
            for row in 0..batch.num_rows() {
                let user = users.value(row);
                let hash = xxhash_rust::xxh3::xxh3_64(user.as_bytes());
                if size >= limit && sample.last_key_value().is_some_and(|(max, _)| hash > *max) {
                    complete = false;
                    continue;
                }
                let item = index.id(articles.value(row))?;
                let entry = (item, clicks.value(row), last.value(row));
                let slot = sample.entry(hash).or_default();
                match slot.iter_mut().find(|(name, _)| name == user) {
                    Some((_, rows)) => rows.push(entry),
                    None => {
                        slot.push((user.to_owned(), vec![entry]));
                        size += 1;
                    }
                }
                while size > limit {
                    complete = false;
                    if let Some((_, evicted)) = sample.pop_last() {
                        size -= evicted.len();
                    }
                }
            }
        }
        let half_life_ms = settings.cooccurrence.affinity_half_life_hours * 3_600_000.0;
        let mut users = Vec::with_capacity(size);
        let mut rows: Vec<(u32, u32, f32)> = Vec::new();
        for mut readers in sample.into_values() {
            readers.sort_by(|a, b| a.0.cmp(&b.0));
            for (name, mut history) in readers {
                let user = users.len() as u32;
                users.push(name);
                // Summed in one fixed order, so the affinities are the same bits every time.
                history.sort_unstable();
                let mut current: Option<(u32, f64)> = None;
                for (item, clicks, last_ms) in history {
                    let weight = clicks as f64 * decay_weight(window.end_ms, last_ms, half_life_ms);
                    match &mut current {
                        Some((open, sum)) if *open == item => *sum += weight,
                        _ => {
                            if let Some((open, sum)) = current.take() {
                                rows.push((user, open, sum as f32));
                            }
                            current = Some((item, weight));
                        }
                    }
                }
                if let Some((open, sum)) = current {
                    rows.push((user, open, sum as f32));
                }
            }
        }
        let dataset = Dataset::from_affinities(users.len(), index.len(), &rows, window.end_ms);
        Ok(ReaderSample {
            users,
            dataset,
            complete,
        })
    }

    /// P1's test set on `day`: the sampled readers' clicks of that day, from its rollups.
    pub async fn test_set(
        &self,
        engine: &QueryEngine,
        span: &RollupSpan,
        index: &ArticleIndex,
        day: TimeWindow,
    ) -> Result<TestSet, TrainError> {
        let positions: HashMap<&str, u32> = self
            .users
            .iter()
            .enumerate()
            .map(|(position, name)| (name.as_str(), position as u32))
            .collect();
        let table = "test_day_readers";
        register(engine, table, &span.objects(day, RollupTable::UserArticles)).await?;
        let doing = format!("reading the test day {}", describe(day));
        let mut stream = engine
            .stream(&format!("SELECT user_id, article_id FROM {table}"), &doing)
            .await
            .map_err(query)?;
        // Only the sampled readers' rows are kept: memory follows the sample, not the day.
        let mut clicks = Vec::new();
        while let Some(batch) = next_batch(engine, &mut stream, &doing).await? {
            let users = text_column(&batch, 0)?;
            let articles = text_column(&batch, 1)?;
            for row in 0..batch.num_rows() {
                if let Some(&user) = positions.get(users.value(row)) {
                    clicks.push((user, index.id(articles.value(row))?));
                }
            }
        }
        Ok(TestSet::build(&self.dataset, &clicks))
    }
}

/// One reader of a window as [`ReaderStream`] yields them: their id, and the articles they read
/// (ids ascending) with the decayed affinity of each.
#[derive(Debug, Clone, PartialEq)]
pub struct Reader {
    pub user_id: String,
    pub items: Vec<u32>,
    pub affinities: Vec<f32>,
}

/// Every reader of a window in id order with their history, for writing lists beyond the
/// sample. The engine merges the hours' `user_articles` rows, each hour sorted by reader, so
/// only the reader at hand is held here.
pub struct ReaderStream {
    stream: RecordBatchStream,
    doing: String,
    window: TimeWindow,
    half_life_ms: f64,
    /// Rows of the batch at hand not yet consumed, and the reader being gathered.
    batch: Option<(RecordBatch, usize)>,
    current: Option<(String, BTreeMap<u32, f64>)>,
}

impl std::fmt::Debug for ReaderStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReaderStream")
            .field("doing", &self.doing)
            .finish_non_exhaustive()
    }
}

impl ReaderStream {
    /// Starts the stream over the `user_articles` rollups of `window`.
    pub async fn open(
        engine: &QueryEngine,
        span: &RollupSpan,
        window: TimeWindow,
        settings: &Settings,
    ) -> Result<ReaderStream, TrainError> {
        // Each hour's rows are sorted by reader and article: the engine merges the hours
        // instead of sorting the window.
        let sql = engine
            .register_sorted_union(
                "window_lists",
                &span.objects(window, RollupTable::UserArticles),
                RollupTable::UserArticles.schema(),
                &["user_id", "article_id", "clicks", "last_ms"],
                &["user_id", "article_id", "last_ms"],
            )
            .await
            .map_err(query)?;
        let doing = format!("streaming the readers of {}", describe(window));
        let stream = engine.stream(&sql, &doing).await.map_err(query)?;
        Ok(ReaderStream {
            stream,
            doing,
            window,
            half_life_ms: settings.cooccurrence.affinity_half_life_hours * 3_600_000.0,
            batch: None,
            current: None,
        })
    }

    /// The next reader, or `None` after the last.
    pub async fn next(
        &mut self,
        engine: &QueryEngine,
        index: &ArticleIndex,
    ) -> Result<Option<Reader>, TrainError> {
        loop {
            if self.batch.is_none() {
                match next_batch(engine, &mut self.stream, &self.doing).await? {
                    Some(batch) => self.batch = Some((batch, 0)),
                    None => return Ok(self.current.take().map(finish_reader)),
                }
            }
            let Some((batch, mut row)) = self.batch.take() else {
                continue;
            };
            let users = text_column(&batch, 0)?;
            let articles = text_column(&batch, 1)?;
            let clicks = int_column(&batch, 2)?;
            let last = int_column(&batch, 3)?;
            while row < batch.num_rows() {
                let user = users.value(row);
                if self.current.as_ref().is_some_and(|(open, _)| open != user) {
                    let done = self.current.take().map(finish_reader);
                    self.batch = Some((batch.clone(), row));
                    return Ok(done);
                }
                let (_, history) = self
                    .current
                    .get_or_insert_with(|| (user.to_owned(), BTreeMap::new()));
                if let Some(item) = index.get(articles.value(row)) {
                    let weight = clicks.value(row) as f64
                        * decay_weight(self.window.end_ms, last.value(row), self.half_life_ms);
                    *history.entry(item).or_insert(0.0) += weight;
                }
                row += 1;
            }
        }
    }
}

fn finish_reader((user_id, history): (String, BTreeMap<u32, f64>)) -> Reader {
    let (items, affinities) = history
        .into_iter()
        .map(|(item, sum)| (item, sum as f32))
        .unzip();
    Reader {
        user_id,
        items,
        affinities,
    }
}

/// The next batch of a query's result; `doing` names the query in errors.
async fn next_batch(
    engine: &QueryEngine,
    stream: &mut RecordBatchStream,
    doing: &str,
) -> Result<Option<RecordBatch>, TrainError> {
    stream
        .try_next()
        .await
        .map_err(|source| query(engine.error(doing, source)))
}

async fn register(
    engine: &QueryEngine,
    table: &str,
    objects: &[newsrec_lake::ObjectPath],
) -> Result<(), TrainError> {
    engine
        .register_parquet(table, objects, RollupTable::UserArticles.schema())
        .await
        .map_err(query)
}

/// Reads one rollup table of an hour, checked against the digest its key recorded.
async fn read_table(
    lake: &Lake,
    hour: Partition,
    marker: &RollupMarker,
    table: RollupTable,
) -> Result<Vec<RecordBatch>, TrainError> {
    let path = hour.rollup_object_path(&table.object_name());
    let entry = marker
        .tables
        .get(table.name())
        .ok_or_else(|| TrainError::Checkpoint {
            object: path.to_string(),
            reason: "the rollup key does not list this table".into(),
        })?;
    let bytes = lake.get_object(&path).await?;
    let found = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&bytes));
    if found != entry.digest {
        return Err(TrainError::Checkpoint {
            object: path.to_string(),
            reason: format!(
                "digest {found}, its key recorded {}; run again to recompute it",
                entry.digest
            ),
        });
    }
    Ok(lake.decode_table(&path, bytes).await?)
}

fn text_column(batch: &RecordBatch, index: usize) -> Result<&StringArray, TrainError> {
    batch
        .column(index)
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| TrainError::Schema(format!("rollup column {index} is not text")))
}

fn int_column(batch: &RecordBatch, index: usize) -> Result<&Int64Array, TrainError> {
    batch
        .column(index)
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| TrainError::Schema(format!("rollup column {index} is not an integer")))
}

fn query(error: newsrec_lake_query::QueryError) -> TrainError {
    TrainError::Query(error)
}

fn describe(window: TimeWindow) -> String {
    let last = newsrec_lake::layout::Partition::of_ts(window.end_ms - 1).date;
    format!("{}..={last}", window.start_date())
}
