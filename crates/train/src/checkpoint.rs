//! Checkpoints of a training run: what a restarted job needs to skip finished work.
//!
//! Owns the objects under `checkpoints/<run_id>/` of a checkpoint store (the lake by default, a
//! local folder such as SageMaker's `/opt/ml/checkpoints` otherwise; their names are
//! `newsrec_lake::layout`'s) and their framing, specified
//! in `docs/checkpoint-format.md`: a fixed header (magic, format version, kind, payload length,
//! XXH3-128 of the payload) followed by a postcard payload. Objects are written with one atomic
//! put (temp file + rename on a local folder, a single PUT or completed multipart upload on S3),
//! so a reader sees a whole object or none; the checksum catches everything else (a truncated
//! copy, a flipped bit, a file written by something else).
//!
//! - `dataset.ckpt` — the click log the run trains on, written once. Resuming from it rather
//!   than re-reading the lake keeps a resumed run on exactly the data of the first start, even
//!   while ingest keeps adding events to the serving day.
//! - `state-<seq>.ckpt` — progress after a unit of work (ALS iterations, evaluations, list
//!   parts). The newest two are kept, so a damaged newest one falls back to the one before.

use std::{sync::Arc, time::Instant};

use bytes::Bytes;
use newsrec_lake::{
    Lake, ObjectPath as Path,
    layout::{self, DATASET_CHECKPOINT},
};
use newsrec_model::{AlsFactors, EvalMetrics};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{ClickLog, TrainError, blocking};

/// Version of the checkpoint framing and payloads; a reader refuses any other.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;

/// First bytes of every checkpoint object.
pub const CHECKPOINT_MAGIC: &[u8; 8] = b"NRCKPT\r\n";

/// Magic, version, kind, reserved, payload length, XXH3-128.
const HEADER_LEN: usize = 8 + 4 + 1 + 3 + 8 + 16;

/// What a checkpoint object holds; stored in the header so a misplaced file is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CheckpointKind {
    Dataset = 1,
    State = 2,
    /// A finished model's parameters (the ALS factors a run writes next to its lists).
    Model = 3,
}

/// Frames `payload` as a checkpoint object of `kind`.
pub fn encode_frame(kind: CheckpointKind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(CHECKPOINT_MAGIC);
    out.extend_from_slice(&CHECKPOINT_FORMAT_VERSION.to_le_bytes());
    out.push(kind as u8);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&xxhash_rust::xxh3::xxh3_128(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The payload of a checkpoint object of `kind`, or why the object is not a valid one.
pub fn decode_frame(kind: CheckpointKind, bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.len() < HEADER_LEN {
        return Err(format!(
            "{} bytes, shorter than the {HEADER_LEN}-byte header",
            bytes.len()
        ));
    }
    if &bytes[..8] != CHECKPOINT_MAGIC {
        return Err("not a newsrec checkpoint (bad magic)".into());
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
    if version != CHECKPOINT_FORMAT_VERSION {
        return Err(format!(
            "format version {version}, this newsrec reads version {CHECKPOINT_FORMAT_VERSION}"
        ));
    }
    if bytes[12] != kind as u8 {
        return Err(format!(
            "holds kind {}, expected {} ({kind:?})",
            bytes[12], kind as u8
        ));
    }
    let length = u64::from_le_bytes(bytes[16..24].try_into().unwrap_or_default());
    let payload = &bytes[HEADER_LEN..];
    if payload.len() as u64 != length {
        return Err(format!(
            "payload is {} bytes, the header says {length} (truncated or padded)",
            payload.len()
        ));
    }
    let stored = u128::from_le_bytes(bytes[24..40].try_into().unwrap_or_default());
    if xxhash_rust::xxh3::xxh3_128(payload) != stored {
        return Err("checksum mismatch (damaged)".into());
    }
    Ok(payload)
}

/// P1 figures of every model on one test day, as a checkpoint keeps them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayEvaluation {
    /// `backtest` (trained before D-1, tested on D-1) or `served` (the written models, on D).
    pub role: String,
    pub test_day: String,
    pub metrics: Vec<(String, EvalMetrics)>,
}

/// An ALS fit after `iteration` iterations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlsProgress {
    pub iteration: usize,
    pub factors: AlsFactors,
}

/// How far a run has got; every field is the result of finished units of work.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Increases by one per saved state; names the object.
    pub seq: u64,
    /// Digest of what the run was asked to do (day, run id, settings); a state of another
    /// request is refused rather than mixed in.
    pub fingerprint: String,
    /// XXH3-128 (hex) of the dataset checkpoint's payload this state builds on.
    pub dataset_digest: String,
    /// Times the job has started on this run (1 for a run never interrupted).
    pub starts: u32,
    /// The backtest's ALS, while it is being fitted.
    pub backtest_als: Option<AlsProgress>,
    /// The backtest figures once done (empty: nothing before the window to backtest on).
    pub backtest: Option<Vec<DayEvaluation>>,
    /// The served models' ALS while it is being fitted.
    pub serve_als: Option<AlsProgress>,
    /// Once it is fitted: XXH3-128 (hex) of the run's `als-factors.ckpt`, which holds it.
    pub serve_factors: Option<String>,
    /// The served models' figures on D once done (empty: the lake has no clicks of D).
    pub served: Option<Vec<DayEvaluation>>,
    /// List parts written so far, in order.
    pub parts: Vec<String>,
    pub users_written: u64,
    pub rows_written: u64,
}

/// `dataset.ckpt`'s payload as written (borrowed) and read (owned); same field order.
#[derive(Serialize)]
struct DatasetPayload<'a> {
    fingerprint: &'a str,
    log: &'a ClickLog,
}

#[derive(Deserialize)]
struct OwnedDatasetPayload {
    fingerprint: String,
    log: ClickLog,
}

/// A click log read back from `dataset.ckpt`.
#[derive(Debug)]
pub struct SavedDataset {
    pub log: ClickLog,
    /// XXH3-128 (hex) of the payload, which states refer to.
    pub digest: String,
    pub fingerprint: String,
}

/// The checkpoints of one run in a checkpoint store.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    store: Lake,
    run_id: String,
}

/// A state loaded from the store, with what had to be skipped to find it.
#[derive(Debug)]
pub struct LoadedState {
    pub state: RunState,
    pub object: String,
    /// Newer states that failed verification, with why.
    pub skipped: Vec<(String, String)>,
}

impl CheckpointStore {
    pub fn new(store: Lake, run_id: &str) -> Result<CheckpointStore, TrainError> {
        layout::validate_name("run id", run_id)?;
        Ok(CheckpointStore {
            store,
            run_id: run_id.to_owned(),
        })
    }

    /// Where the checkpoints are, for messages (`<store uri>/checkpoints/<run_id>/`).
    pub fn location(&self) -> String {
        format!(
            "{}/{}",
            self.store.uri().trim_end_matches('/'),
            self.prefix()
        )
    }

    fn prefix(&self) -> Path {
        layout::checkpoint_prefix(&self.run_id)
    }

    fn object(&self, name: &str) -> Path {
        layout::checkpoint_object_path(&self.run_id, name)
    }

    /// Saves the click log of the request `fingerprint`; returns the digest later states
    /// refer to.
    pub async fn save_dataset(
        &self,
        log: &Arc<ClickLog>,
        fingerprint: &str,
    ) -> Result<String, TrainError> {
        let (framed, digest) = blocking({
            let log = Arc::clone(log);
            let fingerprint = fingerprint.to_owned();
            move || -> Result<_, TrainError> {
                let payload = postcard::to_stdvec(&DatasetPayload {
                    fingerprint: &fingerprint,
                    log: &log,
                })
                .map_err(|e| TrainError::Internal(format!("encoding the dataset: {e}")))?;
                let digest = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&payload));
                Ok((encode_frame(CheckpointKind::Dataset, &payload), digest))
            }
        })
        .await??;
        self.store
            .put_object(&self.object(DATASET_CHECKPOINT), Bytes::from(framed))
            .await?;
        Ok(digest)
    }

    /// The saved click log, its digest and its request's fingerprint; `Ok(None)` when there is
    /// none, an error naming the object when it is damaged.
    pub async fn load_dataset(&self) -> Result<Option<SavedDataset>, TrainError> {
        let path = self.object(DATASET_CHECKPOINT);
        let Some(bytes) = self.get(&path).await? else {
            return Ok(None);
        };
        let name = path.to_string();
        blocking(move || {
            let payload = decode_frame(CheckpointKind::Dataset, &bytes).map_err(|reason| {
                TrainError::Checkpoint {
                    object: name.clone(),
                    reason,
                }
            })?;
            let digest = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(payload));
            let saved: OwnedDatasetPayload = decode_payload(&name, payload)?;
            Ok(Some(SavedDataset {
                log: saved.log,
                digest,
                fingerprint: saved.fingerprint,
            }))
        })
        .await?
    }

    /// Saves `state` as `state-<seq>.ckpt`, then deletes states older than the one before it.
    pub async fn save_state(&self, state: &RunState) -> Result<(), TrainError> {
        let started = Instant::now();
        let framed = blocking({
            let state = state.clone();
            move || -> Result<_, TrainError> {
                let payload = postcard::to_stdvec(&state)
                    .map_err(|e| TrainError::Internal(format!("encoding a checkpoint: {e}")))?;
                Ok(encode_frame(CheckpointKind::State, &payload))
            }
        })
        .await??;
        let bytes = framed.len();
        self.store
            .put_object(
                &self.object(&layout::state_checkpoint_name(state.seq)),
                Bytes::from(framed),
            )
            .await?;
        for (seq, path) in self.state_objects().await? {
            if seq + 1 < state.seq {
                self.store.delete_object(&path).await?;
            }
        }
        tracing::debug!(
            seq = state.seq,
            bytes,
            ms = started.elapsed().as_millis() as u64,
            "saved a checkpoint"
        );
        Ok(())
    }

    /// The newest state that verifies, skipping (and reporting) damaged newer ones.
    pub async fn load_latest_state(&self) -> Result<Option<LoadedState>, TrainError> {
        let mut skipped = Vec::new();
        let mut states = self.state_objects().await?;
        states.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        for (seq, path) in states {
            let Some(bytes) = self.get(&path).await? else {
                continue;
            };
            let name = path.to_string();
            let decoded = blocking({
                let name = name.clone();
                move || -> Result<RunState, TrainError> {
                    let payload =
                        decode_frame(CheckpointKind::State, &bytes).map_err(|reason| {
                            TrainError::Checkpoint {
                                object: name.clone(),
                                reason,
                            }
                        })?;
                    decode_payload(&name, payload)
                }
            })
            .await?;
            match decoded {
                Ok(state) if state.seq == seq => {
                    return Ok(Some(LoadedState {
                        state,
                        object: name,
                        skipped,
                    }));
                }
                Ok(state) => skipped.push((
                    name,
                    format!("holds sequence {}, its name says {seq}", state.seq),
                )),
                Err(TrainError::Checkpoint { reason, .. }) => skipped.push((name, reason)),
                Err(other) => return Err(other),
            }
        }
        Ok(None)
    }

    /// Deletes every checkpoint of the run (after its manifest is written).
    pub async fn clear(&self) -> Result<(), TrainError> {
        for path in self.store.list_objects(&self.prefix()).await? {
            self.store.delete_object(&path).await?;
        }
        // A process killed mid-put on a local folder leaves its temp file (`name#N`), which
        // the object store does not list; the folder goes as a whole.
        if let Some(folder) = self.store.local_folder(&self.prefix()) {
            match tokio::fs::remove_dir_all(&folder).await {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::warn!(folder = %folder.display(), %error, "cannot remove the checkpoint folder")
                }
            }
        }
        Ok(())
    }

    /// `(seq, path)` of every state object, in no particular order.
    async fn state_objects(&self) -> Result<Vec<(u64, Path)>, TrainError> {
        Ok(self
            .store
            .list_objects(&self.prefix())
            .await?
            .into_iter()
            .filter_map(|path| {
                let seq = layout::parse_state_checkpoint_name(path.filename()?)?;
                Some((seq, path))
            })
            .collect())
    }

    async fn get(&self, path: &Path) -> Result<Option<Bytes>, TrainError> {
        match self.store.get_object(path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error.into()),
        }
    }
}

fn decode_payload<T: DeserializeOwned>(object: &str, payload: &[u8]) -> Result<T, TrainError> {
    postcard::from_bytes(payload).map_err(|e| TrainError::Checkpoint {
        object: object.to_owned(),
        reason: format!("payload does not decode: {e}"),
    })
}

/// Encodes a finished ALS fit as the run's `als-factors.ckpt` model object.
pub fn encode_als_model(factors: &AlsFactors) -> Result<Vec<u8>, TrainError> {
    let payload = postcard::to_stdvec(factors)
        .map_err(|e| TrainError::Internal(format!("encoding ALS factors: {e}")))?;
    Ok(encode_frame(CheckpointKind::Model, &payload))
}

/// Decodes a run's `als-factors.ckpt`.
pub fn decode_als_model(object: &str, bytes: &[u8]) -> Result<AlsFactors, TrainError> {
    let payload =
        decode_frame(CheckpointKind::Model, bytes).map_err(|reason| TrainError::Checkpoint {
            object: object.to_owned(),
            reason,
        })?;
    decode_payload(object, payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use newsrec_model::Interaction;

    fn log() -> ClickLog {
        ClickLog {
            users: vec!["u1".into(), "u2".into()],
            items: vec!["a".into()],
            clicks: vec![
                Interaction {
                    user: 0,
                    item: 0,
                    ts_ms: 5,
                },
                Interaction {
                    user: 1,
                    item: 0,
                    ts_ms: 9,
                },
            ],
            duplicates: 3,
            other_events: 1,
        }
    }

    fn store() -> CheckpointStore {
        CheckpointStore::new(Lake::open("memory://").unwrap(), "run-1").unwrap()
    }

    #[test]
    fn frames_refuse_every_kind_of_damage() {
        let framed = encode_frame(CheckpointKind::State, b"hello");
        assert_eq!(
            decode_frame(CheckpointKind::State, &framed).unwrap(),
            b"hello"
        );
        assert!(
            decode_frame(CheckpointKind::Dataset, &framed)
                .unwrap_err()
                .contains("expected 1")
        );
        assert!(
            decode_frame(CheckpointKind::State, &framed[..framed.len() - 1])
                .unwrap_err()
                .contains("truncated")
        );
        assert!(
            decode_frame(CheckpointKind::State, &framed[..10])
                .unwrap_err()
                .contains("header")
        );
        let mut flipped = framed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(
            decode_frame(CheckpointKind::State, &flipped)
                .unwrap_err()
                .contains("checksum")
        );
        let mut other_version = framed;
        other_version[8] = 9;
        assert!(
            decode_frame(CheckpointKind::State, &other_version)
                .unwrap_err()
                .contains("format version 9")
        );
    }

    #[tokio::test]
    async fn dataset_round_trips_with_a_stable_digest() {
        let store = store();
        assert!(store.load_dataset().await.unwrap().is_none());
        let digest = store
            .save_dataset(&Arc::new(log()), "request-a")
            .await
            .unwrap();
        let saved = store.load_dataset().await.unwrap().unwrap();
        assert_eq!(saved.log.clicks, log().clicks);
        assert_eq!(saved.log.users, log().users);
        assert_eq!(saved.log.duplicates, 3);
        assert_eq!(saved.digest, digest);
        assert_eq!(saved.fingerprint, "request-a");
    }

    #[tokio::test]
    async fn keeps_two_states_and_falls_back_past_a_damaged_newest() {
        let store = store();
        for seq in 1..=4 {
            let state = RunState {
                seq,
                users_written: seq * 10,
                ..RunState::default()
            };
            store.save_state(&state).await.unwrap();
        }
        let mut seqs: Vec<u64> = store
            .state_objects()
            .await
            .unwrap()
            .into_iter()
            .map(|(seq, _)| seq)
            .collect();
        seqs.sort();
        assert_eq!(seqs, vec![3, 4]);
        assert_eq!(
            store.load_latest_state().await.unwrap().unwrap().state.seq,
            4
        );

        // Damage the newest: the one before is used, and the skip says why.
        let newest = store.object(&layout::state_checkpoint_name(4));
        let mut bytes = store.store.get_object(&newest).await.unwrap().to_vec();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        store.store.put_object(&newest, bytes).await.unwrap();
        let loaded = store.load_latest_state().await.unwrap().unwrap();
        assert_eq!(loaded.state.seq, 3);
        assert_eq!(loaded.state.users_written, 30);
        assert_eq!(loaded.skipped.len(), 1);
        assert!(
            loaded.skipped[0].1.contains("checksum"),
            "{:?}",
            loaded.skipped
        );

        store.clear().await.unwrap();
        assert!(store.load_latest_state().await.unwrap().is_none());
    }

    #[test]
    fn als_model_objects_round_trip() {
        let factors = AlsFactors {
            factors: 2,
            user: vec![1.0, 2.0],
            item: vec![0.5, -0.25, 3.0, 4.0],
        };
        let bytes = encode_als_model(&factors).unwrap();
        assert_eq!(decode_als_model("m", &bytes).unwrap(), factors);
        assert!(decode_als_model("m", &bytes[..bytes.len() - 2]).is_err());
    }
}
