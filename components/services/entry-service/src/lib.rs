//! `services/entry-service` (http-worker): the Entry Service, the reference
//! service the replication workers call. Entries live in the table of setting
//! `table` (default `entries`; partition key `PK`, sort key `SK`) as items
//! `{"PK":"CAMPAIGN#<campaignId>","SK":"FAN#<globalUserId>","entry":<entry>,
//! "marketId":<marketId>,"version":<version>,"score":<score>}`.
//!
//! Paths are relative to the worker's route; bodies are JSON; errors are
//! `{"error": "..."}` (400 bad input, 404 unknown path, 405 wrong method,
//! 409 a write lost to concurrent writers three times, 413 more than 25 items,
//! 5xx table failures). `openapi.yaml` next to this crate is the contract.
//!
//! - `POST /entries/batch-upsert {"entries":[…]}` → `{"upserted","ignored"}`:
//!   each entry is stored unless the stored item has a higher numeric
//!   `version` (never back in time); the write is conditional on the version
//!   read, so a concurrent newer write is never overwritten.
//! - `POST /entries/batch-delete {"keys":[{"campaignId","globalUserId"}…]}` →
//!   `{"deleted"}` (the distinct keys deleted, absent items included).
//! - `GET /campaigns/{campaignId}/entries?limit=&after=` →
//!   `{"entries":[…],"next":<globalUserId cursor or null>}`.
//! - `GET /markets/{marketId}/entries?campaignId=…` → `{"entries":[…]}`.
//! - `POST /scores/refresh {"fans":[…]}` → `{"refreshed","missing"}`; the
//!   score is [`score`]: 10 × the entry's non-null top-level attributes plus
//!   its non-negative integer `version`.
//!
//! A listed entry is the stored entry with the item's `score` added.

mod logic;

pub use logic::{
    batch_delete, batch_upsert, campaign_entries, decode, handle, is_older, item_of,
    key_of, market_entries, refresh_scores, route, score, view, Failure, Ports, Route, Settings,
    DEFAULT_LIMIT, MAX_ITEMS, MAX_LIMIT, WRITE_ATTEMPTS,
};

use usher_sdk::table::{self, Condition, Page, Write};
use usher_sdk::{HttpRequest, HttpResponse, HttpWorker, Value};

/// The worker.
pub struct EntryService;

/// The ports implemented with the SDK's table calls.
struct Host;

impl Ports for Host {
    fn batch_get(
        &mut self,
        table_name: &str,
        keys: &[Value],
    ) -> usher_sdk::Result<Vec<Option<Value>>> {
        table::batch_get(table_name, keys)
    }

    fn get(&mut self, table_name: &str, key: &Value) -> usher_sdk::Result<Option<Value>> {
        table::get(table_name, key)
    }

    fn put(
        &mut self,
        table_name: &str,
        item: &Value,
        condition: Condition,
    ) -> usher_sdk::Result<()> {
        table::put(table_name, item, Some(condition))
    }

    fn update(
        &mut self,
        table_name: &str,
        key: &Value,
        set: &Value,
        condition: Condition,
    ) -> usher_sdk::Result<()> {
        // The updated item is not needed: skip building it.
        table::update::<serde::de::IgnoredAny>(table_name, key, set, &[], Some(condition))
            .map(|_| ())
    }

    fn put_many(
        &mut self,
        table_name: &str,
        puts: &[(Value, Condition)],
    ) -> usher_sdk::Result<Vec<usher_sdk::Result<()>>> {
        let puts = puts
            .iter()
            .map(|(item, c)| table::PutItem {
                item: item.clone(),
                condition: Some(c.clone()),
            })
            .collect();
        table::put_many(table_name, puts)
    }

    fn update_many(
        &mut self,
        table_name: &str,
        updates: &[(Value, Value, Condition)],
    ) -> usher_sdk::Result<Vec<usher_sdk::Result<()>>> {
        let updates = updates
            .iter()
            .map(|(key, set, c)| table::UpdateItem {
                key: key.clone(),
                set: set.clone(),
                remove: Vec::new(),
                condition: Some(c.clone()),
            })
            .collect();
        // The updated items are not needed: skip building them.
        Ok(
            table::update_many::<serde::de::IgnoredAny>(table_name, updates)?
                .into_iter()
                .map(|r| r.map(|_| ()))
                .collect(),
        )
    }

    fn delete(
        &mut self,
        table_name: &str,
        key: &Value,
        condition: Condition,
    ) -> usher_sdk::Result<()> {
        table::delete(table_name, key, Some(condition))
    }

    fn batch_write(
        &mut self,
        table_name: &str,
        writes: &[Write],
    ) -> usher_sdk::Result<Vec<usher_sdk::Result<()>>> {
        table::batch_write(table_name, writes)
    }

    fn query(
        &mut self,
        table_name: &str,
        partition: &Value,
        sort_prefix: &str,
        limit: u32,
        start_after: Option<&Value>,
    ) -> usher_sdk::Result<Page> {
        table::query(
            table_name,
            partition,
            Some(sort_prefix),
            Some(limit),
            start_after,
        )
    }
}

impl HttpWorker for EntryService {
    fn handle(request: HttpRequest) -> HttpResponse {
        match Settings::load() {
            Ok(settings) => handle(&mut Host, &settings, &request),
            Err(e) => {
                usher_sdk::error!(error = e; "cannot read the settings");
                Failure {
                    status: 500,
                    message: format!("cannot read the settings: {e}"),
                    allow: None,
                }
                .response()
            }
        }
    }
}

usher_sdk::export_http_worker!(EntryService);
