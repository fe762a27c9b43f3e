//! The worker's logic: the request, the checks of
//! `usher_domain::eligibility`, the answer.

use usher_domain::eligibility::{self, Evaluation, Lookup, Services};
use usher_domain::Fan;
use usher_sdk::json::Map;
use usher_sdk::{cache, config, services, table, InvokeError, Value};

/// The worker's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The services called.
    pub services: Services,
    /// The `demand-table` (read for `doTransfer`).
    pub table: String,
}

impl Settings {
    /// From the registry's `settings`.
    pub fn load() -> usher_sdk::Result<Settings> {
        Ok(Settings {
            services: Services {
                campaigns: config::string_or("campaigns_service", "campaigns")?,
                entries: config::string_or("entries_service", "entries")?,
            },
            table: config::string_or("table", "demand-table")?,
        })
    }
}

/// Milliseconds since the epoch, from the host's wall clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The checks' outside world through the capabilities: the `cache`, the
/// `services` and the `demand-table`.
pub struct SdkLookup {
    table: String,
}

impl SdkLookup {
    /// Reads entries from `table`.
    pub fn new(table: &str) -> SdkLookup {
        SdkLookup {
            table: table.to_string(),
        }
    }
}

impl Lookup for SdkLookup {
    fn cache_get(&mut self, key: &str) -> Result<Option<String>, String> {
        cache::get(key).map_err(|e| e.to_string())
    }

    fn cache_set(&mut self, key: &str, value: &str, ttl_seconds: u32) -> Result<(), String> {
        cache::set(key, value, Some(ttl_seconds)).map_err(|e| e.to_string())
    }

    fn get(&mut self, service: &str, path: &str) -> Result<(u16, String), String> {
        services::get(service, path)
            .map(|r| (r.status, r.body))
            .map_err(|e| e.to_string())
    }

    fn entry(&mut self, campaign_id: &str, global_user_id: &str) -> Result<Option<Value>, String> {
        table::get(
            &self.table,
            &Fan::new(campaign_id, global_user_id).demand_key(),
        )
        .map_err(|e| e.to_string())
    }

    fn warn(&mut self, message: &str) {
        usher_sdk::log::warn(message, &[]);
    }
}

/// Answers one request at `now_ms`: the evaluation's answer (a refusal
/// included), or the typed error that kept it from being made.
pub fn check(
    lookup: &mut dyn Lookup,
    settings: &Settings,
    payload: &Value,
    now_ms: i64,
) -> Result<Value, InvokeError> {
    let request = match eligibility::parse_request(payload) {
        Ok(r) => r,
        Err(refusal) => return Ok(Evaluation::refused(None, None, Map::new(), refusal).answer()),
    };
    let evaluation = eligibility::evaluate(lookup, &settings.services, &request, now_ms)
        .map_err(|e| InvokeError::new(e.kind(), e.to_string()))?;
    if let Some(r) = &evaluation.refusal {
        usher_sdk::log::info(
            "not eligible",
            &[
                ("reason", r.reason.code()),
                ("slug", &request.slug),
                ("globalUserId", &request.user_info.global_user_id),
            ],
        );
    }
    Ok(evaluation.answer())
}

#[cfg(test)]
mod tests;
