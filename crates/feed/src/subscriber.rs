//! The serve side: a background task that reads the whole stream with `XREAD BLOCK` and hands
//! each entry's clicks to a callback, in stream order, exactly once.
//!
//! Owns its own Redis connection: `XREAD BLOCK` holds a connection for up to a second, so it
//! must not share one with anything latency-sensitive. Its position is the id of the last entry
//! it handled (applied, or skipped as bad); after any error it reconnects with exponential
//! backoff and reads on from that id, so no entry is applied twice and none is skipped while
//! the stream still retains it. An entry trimmed away (`MAXLEN ~`) before a slow or
//! disconnected subscriber read it is lost to that subscriber; size `max_len` for the longest
//! outage a serve node should ride out.
//!
//! If the stream key disappears (deleted, or Redis restarted without persistence) and comes
//! back, its ids may restart below the position. On every reconnect the subscriber compares its
//! position with the stream's `last-generated-id` (which never goes backwards in one stream's
//! life, even after trims or `XDEL`) and starts over from the beginning of the new stream when
//! the position is ahead of it, instead of waiting for ids to catch up.
//!
//! The callback runs on Tokio's blocking pool (it may take locks shared with request
//! handlers), one batch of up to [`READ_COUNT`] entries at a time, never concurrently with
//! itself. A panicking callback skips that entry (counted as bad) rather than stopping the feed.

use std::{
    fmt,
    panic::AssertUnwindSafe,
    str::FromStr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use redis::{
    AsyncConnectionConfig, Client, RedisError, Value,
    aio::{ConnectionLike, MultiplexedConnection},
};
use tokio::task::JoinHandle;

use crate::{
    APPLIED_CLICKS, BAD_ENTRIES, CLICKS_FIELD, CONNECTION_TIMEOUT, Click, FeedError, FeedSettings,
    LAG_SECONDS, LogThrottle, check_stream_type, decode_clicks, hint, now_ms,
};

/// How long one `XREAD` waits for new entries: the longest a quiet subscriber takes to notice
/// it is caught up, and how often a dead connection is noticed when nothing is published.
const BLOCK: Duration = Duration::from_millis(1000);
/// Entries per `XREAD` at most.
const READ_COUNT: usize = 500;
/// The connection's answer deadline; must exceed [`BLOCK`].
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(6);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Where a new subscriber starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest entry the stream retains: replays the tail to warm up.
    Beginning,
    /// After the newest entry at [`FeedSubscriber::start`]: only clicks published later.
    Now,
}

/// A stream entry id, `<ms>-<seq>`: the Redis server's clock when the entry was added, and a
/// sequence within that millisecond. Ordered like the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId {
    /// Milliseconds since the Unix epoch (the Redis server's clock).
    pub ms: u64,
    /// Sequence within the millisecond.
    pub seq: u64,
}

impl EntryId {
    /// `0-0`, before every entry.
    pub const ZERO: EntryId = EntryId { ms: 0, seq: 0 };
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for EntryId {
    type Err = String;

    fn from_str(text: &str) -> Result<EntryId, String> {
        let (ms, seq) = text
            .split_once('-')
            .ok_or_else(|| format!("stream entry id {text:?} is not <ms>-<seq>"))?;
        match (ms.parse(), seq.parse()) {
            (Ok(ms), Ok(seq)) => Ok(EntryId { ms, seq }),
            _ => Err(format!("stream entry id {text:?} is not <ms>-<seq>")),
        }
    }
}

/// What a subscriber has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriberStats {
    /// Entries applied.
    pub entries: u64,
    /// Clicks in those entries, handed to the callback.
    pub clicks: u64,
    /// Entries skipped: no `c` field, a payload that does not decode, or a callback panic.
    pub bad_entries: u64,
    /// The last entry handled (applied or skipped); reading resumes after it.
    pub last_id: Option<EntryId>,
    /// How far behind the stream the subscriber is: after a read that returned entries, the
    /// Redis time in the newest one's id subtracted from this machine's clock when they had
    /// been applied; 0 after a read found nothing new (caught up). Unlike "now minus the last
    /// id", it does not grow while the stream is quiet, so it can be alerted on. Also the
    /// gauge `newsrec_feed_lag_seconds`. Clock skew between this node and Redis adds to it.
    pub lag_ms: u64,
    /// Connections re-established after an error.
    pub reconnects: u64,
}

/// Reads the feed in a background task and applies each entry's clicks. Dropping it stops the
/// task (a callback already running finishes).
pub struct FeedSubscriber {
    shared: Arc<Shared>,
    reader: JoinHandle<()>,
}

struct Shared {
    settings: FeedSettings,
    entries: AtomicU64,
    clicks: AtomicU64,
    bad_entries: AtomicU64,
    last_id: Mutex<Option<EntryId>>,
    lag_ms: AtomicU64,
    reconnects: AtomicU64,
    bad_entry_log: LogThrottle,
    error_log: LogThrottle,
}

/// One entry as read: its id and its `c` field, if it has one.
#[derive(Debug)]
struct RawEntry {
    id: EntryId,
    payload: Option<Vec<u8>>,
}

/// Why a read failed; the reader reconnects and retries either way.
#[derive(Debug)]
enum ReadError {
    Redis(RedisError),
    /// A reply not shaped as documented (should not happen with a real Redis).
    Reply(String),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Redis(error) => write!(f, "{error}{}", hint(error)),
            ReadError::Reply(reason) => write!(f, "unexpected reply: {reason}"),
        }
    }
}

impl From<RedisError> for ReadError {
    fn from(error: RedisError) -> ReadError {
        ReadError::Redis(error)
    }
}

/// The subscriber's callback: gets one entry's clicks at a time, in stream order.
pub type ApplyClicks = Arc<dyn Fn(&[Click]) + Send + Sync>;

impl FeedSubscriber {
    /// Connects (fails if Redis is unreachable now, or the stream key holds something other
    /// than a stream), fixes the start position, and starts reading. With [`StartAt::Now`],
    /// every entry added after this returns is applied. Needs a Tokio runtime.
    pub async fn start(
        settings: FeedSettings,
        start: StartAt,
        apply: ApplyClicks,
    ) -> Result<FeedSubscriber, FeedError> {
        settings.validate()?;
        let client = settings.client()?;
        let mut connection = connect(&client)
            .await
            .map_err(|error| FeedError::unreachable(&settings, error))?;
        check_stream_type(&mut connection, &settings).await?;
        // Resolved here rather than reading from `$`: a reconnect must resume from a concrete
        // id, and "now" must mean now, not whenever the task first runs.
        let position = match start {
            StartAt::Beginning => EntryId::ZERO,
            StartAt::Now => last_generated_id(&mut connection, &settings.stream)
                .await
                .map_err(|error| match error {
                    ReadError::Redis(error) => FeedError::unreachable(&settings, error),
                    ReadError::Reply(reason) => FeedError::UnexpectedReply {
                        url: crate::redact(&settings.redis_url),
                        stream: settings.stream.clone(),
                        reason,
                    },
                })?
                .unwrap_or(EntryId::ZERO),
        };
        let shared = Arc::new(Shared {
            settings,
            entries: AtomicU64::new(0),
            clicks: AtomicU64::new(0),
            bad_entries: AtomicU64::new(0),
            last_id: Mutex::new(None),
            lag_ms: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            bad_entry_log: LogThrottle::new(),
            error_log: LogThrottle::new(),
        });
        let reader = tokio::spawn(read_loop(
            Arc::clone(&shared),
            client,
            connection,
            position,
            apply,
        ));
        Ok(FeedSubscriber { shared, reader })
    }

    /// Counts so far.
    pub fn stats(&self) -> SubscriberStats {
        let shared = &self.shared;
        SubscriberStats {
            entries: shared.entries.load(Ordering::Relaxed),
            clicks: shared.clicks.load(Ordering::Relaxed),
            bad_entries: shared.bad_entries.load(Ordering::Relaxed),
            last_id: *shared
                .last_id
                .lock()
                .unwrap_or_else(|poison| poison.into_inner()),
            lag_ms: shared.lag_ms.load(Ordering::Relaxed),
            reconnects: shared.reconnects.load(Ordering::Relaxed),
        }
    }
}

impl Drop for FeedSubscriber {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl fmt::Debug for FeedSubscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeedSubscriber")
            .field("stream", &self.shared.settings.stream)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Shared {
    fn set_lag(&self, lag_ms: u64) {
        self.lag_ms.store(lag_ms, Ordering::Relaxed);
        metrics::gauge!(LAG_SECONDS).set(lag_ms as f64 / 1000.0);
    }

    fn set_last_id(&self, id: EntryId) {
        *self
            .last_id
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = Some(id);
    }

    fn bad_entry(&self, id: EntryId, reason: fmt::Arguments<'_>) {
        let total = self.bad_entries.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::counter!(BAD_ENTRIES).increment(1);
        if self.bad_entry_log.allow() {
            tracing::warn!(
                stream = %self.settings.stream,
                entry = %id,
                bad_entries_total = total,
                "skipped a click feed entry: {reason}"
            );
        }
    }

    fn read_failed(&self, error: &ReadError, retry_in: Duration) {
        if self.error_log.allow() {
            tracing::warn!(
                stream = %self.settings.stream,
                last_id = ?self.last_id.lock().unwrap_or_else(|poison| poison.into_inner()).map(|id| id.to_string()),
                retry_in_ms = retry_in.as_millis() as u64,
                "reading the click feed failed: {error}; reconnecting and resuming after the last \
                 entry applied"
            );
        }
    }
}

/// A dedicated connection (not shared: `XREAD BLOCK` would stall anything else on it).
async fn connect(client: &Client) -> Result<MultiplexedConnection, RedisError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECTION_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

async fn read_loop(
    shared: Arc<Shared>,
    client: Client,
    connection: MultiplexedConnection,
    mut position: EntryId,
    apply: ApplyClicks,
) {
    let stream = shared.settings.stream.clone();
    let mut connection = Some(connection);
    let mut backoff = MIN_BACKOFF;
    loop {
        let result = match connection.as_mut() {
            Some(connection) => read(connection, &stream, position).await,
            None => match reconnect(&client, &stream, position).await {
                Ok((fresh, resumed)) => {
                    shared.reconnects.fetch_add(1, Ordering::Relaxed);
                    if resumed != position {
                        tracing::warn!(
                            stream = %stream,
                            position = %position,
                            "the click feed stream was recreated (its ids restarted below this \
                             subscriber's position); reading the new stream from its beginning"
                        );
                        position = resumed;
                    }
                    connection = Some(fresh);
                    continue;
                }
                Err(error) => Err(error),
            },
        };
        let entries = match result {
            Ok(entries) => entries,
            Err(error) => {
                shared.read_failed(&error, backoff);
                connection = None;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = MIN_BACKOFF;
        if entries.is_empty() {
            // A blocking read found nothing new: everything published is applied.
            shared.set_lag(0);
            continue;
        }
        let applier = Arc::clone(&shared);
        let callback = Arc::clone(&apply);
        match tokio::task::spawn_blocking(move || apply_entries(&applier, &*callback, entries))
            .await
        {
            Ok(last) => position = last,
            // apply_entries catches the callback's panics; this is the runtime shutting down.
            Err(_) => return,
        }
    }
}

/// Applies entries in order, updating the stats after each; returns the last id handled.
fn apply_entries(
    shared: &Shared,
    apply: &(dyn Fn(&[Click]) + Send + Sync),
    entries: Vec<RawEntry>,
) -> EntryId {
    let mut last = EntryId::ZERO;
    for entry in entries {
        last = entry.id;
        match entry.payload.as_deref().map(decode_clicks) {
            None => shared.bad_entry(
                entry.id,
                format_args!("it has no {CLICKS_FIELD:?} field (written by something else?)"),
            ),
            Some(Err(error)) => shared.bad_entry(entry.id, format_args!("{error}")),
            Some(Ok(clicks)) => {
                match std::panic::catch_unwind(AssertUnwindSafe(|| apply(&clicks))) {
                    Ok(()) => {
                        shared.entries.fetch_add(1, Ordering::Relaxed);
                        shared
                            .clicks
                            .fetch_add(clicks.len() as u64, Ordering::Relaxed);
                        metrics::counter!(APPLIED_CLICKS).increment(clicks.len() as u64);
                    }
                    Err(_) => shared.bad_entry(
                        entry.id,
                        format_args!(
                            "the callback panicked on its {} clicks (see the panic message above)",
                            clicks.len()
                        ),
                    ),
                }
            }
        }
        shared.set_last_id(entry.id);
    }
    shared.set_lag(now_ms().saturating_sub(last.ms));
    last
}

/// A new connection, and the position to resume from on it: `position`, or the beginning if
/// the stream was recreated behind it.
async fn reconnect(
    client: &Client,
    stream: &str,
    position: EntryId,
) -> Result<(MultiplexedConnection, EntryId), ReadError> {
    let mut connection = connect(client).await?;
    let resumed = match last_generated_id(&mut connection, stream).await? {
        // Every future entry of a stream that does not exist is new to us.
        None => EntryId::ZERO,
        Some(newest) if newest < position => EntryId::ZERO,
        Some(_) => position,
    };
    Ok((connection, resumed))
}

/// The stream's `last-generated-id` (`XINFO STREAM`), or `None` when the key does not exist.
async fn last_generated_id(
    connection: &mut impl ConnectionLike,
    stream: &str,
) -> Result<Option<EntryId>, ReadError> {
    let key_type: String = redis::cmd("TYPE")
        .arg(stream)
        .query_async(connection)
        .await?;
    if key_type == "none" {
        return Ok(None);
    }
    let info: Value = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(stream)
        .query_async(connection)
        .await?;
    let pairs = key_value_pairs(info)?;
    let id = pairs
        .into_iter()
        .find(|(name, _)| text(name).as_deref() == Some("last-generated-id"))
        .ok_or_else(|| ReadError::Reply("XINFO STREAM has no last-generated-id".into()))?
        .1;
    parse_id(&id).map(Some)
}

/// One `XREAD COUNT .. BLOCK .. STREAMS <stream> <position>`; empty when it timed out.
async fn read(
    connection: &mut MultiplexedConnection,
    stream: &str,
    position: EntryId,
) -> Result<Vec<RawEntry>, ReadError> {
    let reply: Value = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(READ_COUNT)
        .arg("BLOCK")
        .arg(BLOCK.as_millis() as u64)
        .arg("STREAMS")
        .arg(stream)
        .arg(position.to_string())
        .query_async(connection)
        .await?;
    parse_xread(reply)
}

/// Parses an `XREAD` reply for one stream: nil, or `[[key, [[id, [field, value, ...]], ...]]]`
/// (RESP2), or a map `key → entries` (RESP3).
fn parse_xread(reply: Value) -> Result<Vec<RawEntry>, ReadError> {
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Map(pairs) => pairs,
        Value::Array(streams) => streams
            .into_iter()
            .map(|stream| {
                let mut parts = into_array(stream)?.into_iter();
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(key), Some(entries), None) => Ok((key, entries)),
                    _ => Err(ReadError::Reply(
                        "a stream reply is not [key, entries]".into(),
                    )),
                }
            })
            .collect::<Result<_, _>>()?,
        other => return Err(ReadError::Reply(format!("XREAD answered {other:?}"))),
    };
    let mut entries = Vec::new();
    for (_, stream_entries) in streams {
        for entry in into_array(stream_entries)? {
            let mut parts = into_array(entry)?.into_iter();
            let (Some(id), fields) = (parts.next(), parts.next()) else {
                return Err(ReadError::Reply("an entry is not [id, fields]".into()));
            };
            let id = parse_id(&id)?;
            let payload = match fields {
                // Nil fields: an entry deleted under us; nothing to apply.
                None | Some(Value::Nil) => None,
                Some(fields) => key_value_pairs(fields)?
                    .into_iter()
                    .find(|(name, _)| bytes(name) == Some(CLICKS_FIELD.as_bytes()))
                    .and_then(|(_, value)| match value {
                        Value::BulkString(payload) => Some(payload),
                        _ => None,
                    }),
            };
            entries.push(RawEntry { id, payload });
        }
    }
    Ok(entries)
}

fn into_array(value: Value) -> Result<Vec<Value>, ReadError> {
    match value {
        Value::Array(items) | Value::Set(items) => Ok(items),
        other => Err(ReadError::Reply(format!(
            "expected an array, got {other:?}"
        ))),
    }
}

/// A flat `[k1, v1, k2, v2, ...]` array (RESP2) or a map (RESP3) as pairs.
fn key_value_pairs(value: Value) -> Result<Vec<(Value, Value)>, ReadError> {
    match value {
        Value::Map(pairs) => Ok(pairs),
        Value::Array(items) => {
            if items.len() % 2 != 0 {
                return Err(ReadError::Reply(format!(
                    "expected field/value pairs, got {} items",
                    items.len()
                )));
            }
            let mut pairs = Vec::with_capacity(items.len() / 2);
            let mut items = items.into_iter();
            while let (Some(key), Some(value)) = (items.next(), items.next()) {
                pairs.push((key, value));
            }
            Ok(pairs)
        }
        other => Err(ReadError::Reply(format!(
            "expected field/value pairs, got {other:?}"
        ))),
    }
}

fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        _ => None,
    }
}

fn text(value: &Value) -> Option<String> {
    bytes(value).and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
}

fn parse_id(value: &Value) -> Result<EntryId, ReadError> {
    let text =
        text(value).ok_or_else(|| ReadError::Reply(format!("a stream entry id is {value:?}")))?;
    text.parse().map_err(ReadError::Reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn entry_ids_parse_print_and_order_like_the_stream() {
        let id: EntryId = "1700000000000-12".parse().unwrap();
        assert_eq!(
            id,
            EntryId {
                ms: 1_700_000_000_000,
                seq: 12
            }
        );
        assert_eq!(id.to_string(), "1700000000000-12");
        assert!(EntryId { ms: 5, seq: 9 } < EntryId { ms: 6, seq: 0 });
        assert!(EntryId { ms: 5, seq: 1 } < EntryId { ms: 5, seq: 2 });
        for bad in ["", "12", "a-1", "1-", "-1", "1-2-3"] {
            assert!(bad.parse::<EntryId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn xread_replies_parse_in_both_protocols() {
        let entries = Value::Array(vec![
            Value::Array(vec![
                bulk("1-0"),
                Value::Array(vec![bulk("c"), Value::BulkString(vec![1, 0])]),
            ]),
            Value::Array(vec![bulk("1-1"), Value::Array(vec![bulk("x"), bulk("y")])]),
            Value::Array(vec![bulk("2-0"), Value::Nil]),
        ]);
        let resp2 = Value::Array(vec![Value::Array(vec![bulk("s"), entries.clone()])]);
        let resp3 = Value::Map(vec![(bulk("s"), entries)]);
        for reply in [resp2, resp3] {
            let parsed = parse_xread(reply).unwrap();
            let ids: Vec<String> = parsed.iter().map(|entry| entry.id.to_string()).collect();
            assert_eq!(ids, ["1-0", "1-1", "2-0"]);
            assert_eq!(parsed[0].payload.as_deref(), Some(&[1_u8, 0][..]));
            assert_eq!(parsed[1].payload, None, "no c field");
            assert_eq!(parsed[2].payload, None, "deleted entry");
        }
        assert!(parse_xread(Value::Nil).unwrap().is_empty());
        assert!(parse_xread(Value::Int(3)).is_err());
    }

    #[test]
    fn bad_entries_are_skipped_counted_and_passed() {
        let shared = Shared {
            settings: FeedSettings::default(),
            entries: AtomicU64::new(0),
            clicks: AtomicU64::new(0),
            bad_entries: AtomicU64::new(0),
            last_id: Mutex::new(None),
            lag_ms: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            bad_entry_log: LogThrottle::new(),
            error_log: LogThrottle::new(),
        };
        let good = crate::encode_clicks(&[Click {
            user_id: "u".into(),
            article_id: "a".into(),
            ts_ms: 1,
        }])
        .unwrap();
        let seen = Mutex::new(Vec::new());
        let apply = |clicks: &[Click]| {
            if clicks[0].user_id == "panic" {
                panic!("a callback bug");
            }
            seen.lock().unwrap().extend_from_slice(clicks);
        };
        let panicking = crate::encode_clicks(&[Click {
            user_id: "panic".into(),
            article_id: "a".into(),
            ts_ms: 1,
        }])
        .unwrap();
        let id = |seq| EntryId { ms: 7, seq };
        let entries = vec![
            RawEntry {
                id: id(0),
                payload: Some(good.clone()),
            },
            RawEntry {
                id: id(1),
                payload: Some(b"garbage".to_vec()),
            },
            RawEntry {
                id: id(2),
                payload: None,
            },
            RawEntry {
                id: id(3),
                payload: Some(panicking),
            },
            RawEntry {
                id: id(4),
                payload: Some(good),
            },
        ];
        let last = apply_entries(&shared, &apply, entries);
        assert_eq!(last, id(4));
        assert_eq!(seen.lock().unwrap().len(), 2);
        assert_eq!(shared.entries.load(Ordering::Relaxed), 2);
        assert_eq!(shared.clicks.load(Ordering::Relaxed), 2);
        assert_eq!(shared.bad_entries.load(Ordering::Relaxed), 3);
        assert_eq!(*shared.last_id.lock().unwrap(), Some(id(4)));
    }
}
