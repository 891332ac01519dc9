//! The engine over a real local lake: deduplication, and a budget far below the data.

use std::sync::Arc;

use arrow_array::{Array, Int64Array, StringArray};
use newsrec_event::{ClickEvent, EventType};
use newsrec_lake::{Lake, TimeWindow};

use super::*;

const HOUR_START: i64 = 1_793_606_400_000; // 2026-11-02T08:00:00Z

fn lake_in(dir: &std::path::Path) -> Lake {
    Lake::open(dir.to_str().unwrap()).unwrap()
}

async fn hour_objects(lake: &Lake) -> Vec<ObjectPath> {
    let window = TimeWindow {
        start_ms: HOUR_START,
        end_ms: HOUR_START + 3_600_000,
    };
    lake.list_event_objects(window)
        .await
        .unwrap()
        .into_iter()
        .map(|meta| meta.location)
        .collect()
}

#[tokio::test]
async fn copies_of_an_event_count_once_and_views_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_in(dir.path());
    let first = ClickEvent::click("u1", "a1", HOUR_START + 10).unwrap();
    let second = ClickEvent::click("u2", "a2", HOUR_START + 20).unwrap();
    let mut view = ClickEvent::click("u3", "a3", HOUR_START + 30).unwrap();
    view.event_type = EventType::View;
    view.event_id = "view".into();
    lake.write_events("w", 1, &[Arc::new(vec![first.clone(), second, view])])
        .await
        .unwrap();
    // A retry of the first event, in another object of the same hour.
    lake.write_events("w", 2, &[Arc::new(vec![first.clone(), first])])
        .await
        .unwrap();
    let engine = QueryEngine::new(&lake, &EngineSettings::default()).unwrap();
    engine
        .register_events("hour", &hour_objects(&lake).await)
        .await
        .unwrap();
    let sql = format!(
        "SELECT user_id, article_id, ts_ms FROM ({}) ORDER BY ts_ms",
        dedup_clicks_sql("hour")
    );
    let batches = engine.collect(&sql, "test").await.unwrap();
    let users: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            let c = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            (0..c.len())
                .map(|i| c.value(i).to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(users, ["u1", "u2"]);
    let ts = int_values(&batches, 2);
    assert_eq!(ts, [HOUR_START + 10, HOUR_START + 20]);
}

#[tokio::test]
async fn deduplication_completes_within_a_budget_far_below_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_in(&dir.path().join("lake"));
    // 100k distinct events and 20k copies, about 10 MB decoded, against a 2 MiB budget.
    let events: Vec<ClickEvent> = (0..100_000i64)
        .map(|i| {
            ClickEvent::click(
                &format!("reader-{i:08}"),
                &format!("article-{}", i % 500),
                HOUR_START + i * 30,
            )
            .unwrap()
        })
        .collect();
    for (seq, chunk) in events.chunks(25_000).enumerate() {
        lake.write_events("w", seq as u64, &[Arc::new(chunk.to_vec())])
            .await
            .unwrap();
    }
    lake.write_events("retry", 1, &[Arc::new(events[..20_000].to_vec())])
        .await
        .unwrap();
    let engine = QueryEngine::new(
        &lake,
        &EngineSettings {
            memory_limit_bytes: 2 << 20,
            spill_dir: Some(dir.path().join("spill")),
            threads: 2,
        },
    )
    .unwrap();
    engine
        .register_events("hour", &hour_objects(&lake).await)
        .await
        .unwrap();
    let sql = format!(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM ({})",
        dedup_clicks_sql("hour")
    );
    let batches = engine.collect(&sql, "counting").await.unwrap();
    assert_eq!(int_values(&batches, 0), [100_000]);
}

#[tokio::test]
async fn errors_name_the_work_and_an_empty_set_is_an_empty_table() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_in(dir.path());
    let engine = QueryEngine::new(&lake, &EngineSettings::default()).unwrap();
    engine.register_events("nothing", &[]).await.unwrap();
    let batches = engine
        .collect(&dedup_clicks_sql("nothing"), "reading nothing")
        .await
        .unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    let error = engine
        .collect("SELECT no_such_column FROM nothing", "reading a typo")
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("query engine error while reading a typo:"),
        "{error}"
    );
}

#[tokio::test]
async fn spilled_rows_are_a_table_until_their_guard_goes() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_in(&dir.path().join("lake"));
    let events: Vec<ClickEvent> = (0..1_000i64)
        .map(|i| ClickEvent::click(&format!("u{i}"), "a", HOUR_START + i).unwrap())
        .collect();
    lake.write_events("w", 1, &[Arc::new(events.clone())])
        .await
        .unwrap();
    lake.write_events("retry", 1, &[Arc::new(events[..100].to_vec())])
        .await
        .unwrap();
    let spill = dir.path().join("spill");
    let engine = QueryEngine::new(
        &lake,
        &EngineSettings {
            spill_dir: Some(spill.clone()),
            ..EngineSettings::default()
        },
    )
    .unwrap();
    engine
        .register_events("hour", &hour_objects(&lake).await)
        .await
        .unwrap();
    let deduplicated = engine
        .collect(&dedup_clicks_sql("hour"), "deduplicating")
        .await
        .unwrap();
    let mut writer = engine
        .spill_writer("clicks", deduplicated[0].schema())
        .unwrap();
    for batch in &deduplicated {
        writer.write(batch).unwrap();
    }
    let kept = writer.finish().await.unwrap();
    assert_eq!(kept.name(), "clicks");
    let kept_files = || {
        std::fs::read_dir(&spill)
            .unwrap()
            .filter(|entry| {
                entry
                    .as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with("-clicks.parquet")
            })
            .count()
    };
    assert_eq!(kept_files(), 1);
    // Read twice: the table stays while the guard lives.
    for _ in 0..2 {
        let batches = engine
            .collect("SELECT CAST(COUNT(*) AS BIGINT) FROM clicks", "counting")
            .await
            .unwrap();
        assert_eq!(int_values(&batches, 0), [1_000]);
    }
    drop(kept);
    assert_eq!(kept_files(), 0);
    assert!(
        engine
            .collect("SELECT * FROM clicks", "reading")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn sorted_objects_are_merged_not_sorted() {
    use arrow_array::RecordBatch;
    use arrow_schema::{DataType, Field, Schema};
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_in(dir.path());
    let schema = Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Int64, false),
    ]));
    // Three objects, each sorted by key, with keys interleaved between them.
    let mut objects = Vec::new();
    for part in 0..3i64 {
        let keys: Vec<String> = (0..500i64)
            .map(|i| format!("k{:05}", i * 3 + part))
            .collect();
        let values: Vec<i64> = (0..500i64).map(|i| i * 3 + part).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(keys)),
                Arc::new(Int64Array::from(values)),
            ],
        )
        .unwrap();
        let path = ObjectPath::from(format!("sorted/part-{part}.parquet"));
        lake.write_table(&path, vec![batch]).await.unwrap();
        objects.push(path);
    }
    let engine = QueryEngine::new(&lake, &EngineSettings::default()).unwrap();
    let sql = engine
        .register_sorted_union("parts", &objects, schema, &["key", "value"], &["key"])
        .await
        .unwrap();
    let plan = engine
        .collect(&format!("EXPLAIN {sql}"), "explaining")
        .await
        .unwrap();
    let plan_text: String = plan
        .iter()
        .flat_map(|b| {
            let c = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
            (0..c.len())
                .map(|i| c.value(i).to_owned())
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(plan_text.contains("SortPreservingMergeExec"), "{plan_text}");
    assert!(!plan_text.contains("SortExec:"), "{plan_text}");
    let batches = engine.collect(&sql, "merging").await.unwrap();
    let values = int_values(&batches, 1);
    assert_eq!(values, (0..1_500i64).collect::<Vec<_>>());
    // No objects: an empty result, not an error.
    let empty = engine
        .register_sorted_union("none", &[], objects_schema(), &["key"], &["key"])
        .await
        .unwrap();
    let rows: usize = engine
        .collect(&empty, "merging nothing")
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(rows, 0);
}

/// Every value of integer column `column` of `batches`, in order.
fn int_values(batches: &[arrow_array::RecordBatch], column: usize) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column(column)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect()
}

fn objects_schema() -> arrow_schema::SchemaRef {
    Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
        "key",
        arrow_schema::DataType::Utf8,
        false,
    )]))
}
