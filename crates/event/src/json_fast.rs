//! The fast path for one NDJSON line: a borrowed, typed parse of the usual valid event, with no
//! intermediate JSON tree.
//!
//! It only ever answers "here is the event" or "not sure": any surprise (a wrong type, a
//! duplicate key, a value out of range, an invalid id) returns `None` and the caller runs the
//! reference path in [`crate::json_form`], which owns every error message. So the fast path can
//! be wrong only by accepting what the reference refuses or building a different event, and a
//! differential test and the fuzz target check exactly that.

use std::borrow::Cow;

use chrono::DateTime;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{
    ClickEvent, EventType, MAX_REFERRER_BYTES, derive_event_id, validate_id, validate_ts_ms,
};

/// The fields the reference path reads; unknown keys are skipped as there. `null` reads as
/// absent, as there.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow, default)]
    user_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    article_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    ts: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "type")]
    event_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    session_id: Option<Cow<'a, str>>,
    #[serde(default)]
    dwell_ms: Option<u32>,
    #[serde(borrow, default)]
    referrer: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event_id: Option<Cow<'a, str>>,
}

/// The event of a valid line, or `None` when the reference path must decide.
pub(crate) fn event_from_line(text: &str) -> Option<ClickEvent> {
    // A derived struct also accepts a JSON array of its fields in order; the reference refuses
    // anything but an object.
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let line: Line<'_> = serde_json::from_str(text).ok()?;
    let user_id = line.user_id?;
    validate_id("user_id", &user_id).ok()?;
    let article_id = line.article_id?;
    validate_id("article_id", &article_id).ok()?;
    let ts_ms = ts_from_raw(line.ts?)?;
    validate_ts_ms(ts_ms).ok()?;
    let event_type = match line.event_type {
        None => EventType::Click,
        Some(text) => EventType::parse(&text)?,
    };
    if let Some(session_id) = &line.session_id {
        validate_id("session_id", session_id).ok()?;
    }
    if line
        .referrer
        .as_ref()
        .is_some_and(|referrer| referrer.len() > MAX_REFERRER_BYTES)
    {
        return None;
    }
    let event_id = match line.event_id {
        Some(event_id) => {
            validate_id("event_id", &event_id).ok()?;
            event_id.into_owned()
        }
        None => derive_event_id(
            &user_id,
            &article_id,
            ts_ms,
            event_type,
            line.session_id.as_deref(),
        ),
    };
    Some(ClickEvent {
        event_id,
        user_id: user_id.into_owned(),
        article_id: article_id.into_owned(),
        ts_ms,
        event_type,
        session_id: line.session_id.map(Cow::into_owned),
        dwell_ms: line.dwell_ms,
        referrer: line.referrer.map(Cow::into_owned),
    })
}

/// `ts` as the reference reads it: a whole number of epoch millis, a string of digits, or
/// RFC 3339 text.
fn ts_from_raw(raw: &RawValue) -> Option<i64> {
    let json = raw.get();
    if json.starts_with('"') {
        let text: Cow<'_, str> = serde_json::from_str(json).ok()?;
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            text.parse().ok()
        } else {
            DateTime::parse_from_rfc3339(&text)
                .ok()
                .map(|time| time.timestamp_millis())
        }
    } else {
        // Only plain integers: a fraction or exponent makes the reference refuse the value.
        if !json.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
            return None;
        }
        serde_json::from_str(json).ok()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::event_from_line;
    use crate::event_from_value;

    fn reference(text: &str) -> Option<crate::ClickEvent> {
        let value: Value = serde_json::from_str(text).ok()?;
        event_from_value(&value).ok()
    }

    /// Lines that are near misses of valid events, one field at a time.
    const LINES: &[&str] = &[
        r#"{"user_id":"u1","article_id":"a1","ts":1507000000000}"#,
        r#"{"user_id":"u1","article_id":"a1","ts":"1507000000000"}"#,
        r#"{"user_id":"u1","article_id":"a1","ts":"2017-10-03T03:06:40.123Z"}"#,
        r#"{"user_id":"u1","article_id":"a1","ts":"2017-10-03T05:06:40+02:00","type":"view"}"#,
        r#"{"user_id":"u1","article_id":"a1","ts":1507000000000.0}"#,
        r#"{"user_id":"u1","article_id":"a1","ts":1.507e12}"#,
        r#"{"user_id":"u1","article_id":"a1","ts":-0}"#,
        r#"{"user_id":"u1","article_id":"a1","ts":1507000000}"#,
        r#"{"user_id":"u1","article_id":"a1","ts":null}"#,
        r#"{"user_id":"u1","article_id":"a1"}"#,
        r#"{"user_id":"u1","article_id":"a1","ts":1507000000000,"user_id":"u2"}"#,
        r#"{"user_id":"u\u0031","article_id":"a1","ts":1507000000000}"#,
        r#"{"user_id":"u 1","article_id":"a1","ts":1507000000000}"#,
        r#"{"user_id":"","article_id":"a1","ts":1507000000000}"#,
        r#"{"user_id":7,"article_id":"a1","ts":1507000000000}"#,
        r#"{"user_id":"u1","article_id":"a1","ts":1507000000000,"type":"Click"}"#,
        r#"{"user_id":"u1","article_id":"a1","ts":1507000000000,"type":null}"#,
        r#"{"user_id":"u1","article_id":"a1","ts":1507000000000,"session_id":"s1","dwell_ms":1200}"#,
        r#"{"user_id":"u1","article_id":"a1","ts":1507000000000,"dwell_ms":-1}"#,
        r#"{"user_id":"u1","article_id":"a1","ts":1507000000000,"dwell_ms":4294967296}"#,
        r#"{"user_id":"u1","article_id":"a1","ts":1507000000000,"dwell_ms":1.0}"#,
        r#"{"user_id":"u1","article_id":"a1","ts":1507000000000,"referrer":"https://x/"}"#,
        r#"{"user_id":"u1","article_id":"a1","ts":1507000000000,"event_id":"e-1"}"#,
        r#"{"user_id":"u1","article_id":"a1","ts":1507000000000,"event_id":null,"extra":[1,{"a":2}]}"#,
        r#"{"user_id":"u1","article_id":"a1","ts":1507000000000} x"#,
        r#"[{"user_id":"u1","article_id":"a1","ts":1507000000000}]"#,
        r#"["u1","a1",1507000000000]"#,
        r#"{"user_id":"u1","article_id":"a1","ts":99999999999999999999}"#,
    ];

    #[test]
    fn agrees_with_the_reference_on_near_misses() {
        let mut fast_hits = 0;
        for line in LINES {
            let fast = event_from_line(line);
            if fast.is_some() {
                fast_hits += 1;
                assert_eq!(fast, reference(line), "{line}");
            }
        }
        // The common valid shapes must take the fast path, or it is not a fast path.
        assert!(event_from_line(LINES[0]).is_some());
        assert!(event_from_line(LINES[2]).is_some());
        assert!(event_from_line(LINES[17]).is_some());
        assert!(fast_hits >= 8, "{fast_hits}");
    }

    proptest! {
        /// Whatever the fast path accepts, the reference accepts as the same event.
        #[test]
        fn never_accepts_what_the_reference_refuses(
            base in 0..LINES.len(),
            cut in 0usize..80,
            insert in "[\\x00-\\x7f]{0,4}",
        ) {
            let line = LINES[base];
            let at = line.char_indices().map(|(i, _)| i).nth(cut).unwrap_or(line.len());
            let mutated = format!("{}{}{}", &line[..at], insert, &line[at..]);
            if let Some(event) = event_from_line(&mutated) {
                prop_assert_eq!(Some(event), reference(&mutated), "{}", mutated);
            }
        }
    }
}
