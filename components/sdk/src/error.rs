//! The SDK's one error type.

/// Everything a capability call or an SDK helper can fail with.
///
/// The first seven variants mirror the WIT `types.error` variants one to one;
/// the others are the SDK's own.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The worker's grant does not cover this resource.
    #[error("denied: {0}")]
    Denied(String),
    /// The named resource (table, queue, service, worker …) does not exist.
    #[error("not-found: {0}")]
    NotFound(String),
    /// The request was malformed (bad JSON, a missing key attribute, a batch too large …).
    #[error("invalid: {0}")]
    Invalid(String),
    /// A conditional write found its condition false.
    #[error("condition-failed: {0}")]
    ConditionFailed(String),
    /// The backend was unreachable or timed out; retrying later may succeed.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The backend throttled the request.
    #[error("throttled: {0}")]
    Throttled(String),
    /// The operation is not supported: by the backend, or (natively) at all
    /// outside a component.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// JSON could not be serialized or parsed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// A service answered with a non-2xx status (see
    /// [`services::Response::error_for_status`](crate::services::Response::error_for_status)).
    #[error("status {status}: {body}")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The response body.
        body: String,
    },
}

/// `Result` with the SDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The variant's short name as in the WIT (`denied`, `not-found`, …;
    /// `json` and `status` for the SDK's own variants).
    pub fn variant(&self) -> &'static str {
        match self {
            Error::Denied(_) => "denied",
            Error::NotFound(_) => "not-found",
            Error::Invalid(_) => "invalid",
            Error::ConditionFailed(_) => "condition-failed",
            Error::Unavailable(_) => "unavailable",
            Error::Throttled(_) => "throttled",
            Error::Unsupported(_) => "unsupported",
            Error::Json(_) => "json",
            Error::Status { .. } => "status",
        }
    }

    /// True for a failed write condition.
    pub fn is_condition_failed(&self) -> bool {
        matches!(self, Error::ConditionFailed(_))
    }

    /// True when retrying later may succeed (`unavailable`, `throttled`, or a
    /// 429/5xx status).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unavailable(_) | Error::Throttled(_) => true,
            Error::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// The error natively returned by capability calls, which only work
    /// inside a component.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) fn native(what: &str) -> Error {
        Error::Unsupported(format!(
            "{what} is available only inside a component (this is a native build)"
        ))
    }
}

#[cfg(target_arch = "wasm32")]
impl From<crate::bindings::caps::usher::platform::types::Error> for Error {
    fn from(e: crate::bindings::caps::usher::platform::types::Error) -> Self {
        use crate::bindings::caps::usher::platform::types::Error as E;
        match e {
            E::Denied(m) => Error::Denied(m),
            E::NotFound(m) => Error::NotFound(m),
            E::Invalid(m) => Error::Invalid(m),
            E::ConditionFailed(m) => Error::ConditionFailed(m),
            E::Unavailable(m) => Error::Unavailable(m),
            E::Throttled(m) => Error::Throttled(m),
            E::Unsupported(m) => Error::Unsupported(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_variant() {
        let e = Error::ConditionFailed("version".into());
        assert_eq!(e.to_string(), "condition-failed: version");
        assert_eq!(e.variant(), "condition-failed");
        assert!(e.is_condition_failed());
        assert!(!e.is_retryable());
    }

    #[test]
    fn retryable_errors() {
        assert!(Error::Throttled(String::new()).is_retryable());
        assert!(Error::Status {
            status: 503,
            body: String::new()
        }
        .is_retryable());
        assert!(!Error::Status {
            status: 404,
            body: String::new()
        }
        .is_retryable());
    }

    #[test]
    fn native_error_is_unsupported() {
        let e = Error::native("table::get");
        assert_eq!(e.variant(), "unsupported");
        assert!(e.to_string().contains("only inside a component"));
    }
}
