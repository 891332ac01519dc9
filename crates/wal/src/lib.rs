//! The ingest write-ahead log: an append-only, checksummed, segmented log on local disk with
//! group commit, replay after a crash, and segment deletion once their records are safe elsewhere.
//!
//! Owns the log's files and the one thread that writes them. Appenders hand a record (a kind
//! byte, payload bytes and an in-memory item) to that thread; it writes every record that is
//! waiting as one `write` and one `fdatasync` (group commit), then hands each item, in log order,
//! to the consumer channel and answers each appender with the record's log sequence number
//! ([`Lsn`]). So a caller that got an `Ok(lsn)` knows the record survives `kill -9` and power
//! loss, and the consumer sees records in exactly the order a replay will.
//!
//! The byte format is in `docs/wal-format.md`. In short: segment files `<first lsn:020>.wal`,
//! each a 16-byte header then frames `len u32 | crc32 u32 | lsn u64 | kind u8 | payload`, the
//! CRC covering lsn, kind and payload. A torn or partly written tail of the newest segment is cut
//! off at the first bad frame on open (those records were never acknowledged); a bad frame
//! anywhere else is corruption of acknowledged data and opening fails, naming file and offset.

mod format;
mod segments;
mod writer;

pub use format::{FRAME_HEADER_BYTES, MAX_PAYLOAD_BYTES, SEGMENT_HEADER_BYTES};
pub use writer::{AppendError, AppendResult, Durable, Wal, WalHandle, WalStats};

use std::path::PathBuf;

/// Log sequence number: the position of a record in the log, one higher for each record.
///
/// A new, empty log starts at the wall clock in microseconds rather than 0, so a node whose log
/// folder was wiped never reuses a number of its earlier life (numbers name lake objects).
pub type Lsn = u64;

/// One record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub lsn: Lsn,
    pub kind: u8,
    pub payload: Vec<u8>,
}

/// Tuning of the log.
#[derive(Debug, Clone, Copy)]
pub struct WalOptions {
    /// A segment is closed and a new one started once it holds this many bytes.
    pub segment_bytes: u64,
    /// At most this many payload bytes go into one group commit (one write, one fsync).
    pub max_group_bytes: usize,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: 64 * 1024 * 1024,
            max_group_bytes: 16 * 1024 * 1024,
        }
    }
}

/// What opening the log found.
#[derive(Debug, Default)]
pub struct Replay {
    /// Every record still in the log, oldest first. The owner decides which are already safe
    /// elsewhere (its own marker records say so) and which must be redone.
    pub records: Vec<Record>,
    /// Bytes cut off the newest segment's tail because they did not form whole, valid frames
    /// (a write that a crash interrupted; never acknowledged).
    pub truncated_bytes: u64,
    /// The number the next appended record gets.
    pub next_lsn: Lsn,
}

/// Why the log cannot be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "write-ahead log segment {path} is damaged at byte {offset} ({reason}); it holds \
         acknowledged events, so the node will not start over it. Copy the folder for inspection; \
         to give those records up, move the segment and every later one out of the folder"
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

impl WalError {
    fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        WalError::Io {
            path: path.into(),
            source,
        }
    }
}
