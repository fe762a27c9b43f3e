//! `notification/generate-notifications` (invoke-worker): runs the
//! reminder generator's rule once, on demand — the same rule as the daily
//! `notification/notification-generator` (`usher_domain::notification::sdk::generate`),
//! for a workflow, the presale demo and tests (a scheduled worker cannot be
//! invoked).
//!
//! Payload `{}` (or `{"now": RFC 3339}`) → `{"marketCount","userCount",
//! "created","existing","campaigns","errors":[…]}`. A Campaign Service
//! that cannot list the campaigns is an `Unavailable` error.
//!
//! Settings: `table` (`notifications`), `campaigns_service` (`campaigns`),
//! `entries_service` (`entries`), `closing_window_hours` (48),
//! `closing_lead_hours` (24), `page_size` (1000).

use usher_domain::notification::sdk::{generate, GeneratorSettings};
use usher_domain::rfc3339;
use usher_sdk::{InvokeError, InvokeWorker, Value};

/// Runs the rule at `now_ms` (or the payload's `now`).
pub fn run(
    settings: &GeneratorSettings,
    payload: &Value,
    now_ms: i64,
) -> Result<Value, InvokeError> {
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
    generate(settings, now).map_err(|e| InvokeError::new("Unavailable", e))
}

/// The worker.
pub struct GenerateNotifications;

impl InvokeWorker for GenerateNotifications {
    fn handle(payload: Value) -> Result<Value, InvokeError> {
        let settings = GeneratorSettings::load()
            .map_err(|e| InvokeError::internal(format!("cannot read the settings: {e}")))?;
        run(&settings, &payload, rfc3339::now_millis())
    }
}

usher_sdk::export_invoke_worker!(GenerateNotifications);

#[cfg(test)]
mod tests;
