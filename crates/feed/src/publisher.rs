//! The ingest side: a bounded in-memory queue of encoded entries and the background task that
//! `XADD`s them to the stream in pipelined batches.
//!
//! Owns the queue and the publisher's Redis connection. `publish` encodes on the caller's
//! thread (the clicks are borrowed; the queue holds compact bytes, not `Click`s) and only takes
//! a mutex for a push, so it never waits on Redis. The writer task takes whatever queued up
//! while its previous pipeline was in flight (up to [`MAX_BATCH_ENTRIES`] / [`MAX_BATCH_BYTES`])
//! and sends it as one pipeline: batching follows load with no timer, and an idle feed adds no
//! latency.
//!
//! Failure policy: a batch whose pipeline fails is dropped, not retried. A retry could write
//! some entries twice (a pipeline can fail after Redis applied part of it) and subscribers
//! would count those clicks twice; the lake is the durable record, so the feed prefers a gap
//! to a duplicate. Such a batch counts as dropped even if Redis wrote part of it. The
//! [`ConnectionManager`] reconnects in the background, so the batch after an outage goes out
//! as soon as Redis is back; while it is down, the queue fills and further clicks are dropped.

use std::{
    collections::VecDeque,
    fmt,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{Notify, oneshot};

use crate::{
    CLICKS_FIELD, CONNECTION_TIMEOUT, Click, DROPPED_CLICKS, FeedError, FeedSettings, LogThrottle,
    MAX_CLICKS_PER_ENTRY, PUBLISHED_CLICKS, check_stream_type, codec, hint,
};

/// Entries per pipeline at most: bounds the memory in flight beside the queue and keeps one
/// pipeline from holding Redis long.
const MAX_BATCH_ENTRIES: usize = 256;
/// Payload bytes per pipeline at most (one oversized entry still goes alone).
const MAX_BATCH_BYTES: usize = 1 << 20;
/// A pipeline that gets no answer within this is dropped; the queue rides out the wait.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnection attempts per failed command before it gives up (and its batch is dropped);
/// the next batch starts a new round, so the publisher keeps trying for as long as it lives.
const RECONNECT_RETRIES: usize = 2;
const MAX_RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// Publishes clicks to the feed from a background task. See the crate doc for the layout.
///
/// `publish` never blocks and never fails: clicks it cannot carry are dropped and counted in
/// [`PublisherStats::dropped_clicks`]. Dropping the publisher closes its queue; the background
/// task writes what is still queued (stopping at the first failed batch) and ends. Call
/// [`FeedPublisher::flush`] first to know whether it all got out.
pub struct FeedPublisher {
    shared: Arc<Shared>,
}

/// What a publisher has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublisherStats {
    /// Stream entries written.
    pub published_entries: u64,
    /// Clicks in those entries.
    pub published_clicks: u64,
    /// Clicks dropped from the feed: queue full, Redis down or failing, or an id too long.
    pub dropped_clicks: u64,
    /// Clicks waiting in the queue now.
    pub queued_clicks: u64,
}

/// State shared by the handle and the writer task.
struct Shared {
    stream: String,
    max_len: u64,
    queue_clicks: usize,
    queue: Mutex<Queue>,
    /// Wakes the writer. `notify_one` keeps a permit when the writer is busy, so a push
    /// between its "queue empty" check and its wait is never missed.
    wake: Notify,
    published_entries: AtomicU64,
    published_clicks: AtomicU64,
    dropped_clicks: AtomicU64,
    /// Pipelines that failed; a flush compares it before and after to learn whether all of
    /// its entries were written.
    failed_writes: AtomicU64,
    drop_log: LogThrottle,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Item>,
    /// Clicks in `items`; at most `queue_clicks`.
    clicks: usize,
    /// The handle was dropped: the writer drains and ends.
    closed: bool,
}

enum Item {
    Entry(Entry),
    /// A `flush` waiting for every entry ahead of it: answered `true` when none of them was
    /// dropped by a failed write.
    Flush {
        failed_writes_before: u64,
        done: oneshot::Sender<bool>,
    },
}

struct Entry {
    payload: Vec<u8>,
    clicks: usize,
}

/// What the writer does next.
enum Next {
    Write(Vec<Entry>),
    Answer {
        failed_writes_before: u64,
        done: oneshot::Sender<bool>,
    },
    Wait,
    Exit,
}

impl FeedPublisher {
    /// Connects to Redis (fails if it is unreachable now, or if the stream key holds something
    /// other than a stream) and starts the writer task. Needs a Tokio runtime.
    pub async fn connect(settings: FeedSettings) -> Result<FeedPublisher, FeedError> {
        settings.validate()?;
        let client = settings.client()?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(RECONNECT_RETRIES)
            .set_max_delay(MAX_RECONNECT_DELAY);
        let mut connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|error| FeedError::unreachable(&settings, error))?;
        check_stream_type(&mut connection, &settings).await?;
        let shared = Arc::new(Shared {
            stream: settings.stream,
            max_len: settings.max_len,
            queue_clicks: settings.queue_clicks,
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            published_entries: AtomicU64::new(0),
            published_clicks: AtomicU64::new(0),
            dropped_clicks: AtomicU64::new(0),
            failed_writes: AtomicU64::new(0),
            drop_log: LogThrottle::new(),
        });
        // Not kept: the task ends by itself once the handle is dropped and the queue drained.
        tokio::spawn(write_loop(Arc::clone(&shared), connection));
        Ok(FeedPublisher { shared })
    }

    /// Queues `clicks` as one stream entry (several above [`MAX_CLICKS_PER_ENTRY`]). Never
    /// blocks on Redis and never fails: if the queue cannot take them they are dropped, counted
    /// and logged (at most once per 10 s). A click with an id over
    /// [`codec::MAX_ID_BYTES`] is dropped alone; the others go out.
    pub fn publish(&self, clicks: &[Click]) {
        let mut refused = 0_u64;
        let mut first_refusal = None;
        for (index, click) in clicks.iter().enumerate() {
            if let Some(error) = codec::check(index, click) {
                refused += 1;
                first_refusal.get_or_insert(error);
            }
        }
        if let Some(error) = first_refusal {
            self.shared.dropped(
                refused,
                format_args!("{refused} clicks have an id the feed cannot carry, first: {error}"),
            );
            let carried: Vec<&Click> = clicks
                .iter()
                .enumerate()
                .filter(|(index, click)| codec::check(*index, click).is_none())
                .map(|(_, click)| click)
                .collect();
            for chunk in carried.chunks(MAX_CLICKS_PER_ENTRY) {
                self.shared
                    .enqueue(codec::encode_checked(chunk.iter().copied()), chunk.len());
            }
            return;
        }
        for chunk in clicks.chunks(MAX_CLICKS_PER_ENTRY) {
            self.shared
                .enqueue(codec::encode_checked(chunk.iter()), chunk.len());
        }
    }

    /// Counts so far.
    pub fn stats(&self) -> PublisherStats {
        let shared = &self.shared;
        PublisherStats {
            published_entries: shared.published_entries.load(Ordering::Relaxed),
            published_clicks: shared.published_clicks.load(Ordering::Relaxed),
            dropped_clicks: shared.dropped_clicks.load(Ordering::Relaxed),
            queued_clicks: shared.lock_queue().clicks as u64,
        }
    }

    /// Waits until every click queued before this call has been written to Redis. `true` when
    /// they all were; `false` when `timeout` passed first, or when a failed write dropped some
    /// of them. For tests and graceful shutdown.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let (done, answer) = oneshot::channel();
        {
            let mut queue = self.shared.lock_queue();
            queue.items.push_back(Item::Flush {
                failed_writes_before: self.shared.failed_writes.load(Ordering::SeqCst),
                done,
            });
        }
        self.shared.wake.notify_one();
        // An error means the writer is gone (it only ends after the handle is dropped, or if
        // it panicked): nothing will be written.
        matches!(tokio::time::timeout(timeout, answer).await, Ok(Ok(true)))
    }
}

impl Drop for FeedPublisher {
    fn drop(&mut self) {
        self.shared.lock_queue().closed = true;
        self.shared.wake.notify_one();
    }
}

impl fmt::Debug for FeedPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeedPublisher")
            .field("stream", &self.shared.stream)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Shared {
    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        // The lock is never held across a panic-prone call, but a poisoned queue is still a
        // consistent queue: keep going rather than take the node down.
        self.queue
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn enqueue(&self, payload: Vec<u8>, clicks: usize) {
        if clicks == 0 {
            return;
        }
        {
            let mut queue = self.lock_queue();
            if queue.clicks + clicks > self.queue_clicks {
                drop(queue);
                self.dropped(
                    clicks as u64,
                    format_args!(
                        "the queue of {} clicks is full (redis slow or down)",
                        self.queue_clicks
                    ),
                );
                return;
            }
            queue.clicks += clicks;
            queue
                .items
                .push_back(Item::Entry(Entry { payload, clicks }));
        }
        self.wake.notify_one();
    }

    fn dropped(&self, clicks: u64, reason: fmt::Arguments<'_>) {
        let total = self.dropped_clicks.fetch_add(clicks, Ordering::Relaxed) + clicks;
        metrics::counter!(DROPPED_CLICKS).increment(clicks);
        if self.drop_log.allow() {
            tracing::warn!(
                stream = %self.stream,
                dropped = clicks,
                dropped_total = total,
                "click feed dropped clicks: {reason}; serve nodes miss them in their real-time \
                 signals (the lake still has them)"
            );
        }
    }

    /// Takes the next thing to do off the queue.
    fn next(&self) -> Next {
        let mut queue = self.lock_queue();
        if let Some(Item::Flush { .. }) = queue.items.front()
            && let Some(Item::Flush {
                failed_writes_before,
                done,
            }) = queue.items.pop_front()
        {
            return Next::Answer {
                failed_writes_before,
                done,
            };
        }
        let mut batch = Vec::new();
        let mut bytes = 0;
        // Stops at a flush marker: it is answered after the entries ahead of it are written.
        while batch.len() < MAX_BATCH_ENTRIES
            && let Some(Item::Entry(entry)) = queue.items.front()
            && (batch.is_empty() || bytes + entry.payload.len() <= MAX_BATCH_BYTES)
        {
            bytes += entry.payload.len();
            let Some(Item::Entry(entry)) = queue.items.pop_front() else {
                unreachable!("the front item was just seen to be an entry");
            };
            queue.clicks -= entry.clicks;
            batch.push(entry);
        }
        if !batch.is_empty() {
            Next::Write(batch)
        } else if queue.closed {
            Next::Exit
        } else {
            Next::Wait
        }
    }

    /// Drops everything still queued (the handle is gone and Redis is failing).
    fn drop_queued(&self) {
        let clicks = {
            let mut queue = self.lock_queue();
            queue.items.clear();
            std::mem::take(&mut queue.clicks)
        };
        if clicks > 0 {
            self.dropped(
                clicks as u64,
                format_args!("the publisher was dropped while redis was failing"),
            );
        }
    }
}

async fn write_loop(shared: Arc<Shared>, mut connection: ConnectionManager) {
    loop {
        match shared.next() {
            Next::Write(batch) => {
                let written = write_batch(&shared, &mut connection, batch).await;
                if !written && shared.lock_queue().closed {
                    shared.drop_queued();
                    return;
                }
            }
            Next::Answer {
                failed_writes_before,
                done,
            } => {
                let clean = shared.failed_writes.load(Ordering::SeqCst) == failed_writes_before;
                // The flush may have timed out and gone.
                let _ = done.send(clean);
            }
            Next::Wait => shared.wake.notified().await,
            Next::Exit => return,
        }
    }
}

/// Sends one pipeline of `XADD`s; true when Redis took it.
async fn write_batch(
    shared: &Shared,
    connection: &mut ConnectionManager,
    batch: Vec<Entry>,
) -> bool {
    let mut pipeline = redis::pipe();
    for entry in &batch {
        pipeline
            .cmd("XADD")
            .arg(&shared.stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(shared.max_len)
            .arg("*")
            .arg(CLICKS_FIELD)
            .arg(&entry.payload)
            .ignore();
    }
    let clicks: u64 = batch.iter().map(|entry| entry.clicks as u64).sum();
    match pipeline.query_async::<()>(connection).await {
        Ok(()) => {
            shared
                .published_entries
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            shared.published_clicks.fetch_add(clicks, Ordering::Relaxed);
            metrics::counter!(PUBLISHED_CLICKS).increment(clicks);
            true
        }
        Err(error) => {
            shared.failed_writes.fetch_add(1, Ordering::SeqCst);
            shared.dropped(
                clicks,
                format_args!(
                    "writing {} entries to the stream failed: {error}{}",
                    batch.len(),
                    hint(&error)
                ),
            );
            false
        }
    }
}
