//! DynamoDB-shaped tables in SQLite, with a change log (the stream) written
//! in the same transaction as every write.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::types::Value as Sql;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::watch;
use usher_capabilities::{CapError, Condition, Page, PutItem, TableBackend, UpdateItem, WriteOp};
use usher_registry::TableDef;

use crate::db::{corrupt, now_ms, sql, to_i64, to_u64, Db};
use crate::EmbeddedError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS items (
    tbl  TEXT NOT NULL,
    pk   ANY NOT NULL,
    sk   ANY NOT NULL,
    item TEXT NOT NULL,
    PRIMARY KEY (tbl, pk, sk)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    tbl        TEXT NOT NULL,
    event_name TEXT NOT NULL,
    keys       TEXT NOT NULL,
    new_image  TEXT,
    old_image  TEXT,
    ts_ms      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_by_table ON changes (tbl, seq);
CREATE TABLE IF NOT EXISTS checkpoints (
    consumer TEXT PRIMARY KEY,
    seq      INTEGER NOT NULL
) WITHOUT ROWID;
";

pub use usher_capabilities::ChangeKind;

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
    /// The sequence number: increasing with every write (across tables, so a
    /// table's own numbers may have gaps).
    pub seq: u64,
    /// What the write did.
    pub event_name: ChangeKind,
    /// The item's key attributes.
    pub keys: Value,
    /// The item after the write (absent for a removal).
    pub new_image: Option<Value>,
    /// The item before the write (absent for an insert).
    pub old_image: Option<Value>,
    /// When the write happened, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

impl ChangeRow {
    /// The sequence number as the worker sees it: a decimal string.
    pub fn sequence_number(&self) -> String {
        self.seq.to_string()
    }
}

/// A table's key, as stored (`sk` is the empty text for tables without a
/// sort key) and as JSON.
struct Key {
    pk: Sql,
    sk: Sql,
    json: Value,
}

#[derive(Clone)]
struct Schemas(Arc<BTreeMap<String, TableDef>>);

impl Schemas {
    fn get(&self, table: &str) -> Result<&TableDef, CapError> {
        self.0
            .get(table)
            .ok_or_else(|| CapError::NotFound(format!("table `{table}` is not defined")))
    }
}

use usher_capabilities::json_kind as kind_of;

/// A key attribute's value as SQLite stores it: text or a number.
fn key_part(table: &str, attr: &str, v: &Value) -> Result<Sql, CapError> {
    match v {
        Value::String(s) if s.is_empty() => Err(CapError::Invalid(format!(
            "table `{table}`: key attribute `{attr}` is an empty string"
        ))),
        Value::String(s) => Ok(Sql::Text(s.clone())),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Sql::Integer(i)),
            (None, Some(f)) => Ok(Sql::Real(f)),
            (None, None) => Err(CapError::Invalid(format!(
                "table `{table}`: key attribute `{attr}` is a number out of range"
            ))),
        },
        other => Err(CapError::Invalid(format!(
            "table `{table}`: key attribute `{attr}` must be a string or a number, got {}",
            kind_of(other)
        ))),
    }
}

fn no_sort_key() -> Sql {
    Sql::Text(String::new())
}

/// Builds the key from an object holding (at least) the key attributes.
fn extract_key(
    table: &str,
    def: &TableDef,
    obj: &Map<String, Value>,
    what: &str,
) -> Result<Key, CapError> {
    let pk_value = obj.get(&def.partition_key).ok_or_else(|| {
        CapError::Invalid(format!(
            "{what} for table `{table}` is missing the partition key attribute `{}`",
            def.partition_key
        ))
    })?;
    let pk = key_part(table, &def.partition_key, pk_value)?;
    let mut json = Map::new();
    json.insert(def.partition_key.clone(), pk_value.clone());
    let sk = match &def.sort_key {
        Some(name) => {
            let sk_value = obj.get(name).ok_or_else(|| {
                CapError::Invalid(format!(
                    "{what} for table `{table}` is missing the sort key attribute `{name}`"
                ))
            })?;
            json.insert(name.clone(), sk_value.clone());
            key_part(table, name, sk_value)?
        }
        None => no_sort_key(),
    };
    Ok(Key {
        pk,
        sk,
        json: Value::Object(json),
    })
}

fn key_names(def: &TableDef) -> String {
    match &def.sort_key {
        Some(sk) => format!("`{}`, `{sk}`", def.partition_key),
        None => format!("`{}`", def.partition_key),
    }
}

/// A key given by the caller: exactly the key attributes.
fn parse_key(table: &str, def: &TableDef, key: &Value) -> Result<Key, CapError> {
    let Value::Object(obj) = key else {
        return Err(CapError::Invalid(format!(
            "a key for table `{table}` must be a JSON object holding {}, got {}",
            key_names(def),
            kind_of(key)
        )));
    };
    if let Some(extra) = obj
        .keys()
        .find(|k| **k != def.partition_key && Some(*k) != def.sort_key.as_ref())
    {
        return Err(CapError::Invalid(format!(
            "key for table `{table}` has attribute `{extra}`, which is not a key attribute (the key is {})",
            key_names(def)
        )));
    }
    extract_key(table, def, obj, "key")
}

/// The key of a whole item.
fn item_key(table: &str, def: &TableDef, item: &Value) -> Result<Key, CapError> {
    let Value::Object(obj) = item else {
        return Err(CapError::Invalid(format!(
            "an item for table `{table}` must be a JSON object, got {}",
            kind_of(item)
        )));
    };
    extract_key(table, def, obj, "item")
}

fn is_key_attr(def: &TableDef, name: &str) -> bool {
    name == def.partition_key || Some(name) == def.sort_key.as_deref()
}

fn load(conn: &Connection, table: &str, key: &Key) -> Result<Option<Value>, CapError> {
    let mut st = conn
        .prepare_cached("SELECT item FROM items WHERE tbl = ?1 AND pk = ?2 AND sk = ?3")
        .map_err(sql)?;
    let text: Option<String> = st
        .query_row(params![table, key.pk, key.sk], |r| r.get(0))
        .optional()
        .map_err(sql)?;
    text.map(|t| serde_json::from_str(&t).map_err(|e| corrupt("item", e)))
        .transpose()
}

fn to_text(v: &Value) -> Result<String, CapError> {
    serde_json::to_string(v).map_err(|e| CapError::Invalid(format!("item does not serialize: {e}")))
}

/// Stores `new` (or deletes the item when `None`) and appends the change to
/// the log. Returns the change's sequence number, or `None` when the write
/// changes nothing (and so neither writes nor logs).
fn write_item(
    conn: &Connection,
    table: &str,
    key: &Key,
    new: Option<&Value>,
    old: Option<&Value>,
    now: u64,
) -> Result<Option<u64>, CapError> {
    let kind = match (old, new) {
        (None, None) => return Ok(None),
        (Some(o), Some(n)) if o == n => return Ok(None),
        (None, Some(_)) => ChangeKind::Insert,
        (Some(_), Some(_)) => ChangeKind::Modify,
        (Some(_), None) => ChangeKind::Remove,
    };
    let new_text = new.map(to_text).transpose()?;
    let old_text = old.map(to_text).transpose()?;
    match &new_text {
        Some(text) => {
            let mut st = conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO items (tbl, pk, sk, item) VALUES (?1, ?2, ?3, ?4)",
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
    let keys = to_text(&key.json)?;
    let mut st = conn
        .prepare_cached(
            "INSERT INTO changes (tbl, event_name, keys, new_image, old_image, ts_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(sql)?;
    st.execute(params![
        table,
        kind.as_str(),
        keys,
        new_text,
        old_text,
        to_i64(now)
    ])
    .map_err(sql)?;
    Ok(Some(to_u64(conn.last_insert_rowid())))
}

fn check_condition(
    table: &str,
    key: &Key,
    condition: Option<&Condition>,
    current: Option<&Value>,
) -> Result<(), CapError> {
    match condition {
        Some(c) if !c.holds(current) => Err(CapError::ConditionFailed(format!(
            "table `{table}`, key {}: {}",
            key.json,
            describe(c)
        ))),
        _ => Ok(()),
    }
}

fn describe(c: &Condition) -> String {
    match c {
        Condition::NotExists => "the item exists".to_string(),
        Condition::Exists => "the item does not exist".to_string(),
        Condition::AttributeEquals(name, value) => {
            format!("attribute `{name}` does not equal {value}")
        }
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
/// Every write appends a [`ChangeRow`] to the change log in the same
/// transaction; [`ChangeLog`] reads it back.
pub struct EmbeddedTables {
    db: Db,
    schemas: Schemas,
    latest: Arc<watch::Sender<u64>>,
}

impl EmbeddedTables {
    /// Opens the table store in `file`, or in memory when `None`.
    pub(crate) fn open(
        file: Option<&Path>,
        tables: &BTreeMap<String, TableDef>,
    ) -> Result<EmbeddedTables, EmbeddedError> {
        let db = Db::open(file, SCHEMA)?;
        let latest: Option<i64> = db
            .blocking(|conn| conn.query_row("SELECT MAX(seq) FROM changes", [], |r| r.get(0)))
            .map_err(|source| EmbeddedError::Sqlite {
                database: "tables".into(),
                source,
            })?;
        let latest = latest.map(to_u64).unwrap_or(0);
        Ok(EmbeddedTables {
            db,
            schemas: Schemas(Arc::new(tables.clone())),
            latest: Arc::new(watch::channel(latest).0),
        })
    }

    /// The reader of this store's change log and checkpoints.
    pub fn change_log(&self) -> ChangeLog {
        ChangeLog {
            db: self.db.clone(),
            schemas: self.schemas.clone(),
            latest: Arc::clone(&self.latest),
        }
    }

    async fn write<F>(&self, table: &str, f: F) -> Result<Value, CapError>
    where
        F: FnOnce(&Connection, &str, &TableDef, u64) -> Result<(Value, Option<u64>), CapError>
            + Send
            + 'static,
    {
        let def = self.schemas.get(table)?.clone();
        let table = table.to_string();
        let (value, seq) = self
            .db
            .call(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sql)?;
                let out = f(&tx, &table, &def, now_ms())?;
                tx.commit().map_err(sql)?;
                Ok(out)
            })
            .await?;
        announce(&self.latest, seq);
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
        F: Fn(&Connection, &str, P, u64) -> Result<(R, Option<u64>), CapError> + Send + 'static,
    {
        let table = table.to_string();
        let (results, seq) = self
            .db
            .call(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sql)?;
                let now = now_ms();
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
        announce(&self.latest, seq);
        Ok(results)
    }
}

/// Checks the condition and writes the item; the change's sequence number.
fn put_in(
    conn: &Connection,
    table: &str,
    key: &Key,
    item: &Value,
    condition: Option<&Condition>,
    now: u64,
) -> Result<Option<u64>, CapError> {
    let old = load(conn, table, key)?;
    check_condition(table, key, condition, old.as_ref())?;
    write_item(conn, table, key, Some(item), old.as_ref(), now)
}

/// The key of an update, refusing one that would change a key attribute.
fn update_key(
    table: &str,
    def: &TableDef,
    key: &Value,
    set: &Map<String, Value>,
    remove: &[String],
) -> Result<Key, CapError> {
    let key = parse_key(table, def, key)?;
    if let Some(name) = set
        .keys()
        .map(String::as_str)
        .chain(remove.iter().map(String::as_str))
        .find(|n| is_key_attr(def, n))
    {
        return Err(CapError::Invalid(format!(
            "table `{table}`: an update cannot change the key attribute `{name}`"
        )));
    }
    if let Some(name) = remove.iter().find(|n| set.contains_key(n.as_str())) {
        return Err(CapError::Invalid(format!(
            "table `{table}`: an update cannot both set and remove the attribute `{name}`"
        )));
    }
    Ok(key)
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
    now: u64,
) -> Result<(Value, Option<u64>), CapError> {
    let old = load(conn, table, key)?;
    check_condition(table, key, condition, old.as_ref())?;
    let mut item = match &old {
        Some(Value::Object(obj)) => obj.clone(),
        Some(other) => {
            return Err(CapError::Fault(format!(
                "embedded storage holds {} as an item of table `{table}`",
                kind_of(other)
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
    for name in remove {
        item.remove(name);
    }
    let item = Value::Object(item);
    let seq = write_item(conn, table, key, Some(&item), old.as_ref(), now)?;
    Ok((item, seq))
}

#[async_trait]
impl TableBackend for EmbeddedTables {
    async fn get(&self, table: &str, key: &Value) -> Result<Option<Value>, CapError> {
        let def = self.schemas.get(table)?;
        let key = parse_key(table, def, key)?;
        let table = table.to_string();
        self.db.call(move |conn| load(conn, &table, &key)).await
    }

    async fn batch_get(&self, table: &str, keys: &[Value]) -> Result<Vec<Option<Value>>, CapError> {
        let def = self.schemas.get(table)?;
        let keys = keys
            .iter()
            .map(|k| parse_key(table, def, k))
            .collect::<Result<Vec<_>, _>>()?;
        let table = table.to_string();
        self.db
            .call(move |conn| {
                let tx = conn.transaction().map_err(sql)?;
                let items = keys
                    .iter()
                    .map(|k| load(&tx, &table, k))
                    .collect::<Result<Vec<_>, _>>()?;
                tx.commit().map_err(sql)?;
                Ok(items)
            })
            .await
    }

    async fn put(
        &self,
        table: &str,
        item: Value,
        condition: Option<Condition>,
    ) -> Result<(), CapError> {
        let def = self.schemas.get(table)?;
        let key = item_key(table, def, &item)?;
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
        let def = self.schemas.get(table)?;
        let key = update_key(table, def, key, &set, remove)?;
        let remove = remove.to_vec();
        self.write(table, move |conn, table, _def, now| {
            update_in(conn, table, &key, set, &remove, condition.as_ref(), now)
        })
        .await
    }

    async fn put_many(
        &self,
        table: &str,
        puts: Vec<PutItem>,
    ) -> Result<Vec<Result<(), CapError>>, CapError> {
        let def = self.schemas.get(table)?;
        // Malformed puts fail alone; the rest go in one transaction, each
        // under its own condition.
        let prepared: Vec<Result<(Key, PutItem), CapError>> = puts
            .into_iter()
            .map(|p| item_key(table, def, &p.item).map(|k| (k, p)))
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
        let def = self.schemas.get(table)?;
        let prepared: Vec<Result<(Key, UpdateItem), CapError>> = updates
            .into_iter()
            .map(|u| update_key(table, def, &u.key, &u.set, &u.remove).map(|k| (k, u)))
            .collect();
        self.many(table, prepared, |conn, table, (key, u), now| {
            update_in(
                conn,
                table,
                &key,
                u.set,
                &u.remove,
                u.condition.as_ref(),
                now,
            )
        })
        .await
    }

    async fn delete(
        &self,
        table: &str,
        key: &Value,
        condition: Option<Condition>,
    ) -> Result<(), CapError> {
        let def = self.schemas.get(table)?;
        let key = parse_key(table, def, key)?;
        self.write(table, move |conn, table, _def, now| {
            let old = load(conn, table, &key)?;
            check_condition(table, &key, condition.as_ref(), old.as_ref())?;
            let seq = write_item(conn, table, &key, None, old.as_ref(), now)?;
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
        let def = self.schemas.get(table)?.clone();
        // The partition: its key value, or an object holding just the
        // partition key attribute.
        let pk_value = match partition {
            Value::Object(obj) => {
                if let Some(extra) = obj.keys().find(|k| **k != def.partition_key) {
                    return Err(CapError::Invalid(format!(
                        "partition for table `{table}` has attribute `{extra}`; give the partition key `{}` only",
                        def.partition_key
                    )));
                }
                obj.get(&def.partition_key).ok_or_else(|| {
                    CapError::Invalid(format!(
                        "partition for table `{table}` is missing the partition key attribute `{}`",
                        def.partition_key
                    ))
                })?
            }
            other => other,
        };
        let pk = key_part(table, &def.partition_key, pk_value)?;
        // Where the previous page ended: a key object (the `next` of a page)
        // or a bare sort key value.
        let after = match start_after {
            None => None,
            Some(Value::Object(obj)) => match &def.sort_key {
                Some(name) => {
                    let v = obj.get(name).ok_or_else(|| {
                        CapError::Invalid(format!(
                            "start-after for table `{table}` is missing the sort key attribute `{name}`"
                        ))
                    })?;
                    Some(key_part(table, name, v)?)
                }
                None => Some(no_sort_key()),
            },
            Some(v) => match &def.sort_key {
                Some(name) => Some(key_part(table, name, v)?),
                None => Some(no_sort_key()),
            },
        };
        let prefix = sort_prefix.filter(|p| !p.is_empty()).map(str::to_string);
        if prefix.is_some() && def.sort_key.is_none() {
            return Err(CapError::Invalid(format!(
                "table `{table}` has no sort key to match a prefix against"
            )));
        }
        let limit = limit.max(1) as usize;
        let table = table.to_string();
        self.db
            .call(move |conn| {
                let mut sql_text =
                    String::from("SELECT sk, item FROM items WHERE tbl = ?1 AND pk = ?2");
                let mut args: Vec<Sql> = vec![Sql::Text(table.clone()), pk];
                if let Some(p) = &prefix {
                    args.push(Sql::Text(p.clone()));
                    sql_text.push_str(&format!(" AND sk >= ?{}", args.len()));
                }
                if let Some(a) = after {
                    args.push(a);
                    sql_text.push_str(&format!(" AND sk > ?{}", args.len()));
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
                    let text: String = row.get(1).map_err(sql)?;
                    items.push(serde_json::from_str(&text).map_err(|e| corrupt("item", e))?);
                }
                let next = if more {
                    items.last().map(|item: &Value| {
                        let mut key = Map::new();
                        for name in std::iter::once(&def.partition_key).chain(def.sort_key.iter()) {
                            if let Some(v) = item.get(name) {
                                key.insert(name.clone(), v.clone());
                            }
                        }
                        Value::Object(key)
                    })
                } else {
                    None
                };
                Ok(Page { items, next })
            })
            .await
    }

    async fn batch_write(
        &self,
        table: &str,
        writes: Vec<WriteOp>,
    ) -> Result<Vec<Result<(), CapError>>, CapError> {
        let def = self.schemas.get(table)?;
        // Malformed writes fail alone; the rest go in one transaction.
        let prepared: Vec<Result<(Key, Option<Value>), CapError>> = writes
            .into_iter()
            .map(|w| match w {
                WriteOp::Put(item) => item_key(table, def, &item).map(|k| (k, Some(item))),
                WriteOp::Delete(key) => parse_key(table, def, &key).map(|k| (k, None)),
            })
            .collect();
        self.many(table, prepared, |conn, table, (key, new), now| {
            let old = load(conn, table, &key)?;
            let seq = write_item(conn, table, &key, new.as_ref(), old.as_ref(), now)?;
            Ok(((), seq))
        })
        .await
    }
}

/// Reads the tables' change log (for stream followers) and keeps their
/// checkpoints. Cheap to clone.
#[derive(Clone)]
pub struct ChangeLog {
    db: Db,
    schemas: Schemas,
    latest: Arc<watch::Sender<u64>>,
}

impl ChangeLog {
    /// Up to `limit` changes of `table` with a sequence number above
    /// `after_seq`, oldest first (`after_seq` 0 reads from the start).
    pub async fn read(
        &self,
        table: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<ChangeRow>, CapError> {
        self.schemas.get(table)?;
        let table = table.to_string();
        self.db
            .call(move |conn| {
                let mut st = conn
                    .prepare_cached(
                        "SELECT seq, event_name, keys, new_image, old_image, ts_ms FROM changes
                         WHERE tbl = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                    )
                    .map_err(sql)?;
                let mut rows = st
                    .query(params![table, to_i64(after_seq), i64::from(limit)])
                    .map_err(sql)?;
                let mut out = Vec::new();
                while let Some(row) = rows.next().map_err(sql)? {
                    let seq: i64 = row.get(0).map_err(sql)?;
                    let kind: String = row.get(1).map_err(sql)?;
                    let keys: String = row.get(2).map_err(sql)?;
                    let new_image: Option<String> = row.get(3).map_err(sql)?;
                    let old_image: Option<String> = row.get(4).map_err(sql)?;
                    let ts: i64 = row.get(5).map_err(sql)?;
                    let parse = |t: &str| {
                        serde_json::from_str::<Value>(t).map_err(|e| corrupt("change record", e))
                    };
                    out.push(ChangeRow {
                        table: table.clone(),
                        seq: to_u64(seq),
                        event_name: parse_kind(&kind)?,
                        keys: parse(&keys)?,
                        new_image: new_image.as_deref().map(parse).transpose()?,
                        old_image: old_image.as_deref().map(parse).transpose()?,
                        timestamp_ms: to_u64(ts),
                    });
                }
                Ok(out)
            })
            .await
    }

    /// The sequence number of `table`'s newest change; 0 when it has none.
    pub async fn latest_seq(&self, table: &str) -> Result<u64, CapError> {
        self.schemas.get(table)?;
        let table = table.to_string();
        self.db
            .call(move |conn| {
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
        self.schemas.get(table)?;
        let table = table.to_string();
        self.db
            .call(move |conn| {
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
        self.schemas.get(table)?;
        let table = table.to_string();
        self.db
            .call(move |conn| {
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
        self.schemas.get(table)?;
        let table = table.to_string();
        self.db
            .call(move |conn| {
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
        self.db
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
        self.db
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

    /// Watches the newest sequence number of any table: a follower waits on
    /// `changed()` instead of polling.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }
}
