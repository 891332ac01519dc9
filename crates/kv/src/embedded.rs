//! The embedded backend: one immutable redb file per generation and a `CURRENT` pointer file.
//!
//! Why a file per generation: a publish runs in its own process while `newsrec up` serves. The
//! publisher writes `gen-N.redb.partial`, seals it (fsync), renames it to `gen-N.redb` and then
//! replaces `CURRENT` by rename, which is atomic on POSIX file systems. Serving processes open
//! sealed files read-only and poll `CURRENT`; they never share a writable database with the
//! publisher, so no cross-process write locking is needed and a half-written generation is never
//! visible. A `LOCK` file serialises publishers. Layout: `docs/kv-layout.md`.
//!
//! A store opened for serving ([`EmbeddedStore::open_serving`]) gives each generation it opens
//! a read cache as large as the file and fills it from a background thread: random lookups over
//! a million users otherwise miss redb's cache and pay a `pread`, a fresh page and a copy each
//! (measured: a quarter of the CPU of a request), and the generation is immutable, so a whole
//! cached copy never goes stale.

use std::{
    fs::{self, File},
    io::Write,
    path::{Path, PathBuf},
    sync::{
        Arc, RwLock, Weak,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use async_trait::async_trait;
use redb::{
    Builder, Database, Durability, ReadOnlyDatabase, ReadOnlyTable, ReadableDatabase,
    ReadableTableMetadata, TableDefinition,
};

use crate::{
    Generation, GenerationInfo, GenerationWriter, KvError, RecItem, RecStore, SimilarList,
    StoredList, UserList,
    codec::{decode_items, encode_items},
};

const LISTS: TableDefinition<&str, &[u8]> = TableDefinition::new("lists");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const SIMILAR: TableDefinition<&str, &[u8]> = TableDefinition::new("similar");
const META_INFO: &str = "info";
const META_FALLBACK: &str = "fallback";
const CURRENT_FILE: &str = "CURRENT";
const LOCK_FILE: &str = "LOCK";

/// The embedded store rooted at one folder.
#[derive(Debug)]
pub struct EmbeddedStore {
    dir: PathBuf,
    serving: RwLock<Option<Arc<OpenGeneration>>>,
    /// Cache each served generation whole and warm it (see the module doc).
    cache_whole: bool,
    /// Warming threads running (a switch can start one before the last one ends).
    warming: Arc<AtomicUsize>,
}

/// redb's own default read cache, for stores not opened for serving.
const DEFAULT_CACHE_BYTES: usize = 1 << 30;

/// A sealed generation opened for reading.
struct OpenGeneration {
    info: GenerationInfo,
    lists: ReadOnlyTable<&'static str, &'static [u8]>,
    /// Absent in generations written before similar lists existed.
    similar: Option<ReadOnlyTable<&'static str, &'static [u8]>>,
    fallback: Vec<RecItem>,
    // Keeps the file open for the table above.
    _database: ReadOnlyDatabase,
}

impl std::fmt::Debug for OpenGeneration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenGeneration")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (creating when missing) the store in `dir` and loads the current generation.
    pub fn open(dir: impl Into<PathBuf>) -> Result<EmbeddedStore, KvError> {
        Self::open_with(dir.into(), false)
    }

    /// Opens the store for a serving node: every generation it serves is cached whole in
    /// memory (about the file's size) and warmed in the background (see the module doc).
    pub fn open_serving(dir: impl Into<PathBuf>) -> Result<EmbeddedStore, KvError> {
        Self::open_with(dir.into(), true)
    }

    fn open_with(dir: PathBuf, cache_whole: bool) -> Result<EmbeddedStore, KvError> {
        fs::create_dir_all(&dir).map_err(|source| io_error(&dir, source))?;
        let store = EmbeddedStore {
            dir,
            serving: RwLock::new(None),
            cache_whole,
            warming: Arc::new(AtomicUsize::new(0)),
        };
        store.reload()?;
        Ok(store)
    }

    /// The folder the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn sealed_path(&self, generation: Generation) -> PathBuf {
        self.dir.join(format!("gen-{generation:020}.redb"))
    }

    fn partial_path(&self, generation: Generation) -> PathBuf {
        self.dir.join(format!("gen-{generation:020}.redb.partial"))
    }

    fn read_pointer(&self) -> Result<Option<Generation>, KvError> {
        let path = self.dir.join(CURRENT_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<Generation>().map(Some).map_err(|_| {
                io_error(
                    &path,
                    std::io::Error::other(format!("pointer holds {text:?}, not a number")),
                )
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(io_error(&path, source)),
        }
    }

    /// Loads the generation `CURRENT` names, if it differs from the one being served.
    fn reload(&self) -> Result<bool, KvError> {
        let wanted = self.read_pointer()?;
        let serving = self.serving_generation();
        if wanted == serving.as_ref().map(|open| open.info.generation) {
            return Ok(false);
        }
        let opened = match wanted {
            Some(generation) => Some(Arc::new(self.open_generation(generation)?)),
            None => None,
        };
        if self.cache_whole
            && let Some(open) = &opened
        {
            self.warm(open);
        }
        *self
            .serving
            .write()
            .unwrap_or_else(|poison| poison.into_inner()) = opened;
        Ok(true)
    }

    /// Reads every list of `open` once on a background thread, so its pages are in the cache
    /// before requests ask for them. Stops early when the generation is no longer served.
    fn warm(&self, open: &Arc<OpenGeneration>) {
        let generation: Weak<OpenGeneration> = Arc::downgrade(open);
        let warming = Arc::clone(&self.warming);
        warming.fetch_add(1, Ordering::AcqRel);
        let spawned = std::thread::Builder::new()
            .name("kv-warm".into())
            .spawn(move || {
                let started = Instant::now();
                let mut lists = 0u64;
                let mut bytes = 0u64;
                let outcome = (|| -> Result<(), redb::Error> {
                    let Some(open) = generation.upgrade() else {
                        return Ok(());
                    };
                    for entry in open.lists.range::<&str>(..)? {
                        let (key, value) = entry?;
                        lists += 1;
                        bytes += (key.value().len() + value.value().len()) as u64;
                        // Drop the handle now and then, so a replaced generation closes soon.
                        if lists.is_multiple_of(65_536) && generation.strong_count() <= 1 {
                            return Ok(());
                        }
                    }
                    Ok(())
                })();
                match outcome {
                    Ok(()) => tracing::info!(
                        lists,
                        mib = bytes / (1 << 20),
                        seconds = started.elapsed().as_secs_f64(),
                        "serving generation cached"
                    ),
                    Err(error) => {
                        tracing::warn!(%error, "warming the serving cache failed; reads stay correct, only slower")
                    }
                }
                warming.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(error) = spawned {
            self.warming.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(%error, "cannot start the cache-warming thread");
        }
    }

    fn serving_generation(&self) -> Option<Arc<OpenGeneration>> {
        self.serving
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    fn open_generation(&self, generation: Generation) -> Result<OpenGeneration, KvError> {
        let path = self.sealed_path(generation);
        if !path.is_file() {
            return Err(KvError::NoSuchGeneration(generation));
        }
        let embedded = |source: redb::Error| embedded_error(&path, source);
        let cache_bytes = if self.cache_whole {
            // The whole file and an eighth for redb's bookkeeping of cached pages.
            let len = fs::metadata(&path).map_err(|e| io_error(&path, e))?.len();
            usize::try_from(len + len / 8).unwrap_or(usize::MAX)
        } else {
            DEFAULT_CACHE_BYTES
        };
        let database = Builder::new()
            .set_cache_size(cache_bytes)
            .open_read_only(&path)
            .map_err(|e| embedded(e.into()))?;
        let transaction = database.begin_read().map_err(|e| embedded(e.into()))?;
        let meta = transaction
            .open_table(META)
            .map_err(|e| embedded(e.into()))?;
        let info_bytes = meta
            .get(META_INFO)
            .map_err(|e| embedded(e.into()))?
            .ok_or(KvError::NoSuchGeneration(generation))?;
        let info: GenerationInfo = serde_json::from_slice(info_bytes.value()).map_err(|error| {
            io_error(
                &path,
                std::io::Error::other(format!("generation info is corrupt: {error}")),
            )
        })?;
        let fallback = match meta.get(META_FALLBACK).map_err(|e| embedded(e.into()))? {
            Some(bytes) => decode_items(bytes.value()).map_err(|source| KvError::Corrupt {
                generation,
                key: META_FALLBACK.into(),
                source,
            })?,
            None => Vec::new(),
        };
        let lists = transaction
            .open_table(LISTS)
            .map_err(|e| embedded(e.into()))?;
        let similar = match transaction.open_table(SIMILAR) {
            Ok(table) => Some(table),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(error) => return Err(embedded(error.into())),
        };
        Ok(OpenGeneration {
            info,
            lists,
            similar,
            fallback,
            _database: database,
        })
    }

    /// Reads and decodes `key` from one table of an open generation.
    fn lookup(
        &self,
        open: &OpenGeneration,
        table: Option<&ReadOnlyTable<&'static str, &'static [u8]>>,
        key: &str,
    ) -> Result<Option<StoredList>, KvError> {
        let Some(table) = table else { return Ok(None) };
        let generation = open.info.generation;
        let Some(value) = table
            .get(key)
            .map_err(|e| embedded_error(&self.sealed_path(generation), e.into()))?
        else {
            return Ok(None);
        };
        let items = decode_items(value.value()).map_err(|source| KvError::Corrupt {
            generation,
            key: key.to_owned(),
            source,
        })?;
        Ok(Some(StoredList { generation, items }))
    }

    fn sealed_generations(&self) -> Result<Vec<Generation>, KvError> {
        Ok(self
            .scan()?
            .into_iter()
            .filter(|(_, sealed)| *sealed)
            .map(|(g, _)| g)
            .collect())
    }

    /// Every generation file in the folder, sorted: (number, sealed?).
    fn scan(&self) -> Result<Vec<(Generation, bool)>, KvError> {
        let mut found = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(|source| io_error(&self.dir, source))?;
        for entry in entries {
            let entry = entry.map_err(|source| io_error(&self.dir, source))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(rest) = name.strip_prefix("gen-") else {
                continue;
            };
            if let Some(number) = rest.strip_suffix(".redb") {
                if let Ok(generation) = number.parse() {
                    found.push((generation, true));
                }
            } else if let Some(number) = rest.strip_suffix(".redb.partial")
                && let Ok(generation) = number.parse()
            {
                found.push((generation, false));
            }
        }
        found.sort_unstable();
        Ok(found)
    }

    fn lock(&self) -> Result<File, KvError> {
        let path = self.dir.join(LOCK_FILE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| io_error(&path, source))?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(fs::TryLockError::WouldBlock) => Err(KvError::Locked {
                path: path.display().to_string(),
            }),
            Err(fs::TryLockError::Error(source)) => Err(io_error(&path, source)),
        }
    }

    fn write_pointer(&self, generation: Generation) -> Result<(), KvError> {
        let temp = self.dir.join(format!("{CURRENT_FILE}.tmp"));
        let path = self.dir.join(CURRENT_FILE);
        let mut file = File::create(&temp).map_err(|source| io_error(&temp, source))?;
        file.write_all(format!("{generation}\n").as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| io_error(&temp, source))?;
        fs::rename(&temp, &path).map_err(|source| io_error(&path, source))?;
        sync_dir(&self.dir)
    }
}

#[async_trait]
impl RecStore for EmbeddedStore {
    async fn create_generation(&self, run_id: &str) -> Result<Box<dyn GenerationWriter>, KvError> {
        let lock = self.lock()?;
        let generation = self.scan()?.last().map_or(1, |(last, _)| last + 1);
        let partial = self.partial_path(generation);
        let database =
            Database::create(&partial).map_err(|e| embedded_error(&partial, e.into()))?;
        Ok(Box::new(EmbeddedWriter {
            generation,
            run_id: run_id.to_owned(),
            partial,
            sealed: self.sealed_path(generation),
            dir: self.dir.clone(),
            database: Arc::new(database),
            _lock: lock,
        }))
    }

    async fn generations(&self) -> Result<Vec<GenerationInfo>, KvError> {
        let serving = self.serving_generation();
        let mut infos = Vec::new();
        for generation in self.sealed_generations()? {
            match &serving {
                Some(open) if open.info.generation == generation => infos.push(open.info.clone()),
                _ => infos.push(self.open_generation(generation)?.info),
            }
        }
        Ok(infos)
    }

    async fn current(&self) -> Result<Option<GenerationInfo>, KvError> {
        Ok(self.serving_generation().map(|open| open.info.clone()))
    }

    async fn activate(&self, generation: Generation) -> Result<(), KvError> {
        // Open it first: a generation that cannot be read must never become current.
        self.open_generation(generation)?;
        self.write_pointer(generation)?;
        self.reload()?;
        Ok(())
    }

    async fn prune(&self, keep: usize) -> Result<Vec<Generation>, KvError> {
        let _lock = self.lock()?;
        let current = self.read_pointer()?;
        let all = self.scan()?;
        let sealed: Vec<Generation> = all.iter().filter(|(_, s)| *s).map(|(g, _)| *g).collect();
        let kept: Vec<Generation> = sealed.iter().rev().take(keep).copied().collect();
        let mut deleted = Vec::new();
        for (generation, is_sealed) in all {
            let path = if is_sealed {
                if Some(generation) == current || kept.contains(&generation) {
                    continue;
                }
                self.sealed_path(generation)
            } else {
                self.partial_path(generation)
            };
            fs::remove_file(&path).map_err(|source| io_error(&path, source))?;
            deleted.push(generation);
        }
        sync_dir(&self.dir)?;
        Ok(deleted)
    }

    async fn refresh(&self) -> Result<bool, KvError> {
        self.reload()
    }

    async fn user_list(&self, user_id: &str) -> Result<Option<StoredList>, KvError> {
        let Some(open) = self.serving_generation() else {
            return Ok(None);
        };
        self.lookup(&open, Some(&open.lists), user_id)
    }

    async fn similar_list(&self, article_id: &str) -> Result<Option<StoredList>, KvError> {
        let Some(open) = self.serving_generation() else {
            return Ok(None);
        };
        self.lookup(&open, open.similar.as_ref(), article_id)
    }

    fn warming(&self) -> bool {
        self.warming.load(Ordering::Acquire) > 0
    }

    async fn fallback_list(&self) -> Result<Option<StoredList>, KvError> {
        Ok(self.serving_generation().map(|open| StoredList {
            generation: open.info.generation,
            items: open.fallback.clone(),
        }))
    }
}

/// Writes one generation file; holds the store's `LOCK` until finished or dropped.
struct EmbeddedWriter {
    generation: Generation,
    run_id: String,
    partial: PathBuf,
    sealed: PathBuf,
    dir: PathBuf,
    database: Arc<Database>,
    _lock: File,
}

impl std::fmt::Debug for EmbeddedWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedWriter")
            .field("partial", &self.partial)
            .finish_non_exhaustive()
    }
}

impl EmbeddedWriter {
    /// Encodes and inserts keyed lists into `table`.
    async fn put_lists(
        &self,
        table: TableDefinition<'static, &'static str, &'static [u8]>,
        entries: Vec<(String, Vec<RecItem>)>,
    ) -> Result<(), KvError> {
        let mut encoded = Vec::with_capacity(entries.len());
        for (key, items) in entries {
            let value = encode_items(&items).map_err(|source| KvError::Corrupt {
                generation: self.generation,
                key: key.clone(),
                source,
            })?;
            encoded.push((key, value));
        }
        // Durability::None: the sealing commit in `finish` is Immediate and persists these too.
        self.write(Durability::None, move |transaction| {
            let mut table = transaction.open_table(table)?;
            for (key, value) in &encoded {
                table.insert(key.as_str(), value.as_slice())?;
            }
            Ok(())
        })
        .await
    }

    /// Runs one write transaction off the async executor.
    async fn write(
        &self,
        durability: Durability,
        work: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error> + Send + 'static,
    ) -> Result<(), KvError> {
        let database = Arc::clone(&self.database);
        let path = self.partial.clone();
        tokio::task::spawn_blocking(move || {
            let run = || -> Result<(), redb::Error> {
                let mut transaction = database.begin_write()?;
                transaction.set_durability(durability)?;
                work(&transaction)?;
                transaction.commit()?;
                Ok(())
            };
            run().map_err(|source| embedded_error(&path, source))
        })
        .await
        .map_err(|join| io_error(&self.partial, std::io::Error::other(join)))?
    }
}

#[async_trait]
impl GenerationWriter for EmbeddedWriter {
    fn generation(&self) -> Generation {
        self.generation
    }

    async fn put_users(&mut self, lists: Vec<UserList>) -> Result<(), KvError> {
        let entries = lists
            .into_iter()
            .map(|list| (list.user_id, list.items))
            .collect();
        self.put_lists(LISTS, entries).await
    }

    async fn put_similar(&mut self, lists: Vec<SimilarList>) -> Result<(), KvError> {
        let entries = lists
            .into_iter()
            .map(|list| (list.article_id, list.items))
            .collect();
        self.put_lists(SIMILAR, entries).await
    }

    async fn put_fallback(&mut self, items: Vec<RecItem>) -> Result<(), KvError> {
        let value = encode_items(&items).map_err(|source| KvError::Corrupt {
            generation: self.generation,
            key: META_FALLBACK.into(),
            source,
        })?;
        self.write(Durability::None, move |transaction| {
            transaction
                .open_table(META)?
                .insert(META_FALLBACK, value.as_slice())?;
            Ok(())
        })
        .await
    }

    async fn finish(self: Box<Self>, expected_users: u64) -> Result<GenerationInfo, KvError> {
        let stored = {
            let transaction = self
                .database
                .begin_read()
                .map_err(|e| embedded_error(&self.partial, e.into()))?;
            match transaction.open_table(LISTS) {
                Ok(table) => table
                    .len()
                    .map_err(|e| embedded_error(&self.partial, e.into()))?,
                Err(redb::TableError::TableDoesNotExist(_)) => 0,
                Err(error) => return Err(embedded_error(&self.partial, error.into())),
            }
        };
        if stored != expected_users {
            return Err(KvError::CountMismatch {
                generation: self.generation,
                stored,
                expected: expected_users,
            });
        }
        let info = GenerationInfo {
            generation: self.generation,
            run_id: self.run_id.clone(),
            users: stored,
            sealed_at_ms: crate::now_ms(),
        };
        let info_json = serde_json::to_vec(&info)
            .map_err(|error| io_error(&self.partial, std::io::Error::other(error)))?;
        self.write(Durability::Immediate, move |transaction| {
            transaction.open_table(LISTS)?;
            transaction
                .open_table(META)?
                .insert(META_INFO, info_json.as_slice())?;
            Ok(())
        })
        .await?;
        let EmbeddedWriter {
            partial,
            sealed,
            dir,
            database,
            ..
        } = *self;
        drop(database);
        fs::rename(&partial, &sealed).map_err(|source| io_error(&sealed, source))?;
        sync_dir(&dir)?;
        Ok(info)
    }
}

fn sync_dir(dir: &Path) -> Result<(), KvError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|source| io_error(dir, source))
}

fn io_error(path: &Path, source: std::io::Error) -> KvError {
    KvError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn embedded_error(path: &Path, source: redb::Error) -> KvError {
    KvError::Embedded {
        path: path.display().to_string(),
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;

    #[tokio::test]
    async fn conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        conformance::run_all(|case| EmbeddedStore::open(dir.path().join(case)).unwrap()).await;
    }

    #[tokio::test]
    async fn the_conformance_suite_holds_for_a_serving_handle_too() {
        let dir = tempfile::tempdir().unwrap();
        conformance::run_all(|case| EmbeddedStore::open_serving(dir.path().join(case)).unwrap())
            .await;
    }

    #[tokio::test]
    async fn a_serving_handle_warms_each_generation_it_switches_to() {
        let dir = tempfile::tempdir().unwrap();
        let publisher = EmbeddedStore::open(dir.path()).unwrap();
        let users: Vec<(String, Vec<String>)> = (0..20_000)
            .map(|u| {
                (
                    format!("u{u}"),
                    vec![format!("a{}", u % 97), format!("b{u}")],
                )
            })
            .collect();
        let borrowed: Vec<Vec<&str>> = users
            .iter()
            .map(|(_, items)| items.iter().map(String::as_str).collect())
            .collect();
        let listed: Vec<(&str, &[&str])> = users
            .iter()
            .zip(&borrowed)
            .map(|((user, _), items)| (user.as_str(), items.as_slice()))
            .collect();
        conformance::publish(&publisher, "run-a", &listed).await;
        let server = EmbeddedStore::open_serving(dir.path()).unwrap();
        assert!(!publisher.warming(), "a publishing handle never warms");
        let wait_warm = || async {
            let started = std::time::Instant::now();
            while server.warming() {
                assert!(started.elapsed() < std::time::Duration::from_secs(20));
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        };
        wait_warm().await;
        let list = server.user_list("u12345").await.unwrap().unwrap();
        let ids: Vec<&str> = list.items.iter().map(|i| i.article_id.as_str()).collect();
        assert_eq!(ids, [format!("a{}", 12345 % 97).as_str(), "b12345"]);
        // A switch in the middle of warming: the new generation is served at once and warmed.
        let generation = conformance::publish(&publisher, "run-b", &[("u1", &["z1"])]).await;
        assert!(server.refresh().await.unwrap());
        let list = server.user_list("u1").await.unwrap().unwrap();
        assert_eq!(
            (list.generation, list.items[0].article_id.as_str()),
            (generation, "z1")
        );
        assert_eq!(server.user_list("u12345").await.unwrap(), None);
        wait_warm().await;
    }

    #[tokio::test]
    async fn a_second_handle_sees_a_new_generation_after_refresh() {
        // Models `newsrec publish` in one process while `newsrec up` serves in another.
        let dir = tempfile::tempdir().unwrap();
        let publisher = EmbeddedStore::open(dir.path()).unwrap();
        let server = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(server.user_list("u1").await.unwrap(), None);
        let generation = conformance::publish(&publisher, "run-a", &[("u1", &["a1"])]).await;
        assert_eq!(
            server.user_list("u1").await.unwrap(),
            None,
            "no refresh yet"
        );
        assert!(server.refresh().await.unwrap());
        let list = server.user_list("u1").await.unwrap().unwrap();
        assert_eq!(list.generation, generation);
        assert!(!server.refresh().await.unwrap());
    }

    #[tokio::test]
    async fn a_publish_that_dies_midway_leaves_the_old_generation_served() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let first = conformance::publish(&store, "run-a", &[("u1", &["a1"])]).await;
        {
            let mut writer = store.create_generation("run-b").await.unwrap();
            writer
                .put_users(vec![UserList {
                    user_id: "u1".into(),
                    items: vec![],
                }])
                .await
                .unwrap();
            // Dropped without finish: the process "died" here.
        }
        let reopened = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(reopened.current().await.unwrap().unwrap().generation, first);
        assert_eq!(reopened.generations().await.unwrap().len(), 1);
        let second = conformance::publish(&reopened, "run-b", &[("u1", &["b1"])]).await;
        assert!(second > first);
        assert_eq!(
            reopened.prune(5).await.unwrap().len(),
            1,
            "the partial file is cleaned up"
        );
    }

    #[tokio::test]
    async fn a_second_publisher_is_refused_while_one_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let _writer = store.create_generation("run-a").await.unwrap();
        let error = store.create_generation("run-b").await.unwrap_err();
        assert!(matches!(error, KvError::Locked { .. }), "{error}");
    }
}
