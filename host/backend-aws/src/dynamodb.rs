//! Tables on DynamoDB: items as JSON through `serde_dynamo`, conditions as
//! condition expressions, batches chunked and their unprocessed items
//! retried with backoff.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, DeleteRequest, KeysAndAttributes, Put, PutRequest,
    ReturnValue, TransactWriteItem, Update, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use serde_json::{Map, Number, Value};
use usher_capabilities::key_schema::condition_failed;
use usher_capabilities::{
    CapError, Condition, KeyCodec, KeySchema, Page, PutItem, TableBackend, TableKey, TransactError,
    TransactItem, UpdateItem, WriteOp,
};
use usher_registry::TableDef;

use crate::chunks::{self, Unprocessed};
use crate::error::sdk;
use crate::ResourceNames;

/// The most keys one `BatchGetItem` carries.
const GET_CHUNK: usize = 100;
/// The most writes one `BatchWriteItem` carries.
const WRITE_CHUNK: usize = 25;
/// The most single-item writes `put_many` / `update_many` have in flight.
const MANY_IN_FLIGHT: usize = 16;

type Item = HashMap<String, AttributeValue>;

/// The [`TableBackend`] on DynamoDB. The key schema of each table comes
/// from the registry; its physical name from the resource names.
pub struct DynamoTables {
    client: Client,
    names: Arc<ResourceNames>,
    schemas: BTreeMap<String, TableDef>,
}

/// A table of a call: its registry name, physical name and key schema.
struct Table<'a> {
    name: &'a str,
    physical: String,
    def: &'a TableDef,
    schema: KeySchema<'a>,
}

/// Key attributes as DynamoDB takes them: `S` or `N`.
struct AvKeys;

impl KeyCodec for AvKeys {
    type Part = AttributeValue;

    fn text(s: &str) -> AttributeValue {
        AttributeValue::S(s.to_string())
    }

    fn number(n: &Number) -> Option<AttributeValue> {
        Some(AttributeValue::N(n.to_string()))
    }
}

/// A key given by the caller, checked against the key schema.
struct Key {
    attrs: Item,
    json: Value,
}

fn to_av(v: &Value) -> Result<AttributeValue, CapError> {
    serde_dynamo::aws_sdk_dynamodb_1::to_attribute_value(v)
        .map_err(|e| CapError::Invalid(format!("value does not convert for DynamoDB: {e}")))
}

fn to_item(table: &str, item: &Value) -> Result<Item, CapError> {
    serde_dynamo::aws_sdk_dynamodb_1::to_item(item).map_err(|e| {
        CapError::Invalid(format!(
            "table `{table}`: item does not convert for DynamoDB: {e}"
        ))
    })
}

fn from_item(table: &str, item: Item) -> Result<Value, CapError> {
    serde_dynamo::aws_sdk_dynamodb_1::from_item(item).map_err(|e| {
        CapError::Unsupported(format!(
            "table `{table}` holds an item that is not JSON (binary attribute?): {e}"
        ))
    })
}

/// The identity of a key among others of one table (to match answers of
/// batch calls with their requests).
fn identity(def: &TableDef, attrs: &Item) -> String {
    let part = |name: Option<&String>| match name.and_then(|n| attrs.get(n)) {
        Some(AttributeValue::S(s)) => format!("S{}:{s}", s.len()),
        Some(AttributeValue::N(n)) => format!("N{}:{n}", n.len()),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    };
    format!(
        "{}|{}",
        part(Some(&def.partition_key)),
        part(def.sort_key.as_ref())
    )
}

impl Table<'_> {
    /// A checked key as DynamoDB takes it.
    fn key(&self, k: TableKey<AttributeValue>) -> Key {
        let mut attrs = Item::from([(self.def.partition_key.clone(), k.partition)]);
        if let (Some(name), Some(v)) = (&self.def.sort_key, k.sort) {
            attrs.insert(name.clone(), v);
        }
        Key {
            attrs,
            json: k.json,
        }
    }

    /// A key given by the caller: exactly the key attributes.
    fn parse_key(&self, key: &Value) -> Result<Key, CapError> {
        self.schema.parse_key::<AvKeys>(key).map(|k| self.key(k))
    }

    /// The key of a whole item.
    fn item_key(&self, item: &Value) -> Result<Key, CapError> {
        self.schema.item_key::<AvKeys>(item).map(|k| self.key(k))
    }

    fn what(&self, op: &str) -> String {
        if self.physical == self.name {
            format!("DynamoDB {op} on table `{}`", self.name)
        } else {
            format!(
                "DynamoDB {op} on table `{}` (`{}`)",
                self.name, self.physical
            )
        }
    }
}

/// Expression attribute names and values of one request.
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    fn name(&mut self, placeholder: String, name: &str) -> String {
        self.names.insert(placeholder.clone(), name.to_string());
        placeholder
    }

    fn value(&mut self, placeholder: String, v: AttributeValue) -> String {
        self.values.insert(placeholder.clone(), v);
        placeholder
    }

    /// The condition expression of a [`Condition`].
    fn condition(&mut self, table: &Table<'_>, c: &Condition) -> Result<String, CapError> {
        Ok(match c {
            Condition::NotExists => format!(
                "attribute_not_exists({})",
                self.name("#cond_key".into(), &table.def.partition_key)
            ),
            Condition::Exists => format!(
                "attribute_exists({})",
                self.name("#cond_key".into(), &table.def.partition_key)
            ),
            Condition::AttributeEquals(name, v) => {
                let n = self.name("#cond_attr".into(), name);
                let v = self.value(":cond_value".into(), to_av(v)?);
                format!("{n} = {v}")
            }
        })
    }

    /// The update expression of `set`, `add` and `remove` (`None` when
    /// it changes nothing).
    fn update(
        &mut self,
        set: &Map<String, Value>,
        add: &Map<String, Value>,
        remove: &[String],
    ) -> Result<Option<String>, CapError> {
        let mut sets = Vec::with_capacity(set.len());
        for (i, (name, v)) in set.iter().enumerate() {
            let n = self.name(format!("#set{i}"), name);
            let v = self.value(format!(":set{i}"), to_av(v)?);
            sets.push(format!("{n} = {v}"));
        }
        let mut adds = Vec::with_capacity(add.len());
        for (i, (name, v)) in add.iter().enumerate() {
            let Value::Number(n) = v else {
                return Err(CapError::Invalid(format!("add `{name}` must be a number")));
            };
            let name = self.name(format!("#add{i}"), name);
            let v = self.value(format!(":add{i}"), AttributeValue::N(n.to_string()));
            adds.push(format!("{name} {v}"));
        }
        let removes: Vec<String> = remove
            .iter()
            .enumerate()
            .map(|(i, name)| self.name(format!("#remove{i}"), name))
            .collect();
        let mut update = Vec::new();
        if !sets.is_empty() {
            update.push(format!("SET {}", sets.join(", ")));
        }
        if !adds.is_empty() {
            update.push(format!("ADD {}", adds.join(", ")));
        }
        if !removes.is_empty() {
            update.push(format!("REMOVE {}", removes.join(", ")));
        }
        Ok((!update.is_empty()).then(|| update.join(" ")))
    }

    fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

/// A call's error, with a failed condition explained.
fn write_error(
    table: &Table<'_>,
    key: &Key,
    condition: Option<&Condition>,
    e: CapError,
) -> CapError {
    match (e, condition) {
        (CapError::ConditionFailed(_), Some(c)) => condition_failed(table.name, &key.json, c),
        (e, _) => e,
    }
}

impl DynamoTables {
    pub(crate) fn new(
        client: Client,
        names: Arc<ResourceNames>,
        schemas: BTreeMap<String, TableDef>,
    ) -> DynamoTables {
        DynamoTables {
            client,
            names,
            schemas,
        }
    }

    /// The DynamoDB client (for stream readers and tests).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn table<'a>(&'a self, name: &'a str) -> Result<Table<'a>, CapError> {
        let def = self
            .schemas
            .get(name)
            .ok_or_else(|| CapError::NotFound(format!("table `{name}` is not defined")))?;
        Ok(Table {
            name,
            physical: self.names.physical(name),
            def,
            schema: KeySchema::new(name, def),
        })
    }

    /// One `BatchGetItem` of distinct keys, retrying unprocessed keys; the
    /// items found by key identity.
    async fn get_chunk(
        &self,
        table: &Table<'_>,
        keys: Vec<Item>,
    ) -> Result<HashMap<String, Value>, CapError> {
        let mut found = HashMap::new();
        let mut pending = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(|e| CapError::Fault(format!("BatchGetItem request: {e}")))?,
        );
        let mut backoff = Unprocessed::new();
        while let Some(request) = pending.take() {
            let out = self
                .client
                .batch_get_item()
                .request_items(table.physical.clone(), request)
                .send()
                .await
                .map_err(|e| sdk(&table.what("BatchGetItem"), e))?;
            for item in out
                .responses
                .and_then(|mut r| r.remove(&table.physical))
                .unwrap_or_default()
            {
                let id = identity(table.def, &item);
                found.insert(id, from_item(table.name, item)?);
            }
            pending = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(&table.physical))
                .filter(|k| !k.keys.is_empty());
            if pending.is_some() && !backoff.wait().await {
                return Err(CapError::Throttled(format!(
                    "{}: keys stayed unprocessed after retries",
                    table.what("BatchGetItem")
                )));
            }
        }
        Ok(found)
    }

    /// One `BatchWriteItem` of writes to distinct keys, retrying unprocessed
    /// items; one result per write.
    async fn write_chunk(
        &self,
        table: &Table<'_>,
        chunk: Vec<(usize, (String, WriteRequest))>,
    ) -> Result<Vec<(usize, Result<(), CapError>)>, CapError> {
        let mut pending: Vec<WriteRequest> = chunk.iter().map(|(_, (_, w))| w.clone()).collect();
        let mut backoff = Unprocessed::new();
        loop {
            let out = self
                .client
                .batch_write_item()
                .request_items(table.physical.clone(), pending)
                .send()
                .await
                .map_err(|e| sdk(&table.what("BatchWriteItem"), e))?;
            pending = out
                .unprocessed_items
                .and_then(|mut u| u.remove(&table.physical))
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(chunk.into_iter().map(|(i, _)| (i, Ok(()))).collect());
            }
            if !backoff.wait().await {
                let left: HashSet<String> = pending
                    .iter()
                    .map(|w| write_identity(table.def, w))
                    .collect();
                let e = CapError::Throttled(format!(
                    "{}: the write stayed unprocessed after retries",
                    table.what("BatchWriteItem")
                ));
                return Ok(chunk
                    .into_iter()
                    .map(|(i, (id, _))| {
                        (
                            i,
                            if left.contains(&id) {
                                Err(e.clone())
                            } else {
                                Ok(())
                            },
                        )
                    })
                    .collect());
            }
        }
    }
}

fn write_identity(def: &TableDef, w: &WriteRequest) -> String {
    match (&w.put_request, &w.delete_request) {
        (Some(p), _) => identity(def, &p.item),
        (None, Some(d)) => identity(def, &d.key),
        (None, None) => String::new(),
    }
}

#[async_trait]
impl TableBackend for DynamoTables {
    async fn get(&self, table: &str, key: &Value) -> Result<Option<Value>, CapError> {
        let t = self.table(table)?;
        let key = t.parse_key(key)?;
        let out = self
            .client
            .get_item()
            .table_name(&t.physical)
            .set_key(Some(key.attrs))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk(&t.what("GetItem"), e))?;
        out.item.map(|i| from_item(table, i)).transpose()
    }

    async fn batch_get(&self, table: &str, keys: &[Value]) -> Result<Vec<Option<Value>>, CapError> {
        let t = self.table(table)?;
        let keys = keys
            .iter()
            .map(|k| t.parse_key(k))
            .collect::<Result<Vec<_>, _>>()?;
        // DynamoDB refuses a key twice in one request: ask each once.
        let ids: Vec<String> = keys.iter().map(|k| identity(t.def, &k.attrs)).collect();
        let mut seen = HashSet::new();
        let distinct: Vec<Item> = keys
            .into_iter()
            .zip(&ids)
            .filter(|(_, id)| seen.insert(id.as_str()))
            .map(|(k, _)| k.attrs)
            .collect();
        let mut found = HashMap::new();
        for chunk in distinct.chunks(GET_CHUNK) {
            found.extend(self.get_chunk(&t, chunk.to_vec()).await?);
        }
        Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
    }

    async fn put(
        &self,
        table: &str,
        item: Value,
        condition: Option<Condition>,
    ) -> Result<(), CapError> {
        let t = self.table(table)?;
        let key = t.item_key(&item)?;
        let attrs = to_item(table, &item)?;
        let mut expr = Expr::default();
        let cond = condition
            .as_ref()
            .map(|c| expr.condition(&t, c))
            .transpose()?;
        self.client
            .put_item()
            .table_name(&t.physical)
            .set_item(Some(attrs))
            .set_condition_expression(cond)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .send()
            .await
            .map_err(|e| write_error(&t, &key, condition.as_ref(), sdk(&t.what("PutItem"), e)))?;
        Ok(())
    }

    async fn update(
        &self,
        table: &str,
        key: &Value,
        set: Map<String, Value>,
        remove: &[String],
        condition: Option<Condition>,
    ) -> Result<Value, CapError> {
        let t = self.table(table)?;
        let key = t.key(t.schema.update_key::<AvKeys>(key, &set, remove)?);
        let mut expr = Expr::default();
        let update = expr.update(&set, &Map::new(), remove)?;
        let cond = condition
            .as_ref()
            .map(|c| expr.condition(&t, c))
            .transpose()?;
        let out = self
            .client
            .update_item()
            .table_name(&t.physical)
            .set_key(Some(key.attrs.clone()))
            .set_update_expression(update)
            .set_condition_expression(cond)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| {
                write_error(&t, &key, condition.as_ref(), sdk(&t.what("UpdateItem"), e))
            })?;
        match out.attributes {
            Some(item) if !item.is_empty() => from_item(table, item),
            _ => Ok(key.json),
        }
    }

    async fn delete(
        &self,
        table: &str,
        key: &Value,
        condition: Option<Condition>,
    ) -> Result<(), CapError> {
        let t = self.table(table)?;
        let key = t.parse_key(key)?;
        let mut expr = Expr::default();
        let cond = condition
            .as_ref()
            .map(|c| expr.condition(&t, c))
            .transpose()?;
        self.client
            .delete_item()
            .table_name(&t.physical)
            .set_key(Some(key.attrs.clone()))
            .set_condition_expression(cond)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .send()
            .await
            .map_err(|e| {
                write_error(&t, &key, condition.as_ref(), sdk(&t.what("DeleteItem"), e))
            })?;
        Ok(())
    }

    async fn query(
        &self,
        table: &str,
        partition: &Value,
        sort_prefix: Option<&str>,
        limit: u32,
        start_after: Option<&Value>,
    ) -> Result<Page, CapError> {
        let t = self.table(table)?;
        let pk_name = &t.def.partition_key;
        let pk = t.schema.query_partition::<AvKeys>(partition)?;
        let prefix = t.schema.query_prefix(sort_prefix)?;
        // Where the previous page ended: a key object (the `next` of a
        // page) or a bare sort key value.
        let mut start = match start_after {
            None => None,
            Some(after) => match (
                t.schema.query_start_after::<AvKeys>(after)?,
                &t.def.sort_key,
            ) {
                (Some(sk), Some(sk_name)) => Some(Item::from([
                    (pk_name.clone(), pk.clone()),
                    (sk_name.clone(), sk),
                ])),
                // One item per partition: nothing comes after it.
                _ => return Ok(Page::default()),
            },
        };

        let mut expr = Expr::default();
        let mut condition = format!(
            "{} = {}",
            expr.name("#pk".into(), pk_name),
            expr.value(":pk".into(), pk)
        );
        if let (Some(p), Some(sk_name)) = (prefix, &t.def.sort_key) {
            condition.push_str(&format!(
                " AND begins_with({}, {})",
                expr.name("#sk".into(), sk_name),
                expr.value(":prefix".into(), AttributeValue::S(p.to_string()))
            ));
        }
        // One more than a page tells whether another page follows.
        let limit = limit.max(1) as usize;
        let mut items: Vec<Value> = Vec::new();
        loop {
            let want = i32::try_from(limit + 1 - items.len()).unwrap_or(i32::MAX);
            let out = self
                .client
                .query()
                .table_name(&t.physical)
                .key_condition_expression(&condition)
                .set_expression_attribute_names(expr.names())
                .set_expression_attribute_values(expr.values())
                .set_exclusive_start_key(start.take())
                .consistent_read(true)
                .limit(want)
                .send()
                .await
                .map_err(|e| sdk(&t.what("Query"), e))?;
            for item in out.items.unwrap_or_default() {
                items.push(from_item(table, item)?);
            }
            start = out.last_evaluated_key.filter(|k| !k.is_empty());
            if items.len() > limit || start.is_none() {
                break;
            }
        }
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|item| t.schema.key_of(item))
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn batch_write(
        &self,
        table: &str,
        writes: Vec<WriteOp>,
    ) -> Result<Vec<Result<(), CapError>>, CapError> {
        let t = self.table(table)?;
        let mut results: Vec<Option<Result<(), CapError>>> = vec![None; writes.len()];
        // Malformed writes fail alone.
        let mut requests = Vec::with_capacity(writes.len());
        for (i, w) in writes.into_iter().enumerate() {
            let request = match w {
                WriteOp::Put(item) => t.item_key(&item).and_then(|k| {
                    let put = PutRequest::builder()
                        .set_item(Some(to_item(table, &item)?))
                        .build()
                        .map_err(|e| CapError::Fault(format!("PutRequest: {e}")))?;
                    Ok((k, WriteRequest::builder().put_request(put).build()))
                }),
                WriteOp::Delete(key) => t.parse_key(&key).and_then(|k| {
                    let delete = DeleteRequest::builder()
                        .set_key(Some(k.attrs.clone()))
                        .build()
                        .map_err(|e| CapError::Fault(format!("DeleteRequest: {e}")))?;
                    Ok((k, WriteRequest::builder().delete_request(delete).build()))
                }),
            };
            match request {
                Ok((k, w)) => requests.push((i, (identity(t.def, &k.attrs), w))),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        // DynamoDB refuses a key twice in one request: a repeated key
        // starts the next chunk, so writes to one key apply in order.
        let chunks = chunks::split(requests, WRITE_CHUNK, usize::MAX, |_| 0, |a, b| a.0 == b.0);
        let t = &t;
        chunks::send(chunks, &mut results, |chunk| self.write_chunk(t, chunk)).await?;
        Ok(chunks::finish(results, &t.what("BatchWriteItem")))
    }

    /// Up to [`MANY_IN_FLIGHT`] `PutItem` calls at once; puts to one key
    /// run one after another, in order.
    async fn put_many(
        &self,
        table: &str,
        puts: Vec<PutItem>,
    ) -> Result<Vec<Result<(), CapError>>, CapError> {
        let t = self.table(table)?;
        let lanes = lanes(puts, |p| key_identity(t.def, &p.item));
        many(lanes, |p| self.put(table, p.item, p.condition)).await
    }

    /// Up to [`MANY_IN_FLIGHT`] `UpdateItem` calls at once; updates of one
    /// key run one after another, in order.
    async fn update_many(
        &self,
        table: &str,
        updates: Vec<UpdateItem>,
    ) -> Result<Vec<Result<Value, CapError>>, CapError> {
        let t = self.table(table)?;
        let lanes = lanes(updates, |u| key_identity(t.def, &u.key));
        many(lanes, |u| async move {
            self.update(table, &u.key, u.set, &u.remove, u.condition)
                .await
        })
        .await
    }

    /// One `TransactWriteItems`. A cancellation by conditions answers
    /// their indexes; one by a conflicting transaction is sent again
    /// after a backoff, then answered `unavailable`.
    async fn transact_write(
        &self,
        table: &str,
        items: Vec<TransactItem>,
    ) -> Result<(), TransactError> {
        let t = self.table(table)?;
        let keys = t.schema.transact_keys::<AvKeys>(&items)?;
        let requests = keys
            .into_iter()
            .zip(items)
            .map(|(k, item)| self.transact_item(&t, t.key(k), item))
            .collect::<Result<Vec<_>, CapError>>()?;
        let what = t.what("TransactWriteItems");
        let mut backoff = Unprocessed::new();
        loop {
            let err = match self
                .client
                .transact_write_items()
                .set_transact_items(Some(requests.clone()))
                .send()
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            let reasons: Vec<Option<String>> = match &err {
                aws_sdk_dynamodb::error::SdkError::ServiceError(service) => match service.err() {
                    TransactWriteItemsError::TransactionCanceledException(c) => c
                        .cancellation_reasons()
                        .iter()
                        .map(|r| r.code().map(str::to_string))
                        .collect(),
                    _ => Vec::new(),
                },
                _ => Vec::new(),
            };
            let failed: Vec<u32> = reasons
                .iter()
                .enumerate()
                .filter(|(_, code)| code.as_deref() == Some("ConditionalCheckFailed"))
                .map(|(i, _)| u32::try_from(i).unwrap_or(u32::MAX))
                .collect();
            if !failed.is_empty() {
                return Err(TransactError::Cancelled(failed));
            }
            let conflict = reasons
                .iter()
                .any(|code| code.as_deref() == Some("TransactionConflict"));
            if conflict && backoff.wait().await {
                continue;
            }
            let reasons = reasons
                .iter()
                .flatten()
                .filter(|c| c.as_str() != "None")
                .cloned()
                .collect::<Vec<_>>();
            return Err(TransactError::Failed(match sdk(&what, err) {
                CapError::Invalid(m)
                    if reasons
                        .iter()
                        .any(|r| r.contains("Throughput") || r.contains("Throttl")) =>
                {
                    CapError::Throttled(m)
                }
                CapError::Invalid(m) if conflict => CapError::Unavailable(m),
                other => other,
            }));
        }
    }
}

impl DynamoTables {
    /// One `TransactWriteItems` item.
    fn transact_item(
        &self,
        t: &Table<'_>,
        key: Key,
        item: TransactItem,
    ) -> Result<TransactWriteItem, CapError> {
        let mut expr = Expr::default();
        let cond = item.condition().map(|c| expr.condition(t, c)).transpose()?;
        let built = |e: aws_sdk_dynamodb::error::BuildError| {
            CapError::Fault(format!("TransactWriteItems item: {e}"))
        };
        // Every kind of item takes its table, condition and expression
        // attributes alike.
        macro_rules! finish {
            ($builder:expr) => {
                $builder
                    .table_name(&t.physical)
                    .set_condition_expression(cond)
                    .set_expression_attribute_names(expr.names())
                    .set_expression_attribute_values(expr.values())
                    .build()
                    .map_err(built)?
            };
        }
        let out = TransactWriteItem::builder();
        Ok(match item {
            TransactItem::Put(p) => out
                .put(finish!(
                    Put::builder().set_item(Some(to_item(t.name, &p.item)?))
                ))
                .build(),
            TransactItem::Update(u) => {
                // `KeySchema::transact_keys` refused an update changing nothing.
                let update = expr.update(&u.set, &u.add, &u.remove)?.ok_or_else(|| {
                    CapError::Invalid("an update in a transaction must change something".into())
                })?;
                out.update(finish!(Update::builder()
                    .set_key(Some(key.attrs))
                    .update_expression(update)))
                    .build()
            }
            TransactItem::Delete { .. } => out
                .delete(finish!(Delete::builder().set_key(Some(key.attrs))))
                .build(),
            TransactItem::Check { .. } => out
                .condition_check(finish!(ConditionCheck::builder().set_key(Some(key.attrs))))
                .build(),
        })
    }
}

/// The key of an item or key value as text (missing attributes included,
/// so that malformed items each get their own lane or share one: either
/// way their calls fail alone).
fn key_identity(def: &TableDef, value: &Value) -> String {
    let part = |name: &Option<&String>| {
        name.and_then(|n| value.get(n.as_str()))
            .map(Value::to_string)
            .unwrap_or_default()
    };
    format!(
        "{}\u{0}{}",
        part(&Some(&def.partition_key)),
        part(&def.sort_key.as_ref())
    )
}

/// Splits `items` into lanes of one key each (first appearance order),
/// every item with its index.
fn lanes<T>(items: Vec<T>, key: impl Fn(&T) -> String) -> Vec<Vec<(usize, T)>> {
    let mut by_key: HashMap<String, usize> = HashMap::new();
    let mut lanes: Vec<Vec<(usize, T)>> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let lane = *by_key.entry(key(&item)).or_insert_with(|| {
            lanes.push(Vec::new());
            lanes.len() - 1
        });
        lanes[lane].push((i, item));
    }
    lanes
}

/// Runs the lanes side by side (at most [`MANY_IN_FLIGHT`] at once), each
/// lane's calls in order; the results in the items' order. A `Fault`
/// fails the whole call, as the trait's one-by-one default does.
async fn many<T, R, F, Fut>(
    lanes: Vec<Vec<(usize, T)>>,
    call: F,
) -> Result<Vec<Result<R, CapError>>, CapError>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = Result<R, CapError>>,
{
    use futures::stream::{self, StreamExt};
    let count = lanes.iter().map(Vec::len).sum();
    let call = &call;
    let done: Vec<Vec<(usize, Result<R, CapError>)>> = stream::iter(lanes)
        .map(|lane| async move {
            let mut out = Vec::with_capacity(lane.len());
            for (i, item) in lane {
                out.push((i, call(item).await));
            }
            out
        })
        .buffer_unordered(MANY_IN_FLIGHT)
        .collect()
        .await;
    let mut results: Vec<Option<Result<R, CapError>>> = (0..count).map(|_| None).collect();
    for (i, result) in done.into_iter().flatten() {
        if let Err(e @ CapError::Fault(_)) = result {
            return Err(e);
        }
        results[i] = Some(result);
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(CapError::Fault("a write had no result".into()))))
        .collect())
}
