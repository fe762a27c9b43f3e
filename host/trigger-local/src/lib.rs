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
//! * [`Triggers`] — one task per such worker of a [`Runtime`], with counters
//!   per worker and a graceful [`Triggers::shutdown`]: every task finishes
//!   the batch in flight and stops; nothing is acknowledged (deleted,
//!   checkpointed) before the worker answered, so delivery is at least once.
//!
//! * [`HttpListener`] — an HTTP server (axum): every worker whose trigger is
//!   `http: {route: PREFIX}` serves the paths below PREFIX (whole segments,
//!   longest prefix wins) and gets the path below the prefix; `POST
//!   /invoke/{domain}/{worker}` runs an invoke-worker on the JSON body
//!   (its typed error → 400 `{"errorType","message"}`). A failed invocation
//!   answers 500, an unknown path 404, a body over 1 MiB 413, all as JSON
//!   `{"error": …}`.
//!
//! Schedules are not started here (yet).

#![deny(missing_docs)]

mod counters;
mod http;
mod queue;
mod stream;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use usher_backend_embedded::Embedded;
use usher_engine::Runtime;
use usher_registry::Trigger;

pub use counters::{CounterSnapshot, WorkerCounters};
pub use http::{router, HttpListener, Routes, INVOKE_PREFIX, MAX_REQUEST_BYTES};
pub use queue::{PollOutcome, QueuePoller};
pub use stream::{FailureMessage, StepOutcome, StreamFollower};

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
        /// `queue` or `stream`.
        expected: &'static str,
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
}

impl Default for TriggerOptions {
    fn default() -> Self {
        TriggerOptions {
            idle_wait: Duration::from_millis(500),
            failure_backoff: Duration::from_millis(100),
            error_backoff: Duration::from_secs(1),
        }
    }
}

/// The running triggers of every queue and stream worker of a runtime.
///
/// Dropping it without [`Triggers::shutdown`] also stops the tasks after
/// their batch in flight, but nobody waits for them.
pub struct Triggers {
    stop: watch::Sender<bool>,
    tasks: Vec<(String, JoinHandle<()>)>,
    counters: BTreeMap<String, Arc<WorkerCounters>>,
}

impl Triggers {
    /// Starts one task per live worker of `runtime` whose trigger is a queue
    /// (a [`QueuePoller`]) or a stream (a [`StreamFollower`]), on the embedded
    /// backends the runtime's workers use. The workers come from the
    /// runtime (its registry, or the subset it was started with). Must be
    /// called inside a tokio runtime.
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
                _ => continue,
            };
            tracing::info!(worker = %name, trigger = ?live.spec().trigger, "trigger started");
            tasks.push((name.clone(), task));
        }
        Ok(Triggers {
            stop,
            tasks,
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

    /// Stops every task: each finishes (and acknowledges) the batch in
    /// flight, then stops. Returns once all have stopped; the first task that
    /// panicked is reported.
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
