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
//! 3. Call the Entry Service in chunks of at most 25:
//!    `POST /entries/batch-upsert {"entries":[image…]}` and
//!    `POST /entries/batch-delete {"keys":[{"campaignId","globalUserId"}…]}`;
//!    a non-2xx answer or a call error fails the chunk's messages.
//! 4. Clear `needsReplication` on each upserted item, conditional on its
//!    version so that a newer write's flag is never cleared.
//! 5. `POST /scores/refresh {"fans":[…]}` for the upserted fans; when that
//!    fails, queue one `{"campaignId","globalUserId"}` message per fan to the
//!    retry queue; only a failed send fails the message.
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
