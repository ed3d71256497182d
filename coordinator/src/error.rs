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
        transient: bool,
    },

    #[error("queue {operation} failed for {queue}: {message}")]
    Queue {
        operation: &'static str,
        queue: String,
        message: String,
    },

    #[error("database {operation} failed: {message}")]
    Database {
        operation: &'static str,
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

impl CoordinatorError {
    /// Whether the next pass may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            CoordinatorError::Common(e) => e.is_transient(),
            CoordinatorError::List { transient, .. } => *transient,
            CoordinatorError::Queue { .. } | CoordinatorError::Database { .. } => true,
            CoordinatorError::Usage(_) | CoordinatorError::Endpoint { .. } => false,
        }
    }
}
