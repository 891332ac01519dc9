//! The writer thread and its handles: group commit, handing durable records on in log order,
//! releasing old segments, and what an append learns when the disk fails.

use std::{
    io::Write,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Instant,
};

use tokio::sync::{mpsc, oneshot};

use crate::{
    Lsn, Replay, WalError, WalOptions,
    format::{FRAME_HEADER_BYTES, MAX_PAYLOAD_BYTES, encode_frame},
    segments::Segments,
};

/// A record that is on disk, handed to the consumer in log order.
#[derive(Debug)]
pub struct Durable<T> {
    pub lsn: Lsn,
    pub item: T,
}

/// Live figures of the log, readable from any thread.
#[derive(Debug, Default)]
pub struct WalStats {
    /// Bytes of every segment on disk (what a replay would read).
    pub bytes_on_disk: AtomicU64,
    /// Number of the next record.
    pub next_lsn: AtomicU64,
    pub fsyncs: AtomicU64,
    pub records: AtomicU64,
    /// Set once a sync failed: the log refuses writes until a restart replays it.
    pub poisoned: AtomicBool,
}

/// Why an append was not made durable. Cloneable: one failed group commit answers many appends.
pub type AppendResult = Result<Lsn, AppendError>;

/// The clonable form of a failed append.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("the disk holding the write-ahead log is full ({0}); nothing of this request was kept")]
    DiskFull(String),
    #[error("writing the write-ahead log failed ({0}); nothing of this request was kept")]
    Io(String),
    #[error(
        "the write-ahead log failed to sync ({0}) and refuses writes until the node restarts \
         and replays it"
    )]
    Poisoned(String),
    #[error("record of {bytes} bytes is over the log's limit of {limit}")]
    TooLarge { bytes: usize, limit: usize },
    #[error("the write-ahead log is shut down")]
    Closed,
}

enum Message<T> {
    Append {
        kind: u8,
        payload: Vec<u8>,
        item: Option<T>,
        reply: Option<oneshot::Sender<AppendResult>>,
    },
    ReleaseBefore(Lsn),
    Barrier(oneshot::Sender<()>),
    Stop,
}

/// Appends to the log; cheap to clone, usable from any task.
pub struct WalHandle<T> {
    messages: mpsc::UnboundedSender<Message<T>>,
    stats: Arc<WalStats>,
}

impl<T> Clone for WalHandle<T> {
    fn clone(&self) -> Self {
        WalHandle {
            messages: self.messages.clone(),
            stats: Arc::clone(&self.stats),
        }
    }
}

impl<T> std::fmt::Debug for Message<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Append { kind, payload, .. } => f
                .debug_struct("Append")
                .field("kind", kind)
                .field("bytes", &payload.len())
                .finish(),
            Message::ReleaseBefore(lsn) => f.debug_tuple("ReleaseBefore").field(lsn).finish(),
            Message::Barrier(_) => f.write_str("Barrier"),
            Message::Stop => f.write_str("Stop"),
        }
    }
}

impl<T: Send + 'static> WalHandle<T> {
    fn send(&self, message: Message<T>) -> Result<(), AppendError> {
        self.messages.send(message).map_err(|_| AppendError::Closed)
    }

    /// Appends a record and waits until it is on disk; `item` then goes to the consumer.
    pub async fn append(&self, kind: u8, payload: Vec<u8>, item: T) -> AppendResult {
        self.enqueue(kind, payload, item)?.await
    }

    /// Queues a record now (its place in the log is fixed by this call) and returns a future
    /// that resolves once it is on disk.
    pub fn enqueue(
        &self,
        kind: u8,
        payload: Vec<u8>,
        item: T,
    ) -> Result<impl Future<Output = AppendResult> + Send + 'static, AppendError> {
        let (reply, answer) = oneshot::channel();
        self.send(Message::Append {
            kind,
            payload,
            item: Some(item),
            reply: Some(reply),
        })?;
        Ok(async move { answer.await.unwrap_or(Err(AppendError::Closed)) })
    }

    /// Waits until every message sent before this call has been handled (appends written and
    /// handed to the consumer).
    pub async fn barrier(&self) -> Result<(), AppendError> {
        let (reply, answer) = oneshot::channel();
        self.send(Message::Barrier(reply))?;
        answer.await.map_err(|_| AppendError::Closed)
    }

    /// Appends a record that is not handed to the consumer (the owner's own bookkeeping, such
    /// as "objects for records up to n are committed"), and waits until it is on disk.
    pub async fn append_marker(&self, kind: u8, payload: Vec<u8>) -> AppendResult {
        let (reply, answer) = oneshot::channel();
        self.send(Message::Append {
            kind,
            payload,
            item: None,
            reply: Some(reply),
        })?;
        answer.await.unwrap_or(Err(AppendError::Closed))
    }

    /// Lets the log delete every closed segment whose records all have `lsn < end`.
    pub fn release_before(&self, end: Lsn) {
        let _ = self.send(Message::ReleaseBefore(end));
    }

    /// Live figures.
    pub fn stats(&self) -> &WalStats {
        &self.stats
    }
}

/// The open log: the writer thread and a handle to it.
pub struct Wal<T> {
    handle: WalHandle<T>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<T> std::fmt::Debug for WalHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalHandle")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<T> std::fmt::Debug for Wal<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Wal<T> {
    /// Opens the log in `dir`, returning what it holds, and starts the writer thread. Each
    /// appended item goes to `sink` once durable, in log order.
    pub fn open(
        dir: &Path,
        options: WalOptions,
        sink: mpsc::UnboundedSender<Durable<T>>,
    ) -> Result<(Wal<T>, Replay), WalError> {
        let (segments, replay) = Segments::open(dir)?;
        let stats = Arc::new(WalStats::default());
        stats
            .bytes_on_disk
            .store(segments.bytes_on_disk(), Ordering::Relaxed);
        stats.next_lsn.store(replay.next_lsn, Ordering::Relaxed);
        let (messages, receiver) = mpsc::unbounded_channel();
        let writer = Writer {
            segments,
            options,
            next_lsn: replay.next_lsn,
            sink,
            stats: Arc::clone(&stats),
            poisoned: None,
            buffer: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("newsrec-wal".into())
            .spawn(move || writer.run(receiver))
            .map_err(|error| WalError::io(dir, error))?;
        Ok((
            Wal {
                handle: WalHandle { messages, stats },
                thread: Some(thread),
            },
            replay,
        ))
    }

    /// A handle for appending.
    pub fn handle(&self) -> WalHandle<T> {
        self.handle.clone()
    }

    /// Writes every append sent before this call, then stops the writer thread. Blocks.
    pub fn close(mut self) {
        let _ = self.handle.messages.send(Message::Stop);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the write-ahead log writer thread panicked");
        }
    }
}

struct Pending<T> {
    kind: u8,
    payload: Vec<u8>,
    item: Option<T>,
    reply: Option<oneshot::Sender<AppendResult>>,
}

struct Writer<T> {
    segments: Segments,
    options: WalOptions,
    next_lsn: Lsn,
    sink: mpsc::UnboundedSender<Durable<T>>,
    stats: Arc<WalStats>,
    poisoned: Option<String>,
    buffer: Vec<u8>,
}

impl<T> Writer<T> {
    fn run(mut self, mut receiver: mpsc::UnboundedReceiver<Message<T>>) {
        let mut group: Vec<Pending<T>> = Vec::new();
        let mut stopping = false;
        while let Some(first) = receiver.blocking_recv() {
            let mut release = None;
            let mut barriers = Vec::new();
            let mut group_bytes = 0usize;
            let mut next = Some(first);
            // Take everything already waiting, up to the group bound: one write, one fsync.
            while let Some(message) = next.take() {
                match message {
                    Message::Append {
                        kind,
                        payload,
                        item,
                        reply,
                    } => {
                        if payload.len() > MAX_PAYLOAD_BYTES {
                            if let Some(reply) = reply {
                                let _ = reply.send(Err(AppendError::TooLarge {
                                    bytes: payload.len(),
                                    limit: MAX_PAYLOAD_BYTES,
                                }));
                            }
                        } else {
                            group_bytes += FRAME_HEADER_BYTES + payload.len();
                            group.push(Pending {
                                kind,
                                payload,
                                item,
                                reply,
                            });
                        }
                    }
                    Message::ReleaseBefore(end) => {
                        release = Some(release.map_or(end, |r: Lsn| r.max(end)));
                    }
                    Message::Barrier(reply) => barriers.push(reply),
                    Message::Stop => {
                        // Appends already queued are still written; later ones fail (Closed).
                        stopping = true;
                        receiver.close();
                    }
                }
                if group_bytes < self.options.max_group_bytes {
                    next = receiver.try_recv().ok();
                }
            }
            // Releases first: an append queued after a release then finds it done.
            if let Some(end) = release {
                match self.segments.release_before(end) {
                    Ok(_) => self.publish_size(),
                    Err(error) => tracing::error!(%error, "deleting committed log segments failed"),
                }
            }
            if !group.is_empty() {
                self.commit(&mut group);
            }
            for barrier in barriers {
                let _ = barrier.send(());
            }
            if stopping && receiver.is_empty() {
                break;
            }
        }
    }

    fn publish_size(&self) {
        let bytes = self.segments.bytes_on_disk();
        self.stats.bytes_on_disk.store(bytes, Ordering::Relaxed);
        metrics::gauge!("newsrec_wal_bytes").set(bytes as f64);
        metrics::gauge!("newsrec_wal_segments").set((self.segments.sealed.len() + 1) as f64);
    }

    fn fail(group: &mut Vec<Pending<T>>, error: &AppendError) {
        for pending in group.drain(..) {
            if let Some(reply) = pending.reply {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }

    fn commit(&mut self, group: &mut Vec<Pending<T>>) {
        if let Some(reason) = &self.poisoned {
            Self::fail(group, &AppendError::Poisoned(reason.clone()));
            return;
        }
        if self.segments.active_len >= self.options.segment_bytes
            && let Err(error) = self.segments.rotate(self.next_lsn)
        {
            tracing::error!(%error, "starting a new log segment failed");
            Self::fail(group, &classify(&error));
            return;
        }
        self.buffer.clear();
        for (offset, pending) in group.iter().enumerate() {
            encode_frame(
                &mut self.buffer,
                self.next_lsn + offset as u64,
                pending.kind,
                &pending.payload,
            );
        }
        let started = Instant::now();
        if let Err(error) = self.segments.active.write_all(&self.buffer) {
            // Cut whatever part of the group reached the file, so the next frames follow the
            // last whole one and a replay does not stop early at a half frame.
            let restored = self
                .segments
                .active
                .set_len(self.segments.active_len)
                .and_then(|()| self.segments.active.sync_data());
            let failure = classify_io(&error);
            if let Err(truncate) = restored {
                self.poison(format!(
                    "{error}; then cutting the partial write failed: {truncate}"
                ));
            }
            tracing::error!(%error, records = group.len(), "write-ahead log write failed");
            metrics::counter!("newsrec_wal_write_failures_total").increment(1);
            Self::fail(group, &failure);
            return;
        }
        if let Err(error) = self.segments.active.sync_data() {
            // After a failed fsync the kernel may have dropped the dirty pages: nothing written
            // since the last good sync can be trusted, so refuse everything until a replay.
            self.poison(error.to_string());
            Self::fail(group, &AppendError::Poisoned(error.to_string()));
            return;
        }
        let elapsed = started.elapsed();
        metrics::histogram!("newsrec_wal_fsync_seconds").record(elapsed.as_secs_f64());
        metrics::histogram!("newsrec_wal_group_records").record(group.len() as f64);
        metrics::counter!("newsrec_wal_bytes_written_total").increment(self.buffer.len() as u64);
        self.segments.active_len += self.buffer.len() as u64;
        self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.stats
            .records
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        for pending in group.drain(..) {
            let lsn = self.next_lsn;
            self.next_lsn += 1;
            if let Some(item) = pending.item {
                // The consumer first, then the appender: whoever is told "durable" can count on
                // the consumer having the record.
                let _ = self.sink.send(Durable { lsn, item });
            }
            if let Some(reply) = pending.reply {
                let _ = reply.send(Ok(lsn));
            }
        }
        self.stats.next_lsn.store(self.next_lsn, Ordering::Relaxed);
        self.publish_size();
    }

    fn poison(&mut self, reason: String) {
        tracing::error!(%reason, "write-ahead log poisoned; restart the node to replay it");
        self.stats.poisoned.store(true, Ordering::Relaxed);
        self.poisoned = Some(reason);
    }
}

fn classify_io(error: &std::io::Error) -> AppendError {
    if error.kind() == std::io::ErrorKind::StorageFull || error.raw_os_error() == Some(28) {
        AppendError::DiskFull(error.to_string())
    } else {
        AppendError::Io(error.to_string())
    }
}

fn classify(error: &WalError) -> AppendError {
    match error {
        WalError::Io { source, .. } => classify_io(source),
        other => AppendError::Io(other.to_string()),
    }
}
