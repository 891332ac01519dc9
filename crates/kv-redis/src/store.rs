//! [`RedisStore`]: connects, serves the current generation and runs the [`RecStore`] operations.
//!
//! Serving handles cache the current generation and re-read the pointer on
//! [`RecStore::refresh`], so `user_list` and `similar_list` cost one round trip.

use std::{
    collections::{BTreeSet, HashSet},
    sync::{Arc, RwLock},
    time::Duration,
};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use newsrec_kv::{
    Generation, GenerationInfo, GenerationWriter, KvError, RecItem, RecStore, StoredList,
    decode_items,
};

use crate::{
    error::{BACKEND, redis_error},
    keys::Keys,
    lock::PublishLock,
    scripts::{ACTIVATE, NEXT_GENERATION, UNREGISTER, script},
    uri::parse_uri,
    writer::RedisWriter,
};

const SCAN_COUNT: usize = 1000;
const UNLINK_BATCH: usize = 512;
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// Long enough for a bulk pipeline of a few thousand lists; serving bounds its own latency.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

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

fn parse_info(key: &str, bytes: &[u8]) -> Result<GenerationInfo, KvError> {
    serde_json::from_slice(bytes).map_err(|error| KvError::BadRecord {
        backend: BACKEND,
        reason: format!("generation info at {key} is corrupt: {error}; publish a new generation"),
    })
}

#[cfg(test)]
mod tests;
