//! The `[publish]` section: how many generations are kept, the store batch size, and the
//! quality gate; [`Settings::options`] turns it into one publish's [`PublishOptions`].

use serde::{Deserialize, Serialize};

use crate::{GateMode, PublishOptions};

/// The `[publish]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Sealed generations kept after a publish, the new current one included; the older ones
    /// are what `newsrec rollback` can return to.
    pub keep_generations: usize,
    /// Users written per store batch.
    pub batch_users: usize,
    /// Refuse to publish a run that scores clearly worse than the served one (`--force`
    /// overrides).
    pub gate: bool,
    /// How much worse the new run's chosen model may score on `train.select_metric` (backtest),
    /// as a fraction of the served run's figure (0..=1; 0.05 = up to 5 % lower). Relative,
    /// because the two runs are tested on different days and figures move with the news.
    pub gate_tolerance: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            keep_generations: 3,
            batch_users: 5_000,
            gate: true,
            gate_tolerance: 0.05,
        }
    }
}

/// A `[publish]` setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct SettingsError {
    /// The key inside the section, e.g. `gate_tolerance`.
    pub key: String,
    pub reason: String,
}

impl Settings {
    /// Range-checks every value; the first one out of range is named.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if !(1..=100_000).contains(&self.batch_users) {
            return Err(SettingsError {
                key: "batch_users".into(),
                reason: format!("must be 1..=100000, got {}", self.batch_users),
            });
        }
        // `contains` is false for NaN too.
        if !(0.0..=1.0).contains(&self.gate_tolerance) {
            return Err(SettingsError {
                key: "gate_tolerance".into(),
                reason: format!(
                    "must be a fraction 0..=1 (0.05 = 5 %), got {}",
                    self.gate_tolerance
                ),
            });
        }
        Ok(())
    }

    /// The options of one publish; `force` publishes a run the gate refuses (with the verdict).
    pub fn options(&self, force: bool) -> PublishOptions {
        let tolerance = self.gate_tolerance;
        PublishOptions {
            batch_users: self.batch_users,
            keep_generations: self.keep_generations,
            gate: match (self.gate, force) {
                (false, _) => GateMode::Off,
                (true, false) => GateMode::Enforce { tolerance },
                (true, true) => GateMode::Force { tolerance },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_follows_the_switch_and_force() {
        let settings = Settings::default();
        settings.validate().unwrap();
        let tolerance = settings.gate_tolerance;
        assert_eq!(
            settings.options(false).gate,
            GateMode::Enforce { tolerance }
        );
        assert_eq!(settings.options(true).gate, GateMode::Force { tolerance });
        let off = Settings {
            gate: false,
            ..Settings::default()
        };
        assert_eq!(off.options(true).gate, GateMode::Off);
        assert_eq!(off.options(false).batch_users, 5_000);
    }

    #[test]
    fn a_percentage_where_a_fraction_belongs_is_named() {
        let settings = Settings {
            gate_tolerance: 5.0,
            ..Settings::default()
        };
        assert_eq!(settings.validate().unwrap_err().key, "gate_tolerance");
        let settings = Settings {
            batch_users: 0,
            ..Settings::default()
        };
        assert_eq!(settings.validate().unwrap_err().key, "batch_users");
    }
}
