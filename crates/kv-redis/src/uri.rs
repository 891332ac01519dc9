//! The store uri: `?prefix=` is split off and checked, the rest goes to the Redis client.

use redis::Client;

use newsrec_kv::KvError;

const DEFAULT_PREFIX: &str = "newsrec";
const MAX_PREFIX_LEN: usize = 64;

/// Splits `?prefix=` off the uri and hands the rest to the Redis client.
pub(crate) fn parse_uri(uri: &str) -> Result<(Client, String), KvError> {
    let unsupported = |reason: String| KvError::UnsupportedUri {
        uri: redact(uri),
        reason,
    };
    let mut url = redis::parse_redis_url(uri).ok_or_else(|| {
        unsupported(
            "expected redis://[user:password@]host[:port][/db][?prefix=NAME] \
             or redis+unix:///path?db=N&prefix=NAME"
                .into(),
        )
    })?;
    let mut prefix = None;
    let mut passed_on = Vec::new();
    for (name, value) in url.query_pairs() {
        if name == "prefix" {
            if prefix.replace(value.into_owned()).is_some() {
                return Err(unsupported("prefix is given twice".into()));
            }
        } else {
            passed_on.push((name.into_owned(), value.into_owned()));
        }
    }
    if passed_on.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(&passed_on);
    }
    let prefix = prefix.unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
    let valid = |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-');
    if prefix.is_empty() || prefix.len() > MAX_PREFIX_LEN || !prefix.bytes().all(valid) {
        return Err(unsupported(format!(
            "prefix {prefix:?} must be 1 to {MAX_PREFIX_LEN} characters of A-Z a-z 0-9 _ . -"
        )));
    }
    let client = Client::open(url).map_err(|error| unsupported(error.to_string()))?;
    Ok((client, prefix))
}

/// The uri with its password masked, for error messages.
fn redact(uri: &str) -> String {
    match redis::parse_redis_url(uri) {
        Some(mut url) if url.password().is_some() => {
            // Fails only for uris without a host, which cannot carry a password.
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => uri.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RedisStore;

    #[tokio::test]
    async fn bad_uris_are_refused_before_connecting() {
        for uri in [
            "http://127.0.0.1:6379",
            "not a uri",
            "redis://127.0.0.1:6379/0?prefix=a*b",
            "redis://127.0.0.1:6379/0?prefix=a:b",
            "redis://127.0.0.1:6379/0?prefix=",
            "redis://127.0.0.1:6379/0?prefix=a&prefix=b",
            "redis://127.0.0.1:6379/not-a-db",
            "redis://:secret@127.0.0.1:6379/0?prefix=%7Bx%7D",
        ] {
            let error = RedisStore::connect(uri).await.unwrap_err();
            assert!(
                matches!(error, KvError::UnsupportedUri { .. }),
                "{uri}: {error}"
            );
            assert!(
                !error.to_string().contains("secret"),
                "password shown: {error}"
            );
        }
    }

    #[test]
    fn the_prefix_defaults_and_is_split_off_the_uri() {
        let (_, prefix) = parse_uri("redis://127.0.0.1:6379/0").unwrap();
        assert_eq!(prefix, DEFAULT_PREFIX);
        let (_, prefix) = parse_uri("redis://127.0.0.1:6379/2?prefix=site-a.v1_x").unwrap();
        assert_eq!(prefix, "site-a.v1_x");
    }
}
