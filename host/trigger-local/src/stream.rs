//! The stream follower: a table's change log → worker, with checkpoints,
//! bisection, retries and an on-failure queue.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::Instrument;
use usher_backend_embedded::{ChangeLog, ChangeRow, EmbeddedQueues, MAX_BODY_BYTES};
use usher_capabilities::{OutgoingMessage, QueueBackend};
use usher_engine::{ChangeRecord, Input, Output, Runtime};
use usher_registry::{StartingPosition, StreamFilterRule, Trigger};

use crate::{pause, stopping, wait, TriggerError, TriggerOptions, WorkerCounters};

/// A filtered follower looks at up to this many times its batch length of
/// changes per step (the changes its filter drops cost no invocation).
const FILTER_SCAN_FACTOR: u32 = 20;

/// What one [`StreamFollower::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// No change after the checkpoint.
    Idle,
    /// Every record of the batch succeeded; the checkpoint moved to its last.
    Advanced {
        /// Records in the batch.
        records: usize,
        /// The checkpoint now.
        checkpoint: u64,
    },
    /// Some records failed: the checkpoint moved to just before the lowest
    /// failed one, which is retried next with a batch half as long.
    Retrying {
        /// Records that failed.
        failed: usize,
        /// The lowest failed sequence number (the next batch starts there).
        from_seq: u64,
        /// Failed attempts on that record so far.
        attempt: u32,
        /// The length of the next batch.
        window: u32,
    },
    /// The failed records ran out of retries: they went to the on-failure
    /// queue (when there is one) and the checkpoint moved past the batch.
    GaveUp {
        /// Records given up on.
        records: usize,
        /// The checkpoint now.
        checkpoint: u64,
    },
}

/// The body of the message a stream follower sends to a worker's
/// `on_failure` queue for each batch of records it gives up on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureMessage {
    /// The worker.
    pub worker: String,
    /// The table whose changes failed.
    pub table: String,
    /// Why the last attempt failed.
    pub reason: String,
    /// How many times the first of the records was tried.
    pub attempts: u32,
    /// The lowest sequence number given up on.
    pub first_sequence_number: String,
    /// The highest sequence number given up on.
    pub last_sequence_number: String,
    /// Whether the records lost their images (or the list was emptied) to
    /// fit the queue's 256 KiB message limit.
    pub truncated: bool,
    /// The change records given up on, as the worker received them.
    pub records: Vec<ChangeRecord>,
}

/// Follows a table's change log for a stream-worker, as Lambda's DynamoDB
/// Streams event source mapping with `ReportBatchItemFailures` and
/// `BisectBatchOnFunctionError`.
///
/// The checkpoint (consumer id: the worker's name) is the last sequence
/// number finished; it only moves after the worker answered, so a restart
/// resumes after the last batch acknowledged and may repeat the batch that
/// was in flight (at least once).
pub struct StreamFollower {
    runtime: Arc<Runtime>,
    log: ChangeLog,
    queues: Arc<EmbeddedQueues>,
    worker: String,
    table: String,
    batch_size: u32,
    max_retries: u32,
    on_failure: Option<String>,
    starting_position: StartingPosition,
    filter: Vec<StreamFilterRule>,
    counters: Arc<WorkerCounters>,
    /// The checkpoint, once loaded.
    position: Option<u64>,
    /// The length of the next batch (halved on each failure).
    window: u32,
    /// The lowest failed sequence number and its failed attempts.
    retry: Option<(u64, u32)>,
}

impl StreamFollower {
    /// A follower for `worker`, whose trigger must be a stream; it reads
    /// `log` and sends given-up records to the on-failure queue in `queues`.
    pub fn new(
        runtime: Arc<Runtime>,
        log: ChangeLog,
        queues: Arc<EmbeddedQueues>,
        worker: &str,
        counters: Arc<WorkerCounters>,
    ) -> Result<StreamFollower, TriggerError> {
        let live = runtime
            .worker(worker)
            .map_err(|_| TriggerError::UnknownWorker(worker.to_string()))?;
        let spec = live.spec();
        let Trigger::Stream {
            table,
            max_retries,
            on_failure,
            starting_position,
            filter,
        } = &spec.trigger
        else {
            return Err(TriggerError::WrongTrigger {
                worker: worker.to_string(),
                expected: "stream",
            });
        };
        let batch_size = spec.batch_size.max(1);
        Ok(StreamFollower {
            table: table.clone(),
            max_retries: *max_retries,
            on_failure: on_failure.clone(),
            starting_position: *starting_position,
            filter: filter.clone(),
            batch_size,
            window: batch_size,
            worker: worker.to_string(),
            runtime,
            log,
            queues,
            counters,
            position: None,
            retry: None,
        })
    }

    /// The worker (also the consumer id of its checkpoint).
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// The table followed.
    pub fn table(&self) -> &str {
        &self.table
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

    /// The checkpoint: loaded once; without one, 0 (trim horizon) or the
    /// table's newest sequence number now (latest, stored at once so a
    /// restart does not skip what was written in between).
    async fn position(&mut self) -> Result<u64, TriggerError> {
        if let Some(p) = self.position {
            return Ok(p);
        }
        let stored = self
            .log
            .checkpoint_get(&self.worker)
            .await
            .map_err(|e| self.backend("read the checkpoint", e))?;
        let p = match (stored, self.starting_position) {
            (Some(p), _) => p,
            (None, StartingPosition::TrimHorizon) => 0,
            (None, StartingPosition::Latest) => {
                let latest = self
                    .log
                    .latest_seq(&self.table)
                    .await
                    .map_err(|e| self.backend("read the latest sequence number", e))?;
                self.checkpoint(latest).await?;
                latest
            }
        };
        tracing::info!(worker = %self.worker, table = %self.table, checkpoint = p, "stream follower starts after the checkpoint");
        self.position = Some(p);
        Ok(p)
    }

    async fn checkpoint(&mut self, seq: u64) -> Result<(), TriggerError> {
        self.log
            .checkpoint_set(&self.worker, seq)
            .await
            .map_err(|e| self.backend("store the checkpoint", e))?;
        self.position = Some(seq);
        Ok(())
    }

    /// One round: reads up to the current batch length of changes after the
    /// checkpoint and invokes the worker.
    ///
    /// * All succeeded: the checkpoint moves to the last record.
    /// * Some failed (reported by sequence number; a trap, a deadline, an
    ///   unknown sequence number in the answer fail them all): the checkpoint
    ///   moves to just before the lowest failed record, and the next batch
    ///   starts there, half as long as what remained of this one
    ///   (bisection).
    /// * The lowest failed record failed `max_retries + 1` times: the failed
    ///   records of this attempt are sent as one [`FailureMessage`] to the
    ///   `on_failure` queue (dropped with an error log when there is none)
    ///   and the checkpoint moves past the batch. If that send fails, nothing
    ///   moves and the next round tries again.
    pub async fn step(&mut self) -> Result<StepOutcome, TriggerError> {
        let after = self.position().await?;
        // The trigger's filter: changes it does not pass are skipped (in AWS
        // the event-source mapping's filter criteria drop them the same way),
        // decided in the change log's database without reading them out.
        let (rows, last) = self
            .log
            .read_filtered(
                &self.table,
                after,
                self.window,
                self.window.saturating_mul(FILTER_SCAN_FACTOR),
                &self.filter,
            )
            .await
            .map_err(|e| self.backend("read the change log", e))?;
        let Some(last) = last else {
            return Ok(StepOutcome::Idle);
        };
        if rows.is_empty() {
            self.checkpoint(last).await?;
            return Ok(StepOutcome::Advanced {
                records: 0,
                checkpoint: last,
            });
        }
        // The images move to the records (the rows keep their sequence
        // numbers and trace contexts).
        let mut rows = rows;
        let records: Vec<ChangeRecord> = rows.iter_mut().map(take_record).collect();
        let input = Input::Stream(records);
        let (failed, reason) = {
            let _in_flight = self.counters.start(rows.len());
            let span = tracing::info_span!(
                "stream_batch",
                worker = %self.worker,
                table = %self.table,
                records = rows.len(),
            );
            crate::trace::continue_rows(&span, &rows);
            let answer = self
                .runtime
                .invoke(&self.worker, &input, None)
                .instrument(span)
                .await;
            self.failed_seqs(&rows, answer)
        };
        self.counters
            .finished(rows.len() - failed.len(), failed.len());
        let Some(&lowest) = failed.first() else {
            self.checkpoint(last).await?;
            self.window = self.batch_size;
            self.retry = None;
            tracing::debug!(worker = %self.worker, records = rows.len(), checkpoint = last, "stream batch done");
            return Ok(StepOutcome::Advanced {
                records: rows.len(),
                checkpoint: last,
            });
        };
        if let Some(before) = rows.iter().map(|r| r.seq).filter(|s| *s < lowest).max() {
            self.checkpoint(before).await?;
        }
        let attempt = match self.retry {
            Some((seq, n)) if seq == lowest => n.saturating_add(1),
            _ => 1,
        };
        self.retry = Some((lowest, attempt));
        if attempt > self.max_retries {
            let records = match &input {
                Input::Stream(records) => records.as_slice(),
                _ => &[],
            };
            let given_up: Vec<&ChangeRecord> = rows
                .iter()
                .zip(records)
                .filter(|(r, _)| failed.contains(&r.seq))
                .map(|(_, record)| record)
                .collect();
            self.give_up(&given_up, attempt, &reason).await?;
            self.counters.gave_up(given_up.len());
            self.checkpoint(last).await?;
            self.window = self.batch_size;
            self.retry = None;
            return Ok(StepOutcome::GaveUp {
                records: given_up.len(),
                checkpoint: last,
            });
        }
        let remaining = rows.iter().filter(|r| r.seq >= lowest).count();
        self.window = u32::try_from(remaining.div_ceil(2))
            .unwrap_or(u32::MAX)
            .max(1);
        tracing::warn!(worker = %self.worker, table = %self.table, failed = failed.len(), from_seq = lowest, attempt, max_retries = self.max_retries, next_batch = self.window, reason = %reason, "stream records failed; retrying");
        Ok(StepOutcome::Retrying {
            failed: failed.len(),
            from_seq: lowest,
            attempt,
            window: self.window,
        })
    }

    /// The failed sequence numbers of the batch, and why.
    fn failed_seqs(
        &self,
        rows: &[ChangeRow],
        answer: Result<usher_engine::Invocation, usher_engine::InvokeError>,
    ) -> (BTreeSet<u64>, String) {
        let all = || rows.iter().map(|r| r.seq).collect::<BTreeSet<u64>>();
        match answer {
            Ok(invocation) => match invocation.output {
                Output::Stream(outcome) => {
                    let seqs = all();
                    let mut failed = BTreeSet::new();
                    for s in &outcome.failures {
                        match s.parse::<u64>().ok().filter(|n| seqs.contains(n)) {
                            Some(n) => {
                                failed.insert(n);
                            }
                            None => {
                                return (
                                    seqs,
                                    format!("the worker reported sequence number `{s}`, which is not in the batch; the whole batch failed"),
                                );
                            }
                        }
                    }
                    let n = failed.len();
                    (failed, format!("the worker reported {n} record(s) failed"))
                }
                other => (
                    all(),
                    format!("a stream-worker answered with another kind of result: {other:?}"),
                ),
            },
            Err(e) => (all(), e.to_string()),
        }
    }

    async fn give_up(
        &self,
        rows: &[&ChangeRecord],
        attempts: u32,
        reason: &str,
    ) -> Result<(), TriggerError> {
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return Ok(());
        };
        let Some(queue) = &self.on_failure else {
            tracing::error!(worker = %self.worker, table = %self.table, records = rows.len(), first_seq = %first.sequence_number, last_seq = %last.sequence_number, reason, "giving up on stream records; no on_failure queue, so they are dropped");
            return Ok(());
        };
        let mut message = FailureMessage {
            worker: self.worker.clone(),
            table: self.table.clone(),
            reason: reason.to_string(),
            attempts,
            first_sequence_number: first.sequence_number.clone(),
            last_sequence_number: last.sequence_number.clone(),
            truncated: false,
            records: rows.iter().map(|r| (*r).clone()).collect(),
        };
        let mut body = self.encode(&message)?;
        if body.len() > MAX_BODY_BYTES {
            message.truncated = true;
            for r in &mut message.records {
                r.new_image = None;
                r.old_image = None;
            }
            body = self.encode(&message)?;
            if body.len() > MAX_BODY_BYTES {
                message.records.clear();
                body = self.encode(&message)?;
            }
        }
        let outgoing = OutgoingMessage {
            body,
            attributes: vec![
                ("worker".into(), self.worker.clone()),
                ("table".into(), self.table.clone()),
            ],
            delay_seconds: None,
        };
        let sent = self
            .queues
            .send_batch(queue, vec![outgoing])
            .await
            .map_err(|e| self.backend("send to the on_failure queue", e))?;
        for result in sent {
            result.map_err(|e| self.backend("send to the on_failure queue", e))?;
        }
        tracing::error!(worker = %self.worker, table = %self.table, on_failure = %queue, records = rows.len(), first_seq = %first.sequence_number, last_seq = %last.sequence_number, attempts, reason, "gave up on stream records; sent to the on_failure queue");
        Ok(())
    }

    fn encode(&self, message: &FailureMessage) -> Result<String, TriggerError> {
        serde_json::to_string(message).map_err(|e| self.backend("encode the failure message", e))
    }

    /// Follows the log until `stop` is signalled: a batch after another
    /// while changes wait, a wait for a write (at most `idle_wait`) when there
    /// are none, a pause after failures or a backend error. The batch in
    /// flight when `stop` comes is finished (and checkpointed) first.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>, options: TriggerOptions) {
        let mut wake = match self.log.subscribe(&self.table) {
            Ok(wake) => wake,
            Err(e) => {
                tracing::error!(worker = %self.worker, table = %self.table, error = %e, "stream follower cannot follow its table");
                return;
            }
        };
        loop {
            if stopping(&stop) {
                break;
            }
            wake.borrow_and_update();
            match self.step().await {
                Ok(StepOutcome::Idle) => wait(&mut wake, &mut stop, options.idle_wait).await,
                Ok(StepOutcome::Retrying { .. }) => pause(&mut stop, options.failure_backoff).await,
                Ok(StepOutcome::Advanced { .. } | StepOutcome::GaveUp { .. }) => {}
                Err(e) => {
                    tracing::error!(error = %e, "stream follower step failed");
                    pause(&mut stop, options.error_backoff).await;
                }
            }
        }
        tracing::debug!(worker = %self.worker, table = %self.table, "stream follower stopped");
    }
}

/// A change-log row as a stream-worker receives it, its keys and images
/// moved out of the row.
fn take_record(row: &mut ChangeRow) -> ChangeRecord {
    ChangeRecord {
        table: row.table.clone(),
        event_name: row.event_name,
        keys: std::mem::take(&mut row.keys),
        new_image: row.new_image.take(),
        old_image: row.old_image.take(),
        sequence_number: row.sequence_number(),
        timestamp_ms: row.timestamp_ms,
    }
}
