//! `exports/run-export` (batch-worker on queue `run-export`): runs export
//! jobs (`usher_domain::exports`), each message `{"campaignId","exportId"}`.
//!
//! 1. **Claim**: the job is read; a PENDING job, or a TRIGGERED one whose
//!    lease ran out, is claimed with one update conditional on the `version`
//!    read: state TRIGGERED, `lease {owner, expiresAtMs}`, `fencing` + 1,
//!    `attempts` + 1. A job FINISHED/FAILED/EXPIRED, or held by a live lease,
//!    is left alone (the message is done). A job claimed
//!    [`MAX_ATTEMPTS`](usher_domain::exports::MAX_ATTEMPTS) times already is
//!    EXPIRED.
//! 2. **Stream**: rows are read page by page from the sources
//!    ([`export`]) and written as CSV (`csv` crate: RFC 4180 quoting, UTF-8,
//!    a header row) through the objects writer (a multipart upload on S3,
//!    a temporary file renamed at `finish` on the embedded backend), never
//!    to a local file; `reminder_email` is a zip archive (streamed, data
//!    descriptors) of one CSV per market. The object key carries the job id
//!    and the claim's fencing number: `exports/<c>/<id>/attempt-<n>.csv`.
//!    After each page the lease is renewed when a third of it has passed,
//!    conditional on the version: a runner that lost the job (expired and
//!    claimed by another) notices at its next renewal and drops its writer
//!    (the upload is aborted: nothing visible).
//! 3. **Finish**: the lease is renewed once more with `completing {file,
//!    rowCount, fencing}`; the object is finished; the job is marked
//!    FINISHED (file, rowCount, size) conditional on the version. A runner
//!    killed between the object's finish and the mark leaves a complete
//!    file: the next claim finds it (`completing` + the object exists) and
//!    marks the job FINISHED with it instead of writing a second file.
//! 4. A source that fails (a service error, a malformed answer) marks the job
//!    FAILED with the reason (conditional on the version); the unfinished
//!    object is aborted, so no half file is ever marked finished. A table
//!    that is unavailable fails the message (the queue retries it).
//!
//! Settings: `table` (`exports`), `bucket` (`exports`), `location_prefix`
//! (prepended to the key in the job's `file.location`; default none),
//! `page_size` (1..=5000, default 5000), `lease_ms` (default 30000),
//! services `entries_service`, `campaign_service`, `user_service`,
//! `code_service` (defaults `entries`, `campaigns`, `users`, `codes`),
//! `draws_table` (`draws`).

pub mod export;
mod job;

pub use job::{process, run_one, Outcome, Settings};

use usher_sdk::{BatchResult, BatchWorker, Message};

/// The worker.
pub struct RunExport;

impl BatchWorker for RunExport {
    fn handle(messages: Vec<Message>) -> BatchResult {
        match Settings::load() {
            Ok(settings) => process(&settings, &messages),
            Err(e) => {
                usher_sdk::error!(error = e; "cannot read the settings");
                BatchResult::from_failures(messages.len(), messages.iter().map(|m| m.id.clone()))
            }
        }
    }
}

usher_sdk::export_batch_worker!(RunExport);
