//! How a JSON document crosses to the capability layer: as text into a
//! component's imports, as a `Value` into the native backend
//! ([`crate::native`]), so native tests and benches do not serialize what a
//! fake would parse straight back.

use serde::{de::DeserializeOwned, Serialize};

use crate::{json, Result};

/// A JSON document as the capability layer takes it.
#[cfg(target_arch = "wasm32")]
pub(crate) type Wire = String;
/// A JSON document as the capability layer takes it.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) type Wire = serde_json::Value;

/// A value as a [`Wire`] document.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Wire> {
    #[cfg(target_arch = "wasm32")]
    return json::to_string(value);
    #[cfg(not(target_arch = "wasm32"))]
    return json::to_value(value);
}

/// A [`Wire`] document as a typed value.
pub(crate) fn decode<T: DeserializeOwned>(wire: Wire) -> Result<T> {
    #[cfg(target_arch = "wasm32")]
    return json::from_str(&wire);
    #[cfg(not(target_arch = "wasm32"))]
    return json::from_value(wire);
}
