//! `selection/verify-draw` (invoke-worker): recomputes a draw from its
//! record and the Entry Service's entries and says whether it matches
//! (what `usher draw verify <drawId>` runs).
//!
//! Payload `{"drawId"}`. The draw record (`draws` table, `{"PK":
//! "DRAW#<drawId>", "SK": "RECORD"}`, written by
//! `selection/enqueue-market-selections`) gives the campaign, the market,
//! the seed and the counts; the market's entries are read again from the
//! Entry Service (`GET /markets/{mid}/entries`, every page) and drawn again
//! with `usher_domain::draw` (rule `usher-draw-v1`). Then the Entry
//! Service's saved selections (`GET /markets/{mid}/selections`, every page)
//! are compared with the recomputed verdicts, and each saved winner's code
//! with the code the draw's reservations (Code Service `GET
//! /reservations/<drawId>#<n>`) give its rank.
//!
//! Answer:
//!
//! ```json
//! {"drawId", "campaignId", "marketId",
//!  "matches": true,
//!  "inputDigest": "<recomputed>", "resultDigest": "<recomputed>",
//!  "recorded": {"rule", "seed", "selectionCount", "waitlistCount", "entries", "winners",
//!               "waitlist", "losers", "inputDigest", "resultDigest", "status", "createdAt"},
//!  "recomputed": {"entries", "winners", "waitlist", "losers", "inputDigest", "resultDigest"},
//!  "selections": {"expected", "saved", "complete", "agree", "disagree", "unknown",
//!                 "winnersWithoutCode", "codesOnNonWinners", "duplicateCodes",
//!                 "codesChecked", "codeMismatches"},
//!  "differences": ["…"]}
//! ```
//!
//! `matches` is true when there is no difference: the same entry count,
//! input digest, result digest and counts as recorded, and no saved
//! selection that contradicts the draw (a wrong verdict, a fan not in the
//! draw, a winner without a code or with another code than its rank's, a
//! code held twice, a code on a non-winner). Selections not saved yet are
//! no difference: `selections.saved` against `selections.expected` (and
//! `complete`) says how far saving is.
//!
//! Errors: no `drawId` → `InvalidInput`; no record → `NotFound`; a record
//! that is not one → `BadRecord`; a service that cannot be read →
//! `Unavailable` / `ServiceError` (a verification that could not look
//! gives no verdict).
//!
//! Settings: `table` (`draws`), `entries_service` (`entries`),
//! `codes_service` (`codes`), `page_size` (5000). Limits as the draw's
//! (512 MiB, 300 s).

mod logic;

pub use logic::{run, Settings};

use usher_sdk::{InvokeError, InvokeWorker, Value};

/// The worker.
pub struct VerifyDraw;

impl InvokeWorker for VerifyDraw {
    fn handle(payload: Value) -> Result<Value, InvokeError> {
        let settings = Settings::load()
            .map_err(|e| InvokeError::internal(format!("cannot read the settings: {e}")))?;
        run(&settings, payload)
    }
}

usher_sdk::export_invoke_worker!(VerifyDraw);
