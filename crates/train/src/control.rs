//! How the outside world steers a running job: a stop request and a progress callback.
//!
//! The job polls [`StopSignal`] between units of work (one ALS iteration, one evaluation, one
//! part of the lists), so a stop is honoured within one unit, after the unit's checkpoint. What
//! raises it is the caller's business: the binary raises it on SIGTERM and SIGINT, and
//! [`crate::spot::notice`] on an EC2 spot interruption notice.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};

/// A request to stop at the next unit boundary, shared by whoever may raise it.
#[derive(Debug, Clone, Default)]
pub struct StopSignal {
    raised: Arc<AtomicBool>,
    reason: Arc<Mutex<Option<String>>>,
}

impl StopSignal {
    pub fn new() -> StopSignal {
        StopSignal::default()
    }

    /// Asks the job to stop; the first reason given is the one reported.
    pub fn raise(&self, reason: impl Into<String>) {
        if let Ok(mut slot) = self.reason.lock() {
            slot.get_or_insert_with(|| reason.into());
        }
        self.raised.store(true, Ordering::SeqCst);
    }

    /// The reason, once raised.
    pub fn raised(&self) -> Option<String> {
        if !self.raised.load(Ordering::SeqCst) {
            return None;
        }
        Some(
            self.reason
                .lock()
                .ok()
                .and_then(|slot| slot.clone())
                .unwrap_or_else(|| "stop requested".into()),
        )
    }
}

/// Where a job is: `done` of `total` units of `stage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainProgress {
    pub stage: &'static str,
    pub done: u64,
    pub total: u64,
}

/// Receives progress reports (for a progress bar); must be cheap.
pub type ProgressFn = Arc<dyn Fn(TrainProgress) + Send + Sync>;

/// Peak resident memory of this process so far (Linux `VmHWM`), in bytes; `None` elsewhere.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reason_wins() {
        let stop = StopSignal::new();
        assert_eq!(stop.raised(), None);
        let shared = stop.clone();
        shared.raise("SIGTERM");
        stop.raise("spot notice");
        assert_eq!(stop.raised().as_deref(), Some("SIGTERM"));
    }

    #[test]
    fn peak_rss_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss_bytes().unwrap() > 1024 * 1024);
        }
    }
}
