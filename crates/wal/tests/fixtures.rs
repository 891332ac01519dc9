//! Segment format version 1, pinned by `testdata/segment-v1.wal`: a log written by an earlier
//! build must replay record for record. A failing test here means the on-disk format changed:
//! bump the version (the magic's last byte), keep a reader for version 1, and add a fixture for
//! the new version beside this one rather than editing it.
//!
//! Regenerate (only when creating a new version's fixture, never to make a test pass):
//! `cargo test -p newsrec-wal --test fixtures -- --ignored write_fixture`.

use std::path::{Path, PathBuf};

use newsrec_wal::{Durable, Record, Replay, SEGMENT_HEADER_BYTES, Wal, WalOptions};
use tokio::sync::mpsc;

const FIXTURE: &str = "testdata/segment-v1.wal";

/// The fixture's first LSN (a wall clock in microseconds, as a new log starts at).
const FIRST_LSN: u64 = 1_700_000_000_000_000;

/// What the fixture holds: ingest's kinds (1 data, 2 commit marker), an empty payload, and a
/// payload longer than 255 bytes so every byte of the length field is exercised.
fn fixture_records() -> Vec<Record> {
    let record = |offset: u64, kind: u8, payload: Vec<u8>| Record {
        lsn: FIRST_LSN + offset,
        kind,
        payload,
    };
    vec![
        record(0, 1, b"first request".to_vec()),
        record(1, 1, Vec::new()),
        record(2, 1, (0..300u32).map(|n| (n * 7 % 256) as u8).collect()),
        record(3, 2, FIRST_LSN.to_le_bytes().to_vec()),
        record(4, 1, "ü".as_bytes().to_vec()),
    ]
}

/// Where a segment starting at `first_lsn` lives in a log folder (`<first lsn:020>.wal`).
fn segment_path(dir: &Path, first_lsn: u64) -> PathBuf {
    dir.join(format!("{first_lsn:020}.wal"))
}

fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE)
}

fn open(dir: &Path) -> (Wal<u64>, Replay, mpsc::UnboundedReceiver<Durable<u64>>) {
    let (sink, consumer) = mpsc::unbounded_channel();
    let (wal, replay) = Wal::open(dir, WalOptions::default(), sink).unwrap();
    (wal, replay, consumer)
}

/// Writes the fixture's records with today's writer into a fresh folder; returns the segment.
///
/// A new log starts at the wall clock, so the folder is seeded with a segment holding only its
/// header (magic `NRWAL\0\0\x01`, first LSN little-endian): the writer appends after it, as it
/// does after any restart.
async fn write_with_todays_writer() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let mut header = b"NRWAL\0\0\x01".to_vec();
    header.extend_from_slice(&FIRST_LSN.to_le_bytes());
    assert_eq!(header.len(), SEGMENT_HEADER_BYTES);
    std::fs::write(segment_path(dir.path(), FIRST_LSN), &header).unwrap();

    let (wal, replay, _consumer) = open(dir.path());
    assert_eq!(replay.next_lsn, FIRST_LSN);
    let handle = wal.handle();
    for record in fixture_records() {
        let lsn = if record.kind == 1 {
            handle
                .append(record.kind, record.payload, record.lsn)
                .await
                .unwrap()
        } else {
            handle
                .append_marker(record.kind, record.payload)
                .await
                .unwrap()
        };
        assert_eq!(lsn, record.lsn);
    }
    drop(handle);
    tokio::task::spawn_blocking(move || wal.close())
        .await
        .unwrap();
    std::fs::read(segment_path(dir.path(), FIRST_LSN)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_v1_fixture_replays_record_by_record() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = std::fs::read(fixture_path()).unwrap();
    std::fs::write(segment_path(dir.path(), FIRST_LSN), &fixture).unwrap();

    let (wal, replay, _consumer) = open(dir.path());
    let expected = fixture_records();
    assert_eq!(replay.records.len(), expected.len());
    for (read, want) in replay.records.iter().zip(&expected) {
        assert_eq!(read.lsn, want.lsn);
        assert_eq!(read.kind, want.kind, "kind of lsn {}", want.lsn);
        assert_eq!(read.payload, want.payload, "payload of lsn {}", want.lsn);
    }
    assert_eq!(replay.truncated_bytes, 0, "no byte of the fixture was cut");
    assert_eq!(replay.next_lsn, FIRST_LSN + expected.len() as u64);
    tokio::task::spawn_blocking(move || wal.close())
        .await
        .unwrap();
}

/// Stricter than reading: today's writer still produces version 1's exact bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn todays_writer_writes_the_v1_bytes() {
    let fixture = std::fs::read(fixture_path()).unwrap();
    assert_eq!(write_with_todays_writer().await, fixture);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes testdata/segment-v1.wal; run only to create a new version's fixture"]
async fn write_fixture() {
    std::fs::write(fixture_path(), write_with_todays_writer().await).unwrap();
}
