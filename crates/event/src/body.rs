//! Request bodies: NDJSON (one event per line) or one JSON array of events.
//!
//! A bad record never costs the others: each is validated on its own and reported by its index
//! (and, for NDJSON, its 1-based line number). Only a body that cannot be split into records at
//! all (an array whose JSON is broken, or text that is not UTF-8) is refused as a whole.

use serde::Serialize;
use serde_json::Value;

use crate::{ClickEvent, json_fast, json_form::event_from_value};

/// One refused record of a body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// 0-based position of the record in the body (array element, or NDJSON line).
    pub index: usize,
    /// 1-based line number, for NDJSON bodies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// What was wrong, naming the field: `field "ts": expected RFC 3339 or epoch millis, got "x"`.
    pub reason: String,
    /// The record as sent (the NDJSON line, or the array element re-serialized), for the lake's
    /// error output. Not echoed back in replies.
    #[serde(skip)]
    pub raw: String,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.reason),
            None => write!(f, "record {}: {}", self.index, self.reason),
        }
    }
}

/// The result of splitting and validating a body.
#[derive(Debug, Default)]
pub struct ParsedBody {
    pub events: Vec<ClickEvent>,
    pub rejected: Vec<Rejection>,
    /// Records seen (accepted + rejected).
    pub records: usize,
}

/// Why a whole body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body is not valid UTF-8 (first bad byte at offset {0})")]
    NotUtf8(usize),
    #[error("body starts with '[' but is not a valid JSON array: {0}")]
    BadArray(String),
    #[error("body holds {records} records, at most {limit} allowed in one request")]
    TooManyRecords { records: usize, limit: usize },
}

/// Splits a body into records and validates each; at most `max_records` records are accepted.
pub fn parse_body(body: &[u8], max_records: usize) -> Result<ParsedBody, BodyError> {
    let text =
        std::str::from_utf8(body).map_err(|error| BodyError::NotUtf8(error.valid_up_to()))?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let values: Vec<Value> = serde_json::from_str(trimmed)
            .map_err(|error| BodyError::BadArray(error.to_string()))?;
        if values.len() > max_records {
            return Err(BodyError::TooManyRecords {
                records: values.len(),
                limit: max_records,
            });
        }
        let mut parsed = ParsedBody {
            records: values.len(),
            ..ParsedBody::default()
        };
        for (index, value) in values.iter().enumerate() {
            match event_from_value(value) {
                Ok(event) => parsed.events.push(event),
                Err(error) => parsed.rejected.push(Rejection {
                    index,
                    line: None,
                    reason: error.to_string(),
                    raw: value.to_string(),
                }),
            }
        }
        return Ok(parsed);
    }
    let mut parsed = ParsedBody::default();
    for (index, line) in text.split('\n').enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        parsed.records += 1;
        if parsed.records > max_records {
            let records = text
                .split('\n')
                .filter(|line| !line.trim().is_empty())
                .count();
            return Err(BodyError::TooManyRecords {
                records,
                limit: max_records,
            });
        }
        // The typed fast path takes the usual valid line; anything else gets the reference
        // path's precise error.
        let outcome = match json_fast::event_from_line(line) {
            Some(event) => Ok(event),
            None => serde_json::from_str::<Value>(line)
                .map_err(|error| format!("field \"record\": malformed JSON: {error}"))
                .and_then(|value| event_from_value(&value).map_err(|error| error.to_string())),
        };
        match outcome {
            Ok(event) => parsed.events.push(event),
            Err(reason) => parsed.rejected.push(Rejection {
                index,
                line: Some(index + 1),
                reason,
                raw: line.to_owned(),
            }),
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ndjson_keeps_valid_lines_and_names_bad_ones() {
        let body = b"{\"user_id\":\"u1\",\"article_id\":\"a\",\"ts\":1506859200000}\n\
            {\"user_id\":\"u2\",\"article_id\":\"a\"\n\
            \n\
            {\"user_id\":\"u3\",\"article_id\":\"a\",\"ts\":\"yesterday\"}\n\
            {\"user_id\":\"u4\",\"article_id\":\"a\",\"ts\":\"2017-10-01T00:00:00Z\"}\n";
        let parsed = parse_body(body, 100).unwrap();
        assert_eq!(parsed.records, 4);
        let users: Vec<_> = parsed.events.iter().map(|e| e.user_id.as_str()).collect();
        assert_eq!(users, ["u1", "u4"]);
        assert_eq!(parsed.rejected.len(), 2);
        assert_eq!(parsed.rejected[0].line, Some(2));
        assert!(parsed.rejected[0].reason.contains("malformed JSON"));
        assert_eq!(
            parsed.rejected[1].to_string(),
            r#"line 4: field "ts": expected RFC 3339 or epoch millis, got "yesterday""#
        );
    }

    #[test]
    fn array_reports_element_index() {
        let body = br#" [{"user_id":"u","article_id":"a","ts":1506859200000}, {"user_id":"u"}]"#;
        let parsed = parse_body(body, 100).unwrap();
        assert_eq!(parsed.events.len(), 1);
        assert_eq!(parsed.rejected[0].index, 1);
        assert_eq!(parsed.rejected[0].line, None);
        assert_eq!(
            parsed.rejected[0].to_string(),
            r#"record 1: field "article_id": is required but missing"#
        );
    }

    #[test]
    fn whole_body_errors() {
        assert!(matches!(
            parse_body(b"[{\"a\":", 10),
            Err(BodyError::BadArray(_))
        ));
        assert_eq!(
            parse_body(b"ok\xff", 10).unwrap_err(),
            BodyError::NotUtf8(2)
        );
        let many = "{}\n".repeat(11);
        assert_eq!(
            parse_body(many.as_bytes(), 10).unwrap_err(),
            BodyError::TooManyRecords {
                records: 11,
                limit: 10
            }
        );
    }

    fn valid_line(user: u32) -> String {
        format!(r#"{{"user_id":"u{user}","article_id":"a","ts":1506859200000}}"#)
    }

    proptest! {
        // Fuzz: arbitrary bytes never panic, and records + errors are consistent.
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(parsed) = parse_body(&body, 1000) {
                prop_assert_eq!(parsed.records, parsed.events.len() + parsed.rejected.len());
            }
        }

        // Fuzz: garbage lines interleaved with valid ones never cost a valid one.
        #[test]
        fn garbage_never_costs_valid_lines(
            garbage in proptest::collection::vec("[^\n]{0,40}", 0..20),
            valid in 0u32..20,
        ) {
            let mut lines: Vec<String> = Vec::new();
            for (i, junk) in garbage.iter().enumerate() {
                lines.push(junk.clone());
                if (i as u32) < valid { lines.push(valid_line(i as u32)); }
            }
            for i in garbage.len() as u32..valid { lines.push(valid_line(i)); }
            let body = lines.join("\n");
            // A body opening with '[' is an array by contract; that case is covered above.
            prop_assume!(!body.trim_start().starts_with('['));
            let parsed = parse_body(body.as_bytes(), 10_000).unwrap();
            for i in 0..valid {
                let user = format!("u{i}");
                prop_assert!(parsed.events.iter().any(|e| e.user_id == user), "lost {}", user);
            }
        }
    }
}
