//! Against a live Redis (`NEWSREC_TEST_REDIS_URL`): the conformance suite and the cases only this
//! backend has (several handles, a publish that dies, the lock, pruning under a server).

use std::sync::Mutex;

use redis::Client;

use super::*;
use crate::writer::HSET_CHUNK;
use newsrec_kv::{SimilarList, UserList, conformance};

const URL_VARIABLE: &str = "NEWSREC_TEST_REDIS_URL";

/// The test Redis, or None (the test is skipped) when the variable is not set. When it is
/// set, an unreachable Redis fails the test.
fn test_redis(test: &str) -> Option<TestPrefixes> {
    match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.is_empty() => Some(TestPrefixes {
            url,
            used: Mutex::new(Vec::new()),
        }),
        _ => {
            eprintln!("skipped {test}: set {URL_VARIABLE}=redis://127.0.0.1:6379/0 to run it");
            None
        }
    }
}

/// Hands out a unique prefix per case and deletes their keys when the test ends, passed or
/// failed. Tests using it run on the multi-thread runtime (`block_in_place`).
struct TestPrefixes {
    url: String,
    used: Mutex<Vec<String>>,
}

impl TestPrefixes {
    fn uri(&self, case: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let prefix = format!("newsrec-test-{}-{nanos}-{case}", std::process::id());
        self.used.lock().unwrap().push(prefix.clone());
        let separator = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{separator}prefix={prefix}", self.url)
    }

    async fn connect(&self, case: &str) -> RedisStore {
        let uri = self.uri(case);
        RedisStore::connect(&uri)
            .await
            .unwrap_or_else(|error| panic!("{URL_VARIABLE} is set but: {error}"))
    }

    /// For factories that cannot await (the conformance suite's).
    fn connect_blocking(&self, case: &str) -> RedisStore {
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(self.connect(case))
        })
    }

    async fn delete_all(&self) {
        let prefixes = std::mem::take(&mut *self.used.lock().unwrap());
        let Ok(client) = Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut connection) = ConnectionManager::new(client).await else {
            return;
        };
        for prefix in prefixes {
            let mut cursor: u64 = 0;
            loop {
                let Ok((next, keys)): Result<(u64, Vec<Vec<u8>>), _> = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{prefix}:*"))
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut connection)
                    .await
                else {
                    break;
                };
                if !keys.is_empty() {
                    let _ = redis::cmd("UNLINK")
                        .arg(&keys)
                        .query_async::<()>(&mut connection)
                        .await;
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
    }
}

impl Drop for TestPrefixes {
    fn drop(&mut self) {
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                let _ = tokio::time::timeout(Duration::from_secs(10), self.delete_all()).await;
            });
        });
    }
}

async fn key_exists(store: &RedisStore, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query_async(&mut store.connection())
        .await
        .unwrap()
}

/// A dropped writer frees the lock from a spawned task; wait for it (bounded).
async fn wait_for_unlock(store: &RedisStore) {
    for _ in 0..100 {
        if !key_exists(store, &store.keys.lock()).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the publish lock was not released after the writer was dropped");
}

fn similar(article: &str, other: &str) -> SimilarList {
    SimilarList {
        article_id: article.into(),
        items: vec![RecItem {
            article_id: other.into(),
            score: 0.5,
        }],
    }
}

fn list(user: &str, article: &str) -> UserList {
    UserList {
        user_id: user.into(),
        items: vec![RecItem {
            article_id: article.into(),
            score: 1.0,
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let Some(redis) = test_redis("conformance_suite") else {
        return;
    };
    conformance::run_all(|case| redis.connect_blocking(case)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_handle_sees_a_new_generation_after_refresh() {
    // Models `newsrec publish` in one process while `newsrec up` serves in another.
    let Some(redis) = test_redis("a_second_handle_sees_a_new_generation_after_refresh") else {
        return;
    };
    let uri = redis.uri("refresh");
    let publisher = RedisStore::connect(&uri).await.unwrap();
    let server = RedisStore::connect(&uri).await.unwrap();
    assert_eq!(server.user_list("u1").await.unwrap(), None);
    let first = conformance::publish(&publisher, "run-a", &[("u1", &["a1"])]).await;
    assert_eq!(
        server.user_list("u1").await.unwrap(),
        None,
        "no refresh yet"
    );
    assert!(server.refresh().await.unwrap());
    assert_eq!(
        server.user_list("u1").await.unwrap().unwrap().generation,
        first
    );
    assert!(!server.refresh().await.unwrap());

    let second = conformance::publish(&publisher, "run-b", &[("u1", &["b1"])]).await;
    let list = server.user_list("u1").await.unwrap().unwrap();
    assert_eq!(
        list.generation, first,
        "still the old generation until refresh"
    );
    assert_eq!(server.current().await.unwrap().unwrap().generation, first);
    assert!(server.refresh().await.unwrap());
    assert_eq!(
        server.user_list("u1").await.unwrap().unwrap().generation,
        second
    );
    assert_eq!(server.current().await.unwrap().unwrap().generation, second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_generation_was_pruned_follows_the_pointer() {
    let Some(redis) = test_redis("a_server_whose_generation_was_pruned_follows_the_pointer") else {
        return;
    };
    let uri = redis.uri("pruned");
    let publisher = RedisStore::connect(&uri).await.unwrap();
    let first = conformance::publish(&publisher, "run-a", &[("u1", &["a1"])]).await;
    let server = RedisStore::connect(&uri).await.unwrap();
    let second = conformance::publish(&publisher, "run-b", &[("u1", &["b1"])]).await;
    assert_eq!(publisher.prune(0).await.unwrap(), vec![first]);
    let list = server.user_list("u1").await.unwrap().unwrap();
    assert_eq!(list.generation, second);
    assert_eq!(list.items[0].article_id, "b1");
    assert_eq!(server.user_list("nobody").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_that_dies_midway_leaves_the_old_generation_served() {
    let Some(redis) = test_redis("a_publish_that_dies_midway_leaves_the_old_generation_served")
    else {
        return;
    };
    let uri = redis.uri("dies");
    let store = RedisStore::connect(&uri).await.unwrap();
    let first = conformance::publish(&store, "run-a", &[("u1", &["a1"])]).await;
    let dead = {
        let mut writer = store.create_generation("run-b").await.unwrap();
        writer.put_users(vec![list("u1", "b1")]).await.unwrap();
        writer.put_similar(vec![similar("a1", "b2")]).await.unwrap();
        writer.put_fallback(Vec::new()).await.unwrap();
        writer.generation()
        // Dropped without finish: the process "died" here.
    };
    let reopened = RedisStore::connect(&uri).await.unwrap();
    assert_eq!(reopened.current().await.unwrap().unwrap().generation, first);
    assert_eq!(
        reopened.user_list("u1").await.unwrap().unwrap().items[0].article_id,
        "a1"
    );
    assert_eq!(
        reopened
            .similar_list("a1")
            .await
            .unwrap()
            .unwrap()
            .generation,
        first,
        "the dead publish's similar lists are invisible"
    );
    assert_eq!(reopened.generations().await.unwrap().len(), 1);
    assert!(matches!(
        reopened.activate(dead).await,
        Err(KvError::NoSuchGeneration(_))
    ));
    wait_for_unlock(&reopened).await;
    let second = conformance::publish(&reopened, "run-b", &[("u1", &["b1"])]).await;
    assert!(second > dead);
    assert_eq!(
        reopened.prune(5).await.unwrap(),
        vec![dead],
        "the leftover is cleaned up"
    );
    assert!(!key_exists(&reopened, &reopened.keys.lists(dead)).await);
    assert!(!key_exists(&reopened, &reopened.keys.similar(dead)).await);
    assert!(!key_exists(&reopened, &reopened.keys.fallback(dead)).await);
    assert!(key_exists(&reopened, &reopened.keys.similar(first)).await);
    assert_eq!(reopened.prune(0).await.unwrap(), vec![first]);
    assert!(
        !key_exists(&reopened, &reopened.keys.similar(first)).await,
        "a pruned generation's similar lists are deleted with it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_publisher_is_refused_while_one_writes() {
    let Some(redis) = test_redis("a_second_publisher_is_refused_while_one_writes") else {
        return;
    };
    let uri = redis.uri("locked");
    let store = RedisStore::connect(&uri).await.unwrap();
    let other_process = RedisStore::connect(&uri).await.unwrap();
    let writer = store.create_generation("run-a").await.unwrap();
    let error = other_process.create_generation("run-b").await.unwrap_err();
    assert!(matches!(error, KvError::Locked { .. }), "{error}");
    let error = other_process.prune(1).await.unwrap_err();
    assert!(
        matches!(error, KvError::Locked { .. }),
        "prune waits too: {error}"
    );
    writer.finish(0).await.unwrap();
    // finish releases the lock before returning.
    other_process.create_generation("run-b").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_lost_its_lock_does_not_seal() {
    // The lock expired (redis unreachable past its TTL) or an operator removed it: a prune
    // may have deleted part of this generation, so sealing must be refused.
    let Some(redis) = test_redis("a_writer_that_lost_its_lock_does_not_seal") else {
        return;
    };
    let store = redis.connect("lost-lock").await;
    let mut writer = store.create_generation("run-a").await.unwrap();
    let generation = writer.generation();
    writer.put_users(vec![list("u1", "a")]).await.unwrap();
    redis::cmd("DEL")
        .arg(store.keys.lock())
        .query_async::<()>(&mut store.connection())
        .await
        .unwrap();
    let error = writer.finish(1).await.unwrap_err();
    assert!(error.to_string().contains("publish lock"), "{error}");
    assert!(matches!(
        store.activate(generation).await,
        Err(KvError::NoSuchGeneration(_))
    ));
    assert!(store.generations().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_written_twice_counts_once() {
    let Some(redis) = test_redis("a_user_written_twice_counts_once") else {
        return;
    };
    let store = redis.connect("twice").await;
    let mut writer = store.create_generation("run-a").await.unwrap();
    writer
        .put_users(vec![list("u1", "old"), list("u2", "x"), list("u1", "mid")])
        .await
        .unwrap();
    writer.put_users(vec![list("u1", "new")]).await.unwrap();
    let info = writer.finish(2).await.unwrap();
    assert_eq!(info.users, 2);
    store.activate(info.generation).await.unwrap();
    let list = store.user_list("u1").await.unwrap().unwrap();
    assert_eq!(list.items[0].article_id, "new", "the last list wins");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn similar_lists_are_not_users_and_the_last_list_wins() {
    let Some(redis) = test_redis("similar_lists_are_not_users_and_the_last_list_wins") else {
        return;
    };
    let store = redis.connect("similar").await;
    let mut writer = store.create_generation("run-a").await.unwrap();
    writer.put_users(vec![list("u1", "a1")]).await.unwrap();
    // More lists than one HSET carries, one article twice in a call and again later.
    let mut lists: Vec<SimilarList> = (0..HSET_CHUNK + 10)
        .map(|n| similar(&format!("a{n}"), "first"))
        .collect();
    lists.push(similar("a3", "second"));
    writer.put_similar(lists).await.unwrap();
    writer
        .put_similar(vec![similar("a4", "later")])
        .await
        .unwrap();
    writer.put_similar(Vec::new()).await.unwrap();
    let info = writer.finish(1).await.unwrap();
    assert_eq!(info.users, 1, "similar lists are not counted as users");
    store.activate(info.generation).await.unwrap();
    let article = |list: Option<StoredList>| list.unwrap().items[0].article_id.clone();
    assert_eq!(article(store.similar_list("a3").await.unwrap()), "second");
    assert_eq!(article(store.similar_list("a4").await.unwrap()), "later");
    assert_eq!(article(store.similar_list("a0").await.unwrap()), "first");
    assert_eq!(store.similar_list("u1").await.unwrap(), None);
    assert_eq!(store.user_list("a1").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_generation_was_pruned_finds_similar_lists_of_the_new_one() {
    let Some(redis) =
        test_redis("a_server_whose_generation_was_pruned_finds_similar_lists_of_the_new_one")
    else {
        return;
    };
    let uri = redis.uri("similar-pruned");
    let publisher = RedisStore::connect(&uri).await.unwrap();
    let first = conformance::publish(&publisher, "run-a", &[("u1", &["a1"])]).await;
    let server = RedisStore::connect(&uri).await.unwrap();
    let second = conformance::publish(&publisher, "run-b", &[("u1", &["b1"])]).await;
    assert_eq!(publisher.prune(0).await.unwrap(), vec![first]);
    let list = server.similar_list("a1").await.unwrap().unwrap();
    assert_eq!(list.generation, second);
    assert_eq!(server.current().await.unwrap().unwrap().generation, second);
}
