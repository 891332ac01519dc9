//! Fuzzes the Firehose parser (`parse_request`, then `records_to_events`): it must never panic,
//! a call it accepts must meet every service limit and survive re-encoding, a call it refuses
//! must be a client error with a JSON error body, and per-record outcomes must account for every
//! line of every record.
//!
//! The first input byte picks the mode: the rest is a `PutRecord` body (0), a `PutRecordBatch`
//! body (1), or records separated by 0xFE that are encoded as an SDK would (2) or handed straight
//! to `records_to_events` (3). Modes 2 and 3 reach the event parser without the fuzzer having to
//! discover base64 inside JSON first.

#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use newsrec_event::{event_from_value, parse_body};
use newsrec_ingest::firehose::{
    ErrorKind, FirehoseError, FirehoseRequest, Location, MAX_CALL_BYTES, MAX_RECORD_BYTES,
    MAX_RECORDS_PER_CALL, MAX_STREAM_NAME_CHARS, Op, parse_request, records_to_events,
};
use serde_json::{Value, json};

/// Events per call handed to `records_to_events`: small, so the budget paths are reached.
const MAX_EVENTS: usize = 48;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => check_call(Op::PutRecord, rest),
        1 => check_call(Op::PutRecordBatch, rest),
        2 => check_round_trip(rest),
        _ => check_records(&rest.split(|&byte| byte == 0xfe).collect::<Vec<_>>()),
    }
});

fn check_call(op: Op, body: &[u8]) {
    let unknown = parse_request("Firehose_20150804.DeleteDeliveryStream", body);
    assert!(matches!(
        unknown,
        Err(FirehoseError::UnknownOperation { .. })
    ));
    match parse_request(op.target(), body) {
        Ok(request) => {
            assert_eq!(request.op, op);
            check_limits(&request);
            let again = parse_request(op.target(), &encode(&request));
            assert_eq!(again.as_ref(), Ok(&request), "re-encoding changes nothing");
            check_records(&request.records);
        }
        Err(error) => {
            assert_eq!(error.status(), 400, "{error}");
            assert_ne!(error.kind(), ErrorKind::ResourceNotFound);
            let wire = error.to_wire();
            let reply: Value = serde_json::from_slice(&wire.body).expect("error body is JSON");
            assert_eq!(reply["__type"], error.kind().exception_name());
            assert_eq!(reply["message"], error.to_string());
        }
    }
}

fn check_limits(request: &FirehoseRequest) {
    let count = request.records.len();
    assert!((1..=MAX_RECORDS_PER_CALL).contains(&count));
    if request.op == Op::PutRecord {
        assert_eq!(count, 1);
    }
    assert!(
        request
            .records
            .iter()
            .all(|data| data.len() <= MAX_RECORD_BYTES)
    );
    assert!(request.records.iter().map(Vec::len).sum::<usize>() <= MAX_CALL_BYTES);
    let name = &request.stream;
    assert!((1..=MAX_STREAM_NAME_CHARS).contains(&name.len()));
    assert!(
        name.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    );
}

/// The body an SDK would send for this request.
fn encode(request: &FirehoseRequest) -> Vec<u8> {
    let record = |data: &Vec<u8>| json!({ "Data": STANDARD.encode(data) });
    let body = match request.op {
        Op::PutRecord => json!({
            "DeliveryStreamName": request.stream,
            "Record": record(&request.records[0]),
        }),
        Op::PutRecordBatch => json!({
            "DeliveryStreamName": request.stream,
            "Records": request.records.iter().map(record).collect::<Vec<_>>(),
        }),
    };
    serde_json::to_vec(&body).expect("a JSON value serializes")
}

fn check_round_trip(rest: &[u8]) {
    let records: Vec<Vec<u8>> = rest
        .split(|&byte| byte == 0xfe)
        .map(<[u8]>::to_vec)
        .collect();
    let request = FirehoseRequest {
        stream: "fuzz-stream".into(),
        op: Op::PutRecordBatch,
        records,
    };
    let parsed = parse_request(Op::PutRecordBatch.target(), &encode(&request));
    if request.records.len() > MAX_RECORDS_PER_CALL {
        let records = request.records.len();
        assert_eq!(parsed, Err(FirehoseError::TooManyRecords { records }));
        return;
    }
    assert_eq!(
        parsed.as_ref(),
        Ok(&request),
        "what an SDK sends comes back byte for byte"
    );
    check_records(&request.records);
}

fn check_records<R: AsRef<[u8]>>(records: &[R]) {
    let parsed = records_to_events(records, MAX_EVENTS);
    assert_eq!(parsed.records.len(), records.len());
    let mut lines_read = 0;
    for (index, (outcome, data)) in parsed.records.iter().zip(records).enumerate() {
        let data = data.as_ref();
        for event in &outcome.events {
            assert_eq!(event_from_value(&event.to_json()).as_ref(), Ok(event));
        }
        assert!(
            outcome
                .rejected
                .iter()
                .all(|rejected| rejected.record == index)
        );
        if let [whole] = &outcome.rejected[..]
            && whole.at == Location::WholeRecord
        {
            assert!(outcome.events.is_empty(), "a refused record keeps no event");
            assert_eq!(whole.raw, data, "a refused record is kept verbatim");
            continue;
        }
        // Not refused whole: the record parses the same on its own, line for line.
        let alone = parse_body(data, usize::MAX).expect("a record that was split splits again");
        assert_eq!(alone.events, outcome.events);
        assert_eq!(alone.rejected.len(), outcome.rejected.len());
        lines_read += alone.records;
        let text = std::str::from_utf8(data).expect("a split record is UTF-8");
        for (rejected, rejection) in outcome.rejected.iter().zip(&alone.rejected) {
            assert_eq!(rejected.reason, rejection.reason);
            match rejected.at {
                Location::Line(line) => {
                    assert_eq!(Some(line), rejection.line);
                    let expected = text.split('\n').nth(line - 1).expect("a real line").trim();
                    assert_eq!(rejected.raw, expected.as_bytes());
                }
                Location::Element(element) => {
                    assert_eq!(element, rejection.index);
                    serde_json::from_slice::<Value>(&rejected.raw).expect("an element is JSON");
                }
                Location::WholeRecord => panic!("whole-record refusal among line refusals"),
            }
        }
    }
    assert!(
        lines_read <= MAX_EVENTS,
        "the event budget holds for the call"
    );
}
