//! The entry payload: clicks ⇄ the bytes of a stream entry's `c` field.
//!
//! Owns the feed's wire format. Pure functions, no I/O: the subscriber decodes whatever a
//! stream holds, so [`decode_clicks`] is total (it never panics, on any input) and bounded (it
//! never allocates more than a small multiple of its input).
//!
//! # Format, version 1
//!
//! ```text
//! payload   = version count click{count}
//! version   = 0x01                                   (one byte)
//! count     = uvarint                                 number of clicks, at least 1 from publishers
//! click     = user_len user_id article_len article_id ts_delta
//! user_len  = uvarint ≤ 256, then that many bytes of UTF-8
//! article_len = uvarint ≤ 256, then that many bytes of UTF-8
//! ts_delta  = zigzag uvarint of ts_ms − previous ts_ms (wrapping i64 arithmetic; the previous
//!             ts_ms of the first click is 0)
//! uvarint   = LEB128: 7 bits per byte, least significant first, high bit set on all but the
//!             last byte; at most 10 bytes, shortest form only (no trailing 0x00 byte)
//! ```
//!
//! Nothing may follow the last click. Why this shape: a publish call carries clicks acked
//! together, so their timestamps are close and the delta usually takes one to three bytes; a
//! click with two 10-byte ids is about 25 bytes. The version byte comes first so a future
//! format can be rolled out by upgrading serve nodes (readers) before ingest nodes (writers); a
//! reader meeting an unknown version skips the entry and counts it as bad. The bytes of one
//! version are frozen: `testdata/clicks-v1.bin` pins version 1.

use std::fmt;

use crate::Click;

/// The format version [`encode_clicks`] writes and [`decode_clicks`] reads.
pub const FORMAT_VERSION: u8 = 1;

/// The longest user or article id the feed carries, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// The fewest bytes one click takes: two empty ids and a one-byte delta. Bounds the click
/// count a payload of a given length can claim, so garbage cannot make the decoder allocate.
const MIN_CLICK_BYTES: usize = 3;

/// A uvarint never needs more bytes than this for a u64.
const MAX_VARINT_BYTES: usize = 10;

/// Which part of a payload a [`DecodeError`] or [`EncodeError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The click count after the version byte.
    Count,
    /// A click's `user_id` (its length or its bytes).
    UserId,
    /// A click's `article_id` (its length or its bytes).
    ArticleId,
    /// A click's `ts_ms` delta.
    Timestamp,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Count => "click count",
            Field::UserId => "user_id",
            Field::ArticleId => "article_id",
            Field::Timestamp => "ts_ms",
        })
    }
}

/// Where a field sits: the click (0-based) it belongs to, if any, and the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The click's index in the entry; `None` for the header (the count).
    pub click: Option<usize>,
    /// The field.
    pub field: Field,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.click {
            Some(click) => write!(f, "click {click} field {}", self.field),
            None => write!(f, "{}", self.field),
        }
    }
}

/// Why a payload could not be decoded. Every variant says where (byte offset, click, field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Zero bytes: not even a version.
    #[error("empty click payload: expected a version byte")]
    Empty,
    /// A version this build does not read.
    #[error(
        "unsupported click payload version {version} (this build reads version {FORMAT_VERSION}); \
         upgrade the serve nodes before the ingest nodes"
    )]
    UnsupportedVersion {
        /// The version byte found.
        version: u8,
    },
    /// The payload ends inside a field.
    #[error("click payload truncated at byte {offset} in {at}: {needed} more bytes needed")]
    Truncated {
        /// Where.
        at: Position,
        /// The payload length (where it ended).
        offset: usize,
        /// How many more bytes the field needed (for a varint: at least this many).
        needed: usize,
    },
    /// A varint above `u64::MAX`, longer than 10 bytes, or not in its shortest form (a
    /// needless trailing zero byte): every value has exactly one encoding, so a payload that
    /// decodes re-encodes to the same bytes.
    #[error(
        "click payload has a malformed varint at byte {offset} in {at} (overlong or above 2^64)"
    )]
    BadVarint {
        /// Where.
        at: Position,
        /// The varint's first byte.
        offset: usize,
    },
    /// A count no payload of this length can hold.
    #[error(
        "click payload claims {count} clicks but only {remaining} bytes follow at byte {offset} \
         (each click takes at least {MIN_CLICK_BYTES})"
    )]
    CountTooLarge {
        /// The claimed count.
        count: u64,
        /// The bytes after the count.
        remaining: usize,
        /// The count's first byte.
        offset: usize,
    },
    /// An id longer than [`MAX_ID_BYTES`].
    #[error("click payload {at} at byte {offset} is {len} bytes long, more than {MAX_ID_BYTES}")]
    IdTooLong {
        /// Where.
        at: Position,
        /// The length prefix's first byte.
        offset: usize,
        /// The claimed length.
        len: u64,
    },
    /// An id that is not UTF-8.
    #[error(
        "click payload {at} at byte {offset} is not UTF-8 (invalid from its byte {valid_up_to})"
    )]
    NotUtf8 {
        /// Where.
        at: Position,
        /// The id's first byte.
        offset: usize,
        /// How many leading bytes of the id are valid UTF-8.
        valid_up_to: usize,
    },
    /// Bytes after the last click.
    #[error("click payload has {extra} bytes after its last click (at byte {offset})")]
    TrailingBytes {
        /// How many.
        extra: usize,
        /// Where they start.
        offset: usize,
    },
}

/// Why clicks could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// An id longer than [`MAX_ID_BYTES`]: the feed refuses it rather than carry what no
    /// reader accepts.
    #[error("{at} is {len} bytes long, more than the feed's {MAX_ID_BYTES}")]
    IdTooLong {
        /// Where (the click's index in the slice given).
        at: Position,
        /// Its length in bytes.
        len: usize,
    },
}

/// Encodes clicks as a version-1 payload (see the module doc).
pub fn encode_clicks(clicks: &[Click]) -> Result<Vec<u8>, EncodeError> {
    if let Some(error) = clicks
        .iter()
        .enumerate()
        .find_map(|(index, click)| check(index, click))
    {
        return Err(error);
    }
    Ok(encode_checked(clicks.iter()))
}

/// Why `click` (at `index`) cannot be encoded, if it cannot.
pub(crate) fn check(index: usize, click: &Click) -> Option<EncodeError> {
    [
        (Field::UserId, click.user_id.len()),
        (Field::ArticleId, click.article_id.len()),
    ]
    .into_iter()
    .find(|(_, len)| *len > MAX_ID_BYTES)
    .map(|(field, len)| EncodeError::IdTooLong {
        at: Position {
            click: Some(index),
            field,
        },
        len,
    })
}

/// Encodes clicks that passed [`check`].
pub(crate) fn encode_checked<'a>(clicks: impl ExactSizeIterator<Item = &'a Click>) -> Vec<u8> {
    let count = clicks.len();
    let mut out = Vec::with_capacity(1 + MAX_VARINT_BYTES + count * 24);
    out.push(FORMAT_VERSION);
    put_uvarint(&mut out, count as u64);
    let mut previous_ts: i64 = 0;
    for click in clicks {
        debug_assert!(
            check(0, click).is_none(),
            "encode_checked given an unchecked click"
        );
        for id in [&click.user_id, &click.article_id] {
            put_uvarint(&mut out, id.len() as u64);
            out.extend_from_slice(id.as_bytes());
        }
        // Wrapping: any two i64 have a delta that round-trips, even i64::MIN after i64::MAX.
        put_uvarint(&mut out, zigzag(click.ts_ms.wrapping_sub(previous_ts)));
        previous_ts = click.ts_ms;
    }
    out
}

/// Decodes a payload written by [`encode_clicks`] (any version this build reads).
pub fn decode_clicks(bytes: &[u8]) -> Result<Vec<Click>, DecodeError> {
    let (&version, _) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version != FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion { version });
    }
    let mut reader = Reader { bytes, offset: 1 };
    let header = Position {
        click: None,
        field: Field::Count,
    };
    let count_offset = reader.offset;
    let count = reader.uvarint(header)?;
    let remaining = bytes.len() - reader.offset;
    if count > (remaining / MIN_CLICK_BYTES) as u64 {
        return Err(DecodeError::CountTooLarge {
            count,
            remaining,
            offset: count_offset,
        });
    }
    // Bounded by the check above: at most one click per three input bytes.
    let mut clicks = Vec::with_capacity(count as usize);
    let mut previous_ts: i64 = 0;
    for index in 0..count as usize {
        let user_id = reader.id(index, Field::UserId)?;
        let article_id = reader.id(index, Field::ArticleId)?;
        let delta = unzigzag(reader.uvarint(Position {
            click: Some(index),
            field: Field::Timestamp,
        })?);
        let ts_ms = previous_ts.wrapping_add(delta);
        previous_ts = ts_ms;
        clicks.push(Click {
            user_id,
            article_id,
            ts_ms,
        });
    }
    if reader.offset != bytes.len() {
        return Err(DecodeError::TrailingBytes {
            extra: bytes.len() - reader.offset,
            offset: reader.offset,
        });
    }
    Ok(clicks)
}

/// A cursor over a payload.
struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl Reader<'_> {
    fn uvarint(&mut self, at: Position) -> Result<u64, DecodeError> {
        let start = self.offset;
        let mut value: u64 = 0;
        for index in 0..MAX_VARINT_BYTES {
            let Some(&byte) = self.bytes.get(start + index) else {
                return Err(DecodeError::Truncated {
                    at,
                    offset: self.bytes.len(),
                    needed: 1,
                });
            };
            let bits = u64::from(byte & 0x7f);
            // The tenth byte holds bit 63 only; anything above would be lost.
            if index == MAX_VARINT_BYTES - 1 && bits > 1 {
                return Err(DecodeError::BadVarint { at, offset: start });
            }
            value |= bits << (7 * index);
            if byte & 0x80 == 0 {
                if byte == 0 && index > 0 {
                    return Err(DecodeError::BadVarint { at, offset: start });
                }
                self.offset = start + index + 1;
                return Ok(value);
            }
        }
        Err(DecodeError::BadVarint { at, offset: start })
    }

    fn id(&mut self, click: usize, field: Field) -> Result<String, DecodeError> {
        let at = Position {
            click: Some(click),
            field,
        };
        let length_offset = self.offset;
        let len = self.uvarint(at)?;
        if len > MAX_ID_BYTES as u64 {
            return Err(DecodeError::IdTooLong {
                at,
                offset: length_offset,
                len,
            });
        }
        let len = len as usize;
        let start = self.offset;
        let available = self.bytes.len() - start;
        if len > available {
            return Err(DecodeError::Truncated {
                at,
                offset: self.bytes.len(),
                needed: len - available,
            });
        }
        let raw = &self.bytes[start..start + len];
        let id = std::str::from_utf8(raw).map_err(|error| DecodeError::NotUtf8 {
            at,
            offset: start,
            valid_up_to: error.valid_up_to(),
        })?;
        self.offset = start + len;
        Ok(id.to_owned())
    }
}

fn put_uvarint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn click(user: &str, article: &str, ts_ms: i64) -> Click {
        Click {
            user_id: user.into(),
            article_id: article.into(),
            ts_ms,
        }
    }

    fn fixture_clicks() -> Vec<Click> {
        vec![
            click("u1", "a1", 1_700_000_000_000),
            click("u1", "a2", 1_700_000_000_250),
            click("ü", "", 1_699_999_999_000),
        ]
    }

    /// Version 1 is frozen: these bytes must decode the same forever, and encoding must keep
    /// producing them. A failing test here means the wire format changed: bump
    /// `FORMAT_VERSION`, keep a decoder for version 1 (entries of it stay in the stream), and
    /// add a fixture for the new version beside this one rather than editing it.
    #[test]
    fn version_1_fixture_decodes_and_reencodes_byte_for_byte() {
        let fixture = include_bytes!("../testdata/clicks-v1.bin");
        assert_eq!(decode_clicks(fixture).unwrap(), fixture_clicks());
        assert_eq!(encode_clicks(&fixture_clicks()).unwrap(), fixture.to_vec());
    }

    #[test]
    fn an_empty_batch_round_trips() {
        let bytes = encode_clicks(&[]).unwrap();
        assert_eq!(bytes, vec![FORMAT_VERSION, 0]);
        assert_eq!(decode_clicks(&bytes).unwrap(), Vec::new());
    }

    #[test]
    fn extreme_timestamps_round_trip() {
        let clicks = vec![
            click("u", "a", i64::MAX),
            click("u", "a", i64::MIN),
            click("u", "a", 0),
            click("u", "a", -1),
            click("u", "a", i64::MIN),
        ];
        assert_eq!(
            decode_clicks(&encode_clicks(&clicks).unwrap()).unwrap(),
            clicks
        );
    }

    #[test]
    fn nearby_clicks_are_small() {
        let clicks: Vec<Click> = (0..100)
            .map(|n| click("user-123456", "article-1234", 1_700_000_000_000 + n * 10))
            .collect();
        let bytes = encode_clicks(&clicks).unwrap();
        // 1 + 11 + 1 + 12 + delta: 26 bytes per click, the first delta a bit longer.
        assert!(bytes.len() <= 2 + 100 * 26 + 6, "{} bytes", bytes.len());
    }

    #[test]
    fn ids_of_256_bytes_pass_and_257_are_refused_both_ways() {
        let longest = "x".repeat(MAX_ID_BYTES);
        let ok = vec![click(&longest, &longest, 1)];
        assert_eq!(decode_clicks(&encode_clicks(&ok).unwrap()).unwrap(), ok);

        let too_long = vec![click("u", "a", 1), click("u", &"y".repeat(257), 2)];
        let error = encode_clicks(&too_long).unwrap_err();
        assert_eq!(
            error,
            EncodeError::IdTooLong {
                at: Position {
                    click: Some(1),
                    field: Field::ArticleId
                },
                len: 257
            }
        );
        assert_eq!(
            error.to_string(),
            "click 1 field article_id is 257 bytes long, more than the feed's 256"
        );

        // A hand-made payload with a 257-byte user id: [1, count 1, len 257 = 0x81 0x02, ...].
        let mut bytes = vec![FORMAT_VERSION, 1, 0x81, 0x02];
        bytes.extend(std::iter::repeat_n(b'u', 257));
        bytes.extend([1, b'a', 2]);
        let error = decode_clicks(&bytes).unwrap_err();
        assert_eq!(
            error,
            DecodeError::IdTooLong {
                at: Position {
                    click: Some(0),
                    field: Field::UserId
                },
                offset: 2,
                len: 257
            }
        );
        assert_eq!(
            error.to_string(),
            "click payload click 0 field user_id at byte 2 is 257 bytes long, more than 256"
        );
    }

    #[test]
    fn every_truncation_of_a_valid_payload_is_a_precise_error() {
        let bytes = encode_clicks(&fixture_clicks()).unwrap();
        for len in 0..bytes.len() {
            let error = decode_clicks(&bytes[..len]).unwrap_err();
            match (len, &error) {
                (0, DecodeError::Empty) => {}
                (1, DecodeError::Truncated { at, .. }) => assert_eq!(at.field, Field::Count),
                // The count (3) no longer fits in what is left.
                (2..=10, DecodeError::CountTooLarge { count: 3, .. }) => {}
                (_, DecodeError::Truncated { at, offset, .. }) => {
                    assert!(at.click.is_some(), "len {len}: {error}");
                    assert_eq!(*offset, len, "len {len}: {error}");
                }
                _ => panic!("len {len}: unexpected {error:?}"),
            }
        }
    }

    #[test]
    fn truncation_inside_an_id_says_which_click_and_field() {
        // Click 1's article id "a2" loses its last byte.
        let bytes = encode_clicks(&fixture_clicks()[..2]).unwrap();
        let cut = bytes.len() - 3; // drops "2" and the delta (2 bytes: 250 → zigzag 500)
        let error = decode_clicks(&bytes[..cut]).unwrap_err();
        assert_eq!(
            error,
            DecodeError::Truncated {
                at: Position {
                    click: Some(1),
                    field: Field::ArticleId
                },
                offset: cut,
                needed: 1
            }
        );
        assert_eq!(
            error.to_string(),
            format!(
                "click payload truncated at byte {cut} in click 1 field article_id: 1 more bytes needed"
            )
        );
    }

    #[test]
    fn malformed_headers_and_tails_are_named() {
        assert_eq!(decode_clicks(&[]), Err(DecodeError::Empty));
        assert_eq!(
            decode_clicks(&[2, 0]),
            Err(DecodeError::UnsupportedVersion { version: 2 })
        );
        assert_eq!(
            decode_clicks(&[1, 0x81, 0x00]),
            Err(DecodeError::BadVarint {
                at: Position {
                    click: None,
                    field: Field::Count
                },
                offset: 1
            }),
            "1 written in two bytes"
        );
        assert_eq!(
            decode_clicks(&[
                1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02
            ]),
            Err(DecodeError::BadVarint {
                at: Position {
                    click: None,
                    field: Field::Count
                },
                offset: 1
            })
        );
        // u64::MAX clicks claimed in a 12-byte payload: refused before any allocation.
        let mut huge = vec![1];
        put_uvarint(&mut huge, u64::MAX);
        huge.push(0);
        assert!(matches!(
            decode_clicks(&huge),
            Err(DecodeError::CountTooLarge {
                count: u64::MAX,
                remaining: 1,
                offset: 1
            })
        ));
        let mut trailing = encode_clicks(&fixture_clicks()).unwrap();
        let end = trailing.len();
        trailing.extend([0, 0]);
        assert_eq!(
            decode_clicks(&trailing),
            Err(DecodeError::TrailingBytes {
                extra: 2,
                offset: end
            })
        );
        // A user id of one invalid byte.
        assert_eq!(
            decode_clicks(&[1, 1, 1, 0xff, 0, 0]),
            Err(DecodeError::NotUtf8 {
                at: Position {
                    click: Some(0),
                    field: Field::UserId
                },
                offset: 3,
                valid_up_to: 0
            })
        );
    }

    fn arbitrary_id() -> impl Strategy<Value = String> {
        // Up to 64 chars of any Unicode, plus ids right at the byte limit.
        prop_oneof![
            4 => ".{0,64}",
            1 => Just("z".repeat(MAX_ID_BYTES)),
            1 => Just("é".repeat(MAX_ID_BYTES / 2)),
        ]
    }

    fn arbitrary_click() -> impl Strategy<Value = Click> {
        (arbitrary_id(), arbitrary_id(), any::<i64>()).prop_map(|(user_id, article_id, ts_ms)| {
            Click {
                user_id,
                article_id,
                ts_ms,
            }
        })
    }

    proptest! {
        #[test]
        fn clicks_round_trip(clicks in prop::collection::vec(arbitrary_click(), 0..40)) {
            let bytes = encode_clicks(&clicks).unwrap();
            prop_assert_eq!(decode_clicks(&bytes).unwrap(), clicks);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_clicks(&bytes);
        }

        #[test]
        fn decoding_corrupted_payloads_never_panics(
            clicks in prop::collection::vec(arbitrary_click(), 1..10),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            // Mostly-valid input reaches deeper into the decoder than random bytes do.
            let mut bytes = encode_clicks(&clicks).unwrap();
            for (index, value) in flips {
                let at = index.index(bytes.len());
                bytes[at] = value;
            }
            if let Ok(decoded) = decode_clicks(&bytes) {
                // Shortest-form varints make the encoding one-to-one.
                prop_assert_eq!(&encode_clicks(&decoded).unwrap(), &bytes);
            }
        }
    }
}
