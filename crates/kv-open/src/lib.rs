//! The one place a store uri becomes a serving store.
//!
//! Owns the uri dispatch: an empty uri is the embedded store in a folder the caller names,
//! `redis://…` the Redis backend, `dynamodb://…` the DynamoDB backend. Each networked backend is
//! a cargo feature (both on by default), so a build can leave a client out; a uri naming a
//! backend the build lacks is refused with the feature to turn on, never opened as another one.

use std::{path::Path, sync::Arc};

use newsrec_kv::{EmbeddedStore, KvError, RecStore};

/// How to open a store besides its uri.
#[derive(Debug, Clone, Copy)]
pub struct OpenOptions<'a> {
    /// Folder of the embedded store, used when the uri is empty.
    pub embedded_dir: &'a Path,
    /// A serving handle: the embedded store caches the served generation whole (see
    /// [`EmbeddedStore::open_serving`]); publish and rollback need no cache.
    pub serving: bool,
}

/// Which backend a uri names, by its scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Redis,
    DynamoDb,
}

impl Backend {
    /// The backend `uri` names; an unknown scheme is refused with the ones that exist.
    pub fn of(uri: &str) -> Result<Backend, KvError> {
        if uri.is_empty() {
            Ok(Backend::Embedded)
        } else if ["redis://", "rediss://", "redis+unix://"]
            .iter()
            .any(|scheme| uri.starts_with(scheme))
        {
            Ok(Backend::Redis)
        } else if uri.starts_with("dynamodb://") {
            Ok(Backend::DynamoDb)
        } else {
            Err(KvError::UnsupportedUri {
                uri: without_credentials(uri),
                reason: "use redis://…, dynamodb://… or leave it empty for the embedded store"
                    .to_owned(),
            })
        }
    }

    /// Its name in messages and benchmark tables.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::Redis => "redis",
            Backend::DynamoDb => "dynamodb",
        }
    }
}

/// Opens (or connects to) the store `uri` names.
pub async fn open(uri: &str, options: &OpenOptions<'_>) -> Result<Arc<dyn RecStore>, KvError> {
    match Backend::of(uri)? {
        Backend::Embedded => {
            let store = if options.serving {
                EmbeddedStore::open_serving(options.embedded_dir)?
            } else {
                EmbeddedStore::open(options.embedded_dir)?
            };
            Ok(Arc::new(store))
        }
        Backend::Redis => open_redis(uri).await,
        Backend::DynamoDb => open_dynamodb(uri).await,
    }
}

#[cfg(feature = "redis")]
async fn open_redis(uri: &str) -> Result<Arc<dyn RecStore>, KvError> {
    Ok(Arc::new(newsrec_kv_redis::RedisStore::connect(uri).await?))
}

#[cfg(not(feature = "redis"))]
async fn open_redis(uri: &str) -> Result<Arc<dyn RecStore>, KvError> {
    Err(missing_feature(uri, "redis"))
}

#[cfg(feature = "dynamodb")]
async fn open_dynamodb(uri: &str) -> Result<Arc<dyn RecStore>, KvError> {
    Ok(Arc::new(
        newsrec_kv_dynamodb::DynamoStore::connect(uri).await?,
    ))
}

#[cfg(not(feature = "dynamodb"))]
async fn open_dynamodb(uri: &str) -> Result<Arc<dyn RecStore>, KvError> {
    Err(missing_feature(uri, "dynamodb"))
}

#[cfg(any(not(feature = "redis"), not(feature = "dynamodb")))]
fn missing_feature(uri: &str, feature: &str) -> KvError {
    KvError::UnsupportedUri {
        uri: without_credentials(uri),
        reason: format!(
            "this build has no {feature} backend: build newsrec-kv-open with the {feature:?} feature"
        ),
    }
}

/// `uri` with any `user:password@` cut out, for error messages that end up in logs.
fn without_credentials(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://…@{}", &uri[..scheme_end], &uri[at + 1..])
        }
        _ => uri.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_name_their_backend() {
        assert_eq!(Backend::of("").unwrap(), Backend::Embedded);
        assert_eq!(
            Backend::of("redis://127.0.0.1:6379/0").unwrap(),
            Backend::Redis
        );
        assert_eq!(
            Backend::of("redis+unix:///run/redis.sock").unwrap(),
            Backend::Redis
        );
        assert_eq!(
            Backend::of("dynamodb://table?create=true").unwrap(),
            Backend::DynamoDb
        );
    }

    #[test]
    fn a_refused_uri_never_echoes_its_password() {
        let error = Backend::of("postgres://admin:hunter2@db:5432/x").unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(error.to_string().contains("db:5432"), "{error}");
    }

    #[test]
    fn an_unknown_scheme_is_refused_with_the_known_ones() {
        for uri in [
            "postgres://db",
            "/var/lib/kv",
            "REDIS://host",
            "redis:/host",
        ] {
            let error = Backend::of(uri).unwrap_err();
            assert!(
                matches!(error, KvError::UnsupportedUri { .. }),
                "{uri}: {error}"
            );
            assert!(error.to_string().contains("redis://"), "{error}");
        }
    }

    #[tokio::test]
    async fn an_empty_uri_opens_the_embedded_store_in_the_named_folder() {
        let dir = tempfile::tempdir().unwrap();
        let kv = dir.path().join("kv");
        for serving in [false, true] {
            let store = open(
                "",
                &OpenOptions {
                    embedded_dir: &kv,
                    serving,
                },
            )
            .await
            .unwrap();
            assert!(store.current().await.unwrap().is_none());
        }
        assert!(
            kv.exists(),
            "the embedded store lives where the options say"
        );
    }

    /// Built only without the backend features (`.ci/run` runs this crate that way too): a uri
    /// naming a backend the build lacks is refused with the feature to turn on.
    #[cfg(not(any(feature = "redis", feature = "dynamodb")))]
    #[tokio::test]
    async fn a_backend_left_out_of_the_build_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let options = OpenOptions {
            embedded_dir: dir.path(),
            serving: false,
        };
        for (uri, feature) in [
            ("redis://127.0.0.1:6379/0", "redis"),
            ("dynamodb://t?create=true", "dynamodb"),
        ] {
            let error = open(uri, &options).await.unwrap_err();
            assert!(matches!(error, KvError::UnsupportedUri { .. }), "{error}");
            assert!(
                error.to_string().contains(&format!("{feature:?} feature")),
                "{error}"
            );
        }
    }

    #[tokio::test]
    async fn a_bad_uri_opens_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let kv = dir.path().join("kv");
        let result = open(
            "file:///tmp/kv",
            &OpenOptions {
                embedded_dir: &kv,
                serving: false,
            },
        )
        .await;
        assert!(matches!(result, Err(KvError::UnsupportedUri { .. })));
        assert!(
            !kv.exists(),
            "a refused uri must not fall back to the embedded store"
        );
    }
}
