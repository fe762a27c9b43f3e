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
//! - `POST /entries/batch-upsert {"entries":[…],"refreshScores":bool}` →
//!   `{"upserted","ignored"}` (and `"scoreFailures":[fan…]` with
//!   `refreshScores`): each entry is stored unless the stored item has a
//!   higher numeric `version` (never back in time); the write is conditional
//!   on the version read, so a concurrent newer write is never overwritten.
//!   With `refreshScores` a written item carries its [`score`], and an
//!   ignored entry's stored item is refreshed; the fans whose refresh failed
//!   are answered in `scoreFailures`.
//! - `POST /entries/batch-delete {"keys":[{"campaignId","globalUserId"}…]}` →
//!   `{"deleted"}` (the distinct keys deleted, absent items included).
//! - `GET /campaigns/{campaignId}/entries?limit=&after=` →
//!   `{"entries":[…],"next":<globalUserId cursor or null>}`.
//! - `GET /markets/{marketId}/entries?campaignId=…&limit=&after=` →
//!   `{"entries":[…],"next"}` (from the market index, see [`presale`]).
//! - `GET /markets/{marketId}/selections?campaignId=…&limit=&after=` →
//!   `{"selections":[{"globalUserId","verdict","code"?,"drawId"}],"next"}`.
//! - `PUT /campaigns/{campaignId}/invites {"emails":[…]}` → `{"invited"}`;
//!   `GET /campaigns/{campaignId}/invites/{email}` → `{"invited": bool}`.
//! - `POST /entries/assign-codes` → `{"assigned","already","conflicts"}`;
//!   `POST /entries/verdicts` → `{"updated","missing"}` (and `"conflicts"`).
//! - `POST /scores/refresh {"fans":[…]}` → `{"refreshed","missing"}`; the
//!   score is [`score`]: 10 × the entry's non-null top-level attributes
//!   (not counting a draw's outcome nor the replication's bookkeeping,
//!   [`UNSCORED_ATTRIBUTES`]) plus its non-negative integer `version`.
//!
//! A listed entry is the stored entry with the item's `score` added.

mod logic;

pub use logic::{
    batch_delete, batch_upsert, campaign_entries, handle, is_older, item_of, key_of, presale,
    refresh_scores, score, view, Failure, Settings, DEFAULT_LIMIT, MAX_ITEMS, MAX_LIMIT,
    UNSCORED_ATTRIBUTES, WRITE_ATTEMPTS,
};

use usher_sdk::{HttpRequest, HttpResponse, HttpWorker};

/// The worker.
pub struct EntryService;

impl HttpWorker for EntryService {
    fn handle(request: HttpRequest) -> HttpResponse {
        usher_sdk::router::serve_with(Settings::load, |settings| handle(settings, &request))
    }
}

usher_sdk::export_http_worker!(EntryService);
