//! Writing one generation into the serving store: the steps every publish takes, in the order
//! that keeps the served generation intact until the new one is whole.
//!
//! [`GenerationPublisher`] is the one way lists enter a store: `newsrec publish` feeds it a
//! run's tables from the lake, and the P2 replay feeds it the lists it fits in memory. Users
//! go in batches (one store write each); the fallback and similar lists follow; `finish`
//! seals the generation only if it holds exactly the users promised, makes it current, and
//! then prunes beyond the generations kept. Dropping a publisher before `finish` leaves
//! nothing visible.

use newsrec_kv::{
    Generation, GenerationInfo, GenerationWriter, KvError, RecItem, RecStore, SimilarList, UserList,
};
use newsrec_lake::recs::{RankedArticle, SimilarArticles, UserRecs};

/// A generation being written; see the module documentation.
#[derive(Debug)]
pub struct GenerationPublisher<'a> {
    store: &'a dyn RecStore,
    writer: Box<dyn GenerationWriter>,
    batch_users: usize,
    users_written: u64,
}

/// What `finish` did.
#[derive(Debug, Clone)]
pub struct Published {
    pub info: GenerationInfo,
    /// Generations deleted by the prune after the switch.
    pub pruned: Vec<Generation>,
}

impl<'a> GenerationPublisher<'a> {
    /// Starts an invisible generation for `run_id`, writing users `batch_users` per store write.
    pub async fn start(
        store: &'a dyn RecStore,
        run_id: &str,
        batch_users: usize,
    ) -> Result<GenerationPublisher<'a>, KvError> {
        let writer = store.create_generation(run_id).await?;
        Ok(GenerationPublisher {
            store,
            writer,
            batch_users: batch_users.max(1),
            users_written: 0,
        })
    }

    /// The number the generation will have.
    pub fn generation(&self) -> Generation {
        self.writer.generation()
    }

    /// Users written so far.
    pub fn users_written(&self) -> u64 {
        self.users_written
    }

    /// Writes user lists, `batch_users` per store write, calling `after_batch` with the users
    /// written so far after each.
    pub async fn put_users(
        &mut self,
        lists: impl IntoIterator<Item = UserRecs>,
        after_batch: &mut (dyn FnMut(u64) + Send),
    ) -> Result<(), KvError> {
        let mut lists = lists.into_iter().peekable();
        while lists.peek().is_some() {
            let batch: Vec<UserList> = lists
                .by_ref()
                .take(self.batch_users)
                .map(|list| UserList {
                    user_id: list.user_id,
                    items: rec_items(list.items),
                })
                .collect();
            self.users_written += batch.len() as u64;
            self.writer.put_users(batch).await?;
            after_batch(self.users_written);
        }
        Ok(())
    }

    /// Sets the list of users without one.
    pub async fn put_fallback(&mut self, items: Vec<RankedArticle>) -> Result<(), KvError> {
        self.writer.put_fallback(rec_items(items)).await
    }

    /// Writes similar-article lists, in batches of the same size as users.
    pub async fn put_similar(
        &mut self,
        lists: impl IntoIterator<Item = SimilarArticles>,
    ) -> Result<(), KvError> {
        let mut lists = lists.into_iter().peekable();
        while lists.peek().is_some() {
            let batch: Vec<SimilarList> = lists
                .by_ref()
                .take(self.batch_users)
                .map(|list| SimilarList {
                    article_id: list.article_id,
                    items: rec_items(list.items),
                })
                .collect();
            self.writer.put_similar(batch).await?;
        }
        Ok(())
    }

    /// Seals the generation if it holds exactly `expected_users` users, makes it current, then
    /// deletes every generation but the `keep_generations` newest (the new current one among
    /// them).
    pub async fn finish(
        self,
        expected_users: u64,
        keep_generations: usize,
    ) -> Result<Published, KvError> {
        let info = self.writer.finish(expected_users).await?;
        self.store.activate(info.generation).await?;
        let pruned = self.store.prune(keep_generations).await?;
        Ok(Published { info, pruned })
    }
}

fn rec_items(items: Vec<RankedArticle>) -> Vec<RecItem> {
    items
        .into_iter()
        .map(|item| RecItem {
            article_id: item.article_id,
            score: item.score,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use newsrec_kv::EmbeddedStore;

    fn ranked(ids: &[&str]) -> Vec<RankedArticle> {
        ids.iter()
            .enumerate()
            .map(|(rank, id)| RankedArticle {
                article_id: (*id).to_owned(),
                score: 1.0 / (rank as f32 + 1.0),
            })
            .collect()
    }

    fn users(n: usize) -> Vec<UserRecs> {
        (0..n)
            .map(|user| UserRecs {
                user_id: format!("u{user}"),
                items: ranked(&["a1", "a2"]),
            })
            .collect()
    }

    #[tokio::test]
    async fn writes_in_batches_switches_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let mut generations = Vec::new();
        for round in 0..3 {
            let mut publisher = GenerationPublisher::start(&store, &format!("run-{round}"), 2)
                .await
                .unwrap();
            let mut reported = Vec::new();
            publisher
                .put_users(users(5), &mut |done| reported.push(done))
                .await
                .unwrap();
            assert_eq!(reported, vec![2, 4, 5], "one report per store write");
            publisher.put_fallback(ranked(&["f1"])).await.unwrap();
            publisher
                .put_similar(vec![SimilarArticles {
                    article_id: "a1".into(),
                    items: ranked(&["a2"]),
                }])
                .await
                .unwrap();
            let published = publisher.finish(5, 2).await.unwrap();
            generations.push(published.info.generation);
            assert_eq!(store.current().await.unwrap().unwrap(), published.info);
        }
        let kept: Vec<Generation> = store
            .generations()
            .await
            .unwrap()
            .into_iter()
            .map(|info| info.generation)
            .collect();
        assert_eq!(
            kept,
            generations[1..],
            "the two newest are kept, the current one among them"
        );
        assert_eq!(
            store.similar_list("a1").await.unwrap().unwrap().items.len(),
            1
        );
        assert_eq!(
            store.fallback_list().await.unwrap().unwrap().items[0].article_id,
            "f1"
        );
    }

    #[tokio::test]
    async fn a_count_mismatch_leaves_the_served_generation() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let mut first = GenerationPublisher::start(&store, "first", 10)
            .await
            .unwrap();
        first.put_users(users(2), &mut |_| {}).await.unwrap();
        let served = first.finish(2, 1).await.unwrap().info;
        let mut short = GenerationPublisher::start(&store, "short", 10)
            .await
            .unwrap();
        short.put_users(users(3), &mut |_| {}).await.unwrap();
        let error = short.finish(4, 1).await.unwrap_err();
        assert!(matches!(error, KvError::CountMismatch { .. }), "{error}");
        assert_eq!(store.current().await.unwrap().unwrap(), served);
    }
}
