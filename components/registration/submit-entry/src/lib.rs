//! `registration/submit-entry` (invoke-worker, resolver
//! `Mutation.submitEntry`): registers a fan's entry, what the seed's AppSync
//! did with a direct DynamoDB resolver.
//!
//! Input: the same arguments as `checkEligibility` (`{"slug", "marketId",
//! "entry", "userInfo", "doTransfer"?}`, inside a resolver event's
//! `arguments` or as they are); `marketId` is required here (the draw is
//! per market).
//!
//! 1. The checks of `usher_domain::eligibility` (the very code
//!    `check-eligibility` answers with). A refusal is answered as there
//!    (`isEligible: false`, `reason`, `message`) and nothing is written.
//! 2. The fan's current item `ENTRY#<campaignId>#<globalUserId>` is read.
//!    When it has a verdict other than `PENDING` the draw has been made:
//!    the resubmission is refused with `ALREADY_SELECTED` (the verdict is
//!    never reset).
//! 3. The user record (`userInfo`: `{"globalUserId","email","firstName"?,
//!    "lastName"?,"country"?,"locale"?,…}`) is sent to the `user-info` queue
//!    (consumed by `registration/upsert-users`). A failed send is the typed
//!    error `Unavailable` and nothing is written.
//! 4. The demand-table item, as `components/services/CONTRACTS.md` has it:
//!    `{"PK","SK":"ENTRY","campaignId","globalUserId","marketId","entry",
//!    "email","verdict":"PENDING","needsReplication":true,"version",
//!    "createdAt","updatedAt"}` (+ `transferredFrom`), written with a
//!    condition: a new entry under "no such item" (`version` 1), a
//!    resubmission under "`version` is still the one read" (`version` + 1,
//!    `createdAt` kept, the item's other attributes kept). A write whose
//!    condition fails (another submission of the same fan got in between)
//!    reads again and retries, at most [`MAX_ATTEMPTS`] times, then answers
//!    the typed error `Conflict`; so of two concurrent submissions each gets
//!    its own version and neither is lost. A resubmission identical to the
//!    stored entry (same market, entry and e-mail) writes nothing and
//!    answers the stored version with `unchanged: true` (a client's retry
//!    costs no replication).
//! 5. With `doTransfer` (see `usher_domain::eligibility`): the entry is
//!    written here with `transferredFrom: <linkedCampaignId>` (its fields:
//!    the linked campaign's entry overridden by the request's), then the
//!    fan's entry in the linked campaign is deleted, conditional on the
//!    version read (re-read and retried when it changed; left in place,
//!    with `sourceRemoved: false`, when it has been drawn meanwhile). The
//!    delete's stream record makes replication remove it from the Entry
//!    Service. When the delete fails the answer is the typed error
//!    `Unavailable`; submitting again finishes the transfer (the entry here
//!    is then unchanged).
//!
//! Answer: `{"isEligible": true, "campaignId", "globalUserId", "marketId",
//! "version", "created", "unchanged", "transferredFrom"?, "sourceRemoved"?}`.
//!
//! Typed errors (`errorType`): those of `check-eligibility`
//! (`CampaignServiceUnavailable`, `CampaignServiceError`,
//! `EntryServiceUnavailable`, `EntryServiceError`, `InvalidCampaign`),
//! `Unavailable` (the table or the queue failed), `Conflict` (the entry kept
//! changing under the write).
//!
//! Settings: `table` (default `demand-table`), `user_queue` (`user-info`),
//! `campaigns_service` (`campaigns`), `entries_service` (`entries`).

mod logic;

pub use logic::{submit, Settings, MAX_ATTEMPTS};
pub use usher_domain::eligibility::{now_ms, SdkLookup};

use usher_sdk::{InvokeError, InvokeWorker, Value};

/// The worker.
pub struct SubmitEntry;

impl InvokeWorker for SubmitEntry {
    fn handle(payload: Value) -> Result<Value, InvokeError> {
        let settings = Settings::load()?;
        let mut lookup = SdkLookup::new(&settings.table);
        submit(&mut lookup, &settings, &payload, now_ms())
    }
}

usher_sdk::export_invoke_worker!(SubmitEntry);
