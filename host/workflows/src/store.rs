//! Executions and their history in SQLite (`<data>/workflows.db`, opened as
//! the embedded backends open theirs: WAL, `synchronous=NORMAL`, so a
//! committed write survives a kill of the process).
//!
//! * `executions`: one row per execution (workflow, status, input, output or
//!   error, times, how many times it was started or resumed).
//! * `history`: the events, in order. Each event has a key that is the same
//!   when a resumed execution replays the same step, so a replay adds no
//!   event twice (`INSERT OR IGNORE`); only `TaskScheduled` carries the run
//!   number, so a task run again after a restart shows as a second one.
//! * `steps`: the recorded outcome of each Task (its result or its final
//!   error) and each Wait (its due time), written in the same transaction
//!   as the event that reports it. A resumed execution takes a recorded
//!   outcome instead of running the step again.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use serde_json::Value;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[error("workflow storage: {0}")]
pub struct StoreError(pub String);

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(e.to_string())
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT NOT NULL,
    output TEXT,
    error TEXT,
    cause TEXT,
    started_ms INTEGER NOT NULL,
    stopped_ms INTEGER,
    runs INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS executions_by_workflow ON executions (workflow, started_ms);
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    execution_id TEXT NOT NULL,
    key TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    type TEXT NOT NULL,
    state TEXT NOT NULL,
    data TEXT NOT NULL,
    UNIQUE (execution_id, key)
);
CREATE TABLE IF NOT EXISTS steps (
    execution_id TEXT NOT NULL,
    key TEXT NOT NULL,
    outcome TEXT NOT NULL,
    PRIMARY KEY (execution_id, key)
);
";

/// An execution's status.
pub const RUNNING: &str = "RUNNING";
/// An execution's status.
pub const SUCCEEDED: &str = "SUCCEEDED";
/// An execution's status.
pub const FAILED: &str = "FAILED";

/// One execution.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionRow {
    /// `<workflow>:<uuid>`.
    pub execution_id: String,
    /// The workflow.
    pub workflow: String,
    /// RUNNING, SUCCEEDED or FAILED.
    pub status: String,
    /// The input.
    pub input: Value,
    /// The output (SUCCEEDED).
    pub output: Option<Value>,
    /// The error (FAILED).
    pub error: Option<String>,
    /// The cause (FAILED).
    pub cause: Option<String>,
    /// Start, ms since the epoch.
    pub started_ms: u64,
    /// End, ms since the epoch.
    pub stopped_ms: Option<u64>,
    /// 1, plus one per resume after a restart.
    pub runs: u32,
}

/// One history event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Order within the whole store.
    pub seq: i64,
    /// The step key (`scope/State#visit`, plus what happened).
    pub key: String,
    /// When, ms since the epoch.
    pub ts_ms: u64,
    /// `ExecutionStarted`, `StateEntered`, `TaskScheduled` …
    #[serde(rename = "type")]
    pub kind: String,
    /// The state's path (`Map/Inner` inside a Map; empty for the execution).
    pub state: String,
    /// Input, output, error, attempt … of the event.
    pub data: Value,
}

/// The store.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::String(text.to_string()))
}

impl Store {
    /// Opens (creating) `<dir>/workflows.db`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError(format!("{}: {e}", dir.display())))?;
        let conn = Connection::open(dir.join("workflows.db"))?;
        Self::setup(conn)
    }

    /// A store in memory (tests).
    pub fn in_memory() -> Result<Store, StoreError> {
        Self::setup(Connection::open_in_memory()?)
    }

    fn setup(conn: Connection) -> Result<Store, StoreError> {
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || f(&mut conn.lock()))
            .await
            .map_err(|e| StoreError(format!("storage task failed: {e}")))?
    }

    /// Records a new execution (RUNNING) and its `ExecutionStarted` event.
    pub async fn create(&self, id: &str, workflow: &str, input: &Value) -> Result<(), StoreError> {
        let (id, workflow, input) = (id.to_string(), workflow.to_string(), input.to_string());
        self.call(move |c| {
            let tx = c.transaction()?;
            let now = i64_of(now_ms());
            tx.execute(
                "INSERT INTO executions (id, workflow, status, input, started_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, workflow, RUNNING, input, now],
            )?;
            tx.execute(
                "INSERT OR IGNORE INTO history (execution_id, key, ts_ms, type, state, data) VALUES (?1, 'start', ?2, 'ExecutionStarted', '', ?3)",
                params![id, now, format!("{{\"input\":{input}}}")],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// The running executions, oldest first, each counted as resumed once
    /// more (`runs` + 1); returns (id, workflow, input, runs).
    pub async fn resume_running(&self) -> Result<Vec<(String, String, Value, u32)>, StoreError> {
        self.call(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE executions SET runs = runs + 1 WHERE status = ?1",
                params![RUNNING],
            )?;
            let rows = {
                let mut stmt = tx.prepare(
                    "SELECT id, workflow, input, runs FROM executions WHERE status = ?1 ORDER BY started_ms",
                )?;
                let rows = stmt
                    .query_map(params![RUNNING], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, i64>(3)?,
                        ))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                rows
            };
            let now = i64_of(now_ms());
            for (id, _, _, runs) in &rows {
                tx.execute(
                    "INSERT OR IGNORE INTO history (execution_id, key, ts_ms, type, state, data) VALUES (?1, ?2, ?3, 'ExecutionResumed', '', ?4)",
                    params![id, format!("resume@{runs}"), now, format!("{{\"run\":{runs}}}")],
                )?;
            }
            tx.commit()?;
            Ok(rows
                .into_iter()
                .map(|(id, wf, input, runs)| {
                    (id, wf, parse(&input), u32::try_from(runs).unwrap_or(u32::MAX))
                })
                .collect())
        })
        .await
    }

    /// Adds an event (ignored when its key is already recorded).
    pub async fn event(
        &self,
        id: &str,
        key: String,
        kind: &'static str,
        state: &str,
        data: Value,
    ) -> Result<(), StoreError> {
        let (id, state) = (id.to_string(), state.to_string());
        self.call(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO history (execution_id, key, ts_ms, type, state, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, key, i64_of(now_ms()), kind, state, data.to_string()],
            )?;
            Ok(())
        })
        .await
    }

    /// The recorded outcome of a step.
    pub async fn step(&self, id: &str, key: &str) -> Result<Option<Value>, StoreError> {
        let (id, key) = (id.to_string(), key.to_string());
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT outcome FROM steps WHERE execution_id = ?1 AND key = ?2",
                params![id, key],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .map(|t| parse(&t)))
        })
        .await
    }

    /// Records a step's outcome and its event in one transaction.
    pub async fn record_step(
        &self,
        id: &str,
        key: &str,
        outcome: &Value,
        kind: &'static str,
        state: &str,
        data: Value,
    ) -> Result<(), StoreError> {
        let (id, key, outcome, state) = (
            id.to_string(),
            key.to_string(),
            outcome.to_string(),
            state.to_string(),
        );
        self.call(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT OR REPLACE INTO steps (execution_id, key, outcome) VALUES (?1, ?2, ?3)",
                params![id, key, outcome],
            )?;
            tx.execute(
                "INSERT OR IGNORE INTO history (execution_id, key, ts_ms, type, state, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, format!("{key}!{kind}"), i64_of(now_ms()), kind, state, data.to_string()],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Ends an execution.
    pub async fn finish(
        &self,
        id: &str,
        outcome: Result<&Value, (&str, &str)>,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        let (status, output, error, cause, kind, data) = match outcome {
            Ok(out) => (
                SUCCEEDED,
                Some(out.to_string()),
                None,
                None,
                "ExecutionSucceeded",
                serde_json::json!({"output": out}),
            ),
            Err((e, c)) => (
                FAILED,
                None,
                Some(e.to_string()),
                Some(c.to_string()),
                "ExecutionFailed",
                serde_json::json!({"error": e, "cause": c}),
            ),
        };
        self.call(move |c| {
            let tx = c.transaction()?;
            let now = i64_of(now_ms());
            tx.execute(
                "UPDATE executions SET status = ?2, output = ?3, error = ?4, cause = ?5, stopped_ms = ?6 WHERE id = ?1",
                params![id, status, output, error, cause, now],
            )?;
            tx.execute(
                "INSERT OR IGNORE INTO history (execution_id, key, ts_ms, type, state, data) VALUES (?1, 'end', ?2, ?3, '', ?4)",
                params![id, now, kind, data.to_string()],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Executions, newest first (of one workflow, or all), at most `limit`.
    pub async fn list(
        &self,
        workflow: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ExecutionRow>, StoreError> {
        let workflow = workflow.map(str::to_string);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call(move |c| {
            let mut stmt = c.prepare(
                "SELECT id, workflow, status, input, output, error, cause, started_ms, stopped_ms, runs FROM executions
                 WHERE (?1 IS NULL OR workflow = ?1) ORDER BY started_ms DESC, id LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![workflow, limit], row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// How many executions each (workflow, status) has.
    pub async fn count_by_status(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        self.call(move |c| {
            let mut stmt = c.prepare(
                "SELECT workflow, status, COUNT(*) FROM executions GROUP BY workflow, status ORDER BY workflow, status",
            )?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// One execution.
    pub async fn get(&self, id: &str) -> Result<Option<ExecutionRow>, StoreError> {
        let id = id.to_string();
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT id, workflow, status, input, output, error, cause, started_ms, stopped_ms, runs FROM executions WHERE id = ?1",
                params![id],
                row,
            )
            .optional()?)
        })
        .await
    }

    /// An execution's history, in order.
    pub async fn history(&self, id: &str) -> Result<Vec<Event>, StoreError> {
        let id = id.to_string();
        self.call(move |c| {
            let mut stmt = c.prepare(
                "SELECT seq, key, ts_ms, type, state, data FROM history WHERE execution_id = ?1 ORDER BY seq",
            )?;
            let rows = stmt
                .query_map(params![id], |r| {
                    Ok(Event {
                        seq: r.get(0)?,
                        key: r.get(1)?,
                        ts_ms: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                        kind: r.get(3)?,
                        state: r.get(4)?,
                        data: parse(&r.get::<_, String>(5)?),
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExecutionRow> {
    Ok(ExecutionRow {
        execution_id: r.get(0)?,
        workflow: r.get(1)?,
        status: r.get(2)?,
        input: parse(&r.get::<_, String>(3)?),
        output: r.get::<_, Option<String>>(4)?.map(|t| parse(&t)),
        error: r.get(5)?,
        cause: r.get(6)?,
        started_ms: u64::try_from(r.get::<_, i64>(7)?).unwrap_or(0),
        stopped_ms: r
            .get::<_, Option<i64>>(8)?
            .map(|v| u64::try_from(v).unwrap_or(0)),
        runs: u32::try_from(r.get::<_, i64>(9)?).unwrap_or(u32::MAX),
    })
}
