//! The store-wide publish lock: taken, extended in the background while held, and released.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use redis::aio::ConnectionManager;

use newsrec_kv::{Generation, KvError};

use crate::{
    error::{BACKEND, redis_error},
    scripts::{EXTEND_LOCK, RELEASE_LOCK, script},
};

/// A publisher that dies holds the lock at most this long.
const LOCK_TTL: Duration = Duration::from_secs(30);
/// A live publisher extends its lock this often (three chances before it expires).
const LOCK_REFRESH_EVERY: Duration = Duration::from_secs(10);

/// The store-wide publish lock (`SET NX PX`), extended in the background while held.
///
/// One publish or prune at a time: a prune must not delete the generation being written. A
/// publisher that dies frees the lock after [`LOCK_TTL`]; one that drops its writer frees it at
/// once.
pub(crate) struct PublishLock {
    connection: ConnectionManager,
    pub(crate) key: String,
    pub(crate) token: String,
    lost: Arc<AtomicBool>,
    keeper: tokio::task::JoinHandle<()>,
    held: bool,
}

impl PublishLock {
    pub(crate) async fn acquire(
        connection: &ConnectionManager,
        key: String,
    ) -> Result<PublishLock, KvError> {
        let token = unique_token();
        let acquired: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(duration_ms(LOCK_TTL))
            .query_async(&mut connection.clone())
            .await
            .map_err(|error| redis_error("taking the publish lock", error))?;
        if acquired.is_none() {
            return Err(KvError::Locked { path: key });
        }
        let lost = Arc::new(AtomicBool::new(false));
        let keeper = tokio::spawn(keep_lock(
            connection.clone(),
            key.clone(),
            token.clone(),
            Arc::clone(&lost),
        ));
        Ok(PublishLock {
            connection: connection.clone(),
            key,
            token,
            lost,
            keeper,
            held: true,
        })
    }

    pub(crate) fn ensure_held(&self, generation: Generation) -> Result<(), KvError> {
        if self.lost.load(Ordering::Acquire) {
            return Err(lock_lost(&self.key, generation));
        }
        Ok(())
    }

    fn release_command(&self) -> redis::Cmd {
        let mut command = script(RELEASE_LOCK, std::slice::from_ref(&self.key));
        command.arg(&self.token);
        command
    }

    pub(crate) async fn release(mut self) {
        self.keeper.abort();
        self.held = false;
        if let Err(error) = self
            .release_command()
            .query_async::<()>(&mut self.connection)
            .await
        {
            // It expires by itself after LOCK_TTL.
            tracing::warn!(lock = %self.key, %error, "could not release the publish lock");
        }
    }
}

impl Drop for PublishLock {
    fn drop(&mut self) {
        self.keeper.abort();
        if !self.held {
            return;
        }
        // A writer dropped without `finish` (a failed publish): free the lock now rather than
        // after its TTL. Drop cannot await, so the release runs as its own task.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let command = self.release_command();
            let mut connection = self.connection.clone();
            runtime.spawn(async move {
                let _ = command.query_async::<()>(&mut connection).await;
            });
        }
    }
}

async fn keep_lock(
    mut connection: ConnectionManager,
    key: String,
    token: String,
    lost: Arc<AtomicBool>,
) {
    loop {
        tokio::time::sleep(LOCK_REFRESH_EVERY).await;
        let mut command = script(EXTEND_LOCK, std::slice::from_ref(&key));
        command.arg(&token).arg(duration_ms(LOCK_TTL));
        match command.query_async::<i64>(&mut connection).await {
            Ok(1) => {}
            Ok(_) => {
                lost.store(true, Ordering::Release);
                tracing::error!(
                    lock = %key,
                    "publish lock expired or was taken; this publish will fail"
                );
                return;
            }
            Err(error) => {
                tracing::warn!(lock = %key, %error, "could not extend the publish lock; retrying");
            }
        }
    }
}

pub(crate) fn lock_lost(key: &str, generation: Generation) -> KvError {
    KvError::Backend {
        backend: BACKEND,
        reason: format!(
            "publish lock {key} was lost before generation {generation} was sealed (redis \
             unreachable for longer than {}s, or the lock was deleted); publish again",
            LOCK_TTL.as_secs()
        ),
    }
}

/// A lock token no other publisher holds: process id, clock and a per-process counter.
fn unique_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!(
        "pid-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
