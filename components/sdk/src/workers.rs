//! Invokes other workers directly (the `workers` capability; Lambda invoke
//! in AWS).

use serde::{de::DeserializeOwned, Serialize};

use crate::{json, Result};

/// Calls an invoke-worker with `payload` as JSON and waits for its answer.
pub fn invoke<T: DeserializeOwned>(worker: &str, payload: &(impl Serialize + ?Sized)) -> Result<T> {
    let payload = json::to_string(payload)?;
    json::from_str(&sys::invoke(worker, &payload)?)
}

/// Queues an invocation without waiting for it.
pub fn invoke_async(worker: &str, payload: &(impl Serialize + ?Sized)) -> Result<()> {
    let payload = json::to_string(payload)?;
    sys::invoke_async(worker, &payload)
}

#[cfg(target_arch = "wasm32")]
mod sys {
    use crate::bindings::caps::usher::platform::workers as wit;
    use crate::Result;

    pub(super) fn invoke(worker: &str, payload: &str) -> Result<String> {
        Ok(wit::invoke(worker, payload)?)
    }

    pub(super) fn invoke_async(worker: &str, payload: &str) -> Result<()> {
        Ok(wit::invoke_async(worker, payload)?)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod sys {
    use crate::{Error, Result};

    pub(super) fn invoke(_worker: &str, _payload: &str) -> Result<String> {
        Err(Error::native("workers::invoke"))
    }

    pub(super) fn invoke_async(_worker: &str, _payload: &str) -> Result<()> {
        Err(Error::native("workers::invoke_async"))
    }
}
