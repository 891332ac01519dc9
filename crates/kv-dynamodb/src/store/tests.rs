//! Against a DynamoDB endpoint (moto, DynamoDB Local, or AWS) named by
//! `NEWSREC_TEST_DYNAMODB_ENDPOINT`: the conformance suite and this backend's own cases (bulk
//! batches, the lock, several handles, a publish that dies). Each case uses a table of its own
//! and deletes it.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use aws_sdk_dynamodb::{config::Credentials, types::AttributeValue};

use super::*;
use crate::{
    item::{key_item, number},
    keys::LOCK_KEY,
};
use newsrec_kv::{SimilarList, UserList, conformance};

const ENDPOINT_VAR: &str = "NEWSREC_TEST_DYNAMODB_ENDPOINT";

fn test_endpoint() -> Option<String> {
    let endpoint = std::env::var(ENDPOINT_VAR).ok().filter(|e| !e.is_empty());
    if endpoint.is_none() {
        println!("skipped: set {ENDPOINT_VAR} (e.g. http://127.0.0.1:5000) to run");
    }
    endpoint
}

/// Static dummy credentials and a region, so tests never look for real ones.
fn test_loader() -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "newsrec-test"))
}

fn unique_table(case: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static TABLES: AtomicU64 = AtomicU64::new(0);
    let sequence = TABLES.fetch_add(1, Ordering::Relaxed);
    format!(
        "newsrec-test-{case}-{}-{}-{sequence}",
        std::process::id(),
        newsrec_kv::now_ms()
    )
}

async fn connect_test_store(endpoint: &str, case: &str) -> DynamoStore {
    let uri = format!(
        "dynamodb://{}?endpoint={endpoint}&create=true",
        unique_table(case)
    );
    DynamoStore::connect_with(&uri, test_loader())
        .await
        .unwrap_or_else(|error| panic!("{ENDPOINT_VAR}={endpoint} is set but: {error}"))
}

async fn delete_table(table: &Table) {
    if let Err(error) = table
        .client
        .delete_table()
        .table_name(&*table.name)
        .send()
        .await
    {
        eprintln!("could not delete test table {}: {error}", table.name);
    }
}

/// Runs `body` on a fresh table, deleting the table afterwards even when `body` panics.
async fn with_store<F, Fut>(case: &str, body: F)
where
    F: FnOnce(Arc<DynamoStore>, String) -> Fut,
    Fut: Future<Output = ()> + std::marker::Send + 'static,
{
    let Some(endpoint) = test_endpoint() else {
        return;
    };
    let store = Arc::new(connect_test_store(&endpoint, case).await);
    let outcome = tokio::spawn(body(Arc::clone(&store), endpoint)).await;
    delete_table(&store.table).await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_conformance_suite() {
    let Some(endpoint) = test_endpoint() else {
        return;
    };
    let started = Instant::now();
    let tables = Arc::new(std::sync::Mutex::new(Vec::new()));
    let suite = tokio::spawn({
        let tables = Arc::clone(&tables);
        async move {
            conformance::run_all(|case| {
                // The suite's factory is synchronous; connecting is not.
                let store = tokio::task::block_in_place(|| {
                    tokio::runtime::Handle::current().block_on(connect_test_store(&endpoint, case))
                });
                tables.lock().unwrap().push(store.table.clone());
                store
            })
            .await;
        }
    })
    .await;
    let tables = std::mem::take(&mut *tables.lock().unwrap());
    for table in &tables {
        delete_table(table).await;
    }
    if let Err(error) = suite {
        std::panic::resume_unwind(error.into_panic());
    }
    println!("dynamodb conformance suite took {:?}", started.elapsed());
}

#[tokio::test]
async fn dynamodb_bulk_writes_span_batches_and_count_distinct_users() {
    with_store("bulk", |store, _| async move {
        let list = |user: String, article: &str| UserList {
            user_id: user,
            items: vec![RecItem {
                article_id: article.into(),
                score: 1.0,
            }],
        };
        let mut writer = store.create_generation("run-bulk").await.unwrap();
        // 60 lists in one call (three batches), one user twice: the last list wins.
        let mut lists: Vec<UserList> = (0..59).map(|n| list(format!("u{n}"), "first")).collect();
        lists.push(list("u7".into(), "second"));
        writer.put_users(lists).await.unwrap();
        // A user written again in a later call is not counted twice.
        writer
            .put_users(vec![list("u8".into(), "later")])
            .await
            .unwrap();
        writer.put_users(Vec::new()).await.unwrap();
        // Similar lists: two batches, one article twice in a call and again later; none of
        // them counts as a user.
        let similar = |article: String, other: &str| SimilarList {
            article_id: article,
            items: vec![RecItem {
                article_id: other.into(),
                score: 0.5,
            }],
        };
        let mut lists: Vec<SimilarList> =
            (0..30).map(|n| similar(format!("a{n}"), "first")).collect();
        lists.push(similar("a3".into(), "second"));
        writer.put_similar(lists).await.unwrap();
        writer
            .put_similar(vec![similar("a4".into(), "later")])
            .await
            .unwrap();
        writer.put_similar(Vec::new()).await.unwrap();
        let generation = writer.generation();
        let info = writer.finish(59).await.unwrap();
        assert_eq!(info.users, 59);
        store.activate(generation).await.unwrap();
        let article = |list: Option<StoredList>| list.unwrap().items[0].article_id.clone();
        assert_eq!(article(store.user_list("u7").await.unwrap()), "second");
        assert_eq!(article(store.user_list("u8").await.unwrap()), "later");
        assert_eq!(article(store.user_list("u58").await.unwrap()), "first");
        assert_eq!(article(store.similar_list("a3").await.unwrap()), "second");
        assert_eq!(article(store.similar_list("a4").await.unwrap()), "later");
        assert_eq!(article(store.similar_list("a29").await.unwrap()), "first");
        assert_eq!(store.similar_list("u7").await.unwrap(), None);
        assert_eq!(store.user_list("a3").await.unwrap(), None);
        assert_eq!(store.fallback_list().await.unwrap().unwrap().items, vec![]);
    })
    .await;
}

#[tokio::test]
async fn dynamodb_a_second_publisher_is_refused_while_one_writes() {
    with_store("lock", |store, _| async move {
        let writer = store.create_generation("run-a").await.unwrap();
        let error = store.create_generation("run-b").await.unwrap_err();
        assert!(matches!(error, KvError::Locked { .. }), "{error}");
        let error = store.prune(1).await.unwrap_err();
        assert!(matches!(error, KvError::Locked { .. }), "{error}");
        // A failed finish releases the lock too.
        assert!(matches!(
            writer.finish(1).await,
            Err(KvError::CountMismatch { .. })
        ));
        let writer = store.create_generation("run-b").await.unwrap();
        drop(writer);
        // Dropping releases in the background; the next publish gets in shortly after.
        let mut attempts = 0;
        loop {
            match store.create_generation("run-c").await {
                Ok(_) => break,
                Err(KvError::Locked { .. }) if attempts < 50 => attempts += 1,
                Err(error) => panic!("lock not released after a drop: {error}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn dynamodb_an_expired_lock_is_taken_over() {
    with_store("expired", |store, _| async move {
        let mut stale = key_item(LOCK_KEY.into());
        stale.insert("owner".into(), AttributeValue::S("dead-publisher".into()));
        stale.insert("expires_at_ms".into(), number(newsrec_kv::now_ms() - 1));
        store.table.put_item("test", stale).await.unwrap();
        let generation = conformance::publish(&*store, "run-a", &[("u1", &["a1"])]).await;
        assert_eq!(
            store.current().await.unwrap().unwrap().generation,
            generation
        );
    })
    .await;
}

#[tokio::test]
async fn dynamodb_a_second_handle_sees_a_new_generation_after_refresh() {
    with_store("refresh", |publisher, endpoint| async move {
        let uri = format!("dynamodb://{}?endpoint={endpoint}", publisher.table.name);
        let server = DynamoStore::connect_with(&uri, test_loader())
            .await
            .unwrap();
        assert_eq!(server.user_list("u1").await.unwrap(), None);
        let generation = conformance::publish(&*publisher, "run-a", &[("u1", &["a1"])]).await;
        assert_eq!(
            server.user_list("u1").await.unwrap(),
            None,
            "no refresh yet"
        );
        assert!(server.refresh().await.unwrap());
        let list = server.user_list("u1").await.unwrap().unwrap();
        assert_eq!(list.generation, generation);
        assert_eq!(
            server.fallback_list().await.unwrap().unwrap().items.len(),
            2
        );
        assert!(!server.refresh().await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn dynamodb_a_lagging_handle_follows_the_pointer_when_its_generation_is_pruned() {
    with_store("lagging", |publisher, endpoint| async move {
        conformance::publish(&*publisher, "run-a", &[("u1", &["a1"])]).await;
        let uri = format!("dynamodb://{}?endpoint={endpoint}", publisher.table.name);
        let server = DynamoStore::connect_with(&uri, test_loader())
            .await
            .unwrap();
        let second = conformance::publish(&*publisher, "run-b", &[("u1", &["b1"])]).await;
        publisher.prune(0).await.unwrap();
        let similar = server.similar_list("a1").await.unwrap().unwrap();
        assert_eq!(
            similar.generation, second,
            "a similar-list miss follows too"
        );
        let list = server.user_list("u1").await.unwrap().unwrap();
        assert_eq!(list.generation, second);
        assert_eq!(list.items[0].article_id, "b1");
        assert_eq!(server.current().await.unwrap().unwrap().generation, second);
        assert_eq!(server.user_list("nobody").await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn dynamodb_a_publish_that_dies_midway_is_invisible_and_pruned() {
    with_store("dies", |store, _| async move {
        let first = conformance::publish(&*store, "run-a", &[("u1", &["a1"])]).await;
        let dead = {
            let mut writer = store.create_generation("run-b").await.unwrap();
            writer
                .put_users(vec![UserList {
                    user_id: "u2".into(),
                    items: vec![],
                }])
                .await
                .unwrap();
            writer
                .put_similar(vec![SimilarList {
                    article_id: "a7".into(),
                    items: vec![],
                }])
                .await
                .unwrap();
            let dead = writer.generation();
            // Model a crash: no finish, no release; the lock is left to expire (below).
            std::mem::forget(writer);
            dead
        };
        let mut stale = key_item(LOCK_KEY.into());
        stale.insert("owner".into(), AttributeValue::S("crashed".into()));
        stale.insert("expires_at_ms".into(), number(newsrec_kv::now_ms() - 1));
        store.table.put_item("test", stale).await.unwrap();
        assert_eq!(store.generations().await.unwrap().len(), 1);
        assert!(matches!(
            store.activate(dead).await,
            Err(KvError::NoSuchGeneration(_))
        ));
        let second = conformance::publish(&*store, "run-c", &[("u1", &["c1"])]).await;
        assert!(second > dead);
        assert_eq!(store.prune(5).await.unwrap(), vec![dead]);
        let left = store
            .table
            .get_item("test", user_key(dead, "u2"))
            .await
            .unwrap();
        assert_eq!(left, None, "the dead publish's items are deleted");
        let left = store
            .table
            .get_item("test", similar_key(dead, "a7"))
            .await
            .unwrap();
        assert_eq!(left, None, "the dead publish's similar lists are deleted");
        assert!(
            store
                .table
                .get_item("test", similar_key(first, "a1"))
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(store.prune(1).await.unwrap(), vec![first]);
        assert!(
            store
                .table
                .get_item("test", similar_key(first, "a1"))
                .await
                .unwrap()
                .is_none(),
            "a pruned generation's similar lists are deleted with it"
        );
        assert!(
            store
                .table
                .get_item("test", info_key(first))
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(store.table.live_generations().await.unwrap(), vec![second]);
    })
    .await;
}

#[tokio::test]
async fn dynamodb_a_missing_table_is_named_with_what_to_do() {
    let Some(endpoint) = test_endpoint() else {
        return;
    };
    let uri = format!("dynamodb://{}?endpoint={endpoint}", unique_table("missing"));
    let error = DynamoStore::connect_with(&uri, test_loader())
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(
            error,
            KvError::Backend {
                backend: "dynamodb",
                ..
            }
        ),
        "{message}"
    );
    assert!(message.contains("create=true"), "{message}");
}
