//! The common crate's error enum.
//!
//! Every variant that comes from a service says, by construction, whether retrying can help
//! (`transient`). Callers decide what to do with that; nothing here retries by itself.

use std::fmt;

/// Errors from configuration, the manifest store, the queue and S3 listing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is missing or malformed; the process should stop at start-up.
    #[error("bad setting {setting}: {reason}")]
    Config {
        setting: &'static str,
        reason: String,
    },

    /// The rules file cannot be read or does not parse.
    #[error("rules file {path}: {reason}")]
    Rules { path: String, reason: String },

    /// A DynamoDB call on the manifest failed.
    #[error("manifest {operation} failed on table {table}{item}: {message}")]
    Manifest {
        operation: &'static str,
        table: String,
        item: ItemRef,
        message: String,
        transient: bool,
    },

    /// An SQS call failed.
    #[error("queue {operation} failed on {queue_url}: {message}")]
    Queue {
        operation: &'static str,
        queue_url: String,
        message: String,
        transient: bool,
    },

    /// An S3 call failed.
    #[error("s3 {operation} failed on bucket {bucket} key {key}: {message}")]
    S3 {
        operation: &'static str,
        bucket: String,
        key: String,
        message: String,
        transient: bool,
    },

    /// A message body is not a Sluice message this version understands.
    #[error("message {message_id} is not a sluice file message: {reason}")]
    BadMessage { message_id: String, reason: String },
}

impl Error {
    /// Whether the same call may succeed if tried again later.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Manifest { transient, .. }
            | Error::Queue { transient, .. }
            | Error::S3 { transient, .. } => *transient,
            Error::Config { .. } | Error::Rules { .. } | Error::BadMessage { .. } => false,
        }
    }
}

/// The manifest item an error is about, when there is one; displays as ` key K etag E`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemRef(pub Option<(String, String)>);

impl ItemRef {
    pub fn new(key: &str, etag: &str) -> Self {
        ItemRef(Some((key.to_owned(), etag.to_owned())))
    }
    pub fn none() -> Self {
        ItemRef(None)
    }
}

impl fmt::Display for ItemRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some((key, etag)) => write!(f, " key {key} etag {etag}"),
            None => Ok(()),
        }
    }
}

/// Classifies an AWS SDK error: throttling, timeouts, dispatch failures and 5xx are transient;
/// everything the service refused on its merits (4xx) is permanent.
pub fn sdk_error_is_transient<E, R>(err: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
    R: std::fmt::Debug,
{
    use aws_sdk_dynamodb::error::SdkError;
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            matches!(
                code,
                "ThrottlingException"
                    | "ProvisionedThroughputExceededException"
                    | "RequestLimitExceeded"
                    | "InternalServerError"
                    | "ServiceUnavailable"
                    | "InternalError"
                    | "SlowDown"
                    | "RequestTimeout"
                    | "TransactionConflictException"
                    | "AWS.SimpleQueueService.ServiceUnavailable"
            ) || code.is_empty()
        }
        SdkError::ConstructionFailure(_) => false,
        _ => true,
    }
}

/// The most useful one-line text of an AWS SDK error: code and message where the service gave
/// them, the error chain otherwise. Never includes credentials (the SDK does not put them in
/// errors; request signatures are not part of these texts).
pub fn sdk_error_text<E, R>(err: &aws_sdk_dynamodb::error::SdkError<E, R>) -> String
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_dynamodb::error::SdkError;
    match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            match (e.code(), e.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_owned(),
                _ => chain_text(err),
            }
        }
        _ => chain_text(err),
    }
}

fn chain_text(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
