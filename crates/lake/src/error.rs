//! The lake's error type: every variant names the object or URI it concerns.

/// Why a lake operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LakeError {
    #[error(
        "unsupported lake uri {uri:?}: use file:///path, a plain path, s3://bucket/prefix or memory://"
    )]
    UnsupportedUri { uri: String },
    #[error("cannot create lake folder {path}: {source}")]
    CreateRoot {
        path: String,
        source: std::io::Error,
    },
    #[error("object store error at {path}: {source}")]
    Store {
        path: String,
        source: object_store::Error,
    },
    #[error("cannot make {path} durable (fsync): {source}")]
    Sync {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot encode {path} as parquet: {source}")]
    Encode {
        path: String,
        source: parquet::errors::ParquetError,
    },
    #[error("cannot read {path}: {reason}")]
    BadObject { path: String, reason: String },
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
}

impl LakeError {
    pub(crate) fn store(path: impl ToString, source: object_store::Error) -> Self {
        LakeError::Store {
            path: path.to_string(),
            source,
        }
    }

    pub(crate) fn bad_object(path: impl ToString, reason: impl ToString) -> Self {
        LakeError::BadObject {
            path: path.to_string(),
            reason: reason.to_string(),
        }
    }

    /// True when the error says the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            LakeError::Store {
                source: object_store::Error::NotFound { .. },
                ..
            }
        )
    }
}
