//! One SQLite connection per database, run off the async threads.
//!
//! Each database (one per table, the checkpoints, the queues, the events)
//! has one connection behind a mutex and runs every operation as one
//! closure on tokio's blocking pool. One connection per database keeps
//! `:memory:` databases simple, and with WAL, `synchronous=NORMAL` and one
//! transaction per batch it sustains tens of thousands of records per
//! second (see the throughput test). A database per table lets writes to
//! different tables run side by side: SQLite has one writer per database.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use rusqlite::Connection;
use usher_capabilities::CapError;

use crate::EmbeddedError;

/// How long a statement waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The page cache of a connection, in KiB.
const CACHE_KIB: i64 = 32 * 1024;
/// How much of a database file a connection maps into memory.
const MMAP_BYTES: i64 = 4 << 30;
/// WAL pages (4 KiB) after which a commit checkpoints.
const WAL_CHECKPOINT_PAGES: i64 = 8192;

/// A SQLite connection shared by one store.
#[derive(Clone)]
pub(crate) struct Db {
    conn: Arc<Mutex<Connection>>,
}

impl Db {
    /// Opens (creating if needed) the database file, or an in-memory one when
    /// `path` is `None`, and applies `schema`.
    pub(crate) fn open(path: Option<&Path>, schema: &str) -> Result<Db, EmbeddedError> {
        let what = path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| ":memory:".to_string());
        let wrap = |source: rusqlite::Error| EmbeddedError::Sqlite {
            database: what.clone(),
            source,
        };
        let conn = match path {
            Some(p) => Connection::open(p).map_err(wrap)?,
            None => Connection::open_in_memory().map_err(wrap)?,
        };
        conn.busy_timeout(BUSY_TIMEOUT).map_err(wrap)?;
        if path.is_some() {
            // WAL keeps readers and the writer apart; NORMAL syncs at
            // checkpoints only, so a committed transaction survives a crash
            // of the process (not necessarily of the machine).
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(wrap)?;
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(wrap)?;
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(wrap)?;
        // A negative size is in KiB: 32 MiB of page cache. Reads of a
        // larger database come from the mapped file below, not a pread
        // each. A larger cache is not free: at 256 MiB, SQLite's page-cache
        // truncation (`pcache1TruncateUnsafe`, which walks the cache's hash
        // table) took 3.8% of P8's drain, and nothing at 32 MiB
        // (BENCHMARKS.md, 2026-12-07).
        conn.pragma_update(None, "cache_size", -CACHE_KIB)
            .map_err(wrap)?;
        if path.is_some() {
            // Reads straight from the mapped file instead of a pread and a
            // copy per page (address space, not memory; WAL pages still
            // come from the WAL).
            conn.pragma_update(None, "mmap_size", MMAP_BYTES)
                .map_err(wrap)?;
            // Checkpoint every 32 MiB of WAL instead of 4 MiB: the same hot
            // pages (a table's last leaf, the change log's tail, the
            // indexes) rewritten by many commits are copied back once.
            conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)
                .map_err(wrap)?;
        }
        conn.execute_batch(schema).map_err(wrap)?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Rows this connection has inserted, updated or deleted since it was
    /// opened (SQLite's `total_changes`).
    pub(crate) fn row_writes(&self) -> u64 {
        self.conn.lock().total_changes()
    }

    /// Runs `f` with the connection on the calling thread (for start-up).
    pub(crate) fn blocking<R>(&self, f: impl FnOnce(&mut Connection) -> R) -> R {
        f(&mut self.conn.lock())
    }

    /// Runs `f` with the connection on the blocking pool.
    pub(crate) async fn call<R, F>(&self, f: F) -> Result<R, CapError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, CapError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock();
            f(&mut guard)
        })
        .await
        .map_err(|e| CapError::Fault(format!("embedded storage task failed: {e}")))?
    }
}

/// A SQLite error as a capability error: the store is unusable for now.
pub(crate) fn sql(e: rusqlite::Error) -> CapError {
    CapError::Unavailable(format!("embedded storage: {e}"))
}

/// A stored JSON document that no longer parses: the store is damaged.
pub(crate) fn corrupt(what: &str, e: serde_json::Error) -> CapError {
    CapError::Fault(format!("embedded storage holds a damaged {what}: {e}"))
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A `u64` as SQLite's `INTEGER` (saturating: our values never get near it).
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// SQLite's `INTEGER` back to a `u64` (negative values never get stored).
pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Measures how many rows per second SQLite writes in the folder `dir`, on
/// a scratch database opened exactly as the stores open theirs (WAL,
/// `synchronous=NORMAL`), upserting `rows` rows of `row_bytes` bytes in
/// transactions of `per_transaction` rows (as a batch of the embedded
/// backends is one transaction). The scratch file is removed afterwards.
/// The storage bound of a pipeline is this rate divided by the rows it
/// writes per record.
pub fn measure_row_writes(
    dir: &Path,
    rows: usize,
    row_bytes: usize,
    per_transaction: usize,
) -> Result<f64, EmbeddedError> {
    let path = dir.join(format!("row-write-bound-{}.db", std::process::id()));
    let result = (|| {
        let db = Db::open(
            Some(&path),
            "CREATE TABLE IF NOT EXISTS bound (k TEXT PRIMARY KEY, v TEXT NOT NULL);",
        )?;
        let wrap = |source: rusqlite::Error| EmbeddedError::Sqlite {
            database: path.display().to_string(),
            source,
        };
        let value = "x".repeat(row_bytes);
        let started = std::time::Instant::now();
        db.blocking(|conn| -> Result<(), EmbeddedError> {
            for chunk in (0..rows).collect::<Vec<_>>().chunks(per_transaction.max(1)) {
                let tx = conn.transaction().map_err(wrap)?;
                {
                    let mut stmt = tx
                        .prepare_cached("INSERT OR REPLACE INTO bound (k, v) VALUES (?1, ?2)")
                        .map_err(wrap)?;
                    for i in chunk {
                        stmt.execute(rusqlite::params![format!("k{i:09}"), value])
                            .map_err(wrap)?;
                    }
                }
                tx.commit().map_err(wrap)?;
            }
            Ok(())
        })?;
        Ok(rows as f64 / started.elapsed().as_secs_f64().max(f64::EPSILON))
    })();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    result
}
