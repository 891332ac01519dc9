//! Batching accepted events into lake objects, and acknowledging senders after the write.
//!
//! One task owns the buffer. A batch is written when it holds `max_events` events, or
//! `max_bytes` bytes, or when its *first* event has waited `max_age` (so a quiet stream is not
//! held back, and a busy one makes large objects). Every submission carries a one-shot
//! [`Ack`]; the task answers it only after the object is durably in the lake, or with the error
//! that prevented it. The submission channel is bounded, so a slow lake slows senders down
//! instead of growing memory.

use std::time::{Duration, Instant};

use newsrec_event::ClickEvent;
use newsrec_lake::Lake;
use tokio::sync::{mpsc, oneshot};

/// Submissions waiting for the batcher; beyond this, senders wait (backpressure).
const SUBMISSION_QUEUE: usize = 256;

/// The three bounds of a batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_events: usize,
    pub max_bytes: usize,
    pub max_age: Duration,
}

/// What the sender learns once its events are handled.
pub type Ack = Result<(), String>;

struct Submission {
    events: Vec<ClickEvent>,
    ack: oneshot::Sender<Ack>,
}

/// Sends events to the batcher task; cheap to clone.
#[derive(Debug, Clone)]
pub struct BatcherHandle {
    submissions: mpsc::Sender<Submission>,
}

impl std::fmt::Debug for Submission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submission")
            .field("events", &self.events.len())
            .finish()
    }
}

/// Why a submission was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("ingest is shutting down; retry against another node")]
    ShuttingDown,
    #[error("writing to the lake failed: {0}")]
    Lake(String),
}

impl BatcherHandle {
    /// Queues events and waits until they are durably in the lake.
    pub async fn submit(&self, events: Vec<ClickEvent>) -> Result<(), SubmitError> {
        if events.is_empty() {
            return Ok(());
        }
        let (ack, acked) = oneshot::channel();
        self.submissions
            .send(Submission { events, ack })
            .await
            .map_err(|_| SubmitError::ShuttingDown)?;
        match acked.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(SubmitError::Lake(reason)),
            // The task ended without answering: only on runtime shutdown.
            Err(_) => Err(SubmitError::ShuttingDown),
        }
    }
}

/// Starts the batcher task writing to `lake` under `writer` (the node id).
pub fn spawn_batcher(
    lake: Lake,
    writer: String,
    limits: BatchLimits,
) -> (BatcherHandle, BatcherTask) {
    let (submissions, receiver) = mpsc::channel(SUBMISSION_QUEUE);
    let (stop, stopped) = oneshot::channel();
    let join = tokio::spawn(run(lake, writer, limits, receiver, stopped));
    (BatcherHandle { submissions }, BatcherTask { stop, join })
}

/// The running batcher; [`BatcherTask::shutdown`] flushes what it holds and stops it.
#[derive(Debug)]
pub struct BatcherTask {
    stop: oneshot::Sender<()>,
    join: tokio::task::JoinHandle<()>,
}

impl BatcherTask {
    /// Stops accepting, writes every queued and buffered event, answers their senders, and ends.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        if let Err(error) = self.join.await {
            tracing::error!(%error, "batcher task failed");
        }
    }
}

#[derive(Default)]
struct Batch {
    events: Vec<ClickEvent>,
    acks: Vec<oneshot::Sender<Ack>>,
    bytes: usize,
    first_at: Option<Instant>,
}

async fn run(
    lake: Lake,
    writer: String,
    limits: BatchLimits,
    mut receiver: mpsc::Receiver<Submission>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut batch = Batch::default();
    let mut sequence = SequenceClock::default();
    let mut stopping = false;
    loop {
        let deadline = batch.first_at.map(|first| first + limits.max_age);
        let age_flush = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                None => std::future::pending().await,
            }
        };
        let next = tokio::select! {
            next = receiver.recv() => next,
            () = age_flush => {
                flush(&lake, &writer, sequence.next(), &mut batch).await;
                continue;
            }
            _ = &mut stopped, if !stopping => {
                // Refuse new submissions, then take in whatever is already queued.
                stopping = true;
                receiver.close();
                continue;
            }
        };
        let Some(submission) = next else { break };
        batch.first_at.get_or_insert_with(Instant::now);
        batch.bytes += submission
            .events
            .iter()
            .map(ClickEvent::approx_bytes)
            .sum::<usize>();
        batch.events.extend(submission.events);
        batch.acks.push(submission.ack);
        if batch.events.len() >= limits.max_events || batch.bytes >= limits.max_bytes {
            flush(&lake, &writer, sequence.next(), &mut batch).await;
        }
    }
    flush(&lake, &writer, sequence.next(), &mut batch).await;
}

async fn flush(lake: &Lake, writer: &str, seq: u64, batch: &mut Batch) {
    let Batch {
        events,
        acks,
        bytes,
        ..
    } = std::mem::take(batch);
    if events.is_empty() {
        return;
    }
    let started = Instant::now();
    let outcome = lake.write_events(writer, seq, &events).await;
    let elapsed = started.elapsed();
    metrics::histogram!("newsrec_ingest_flush_seconds").record(elapsed.as_secs_f64());
    let ack = match outcome {
        Ok(objects) => {
            metrics::counter!("newsrec_lake_objects_written_total").increment(objects.len() as u64);
            metrics::histogram!("newsrec_ingest_flush_events").record(events.len() as f64);
            tracing::debug!(
                events = events.len(),
                bytes,
                objects = objects.len(),
                seq,
                ms = elapsed.as_millis() as u64,
                "batch written"
            );
            Ok(())
        }
        Err(error) => {
            metrics::counter!("newsrec_ingest_flush_failures_total").increment(1);
            tracing::error!(events = events.len(), seq, %error, "batch write failed; senders get 503");
            Err(error.to_string())
        }
    };
    for sender in acks {
        // A sender that gave up (client disconnected) no longer needs the answer.
        let _ = sender.send(ack.clone());
    }
}

/// Object sequence numbers: wall-clock microseconds, forced strictly upward, so a restarted
/// node never reuses a name of its earlier life (unless the clock goes back across a restart).
#[derive(Debug, Default)]
struct SequenceClock {
    last: u64,
}

impl SequenceClock {
    fn next(&mut self) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| {
                u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
            });
        self.last = now.max(self.last + 1);
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use newsrec_lake::{EventColumns, TimeWindow};

    fn events(n: usize) -> Vec<ClickEvent> {
        (0..n)
            .map(|i| {
                ClickEvent::click(&format!("u{i}"), "a", 1_506_816_000_000 + i as i64).unwrap()
            })
            .collect()
    }

    async fn stored(lake: &Lake) -> usize {
        let window = TimeWindow {
            start_ms: 1_506_816_000_000,
            end_ms: 1_506_902_400_000,
        };
        lake.read_events(window, EventColumns::All)
            .await
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum()
    }

    #[tokio::test]
    async fn acks_only_after_the_lake_holds_the_events() {
        let lake = Lake::open("memory://").unwrap();
        let limits = BatchLimits {
            max_events: 1_000_000,
            max_bytes: usize::MAX,
            max_age: Duration::from_millis(50),
        };
        let (handle, task) = spawn_batcher(lake.clone(), "n1".into(), limits);
        let started = Instant::now();
        handle.submit(events(3)).await.unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(45),
            "flushed by age, not before"
        );
        assert_eq!(stored(&lake).await, 3);
        drop(handle);
        task.shutdown().await;
    }

    #[tokio::test]
    async fn count_bound_flushes_at_once_and_shutdown_flushes_the_rest() {
        let lake = Lake::open("memory://").unwrap();
        let limits = BatchLimits {
            max_events: 10,
            max_bytes: usize::MAX,
            max_age: Duration::from_secs(3600),
        };
        let (handle, task) = spawn_batcher(lake.clone(), "n1".into(), limits);
        tokio::time::timeout(Duration::from_secs(5), handle.submit(events(10)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored(&lake).await, 10);
        let pending = {
            let handle = handle.clone();
            tokio::spawn(async move { handle.submit(events(4)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        task.shutdown().await;
        pending.await.unwrap().unwrap();
        let refused = handle.submit(events(1)).await.unwrap_err();
        assert_eq!(refused, SubmitError::ShuttingDown);
        assert_eq!(stored(&lake).await, 14);
    }

    #[test]
    fn sequence_is_strictly_increasing() {
        let mut clock = SequenceClock::default();
        let mut last = 0;
        for _ in 0..1000 {
            let next = clock.next();
            assert!(next > last);
            last = next;
        }
    }
}
