//! `selection/save-selections` (batch-worker): saves the draw's selections.
//!
//! Each message of the `save-selection` queue is a
//! [`SelectionBatch`](usher_domain::selection::SelectionBatch) (≤ 25
//! selections of one draw of one market; winners carry the code reserved
//! for them), sent by `selection/enqueue-market-selections`. For the batch
//! of messages:
//!
//! 1. Parse and check each message: ids present, a verdict other than
//!    PENDING, a code on every winner and on nobody else, no fan or code
//!    twice. A bad message fails alone with its reason. Two messages with
//!    the same report id (`<drawId>#<batch>`, a duplicate delivery) are
//!    saved once and share the outcome.
//! 2. Entry Service `POST /entries/assign-codes` for the winners, the
//!    messages' assignments of one draw together (up to 500 a request; the
//!    service takes 1000), every request in one `services::call_many`; the
//!    messages of a request that failed as a whole are sent again each
//!    alone (one more `call_many`), so a failure stays its message's. The
//!    service is idempotent: `already` (the same code already with the same
//!    fan, a redelivery) is a success; a conflict (the code held by another
//!    fan, the fan holding another code) fails the message with the
//!    service's reason, and so does an error, a non-2xx answer, or an answer
//!    that does not account for every assignment. A failed message writes
//!    no verdict (it is retried whole; what was assigned stays assigned and
//!    is `already` next time).
//! 3. Entry Service `POST /entries/verdicts` for every selection of the
//!    messages still going, together in the same way. Fans
//!    the service answers as `missing` are logged.
//! 4. One `table::update_many` on the demand-table for all of them: for each
//!    fan, `verdict`, `drawId`, `updatedAt` and (winners) `accessCode` set,
//!    `accessCode` removed for the others, under the condition that the
//!    entry exists (an update, never a put; `needsReplication` is left
//!    alone: the Entry Service was told directly). An entry missing from the
//!    table is logged, not created; any other failed update fails its
//!    message.
//! 5. One [`VerdictReport`](usher_domain::selection::VerdictReport) per
//!    saved message to the `verdict-reporter` queue (one `send_batch`):
//!    `reportId` `<drawId>#<batch>` and the batch's counts, which the
//!    Campaign Service counts once per report id. A failed send fails the
//!    message.
//!
//! Settings: `table` (default `demand-table`), `service` (`entries`),
//! `report_queue` (`verdict-reporter`).

mod logic;

pub use logic::{parse, process, InvalidBatch, Settings};

use usher_sdk::{BatchResult, BatchWorker, Message};

/// The worker.
pub struct SaveSelections;

impl BatchWorker for SaveSelections {
    fn handle(messages: Vec<Message>) -> BatchResult {
        match Settings::load() {
            Ok(settings) => process(&settings, &messages),
            Err(e) => {
                usher_sdk::error!(error = e; "cannot read the settings; failing the batch");
                BatchResult::from_failures(messages.len(), messages.iter().map(|m| m.id.clone()))
            }
        }
    }
}

usher_sdk::export_batch_worker!(SaveSelections);
