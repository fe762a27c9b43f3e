//! The checks' outside world through the capabilities (feature `sdk`): the
//! `cache`, the `services` and the `demand-table`, as both registration
//! workers give it to [`super::evaluate`].

use usher_sdk::{cache, config, services, table, Value};

use super::{Lookup, Services};
use crate::Fan;

impl Services {
    /// From the worker's registry `settings` (`campaigns_service`,
    /// `entries_service`; default `campaigns` and `entries`).
    pub fn load() -> usher_sdk::Result<Services> {
        Ok(Services {
            campaigns: config::string_or("campaigns_service", "campaigns")?,
            entries: config::string_or("entries_service", "entries")?,
        })
    }
}

/// The demand-table the workers read (setting `table`, default
/// `demand-table`).
pub fn table_setting() -> usher_sdk::Result<String> {
    config::string_or("table", "demand-table")
}

/// Milliseconds since the epoch, from the host's wall clock.
pub fn now_ms() -> i64 {
    crate::rfc3339::now_millis()
}

/// [`Lookup`] over the capabilities, reading entries from one table.
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
