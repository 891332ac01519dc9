//! The store uri: `dynamodb://TABLE[?endpoint=URL&region=REGION&create=true]`.

use newsrec_kv::KvError;

pub(crate) const URI_SCHEME: &str = "dynamodb://";

/// What `dynamodb://…` says.
#[derive(Debug, PartialEq)]
pub(crate) struct StoreUri {
    pub(crate) table: String,
    pub(crate) endpoint: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) create: bool,
}

impl StoreUri {
    pub(crate) fn parse(uri: &str) -> Result<StoreUri, KvError> {
        let unsupported = |reason: String| KvError::UnsupportedUri {
            uri: uri.to_owned(),
            reason,
        };
        let rest = uri.strip_prefix(URI_SCHEME).ok_or_else(|| {
            unsupported(format!(
                "expected {URI_SCHEME}TABLE[?endpoint=URL&region=REGION&create=true]"
            ))
        })?;
        let (table, query) = rest.split_once('?').unwrap_or((rest, ""));
        let table_is_valid = (3..=255).contains(&table.len())
            && table
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.'));
        if !table_is_valid {
            return Err(unsupported(format!(
                "table name {table:?} must be 3 to 255 characters of a-z, A-Z, 0-9, '_', '-', '.'"
            )));
        }
        let mut parsed = StoreUri {
            table: table.to_owned(),
            endpoint: None,
            region: None,
            create: false,
        };
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, raw) = pair
                .split_once('=')
                .ok_or_else(|| unsupported(format!("query parameter {pair:?} has no value")))?;
            let value = percent_decode(raw)
                .ok_or_else(|| unsupported(format!("query parameter {name:?} is badly escaped")))?;
            match name {
                "endpoint" if value.starts_with("http://") || value.starts_with("https://") => {
                    parsed.endpoint = Some(value);
                }
                "endpoint" => {
                    return Err(unsupported(format!(
                        "endpoint {value:?} must start with http:// or https://"
                    )));
                }
                "region" if !value.is_empty() => parsed.region = Some(value),
                "create" => {
                    parsed.create = match value.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(unsupported(format!(
                                "create={value:?}: use true or false"
                            )));
                        }
                    };
                }
                _ => {
                    return Err(unsupported(format!(
                        "unknown or empty query parameter {name:?}; known: endpoint, region, create"
                    )));
                }
            }
        }
        Ok(parsed)
    }
}

/// Decodes `%XX` escapes; `None` for a malformed escape or non-UTF-8 result.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = std::str::from_utf8(bytes.get(at + 1..at + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_uris_parse_or_are_refused() {
        assert_eq!(
            StoreUri::parse("dynamodb://recs").unwrap(),
            StoreUri {
                table: "recs".into(),
                endpoint: None,
                region: None,
                create: false
            }
        );
        assert_eq!(
            StoreUri::parse(
                "dynamodb://news.recs-1?endpoint=http%3A%2F%2F127.0.0.1:5000&region=eu-west-1\
                 &create=true"
            )
            .unwrap(),
            StoreUri {
                table: "news.recs-1".into(),
                endpoint: Some("http://127.0.0.1:5000".into()),
                region: Some("eu-west-1".into()),
                create: true
            }
        );
        for bad in [
            "redis://x",
            "dynamodb://",
            "dynamodb://ab",
            "dynamodb://a/b/c",
            "dynamodb://recs?create=yes",
            "dynamodb://recs?endpoint=127.0.0.1:5000",
            "dynamodb://recs?colour=blue",
            "dynamodb://recs?region",
            "dynamodb://recs?region=%zz",
        ] {
            let error = StoreUri::parse(bad).unwrap_err();
            assert!(
                matches!(error, KvError::UnsupportedUri { .. }),
                "{bad}: {error}"
            );
        }
    }
}
