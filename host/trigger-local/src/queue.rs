//! The queue poller: SQS → worker with partial batch responses.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::watch;
use tracing::Instrument;
use usher_backend_embedded::{EmbeddedQueues, Received};
use usher_engine::{BatchMessage, Input, Output, Runtime};
use usher_registry::Trigger;

use crate::{pause, stopping, wait, TriggerError, TriggerOptions, WorkerCounters};

/// What one [`QueuePoller::poll_once`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollOutcome {
    /// The queue had no visible message.
    Empty,
    /// A batch ran.
    Processed {
        /// Messages received and handed to the worker.
        received: usize,
        /// Messages deleted (the worker succeeded on them).
        deleted: usize,
        /// Messages left in the queue (failed; visible again after the
        /// visibility timeout).
        failed: usize,
    },
}

/// Feeds a queue's messages to a batch-worker, as Lambda's SQS event source
/// mapping with `ReportBatchItemFailures`.
pub struct QueuePoller {
    runtime: Arc<Runtime>,
    queues: Arc<EmbeddedQueues>,
    worker: String,
    queue: String,
    batch_size: u32,
    counters: Arc<WorkerCounters>,
}

impl QueuePoller {
    /// A poller for `worker`, whose trigger must be a queue.
    pub fn new(
        runtime: Arc<Runtime>,
        queues: Arc<EmbeddedQueues>,
        worker: &str,
        counters: Arc<WorkerCounters>,
    ) -> Result<QueuePoller, TriggerError> {
        let live = runtime
            .worker(worker)
            .map_err(|_| TriggerError::UnknownWorker(worker.to_string()))?;
        let spec = live.spec();
        let Trigger::Queue { queue } = &spec.trigger else {
            return Err(TriggerError::WrongTrigger {
                worker: worker.to_string(),
                expected: "queue",
            });
        };
        let (queue, batch_size) = (queue.clone(), spec.batch_size.max(1));
        Ok(QueuePoller {
            runtime,
            queues,
            worker: worker.to_string(),
            queue,
            batch_size,
            counters,
        })
    }

    /// The worker.
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// The queue polled.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The worker's counters.
    pub fn counters(&self) -> &Arc<WorkerCounters> {
        &self.counters
    }

    fn backend(&self, what: &'static str, e: impl std::fmt::Display) -> TriggerError {
        TriggerError::Backend {
            worker: self.worker.clone(),
            what,
            message: e.to_string(),
        }
    }

    /// One round: receives up to `batch_size` visible messages (the queue
    /// redrives those past `max_receive_count` to its dead-letter queue on
    /// the way), invokes the worker, and deletes the messages it did not
    /// report failed, in one call. A worker that traps, runs out of time or
    /// memory fails the whole batch (`invoke_or_fail_all`); so does one that
    /// answers with a message id it was not given: the engine owns that rule
    /// and answers every message failed (`Input::known_failures`), as Lambda
    /// treats an unknown `itemIdentifier`.
    pub async fn poll_once(&self) -> Result<PollOutcome, TriggerError> {
        let received = self
            .queues
            .receive(&self.queue, self.batch_size, None)
            .await
            .map_err(|e| self.backend("receive", e))?;
        if received.is_empty() {
            return Ok(PollOutcome::Empty);
        }
        let n = received.len();
        let messages: Vec<BatchMessage> = received.iter().map(to_message).collect();
        let span = tracing::info_span!(
            "queue_batch",
            worker = %self.worker,
            queue = %self.queue,
            records = n,
        );
        let correlation_id = crate::trace::continue_batch(&span, &messages);
        let input = Input::Batch(messages);
        let failed = {
            let _in_flight = self.counters.start(n);
            let answer = self
                .runtime
                .invoke_or_fail_all(&self.worker, &input, correlation_id)
                .instrument(span)
                .await;
            self.failed_ids(&received, answer)
        };
        let receipts: Vec<String> = received
            .iter()
            .filter(|m| !failed.contains(m.message_id.as_str()))
            .map(|m| m.receipt.clone())
            .collect();
        let failed_count = n - receipts.len();
        self.counters.finished(receipts.len(), failed_count);
        let mut deleted = 0;
        if !receipts.is_empty() {
            let results = self
                .queues
                .delete_batch(&self.queue, &receipts)
                .await
                .map_err(|e| self.backend("delete", e))?;
            for (receipt, result) in receipts.iter().zip(results) {
                match result {
                    Ok(()) => deleted += 1,
                    // The message became visible and was received again
                    // meanwhile: it will be processed once more (at least once).
                    Err(e) => {
                        tracing::warn!(worker = %self.worker, queue = %self.queue, receipt, error = %e, "could not delete a processed message")
                    }
                }
            }
        }
        if failed_count > 0 {
            tracing::warn!(worker = %self.worker, queue = %self.queue, received = n, failed = failed_count, "messages failed; they stay in the queue");
        } else {
            tracing::debug!(worker = %self.worker, queue = %self.queue, received = n, "batch done");
        }
        Ok(PollOutcome::Processed {
            received: n,
            deleted,
            failed: failed_count,
        })
    }

    /// The ids of the messages to leave in the queue.
    fn failed_ids<'a>(
        &self,
        received: &'a [Received],
        answer: Result<usher_engine::Invocation, usher_engine::InvokeError>,
    ) -> HashSet<&'a str> {
        let all = || received.iter().map(|m| m.message_id.as_str()).collect();
        match answer {
            Ok(invocation) => match invocation.output {
                // The engine answers only ids of this batch (an unknown one
                // has already failed every message).
                Output::Batch(outcome) => {
                    let failed: HashSet<&str> =
                        outcome.failures.iter().map(String::as_str).collect();
                    received
                        .iter()
                        .map(|m| m.message_id.as_str())
                        .filter(|id| failed.contains(id))
                        .collect()
                }
                other => {
                    tracing::error!(worker = %self.worker, output = ?other, "a batch-worker answered with another kind of result; failing the batch");
                    all()
                }
            },
            Err(e) => {
                tracing::error!(worker = %self.worker, error = %e, "the batch could not run; failing it");
                all()
            }
        }
    }

    /// Polls until `stop` is signalled: a batch after another while messages
    /// are visible, a wait for a send (at most `idle_wait`) when there are
    /// none, a pause after a batch with failures or a backend error. The
    /// batch in flight when `stop` comes is finished first.
    pub async fn run(self, mut stop: watch::Receiver<bool>, options: TriggerOptions) {
        let mut wake = self.queues.subscribe();
        loop {
            if stopping(&stop) {
                break;
            }
            wake.borrow_and_update();
            match self.poll_once().await {
                Ok(PollOutcome::Empty) => wait(&mut wake, &mut stop, options.idle_wait).await,
                Ok(PollOutcome::Processed { failed, .. }) if failed > 0 => {
                    pause(&mut stop, options.failure_backoff).await
                }
                Ok(PollOutcome::Processed { .. }) => {}
                Err(e) => {
                    tracing::error!(error = %e, "queue poll failed");
                    pause(&mut stop, options.error_backoff).await;
                }
            }
        }
        tracing::debug!(worker = %self.worker, queue = %self.queue, "queue poller stopped");
    }
}

fn to_message(m: &Received) -> BatchMessage {
    BatchMessage {
        message_id: m.message_id.clone(),
        body: m.body.clone(),
        attributes: m.attributes.clone(),
        receive_count: m.receive_count,
    }
}
