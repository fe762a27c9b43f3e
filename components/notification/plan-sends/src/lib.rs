//! `notification/plan-sends` (invoke-worker; a step of the notification
//! workflow, run hourly): plans the reminder e-mails of due markets as User
//! Service e-mail jobs spread over time at the target rate.
//!
//! Payload `{"campaignId","marketId"}` (one market) or `{}` (every due
//! market, asked of `notification/get-markets-to-notify` through the
//! `workers` capability); `"now"` (RFC 3339) may be given for tests. Answer
//! `{"plannedCount","jobs","duplicates","notifications","markets","targetRatePerS","errors":[{"campaignId","marketId","notificationId","reason","message"}]}`:
//! `plannedCount` fans in jobs the User Service now holds.
//!
//! For each due notification of the market (`usher_domain::notification`):
//!
//! 1. **claim** it: DUE → PLANNING with a fresh `planId` (a conditional
//!    update; a PLANNING left by an attempt that died is taken over the
//!    same way, on condition of its `planId`; an attempt whose own plan was
//!    taken over meanwhile does not take it back: it answers a `conflict`
//!    error, and a later run finds the plan fixed or takes over a dead one);
//! 2. read the fans (Entry Service market entries for a closing reminder,
//!    the draw's WINNER selections for a winner reminder; every page,
//!    sorted, each once);
//! 3. **reserve** the plan's window on the send-rate cursor (`RATE`, a
//!    conditional put): it starts at the next whole second or where the
//!    previous plan ends, so plans never overlap;
//! 4. write the plan's slots (one per job: `jobId` `<notificationId>#<slot>`,
//!    `sendAt` `start + slot × spacing`, ≤ `fansPerJob` fans; the layout of
//!    `target_rate_per_s` keeps every one-second window at or under the rate);
//! 5. **fix** it: PLANNING → PLANNED on condition that `planId` is still
//!    this attempt's (else another attempt took over: its plan counts);
//! 6. send every slot as `POST /email-jobs` (200 at a time in one
//!    `services.call-many`), then PLANNED → ENQUEUED.
//!
//! A retry, a redelivery or a restart after a crash anywhere re-sends the
//! same fixed plan (same job ids, fans and sendAt), which the User Service
//! takes once per job id; before step 5 no job has been sent. Nobody to
//! remind: DONE at step 5.
//!
//! Settings: `table` (`notifications`), `entries_service` (`entries`),
//! `users_service` (`users`), `target_rate_per_s` (10), `page_size`
//! (1000), `markets_worker` (`notification/get-markets-to-notify`).

mod logic;

pub use logic::{markets_of, plan_notification, run, Market, Outcome, Settings};

use usher_sdk::{InvokeError, InvokeWorker, Value};

/// The worker.
pub struct PlanSends;

impl InvokeWorker for PlanSends {
    fn handle(payload: Value) -> Result<Value, InvokeError> {
        let settings = Settings::load()
            .map_err(|e| InvokeError::internal(format!("cannot read the settings: {e}")))?;
        run(&settings, &payload, usher_domain::rfc3339::now_millis())
    }
}

usher_sdk::export_invoke_worker!(PlanSends);

#[cfg(test)]
mod tests;
