//! The conformance suite every [`RecStore`] backend must pass (embedded always; Redis and
//! DynamoDB in CI). Each case asks the factory for a fresh, empty store under its own name.

use crate::{Generation, KvError, RecItem, RecStore, SimilarList, UserList, rollback};

/// Publishes a generation of `users` (id → article ids) with fallback `["f1", "f2"]`, activates
/// it and returns its number.
pub async fn publish(store: &dyn RecStore, run_id: &str, users: &[(&str, &[&str])]) -> Generation {
    // A writer dropped just before (a publish that died in this process) may release its lock
    // from a background task: wait for it briefly rather than fail.
    let started = std::time::Instant::now();
    let mut writer = loop {
        match store.create_generation(run_id).await {
            Err(KvError::Locked { .. })
                if started.elapsed() < std::time::Duration::from_secs(5) =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            other => break other.expect("create generation"),
        }
    };
    let lists = users
        .iter()
        .map(|(user, items)| UserList {
            user_id: (*user).to_owned(),
            items: items
                .iter()
                .enumerate()
                .map(|(rank, id)| RecItem {
                    article_id: (*id).to_owned(),
                    score: 1.0 / (rank as f32 + 1.0),
                })
                .collect(),
        })
        .collect();
    writer.put_users(lists).await.expect("put users");
    writer
        .put_similar(vec![SimilarList {
            article_id: "a1".into(),
            items: vec![item("a2", 0.9), item("a3", 0.5)],
        }])
        .await
        .expect("put similar");
    writer
        .put_fallback(vec![item("f1", 2.0), item("f2", 1.0)])
        .await
        .expect("put fallback");
    let info = writer.finish(users.len() as u64).await.expect("finish");
    store.activate(info.generation).await.expect("activate");
    info.generation
}

fn item(id: &str, score: f32) -> RecItem {
    RecItem {
        article_id: id.to_owned(),
        score,
    }
}

async fn ids(store: &dyn RecStore, user: &str) -> Option<Vec<String>> {
    store
        .user_list(user)
        .await
        .expect("user_list")
        .map(|list| list.items.into_iter().map(|it| it.article_id).collect())
}

/// Runs every case; `make(case)` must return an empty store private to that case.
pub async fn run_all<S: RecStore, F: FnMut(&str) -> S>(mut make: F) {
    empty_store(&make("empty")).await;
    publish_and_read(&make("publish")).await;
    switch_and_rollback(&make("switch")).await;
    count_mismatch_is_not_sealed(&make("mismatch")).await;
    prune_keeps_current_and_newest(&make("prune")).await;
    odd_user_ids_round_trip(&make("odd-ids")).await;
    readers_only_see_complete_generations(&make("readers")).await;
}

async fn empty_store(store: &dyn RecStore) {
    assert_eq!(store.current().await.unwrap(), None);
    assert_eq!(store.similar_list("a1").await.unwrap(), None);
    assert_eq!(store.user_list("u1").await.unwrap(), None);
    assert_eq!(store.fallback_list().await.unwrap(), None);
    assert!(store.generations().await.unwrap().is_empty());
    assert!(matches!(
        rollback(store).await,
        Err(KvError::NothingToRollBackTo { current: None })
    ));
}

async fn publish_and_read(store: &dyn RecStore) {
    let generation = publish(store, "run-1", &[("u1", &["a1", "a2"]), ("u2", &["a3"])]).await;
    let current = store.current().await.unwrap().expect("current generation");
    assert_eq!(current.generation, generation);
    assert_eq!(current.run_id, "run-1");
    assert_eq!(current.users, 2);
    assert_eq!(ids(store, "u1").await, Some(vec!["a1".into(), "a2".into()]));
    let list = store.user_list("u1").await.unwrap().unwrap();
    assert_eq!(list.generation, generation);
    assert_eq!(list.items[1].score, 0.5);
    assert_eq!(
        ids(store, "nobody").await,
        None,
        "a missing user returns None"
    );
    let similar = store
        .similar_list("a1")
        .await
        .unwrap()
        .expect("similar list of a1");
    assert_eq!(similar.generation, generation);
    assert_eq!(similar.items, vec![item("a2", 0.9), item("a3", 0.5)]);
    assert_eq!(
        store.similar_list("a9").await.unwrap(),
        None,
        "an unknown article returns None"
    );
    assert_eq!(
        store.similar_list("u1").await.unwrap(),
        None,
        "articles and users do not mix"
    );
    let fallback = store.fallback_list().await.unwrap().unwrap();
    assert_eq!(fallback.items, vec![item("f1", 2.0), item("f2", 1.0)]);
}

async fn switch_and_rollback(store: &dyn RecStore) {
    let first = publish(store, "run-1", &[("u1", &["old"])]).await;
    let second = publish(store, "run-2", &[("u1", &["new"]), ("u9", &["x"])]).await;
    assert!(second > first, "generation numbers grow");
    assert_eq!(ids(store, "u1").await, Some(vec!["new".into()]));
    assert_eq!(rollback(store).await.unwrap(), first);
    assert_eq!(ids(store, "u1").await, Some(vec!["old".into()]));
    assert_eq!(
        ids(store, "u9").await,
        None,
        "nothing of the newer generation leaks"
    );
    store.activate(second).await.unwrap();
    assert_eq!(ids(store, "u9").await, Some(vec!["x".into()]));
    let numbers: Vec<_> = store
        .generations()
        .await
        .unwrap()
        .iter()
        .map(|g| g.generation)
        .collect();
    assert_eq!(numbers, vec![first, second]);
    assert!(matches!(
        store.activate(second + 100).await,
        Err(KvError::NoSuchGeneration(_))
    ));
}

async fn count_mismatch_is_not_sealed(store: &dyn RecStore) {
    let first = publish(store, "run-1", &[("u1", &["a"])]).await;
    let mut writer = store.create_generation("run-2").await.unwrap();
    let generation = writer.generation();
    writer
        .put_users(vec![UserList {
            user_id: "u1".into(),
            items: vec![item("b", 1.0)],
        }])
        .await
        .unwrap();
    let error = writer.finish(2).await.unwrap_err();
    assert!(
        matches!(
            error,
            KvError::CountMismatch {
                stored: 1,
                expected: 2,
                ..
            }
        ),
        "{error}"
    );
    assert!(matches!(
        store.activate(generation).await,
        Err(KvError::NoSuchGeneration(_))
    ));
    assert_eq!(store.current().await.unwrap().unwrap().generation, first);
    assert_eq!(ids(store, "u1").await, Some(vec!["a".into()]));
}

async fn prune_keeps_current_and_newest(store: &dyn RecStore) {
    let mut generations = Vec::new();
    for run in 0..4 {
        generations.push(publish(store, &format!("run-{run}"), &[("u1", &["a"])]).await);
    }
    store.activate(generations[0]).await.unwrap();
    let deleted = store.prune(2).await.unwrap();
    assert_eq!(deleted, vec![generations[1]]);
    let left: Vec<_> = store
        .generations()
        .await
        .unwrap()
        .iter()
        .map(|g| g.generation)
        .collect();
    assert_eq!(left, vec![generations[0], generations[2], generations[3]]);
    assert_eq!(ids(store, "u1").await, Some(vec!["a".into()]));
}

async fn odd_user_ids_round_trip(store: &dyn RecStore) {
    let odd = ["user:1", "a/b/../c", "ünïcødé 用户", "*", "{tag}", "x y\tz"];
    let users: Vec<(&str, &[&str])> = odd.iter().map(|u| (*u, &["a1"] as &[&str])).collect();
    publish(store, "run-odd", &users).await;
    for user in odd {
        assert_eq!(
            ids(store, user).await,
            Some(vec!["a1".into()]),
            "user id {user:?}"
        );
    }
    assert_eq!(ids(store, "user:2").await, None);
}

/// While a publish dies midway and another one completes and switches, a concurrent reader
/// always gets a complete list of a sealed generation: never nothing, never a half-written one.
async fn readers_only_see_complete_generations(store: &dyn RecStore) {
    use std::sync::atomic::{AtomicBool, Ordering};

    const USERS: usize = 40;
    let users: Vec<String> = (0..USERS).map(|u| format!("u{u}")).collect();
    let old: Vec<(&str, &[&str])> = users
        .iter()
        .map(|u| (u.as_str(), &["old"] as &[&str]))
        .collect();
    publish(store, "run-old", &old).await;

    let done = AtomicBool::new(false);
    let reader = async {
        let mut reads = 0usize;
        let mut seen_new = false;
        while !done.load(Ordering::Acquire) {
            for user in &users {
                let list = ids(store, user).await;
                match list.as_deref() {
                    Some([one]) if one == "old" => {
                        assert!(!seen_new, "{user}: went back to an older generation")
                    }
                    Some([one]) if one == "new" => seen_new = true,
                    other => panic!("{user}: a reader saw {other:?}, not a complete generation"),
                }
                reads += 1;
                tokio::task::yield_now().await;
            }
        }
        reads
    };
    let publisher = async {
        // A publish that dies after loading half the users: nothing of it may be visible.
        let mut dying = store.create_generation("run-dies").await.expect("create");
        let half: Vec<UserList> = users[..USERS / 2]
            .iter()
            .map(|u| UserList {
                user_id: u.clone(),
                items: vec![item("half", 1.0)],
            })
            .collect();
        dying.put_users(half).await.expect("put");
        tokio::task::yield_now().await;
        drop(dying);
        // Running it again completes the job and switches.
        let new: Vec<(&str, &[&str])> = users
            .iter()
            .map(|u| (u.as_str(), &["new"] as &[&str]))
            .collect();
        publish(store, "run-new", &new).await;
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        done.store(true, Ordering::Release);
    };
    let (reads, ()) = tokio::join!(reader, publisher);
    assert!(
        reads >= USERS,
        "the reader ran alongside the publish ({reads} reads)"
    );
    assert_eq!(ids(store, "u0").await, Some(vec!["new".into()]));
}
