//! [`JsonText`]: a JSON document kept as its text.
//!
//! A table change's keys and images travel from the change log (which
//! stores them as text) to a stream-worker (which receives them as text
//! through the WIT). Parsing them into `serde_json::Value` trees on the way
//! only to write them out again cost more than the worker's own work on a
//! large stream (P5 in BENCHMARKS.md); a `JsonText` carries the text
//! through and is parsed only where a host needs to look inside (a stream
//! filter on the Lambda path, a test).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// The text of one JSON document: valid JSON, as serde_json writes it or as
/// a store that wrote it hands it back.
///
/// It serializes as the JSON it holds (not as a string), and deserializes
/// from any JSON value, so records carrying it keep their JSON shape in
/// fixtures, failure messages and `usher invoke`. Two are equal when they
/// hold the same JSON value (the same text, or texts that parse equal).
#[derive(Clone)]
pub struct JsonText(String);

impl JsonText {
    /// The compact text of `value`.
    pub fn from_value(value: &Value) -> JsonText {
        // Writing a `Value` to a `Vec` cannot fail (its map keys are
        // strings); `Display` is the same writer behind a formatter.
        JsonText(serde_json::to_string(value).unwrap_or_else(|_| value.to_string()))
    }

    /// `text`, checked to be one JSON document.
    pub fn parse(text: String) -> Result<JsonText, serde_json::Error> {
        serde_json::from_str::<serde::de::IgnoredAny>(&text)?;
        Ok(JsonText(text))
    }

    /// `text` as it is: for text the caller's own store wrote with
    /// serde_json (the embedded change log), where checking it again would
    /// be a second parse per record. Text that is not JSON is not undefined
    /// behaviour, only an error later, where it is parsed (the worker
    /// rejects it).
    pub fn trusted(text: String) -> JsonText {
        JsonText(text)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, owned.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The document as a `Value` tree.
    pub fn value(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(&self.0)
    }
}

/// `null`: what a taken-out text leaves behind (`std::mem::take`).
impl Default for JsonText {
    fn default() -> JsonText {
        JsonText("null".to_owned())
    }
}

impl From<Value> for JsonText {
    fn from(value: Value) -> JsonText {
        JsonText::from_value(&value)
    }
}

impl From<&Value> for JsonText {
    fn from(value: &Value) -> JsonText {
        JsonText::from_value(value)
    }
}

impl PartialEq for JsonText {
    fn eq(&self, other: &JsonText) -> bool {
        self.0 == other.0
            || match (self.value(), other.value()) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            }
    }
}

impl PartialEq<Value> for JsonText {
    fn eq(&self, other: &Value) -> bool {
        self.value().is_ok_and(|v| v == *other)
    }
}

impl fmt::Debug for JsonText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for JsonText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for JsonText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value()
            .map_err(serde::ser::Error::custom)?
            .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JsonText, D::Error> {
        Value::deserialize(deserializer).map(|v| JsonText::from_value(&v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_as_json_not_as_a_string() {
        let t = JsonText::from_value(&json!({"b": 1, "a": "x\"y"}));
        assert_eq!(t.as_str(), r#"{"a":"x\"y","b":1}"#);
        let wrapped = serde_json::to_value(vec![t.clone()]).unwrap();
        assert_eq!(wrapped, json!([{"a": "x\"y", "b": 1}]));
        let back: Vec<JsonText> = serde_json::from_value(wrapped).unwrap();
        assert_eq!(back, vec![t]);
    }

    #[test]
    fn equal_when_the_values_are() {
        let a = JsonText::parse(r#"{ "a": 1, "b": [true] }"#.into()).unwrap();
        let b = JsonText::from_value(&json!({"b": [true], "a": 1}));
        assert_eq!(a, b);
        assert_eq!(a, json!({"a": 1, "b": [true]}));
        assert_ne!(a, JsonText::from_value(&json!({"a": 2, "b": [true]})));
    }

    #[test]
    fn parse_rejects_what_is_not_one_document() {
        assert!(JsonText::parse("{\"a\":".into()).is_err());
        assert!(JsonText::parse("{} {}".into()).is_err());
        assert!(JsonText::parse("not json".into()).is_err());
        let t = JsonText::trusted("not json".into());
        assert!(t.value().is_err());
        // Neither equal to itself parsed nor serializable: the error shows.
        assert!(serde_json::to_string(&t).is_err());
    }
}
