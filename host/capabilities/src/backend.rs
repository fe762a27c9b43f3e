//! The backend traits every capability is implemented over.
//!
//! Backends know nothing of WebAssembly or grants: they receive requests that
//! the capability layer has already checked against the calling worker's
//! grant, and they answer with plain Rust values. Each trait has an embedded
//! implementation (`usher-backend-embedded`) and a real one (AWS, Kafka,
//! Redis, HTTP).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{CapError, JsonText};

/// A condition a table write must satisfy, checked atomically with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// No item with the key exists.
    NotExists,
    /// An item with the key exists.
    Exists,
    /// An item exists and its attribute equals the value.
    AttributeEquals(String, Value),
}

impl Condition {
    /// Whether `current` (the item as it is now, if any) satisfies the condition.
    pub fn holds(&self, current: Option<&Value>) -> bool {
        match self {
            Condition::NotExists => current.is_none(),
            Condition::Exists => current.is_some(),
            Condition::AttributeEquals(name, expected) => {
                current.and_then(|item| item.get(name)) == Some(expected)
            }
        }
    }

    /// What was found instead, when the condition failed: "the item exists" …
    pub fn failure(&self) -> String {
        match self {
            Condition::NotExists => "the item exists".to_string(),
            Condition::Exists => "the item does not exist".to_string(),
            Condition::AttributeEquals(name, value) => {
                format!("attribute `{name}` does not equal {value}")
            }
        }
    }
}

/// The kind of change a table write made, as DynamoDB Streams names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ChangeKind {
    /// A new item.
    Insert,
    /// An existing item changed.
    Modify,
    /// An item was deleted.
    Remove,
}

impl ChangeKind {
    /// `INSERT`, `MODIFY` or `REMOVE`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Insert => "INSERT",
            ChangeKind::Modify => "MODIFY",
            ChangeKind::Remove => "REMOVE",
        }
    }

    /// Reads `INSERT`, `MODIFY` or `REMOVE`.
    pub fn parse(text: &str) -> Option<ChangeKind> {
        match text {
            "INSERT" => Some(ChangeKind::Insert),
            "MODIFY" => Some(ChangeKind::Modify),
            "REMOVE" => Some(ChangeKind::Remove),
            _ => None,
        }
    }
}

/// What kind of JSON value this is, for error messages ("an object" …).
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One write of a table batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteOp {
    /// Create or replace the item.
    Put(Value),
    /// Delete the item with this key.
    Delete(Value),
}

/// One conditional put of a [`TableBackend::put_many`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutItem {
    /// The item.
    pub item: Value,
    /// The condition it is written under.
    pub condition: Option<Condition>,
}

/// One conditional update of a [`TableBackend::update_many`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateItem {
    /// The item's key.
    pub key: Value,
    /// Attributes to set.
    pub set: Map<String, Value>,
    /// Attributes to remove.
    pub remove: Vec<String>,
    /// The condition it is applied under.
    pub condition: Option<Condition>,
}

/// One write of a [`TableBackend::transact_write`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactItem {
    /// Create or replace the item, under the condition.
    Put(PutItem),
    /// Set, add to and remove attributes, under the condition.
    Update(TransactUpdate),
    /// Delete the item with this key, under the condition.
    Delete {
        /// The item's key.
        key: Value,
        /// The condition.
        condition: Option<Condition>,
    },
    /// The condition must hold on the item with this key; nothing is written.
    Check {
        /// The item's key.
        key: Value,
        /// The condition.
        condition: Condition,
    },
}

impl TransactItem {
    /// The condition this write is made under.
    pub fn condition(&self) -> Option<&Condition> {
        match self {
            TransactItem::Put(p) => p.condition.as_ref(),
            TransactItem::Update(u) => u.condition.as_ref(),
            TransactItem::Delete { condition, .. } => condition.as_ref(),
            TransactItem::Check { condition, .. } => Some(condition),
        }
    }
}

/// An update of a [`TableBackend::transact_write`]: [`UpdateItem`]'s set
/// and remove, and numbers added to numeric attributes (an absent
/// attribute counts as 0, as DynamoDB's `ADD`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransactUpdate {
    /// The item's key.
    pub key: Value,
    /// Attributes to set.
    pub set: Map<String, Value>,
    /// Numbers to add, by attribute.
    pub add: Map<String, Value>,
    /// Attributes to remove.
    pub remove: Vec<String>,
    /// The condition it is applied under.
    pub condition: Option<Condition>,
}

/// The most writes one [`TableBackend::transact_write`] carries (DynamoDB's
/// `TransactWriteItems` limit).
pub const MAX_TRANSACT_ITEMS: usize = 100;

/// Why a [`TableBackend::transact_write`] wrote nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactError {
    /// The conditions of these writes (indexes, ascending) were false.
    #[error("transaction cancelled: the conditions of items {0:?} were false")]
    Cancelled(Vec<u32>),
    /// The call failed as a whole.
    #[error("{0}")]
    Failed(#[from] CapError),
}

/// One page of a query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Page {
    /// Items in sort-key order.
    pub items: Vec<Value>,
    /// The key to continue after, when more items remain.
    pub next: Option<Value>,
}

/// One page of a query with its items as JSON text
/// ([`TableBackend::query_text`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TextPage {
    /// Items in sort-key order.
    pub items: Vec<JsonText>,
    /// The key to continue after, when more items remain.
    pub next: Option<Value>,
}

/// DynamoDB-shaped tables of JSON items.
///
/// The `*_text` reads answer items as JSON text: what the `table`
/// capability hands a guest. Their defaults serialize what the `Value`
/// reads answer; a backend that stores items as text (the embedded one)
/// answers its stored text, so an item read by a guest is not parsed into
/// a `Value` tree and written out again on the way.
#[async_trait]
pub trait TableBackend: Send + Sync {
    /// Reads one item.
    async fn get(&self, table: &str, key: &Value) -> Result<Option<Value>, CapError>;
    /// Reads many items, one answer per key in order.
    async fn batch_get(&self, table: &str, keys: &[Value]) -> Result<Vec<Option<Value>>, CapError>;
    /// Creates or replaces an item.
    async fn put(
        &self,
        table: &str,
        item: Value,
        condition: Option<Condition>,
    ) -> Result<(), CapError>;
    /// Sets and removes attributes; returns the item after the update.
    async fn update(
        &self,
        table: &str,
        key: &Value,
        set: Map<String, Value>,
        remove: &[String],
        condition: Option<Condition>,
    ) -> Result<Value, CapError>;
    /// Deletes an item.
    async fn delete(
        &self,
        table: &str,
        key: &Value,
        condition: Option<Condition>,
    ) -> Result<(), CapError>;
    /// Items of one partition by sort-key prefix.
    async fn query(
        &self,
        table: &str,
        partition: &Value,
        sort_prefix: Option<&str>,
        limit: u32,
        start_after: Option<&Value>,
    ) -> Result<Page, CapError>;
    /// [`TableBackend::get`], the item as JSON text.
    async fn get_text(&self, table: &str, key: &Value) -> Result<Option<JsonText>, CapError> {
        Ok(self.get(table, key).await?.map(JsonText::from))
    }
    /// [`TableBackend::batch_get`], the items as JSON text.
    async fn batch_get_text(
        &self,
        table: &str,
        keys: &[Value],
    ) -> Result<Vec<Option<JsonText>>, CapError> {
        Ok(self
            .batch_get(table, keys)
            .await?
            .into_iter()
            .map(|i| i.map(JsonText::from))
            .collect())
    }
    /// [`TableBackend::query`], the items as JSON text.
    async fn query_text(
        &self,
        table: &str,
        partition: &Value,
        sort_prefix: Option<&str>,
        limit: u32,
        start_after: Option<&Value>,
    ) -> Result<TextPage, CapError> {
        let page = self
            .query(table, partition, sort_prefix, limit, start_after)
            .await?;
        Ok(TextPage {
            items: page.items.into_iter().map(JsonText::from).collect(),
            next: page.next,
        })
    }
    /// Many writes; one result per write in order.
    async fn batch_write(
        &self,
        table: &str,
        writes: Vec<WriteOp>,
    ) -> Result<Vec<Result<(), CapError>>, CapError>;
    /// Many conditional puts, each succeeding or failing on its own (not a
    /// transaction); one result per put in order. The default runs them one
    /// after another; backends override it to do better (one SQLite
    /// transaction, concurrent DynamoDB calls).
    async fn put_many(
        &self,
        table: &str,
        puts: Vec<PutItem>,
    ) -> Result<Vec<Result<(), CapError>>, CapError> {
        let mut out = Vec::with_capacity(puts.len());
        for p in puts {
            out.push(match self.put(table, p.item, p.condition).await {
                Err(e @ CapError::Fault(_)) => return Err(e),
                other => other,
            });
        }
        Ok(out)
    }
    /// Many conditional updates, each on its own; one result (the item
    /// after the update) per update in order. The default runs them one
    /// after another.
    async fn update_many(
        &self,
        table: &str,
        updates: Vec<UpdateItem>,
    ) -> Result<Vec<Result<Value, CapError>>, CapError> {
        let mut out = Vec::with_capacity(updates.len());
        for u in updates {
            out.push(
                match self
                    .update(table, &u.key, u.set, &u.remove, u.condition)
                    .await
                {
                    Err(e @ CapError::Fault(_)) => return Err(e),
                    other => other,
                },
            );
        }
        Ok(out)
    }
    /// [`TableBackend::update_many`], each item after its update as JSON
    /// text.
    async fn update_many_text(
        &self,
        table: &str,
        updates: Vec<UpdateItem>,
    ) -> Result<Vec<Result<JsonText, CapError>>, CapError> {
        Ok(self
            .update_many(table, updates)
            .await?
            .into_iter()
            .map(|r| r.map(JsonText::from))
            .collect())
    }
    /// Up to [`MAX_TRANSACT_ITEMS`] writes to distinct items of one table,
    /// all or none: every condition holds and every write is made, or
    /// nothing is written and the error names the writes whose conditions
    /// were false. The default refuses: a backend without transactions.
    async fn transact_write(
        &self,
        table: &str,
        _items: Vec<TransactItem>,
    ) -> Result<(), TransactError> {
        Err(TransactError::Failed(CapError::Unsupported(format!(
            "table `{table}`: this backend has no transactions"
        ))))
    }
}

/// A message to send to a queue or publish to a topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutgoingMessage {
    /// The body.
    pub body: String,
    /// Message attributes.
    pub attributes: Vec<(String, String)>,
    /// Delay before the message becomes visible (queues only).
    pub delay_seconds: Option<u32>,
}

/// SQS-shaped queues.
#[async_trait]
pub trait QueueBackend: Send + Sync {
    /// Sends messages; one result (the message id) per message in order.
    async fn send_batch(
        &self,
        queue: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<Result<String, CapError>>, CapError>;
}

/// SNS-shaped topics.
#[async_trait]
pub trait TopicBackend: Send + Sync {
    /// Publishes messages; one result (the message id) per message in order.
    async fn publish_batch(
        &self,
        topic: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<Result<String, CapError>>, CapError>;
}

/// Facts about a stored object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectInfo {
    /// The object's key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Entity tag.
    pub etag: String,
}

/// A large object being written in parts.
#[async_trait]
pub trait ObjectWriter: Send + Sync {
    /// Appends bytes.
    async fn write(&mut self, chunk: &[u8]) -> Result<(), CapError>;
    /// Completes the object and makes it visible.
    async fn finish(self: Box<Self>) -> Result<ObjectInfo, CapError>;
    /// Abandons the object; nothing becomes visible.
    async fn abort(self: Box<Self>);
}

/// S3-shaped object storage.
#[async_trait]
pub trait ObjectBackend: Send + Sync {
    /// Stores a whole object.
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: Option<&str>,
    ) -> Result<ObjectInfo, CapError>;
    /// Reads a whole object.
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, CapError>;
    /// Lists objects under a prefix in key order.
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<ObjectInfo>, CapError>;
    /// Starts a multipart write.
    async fn open_writer(
        &self,
        bucket: &str,
        key: &str,
        content_type: Option<&str>,
    ) -> Result<Box<dyn ObjectWriter>, CapError>;
    /// Deletes an object; deleting one that does not exist succeeds. Not
    /// in the WIT (workers cannot delete): the host's own tasks (the
    /// archive's compaction) use it. Backends without it answer
    /// `unsupported`.
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), CapError> {
        Err(CapError::Unsupported(format!(
            "deleting objects (`{key}` in `{bucket}`) is not supported by this backend"
        )))
    }
}

/// The largest event value, in bytes, every [`EventBackend`] accepts; a
/// larger value fails its record with [`CapError::Invalid`]. It is
/// librdkafka's default `message.max.bytes`, and leaves about 48 KB for key,
/// headers and framing within a Kafka broker's default limit (1,048,588
/// bytes per record batch).
pub const MAX_EVENT_VALUE_BYTES: usize = 1_000_000;

/// One record for an event stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Partitioning key.
    pub key: Option<String>,
    /// Payload.
    pub value: Vec<u8>,
    /// Headers.
    pub headers: Vec<(String, String)>,
}

/// Where a produced record was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
}

/// Kafka-shaped event streams.
#[async_trait]
pub trait EventBackend: Send + Sync {
    /// Produces records; one delivery report per record in order.
    async fn produce(
        &self,
        topic: &str,
        events: Vec<Event>,
    ) -> Result<Vec<Result<Delivery, CapError>>, CapError>;
}

/// A key/value cache with expiry.
#[async_trait]
pub trait CacheBackend: Send + Sync {
    /// Reads a key.
    async fn get(&self, key: &str) -> Result<Option<String>, CapError>;
    /// Writes a key with an optional time to live.
    async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), CapError>;
    /// Removes a key.
    async fn delete(&self, key: &str) -> Result<(), CapError>;
}

/// HTTP method of a service call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// GET
    Get,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
}

impl Method {
    /// The method's name, upper case.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// A call to a named internal service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRequest {
    /// The service name.
    pub service: String,
    /// Method.
    pub method: Method,
    /// Path and query below the service's base URL.
    pub path: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Option<String>,
    /// The invocation's correlation id, sent as `X-Correlation-Id`.
    pub correlation_id: String,
}

/// A service's final answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body text.
    pub body: String,
}

/// Internal HTTP services.
#[async_trait]
pub trait ServiceBackend: Send + Sync {
    /// Calls a service (retrying transient failures) and returns its final answer.
    async fn call(&self, request: ServiceRequest) -> Result<ServiceResponse, CapError>;
}

/// A container format of the codec capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Avro object container.
    Avro,
    /// Apache Parquet.
    Parquet,
}

/// Records as columns (`codec.encode-columns`): each schema field's values
/// for every row, in Arrow's layout.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Columns {
    /// How many records.
    pub rows: usize,
    /// The fields' columns (a schema field without one is null throughout).
    pub columns: Vec<Column>,
}

/// One field's values for every row.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// The field's name in the schema.
    pub name: String,
    /// Which rows have a value: one flag per row, or empty when all do.
    pub present: Vec<bool>,
    /// The values, one per row (a row without a value holds any value).
    pub values: ColumnValues,
}

/// A column's values.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnValues {
    /// Text: every row's string in `text`, row i's ending at byte `ends[i]`.
    Strings {
        /// The rows' strings one after another.
        text: String,
        /// Where each row's string ends.
        ends: Vec<u32>,
    },
    /// 64-bit integers (Avro `long`, `int` and their logical types).
    Longs(Vec<i64>),
    /// Floats (Avro `double`, `float`).
    Doubles(Vec<f64>),
    /// Booleans.
    Booleans(Vec<bool>),
}

impl ColumnValues {
    /// How many values the column holds.
    pub fn len(&self) -> usize {
        match self {
            ColumnValues::Strings { ends, .. } => ends.len(),
            ColumnValues::Longs(v) => v.len(),
            ColumnValues::Doubles(v) => v.len(),
            ColumnValues::Booleans(v) => v.len(),
        }
    }

    /// Whether it holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its kind, as errors name it.
    pub fn kind(&self) -> &'static str {
        match self {
            ColumnValues::Strings { .. } => "strings",
            ColumnValues::Longs(_) => "longs",
            ColumnValues::Doubles(_) => "doubles",
            ColumnValues::Booleans(_) => "booleans",
        }
    }
}

/// Native container encoding.
#[async_trait]
pub trait CodecBackend: Send + Sync {
    /// Encodes records following an Avro schema. Each record is the JSON
    /// text of one object, as it crossed the boundary: a backend may read
    /// the text itself rather than build values (Parquet does).
    async fn encode(
        &self,
        format: Format,
        schema: &Value,
        records: Vec<String>,
    ) -> Result<Vec<u8>, CapError>;

    /// Encodes records given as columns following an Avro schema (a flat
    /// record). The default refuses: a backend without it is one whose
    /// host predates `usher:platform@0.1.2`.
    async fn encode_columns(
        &self,
        format: Format,
        _schema: &Value,
        _columns: Columns,
    ) -> Result<Vec<u8>, CapError> {
        Err(CapError::Unsupported(format!(
            "{format:?} encoding from columns is not available in this host build"
        )))
    }
}

/// Direct invocation of other workers.
#[async_trait]
pub trait WorkerInvoker: Send + Sync {
    /// Invokes a worker and waits for its answer.
    async fn invoke(
        &self,
        worker: &str,
        payload: Value,
        correlation_id: &str,
    ) -> Result<Value, CapError>;
    /// Queues an invocation without waiting.
    async fn invoke_async(
        &self,
        worker: &str,
        payload: Value,
        correlation_id: &str,
    ) -> Result<(), CapError>;
}

/// One implementation per capability: what a host process wires its workers to.
#[derive(Clone)]
pub struct Backends {
    /// Tables.
    pub table: Arc<dyn TableBackend>,
    /// Queues.
    pub queue: Arc<dyn QueueBackend>,
    /// Topics.
    pub topic: Arc<dyn TopicBackend>,
    /// Objects.
    pub objects: Arc<dyn ObjectBackend>,
    /// Event streams.
    pub events: Arc<dyn EventBackend>,
    /// Cache.
    pub cache: Arc<dyn CacheBackend>,
    /// Internal services.
    pub services: Arc<dyn ServiceBackend>,
    /// Codec.
    pub codec: Arc<dyn CodecBackend>,
    /// Other workers.
    pub workers: Arc<dyn WorkerInvoker>,
}

/// The codec of a host built without container encoding: every call is
/// answered with the guest-visible `unsupported` error naming the format.
/// (Avro and Parquet encoders arrive with the change-data archive workers.)
pub struct NoCodec;

#[async_trait]
impl CodecBackend for NoCodec {
    async fn encode(
        &self,
        format: Format,
        _schema: &Value,
        _records: Vec<String>,
    ) -> Result<Vec<u8>, CapError> {
        Err(CapError::Unsupported(format!(
            "{format:?} encoding is not available in this host build"
        )))
    }
}
