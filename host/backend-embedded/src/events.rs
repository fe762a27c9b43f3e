//! A Kafka stand-in: an append-only log per topic in SQLite (one partition,
//! offsets from 0).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{params, TransactionBehavior};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use usher_capabilities::{CapError, Delivery, Event, EventBackend};

use crate::db::{corrupt, now_ms, sql, to_i64, to_u64, Db};
use crate::EmbeddedError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    topic   TEXT NOT NULL,
    pos     INTEGER NOT NULL,
    rkey    TEXT,
    value   BLOB NOT NULL,
    headers TEXT NOT NULL,
    ts_ms   INTEGER NOT NULL,
    PRIMARY KEY (topic, pos)
) WITHOUT ROWID;
";

/// The largest record value, in bytes (the contract's
/// [`usher_capabilities::MAX_EVENT_VALUE_BYTES`]).
pub const MAX_VALUE_BYTES: usize = usher_capabilities::MAX_EVENT_VALUE_BYTES;

/// One stored record, as a consumer reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// The topic.
    pub topic: String,
    /// The partition (always 0).
    pub partition: i32,
    /// The offset in the partition, from 0.
    pub offset: u64,
    /// Partitioning key.
    pub key: Option<String>,
    /// Payload.
    pub value: Vec<u8>,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// When it was produced, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

/// The embedded [`EventBackend`] and its reader.
pub struct EmbeddedEvents {
    db: Db,
    topics: Arc<BTreeSet<String>>,
    produced: Arc<watch::Sender<u64>>,
}

impl EmbeddedEvents {
    /// Opens the event log in `file`, or in memory when `None`.
    pub(crate) fn open(
        file: Option<&Path>,
        topics: &[String],
    ) -> Result<EmbeddedEvents, EmbeddedError> {
        Ok(EmbeddedEvents {
            db: Db::open(file, SCHEMA)?,
            topics: Arc::new(topics.iter().cloned().collect()),
            produced: Arc::new(watch::channel(0).0),
        })
    }

    fn check_topic(&self, topic: &str) -> Result<(), CapError> {
        if self.topics.contains(topic) {
            Ok(())
        } else {
            Err(CapError::NotFound(format!(
                "event topic `{topic}` is not defined"
            )))
        }
    }

    /// Up to `limit` records of `topic` from offset `from_offset` on.
    pub async fn read(
        &self,
        topic: &str,
        from_offset: u64,
        limit: u32,
    ) -> Result<Vec<EventRecord>, CapError> {
        self.check_topic(topic)?;
        let topic = topic.to_string();
        self.db
            .call(move |conn| {
                let mut st = conn
                    .prepare_cached(
                        "SELECT pos, rkey, value, headers, ts_ms FROM records
                         WHERE topic = ?1 AND pos >= ?2 ORDER BY pos LIMIT ?3",
                    )
                    .map_err(sql)?;
                let mut rows = st
                    .query(params![topic, to_i64(from_offset), i64::from(limit)])
                    .map_err(sql)?;
                let mut out = Vec::new();
                while let Some(row) = rows.next().map_err(sql)? {
                    let headers: String = row.get(3).map_err(sql)?;
                    out.push(EventRecord {
                        topic: topic.clone(),
                        partition: 0,
                        offset: to_u64(row.get(0).map_err(sql)?),
                        key: row.get(1).map_err(sql)?,
                        value: row.get(2).map_err(sql)?,
                        headers: serde_json::from_str(&headers)
                            .map_err(|e| corrupt("event headers", e))?,
                        timestamp_ms: to_u64(row.get(4).map_err(sql)?),
                    });
                }
                Ok(out)
            })
            .await
    }

    /// The offset the next record of `topic` will get (its record count, as
    /// nothing is ever removed).
    pub async fn end_offset(&self, topic: &str) -> Result<u64, CapError> {
        self.check_topic(topic)?;
        let topic = topic.to_string();
        self.db.call(move |conn| next_offset(conn, &topic)).await
    }

    /// A counter that changes whenever records are produced, for consumers
    /// that wait instead of polling.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.produced.subscribe()
    }
}

fn next_offset(conn: &rusqlite::Connection, topic: &str) -> Result<u64, CapError> {
    let next: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(pos) + 1, 0) FROM records WHERE topic = ?1")
        .map_err(sql)?
        .query_row(params![topic], |r| r.get(0))
        .map_err(sql)?;
    Ok(to_u64(next))
}

#[async_trait]
impl EventBackend for EmbeddedEvents {
    async fn produce(
        &self,
        topic: &str,
        events: Vec<Event>,
    ) -> Result<Vec<Result<Delivery, CapError>>, CapError> {
        self.check_topic(topic)?;
        let checked: Vec<Result<(Event, String), CapError>> = events
            .into_iter()
            .map(|e| {
                if e.value.len() > MAX_VALUE_BYTES {
                    return Err(CapError::Invalid(format!(
                        "event value is {} bytes; the limit is {MAX_VALUE_BYTES}",
                        e.value.len()
                    )));
                }
                let headers = serde_json::to_string(&e.headers)
                    .map_err(|err| CapError::Invalid(format!("headers: {err}")))?;
                Ok((e, headers))
            })
            .collect();
        let topic = topic.to_string();
        let results = self
            .db
            .call(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sql)?;
                let mut offset = next_offset(&tx, &topic)?;
                let now = to_i64(now_ms());
                let mut results = Vec::with_capacity(checked.len());
                {
                    let mut st = tx
                        .prepare_cached(
                            "INSERT INTO records (topic, pos, rkey, value, headers, ts_ms)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        )
                        .map_err(sql)?;
                    for item in checked {
                        match item {
                            Ok((event, headers)) => {
                                st.execute(params![
                                    topic,
                                    to_i64(offset),
                                    event.key,
                                    event.value,
                                    headers,
                                    now
                                ])
                                .map_err(sql)?;
                                results.push(Ok(Delivery {
                                    partition: 0,
                                    offset: to_i64(offset),
                                }));
                                offset += 1;
                            }
                            Err(e) => results.push(Err(e)),
                        }
                    }
                }
                tx.commit().map_err(sql)?;
                Ok(results)
            })
            .await?;
        if results.iter().any(Result::is_ok) {
            self.produced.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(results)
    }
}

impl EmbeddedEvents {
    /// Rows written to this store's database since it was opened.
    pub fn row_writes(&self) -> u64 {
        self.db.row_writes()
    }
}
