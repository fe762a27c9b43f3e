//! The tables' change log (the stream) and the stream followers'
//! checkpoints. [`crate::EmbeddedTables`] appends a change in the same
//! transaction as every write; [`ChangeLog`] reads the log back, trims it
//! and keeps the checkpoints.

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use usher_capabilities::{CapError, JsonText};

use crate::db::{sql, to_i64, to_u64, Db};
use crate::table::Stores;
use usher_registry::StreamFilterRule;

pub use usher_capabilities::ChangeKind;

/// The change log, in each table's database.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS changes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    tbl        TEXT NOT NULL,
    event_name TEXT NOT NULL,
    keys       TEXT NOT NULL,
    new_image  TEXT,
    old_image  TEXT,
    ts_ms      INTEGER NOT NULL,
    traceparent TEXT
);
CREATE INDEX IF NOT EXISTS changes_by_table ON changes (tbl, seq);
";

/// The stream followers' checkpoints, in their own database.
pub(crate) const CHECKPOINTS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS checkpoints (
    consumer TEXT PRIMARY KEY,
    seq      INTEGER NOT NULL
) WITHOUT ROWID;
";

fn parse_kind(text: &str) -> Result<ChangeKind, CapError> {
    ChangeKind::parse(text).ok_or_else(|| {
        CapError::Fault(format!(
            "embedded storage holds an unknown change kind `{text}`"
        ))
    })
}

/// One row of a table's change log: what a stream follower hands a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeRow {
    /// The table.
    pub table: String,
    /// The sequence number: increasing with every write to the table (a
    /// write that changes nothing takes none; the numbers of trimmed
    /// changes are not reused).
    pub seq: u64,
    /// What the write did.
    pub event_name: ChangeKind,
    /// The item's key attributes.
    pub keys: JsonText,
    /// The item after the write (absent for a removal).
    pub new_image: Option<JsonText>,
    /// The item before the write (absent for an insert).
    pub old_image: Option<JsonText>,
    /// When the write happened, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The W3C `traceparent` of the write's span, when traces were on: the
    /// stream batch that hands the change to a worker continues that trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// Adds the `traceparent` column to a change log made before it existed.
pub(crate) fn migrate(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    let has: i64 = conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('changes') WHERE name = 'traceparent'",
        [],
        |r| r.get(0),
    )?;
    if has == 0 {
        conn.execute_batch("ALTER TABLE changes ADD COLUMN traceparent TEXT")?;
    }
    Ok(())
}

/// Parses the rows of a `SELECT seq, event_name, keys, new_image,
/// old_image, ts_ms, traceparent`.
fn collect_rows(table: &str, mut rows: rusqlite::Rows<'_>) -> Result<Vec<ChangeRow>, CapError> {
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(sql)? {
        let seq: i64 = row.get(0).map_err(sql)?;
        let kind: String = row.get(1).map_err(sql)?;
        let keys: String = row.get(2).map_err(sql)?;
        let new_image: Option<String> = row.get(3).map_err(sql)?;
        let old_image: Option<String> = row.get(4).map_err(sql)?;
        let ts: i64 = row.get(5).map_err(sql)?;
        let traceparent: Option<String> = row.get(6).map_err(sql)?;
        // The log holds what serde_json wrote (the table's own writes): the
        // texts go on as they are, unparsed (a worker gets them as text).
        out.push(ChangeRow {
            table: table.to_string(),
            seq: to_u64(seq),
            event_name: parse_kind(&kind)?,
            keys: JsonText::trusted(keys),
            new_image: new_image.map(JsonText::trusted),
            old_image: old_image.map(JsonText::trusted),
            timestamp_ms: to_u64(ts),
            traceparent,
        });
    }
    Ok(out)
}

/// A stream filter as an SQL condition on the `changes` columns, exactly
/// [`StreamFilterRule::passes`]: some rule passes the change's kind (the
/// log's `event_name`: INSERT has a new image only, MODIFY both, REMOVE the
/// old one only) and its attribute, in the new or the old image, is a JSON
/// string equal to one of its values or starting with one of its prefixes,
/// or the boolean it names. Numbered parameters from `?5` on, given in
/// order.
fn filter_sql(filter: &[StreamFilterRule]) -> (String, Vec<String>) {
    let mut args: Vec<String> = Vec::new();
    let mut next = |value: String| {
        args.push(value);
        format!("?{}", args.len() + 4)
    };
    let mut rules = Vec::new();
    for rule in filter {
        let mut parts = Vec::new();
        if !rule.events.is_empty() {
            let events: Vec<String> = rule.events.iter().map(|e| next(e.clone())).collect();
            parts.push(format!("event_name IN ({})", events.join(", ")));
        }
        if rule.has_attribute() {
            // `$."name"`: the attribute as one path step, whatever it holds.
            let path = next(format!(
                "$.\"{}\"",
                rule.attribute.replace('\\', "\\\\").replace('"', "\\\"")
            ));
            // json_type 'text': a JSON string (json_extract gives objects
            // and arrays as text too); 'true' / 'false': that boolean.
            let mut tests = Vec::new();
            for value in &rule.equals {
                tests.push(format!("v = {}", next(value.clone())));
            }
            for prefix in &rule.prefix {
                let p = next(prefix.clone());
                tests.push(format!("substr(v, 1, length({p})) = {p}"));
            }
            let mut images = Vec::new();
            for image in ["new_image", "old_image"] {
                let mut accepted = Vec::new();
                if !tests.is_empty() {
                    accepted.push(format!(
                        "(json_type({image}, {path}) = 'text' AND \
                         (SELECT {} FROM (SELECT json_extract({image}, {path}) AS v)))",
                        tests.join(" OR ")
                    ));
                }
                if let Some(b) = rule.is {
                    accepted.push(format!("json_type({image}, {path}) = '{b}'"));
                }
                if accepted.is_empty() {
                    accepted.push("0".to_string());
                }
                images.push(format!(
                    "({image} IS NOT NULL AND ({}))",
                    accepted.join(" OR ")
                ));
            }
            parts.push(format!("({})", images.join(" OR ")));
        }
        if parts.is_empty() {
            // Nothing to compare: passes every change, as `passes` does.
            parts.push("1".to_string());
        }
        rules.push(format!("({})", parts.join(" AND ")));
    }
    if rules.is_empty() {
        ("0".to_string(), args)
    } else {
        (rules.join(" OR "), args)
    }
}

impl ChangeRow {
    /// The sequence number as the worker sees it: a decimal string.
    pub fn sequence_number(&self) -> String {
        self.seq.to_string()
    }
}

/// Reads the tables' change log (for stream followers) and keeps their
/// checkpoints. Cheap to clone.
#[derive(Clone)]
pub struct ChangeLog {
    stores: Stores,
    checkpoints: Db,
}

impl ChangeLog {
    pub(crate) fn new(stores: Stores, checkpoints: Db) -> Self {
        Self {
            stores,
            checkpoints,
        }
    }

    /// The database of `table`.
    fn db(&self, table: &str) -> Result<&Db, CapError> {
        Ok(&self.stores.of(table)?.db)
    }

    /// Up to `limit` changes of `table` with a sequence number above
    /// `after_seq`, oldest first (`after_seq` 0 reads from the start).
    pub async fn read(
        &self,
        table: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<ChangeRow>, CapError> {
        let db = self.db(table)?;
        let table = table.to_string();
        db.call(move |conn| {
                let mut st = conn
                    .prepare_cached(
                        "SELECT seq, event_name, keys, new_image, old_image, ts_ms, traceparent FROM changes
                         WHERE tbl = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                    )
                    .map_err(sql)?;
                let rows = st
                    .query(params![table, to_i64(after_seq), i64::from(limit)])
                    .map_err(sql)?;
                collect_rows(&table, rows)
            })
            .await
    }

    /// Like [`ChangeLog::read`], but only the changes that pass `filter`
    /// (a stream trigger's filter, [`StreamFilterRule::passes`]), decided
    /// by SQLite on the stored images so that the changes it drops are
    /// neither copied out nor parsed. At most `scan` changes after
    /// `after_seq` are looked at; returns up to `limit` passing changes and
    /// the sequence number up to which the log was looked at (the last
    /// passing change when `limit` were found, else the last change
    /// scanned; `None` when there was none): a follower's checkpoint may
    /// move there, every change up to it that is not returned having been
    /// dropped by the filter.
    pub async fn read_filtered(
        &self,
        table: &str,
        after_seq: u64,
        limit: u32,
        scan: u32,
        filter: &[StreamFilterRule],
    ) -> Result<(Vec<ChangeRow>, Option<u64>), CapError> {
        if filter.is_empty() {
            let rows = self.read(table, after_seq, limit).await?;
            let last = rows.last().map(|r| r.seq);
            return Ok((rows, last));
        }
        let db = self.db(table)?;
        let table = table.to_string();
        let (condition, args) = filter_sql(filter);
        let scan = scan.max(limit).max(1);
        db.call(move |conn| {
            // One read transaction, so the passing changes and the end of
            // the window scanned come from one snapshot: another
            // connection (the tables of another process on the same
            // file) may commit between two statements, and a change
            // committed in between would be inside the window scanned
            // without having been filtered: the checkpoint would skip it.
            let tx = conn.transaction().map_err(sql)?;
            // The window: the next `scan` changes of the table.
            let window = "SELECT seq, event_name, keys, new_image, old_image, ts_ms, traceparent
                              FROM changes WHERE tbl = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3";
            let text = format!("SELECT * FROM ({window}) WHERE {condition} ORDER BY seq LIMIT ?4");
            let mut params: Vec<rusqlite::types::Value> = vec![
                table.clone().into(),
                to_i64(after_seq).into(),
                i64::from(scan).into(),
                i64::from(limit).into(),
            ];
            params.extend(args.iter().cloned().map(rusqlite::types::Value::from));
            let rows = {
                let mut st = tx.prepare_cached(&text).map_err(sql)?;
                let rows = st
                    .query(rusqlite::params_from_iter(params.iter()))
                    .map_err(sql)?;
                collect_rows(&table, rows)?
            };
            let through = if rows.len() == limit as usize {
                rows.last().map(|r| r.seq)
            } else {
                let last: Option<i64> = tx
                    .prepare_cached(
                        "SELECT MAX(seq) FROM (SELECT seq FROM changes
                             WHERE tbl = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3)",
                    )
                    .map_err(sql)?
                    .query_row(params![table, to_i64(after_seq), i64::from(scan)], |r| {
                        r.get(0)
                    })
                    .map_err(sql)?;
                last.map(to_u64)
            };
            tx.commit().map_err(sql)?;
            Ok((rows, through))
        })
        .await
    }

    /// The sequence number of `table`'s newest change; 0 when it has none.
    pub async fn latest_seq(&self, table: &str) -> Result<u64, CapError> {
        let db = self.db(table)?;
        let table = table.to_string();
        db.call(move |conn| {
            let seq: Option<i64> = conn
                .prepare_cached("SELECT MAX(seq) FROM changes WHERE tbl = ?1")
                .map_err(sql)?
                .query_row(params![table], |r| r.get(0))
                .map_err(sql)?;
            Ok(seq.map(to_u64).unwrap_or(0))
        })
        .await
    }

    /// Drops `table`'s changes up to and including `seq` (once every
    /// follower has checkpointed past them). Returns how many were dropped.
    pub async fn trim_through(&self, table: &str, seq: u64) -> Result<u64, CapError> {
        let db = self.db(table)?;
        let table = table.to_string();
        db.call(move |conn| {
            let n = conn
                .prepare_cached("DELETE FROM changes WHERE tbl = ?1 AND seq <= ?2")
                .map_err(sql)?
                .execute(params![table, to_i64(seq)])
                .map_err(sql)?;
            Ok(n as u64)
        })
        .await
    }

    /// Drops up to `limit` of `table`'s changes (oldest first) with a
    /// sequence number up to and including `through_seq` that were written
    /// before `before_ms` (milliseconds since the Unix epoch): the change-log
    /// retention. Returns how many were dropped; fewer than `limit` means
    /// none is left to drop.
    pub async fn trim(
        &self,
        table: &str,
        through_seq: u64,
        before_ms: u64,
        limit: u32,
    ) -> Result<u64, CapError> {
        let db = self.db(table)?;
        let table = table.to_string();
        db.call(move |conn| {
            let n = conn
                .prepare_cached(
                    "DELETE FROM changes WHERE seq IN (
                             SELECT seq FROM changes
                             WHERE tbl = ?1 AND seq <= ?2 AND ts_ms < ?3
                             ORDER BY seq LIMIT ?4)",
                )
                .map_err(sql)?
                .execute(params![
                    table,
                    to_i64(through_seq),
                    to_i64(before_ms),
                    i64::from(limit)
                ])
                .map_err(sql)?;
            Ok(n as u64)
        })
        .await
    }

    /// How many changes of `table` the log holds.
    pub async fn count(&self, table: &str) -> Result<u64, CapError> {
        let db = self.db(table)?;
        let table = table.to_string();
        db.call(move |conn| {
            let n: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM changes WHERE tbl = ?1")
                .map_err(sql)?
                .query_row(params![table], |r| r.get(0))
                .map_err(sql)?;
            Ok(to_u64(n))
        })
        .await
    }

    /// A consumer's checkpoint: the last sequence number it finished.
    pub async fn checkpoint_get(&self, consumer: &str) -> Result<Option<u64>, CapError> {
        let consumer = consumer.to_string();
        self.checkpoints
            .call(move |conn| {
                let seq: Option<i64> = conn
                    .prepare_cached("SELECT seq FROM checkpoints WHERE consumer = ?1")
                    .map_err(sql)?
                    .query_row(params![consumer], |r| r.get(0))
                    .optional()
                    .map_err(sql)?;
                Ok(seq.map(to_u64))
            })
            .await
    }

    /// Stores a consumer's checkpoint.
    pub async fn checkpoint_set(&self, consumer: &str, seq: u64) -> Result<(), CapError> {
        let consumer = consumer.to_string();
        self.checkpoints
            .call(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO checkpoints (consumer, seq) VALUES (?1, ?2)
                     ON CONFLICT (consumer) DO UPDATE SET seq = excluded.seq",
                )
                .map_err(sql)?
                .execute(params![consumer, to_i64(seq)])
                .map_err(sql)?;
                Ok(())
            })
            .await
    }

    /// Watches the newest sequence number of `table`'s log: a follower
    /// waits on `changed()` instead of polling.
    pub fn subscribe(&self, table: &str) -> Result<watch::Receiver<u64>, CapError> {
        Ok(self.stores.of(table)?.latest.subscribe())
    }
}
