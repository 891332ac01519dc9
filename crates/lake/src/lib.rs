//! The lake: newsrec's object-store layout, the only hand-off between batch stages.
//!
//! Consumes an object-store URI (`file://` by default, `memory://` in tests) and events or
//! training output; produces Hive-partitioned, zstd-compressed Parquet objects that Spark, DuckDB
//! and Athena read as they are, and reads them back by time window. The storage itself is
//! `object_store`; this crate owns only the *layout* (see `docs/lake-layout.md`): partition paths,
//! the Parquet encoding, and where a training run puts its output.

mod count;
mod error;
mod events;
pub mod layout;
pub mod manifest;
pub mod recs;
mod refused;
mod runs;

pub use count::EventCount;
pub use error::LakeError;
pub use events::{EventColumns, TableEncoder, TimeWindow, WrittenObject};
pub use manifest::RunManifest;
/// Object paths as the lake's methods take them.
pub use object_store::path::Path as ObjectPath;
pub use refused::ErrorRecord;

use std::{path::PathBuf, sync::Arc};

use object_store::{
    DynObjectStore,
    aws::{AmazonS3Builder, AmazonS3ConfigKey},
    local::LocalFileSystem,
    memory::InMemory,
    prefix::PrefixStore,
};

/// A handle on one lake: an object store plus the layout rules.
#[derive(Debug, Clone)]
pub struct Lake {
    store: Arc<DynObjectStore>,
    uri: String,
    multipart_threshold: usize,
}

/// Objects above this size go up as multipart uploads (S3 caps a single PUT at 5 GiB, and parts
/// let a large object resume part by part).
const MULTIPART_THRESHOLD: usize = 16 * 1024 * 1024;
/// Size of each uploaded part (S3's minimum is 5 MiB).
pub(crate) const MULTIPART_PART_BYTES: usize = 8 * 1024 * 1024;

fn open_s3(
    uri: &str,
    rest: &str,
    settings: &[(&str, &str)],
) -> Result<Arc<DynObjectStore>, LakeError> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(LakeError::UnsupportedUri {
            uri: uri.to_owned(),
        });
    }
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    for (key, value) in settings {
        let key: AmazonS3ConfigKey = key.parse().map_err(|source| LakeError::Store {
            path: uri.to_owned(),
            source,
        })?;
        builder = builder.with_config(key, *value);
    }
    let endpoint = builder
        .get_config_value(&AmazonS3ConfigKey::Endpoint)
        .unwrap_or_default();
    if endpoint.starts_with("http://") {
        builder = builder.with_allow_http(true);
    }
    let s3 = builder.build().map_err(|source| LakeError::Store {
        path: uri.to_owned(),
        source,
    })?;
    let prefix = prefix.trim_matches('/');
    Ok(if prefix.is_empty() {
        Arc::new(s3)
    } else {
        Arc::new(PrefixStore::new(s3, prefix))
    })
}

impl Lake {
    /// Opens the lake at `uri`.
    ///
    /// - `file:///abs/path` or a plain path: a local folder (created when missing); writes are
    ///   fsynced, file and folder, before they are reported done.
    /// - `memory://`: a process-local in-memory store, for tests.
    /// - `s3://bucket[/prefix]`: S3 or an S3-compatible server. Credentials, region and endpoint
    ///   come from the usual AWS environment variables (`AWS_ACCESS_KEY_ID`, `AWS_REGION`,
    ///   `AWS_ENDPOINT_URL`, …); requests are path-style unless
    ///   `AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true`; a plain `http://` endpoint is allowed as given.
    pub fn open(uri: &str) -> Result<Lake, LakeError> {
        Lake::open_with(uri, &[])
    }

    /// Like [`Lake::open`], with S3 settings given explicitly (`("aws_endpoint_url", "…")`, …)
    /// on top of the environment; ignored by other schemes.
    pub fn open_with(uri: &str, s3_settings: &[(&str, &str)]) -> Result<Lake, LakeError> {
        let store: Arc<DynObjectStore> = if let Some(rest) = uri.strip_prefix("s3://") {
            open_s3(uri, rest, s3_settings)?
        } else if uri == "memory://" || uri == "memory:" {
            Arc::new(InMemory::new())
        } else if let Some(path) = local_path(uri) {
            std::fs::create_dir_all(&path).map_err(|source| LakeError::CreateRoot {
                path: path.display().to_string(),
                source,
            })?;
            let local = LocalFileSystem::new_with_prefix(&path)
                .map_err(|source| LakeError::Store {
                    path: uri.to_owned(),
                    source,
                })?
                // Leaves no half-written temp files behind when a put fails midway.
                .with_automatic_cleanup(true);
            Arc::new(local)
        } else {
            return Err(LakeError::UnsupportedUri {
                uri: uri.to_owned(),
            });
        };
        Ok(Lake {
            store,
            uri: uri.to_owned(),
            multipart_threshold: MULTIPART_THRESHOLD,
        })
    }

    /// Objects larger than `bytes` are uploaded in parts (default 16 MiB).
    pub fn with_multipart_threshold(mut self, bytes: usize) -> Lake {
        self.multipart_threshold = bytes.max(1);
        self
    }

    /// Wraps an existing object store (for callers that build their own, e.g. with credentials).
    pub fn from_store(store: Arc<DynObjectStore>, uri: impl Into<String>) -> Lake {
        Lake {
            store,
            uri: uri.into(),
            multipart_threshold: MULTIPART_THRESHOLD,
        }
    }

    /// The URI the lake was opened with.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The folder of a local lake; `None` for S3 and memory lakes.
    pub fn local_root(&self) -> Option<PathBuf> {
        local_path(&self.uri)
    }

    /// The local folder holding the objects under `prefix` (a `layout` folder), for callers
    /// that work on its files directly; `None` for S3 and memory lakes.
    pub fn local_folder(&self, prefix: &ObjectPath) -> Option<PathBuf> {
        let mut folder = self.local_root()?;
        folder.extend(prefix.parts().map(|part| part.as_ref().to_owned()));
        Some(folder)
    }

    /// The underlying object store.
    pub fn store(&self) -> &Arc<DynObjectStore> {
        &self.store
    }

    /// Makes a just-written object of a local lake durable: the file, then every folder from its
    /// own up to the lake's root (a new `dt=`/`hour=` folder's entry is only durable once its
    /// parent is synced). `object_store`'s local store renames a finished temporary file into
    /// place but does not sync; a lake object reported written must survive a power cut, because
    /// ingest truncates its write-ahead log after it. S3 and memory lakes need nothing here.
    pub(crate) async fn sync_local(&self, path: &ObjectPath) -> Result<(), LakeError> {
        let (Some(root), Some(file)) = (self.local_root(), self.local_folder(path)) else {
            return Ok(());
        };
        let sync = move || -> std::io::Result<()> {
            std::fs::File::open(&file)?.sync_all()?;
            let mut folder = file.parent();
            while let Some(dir) = folder {
                std::fs::File::open(dir)?.sync_all()?;
                if dir == root {
                    break;
                }
                folder = dir.parent();
            }
            Ok(())
        };
        tokio::task::spawn_blocking(sync)
            .await
            .map_err(|join| LakeError::bad_object(path, join))?
            .map_err(|source| LakeError::Sync {
                path: path.to_string(),
                source,
            })
    }
}

fn local_path(uri: &str) -> Option<PathBuf> {
    if let Some(rest) = uri.strip_prefix("file://") {
        return (!rest.is_empty()).then(|| PathBuf::from(rest));
    }
    if uri.contains("://") || uri.is_empty() {
        return None;
    }
    Some(PathBuf::from(uri))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert!(Lake::open("memory://").is_ok());
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        let lake = Lake::open(&format!("file://{}", nested.display())).unwrap();
        assert!(nested.is_dir());
        assert!(lake.uri().starts_with("file://"));
        assert_eq!(
            lake.local_folder(&layout::run_prefix("r-1")),
            Some(nested.join("runs").join("r-1"))
        );
        assert_eq!(
            Lake::open("memory://")
                .unwrap()
                .local_folder(&layout::run_prefix("r-1")),
            None
        );
        let error = Lake::open("gopher://x").unwrap_err();
        assert_eq!(
            error.to_string(),
            "unsupported lake uri \"gopher://x\": use file:///path, a plain path, s3://bucket/prefix or memory://"
        );
    }
}
