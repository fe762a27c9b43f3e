//! The worker's own settings (the `config` capability): the `settings` map
//! of its registry entry.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{wire, Result};

/// One setting, parsed into `T`; `None` when the key is not set.
pub fn get<T: DeserializeOwned>(key: &str) -> Result<Option<T>> {
    sys::get(key)?.map(wire::decode).transpose()
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
    wire::decode(sys::all()?)
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
    use serde_json::Value;

    use crate::{native, Result};

    pub(super) fn get(key: &str) -> Result<Option<Value>> {
        native::with("config::get", |b| b.config_get(key))
    }

    pub(super) fn all() -> Result<Value> {
        native::with("config::all", |b| b.config_all())
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
