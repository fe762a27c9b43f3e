//! The worker's logic: the request, the checks of
//! `usher_domain::eligibility`, the answer.

use usher_domain::eligibility::{self, Evaluation, Lookup, Services};
use usher_sdk::json::Map;
use usher_sdk::{InvokeError, Value};

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
            services: Services::load()?,
            table: eligibility::table_setting()?,
        })
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
