//! `replication/save-entries` (batch-worker): replicates entry changes from
//! the `demand-table` to the Entry Service.
//!
//! Each message body is a change record as sent by `enqueue-entries`:
//! `{"table","eventName":"INSERT|MODIFY|REMOVE","keys","newImage","oldImage","sequenceNumber","timestampMs"}`.
//!
//! 1. Normalize: the entry is the new image for INSERT/MODIFY (a put), the
//!    old image for REMOVE (a delete). A message that is not JSON, lacks the
//!    image, or whose image is not an entry fails alone.
//! 2. Validate with one `table::batch_get`: a put is valid only while the
//!    item exists with the image's `version` (`updatedAt` when there is no
//!    version); a delete only while the item is absent. Stale changes are
//!    dropped (processed): the newer write has its own change record.
//! 3. Call the Entry Service in chunks of at most 25, every chunk of the
//!    batch in one `services::call_many` (the host sends them concurrently):
//!    `POST /entries/batch-upsert {"entries":[image…],"refreshScores":true}`
//!    (the service refreshes the upserted entries' scores in the same
//!    request and answers the fans whose refresh failed, `scoreFailures`)
//!    and `POST /entries/batch-delete {"keys":[{"campaignId","globalUserId","version"}…]}`.
//!    A call error or a 5xx fails the chunk's messages; a 4xx sends the
//!    chunk's entries again one by one (all of them in one more
//!    `call_many`), so only a refused entry fails.
//! 4. Re-read the upserted entries (one `table::batch_get`): those deleted
//!    in the table meanwhile are deleted again in the Entry Service (one
//!    `call_many`), with the version just upserted.
//! 5. Clear `needsReplication` on each upserted item still in the table,
//!    conditional on its version so that a newer write's flag is never
//!    cleared (one `table::update_many`).
//! 6. Queue one `{"campaignId","globalUserId"}` message to the retry queue
//!    per fan whose score refresh failed; only a failed send fails the
//!    message.
//!
//! Settings: `table` (default `demand-table`), `service` (`entries`),
//! `retry_queue` (`retry-score`).

mod logic;

pub use logic::{normalize, process, Entry, NormalizeError, Op, Settings};

use usher_sdk::{BatchResult, BatchWorker, Message};

/// The worker.
pub struct SaveEntries;

impl BatchWorker for SaveEntries {
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

usher_sdk::export_batch_worker!(SaveEntries);
