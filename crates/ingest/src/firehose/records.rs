//! From decoded records to click events: each record's data is a body for
//! [`newsrec_event::parse_body`] (NDJSON, or one JSON array), and every refusal keeps the record
//! index, the place in the record, the reason and the refused bytes for the errors output.
//!
//! A bad line costs that line; a record that cannot be split into events at all (not UTF-8, a
//! broken JSON array, more events than the call has room for) costs that record, whole, and its
//! bytes are kept verbatim. Nothing in one record affects another.

use std::fmt;

use newsrec_event::{BodyError, ClickEvent, Rejection, parse_body};
use serde_json::Value;

/// Where in a record a refused piece was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Location {
    /// 1-based line of an NDJSON record.
    Line(usize),
    /// 0-based element of a record holding one JSON array.
    Element(usize),
    /// The record as a whole.
    WholeRecord,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(line) => write!(f, "line {line}"),
            Location::Element(element) => write!(f, "element {element}"),
            Location::WholeRecord => f.write_str("whole record"),
        }
    }
}

/// One refused line (or element, or record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedLine {
    /// 0-based index of the record in the call.
    pub record: usize,
    pub at: Location,
    /// What was wrong, naming the field when one was.
    pub reason: String,
    /// The refused bytes: the line without surrounding whitespace, the array element re-encoded
    /// as compact JSON, or the whole record exactly as decoded.
    pub raw: Vec<u8>,
}

impl fmt::Display for RejectedLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {}, {}: {}", self.record, self.at, self.reason)
    }
}

/// What became of one record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordOutcome {
    /// Validated events, in the record's order.
    pub events: Vec<ClickEvent>,
    /// Refused pieces, in the record's order.
    pub rejected: Vec<RejectedLine>,
}

/// What became of every record of a call, in call order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordsParsed {
    pub records: Vec<RecordOutcome>,
}

impl RecordsParsed {
    /// Events accepted over all records.
    pub fn accepted(&self) -> usize {
        self.records.iter().map(|record| record.events.len()).sum()
    }

    /// Refusals over all records.
    pub fn rejected(&self) -> usize {
        self.records
            .iter()
            .map(|record| record.rejected.len())
            .sum()
    }

    /// Every refusal, record by record.
    pub fn rejected_lines(&self) -> impl Iterator<Item = &RejectedLine> {
        self.records.iter().flat_map(|record| &record.rejected)
    }
}

/// Splits and validates every record. At most `max_events` events (accepted or refused lines)
/// are read in the whole call; a record that would go past that is refused whole, so a call's
/// memory and batch size stay bounded whatever its records hold.
pub fn records_to_events<R: AsRef<[u8]>>(records: &[R], max_events: usize) -> RecordsParsed {
    let mut budget = max_events;
    let records = records
        .iter()
        .enumerate()
        .map(|(index, data)| {
            let data = data.as_ref();
            match parse_body(data, budget) {
                Ok(parsed) => {
                    budget -= parsed.records;
                    RecordOutcome {
                        rejected: locate_rejections(index, data, parsed.rejected),
                        events: parsed.events,
                    }
                }
                Err(error) => RecordOutcome {
                    events: Vec::new(),
                    rejected: vec![RejectedLine {
                        record: index,
                        at: Location::WholeRecord,
                        reason: whole_record_reason(&error, data, max_events),
                        raw: data.to_vec(),
                    }],
                },
            }
        })
        .collect();
    RecordsParsed { records }
}

/// Attaches the location and refused bytes to a record's rejections.
fn locate_rejections(record: usize, data: &[u8], rejected: Vec<Rejection>) -> Vec<RejectedLine> {
    if rejected.is_empty() {
        return Vec::new();
    }
    // parse_body succeeded, so the data is UTF-8; the fallback only keeps this total.
    let text = String::from_utf8_lossy(data);
    // parse_body gives NDJSON rejections a line and array rejections none.
    let is_ndjson = rejected[0].line.is_some();
    let pieces: Vec<Vec<u8>> = if is_ndjson {
        text.split('\n')
            .map(|line| line.trim().as_bytes().to_vec())
            .collect()
    } else {
        serde_json::from_str::<Vec<Value>>(text.trim_start())
            .map(|values| {
                values
                    .iter()
                    .map(|value| value.to_string().into())
                    .collect()
            })
            .unwrap_or_default()
    };
    debug_assert!(!pieces.is_empty(), "a record with rejections has pieces");
    rejected
        .into_iter()
        .map(|rejection| RejectedLine {
            record,
            at: match rejection.line {
                Some(line) => Location::Line(line),
                None => Location::Element(rejection.index),
            },
            raw: pieces
                .get(rejection.index)
                .cloned()
                .unwrap_or_else(|| data.to_vec()),
            reason: rejection.reason,
        })
        .collect()
}

fn whole_record_reason(error: &BodyError, data: &[u8], max_events: usize) -> String {
    match error {
        BodyError::NotUtf8(offset) => {
            // Name the line too: that is where a sender looks for the bad byte.
            let line = 1 + data[..*offset]
                .iter()
                .filter(|&&byte| byte == b'\n')
                .count();
            format!("Data is not valid UTF-8: first bad byte at offset {offset} (line {line})")
        }
        BodyError::TooManyRecords { records, limit } => format!(
            "record holds {records} events but only {limit} more fit in this call (at most \
             {max_events} per call); send fewer events per call"
        ),
        BodyError::BadArray(_) => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line(user: &str) -> String {
        format!(r#"{{"user_id":"{user}","article_id":"a","ts":1506859200000}}"#)
    }

    fn users(outcome: &RecordOutcome) -> Vec<&str> {
        outcome.events.iter().map(|e| e.user_id.as_str()).collect()
    }

    #[test]
    fn invalid_utf8_costs_only_its_record() {
        let first = format!("{}\n{}\n", line("u1"), line("u2"));
        let mut broken = format!("{}\n", line("u3")).into_bytes();
        broken.extend_from_slice(b"{\"user_id\":\"\xff\"}\n");
        let third = format!(
            "{}\n{{\"user_id\":\"u5\"}}\n  {}  \n",
            line("u4"),
            line("u6")
        );
        let records = [first.into_bytes(), broken.clone(), third.into_bytes()];

        let parsed = records_to_events(&records, 1000);
        assert_eq!(parsed.records.len(), 3);
        assert_eq!(users(&parsed.records[0]), ["u1", "u2"]);
        assert!(parsed.records[0].rejected.is_empty());

        assert!(parsed.records[1].events.is_empty());
        let whole = &parsed.records[1].rejected[..];
        assert_eq!(whole.len(), 1);
        assert_eq!(whole[0].record, 1);
        assert_eq!(whole[0].at, Location::WholeRecord);
        assert_eq!(whole[0].raw, broken);
        let offset = broken.iter().position(|&b| b == 0xff).unwrap();
        assert_eq!(
            whole[0].reason,
            format!("Data is not valid UTF-8: first bad byte at offset {offset} (line 2)")
        );

        assert_eq!(users(&parsed.records[2]), ["u4", "u6"]);
        let bad = &parsed.records[2].rejected[..];
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].record, 2);
        assert_eq!(bad[0].at, Location::Line(2));
        assert_eq!(bad[0].raw, br#"{"user_id":"u5"}"#);
        assert_eq!(
            bad[0].to_string(),
            r#"record 2, line 2: field "article_id": is required but missing"#
        );

        assert_eq!(parsed.accepted(), 4);
        assert_eq!(parsed.rejected(), 2);
        let places: Vec<_> = parsed.rejected_lines().map(|r| (r.record, r.at)).collect();
        assert_eq!(places, [(1, Location::WholeRecord), (2, Location::Line(2))]);
    }

    #[test]
    fn array_records_report_elements() {
        let record = format!(r#" [{}, {{"user_id":"u2", "article_id":"a"}}]"#, line("u1"));
        let parsed = records_to_events(&[record], 10);
        let outcome = &parsed.records[0];
        assert_eq!(users(outcome), ["u1"]);
        assert_eq!(outcome.rejected.len(), 1);
        assert_eq!(outcome.rejected[0].at, Location::Element(1));
        assert_eq!(
            outcome.rejected[0].raw,
            br#"{"article_id":"a","user_id":"u2"}"#
        );
        assert!(outcome.rejected[0].reason.contains("\"ts\""));
    }

    #[test]
    fn broken_array_costs_only_its_record() {
        let records = [b"[{\"user_id\":".to_vec(), line("u1").into_bytes()];
        let parsed = records_to_events(&records, 10);
        assert_eq!(parsed.records[0].rejected[0].at, Location::WholeRecord);
        assert!(
            parsed.records[0].rejected[0]
                .reason
                .contains("not a valid JSON array")
        );
        assert_eq!(parsed.records[0].rejected[0].raw, records[0]);
        assert_eq!(users(&parsed.records[1]), ["u1"]);
    }

    #[test]
    fn event_budget_spans_the_call() {
        let two = format!("{}\n{}", line("a"), line("b"));
        let records = [two.clone(), two.clone(), line("c")];
        let parsed = records_to_events(&records, 3);
        assert_eq!(users(&parsed.records[0]), ["a", "b"]);
        // Two more would make four: the record is refused whole, verbatim.
        let refused = &parsed.records[1].rejected[0];
        assert_eq!(refused.at, Location::WholeRecord);
        assert_eq!(refused.raw, two.as_bytes());
        assert_eq!(
            refused.reason,
            "record holds 2 events but only 1 more fit in this call (at most 3 per call); \
             send fewer events per call"
        );
        // A refused record uses none of the budget, so the next one still fits.
        assert_eq!(users(&parsed.records[2]), ["c"]);
    }

    #[test]
    fn refused_lines_count_against_the_budget() {
        let records = [format!("not json\n{}", line("a")), line("b")];
        let parsed = records_to_events(&records, 2);
        assert_eq!(parsed.records[0].rejected.len(), 1);
        assert_eq!(parsed.records[1].rejected[0].at, Location::WholeRecord);
        assert_eq!(parsed.accepted(), 1);
    }

    #[test]
    fn empty_and_blank_records_hold_nothing() {
        let parsed = records_to_events(&[&b""[..], b"\n\n  \r\n"], 10);
        assert_eq!(parsed.records.len(), 2);
        assert!(
            parsed
                .records
                .iter()
                .all(|r| r.events.is_empty() && r.rejected.is_empty())
        );
    }

    proptest! {
        // Garbage in some records never costs a valid event in another, and every refused line's
        // raw bytes are exactly that line of its record.
        #[test]
        fn records_are_independent(
            garbage in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..8),
            valid in 1usize..8,
        ) {
            let mut records: Vec<Vec<u8>> = Vec::new();
            for (i, junk) in garbage.iter().enumerate() {
                records.push(junk.clone());
                if i < valid { records.push(line(&format!("v{i}")).into_bytes()); }
            }
            for i in garbage.len()..valid { records.push(line(&format!("v{i}")).into_bytes()); }
            let parsed = records_to_events(&records, 100_000);
            prop_assert_eq!(parsed.records.len(), records.len());
            for i in 0..valid {
                let user = format!("v{i}");
                prop_assert!(
                    parsed.records.iter().flat_map(|r| &r.events).any(|e| e.user_id == user),
                    "lost {}", user
                );
            }
            for rejected in parsed.rejected_lines() {
                let data = &records[rejected.record];
                match rejected.at {
                    Location::Line(n) => {
                        let text = std::str::from_utf8(data).unwrap();
                        let expected = text.split('\n').nth(n - 1).unwrap().trim();
                        prop_assert_eq!(&rejected.raw, expected.as_bytes());
                    }
                    Location::WholeRecord => prop_assert_eq!(&rejected.raw, data),
                    Location::Element(_) => {}
                }
            }
        }
    }
}
