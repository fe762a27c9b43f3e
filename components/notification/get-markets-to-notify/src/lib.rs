//! `notification/get-markets-to-notify` (invoke-worker): the markets whose
//! reminders are due now.
//!
//! Payload `{}` (or `{"now": RFC 3339}` for tests) → `{"marketIds":[…],
//! "campaignIds":[…],"markets":[{"campaignId","marketId"}]}`: each market
//! (and campaign) once, in the `notifications` table's order, that holds a
//! notification recorded by the generator whose `dueAt` ≤ now and which is
//! not DONE (its jobs not all triggered yet). Read-only.
//!
//! Settings: `table` (`notifications`).

use usher_domain::notification::sdk::markets_due;
use usher_domain::rfc3339;
use usher_sdk::{InvokeError, InvokeWorker, Value};

/// The due markets at `now_ms` (or the payload's `now`).
pub fn run(table: &str, payload: &Value, now_ms: i64) -> Result<Value, InvokeError> {
    let obj = payload.as_object().ok_or_else(|| {
        InvokeError::invalid_input("the payload must be an object: {} or {\"now\"}")
    })?;
    if let Some(k) = obj.keys().find(|k| k.as_str() != "now") {
        return Err(InvokeError::invalid_input(format!(
            "unknown field {k:?} (only \"now\")"
        )));
    }
    let now = match obj.get("now") {
        None | Some(Value::Null) => now_ms,
        Some(v) => v.as_str().and_then(rfc3339::parse_millis).ok_or_else(|| {
            InvokeError::invalid_input(format!("now must be an RFC 3339 time, not {v}"))
        })?,
    };
    markets_due(table, now).map_err(|e| InvokeError::new("Unavailable", e))
}

/// The worker.
pub struct GetMarketsToNotify;

impl InvokeWorker for GetMarketsToNotify {
    fn handle(payload: Value) -> Result<Value, InvokeError> {
        let table = usher_sdk::config::string_or("table", "notifications")
            .map_err(|e| InvokeError::internal(format!("cannot read the settings: {e}")))?;
        run(&table, &payload, rfc3339::now_millis())
    }
}

usher_sdk::export_invoke_worker!(GetMarketsToNotify);

#[cfg(test)]
mod tests {
    use super::*;
    use usher_domain::notification::{Notification, ReminderKind, State};
    use usher_sdk::fakes::Fakes;
    use usher_sdk::json::json;

    fn note(c: &str, m: &str, kind: ReminderKind, due: &str, state: State) -> Value {
        let mut n = Notification::new(kind, c, m, "r1", due, 1, "2030-01-01T00:00:00Z");
        n.state = state;
        serde_json::to_value(n).expect("json")
    }

    #[test]
    fn due_markets_once_each_and_not_done_ones() {
        let fakes = Fakes::new()
            .with_item(
                "notifications",
                note(
                    "c1",
                    "m1",
                    ReminderKind::Winner,
                    "2030-01-01T00:00:00Z",
                    State::Due,
                ),
            )
            .with_item(
                "notifications",
                note(
                    "c1",
                    "m1",
                    ReminderKind::Closing,
                    "2030-01-01T00:00:00Z",
                    State::Enqueued,
                ),
            )
            .with_item(
                "notifications",
                note(
                    "c1",
                    "m2",
                    ReminderKind::Winner,
                    "2030-01-01T00:00:00Z",
                    State::Done,
                ),
            )
            .with_item(
                "notifications",
                note(
                    "c2",
                    "m1",
                    ReminderKind::Closing,
                    "2030-01-02T00:00:00Z",
                    State::Due,
                ),
            )
            .with_item(
                "notifications",
                note(
                    "c3",
                    "m7",
                    ReminderKind::Winner,
                    "2030-01-01T00:00:00Z",
                    State::Planned,
                ),
            );
        let _i = fakes.install();
        let at = |now: &str| run("notifications", &json!({"now": now}), 0).expect("answer");
        assert_eq!(
            at("2030-01-01T12:00:00Z"),
            json!({"marketIds": ["m1", "m7"], "campaignIds": ["c1", "c3"],
                   "markets": [{"campaignId": "c1", "marketId": "m1"}, {"campaignId": "c3", "marketId": "m7"}]})
        );
        assert_eq!(
            at("2030-01-02T00:00:00Z")["marketIds"],
            json!(["m1", "m1", "m7"])
        );
        assert_eq!(at("2029-12-31T00:00:00Z")["markets"], json!([]));
        let now = rfc3339::parse_millis("2030-01-01T12:00:00Z").expect("t");
        assert_eq!(
            run("notifications", &json!({}), now).expect("answer")["campaignIds"],
            json!(["c1", "c3"])
        );
        for bad in [json!([]), json!({"now": "soon"}), json!({"when": 1})] {
            assert_eq!(
                run("notifications", &bad, now).expect_err("bad").kind,
                "InvalidInput"
            );
        }
    }
}
