//! The Redis backend: generations as Redis keys under one prefix, and a `current` pointer key.
//!
//! Owns every key under `<prefix>:` in the database the store uri names (`?prefix=NAME`, default
//! `newsrec`; the prefix is limited to `[A-Za-z0-9_.-]` so it never needs escaping in a `SCAN
//! MATCH` pattern). Layout (also in `docs/kv-layout.md`):
//!
//! ```text
//! <p>:g:<gen>:lists     hash: user id (binary-safe field, never interpreted) → list codec bytes
//! <p>:g:<gen>:similar   hash: article id (binary-safe field) → similar-articles list codec bytes
//! <p>:g:<gen>:fallback  string: the fallback list, list codec bytes
//! <p>:g:<gen>:info      string: JSON GenerationInfo, written only when the generation is sealed
//! <p>:generations       sorted set: sealed generation numbers (score = number)
//! <p>:next              counter: INCR hands out generation numbers
//! <p>:current           string: the current generation number (the pointer)
//! <p>:lock              string: publisher lock, `SET NX PX` with a random token
//! ```
//!
//! Why one hash per generation rather than one key per user: `HLEN` is the exact number of
//! distinct users stored (a user written twice is one field), so `finish` verifies the count on
//! the server with no client-side bookkeeping, and `prune` deletes a generation by `UNLINK`ing
//! four keys (freed off the main thread) instead of scanning millions of user keys. Similar
//! lists live in their own hash for the same reasons, and so that they never count as users.
//!
//! # Modules
//!
//! - `store`: [`RedisStore`], the handle serving reads and the [`RecStore`] operations on it.
//! - `writer`: the generation writer, its bulk `HSET` pipelines and sealing.
//! - `scripts`: the Lua scripts that make sealing, activation and prune's unregistering atomic.
//! - `lock`: the store-wide publish lock and its keeper task.
//! - `keys`: key names under the prefix.
//! - `uri`: the store uri, the prefix and password redaction.
//! - `error`: Redis errors as [`KvError`]s with hints on what to do.
//!
//! [`RecStore`]: newsrec_kv::RecStore
//! [`KvError`]: newsrec_kv::KvError

mod error;
mod keys;
mod lock;
mod scripts;
mod store;
mod uri;
mod writer;

pub use store::RedisStore;
