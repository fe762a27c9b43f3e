//! JSON helpers: (de)serialization with the SDK's [`Error`](crate::Error),
//! and small accessors for `serde_json::Value` objects.

use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use crate::Result;

pub use serde_json::{json, Map, Value as Json};

/// Serializes a value to JSON text.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    Ok(serde_json::to_string(value)?)
}

/// Parses JSON text into a typed value.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T> {
    Ok(serde_json::from_str(text)?)
}

/// Parses JSON bytes into a typed value.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    Ok(serde_json::from_slice(bytes)?)
}

/// Converts a serializable value into a `Value`.
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value> {
    Ok(serde_json::to_value(value)?)
}

/// Converts a `Value` into a typed value.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T> {
    Ok(serde_json::from_value(value)?)
}

/// The string attribute `key` of a JSON object, if present and a string.
pub fn str_field<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// The boolean attribute `key` of a JSON object, if present and a boolean.
pub fn bool_field(value: &Value, key: &str) -> Option<bool> {
    value.get(key).and_then(Value::as_bool)
}

/// The integer attribute `key` of a JSON object, if present and an integer.
pub fn i64_field(value: &Value, key: &str) -> Option<i64> {
    value.get(key).and_then(Value::as_i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize, serde::Serialize)]
    struct Fan {
        id: String,
        n: u32,
    }

    #[test]
    fn round_trip() {
        let fan = Fan {
            id: "a".into(),
            n: 2,
        };
        let text = to_string(&fan).expect("serialize");
        assert_eq!(text, r#"{"id":"a","n":2}"#);
        let back: Fan = from_str(&text).expect("parse");
        assert_eq!(back, fan);
    }

    #[test]
    fn parse_error_is_json_variant() {
        let err = from_str::<Fan>("{").expect_err("must fail");
        assert_eq!(err.variant(), "json");
    }

    #[test]
    fn field_accessors() {
        let v = json!({"s": "x", "b": true, "i": 3, "f": 1.5});
        assert_eq!(str_field(&v, "s"), Some("x"));
        assert_eq!(str_field(&v, "b"), None);
        assert_eq!(bool_field(&v, "b"), Some(true));
        assert_eq!(i64_field(&v, "i"), Some(3));
        assert_eq!(i64_field(&v, "f"), None);
        assert_eq!(str_field(&v, "missing"), None);
    }
}
