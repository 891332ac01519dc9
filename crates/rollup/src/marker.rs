//! An hour's rollup key (`rollup.json`): what the hour was computed from, with which settings,
//! and a digest of each table object, so a stale or damaged rollup is recognised and recomputed.

use std::collections::BTreeMap;

use newsrec_lake::layout::ROLLUP_FORMAT;
use object_store::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::{RollupSettings, RollupTable};

/// The key of one hour's rollup. It holds no wall-clock time, so an hour computed twice from the
/// same objects with the same settings has the same key, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollupMarker {
    /// The rollup format (`v1`), also the folder it lives in.
    pub format: String,
    /// `dt=YYYY-MM-DD/hour=HH`.
    pub hour: String,
    /// The event objects the hour was computed from.
    pub source: SourceKey,
    pub counts: HourCounts,
    /// Each table by name.
    pub tables: BTreeMap<String, TableEntry>,
}

/// What an hour's event objects were when its rollup was computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceKey {
    pub objects: u64,
    pub bytes: u64,
    /// xxh3-128 of the sorted listing: each object's path, size and entity tag. A new object
    /// (a late event, a re-import) or a rewritten one changes it.
    pub fingerprint: String,
}

impl SourceKey {
    /// The key of a listing of one hour's event objects.
    pub fn of(objects: &[ObjectMeta]) -> SourceKey {
        let mut lines: Vec<String> = objects
            .iter()
            .map(|meta| {
                format!(
                    "{}\t{}\t{}\n",
                    meta.location,
                    meta.size,
                    meta.e_tag.as_deref().unwrap_or("")
                )
            })
            .collect();
        lines.sort();
        SourceKey {
            objects: objects.len() as u64,
            bytes: objects.iter().map(|meta| meta.size).sum(),
            fingerprint: format!(
                "{:032x}",
                xxhash_rust::xxh3::xxh3_128(lines.concat().as_bytes())
            ),
        }
    }
}

/// An hour's event counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HourCounts {
    /// Every event row in the hour's objects.
    pub events: u64,
    /// Distinct clicks (after deduplication by event id).
    pub clicks: u64,
    /// Click rows dropped as copies of another with the same event id.
    pub duplicates: u64,
    /// Rows of other event types (views).
    pub other_events: u64,
}

/// One table object of an hour's rollup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableEntry {
    /// Object name inside the hour's rollup folder.
    pub object: String,
    /// Hash of the settings the table was computed with.
    pub settings: String,
    pub rows: u64,
    pub bytes: u64,
    /// xxh3-128 of the object's bytes.
    pub digest: String,
}

impl RollupMarker {
    pub(crate) fn format_matches(&self) -> bool {
        self.format == ROLLUP_FORMAT
    }
}

/// The hash of the settings `table` depends on.
pub(crate) fn settings_hash(table: RollupTable, settings: &RollupSettings) -> String {
    let text = format!("{ROLLUP_FORMAT}\n{}", table.settings_text(settings));
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
}

/// The digest recorded for a table object's bytes.
pub(crate) fn digest(bytes: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
}
