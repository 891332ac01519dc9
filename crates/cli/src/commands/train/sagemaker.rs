//! SageMaker training-container conventions, so the same binary runs as a managed spot job.
//!
//! SageMaker starts the container with `SM_*` variables: `SM_MODEL_DIR` (`/opt/ml/model`, which
//! it uploads when the job ends), `SM_CHANNEL_<NAME>` (a local copy of each input channel) and
//! `SM_HPS` (the hyperparameters as a JSON object). Checkpoints go to `/opt/ml/checkpoints`,
//! which SageMaker syncs with S3 and restores when it restarts a spot job, so a restarted
//! container resumes. On a spot reclaim SageMaker sends SIGTERM, which the job already handles.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// SageMaker's local checkpoint folder (the `CheckpointConfig.LocalPath` default).
pub const CHECKPOINT_DIR: &str = "/opt/ml/checkpoints";

/// What SageMaker gave this container.
#[derive(Debug, Clone, PartialEq)]
pub struct SageMaker {
    /// Where the run's outputs are copied for upload.
    pub model_dir: Option<PathBuf>,
    /// The `train` channel: a copy of the lake (its `events/` prefix at least).
    pub train_channel: Option<PathBuf>,
    /// Hyperparameters; SageMaker passes every value as a string.
    pub hyperparameters: serde_json::Map<String, serde_json::Value>,
}

impl SageMaker {
    /// Reads the conventions from `var`; `None` when no SageMaker variable is set.
    pub fn detect(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<SageMaker>> {
        let model_dir = var("SM_MODEL_DIR").map(PathBuf::from);
        let train_channel = var("SM_CHANNEL_TRAIN").map(PathBuf::from);
        let hps = var("SM_HPS");
        if model_dir.is_none() && train_channel.is_none() && hps.is_none() {
            return Ok(None);
        }
        let hyperparameters = match hps {
            Some(text) => serde_json::from_str(&text)
                .with_context(|| format!("SM_HPS is not a JSON object: {text}"))?,
            None => serde_json::Map::new(),
        };
        Ok(Some(SageMaker {
            model_dir,
            train_channel,
            hyperparameters,
        }))
    }

    /// A hyperparameter as text (SageMaker stringifies values; plain JSON numbers work too).
    pub fn hyperparameter(&self, name: &str) -> Option<String> {
        match self.hyperparameters.get(name)? {
            serde_json::Value::String(text) => Some(text.clone()),
            serde_json::Value::Null => None,
            other => Some(other.to_string()),
        }
    }
}

/// Copies the files of `from` (a run's folder in a local lake) into `to`.
pub fn copy_outputs(from: &Path, to: &Path) -> anyhow::Result<usize> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    let mut copied = 0;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))
                .with_context(|| format!("copying {}", entry.path().display()))?;
            copied += 1;
        }
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn absent_without_sm_variables() {
        assert_eq!(SageMaker::detect(env(&[("HOME", "/root")])).unwrap(), None);
    }

    #[test]
    fn reads_channels_and_stringified_hyperparameters() {
        let sm = SageMaker::detect(env(&[
            ("SM_MODEL_DIR", "/opt/ml/model"),
            ("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train"),
            ("SM_HPS", r#"{"date": "2017-10-09", "window_days": 7}"#),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(sm.model_dir.as_deref(), Some(Path::new("/opt/ml/model")));
        assert_eq!(sm.hyperparameter("date").as_deref(), Some("2017-10-09"));
        assert_eq!(sm.hyperparameter("window_days").as_deref(), Some("7"));
        assert_eq!(sm.hyperparameter("run_id"), None);
    }

    #[test]
    fn bad_hyperparameters_are_named() {
        let error = SageMaker::detect(env(&[("SM_HPS", "[1")])).unwrap_err();
        assert!(error.to_string().contains("SM_HPS"), "{error}");
    }
}
