//! The Redis backend: generations as Redis keys under one prefix, and a `current` pointer key.
//!
//! Owns every key under `<prefix>:` in the database the store uri names (`?prefix=NAME`, default
//! `newsrec`; the prefix is limited to `[A-Za-z0-9_.-]` so it never needs escaping in a `SCAN
//! MATCH` pattern). Layout (also in `docs/kv-layout.md`):
//!
//! ```text
//! <p>:g:<gen>:lists     hash: user id (binary-safe field, never interpreted) → list codec bytes
//! <p>:g:<gen>:similar   hash: article id (binary-safe field) → similar-articles list codec bytes
//! <p>:g:<gen>:fallback  string: the fallback list, list codec bytes
//! <p>:g:<gen>:info      string: JSON GenerationInfo, written only when the generation is sealed
//! <p>:generations       sorted set: sealed generation numbers (score = number)
//! <p>:next              counter: INCR hands out generation numbers
//! <p>:current           string: the current generation number (the pointer)
//! <p>:lock              string: publisher lock, `SET NX PX` with a random token
//! ```
//!
//! Why one hash per generation rather than one key per user: `HLEN` is the exact number of
//! distinct users stored (a user written twice is one field), so `finish` verifies the count on
//! the server with no client-side bookkeeping, and `prune` deletes a generation by `UNLINK`ing
//! four keys (freed off the main thread) instead of scanning millions of user keys. Similar
//! lists live in their own hash for the same reasons, and so that they never count as users.
//!
//! Sealing (`HLEN` check, `info`, `ZADD generations`), activation (`ZSCORE` check, `SET
//! current`) and prune's unregistering (`ZREM` unless current) are small Lua scripts, so each is
//! atomic: a reader sees the old generation or the new one, never an unsealed one, and a
//! generation being pruned cannot become current. Serving handles cache the current generation
//! and re-read the pointer on [`RecStore::refresh`], so `user_list` and `similar_list` cost one
//! round trip.

use std::{
    collections::{BTreeSet, HashSet},
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use redis::{
    Client, RedisError,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

use newsrec_kv::{
    Generation, GenerationInfo, GenerationWriter, KvError, RecItem, RecStore, SimilarList,
    StoredList, UserList, decode_items, encode_items,
};

const BACKEND: &str = "redis";
const DEFAULT_PREFIX: &str = "newsrec";
const MAX_PREFIX_LEN: usize = 64;
/// A publisher that dies holds the lock at most this long.
const LOCK_TTL: Duration = Duration::from_secs(30);
/// A live publisher extends its lock this often (three chances before it expires).
const LOCK_REFRESH_EVERY: Duration = Duration::from_secs(10);
/// Lists per `HSET` inside one `put_users`/`put_similar` pipeline: keeps single commands small
/// so Redis interleaves readers between them.
const HSET_CHUNK: usize = 512;
const SCAN_COUNT: usize = 1000;
const UNLINK_BATCH: usize = 512;
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// Long enough for a bulk pipeline of a few thousand lists; serving bounds its own latency.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

// Scripts are sent with EVAL (a few hundred bytes each): no SCRIPT LOAD state to lose when the
// connection manager reconnects or a replica is promoted.

/// KEYS: next, generations. Returns a number above every sealed generation, even if `next` was
/// lost or restored from an older backup.
const NEXT_GENERATION: &str = r"
local n = redis.call('INCR', KEYS[1])
local newest = redis.call('ZREVRANGE', KEYS[2], 0, 0)
if newest[1] and n <= tonumber(newest[1]) then
  n = tonumber(newest[1]) + 1
  redis.call('SET', KEYS[1], n)
end
return n
";

/// KEYS: lock. ARGV: token, ttl ms. 1 when extended, 0 when the lock is no longer ours.
const EXTEND_LOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// KEYS: lock. ARGV: token. Deletes the lock only if it is still ours.
const RELEASE_LOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// KEYS: lock, lists, info, generations. ARGV: token, expected users, info JSON, generation.
/// Returns {1, stored} when sealed, {0, stored} on a count mismatch, {0, -1} when the lock is
/// lost (then a prune may have deleted part of this generation, so it must not be sealed).
const SEAL: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {0, -1}
end
local stored = redis.call('HLEN', KEYS[2])
if stored ~= tonumber(ARGV[2]) then
  return {0, stored}
end
redis.call('SET', KEYS[3], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[4])
return {1, stored}
";

/// KEYS: generations, current. ARGV: generation. 1 when switched, 0 when not sealed.
const ACTIVATE: &str = r"
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('SET', KEYS[2], ARGV[1])
  return 1
end
return 0
";

/// KEYS: generations, current. ARGV: generations to drop. Unseals each one that is not current
/// (so it can no longer be activated) and returns those.
const UNREGISTER: &str = r"
local current = redis.call('GET', KEYS[2])
local removed = {}
for _, generation in ipairs(ARGV) do
  if generation ~= current and redis.call('ZREM', KEYS[1], generation) == 1 then
    table.insert(removed, tonumber(generation))
  end
end
return removed
";

/// The Redis store under one key prefix.
pub struct RedisStore {
    connection: ConnectionManager,
    keys: Keys,
    serving: RwLock<Option<Arc<Serving>>>,
}

/// What a handle serves: the current generation's info and fallback, cached in memory.
#[derive(Debug)]
struct Serving {
    info: GenerationInfo,
    fallback: Vec<RecItem>,
}

impl std::fmt::Debug for RedisStore {
    // Not the uri: it may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.keys.prefix)
            .field(
                "serving",
                &self.serving().map(|serving| serving.info.generation),
            )
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to `redis://[user:password@]host[:port][/db][?prefix=NAME]` (also `rediss://`
    /// when a TLS feature is enabled, and `redis+unix:///path?db=N`) and loads the current
    /// generation.
    pub async fn connect(uri: &str) -> Result<RedisStore, KvError> {
        let (client, prefix) = parse_uri(uri)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|error| redis_error("connecting", error))?;
        let store = RedisStore {
            connection,
            keys: Keys { prefix },
            serving: RwLock::new(None),
        };
        store.reload().await?;
        Ok(store)
    }

    /// The key prefix (without the trailing `:`).
    pub fn prefix(&self) -> &str {
        &self.keys.prefix
    }

    fn connection(&self) -> ConnectionManager {
        // A clone shares the multiplexed connection; commands from many tasks are pipelined.
        self.connection.clone()
    }

    fn serving(&self) -> Option<Arc<Serving>> {
        self.serving
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    fn set_serving(&self, serving: Option<Arc<Serving>>) {
        *self
            .serving
            .write()
            .unwrap_or_else(|poison| poison.into_inner()) = serving;
    }

    async fn read_pointer(&self) -> Result<Option<Generation>, KvError> {
        redis::cmd("GET")
            .arg(self.keys.current())
            .query_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("reading the current generation pointer", error))
    }

    /// Loads the generation the pointer names, if it differs from the one being served.
    async fn reload(&self) -> Result<bool, KvError> {
        let wanted = self.read_pointer().await?;
        if wanted == self.serving().map(|serving| serving.info.generation) {
            return Ok(false);
        }
        let loaded = match wanted {
            Some(generation) => Some(Arc::new(self.load(generation).await?)),
            None => None,
        };
        self.set_serving(loaded);
        Ok(true)
    }

    /// Reads a sealed generation's info and fallback (one round trip).
    async fn load(&self, generation: Generation) -> Result<Serving, KvError> {
        let info_key = self.keys.info(generation);
        let (info, fallback): (Option<Vec<u8>>, Option<Vec<u8>>) = redis::pipe()
            .cmd("GET")
            .arg(&info_key)
            .cmd("GET")
            .arg(self.keys.fallback(generation))
            .query_async(&mut self.connection())
            .await
            .map_err(|error| redis_error(&format!("loading generation {generation}"), error))?;
        let info = parse_info(
            &info_key,
            &info.ok_or(KvError::NoSuchGeneration(generation))?,
        )?;
        let fallback = match fallback {
            Some(bytes) => decode_items(&bytes).map_err(|source| KvError::Corrupt {
                generation,
                key: "fallback".into(),
                source,
            })?,
            None => Vec::new(),
        };
        Ok(Serving { info, fallback })
    }

    async fn sealed_generations(&self) -> Result<Vec<Generation>, KvError> {
        redis::cmd("ZRANGE")
            .arg(self.keys.generations())
            .arg(0)
            .arg(-1)
            .query_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("listing sealed generations", error))
    }

    async fn prune_locked(&self, keep: usize) -> Result<Vec<Generation>, KvError> {
        let sealed = self.sealed_generations().await?;
        let newest: HashSet<Generation> = sealed.iter().rev().take(keep).copied().collect();
        let candidates: Vec<Generation> = sealed
            .iter()
            .filter(|generation| !newest.contains(generation))
            .copied()
            .collect();
        let mut deleted = BTreeSet::new();
        if !candidates.is_empty() {
            // Unseal first, atomically with the current check: from here on none of them can
            // be activated, so deleting their keys below cannot pull a generation from under
            // the pointer.
            let removed: Vec<Generation> =
                script(UNREGISTER, &[self.keys.generations(), self.keys.current()])
                    .arg(&candidates)
                    .query_async(&mut self.connection())
                    .await
                    .map_err(|error| redis_error("unregistering pruned generations", error))?;
            deleted.extend(removed);
        }
        // Every generation key that is not sealed now is pruned or a leftover of a publish
        // that died: no publish is writing, since we hold the lock.
        let still_sealed: HashSet<Generation> =
            self.sealed_generations().await?.into_iter().collect();
        let pattern = self.keys.generation_pattern();
        let mut cursor: u64 = 0;
        let mut doomed: Vec<Vec<u8>> = Vec::new();
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut self.connection())
                .await
                .map_err(|error| redis_error("scanning generation keys", error))?;
            for key in keys {
                let Some(generation) = self.keys.generation_of(&key) else {
                    continue;
                };
                if !still_sealed.contains(&generation) {
                    deleted.insert(generation);
                    doomed.push(key);
                }
            }
            if doomed.len() >= UNLINK_BATCH {
                self.unlink(std::mem::take(&mut doomed)).await?;
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        if !doomed.is_empty() {
            self.unlink(doomed).await?;
        }
        Ok(deleted.into_iter().collect())
    }

    /// Reads `field` of the current generation's hash `hash_of(generation)` (user lists or
    /// similar lists) in one round trip.
    async fn hash_lookup(
        &self,
        hash_of: fn(&Keys, Generation) -> String,
        field: &str,
        what: &str,
    ) -> Result<Option<StoredList>, KvError> {
        // Two attempts: the second only when this handle's generation was pruned under it.
        for _ in 0..2 {
            let Some(serving) = self.serving() else {
                return Ok(None);
            };
            let generation = serving.info.generation;
            // EXISTS rides in the same round trip: it tells "no such list" from "our
            // generation was pruned before this process refreshed".
            let (value, alive): (Option<Vec<u8>>, bool) = redis::pipe()
                .cmd("HGET")
                .arg(hash_of(&self.keys, generation))
                .arg(field)
                .cmd("EXISTS")
                .arg(self.keys.info(generation))
                .query_async(&mut self.connection())
                .await
                .map_err(|error| redis_error(&format!("reading a {what}"), error))?;
            if let Some(bytes) = value {
                let items = decode_items(&bytes).map_err(|source| KvError::Corrupt {
                    generation,
                    key: field.to_owned(),
                    source,
                })?;
                return Ok(Some(StoredList { generation, items }));
            }
            if alive || !self.reload().await? {
                return Ok(None);
            }
        }
        Ok(None)
    }

    async fn unlink(&self, keys: Vec<Vec<u8>>) -> Result<(), KvError> {
        // UNLINK frees large hashes on a background thread instead of blocking readers.
        redis::cmd("UNLINK")
            .arg(&keys)
            .query_async::<()>(&mut self.connection())
            .await
            .map_err(|error| redis_error(&format!("deleting {} keys", keys.len()), error))
    }
}

#[async_trait]
impl RecStore for RedisStore {
    async fn create_generation(&self, run_id: &str) -> Result<Box<dyn GenerationWriter>, KvError> {
        let lock = PublishLock::acquire(&self.connection, self.keys.lock()).await?;
        let numbered = script(
            NEXT_GENERATION,
            &[self.keys.next(), self.keys.generations()],
        )
        .query_async::<Generation>(&mut self.connection())
        .await
        .map_err(|error| redis_error("numbering a new generation", error));
        let generation = match numbered {
            Ok(generation) => generation,
            Err(error) => {
                lock.release().await;
                return Err(error);
            }
        };
        Ok(Box::new(RedisWriter {
            connection: self.connection(),
            keys: self.keys.clone(),
            generation,
            run_id: run_id.to_owned(),
            lock,
        }))
    }

    async fn generations(&self) -> Result<Vec<GenerationInfo>, KvError> {
        let numbers = self.sealed_generations().await?;
        if numbers.is_empty() {
            return Ok(Vec::new());
        }
        let info_keys: Vec<String> = numbers.iter().map(|g| self.keys.info(*g)).collect();
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(&info_keys)
            .query_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("reading generation infos", error))?;
        let mut infos = Vec::with_capacity(values.len());
        for (key, value) in info_keys.iter().zip(values) {
            // None: pruned between the two reads.
            if let Some(bytes) = value {
                infos.push(parse_info(key, &bytes)?);
            }
        }
        Ok(infos)
    }

    async fn current(&self) -> Result<Option<GenerationInfo>, KvError> {
        Ok(self.serving().map(|serving| serving.info.clone()))
    }

    async fn activate(&self, generation: Generation) -> Result<(), KvError> {
        // Load first: a generation that cannot be read must never become current.
        let loaded = self.load(generation).await?;
        let switched: i64 = script(ACTIVATE, &[self.keys.generations(), self.keys.current()])
            .arg(generation)
            .query_async(&mut self.connection())
            .await
            .map_err(|error| redis_error(&format!("activating generation {generation}"), error))?;
        if switched != 1 {
            return Err(KvError::NoSuchGeneration(generation));
        }
        self.set_serving(Some(Arc::new(loaded)));
        Ok(())
    }

    async fn prune(&self, keep: usize) -> Result<Vec<Generation>, KvError> {
        let lock = PublishLock::acquire(&self.connection, self.keys.lock()).await?;
        let result = self.prune_locked(keep).await;
        lock.release().await;
        result
    }

    async fn refresh(&self) -> Result<bool, KvError> {
        self.reload().await
    }

    async fn user_list(&self, user_id: &str) -> Result<Option<StoredList>, KvError> {
        self.hash_lookup(Keys::lists, user_id, "user list").await
    }

    async fn similar_list(&self, article_id: &str) -> Result<Option<StoredList>, KvError> {
        self.hash_lookup(Keys::similar, article_id, "similar list")
            .await
    }

    async fn fallback_list(&self) -> Result<Option<StoredList>, KvError> {
        Ok(self.serving().map(|serving| StoredList {
            generation: serving.info.generation,
            items: serving.fallback.clone(),
        }))
    }
}

/// Writes one generation; holds the store's publish lock until finished or dropped.
struct RedisWriter {
    connection: ConnectionManager,
    keys: Keys,
    generation: Generation,
    run_id: String,
    lock: PublishLock,
}

impl std::fmt::Debug for RedisWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisWriter")
            .field("prefix", &self.keys.prefix)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl RedisWriter {
    /// Writes `entries` (field → list) into the hash `key` in one pipeline of `HSET`s.
    async fn write_hash(
        &mut self,
        key: String,
        entries: &[(&str, &[RecItem])],
        what: &str,
    ) -> Result<(), KvError> {
        self.lock.ensure_held(self.generation)?;
        if entries.is_empty() {
            return Ok(());
        }
        let mut pipeline = redis::pipe();
        for chunk in entries.chunks(HSET_CHUNK) {
            pipeline.cmd("HSET").arg(&key);
            for (field, items) in chunk {
                let value = encode_items(items).map_err(|source| KvError::Corrupt {
                    generation: self.generation,
                    key: (*field).to_owned(),
                    source,
                })?;
                // Within one HSET a repeated field keeps its last value, as across batches.
                pipeline.arg(*field).arg(value);
            }
            pipeline.ignore();
        }
        // Not MULTI: a batch that fails halfway can be re-sent; HSET is idempotent and HLEN
        // in `finish` counts what is actually stored.
        pipeline
            .query_async::<()>(&mut self.connection)
            .await
            .map_err(|error| {
                redis_error(
                    &format!(
                        "writing {} {what} to generation {}",
                        entries.len(),
                        self.generation
                    ),
                    error,
                )
            })
    }
}

#[async_trait]
impl GenerationWriter for RedisWriter {
    fn generation(&self) -> Generation {
        self.generation
    }

    async fn put_users(&mut self, lists: Vec<UserList>) -> Result<(), KvError> {
        let entries: Vec<(&str, &[RecItem])> = lists
            .iter()
            .map(|list| (list.user_id.as_str(), list.items.as_slice()))
            .collect();
        let key = self.keys.lists(self.generation);
        self.write_hash(key, &entries, "user lists").await
    }

    async fn put_similar(&mut self, lists: Vec<SimilarList>) -> Result<(), KvError> {
        let entries: Vec<(&str, &[RecItem])> = lists
            .iter()
            .map(|list| (list.article_id.as_str(), list.items.as_slice()))
            .collect();
        // Its own hash: similar lists never count toward the users `finish` checks.
        let key = self.keys.similar(self.generation);
        self.write_hash(key, &entries, "similar lists").await
    }

    async fn put_fallback(&mut self, items: Vec<RecItem>) -> Result<(), KvError> {
        self.lock.ensure_held(self.generation)?;
        let value = encode_items(&items).map_err(|source| KvError::Corrupt {
            generation: self.generation,
            key: "fallback".into(),
            source,
        })?;
        redis::cmd("SET")
            .arg(self.keys.fallback(self.generation))
            .arg(value)
            .query_async::<()>(&mut self.connection)
            .await
            .map_err(|error| {
                redis_error(
                    &format!("writing the fallback of generation {}", self.generation),
                    error,
                )
            })
    }

    async fn finish(self: Box<Self>, expected_users: u64) -> Result<GenerationInfo, KvError> {
        let RedisWriter {
            mut connection,
            keys,
            generation,
            run_id,
            lock,
        } = *self;
        let result = seal(
            &mut connection,
            &keys,
            generation,
            run_id,
            &lock,
            expected_users,
        )
        .await;
        lock.release().await;
        result
    }
}

async fn seal(
    connection: &mut ConnectionManager,
    keys: &Keys,
    generation: Generation,
    run_id: String,
    lock: &PublishLock,
    expected_users: u64,
) -> Result<GenerationInfo, KvError> {
    lock.ensure_held(generation)?;
    let info = GenerationInfo {
        generation,
        run_id,
        users: expected_users,
        sealed_at_ms: newsrec_kv::now_ms(),
    };
    let info_json = serde_json::to_vec(&info).map_err(|error| KvError::Backend {
        backend: BACKEND,
        reason: format!("encoding the info of generation {generation} failed: {error}"),
    })?;
    let (sealed, stored): (i64, i64) = script(
        SEAL,
        &[
            lock.key.clone(),
            keys.lists(generation),
            keys.info(generation),
            keys.generations(),
        ],
    )
    .arg(&lock.token)
    .arg(expected_users)
    .arg(info_json)
    .arg(generation)
    .query_async(connection)
    .await
    .map_err(|error| redis_error(&format!("sealing generation {generation}"), error))?;
    match (sealed, u64::try_from(stored)) {
        (1, _) => Ok(info),
        (_, Ok(stored)) => Err(KvError::CountMismatch {
            generation,
            stored,
            expected: expected_users,
        }),
        (_, Err(_)) => Err(lock_lost(&lock.key, generation)),
    }
}

/// The store-wide publish lock (`SET NX PX`), extended in the background while held.
///
/// One publish or prune at a time: a prune must not delete the generation being written. A
/// publisher that dies frees the lock after [`LOCK_TTL`]; one that drops its writer frees it at
/// once.
struct PublishLock {
    connection: ConnectionManager,
    key: String,
    token: String,
    lost: Arc<AtomicBool>,
    keeper: tokio::task::JoinHandle<()>,
    held: bool,
}

impl PublishLock {
    async fn acquire(connection: &ConnectionManager, key: String) -> Result<PublishLock, KvError> {
        let token = unique_token();
        let acquired: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(duration_ms(LOCK_TTL))
            .query_async(&mut connection.clone())
            .await
            .map_err(|error| redis_error("taking the publish lock", error))?;
        if acquired.is_none() {
            return Err(KvError::Locked { path: key });
        }
        let lost = Arc::new(AtomicBool::new(false));
        let keeper = tokio::spawn(keep_lock(
            connection.clone(),
            key.clone(),
            token.clone(),
            Arc::clone(&lost),
        ));
        Ok(PublishLock {
            connection: connection.clone(),
            key,
            token,
            lost,
            keeper,
            held: true,
        })
    }

    fn ensure_held(&self, generation: Generation) -> Result<(), KvError> {
        if self.lost.load(Ordering::Acquire) {
            return Err(lock_lost(&self.key, generation));
        }
        Ok(())
    }

    fn release_command(&self) -> redis::Cmd {
        let mut command = script(RELEASE_LOCK, std::slice::from_ref(&self.key));
        command.arg(&self.token);
        command
    }

    async fn release(mut self) {
        self.keeper.abort();
        self.held = false;
        if let Err(error) = self
            .release_command()
            .query_async::<()>(&mut self.connection)
            .await
        {
            // It expires by itself after LOCK_TTL.
            tracing::warn!(lock = %self.key, %error, "could not release the publish lock");
        }
    }
}

impl Drop for PublishLock {
    fn drop(&mut self) {
        self.keeper.abort();
        if !self.held {
            return;
        }
        // A writer dropped without `finish` (a failed publish): free the lock now rather than
        // after its TTL. Drop cannot await, so the release runs as its own task.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let command = self.release_command();
            let mut connection = self.connection.clone();
            runtime.spawn(async move {
                let _ = command.query_async::<()>(&mut connection).await;
            });
        }
    }
}

async fn keep_lock(
    mut connection: ConnectionManager,
    key: String,
    token: String,
    lost: Arc<AtomicBool>,
) {
    loop {
        tokio::time::sleep(LOCK_REFRESH_EVERY).await;
        let mut command = script(EXTEND_LOCK, std::slice::from_ref(&key));
        command.arg(&token).arg(duration_ms(LOCK_TTL));
        match command.query_async::<i64>(&mut connection).await {
            Ok(1) => {}
            Ok(_) => {
                lost.store(true, Ordering::Release);
                tracing::error!(
                    lock = %key,
                    "publish lock expired or was taken; this publish will fail"
                );
                return;
            }
            Err(error) => {
                tracing::warn!(lock = %key, %error, "could not extend the publish lock; retrying");
            }
        }
    }
}

/// Key names under one prefix.
#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn next(&self) -> String {
        format!("{}:next", self.prefix)
    }

    fn lock(&self) -> String {
        format!("{}:lock", self.prefix)
    }

    fn current(&self) -> String {
        format!("{}:current", self.prefix)
    }

    fn generations(&self) -> String {
        format!("{}:generations", self.prefix)
    }

    fn lists(&self, generation: Generation) -> String {
        format!("{}:g:{generation}:lists", self.prefix)
    }

    fn similar(&self, generation: Generation) -> String {
        format!("{}:g:{generation}:similar", self.prefix)
    }

    fn fallback(&self, generation: Generation) -> String {
        format!("{}:g:{generation}:fallback", self.prefix)
    }

    fn info(&self, generation: Generation) -> String {
        format!("{}:g:{generation}:info", self.prefix)
    }

    /// Matches every generation-scoped key; the prefix holds no glob metacharacters.
    fn generation_pattern(&self) -> String {
        format!("{}:g:*", self.prefix)
    }

    /// The generation a key from [`Keys::generation_pattern`] belongs to.
    fn generation_of(&self, key: &[u8]) -> Option<Generation> {
        let rest = key
            .strip_prefix(self.prefix.as_bytes())?
            .strip_prefix(b":g:")?;
        let end = rest.iter().position(|byte| *byte == b':')?;
        std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
    }
}

/// Splits `?prefix=` off the uri and hands the rest to the Redis client.
fn parse_uri(uri: &str) -> Result<(Client, String), KvError> {
    let unsupported = |reason: String| KvError::UnsupportedUri {
        uri: redact(uri),
        reason,
    };
    let mut url = redis::parse_redis_url(uri).ok_or_else(|| {
        unsupported(
            "expected redis://[user:password@]host[:port][/db][?prefix=NAME] \
             or redis+unix:///path?db=N&prefix=NAME"
                .into(),
        )
    })?;
    let mut prefix = None;
    let mut passed_on = Vec::new();
    for (name, value) in url.query_pairs() {
        if name == "prefix" {
            if prefix.replace(value.into_owned()).is_some() {
                return Err(unsupported("prefix is given twice".into()));
            }
        } else {
            passed_on.push((name.into_owned(), value.into_owned()));
        }
    }
    if passed_on.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(&passed_on);
    }
    let prefix = prefix.unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
    let valid = |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-');
    if prefix.is_empty() || prefix.len() > MAX_PREFIX_LEN || !prefix.bytes().all(valid) {
        return Err(unsupported(format!(
            "prefix {prefix:?} must be 1 to {MAX_PREFIX_LEN} characters of A-Z a-z 0-9 _ . -"
        )));
    }
    let client = Client::open(url).map_err(|error| unsupported(error.to_string()))?;
    Ok((client, prefix))
}

/// The uri with its password masked, for error messages.
fn redact(uri: &str) -> String {
    match redis::parse_redis_url(uri) {
        Some(mut url) if url.password().is_some() => {
            // Fails only for uris without a host, which cannot carry a password.
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => uri.to_owned(),
    }
}

fn script(source: &str, keys: &[String]) -> redis::Cmd {
    let mut command = redis::cmd("EVAL");
    command.arg(source).arg(keys.len()).arg(keys);
    command
}

fn parse_info(key: &str, bytes: &[u8]) -> Result<GenerationInfo, KvError> {
    serde_json::from_slice(bytes).map_err(|error| KvError::BadRecord {
        backend: BACKEND,
        reason: format!("generation info at {key} is corrupt: {error}; publish a new generation"),
    })
}

fn lock_lost(key: &str, generation: Generation) -> KvError {
    KvError::Backend {
        backend: BACKEND,
        reason: format!(
            "publish lock {key} was lost before generation {generation} was sealed (redis \
             unreachable for longer than {}s, or the lock was deleted); publish again",
            LOCK_TTL.as_secs()
        ),
    }
}

/// Maps a Redis error to the crate error, with what failed and, where known, what to do.
fn redis_error(action: &str, error: RedisError) -> KvError {
    let hint = match error.code() {
        Some("OOM") => "; redis is out of memory: raise maxmemory or prune old generations",
        Some("READONLY") => "; the store uri names a read-only replica: point it at the primary",
        Some("NOAUTH" | "WRONGPASS") => "; put the user and password in the store uri",
        Some("NOPERM") => "; grant the redis user access to the prefix's keys and EVAL",
        Some("LOADING") => "; redis is loading its data set: retry shortly",
        Some("CROSSSLOT" | "MOVED" | "ASK") => {
            "; redis cluster is not supported: use a single primary (see docs/kv-layout.md)"
        }
        _ if error.is_io_error() || error.is_timeout() || error.is_connection_refusal() => {
            "; check that redis is running and reachable at the store uri"
        }
        _ => "",
    };
    KvError::Backend {
        backend: BACKEND,
        reason: format!("{action} failed: {error}{hint}"),
    }
}

/// A lock token no other publisher holds: process id, clock and a per-process counter.
fn unique_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!(
        "pid-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use newsrec_kv::conformance;

    const URL_VARIABLE: &str = "NEWSREC_TEST_REDIS_URL";

    /// The test Redis, or None (the test is skipped) when the variable is not set. When it is
    /// set, an unreachable Redis fails the test.
    fn test_redis(test: &str) -> Option<TestPrefixes> {
        match std::env::var(URL_VARIABLE) {
            Ok(url) if !url.is_empty() => Some(TestPrefixes {
                url,
                used: Mutex::new(Vec::new()),
            }),
            _ => {
                eprintln!("skipped {test}: set {URL_VARIABLE}=redis://127.0.0.1:6379/0 to run it");
                None
            }
        }
    }

    /// Hands out a unique prefix per case and deletes their keys when the test ends, passed or
    /// failed. Tests using it run on the multi-thread runtime (`block_in_place`).
    struct TestPrefixes {
        url: String,
        used: Mutex<Vec<String>>,
    }

    impl TestPrefixes {
        fn uri(&self, case: &str) -> String {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let prefix = format!("newsrec-test-{}-{nanos}-{case}", std::process::id());
            self.used.lock().unwrap().push(prefix.clone());
            let separator = if self.url.contains('?') { '&' } else { '?' };
            format!("{}{separator}prefix={prefix}", self.url)
        }

        async fn connect(&self, case: &str) -> RedisStore {
            let uri = self.uri(case);
            RedisStore::connect(&uri)
                .await
                .unwrap_or_else(|error| panic!("{URL_VARIABLE} is set but: {error}"))
        }

        /// For factories that cannot await (the conformance suite's).
        fn connect_blocking(&self, case: &str) -> RedisStore {
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(self.connect(case))
            })
        }

        async fn delete_all(&self) {
            let prefixes = std::mem::take(&mut *self.used.lock().unwrap());
            let Ok(client) = Client::open(self.url.as_str()) else {
                return;
            };
            let Ok(mut connection) = ConnectionManager::new(client).await else {
                return;
            };
            for prefix in prefixes {
                let mut cursor: u64 = 0;
                loop {
                    let Ok((next, keys)): Result<(u64, Vec<Vec<u8>>), _> = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(format!("{prefix}:*"))
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut connection)
                        .await
                    else {
                        break;
                    };
                    if !keys.is_empty() {
                        let _ = redis::cmd("UNLINK")
                            .arg(&keys)
                            .query_async::<()>(&mut connection)
                            .await;
                    }
                    cursor = next;
                    if cursor == 0 {
                        break;
                    }
                }
            }
        }
    }

    impl Drop for TestPrefixes {
        fn drop(&mut self) {
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    let _ = tokio::time::timeout(Duration::from_secs(10), self.delete_all()).await;
                });
            });
        }
    }

    async fn key_exists(store: &RedisStore, key: &str) -> bool {
        redis::cmd("EXISTS")
            .arg(key)
            .query_async(&mut store.connection())
            .await
            .unwrap()
    }

    /// A dropped writer frees the lock from a spawned task; wait for it (bounded).
    async fn wait_for_unlock(store: &RedisStore) {
        for _ in 0..100 {
            if !key_exists(store, &store.keys.lock()).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the publish lock was not released after the writer was dropped");
    }

    fn similar(article: &str, other: &str) -> SimilarList {
        SimilarList {
            article_id: article.into(),
            items: vec![RecItem {
                article_id: other.into(),
                score: 0.5,
            }],
        }
    }

    fn list(user: &str, article: &str) -> UserList {
        UserList {
            user_id: user.into(),
            items: vec![RecItem {
                article_id: article.into(),
                score: 1.0,
            }],
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance_suite() {
        let Some(redis) = test_redis("conformance_suite") else {
            return;
        };
        conformance::run_all(|case| redis.connect_blocking(case)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_handle_sees_a_new_generation_after_refresh() {
        // Models `newsrec publish` in one process while `newsrec up` serves in another.
        let Some(redis) = test_redis("a_second_handle_sees_a_new_generation_after_refresh") else {
            return;
        };
        let uri = redis.uri("refresh");
        let publisher = RedisStore::connect(&uri).await.unwrap();
        let server = RedisStore::connect(&uri).await.unwrap();
        assert_eq!(server.user_list("u1").await.unwrap(), None);
        let first = conformance::publish(&publisher, "run-a", &[("u1", &["a1"])]).await;
        assert_eq!(
            server.user_list("u1").await.unwrap(),
            None,
            "no refresh yet"
        );
        assert!(server.refresh().await.unwrap());
        assert_eq!(
            server.user_list("u1").await.unwrap().unwrap().generation,
            first
        );
        assert!(!server.refresh().await.unwrap());

        let second = conformance::publish(&publisher, "run-b", &[("u1", &["b1"])]).await;
        let list = server.user_list("u1").await.unwrap().unwrap();
        assert_eq!(
            list.generation, first,
            "still the old generation until refresh"
        );
        assert_eq!(server.current().await.unwrap().unwrap().generation, first);
        assert!(server.refresh().await.unwrap());
        assert_eq!(
            server.user_list("u1").await.unwrap().unwrap().generation,
            second
        );
        assert_eq!(server.current().await.unwrap().unwrap().generation, second);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_whose_generation_was_pruned_follows_the_pointer() {
        let Some(redis) = test_redis("a_server_whose_generation_was_pruned_follows_the_pointer")
        else {
            return;
        };
        let uri = redis.uri("pruned");
        let publisher = RedisStore::connect(&uri).await.unwrap();
        let first = conformance::publish(&publisher, "run-a", &[("u1", &["a1"])]).await;
        let server = RedisStore::connect(&uri).await.unwrap();
        let second = conformance::publish(&publisher, "run-b", &[("u1", &["b1"])]).await;
        assert_eq!(publisher.prune(0).await.unwrap(), vec![first]);
        let list = server.user_list("u1").await.unwrap().unwrap();
        assert_eq!(list.generation, second);
        assert_eq!(list.items[0].article_id, "b1");
        assert_eq!(server.user_list("nobody").await.unwrap(), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_publish_that_dies_midway_leaves_the_old_generation_served() {
        let Some(redis) = test_redis("a_publish_that_dies_midway_leaves_the_old_generation_served")
        else {
            return;
        };
        let uri = redis.uri("dies");
        let store = RedisStore::connect(&uri).await.unwrap();
        let first = conformance::publish(&store, "run-a", &[("u1", &["a1"])]).await;
        let dead = {
            let mut writer = store.create_generation("run-b").await.unwrap();
            writer.put_users(vec![list("u1", "b1")]).await.unwrap();
            writer.put_similar(vec![similar("a1", "b2")]).await.unwrap();
            writer.put_fallback(Vec::new()).await.unwrap();
            writer.generation()
            // Dropped without finish: the process "died" here.
        };
        let reopened = RedisStore::connect(&uri).await.unwrap();
        assert_eq!(reopened.current().await.unwrap().unwrap().generation, first);
        assert_eq!(
            reopened.user_list("u1").await.unwrap().unwrap().items[0].article_id,
            "a1"
        );
        assert_eq!(
            reopened
                .similar_list("a1")
                .await
                .unwrap()
                .unwrap()
                .generation,
            first,
            "the dead publish's similar lists are invisible"
        );
        assert_eq!(reopened.generations().await.unwrap().len(), 1);
        assert!(matches!(
            reopened.activate(dead).await,
            Err(KvError::NoSuchGeneration(_))
        ));
        wait_for_unlock(&reopened).await;
        let second = conformance::publish(&reopened, "run-b", &[("u1", &["b1"])]).await;
        assert!(second > dead);
        assert_eq!(
            reopened.prune(5).await.unwrap(),
            vec![dead],
            "the leftover is cleaned up"
        );
        assert!(!key_exists(&reopened, &reopened.keys.lists(dead)).await);
        assert!(!key_exists(&reopened, &reopened.keys.similar(dead)).await);
        assert!(!key_exists(&reopened, &reopened.keys.fallback(dead)).await);
        assert!(key_exists(&reopened, &reopened.keys.similar(first)).await);
        assert_eq!(reopened.prune(0).await.unwrap(), vec![first]);
        assert!(
            !key_exists(&reopened, &reopened.keys.similar(first)).await,
            "a pruned generation's similar lists are deleted with it"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_publisher_is_refused_while_one_writes() {
        let Some(redis) = test_redis("a_second_publisher_is_refused_while_one_writes") else {
            return;
        };
        let uri = redis.uri("locked");
        let store = RedisStore::connect(&uri).await.unwrap();
        let other_process = RedisStore::connect(&uri).await.unwrap();
        let writer = store.create_generation("run-a").await.unwrap();
        let error = other_process.create_generation("run-b").await.unwrap_err();
        assert!(matches!(error, KvError::Locked { .. }), "{error}");
        let error = other_process.prune(1).await.unwrap_err();
        assert!(
            matches!(error, KvError::Locked { .. }),
            "prune waits too: {error}"
        );
        writer.finish(0).await.unwrap();
        // finish releases the lock before returning.
        other_process.create_generation("run-b").await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_that_lost_its_lock_does_not_seal() {
        // The lock expired (redis unreachable past its TTL) or an operator removed it: a prune
        // may have deleted part of this generation, so sealing must be refused.
        let Some(redis) = test_redis("a_writer_that_lost_its_lock_does_not_seal") else {
            return;
        };
        let store = redis.connect("lost-lock").await;
        let mut writer = store.create_generation("run-a").await.unwrap();
        let generation = writer.generation();
        writer.put_users(vec![list("u1", "a")]).await.unwrap();
        redis::cmd("DEL")
            .arg(store.keys.lock())
            .query_async::<()>(&mut store.connection())
            .await
            .unwrap();
        let error = writer.finish(1).await.unwrap_err();
        assert!(error.to_string().contains("publish lock"), "{error}");
        assert!(matches!(
            store.activate(generation).await,
            Err(KvError::NoSuchGeneration(_))
        ));
        assert!(store.generations().await.unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_user_written_twice_counts_once() {
        let Some(redis) = test_redis("a_user_written_twice_counts_once") else {
            return;
        };
        let store = redis.connect("twice").await;
        let mut writer = store.create_generation("run-a").await.unwrap();
        writer
            .put_users(vec![list("u1", "old"), list("u2", "x"), list("u1", "mid")])
            .await
            .unwrap();
        writer.put_users(vec![list("u1", "new")]).await.unwrap();
        let info = writer.finish(2).await.unwrap();
        assert_eq!(info.users, 2);
        store.activate(info.generation).await.unwrap();
        let list = store.user_list("u1").await.unwrap().unwrap();
        assert_eq!(list.items[0].article_id, "new", "the last list wins");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn similar_lists_are_not_users_and_the_last_list_wins() {
        let Some(redis) = test_redis("similar_lists_are_not_users_and_the_last_list_wins") else {
            return;
        };
        let store = redis.connect("similar").await;
        let mut writer = store.create_generation("run-a").await.unwrap();
        writer.put_users(vec![list("u1", "a1")]).await.unwrap();
        // More lists than one HSET carries, one article twice in a call and again later.
        let mut lists: Vec<SimilarList> = (0..HSET_CHUNK + 10)
            .map(|n| similar(&format!("a{n}"), "first"))
            .collect();
        lists.push(similar("a3", "second"));
        writer.put_similar(lists).await.unwrap();
        writer
            .put_similar(vec![similar("a4", "later")])
            .await
            .unwrap();
        writer.put_similar(Vec::new()).await.unwrap();
        let info = writer.finish(1).await.unwrap();
        assert_eq!(info.users, 1, "similar lists are not counted as users");
        store.activate(info.generation).await.unwrap();
        let article = |list: Option<StoredList>| list.unwrap().items[0].article_id.clone();
        assert_eq!(article(store.similar_list("a3").await.unwrap()), "second");
        assert_eq!(article(store.similar_list("a4").await.unwrap()), "later");
        assert_eq!(article(store.similar_list("a0").await.unwrap()), "first");
        assert_eq!(store.similar_list("u1").await.unwrap(), None);
        assert_eq!(store.user_list("a1").await.unwrap(), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_whose_generation_was_pruned_finds_similar_lists_of_the_new_one() {
        let Some(redis) =
            test_redis("a_server_whose_generation_was_pruned_finds_similar_lists_of_the_new_one")
        else {
            return;
        };
        let uri = redis.uri("similar-pruned");
        let publisher = RedisStore::connect(&uri).await.unwrap();
        let first = conformance::publish(&publisher, "run-a", &[("u1", &["a1"])]).await;
        let server = RedisStore::connect(&uri).await.unwrap();
        let second = conformance::publish(&publisher, "run-b", &[("u1", &["b1"])]).await;
        assert_eq!(publisher.prune(0).await.unwrap(), vec![first]);
        let list = server.similar_list("a1").await.unwrap().unwrap();
        assert_eq!(list.generation, second);
        assert_eq!(server.current().await.unwrap().unwrap().generation, second);
    }

    #[tokio::test]
    async fn bad_uris_are_refused_before_connecting() {
        for uri in [
            "http://127.0.0.1:6379",
            "not a uri",
            "redis://127.0.0.1:6379/0?prefix=a*b",
            "redis://127.0.0.1:6379/0?prefix=a:b",
            "redis://127.0.0.1:6379/0?prefix=",
            "redis://127.0.0.1:6379/0?prefix=a&prefix=b",
            "redis://127.0.0.1:6379/not-a-db",
            "redis://:secret@127.0.0.1:6379/0?prefix=%7Bx%7D",
        ] {
            let error = RedisStore::connect(uri).await.unwrap_err();
            assert!(
                matches!(error, KvError::UnsupportedUri { .. }),
                "{uri}: {error}"
            );
            assert!(
                !error.to_string().contains("secret"),
                "password shown: {error}"
            );
        }
    }

    #[test]
    fn the_prefix_defaults_and_is_split_off_the_uri() {
        let (_, prefix) = parse_uri("redis://127.0.0.1:6379/0").unwrap();
        assert_eq!(prefix, DEFAULT_PREFIX);
        let (_, prefix) = parse_uri("redis://127.0.0.1:6379/2?prefix=site-a.v1_x").unwrap();
        assert_eq!(prefix, "site-a.v1_x");
    }

    #[test]
    fn generation_keys_name_their_generation() {
        let keys = Keys { prefix: "p".into() };
        assert_eq!(keys.generation_of(keys.lists(42).as_bytes()), Some(42));
        assert_eq!(keys.generation_of(keys.info(7).as_bytes()), Some(7));
        assert_eq!(keys.generation_of(keys.similar(9).as_bytes()), Some(9));
        assert_eq!(keys.generation_of(b"p:g:x:lists"), None);
        assert_eq!(keys.generation_of(b"pp:g:1:lists"), None);
        assert_eq!(keys.generation_of(keys.current().as_bytes()), None);
    }
}
