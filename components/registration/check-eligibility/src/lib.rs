//! `registration/check-eligibility` (invoke-worker, resolver
//! `Query.checkEligibility`): may this fan register to this campaign with
//! this entry?
//!
//! Input: an AppSync resolver event whose `arguments` are (or, invoked
//! directly, just) `{"slug", "marketId"?, "entry": {…}, "userInfo":
//! {"globalUserId", "email", "country"?, …}, "doTransfer"?}`.
//!
//! Output: `{"isEligible", "campaignId", "fields", "linkedCampaignId"?,
//! "marketId"?, "transferFrom"?, "reason"?, "message"?, "field"?}`. A fan
//! who may not register is an answer with `isEligible: false` and a reason
//! code; the codes, the order of the checks, the cache-aside reads of the
//! campaign and market (`campaign:slug:<slug>`, TTL 3600 s; a 404 cached
//! 30 s) and `doTransfer` are documented in `usher_domain::eligibility`
//! (the very code `registration/submit-entry` runs before it writes).
//!
//! Typed errors (`errorType`): `CampaignServiceUnavailable` (the campaign
//! or market is not cached and the Campaign Service does not answer),
//! `CampaignServiceError`, `EntryServiceUnavailable` / `EntryServiceError`
//! (an invite check), `InvalidCampaign` (its times do not parse),
//! `Unavailable` (the `demand-table`, read for `doTransfer` only). Nothing
//! is written.
//!
//! Settings: `campaigns_service` (default `campaigns`), `entries_service`
//! (`entries`), `table` (`demand-table`).

mod logic;

pub use logic::{check, Settings};
pub use usher_domain::eligibility::{now_ms, SdkLookup};

use usher_sdk::{InvokeError, InvokeWorker, Value};

/// The worker.
pub struct CheckEligibility;

impl InvokeWorker for CheckEligibility {
    fn handle(payload: Value) -> Result<Value, InvokeError> {
        let settings = Settings::load()?;
        let mut lookup = SdkLookup::new(&settings.table);
        check(&mut lookup, &settings, &payload, now_ms())
    }
}

usher_sdk::export_invoke_worker!(CheckEligibility);
