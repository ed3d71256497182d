//! The common crate's error enum.
//!
//! Every variant that comes from a service says, by construction, whether retrying can help
//! (`transient`). Callers decide what to do with that; nothing here retries by itself.
//!
//! Invariant: an AWS SDK error is transient or permanent by what it is, not by a list of codes
//! (`aws_failure_is_transient`): no response, a timeout, HTTP 5xx, 408, 429 or a throttling,
//! timeout or internal-error code is transient; any other answer (a 4xx with its code) is
//! permanent. A code no list foresaw is judged by its status.

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

/// What an AWS SDK call ended in: the variants of `SdkError`, which say whether a response
/// came back at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsFailure {
    /// The request could not be built; it was never sent.
    Construction,
    /// No answer within the SDK's timeouts.
    Timeout,
    /// No response: connection refused or reset, DNS, TLS, a connector timeout or IO error.
    Dispatch,
    /// A response that could not be read (cut off, or not what the protocol says).
    Response,
    /// The service answered with an error: its HTTP status and error code decide.
    Service,
}

/// Whether an AWS error may go away if the same call is made again later, judged by what the
/// error is rather than a list of known codes: no response (timeouts, dispatch, IO, an
/// unreadable response), HTTP 5xx (except 501, a feature the service does not have), 408 and
/// 429, and any code that names throttling, a timeout, an internal error or a conflict that
/// clears by itself are transient; any other answer of the service (a 4xx with its code: a
/// `ValidationException`, `AccessDenied`, `NoSuchKey`) is permanent, and so is a request that
/// could not be built. Pure, so every case is tested without a service.
pub fn aws_failure_is_transient(kind: AwsFailure, status: Option<u16>, code: Option<&str>) -> bool {
    match kind {
        AwsFailure::Construction => false,
        AwsFailure::Timeout | AwsFailure::Dispatch | AwsFailure::Response => true,
        AwsFailure::Service => {
            if code.is_some_and(code_is_transient) {
                return true;
            }
            match status {
                Some(408 | 429) => true,
                Some(501) => false,
                Some(500..=599) => true,
                Some(_) => false,
                // No status and no code: nothing says the service refused the request.
                None => code.is_none_or(str::is_empty),
            }
        }
    }
}

/// Whether an error code names a condition that clears by itself, whatever the service: the
/// spellings AWS services use for throttling (`ThrottlingException`, `Throttling`,
/// `RequestThrottled`, `KmsThrottled`, `TooManyRequestsException`, `SlowDown`,
/// `RequestLimitExceeded`, `ProvisionedThroughputExceededException`, ...), timeouts, internal
/// errors and unavailability (`InternalError`, `InternalFailure`, `InternalServerError`,
/// `ServiceUnavailable`, `AWS.SimpleQueueService.ServiceUnavailable`), and DynamoDB's
/// transaction conflicts.
fn code_is_transient(code: &str) -> bool {
    const PARTS: [&str; 13] = [
        "throttl",
        "toomanyrequests",
        "slowdown",
        "requestlimitexceeded",
        "bandwidthlimitexceeded",
        "provisionedthroughputexceeded",
        "requesttimeout",
        "priorrequestnotcomplete",
        "internalerror",
        "internalfailure",
        "internalservererror",
        "serviceunavailable",
        "transactionconflict",
    ];
    let lower = code.to_ascii_lowercase();
    PARTS.iter().any(|p| lower.contains(p))
        || matches!(
            code,
            "LimitExceededException" | "TransactionInProgressException"
        )
}

/// The kind, HTTP status and error code of an AWS SDK error.
pub fn sdk_error_parts<E>(
    err: &aws_sdk_dynamodb::error::SdkError<E>,
) -> (AwsFailure, Option<u16>, Option<&str>)
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    use aws_sdk_dynamodb::error::{ProvideErrorMetadata as _, SdkError};
    let kind = match err {
        SdkError::ConstructionFailure(_) => AwsFailure::Construction,
        SdkError::TimeoutError(_) => AwsFailure::Timeout,
        SdkError::DispatchFailure(_) => AwsFailure::Dispatch,
        SdkError::ResponseError(_) => AwsFailure::Response,
        SdkError::ServiceError(_) => AwsFailure::Service,
        // A variant a later SDK adds: judged by its status and code, like an answer.
        _ => AwsFailure::Service,
    };
    let status = err.raw_response().map(|r| r.status().as_u16());
    (kind, status, err.code())
}

/// Classifies an AWS SDK error with `aws_failure_is_transient`.
pub fn sdk_error_is_transient<E>(err: &aws_sdk_dynamodb::error::SdkError<E>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    let (kind, status, code) = sdk_error_parts(err);
    aws_failure_is_transient(kind, status, code)
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

#[cfg(test)]
mod tests {
    use super::*;
    use AwsFailure::*;

    #[test]
    fn server_errors_throttling_and_no_response_are_transient() {
        for status in [500, 502, 503, 504] {
            assert!(
                aws_failure_is_transient(Service, Some(status), None),
                "{status}"
            );
            let unknown = Some("SomethingNobodyListed");
            assert!(
                aws_failure_is_transient(Service, Some(status), unknown),
                "{status}"
            );
        }
        assert!(aws_failure_is_transient(Service, Some(429), None));
        assert!(aws_failure_is_transient(
            Service,
            Some(429),
            Some("TooManyRequestsException")
        ));
        assert!(aws_failure_is_transient(
            Service,
            Some(408),
            Some("RequestTimeout")
        ));
        for code in [
            "ThrottlingException",
            "Throttling",
            "ThrottledException",
            "RequestThrottled",
            "KmsThrottled",
            "SlowDown",
            "RequestLimitExceeded",
            "ProvisionedThroughputExceededException",
            "RequestTimeoutException",
            "TransactionConflictException",
            "LimitExceededException",
        ] {
            // Many services answer throttling with a 400.
            assert!(
                aws_failure_is_transient(Service, Some(400), Some(code)),
                "{code}"
            );
        }
        for code in ["InternalError", "InternalFailure", "ServiceUnavailable"] {
            assert!(
                aws_failure_is_transient(Service, Some(500), Some(code)),
                "{code}"
            );
            assert!(
                aws_failure_is_transient(Service, Some(200), Some(code)),
                "{code}"
            );
        }
        assert!(aws_failure_is_transient(
            Service,
            Some(503),
            Some("AWS.SimpleQueueService.ServiceUnavailable")
        ));
        for kind in [Timeout, Dispatch, Response] {
            assert!(aws_failure_is_transient(kind, None, None), "{kind:?}");
        }
        assert!(aws_failure_is_transient(Service, None, None));
    }

    #[test]
    fn what_the_service_refused_on_its_merits_is_permanent() {
        let cases = [
            (400, "ValidationException"),
            (400, "ConditionalCheckFailedException"),
            (400, "ResourceNotFoundException"),
            (403, "AccessDenied"),
            (403, "AccessDeniedException"),
            (404, "NoSuchKey"),
            (404, "NoSuchBucket"),
            (412, "PreconditionFailed"),
            (400, "AWS.SimpleQueueService.NonExistentQueue"),
            (501, "NotImplemented"),
            (301, "PermanentRedirect"),
        ];
        for (status, code) in cases {
            assert!(
                !aws_failure_is_transient(Service, Some(status), Some(code)),
                "{code}"
            );
        }
        assert!(!aws_failure_is_transient(Service, Some(400), None));
        assert!(!aws_failure_is_transient(
            Service,
            None,
            Some("ValidationException")
        ));
        assert!(!aws_failure_is_transient(Construction, None, None));
    }

    #[test]
    fn sdk_errors_are_taken_apart_into_kind_status_and_code() {
        use aws_sdk_dynamodb::error::{ConnectorError, ErrorMetadata, SdkError};
        use aws_sdk_dynamodb::operation::get_item::GetItemError;
        let answer = |status: u16, code: &str| -> SdkError<GetItemError> {
            let body = aws_sdk_s3::primitives::ByteStream::from_static(b"").into_inner();
            let raw = aws_sdk_dynamodb::config::http::HttpResponse::new(
                status.try_into().expect("a status"),
                body,
            );
            let meta = ErrorMetadata::builder().code(code).build();
            SdkError::service_error(GetItemError::generic(meta), raw)
        };
        let e = answer(503, "SomethingNew");
        assert_eq!(
            sdk_error_parts(&e),
            (Service, Some(503), Some("SomethingNew"))
        );
        assert!(sdk_error_is_transient(&e));
        assert!(!sdk_error_is_transient(&answer(400, "ValidationException")));
        assert!(sdk_error_is_transient(&answer(400, "ThrottlingException")));

        let e: SdkError<GetItemError> = SdkError::timeout_error("slow");
        assert_eq!(sdk_error_parts(&e), (Timeout, None, None));
        assert!(sdk_error_is_transient(&e));
        let e: SdkError<GetItemError> =
            SdkError::dispatch_failure(ConnectorError::io("connection refused".into()));
        assert_eq!(sdk_error_parts(&e), (Dispatch, None, None));
        assert!(sdk_error_is_transient(&e));
        let e: SdkError<GetItemError> = SdkError::construction_failure("no region");
        assert!(!sdk_error_is_transient(&e));
    }
}
