//! AWS SDK errors as capability errors.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use usher_capabilities::CapError;

/// Error codes of a failed condition.
const CONDITION: &[&str] = &["ConditionalCheckFailedException", "PreconditionFailed"];

/// Error codes of throttling, across services.
const THROTTLED: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
    "KMSThrottlingException",
    "AWS.SimpleQueueService.RequestThrottled",
];

/// Error codes of a missing resource.
const NOT_FOUND: &[&str] = &[
    "ResourceNotFoundException",
    "QueueDoesNotExist",
    "AWS.SimpleQueueService.NonExistentQueue",
    "NotFound",
    "NotFoundException",
    "NoSuchBucket",
    "NoSuchKey",
    "NoSuchUpload",
];

/// Error codes of refused credentials or permissions.
const DENIED: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "AuthorizationError",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidAccessKeyId",
    "MissingAuthenticationToken",
    "KMSAccessDeniedException",
];

/// Error codes of a service-side failure worth retrying later.
const UNAVAILABLE: &[&str] = &[
    "InternalServerError",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
    "LimitExceededException",
    "TransactionConflictException",
];

/// The capability error of an error code, when the code is known.
pub(crate) fn from_code(code: &str, message: String) -> Option<CapError> {
    let is = |list: &[&str]| list.contains(&code);
    Some(if is(CONDITION) {
        CapError::ConditionFailed(message)
    } else if is(THROTTLED) {
        CapError::Throttled(message)
    } else if is(NOT_FOUND) {
        CapError::NotFound(message)
    } else if is(DENIED) {
        CapError::Denied(message)
    } else if is(UNAVAILABLE) {
        CapError::Unavailable(message)
    } else {
        return None;
    })
}

/// The capability error of a failed SDK call; `what` says what was being
/// done (`"DynamoDB PutItem on `entries`"`).
pub(crate) fn sdk<E>(what: &str, err: SdkError<E, HttpResponse>) -> CapError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let message = format!("{what}: {}", DisplayErrorContext(&err));
    match &err {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("");
            if let Some(e) = from_code(code, message.clone()) {
                return e;
            }
            let status = service.raw().status().as_u16();
            if status == 429 {
                CapError::Throttled(message)
            } else if status >= 500 {
                CapError::Unavailable(message)
            } else if status == 404 {
                CapError::NotFound(message)
            } else if status == 403 {
                CapError::Denied(message)
            } else {
                // Validation errors and every other request the service refused.
                CapError::Invalid(message)
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            CapError::Unavailable(message)
        }
        SdkError::ConstructionFailure(_) => CapError::Invalid(message),
        _ => CapError::Unavailable(message),
    }
}

/// The error code of a failed call, when the service answered.
pub(crate) fn code<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Option<&str> {
    match err {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}
