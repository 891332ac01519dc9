//! Opening the lake and the serving store a configuration names. Nothing else is mapped here:
//! each section of the configuration already is its stage's own settings type.

use std::{path::Path, sync::Arc};

use anyhow::{Context, bail};
use newsrec_config::Config;
use newsrec_kv::{DynamoStore, EmbeddedStore, RecStore, RedisStore};
use newsrec_lake::Lake;

/// The lake of this node: `lake.uri`, or `<data-dir>/lake`.
pub fn open_lake(config: &Config, data_dir: &Path) -> anyhow::Result<Lake> {
    let uri = if config.lake.uri.is_empty() {
        data_dir.join("lake").display().to_string()
    } else {
        config.lake.uri.clone()
    };
    Lake::open(&uri).with_context(|| format!("opening the lake at {uri}"))
}

/// The serving store of this node: `kv.uri` (`redis://host:port/db?prefix=NAME`,
/// `dynamodb://TABLE?endpoint=URL&region=R&create=true`), or the embedded store in
/// `<data-dir>/kv` when empty. A `serving` handle of the embedded store caches the served
/// generation whole (see `EmbeddedStore::open_serving`); publish and rollback need no cache.
pub async fn open_store(
    config: &Config,
    data_dir: &Path,
    serving: bool,
) -> anyhow::Result<Arc<dyn RecStore>> {
    let uri = config.kv.uri.as_str();
    if uri.starts_with("redis://") {
        let store = RedisStore::connect(uri)
            .await
            .context("connecting to the Redis serving store")?;
        return Ok(Arc::new(store));
    }
    if uri.starts_with("dynamodb://") {
        let store = DynamoStore::connect(uri)
            .await
            .context("connecting to the DynamoDB serving store")?;
        return Ok(Arc::new(store));
    }
    if !uri.is_empty() {
        bail!(
            "unsupported kv.uri {uri:?}: use redis://…, dynamodb://… or leave it empty for the embedded store"
        );
    }
    let dir = data_dir.join("kv");
    let store = if serving {
        EmbeddedStore::open_serving(&dir)
    } else {
        EmbeddedStore::open(&dir)
    }
    .with_context(|| format!("opening the serving store in {}", dir.display()))?;
    Ok(Arc::new(store))
}
