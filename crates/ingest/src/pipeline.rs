//! The durable path from an accepted request to lake objects: write-ahead log, buffer, flush,
//! commit, and the replay that redoes an interrupted flush after a crash.
//!
//! A submission (the valid events and the refused records of one request) is appended to the
//! log as one record; with `ack = wal` the sender is answered once that record is fsynced. The
//! log hands durable records, in log order, to one consumer task that buffers them and flushes
//! when the buffer holds `buffer_bytes`, when its oldest record has waited `buffer_interval`,
//! and on shutdown. A flush writes every buffered record as batch `<node_id>-<first lsn>`
//! (one Parquet object per event hour, one NDJSON error object per arrival hour), then appends
//! a commit marker naming the last record it covered, then lets the log delete what is older.
//!
//! Exactly once: the buffer is only emptied after its commit marker is on disk, and a flush
//! always covers *every* uncommitted record. So whatever a crash interrupts, the next flush (or
//! the replay at start) writes a superset of the interrupted one under the same names, which
//! replaces each object it had written; no record is in two objects and none is missing. A lake
//! that fails keeps the buffer, which grows until the backlog bound answers 429.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use newsrec_event::ClickEvent;
use newsrec_lake::{ErrorRecord, Lake};
use newsrec_wal::{AppendError, Durable, Lsn, Wal, WalHandle, WalOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

/// Log record kinds.
const KIND_DATA: u8 = 1;
const KIND_COMMIT: u8 = 2;

/// The file in the log folder that names the node the log belongs to (object names carry it).
const NODE_FILE: &str = "NODE";

/// When a request is answered (`ingest.ack`: `wal`, `lake` or `none`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    /// After the request's record is fsynced in the write-ahead log (the default).
    #[default]
    Wal,
    /// After the request's events are in a committed lake object.
    Lake,
    /// At once, before anything is on disk: at-most-once, a crash can lose acknowledged events.
    None,
}

/// How the pipeline is set up.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Names this node's objects (`<node_id>-<seq>`); must stay the same for one log folder.
    pub node_id: String,
    pub wal_dir: PathBuf,
    pub wal: WalOptions,
    /// Flush when the buffer holds this many bytes of events and refused records.
    pub buffer_bytes: u64,
    /// Flush when the oldest buffered record has waited this long (zero: at once).
    pub buffer_interval: Duration,
    /// Accepted bytes not yet committed to the lake, past which submissions are refused (429).
    pub max_backlog_bytes: u64,
}

/// What one request hands to the pipeline.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Submission {
    /// Shared so the accepted-events hook and the lake writer read the request's events
    /// without copies; in the log it is encoded as a plain sequence.
    pub events: Arc<Vec<ClickEvent>>,
    pub errors: Vec<ErrorRecord>,
}

impl Submission {
    fn approx_bytes(&self) -> u64 {
        let events: usize = self.events.iter().map(ClickEvent::approx_bytes).sum();
        let errors: usize = self
            .errors
            .iter()
            .map(|e| e.raw_data.len() + e.error_message.len() + 64)
            .sum();
        (events + errors) as u64
    }
}

/// Commit marker: every data record with `lsn <= last` is in committed lake objects.
#[derive(Debug, Serialize, Deserialize)]
struct Commit {
    last: Lsn,
}

/// Why a submission was not accepted. Nothing of it is stored, except for [`SubmitError::Lake`]
/// (it is in the log and will reach the lake; only the `ack = lake` wait failed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error(
        "ingest backlog is full ({backlog} of {limit} bytes not yet in the lake); retry after a \
         second"
    )]
    Backpressure { backlog: u64, limit: u64 },
    #[error(transparent)]
    Log(#[from] AppendError),
    #[error("ingest is shutting down; retry against another node")]
    ShuttingDown,
    #[error("events are logged but the lake write did not complete: {0}")]
    Lake(String),
}

struct Item {
    submission: Submission,
    bytes: u64,
    lake_ack: Option<oneshot::Sender<Result<(), String>>>,
}

/// Live figures shared by the handle and the consumer.
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Accepted bytes not yet committed to the lake.
    pub backlog_bytes: AtomicU64,
    pub objects_written: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_failures: AtomicU64,
    closing: AtomicBool,
}

/// Submits requests; cheap to clone.
#[derive(Clone)]
pub struct IngestHandle {
    wal: WalHandle<Item>,
    stats: Arc<PipelineStats>,
    max_backlog_bytes: u64,
}

impl std::fmt::Debug for IngestHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestHandle")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl IngestHandle {
    /// Stores a request's events and refused records, answering as `ack` says. Returns the
    /// log position of the request's record (`None` with [`AckMode::None`]).
    pub async fn submit(
        &self,
        submission: Submission,
        ack: AckMode,
    ) -> Result<Option<Lsn>, SubmitError> {
        if submission.events.is_empty() && submission.errors.is_empty() {
            return Ok(None);
        }
        if self.stats.closing.load(Ordering::Relaxed) {
            return Err(SubmitError::ShuttingDown);
        }
        let bytes = submission.approx_bytes();
        let before = self.stats.backlog_bytes.fetch_add(bytes, Ordering::AcqRel);
        // One request may always go through an empty backlog, however large it is.
        if before > 0 && before + bytes > self.max_backlog_bytes {
            self.stats.backlog_bytes.fetch_sub(bytes, Ordering::AcqRel);
            metrics::counter!("newsrec_ingest_backpressure_total").increment(1);
            return Err(SubmitError::Backpressure {
                backlog: before,
                limit: self.max_backlog_bytes,
            });
        }
        metrics::gauge!("newsrec_ingest_backlog_bytes").set((before + bytes) as f64);
        let payload = match postcard::to_stdvec(&submission) {
            Ok(payload) => payload,
            Err(error) => {
                self.stats.backlog_bytes.fetch_sub(bytes, Ordering::AcqRel);
                return Err(SubmitError::Log(AppendError::Io(error.to_string())));
            }
        };
        let (lake_ack, lake_done) = match ack {
            AckMode::Lake => {
                let (sender, receiver) = oneshot::channel();
                (Some(sender), Some(receiver))
            }
            AckMode::Wal | AckMode::None => (None, None),
        };
        let item = Item {
            submission,
            bytes,
            lake_ack,
        };
        if ack == AckMode::None {
            // Answered before the disk: the append finishes on its own, and a failure only
            // returns its share of the backlog.
            let written = match self.wal.enqueue(KIND_DATA, payload, item) {
                Ok(written) => written,
                Err(error) => {
                    self.stats.backlog_bytes.fetch_sub(bytes, Ordering::AcqRel);
                    return Err(SubmitError::Log(error));
                }
            };
            let stats = Arc::clone(&self.stats);
            tokio::spawn(async move {
                if let Err(error) = written.await {
                    stats.backlog_bytes.fetch_sub(bytes, Ordering::AcqRel);
                    tracing::warn!(%error, "an unacknowledged (ack = none) request was lost");
                }
            });
            return Ok(None);
        }
        let outcome = self.wal.append(KIND_DATA, payload, item).await.map(Some);
        let lsn = match outcome {
            Ok(lsn) => lsn,
            Err(error) => {
                self.stats.backlog_bytes.fetch_sub(bytes, Ordering::AcqRel);
                return Err(SubmitError::Log(error));
            }
        };
        if let Some(done) = lake_done {
            match done.await {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => return Err(SubmitError::Lake(reason)),
                Err(_) => return Err(SubmitError::ShuttingDown),
            }
        }
        Ok(lsn)
    }

    /// Live figures.
    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }

    /// Live figures of the write-ahead log.
    pub fn wal_stats(&self) -> &newsrec_wal::WalStats {
        self.wal.stats()
    }
}

/// What the start-up replay found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// Log records read back.
    pub records: usize,
    /// Records that were not yet committed to the lake and were written now.
    pub redone_records: usize,
    pub redone_events: usize,
    pub redone_errors: usize,
    /// Bytes cut off a torn log tail (never acknowledged).
    pub truncated_bytes: u64,
}

/// Why the pipeline cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Wal(#[from] newsrec_wal::WalError),
    #[error(
        "the write-ahead log in {dir} belongs to node {found:?}, not {configured:?}: its objects \
         are named after the node, so replaying it under another name would duplicate events. \
         Set node_id back, or give this node its own wal_dir"
    )]
    NodeMismatch {
        dir: PathBuf,
        found: String,
        configured: String,
    },
    #[error(
        "write-ahead log record {lsn} cannot be decoded ({reason}); it was written by an incompatible version"
    )]
    Undecodable { lsn: Lsn, reason: String },
    #[error("replaying the write-ahead log into the lake failed: {0}")]
    Replay(String),
    #[error("cannot use the write-ahead log folder {dir}: {source}")]
    Folder {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// The running pipeline; [`PipelineTask::shutdown`] flushes and stops it.
#[derive(Debug)]
pub struct PipelineTask {
    stop: oneshot::Sender<()>,
    consumer: tokio::task::JoinHandle<()>,
    wal: Wal<Item>,
    stats: Arc<PipelineStats>,
}

impl PipelineTask {
    /// Refuses new submissions, writes everything buffered to the lake, commits it, and closes
    /// the log. Call after the HTTP server has drained its requests.
    pub async fn shutdown(self) {
        self.stats.closing.store(true, Ordering::Relaxed);
        // Everything queued before the flag reaches the consumer before it is told to stop.
        if let Err(error) = self.wal.handle().barrier().await {
            tracing::error!(%error, "write-ahead log closed before the final flush");
        }
        let _ = self.stop.send(());
        if let Err(error) = self.consumer.await {
            tracing::error!(%error, "ingest consumer task failed");
        }
        let wal = self.wal;
        if let Err(error) = tokio::task::spawn_blocking(move || wal.close()).await {
            tracing::error!(%error, "closing the write-ahead log failed");
        }
    }
}

fn check_node(dir: &Path, node_id: &str) -> Result<(), StartError> {
    let folder = |source| StartError::Folder {
        dir: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(folder)?;
    let path = dir.join(NODE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(found) if found.trim() == node_id => Ok(()),
        Ok(found) => Err(StartError::NodeMismatch {
            dir: dir.to_owned(),
            found: found.trim().to_owned(),
            configured: node_id.to_owned(),
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::write(&path, format!("{node_id}\n")).map_err(folder)
        }
        Err(error) => Err(folder(error)),
    }
}

/// Opens the log, writes whatever it holds that the lake lacks, and starts the consumer.
pub async fn start(
    lake: Lake,
    options: PipelineOptions,
) -> Result<(IngestHandle, PipelineTask, ReplayReport), StartError> {
    check_node(&options.wal_dir, &options.node_id)?;
    let (sink, durable) = mpsc::unbounded_channel();
    let wal_dir = options.wal_dir.clone();
    let wal_options = options.wal;
    let (wal, replay) = tokio::task::spawn_blocking(move || Wal::open(&wal_dir, wal_options, sink))
        .await
        .map_err(|join| StartError::Replay(join.to_string()))??;
    let mut report = ReplayReport {
        records: replay.records.len(),
        truncated_bytes: replay.truncated_bytes,
        ..ReplayReport::default()
    };
    let committed = replay
        .records
        .iter()
        .filter(|record| record.kind == KIND_COMMIT)
        .map(|record| {
            postcard::from_bytes::<Commit>(&record.payload)
                .map(|commit| commit.last)
                .map_err(|error| StartError::Undecodable {
                    lsn: record.lsn,
                    reason: error.to_string(),
                })
        })
        .try_fold(None, |max: Option<Lsn>, last| {
            last.map(|last| Some(max.map_or(last, |m| m.max(last))))
        })?;
    let mut buffer = Buffer::default();
    for record in replay.records {
        if record.kind != KIND_DATA || committed.is_some_and(|c| record.lsn <= c) {
            continue;
        }
        let submission: Submission =
            postcard::from_bytes(&record.payload).map_err(|error| StartError::Undecodable {
                lsn: record.lsn,
                reason: error.to_string(),
            })?;
        report.redone_records += 1;
        report.redone_events += submission.events.len();
        report.redone_errors += submission.errors.len();
        let bytes = submission.approx_bytes();
        buffer.push(Durable {
            lsn: record.lsn,
            item: Item {
                submission,
                bytes,
                lake_ack: None,
            },
        });
    }
    let stats = Arc::new(PipelineStats::default());
    stats.backlog_bytes.store(buffer.bytes, Ordering::Relaxed);
    let handle = IngestHandle {
        wal: wal.handle(),
        stats: Arc::clone(&stats),
        max_backlog_bytes: options.max_backlog_bytes,
    };
    let mut consumer = Consumer {
        lake,
        node_id: options.node_id.clone(),
        wal: wal.handle(),
        stats: Arc::clone(&stats),
        buffer,
        retry_delay: Duration::ZERO,
    };
    if !consumer.buffer.is_empty() {
        // One flush covering every uncommitted record: a superset of whatever flush the crash
        // interrupted, under the same names (see the module doc).
        tracing::info!(
            records = report.redone_records,
            events = report.redone_events,
            "replaying uncommitted write-ahead log records into the lake"
        );
        if let Err(reason) = consumer.flush().await {
            return Err(StartError::Replay(reason));
        }
    }
    let (stop, stopped) = oneshot::channel();
    let consumer = tokio::spawn(consumer.run(durable, stopped, options));
    Ok((
        handle,
        PipelineTask {
            stop,
            consumer,
            wal,
            stats,
        },
        report,
    ))
}

/// Durable records not yet committed to the lake, oldest first.
#[derive(Default)]
struct Buffer {
    first_lsn: Option<Lsn>,
    last_lsn: Lsn,
    /// One chunk per request, in log order.
    events: Vec<Arc<Vec<ClickEvent>>>,
    errors: Vec<ErrorRecord>,
    bytes: u64,
    acks: Vec<oneshot::Sender<Result<(), String>>>,
    oldest_at: Option<Instant>,
}

impl Buffer {
    fn is_empty(&self) -> bool {
        self.first_lsn.is_none()
    }

    fn push(&mut self, durable: Durable<Item>) {
        self.first_lsn.get_or_insert(durable.lsn);
        self.oldest_at.get_or_insert_with(Instant::now);
        self.last_lsn = durable.lsn;
        let Item {
            submission,
            bytes,
            lake_ack,
        } = durable.item;
        if !submission.events.is_empty() {
            self.events.push(submission.events);
        }
        self.errors.extend(submission.errors);
        self.bytes += bytes;
        self.acks.extend(lake_ack);
    }
}

struct Consumer {
    lake: Lake,
    node_id: String,
    wal: WalHandle<Item>,
    stats: Arc<PipelineStats>,
    buffer: Buffer,
    /// Wait before the next attempt after a failed flush (doubles, up to 30 s).
    retry_delay: Duration,
}

impl Consumer {
    async fn run(
        mut self,
        mut durable: mpsc::UnboundedReceiver<Durable<Item>>,
        mut stopped: oneshot::Receiver<()>,
        options: PipelineOptions,
    ) {
        let mut next_attempt: Option<Instant> = None;
        loop {
            let due = self.buffer.oldest_at.map(|oldest| {
                let by_age = oldest + options.buffer_interval;
                next_attempt.map_or(by_age, |retry| retry.max(by_age))
            });
            let wait = async {
                match due {
                    Some(due) => tokio::time::sleep_until(due.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = &mut stopped => break,
                received = durable.recv() => {
                    let Some(record) = received else { break };
                    self.buffer.push(record);
                    // Take what else is already here before deciding to flush.
                    while let Ok(record) = durable.try_recv() {
                        self.buffer.push(record);
                    }
                    let retry_due = next_attempt.is_none_or(|at| Instant::now() >= at);
                    if self.buffer.bytes >= options.buffer_bytes && retry_due {
                        next_attempt = self.attempt().await;
                    }
                }
                () = wait => next_attempt = self.attempt().await,
            }
        }
        // Shutdown: everything that reached the consumer goes to the lake now. Records still
        // queued in the log are durable and are replayed at the next start.
        while let Ok(record) = durable.try_recv() {
            self.buffer.push(record);
        }
        for attempt in 1..=3 {
            if self.buffer.is_empty() {
                break;
            }
            match self.flush().await {
                Ok(()) => {}
                Err(reason) => {
                    tracing::error!(attempt, %reason, "final flush failed; the log keeps the events for the next start");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
            }
        }
    }

    /// One flush attempt; on failure, when to try again.
    async fn attempt(&mut self) -> Option<Instant> {
        match self.flush().await {
            Ok(()) => {
                self.retry_delay = Duration::ZERO;
                None
            }
            Err(reason) => {
                self.retry_delay = (self.retry_delay * 2)
                    .max(Duration::from_millis(100))
                    .min(Duration::from_secs(30));
                tracing::error!(
                    %reason,
                    retry_in_ms = self.retry_delay.as_millis() as u64,
                    buffered_bytes = self.buffer.bytes,
                    "flush to the lake failed; the events stay in the log and the buffer"
                );
                Some(Instant::now() + self.retry_delay)
            }
        }
    }

    /// Writes the whole buffer as one batch and commits it. On error the buffer is kept whole.
    async fn flush(&mut self) -> Result<(), String> {
        let Some(first) = self.buffer.first_lsn else {
            return Ok(());
        };
        let last = self.buffer.last_lsn;
        let started = Instant::now();
        let outcome = self.write_batch(first, last).await;
        metrics::histogram!("newsrec_ingest_flush_seconds").record(started.elapsed().as_secs_f64());
        if let Err(reason) = outcome {
            self.stats.flush_failures.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("newsrec_ingest_flush_failures_total").increment(1);
            return Err(reason);
        }
        let buffer = std::mem::take(&mut self.buffer);
        self.wal.release_before(last + 1);
        let backlog = self
            .stats
            .backlog_bytes
            .fetch_sub(buffer.bytes, Ordering::AcqRel);
        metrics::gauge!("newsrec_ingest_backlog_bytes")
            .set(backlog.saturating_sub(buffer.bytes) as f64);
        let events: usize = buffer.events.iter().map(|chunk| chunk.len()).sum();
        metrics::histogram!("newsrec_ingest_flush_events").record(events as f64);
        metrics::histogram!("newsrec_ingest_flush_bytes").record(buffer.bytes as f64);
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            first,
            last,
            events,
            errors = buffer.errors.len(),
            ms = started.elapsed().as_millis() as u64,
            "batch committed to the lake"
        );
        for ack in buffer.acks {
            let _ = ack.send(Ok(()));
        }
        Ok(())
    }

    async fn write_batch(&self, first: Lsn, last: Lsn) -> Result<(), String> {
        let mut objects = 0;
        if !self.buffer.events.is_empty() {
            objects += self
                .lake
                .write_events(&self.node_id, first, &self.buffer.events)
                .await
                .map_err(|error| error.to_string())?
                .len();
        }
        if !self.buffer.errors.is_empty() {
            objects += self
                .lake
                .write_errors(&self.node_id, first, &self.buffer.errors)
                .await
                .map_err(|error| error.to_string())?;
            metrics::counter!("newsrec_ingest_error_records_written_total")
                .increment(self.buffer.errors.len() as u64);
        }
        self.stats
            .objects_written
            .fetch_add(objects as u64, Ordering::Relaxed);
        metrics::counter!("newsrec_lake_objects_written_total").increment(objects as u64);
        let marker = postcard::to_stdvec(&Commit { last }).map_err(|error| error.to_string())?;
        self.wal
            .append_marker(KIND_COMMIT, marker)
            .await
            .map_err(|error| format!("writing the commit marker: {error}"))?;
        Ok(())
    }
}
