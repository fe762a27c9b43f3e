//! Durable SQS-shaped queues in SQLite: visibility timeout, receive count,
//! redrive to a dead-letter queue, retention.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, TransactionBehavior};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use usher_capabilities::{CapError, OutgoingMessage, QueueBackend};
use usher_registry::QueueDef;

use crate::db::{corrupt, now_ms, sql, to_i64, to_u64, Db};
use crate::EmbeddedError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    queue              TEXT NOT NULL,
    message_id         TEXT NOT NULL,
    body               TEXT NOT NULL,
    attributes         TEXT NOT NULL,
    sent_at_ms         INTEGER NOT NULL,
    visible_at_ms      INTEGER NOT NULL,
    receive_count      INTEGER NOT NULL DEFAULT 0,
    receipt            TEXT,
    dead_letter_source TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_visibility ON messages (queue, visible_at_ms, id);
";

/// The largest message body, in bytes (as SQS).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// The longest send delay, in seconds (as SQS).
pub const MAX_DELAY_SECONDS: u32 = 900;
/// The most messages one receive returns.
pub const MAX_RECEIVE: u32 = 10_000;

/// A message handed to a consumer by [`EmbeddedQueues::receive`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    /// The message id given at send time.
    pub message_id: String,
    /// The token to delete the message or change its visibility with; a
    /// fresh one each receive.
    pub receipt: String,
    /// The body.
    pub body: String,
    /// Message attributes.
    pub attributes: Vec<(String, String)>,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
    /// When the message was first sent, in milliseconds since the Unix epoch.
    pub sent_at_ms: u64,
    /// The queue the message was redriven from, when it sits in a
    /// dead-letter queue.
    pub dead_letter_source: Option<String>,
}

/// A message as it waits in a queue, seen by [`EmbeddedQueues::list`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedMessage {
    /// The message id.
    pub message_id: String,
    /// The body.
    pub body: String,
    /// Message attributes.
    pub attributes: Vec<(String, String)>,
    /// How many times it has been received.
    pub receive_count: u32,
    /// When it was first sent, in milliseconds since the Unix epoch.
    pub sent_at_ms: u64,
    /// When it is (or became) visible, in milliseconds since the Unix epoch.
    pub visible_at_ms: u64,
    /// The queue it was redriven from, for a dead-letter queue's messages.
    pub dead_letter_source: Option<String>,
}

/// How many messages a queue holds, by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDepth {
    /// Ready to be received.
    pub visible: u64,
    /// Received and not yet deleted nor visible again.
    pub in_flight: u64,
    /// Sent with a delay that has not passed yet.
    pub delayed: u64,
}

/// One message to store: its queue, id and content.
pub(crate) struct Enqueue {
    pub(crate) queue: String,
    pub(crate) message_id: String,
    pub(crate) message: OutgoingMessage,
}

/// Checks a message against SQS's limits.
pub(crate) fn check_message(m: &OutgoingMessage) -> Result<(), CapError> {
    if m.body.len() > MAX_BODY_BYTES {
        return Err(CapError::Invalid(format!(
            "message body is {} bytes; the limit is {MAX_BODY_BYTES}",
            m.body.len()
        )));
    }
    if let Some(d) = m.delay_seconds {
        if d > MAX_DELAY_SECONDS {
            return Err(CapError::Invalid(format!(
                "delay_seconds {d} is above the limit of {MAX_DELAY_SECONDS}"
            )));
        }
    }
    Ok(())
}

/// Splits a receipt into the message's row id.
fn receipt_row(receipt: &str) -> Result<i64, CapError> {
    receipt
        .split_once('.')
        .and_then(|(id, _)| id.parse::<i64>().ok())
        .ok_or_else(|| CapError::Invalid(format!("`{receipt}` is not a receipt of this queue")))
}

fn stale(queue: &str, receipt: &str) -> CapError {
    CapError::NotFound(format!(
        "queue `{queue}`: receipt `{receipt}` is stale (the message was deleted or received again)"
    ))
}

fn parse_attributes(text: &str) -> Result<Vec<(String, String)>, CapError> {
    serde_json::from_str(text).map_err(|e| corrupt("message attributes", e))
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The embedded [`QueueBackend`], plus the consumer side used by pollers:
/// receive, delete, visibility, depth, listing and dead-letter replay.
pub struct EmbeddedQueues {
    db: Db,
    defs: Arc<BTreeMap<String, QueueDef>>,
    sent: Arc<watch::Sender<u64>>,
}

impl EmbeddedQueues {
    /// Opens the queue store in `file`, or in memory when `None`.
    pub(crate) fn open(
        file: Option<&Path>,
        queues: &BTreeMap<String, QueueDef>,
    ) -> Result<EmbeddedQueues, EmbeddedError> {
        for (name, def) in queues {
            if let Some(dlq) = &def.dead_letter {
                if !queues.contains_key(dlq) || dlq == name {
                    return Err(EmbeddedError::Config(format!(
                        "queue `{name}`: dead_letter `{dlq}` is not another defined queue"
                    )));
                }
            }
        }
        Ok(EmbeddedQueues {
            db: Db::open(file, SCHEMA)?,
            defs: Arc::new(queues.clone()),
            sent: Arc::new(watch::channel(0).0),
        })
    }

    fn def(&self, queue: &str) -> Result<&QueueDef, CapError> {
        self.defs
            .get(queue)
            .ok_or_else(|| CapError::NotFound(format!("queue `{queue}` is not defined")))
    }

    /// Stores messages (already checked) in one transaction.
    pub(crate) async fn enqueue(&self, batch: Vec<Enqueue>) -> Result<(), CapError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.db
            .call(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sql)?;
                let now = now_ms();
                {
                    let mut st = tx
                        .prepare_cached(
                            "INSERT INTO messages
                               (queue, message_id, body, attributes, sent_at_ms, visible_at_ms)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        )
                        .map_err(sql)?;
                    for e in &batch {
                        let attributes = serde_json::to_string(&e.message.attributes)
                            .map_err(|err| CapError::Invalid(format!("attributes: {err}")))?;
                        let delay = u64::from(e.message.delay_seconds.unwrap_or(0)) * 1000;
                        st.execute(params![
                            e.queue,
                            e.message_id,
                            e.message.body,
                            attributes,
                            to_i64(now),
                            to_i64(now + delay)
                        ])
                        .map_err(sql)?;
                    }
                }
                tx.commit().map_err(sql)
            })
            .await?;
        self.sent.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    /// Receives up to `max` visible messages (at most [`MAX_RECEIVE`]) and
    /// hides them for `visibility_timeout` (the queue's own when `None`),
    /// counting the receive.
    ///
    /// On the way, messages older than the queue's retention are dropped,
    /// and a message that was already received `max_receive_count` times is
    /// moved to the queue's dead-letter queue instead of being delivered
    /// again (SQS redrive). A redriven message keeps its id, body,
    /// attributes and first send time (so the dead-letter queue's retention
    /// counts from the original send, as in SQS), gets a fresh receive count
    /// and notes its source queue in `dead_letter_source`.
    pub async fn receive(
        &self,
        queue: &str,
        max: u32,
        visibility_timeout: Option<Duration>,
    ) -> Result<Vec<Received>, CapError> {
        let def = self.def(queue)?.clone();
        let timeout_ms = visibility_timeout
            .map(duration_ms)
            .unwrap_or(u64::from(def.visibility_timeout_s) * 1000);
        let max = max.clamp(1, MAX_RECEIVE) as usize;
        let queue = queue.to_string();
        let (out, moved) = self
            .db
            .call(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sql)?;
                let out = receive_in(&tx, &queue, &def, max, timeout_ms)?;
                tx.commit().map_err(sql)?;
                Ok(out)
            })
            .await?;
        if moved > 0 {
            self.sent.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(out)
    }

    /// Deletes a received message by its receipt. A receipt that is not the
    /// message's latest (it was received again since) or whose message is
    /// gone is `NotFound`.
    pub async fn delete(&self, queue: &str, receipt: &str) -> Result<(), CapError> {
        let mut r = self.delete_batch(queue, &[receipt.to_string()]).await?;
        r.pop().unwrap_or(Ok(()))
    }

    /// Deletes many received messages in one transaction; one result per
    /// receipt, in order.
    pub async fn delete_batch(
        &self,
        queue: &str,
        receipts: &[String],
    ) -> Result<Vec<Result<(), CapError>>, CapError> {
        self.def(queue)?;
        let queue = queue.to_string();
        let receipts = receipts.to_vec();
        self.db
            .call(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sql)?;
                let mut results = Vec::with_capacity(receipts.len());
                {
                    let mut st = tx
                        .prepare_cached(
                            "DELETE FROM messages WHERE id = ?1 AND queue = ?2 AND receipt = ?3",
                        )
                        .map_err(sql)?;
                    for receipt in &receipts {
                        let result = match receipt_row(receipt) {
                            Ok(id) => match st.execute(params![id, queue, receipt]).map_err(sql)? {
                                0 => Err(stale(&queue, receipt)),
                                _ => Ok(()),
                            },
                            Err(e) => Err(e),
                        };
                        results.push(result);
                    }
                }
                tx.commit().map_err(sql)?;
                Ok(results)
            })
            .await
    }

    /// Hides a received message for `timeout` from now (zero makes it
    /// visible at once).
    pub async fn change_visibility(
        &self,
        queue: &str,
        receipt: &str,
        timeout: Duration,
    ) -> Result<(), CapError> {
        self.def(queue)?;
        let id = receipt_row(receipt)?;
        let queue = queue.to_string();
        let receipt = receipt.to_string();
        self.db
            .call(move |conn| {
                let until = now_ms().saturating_add(duration_ms(timeout));
                let n = conn
                    .prepare_cached(
                        "UPDATE messages SET visible_at_ms = ?1
                         WHERE id = ?2 AND queue = ?3 AND receipt = ?4",
                    )
                    .map_err(sql)?
                    .execute(params![to_i64(until), id, queue, receipt])
                    .map_err(sql)?;
                if n == 0 {
                    Err(stale(&queue, &receipt))
                } else {
                    Ok(())
                }
            })
            .await?;
        self.sent.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    /// How many messages the queue holds, by state.
    pub async fn depth(&self, queue: &str) -> Result<QueueDepth, CapError> {
        self.def(queue)?;
        let queue = queue.to_string();
        self.db
            .call(move |conn| {
                let now = to_i64(now_ms());
                // Two reads of one snapshot. The visible messages are counted
                // in the visibility index alone (a deep queue's bodies are
                // not read: 40,000 messages took 9 ms as one scan of the
                // rows, a poller's share of a core); only the messages not
                // visible yet (in flight or delayed: few) are read for their
                // receive count.
                let tx = conn.transaction().map_err(sql)?;
                let visible: i64 = tx
                    .prepare_cached(
                        "SELECT COUNT(*) FROM messages WHERE queue = ?1 AND visible_at_ms <= ?2",
                    )
                    .map_err(sql)?
                    .query_row(params![queue, now], |r| r.get(0))
                    .map_err(sql)?;
                let (in_flight, delayed): (i64, i64) = tx
                    .prepare_cached(
                        "SELECT COALESCE(SUM(receive_count > 0), 0), COALESCE(SUM(receive_count = 0), 0)
                         FROM messages WHERE queue = ?1 AND visible_at_ms > ?2",
                    )
                    .map_err(sql)?
                    .query_row(params![queue, now], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(sql)?;
                tx.commit().map_err(sql)?;
                Ok(QueueDepth {
                    visible: to_u64(visible),
                    in_flight: to_u64(in_flight),
                    delayed: to_u64(delayed),
                })
            })
            .await
    }

    /// Up to `limit` messages of the queue in send order, whatever their
    /// state, without receiving them (to inspect a dead-letter queue).
    pub async fn list(&self, queue: &str, limit: u32) -> Result<Vec<QueuedMessage>, CapError> {
        self.def(queue)?;
        let queue = queue.to_string();
        self.db
            .call(move |conn| {
                let mut st = conn
                    .prepare_cached(
                        "SELECT message_id, body, attributes, receive_count, sent_at_ms,
                                visible_at_ms, dead_letter_source
                         FROM messages WHERE queue = ?1 ORDER BY id LIMIT ?2",
                    )
                    .map_err(sql)?;
                let mut rows = st.query(params![queue, i64::from(limit)]).map_err(sql)?;
                let mut out = Vec::new();
                while let Some(row) = rows.next().map_err(sql)? {
                    let attributes: String = row.get(2).map_err(sql)?;
                    let count: i64 = row.get(3).map_err(sql)?;
                    out.push(QueuedMessage {
                        message_id: row.get(0).map_err(sql)?,
                        body: row.get(1).map_err(sql)?,
                        attributes: parse_attributes(&attributes)?,
                        receive_count: u32::try_from(count).unwrap_or(u32::MAX),
                        sent_at_ms: to_u64(row.get(4).map_err(sql)?),
                        visible_at_ms: to_u64(row.get(5).map_err(sql)?),
                        dead_letter_source: row.get(6).map_err(sql)?,
                    });
                }
                Ok(out)
            })
            .await
    }

    /// Moves every message of `from` to `to`, visible at once with a fresh
    /// receive count (to replay a dead-letter queue). Returns how many moved.
    pub async fn move_all(&self, from: &str, to: &str) -> Result<u64, CapError> {
        // SQLite reads a negative LIMIT as no limit.
        self.move_oldest(from, to, -1).await
    }

    /// Moves up to `limit` of the oldest messages of `from` to `to`, like
    /// [`EmbeddedQueues::move_all`] (visible at once, fresh receive count);
    /// called until it returns 0 to replay a queue in steps. Returns how
    /// many moved.
    pub async fn move_some(&self, from: &str, to: &str, limit: u32) -> Result<u64, CapError> {
        self.move_oldest(from, to, i64::from(limit)).await
    }

    /// Moves at most `limit` (all when negative) of the oldest messages.
    async fn move_oldest(&self, from: &str, to: &str, limit: i64) -> Result<u64, CapError> {
        self.def(from)?;
        self.def(to)?;
        if from == to {
            return Err(CapError::Invalid(format!(
                "cannot move queue `{from}` onto itself"
            )));
        }
        let (from, to) = (from.to_string(), to.to_string());
        let n = self
            .db
            .call(move |conn| {
                let n = conn
                    .prepare_cached(
                        "UPDATE messages SET queue = ?2, receive_count = 0, receipt = NULL,
                                visible_at_ms = ?3, dead_letter_source = NULL
                         WHERE id IN (SELECT id FROM messages WHERE queue = ?1
                                      ORDER BY id LIMIT ?4)",
                    )
                    .map_err(sql)?
                    .execute(params![from, to, to_i64(now_ms()), limit])
                    .map_err(sql)?;
                Ok(n as u64)
            })
            .await?;
        if n > 0 {
            self.sent.send_modify(|c| *c = c.wrapping_add(1));
        }
        Ok(n)
    }

    /// A counter that changes whenever messages may have become receivable
    /// (sent, redriven, moved, made visible): a poller waits on `changed()`
    /// with a timeout instead of polling hard. Delays and visibility
    /// timeouts that simply run out do not tick it.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.sent.subscribe()
    }
}

/// The body of [`EmbeddedQueues::receive`], in its transaction. Returns the
/// messages delivered and how many were moved to the dead-letter queue.
fn receive_in(
    conn: &Connection,
    queue: &str,
    def: &QueueDef,
    max: usize,
    timeout_ms: u64,
) -> Result<(Vec<Received>, u64), CapError> {
    let now = now_ms();
    let cutoff = now.saturating_sub(def.retention_s.saturating_mul(1000));
    let until = now.saturating_add(timeout_ms);
    let mut out: Vec<Received> = Vec::new();
    let mut delivered: HashSet<i64> = HashSet::new();
    let mut moved = 0u64;
    loop {
        let want = max - out.len();
        // A few extra candidates absorb expired and redriven ones.
        let fetch = want + 16;
        let candidates = {
            let mut st = conn
                .prepare_cached(
                    "SELECT id, message_id, body, attributes, sent_at_ms, receive_count,
                            dead_letter_source
                     FROM messages WHERE queue = ?1 AND visible_at_ms <= ?2
                     ORDER BY visible_at_ms, id LIMIT ?3",
                )
                .map_err(sql)?;
            let rows = st
                .query_map(
                    params![queue, to_i64(now), i64::try_from(fetch).unwrap_or(i64::MAX)],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, i64>(4)?,
                            r.get::<_, i64>(5)?,
                            r.get::<_, Option<String>>(6)?,
                        ))
                    },
                )
                .map_err(sql)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql)?
        };
        let fetched = candidates.len();
        let mut progressed = false;
        for (id, message_id, body, attributes, sent_at, count, source) in candidates {
            if out.len() == max {
                break;
            }
            if delivered.contains(&id) {
                // Received in this call with a zero timeout: visible again.
                continue;
            }
            progressed = true;
            if to_u64(sent_at) < cutoff {
                conn.prepare_cached("DELETE FROM messages WHERE id = ?1")
                    .map_err(sql)?
                    .execute(params![id])
                    .map_err(sql)?;
                continue;
            }
            let count = u32::try_from(count).unwrap_or(u32::MAX);
            if let Some(dlq) = &def.dead_letter {
                if count >= def.max_receive_count {
                    conn.prepare_cached(
                        "UPDATE messages SET queue = ?2, receive_count = 0, receipt = NULL,
                                visible_at_ms = ?3, dead_letter_source = ?4
                         WHERE id = ?1",
                    )
                    .map_err(sql)?
                    .execute(params![id, dlq, to_i64(now), queue])
                    .map_err(sql)?;
                    tracing::debug!(queue, dead_letter = %dlq, message_id, receive_count = count, "message moved to its dead-letter queue");
                    moved += 1;
                    continue;
                }
            }
            let receipt = format!("{id}.{}", uuid::Uuid::new_v4().simple());
            conn.prepare_cached(
                "UPDATE messages SET receive_count = receive_count + 1, receipt = ?2,
                        visible_at_ms = ?3
                 WHERE id = ?1",
            )
            .map_err(sql)?
            .execute(params![id, receipt, to_i64(until)])
            .map_err(sql)?;
            delivered.insert(id);
            out.push(Received {
                message_id,
                receipt,
                body,
                attributes: parse_attributes(&attributes)?,
                receive_count: count.saturating_add(1),
                sent_at_ms: to_u64(sent_at),
                dead_letter_source: source,
            });
        }
        if out.len() == max || fetched < fetch || !progressed {
            break;
        }
    }
    Ok((out, moved))
}

#[async_trait]
impl QueueBackend for EmbeddedQueues {
    async fn send_batch(
        &self,
        queue: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<Result<String, CapError>>, CapError> {
        self.def(queue)?;
        let mut results = Vec::with_capacity(messages.len());
        let mut batch = Vec::with_capacity(messages.len());
        for message in messages {
            match check_message(&message) {
                Ok(()) => {
                    let message_id = uuid::Uuid::new_v4().to_string();
                    results.push(Ok(message_id.clone()));
                    batch.push(Enqueue {
                        queue: queue.to_string(),
                        message_id,
                        message,
                    });
                }
                Err(e) => results.push(Err(e)),
            }
        }
        self.enqueue(batch).await?;
        Ok(results)
    }
}

impl EmbeddedQueues {
    /// Rows written to this store's database since it was opened.
    pub fn row_writes(&self) -> u64 {
        self.db.row_writes()
    }
}
