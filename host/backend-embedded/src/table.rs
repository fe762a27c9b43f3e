//! DynamoDB-shaped tables in SQLite, with a change log (the stream) written
//! in the same transaction as every write (read back by
//! [`crate::change_log`]). Keys are checked by the shared
//! [`usher_capabilities::KeySchema`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::RwLock;
use rusqlite::types::Value as Sql;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde_json::{Map, Number, Value};
use tokio::sync::watch;
use usher_capabilities::key_schema::{add_number, condition_failed};
use usher_capabilities::{
    json_kind, CapError, Condition, JsonText, KeyCodec, KeySchema, Page, PutItem, TableBackend,
    TableKey, TextPage, TransactError, TransactItem, UpdateItem, WriteOp,
};
use usher_registry::TableDef;

use crate::change_log::{self, ChangeKind, ChangeLog};
use crate::db::{corrupt, now_ms, sql, to_i64, to_u64, Db};
use crate::EmbeddedError;

/// The items of a table, in the table's database, with the change log's
/// table ([`change_log::SCHEMA`]) written in the same transactions.
///
/// A rowid table with a unique index on the key, not a `WITHOUT ROWID`
/// table keyed by it: items are JSON documents of a few hundred bytes to a
/// few KB, and SQLite keeps a `WITHOUT ROWID` row whole in its key's B-tree,
/// spilling rows over ~1 KB to overflow pages, with a handful of rows a
/// leaf. On rows of ~1 KB the rowid layout loaded 4× faster, updated 2×
/// faster with the change log, in half the file (BENCHMARKS.md, P8,
/// 2026-12-07 sixth session). A write updates the row in place.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS items (
    id   INTEGER PRIMARY KEY,
    tbl  TEXT NOT NULL,
    pk   ANY NOT NULL,
    sk   ANY NOT NULL,
    item TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS items_by_key ON items (tbl, pk, sk);
";

/// A table's key, as stored (`sk` is the empty text for tables without a
/// sort key) and as JSON.
struct Key {
    pk: Sql,
    sk: Sql,
    json: Value,
}

impl From<TableKey<Sql>> for Key {
    fn from(k: TableKey<Sql>) -> Self {
        Key {
            pk: k.partition,
            sk: k.sort.unwrap_or_else(no_sort_key),
            json: k.json,
        }
    }
}

/// Key attributes as SQLite stores them: text, an integer or a real.
struct SqlKeys;

impl KeyCodec for SqlKeys {
    type Part = Sql;

    fn text(s: &str) -> Sql {
        Sql::Text(s.to_string())
    }

    fn number(n: &Number) -> Option<Sql> {
        match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Some(Sql::Integer(i)),
            (None, Some(f)) => Some(Sql::Real(f)),
            (None, None) => None,
        }
    }
}

fn no_sort_key() -> Sql {
    Sql::Text(String::new())
}

/// The key schemas of the registry's tables.
#[derive(Clone)]
pub(crate) struct Schemas(Arc<BTreeMap<String, TableDef>>);

impl Schemas {
    pub(crate) fn get(&self, table: &str) -> Result<&TableDef, CapError> {
        self.0
            .get(table)
            .ok_or_else(|| CapError::NotFound(format!("table `{table}` is not defined")))
    }

    fn schema<'a>(&'a self, table: &'a str) -> Result<KeySchema<'a>, CapError> {
        Ok(KeySchema::new(table, self.get(table)?))
    }
}

/// A key given by the caller: exactly the key attributes.
fn parse_key(schema: &KeySchema<'_>, key: &Value) -> Result<Key, CapError> {
    schema.parse_key::<SqlKeys>(key).map(Key::from)
}

/// The key of a whole item.
fn item_key(schema: &KeySchema<'_>, item: &Value) -> Result<Key, CapError> {
    schema.item_key::<SqlKeys>(item).map(Key::from)
}

fn load(conn: &Connection, table: &str, key: &Key) -> Result<Option<Value>, CapError> {
    Ok(load_stored(conn, table, key)?.map(|s| s.value))
}

/// The stored text of an item, unparsed.
fn load_text(conn: &Connection, table: &str, key: &Key) -> Result<Option<String>, CapError> {
    let mut st = conn
        .prepare_cached("SELECT item FROM items WHERE tbl = ?1 AND pk = ?2 AND sk = ?3")
        .map_err(sql)?;
    st.query_row(params![table, key.pk, key.sk], |r| r.get(0))
        .optional()
        .map_err(sql)
}

/// A stored item's row: its rowid (what a write in the same transaction
/// updates or deletes it by, without looking the key up again) and its text.
struct Row {
    id: i64,
    text: String,
}

/// The row of an item, unparsed.
fn load_row(conn: &Connection, table: &str, key: &Key) -> Result<Option<Row>, CapError> {
    let mut st = conn
        .prepare_cached("SELECT id, item FROM items WHERE tbl = ?1 AND pk = ?2 AND sk = ?3")
        .map_err(sql)?;
    st.query_row(params![table, key.pk, key.sk], |r| {
        Ok(Row {
            id: r.get(0)?,
            text: r.get(1)?,
        })
    })
    .optional()
    .map_err(sql)
}

/// An item as stored: parsed, and its row.
struct Stored {
    value: Value,
    row: Row,
}

/// [`load`], keeping the row (the change log's old image, what a new item's
/// text is compared with without serializing the item again, and the rowid
/// the write goes to).
fn load_stored(conn: &Connection, table: &str, key: &Key) -> Result<Option<Stored>, CapError> {
    load_row(conn, table, key)?
        .map(|row| parse_item(&row.text).map(|value| Stored { value, row }))
        .transpose()
}

/// A stored item's text, parsed (a text that does not parse: the store is
/// damaged).
fn parse_item(text: &str) -> Result<Value, CapError> {
    serde_json::from_str(text).map_err(|e| corrupt("item", e))
}

fn to_text(v: &Value) -> Result<String, CapError> {
    serde_json::to_string(v).map_err(|e| CapError::Invalid(format!("item does not serialize: {e}")))
}

/// When a write happens and under which trace: what its change-log row
/// records beside the change.
pub(crate) struct Stamp {
    /// Milliseconds since the Unix epoch.
    ms: u64,
    /// The W3C `traceparent` of the writer's span (traces on), else `None`.
    traceparent: Option<String>,
    /// Whether the table's changes go to the change log (see
    /// [`EmbeddedTables::log_changes_only_of`]).
    log: bool,
}

impl Stamp {
    /// Now, under the current span's trace context (taken on the caller's
    /// task, before the write moves to the blocking pool).
    fn now_under(traceparent: Option<String>, log: bool) -> Stamp {
        Stamp {
            ms: now_ms(),
            traceparent,
            log,
        }
    }
}

/// Stores `new` (an item's text, or deletes the item when `None`) in place
/// of `old` (the stored row, read in this transaction; `None` when there is
/// no item) and appends the change to the log (when the table's changes are
/// logged). Returns the change's sequence number, or `None` when the write
/// changes nothing (and so neither writes nor logs) or is not logged. Items
/// are stored as serde_json writes them (maps in key order), so equal items
/// have equal texts. A stored item is rewritten or deleted by its rowid: a
/// second lookup of its key (an upsert) cost 2–5 µs of a ~30 µs verdict write
/// (BENCHMARKS.md, P8, seventh session).
fn write_item(
    conn: &Connection,
    table: &str,
    key: &Key,
    new_text: Option<String>,
    old: Option<Row>,
    now: &Stamp,
) -> Result<Option<u64>, CapError> {
    let kind = match (&old, &new_text) {
        (None, None) => return Ok(None),
        (Some(o), Some(n)) if o.text == *n => return Ok(None),
        (None, Some(_)) => ChangeKind::Insert,
        (Some(_), Some(_)) => ChangeKind::Modify,
        (Some(_), None) => ChangeKind::Remove,
    };
    match (&old, &new_text) {
        (Some(row), Some(text)) => {
            let mut st = conn
                .prepare_cached("UPDATE items SET item = ?2 WHERE id = ?1")
                .map_err(sql)?;
            st.execute(params![row.id, text]).map_err(sql)?;
        }
        (Some(row), None) => {
            let mut st = conn
                .prepare_cached("DELETE FROM items WHERE id = ?1")
                .map_err(sql)?;
            st.execute(params![row.id]).map_err(sql)?;
        }
        _ => store_item(conn, table, key, new_text.as_deref())?,
    }
    let old_text = old.map(|o| o.text);
    if !now.log {
        return Ok(None);
    }
    let keys = to_text(&key.json)?;
    let mut st = conn
        .prepare_cached(
            "INSERT INTO changes (tbl, event_name, keys, new_image, old_image, ts_ms, traceparent)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(sql)?;
    st.execute(params![
        table,
        kind.as_str(),
        keys,
        new_text,
        old_text,
        to_i64(now.ms),
        now.traceparent.as_deref()
    ])
    .map_err(sql)?;
    Ok(Some(to_u64(conn.last_insert_rowid())))
}

/// Stores the item's text (or deletes the item when `None`), nothing else.
fn store_item(
    conn: &Connection,
    table: &str,
    key: &Key,
    new_text: Option<&str>,
) -> Result<(), CapError> {
    match new_text {
        Some(text) => {
            let mut st = conn
                .prepare_cached(
                    "INSERT INTO items (tbl, pk, sk, item) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (tbl, pk, sk) DO UPDATE SET item = excluded.item",
                )
                .map_err(sql)?;
            st.execute(params![table, key.pk, key.sk, text])
                .map_err(sql)?;
        }
        None => {
            let mut st = conn
                .prepare_cached("DELETE FROM items WHERE tbl = ?1 AND pk = ?2 AND sk = ?3")
                .map_err(sql)?;
            st.execute(params![table, key.pk, key.sk]).map_err(sql)?;
        }
    }
    Ok(())
}

fn check_condition(
    table: &str,
    key: &Key,
    condition: Option<&Condition>,
    current: Option<&Value>,
) -> Result<(), CapError> {
    match condition {
        Some(c) if !c.holds(current) => Err(condition_failed(table, &key.json, c)),
        _ => Ok(()),
    }
}

/// Publishes the newest sequence number of a committed transaction.
fn announce(latest: &watch::Sender<u64>, seq: Option<u64>) {
    if let Some(seq) = seq {
        latest.send_if_modified(|current| {
            if seq > *current {
                *current = seq;
                true
            } else {
                false
            }
        });
    }
}

/// The embedded [`TableBackend`]: items as JSON in SQLite, keyed by the
/// table's key schema from the registry.
///
/// Every write appends a [`crate::ChangeRow`] to the change log in the same
/// transaction; [`ChangeLog`] reads it back.
pub struct EmbeddedTables {
    stores: Stores,
    checkpoints: Db,
    schemas: Schemas,
    /// The tables whose changes are logged; `None`: every table.
    logged: Arc<RwLock<Option<BTreeSet<String>>>>,
}

/// One table's database: its items and its change log, written in the same
/// transactions, and the newest sequence number of its log.
#[derive(Clone)]
pub(crate) struct TableDb {
    pub(crate) db: Db,
    pub(crate) latest: Arc<watch::Sender<u64>>,
}

/// A database per table, so that writes to different tables run side by
/// side (SQLite has one writer per database).
#[derive(Clone)]
pub(crate) struct Stores(Arc<BTreeMap<String, TableDb>>);

impl Stores {
    pub(crate) fn of(&self, table: &str) -> Result<&TableDb, CapError> {
        self.0
            .get(table)
            .ok_or_else(|| CapError::NotFound(format!("table `{table}` is not defined")))
    }

    fn all(&self) -> impl Iterator<Item = &TableDb> {
        self.0.values()
    }
}

/// The folder of the tables' databases in a data folder: `<table>.db` each.
const TABLES_DIR: &str = "tables";
/// The stream followers' checkpoints, in a data folder.
const CHECKPOINTS_FILE: &str = "checkpoints.db";
/// Where every table lived before each got its own database (migrated at
/// open, then renamed to [`LEGACY_MIGRATED`]).
const LEGACY_FILE: &str = "tables.db";
const LEGACY_MIGRATED: &str = "tables.db.migrated";

impl EmbeddedTables {
    /// Opens (creating if needed) the tables' databases in the data folder
    /// `dir` (`tables/<table>.db`, and `checkpoints.db`), or in memory when
    /// `None`. A data folder of the earlier layout (every table in one
    /// `tables.db`) is migrated first.
    pub(crate) fn open(
        dir: Option<&Path>,
        tables: &BTreeMap<String, TableDef>,
    ) -> Result<EmbeddedTables, EmbeddedError> {
        let sqlite = |database: &str| {
            let database = database.to_string();
            move |source| EmbeddedError::Sqlite {
                database: database.clone(),
                source,
            }
        };
        if let Some(dir) = dir {
            let folder = dir.join(TABLES_DIR);
            std::fs::create_dir_all(&folder).map_err(|source| EmbeddedError::Io {
                path: folder,
                source,
            })?;
        }
        let checkpoints = Db::open(
            dir.map(|d| d.join(CHECKPOINTS_FILE)).as_deref(),
            change_log::CHECKPOINTS_SCHEMA,
        )?;
        let mut stores = BTreeMap::new();
        for name in tables.keys() {
            let file = dir.map(|d| table_file(d, name)).transpose()?;
            // A table's own file always had the `traceparent` column: only
            // the old `tables.db` needs `change_log::migrate` (below).
            let db = Db::open(file.as_deref(), &format!("{SCHEMA}{}", change_log::SCHEMA))?;
            stores.insert(name.clone(), db);
        }
        if let Some(dir) = dir {
            migrate_legacy(dir, &stores, &checkpoints)?;
        }
        let mut opened = BTreeMap::new();
        for (name, db) in stores {
            let latest: Option<i64> = db
                .blocking(|conn| conn.query_row("SELECT MAX(seq) FROM changes", [], |r| r.get(0)))
                .map_err(sqlite(&name))?;
            let latest = latest.map(to_u64).unwrap_or(0);
            opened.insert(
                name,
                TableDb {
                    db,
                    latest: Arc::new(watch::channel(latest).0),
                },
            );
        }
        Ok(EmbeddedTables {
            stores: Stores(Arc::new(opened)),
            checkpoints,
            schemas: Schemas(Arc::new(tables.clone())),
            logged: Arc::new(RwLock::new(None)),
        })
    }

    /// From now on, only the changes of `tables` go to the change log (the
    /// tables some stream follows), as in AWS, where only a table followed
    /// by stream-workers has a stream: the writes to the other tables skip
    /// the log row with its images (and a batch write to them no longer
    /// reads the item it replaces). By default every table's changes are
    /// logged. A follower of a table not logged reads nothing.
    pub fn log_changes_only_of<I, S>(&self, tables: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        *self.logged.write() = Some(tables.into_iter().map(Into::into).collect());
    }

    /// Whether `table`'s changes go to the change log.
    pub fn logs_changes_of(&self, table: &str) -> bool {
        self.logged
            .read()
            .as_ref()
            .is_none_or(|tables| tables.contains(table))
    }

    /// The reader of this store's change log and checkpoints.
    pub fn change_log(&self) -> ChangeLog {
        ChangeLog::new(self.stores.clone(), self.checkpoints.clone())
    }

    async fn write<R, F>(&self, table: &str, f: F) -> Result<R, CapError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection, &str, &TableDef, &Stamp) -> Result<(R, Option<u64>), CapError>
            + Send
            + 'static,
    {
        let def = self.schemas.get(table)?.clone();
        let store = self.stores.of(table)?;
        let log = self.logs_changes_of(table);
        let table = table.to_string();
        let traceparent = usher_telemetry::propagation::current_traceparent();
        let (value, seq) = store
            .db
            .call(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sql)?;
                let out = f(&tx, &table, &def, &Stamp::now_under(traceparent, log))?;
                tx.commit().map_err(sql)?;
                Ok(out)
            })
            .await?;
        announce(&store.latest, seq);
        Ok(value)
    }

    /// Runs `op` on every prepared operation in one transaction; an
    /// operation that fails (a false condition, a malformed write) fails
    /// alone, a storage error fails the call and nothing is committed.
    async fn many<P, R, F>(
        &self,
        table: &str,
        prepared: Vec<Result<P, CapError>>,
        op: F,
    ) -> Result<Vec<Result<R, CapError>>, CapError>
    where
        P: Send + 'static,
        R: Send + 'static,
        F: Fn(&Connection, &str, P, &Stamp) -> Result<(R, Option<u64>), CapError> + Send + 'static,
    {
        let store = self.stores.of(table)?;
        let log = self.logs_changes_of(table);
        let table = table.to_string();
        let traceparent = usher_telemetry::propagation::current_traceparent();
        let (results, seq) = store
            .db
            .call(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sql)?;
                let now = &Stamp::now_under(traceparent, log);
                let mut last = None;
                let mut results = Vec::with_capacity(prepared.len());
                for p in prepared {
                    match p.and_then(|p| op(&tx, &table, p, now)) {
                        Ok((r, seq)) => {
                            last = seq.or(last);
                            results.push(Ok(r));
                        }
                        // A storage error (not a false condition or a
                        // malformed write) fails the whole call; nothing commits.
                        Err(e @ (CapError::Fault(_) | CapError::Unavailable(_))) => return Err(e),
                        Err(e) => results.push(Err(e)),
                    }
                }
                tx.commit().map_err(sql)?;
                Ok((results, last))
            })
            .await?;
        announce(&store.latest, seq);
        Ok(results)
    }
}

/// [`EmbeddedTables::query_texts`] on the connection.
fn page_texts(
    conn: &Connection,
    table: &str,
    pk: Sql,
    prefix: Option<String>,
    after: Option<Sql>,
    limit: usize,
) -> Result<(Vec<String>, bool), CapError> {
    let mut sql_text = String::from("SELECT sk, item FROM items WHERE tbl = ?1 AND pk = ?2");
    let mut args: Vec<Sql> = vec![Sql::Text(table.to_string()), pk];
    // One lower bound only: given both `sk >= prefix` and
    // `sk > after`, SQLite may seek to the prefix and filter
    // every row from there to the cursor, which makes paging
    // through a partition quadratic (a market of 1,000,000
    // entries read 5,000 at a time). A cursor at or past the
    // prefix is the bound; the prefix still ends the match below.
    // (A number sorts before any text in SQLite: under a text
    // prefix it is no bound.)
    let after = match (&prefix, after) {
        (Some(p), Some(Sql::Text(a))) if a.as_str() >= p.as_str() => Some(Sql::Text(a)),
        (Some(_), _) => None,
        (None, a) => a,
    };
    match (&prefix, after) {
        (_, Some(a)) => {
            args.push(a);
            sql_text.push_str(&format!(" AND sk > ?{}", args.len()));
        }
        (Some(p), None) => {
            args.push(Sql::Text(p.clone()));
            sql_text.push_str(&format!(" AND sk >= ?{}", args.len()));
        }
        (None, None) => {}
    }
    // One more than a page tells whether another page follows.
    args.push(Sql::Integer(i64::try_from(limit + 1).unwrap_or(i64::MAX)));
    sql_text.push_str(&format!(" ORDER BY sk LIMIT ?{}", args.len()));
    let mut st = conn.prepare_cached(&sql_text).map_err(sql)?;
    let mut rows = st
        .query(rusqlite::params_from_iter(args.iter()))
        .map_err(sql)?;
    let mut items = Vec::new();
    let mut more = false;
    while let Some(row) = rows.next().map_err(sql)? {
        if let Some(p) = &prefix {
            // Sort keys starting with the prefix are contiguous
            // from it: the first one that does not ends the match.
            let sk: Sql = row.get(0).map_err(sql)?;
            match sk {
                Sql::Text(s) if s.starts_with(p.as_str()) => {}
                _ => break,
            }
        }
        if items.len() == limit {
            more = true;
            break;
        }
        items.push(row.get(1).map_err(sql)?);
    }
    Ok((items, more))
}

/// Checks the condition and writes the item; the change's sequence number.
fn put_in(
    conn: &Connection,
    table: &str,
    key: &Key,
    item: &Value,
    condition: Option<&Condition>,
    now: &Stamp,
) -> Result<Option<u64>, CapError> {
    let old = load_stored(conn, table, key)?;
    check_condition(table, key, condition, old.as_ref().map(|o| &o.value))?;
    write_item(
        conn,
        table,
        key,
        Some(to_text(item)?),
        old.map(|o| o.row),
        now,
    )
}

/// The item after an update: parsed, and its text as stored.
struct Updated {
    value: Value,
    text: String,
}

/// Checks the condition and applies the update; the item after it and the
/// change's sequence number.
fn update_in(
    conn: &Connection,
    table: &str,
    key: &Key,
    set: Map<String, Value>,
    remove: &[String],
    condition: Option<&Condition>,
    now: &Stamp,
) -> Result<(Updated, Option<u64>), CapError> {
    update_adding_in(conn, table, key, set, &Map::new(), remove, condition, now)
}

/// [`update_in`], also adding `add`'s numbers to the item's (a
/// transaction's update).
#[allow(clippy::too_many_arguments)]
fn update_adding_in(
    conn: &Connection,
    table: &str,
    key: &Key,
    set: Map<String, Value>,
    add: &Map<String, Value>,
    remove: &[String],
    condition: Option<&Condition>,
    now: &Stamp,
) -> Result<(Updated, Option<u64>), CapError> {
    let old = load_stored(conn, table, key)?;
    check_condition(table, key, condition, old.as_ref().map(|o| &o.value))?;
    let (old_value, old_row) = match old {
        Some(Stored { value, row }) => (Some(value), Some(row)),
        None => (None, None),
    };
    let mut item = match old_value {
        Some(Value::Object(obj)) => obj,
        Some(other) => {
            return Err(CapError::Fault(format!(
                "embedded storage holds {} as an item of table `{table}`",
                json_kind(&other)
            )))
        }
        None => match &key.json {
            Value::Object(obj) => obj.clone(),
            _ => Map::new(),
        },
    };
    for (name, value) in set {
        item.insert(name, value);
    }
    for (name, delta) in add {
        let Value::Number(delta) = delta else {
            return Err(CapError::Invalid(format!(
                "table `{table}`: add `{name}` must be a number, got {}",
                json_kind(delta)
            )));
        };
        let sum = add_number(table, name, item.get(name), delta)?;
        item.insert(name.clone(), sum);
    }
    for name in remove {
        item.remove(name);
    }
    let value = Value::Object(item);
    let text = to_text(&value)?;
    let seq = write_item(conn, table, key, Some(text.clone()), old_row, now)?;
    Ok((Updated { value, text }, seq))
}

#[async_trait]
impl TableBackend for EmbeddedTables {
    async fn get(&self, table: &str, key: &Value) -> Result<Option<Value>, CapError> {
        self.get_text(table, key)
            .await?
            .map(|t| t.value().map_err(|e| corrupt("item", e)))
            .transpose()
    }

    async fn get_text(&self, table: &str, key: &Value) -> Result<Option<JsonText>, CapError> {
        let text = self.load_texts(table, std::slice::from_ref(key)).await?;
        Ok(text.into_iter().next().flatten().map(JsonText::trusted))
    }

    async fn batch_get(&self, table: &str, keys: &[Value]) -> Result<Vec<Option<Value>>, CapError> {
        self.load_texts(table, keys)
            .await?
            .into_iter()
            .map(|t| t.as_deref().map(parse_item).transpose())
            .collect()
    }

    async fn batch_get_text(
        &self,
        table: &str,
        keys: &[Value],
    ) -> Result<Vec<Option<JsonText>>, CapError> {
        Ok(self
            .load_texts(table, keys)
            .await?
            .into_iter()
            .map(|t| t.map(JsonText::trusted))
            .collect())
    }

    async fn put(
        &self,
        table: &str,
        item: Value,
        condition: Option<Condition>,
    ) -> Result<(), CapError> {
        let key = item_key(&self.schemas.schema(table)?, &item)?;
        self.write(table, move |conn, table, _def, now| {
            let seq = put_in(conn, table, &key, &item, condition.as_ref(), now)?;
            Ok((Value::Null, seq))
        })
        .await
        .map(|_| ())
    }

    async fn update(
        &self,
        table: &str,
        key: &Value,
        set: Map<String, Value>,
        remove: &[String],
        condition: Option<Condition>,
    ) -> Result<Value, CapError> {
        let key: Key = self
            .schemas
            .schema(table)?
            .update_key::<SqlKeys>(key, &set, remove)?
            .into();
        let remove = remove.to_vec();
        self.write(table, move |conn, table, _def, now| {
            update_in(conn, table, &key, set, &remove, condition.as_ref(), now)
                .map(|(u, seq)| (u.value, seq))
        })
        .await
    }

    async fn put_many(
        &self,
        table: &str,
        puts: Vec<PutItem>,
    ) -> Result<Vec<Result<(), CapError>>, CapError> {
        let schema = self.schemas.schema(table)?;
        // Malformed puts fail alone; the rest go in one transaction, each
        // under its own condition.
        let prepared: Vec<Result<(Key, PutItem), CapError>> = puts
            .into_iter()
            .map(|p| item_key(&schema, &p.item).map(|k| (k, p)))
            .collect();
        self.many(table, prepared, |conn, table, (key, put), now| {
            put_in(conn, table, &key, &put.item, put.condition.as_ref(), now).map(|seq| ((), seq))
        })
        .await
    }

    async fn update_many(
        &self,
        table: &str,
        updates: Vec<UpdateItem>,
    ) -> Result<Vec<Result<Value, CapError>>, CapError> {
        self.update_many_as(table, updates, |u| u.value).await
    }

    async fn update_many_text(
        &self,
        table: &str,
        updates: Vec<UpdateItem>,
    ) -> Result<Vec<Result<JsonText, CapError>>, CapError> {
        self.update_many_as(table, updates, |u| JsonText::trusted(u.text))
            .await
    }

    async fn delete(
        &self,
        table: &str,
        key: &Value,
        condition: Option<Condition>,
    ) -> Result<(), CapError> {
        let key = parse_key(&self.schemas.schema(table)?, key)?;
        self.write(table, move |conn, table, _def, now| {
            let old = load_stored(conn, table, &key)?;
            check_condition(
                table,
                &key,
                condition.as_ref(),
                old.as_ref().map(|o| &o.value),
            )?;
            let seq = write_item(conn, table, &key, None, old.map(|o| o.row), now)?;
            Ok((Value::Null, seq))
        })
        .await
        .map(|_| ())
    }

    async fn query(
        &self,
        table: &str,
        partition: &Value,
        sort_prefix: Option<&str>,
        limit: u32,
        start_after: Option<&Value>,
    ) -> Result<Page, CapError> {
        let (texts, more) = self
            .query_texts(table, partition, sort_prefix, limit, start_after)
            .await?;
        let items = texts
            .iter()
            .map(|t| parse_item(t))
            .collect::<Result<Vec<Value>, _>>()?;
        let next = self.next_key(table, items.last(), more)?;
        Ok(Page { items, next })
    }

    async fn query_text(
        &self,
        table: &str,
        partition: &Value,
        sort_prefix: Option<&str>,
        limit: u32,
        start_after: Option<&Value>,
    ) -> Result<TextPage, CapError> {
        let (texts, more) = self
            .query_texts(table, partition, sort_prefix, limit, start_after)
            .await?;
        // Only the last item is parsed: the key to continue after.
        let last = match (more, texts.last()) {
            (true, Some(t)) => Some(parse_item(t)?),
            _ => None,
        };
        let next = self.next_key(table, last.as_ref(), more)?;
        Ok(TextPage {
            items: texts.into_iter().map(JsonText::trusted).collect(),
            next,
        })
    }

    async fn batch_write(
        &self,
        table: &str,
        writes: Vec<WriteOp>,
    ) -> Result<Vec<Result<(), CapError>>, CapError> {
        let schema = self.schemas.schema(table)?;
        // Malformed writes fail alone; the rest go in one transaction.
        let prepared: Vec<Result<(Key, Option<Value>), CapError>> = writes
            .into_iter()
            .map(|w| match w {
                WriteOp::Put(item) => item_key(&schema, &item).map(|k| (k, Some(item))),
                WriteOp::Delete(key) => parse_key(&schema, &key).map(|k| (k, None)),
            })
            .collect();
        self.many(table, prepared, |conn, table, (key, new), now| {
            if !now.log {
                // Nothing to compare with or to log: the item as it is.
                let text = new.as_ref().map(to_text).transpose()?;
                store_item(conn, table, &key, text.as_deref())?;
                return Ok(((), None));
            }
            let old = load_row(conn, table, &key)?;
            let new_text = new.as_ref().map(to_text).transpose()?;
            let seq = write_item(conn, table, &key, new_text, old, now)?;
            Ok(((), seq))
        })
        .await
    }

    /// One SQLite transaction: every condition is checked first; when one
    /// is false nothing is written (the empty transaction commits).
    async fn transact_write(
        &self,
        table: &str,
        items: Vec<TransactItem>,
    ) -> Result<(), TransactError> {
        let keys = self
            .schemas
            .schema(table)?
            .transact_keys::<SqlKeys>(&items)?;
        let writes: Vec<(Key, TransactItem)> = keys.into_iter().map(Key::from).zip(items).collect();
        self.write(table, move |conn, table, _def, now| {
            transact_in(conn, table, writes, now)
        })
        .await?
        .map_err(TransactError::Cancelled)
    }
}

/// What a transaction did: written, or the indexes of its false conditions
/// (nothing written); and the last sequence number it logged.
type Transacted = (Result<(), Vec<u32>>, Option<u64>);

/// Writes a transaction's items in `conn`'s transaction once every
/// condition held; the indexes of the false ones otherwise (nothing written).
fn transact_in(
    conn: &Connection,
    table: &str,
    writes: Vec<(Key, TransactItem)>,
    now: &Stamp,
) -> Result<Transacted, CapError> {
    let mut failed = Vec::new();
    for (i, (key, item)) in writes.iter().enumerate() {
        if let Some(c) = item.condition() {
            let current = load(conn, table, key)?;
            if !c.holds(current.as_ref()) {
                failed.push(u32::try_from(i).unwrap_or(u32::MAX));
            }
        }
    }
    if !failed.is_empty() {
        return Ok((Err(failed), None));
    }
    let mut last = None;
    for (key, item) in writes {
        let seq = match item {
            TransactItem::Put(p) => put_in(conn, table, &key, &p.item, None, now)?,
            TransactItem::Update(u) => {
                update_adding_in(conn, table, &key, u.set, &u.add, &u.remove, None, now)?.1
            }
            TransactItem::Delete { .. } => {
                let old = load_row(conn, table, &key)?;
                write_item(conn, table, &key, None, old, now)?
            }
            TransactItem::Check { .. } => None,
        };
        last = seq.or(last);
    }
    Ok((Ok(()), last))
}

impl EmbeddedTables {
    /// [`TableBackend::update_many`], answering `answer` of each item after
    /// its update.
    async fn update_many_as<R: Send + 'static>(
        &self,
        table: &str,
        updates: Vec<UpdateItem>,
        answer: fn(Updated) -> R,
    ) -> Result<Vec<Result<R, CapError>>, CapError> {
        let schema = self.schemas.schema(table)?;
        let prepared: Vec<Result<(Key, UpdateItem), CapError>> = updates
            .into_iter()
            .map(|u| {
                schema
                    .update_key::<SqlKeys>(&u.key, &u.set, &u.remove)
                    .map(|k| (k.into(), u))
            })
            .collect();
        self.many(table, prepared, move |conn, table, (key, u), now| {
            update_in(
                conn,
                table,
                &key,
                u.set,
                &u.remove,
                u.condition.as_ref(),
                now,
            )
            .map(|(u, seq)| (answer(u), seq))
        })
        .await
    }

    /// The stored texts of `keys`' items, one answer per key in order, in
    /// one read transaction.
    async fn load_texts(
        &self,
        table: &str,
        keys: &[Value],
    ) -> Result<Vec<Option<String>>, CapError> {
        let schema = self.schemas.schema(table)?;
        let keys = keys
            .iter()
            .map(|k| parse_key(&schema, k))
            .collect::<Result<Vec<_>, _>>()?;
        let db = &self.stores.of(table)?.db;
        let table = table.to_string();
        db.call(move |conn| {
            let tx = conn.transaction().map_err(sql)?;
            let items = keys
                .iter()
                .map(|k| load_text(&tx, &table, k))
                .collect::<Result<Vec<_>, _>>()?;
            tx.commit().map_err(sql)?;
            Ok(items)
        })
        .await
    }

    /// Up to `limit` stored texts of a partition's items in sort-key order
    /// (by sort-key prefix, after a key), and whether more follow.
    async fn query_texts(
        &self,
        table: &str,
        partition: &Value,
        sort_prefix: Option<&str>,
        limit: u32,
        start_after: Option<&Value>,
    ) -> Result<(Vec<String>, bool), CapError> {
        let schema = self.schemas.schema(table)?;
        let pk = schema.query_partition::<SqlKeys>(partition)?;
        // Where the previous page ended; a table without a sort key has one
        // item per partition, stored under the empty sort key.
        let after = start_after
            .map(|a| schema.query_start_after::<SqlKeys>(a))
            .transpose()?
            .map(|sk| sk.unwrap_or_else(no_sort_key));
        let prefix = schema.query_prefix(sort_prefix)?.map(str::to_string);
        let limit = limit.max(1) as usize;
        let db = &self.stores.of(table)?.db;
        let table = table.to_string();
        db.call(move |conn| page_texts(conn, &table, pk, prefix, after, limit))
            .await
    }

    /// The key to continue after `last` (a page's last item) when more
    /// items follow.
    fn next_key(
        &self,
        table: &str,
        last: Option<&Value>,
        more: bool,
    ) -> Result<Option<Value>, CapError> {
        Ok(match (more, last) {
            (true, Some(item)) => {
                Some(KeySchema::new(table, self.schemas.get(table)?).key_of(item))
            }
            _ => None,
        })
    }

    /// Rows written to this store's database since it was opened.
    pub fn row_writes(&self) -> u64 {
        self.stores.all().map(|s| s.db.row_writes()).sum::<u64>() + self.checkpoints.row_writes()
    }
}

/// A table's database file in the data folder `dir`.
fn table_file(dir: &Path, table: &str) -> Result<PathBuf, EmbeddedError> {
    // The registry allows letters, digits, `-`, `_` and `.` (not first):
    // a file name. Checked again, as the name becomes a path.
    if table.is_empty()
        || table.starts_with('.')
        || !table
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(EmbeddedError::Config(format!(
            "table `{table}`: not a name a database file can have"
        )));
    }
    Ok(dir.join(TABLES_DIR).join(format!("{table}.db")))
}

/// Moves a data folder of the earlier layout (every table's items and
/// change log, and the checkpoints, in one `tables.db`) into the
/// databases of [`EmbeddedTables::open`], keeping every sequence number, and
/// renames the old file to `tables.db.migrated` (kept: it also holds the
/// rows of tables the registry no longer defines). Copies are `INSERT OR
/// IGNORE`, so a migration cut short is simply run again.
fn migrate_legacy(
    dir: &Path,
    stores: &BTreeMap<String, Db>,
    checkpoints: &Db,
) -> Result<(), EmbeddedError> {
    let legacy = dir.join(LEGACY_FILE);
    if !legacy.exists() {
        return Ok(());
    }
    let wrap = |source: rusqlite::Error| EmbeddedError::Sqlite {
        database: legacy.display().to_string(),
        source,
    };
    // Opening it with the old schema adds what an older file lacks (the
    // `traceparent` column) and folds its WAL in.
    {
        let old = Db::open(Some(&legacy), change_log::CHECKPOINTS_SCHEMA)?;
        old.blocking(|conn| {
            change_log::migrate(conn)?;
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        })
        .map_err(wrap)?;
    }
    // Closing the last connection folds the WAL in and removes it and the
    // shared-memory file: when they are still there, another process has
    // the old file open (a `usher up` of an earlier version), and copying
    // now could miss its later writes.
    for suffix in ["-wal", "-shm"] {
        let side = dir.join(format!("{LEGACY_FILE}{suffix}"));
        if side.exists() {
            return Err(EmbeddedError::Config(format!(
                "{} is open in another process (an earlier usher on this data folder?): stop it, then open the data folder again to move its tables to a database each",
                legacy.display()
            )));
        }
    }
    let path = legacy.display().to_string();
    for (table, db) in stores {
        db.blocking(|conn| -> rusqlite::Result<()> {
            conn.execute("ATTACH DATABASE ?1 AS legacy", params![path])?;
            let copied = (|| {
                let tx = conn.unchecked_transaction()?;
                tx.execute(
                    "INSERT OR IGNORE INTO items (tbl, pk, sk, item)
                     SELECT tbl, pk, sk, item FROM legacy.items WHERE tbl = ?1",
                    params![table],
                )?;
                tx.execute(
                    "INSERT OR IGNORE INTO changes
                       (seq, tbl, event_name, keys, new_image, old_image, ts_ms, traceparent)
                     SELECT seq, tbl, event_name, keys, new_image, old_image, ts_ms, traceparent
                     FROM legacy.changes WHERE tbl = ?1",
                    params![table],
                )?;
                tx.commit()
            })();
            conn.execute("DETACH DATABASE legacy", [])?;
            copied
        })
        .map_err(wrap)?;
    }
    checkpoints
        .blocking(|conn| -> rusqlite::Result<()> {
            conn.execute("ATTACH DATABASE ?1 AS legacy", params![path])?;
            let copied = conn.execute(
                "INSERT OR IGNORE INTO checkpoints (consumer, seq)
                 SELECT consumer, seq FROM legacy.checkpoints",
                [],
            );
            conn.execute("DETACH DATABASE legacy", [])?;
            copied.map(|_| ())
        })
        .map_err(wrap)?;
    let done = dir.join(LEGACY_MIGRATED);
    std::fs::rename(&legacy, &done).map_err(|source| EmbeddedError::Io {
        path: legacy.clone(),
        source,
    })?;
    tracing::info!(from = %legacy.display(), to = %done.display(), "tables migrated to a database per table");
    Ok(())
}
