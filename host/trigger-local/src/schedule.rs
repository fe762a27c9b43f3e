//! The scheduler: a cron expression → scheduled-worker ticks, as an
//! EventBridge schedule rule targeting a Lambda function with reserved
//! concurrency 1.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use tokio::sync::watch;
use tracing::Instrument;
use usher_engine::{Input, Output, Runtime, Tick};
use usher_registry::Trigger;

use crate::{stopping, TriggerError, WorkerCounters};

/// The most skipped due times counted after one long run (a per-second
/// schedule whose run took a day would otherwise walk 86,400 due times).
const MAX_SKIPPED_COUNTED: usize = 100_000;

/// How one tick went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TickOutcome {
    /// The worker answered with its summary.
    Succeeded,
    /// The worker answered an error, trapped or ran out of time.
    Failed {
        /// Why.
        reason: String,
    },
}

/// Runs a scheduled-worker at every due time of its cron expression (UTC):
/// each tick is one invocation with [`Input::Scheduled`], its `schedule` the
/// worker's name and its `scheduled_time` the due time (RFC 3339).
///
/// As EventBridge → Lambda with reserved concurrency 1:
/// * runs of one worker never overlap: a due time that passes while the
///   previous run is still going is skipped and counted
///   ([`crate::CounterSnapshot::skipped`]);
/// * due times that passed while the host was down are not replayed: the
///   first tick is the first due time after the start;
/// * a failed tick is logged and counted, and not retried: the next due time
///   is the next run.
pub struct Scheduler {
    runtime: Arc<Runtime>,
    worker: String,
    cron: String,
    schedule: cron::Schedule,
    counters: Arc<WorkerCounters>,
}

impl Scheduler {
    /// A scheduler for `worker`, whose trigger must be a schedule.
    pub fn new(
        runtime: Arc<Runtime>,
        worker: &str,
        counters: Arc<WorkerCounters>,
    ) -> Result<Scheduler, TriggerError> {
        let live = runtime
            .worker(worker)
            .map_err(|_| TriggerError::UnknownWorker(worker.to_string()))?;
        let Trigger::Schedule { cron } = &live.spec().trigger else {
            return Err(TriggerError::WrongTrigger {
                worker: worker.to_string(),
                expected: "schedule",
            });
        };
        // The registry checked the expression at load; a failure here is a
        // registry built some other way.
        let schedule = cron::Schedule::from_str(cron).map_err(|e| TriggerError::Backend {
            worker: worker.to_string(),
            what: "parse the cron expression",
            message: e.to_string(),
        })?;
        Ok(Scheduler {
            cron: cron.clone(),
            worker: worker.to_string(),
            runtime,
            schedule,
            counters,
        })
    }

    /// The worker (also the tick's `schedule`).
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// The cron expression.
    pub fn cron(&self) -> &str {
        &self.cron
    }

    /// The worker's counters.
    pub fn counters(&self) -> &Arc<WorkerCounters> {
        &self.counters
    }

    /// The first due time strictly after `after`; `None` when the
    /// expression has no due time left (a year field in the past).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule.after(&after).next()
    }

    /// How many due times fall in `(after, until]`, at most
    /// 100,000.
    pub fn due_between(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> usize {
        self.schedule
            .after(&after)
            .take_while(|t| *t <= until)
            .take(MAX_SKIPPED_COUNTED)
            .count()
    }

    /// Runs the tick due at `due` once (now, whatever the clock says), and
    /// counts it.
    pub async fn tick(&self, due: DateTime<Utc>) -> TickOutcome {
        let scheduled_time = due.to_rfc3339_opts(SecondsFormat::Secs, true);
        let input = Input::Scheduled(Tick {
            schedule: self.worker.clone(),
            scheduled_time: scheduled_time.clone(),
        });
        let answer = {
            let _in_flight = self.counters.start(1);
            let span = tracing::info_span!(
                "schedule_tick",
                worker = %self.worker,
                scheduled_time = %scheduled_time,
            );
            self.runtime
                .invoke(&self.worker, &input, None)
                .instrument(span)
                .await
        };
        let outcome = match answer {
            Ok(invocation) => match invocation.output {
                Output::Scheduled(Ok(summary)) => {
                    tracing::info!(worker = %self.worker, scheduled_time = %scheduled_time, %summary, "tick done");
                    TickOutcome::Succeeded
                }
                Output::Scheduled(Err(reason)) => TickOutcome::Failed { reason },
                other => TickOutcome::Failed {
                    reason: format!(
                        "a scheduled-worker answered with another kind of result: {other:?}"
                    ),
                },
            },
            Err(e) => TickOutcome::Failed {
                reason: e.to_string(),
            },
        };
        match &outcome {
            TickOutcome::Succeeded => self.counters.finished(1, 0),
            TickOutcome::Failed { reason } => {
                self.counters.finished(0, 1);
                tracing::error!(worker = %self.worker, scheduled_time = %scheduled_time, reason = %reason, "tick failed; not retried (the next due time runs)");
            }
        }
        outcome
    }

    /// Ticks at every due time until `stop` is signalled. A run in flight
    /// when `stop` comes is finished first; a wait for the next due time
    /// ends at once.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut next = self.next_after(Utc::now());
        loop {
            if stopping(&stop) {
                break;
            }
            let Some(due) = next else {
                self.counters.set_next_due_ms(None);
                tracing::warn!(worker = %self.worker, cron = %self.cron, "the schedule has no due time left");
                // Nothing more to do: wait for the stop.
                while !stopping(&stop) {
                    if stop.changed().await.is_err() {
                        break;
                    }
                }
                break;
            };
            self.counters
                .set_next_due_ms(u64::try_from(due.timestamp_millis()).ok());
            let now = Utc::now();
            if now < due {
                // Tokio's timer and the wall clock may disagree by a little:
                // after the sleep the loop checks the clock again.
                let wait = (due - now).to_std().unwrap_or(Duration::ZERO);
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            self.tick(due).await;
            let ended = Utc::now();
            let skipped = self.due_between(due, ended);
            if skipped > 0 {
                self.counters.skipped(skipped);
                tracing::warn!(worker = %self.worker, scheduled_time = %due.to_rfc3339_opts(SecondsFormat::Secs, true), skipped, "due times passed while the previous run was going: skipped");
            }
            next = self.next_after(ended);
        }
        self.counters.set_next_due_ms(None);
        tracing::debug!(worker = %self.worker, "scheduler stopped");
    }
}
