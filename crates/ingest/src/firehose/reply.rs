//! Success replies of `PutRecord` and `PutRecordBatch` with the real API's field names, record
//! ids, and the wire form every reply takes (status, content type, JSON bytes).

use serde::Serialize;

/// The content type of every Firehose request and reply.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// A reply ready for the HTTP layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireResponse {
    pub status: u16,
    /// Always [`CONTENT_TYPE`].
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl WireResponse {
    pub(super) fn json(status: u16, body: Vec<u8>) -> Self {
        WireResponse {
            status,
            content_type: CONTENT_TYPE,
            body,
        }
    }
}

/// Serializes one of this module's reply shapes.
pub(super) fn json_body(value: &impl Serialize) -> Vec<u8> {
    // serde_json fails only for maps with non-string keys or a failing custom `Serialize`; the
    // shapes here are plain structs of strings, numbers and booleans.
    serde_json::to_vec(value).expect("reply shapes always serialize")
}

/// The reply to `PutRecord`: `{"RecordId": "...", "Encrypted": false}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordReply {
    pub record_id: String,
    /// Server-side encryption is not offered, so always `false`.
    pub encrypted: bool,
}

impl PutRecordReply {
    pub fn new(record_id: String) -> Self {
        PutRecordReply {
            record_id,
            encrypted: false,
        }
    }

    /// The 200 reply.
    pub fn to_wire(&self) -> WireResponse {
        WireResponse::json(200, json_body(self))
    }
}

/// The reply to `PutRecordBatch`: one entry per record, in call order, and the count of failed
/// ones (derived from the entries, so the two cannot disagree).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordBatchReply {
    failed_put_count: usize,
    encrypted: bool,
    request_responses: Vec<RecordResponse>,
}

impl PutRecordBatchReply {
    pub fn new(request_responses: Vec<RecordResponse>) -> Self {
        let failed_put_count = request_responses
            .iter()
            .filter(|response| matches!(response, RecordResponse::Failed { .. }))
            .count();
        PutRecordBatchReply {
            failed_put_count,
            encrypted: false,
            request_responses,
        }
    }

    /// How many entries are [`RecordResponse::Failed`]; producers resend exactly those records.
    pub fn failed_put_count(&self) -> usize {
        self.failed_put_count
    }

    pub fn request_responses(&self) -> &[RecordResponse] {
        &self.request_responses
    }

    /// The 200 reply (a batch with failed records is still a 200, as in Firehose).
    pub fn to_wire(&self) -> WireResponse {
        WireResponse::json(200, json_body(self))
    }
}

/// The outcome of one record of a `PutRecordBatch` call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum RecordResponse {
    /// Stored: `{"RecordId": "..."}`.
    Stored {
        #[serde(rename = "RecordId")]
        record_id: String,
    },
    /// Not stored, the producer should resend it: `{"ErrorCode": "...", "ErrorMessage": "..."}`.
    Failed {
        #[serde(rename = "ErrorCode")]
        error_code: RecordErrorCode,
        #[serde(rename = "ErrorMessage")]
        error_message: String,
    },
}

/// The per-record error codes Firehose documents for `PutRecordBatch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum RecordErrorCode {
    #[serde(rename = "ServiceUnavailableException")]
    ServiceUnavailable,
    InternalFailure,
}

/// The id of record `index` of the call stored at `log_position` on node `node_id`.
///
/// Deterministic, so a replay of the log hands out the same ids, and unique across nodes and
/// calls: node ids are unique, the two numbers have fixed widths (so the node id is everything
/// before the last 22 characters) and `index` is below [`super::MAX_RECORDS_PER_CALL`]. The node
/// id stays readable because producers log record ids for "auditability and investigation".
pub fn record_id(node_id: &str, log_position: u64, index: usize) -> String {
    debug_assert!(!node_id.is_empty(), "node ids are never empty");
    debug_assert!(
        index <= 0xffff,
        "index {index} does not fit the fixed width"
    );
    format!("{node_id}-{log_position:016x}-{index:04x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn put_record_reply_shape() {
        let wire = PutRecordReply::new("node-1-00000000000000ff-0000".into()).to_wire();
        assert_eq!(wire.status, 200);
        assert_eq!(wire.content_type, "application/x-amz-json-1.1");
        assert_eq!(
            String::from_utf8(wire.body).unwrap(),
            r#"{"RecordId":"node-1-00000000000000ff-0000","Encrypted":false}"#
        );
    }

    #[test]
    fn put_record_batch_reply_shape_counts_failures() {
        let reply = PutRecordBatchReply::new(vec![
            RecordResponse::Stored {
                record_id: "n-0000000000000001-0000".into(),
            },
            RecordResponse::Failed {
                error_code: RecordErrorCode::ServiceUnavailable,
                error_message: "Slow down.".into(),
            },
            RecordResponse::Failed {
                error_code: RecordErrorCode::InternalFailure,
                error_message: "disk full".into(),
            },
        ]);
        assert_eq!(reply.failed_put_count(), 2);
        assert_eq!(reply.request_responses().len(), 3);
        let wire = reply.to_wire();
        assert_eq!(wire.status, 200);
        assert_eq!(
            String::from_utf8(wire.body).unwrap(),
            concat!(
                r#"{"FailedPutCount":2,"Encrypted":false,"RequestResponses":["#,
                r#"{"RecordId":"n-0000000000000001-0000"},"#,
                r#"{"ErrorCode":"ServiceUnavailableException","ErrorMessage":"Slow down."},"#,
                r#"{"ErrorCode":"InternalFailure","ErrorMessage":"disk full"}]}"#
            )
        );
    }

    #[test]
    fn record_ids_are_deterministic() {
        assert_eq!(record_id("node-1", 0x2a, 3), "node-1-000000000000002a-0003");
        assert_eq!(record_id("node-1", 0x2a, 3), record_id("node-1", 0x2a, 3));
    }

    proptest! {
        // Node ids may contain '-', so uniqueness rests on the fixed-width tail.
        #[test]
        fn record_ids_are_unique(
            triples in proptest::collection::hash_set(
                ("[a-z0-9-]{1,6}", any::<u64>(), 0usize..=0xffff), 1..64),
        ) {
            let ids: HashSet<String> = triples
                .iter()
                .map(|(node, position, index)| record_id(node, *position, *index))
                .collect();
            prop_assert_eq!(ids.len(), triples.len());
        }
    }
}
