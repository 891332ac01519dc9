//! Why a benchmark failed. Each message says what to install, pass or look at; errors of the
//! crates the benchmark drives pass through with their own messages.

/// An error of the binary's side of a benchmark (its node, its import), passed through as it is.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a benchmark failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// A flag is out of range, or flags that do not go together.
    #[error("{0}")]
    InvalidArgs(String),
    /// Something the benchmark needs is not on this machine (a tool, a peer library, data).
    #[error("{0}")]
    Missing(String),
    /// A tool or child process could not be run, or an I/O step failed; `what` says which.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A tool, peer or child process ran but did not do or say what the benchmark expects.
    #[error("{0}")]
    Unexpected(String),
    /// A peer (NATS JetStream) refused a step; `what` says which.
    #[error("{what}")]
    Peer {
        what: String,
        #[source]
        source: BoxError,
    },
    /// The node acknowledged more events than reached the lake.
    #[error(
        "the lake holds {lake_events} events but {acked_events} were acknowledged: acknowledged data was lost"
    )]
    AckedDataLost { lake_events: u64, acked_events: u64 },
    /// The binary's node or import failed.
    #[error(transparent)]
    Host(BoxError),
    #[error(transparent)]
    Store(#[from] newsrec_kv::KvError),
    #[error(transparent)]
    Codec(#[from] newsrec_kv::CodecError),
    #[error(transparent)]
    Lake(#[from] newsrec_lake::LakeError),
    #[error(transparent)]
    Train(#[from] newsrec_train::TrainError),
    #[error(transparent)]
    Model(#[from] newsrec_model::ModelError),
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

impl BenchError {
    /// An I/O failure with what the benchmark was doing.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
        let what = what.into();
        move |source| BenchError::Io { what, source }
    }

    /// A step of a peer that failed, with what the benchmark was doing.
    pub(crate) fn peer<E: Into<BoxError>>(what: impl Into<String>) -> impl FnOnce(E) -> BenchError {
        let what = what.into();
        move |source| BenchError::Peer {
            what,
            source: source.into(),
        }
    }
}
