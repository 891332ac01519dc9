//! The byte layout of segments and frames: writing one, and reading a segment back frame by
//! frame until the first frame that is not whole and valid.

use crate::{Lsn, Record};

/// Every segment starts with these 8 bytes; the last byte is the format version.
pub(crate) const MAGIC: [u8; 8] = *b"NRWAL\0\0\x01";
/// Magic + the segment's first LSN.
pub const SEGMENT_HEADER_BYTES: usize = 16;
/// `len u32 | crc32 u32 | lsn u64 | kind u8`.
pub const FRAME_HEADER_BYTES: usize = 17;
/// Largest payload of one record. Bounds what a damaged length field can make a reader allocate.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024 * 1024;

pub(crate) fn segment_header(first_lsn: Lsn) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut header = [0u8; SEGMENT_HEADER_BYTES];
    header[..8].copy_from_slice(&MAGIC);
    header[8..].copy_from_slice(&first_lsn.to_le_bytes());
    header
}

fn checksum(lsn: Lsn, kind: u8, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&lsn.to_le_bytes());
    hasher.update(&[kind]);
    hasher.update(payload);
    hasher.finalize()
}

/// Appends one frame to `out`.
pub(crate) fn encode_frame(out: &mut Vec<u8>, lsn: Lsn, kind: u8, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("payload length checked against MAX");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&checksum(lsn, kind, payload).to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
}

/// Reads the header of a segment: its first LSN, or why it is not a segment.
pub(crate) fn read_header(bytes: &[u8]) -> Result<Lsn, String> {
    if bytes.len() < SEGMENT_HEADER_BYTES {
        return Err(format!(
            "{} bytes, shorter than the {SEGMENT_HEADER_BYTES}-byte header",
            bytes.len()
        ));
    }
    if bytes[..8] != MAGIC {
        return Err("not a newsrec WAL segment (bad magic or unknown version)".into());
    }
    Ok(Lsn::from_le_bytes(
        bytes[8..16].try_into().expect("8 bytes"),
    ))
}

/// The frames of one segment's body.
#[derive(Debug)]
pub(crate) struct Frames {
    pub records: Vec<Record>,
    /// Offset (from the start of the file) just past the last valid frame.
    pub valid_end: u64,
    /// Why reading stopped before the end of the file, if it did.
    pub stopped: Option<String>,
}

/// Reads frames from a whole segment file's bytes, expecting LSNs to run on from `first_lsn`.
pub(crate) fn read_frames(bytes: &[u8], first_lsn: Lsn) -> Frames {
    let mut records = Vec::new();
    let mut offset = SEGMENT_HEADER_BYTES;
    let mut expected = first_lsn;
    let stopped = loop {
        let rest = &bytes[offset..];
        if rest.is_empty() {
            break None;
        }
        if rest.len() < FRAME_HEADER_BYTES {
            break Some(format!(
                "{} bytes left, a frame header needs {FRAME_HEADER_BYTES}",
                rest.len()
            ));
        }
        let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        let lsn = Lsn::from_le_bytes(rest[8..16].try_into().expect("8 bytes"));
        let kind = rest[16];
        if len > MAX_PAYLOAD_BYTES {
            break Some(format!("frame length {len} is over the limit"));
        }
        let Some(payload) = rest.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len) else {
            break Some(format!(
                "frame of {len} bytes, only {} left",
                rest.len() - FRAME_HEADER_BYTES
            ));
        };
        if checksum(lsn, kind, payload) != crc {
            break Some(format!("checksum mismatch in the frame of lsn {lsn}"));
        }
        if lsn != expected {
            break Some(format!("lsn {lsn} where {expected} was expected"));
        }
        records.push(Record {
            lsn,
            kind,
            payload: payload.to_vec(),
        });
        expected += 1;
        offset += FRAME_HEADER_BYTES + len;
    };
    Frames {
        records,
        valid_end: offset as u64,
        stopped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn segment(first: Lsn, payloads: &[&[u8]]) -> Vec<u8> {
        let mut bytes = segment_header(first).to_vec();
        for (i, payload) in payloads.iter().enumerate() {
            encode_frame(&mut bytes, first + i as u64, 1, payload);
        }
        bytes
    }

    #[test]
    fn round_trips() {
        let bytes = segment(7, &[b"a", b"", b"hello"]);
        assert_eq!(read_header(&bytes).unwrap(), 7);
        let frames = read_frames(&bytes, 7);
        assert_eq!(frames.stopped, None);
        assert_eq!(frames.valid_end, bytes.len() as u64);
        let payloads: Vec<_> = frames.records.iter().map(|r| r.payload.clone()).collect();
        assert_eq!(payloads, vec![b"a".to_vec(), vec![], b"hello".to_vec()]);
        assert_eq!(frames.records[2].lsn, 9);
    }

    #[test]
    fn a_flipped_bit_stops_reading_at_that_frame() {
        let mut bytes = segment(0, &[b"first", b"second", b"third"]);
        let second_payload = SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES + 5 + FRAME_HEADER_BYTES;
        bytes[second_payload] ^= 0x01;
        let frames = read_frames(&bytes, 0);
        assert_eq!(frames.records.len(), 1);
        assert_eq!(
            frames.valid_end,
            (SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES + 5) as u64
        );
        assert!(frames.stopped.unwrap().contains("checksum"));
    }

    #[test]
    fn wrong_magic_is_refused() {
        let mut bytes = segment(0, &[b"x"]);
        bytes[7] = 9;
        assert!(read_header(&bytes).is_err());
        assert!(read_header(&bytes[..10]).is_err());
    }

    proptest! {
        /// Any prefix of a valid segment reads back as exactly the whole frames it contains.
        #[test]
        fn every_prefix_yields_the_whole_frames_in_it(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..12),
            cut in 0usize..1000,
        ) {
            let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            let bytes = segment(100, &refs);
            let cut = SEGMENT_HEADER_BYTES + cut % (bytes.len() - SEGMENT_HEADER_BYTES + 1);
            let frames = read_frames(&bytes[..cut], 100);
            let mut end = SEGMENT_HEADER_BYTES;
            let mut whole = 0;
            for payload in &payloads {
                if end + FRAME_HEADER_BYTES + payload.len() <= cut {
                    end += FRAME_HEADER_BYTES + payload.len();
                    whole += 1;
                } else {
                    break;
                }
            }
            prop_assert_eq!(frames.records.len(), whole);
            prop_assert_eq!(frames.valid_end, end as u64);
            prop_assert_eq!(frames.stopped.is_some(), end != cut);
        }

        /// Garbage after the header never panics and never yields a record with a wrong LSN.
        #[test]
        fn garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut bytes = segment_header(5).to_vec();
            bytes.extend_from_slice(&body);
            let frames = read_frames(&bytes, 5);
            for (i, record) in frames.records.iter().enumerate() {
                prop_assert_eq!(record.lsn, 5 + i as u64);
            }
        }
    }
}
