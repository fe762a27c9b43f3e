//! Stream workers that read the changes' JSON text themselves.
//!
//! A [`StreamWorker`](crate::StreamWorker) gets each change's keys and
//! images parsed into `serde_json::Value` trees by the SDK. A worker whose
//! cost is that parse (the archive reads every attribute of every image once
//! and copies most of them through unchanged) implements
//! [`StreamTextWorker`] instead and gets the text as it crossed the
//! boundary, to read borrowed (`serde_json::value::RawValue`, `&str`).

use serde_json::Value;

use crate::handler::{Change, ChangeKind, StreamResult};

/// One table change record with its keys and images as JSON text (what the
/// host sent; the same fields as [`Change`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeText {
    /// The table that changed.
    pub table: String,
    /// The change kind.
    pub kind: ChangeKind,
    /// The item's key attributes, a JSON object's text.
    pub keys: String,
    /// The item after the change (insert, modify), a JSON object's text.
    pub new_image: Option<String>,
    /// The item before the change (modify, remove), a JSON object's text.
    pub old_image: Option<String>,
    /// The change's sequence number (decimal digits, increasing per shard).
    pub sequence_number: String,
    /// When the change happened, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

impl ChangeText {
    /// The change with its keys and images parsed.
    pub fn parse(&self) -> Result<Change, serde_json::Error> {
        let image =
            |t: &Option<String>| t.as_deref().map(serde_json::from_str::<Value>).transpose();
        Ok(Change {
            table: self.table.clone(),
            kind: self.kind,
            keys: serde_json::from_str(&self.keys)?,
            new_image: image(&self.new_image)?,
            old_image: image(&self.old_image)?,
            sequence_number: self.sequence_number.clone(),
            timestamp_ms: self.timestamp_ms,
        })
    }
}

impl From<&Change> for ChangeText {
    /// The change as the host sends it (compact JSON text).
    fn from(c: &Change) -> Self {
        ChangeText {
            table: c.table.clone(),
            kind: c.kind,
            keys: c.keys.to_string(),
            new_image: c.new_image.as_ref().map(Value::to_string),
            old_image: c.old_image.as_ref().map(Value::to_string),
            sequence_number: c.sequence_number.clone(),
            timestamp_ms: c.timestamp_ms,
        }
    }
}

/// A worker fed batches of table change records as JSON text
/// (`stream-worker` world, like [`StreamWorker`](crate::StreamWorker)).
pub trait StreamTextWorker {
    /// Handles a batch of changes.
    fn handle(changes: Vec<ChangeText>) -> StreamResult;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_and_parsed_changes_convert_both_ways() {
        let change: Change = serde_json::from_value(json!({
            "table": "t", "eventName": "MODIFY", "keys": {"PK": "a"},
            "newImage": {"PK": "a", "n": 2}, "oldImage": {"PK": "a", "n": 1},
            "sequenceNumber": "7", "timestampMs": 5,
        }))
        .expect("change");
        let text = ChangeText::from(&change);
        assert_eq!(text.new_image.as_deref(), Some(r#"{"PK":"a","n":2}"#));
        assert_eq!(text.parse().expect("parses"), change);
        let bad = ChangeText {
            keys: "{".into(),
            ..text
        };
        assert!(bad.parse().is_err());
    }
}
