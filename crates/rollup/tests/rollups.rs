//! Rollups against a real local lake: their content on a hand-made hour, reuse and exact
//! recomputation (late events, settings, damage, interruption), incremental = from scratch byte
//! for byte, and a memory budget far below the data.

use std::{collections::BTreeMap, sync::Arc};

use arrow_array::{Array, Int64Array, RecordBatch, StringArray};
use chrono::NaiveDate;
use newsrec_event::ClickEvent;
use newsrec_lake::{Lake, ObjectPath, TimeWindow, layout::Partition};
use newsrec_lake_query::{EngineSettings, QueryEngine};
use newsrec_rollup::{RollupError, RollupReport, RollupSettings, RollupTable, ensure_rollups};
use newsrec_testkit::SynthConfig;

const HOUR: i64 = 3_600_000;

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
}

fn engine(lake: &Lake, memory_limit_bytes: u64) -> QueryEngine {
    QueryEngine::new(
        lake,
        &EngineSettings {
            memory_limit_bytes,
            spill_dir: None,
            threads: 2,
        },
    )
    .unwrap()
}

async fn ensure(
    lake: &Lake,
    engine: &QueryEngine,
    window: TimeWindow,
    settings: &RollupSettings,
) -> RollupReport {
    ensure_rollups(lake, engine, window, settings, &|_| {}, &|| None)
        .await
        .unwrap()
}

/// Every object under `rollups/`, by path.
async fn rollup_objects(lake: &Lake) -> BTreeMap<String, Vec<u8>> {
    let mut objects = BTreeMap::new();
    for path in lake
        .list_objects(&ObjectPath::from("rollups"))
        .await
        .unwrap()
    {
        let bytes = lake.get_object(&path).await.unwrap();
        objects.insert(path.to_string(), bytes.to_vec());
    }
    objects
}

async fn read_table(lake: &Lake, partition: Partition, table: RollupTable) -> Vec<RecordBatch> {
    let path = partition.rollup_object_path(&table.object_name());
    let bytes = lake.get_object(&path).await.unwrap();
    lake.decode_table(&path, bytes).await.unwrap()
}

fn strings(batches: &[RecordBatch], column: usize) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let c = b
                .column(column)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            (0..c.len())
                .map(|i| c.value(i).to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn ints(batches: &[RecordBatch], column: usize) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let c = b
                .column(column)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            c.values().to_vec()
        })
        .collect()
}

fn click(user: &str, article: &str, ts: i64, session: Option<&str>) -> ClickEvent {
    let mut event = ClickEvent::click(user, article, ts).unwrap();
    if let Some(session) = session {
        event.session_id = Some(session.to_owned());
        event.event_id = format!("{}-{session}", event.event_id);
    }
    event
}

#[tokio::test]
async fn an_hour_is_summarised_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
    let start = Partition {
        date: day(2),
        hour: 10,
    }
    .start_ms();
    let a = click("u1", "a", start + 1_000, Some("s1"));
    let events = vec![
        a.clone(),
        click("u1", "b", start + 2_000, Some("s1")),
        click("u1", "c", start + 3_000, Some("s1")),
        click("u2", "a", start + 4_000, Some("s2")),
        click("u2", "b", start + 5_000, Some("s2")),
        // No session: one per user.
        click("u3", "a", start + 6_000, None),
        click("u3", "c", start + 7_000, None),
        // Read twice by u1 in the same session: one more click, no new session.
        click("u1", "a", start + 8_000, Some("s1")),
    ];
    lake.write_events("w", 1, &[Arc::new(events)])
        .await
        .unwrap();
    // A client retry: the same event again, in another object of the same hour.
    lake.write_events("w", 2, &[Arc::new(vec![a])])
        .await
        .unwrap();
    let mut view = click("u9", "z", start + 9_000, None);
    view.event_type = newsrec_event::EventType::View;
    view.event_id = "view-1".into();
    lake.write_events("w", 3, &[Arc::new(vec![view])])
        .await
        .unwrap();

    let engine = engine(&lake, 64 << 20);
    let settings = RollupSettings {
        decay_half_life_hours: 1.0,
        session_articles: 20,
        pairs_per_article: 1,
    };
    let report = ensure(&lake, &engine, TimeWindow::days(day(2), day(3)), &settings).await;
    assert_eq!(report.hours, 1);
    assert_eq!(report.computed, 1);
    assert_eq!(report.counts.events, 10);
    assert_eq!(report.counts.clicks, 8);
    assert_eq!(report.counts.duplicates, 1);
    assert_eq!(report.counts.other_events, 1);

    let partition = Partition::of_ts(start);
    let articles = read_table(&lake, partition, RollupTable::Articles).await;
    assert_eq!(strings(&articles, 0), ["a", "b", "c"]);
    assert_eq!(ints(&articles, 1), [4, 2, 2], "clicks");
    assert_eq!(ints(&articles, 2), [3, 2, 2], "users");
    assert_eq!(ints(&articles, 3), [3, 2, 2], "sessions");
    assert_eq!(ints(&articles, 4)[0], start + 1_000, "first");
    assert_eq!(ints(&articles, 5)[0], start + 8_000, "last");
    // A click at t weighs 0.5^((hour end - t) / 1 h): just above 0.5 this early in the hour.
    let decay_a = ints(&articles, 6)[0] as f64 / 1e9;
    let expected: f64 = [1_000, 4_000, 6_000, 8_000]
        .iter()
        .map(|t| 0.5f64.powf((HOUR - t) as f64 / HOUR as f64))
        .sum();
    assert!((decay_a - expected).abs() < 1e-6, "{decay_a} vs {expected}");

    let pairs = read_table(&lake, partition, RollupTable::Pairs).await;
    // a–b in s1 and s2 (2 sessions), a–c in s1 and u3's (2), b–c in s1 (1); one partner
    // each, ties broken by id.
    assert_eq!(strings(&pairs, 0), ["a", "b", "c"]);
    assert_eq!(strings(&pairs, 1), ["b", "a", "a"]);
    assert_eq!(ints(&pairs, 2), [2, 2, 2]);

    let user_articles = read_table(&lake, partition, RollupTable::UserArticles).await;
    assert_eq!(
        strings(&user_articles, 0),
        ["u1", "u1", "u1", "u2", "u2", "u3", "u3"]
    );
    assert_eq!(
        strings(&user_articles, 1),
        ["a", "b", "c", "a", "b", "a", "c"]
    );
    assert_eq!(ints(&user_articles, 2), [2, 1, 1, 1, 1, 1, 1]);
}

fn synthetic() -> SynthConfig {
    SynthConfig {
        start: day(1),
        days: 3,
        users: 400,
        articles_per_day: 40,
        sessions_per_day: 600,
        ..SynthConfig::default()
    }
}

#[tokio::test]
async fn incremental_rollups_equal_rollups_from_scratch_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
    let stream = newsrec_testkit::generate(&synthetic());
    let settings = RollupSettings::default();
    let engine = engine(&lake, 64 << 20);
    let (first_days, later): (Vec<_>, Vec<_>) = stream
        .events
        .iter()
        .cloned()
        .partition(|event| event.ts_ms < TimeWindow::days(day(1), day(3)).end_ms);

    // Day by day, as daily runs would: days 1–2, then day 3 with a late event for day 1.
    lake.write_events("w", 1, &[Arc::new(first_days)])
        .await
        .unwrap();
    let first = ensure(&lake, &engine, TimeWindow::days(day(1), day(3)), &settings).await;
    assert_eq!(first.reused, 0);
    lake.write_events("w", 2, &[Arc::new(later)]).await.unwrap();
    let late = click(
        "late-reader",
        "late-article",
        TimeWindow::days(day(1), day(2)).start_ms + 10 * HOUR + 5,
        None,
    );
    lake.write_events("late", 1, &[Arc::new(vec![late])])
        .await
        .unwrap();
    let second = ensure(&lake, &engine, TimeWindow::days(day(1), day(4)), &settings).await;
    let day3_hours = second.hours - first.hours;
    assert_eq!(
        second.computed,
        day3_hours + 1,
        "day 3's hours and the hour of the late event, nothing else"
    );
    assert_eq!(second.reused, first.hours - 1);
    let incremental = rollup_objects(&lake).await;

    // The same lake, rollups deleted, everything at once.
    for path in lake
        .list_objects(&ObjectPath::from("rollups"))
        .await
        .unwrap()
    {
        lake.delete_object(&path).await.unwrap();
    }
    let scratch_report = ensure(&lake, &engine, TimeWindow::days(day(1), day(4)), &settings).await;
    assert_eq!(scratch_report.reused, 0);
    let scratch = rollup_objects(&lake).await;
    assert_eq!(
        incremental.keys().collect::<Vec<_>>(),
        scratch.keys().collect::<Vec<_>>()
    );
    for (path, bytes) in &incremental {
        assert!(bytes == &scratch[path], "{path} differs");
    }
    assert_eq!(second.counts, scratch_report.counts);
    assert_eq!(second.markers, scratch_report.markers);
}

#[tokio::test]
async fn settings_damage_and_interruption_recompute_exactly_what_they_touch() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
    let stream = newsrec_testkit::generate(&SynthConfig {
        days: 1,
        ..synthetic()
    });
    lake.write_events("w", 1, &[Arc::new(stream.events)])
        .await
        .unwrap();
    let engine = engine(&lake, 64 << 20);
    let window = TimeWindow::days(day(1), day(2));
    let settings = RollupSettings::default();

    // Interrupted after three hours: those are kept and reused.
    let asked = std::sync::atomic::AtomicUsize::new(0);
    let stop = || {
        (asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 3).then(|| "test".to_owned())
    };
    let error = ensure_rollups(&lake, &engine, window, &settings, &|_| {}, &stop)
        .await
        .unwrap_err();
    assert!(
        matches!(error, RollupError::Interrupted { done: 3, .. }),
        "{error}"
    );
    let resumed = ensure(&lake, &engine, window, &settings).await;
    assert_eq!(resumed.reused, 3);
    assert_eq!(resumed.computed, resumed.hours - 3);
    let before = rollup_objects(&lake).await;

    // A new half-life touches the articles table only.
    let decayed = RollupSettings {
        decay_half_life_hours: 0.5,
        ..settings.clone()
    };
    let changed = ensure(&lake, &engine, window, &decayed).await;
    assert_eq!(changed.computed, changed.hours);
    assert_eq!(changed.tables_computed, changed.hours);
    let after = rollup_objects(&lake).await;
    for (path, bytes) in &before {
        let same = bytes == &after[path];
        let articles = path.ends_with("/articles.parquet") || path.ends_with("/rollup.json");
        assert_eq!(same, !articles, "{path}");
    }
    // Back to the first settings: the same bytes as before.
    ensure(&lake, &engine, window, &settings).await;
    assert_eq!(rollup_objects(&lake).await, before);

    // A damaged table and an unreadable key are recomputed, never trusted.
    let (path, _) = before
        .iter()
        .find(|(path, _)| path.ends_with("/pairs.parquet"))
        .unwrap();
    lake.put_object(&ObjectPath::from(path.as_str()), "PAR1 damaged")
        .await
        .unwrap();
    let (key, _) = before
        .iter()
        .rev()
        .find(|(path, _)| path.ends_with("/rollup.json"))
        .unwrap();
    lake.put_object(&ObjectPath::from(key.as_str()), "{ not json")
        .await
        .unwrap();
    let repaired = ensure(&lake, &engine, window, &settings).await;
    assert_eq!(repaired.damaged, 2);
    assert_eq!(repaired.computed, 2);
    assert_eq!(rollup_objects(&lake).await, before);
}

#[tokio::test]
async fn a_memory_budget_far_below_the_hour_spills_and_gives_the_same_rollup() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
    // One busy hour: 400k clicks of 100k readers (about 40 MB decoded).
    let start = Partition {
        date: day(5),
        hour: 20,
    }
    .start_ms();
    let events: Vec<ClickEvent> = (0..400_000i64)
        .map(|i| {
            let user = format!("reader-{:06}", (i * 7_919) % 100_000);
            let article = format!("article-{:04}", (i * i) % 997);
            let session = format!("s{}", (i * 7_919) % 100_000 / 3);
            click(&user, &article, start + i * 9, Some(&session))
        })
        .collect();
    let bytes: usize = events
        .iter()
        .map(|e| e.user_id.len() + e.event_id.len() + 40)
        .sum();
    for (seq, chunk) in events.chunks(50_000).enumerate() {
        lake.write_events("w", seq as u64, &[Arc::new(chunk.to_vec())])
            .await
            .unwrap();
    }
    let window = TimeWindow::days(day(5), day(6));
    let settings = RollupSettings::default();
    let small_budget = 16 << 20;
    assert!(
        bytes as u64 > 2 * small_budget,
        "the hour is larger than the budget"
    );
    let small = QueryEngine::new(
        &lake,
        &EngineSettings {
            memory_limit_bytes: small_budget,
            spill_dir: Some(dir.path().join("spill")),
            threads: 2,
        },
    )
    .unwrap();
    let report = ensure(&lake, &small, window, &settings).await;
    assert_eq!(report.counts.clicks, 400_000);
    let spilled = rollup_objects(&lake).await;
    for path in lake
        .list_objects(&ObjectPath::from("rollups"))
        .await
        .unwrap()
    {
        lake.delete_object(&path).await.unwrap();
    }
    ensure(&lake, &engine(&lake, 1 << 30), window, &settings).await;
    assert_eq!(rollup_objects(&lake).await, spilled);
}
