//! A shared key/value cache with expiry (the `cache` capability; Redis in
//! production).

use serde::{de::DeserializeOwned, Serialize};

use crate::{json, Result};

/// The value under a key; `None` when absent or expired.
pub fn get(key: &str) -> Result<Option<String>> {
    sys::get(key)
}

/// Stores a value, expiring after `ttl_seconds` when given.
pub fn set(key: &str, value: &str, ttl_seconds: Option<u32>) -> Result<()> {
    sys::set(key, value, ttl_seconds)
}

/// Removes a key.
pub fn delete(key: &str) -> Result<()> {
    sys::delete(key)
}

/// The JSON value under a key, parsed; `None` when absent or expired.
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>> {
    get(key)?.map(|text| json::from_str(&text)).transpose()
}

/// Stores a value as JSON, expiring after `ttl_seconds` when given.
pub fn set_json<T: Serialize + ?Sized>(
    key: &str,
    value: &T,
    ttl_seconds: Option<u32>,
) -> Result<()> {
    set(key, &json::to_string(value)?, ttl_seconds)
}

#[cfg(target_arch = "wasm32")]
mod sys {
    use crate::bindings::caps::usher::platform::cache as wit;
    use crate::Result;

    pub(super) fn get(key: &str) -> Result<Option<String>> {
        Ok(wit::get(key)?)
    }

    pub(super) fn set(key: &str, value: &str, ttl_seconds: Option<u32>) -> Result<()> {
        Ok(wit::set(key, value, ttl_seconds)?)
    }

    pub(super) fn delete(key: &str) -> Result<()> {
        Ok(wit::delete(key)?)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod sys {
    use crate::{Error, Result};

    pub(super) fn get(_key: &str) -> Result<Option<String>> {
        Err(Error::native("cache::get"))
    }

    pub(super) fn set(_key: &str, _value: &str, _ttl_seconds: Option<u32>) -> Result<()> {
        Err(Error::native("cache::set"))
    }

    pub(super) fn delete(_key: &str) -> Result<()> {
        Err(Error::native("cache::delete"))
    }
}
