//! `testing/table-probe` (invoke-worker): one table call per invocation, to
//! test the host's table grants.
//!
//! Payloads and answers:
//! * `{"op":"get","table":T,"key":K}` → `{"item": <item or null>}`
//! * `{"op":"put","table":T,"item":I}` (optional `"condition"`:
//!   `"not-exists"` or `"exists"`) → `{"ok": true}`
//! * a capability error → `{"error": "<variant>: <message>"}` (a normal
//!   answer, e.g. `{"error": "denied: table secrets"}`)
//! * any other payload → an `InvalidInput` invoke error.

use serde_json::{json, Value};
use usher_sdk::table::{self, Condition};
use usher_sdk::{InvokeError, InvokeWorker};

/// One parsed probe.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// `table::get`.
    Get {
        /// The table.
        table: String,
        /// The key.
        key: Value,
    },
    /// `table::put`.
    Put {
        /// The table.
        table: String,
        /// The item.
        item: Value,
        /// The optional condition.
        condition: Option<Condition>,
    },
}

/// Parses a payload.
pub fn parse(payload: &Value) -> Result<Probe, InvokeError> {
    let field = |name: &str| {
        payload
            .get(name)
            .cloned()
            .ok_or_else(|| InvokeError::invalid_input(format!("missing `{name}`")))
    };
    let table = payload
        .get("table")
        .and_then(Value::as_str)
        .ok_or_else(|| InvokeError::invalid_input("missing `table`"))?
        .to_string();
    match payload.get("op").and_then(Value::as_str) {
        Some("get") => Ok(Probe::Get {
            table,
            key: field("key")?,
        }),
        Some("put") => {
            let condition = match payload.get("condition").and_then(Value::as_str) {
                None => None,
                Some("not-exists") => Some(Condition::NotExists),
                Some("exists") => Some(Condition::Exists),
                Some(other) => {
                    return Err(InvokeError::invalid_input(format!(
                        "unknown condition `{other}`"
                    )))
                }
            };
            Ok(Probe::Put {
                table,
                item: field("item")?,
                condition,
            })
        }
        _ => Err(InvokeError::invalid_input(
            "`op` must be \"get\" or \"put\"",
        )),
    }
}

/// The answer for a capability result.
pub fn answer(result: usher_sdk::Result<Value>) -> Value {
    match result {
        Ok(value) => value,
        Err(e) => json!({"error": e.to_string()}),
    }
}

/// The worker.
pub struct TableProbe;

impl InvokeWorker for TableProbe {
    fn handle(payload: Value) -> Result<Value, InvokeError> {
        let result = match parse(&payload)? {
            Probe::Get { table, key } => {
                table::get::<Value>(&table, &key).map(|item| json!({"item": item}))
            }
            Probe::Put {
                table,
                item,
                condition,
            } => table::put(&table, &item, condition).map(|()| json!({"ok": true})),
        };
        Ok(answer(result))
    }
}

usher_sdk::export_invoke_worker!(TableProbe);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_probes() {
        let p = parse(&json!({"op": "get", "table": "t", "key": {"PK": "a"}})).expect("get");
        assert_eq!(
            p,
            Probe::Get {
                table: "t".into(),
                key: json!({"PK": "a"})
            }
        );
        let p = parse(
            &json!({"op": "put", "table": "t", "item": {"PK": "a"}, "condition": "not-exists"}),
        )
        .expect("put");
        assert!(matches!(
            p,
            Probe::Put {
                condition: Some(Condition::NotExists),
                ..
            }
        ));
    }

    #[test]
    fn rejects_bad_payloads() {
        for bad in [
            json!({}),
            json!({"op": "scan", "table": "t"}),
            json!({"op": "get", "table": "t"}),
            json!({"op": "put", "key": {}}),
            json!({"op": "put", "table": "t", "item": {}, "condition": "maybe"}),
        ] {
            assert_eq!(parse(&bad).expect_err("bad").kind, "InvalidInput");
        }
    }

    #[test]
    fn renders_errors() {
        assert_eq!(
            answer(Err(usher_sdk::Error::Denied("table secrets".into()))),
            json!({"error": "denied: table secrets"})
        );
        // Natively the capability is unsupported, and says so in the answer.
        let out = TableProbe::handle(json!({"op": "get", "table": "t", "key": {"PK": "a"}}))
            .expect("answer");
        assert!(out["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("unsupported: ")));
    }
}
