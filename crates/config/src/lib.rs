//! Node configuration: one versioned TOML file, overridden by `NEWSREC_*` environment variables,
//! validated into typed sections.
//!
//! Consumes an optional file path and the process environment; produces a [`Config`] whose every
//! value has been range-checked. Each section is the stage's own settings type (`[ingest]` is
//! `newsrec_ingest::Settings`, `[train]` is `newsrec_train::Settings`, …), with the stage's
//! defaults and bounds: this crate only composes them, adds the file's version and node id, and
//! names a refused value by its whole key path (`train.als.iterations`). Unknown keys are errors
//! (a typo must not silently fall back to a default). Every key is documented in
//! `config/newsrec.example.toml`, whose values are the defaults (a test keeps the two equal).
//! Environment variables use `__` between levels: `NEWSREC_INGEST__MAX_BODY_BYTES=1048576`. No
//! stage depends on this crate; the binary does.

use std::path::Path;

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

/// The config file format version this build reads.
pub const CONFIG_VERSION: u32 = 1;

/// Top-level keys; environment variables outside these are not config (e.g. test settings).
const SECTIONS: &[&str] = &[
    "version", "node_id", "lake", "ingest", "train", "publish", "serve", "signals", "kv",
];

/// The whole node configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub version: u32,
    /// Names this node's lake objects (`<node_id>-<seq>.parquet`); unique per ingest node.
    pub node_id: String,
    pub lake: LakeConfig,
    pub ingest: newsrec_ingest::Settings,
    pub train: newsrec_train::Settings,
    pub publish: newsrec_publish::Settings,
    pub serve: newsrec_serve::Settings,
    pub signals: newsrec_signals::Settings,
    pub kv: KvConfig,
}

/// `[lake]`: where the lake is (the node opens it).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// Object-store URI of the lake; empty means `<data-dir>/lake`.
    pub uri: String,
}

/// `[kv]`: where the serving store is (the node opens it).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KvConfig {
    /// Serving store; empty means the embedded store in `<data-dir>/kv`.
    pub uri: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            version: CONFIG_VERSION,
            node_id: "node-1".into(),
            lake: LakeConfig::default(),
            ingest: Default::default(),
            train: Default::default(),
            publish: Default::default(),
            serve: Default::default(),
            signals: Default::default(),
            kv: KvConfig::default(),
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("config file {path} not found")]
    NotFound { path: String },
    #[error("invalid configuration: {0}")]
    Parse(Box<figment::Error>),
    /// `key` is the whole path, section first (`train.als.iterations`).
    #[error("invalid configuration: {key}: {reason}")]
    Invalid { key: String, reason: String },
}

/// A stage's refusal of `key` (inside its section) under the whole key path.
fn in_section(section: &str, key: String, reason: String) -> ConfigError {
    ConfigError::Invalid {
        key: format!("{section}.{key}"),
        reason,
    }
}

impl Config {
    /// Defaults, then the file (when given), then `NEWSREC_*` environment variables; validated.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::NotFound {
                    path: path.display().to_string(),
                });
            }
            figment = figment.merge(Toml::file(path));
        }
        let env = Env::prefixed("NEWSREC_").split("__").filter(|key| {
            let top = key
                .as_str()
                .split('.')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            SECTIONS.contains(&top.as_str())
        });
        figment = figment.merge(env);
        Config::from_figment(figment)
    }

    /// Parses a TOML document over the defaults (no environment); validated.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let figment =
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(text));
        Config::from_figment(figment)
    }

    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let config: Config = figment
            .extract()
            .map_err(|error| ConfigError::Parse(Box::new(error)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the version and node id, then has each stage check its own section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.version != CONFIG_VERSION {
            return Err(ConfigError::Invalid {
                key: "version".into(),
                reason: format!(
                    "this build reads version {CONFIG_VERSION}, the file says {}",
                    self.version
                ),
            });
        }
        let node_ok = !self.node_id.is_empty()
            && self.node_id.len() <= 48
            && self
                .node_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !node_ok {
            return Err(ConfigError::Invalid {
                key: "node_id".into(),
                reason: format!("must be 1-48 of [A-Za-z0-9_-], got {:?}", self.node_id),
            });
        }
        self.ingest
            .validate()
            .map_err(|e| in_section("ingest", e.key, e.reason))?;
        self.signals
            .validate()
            .map_err(|e| in_section("signals", e.key, e.reason))?;
        self.train
            .validate()
            .map_err(|e| in_section("train", e.key, e.reason))?;
        self.publish
            .validate()
            .map_err(|e| in_section("publish", e.key, e.reason))?;
        self.serve
            .validate()
            .map_err(|e| in_section("serve", e.key, e.reason))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../config/newsrec.example.toml");

    #[test]
    fn the_example_file_documents_exactly_the_defaults() {
        let parsed = Config::from_toml(EXAMPLE).unwrap();
        assert_eq!(parsed, Config::default());
        // Every key of the defaults appears in the example (uncommented).
        let example: toml::Table = toml::from_str(EXAMPLE).unwrap();
        let defaults: toml::Table = toml::Table::try_from(Config::default()).unwrap();
        assert_eq!(example, defaults);
    }

    #[test]
    fn a_wrong_key_is_named() {
        let error = Config::from_toml("[ingest]\nmax_body_byte = 10\n").unwrap_err();
        let message = error.to_string();
        assert!(message.contains("max_body_byte"), "{message}");
    }

    #[test]
    fn out_of_range_values_are_refused_with_the_key() {
        let error = Config::from_toml("[train]\nwindow_days = 0\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid configuration: train.window_days: must be 1..=365, got 0"
        );
        let error = Config::from_toml("version = 2\n").unwrap_err();
        assert!(error.to_string().contains("version"), "{error}");
        // A percentage where a fraction belongs.
        let error = Config::from_toml("[publish]\ngate_tolerance = 5.0\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid configuration: publish.gate_tolerance: must be a fraction 0..=1 (0.05 = 5 %), got 5"
        );
    }

    #[test]
    fn a_stage_s_refusal_names_the_whole_key_path() {
        let cases = [
            (
                "[train.als]\niterations = 1001\n",
                "train.als.iterations: must be 1..=1000, got 1001",
            ),
            (
                "[train.als]\ncg_steps = 0\n",
                "train.als.cg_steps: must be 1..=100, got 0",
            ),
            (
                "[train.cooccurrence]\nneighbours = 0\n",
                "train.cooccurrence.neighbours: must be 1..=10000, got 0",
            ),
            (
                "[serve.blend]\ncovisit_weight = 5000.0\n",
                "serve.blend.covisit_weight: must be 0..=1000, got 5000",
            ),
            (
                "[ingest]\nbuffer_size_mib = 0\n",
                "ingest.buffer_size_mib: must be 1..=128, got 0",
            ),
            (
                "[signals]\ncovisit_window_min = 0\n",
                "signals.covisit_window_min: must be 1..=10080 minutes, got 0",
            ),
        ];
        for (text, expected) in cases {
            let error = Config::from_toml(text).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("invalid configuration: {expected}")
            );
        }
    }

    #[test]
    fn choices_are_read_as_their_enums_and_a_wrong_one_is_named() {
        let text = "[train]\nselect_metric = \"hr@10\"\n[train.cooccurrence]\nsimilarity = \"lift\"\nblend = \"geometric\"\n[ingest]\nack = \"none\"\n";
        let config = Config::from_toml(text).unwrap();
        assert_eq!(config.train.select_metric, newsrec_train::Metric::HitRate);
        assert_eq!(
            config.train.cooccurrence.similarity,
            newsrec_model::Similarity::Lift
        );
        assert_eq!(
            config.train.cooccurrence.blend,
            newsrec_model::PriorBlend::Geometric
        );
        assert_eq!(config.ingest.ack, newsrec_ingest::AckMode::None);
        for (text, key) in [
            ("[train]\nselect_metric = \"ndcg@5\"\n", "select_metric"),
            (
                "[train.cooccurrence]\nsimilarity = \"cosine\"\n",
                "similarity",
            ),
            ("[train.cooccurrence]\nblend = \"max\"\n", "blend"),
            ("[ingest]\nack = \"fsync\"\n", "ack"),
        ] {
            let message = Config::from_toml(text).unwrap_err().to_string();
            assert!(message.contains(key), "{message}");
        }
    }

    #[test]
    // figment's Jail closure must return figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    fn environment_overrides_the_file_and_ignores_foreign_variables() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("n.toml", "[ingest]\nmax_body_bytes = 2048\n")?;
            jail.set_env("NEWSREC_INGEST__BUFFER_INTERVAL_S", "5");
            jail.set_env("NEWSREC_TRAIN__SELECT_METRIC", "recall@10");
            jail.set_env("NEWSREC_TRAIN__ALS__ENABLED", "false");
            jail.set_env("NEWSREC_TEST_REDIS_URL", "redis://127.0.0.1/");
            let config = Config::load(Some(Path::new("n.toml"))).unwrap();
            assert_eq!(config.ingest.max_body_bytes, 2048);
            assert_eq!(config.ingest.buffer_interval_s, 5);
            assert_eq!(config.train.select_metric, newsrec_train::Metric::Recall);
            assert_eq!(config.train.als.params(), None);
            Ok(())
        });
        assert!(matches!(
            Config::load(Some(Path::new("/nonexistent.toml"))),
            Err(ConfigError::NotFound { .. })
        ));
    }

    proptest::proptest! {
        // Fuzz: arbitrary text is parsed or refused with an error, never a panic.
        #[test]
        fn arbitrary_text_never_panics(text in "[a-z_\\[\\]=\"0-9. \n]{0,200}") {
            let _ = Config::from_toml(&text);
        }
    }
}
