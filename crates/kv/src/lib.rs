//! The serving store: per-user recommendation lists, published in whole generations.
//!
//! Consumes the lists a training run produced (through `publish`); produces lookups for `serve`.
//! The [`RecStore`] trait is the contract every backend meets; [`EmbeddedStore`] is the default
//! backend (redb files in the node's folder). The networked backends live in their own crates
//! (`newsrec-kv-redis`, `newsrec-kv-dynamodb`), so a crate that only reads through the trait
//! never compiles their clients; `newsrec-kv-open` turns a store uri into one of them. The
//! shared conformance suite is behind the `conformance` feature, for backends' tests. Key and file
//! layouts are in `docs/kv-layout.md`.
//!
//! # Contract
//! - A **generation** is one complete set of user lists plus a fallback list, numbered upward.
//!   It is written through a [`GenerationWriter`], sealed by [`GenerationWriter::finish`] (which
//!   verifies the number of users stored), and immutable afterwards.
//! - Readers only ever see the **current** generation. [`RecStore::activate`] switches the
//!   current pointer atomically: a reader sees all of the old generation or all of the new one,
//!   never a mix, never a generation that is not sealed.
//! - A generation that was never sealed (a publish that died) is invisible and is cleaned up by
//!   the next [`RecStore::prune`].
//! - A **missing user** returns `Ok(None)` from [`RecStore::user_list`]; callers fall back. The
//!   same holds for an article without a list in [`RecStore::similar_list`].
//! - Readers in other processes pick a new current generation up on [`RecStore::refresh`].

mod codec;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod embedded;

pub use codec::{CodecError, decode_items, encode_items};
pub use embedded::EmbeddedStore;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Generation number; a new generation always gets a higher number than every existing one.
pub type Generation = u64;

/// One recommended article.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecItem {
    pub article_id: String,
    pub score: f32,
}

/// One user's list, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct UserList {
    pub user_id: String,
    pub items: Vec<RecItem>,
}

/// One article's most similar articles, best first (from the co-occurrence model).
#[derive(Debug, Clone, PartialEq)]
pub struct SimilarList {
    pub article_id: String,
    pub items: Vec<RecItem>,
}

/// What a sealed generation holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationInfo {
    pub generation: Generation,
    /// The training run it was published from.
    pub run_id: String,
    /// Users with a list.
    pub users: u64,
    /// When it was sealed, epoch milliseconds.
    pub sealed_at_ms: i64,
}

/// A list read from the store, with the generation it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredList {
    pub generation: Generation,
    pub items: Vec<RecItem>,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    #[error("store i/o error at {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("embedded store error in {path}: {source}")]
    Embedded {
        path: String,
        /// The embedded engine's error; boxed so its type is not part of this crate's API.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("corrupt value for {key:?} in generation {generation}: {source}")]
    Corrupt {
        generation: Generation,
        key: String,
        source: CodecError,
    },
    #[error("generation {0} does not exist or is not sealed")]
    NoSuchGeneration(Generation),
    #[error("generation {generation} holds {stored} users, expected {expected}; not sealed")]
    CountMismatch {
        generation: Generation,
        stored: u64,
        expected: u64,
    },
    #[error("another publish holds the store lock at {path}; wait for it or remove a stale lock")]
    Locked { path: String },
    #[error("no earlier generation to roll back to (current is {current:?})")]
    NothingToRollBackTo { current: Option<Generation> },
    #[error("unsupported store uri {uri:?}: {reason}")]
    UnsupportedUri { uri: String, reason: String },
    /// The backend could not be reached or refused the operation; a retry may succeed.
    #[error("{backend} error: {reason}")]
    Backend {
        backend: &'static str,
        reason: String,
    },
    /// The backend holds a record (not a list value) this store cannot read: generation info,
    /// a pointer, an item it did not write.
    #[error("{backend} holds a record it cannot read: {reason}")]
    BadRecord {
        backend: &'static str,
        reason: String,
    },
}

/// What kind of failure a [`KvError`] is: callers choose a retry or a status by it, never by
/// matching variants (backends add variants; kinds stay).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The store cannot be reached or read right now; a retry may succeed.
    Unavailable,
    /// A stored value or record cannot be decoded; retrying reads the same bytes.
    Corrupt,
    /// The generation asked for does not exist (or there is none to roll back to).
    NotFound,
    /// Another publisher holds the store.
    Locked,
    /// The request cannot succeed as made: an unsupported uri, a count that does not match.
    Invalid,
}

impl KvError {
    /// The kind of this failure (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            KvError::Io { .. } | KvError::Embedded { .. } | KvError::Backend { .. } => {
                ErrorKind::Unavailable
            }
            KvError::Corrupt { .. } | KvError::BadRecord { .. } => ErrorKind::Corrupt,
            KvError::NoSuchGeneration(_) | KvError::NothingToRollBackTo { .. } => {
                ErrorKind::NotFound
            }
            KvError::Locked { .. } => ErrorKind::Locked,
            KvError::CountMismatch { .. } | KvError::UnsupportedUri { .. } => ErrorKind::Invalid,
        }
    }
}

/// The serving store contract (see the crate documentation).
#[async_trait]
pub trait RecStore: Send + Sync + std::fmt::Debug {
    /// Starts writing a new, invisible generation for `run_id`.
    async fn create_generation(&self, run_id: &str) -> Result<Box<dyn GenerationWriter>, KvError>;

    /// Sealed generations, oldest first.
    async fn generations(&self) -> Result<Vec<GenerationInfo>, KvError>;

    /// The generation readers see, if any was ever activated.
    async fn current(&self) -> Result<Option<GenerationInfo>, KvError>;

    /// Makes a sealed generation current, atomically.
    async fn activate(&self, generation: Generation) -> Result<(), KvError>;

    /// Deletes unsealed leftovers and every sealed generation except the current one and the
    /// `keep` newest; returns the generations deleted.
    async fn prune(&self, keep: usize) -> Result<Vec<Generation>, KvError>;

    /// Re-reads the current pointer (a no-op where reads always go to the source); true when
    /// the generation this handle serves changed.
    async fn refresh(&self) -> Result<bool, KvError>;

    /// The user's list in the current generation; `None` for an unknown user or no generation.
    async fn user_list(&self, user_id: &str) -> Result<Option<StoredList>, KvError>;

    /// The current generation's fallback list (for users without a list).
    async fn fallback_list(&self) -> Result<Option<StoredList>, KvError>;

    /// The article's similar-articles list in the current generation; `None` when unknown.
    async fn similar_list(&self, article_id: &str) -> Result<Option<StoredList>, KvError>;

    /// True while the served generation is still being pulled into this handle's memory
    /// (reads are correct meanwhile, only slower). Backends without a local cache never warm.
    fn warming(&self) -> bool {
        false
    }
}

/// Writes one generation; dropping it without [`GenerationWriter::finish`] leaves nothing visible.
#[async_trait]
pub trait GenerationWriter: Send + std::fmt::Debug {
    /// The number the generation will have.
    fn generation(&self) -> Generation;

    /// Adds user lists (a user written twice keeps the last list).
    async fn put_users(&mut self, lists: Vec<UserList>) -> Result<(), KvError>;

    /// Sets the fallback list.
    async fn put_fallback(&mut self, items: Vec<RecItem>) -> Result<(), KvError>;

    /// Adds similar-articles lists (an article written twice keeps the last list).
    async fn put_similar(&mut self, lists: Vec<SimilarList>) -> Result<(), KvError>;

    /// Verifies that exactly `expected_users` users are stored, then seals the generation.
    async fn finish(self: Box<Self>, expected_users: u64) -> Result<GenerationInfo, KvError>;
}

/// Wall-clock epoch milliseconds (seal times, lock leases); 0 if the clock is before 1970.
/// Public for the backend crates, so every backend stamps seal times the same way.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Rolls back to the newest sealed generation older than the current one; returns it.
pub async fn rollback(store: &dyn RecStore) -> Result<Generation, KvError> {
    let current = store.current().await?.map(|info| info.generation);
    let previous = store
        .generations()
        .await?
        .into_iter()
        .map(|info| info.generation)
        .filter(|generation| current.is_none_or(|current| *generation < current))
        .max()
        .ok_or(KvError::NothingToRollBackTo { current })?;
    store.activate(previous).await?;
    Ok(previous)
}
