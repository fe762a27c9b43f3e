//! `usher-trigger-local`: the event-source triggers `usher up` runs on the
//! embedded backends, with AWS's semantics.
//!
//! * [`QueuePoller`] — a worker whose trigger is `queue` (SQS → Lambda event
//!   source mapping with `ReportBatchItemFailures`; the worker's
//!   `concurrency` pollers run side by side): receive up to
//!   `batch_size` messages, invoke, delete the messages that did not fail;
//!   failed ones become visible again after the queue's visibility timeout
//!   and the queue redrives them to its dead-letter queue after
//!   `max_receive_count` receives.
//! * [`StreamFollower`] — a worker whose trigger is `stream` (DynamoDB
//!   Streams → Lambda with `ReportBatchItemFailures` and
//!   `BisectBatchOnFunctionError`): a checkpoint per worker in the change
//!   log, retries from the lowest failed sequence number with the batch
//!   halved each time, and after `max_retries` retries the failed records go
//!   to the `on_failure` queue and the follower moves on.
//! * [`Scheduler`] — a worker whose trigger is `schedule: {cron: …}`
//!   (EventBridge schedule → Lambda with reserved concurrency 1): at every
//!   due time of the cron expression (seconds first, UTC) one invocation with
//!   a tick `{schedule: <worker>, scheduled_time: <due time, RFC 3339>}`.
//!   Runs of one worker never overlap (a due time passing while the previous
//!   run still goes is skipped and counted); due times missed while the host
//!   was down are not replayed; a failed tick is logged, counted and not
//!   retried (the next due time is the next run).
//! * [`ChangeLogTrimmer`] — the change log's retention: every
//!   [`TriggerOptions::trim_every`], the changes older than
//!   [`TriggerOptions::change_log_retention`] (24 h by default, as DynamoDB
//!   Streams) that every stream follower of their table has checkpointed
//!   past are deleted; a table nobody follows keeps its changes for the
//!   retention only.
//! * [`Triggers`] — one task per queue, stream and schedule worker of a
//!   [`Runtime`] and the trimmer, with counters per worker and a graceful
//!   [`Triggers::shutdown`]: every task finishes the batch (or tick) in
//!   flight and stops; nothing is acknowledged (deleted, checkpointed) before
//!   the worker answered, so delivery is at least once.
//!
//! * [`HttpListener`] — an HTTP server on an axum [`router`]: every worker
//!   whose trigger is `http: {route: PREFIX}` is nested at PREFIX, so it
//!   serves the paths below PREFIX (whole segments, longest prefix wins; a
//!   worker at `/` is the fallback) and gets the path below the prefix; a
//!   route the router cannot nest (below `/invoke` or `/resolvers`, with
//!   `{` or `}`, or `/a/` beside `/a`) stops the listener with
//!   [`ListenerError::Route`]; `POST
//!   /invoke/{domain}/{worker}` runs an invoke-worker on the JSON body
//!   (its typed error → 400 `{"errorType","message"}`); `POST
//!   /resolvers/{typeName}/{fieldName}` runs the worker whose trigger is
//!   `resolver: {type_name, field_name}` on an AppSync-shaped event built
//!   from the body (see [`resolver_event`]) and answers its result as JSON
//!   (its typed error → 400 `{"errorType","errorMessage"}`, AppSync's
//!   names; an unknown resolver 404, bad JSON 400, a failed invocation 500,
//!   all `{"errorType","errorMessage"}`). Elsewhere a failed invocation
//!   answers 500, an unknown path 404, a body over 1 MiB 413, all as JSON
//!   `{"error": …}`.

#![deny(missing_docs)]

mod counters;
mod http;
mod queue;
mod schedule;
mod stream;
mod trace;
mod trim;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use usher_backend_embedded::Embedded;
use usher_engine::Runtime;
use usher_registry::Trigger;

pub use counters::{CounterSnapshot, WorkerCounters};
pub use http::{
    resolver_event, router, router_with, router_with_options, HttpListener, ListenerError,
    ListenerOptions, Resolvers, Routes, INVOKE_PREFIX, MAX_REQUEST_BYTES, RESOLVERS_PREFIX,
};
pub use queue::{PollOutcome, QueuePoller};
pub use schedule::{Scheduler, TickOutcome};
pub use stream::{FailureMessage, StepOutcome, StreamFollower};
pub use trim::{ChangeLogTrimmer, TrimReport};

/// A failure of a trigger.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// The worker is not live in the runtime.
    #[error("worker `{0}` is not running in this runtime")]
    UnknownWorker(String),
    /// The worker's trigger is not the kind this poller or follower serves.
    #[error("worker `{worker}` is not triggered by a {expected}")]
    WrongTrigger {
        /// The worker.
        worker: String,
        /// `queue`, `stream` or `schedule`.
        expected: &'static str,
    },
    /// Trimming a table's change log failed.
    #[error("trimming the change log of table `{table}`: {message}")]
    Trim {
        /// The table.
        table: String,
        /// The backend's error.
        message: String,
    },
    /// An embedded backend failed (receive, delete, change-log read,
    /// checkpoint, send to the on-failure queue).
    #[error("worker `{worker}`: {what}: {message}")]
    Backend {
        /// The worker.
        worker: String,
        /// What was being done.
        what: &'static str,
        /// The backend's error.
        message: String,
    },
    /// Triggers must be started inside a tokio runtime.
    #[error("triggers must be started inside a tokio runtime")]
    NoTokio,
    /// A trigger task panicked.
    #[error("the trigger task of worker `{worker}` failed: {message}")]
    TaskFailed {
        /// The worker.
        worker: String,
        /// The join error.
        message: String,
    },
}

/// How the trigger tasks wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriggerOptions {
    /// With nothing to do, the longest wait before looking again (a send or
    /// a table write wakes the task sooner; a visibility timeout running out
    /// does not, so this bounds how late such a message is seen).
    pub idle_wait: Duration,
    /// Pause after a batch with failures before the next one (so a message
    /// with a zero visibility timeout or a failing change record is not
    /// retried in a hot loop).
    pub failure_backoff: Duration,
    /// Pause after a backend error.
    pub error_backoff: Duration,
    /// How long the tables' change log keeps a change every stream follower
    /// has checkpointed past (or that no worker follows): 24 h, as DynamoDB
    /// Streams.
    pub change_log_retention: Duration,
    /// How often the change log is trimmed.
    pub trim_every: Duration,
}

impl Default for TriggerOptions {
    fn default() -> Self {
        TriggerOptions {
            idle_wait: Duration::from_millis(500),
            failure_backoff: Duration::from_millis(100),
            error_backoff: Duration::from_secs(1),
            change_log_retention: Duration::from_secs(24 * 60 * 60),
            trim_every: Duration::from_secs(60),
        }
    }
}

/// The running triggers of every queue, stream and schedule worker of a
/// runtime, and the change-log trimmer.
///
/// Dropping it without [`Triggers::shutdown`] also stops the tasks after
/// their batch in flight, but nobody waits for them.
pub struct Triggers {
    stop: watch::Sender<bool>,
    tasks: Vec<(String, JoinHandle<()>)>,
    trimmer: JoinHandle<()>,
    counters: BTreeMap<String, Arc<WorkerCounters>>,
}

impl Triggers {
    /// Starts one task per live worker of `runtime` whose trigger is a queue
    /// (a [`QueuePoller`]), a stream (a [`StreamFollower`]) or a schedule (a
    /// [`Scheduler`]), on the embedded backends the runtime's workers use,
    /// and the [`ChangeLogTrimmer`] of the registry's tables. The workers
    /// come from the runtime (its registry, or the subset it was started
    /// with). Must be called inside a tokio runtime.
    pub fn start(
        runtime: Arc<Runtime>,
        embedded: &Embedded,
        options: TriggerOptions,
    ) -> Result<Triggers, TriggerError> {
        tokio::runtime::Handle::try_current().map_err(|_| TriggerError::NoTokio)?;
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut counters = BTreeMap::new();
        for (name, live) in runtime.workers() {
            let task = match &live.spec().trigger {
                Trigger::Queue { .. } => {
                    // `concurrency` pollers side by side, as the SQS event
                    // source mapping scales out up to its maximum concurrency.
                    let counter = Arc::new(WorkerCounters::default());
                    for _ in 1..live.spec().concurrency.max(1) {
                        let poller = QueuePoller::new(
                            runtime.clone(),
                            embedded.queues(),
                            name,
                            counter.clone(),
                        )?;
                        let task = tokio::spawn(poller.run(stopped.clone(), options));
                        tasks.push((name.clone(), task));
                    }
                    let poller = QueuePoller::new(
                        runtime.clone(),
                        embedded.queues(),
                        name,
                        counter.clone(),
                    )?;
                    counters.insert(name.clone(), counter);
                    tokio::spawn(poller.run(stopped.clone(), options))
                }
                Trigger::Stream { .. } => {
                    let counter = Arc::new(WorkerCounters::default());
                    let follower = StreamFollower::new(
                        runtime.clone(),
                        embedded.change_log(),
                        embedded.queues(),
                        name,
                        counter.clone(),
                    )?;
                    counters.insert(name.clone(), counter);
                    tokio::spawn(follower.run(stopped.clone(), options))
                }
                Trigger::Schedule { .. } => {
                    let counter = Arc::new(WorkerCounters::default());
                    let scheduler = Scheduler::new(runtime.clone(), name, counter.clone())?;
                    counters.insert(name.clone(), counter);
                    tokio::spawn(scheduler.run(stopped.clone()))
                }
                _ => continue,
            };
            tracing::info!(worker = %name, trigger = ?live.spec().trigger, "trigger started");
            tasks.push((name.clone(), task));
        }
        let trimmer = trim::spawn(
            &runtime,
            embedded.change_log(),
            options.change_log_retention,
            options.trim_every,
            stopped,
        );
        Ok(Triggers {
            stop,
            tasks,
            trimmer,
            counters,
        })
    }

    /// The workers with a running trigger (each once, however many
    /// pollers it has).
    pub fn workers(&self) -> impl Iterator<Item = &str> {
        self.counters.keys().map(String::as_str)
    }

    /// The live counters of each worker with a running trigger.
    pub fn counters(&self) -> &BTreeMap<String, Arc<WorkerCounters>> {
        &self.counters
    }

    /// A copy of every worker's counters now.
    pub fn snapshot(&self) -> BTreeMap<String, CounterSnapshot> {
        self.counters
            .iter()
            .map(|(name, c)| (name.clone(), c.snapshot()))
            .collect()
    }

    /// Stops every task: each finishes (and acknowledges) the batch or tick
    /// in flight, then stops. Returns once all have stopped; the first task
    /// that panicked is reported.
    pub async fn shutdown(self) -> Result<(), TriggerError> {
        // Receivers may all be gone already (tasks ended); that is fine.
        let _ = self.stop.send(true);
        let mut first_error = None;
        for (worker, task) in self.tasks {
            if let Err(e) = task.await {
                tracing::error!(worker = %worker, error = %e, "trigger task failed");
                first_error.get_or_insert(TriggerError::TaskFailed {
                    worker,
                    message: e.to_string(),
                });
            }
        }
        if let Err(e) = self.trimmer.await {
            tracing::error!(error = %e, "change-log trimmer failed");
            first_error.get_or_insert(TriggerError::TaskFailed {
                worker: "(change-log trimmer)".into(),
                message: e.to_string(),
            });
        }
        tracing::info!("triggers stopped");
        first_error.map_or(Ok(()), Err)
    }
}

/// Whether the stop signal was given (or its sender is gone).
pub(crate) fn stopping(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// Waits for `wake` to change, the stop signal, or `timeout`, whichever
/// comes first.
pub(crate) async fn wait(
    wake: &mut watch::Receiver<u64>,
    stop: &mut watch::Receiver<bool>,
    timeout: Duration,
) {
    tokio::select! {
        r = wake.changed() => {
            if r.is_err() {
                // The backend is gone: nothing will wake us, so just pause.
                pause(stop, timeout).await;
            }
        }
        _ = stop.changed() => {}
        _ = tokio::time::sleep(timeout) => {}
    }
}

/// Sleeps for `duration` unless the stop signal comes first.
pub(crate) async fn pause(stop: &mut watch::Receiver<bool>, duration: Duration) {
    if duration.is_zero() {
        return;
    }
    tokio::select! {
        _ = stop.changed() => {}
        _ = tokio::time::sleep(duration) => {}
    }
}
