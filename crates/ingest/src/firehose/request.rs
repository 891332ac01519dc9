//! Parsing one Firehose call: the operation from `X-Amz-Target`, the JSON body, base64 `Data`,
//! and the service's limits.
//!
//! Checks run in a fixed order so the same bad call always gets the same answer: operation, JSON
//! shape (`SerializationException`), stream name, record count, then each record in order (base64,
//! its size, the running total). Structure errors name the JSON path (`Records[3].Data`) because
//! serde's own messages only give a line and column, useless for a body an SDK wrote.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer, MapAccess, Visitor};

use super::{
    FirehoseError, MAX_CALL_BYTES, MAX_RECORD_BYTES, MAX_RECORDS_PER_CALL, MAX_STREAM_NAME_CHARS,
};

/// The `X-Amz-Target` prefix of every Firehose operation (service name and API version).
const TARGET_PREFIX: &str = "Firehose_20150804.";

/// A Firehose operation this endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    PutRecord,
    PutRecordBatch,
}

impl Op {
    /// The operation's name in the API.
    pub fn name(self) -> &'static str {
        match self {
            Op::PutRecord => "PutRecord",
            Op::PutRecordBatch => "PutRecordBatch",
        }
    }

    /// The full `X-Amz-Target` header value that selects this operation.
    pub fn target(self) -> &'static str {
        match self {
            Op::PutRecord => "Firehose_20150804.PutRecord",
            Op::PutRecordBatch => "Firehose_20150804.PutRecordBatch",
        }
    }

    /// The operation an `X-Amz-Target` value selects; `None` for any other value. Matching is
    /// exact, as the service's is.
    pub fn from_target(target: &str) -> Option<Op> {
        match target.strip_prefix(TARGET_PREFIX)? {
            "PutRecord" => Some(Op::PutRecord),
            "PutRecordBatch" => Some(Op::PutRecordBatch),
            _ => None,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A validated call: every limit holds and every record's data is decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirehoseRequest {
    /// The `DeliveryStreamName`: 1 to 64 characters of `[a-zA-Z0-9_.-]`.
    pub stream: String,
    pub op: Op,
    /// Each record's decoded `Data`, in call order; exactly one for `PutRecord`.
    pub records: Vec<Vec<u8>>,
}

// The body shapes. `Data` stays a (usually borrowed) string until the count check has passed, so
// a call with too many records is refused before anything is decoded.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutRecordBody<'a> {
    #[serde(rename = "DeliveryStreamName", borrow)]
    stream: Cow<'a, str>,
    #[serde(rename = "Record", borrow)]
    record: Object<RecordBody<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutRecordBatchBody<'a> {
    #[serde(rename = "DeliveryStreamName", borrow)]
    stream: Cow<'a, str>,
    #[serde(rename = "Records", borrow)]
    records: Vec<Object<RecordBody<'a>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordBody<'a> {
    #[serde(rename = "Data", borrow)]
    data: Cow<'a, str>,
}

/// A struct that must be written as a JSON object. serde's derived structs also accept a JSON
/// array of the field values in order (`{"Record": ["aGk="]}`), which the real API refuses and
/// no SDK sends; accepting it would make a typo'd body "work" here and nowhere else.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = Object<T>;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(Object)
            }
        }

        deserializer.deserialize_map(ObjectVisitor(PhantomData))
    }
}

/// Parses and validates one call. `target` is the `X-Amz-Target` header value (empty when the
/// header is missing) and `body` the raw request body, already capped by the route.
pub fn parse_request(target: &str, body: &[u8]) -> Result<FirehoseRequest, FirehoseError> {
    let op = Op::from_target(target).ok_or_else(|| FirehoseError::UnknownOperation {
        target: target.to_owned(),
    })?;
    let (stream, encoded) = match op {
        Op::PutRecord => {
            let Object(parsed): Object<PutRecordBody<'_>> = deserialize(body)?;
            (parsed.stream, vec![parsed.record.0])
        }
        Op::PutRecordBatch => {
            let Object(parsed): Object<PutRecordBatchBody<'_>> = deserialize(body)?;
            let records = parsed.records.into_iter().map(|Object(record)| record);
            (parsed.stream, records.collect())
        }
    };
    check_stream_name(&stream)?;
    if encoded.is_empty() {
        return Err(FirehoseError::NoRecords);
    }
    if encoded.len() > MAX_RECORDS_PER_CALL {
        return Err(FirehoseError::TooManyRecords {
            records: encoded.len(),
        });
    }
    let mut records = Vec::with_capacity(encoded.len());
    let mut total_bytes = 0usize;
    for (index, record) in encoded.iter().enumerate() {
        let data = STANDARD.decode(record.data.as_bytes()).map_err(|error| {
            FirehoseError::Serialization {
                field: data_field(op, index),
                reason: format!("not valid base64 (standard alphabet, padded): {error}"),
            }
        })?;
        if data.len() > MAX_RECORD_BYTES {
            return Err(FirehoseError::RecordTooLarge {
                op,
                index,
                bytes: data.len(),
            });
        }
        total_bytes += data.len();
        if total_bytes > MAX_CALL_BYTES {
            return Err(FirehoseError::CallTooLarge {
                index,
                bytes: total_bytes,
            });
        }
        records.push(data);
    }
    Ok(FirehoseRequest {
        stream: stream.into_owned(),
        op,
        records,
    })
}

/// How a record's `Data` field is named in messages: `Record.Data` or `Records[3].Data`.
pub(super) fn data_field(op: Op, index: usize) -> String {
    match op {
        Op::PutRecord => "Record.Data".to_owned(),
        Op::PutRecordBatch => format!("Records[{index}].Data"),
    }
}

/// Deserializes a whole body (trailing bytes refused), naming the JSON path of any error.
fn deserialize<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, FirehoseError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        FirehoseError::Serialization {
            // serde_path_to_error renders the empty path as ".".
            field: if path == "." {
                "request body".to_owned()
            } else {
                path
            },
            reason: error.into_inner().to_string(),
        }
    })?;
    deserializer
        .end()
        .map_err(|error| FirehoseError::Serialization {
            field: "request body".to_owned(),
            reason: error.to_string(),
        })?;
    Ok(value)
}

fn check_stream_name(name: &str) -> Result<(), FirehoseError> {
    let allowed = |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-');
    if name.is_empty() || name.len() > MAX_STREAM_NAME_CHARS || !name.bytes().all(allowed) {
        return Err(FirehoseError::InvalidStreamName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firehose::ErrorKind;
    use proptest::prelude::*;
    use serde_json::json;

    const BATCH: &str = "Firehose_20150804.PutRecordBatch";
    const SINGLE: &str = "Firehose_20150804.PutRecord";

    fn batch_body(stream: &str, records: &[&[u8]]) -> Vec<u8> {
        let records: Vec<_> = records
            .iter()
            .map(|data| json!({ "Data": STANDARD.encode(data) }))
            .collect();
        serde_json::to_vec(&json!({ "DeliveryStreamName": stream, "Records": records })).unwrap()
    }

    fn parse_batch(records: &[&[u8]]) -> Result<FirehoseRequest, FirehoseError> {
        parse_request(BATCH, &batch_body("clicks", records))
    }

    /// The `field` of a serialization error, failing the test for any other outcome.
    fn serialization_field(target: &str, body: &[u8]) -> (String, String) {
        match parse_request(target, body) {
            Err(FirehoseError::Serialization { field, reason }) => (field, reason),
            other => panic!("expected a serialization error, got {other:?}"),
        }
    }

    #[test]
    fn put_record_decodes_data() {
        let body = br#"{"DeliveryStreamName":"clicks","Record":{"Data":"aGVsbG8="}}"#;
        let request = parse_request(SINGLE, body).unwrap();
        assert_eq!(
            request,
            FirehoseRequest {
                stream: "clicks".into(),
                op: Op::PutRecord,
                records: vec![b"hello".to_vec()],
            }
        );
    }

    #[test]
    fn put_record_batch_keeps_order_and_empty_data() {
        let request = parse_batch(&[b"one\n", b"", b"\x00\xff binary"]).unwrap();
        assert_eq!(request.op, Op::PutRecordBatch);
        assert_eq!(
            request.records,
            [b"one\n".to_vec(), Vec::new(), b"\x00\xff binary".to_vec()]
        );
    }

    #[test]
    fn escaped_slashes_in_data_are_unescaped() {
        // Some JSON encoders (PHP's by default) write '/' as "\/"; base64 "////" is ff ff ff.
        let body = br#"{"DeliveryStreamName":"clicks","Record":{"Data":"\/\/\/\/"}}"#;
        assert_eq!(
            parse_request(SINGLE, body).unwrap().records,
            [vec![0xff; 3]]
        );
    }

    #[test]
    fn unknown_operations_are_refused() {
        let body = batch_body("clicks", &[b"x"]);
        for target in [
            "Firehose_20150804.DescribeDeliveryStream",
            "Kinesis_20131202.PutRecord",
            "firehose_20150804.PutRecordBatch",
            "Firehose_20150804.PutRecordBatch ",
            "PutRecordBatch",
            "",
        ] {
            let error = parse_request(target, &body).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::UnknownOperation, "{target:?}");
            assert_eq!(error.status(), 400);
        }
        assert_eq!(
            parse_request("", &body).unwrap_err().to_string(),
            "the X-Amz-Target header is missing; send X-Amz-Target \
             Firehose_20150804.PutRecord or Firehose_20150804.PutRecordBatch"
        );
        assert!(
            parse_request("Firehose_20150804.ListDeliveryStreams", &body)
                .unwrap_err()
                .to_string()
                .starts_with(
                    "operation \"Firehose_20150804.ListDeliveryStreams\" is not supported"
                )
        );
    }

    #[test]
    fn targets_round_trip() {
        for op in [Op::PutRecord, Op::PutRecordBatch] {
            assert_eq!(Op::from_target(op.target()), Some(op));
            assert!(op.target().ends_with(op.name()));
        }
    }

    #[test]
    fn record_count_limits_at_the_boundary() {
        let data = [b"x".as_slice(); MAX_RECORDS_PER_CALL + 1];
        let request = parse_batch(&data[..MAX_RECORDS_PER_CALL]).unwrap();
        assert_eq!(request.records.len(), 500);

        let error = parse_batch(&data).unwrap_err();
        assert_eq!(error, FirehoseError::TooManyRecords { records: 501 });
        assert_eq!(error.kind(), ErrorKind::InvalidArgument);
        assert_eq!(
            error.to_string(),
            "Records: 501 records, at most 500 allowed in one call; split the batch"
        );

        let error = parse_batch(&[]).unwrap_err();
        assert_eq!(error, FirehoseError::NoRecords);
        assert_eq!(error.kind(), ErrorKind::InvalidArgument);
    }

    #[test]
    fn count_is_checked_before_any_data_is_decoded() {
        let mut body: serde_json::Value =
            serde_json::from_slice(&batch_body("clicks", &[b"x".as_slice(); 501])).unwrap();
        body["Records"][7]["Data"] = json!("not base64!");
        let error = parse_request(BATCH, &serde_json::to_vec(&body).unwrap()).unwrap_err();
        assert_eq!(error, FirehoseError::TooManyRecords { records: 501 });
    }

    #[test]
    fn record_size_limit_at_the_boundary() {
        let largest = vec![b'a'; MAX_RECORD_BYTES];
        let request = parse_batch(&[b"x", &largest]).unwrap();
        assert_eq!(request.records[1].len(), 1_024_000);

        let too_large = vec![b'a'; MAX_RECORD_BYTES + 1];
        let error = parse_batch(&[b"x", &too_large]).unwrap_err();
        assert_eq!(
            error,
            FirehoseError::RecordTooLarge {
                op: Op::PutRecordBatch,
                index: 1,
                bytes: 1_024_001
            }
        );
        assert_eq!(error.kind(), ErrorKind::InvalidArgument);

        let mebibyte = vec![0u8; 1024 * 1024];
        let error = parse_batch(&[b"a", b"b", b"c", &mebibyte]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "Records[3].Data: 1048576 bytes after base64 decoding, at most 1024000 allowed"
        );
    }

    #[test]
    fn put_record_size_limit_names_record_data() {
        let body = json!({
            "DeliveryStreamName": "clicks",
            "Record": { "Data": STANDARD.encode(vec![0u8; MAX_RECORD_BYTES + 1]) },
        });
        let error = parse_request(SINGLE, &serde_json::to_vec(&body).unwrap()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "Record.Data: 1024001 bytes after base64 decoding, at most 1024000 allowed"
        );
    }

    #[test]
    fn call_size_limit_at_the_boundary() {
        let full = vec![b'a'; MAX_RECORD_BYTES];
        // Four full records leave exactly 98,304 bytes of the 4 MiB.
        let rest = MAX_CALL_BYTES - 4 * MAX_RECORD_BYTES;
        assert_eq!(rest, 98_304);
        let fits = vec![b'b'; rest];
        let request = parse_batch(&[&full, &full, &full, &full, &fits]).unwrap();
        let total: usize = request.records.iter().map(Vec::len).sum();
        assert_eq!(total, MAX_CALL_BYTES);

        let over = vec![b'b'; rest + 1];
        let error = parse_batch(&[&full, &full, &full, &full, &over, b"x"]).unwrap_err();
        assert_eq!(
            error,
            FirehoseError::CallTooLarge {
                index: 4,
                bytes: 4_194_305
            }
        );
        assert_eq!(error.kind(), ErrorKind::InvalidArgument);
        assert!(
            error
                .to_string()
                .contains("at most 4194304 allowed in one call")
        );
    }

    #[test]
    fn stream_name_constraints() {
        for good in ["a", "aZ09_.-", &"s".repeat(64)] {
            let request = parse_request(BATCH, &batch_body(good, &[b"x"])).unwrap();
            assert_eq!(request.stream, good);
        }
        for bad in ["", "with space", "slash/name", "é", &"s".repeat(65)] {
            let error = parse_request(BATCH, &batch_body(bad, &[b"x"])).unwrap_err();
            assert_eq!(
                error,
                FirehoseError::InvalidStreamName { name: bad.into() },
                "{bad:?}"
            );
            assert_eq!(error.kind(), ErrorKind::InvalidArgument);
        }
        let error = parse_request(BATCH, &batch_body("a b", &[b"x"])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "DeliveryStreamName: \"a b\" is not 1 to 64 characters of [a-zA-Z0-9_.-]"
        );
    }

    #[test]
    fn malformed_base64_names_the_record() {
        for data in ["aGVsbG8", "aGVs bG8=", "!!!!", "aGVsbG8==", "aGVsbG9="] {
            let body = json!({
                "DeliveryStreamName": "clicks",
                "Records": [{ "Data": "b2s=" }, { "Data": data }],
            });
            let (field, reason) = serialization_field(BATCH, &serde_json::to_vec(&body).unwrap());
            assert_eq!(field, "Records[1].Data", "{data:?}");
            assert!(reason.starts_with("not valid base64"), "{data:?}: {reason}");
        }
        let body = br#"{"DeliveryStreamName":"clicks","Record":{"Data":"%%%%"}}"#;
        assert_eq!(serialization_field(SINGLE, body).0, "Record.Data");
    }

    #[test]
    fn wrong_types_name_the_field() {
        let cases: [(&str, &[u8], &str, &str); 6] = [
            (
                BATCH,
                br#"{"DeliveryStreamName":"s","Records":[{"Data":"b2s="},{"Data":5}]}"#,
                "Records[1].Data",
                "invalid type: integer `5`",
            ),
            (
                BATCH,
                br#"{"DeliveryStreamName":"s","Records":{"Data":"b2s="}}"#,
                "Records",
                "invalid type: map",
            ),
            (
                BATCH,
                br#"{"DeliveryStreamName":7,"Records":[]}"#,
                "DeliveryStreamName",
                "invalid type: integer `7`",
            ),
            (
                SINGLE,
                br#"{"DeliveryStreamName":"s","Record":[{"Data":"b2s="}]}"#,
                "Record",
                "invalid type: sequence",
            ),
            (
                SINGLE,
                br#"{"DeliveryStreamName":"s","Record":{"Data":null}}"#,
                "Record.Data",
                "invalid type: null",
            ),
            (
                BATCH,
                br#"["s", [{"Data":"b2s="}]]"#,
                "request body",
                "invalid type: sequence, expected a JSON object",
            ),
        ];
        for (target, body, field, reason) in cases {
            let (got_field, got_reason) = serialization_field(target, body);
            assert_eq!(got_field, field);
            assert!(got_reason.starts_with(reason), "{got_reason}");
        }
    }

    // Regression: serde's derived structs took a JSON array of field values as the struct, so
    // `{"Record": ["b2s="]}` and `["s", [["b2s="]]]` were accepted.
    #[test]
    fn positional_arrays_are_not_objects() {
        let cases: [(&str, &[u8], &str); 3] = [
            (
                SINGLE,
                br#"{"DeliveryStreamName":"s","Record":["b2s="]}"#,
                "Record",
            ),
            (
                BATCH,
                br#"{"DeliveryStreamName":"s","Records":[["b2s="]]}"#,
                "Records[0]",
            ),
            (BATCH, br#"["s", [["b2s="]]]"#, "request body"),
        ];
        for (target, body, field) in cases {
            let (got_field, reason) = serialization_field(target, body);
            assert_eq!(got_field, field);
            assert!(
                reason.starts_with("invalid type: sequence, expected a JSON object"),
                "{reason}"
            );
        }
    }

    #[test]
    fn missing_fields_are_named() {
        let (field, reason) = serialization_field(BATCH, br#"{"Records":[{"Data":"b2s="}]}"#);
        assert_eq!(field, "request body");
        assert!(
            reason.starts_with("missing field `DeliveryStreamName`"),
            "{reason}"
        );

        let (field, reason) =
            serialization_field(BATCH, br#"{"DeliveryStreamName":"s","Records":[{}]}"#);
        assert_eq!(field, "Records[0]");
        assert!(reason.starts_with("missing field `Data`"), "{reason}");

        let (_, reason) = serialization_field(SINGLE, br#"{"DeliveryStreamName":"s"}"#);
        assert!(reason.starts_with("missing field `Record`"), "{reason}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let (field, reason) = serialization_field(
            BATCH,
            br#"{"DeliveryStreamName":"s","Records":[{"Data":"b2s="}],"Extra":1}"#,
        );
        assert_eq!(field, "Extra");
        assert!(reason.starts_with("unknown field `Extra`"), "{reason}");

        // A PutRecord body sent as PutRecordBatch says which shape was expected.
        let (_, reason) = serialization_field(
            BATCH,
            br#"{"DeliveryStreamName":"s","Record":{"Data":"b2s="}}"#,
        );
        assert!(
            reason.contains("unknown field `Record`, expected `DeliveryStreamName` or `Records`"),
            "{reason}"
        );

        let (field, _) = serialization_field(
            BATCH,
            br#"{"DeliveryStreamName":"s","Records":[{"Data":"b2s=","PartitionKey":"k"}]}"#,
        );
        assert_eq!(field, "Records[0].PartitionKey");
    }

    #[test]
    fn malformed_json_is_a_serialization_error() {
        let good = batch_body("clicks", &[b"x"]);
        let mut trailing = good.clone();
        trailing.extend_from_slice(b" {}");
        let mut not_utf8 = good.clone();
        let quote = not_utf8.iter().rposition(|&b| b == b'=').unwrap();
        not_utf8[quote] = 0xff;
        for body in [
            &b""[..],
            b"   ",
            b"{",
            &good[..good.len() - 1],
            &trailing,
            &not_utf8,
            b"null",
        ] {
            let error = parse_request(BATCH, body).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Serialization, "{error}");
            assert_eq!(error.status(), 400);
        }
        let (field, reason) = serialization_field(BATCH, &trailing);
        assert_eq!(field, "request body");
        assert!(reason.starts_with("trailing characters"), "{reason}");
    }

    proptest! {
        // Whatever a producer sends within the limits comes back byte for byte.
        #[test]
        fn batch_round_trips(
            stream in "[a-zA-Z0-9_.-]{1,64}",
            records in proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..300), 1..40),
        ) {
            let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
            let request = parse_request(BATCH, &batch_body(&stream, &slices)).unwrap();
            prop_assert_eq!(request.stream, stream);
            prop_assert_eq!(request.records, records);
        }

        // Arbitrary bytes never panic, and are only ever refused as the client's fault.
        #[test]
        fn arbitrary_bodies_are_client_errors(
            body in proptest::collection::vec(any::<u8>(), 0..400),
            batch in any::<bool>(),
        ) {
            let target = if batch { BATCH } else { SINGLE };
            if let Err(error) = parse_request(target, &body) {
                prop_assert_eq!(error.status(), 400);
            }
        }
    }
}
