//! The JSON form of an event: field-by-field validation of one JSON object, and the canonical
//! JSON written back out (RFC 3339 `ts` with milliseconds).
//!
//! Unknown fields are ignored on purpose: clickstream SDKs add context fields freely, and a
//! missing required field is still reported by name.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use crate::{
    ClickEvent, EventType, FieldError, MAX_REFERRER_BYTES, derive_event_id, validate_id,
    validate_ts_ms,
};

/// Parses and validates one event from JSON text.
pub fn event_from_json(text: &str) -> Result<ClickEvent, FieldError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|error| FieldError::new("record", format!("malformed JSON: {error}")))?;
    event_from_value(&value)
}

/// Validates one event given as a parsed JSON value.
pub fn event_from_value(value: &Value) -> Result<ClickEvent, FieldError> {
    let Value::Object(object) = value else {
        return Err(FieldError::new(
            "record",
            format!("expected a JSON object, got {}", kind_of(value)),
        ));
    };
    let user_id = required_id(object, "user_id")?;
    let article_id = required_id(object, "article_id")?;
    let ts_ms = parse_ts(object.get("ts").ok_or_else(|| missing("ts"))?)?;
    let event_type = match optional_str(object, "type")? {
        None => EventType::Click,
        Some(text) => EventType::parse(text).ok_or_else(|| {
            FieldError::new(
                "type",
                format!("expected \"click\" or \"view\", got {}", quoted(text)),
            )
        })?,
    };
    let session_id = optional_str(object, "session_id")?;
    if let Some(session_id) = session_id {
        validate_id("session_id", session_id)?;
    }
    let dwell_ms = match object.get("dwell_ms") {
        None | Some(Value::Null) => None,
        Some(Value::Number(number)) => Some(
            number
                .as_u64()
                .and_then(|ms| u32::try_from(ms).ok())
                .ok_or_else(|| {
                    FieldError::new(
                        "dwell_ms",
                        format!(
                            "expected a whole number of milliseconds 0..=4294967295, got {number}"
                        ),
                    )
                })?,
        ),
        Some(other) => {
            return Err(FieldError::new(
                "dwell_ms",
                format!("expected a number, got {}", kind_of(other)),
            ));
        }
    };
    let referrer = optional_str(object, "referrer")?;
    if let Some(referrer) = referrer
        && referrer.len() > MAX_REFERRER_BYTES
    {
        return Err(FieldError::new(
            "referrer",
            format!(
                "is {} bytes, at most {MAX_REFERRER_BYTES} allowed",
                referrer.len()
            ),
        ));
    }
    let event_id = match optional_str(object, "event_id")? {
        Some(event_id) => {
            validate_id("event_id", event_id)?;
            event_id.to_owned()
        }
        None => derive_event_id(user_id, article_id, ts_ms, event_type, session_id),
    };
    Ok(ClickEvent {
        event_id,
        user_id: user_id.to_owned(),
        article_id: article_id.to_owned(),
        ts_ms,
        event_type,
        session_id: session_id.map(str::to_owned),
        dwell_ms,
        referrer: referrer.map(str::to_owned),
    })
}

impl ClickEvent {
    /// The canonical JSON object of this event (`ts` as RFC 3339 UTC with milliseconds).
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("event_id".into(), self.event_id.clone().into());
        object.insert("user_id".into(), self.user_id.clone().into());
        object.insert("article_id".into(), self.article_id.clone().into());
        object.insert("ts".into(), format_rfc3339_ms(self.ts_ms).into());
        object.insert("type".into(), self.event_type.as_str().into());
        if let Some(session_id) = &self.session_id {
            object.insert("session_id".into(), session_id.clone().into());
        }
        if let Some(dwell_ms) = self.dwell_ms {
            object.insert("dwell_ms".into(), dwell_ms.into());
        }
        if let Some(referrer) = &self.referrer {
            object.insert("referrer".into(), referrer.clone().into());
        }
        Value::Object(object)
    }
}

/// Formats epoch milliseconds as RFC 3339 UTC with millisecond precision.
pub fn format_rfc3339_ms(ts_ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ts_ms)
        .map(|time| time.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| ts_ms.to_string())
}

fn parse_ts(value: &Value) -> Result<i64, FieldError> {
    let expected = "expected RFC 3339 or epoch millis";
    let ts_ms = match value {
        Value::Number(number) => number.as_i64().ok_or_else(|| {
            FieldError::new(
                "ts",
                format!("{expected}, got {number} (not a whole number)"),
            )
        })?,
        Value::String(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => text
            .parse::<i64>()
            .map_err(|_| FieldError::new("ts", format!("{expected}, got {}", quoted(text))))?,
        Value::String(text) => DateTime::parse_from_rfc3339(text)
            .map_err(|_| FieldError::new("ts", format!("{expected}, got {}", quoted(text))))?
            .timestamp_millis(),
        other => {
            return Err(FieldError::new(
                "ts",
                format!("{expected}, got {}", kind_of(other)),
            ));
        }
    };
    validate_ts_ms(ts_ms)?;
    Ok(ts_ms)
}

fn required_id<'a>(
    object: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a str, FieldError> {
    let value = optional_str(object, field)?.ok_or_else(|| missing(field))?;
    validate_id(field, value)?;
    Ok(value)
}

fn optional_str<'a>(
    object: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a str>, FieldError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(FieldError::new(
            field,
            format!("expected a string, got {}", kind_of(other)),
        )),
    }
}

fn missing(field: &'static str) -> FieldError {
    FieldError::new(field, "is required but missing")
}

fn kind_of(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(flag) => format!("boolean {flag}"),
        Value::Number(number) => format!("number {number}"),
        Value::String(text) => format!("string {}", quoted(text)),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// Quotes user text for an error message, cut to a readable length.
fn quoted(text: &str) -> String {
    const SHOWN: usize = 64;
    if text.chars().count() <= SHOWN {
        return format!("{text:?}");
    }
    let head: String = text.chars().take(SHOWN).collect();
    format!("{head:?}… ({} bytes)", text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_event_and_round_trips() {
        let event = event_from_json(
            r#"{"event_id":"e1","user_id":"u1","article_id":"a1","ts":"2017-10-01T12:00:00.123Z",
                "type":"view","session_id":"s","dwell_ms":1500,"referrer":"https://x","extra":1}"#,
        )
        .unwrap();
        assert_eq!(event.ts_ms, 1_506_859_200_123);
        assert_eq!(event.event_type, EventType::View);
        assert_eq!(event.dwell_ms, Some(1500));
        let again = event_from_value(&event.to_json()).unwrap();
        assert_eq!(again, event);
    }

    #[test]
    fn epoch_millis_and_default_type() {
        let event =
            event_from_json(r#"{"user_id":"u","article_id":"a","ts":1506859200000}"#).unwrap();
        assert_eq!(event.event_type, EventType::Click);
        assert_eq!(event.event_id.len(), 32);
        let as_string =
            event_from_json(r#"{"user_id":"u","article_id":"a","ts":"1506859200000"}"#).unwrap();
        assert_eq!(as_string.event_id, event.event_id);
    }

    #[test]
    fn errors_name_the_field_and_the_value() {
        let error =
            event_from_json(r#"{"user_id":"u","article_id":"a","ts":"yesterday"}"#).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"field "ts": expected RFC 3339 or epoch millis, got "yesterday""#
        );
        let error = event_from_json(r#"{"article_id":"a","ts":1}"#).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"field "user_id": is required but missing"#
        );
        let error = event_from_json(r#"{"user_id":"","article_id":"a","ts":1}"#).unwrap_err();
        assert_eq!(error.to_string(), r#"field "user_id": must not be empty"#);
        let error = event_from_json(r#"{"user_id":7,"article_id":"a","ts":1}"#).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"field "user_id": expected a string, got number 7"#
        );
        let error =
            event_from_json(r#"{"user_id":"u","article_id":"a","ts":1506859200000,"type":"buy"}"#)
                .unwrap_err();
        assert_eq!(error.field, "type");
        let error = event_from_json(r#"{"user_id":"u","article_id":"a","ts":1.5}"#).unwrap_err();
        assert!(error.reason.contains("not a whole number"), "{error}");
        let error = event_from_json("[1,2]").unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"field "record": expected a JSON object, got an array"#
        );
    }
}
