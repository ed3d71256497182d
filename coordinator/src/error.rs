//! The coordinator's error enum.

/// Errors of coordinator commands.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error(transparent)]
    Common(#[from] sluice_common::Error),

    #[error("listing s3://{bucket}/{prefix} failed: {message}")]
    List {
        bucket: String,
        prefix: String,
        message: String,
    },

    #[error("queue {operation} failed for {queue}: {message}")]
    Queue {
        operation: &'static str,
        queue: String,
        message: String,
    },

    #[error("{0}")]
    Usage(String),

    #[error("cannot serve metrics on {addr}: {source}")]
    Endpoint {
        addr: String,
        source: std::io::Error,
    },
}
