//! Opening the lake and the serving store a configuration names. Nothing else is mapped here:
//! each section of the configuration already is its stage's own settings type.

use std::{path::Path, sync::Arc};

use anyhow::Context;
use newsrec_config::Config;
use newsrec_kv::RecStore;
use newsrec_kv_open::{Backend, OpenOptions};
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
    let backend = Backend::of(uri).context("kv.uri")?;
    let embedded_dir = data_dir.join("kv");
    let options = OpenOptions {
        embedded_dir: &embedded_dir,
        serving,
    };
    newsrec_kv_open::open(uri, &options)
        .await
        .with_context(|| match backend {
            Backend::Embedded => format!("opening the serving store in {}", embedded_dir.display()),
            other => format!("connecting to the {} serving store", other.name()),
        })
}
