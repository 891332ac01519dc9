//! Version 1 of every object format of the lake, pinned by `testdata/*-v1.*` and read by
//! today's readers through the lake's own layout: an events object (event schema v1), an error
//! object, a run's list part, fallback and similar tables (recs schema v1) and its manifest
//! (manifest v1). A lake written by an earlier build must stay readable by training, publish and
//! query engines. A failing test here means an on-disk format changed: bump its version (the
//! event schema metadata, `MANIFEST_VERSION`, or a new table schema), keep a reader for version 1,
//! and add fixtures for the new version beside these rather than editing them.
//!
//! Regenerate (only when creating a new version's fixtures, never to make a test pass):
//! `cargo test -p newsrec-lake --test fixtures -- --ignored write_fixtures`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use arrow_array::RecordBatch;
use newsrec_event::{ClickEvent, EventType, SCHEMA_VERSION_KEY, arrow_schema, events_from_batch};
use newsrec_lake::{
    ErrorRecord, EventColumns, Lake, ObjectPath, RunManifest, TimeWindow,
    layout::{self, Partition},
    manifest::{
        DataCounts, DataWindow, Evaluation, Execution, MANIFEST_VERSION, ModelEntry, RunOutputs,
        Timings,
    },
    recs::{
        RankedArticle, SimilarArticles, UserRecs, fallback_from_batches, fallback_schema,
        fallback_to_batch, recs_from_batches, recs_schema, recs_to_batch, similar_from_batches,
        similar_schema, similar_to_batch,
    },
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

const WRITER: &str = "fixture-node";
const SEQ: u64 = 42;
const RUN_ID: &str = "2017-10-02-fixture";
/// 2017-10-01T05:00:00Z: the hour every fixture event and refused record falls in.
const HOUR_START_MS: i64 = 1_506_834_000_000;

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

fn partition() -> Partition {
    Partition::of_ts(HOUR_START_MS)
}

/// Events of one hour, in time order: every optional field set, none set, a view, two events
/// of the same millisecond (their order is kept), multi-byte UTF-8.
fn fixture_events() -> Vec<ClickEvent> {
    let event = |id: &str, user: &str, article: &str, offset_ms: i64| ClickEvent {
        event_id: id.into(),
        user_id: user.into(),
        article_id: article.into(),
        ts_ms: HOUR_START_MS + offset_ms,
        event_type: EventType::Click,
        session_id: None,
        dwell_ms: None,
        referrer: None,
    };
    vec![
        ClickEvent {
            session_id: Some("s-1".into()),
            dwell_ms: Some(12_500),
            referrer: Some("https://example.com/front?x=1".into()),
            ..event("e-1", "u1", "a1", 0)
        },
        event("e-2", "u2", "a1", 1_000),
        ClickEvent {
            event_type: EventType::View,
            ..event("e-3", "u1", "a2", 1_000)
        },
        ClickEvent {
            session_id: Some("sessão".into()),
            dwell_ms: Some(0),
            ..event("e-4", "leitor-ü", "notícia-ç", 3_599_999)
        },
    ]
}

/// Refused records of one arrival hour, from both APIs, with and without a line.
fn fixture_errors() -> Vec<ErrorRecord> {
    vec![
        ErrorRecord::validation(
            HOUR_START_MS + 10,
            "native",
            2,
            Some(3),
            "field \"ts\": expected RFC 3339 or epoch millis, got \"yesterday\"",
            b"{\"user_id\":\"u1\",\"article_id\":\"a1\",\"ts\":\"yesterday\"}",
        ),
        ErrorRecord::validation(
            HOUR_START_MS + 20,
            "firehose",
            0,
            None,
            "record is not UTF-8",
            &[0xff, 0xfe, 0x00],
        ),
    ]
}

fn item(article_id: &str, score: f32) -> RankedArticle {
    RankedArticle {
        article_id: article_id.into(),
        score,
    }
}

/// Lists of a run's part: users in order, ranks ascending, multi-byte ids, exact scores.
fn fixture_recs() -> Vec<UserRecs> {
    vec![
        UserRecs {
            user_id: "u1".into(),
            items: vec![item("a3", 0.875), item("a2", 0.5), item("a9", -0.0)],
        },
        UserRecs {
            user_id: "leitor-ü".into(),
            items: vec![item("notícia-ç", 12.25)],
        },
        UserRecs {
            user_id: "u3".into(),
            items: vec![item("a1", f32::from_bits(1)), item("a2", -3.0e-4)],
        },
    ]
}

fn fixture_fallback() -> Vec<RankedArticle> {
    vec![item("a1", 40.0), item("a2", 31.5), item("notícia-ç", 0.25)]
}

/// Similar lists, keyed by article.
fn fixture_similar() -> Vec<SimilarArticles> {
    vec![
        SimilarArticles {
            article_id: "a1".into(),
            items: vec![item("a2", 0.75), item("a3", 0.125)],
        },
        SimilarArticles {
            article_id: "a2".into(),
            items: vec![item("a1", 0.75)],
        },
    ]
}

/// A manifest with every field set, as training writes one.
fn fixture_manifest() -> RunManifest {
    let metrics = |hr: f64, users: u64| {
        serde_json::json!({
            "hr@10": hr, "recall@10": hr / 2.0, "ndcg@10": hr / 4.0, "users": users,
            "coverage": 0.125, "truth_in_train": 0.75,
        })
    };
    RunManifest {
        manifest_version: MANIFEST_VERSION,
        run_id: RUN_ID.into(),
        newsrec_version: "0.1.0".into(),
        created_at: "2017-10-02T03:04:05Z".into(),
        serving_date: "2017-10-02".into(),
        window: DataWindow {
            start: "2017-09-25".into(),
            end: "2017-10-02".into(),
            start_ms: 1_506_297_600_000,
            end_ms: 1_506_902_400_000,
        },
        config: serde_json::json!({"window_days": 7, "top_k": 3, "select_metric": "ndcg@10"}),
        counts: DataCounts {
            clicks: 1_234,
            duplicates: 5,
            other_events: 6,
            users: 3,
            items: 4,
            pairs: 9,
        },
        models: vec![ModelEntry {
            name: "cooccurrence".into(),
            params: serde_json::json!({"neighbours": 50}),
            stats: BTreeMap::from([("pairs".to_owned(), 17)]),
        }],
        evaluations: vec![
            Evaluation {
                role: "backtest".into(),
                test_date: "2017-10-01".into(),
                metrics: BTreeMap::from([
                    ("cooccurrence".to_owned(), metrics(0.5, 3)),
                    ("popularity".to_owned(), metrics(0.25, 3)),
                ]),
            },
            Evaluation {
                role: "served".into(),
                test_date: "2017-10-02".into(),
                metrics: BTreeMap::from([("cooccurrence".to_owned(), metrics(0.75, 2))]),
            },
        ],
        chosen_model: "cooccurrence".into(),
        chosen_because: "highest ndcg@10 in the backtest (0.125 against 0.0625)".into(),
        outputs: RunOutputs {
            users: 3,
            rows: 6,
            top_k: 3,
            parts: vec![layout::recs_part_name(0)],
            fallback: layout::FALLBACK_TABLE.into(),
            similar: Some(layout::SIMILAR_TABLE.into()),
            similar_articles: 2,
            als_factors: Some(layout::ALS_FACTORS_OBJECT.into()),
        },
        timings: Timings {
            read_ms: 1,
            fit_ms: 2,
            eval_ms: 3,
            write_ms: 4,
            total_ms: 10,
        },
        execution: Execution {
            starts: 2,
            resumed_from: Some(
                layout::checkpoint_object_path(RUN_ID, &layout::state_checkpoint_name(3))
                    .to_string(),
            ),
            checkpoints_written: 4,
            checkpoint_ms: 5,
            peak_rss_bytes: Some(123_456_789),
            rollups: None,
        },
        notes: Vec::new(),
    }
}

/// Where each fixture lives in a lake: (fixture file, object path).
fn fixture_objects() -> Vec<(&'static str, ObjectPath)> {
    vec![
        (
            "events-v1.parquet",
            layout::event_object_path(partition(), WRITER, SEQ),
        ),
        (
            "errors-v1.ndjson",
            layout::error_object_path(partition(), WRITER, SEQ),
        ),
        (
            "recs-v1.parquet",
            layout::run_object_path(RUN_ID, &layout::recs_part_name(0)),
        ),
        (
            "fallback-v1.parquet",
            layout::run_object_path(RUN_ID, layout::FALLBACK_TABLE),
        ),
        (
            "similar-v1.parquet",
            layout::run_object_path(RUN_ID, layout::SIMILAR_TABLE),
        ),
        (
            "manifest-v1.json",
            layout::run_object_path(RUN_ID, layout::MANIFEST_FILE),
        ),
    ]
}

/// A memory lake holding every fixture at its place in the layout.
async fn lake_of_fixtures() -> Lake {
    let lake = Lake::open("memory://").unwrap();
    for (file, path) in fixture_objects() {
        let bytes = std::fs::read(fixture_path(file)).unwrap();
        lake.put_object(&path, bytes).await.unwrap();
    }
    lake
}

fn bits(items: &[RankedArticle]) -> Vec<(String, u32)> {
    items
        .iter()
        .map(|item| (item.article_id.clone(), item.score.to_bits()))
        .collect()
}

/// Keys and score bits of keyed lists, so a fixture compares exactly (NaN-free, -0.0 apart).
fn keyed_bits<'a>(
    lists: impl IntoIterator<Item = (&'a str, &'a [RankedArticle])>,
) -> Vec<(String, Vec<(String, u32)>)> {
    lists
        .into_iter()
        .map(|(key, items)| (key.to_owned(), bits(items)))
        .collect()
}

fn assert_lists_equal(read: &[UserRecs], expected: &[UserRecs]) {
    let view = |lists: &'_ [UserRecs]| {
        keyed_bits(
            lists
                .iter()
                .map(|l| (l.user_id.as_str(), l.items.as_slice())),
        )
    };
    assert_eq!(view(read), view(expected));
}

fn assert_similar_equal(read: &[SimilarArticles], expected: &[SimilarArticles]) {
    let view = |lists: &'_ [SimilarArticles]| {
        keyed_bits(
            lists
                .iter()
                .map(|l| (l.article_id.as_str(), l.items.as_slice())),
        )
    };
    assert_eq!(view(read), view(expected));
}

fn assert_fields(batches: &[RecordBatch], expected: &arrow_schema::SchemaRef) {
    for batch in batches {
        assert_eq!(batch.schema().fields(), expected.fields());
    }
}

#[tokio::test]
async fn events_v1_fixture_reads_event_by_event() {
    let lake = lake_of_fixtures().await;
    let window = TimeWindow {
        start_ms: HOUR_START_MS,
        end_ms: HOUR_START_MS + 3_600_000,
    };
    let batches = lake.read_events(window, EventColumns::All).await.unwrap();
    assert_fields(&batches, &arrow_schema());
    // The reader's batches do not carry the file's schema metadata; the file itself says v1.
    let file = bytes::Bytes::from(std::fs::read(fixture_path("events-v1.parquet")).unwrap());
    let stored = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    assert_eq!(
        stored
            .schema()
            .metadata()
            .get(SCHEMA_VERSION_KEY)
            .map(String::as_str),
        Some("1"),
        "event schema version"
    );
    let read: Vec<ClickEvent> = batches
        .iter()
        .flat_map(|batch| events_from_batch(batch).unwrap())
        .collect();
    let expected = fixture_events();
    assert_eq!(read.len(), expected.len());
    // Whole events: every field, including any added later, is compared.
    assert_eq!(read.as_slice(), expected.as_slice());
    // Training reads a projection of the same object.
    let training = lake
        .read_events(window, EventColumns::Training)
        .await
        .unwrap();
    let rows: usize = training.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, expected.len());
}

#[tokio::test]
async fn errors_v1_fixture_reads_record_by_record() {
    let lake = lake_of_fixtures().await;
    let read = lake.read_errors(partition().date).await.unwrap();
    let expected = fixture_errors();
    assert_eq!(read.len(), expected.len());
    for (read, want) in read.iter().zip(&expected) {
        assert_eq!(read.arrival_timestamp, want.arrival_timestamp);
        assert_eq!(read.error_code, want.error_code);
        assert_eq!(read.error_message, want.error_message);
        assert_eq!(read.source, want.source);
        assert_eq!(read.record, want.record);
        assert_eq!(read.line, want.line);
        assert_eq!(read.raw_data, want.raw_data);
    }
}

#[tokio::test]
async fn recs_v1_fixture_reads_list_by_list() {
    let lake = lake_of_fixtures().await;
    let batches = lake
        .read_run_table(RUN_ID, &layout::recs_part_name(0))
        .await
        .unwrap();
    assert_fields(&batches, &recs_schema());
    assert_lists_equal(&recs_from_batches(&batches).unwrap(), &fixture_recs());
}

#[tokio::test]
async fn fallback_v1_fixture_reads_item_by_item() {
    let lake = lake_of_fixtures().await;
    let batches = lake
        .read_run_table(RUN_ID, layout::FALLBACK_TABLE)
        .await
        .unwrap();
    assert_fields(&batches, &fallback_schema());
    assert_eq!(
        bits(&fallback_from_batches(&batches).unwrap()),
        bits(&fixture_fallback())
    );
}

#[tokio::test]
async fn similar_v1_fixture_reads_list_by_list() {
    let lake = lake_of_fixtures().await;
    let batches = lake
        .read_run_table(RUN_ID, layout::SIMILAR_TABLE)
        .await
        .unwrap();
    assert_fields(&batches, &similar_schema());
    assert_similar_equal(&similar_from_batches(&batches).unwrap(), &fixture_similar());
}

#[tokio::test]
async fn manifest_v1_fixture_reads_field_by_field() {
    let lake = lake_of_fixtures().await;
    assert_eq!(lake.list_runs().await.unwrap(), [RUN_ID]);
    let read: RunManifest = lake.read_manifest(RUN_ID).await.unwrap();
    let expected = fixture_manifest();
    assert_eq!(read.manifest_version, 1);
    assert_eq!(read.run_id, expected.run_id);
    assert_eq!(read.newsrec_version, expected.newsrec_version);
    assert_eq!(read.created_at, expected.created_at);
    assert_eq!(read.serving_date, expected.serving_date);
    assert_eq!(read.window, expected.window);
    assert_eq!(read.config, expected.config);
    assert_eq!(read.counts, expected.counts);
    assert_eq!(read.models, expected.models);
    assert_eq!(read.evaluations, expected.evaluations);
    assert_eq!(read.chosen_model, expected.chosen_model);
    assert_eq!(read.chosen_because, expected.chosen_because);
    assert_eq!(read.outputs, expected.outputs);
    assert_eq!(read.timings, expected.timings);
    assert_eq!(read.execution, expected.execution);
}

#[tokio::test]
#[ignore = "writes testdata/*-v1.*; run only to create a new version's fixtures"]
async fn write_fixtures() {
    let lake = Lake::open("memory://").unwrap();
    let events = vec![Arc::new(fixture_events())];
    assert_eq!(
        lake.write_events(WRITER, SEQ, &events).await.unwrap().len(),
        1
    );
    assert_eq!(
        lake.write_errors(WRITER, SEQ, &fixture_errors())
            .await
            .unwrap(),
        1
    );
    let tables = [
        (
            layout::recs_part_name(0),
            recs_to_batch(&fixture_recs()).unwrap(),
        ),
        (
            layout::FALLBACK_TABLE.to_owned(),
            fallback_to_batch(&fixture_fallback()).unwrap(),
        ),
        (
            layout::SIMILAR_TABLE.to_owned(),
            similar_to_batch(&fixture_similar()).unwrap(),
        ),
    ];
    for (name, batch) in tables {
        lake.write_run_table(RUN_ID, &name, vec![batch])
            .await
            .unwrap();
    }
    lake.write_manifest(RUN_ID, &fixture_manifest())
        .await
        .unwrap();
    for (file, path) in fixture_objects() {
        let bytes = lake.get_object(&path).await.unwrap();
        std::fs::write(fixture_path(file), bytes).unwrap();
    }
}
