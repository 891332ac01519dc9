//! Retrying what a batch call left unprocessed: exponential backoff with full jitter, bounded.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use newsrec_kv::KvError;

/// Retry policy for `UnprocessedItems` / `UnprocessedKeys`: 8 retries, worst case ≈ 11 s of sleep.
pub(crate) const BATCH_RETRY: Backoff = Backoff {
    base: Duration::from_millis(50),
    cap: Duration::from_secs(5),
    max_retries: 8,
};

/// Exponential backoff with full jitter (the delay is uniform in `[0, min(cap, base·2^retry)]`),
/// so many throttled writers spread out instead of retrying in step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Backoff {
    base: Duration,
    cap: Duration,
    max_retries: u32,
}

impl Backoff {
    /// The delay before retry number `retry` (0 = first retry) for a jitter draw `unit` in
    /// [0, 1]; `None` when the retries are used up.
    fn delay(&self, retry: u32, unit: f64) -> Option<Duration> {
        if retry >= self.max_retries {
            return None;
        }
        let factor = 1u32.checked_shl(retry).unwrap_or(u32::MAX);
        let ceiling = self.base.saturating_mul(factor).min(self.cap);
        Some(ceiling.mul_f64(unit.clamp(0.0, 1.0)))
    }
}

/// What was still unprocessed when the retries ran out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Unprocessed {
    pub(crate) remaining: usize,
    pub(crate) attempts: u32,
}

/// Sends `pending`, then re-sends whatever `send` reports unprocessed after a backoff delay,
/// until nothing is left or the retries run out (then `exhausted` names what was left). `send`
/// errors end it at once: the SDK has already retried those. Sleep and jitter are injected so
/// the schedule is testable without a server.
pub(crate) async fn drain_unprocessed<T, SendBatch, Sent, Sleep, Slept>(
    mut pending: Vec<T>,
    backoff: Backoff,
    mut send: SendBatch,
    mut sleep: Sleep,
    mut jitter: impl FnMut() -> f64,
    exhausted: impl FnOnce(Unprocessed) -> KvError,
) -> Result<(), KvError>
where
    SendBatch: FnMut(Vec<T>) -> Sent,
    Sent: Future<Output = Result<Vec<T>, KvError>>,
    Sleep: FnMut(Duration) -> Slept,
    Slept: Future<Output = ()>,
{
    let mut retry = 0;
    loop {
        pending = send(pending).await?;
        if pending.is_empty() {
            return Ok(());
        }
        let Some(delay) = backoff.delay(retry, jitter()) else {
            return Err(exhausted(Unprocessed {
                remaining: pending.len(),
                attempts: retry + 1,
            }));
        };
        sleep(delay).await;
        retry += 1;
    }
}

/// A uniform draw in [0, 1) for jitter; `RandomState` is randomly keyed per instance.
pub(crate) fn random_unit() -> f64 {
    use std::hash::BuildHasher;
    let bits = std::hash::RandomState::new().hash_one(Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::error::{backend_error, unprocessed_error};

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap_and_then_stops() {
        let ceilings: Vec<Option<Duration>> = (0..=BATCH_RETRY.max_retries)
            .map(|retry| BATCH_RETRY.delay(retry, 1.0))
            .collect();
        let ms = |millis| Some(Duration::from_millis(millis));
        assert_eq!(
            ceilings,
            vec![
                ms(50),
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1600),
                ms(3200),
                ms(5000),
                None
            ]
        );
        let worst: Duration = ceilings.iter().flatten().sum();
        assert!(
            worst <= Duration::from_secs(12),
            "worst-case sleep {worst:?}"
        );
        // Huge retry numbers saturate instead of overflowing.
        let wide = Backoff {
            max_retries: u32::MAX,
            ..BATCH_RETRY
        };
        assert_eq!(wide.delay(40, 1.0), Some(BATCH_RETRY.cap));
    }

    #[test]
    fn jitter_stays_within_zero_and_the_ceiling() {
        for retry in 0..BATCH_RETRY.max_retries {
            let ceiling = BATCH_RETRY.delay(retry, 1.0).unwrap();
            assert_eq!(BATCH_RETRY.delay(retry, 0.0), Some(Duration::ZERO));
            assert_eq!(
                BATCH_RETRY.delay(retry, 7.0),
                Some(ceiling),
                "draws are clamped"
            );
            for _ in 0..200 {
                let delay = BATCH_RETRY.delay(retry, random_unit()).unwrap();
                assert!(delay <= ceiling, "{delay:?} > {ceiling:?}");
            }
        }
        let draws: Vec<f64> = (0..1000).map(|_| random_unit()).collect();
        assert!(draws.iter().all(|unit| (0.0..1.0).contains(unit)));
        let distinct: HashSet<u64> = draws.iter().map(|unit| unit.to_bits()).collect();
        assert!(distinct.len() > 990, "draws repeat: {}", distinct.len());
        assert!(draws.iter().any(|unit| *unit < 0.2) && draws.iter().any(|unit| *unit > 0.8));
    }

    fn never_exhausted(left: Unprocessed) -> KvError {
        panic!("retries ran out: {left:?}")
    }

    #[tokio::test]
    async fn unprocessed_items_are_resent_until_none_are_left() {
        let sent = std::sync::Mutex::new(Vec::new());
        let slept = std::sync::Mutex::new(Vec::new());
        // The "server" processes one item per call.
        let result = drain_unprocessed(
            vec![1, 2, 3, 4],
            BATCH_RETRY,
            |batch: Vec<i32>| {
                sent.lock().unwrap().push(batch.clone());
                async move { Ok(batch[1..].to_vec()) }
            },
            |delay| {
                slept.lock().unwrap().push(delay);
                async {}
            },
            || 1.0,
            never_exhausted,
        )
        .await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(
            sent.into_inner().unwrap(),
            vec![vec![1, 2, 3, 4], vec![2, 3, 4], vec![3, 4], vec![4]]
        );
        let ms = Duration::from_millis;
        assert_eq!(slept.into_inner().unwrap(), vec![ms(50), ms(100), ms(200)]);
    }

    #[tokio::test]
    async fn retries_are_bounded_and_name_what_was_left() {
        let mut calls = 0;
        let mut slept = Vec::new();
        let mut left = None;
        let result = drain_unprocessed(
            vec!["a", "b", "c"],
            BATCH_RETRY,
            |batch: Vec<&str>| {
                calls += 1;
                // Always one processed, one new item unprocessed: never drains.
                async move { Ok(batch[1..].iter().copied().chain(["x"]).collect()) }
            },
            |delay| {
                slept.push(delay);
                async {}
            },
            || 0.5,
            |unprocessed| {
                left = Some(unprocessed);
                unprocessed_error("t1", "writing user lists", "items", unprocessed)
            },
        )
        .await;
        assert_eq!(calls, 1 + BATCH_RETRY.max_retries);
        assert_eq!(
            left,
            Some(Unprocessed {
                remaining: 3,
                attempts: 1 + BATCH_RETRY.max_retries
            })
        );
        // Half of each ceiling (jitter 0.5), and never more than the cap.
        assert_eq!(slept.len(), BATCH_RETRY.max_retries as usize);
        assert_eq!(slept[0], Duration::from_millis(25));
        assert!(slept.iter().all(|delay| *delay <= BATCH_RETRY.cap / 2));
        let message = result.unwrap_err().to_string();
        assert!(
            message.contains("left 3 items unprocessed after 9 attempts"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_send_error_stops_the_retries() {
        let mut calls = 0;
        let result = drain_unprocessed(
            vec![1],
            BATCH_RETRY,
            |_: Vec<i32>| {
                calls += 1;
                async { Err(backend_error("boom".into())) }
            },
            |_| async {},
            || 0.5,
            never_exhausted,
        )
        .await;
        assert_eq!(calls, 1);
        assert!(matches!(result, Err(KvError::Backend { .. })), "{result:?}");
    }
}
