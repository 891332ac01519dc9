//! The binary encoding of a list value (format v1, shared by every backend).
//!
//! ```text
//! u8 version (=1) · u16 LE count · count × ( f32 LE score · u16 LE id length · id bytes )
//! ```
//! Compact and allocation-light to decode on the hot path; JSON would triple the size.

use crate::RecItem;

const FORMAT_VERSION: u8 = 1;

/// Why a stored value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("value is empty")]
    Empty,
    #[error("unknown list format version {0}")]
    UnknownVersion(u8),
    #[error("value ends early at byte {0}")]
    Truncated(usize),
    #[error("article id at byte {0} is not UTF-8")]
    NotUtf8(usize),
    #[error("{0} bytes left over after the last item")]
    TrailingBytes(usize),
    #[error("list of {0} items is longer than the format's 65535")]
    TooLong(usize),
}

/// Encodes a list. Ids longer than 65535 bytes cannot occur (events cap ids at 256 bytes).
pub fn encode_items(items: &[RecItem]) -> Result<Vec<u8>, CodecError> {
    let count = u16::try_from(items.len()).map_err(|_| CodecError::TooLong(items.len()))?;
    let mut out = Vec::with_capacity(
        3 + items
            .iter()
            .map(|it| 6 + it.article_id.len())
            .sum::<usize>(),
    );
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&count.to_le_bytes());
    for item in items {
        let id = item.article_id.as_bytes();
        let len = u16::try_from(id.len()).map_err(|_| CodecError::TooLong(id.len()))?;
        out.extend_from_slice(&item.score.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(id);
    }
    Ok(out)
}

/// Decodes a list, refusing anything malformed.
pub fn decode_items(bytes: &[u8]) -> Result<Vec<RecItem>, CodecError> {
    let (&version, _) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != FORMAT_VERSION {
        return Err(CodecError::UnknownVersion(version));
    }
    let take = |at: usize, n: usize| bytes.get(at..at + n).ok_or(CodecError::Truncated(at));
    let count = u16::from_le_bytes(
        take(1, 2)?
            .try_into()
            .map_err(|_| CodecError::Truncated(1))?,
    );
    let mut at = 3;
    let mut items = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let score = f32::from_le_bytes(
            take(at, 4)?
                .try_into()
                .map_err(|_| CodecError::Truncated(at))?,
        );
        let len = u16::from_le_bytes(
            take(at + 4, 2)?
                .try_into()
                .map_err(|_| CodecError::Truncated(at))?,
        );
        let id = take(at + 6, usize::from(len))?;
        let article_id = std::str::from_utf8(id)
            .map_err(|_| CodecError::NotUtf8(at + 6))?
            .to_owned();
        items.push(RecItem { article_id, score });
        at += 6 + usize::from(len);
    }
    if at != bytes.len() {
        return Err(CodecError::TrailingBytes(bytes.len() - at));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(items in proptest::collection::vec(("[a-z0-9é]{1,20}", -1e6f32..1e6), 0..60)) {
            let items: Vec<RecItem> =
                items.into_iter().map(|(article_id, score)| RecItem { article_id, score }).collect();
            let encoded = encode_items(&items).unwrap();
            prop_assert_eq!(decode_items(&encoded).unwrap(), items);
        }

        // Fuzz: arbitrary bytes decode or fail cleanly, never panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_items(&bytes);
        }
    }

    #[test]
    fn malformed_values_are_named() {
        assert_eq!(decode_items(&[]), Err(CodecError::Empty));
        assert_eq!(decode_items(&[9, 0, 0]), Err(CodecError::UnknownVersion(9)));
        assert_eq!(decode_items(&[1, 1, 0, 0]), Err(CodecError::Truncated(3)));
        assert_eq!(
            decode_items(&[1, 0, 0, 7]),
            Err(CodecError::TrailingBytes(1))
        );
    }
}
