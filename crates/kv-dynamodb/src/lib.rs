//! The DynamoDB backend: every generation's items in one table, a `current` pointer item.
//!
//! This crate owns the DynamoDB item layout (documented in `docs/kv-layout.md`, "DynamoDB"),
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
//!
//! # Modules
//!
//! - `store`: [`DynamoStore`]: connecting, the serving handle and the [`RecStore`] operations,
//!   prune included.
//! - `writer`: the generation writer: batched list writes, the distinct-user count, sealing.
//! - `table`: the client bound to one table: item and batch operations, the pointer and the
//!   generation index, prune's scan, and creating the table.
//! - `lock`: the lease-style publisher lock item.
//! - `retry`: exponential backoff with jitter for unprocessed batch items and keys.
//! - `keys`: the partition key scheme.
//! - `item`: attribute encoding and parsing of items.
//! - `uri`: the store uri.
//! - `error`: SDK, request and item errors as [`KvError`]s with what to do.
//!
//! [`RecStore`]: newsrec_kv::RecStore
//! [`KvError`]: newsrec_kv::KvError

mod error;
mod item;
mod keys;
mod lock;
mod retry;
mod store;
mod table;
mod uri;
mod writer;

pub use store::DynamoStore;
