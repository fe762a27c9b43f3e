//! `selection/enqueue-market-selections` (invoke-worker): the draw of one
//! market, the Step Functions task of the seed's selection flow.
//!
//! Payload: `{"campaignId", "marketId", "selectionCount"?, "waitlistCount"?,
//! "drawId"?, "seed"?}` (the draw id defaults to `<campaignId>.<marketId>`;
//! the seed to a fresh random one; the counts to the market's). A payload
//! that is not such an object is an `InvalidInput` error; everything else is
//! answered `{"stats": {…}, "errors": [{"reason", "message"}…]}` (an empty
//! `errors` when the draw is done and every selection enqueued).
//!
//! 1. The draw record (`draws` table, `{"PK": "DRAW#<drawId>", "SK":
//!    "RECORD"}`): when it exists this is a re-run (a Step Functions retry,
//!    a crash): its seed and counts are used, never a second draw; a payload
//!    that asks other counts, another seed or another market is refused
//!    (`record-mismatch`).
//! 2. The counts: the record's, else the payload's, else the market's
//!    (Campaign Service `GET /campaigns/{id}/markets/{mid}`; 404 →
//!    `unknown-market`).
//! 3. Every entry of the market from the Entry Service (`GET
//!    /markets/{mid}/entries?campaignId=&limit=5000&after=`, page by page;
//!    only `globalUserId` and `score` are kept). None → `no-entries`.
//! 4. The draw (`usher_domain::draw`, rule `usher-draw-v1`). On a re-run the
//!    entries must give the recorded input digest (else `entries-changed`,
//!    nothing re-drawn) and the recomputed result the recorded result digest.
//!    A first run checks the market's code pool first (Code Service `GET
//!    /pools/{c}/{m}`): no pool → `no-codes`, fewer available codes than
//!    winners → `not-enough-codes`; nothing is written then.
//! 5. PROCESSING to the Campaign Service (`PUT …/stats`; a 409 — FINISHED
//!    already — is a re-run and goes on).
//! 6. The record, written only when absent (a concurrent run's record wins
//!    and is followed), before any code is reserved or selection enqueued.
//! 7. The winners' codes: reservation `n` is `<drawId>#<n>` with at most
//!    20,000 codes, all in one `services.call-many`; the same ids on every
//!    run give the same codes. The winner at rank `r` gets code `r` of the
//!    reservations in order. A 409 → `not-enough-codes`, and nothing is
//!    enqueued (no selection without its code).
//! 8. Every fan's selection (`SelectionBatch`, 25 to a message, with its
//!    rank) to queue `save-selection`, 500 messages per `queue.send-batch`,
//!    in the record's batch order: batch `n` = the fans `25n…` in
//!    `globalUserId` order (`batchOrder: FAN`, every new record), so the
//!    demand-table and Entry Service keys a batch of messages writes are
//!    neighbours, not scattered over the market; a record without
//!    `batchOrder` (an older version's) is sent by rank (batch `n` = ranks
//!    `25n…`). A re-run sends the same batches again (the save side is
//!    idempotent). A failed send → `queue`, FINISHED not reported.
//! 9. FINISHED with the counts (`entries`, `expected`); the record's
//!    `status` goes DRAWN → RESERVED → ENQUEUED.
//!
//! Reasons in `errors`: `record-mismatch`, `unknown-market`, `no-entries`,
//! `bad-entries`, `entries-changed`, `result-mismatch`, `unknown-rule`,
//! `no-codes`, `not-enough-codes`, `campaign-service`, `entry-service`,
//! `code-service`, `queue`, `table`, `bad-record`, `internal`.
//!
//! Settings: `table` (`draws`), `queue` (`save-selection`),
//! `campaigns_service` (`campaigns`), `entries_service` (`entries`),
//! `codes_service` (`codes`), `page_size` (5000), `send_chunk` (500).
//! Limits: a market of 1,000,000 entries holds about 100 MB of ids and
//! keys; the registry gives this worker 512 MiB and 300 s.

mod logic;

pub use logic::{now_rfc3339, read_entries, reserve, run, Failure, Payload, Settings};

use usher_sdk::{InvokeError, InvokeWorker, Value};

/// The worker.
pub struct EnqueueMarketSelections;

impl InvokeWorker for EnqueueMarketSelections {
    fn handle(payload: Value) -> Result<Value, InvokeError> {
        let settings = Settings::load()
            .map_err(|e| InvokeError::internal(format!("cannot read the settings: {e}")))?;
        run(&settings, payload)
    }
}

usher_sdk::export_invoke_worker!(EnqueueMarketSelections);
