//! The error output: records that failed validation, kept with the reason under `errors/`, the
//! way a managed delivery stream's error output prefix keeps them.
//!
//! One NDJSON object per ingest batch and arrival hour, named like the event objects of the same
//! batch (`errors/dt=/hour=/<writer>-<seq:020>.ndjson`), so redoing a batch after a crash
//! replaces the object instead of adding a copy. Fields are named as in the managed service's
//! error records (`rawData` is base64, as the bytes need not be UTF-8).

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::{
    Lake, LakeError,
    layout::{self, Partition},
};

/// One refused record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorRecord {
    /// When the node received it, epoch milliseconds.
    pub arrival_timestamp: i64,
    /// `Validation` for a record whose content was refused.
    pub error_code: String,
    /// Which field and why.
    pub error_message: String,
    /// The API it came through: `native` (`POST /v1/events`) or `firehose`.
    pub source: String,
    /// Position of the record in its request (0-based).
    pub record: usize,
    /// Line within the record or body, 1-based, when it was NDJSON.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub line: Option<usize>,
    /// The record's bytes, base64.
    pub raw_data: String,
}

impl ErrorRecord {
    /// A validation failure of `raw`.
    pub fn validation(
        arrival_timestamp: i64,
        source: &str,
        record: usize,
        line: Option<usize>,
        reason: &str,
        raw: &[u8],
    ) -> ErrorRecord {
        ErrorRecord {
            arrival_timestamp,
            error_code: "Validation".into(),
            error_message: reason.into(),
            source: source.into(),
            record,
            line,
            raw_data: base64::engine::general_purpose::STANDARD.encode(raw),
        }
    }
}

impl Lake {
    /// Writes refused records as batch `seq` of `writer`: one NDJSON object per arrival hour.
    /// Returns the number of objects written.
    pub async fn write_errors(
        &self,
        writer: &str,
        seq: u64,
        records: &[ErrorRecord],
    ) -> Result<usize, LakeError> {
        layout::validate_name("writer name", writer)?;
        let mut by_hour: BTreeMap<Partition, Vec<u8>> = BTreeMap::new();
        for record in records {
            let text = by_hour
                .entry(Partition::of_ts(record.arrival_timestamp))
                .or_default();
            serde_json::to_writer(&mut *text, record).map_err(|error| {
                LakeError::bad_object(format!("{}/", layout::ERRORS_PREFIX), error)
            })?;
            text.push(b'\n');
        }
        let objects = by_hour.len();
        for (partition, text) in by_hour {
            let path = layout::error_object_path(partition, writer, seq);
            self.put_object(&path, text).await?;
        }
        Ok(objects)
    }

    /// Reads every error record of the arrival day `date`, in path order.
    pub async fn read_errors(
        &self,
        date: chrono::NaiveDate,
    ) -> Result<Vec<ErrorRecord>, LakeError> {
        use futures::TryStreamExt;
        let prefix = layout::error_day_prefix(date);
        let mut listed: Vec<_> = self
            .store()
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|source| LakeError::store(&prefix, source))?;
        listed.sort_by(|a: &object_store::ObjectMeta, b| a.location.cmp(&b.location));
        let mut records = Vec::new();
        for meta in listed {
            let bytes = self.get_object(&meta.location).await?;
            for line in bytes.split(|byte| *byte == b'\n').filter(|l| !l.is_empty()) {
                records.push(
                    serde_json::from_slice(line)
                        .map_err(|error| LakeError::bad_object(&meta.location, error))?,
                );
            }
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn error_records_round_trip_by_arrival_hour() {
        let lake = Lake::open("memory://").unwrap();
        let at = 1_506_816_000_000; // 2017-10-01T00:00Z
        let records = vec![
            ErrorRecord::validation(at, "native", 3, Some(4), "field \"ts\": bad", b"{\"ts\":1}"),
            ErrorRecord::validation(at + 3_600_000, "firehose", 0, None, "not UTF-8", &[0xff, 0]),
        ];
        assert_eq!(lake.write_errors("n1", 7, &records).await.unwrap(), 2);
        // Writing the same batch again replaces, it does not add.
        lake.write_errors("n1", 7, &records).await.unwrap();
        let date = chrono::NaiveDate::from_ymd_opt(2017, 10, 1).unwrap();
        assert_eq!(lake.read_errors(date).await.unwrap(), records);
        let listed: Vec<_> =
            futures::TryStreamExt::try_collect::<Vec<_>>(lake.store().list(Some(&"errors".into())))
                .await
                .unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed.iter().any(|m| m.location.as_ref()
            == "errors/dt=2017-10-01/hour=01/n1-00000000000000000007.ndjson"));
        assert_eq!(records[1].raw_data, "/wA=");
    }
}
