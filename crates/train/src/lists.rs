//! The lists a run serves, made from its fitted models: each user's top-K, the fallback list and
//! each article's similar articles. The job writes them to the lake and the P2 replay publishes
//! them directly; both call these functions, so what is evaluated is what is served.

use newsrec_lake::recs::{RankedArticle, SimilarArticles, UserRecs};
use rayon::prelude::*;

use crate::{ClickLog, FittedModels, ModelKind, TrainError};

/// The top-`top_k` lists of `users` (dense ids of `log`) by the model of `kind`, in the order
/// of `users`. A user whose list comes out empty (nothing left after excluding what they read)
/// is left out: serving then gives them the fallback list, as for any user without a list.
pub fn user_lists(
    log: &ClickLog,
    models: &FittedModels,
    kind: ModelKind,
    top_k: usize,
    users: &[u32],
) -> Result<Vec<UserRecs>, TrainError> {
    let dataset = models.dataset();
    let model = models.model(kind)?;
    Ok(users
        .par_iter()
        .map(|&user| UserRecs {
            user_id: log.users[user as usize].clone(),
            items: ranked(
                log,
                model
                    .recommend(user, top_k, dataset.user_items(user))
                    .into_iter()
                    .map(|scored| (scored.item, scored.score)),
            ),
        })
        .filter(|list| !list.items.is_empty())
        .collect())
}

/// The list of users without one: the `k` most popular articles of the window (decayed).
pub fn fallback_list(log: &ClickLog, models: &FittedModels, k: usize) -> Vec<RankedArticle> {
    ranked(
        log,
        models
            .popularity
            .ranked()
            .iter()
            .take(k)
            .map(|scored| (scored.item, scored.score)),
    )
}

/// Each trained article's `k` most similar articles (its co-occurrence neighbours), best first;
/// articles without a neighbour are left out.
pub fn similar_lists(log: &ClickLog, models: &FittedModels, k: usize) -> Vec<SimilarArticles> {
    let dataset = models.dataset();
    (0..log.items.len() as u32)
        .filter(|item| dataset.item_user_count(*item) > 0)
        .filter_map(|item| {
            let neighbours = models.cooccurrence.neighbours(item);
            (!neighbours.is_empty()).then(|| SimilarArticles {
                article_id: log.items[item as usize].clone(),
                items: ranked(log, neighbours.iter().take(k).map(|n| (n.item, n.score))),
            })
        })
        .collect()
}

/// Dense item ids with scores, as the lake's ranked articles.
fn ranked(log: &ClickLog, scored: impl Iterator<Item = (u32, f32)>) -> Vec<RankedArticle> {
    scored
        .map(|(item, score)| RankedArticle {
            article_id: log.items[item as usize].clone(),
            score,
        })
        .collect()
}
