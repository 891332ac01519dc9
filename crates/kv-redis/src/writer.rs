//! [`RedisWriter`]: writes one generation's hashes and fallback, then seals it.

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use newsrec_kv::{
    Generation, GenerationInfo, GenerationWriter, KvError, RecItem, SimilarList, UserList,
    encode_items,
};

use crate::{
    error::{BACKEND, redis_error},
    keys::Keys,
    lock::{PublishLock, lock_lost},
    scripts::{SEAL, script},
};

/// Lists per `HSET` inside one `put_users`/`put_similar` pipeline: keeps single commands small
/// so Redis interleaves readers between them.
pub(crate) const HSET_CHUNK: usize = 512;

/// Writes one generation; holds the store's publish lock until finished or dropped.
pub(crate) struct RedisWriter {
    pub(crate) connection: ConnectionManager,
    pub(crate) keys: Keys,
    pub(crate) generation: Generation,
    pub(crate) run_id: String,
    pub(crate) lock: PublishLock,
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
