//! [`DynamoWriter`]: writes one generation in batches, counts its distinct users and seals it.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use aws_sdk_dynamodb::{primitives::Blob, types::AttributeValue};

use newsrec_kv::{
    Generation, GenerationInfo, GenerationWriter, KvError, RecItem, SimilarList, UserList,
    encode_items,
};

use crate::{
    item::{VALUE, info_item, key_item},
    keys::{fallback_key, similar_key, user_key},
    lock::{LOCK_RENEW_AFTER, Lease},
    table::{Table, put_request},
};

/// Requests a writer sends between two lock renewals inside one large `put_users` (or
/// `put_similar`) call.
const WRITES_PER_LOCK_CHECK: usize = 4_000;

/// Writes one generation; holds the table's lock item until finished or dropped.
///
/// The distinct user ids written are kept in memory so `finish` can verify the count exactly
/// without a Scan: about the id's bytes plus ~40 bytes per user (≈ 100 MB for 2M users).
#[derive(Debug)]
pub(crate) struct DynamoWriter {
    pub(crate) table: Table,
    pub(crate) generation: Generation,
    pub(crate) run_id: String,
    pub(crate) users: HashSet<Box<str>>,
    /// `None` once released.
    pub(crate) lease: Option<Lease>,
}

/// Which lists a `put_lists` call writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListKind {
    /// Per-user lists, counted by `finish`.
    User,
    /// Per-article similar lists, not counted.
    Similar,
}

impl DynamoWriter {
    /// Renews the lock when due; fails with `Locked` when another publisher took it over.
    async fn keep_lock(&mut self) -> Result<(), KvError> {
        let Some(lease) = &mut self.lease else {
            return Err(self.table.locked_error());
        };
        if lease.renewed_at.elapsed() >= LOCK_RENEW_AFTER {
            self.table.renew_lock(lease).await?;
        }
        Ok(())
    }

    /// Writes keyed lists with BatchWriteItem (renewing the lock every WRITES_PER_LOCK_CHECK
    /// items); only user lists are remembered for the count `finish` checks.
    async fn put_lists(
        &mut self,
        kind: ListKind,
        entries: Vec<(String, Vec<RecItem>)>,
    ) -> Result<(), KvError> {
        self.keep_lock().await?;
        // A batch may not name one key twice, so keep the last list of an id within this call
        // (later calls overwrite earlier ones because batches are sent in order).
        let mut position: HashMap<String, usize> = HashMap::with_capacity(entries.len());
        let mut encoded: Vec<(String, Vec<u8>)> = Vec::with_capacity(entries.len());
        for (id, items) in entries {
            let value = encode_items(&items).map_err(|source| KvError::Corrupt {
                generation: self.generation,
                key: id.clone(),
                source,
            })?;
            match position.get(&id) {
                Some(&at) => encoded[at].1 = value,
                None => {
                    position.insert(id.clone(), encoded.len());
                    encoded.push((id, value));
                }
            }
        }
        drop(position);
        let (key_of, operation): (fn(Generation, &str) -> String, &str) = match kind {
            ListKind::User => (user_key, "writing user lists"),
            ListKind::Similar => (similar_key, "writing similar lists"),
        };
        let mut pending = encoded.into_iter().peekable();
        while pending.peek().is_some() {
            let mut requests = Vec::with_capacity(WRITES_PER_LOCK_CHECK);
            for (id, value) in pending.by_ref().take(WRITES_PER_LOCK_CHECK) {
                let mut item = key_item(key_of(self.generation, &id));
                item.insert(VALUE.into(), AttributeValue::B(Blob::new(value)));
                requests.push(put_request(item)?);
                if kind == ListKind::User {
                    self.users.insert(id.into_boxed_str());
                }
            }
            self.table.batch_write(operation, requests).await?;
            self.keep_lock().await?;
        }
        Ok(())
    }

    async fn seal(&mut self, expected_users: u64) -> Result<GenerationInfo, KvError> {
        let stored = u64::try_from(self.users.len()).unwrap_or(u64::MAX);
        if stored != expected_users {
            return Err(KvError::CountMismatch {
                generation: self.generation,
                stored,
                expected: expected_users,
            });
        }
        // Renew unconditionally: sealing after losing the lock could race another publisher.
        if let Some(lease) = &mut self.lease {
            self.table.renew_lock(lease).await?;
        }
        let info = GenerationInfo {
            generation: self.generation,
            run_id: self.run_id.clone(),
            users: stored,
            sealed_at_ms: newsrec_kv::now_ms(),
        };
        self.table
            .put_item("sealing the generation", info_item(&info, true))
            .await?;
        Ok(info)
    }

    async fn release(&mut self) {
        if let Some(lease) = self.lease.take() {
            self.table.release_lock(&lease).await;
        }
    }
}

impl Drop for DynamoWriter {
    fn drop(&mut self) {
        // Dropped without `finish`: free the lock in the background (best effort; otherwise it
        // expires after LOCK_LEASE). The unsealed items stay invisible until `prune`.
        if let Some(lease) = self.lease.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let table = self.table.clone();
            runtime.spawn(async move { table.release_lock(&lease).await });
        }
    }
}

#[async_trait]
impl GenerationWriter for DynamoWriter {
    fn generation(&self) -> Generation {
        self.generation
    }

    async fn put_users(&mut self, lists: Vec<UserList>) -> Result<(), KvError> {
        let entries = lists
            .into_iter()
            .map(|list| (list.user_id, list.items))
            .collect();
        self.put_lists(ListKind::User, entries).await
    }

    async fn put_similar(&mut self, lists: Vec<SimilarList>) -> Result<(), KvError> {
        let entries = lists
            .into_iter()
            .map(|list| (list.article_id, list.items))
            .collect();
        self.put_lists(ListKind::Similar, entries).await
    }

    async fn put_fallback(&mut self, items: Vec<RecItem>) -> Result<(), KvError> {
        self.keep_lock().await?;
        let value = encode_items(&items).map_err(|source| KvError::Corrupt {
            generation: self.generation,
            key: "fallback".into(),
            source,
        })?;
        let mut item = key_item(fallback_key(self.generation));
        item.insert(VALUE.into(), AttributeValue::B(Blob::new(value)));
        self.table.put_item("writing the fallback list", item).await
    }

    async fn finish(mut self: Box<Self>, expected_users: u64) -> Result<GenerationInfo, KvError> {
        let result = self.seal(expected_users).await;
        self.release().await;
        result
    }
}
