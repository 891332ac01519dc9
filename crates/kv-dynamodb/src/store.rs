//! [`DynamoStore`]: connects, serves the current generation and runs the [`RecStore`]
//! operations, prune included.

use std::{
    collections::HashSet,
    sync::{Arc, RwLock},
};

use async_trait::async_trait;
use aws_config::{BehaviorVersion, ConfigLoader};
use aws_sdk_dynamodb::{Client, config::Region};

use newsrec_kv::{
    Generation, GenerationInfo, GenerationWriter, KvError, RecItem, RecStore, StoredList,
};

use crate::{
    error::backend_error,
    item::decode_value,
    keys::{generation_prefix, info_key, similar_key, user_key},
    table::{Table, delete_request},
    uri::StoreUri,
    writer::DynamoWriter,
};

/// `begins_with` terms OR-ed into one prune Scan filter (keeps the expression small).
const PRUNE_PREFIXES_PER_SCAN: usize = 16;

/// The DynamoDB store: one table, reached through the AWS SDK.
#[derive(Debug)]
pub struct DynamoStore {
    table: Table,
    /// The generation this handle serves, with its fallback list; replaced whole on a switch.
    serving: RwLock<Option<Arc<Serving>>>,
}

#[derive(Debug)]
pub(crate) struct Serving {
    pub(crate) info: GenerationInfo,
    pub(crate) fallback: Vec<RecItem>,
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

#[cfg(test)]
mod tests;
