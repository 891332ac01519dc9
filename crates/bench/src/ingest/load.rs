//! Load generation: batches of events sent over keep-alive connections, one sample per request.
//!
//! Two shapes. *Closed loop* (the throughput run): each connection sends its next batch as soon
//! as the last one is acknowledged, so the figure is what the system sustains with N clients.
//! *Open loop* (the spike profile): batches leave on a schedule whatever the replies, the way a
//! portal's readers keep clicking when the backend slows down, so 429s and latency show the
//! system's behaviour under a rate it did not choose.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_nats::jetstream;
use bytes::Bytes;
use tokio::sync::Semaphore;

use super::bodies::BodyTemplate;
use crate::BenchError;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Durably acknowledged (HTTP 200, or every JetStream publish ack received).
    Acked,
    /// Refused with 429/503 and Retry-After: shed, not lost (the client keeps the batch).
    Throttled,
    /// Any other failure (connection error, unexpected status).
    Failed,
}

/// One request.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Seconds since the load started, when the request was sent.
    pub sent_at_s: f64,
    pub latency_us: u64,
    pub outcome: Outcome,
    pub events: u32,
    pub bytes: u32,
}

/// Where to send batches.
#[derive(Debug, Clone)]
pub enum Target {
    /// `POST http://{addr}/v1/events` with an NDJSON body.
    Newsrec { addr: String },
    /// One JetStream publish per event to `clicks.events`, then wait for every ack.
    Nats { addr: String },
}

/// One sending connection.
enum Sender {
    Http {
        client: reqwest::Client,
        url: String,
    },
    Nats(jetstream::Context),
}

impl Sender {
    async fn connect(target: &Target) -> Result<Sender, BenchError> {
        Ok(match target {
            Target::Newsrec { addr } => Sender::Http {
                client: reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()?,
                url: format!("http://{addr}/v1/events"),
            },
            Target::Nats { addr } => {
                let client = async_nats::connect(addr.as_str())
                    .await
                    .map_err(BenchError::peer(format!("connecting to NATS at {addr}")))?;
                Sender::Nats(jetstream::new(client))
            }
        })
    }

    async fn send(&self, body: Bytes, template: &BodyTemplate) -> Outcome {
        match self {
            Sender::Http { client, url } => {
                let reply = client
                    .post(url)
                    .header("content-type", "application/x-ndjson")
                    .body(body)
                    .send()
                    .await;
                match reply {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        // Drain the reply so the connection is reused.
                        let _ = response.bytes().await;
                        match status {
                            200 => Outcome::Acked,
                            429 | 503 => Outcome::Throttled,
                            _ => Outcome::Failed,
                        }
                    }
                    Err(_) => Outcome::Failed,
                }
            }
            Sender::Nats(context) => {
                let mut acks = Vec::with_capacity(template.events());
                for &(start, end) in template.lines() {
                    match context
                        .publish("clicks.events", body.slice(start..end))
                        .await
                    {
                        Ok(ack) => acks.push(ack),
                        Err(_) => return Outcome::Failed,
                    }
                }
                for ack in acks {
                    if ack.await.is_err() {
                        return Outcome::Failed;
                    }
                }
                Outcome::Acked
            }
        }
    }
}

/// Creates the JetStream stream the peer publishes to (file storage, one replica).
pub async fn create_nats_stream(addr: &str) -> Result<(), BenchError> {
    let client = async_nats::connect(addr)
        .await
        .map_err(BenchError::peer(format!("connecting to NATS at {addr}")))?;
    let context = jetstream::new(client);
    context
        .create_stream(jetstream::stream::Config {
            name: "CLICKS".into(),
            subjects: vec!["clicks.>".into()],
            storage: jetstream::stream::StorageType::File,
            num_replicas: 1,
            ..Default::default()
        })
        .await
        .map_err(BenchError::peer("creating the JetStream stream"))?;
    Ok(())
}

/// Closed loop: `templates.len()` connections, each sending its next batch when the last is
/// answered, for `duration`.
pub async fn closed_loop(
    target: &Target,
    templates: Vec<Vec<BodyTemplate>>,
    duration: Duration,
) -> Result<Vec<Sample>, BenchError> {
    let sequence = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for connection_templates in templates {
        let sender = Sender::connect(target).await?;
        let sequence = Arc::clone(&sequence);
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while start.elapsed() < duration {
                let number = sequence.fetch_add(1, Ordering::Relaxed);
                let template = &connection_templates[number as usize % connection_templates.len()];
                let body = template.body(number);
                let bytes = body.len() as u32;
                let sent = Instant::now();
                let outcome = sender.send(body, template).await;
                samples.push(Sample {
                    sent_at_s: (sent - start).as_secs_f64(),
                    latency_us: sent.elapsed().as_micros() as u64,
                    outcome,
                    events: template.events() as u32,
                    bytes,
                });
                if outcome == Outcome::Failed {
                    // Do not spin on a dead server.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            samples
        }));
    }
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await?);
    }
    Ok(samples)
}

/// One phase of an open-loop profile.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    pub duration: Duration,
    pub events_per_sec: u64,
}

/// Open loop: batches leave on the phases' schedule, at most `max_in_flight` at once (more would
/// only measure the generator). Returns the samples and how many batches left late because
/// `max_in_flight` requests were already waiting.
pub async fn open_loop(
    target: &Target,
    templates: Vec<BodyTemplate>,
    phases: &[Phase],
    max_in_flight: usize,
) -> Result<(Vec<Sample>, u64), BenchError> {
    let mut senders = Vec::new();
    for _ in 0..max_in_flight {
        senders.push(Arc::new(Sender::connect(target).await?));
    }
    let free: Arc<Mutex<Vec<Arc<Sender>>>> = Arc::new(Mutex::new(senders));
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let templates = Arc::new(templates);
    let start = Instant::now();
    let mut late = 0u64;
    let mut number = 0u64;
    let mut tasks = Vec::new();
    for phase in phases {
        let batch = templates[0].events() as f64;
        let period = Duration::from_secs_f64(batch / phase.events_per_sec.max(1) as f64);
        let phase_end = Instant::now() + phase.duration;
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        while Instant::now() < phase_end {
            ticker.tick().await;
            let permit = match Arc::clone(&slots).try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    late += 1;
                    Arc::clone(&slots).acquire_owned().await.map_err(|_| {
                        BenchError::Unexpected("the load generator's slots closed".into())
                    })?
                }
            };
            let sender =
                free.lock().expect("sender pool").pop().ok_or_else(|| {
                    BenchError::Unexpected("no free connection for a permit".into())
                })?;
            let (free, samples, templates) = (
                Arc::clone(&free),
                Arc::clone(&samples),
                Arc::clone(&templates),
            );
            let this = number;
            number += 1;
            tasks.push(tokio::spawn(async move {
                let template = &templates[this as usize % templates.len()];
                let body = template.body(this);
                let bytes = body.len() as u32;
                let sent = Instant::now();
                let outcome = sender.send(body, template).await;
                samples.lock().expect("samples").push(Sample {
                    sent_at_s: (sent - start).as_secs_f64(),
                    latency_us: sent.elapsed().as_micros() as u64,
                    outcome,
                    events: template.events() as u32,
                    bytes,
                });
                free.lock().expect("sender pool").push(sender);
                drop(permit);
            }));
            tasks.retain(|task| !task.is_finished());
        }
    }
    for task in tasks {
        task.await?;
    }
    let samples = std::mem::take(&mut *samples.lock().expect("samples"));
    Ok((samples, late))
}

/// Figures over a set of samples.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Summary {
    pub requests: u64,
    pub acked_events: u64,
    pub events_per_sec: f64,
    pub mb_per_sec: f64,
    pub p50_ack_ms: f64,
    pub p99_ack_ms: f64,
    pub max_ack_ms: f64,
    pub throttled: u64,
    pub failed: u64,
}

/// Summarises samples over `seconds` of load; latencies are of acknowledged requests.
pub fn summarize(samples: &[Sample], seconds: f64) -> Summary {
    let mut latencies: Vec<u64> = samples
        .iter()
        .filter(|s| s.outcome == Outcome::Acked)
        .map(|s| s.latency_us)
        .collect();
    latencies.sort_unstable();
    let quantile = |q: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let index = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[index] as f64 / 1000.0
    };
    let acked = samples.iter().filter(|s| s.outcome == Outcome::Acked);
    let acked_events: u64 = acked.clone().map(|s| u64::from(s.events)).sum();
    let acked_bytes: u64 = acked.map(|s| u64::from(s.bytes)).sum();
    Summary {
        requests: samples.len() as u64,
        acked_events,
        events_per_sec: acked_events as f64 / seconds.max(1e-9),
        mb_per_sec: acked_bytes as f64 / 1e6 / seconds.max(1e-9),
        p50_ack_ms: quantile(0.50),
        p99_ack_ms: quantile(0.99),
        max_ack_ms: latencies.last().map_or(0.0, |&us| us as f64 / 1000.0),
        throttled: samples
            .iter()
            .filter(|s| s.outcome == Outcome::Throttled)
            .count() as u64,
        failed: samples
            .iter()
            .filter(|s| s.outcome == Outcome::Failed)
            .count() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(latency_us: u64, outcome: Outcome) -> Sample {
        Sample {
            sent_at_s: 0.0,
            latency_us,
            outcome,
            events: 500,
            bytes: 100_000,
        }
    }

    #[test]
    fn summary_counts_only_acked_requests_in_rates_and_latencies() {
        let mut samples: Vec<Sample> = (1..=100)
            .map(|ms| sample(ms * 1000, Outcome::Acked))
            .collect();
        samples.push(sample(900_000, Outcome::Throttled));
        samples.push(sample(5, Outcome::Failed));
        let summary = summarize(&samples, 10.0);
        assert_eq!(summary.acked_events, 50_000);
        assert_eq!(summary.events_per_sec, 5_000.0);
        assert_eq!(summary.mb_per_sec, 1.0);
        assert_eq!(summary.p50_ack_ms, 50.0);
        assert_eq!(summary.p99_ack_ms, 99.0);
        assert_eq!(summary.max_ack_ms, 100.0);
        assert_eq!((summary.throttled, summary.failed), (1, 1));
    }
}
