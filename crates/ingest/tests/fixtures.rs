//! Ingest's write-ahead log records, version 1 (`docs/wal-format.md`: a data record is a
//! postcard `Submission`, a commit marker a postcard `{ last }`), pinned by
//! `testdata/wal-v1.wal`: a node upgraded over a log an earlier build wrote must redo exactly its
//! uncommitted records. The segment holds a committed request, its commit marker, and a request
//! acknowledged but not yet in the lake. A failing test here means the record format changed
//! (the segment framing, `Submission`, `ClickEvent` or `ErrorRecord` as postcard encodes them):
//! bump the log's format version, keep a reader for version 1, and add a fixture for the new
//! version beside this one rather than editing it.
//!
//! Regenerate (only when creating a new version's fixture, never to make a test pass):
//! `cargo test -p newsrec-ingest --test fixtures -- --ignored write_fixture`.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use newsrec_event::{ClickEvent, EventType, events_from_batch};
use newsrec_ingest::{AckMode, PipelineOptions, ReplayReport, Submission};
use newsrec_lake::{ErrorRecord, EventColumns, Lake, TimeWindow, layout};

const NODE_ID: &str = "fixture-node";
/// The segment's first LSN (a wall clock in microseconds, as a new log starts at).
const FIRST_LSN: u64 = 1_700_000_000_000_000;
/// The acknowledged request the lake does not hold yet: after the committed one and its marker.
const UNCOMMITTED_LSN: u64 = FIRST_LSN + 2;
/// 2017-10-01T05:00:00Z: the hour of every fixture event and refusal.
const HOUR_START_MS: i64 = 1_506_834_000_000;

fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/wal-v1.wal")
}

fn segment_path(dir: &Path) -> PathBuf {
    dir.join(format!("{FIRST_LSN:020}.wal"))
}

fn options(wal_dir: &Path) -> PipelineOptions {
    PipelineOptions {
        node_id: NODE_ID.into(),
        wal_dir: wal_dir.to_owned(),
        wal: Default::default(),
        // Nothing is flushed before shutdown, so each request stays one record.
        buffer_bytes: 1 << 30,
        buffer_interval: Duration::from_secs(3600),
        max_backlog_bytes: 1 << 30,
    }
}

fn event(id: &str, user: &str, offset_ms: i64) -> ClickEvent {
    ClickEvent {
        event_id: id.into(),
        user_id: user.into(),
        article_id: "a1".into(),
        ts_ms: HOUR_START_MS + offset_ms,
        event_type: EventType::Click,
        session_id: None,
        dwell_ms: None,
        referrer: None,
    }
}

/// The request that was committed to the lake before the fixture was taken.
fn committed_submission() -> Submission {
    Submission {
        events: Arc::new(vec![event("committed-1", "u1", 0)]),
        errors: Vec::new(),
    }
}

/// The request acknowledged from the log only: every event field in use, and a refusal.
fn uncommitted_submission() -> Submission {
    Submission {
        events: Arc::new(vec![
            ClickEvent {
                session_id: Some("sessão-1".into()),
                dwell_ms: Some(4_200),
                referrer: Some("https://example.com/".into()),
                ..event("pending-1", "leitor-ü", 1_000)
            },
            ClickEvent {
                event_type: EventType::View,
                ..event("pending-2", "u2", 2_000)
            },
        ]),
        errors: vec![ErrorRecord::validation(
            HOUR_START_MS + 3_000,
            "native",
            1,
            Some(2),
            "field \"user_id\": must not be empty",
            b"{\"user_id\":\"\"}",
        )],
    }
}

/// Writes the fixture with today's pipeline; returns the segment's bytes.
///
/// A new log starts at the wall clock, so the folder is seeded with a segment holding only its
/// header (magic `NRWAL\0\0\x01`, first LSN little-endian), which the log appends after.
async fn write_with_todays_pipeline() -> Vec<u8> {
    let wal_dir = tempfile::tempdir().unwrap();
    let mut header = b"NRWAL\0\0\x01".to_vec();
    header.extend_from_slice(&FIRST_LSN.to_le_bytes());
    std::fs::write(segment_path(wal_dir.path()), header).unwrap();
    let lake = Lake::open("memory://").unwrap();

    // The first request reaches the lake at shutdown: a data record, then its commit marker.
    let (pipeline, task, _) = newsrec_ingest::start(lake.clone(), options(wal_dir.path()))
        .await
        .unwrap();
    let lsn = pipeline
        .submit(committed_submission(), AckMode::Wal)
        .await
        .unwrap();
    assert_eq!(lsn, Some(FIRST_LSN));
    task.shutdown().await;

    // The second is acknowledged (on disk) but not flushed when the segment is copied.
    let (pipeline, task, _) = newsrec_ingest::start(lake, options(wal_dir.path()))
        .await
        .unwrap();
    let lsn = pipeline
        .submit(uncommitted_submission(), AckMode::Wal)
        .await
        .unwrap();
    assert_eq!(lsn, Some(UNCOMMITTED_LSN));
    let bytes = std::fs::read(segment_path(wal_dir.path())).unwrap();
    task.shutdown().await;
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_v1_fixture_redoes_exactly_the_uncommitted_request() {
    let wal_dir = tempfile::tempdir().unwrap();
    std::fs::write(
        segment_path(wal_dir.path()),
        std::fs::read(fixture_path()).unwrap(),
    )
    .unwrap();
    let lake = Lake::open("memory://").unwrap();
    let (_pipeline, task, report) = newsrec_ingest::start(lake.clone(), options(wal_dir.path()))
        .await
        .unwrap();
    let expected = uncommitted_submission();
    assert_eq!(
        report,
        ReplayReport {
            records: 3,
            redone_records: 1,
            redone_events: expected.events.len(),
            redone_errors: expected.errors.len(),
            truncated_bytes: 0,
        }
    );
    task.shutdown().await;

    // Only the uncommitted request is in the lake, as batch `<node>-<its lsn>`.
    let window = TimeWindow {
        start_ms: HOUR_START_MS,
        end_ms: HOUR_START_MS + 3_600_000,
    };
    let objects = lake.list_event_objects(window).await.unwrap();
    let names: Vec<_> = objects.iter().map(|meta| meta.location.clone()).collect();
    let partition = layout::Partition::of_ts(HOUR_START_MS);
    assert_eq!(
        names,
        [layout::event_object_path(
            partition,
            NODE_ID,
            UNCOMMITTED_LSN
        )]
    );
    let read: Vec<ClickEvent> = lake
        .read_events(window, EventColumns::All)
        .await
        .unwrap()
        .iter()
        .flat_map(|batch| events_from_batch(batch).unwrap())
        .collect();
    assert_eq!(read.len(), expected.events.len());
    // Whole events: every field, including any added later, is compared.
    assert_eq!(read.as_slice(), expected.events.as_slice());
    let errors = lake.read_errors(partition.date).await.unwrap();
    assert_eq!(errors.len(), expected.errors.len());
    for (read, want) in errors.iter().zip(&expected.errors) {
        assert_eq!(read.arrival_timestamp, want.arrival_timestamp);
        assert_eq!(read.error_code, want.error_code);
        assert_eq!(read.error_message, want.error_message);
        assert_eq!(read.source, want.source);
        assert_eq!(read.record, want.record);
        assert_eq!(read.line, want.line);
        assert_eq!(read.raw_data, want.raw_data);
    }
}

/// Stricter than reading: today's pipeline still writes version 1's exact bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn todays_pipeline_writes_the_v1_bytes() {
    assert!(
        write_with_todays_pipeline().await == std::fs::read(fixture_path()).unwrap(),
        "the log records differ from testdata/wal-v1.wal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes testdata/wal-v1.wal; run only to create a new version's fixture"]
async fn write_fixture() {
    std::fs::write(fixture_path(), write_with_todays_pipeline().await).unwrap();
}
