//! The DynamoDB backend: every generation's items in one table, a `current` pointer item.
//!
//! This module owns the DynamoDB item layout (documented in `docs/kv-layout.md`, "DynamoDB"),
//! the store uri `dynamodb://TABLE?endpoint=…&region=…&create=true`, the publisher lock and the
//! batching/retry policy for bulk writes. The value of a list is the shared codec (`codec.rs`),
//! stored as a Binary attribute.
//!
//! Why this shape: DynamoDB has no multi-item snapshot a reader could pin, so a generation is made
//! immutable by convention instead. Its items carry the generation number in their key, nothing
//! points at them until its `info` item says `sealed = true`, and readers only follow the single
//! `current` pointer item, which one PutItem replaces atomically. A reader therefore sees the old
//! generation or the new one, never a mix. Publishers take a lease-style lock item (conditional
//! PutItem with an expiry) so a dead publisher cannot block the store forever; a live one renews
//! it while it writes. All reads that decide what is visible are strongly consistent, because an
//! eventually consistent read right after a publish could miss items that were just written.

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use aws_config::{BehaviorVersion, ConfigLoader};
use aws_sdk_dynamodb::{
    Client,
    config::Region,
    error::{BuildError, DisplayErrorContext, ProvideErrorMetadata, SdkError},
    primitives::Blob,
    types::{
        AttributeDefinition, AttributeValue, BillingMode, DeleteRequest, KeySchemaElement, KeyType,
        KeysAndAttributes, PutRequest, ReturnValue, ScalarAttributeType, TableStatus, WriteRequest,
    },
};

use newsrec_kv::{
    Generation, GenerationInfo, GenerationWriter, KvError, RecItem, RecStore, SimilarList,
    StoredList, UserList, decode_items, encode_items,
};

const BACKEND: &str = "dynamodb";
const URI_SCHEME: &str = "dynamodb://";

/// The only key attribute: a string partition key (no sort key).
const PK: &str = "pk";
/// Binary attribute holding an encoded list (user, similar-article and fallback items).
const VALUE: &str = "v";
const POINTER_KEY: &str = "current";
const COUNTER_KEY: &str = "counter";
const INDEX_KEY: &str = "generations";
const LOCK_KEY: &str = "lock";

/// BatchWriteItem accepts at most 25 requests.
const BATCH_WRITE_LIMIT: usize = 25;
/// BatchGetItem accepts at most 100 keys.
const BATCH_GET_LIMIT: usize = 100;
/// `begins_with` terms OR-ed into one prune Scan filter (keeps the expression small).
const PRUNE_PREFIXES_PER_SCAN: usize = 16;
/// Requests a writer sends between two lock renewals inside one large `put_users` (or
/// `put_similar`) call.
const WRITES_PER_LOCK_CHECK: usize = 4_000;

/// How long a publisher's lock lasts without renewal; a dead publisher blocks at most this long.
const LOCK_LEASE: Duration = Duration::from_secs(10 * 60);
/// A writer renews its lock when the last renewal is older than this.
const LOCK_RENEW_AFTER: Duration = Duration::from_secs(60);

/// Waiting for a created table to become ACTIVE (AWS takes seconds; local servers none).
const TABLE_POLL_INTERVAL: Duration = Duration::from_millis(500);
const TABLE_POLL_ATTEMPTS: u32 = 240;

/// Retry policy for `UnprocessedItems` / `UnprocessedKeys`: 8 retries, worst case ≈ 11 s of sleep.
const BATCH_RETRY: Backoff = Backoff {
    base: Duration::from_millis(50),
    cap: Duration::from_secs(5),
    max_retries: 8,
};

type Item = HashMap<String, AttributeValue>;

/// The DynamoDB store: one table, reached through the AWS SDK.
#[derive(Debug)]
pub struct DynamoStore {
    table: Table,
    /// The generation this handle serves, with its fallback list; replaced whole on a switch.
    serving: RwLock<Option<Arc<Serving>>>,
}

#[derive(Debug)]
struct Serving {
    info: GenerationInfo,
    fallback: Vec<RecItem>,
}

/// A client bound to one table; cheap to clone (the SDK client is reference counted).
#[derive(Debug, Clone)]
struct Table {
    client: Client,
    name: Arc<str>,
}

/// What `dynamodb://…` says.
#[derive(Debug, PartialEq)]
struct StoreUri {
    table: String,
    endpoint: Option<String>,
    region: Option<String>,
    create: bool,
}

impl DynamoStore {
    /// Connects to `dynamodb://TABLE[?endpoint=URL&region=REGION&create=true]` and loads the
    /// current generation.
    ///
    /// Credentials, region and endpoint come from the usual AWS environment and config files
    /// (including `AWS_ENDPOINT_URL`) unless the uri overrides them. `create=true` creates the
    /// table when it is missing (on-demand billing, key `pk` string hash key only) and waits until
    /// it is ACTIVE.
    pub async fn connect(uri: &str) -> Result<DynamoStore, KvError> {
        DynamoStore::connect_with(uri, aws_config::defaults(BehaviorVersion::latest())).await
    }

    /// [`DynamoStore::connect`] with a prepared SDK config loader (tests pass static credentials).
    async fn connect_with(uri: &str, loader: ConfigLoader) -> Result<DynamoStore, KvError> {
        let parsed = StoreUri::parse(uri)?;
        let mut loader = loader;
        if let Some(region) = &parsed.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &parsed.endpoint {
            loader = loader.endpoint_url(endpoint.clone());
        }
        let sdk_config = loader.load().await;
        let mut config = aws_sdk_dynamodb::config::Builder::from(&sdk_config);
        if sdk_config.region().is_none() {
            if parsed.endpoint.is_none() {
                return Err(backend_error(format!(
                    "connecting to table {:?} failed: no aws region is configured; set AWS_REGION \
                     or add ?region=REGION to the store uri",
                    parsed.table
                )));
            }
            // DynamoDB-compatible servers ignore the region, but request signing needs one.
            config = config.region(Region::new("us-east-1"));
        }
        let table = Table {
            client: Client::from_conf(config.build()),
            name: parsed.table.into(),
        };
        if parsed.create {
            table.ensure_exists().await?;
        }
        let store = DynamoStore {
            table,
            serving: RwLock::new(None),
        };
        store.refresh().await?;
        Ok(store)
    }

    fn serving(&self) -> Option<Arc<Serving>> {
        self.serving
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    fn set_serving(&self, serving: Option<Serving>) {
        *self
            .serving
            .write()
            .unwrap_or_else(|poison| poison.into_inner()) = serving.map(Arc::new);
    }

    /// Reads the list item `key_of(generation, id)` of the current generation: one strongly
    /// consistent GetItem on a hit.
    async fn lookup(
        &self,
        operation: &str,
        key_of: fn(Generation, &str) -> String,
        id: &str,
    ) -> Result<Option<StoredList>, KvError> {
        let Some(serving) = self.serving() else {
            return Ok(None);
        };
        let generation = serving.info.generation;
        if let Some(item) = self
            .table
            .get_item(operation, key_of(generation, id))
            .await?
        {
            let items = decode_value(&item, generation, id)?;
            return Ok(Some(StoredList { generation, items }));
        }
        // A miss is either an id without a list or a generation that another process activated
        // past and pruned before this handle refreshed; telling them apart costs one more read,
        // paid on misses only, so a lagging handle never answers "no list" for everyone.
        if self.table.generation_is_sealed(generation).await? || !self.refresh().await? {
            return Ok(None);
        }
        let Some(serving) = self.serving() else {
            return Ok(None);
        };
        let generation = serving.info.generation;
        match self
            .table
            .get_item(operation, key_of(generation, id))
            .await?
        {
            Some(item) => Ok(Some(StoredList {
                generation,
                items: decode_value(&item, generation, id)?,
            })),
            None => Ok(None),
        }
    }

    /// Deletes what `prune` decided, with the lock held.
    async fn prune_locked(&self, keep: usize) -> Result<Vec<Generation>, KvError> {
        let current = self.table.read_pointer().await?;
        let mut live = self.table.live_generations().await?;
        live.sort_unstable();
        let infos = self.table.read_infos(&live).await?;
        let sealed: Vec<Generation> = live
            .iter()
            .copied()
            .filter(|generation| infos.get(generation).is_some_and(|(_, sealed)| *sealed))
            .collect();
        let kept: Vec<Generation> = sealed.iter().rev().take(keep).copied().collect();
        let newest_sealed = sealed.last().copied();
        let doomed: Vec<Generation> = live
            .iter()
            .copied()
            .filter(|generation| {
                if sealed.contains(generation) {
                    Some(*generation) != current && !kept.contains(generation)
                } else {
                    // An unsealed generation newer than every sealed one may be a publish whose
                    // lock expired while it still runs; only older ones are surely dead.
                    newest_sealed.is_some_and(|newest| *generation < newest)
                }
            })
            .collect();
        if doomed.is_empty() {
            return Ok(doomed);
        }
        // Info items first: once they are gone no `activate` can pick a half-deleted generation.
        let info_deletes = doomed
            .iter()
            .map(|generation| delete_request(info_key(*generation)))
            .collect::<Result<Vec<_>, _>>()?;
        self.table
            .batch_write("deleting generation info", info_deletes)
            .await?;
        let prefixes: Vec<String> = doomed.iter().map(|g| generation_prefix(*g)).collect();
        for group in prefixes.chunks(PRUNE_PREFIXES_PER_SCAN) {
            self.table.delete_with_prefixes(group).await?;
        }
        // Last: while any item may remain, the generation stays listed so a retry finds it.
        self.table.forget_generations(&doomed).await?;
        tracing::info!(table = %self.table.name, deleted = ?doomed, "pruned generations");
        Ok(doomed)
    }
}

#[async_trait]
impl RecStore for DynamoStore {
    async fn create_generation(&self, run_id: &str) -> Result<Box<dyn GenerationWriter>, KvError> {
        let lease = self.table.acquire_lock().await?;
        match self.table.start_generation(run_id).await {
            Ok(generation) => Ok(Box::new(DynamoWriter {
                table: self.table.clone(),
                generation,
                run_id: run_id.to_owned(),
                users: HashSet::new(),
                lease: Some(lease),
            })),
            Err(error) => {
                self.table.release_lock(&lease).await;
                Err(error)
            }
        }
    }

    async fn generations(&self) -> Result<Vec<GenerationInfo>, KvError> {
        let live = self.table.live_generations().await?;
        let mut sealed: Vec<GenerationInfo> = self
            .table
            .read_infos(&live)
            .await?
            .into_values()
            .filter_map(|(info, sealed)| sealed.then_some(info))
            .collect();
        sealed.sort_unstable_by_key(|info| info.generation);
        Ok(sealed)
    }

    async fn current(&self) -> Result<Option<GenerationInfo>, KvError> {
        Ok(self.serving().map(|serving| serving.info.clone()))
    }

    async fn activate(&self, generation: Generation) -> Result<(), KvError> {
        // Load it first: a generation that is not sealed must never become current.
        let serving = self.table.load_serving(generation).await?;
        self.table.write_pointer(generation).await?;
        tracing::info!(table = %self.table.name, generation, "activated generation");
        self.set_serving(Some(serving));
        Ok(())
    }

    async fn prune(&self, keep: usize) -> Result<Vec<Generation>, KvError> {
        let lease = self.table.acquire_lock().await?;
        let result = self.prune_locked(keep).await;
        self.table.release_lock(&lease).await;
        result
    }

    async fn refresh(&self) -> Result<bool, KvError> {
        let wanted = self.table.read_pointer().await?;
        let serving = self.serving().map(|serving| serving.info.generation);
        if wanted == serving {
            return Ok(false);
        }
        let loaded = match wanted {
            Some(generation) => Some(self.table.load_serving(generation).await?),
            None => None,
        };
        self.set_serving(loaded);
        Ok(true)
    }

    async fn user_list(&self, user_id: &str) -> Result<Option<StoredList>, KvError> {
        self.lookup("reading a user list", user_key, user_id).await
    }

    async fn similar_list(&self, article_id: &str) -> Result<Option<StoredList>, KvError> {
        self.lookup("reading a similar list", similar_key, article_id)
            .await
    }

    async fn fallback_list(&self) -> Result<Option<StoredList>, KvError> {
        Ok(self.serving().map(|serving| StoredList {
            generation: serving.info.generation,
            items: serving.fallback.clone(),
        }))
    }
}

/// Writes one generation; holds the table's lock item until finished or dropped.
///
/// The distinct user ids written are kept in memory so `finish` can verify the count exactly
/// without a Scan: about the id's bytes plus ~40 bytes per user (≈ 100 MB for 2M users).
#[derive(Debug)]
struct DynamoWriter {
    table: Table,
    generation: Generation,
    run_id: String,
    users: HashSet<Box<str>>,
    /// `None` once released.
    lease: Option<Lease>,
}

/// Which lists a `put_lists` call writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListKind {
    /// Per-user lists, counted by `finish`.
    User,
    /// Per-article similar lists, not counted.
    Similar,
}

#[derive(Debug)]
struct Lease {
    owner: String,
    renewed_at: Instant,
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

impl Table {
    async fn get_item(&self, operation: &str, pk: String) -> Result<Option<Item>, KvError> {
        let output = self
            .client
            .get_item()
            .table_name(&*self.name)
            .set_key(Some(key_item(pk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| self.sdk_error(operation, error))?;
        Ok(output.item)
    }

    async fn put_item(&self, operation: &str, item: Item) -> Result<(), KvError> {
        self.client
            .put_item()
            .table_name(&*self.name)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|error| self.sdk_error(operation, error))?;
        Ok(())
    }

    async fn read_pointer(&self) -> Result<Option<Generation>, KvError> {
        match self
            .get_item("reading the current pointer", POINTER_KEY.into())
            .await?
        {
            Some(item) => Ok(Some(number_attribute(&item, "generation")?)),
            None => Ok(None),
        }
    }

    async fn write_pointer(&self, generation: Generation) -> Result<(), KvError> {
        let mut item = key_item(POINTER_KEY.into());
        item.insert("generation".into(), number(generation));
        self.put_item("writing the current pointer", item).await
    }

    /// Reads a sealed generation's info and fallback list.
    async fn load_serving(&self, generation: Generation) -> Result<Serving, KvError> {
        let info = self
            .get_item("reading generation info", info_key(generation))
            .await?
            .map(|item| parse_info(&item))
            .transpose()?;
        let Some((info, true)) = info else {
            return Err(KvError::NoSuchGeneration(generation));
        };
        let fallback = match self
            .get_item("reading the fallback list", fallback_key(generation))
            .await?
        {
            Some(item) => decode_value(&item, generation, "fallback")?,
            None => Vec::new(),
        };
        Ok(Serving { info, fallback })
    }

    async fn generation_is_sealed(&self, generation: Generation) -> Result<bool, KvError> {
        match self
            .get_item("reading generation info", info_key(generation))
            .await?
        {
            Some(item) => Ok(parse_info(&item)?.1),
            None => Ok(false),
        }
    }

    /// Numbers a new generation, lists it and writes its unsealed info item.
    async fn start_generation(&self, run_id: &str) -> Result<Generation, KvError> {
        let operation = "numbering a new generation";
        let output = self
            .client
            .update_item()
            .table_name(&*self.name)
            .set_key(Some(key_item(COUNTER_KEY.into())))
            .update_expression("ADD #last :one")
            .expression_attribute_names("#last", "last_generation")
            .expression_attribute_values(":one", number(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|error| self.sdk_error(operation, error))?;
        let generation: Generation =
            number_attribute(&output.attributes.unwrap_or_default(), "last_generation")?;
        // Listed before any of its items exist, so a publish that dies is always found by prune.
        let operation = "listing a new generation";
        self.client
            .update_item()
            .table_name(&*self.name)
            .set_key(Some(key_item(INDEX_KEY.into())))
            .update_expression("ADD #live :generation")
            .expression_attribute_names("#live", "live")
            .expression_attribute_values(
                ":generation",
                AttributeValue::Ns(vec![generation.to_string()]),
            )
            .send()
            .await
            .map_err(|error| self.sdk_error(operation, error))?;
        let info = GenerationInfo {
            generation,
            run_id: run_id.to_owned(),
            users: 0,
            sealed_at_ms: 0,
        };
        self.put_item("writing generation info", info_item(&info, false))
            .await?;
        Ok(generation)
    }

    /// Every generation not yet pruned, sealed or not, from the `generations` index item.
    async fn live_generations(&self) -> Result<Vec<Generation>, KvError> {
        let Some(item) = self
            .get_item("reading the generation index", INDEX_KEY.into())
            .await?
        else {
            return Ok(Vec::new());
        };
        match item.get("live") {
            // DynamoDB drops a set attribute when its last member is deleted.
            None => Ok(Vec::new()),
            Some(AttributeValue::Ns(numbers)) => numbers
                .iter()
                .map(|text| {
                    text.parse::<Generation>()
                        .map_err(|_| corrupt_item(INDEX_KEY, "live", "a set of generation numbers"))
                })
                .collect(),
            Some(_) => Err(corrupt_item(
                INDEX_KEY,
                "live",
                "a set of generation numbers",
            )),
        }
    }

    async fn forget_generations(&self, generations: &[Generation]) -> Result<(), KvError> {
        let operation = "removing generations from the index";
        self.client
            .update_item()
            .table_name(&*self.name)
            .set_key(Some(key_item(INDEX_KEY.into())))
            .update_expression("DELETE #live :gone")
            .expression_attribute_names("#live", "live")
            .expression_attribute_values(
                ":gone",
                AttributeValue::Ns(generations.iter().map(ToString::to_string).collect()),
            )
            .send()
            .await
            .map_err(|error| self.sdk_error(operation, error))?;
        Ok(())
    }

    /// Info items of `generations` (missing ones are left out): generation → (info, sealed).
    async fn read_infos(
        &self,
        generations: &[Generation],
    ) -> Result<HashMap<Generation, (GenerationInfo, bool)>, KvError> {
        let operation = "reading generation info";
        let responses = std::sync::Mutex::new(Vec::new());
        for chunk in generations.chunks(BATCH_GET_LIMIT) {
            let keys: Vec<Item> = chunk.iter().map(|g| key_item(info_key(*g))).collect();
            let responses = &responses;
            drain_unprocessed(
                keys,
                BATCH_RETRY,
                |keys| async move {
                    let request = KeysAndAttributes::builder()
                        .set_keys(Some(keys))
                        .consistent_read(true)
                        .build()
                        .map_err(build_error)?;
                    let output = self
                        .client
                        .batch_get_item()
                        .request_items(&*self.name, request)
                        .send()
                        .await
                        .map_err(|error| self.sdk_error(operation, error))?;
                    let found = output
                        .responses
                        .and_then(|mut tables| tables.remove(&*self.name))
                        .unwrap_or_default();
                    responses
                        .lock()
                        .unwrap_or_else(|poison| poison.into_inner())
                        .extend(found);
                    Ok(output
                        .unprocessed_keys
                        .and_then(|mut tables| tables.remove(&*self.name))
                        .map(|unprocessed| unprocessed.keys)
                        .unwrap_or_default())
                },
                tokio::time::sleep,
                random_unit,
                |left| unprocessed_error(&self.name, operation, "keys", left),
            )
            .await?;
        }
        let items = responses
            .into_inner()
            .unwrap_or_else(|poison| poison.into_inner());
        let mut infos = HashMap::with_capacity(items.len());
        for item in items {
            let (info, sealed) = parse_info(&item)?;
            infos.insert(info.generation, (info, sealed));
        }
        Ok(infos)
    }

    /// Sends `requests` with BatchWriteItem, 25 at a time, retrying `UnprocessedItems`.
    async fn batch_write(
        &self,
        operation: &str,
        requests: Vec<WriteRequest>,
    ) -> Result<(), KvError> {
        let mut requests = requests.into_iter();
        loop {
            let batch: Vec<WriteRequest> = requests.by_ref().take(BATCH_WRITE_LIMIT).collect();
            if batch.is_empty() {
                return Ok(());
            }
            drain_unprocessed(
                batch,
                BATCH_RETRY,
                |batch| async move {
                    let output = self
                        .client
                        .batch_write_item()
                        .request_items(&*self.name, batch)
                        .send()
                        .await
                        .map_err(|error| self.sdk_error(operation, error))?;
                    Ok(output
                        .unprocessed_items
                        .and_then(|mut tables| tables.remove(&*self.name))
                        .unwrap_or_default())
                },
                tokio::time::sleep,
                random_unit,
                |left| unprocessed_error(&self.name, operation, "items", left),
            )
            .await?;
        }
    }

    /// Deletes every item whose key starts with one of `prefixes`.
    ///
    /// A Scan reads (and is billed for) the whole table, whatever the filter; prune is rare and
    /// one pass covers up to PRUNE_PREFIXES_PER_SCAN generations. Strongly consistent, so items
    /// written just before a publish died are not missed.
    async fn delete_with_prefixes(&self, prefixes: &[String]) -> Result<(), KvError> {
        let operation = "scanning for items to prune";
        let filter = (0..prefixes.len())
            .map(|at| format!("begins_with(#pk, :p{at})"))
            .collect::<Vec<_>>()
            .join(" OR ");
        let mut start: Option<Item> = None;
        loop {
            let mut scan = self
                .client
                .scan()
                .table_name(&*self.name)
                .filter_expression(&filter)
                .projection_expression("#pk")
                .expression_attribute_names("#pk", PK)
                .consistent_read(true)
                .set_exclusive_start_key(start.take());
            for (at, prefix) in prefixes.iter().enumerate() {
                scan = scan.expression_attribute_values(
                    format!(":p{at}"),
                    AttributeValue::S(prefix.clone()),
                );
            }
            let page = scan
                .send()
                .await
                .map_err(|error| self.sdk_error(operation, error))?;
            let deletes = page
                .items
                .unwrap_or_default()
                .into_iter()
                .filter_map(|mut item| match item.remove(PK) {
                    Some(AttributeValue::S(pk)) => Some(delete_request(pk)),
                    _ => None,
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.batch_write("deleting pruned items", deletes).await?;
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(()),
            }
        }
    }

    /// Takes the publisher lock: a conditional PutItem that succeeds when the lock item is
    /// missing or its lease has expired.
    async fn acquire_lock(&self) -> Result<Lease, KvError> {
        let owner = lock_owner();
        let now = newsrec_kv::now_ms();
        let mut item = key_item(LOCK_KEY.into());
        item.insert("owner".into(), AttributeValue::S(owner.clone()));
        item.insert(
            "expires_at_ms".into(),
            number(now.saturating_add(lease_ms())),
        );
        let result = self
            .client
            .put_item()
            .table_name(&*self.name)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk) OR #expires < :now")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#expires", "expires_at_ms")
            .expression_attribute_values(":now", number(now))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Lease {
                owner,
                renewed_at: Instant::now(),
            }),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|service| service.is_conditional_check_failed_exception()) =>
            {
                Err(self.locked_error())
            }
            Err(error) => Err(self.sdk_error("taking the publish lock", error)),
        }
    }

    /// Extends the lease; fails with `Locked` when the lock now belongs to someone else.
    async fn renew_lock(&self, lease: &mut Lease) -> Result<(), KvError> {
        let result = self
            .client
            .update_item()
            .table_name(&*self.name)
            .set_key(Some(key_item(LOCK_KEY.into())))
            .update_expression("SET #expires = :expires")
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#expires", "expires_at_ms")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(
                ":expires",
                number(newsrec_kv::now_ms().saturating_add(lease_ms())),
            )
            .expression_attribute_values(":owner", AttributeValue::S(lease.owner.clone()))
            .send()
            .await;
        match result {
            Ok(_) => {
                lease.renewed_at = Instant::now();
                Ok(())
            }
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|service| service.is_conditional_check_failed_exception()) =>
            {
                Err(self.locked_error())
            }
            Err(error) => Err(self.sdk_error("renewing the publish lock", error)),
        }
    }

    /// Deletes the lock item if it is still ours; failures only delay the next publish until the
    /// lease expires, so they are logged rather than returned.
    async fn release_lock(&self, lease: &Lease) {
        let result = self
            .client
            .delete_item()
            .table_name(&*self.name)
            .set_key(Some(key_item(LOCK_KEY.into())))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", AttributeValue::S(lease.owner.clone()))
            .send()
            .await;
        if let Err(error) = result {
            let lost = error
                .as_service_error()
                .is_some_and(|service| service.is_conditional_check_failed_exception());
            tracing::warn!(
                table = %self.name,
                lost,
                error = %DisplayErrorContext(&error),
                "could not release the publish lock; it expires by itself"
            );
        }
    }

    /// Creates the table when missing and waits until it is ACTIVE.
    async fn ensure_exists(&self) -> Result<(), KvError> {
        let described = self
            .client
            .describe_table()
            .table_name(&*self.name)
            .send()
            .await;
        match described {
            Ok(output) => {
                let schema = output.table.as_ref().map(|table| table.key_schema());
                let expected = schema.is_some_and(|schema| {
                    schema.len() == 1
                        && schema[0].attribute_name() == PK
                        && schema[0].key_type() == &KeyType::Hash
                });
                if !expected {
                    return Err(backend_error(format!(
                        "table {:?} exists with key schema {schema:?}; the store needs {PK:?} \
                         (string) as its only key: use another table name",
                        self.name
                    )));
                }
            }
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|service| service.is_resource_not_found_exception()) =>
            {
                self.create().await?;
            }
            Err(error) => return Err(self.sdk_error("describing the table", error)),
        }
        self.wait_until_active().await
    }

    async fn create(&self) -> Result<(), KvError> {
        let attribute = AttributeDefinition::builder()
            .attribute_name(PK)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(build_error)?;
        let key = KeySchemaElement::builder()
            .attribute_name(PK)
            .key_type(KeyType::Hash)
            .build()
            .map_err(build_error)?;
        let result = self
            .client
            .create_table()
            .table_name(&*self.name)
            .attribute_definitions(attribute)
            .key_schema(key)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match result {
            Ok(_) => {
                tracing::info!(table = %self.name, "created dynamodb table");
                Ok(())
            }
            // Another process created it at the same moment: fine.
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|service| service.is_resource_in_use_exception()) =>
            {
                Ok(())
            }
            Err(error) => Err(self.sdk_error("creating the table", error)),
        }
    }

    async fn wait_until_active(&self) -> Result<(), KvError> {
        for _ in 0..TABLE_POLL_ATTEMPTS {
            let output = self
                .client
                .describe_table()
                .table_name(&*self.name)
                .send()
                .await
                .map_err(|error| self.sdk_error("waiting for the table", error))?;
            let status = output.table.as_ref().and_then(|table| table.table_status());
            if status == Some(&TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(TABLE_POLL_INTERVAL).await;
        }
        let waited = TABLE_POLL_INTERVAL * TABLE_POLL_ATTEMPTS;
        Err(backend_error(format!(
            "table {:?} is not active after {}s; check its status in the aws console and retry",
            self.name,
            waited.as_secs()
        )))
    }

    fn locked_error(&self) -> KvError {
        KvError::Locked {
            path: format!("{URI_SCHEME}{} (item pk={LOCK_KEY:?})", self.name),
        }
    }

    fn sdk_error<E>(&self, operation: &str, error: SdkError<E>) -> KvError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let hint = match error.code() {
            Some("ResourceNotFoundException") => {
                "create the table (see docs/kv-layout.md) or add ?create=true to the store uri"
            }
            Some(
                "ProvisionedThroughputExceededException"
                | "ThrottlingException"
                | "RequestLimitExceeded",
            ) => "the table is throttled: raise its capacity or retry later",
            Some(
                "UnrecognizedClientException"
                | "InvalidSignatureException"
                | "AccessDeniedException"
                | "ExpiredTokenException",
            ) => "check the aws credentials and their dynamodb permissions on this table",
            Some("ValidationException") => {
                "check that the table's only key is pk (string) and that no list exceeds 400 KB"
            }
            _ => match &error {
                SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                    "check that the endpoint is reachable (endpoint= in the uri or \
                     AWS_ENDPOINT_URL), the region and the credentials"
                }
                _ => "check the table and the aws configuration, then retry",
            },
        };
        backend_error(format!(
            "{operation} on table {:?} failed: {}; {hint}",
            self.name,
            DisplayErrorContext(&error)
        ))
    }
}

/// Exponential backoff with full jitter (the delay is uniform in `[0, min(cap, base·2^retry)]`),
/// so many throttled writers spread out instead of retrying in step.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Backoff {
    base: Duration,
    cap: Duration,
    max_retries: u32,
}

impl Backoff {
    /// The delay before retry number `retry` (0 = first retry) for a jitter draw `unit` in
    /// [0, 1]; `None` when the retries are used up.
    fn delay(&self, retry: u32, unit: f64) -> Option<Duration> {
        if retry >= self.max_retries {
            return None;
        }
        let factor = 1u32.checked_shl(retry).unwrap_or(u32::MAX);
        let ceiling = self.base.saturating_mul(factor).min(self.cap);
        Some(ceiling.mul_f64(unit.clamp(0.0, 1.0)))
    }
}

/// What was still unprocessed when the retries ran out.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Unprocessed {
    remaining: usize,
    attempts: u32,
}

/// Sends `pending`, then re-sends whatever `send` reports unprocessed after a backoff delay,
/// until nothing is left or the retries run out (then `exhausted` names what was left). `send`
/// errors end it at once: the SDK has already retried those. Sleep and jitter are injected so
/// the schedule is testable without a server.
async fn drain_unprocessed<T, SendBatch, Sent, Sleep, Slept>(
    mut pending: Vec<T>,
    backoff: Backoff,
    mut send: SendBatch,
    mut sleep: Sleep,
    mut jitter: impl FnMut() -> f64,
    exhausted: impl FnOnce(Unprocessed) -> KvError,
) -> Result<(), KvError>
where
    SendBatch: FnMut(Vec<T>) -> Sent,
    Sent: Future<Output = Result<Vec<T>, KvError>>,
    Sleep: FnMut(Duration) -> Slept,
    Slept: Future<Output = ()>,
{
    let mut retry = 0;
    loop {
        pending = send(pending).await?;
        if pending.is_empty() {
            return Ok(());
        }
        let Some(delay) = backoff.delay(retry, jitter()) else {
            return Err(exhausted(Unprocessed {
                remaining: pending.len(),
                attempts: retry + 1,
            }));
        };
        sleep(delay).await;
        retry += 1;
    }
}

/// A uniform draw in [0, 1) for jitter; `RandomState` is randomly keyed per instance.
fn random_unit() -> f64 {
    use std::hash::BuildHasher;
    let bits = std::hash::RandomState::new().hash_one(Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

impl StoreUri {
    fn parse(uri: &str) -> Result<StoreUri, KvError> {
        let unsupported = |reason: String| KvError::UnsupportedUri {
            uri: uri.to_owned(),
            reason,
        };
        let rest = uri.strip_prefix(URI_SCHEME).ok_or_else(|| {
            unsupported(format!(
                "expected {URI_SCHEME}TABLE[?endpoint=URL&region=REGION&create=true]"
            ))
        })?;
        let (table, query) = rest.split_once('?').unwrap_or((rest, ""));
        let table_is_valid = (3..=255).contains(&table.len())
            && table
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.'));
        if !table_is_valid {
            return Err(unsupported(format!(
                "table name {table:?} must be 3 to 255 characters of a-z, A-Z, 0-9, '_', '-', '.'"
            )));
        }
        let mut parsed = StoreUri {
            table: table.to_owned(),
            endpoint: None,
            region: None,
            create: false,
        };
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, raw) = pair
                .split_once('=')
                .ok_or_else(|| unsupported(format!("query parameter {pair:?} has no value")))?;
            let value = percent_decode(raw)
                .ok_or_else(|| unsupported(format!("query parameter {name:?} is badly escaped")))?;
            match name {
                "endpoint" if value.starts_with("http://") || value.starts_with("https://") => {
                    parsed.endpoint = Some(value);
                }
                "endpoint" => {
                    return Err(unsupported(format!(
                        "endpoint {value:?} must start with http:// or https://"
                    )));
                }
                "region" if !value.is_empty() => parsed.region = Some(value),
                "create" => {
                    parsed.create = match value.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(unsupported(format!(
                                "create={value:?}: use true or false"
                            )));
                        }
                    };
                }
                _ => {
                    return Err(unsupported(format!(
                        "unknown or empty query parameter {name:?}; known: endpoint, region, create"
                    )));
                }
            }
        }
        Ok(parsed)
    }
}

/// Decodes `%XX` escapes; `None` for a malformed escape or non-UTF-8 result.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = std::str::from_utf8(bytes.get(at + 1..at + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).ok()
}

// Keys. The generation number is decimal and ends at the next '#', and the user id (article id)
// comes last after the fixed "u#" ("s#") marker, so no two (generation, kind, id) triples, no
// generation's "info"/"fallback" item and no control item ("current", "counter", "generations",
// "lock") can share a key. No escaping is needed: a string partition key may hold any UTF-8 (up
// to 2048 bytes; user ids are at most 256).

fn generation_prefix(generation: Generation) -> String {
    format!("g#{generation}#")
}

fn user_key(generation: Generation, user_id: &str) -> String {
    format!("g#{generation}#u#{user_id}")
}

fn similar_key(generation: Generation, article_id: &str) -> String {
    format!("g#{generation}#s#{article_id}")
}

fn info_key(generation: Generation) -> String {
    format!("g#{generation}#info")
}

fn fallback_key(generation: Generation) -> String {
    format!("g#{generation}#fallback")
}

fn key_item(pk: String) -> Item {
    HashMap::from([(PK.to_owned(), AttributeValue::S(pk))])
}

fn number(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn put_request(item: Item) -> Result<WriteRequest, KvError> {
    let put = PutRequest::builder()
        .set_item(Some(item))
        .build()
        .map_err(build_error)?;
    Ok(WriteRequest::builder().put_request(put).build())
}

fn delete_request(pk: String) -> Result<WriteRequest, KvError> {
    let delete = DeleteRequest::builder()
        .set_key(Some(key_item(pk)))
        .build()
        .map_err(build_error)?;
    Ok(WriteRequest::builder().delete_request(delete).build())
}

fn info_item(info: &GenerationInfo, sealed: bool) -> Item {
    let mut item = key_item(info_key(info.generation));
    item.insert("generation".into(), number(info.generation));
    item.insert("run_id".into(), AttributeValue::S(info.run_id.clone()));
    item.insert("users".into(), number(info.users));
    item.insert("sealed_at_ms".into(), number(info.sealed_at_ms));
    item.insert("sealed".into(), AttributeValue::Bool(sealed));
    item
}

fn parse_info(item: &Item) -> Result<(GenerationInfo, bool), KvError> {
    let pk = match item.get(PK) {
        Some(AttributeValue::S(pk)) => pk.as_str(),
        _ => "generation info",
    };
    let info = GenerationInfo {
        generation: number_attribute(item, "generation")?,
        run_id: match item.get("run_id") {
            Some(AttributeValue::S(run_id)) => run_id.clone(),
            _ => return Err(corrupt_item(pk, "run_id", "a string")),
        },
        users: number_attribute(item, "users")?,
        sealed_at_ms: number_attribute(item, "sealed_at_ms")?,
    };
    let sealed = match item.get("sealed") {
        Some(AttributeValue::Bool(sealed)) => *sealed,
        _ => return Err(corrupt_item(pk, "sealed", "a boolean")),
    };
    Ok((info, sealed))
}

fn number_attribute<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, KvError> {
    match item.get(name) {
        Some(AttributeValue::N(text)) => text.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| {
        let pk = match item.get(PK) {
            Some(AttributeValue::S(pk)) => pk.as_str(),
            _ => "an item",
        };
        corrupt_item(pk, name, "a number")
    })
}

fn decode_value(item: &Item, generation: Generation, key: &str) -> Result<Vec<RecItem>, KvError> {
    let Some(AttributeValue::B(bytes)) = item.get(VALUE) else {
        return Err(corrupt_item(key, VALUE, "a binary list value"));
    };
    decode_items(bytes.as_ref()).map_err(|source| KvError::Corrupt {
        generation,
        key: key.to_owned(),
        source,
    })
}

fn corrupt_item(pk: &str, attribute: &str, expected: &str) -> KvError {
    KvError::BadRecord {
        backend: BACKEND,
        reason: format!(
            "item {pk:?} has no valid attribute {attribute:?} ({expected} expected); the table \
             holds items this store did not write: use a table of its own"
        ),
    }
}

fn unprocessed_error(table: &str, operation: &str, what: &str, left: Unprocessed) -> KvError {
    backend_error(format!(
        "{operation} on table {table:?} left {} {what} unprocessed after {} attempts; the table is \
         throttled: raise its capacity (or use on-demand billing) and retry",
        left.remaining, left.attempts
    ))
}

fn build_error(error: BuildError) -> KvError {
    backend_error(format!(
        "building a request failed: {error}; this is a bug, please report it"
    ))
}

fn backend_error(reason: String) -> KvError {
    KvError::Backend {
        backend: BACKEND,
        reason,
    }
}

/// A lock owner token unique to this acquisition (process, time, per-process counter).
fn lock_owner() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static ACQUISITIONS: AtomicU64 = AtomicU64::new(0);
    let sequence = ACQUISITIONS.fetch_add(1, Ordering::Relaxed);
    let nonce = (random_unit() * 1e12) as u64;
    format!(
        "{}-{}-{sequence}-{nonce}",
        std::process::id(),
        newsrec_kv::now_ms()
    )
}

fn lease_ms() -> i64 {
    i64::try_from(LOCK_LEASE.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::config::Credentials;
    use newsrec_kv::conformance;

    const ENDPOINT_VAR: &str = "NEWSREC_TEST_DYNAMODB_ENDPOINT";

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap_and_then_stops() {
        let ceilings: Vec<Option<Duration>> = (0..=BATCH_RETRY.max_retries)
            .map(|retry| BATCH_RETRY.delay(retry, 1.0))
            .collect();
        let ms = |millis| Some(Duration::from_millis(millis));
        assert_eq!(
            ceilings,
            vec![
                ms(50),
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1600),
                ms(3200),
                ms(5000),
                None
            ]
        );
        let worst: Duration = ceilings.iter().flatten().sum();
        assert!(
            worst <= Duration::from_secs(12),
            "worst-case sleep {worst:?}"
        );
        // Huge retry numbers saturate instead of overflowing.
        let wide = Backoff {
            max_retries: u32::MAX,
            ..BATCH_RETRY
        };
        assert_eq!(wide.delay(40, 1.0), Some(BATCH_RETRY.cap));
    }

    #[test]
    fn jitter_stays_within_zero_and_the_ceiling() {
        for retry in 0..BATCH_RETRY.max_retries {
            let ceiling = BATCH_RETRY.delay(retry, 1.0).unwrap();
            assert_eq!(BATCH_RETRY.delay(retry, 0.0), Some(Duration::ZERO));
            assert_eq!(
                BATCH_RETRY.delay(retry, 7.0),
                Some(ceiling),
                "draws are clamped"
            );
            for _ in 0..200 {
                let delay = BATCH_RETRY.delay(retry, random_unit()).unwrap();
                assert!(delay <= ceiling, "{delay:?} > {ceiling:?}");
            }
        }
        let draws: Vec<f64> = (0..1000).map(|_| random_unit()).collect();
        assert!(draws.iter().all(|unit| (0.0..1.0).contains(unit)));
        let distinct: HashSet<u64> = draws.iter().map(|unit| unit.to_bits()).collect();
        assert!(distinct.len() > 990, "draws repeat: {}", distinct.len());
        assert!(draws.iter().any(|unit| *unit < 0.2) && draws.iter().any(|unit| *unit > 0.8));
    }

    fn never_exhausted(left: Unprocessed) -> KvError {
        panic!("retries ran out: {left:?}")
    }

    #[tokio::test]
    async fn unprocessed_items_are_resent_until_none_are_left() {
        let sent = std::sync::Mutex::new(Vec::new());
        let slept = std::sync::Mutex::new(Vec::new());
        // The "server" processes one item per call.
        let result = drain_unprocessed(
            vec![1, 2, 3, 4],
            BATCH_RETRY,
            |batch: Vec<i32>| {
                sent.lock().unwrap().push(batch.clone());
                async move { Ok(batch[1..].to_vec()) }
            },
            |delay| {
                slept.lock().unwrap().push(delay);
                async {}
            },
            || 1.0,
            never_exhausted,
        )
        .await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(
            sent.into_inner().unwrap(),
            vec![vec![1, 2, 3, 4], vec![2, 3, 4], vec![3, 4], vec![4]]
        );
        let ms = Duration::from_millis;
        assert_eq!(slept.into_inner().unwrap(), vec![ms(50), ms(100), ms(200)]);
    }

    #[tokio::test]
    async fn retries_are_bounded_and_name_what_was_left() {
        let mut calls = 0;
        let mut slept = Vec::new();
        let mut left = None;
        let result = drain_unprocessed(
            vec!["a", "b", "c"],
            BATCH_RETRY,
            |batch: Vec<&str>| {
                calls += 1;
                // Always one processed, one new item unprocessed: never drains.
                async move { Ok(batch[1..].iter().copied().chain(["x"]).collect()) }
            },
            |delay| {
                slept.push(delay);
                async {}
            },
            || 0.5,
            |unprocessed| {
                left = Some(unprocessed);
                unprocessed_error("t1", "writing user lists", "items", unprocessed)
            },
        )
        .await;
        assert_eq!(calls, 1 + BATCH_RETRY.max_retries);
        assert_eq!(
            left,
            Some(Unprocessed {
                remaining: 3,
                attempts: 1 + BATCH_RETRY.max_retries
            })
        );
        // Half of each ceiling (jitter 0.5), and never more than the cap.
        assert_eq!(slept.len(), BATCH_RETRY.max_retries as usize);
        assert_eq!(slept[0], Duration::from_millis(25));
        assert!(slept.iter().all(|delay| *delay <= BATCH_RETRY.cap / 2));
        let message = result.unwrap_err().to_string();
        assert!(
            message.contains("left 3 items unprocessed after 9 attempts"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_send_error_stops_the_retries() {
        let mut calls = 0;
        let result = drain_unprocessed(
            vec![1],
            BATCH_RETRY,
            |_: Vec<i32>| {
                calls += 1;
                async { Err(backend_error("boom".into())) }
            },
            |_| async {},
            || 0.5,
            never_exhausted,
        )
        .await;
        assert_eq!(calls, 1);
        assert!(matches!(result, Err(KvError::Backend { .. })), "{result:?}");
    }

    #[test]
    fn store_uris_parse_or_are_refused() {
        assert_eq!(
            StoreUri::parse("dynamodb://recs").unwrap(),
            StoreUri {
                table: "recs".into(),
                endpoint: None,
                region: None,
                create: false
            }
        );
        assert_eq!(
            StoreUri::parse(
                "dynamodb://news.recs-1?endpoint=http%3A%2F%2F127.0.0.1:5000&region=eu-west-1\
                 &create=true"
            )
            .unwrap(),
            StoreUri {
                table: "news.recs-1".into(),
                endpoint: Some("http://127.0.0.1:5000".into()),
                region: Some("eu-west-1".into()),
                create: true
            }
        );
        for bad in [
            "redis://x",
            "dynamodb://",
            "dynamodb://ab",
            "dynamodb://a/b/c",
            "dynamodb://recs?create=yes",
            "dynamodb://recs?endpoint=127.0.0.1:5000",
            "dynamodb://recs?colour=blue",
            "dynamodb://recs?region",
            "dynamodb://recs?region=%zz",
        ] {
            let error = StoreUri::parse(bad).unwrap_err();
            assert!(
                matches!(error, KvError::UnsupportedUri { .. }),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn keys_do_not_collide() {
        assert_eq!(user_key(12, "a#b"), "g#12#u#a#b");
        assert_ne!(user_key(1, "2#u#x"), user_key(12, "x"));
        assert_ne!(user_key(1, "info"), info_key(1));
        assert!(user_key(3, "").starts_with(&generation_prefix(3)));
        assert!(!user_key(13, "x").starts_with(&generation_prefix(1)));
        assert_eq!(similar_key(12, "a#b"), "g#12#s#a#b");
        assert_ne!(similar_key(1, "x"), user_key(1, "x"));
        assert_ne!(similar_key(1, "2#s#x"), similar_key(12, "x"));
        assert_ne!(similar_key(1, ""), info_key(1));
        assert_ne!(user_key(1, "s#x"), similar_key(1, "x"));
        assert!(similar_key(3, "").starts_with(&generation_prefix(3)));
    }

    // --- Against a DynamoDB endpoint (moto, DynamoDB Local, or AWS) -------------------------

    fn test_endpoint() -> Option<String> {
        let endpoint = std::env::var(ENDPOINT_VAR).ok().filter(|e| !e.is_empty());
        if endpoint.is_none() {
            println!("skipped: set {ENDPOINT_VAR} (e.g. http://127.0.0.1:5000) to run");
        }
        endpoint
    }

    /// Static dummy credentials and a region, so tests never look for real ones.
    fn test_loader() -> ConfigLoader {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "newsrec-test"))
    }

    fn unique_table(case: &str) -> String {
        use std::sync::atomic::{AtomicU64, Ordering};
        static TABLES: AtomicU64 = AtomicU64::new(0);
        let sequence = TABLES.fetch_add(1, Ordering::Relaxed);
        format!(
            "newsrec-test-{case}-{}-{}-{sequence}",
            std::process::id(),
            newsrec_kv::now_ms()
        )
    }

    async fn connect_test_store(endpoint: &str, case: &str) -> DynamoStore {
        let uri = format!(
            "dynamodb://{}?endpoint={endpoint}&create=true",
            unique_table(case)
        );
        DynamoStore::connect_with(&uri, test_loader())
            .await
            .unwrap_or_else(|error| panic!("{ENDPOINT_VAR}={endpoint} is set but: {error}"))
    }

    async fn delete_table(table: &Table) {
        if let Err(error) = table
            .client
            .delete_table()
            .table_name(&*table.name)
            .send()
            .await
        {
            eprintln!("could not delete test table {}: {error}", table.name);
        }
    }

    /// Runs `body` on a fresh table, deleting the table afterwards even when `body` panics.
    async fn with_store<F, Fut>(case: &str, body: F)
    where
        F: FnOnce(Arc<DynamoStore>, String) -> Fut,
        Fut: Future<Output = ()> + std::marker::Send + 'static,
    {
        let Some(endpoint) = test_endpoint() else {
            return;
        };
        let store = Arc::new(connect_test_store(&endpoint, case).await);
        let outcome = tokio::spawn(body(Arc::clone(&store), endpoint)).await;
        delete_table(&store.table).await;
        if let Err(error) = outcome {
            std::panic::resume_unwind(error.into_panic());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dynamodb_conformance_suite() {
        let Some(endpoint) = test_endpoint() else {
            return;
        };
        let started = Instant::now();
        let tables = Arc::new(std::sync::Mutex::new(Vec::new()));
        let suite = tokio::spawn({
            let tables = Arc::clone(&tables);
            async move {
                conformance::run_all(|case| {
                    // The suite's factory is synchronous; connecting is not.
                    let store = tokio::task::block_in_place(|| {
                        tokio::runtime::Handle::current()
                            .block_on(connect_test_store(&endpoint, case))
                    });
                    tables.lock().unwrap().push(store.table.clone());
                    store
                })
                .await;
            }
        })
        .await;
        let tables = std::mem::take(&mut *tables.lock().unwrap());
        for table in &tables {
            delete_table(table).await;
        }
        if let Err(error) = suite {
            std::panic::resume_unwind(error.into_panic());
        }
        println!("dynamodb conformance suite took {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn dynamodb_bulk_writes_span_batches_and_count_distinct_users() {
        with_store("bulk", |store, _| async move {
            let list = |user: String, article: &str| UserList {
                user_id: user,
                items: vec![RecItem {
                    article_id: article.into(),
                    score: 1.0,
                }],
            };
            let mut writer = store.create_generation("run-bulk").await.unwrap();
            // 60 lists in one call (three batches), one user twice: the last list wins.
            let mut lists: Vec<UserList> =
                (0..59).map(|n| list(format!("u{n}"), "first")).collect();
            lists.push(list("u7".into(), "second"));
            writer.put_users(lists).await.unwrap();
            // A user written again in a later call is not counted twice.
            writer
                .put_users(vec![list("u8".into(), "later")])
                .await
                .unwrap();
            writer.put_users(Vec::new()).await.unwrap();
            // Similar lists: two batches, one article twice in a call and again later; none of
            // them counts as a user.
            let similar = |article: String, other: &str| SimilarList {
                article_id: article,
                items: vec![RecItem {
                    article_id: other.into(),
                    score: 0.5,
                }],
            };
            let mut lists: Vec<SimilarList> =
                (0..30).map(|n| similar(format!("a{n}"), "first")).collect();
            lists.push(similar("a3".into(), "second"));
            writer.put_similar(lists).await.unwrap();
            writer
                .put_similar(vec![similar("a4".into(), "later")])
                .await
                .unwrap();
            writer.put_similar(Vec::new()).await.unwrap();
            let generation = writer.generation();
            let info = writer.finish(59).await.unwrap();
            assert_eq!(info.users, 59);
            store.activate(generation).await.unwrap();
            let article = |list: Option<StoredList>| list.unwrap().items[0].article_id.clone();
            assert_eq!(article(store.user_list("u7").await.unwrap()), "second");
            assert_eq!(article(store.user_list("u8").await.unwrap()), "later");
            assert_eq!(article(store.user_list("u58").await.unwrap()), "first");
            assert_eq!(article(store.similar_list("a3").await.unwrap()), "second");
            assert_eq!(article(store.similar_list("a4").await.unwrap()), "later");
            assert_eq!(article(store.similar_list("a29").await.unwrap()), "first");
            assert_eq!(store.similar_list("u7").await.unwrap(), None);
            assert_eq!(store.user_list("a3").await.unwrap(), None);
            assert_eq!(store.fallback_list().await.unwrap().unwrap().items, vec![]);
        })
        .await;
    }

    #[tokio::test]
    async fn dynamodb_a_second_publisher_is_refused_while_one_writes() {
        with_store("lock", |store, _| async move {
            let writer = store.create_generation("run-a").await.unwrap();
            let error = store.create_generation("run-b").await.unwrap_err();
            assert!(matches!(error, KvError::Locked { .. }), "{error}");
            let error = store.prune(1).await.unwrap_err();
            assert!(matches!(error, KvError::Locked { .. }), "{error}");
            // A failed finish releases the lock too.
            assert!(matches!(
                writer.finish(1).await,
                Err(KvError::CountMismatch { .. })
            ));
            let writer = store.create_generation("run-b").await.unwrap();
            drop(writer);
            // Dropping releases in the background; the next publish gets in shortly after.
            let mut attempts = 0;
            loop {
                match store.create_generation("run-c").await {
                    Ok(_) => break,
                    Err(KvError::Locked { .. }) if attempts < 50 => attempts += 1,
                    Err(error) => panic!("lock not released after a drop: {error}"),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    #[tokio::test]
    async fn dynamodb_an_expired_lock_is_taken_over() {
        with_store("expired", |store, _| async move {
            let mut stale = key_item(LOCK_KEY.into());
            stale.insert("owner".into(), AttributeValue::S("dead-publisher".into()));
            stale.insert("expires_at_ms".into(), number(newsrec_kv::now_ms() - 1));
            store.table.put_item("test", stale).await.unwrap();
            let generation = conformance::publish(&*store, "run-a", &[("u1", &["a1"])]).await;
            assert_eq!(
                store.current().await.unwrap().unwrap().generation,
                generation
            );
        })
        .await;
    }

    #[tokio::test]
    async fn dynamodb_a_second_handle_sees_a_new_generation_after_refresh() {
        with_store("refresh", |publisher, endpoint| async move {
            let uri = format!("dynamodb://{}?endpoint={endpoint}", publisher.table.name);
            let server = DynamoStore::connect_with(&uri, test_loader())
                .await
                .unwrap();
            assert_eq!(server.user_list("u1").await.unwrap(), None);
            let generation = conformance::publish(&*publisher, "run-a", &[("u1", &["a1"])]).await;
            assert_eq!(
                server.user_list("u1").await.unwrap(),
                None,
                "no refresh yet"
            );
            assert!(server.refresh().await.unwrap());
            let list = server.user_list("u1").await.unwrap().unwrap();
            assert_eq!(list.generation, generation);
            assert_eq!(
                server.fallback_list().await.unwrap().unwrap().items.len(),
                2
            );
            assert!(!server.refresh().await.unwrap());
        })
        .await;
    }

    #[tokio::test]
    async fn dynamodb_a_lagging_handle_follows_the_pointer_when_its_generation_is_pruned() {
        with_store("lagging", |publisher, endpoint| async move {
            conformance::publish(&*publisher, "run-a", &[("u1", &["a1"])]).await;
            let uri = format!("dynamodb://{}?endpoint={endpoint}", publisher.table.name);
            let server = DynamoStore::connect_with(&uri, test_loader())
                .await
                .unwrap();
            let second = conformance::publish(&*publisher, "run-b", &[("u1", &["b1"])]).await;
            publisher.prune(0).await.unwrap();
            let similar = server.similar_list("a1").await.unwrap().unwrap();
            assert_eq!(
                similar.generation, second,
                "a similar-list miss follows too"
            );
            let list = server.user_list("u1").await.unwrap().unwrap();
            assert_eq!(list.generation, second);
            assert_eq!(list.items[0].article_id, "b1");
            assert_eq!(server.current().await.unwrap().unwrap().generation, second);
            assert_eq!(server.user_list("nobody").await.unwrap(), None);
        })
        .await;
    }

    #[tokio::test]
    async fn dynamodb_a_publish_that_dies_midway_is_invisible_and_pruned() {
        with_store("dies", |store, _| async move {
            let first = conformance::publish(&*store, "run-a", &[("u1", &["a1"])]).await;
            let dead = {
                let mut writer = store.create_generation("run-b").await.unwrap();
                writer
                    .put_users(vec![UserList {
                        user_id: "u2".into(),
                        items: vec![],
                    }])
                    .await
                    .unwrap();
                writer
                    .put_similar(vec![SimilarList {
                        article_id: "a7".into(),
                        items: vec![],
                    }])
                    .await
                    .unwrap();
                let dead = writer.generation();
                // Model a crash: no finish, no release; the lock is left to expire (below).
                std::mem::forget(writer);
                dead
            };
            let mut stale = key_item(LOCK_KEY.into());
            stale.insert("owner".into(), AttributeValue::S("crashed".into()));
            stale.insert("expires_at_ms".into(), number(newsrec_kv::now_ms() - 1));
            store.table.put_item("test", stale).await.unwrap();
            assert_eq!(store.generations().await.unwrap().len(), 1);
            assert!(matches!(
                store.activate(dead).await,
                Err(KvError::NoSuchGeneration(_))
            ));
            let second = conformance::publish(&*store, "run-c", &[("u1", &["c1"])]).await;
            assert!(second > dead);
            assert_eq!(store.prune(5).await.unwrap(), vec![dead]);
            let left = store
                .table
                .get_item("test", user_key(dead, "u2"))
                .await
                .unwrap();
            assert_eq!(left, None, "the dead publish's items are deleted");
            let left = store
                .table
                .get_item("test", similar_key(dead, "a7"))
                .await
                .unwrap();
            assert_eq!(left, None, "the dead publish's similar lists are deleted");
            assert!(
                store
                    .table
                    .get_item("test", similar_key(first, "a1"))
                    .await
                    .unwrap()
                    .is_some()
            );
            assert_eq!(store.prune(1).await.unwrap(), vec![first]);
            assert!(
                store
                    .table
                    .get_item("test", similar_key(first, "a1"))
                    .await
                    .unwrap()
                    .is_none(),
                "a pruned generation's similar lists are deleted with it"
            );
            assert!(
                store
                    .table
                    .get_item("test", info_key(first))
                    .await
                    .unwrap()
                    .is_none()
            );
            assert_eq!(store.table.live_generations().await.unwrap(), vec![second]);
        })
        .await;
    }

    #[tokio::test]
    async fn dynamodb_a_missing_table_is_named_with_what_to_do() {
        let Some(endpoint) = test_endpoint() else {
            return;
        };
        let uri = format!("dynamodb://{}?endpoint={endpoint}", unique_table("missing"));
        let error = DynamoStore::connect_with(&uri, test_loader())
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(
                error,
                KvError::Backend {
                    backend: "dynamodb",
                    ..
                }
            ),
            "{message}"
        );
        assert!(message.contains("create=true"), "{message}");
    }
}
