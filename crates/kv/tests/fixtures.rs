//! List value format version 1 (every backend stores lists, similar lists and the fallback in
//! it), pinned by `testdata/list-v1.bin`: a generation written by an earlier build must keep
//! serving. A failing test here means the stored format changed: bump the version byte, keep a
//! decoder for version 1, and add a fixture for the new version beside this one rather than
//! editing it.
//!
//! Regenerate (only when creating a new version's fixture, never to make a test pass):
//! `cargo test -p newsrec-kv --test fixtures -- --ignored write_fixture`.

use std::path::{Path, PathBuf};

use newsrec_kv::{RecItem, decode_items, encode_items};

fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/list-v1.bin")
}

/// What the fixture holds: ordinary ids and scores, a multi-byte UTF-8 id, a negative, a zero,
/// a subnormal and the largest finite score, so every byte of the score field is exercised.
fn fixture_items() -> Vec<RecItem> {
    let item = |article_id: &str, score: f32| RecItem {
        article_id: article_id.to_owned(),
        score,
    };
    vec![
        item("article-1", 2.5),
        item("ümlaut-ß", 1.0e-3),
        item("a", 0.0),
        item("negative", -17.25),
        item("tiny", f32::from_bits(1)),
        item(&"x".repeat(256), f32::MAX),
    ]
}

#[test]
fn list_v1_fixture_decodes_item_by_item() {
    let fixture = std::fs::read(fixture_path()).unwrap();
    let decoded = decode_items(&fixture).unwrap();
    let expected = fixture_items();
    assert_eq!(decoded.len(), expected.len());
    for (position, (read, want)) in decoded.iter().zip(&expected).enumerate() {
        assert_eq!(read.article_id, want.article_id, "item {position}");
        assert_eq!(
            read.score.to_bits(),
            want.score.to_bits(),
            "score of item {position}"
        );
    }
}

/// Stricter than decoding: today's encoder still produces version 1's exact bytes.
#[test]
fn todays_encoder_writes_the_v1_bytes() {
    let fixture = std::fs::read(fixture_path()).unwrap();
    assert_eq!(encode_items(&fixture_items()).unwrap(), fixture);
}

#[test]
#[ignore = "writes testdata/list-v1.bin; run only to create a new version's fixture"]
fn write_fixture() {
    std::fs::write(fixture_path(), encode_items(&fixture_items()).unwrap()).unwrap();
}
