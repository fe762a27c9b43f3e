//! Usher's capabilities: the backend traits, the grant checks, and the host
//! implementations of the `usher:platform` capability interfaces.
//!
//! A worker's invocation gets a [`CapabilityCtx`]: who is calling (worker and
//! version), what it is granted, its settings, the invocation's correlation id
//! and the process's [`Backends`]. Every capability call checks the grant
//! first (a resource outside it is refused with the guest-visible `denied`
//! error), optionally records the call (the test host uses this), then calls
//! the backend.

#![deny(missing_docs)]

pub mod backend;
mod call;
mod caps;
mod ctx;
mod json_text;
pub mod key_schema;
pub mod limits;
mod record;

pub use backend::*;
pub(crate) use ctx::Caller;
pub use ctx::{CapabilityCtx, WorkerIdentity};
pub use json_text::JsonText;
pub use key_schema::{KeyCodec, KeySchema, TableKey};
pub use limits::{MAX_BATCH, MAX_SERVICE_CALLS, SERVICE_CALLS_IN_FLIGHT};
pub use record::{CallRecord, Recorder};

use usher_world::types;

/// An error of a capability call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    /// The worker's grant does not cover the resource.
    #[error("denied: {0}")]
    Denied(String),
    /// The resource does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request was malformed.
    #[error("invalid: {0}")]
    Invalid(String),
    /// A conditional write found its condition false.
    #[error("condition failed: {0}")]
    ConditionFailed(String),
    /// The backend is unreachable or timed out.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The backend throttled the request.
    #[error("throttled: {0}")]
    Throttled(String),
    /// The backend does not support the operation.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A fault of the host itself: traps the invocation instead of reaching the guest.
    #[error("host fault: {0}")]
    Fault(String),
}

impl CapError {
    /// Splits a host fault (which must trap) from a guest-visible error.
    pub fn into_guest(self) -> wasmtime::Result<types::Error> {
        Ok(match self {
            CapError::Denied(m) => types::Error::Denied(m),
            CapError::NotFound(m) => types::Error::NotFound(m),
            CapError::Invalid(m) => types::Error::Invalid(m),
            CapError::ConditionFailed(m) => types::Error::ConditionFailed(m),
            CapError::Unavailable(m) => types::Error::Unavailable(m),
            CapError::Throttled(m) => types::Error::Throttled(m),
            CapError::Unsupported(m) => types::Error::Unsupported(m),
            CapError::Fault(m) => return Err(wasmtime::format_err!("host fault: {m}")),
        })
    }
}

/// Registers every capability import with a linker whose store data gives
/// access to a [`CapabilityCtx`].
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    get: fn(&mut T) -> &mut CapabilityCtx,
) -> wasmtime::Result<()> {
    usher_world::PlatformHost::add_to_linker::<T, wasmtime::component::HasSelf<CapabilityCtx>>(
        linker, get,
    )
}
