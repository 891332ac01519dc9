//! The lake: newsrec's object-store layout, the only hand-off between batch stages.
//!
//! Consumes an object-store URI (`file://` by default, `memory://` in tests) and events or
//! training output; produces Hive-partitioned, zstd-compressed Parquet objects that Spark, DuckDB
//! and Athena read as they are, and reads them back by time window. The storage itself is
//! `object_store`; this crate owns only the *layout* (see `docs/lake-layout.md`): partition paths,
//! the Parquet encoding, and where a training run puts its output.

mod error;
mod events;
pub mod layout;
pub mod manifest;
pub mod recs;
mod runs;

pub use error::LakeError;
pub use events::{EventColumns, TimeWindow, WrittenObject};
pub use manifest::RunManifest;

use std::{path::PathBuf, sync::Arc};

use object_store::{DynObjectStore, local::LocalFileSystem, memory::InMemory};

/// A handle on one lake: an object store plus the layout rules.
#[derive(Debug, Clone)]
pub struct Lake {
    store: Arc<DynObjectStore>,
    uri: String,
}

impl Lake {
    /// Opens the lake at `uri`.
    ///
    /// - `file:///abs/path` or a plain path: a local folder (created when missing); writes are
    ///   fsynced, file and folder, before they are reported done.
    /// - `memory://`: a process-local in-memory store, for tests.
    pub fn open(uri: &str) -> Result<Lake, LakeError> {
        let store: Arc<DynObjectStore> = if uri == "memory://" || uri == "memory:" {
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
                .with_fsync(true)
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
        })
    }

    /// Wraps an existing object store (for callers that build their own, e.g. with credentials).
    pub fn from_store(store: Arc<DynObjectStore>, uri: impl Into<String>) -> Lake {
        Lake {
            store,
            uri: uri.into(),
        }
    }

    /// The URI the lake was opened with.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The underlying object store.
    pub fn store(&self) -> &Arc<DynObjectStore> {
        &self.store
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
        let error = Lake::open("gopher://x").unwrap_err();
        assert_eq!(
            error.to_string(),
            "unsupported lake uri \"gopher://x\": use file:///path, a plain path or memory://"
        );
    }
}
