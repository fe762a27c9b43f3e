//! Change-log retention: the embedded tables' change log is trimmed as
//! DynamoDB Streams drops records after 24 hours, but never under a stream
//! follower that has not read them yet.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use usher_backend_embedded::ChangeLog;
use usher_engine::Runtime;
use usher_registry::{StartingPosition, Trigger};

use crate::{pause, stopping, TriggerError};

/// Changes deleted per statement (so a large trim does not hold the
/// database's write lock for long).
const TRIM_CHUNK: u32 = 5_000;

/// Trims the tables' change log: a change is deleted once it is older than
/// the retention **and** every stream follower of its table has
/// checkpointed past it. Changes of a table no worker follows are kept for
/// the retention only.
///
/// The followers are the registry's stream-workers (all of them, also those
/// this process does not run: their checkpoints persist in the data
/// folder). A follower without a checkpoint yet keeps its table's whole log
/// when it starts at `trim_horizon`, and nothing when it starts at `latest`
/// (it will start after the newest change anyway).
pub struct ChangeLogTrimmer {
    log: ChangeLog,
    /// Every table of the registry, with its followers and where each starts.
    tables: BTreeMap<String, Vec<(String, StartingPosition)>>,
    retention: Duration,
}

/// What one [`ChangeLogTrimmer::trim_once`] deleted, per table (tables with
/// nothing deleted are left out).
pub type TrimReport = BTreeMap<String, u64>;

impl ChangeLogTrimmer {
    /// A trimmer for every table of the runtime's registry.
    pub fn new(runtime: &Runtime, log: ChangeLog, retention: Duration) -> ChangeLogTrimmer {
        let registry = runtime.registry();
        let mut tables: BTreeMap<String, Vec<(String, StartingPosition)>> = registry
            .resources
            .tables
            .keys()
            .map(|t| (t.clone(), Vec::new()))
            .collect();
        for (name, spec) in &registry.workers {
            if let Trigger::Stream {
                table,
                starting_position,
                ..
            } = &spec.trigger
            {
                tables
                    .entry(table.clone())
                    .or_default()
                    .push((name.clone(), *starting_position));
            }
        }
        ChangeLogTrimmer {
            log,
            tables,
            retention,
        }
    }

    /// The retention.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// The highest sequence number every follower of `table` has finished
    /// (`u64::MAX` when none follows it).
    async fn horizon(
        &self,
        table: &str,
        followers: &[(String, StartingPosition)],
    ) -> Result<u64, TriggerError> {
        let mut horizon = u64::MAX;
        for (worker, start) in followers {
            let checkpoint =
                self.log
                    .checkpoint_get(worker)
                    .await
                    .map_err(|e| TriggerError::Trim {
                        table: table.to_string(),
                        message: format!("reading the checkpoint of {worker}: {e}"),
                    })?;
            let finished = match (checkpoint, start) {
                (Some(seq), _) => seq,
                (None, StartingPosition::TrimHorizon) => 0,
                (None, StartingPosition::Latest) => u64::MAX,
            };
            horizon = horizon.min(finished);
        }
        Ok(horizon)
    }

    /// Deletes, in every table's log, the changes older than the retention
    /// that every follower has checkpointed past.
    pub async fn trim_once(&self) -> Result<TrimReport, TriggerError> {
        let now_ms = u64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis(),
        )
        .unwrap_or(u64::MAX);
        let retention_ms = u64::try_from(self.retention.as_millis()).unwrap_or(u64::MAX);
        let before_ms = now_ms.saturating_sub(retention_ms);
        let mut report = TrimReport::new();
        for (table, followers) in &self.tables {
            let horizon = self.horizon(table, followers).await?;
            if horizon == 0 || before_ms == 0 {
                continue;
            }
            let mut deleted = 0;
            loop {
                let n = self
                    .log
                    .trim(table, horizon, before_ms, TRIM_CHUNK)
                    .await
                    .map_err(|e| TriggerError::Trim {
                        table: table.clone(),
                        message: e.to_string(),
                    })?;
                deleted += n;
                if n < u64::from(TRIM_CHUNK) {
                    break;
                }
                // Let writers in between chunks.
                tokio::task::yield_now().await;
            }
            if deleted > 0 {
                tracing::debug!(table = %table, deleted, through_seq = horizon, "change log trimmed");
                report.insert(table.clone(), deleted);
            }
        }
        Ok(report)
    }

    /// Trims every `every` until `stop` is signalled (the first trim right
    /// away).
    pub async fn run(self, mut stop: watch::Receiver<bool>, every: Duration) {
        loop {
            if stopping(&stop) {
                break;
            }
            if let Err(e) = self.trim_once().await {
                tracing::error!(error = %e, "trimming the change log failed");
            }
            pause(&mut stop, every.max(Duration::from_millis(1))).await;
        }
        tracing::debug!("change-log trimmer stopped");
    }
}

/// The trimmer's task, started by [`crate::Triggers::start`].
pub(crate) fn spawn(
    runtime: &Arc<Runtime>,
    log: ChangeLog,
    retention: Duration,
    every: Duration,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let trimmer = ChangeLogTrimmer::new(runtime, log, retention);
    tokio::spawn(trimmer.run(stop, every))
}
