//! The models a run fits, and their names.
//!
//! [`ModelKind`] is the one list of model families: settings, manifests, reports and the
//! replay name a model by it, and [`FittedModels::model`] hands out the fitted model of a kind
//! or says it was not fitted; no caller substitutes another model for a missing one.

use std::fmt;

use chrono::NaiveDate;
use newsrec_lake::TimeWindow;
use newsrec_model::{
    AlsModel, CooccurrenceModel, Dataset, EvalMetrics, PopularityModel, Recommender, ScoredItem,
    TestSet, evaluate_p1,
};
use serde::{Deserialize, Serialize};

use crate::{ClickLog, Settings, TrainError, test_set, training_data};

/// A model family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Decayed popularity.
    Popularity,
    /// Item-to-item co-occurrence (the personalised default).
    Cooccurrence,
    /// Implicit-feedback matrix factorisation.
    Als,
}

impl ModelKind {
    /// Every kind, in report order.
    pub const ALL: [ModelKind; 3] = [
        ModelKind::Popularity,
        ModelKind::Cooccurrence,
        ModelKind::Als,
    ];

    /// The name in manifests, reports and `Recommender::name`.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Popularity => "popularity",
            ModelKind::Cooccurrence => "cooccurrence",
            ModelKind::Als => "als",
        }
    }

    /// The kind `name` names, if any.
    pub fn from_name(name: &str) -> Option<ModelKind> {
        ModelKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The models of one training window, fitted on the same data.
#[derive(Debug)]
pub struct FittedModels {
    pub popularity: PopularityModel,
    pub cooccurrence: CooccurrenceModel,
    pub als: Option<AlsModel>,
}

impl FittedModels {
    /// Fits every model on the clicks of `window` (anchoring decays at its end).
    pub fn fit(
        log: &ClickLog,
        window: TimeWindow,
        settings: &Settings,
    ) -> Result<FittedModels, TrainError> {
        let (dataset, popularity) = training_data(log, window, settings)?;
        let als = match settings.als.params() {
            Some(params) => Some(AlsModel::fit(&dataset, popularity.clone(), params)?),
            None => None,
        };
        let cooccurrence =
            CooccurrenceModel::fit(dataset, popularity.clone(), settings.cooccurrence.clone())?;
        Ok(FittedModels {
            popularity,
            cooccurrence,
            als,
        })
    }

    /// The kinds fitted, in report order.
    pub fn kinds(&self) -> Vec<ModelKind> {
        ModelKind::ALL
            .into_iter()
            .filter(|kind| *kind != ModelKind::Als || self.als.is_some())
            .collect()
    }

    /// The model of `kind`; an error (never another model) when it was not fitted.
    pub fn model(&self, kind: ModelKind) -> Result<&dyn Recommender, TrainError> {
        Ok(match kind {
            ModelKind::Popularity => &self.popularity,
            ModelKind::Cooccurrence => &self.cooccurrence,
            ModelKind::Als => self
                .als
                .as_ref()
                .ok_or(TrainError::ModelNotFitted(ModelKind::Als))?,
        })
    }

    /// The models fitted, in report order.
    pub fn all(&self) -> Vec<(ModelKind, &dyn Recommender)> {
        self.kinds()
            .into_iter()
            .filter_map(|kind| Some((kind, self.model(kind).ok()?)))
            .collect()
    }

    /// The shared training matrix.
    pub fn dataset(&self) -> &Dataset {
        self.cooccurrence.dataset()
    }

    /// P1 of every model on the clicks of `test_day` (the models must be trained on the window
    /// ending at that day).
    pub fn evaluate(&self, log: &ClickLog, test_day: NaiveDate) -> Vec<(ModelKind, EvalMetrics)> {
        self.evaluate_on(&test_set(log, self.dataset(), test_day))
    }

    /// P1 of every model on `test` (built against [`FittedModels::dataset`]).
    pub fn evaluate_on(&self, test: &TestSet) -> Vec<(ModelKind, EvalMetrics)> {
        self.all()
            .into_iter()
            .map(|(kind, model)| (kind, evaluate_p1(model, self.dataset(), test)))
            .collect()
    }

    /// The best `k` articles by the model of `kind` for a reader known by their history
    /// (`items` ascending, with their affinities) rather than by a user id of the dataset:
    /// readers streamed past the sample. ALS knows readers only by id, so it is refused.
    pub fn recommend_history(
        &self,
        kind: ModelKind,
        items: &[u32],
        affinities: &[f32],
        k: usize,
    ) -> Result<Vec<ScoredItem>, TrainError> {
        Ok(match kind {
            // Popularity ignores who asks; an id past every user is "nobody in particular".
            ModelKind::Popularity => self.popularity.recommend(u32::MAX, k, items),
            ModelKind::Cooccurrence => self
                .cooccurrence
                .recommend_history(items, affinities, k, items),
            ModelKind::Als => return Err(TrainError::ModelNotFitted(ModelKind::Als)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for kind in ModelKind::ALL {
            assert_eq!(ModelKind::from_name(kind.name()), Some(kind));
            assert_eq!(
                serde_json::to_string(&kind).unwrap(),
                format!("{:?}", kind.name())
            );
        }
        assert_eq!(ModelKind::from_name("Popularity"), None);
        assert_eq!(ModelKind::from_name("sar"), None);
    }
}
