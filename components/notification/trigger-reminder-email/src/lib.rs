//! `notification/trigger-reminder-email` (invoke-worker; a step of the
//! notification workflow): triggers the due e-mail jobs of the planned
//! reminders through the User Service, each job once.
//!
//! Payload `{"campaignId","marketId"}` (one market) or `{}` (every due
//! market, asked of `notification/get-markets-to-notify`). For each
//! notification of the market whose jobs are all at the User Service
//! (ENQUEUED, `notification/plan-sends`), the plan's slots from its
//! `triggeredSlots` cursor on whose `sendAt` ≤ now are triggered in order
//! (`POST /email-jobs/{jobId}/trigger`, 200 at a time in one
//! `services.call-many`); the cursor then moves past the first run of
//! slots the service answered 200 (a conditional update on the cursor
//! read), and the notification is DONE once every slot is triggered. The
//! User Service sends a job on its first trigger only (its trigger-once
//! record), so a retry, a redelivery, a concurrent run or a restart after
//! a crash before the cursor moved triggers nothing twice; a job not due
//! yet at the service (409, clocks apart) stays for the next run.
//!
//! Answer `{"triggeredCount","jobs","alreadyTriggered","remaining","nextSendAt","errors":[…]}`:
//! `triggeredCount` fans whose e-mails this call sent (first triggers),
//! `jobs` jobs it triggered first, `alreadyTriggered` jobs found sent
//! before, `remaining` fans of the market's reminders still to trigger
//! (planned or not yet planned), `nextSendAt` the earliest `sendAt` still
//! to trigger (null when none): a workflow waits until then and runs the
//! step again.
//!
//! Settings: `table` (`notifications`), `users_service` (`users`),
//! `markets_worker` (`notification/get-markets-to-notify`).

mod logic;

pub use logic::{run, Settings};

use usher_sdk::{InvokeError, InvokeWorker, Value};

/// The worker.
pub struct TriggerReminderEmail;

impl InvokeWorker for TriggerReminderEmail {
    fn handle(payload: Value) -> Result<Value, InvokeError> {
        let settings = Settings::load()
            .map_err(|e| InvokeError::internal(format!("cannot read the settings: {e}")))?;
        run(&settings, &payload, usher_domain::rfc3339::now_millis())
    }
}

usher_sdk::export_invoke_worker!(TriggerReminderEmail);

#[cfg(test)]
mod tests;
