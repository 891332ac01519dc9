//! Training-run output: `runs/<run_id>/...` objects (manifest JSON and Parquet tables).
//!
//! A run's manifest is written last, so a run whose manifest exists is complete; readers such as
//! `publish` go through [`Lake::read_manifest`] and never look at a run without one.

use arrow_array::RecordBatch;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    Lake, LakeError,
    events::{decode_batches, encode_batches},
    layout::{self, MANIFEST_FILE, RUNS_PREFIX},
};

impl Lake {
    /// Writes `batches` as the Parquet object `runs/<run_id>/<name>`.
    pub async fn write_run_table(
        &self,
        run_id: &str,
        name: &str,
        batches: Vec<RecordBatch>,
    ) -> Result<Path, LakeError> {
        layout::validate_name("run id", run_id)?;
        let path = layout::run_object_path(run_id, name);
        let encoded = {
            let task_path = path.clone();
            tokio::task::spawn_blocking(move || encode_batches(&task_path, &batches))
                .await
                .map_err(|join| LakeError::bad_object(&path, join))??
        };
        self.put_object(&path, encoded).await?;
        Ok(path)
    }

    /// Writes `batches` as the Parquet object at `path`, with the settings of every table the
    /// lake holds. The same rows in the same batches give the same bytes.
    pub async fn write_table(
        &self,
        path: &Path,
        batches: Vec<RecordBatch>,
    ) -> Result<u64, LakeError> {
        let encoded = {
            let task_path = path.clone();
            tokio::task::spawn_blocking(move || encode_batches(&task_path, &batches))
                .await
                .map_err(|join| LakeError::bad_object(path, join))??
        };
        let bytes = encoded.len() as u64;
        self.put_object(path, encoded).await?;
        Ok(bytes)
    }

    /// Decodes Parquet bytes read from `path` (whole-object readers that checked a digest).
    pub async fn decode_table(
        &self,
        path: &Path,
        bytes: Bytes,
    ) -> Result<Vec<RecordBatch>, LakeError> {
        let path = path.clone();
        let error_path = path.clone();
        tokio::task::spawn_blocking(move || decode_batches(&path, bytes, None))
            .await
            .map_err(|join| LakeError::bad_object(&error_path, join))?
    }

    /// Reads the Parquet object `runs/<run_id>/<name>`.
    pub async fn read_run_table(
        &self,
        run_id: &str,
        name: &str,
    ) -> Result<Vec<RecordBatch>, LakeError> {
        layout::validate_name("run id", run_id)?;
        let path = layout::run_object_path(run_id, name);
        let bytes = self.get_object(&path).await?;
        tokio::task::spawn_blocking(move || decode_batches(&path, bytes, None))
            .await
            .map_err(|join| LakeError::bad_object(run_id, join))?
    }

    /// Writes `runs/<run_id>/manifest.json`; call it after every other output of the run.
    pub async fn write_manifest<T: Serialize>(
        &self,
        run_id: &str,
        manifest: &T,
    ) -> Result<Path, LakeError> {
        layout::validate_name("run id", run_id)?;
        let path = layout::run_object_path(run_id, MANIFEST_FILE);
        let json = serde_json::to_vec_pretty(manifest)
            .map_err(|error| LakeError::bad_object(&path, error))?;
        self.put_object(&path, Bytes::from(json)).await?;
        Ok(path)
    }

    /// Reads `runs/<run_id>/manifest.json`.
    pub async fn read_manifest<T: DeserializeOwned>(&self, run_id: &str) -> Result<T, LakeError> {
        layout::validate_name("run id", run_id)?;
        let path = layout::run_object_path(run_id, MANIFEST_FILE);
        let bytes = self.get_object(&path).await?;
        serde_json::from_slice(&bytes).map_err(|error| LakeError::bad_object(&path, error))
    }

    /// Ids of the runs that have a manifest (complete runs), sorted.
    pub async fn list_runs(&self) -> Result<Vec<String>, LakeError> {
        let prefix = Path::from(RUNS_PREFIX);
        let objects: Vec<_> = self
            .store()
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|source| LakeError::store(&prefix, source))?;
        let mut runs: Vec<String> = objects
            .iter()
            .filter_map(|meta| layout::parse_run_manifest_path(&meta.location).map(str::to_owned))
            .collect();
        runs.sort();
        Ok(runs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int32Array};

    #[tokio::test]
    async fn run_outputs_round_trip_and_only_complete_runs_are_listed() {
        let lake = Lake::open("memory://").unwrap();
        let column: ArrayRef = Arc::new(Int32Array::from(vec![1, 2, 3]));
        let batch = RecordBatch::try_from_iter([("x", column)]).unwrap();
        lake.write_run_table("r2", &layout::recs_part_name(0), vec![batch.clone()])
            .await
            .unwrap();
        assert!(lake.list_runs().await.unwrap().is_empty());
        lake.write_manifest("r2", &serde_json::json!({"k": 1}))
            .await
            .unwrap();
        lake.write_manifest("r1", &serde_json::json!({"k": 0}))
            .await
            .unwrap();
        assert_eq!(lake.list_runs().await.unwrap(), ["r1", "r2"]);
        let manifest: serde_json::Value = lake.read_manifest("r2").await.unwrap();
        assert_eq!(manifest["k"], 1);
        assert_eq!(
            lake.read_run_table("r2", &layout::recs_part_name(0))
                .await
                .unwrap(),
            vec![batch]
        );
        let missing = lake
            .read_manifest::<serde_json::Value>("nope")
            .await
            .unwrap_err();
        assert!(missing.is_not_found(), "{missing}");
        assert!(
            lake.read_manifest::<serde_json::Value>("../x")
                .await
                .is_err()
        );
    }
}
