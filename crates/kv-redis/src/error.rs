//! Redis failures as [`KvError`]s: what failed and, where the error code tells, what to do.

use redis::RedisError;

use newsrec_kv::KvError;

pub(crate) const BACKEND: &str = "redis";

/// Maps a Redis error to the crate error, with what failed and, where known, what to do.
pub(crate) fn redis_error(action: &str, error: RedisError) -> KvError {
    let hint = match error.code() {
        Some("OOM") => "; redis is out of memory: raise maxmemory or prune old generations",
        Some("READONLY") => "; the store uri names a read-only replica: point it at the primary",
        Some("NOAUTH" | "WRONGPASS") => "; put the user and password in the store uri",
        Some("NOPERM") => "; grant the redis user access to the prefix's keys and EVAL",
        Some("LOADING") => "; redis is loading its data set: retry shortly",
        Some("CROSSSLOT" | "MOVED" | "ASK") => {
            "; redis cluster is not supported: use a single primary (see docs/kv-layout.md)"
        }
        _ if error.is_io_error() || error.is_timeout() || error.is_connection_refusal() => {
            "; check that redis is running and reachable at the store uri"
        }
        _ => "",
    };
    KvError::Backend {
        backend: BACKEND,
        reason: format!("{action} failed: {error}{hint}"),
    }
}
