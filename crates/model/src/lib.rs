//! Recommendation models and their offline evaluation, as pure computation.
//!
//! Consumes interactions already interned to dense ids (`user`, `item`, event time); produces
//! fitted models that rank items for a user ([`Recommender`]), and P1 metrics
//! ([`evaluate_p1`]). No async, no I/O, no clocks: every input comes in as arguments, so the
//! crate can be benchmarked, property-tested and fuzzed alone, and the same inputs always give
//! the same output (ties are broken by item id).

mod als;
mod cooccurrence;
mod dataset;
mod eval;
mod popularity;
mod topk;

pub use als::{AlsFactors, AlsModel, AlsParams, AlsTraining};
pub use cooccurrence::{
    CooccurrenceModel, CooccurrenceParams, PriorBlend, Similarity, neighbours_from_counts,
};
pub use dataset::{Dataset, Interaction, decay_weight};
pub use eval::{EvalMetrics, TestSet, evaluate_p1};
pub use popularity::{PopularityModel, PopularityParams};
pub use topk::{ScoredItem, top_k};

/// Errors of fitting a model with invalid parameters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    #[error("parameter {name}: {reason}")]
    InvalidParameter { name: &'static str, reason: String },
}

/// A fitted model that ranks items for a user.
pub trait Recommender: Sync {
    /// Short stable name used in manifests and metric tables (`popularity`, `cooccurrence`).
    fn name(&self) -> &'static str;

    /// The best `k` items for `user`, best first, never an item in `exclude` (sorted ascending).
    ///
    /// `user` may be outside the training set (then the model falls back to what it knows
    /// without personal history).
    fn recommend(&self, user: u32, k: usize, exclude: &[u32]) -> Vec<ScoredItem>;
}
