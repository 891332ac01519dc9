//! The clickstream contract: what a click event is, how it is written in JSON and in Arrow, and how
//! untrusted input becomes validated events.
//!
//! Consumes raw request bodies (NDJSON or a JSON array) and single JSON objects; produces
//! [`ClickEvent`]s, per-record [`Rejection`]s that name the record, the field and the reason, and
//! Arrow record batches in the versioned lake schema ([`arrow_schema`]). Everything downstream
//! (ingest, import, the lake, training) speaks this one type, so a field is validated once, here.

mod arrow_form;
mod body;
mod json_fast;
mod json_form;

pub use arrow_form::{
    EVENT_SCHEMA_VERSION, SCHEMA_VERSION_KEY, arrow_schema, events_from_batch, events_to_batch,
};
pub use body::{BodyError, ParsedBody, Rejection, parse_body};
pub use json_form::{event_from_json, event_from_value, format_rfc3339_ms};

use std::fmt;

/// Longest accepted `user_id`, `article_id` or `session_id`, in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Longest accepted `referrer`, in bytes.
pub const MAX_REFERRER_BYTES: usize = 2048;
/// Earliest accepted event time (2000-01-01T00:00:00Z). Older values are nearly always epoch
/// *seconds* sent where milliseconds were expected, so they are refused with that hint.
pub const MIN_TS_MS: i64 = 946_684_800_000;
/// Latest accepted event time (2200-01-01T00:00:00Z): a typo guard, not a clock check.
pub const MAX_TS_MS: i64 = 7_258_118_400_000;

/// What the reader did with the article.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum EventType {
    /// The reader opened the article (the default, and the signal models train on).
    #[default]
    Click,
    /// The article was shown to the reader (an impression).
    View,
}

impl EventType {
    /// The wire and lake spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Click => "click",
            EventType::View => "view",
        }
    }

    /// Parses the wire spelling; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "click" => Some(EventType::Click),
            "view" => Some(EventType::View),
            _ => None,
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One validated clickstream event.
///
/// The serde derives are for newsrec's own binary forms (the ingest write-ahead log), whose
/// bytes are checksummed and were validated before writing. Untrusted JSON goes through
/// [`event_from_json`] / [`parse_body`], which validate every field.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClickEvent {
    /// Deduplication key. When the sender gives none it is derived from the event's content
    /// ([`derive_event_id`]), so a retried request carries the same ids as the first attempt.
    pub event_id: String,
    pub user_id: String,
    pub article_id: String,
    /// Event time, epoch milliseconds UTC.
    pub ts_ms: i64,
    pub event_type: EventType,
    pub session_id: Option<String>,
    pub dwell_ms: Option<u32>,
    pub referrer: Option<String>,
}

impl ClickEvent {
    /// A click with the required fields and a derived id; the remaining fields are empty.
    ///
    /// The ids and time are validated exactly as the JSON parser validates them.
    pub fn click(user_id: &str, article_id: &str, ts_ms: i64) -> Result<Self, FieldError> {
        validate_id("user_id", user_id)?;
        validate_id("article_id", article_id)?;
        validate_ts_ms(ts_ms)?;
        let event_id = derive_event_id(user_id, article_id, ts_ms, EventType::Click, None);
        Ok(ClickEvent {
            event_id,
            user_id: user_id.to_owned(),
            article_id: article_id.to_owned(),
            ts_ms,
            event_type: EventType::Click,
            session_id: None,
            dwell_ms: None,
            referrer: None,
        })
    }

    /// Approximate in-memory and on-wire size, used for batching by bytes.
    pub fn approx_bytes(&self) -> usize {
        48 + self.event_id.len()
            + self.user_id.len()
            + self.article_id.len()
            + self.session_id.as_ref().map_or(0, String::len)
            + self.referrer.as_ref().map_or(0, String::len)
    }
}

/// Why one field of one record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field \"{field}\": {reason}")]
pub struct FieldError {
    /// The JSON field name (or `"record"` when the record as a whole is wrong).
    pub field: &'static str,
    pub reason: String,
}

impl FieldError {
    pub(crate) fn new(field: &'static str, reason: impl Into<String>) -> Self {
        FieldError {
            field,
            reason: reason.into(),
        }
    }
}

/// Checks an identifier: non-empty UTF-8, at most [`MAX_ID_BYTES`], no control characters.
pub fn validate_id(field: &'static str, value: &str) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if value.len() > MAX_ID_BYTES {
        return Err(FieldError::new(
            field,
            format!("is {} bytes, at most {MAX_ID_BYTES} allowed", value.len()),
        ));
    }
    if let Some(position) = value.chars().position(char::is_control) {
        return Err(FieldError::new(
            field,
            format!("must not contain control characters (found one at character {position})"),
        ));
    }
    Ok(())
}

/// Checks that an epoch-millisecond time lies in the accepted range.
pub fn validate_ts_ms(ts_ms: i64) -> Result<(), FieldError> {
    if ts_ms < MIN_TS_MS {
        let hint = if (MIN_TS_MS / 1000..MAX_TS_MS / 1000).contains(&ts_ms) {
            " (this looks like epoch seconds; send milliseconds)"
        } else {
            ""
        };
        return Err(FieldError::new(
            "ts",
            format!("{ts_ms} is before 2000-01-01T00:00:00Z{hint}"),
        ));
    }
    if ts_ms >= MAX_TS_MS {
        return Err(FieldError::new(
            "ts",
            format!("{ts_ms} is after 2200-01-01T00:00:00Z"),
        ));
    }
    Ok(())
}

/// The content-derived event id used when a sender gives none: a 128-bit hash of the fields that
/// make two events the same click, in hex.
pub fn derive_event_id(
    user_id: &str,
    article_id: &str,
    ts_ms: i64,
    event_type: EventType,
    session_id: Option<&str>,
) -> String {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    // Length-prefix each part so ("ab","c") and ("a","bc") hash differently.
    for part in [
        user_id,
        article_id,
        event_type.as_str(),
        session_id.unwrap_or(""),
    ] {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.update(&ts_ms.to_le_bytes());
    format!("{:032x}", hasher.digest128())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_distinguish_fields() {
        let a = derive_event_id("u", "a", 1, EventType::Click, None);
        assert_eq!(a, derive_event_id("u", "a", 1, EventType::Click, None));
        assert_ne!(a, derive_event_id("u", "a", 2, EventType::Click, None));
        assert_ne!(a, derive_event_id("u", "a", 1, EventType::View, None));
        assert_ne!(
            derive_event_id("ab", "c", 1, EventType::Click, None),
            derive_event_id("a", "bc", 1, EventType::Click, None)
        );
    }

    #[test]
    fn epoch_seconds_get_a_hint() {
        let error = validate_ts_ms(1_506_859_200).unwrap_err();
        assert!(error.reason.contains("epoch seconds"), "{error}");
    }

    #[test]
    fn ids_are_bounded() {
        assert!(validate_id("user_id", &"x".repeat(MAX_ID_BYTES)).is_ok());
        let error = validate_id("user_id", &"x".repeat(MAX_ID_BYTES + 1)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "field \"user_id\": is 257 bytes, at most 256 allowed"
        );
        assert!(validate_id("user_id", "").is_err());
        assert!(validate_id("user_id", "a\nb").is_err());
    }
}
