//! The log's promises, through its public API: what was acknowledged is replayed in order after
//! a restart, a torn tail is cut, damage in the middle stops the node, group commit shares
//! fsyncs, and released segments are deleted.

use std::{path::Path, sync::atomic::Ordering};

use newsrec_wal::{Durable, Replay, Wal, WalError, WalOptions};
use tokio::sync::mpsc;

type Opened = (Wal<u32>, Replay, mpsc::UnboundedReceiver<Durable<u32>>);

fn open(dir: &Path, options: WalOptions) -> Result<Opened, WalError> {
    let (sink, consumer) = mpsc::unbounded_channel();
    let (wal, replay) = Wal::open(dir, options, sink)?;
    Ok((wal, replay, consumer))
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_come_back_in_order_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, replay, mut consumer) = open(dir.path(), WalOptions::default()).unwrap();
    assert!(replay.records.is_empty());
    let first = replay.next_lsn;
    let handle = wal.handle();
    let mut lsns = Vec::new();
    for i in 0..20u32 {
        lsns.push(handle.append(1, i.to_le_bytes().to_vec(), i).await.unwrap());
    }
    assert_eq!(lsns, (first..first + 20).collect::<Vec<_>>());
    for i in 0..20u32 {
        let durable = consumer.recv().await.unwrap();
        assert_eq!((durable.lsn, durable.item), (first + u64::from(i), i));
    }
    let marker = handle.append_marker(9, b"m".to_vec()).await.unwrap();
    assert_eq!(marker, first + 20);
    drop(handle);
    tokio::task::spawn_blocking(move || wal.close())
        .await
        .unwrap();
    assert!(consumer.try_recv().is_err(), "markers are not handed on");

    let (_wal, replay, _consumer) = open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(replay.records.len(), 21);
    assert_eq!(replay.next_lsn, first + 21);
    assert_eq!(replay.truncated_bytes, 0);
    for (i, record) in replay.records.iter().take(20).enumerate() {
        assert_eq!(record.payload, (i as u32).to_le_bytes());
        assert_eq!(record.kind, 1);
    }
    assert_eq!(replay.records[20].kind, 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _replay, mut consumer) = open(dir.path(), WalOptions::default()).unwrap();
    let tasks: Vec<_> = (0..400u32)
        .map(|i| {
            let handle = wal.handle();
            tokio::spawn(async move { handle.append(1, vec![0; 100], i).await.unwrap() })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let stats = wal.handle();
    let fsyncs = stats.stats().fsyncs.load(Ordering::Relaxed);
    assert_eq!(stats.stats().records.load(Ordering::Relaxed), 400);
    assert!(
        fsyncs < 400,
        "400 appends took {fsyncs} fsyncs: no grouping"
    );
    // The consumer sees strictly increasing LSNs whatever order the tasks ran in.
    let mut last = 0;
    for _ in 0..400 {
        let durable = consumer.recv().await.unwrap();
        assert!(durable.lsn > last);
        last = durable.lsn;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_cut_and_appends_continue_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, replay, _consumer) = open(dir.path(), WalOptions::default()).unwrap();
    let first = replay.next_lsn;
    let handle = wal.handle();
    for i in 0..3u32 {
        handle.append(1, vec![i as u8; 10], i).await.unwrap();
    }
    drop(handle);
    tokio::task::spawn_blocking(move || wal.close())
        .await
        .unwrap();
    // A crash in the middle of the next group commit: half a frame at the end.
    let path = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[7, 0, 0, 0, 1, 2]);
    std::fs::write(&path, &bytes).unwrap();

    let (wal, replay, _consumer) = open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(replay.records.len(), 3);
    assert_eq!(replay.truncated_bytes, 6);
    let next = wal.handle().append(1, vec![9], 9).await.unwrap();
    assert_eq!(next, first + 3);
    tokio::task::spawn_blocking(move || wal.close())
        .await
        .unwrap();
    let (_wal, replay, _consumer) = open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(replay.records.len(), 4);
    assert_eq!(replay.records[3].payload, vec![9]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_in_a_closed_segment_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions {
        segment_bytes: 100,
        ..WalOptions::default()
    };
    let (wal, _replay, _consumer) = open(dir.path(), options).unwrap();
    let handle = wal.handle();
    for i in 0..10u32 {
        handle.append(1, vec![1; 60], i).await.unwrap();
    }
    drop(handle);
    tokio::task::spawn_blocking(move || wal.close())
        .await
        .unwrap();
    let all = segments(dir.path());
    assert!(all.len() >= 3, "rotation happened: {all:?}");
    let mut bytes = std::fs::read(&all[1]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&all[1], &bytes).unwrap();
    let error = open(dir.path(), options).expect_err("damage is refused");
    assert!(
        matches!(&error, WalError::Corrupt { path, .. } if path == &all[1]),
        "{error}"
    );
    assert!(error.to_string().contains("checksum"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_segments_are_deleted_and_numbering_survives_it() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions {
        segment_bytes: 100,
        ..WalOptions::default()
    };
    let (wal, replay, _consumer) = open(dir.path(), options).unwrap();
    let first = replay.next_lsn;
    let handle = wal.handle();
    let mut last = 0;
    for i in 0..10u32 {
        last = handle.append(1, vec![1; 60], i).await.unwrap();
    }
    let before = segments(dir.path()).len();
    handle.release_before(last + 1);
    // Release is asynchronous; a marker append after it is ordered behind it.
    handle.append_marker(2, vec![]).await.unwrap();
    let after = segments(dir.path());
    // Left: the segment that was active at the release (it may have been closed since by the
    // marker) and the one after it.
    assert!(
        after.len() <= 2,
        "{} of {before} segments kept",
        after.len()
    );
    drop(handle);
    tokio::task::spawn_blocking(move || wal.close())
        .await
        .unwrap();
    let (_wal, replay, _consumer) = open(dir.path(), options).unwrap();
    assert_eq!(replay.next_lsn, first + 11);
    assert!(
        replay.records.len() <= 3,
        "{} records kept",
        replay.records.len()
    );
    assert!(replay.records.iter().all(|r| r.lsn > first + 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_log_does_not_reuse_numbers_of_a_wiped_one() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, replay, _consumer) = open(dir.path(), WalOptions::default()).unwrap();
    let old = wal.handle().append(1, vec![], 0).await.unwrap();
    assert!(old >= replay.next_lsn);
    tokio::task::spawn_blocking(move || wal.close())
        .await
        .unwrap();
    std::fs::remove_dir_all(dir.path()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2));
    let (_wal, replay, _consumer) = open(dir.path(), WalOptions::default()).unwrap();
    assert!(replay.next_lsn > old);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_writes_what_was_queued_and_refuses_later_appends() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _replay, mut consumer) = open(dir.path(), WalOptions::default()).unwrap();
    let handle = wal.handle();
    for i in 0..50u32 {
        // Queued, not awaited: close must still write them.
        drop(handle.enqueue(1, vec![0; 8], i).unwrap());
    }
    tokio::task::spawn_blocking(move || wal.close())
        .await
        .unwrap();
    let mut seen = 0;
    while consumer.try_recv().is_ok() {
        seen += 1;
    }
    assert_eq!(seen, 50);
    assert!(handle.append(1, vec![], 0).await.is_err());
}
