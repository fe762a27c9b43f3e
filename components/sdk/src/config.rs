//! The worker's own settings (the `config` capability): the `settings` map
//! of its registry entry.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{json, Result};

/// One setting, parsed into `T`; `None` when the key is not set.
pub fn get<T: DeserializeOwned>(key: &str) -> Result<Option<T>> {
    sys::get(key)?.map(|text| json::from_str(&text)).transpose()
}

/// One setting, or `default` when the key is not set.
pub fn get_or<T: DeserializeOwned>(key: &str, default: T) -> Result<T> {
    Ok(get(key)?.unwrap_or(default))
}

/// A string setting, or `default` when the key is not set.
pub fn string_or(key: &str, default: &str) -> Result<String> {
    get_or(key, default.to_string())
}

/// Every setting as one JSON object.
pub fn all() -> Result<Value> {
    json::from_str(&sys::all()?)
}

#[cfg(target_arch = "wasm32")]
mod sys {
    use crate::bindings::caps::usher::platform::config as wit;
    use crate::Result;

    pub(super) fn get(key: &str) -> Result<Option<String>> {
        Ok(wit::get(key))
    }

    pub(super) fn all() -> Result<String> {
        Ok(wit::all())
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod sys {
    use crate::{Error, Result};

    pub(super) fn get(_key: &str) -> Result<Option<String>> {
        Err(Error::native("config::get"))
    }

    pub(super) fn all() -> Result<String> {
        Err(Error::native("config::all"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn native_config_is_unsupported() {
        let err = super::get::<String>("queue").expect_err("native");
        assert_eq!(err.variant(), "unsupported");
    }
}
