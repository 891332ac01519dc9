//! The click feed: carries acked clicks from ingest nodes to serve nodes through one Redis
//! Stream, so every serve node's real-time signals see every click within a second.
//!
//! Consumes clicks an ingest node has acked ([`FeedPublisher::publish`], which never blocks and
//! never fails) and produces them, in stream order, to a callback on every serve node
//! ([`FeedSubscriber`], which reads the whole stream: no consumer groups, each node needs all
//! clicks). The feed is best effort by design: the lake is the durable record, so a click the
//! feed cannot carry (queue full, Redis down) is dropped, counted and logged, never retried into
//! a duplicate.
//!
//! # Stream layout
//!
//! One stream key (default `newsrec:clicks`). Each `publish` call is one entry (split only
//! above [`MAX_CLICKS_PER_ENTRY`] clicks) with an auto-generated id and one field, `c`, holding
//! the clicks in the versioned binary format documented in [`codec`]. Writers trim with `XADD
//! ... MAXLEN ~ max_len`, so the stream keeps roughly the newest `max_len` entries and a serve
//! node that starts late replays that tail ([`StartAt::Beginning`]) to warm up. Any other field
//! is ignored; an entry without `c`, or whose `c` does not decode, is skipped and counted.
//!
//! # Metrics
//!
//! Counters `newsrec_feed_published_clicks_total`, `newsrec_feed_dropped_clicks_total`,
//! `newsrec_feed_applied_clicks_total`, `newsrec_feed_bad_entries_total`, and the gauge
//! `newsrec_feed_lag_seconds` (see [`SubscriberStats::lag_ms`]).

pub mod codec;
mod publisher;
mod subscriber;

use std::{
    fmt,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

pub use codec::{DecodeError, EncodeError, decode_clicks, encode_clicks};
pub use publisher::{FeedPublisher, PublisherStats};
use redis::RedisError;
pub use subscriber::{ApplyClicks, EntryId, FeedSubscriber, StartAt, SubscriberStats};

/// Clicks per stream entry at most: a bigger `publish` call is split, so one entry (and one
/// `XREAD` reply of `COUNT` entries) stays a bounded size, about 520 KiB at worst.
pub const MAX_CLICKS_PER_ENTRY: usize = 1000;

/// The stream field holding an entry's clicks.
pub const CLICKS_FIELD: &str = "c";

const PUBLISHED_CLICKS: &str = "newsrec_feed_published_clicks_total";
const DROPPED_CLICKS: &str = "newsrec_feed_dropped_clicks_total";
const APPLIED_CLICKS: &str = "newsrec_feed_applied_clicks_total";
const BAD_ENTRIES: &str = "newsrec_feed_bad_entries_total";
const LAG_SECONDS: &str = "newsrec_feed_lag_seconds";

/// Establishing a TCP connection to Redis takes at most this long.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// Repeated warnings (drops, bad entries, reconnects) are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// One acked click as carried on the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Click {
    /// The user; at most [`codec::MAX_ID_BYTES`] bytes.
    pub user_id: String,
    /// The article; at most [`codec::MAX_ID_BYTES`] bytes.
    pub article_id: String,
    /// Event time, epoch milliseconds.
    pub ts_ms: i64,
}

/// Where the feed lives and how much of it is kept (plain data, from config).
#[derive(Clone)]
pub struct FeedSettings {
    /// `redis://[user:password@]host[:port][/db]` (or `redis+unix:///path?db=N`).
    pub redis_url: String,
    /// The stream key.
    pub stream: String,
    /// Entries the stream keeps, approximately (`XADD MAXLEN ~`): the replay a late serve node
    /// gets. Publishers trim; subscribers only read.
    pub max_len: u64,
    /// Clicks a publisher holds in memory while Redis is slow or down; more are dropped.
    pub queue_clicks: usize,
}

impl FeedSettings {
    /// The default stream key.
    pub const DEFAULT_STREAM: &str = "newsrec:clicks";
    /// The default `max_len`: at a few dozen bytes per click and a handful of clicks per entry,
    /// a few hundred MB of Redis at most, minutes to hours of traffic.
    pub const DEFAULT_MAX_LEN: u64 = 1_000_000;
    /// The default `queue_clicks`: a few seconds of a busy node's clicks, ~10 MB.
    pub const DEFAULT_QUEUE_CLICKS: usize = 100_000;

    /// Refuses settings no feed can run with, before anything connects.
    fn validate(&self) -> Result<(), FeedError> {
        let invalid = |reason: &str| {
            Err(FeedError::InvalidSettings {
                reason: reason.to_owned(),
            })
        };
        if self.stream.is_empty() {
            return invalid("stream must not be empty: set it to a key such as \"newsrec:clicks\"");
        }
        if self.max_len == 0 {
            return invalid("max_len must be at least 1 (it is the number of entries kept)");
        }
        if self.queue_clicks == 0 {
            return invalid("queue_clicks must be at least 1, or every click would be dropped");
        }
        Ok(())
    }

    /// Opens a client for `redis_url` (no I/O yet).
    fn client(&self) -> Result<redis::Client, FeedError> {
        redis::Client::open(self.redis_url.as_str()).map_err(|error| FeedError::InvalidUrl {
            url: redact(&self.redis_url),
            reason: error.to_string(),
        })
    }
}

impl Default for FeedSettings {
    fn default() -> Self {
        FeedSettings {
            redis_url: "redis://127.0.0.1:6379".into(),
            stream: Self::DEFAULT_STREAM.into(),
            max_len: Self::DEFAULT_MAX_LEN,
            queue_clicks: Self::DEFAULT_QUEUE_CLICKS,
        }
    }
}

impl fmt::Debug for FeedSettings {
    // The url without its password: settings end up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeedSettings")
            .field("redis_url", &redact(&self.redis_url))
            .field("stream", &self.stream)
            .field("max_len", &self.max_len)
            .field("queue_clicks", &self.queue_clicks)
            .finish()
    }
}

/// Why a publisher or subscriber could not start. Once started, neither fails: errors are
/// logged, counted and retried in the background.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FeedError {
    /// A setting no feed can run with.
    #[error("invalid feed settings: {reason}")]
    InvalidSettings {
        /// What is wrong and what to set instead.
        reason: String,
    },
    /// The url is not a Redis url.
    #[error(
        "invalid feed redis url {url}: {reason}; expected redis://[user:password@]host[:port][/db]"
    )]
    InvalidUrl {
        /// The url, password masked.
        url: String,
        /// Why the client refused it.
        reason: String,
    },
    /// Redis did not answer at start.
    #[error("cannot reach the feed's redis at {url} (stream {stream}): {source}{hint}")]
    Unreachable {
        /// The url, password masked.
        url: String,
        /// The stream key.
        stream: String,
        /// The client's error.
        source: RedisError,
        /// What to do about it (may be empty).
        hint: &'static str,
    },
    /// The stream key holds something else: every `XADD`/`XREAD` would fail.
    #[error(
        "feed stream {stream} at {url} is a redis {found}, not a stream; delete the key or pick \
         another stream name"
    )]
    NotAStream {
        /// The url, password masked.
        url: String,
        /// The stream key.
        stream: String,
        /// The key's type (`TYPE`).
        found: String,
    },
    /// Redis answered in a shape this build does not understand (not a Redis server, or an
    /// incompatible version: streams need Redis 5 or later).
    #[error("unexpected reply from the feed's redis at {url} (stream {stream}): {reason}")]
    UnexpectedReply {
        /// The url, password masked.
        url: String,
        /// The stream key.
        stream: String,
        /// What was wrong with it.
        reason: String,
    },
}

impl FeedError {
    fn unreachable(settings: &FeedSettings, source: RedisError) -> FeedError {
        FeedError::Unreachable {
            url: redact(&settings.redis_url),
            stream: settings.stream.clone(),
            hint: hint(&source),
            source,
        }
    }
}

/// What to do about a Redis error, where known (appended to messages).
fn hint(error: &RedisError) -> &'static str {
    match error.code() {
        Some("NOAUTH" | "WRONGPASS") => "; put the user and password in the feed's redis url",
        Some("NOPERM") => "; grant the redis user XADD/XREAD/TYPE/XREVRANGE on the stream key",
        Some("OOM") => "; redis is out of memory: raise maxmemory or lower the feed's max_len",
        Some("READONLY") => "; the url names a read-only replica: point publishers at the primary",
        Some("LOADING") => "; redis is loading its data set: retry shortly",
        _ if error.is_io_error() || error.is_timeout() || error.is_connection_refusal() => {
            "; check that redis is running and reachable at that url"
        }
        _ => "",
    }
}

/// Checks at start that the stream key is a stream or absent.
async fn check_stream_type(
    connection: &mut impl redis::aio::ConnectionLike,
    settings: &FeedSettings,
) -> Result<(), FeedError> {
    let found: String = redis::cmd("TYPE")
        .arg(&settings.stream)
        .query_async(connection)
        .await
        .map_err(|error| FeedError::unreachable(settings, error))?;
    if found != "stream" && found != "none" {
        return Err(FeedError::NotAStream {
            url: redact(&settings.redis_url),
            stream: settings.stream.clone(),
            found,
        });
    }
    Ok(())
}

/// The url with its password masked, for messages.
fn redact(url: &str) -> String {
    if let Some(mut parsed) = redis::parse_redis_url(url) {
        if parsed.password().is_some() {
            // Fails only for urls without a host, which cannot carry a password.
            let _ = parsed.set_password(Some("***"));
            return parsed.to_string();
        }
        return url.to_owned();
    }
    // Not a redis url (a typo'd scheme, say): still worth echoing, minus any password.
    let Some(scheme_end) = url.find("://").map(|index| index + 3) else {
        return if url.contains('@') {
            "<unparseable url>".to_owned()
        } else {
            url.to_owned()
        };
    };
    let rest = &url[scheme_end..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    match authority.rfind('@') {
        Some(at) => {
            let user = authority[..at].split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme_end], &rest[at..])
        }
        None => url.to_owned(),
    }
}

/// Milliseconds since the Unix epoch, by this machine's clock.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Lets a repeated log line through at most once per [`LOG_EVERY`], lock-free, so a flood of
/// drops or bad entries cannot flood the logs.
#[derive(Debug)]
struct LogThrottle {
    origin: Instant,
    /// Milliseconds since `origin` before which nothing more is logged; 0 = log now.
    next_ms: AtomicU64,
}

impl LogThrottle {
    fn new() -> LogThrottle {
        LogThrottle {
            origin: Instant::now(),
            next_ms: AtomicU64::new(0),
        }
    }

    fn allow(&self) -> bool {
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        let next = self.next_ms.load(Ordering::Relaxed);
        if now < next {
            return false;
        }
        let every = u64::try_from(LOG_EVERY.as_millis()).unwrap_or(u64::MAX);
        // Only the caller that moves the deadline logs; racing callers see the new deadline.
        self.next_ms
            .compare_exchange(
                next,
                now.saturating_add(every),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        let settings = FeedSettings {
            redis_url: "redis://user:secret@127.0.0.1:6379/0".into(),
            ..FeedSettings::default()
        };
        let debug = format!("{settings:?}");
        assert!(!debug.contains("secret"), "{debug}");
        assert!(debug.contains("127.0.0.1:6379"), "{debug}");
        assert_eq!(redact("not a url :secret@"), "<unparseable url>");
        assert_eq!(redact("http://u:secret@h:1/0"), "http://u:***@h:1/0");
        assert_eq!(redact("http://h:1/0?a=b@c"), "http://h:1/0?a=b@c");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }

    #[test]
    fn settings_no_feed_can_run_with_are_refused() {
        for (settings, expected) in [
            (
                FeedSettings {
                    stream: String::new(),
                    ..FeedSettings::default()
                },
                "stream must not be empty",
            ),
            (
                FeedSettings {
                    max_len: 0,
                    ..FeedSettings::default()
                },
                "max_len must be at least 1",
            ),
            (
                FeedSettings {
                    queue_clicks: 0,
                    ..FeedSettings::default()
                },
                "queue_clicks must be at least 1",
            ),
        ] {
            let error = settings.validate().unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
        }
        FeedSettings::default().validate().unwrap();
    }

    #[test]
    fn the_log_throttle_lets_one_line_through_per_period() {
        let throttle = LogThrottle::new();
        assert!(throttle.allow());
        assert!(!throttle.allow());
        assert!(!throttle.allow());
    }
}
