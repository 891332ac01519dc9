//! The lists a run serves, made from its fitted models: each user's top-K, the fallback list and
//! each article's similar articles. The job writes them to the lake and the P2 replay publishes
//! them directly; both call these functions, so what is evaluated is what is served.

use newsrec_lake::recs::{RankedArticle, SimilarArticles, UserRecs};
use rayon::prelude::*;

use crate::{ClickLog, FittedModels, ModelKind, TrainError};

/// The names behind dense ids: reader ids by user id, article ids by item id.
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    pub users: &'a [String],
    pub items: &'a [String],
}

impl<'a> From<&'a ClickLog> for Names<'a> {
    fn from(log: &'a ClickLog) -> Self {
        Names {
            users: &log.users,
            items: &log.items,
        }
    }
}

/// The top-`top_k` lists of `users` (dense ids of `names`) by the model of `kind`, in the order
/// of `users`. A user whose list comes out empty (nothing left after excluding what they read)
/// is left out: serving then gives them the fallback list, as for any user without a list.
pub fn user_lists(
    log: Names<'_>,
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

/// The top-`top_k` list of a reader streamed past the sample (see
/// [`FittedModels::recommend_history`]); `None` when it comes out empty.
pub fn reader_list(
    items: &[String],
    models: &FittedModels,
    kind: ModelKind,
    top_k: usize,
    reader: &crate::window::Reader,
) -> Result<Option<UserRecs>, TrainError> {
    let scored = models.recommend_history(kind, &reader.items, &reader.affinities, top_k)?;
    if scored.is_empty() {
        return Ok(None);
    }
    let names = Names { users: &[], items };
    Ok(Some(UserRecs {
        user_id: reader.user_id.clone(),
        items: ranked(names, scored.into_iter().map(|s| (s.item, s.score))),
    }))
}

/// The list of users without one: the `k` most popular articles of the window (decayed).
pub fn fallback_list(log: Names<'_>, models: &FittedModels, k: usize) -> Vec<RankedArticle> {
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
pub fn similar_lists(log: Names<'_>, models: &FittedModels, k: usize) -> Vec<SimilarArticles> {
    (0..log.items.len() as u32)
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
pub(crate) fn ranked(
    log: Names<'_>,
    scored: impl Iterator<Item = (u32, f32)>,
) -> Vec<RankedArticle> {
    scored
        .map(|(item, score)| RankedArticle {
            article_id: log.items[item as usize].clone(),
            score,
        })
        .collect()
}
