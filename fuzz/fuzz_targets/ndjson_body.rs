//! Fuzzes `newsrec_event::parse_body` with arbitrary bytes: it must never panic, every record
//! must be counted once (accepted or rejected), rejections must point at real lines, and every
//! accepted event must survive its own canonical JSON. For NDJSON bodies each line's outcome is
//! also checked against the reference path alone (`serde_json::Value` + `event_from_value`), so
//! the typed fast path can never accept a line the reference refuses or build another event.
//!
//! The first input byte picks the record limit (0..64) so the too-many-records paths are reached.

#![no_main]

use libfuzzer_sys::fuzz_target;
use newsrec_event::{BodyError, event_from_value, parse_body};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let max_records = usize::from(selector % 64);
    match parse_body(body, max_records) {
        Ok(parsed) => {
            assert_eq!(parsed.records, parsed.events.len() + parsed.rejected.len());
            assert!(parsed.records <= max_records);
            let text = std::str::from_utf8(body).expect("an accepted body is UTF-8");
            let is_array = text.trim_start().starts_with('[');
            if !is_array {
                let lines = text.split('\n').filter(|line| !line.trim().is_empty());
                assert_eq!(
                    parsed.records,
                    lines.count(),
                    "every non-blank line is a record"
                );
            }
            let mut previous: Option<usize> = None;
            for rejection in &parsed.rejected {
                assert!(
                    previous.is_none_or(|index| index < rejection.index),
                    "in body order"
                );
                previous = Some(rejection.index);
                assert!(!rejection.reason.is_empty());
                if is_array {
                    assert_eq!(rejection.line, None);
                    assert!(rejection.index < parsed.records);
                } else {
                    assert_eq!(rejection.line, Some(rejection.index + 1));
                    let line = text.split('\n').nth(rejection.index).expect("a real line");
                    assert!(!line.trim().is_empty(), "a blank line is never rejected");
                }
            }
            for event in &parsed.events {
                assert_eq!(event_from_value(&event.to_json()).as_ref(), Ok(event));
            }
            if !is_array {
                let reference: Vec<_> = text
                    .split('\n')
                    .map(str::trim)
                    .filter(|line| !line.is_empty())
                    .filter_map(|line| {
                        let value: serde_json::Value = serde_json::from_str(line).ok()?;
                        event_from_value(&value).ok()
                    })
                    .collect();
                assert_eq!(reference, parsed.events, "fast path differs from the reference");
            }
        }
        Err(BodyError::NotUtf8(offset)) => {
            let error = std::str::from_utf8(body).expect_err("refused as not UTF-8");
            assert_eq!(error.valid_up_to(), offset);
        }
        Err(BodyError::TooManyRecords { records, limit }) => {
            assert_eq!(limit, max_records);
            assert!(records > limit);
        }
        Err(BodyError::BadArray(_)) => {
            let text = std::str::from_utf8(body).expect("split before refusing");
            assert!(text.trim_start().starts_with('['));
        }
    }
});
