//! In-memory fakes of the capabilities for a worker's native tests (feature
//! `fakes`).
//!
//! [`Fakes`] is one [`Backend`](crate::native::Backend): tables with the
//! host's semantics (keys by a key schema, conditions, `update` creating
//! absent items, prefix queries with a page cap and a key cursor), queues
//! that keep what is sent, services answered by the test's responders,
//! settings, and a record of every call ([`Call`]). A test builds it,
//! [`install`](Fakes::install)s it on its thread, runs the worker's logic
//! (which calls `usher_sdk::table::*` and the others as it does in a
//! component) and inspects the record and the state:
//!
//! ```
//! use usher_sdk::fakes::{Call, Fakes};
//! use usher_sdk::{json::json, table};
//!
//! let fakes = Fakes::new().with_item("t", json!({"PK": "a", "SK": "x", "n": 1}));
//! let _installed = fakes.install();
//! table::update::<usher_sdk::Value>("t", &json!({"PK": "a", "SK": "x"}), &json!({"n": 2}), &[], None).unwrap();
//! assert_eq!(fakes.item("t", &json!({"PK": "a", "SK": "x"})).unwrap()["n"], 2);
//! assert_eq!(fakes.count("update"), 1);
//! ```
//!
//! Failures are injected with [`Fakes::intercept`] (sees every single
//! operation before it runs, may change the state and may fail it),
//! [`Fakes::on_queue`] (answers sends) and [`Fakes::on_service`] (answers a
//! service's requests).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use serde_json::{Map, Value};

use crate::native::{self, Backend, Installed};
use crate::queue::Outgoing;
use crate::services::{Request, Response};
use crate::table::{Condition, Page, PutItem, TransactItem, UpdateItem, Write};
use crate::{Error, Result};

/// One capability call as the worker made it (the `…_many` and batch calls
/// once, with all their elements). [`Fakes::intercept`] hooks see single
/// operations instead: a `put_many`'s puts one by one as [`Call::Put`], an
/// `update_many`'s as [`Call::Update`], a `call_many`'s requests as
/// [`Call::Service`].
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// `config::get`.
    Config {
        /// The setting.
        key: String,
    },
    /// `table::get`.
    Get {
        /// The table.
        table: String,
        /// The key.
        key: Value,
    },
    /// `table::batch_get`.
    BatchGet {
        /// The table.
        table: String,
        /// The keys.
        keys: Vec<Value>,
    },
    /// `table::put`.
    Put {
        /// The table.
        table: String,
        /// The item.
        item: Value,
        /// Its condition.
        condition: Option<Condition>,
    },
    /// `table::update`.
    Update {
        /// The table.
        table: String,
        /// The key.
        key: Value,
        /// The attributes set.
        set: Value,
        /// The attributes removed.
        remove: Vec<String>,
        /// Its condition.
        condition: Option<Condition>,
    },
    /// `table::delete`.
    Delete {
        /// The table.
        table: String,
        /// The key.
        key: Value,
        /// Its condition.
        condition: Option<Condition>,
    },
    /// `table::query`.
    Query {
        /// The table.
        table: String,
        /// The partition.
        partition: Value,
        /// The sort key prefix.
        sort_prefix: Option<String>,
        /// The limit asked.
        limit: Option<u32>,
        /// Where the previous page ended.
        start_after: Option<Value>,
    },
    /// `table::batch_write`.
    BatchWrite {
        /// The table.
        table: String,
        /// The writes.
        writes: Vec<Write>,
    },
    /// `table::put_many`.
    PutMany {
        /// The table.
        table: String,
        /// The puts.
        puts: Vec<PutItem>,
    },
    /// `table::update_many`.
    UpdateMany {
        /// The table.
        table: String,
        /// The updates.
        updates: Vec<UpdateItem>,
    },
    /// `table::transact_write`.
    TransactWrite {
        /// The table.
        table: String,
        /// The items.
        items: Vec<TransactItem>,
    },
    /// `queue::send_batch`.
    Send {
        /// The queue.
        queue: String,
        /// The messages.
        messages: Vec<Outgoing>,
    },
    /// `services::call`.
    Service(Request),
    /// `services::call_many`.
    ServiceMany(Vec<Request>),
}

impl Call {
    /// The SDK function's name: `get`, `batch_get`, `put`, `update`,
    /// `delete`, `query`, `batch_write`, `put_many`, `update_many`, `transact_write`,
    /// `send_batch`, `call`, `call_many`, `config`.
    pub fn name(&self) -> &'static str {
        match self {
            Call::Config { .. } => "config",
            Call::Get { .. } => "get",
            Call::BatchGet { .. } => "batch_get",
            Call::Put { .. } => "put",
            Call::Update { .. } => "update",
            Call::Delete { .. } => "delete",
            Call::Query { .. } => "query",
            Call::BatchWrite { .. } => "batch_write",
            Call::PutMany { .. } => "put_many",
            Call::UpdateMany { .. } => "update_many",
            Call::TransactWrite { .. } => "transact_write",
            Call::Send { .. } => "send_batch",
            Call::Service(_) => "call",
            Call::ServiceMany(_) => "call_many",
        }
    }
}

/// A table's key attributes.
#[derive(Debug, Clone)]
struct KeySchema {
    partition: String,
    sort: Option<String>,
}

impl Default for KeySchema {
    fn default() -> Self {
        KeySchema {
            partition: "PK".into(),
            sort: Some("SK".into()),
        }
    }
}

type Key = (String, String);

/// The fake tables: what [`Fakes::intercept`] hooks may read and change.
#[derive(Default)]
pub struct Tables {
    schemas: BTreeMap<String, KeySchema>,
    items: BTreeMap<String, BTreeMap<Key, Value>>,
}

fn part(table: &str, name: &str, value: Option<&Value>) -> Result<String> {
    match value {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(Error::Invalid(format!(
            "the key for table `{table}` needs the attribute `{name}` (a string or a number)"
        ))),
    }
}

impl Tables {
    fn schema(&self, table: &str) -> KeySchema {
        self.schemas.get(table).cloned().unwrap_or_default()
    }

    fn key(&self, table: &str, value: &Value) -> Result<Key> {
        let schema = self.schema(table);
        let pk = part(table, &schema.partition, value.get(&schema.partition))?;
        let sk = match &schema.sort {
            Some(name) => part(table, name, value.get(name))?,
            None => String::new(),
        };
        Ok((pk, sk))
    }

    /// The item with this key (any object holding the key attributes).
    pub fn get(&self, table: &str, key: &Value) -> Option<&Value> {
        let key = self.key(table, key).ok()?;
        self.items.get(table)?.get(&key)
    }

    /// Stores an item (replacing the one with its key). An item without the
    /// key attributes is ignored.
    pub fn insert(&mut self, table: &str, item: Value) {
        if let Ok(key) = self.key(table, &item) {
            self.items
                .entry(table.to_string())
                .or_default()
                .insert(key, item);
        }
    }

    /// Removes the item with this key; it, when there was one.
    pub fn remove(&mut self, table: &str, key: &Value) -> Option<Value> {
        let key = self.key(table, key).ok()?;
        self.items.get_mut(table)?.remove(&key)
    }

    /// Every item of a table, in key order.
    pub fn items(&self, table: &str) -> Vec<Value> {
        self.items
            .get(table)
            .map(|items| items.values().cloned().collect())
            .unwrap_or_default()
    }

    fn check(&self, table: &str, key: &Key, condition: Option<&Condition>) -> Result<()> {
        let current = self.items.get(table).and_then(|items| items.get(key));
        let holds = match condition {
            None => true,
            Some(Condition::NotExists) => current.is_none(),
            Some(Condition::Exists) => current.is_some(),
            Some(Condition::AttributeEquals(name, v)) => {
                current.and_then(|i| i.get(name)) == Some(v)
            }
        };
        if holds {
            Ok(())
        } else {
            Err(Error::ConditionFailed(format!("{condition:?}")))
        }
    }

    fn put(&mut self, table: &str, item: &Value, condition: Option<&Condition>) -> Result<()> {
        if !item.is_object() {
            return Err(Error::Invalid("an item must be a JSON object".into()));
        }
        let key = self.key(table, item)?;
        self.check(table, &key, condition)?;
        self.items
            .entry(table.to_string())
            .or_default()
            .insert(key, item.clone());
        Ok(())
    }

    fn update(
        &mut self,
        table: &str,
        key: &Value,
        set: &Value,
        remove: &[String],
        condition: Option<&Condition>,
    ) -> Result<Value> {
        let k = self.key(table, key)?;
        self.check(table, &k, condition)?;
        let schema = self.schema(table);
        let item = self
            .items
            .entry(table.to_string())
            .or_default()
            .entry(k.clone())
            .or_insert_with(|| {
                let mut item = Map::new();
                item.insert(schema.partition.clone(), Value::String(k.0.clone()));
                if let Some(sort) = &schema.sort {
                    item.insert(sort.clone(), Value::String(k.1.clone()));
                }
                Value::Object(item)
            });
        if let Value::Object(item) = item {
            for (name, value) in set.as_object().into_iter().flatten() {
                item.insert(name.clone(), value.clone());
            }
            for name in remove {
                item.remove(name);
            }
        }
        Ok(item.clone())
    }

    /// A transaction: every condition checked first, then every write.
    fn transact(
        &mut self,
        table: &str,
        items: &[TransactItem],
    ) -> Result<std::result::Result<(), Vec<u32>>> {
        if items.is_empty() || items.len() > crate::table::MAX_TRANSACT_ITEMS {
            return Err(Error::Invalid(format!(
                "a transaction carries 1 to {} items, got {}",
                crate::table::MAX_TRANSACT_ITEMS,
                items.len()
            )));
        }
        let mut keys = Vec::with_capacity(items.len());
        let mut failed = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let (key, condition) = match item {
                TransactItem::Put(p) => (self.key(table, &p.item)?, p.condition.as_ref()),
                TransactItem::Update(u) => (self.key(table, &u.key)?, u.condition.as_ref()),
                TransactItem::Delete { key, condition } => {
                    (self.key(table, key)?, condition.as_ref())
                }
                TransactItem::Check { key, condition } => (self.key(table, key)?, Some(condition)),
            };
            if keys.contains(&key) {
                return Err(Error::Invalid(format!(
                    "items[{i}] writes an item an earlier item writes"
                )));
            }
            if self.check(table, &key, condition).is_err() {
                failed.push(u32::try_from(i).unwrap_or(u32::MAX));
            }
            keys.push(key);
        }
        if !failed.is_empty() {
            return Ok(Err(failed));
        }
        for item in items {
            match item {
                TransactItem::Put(p) => self.put(table, &p.item, None)?,
                TransactItem::Update(u) => {
                    let after = self.update(table, &u.key, &u.set, &u.remove, None)?;
                    let mut after = after.as_object().cloned().unwrap_or_default();
                    for (name, delta) in u.add.as_object().into_iter().flatten() {
                        let current = after.get(name).and_then(Value::as_i64).unwrap_or(0);
                        let delta = delta.as_i64().ok_or_else(|| {
                            Error::Invalid(format!("add `{name}` must be an integer here"))
                        })?;
                        after.insert(name.clone(), Value::from(current + delta));
                    }
                    self.put(table, &Value::Object(after), None)?;
                }
                TransactItem::Delete { key, .. } => self.delete(table, key, None)?,
                TransactItem::Check { .. } => {}
            }
        }
        Ok(Ok(()))
    }

    fn delete(&mut self, table: &str, key: &Value, condition: Option<&Condition>) -> Result<()> {
        let k = self.key(table, key)?;
        self.check(table, &k, condition)?;
        if let Some(items) = self.items.get_mut(table) {
            items.remove(&k);
        }
        Ok(())
    }

    fn query(
        &self,
        table: &str,
        partition: &Value,
        sort_prefix: Option<&str>,
        limit: usize,
        start_after: Option<&Value>,
    ) -> Result<Page> {
        let schema = self.schema(table);
        let pk = match partition {
            Value::Object(_) => part(table, &schema.partition, partition.get(&schema.partition))?,
            other => part(table, &schema.partition, Some(other))?,
        };
        let after = match (start_after, &schema.sort) {
            (None, _) | (_, None) => None,
            (Some(Value::Object(o)), Some(name)) => Some(part(table, name, o.get(name))?),
            (Some(v), Some(name)) => Some(part(table, name, Some(v))?),
        };
        let prefix = sort_prefix.unwrap_or("");
        let matching: Vec<(&Key, &Value)> = self
            .items
            .get(table)
            .into_iter()
            .flatten()
            .filter(|((p, s), _)| *p == pk && s.starts_with(prefix))
            .filter(|((_, s), _)| after.as_ref().is_none_or(|a| s > a))
            .collect();
        let limit = limit.max(1);
        let items: Vec<Value> = matching
            .iter()
            .take(limit)
            .map(|(_, v)| (*v).clone())
            .collect();
        let next = if matching.len() > limit {
            matching.get(limit - 1).map(|((p, s), _)| {
                let mut key = Map::new();
                key.insert(schema.partition.clone(), Value::String(p.clone()));
                if let Some(sort) = &schema.sort {
                    key.insert(sort.clone(), Value::String(s.clone()));
                }
                Value::Object(key)
            })
        } else {
            None
        };
        Ok(Page { items, next })
    }
}

type Hook = Box<dyn FnMut(&Call, &mut Tables) -> Option<Error>>;
type QueueResponder = Box<dyn FnMut(&str, &[Outgoing]) -> Result<Vec<Result<String>>>>;
type ServiceResponder = Box<dyn FnMut(&Request) -> Result<Response>>;

#[derive(Default)]
struct State {
    tables: Tables,
    page_cap: Option<u32>,
    settings: Map<String, Value>,
    queued: BTreeMap<String, Vec<Outgoing>>,
    on_queue: Option<QueueResponder>,
    services: BTreeMap<String, ServiceResponder>,
    hooks: Vec<Hook>,
    calls: Vec<Call>,
}

impl State {
    /// Runs the hooks on one operation: the first error they give.
    fn intercept(&mut self, call: &Call) -> Result<()> {
        let State { hooks, tables, .. } = self;
        for hook in hooks.iter_mut() {
            if let Some(e) = hook(call, tables) {
                return Err(e);
            }
        }
        Ok(())
    }

    fn put(&mut self, table: &str, item: &Value, condition: Option<&Condition>) -> Result<()> {
        self.intercept(&Call::Put {
            table: table.into(),
            item: item.clone(),
            condition: condition.cloned(),
        })?;
        self.tables.put(table, item, condition)
    }

    fn update(
        &mut self,
        table: &str,
        key: &Value,
        set: &Value,
        remove: &[String],
        condition: Option<&Condition>,
    ) -> Result<Value> {
        self.intercept(&Call::Update {
            table: table.into(),
            key: key.clone(),
            set: set.clone(),
            remove: remove.to_vec(),
            condition: condition.cloned(),
        })?;
        self.tables.update(table, key, set, remove, condition)
    }

    fn call(&mut self, request: &Request) -> Result<Response> {
        self.intercept(&Call::Service(request.clone()))?;
        match self.services.get_mut(&request.service) {
            Some(respond) => respond(request),
            None => Err(Error::NotFound(format!(
                "service `{}` (no responder in the fakes)",
                request.service
            ))),
        }
    }
}

/// The in-memory fakes; see the [module docs](self). Cloning shares the
/// state: keep a clone to inspect what the installed one did.
#[derive(Clone, Default)]
pub struct Fakes(Rc<RefCell<State>>);

impl Fakes {
    /// Empty tables and queues, no settings, no services.
    pub fn new() -> Fakes {
        Fakes::default()
    }

    /// Installs these fakes for the current thread's capability calls until
    /// the guard is dropped.
    #[must_use = "the fakes are uninstalled when the guard is dropped"]
    pub fn install(&self) -> Installed {
        native::install(self.clone())
    }

    /// The key attributes of `table` (default `PK` and sort key `SK`).
    pub fn key_schema(self, table: &str, partition: &str, sort: Option<&str>) -> Fakes {
        self.0.borrow_mut().tables.schemas.insert(
            table.to_string(),
            KeySchema {
                partition: partition.to_string(),
                sort: sort.map(str::to_string),
            },
        );
        self
    }

    /// Stores an item in `table`.
    pub fn with_item(self, table: &str, item: Value) -> Fakes {
        self.0.borrow_mut().tables.insert(table, item);
        self
    }

    /// At most this many items per query page (the host caps at 1000, the
    /// default here too).
    pub fn page_cap(self, cap: u32) -> Fakes {
        self.0.borrow_mut().page_cap = Some(cap);
        self
    }

    /// A setting, as the registry's `settings` would give it.
    pub fn setting(self, key: &str, value: Value) -> Fakes {
        self.0.borrow_mut().settings.insert(key.to_string(), value);
        self
    }

    /// Answers the requests to `service` (without a responder a call fails
    /// with `not-found`).
    pub fn on_service(
        self,
        service: &str,
        respond: impl FnMut(&Request) -> Result<Response> + 'static,
    ) -> Fakes {
        self.0
            .borrow_mut()
            .services
            .insert(service.to_string(), Box::new(respond));
        self
    }

    /// Answers every `send_batch` instead of the default (every message
    /// sent, ids `<queue>-<n>`, kept for [`Fakes::queued`]).
    pub fn on_queue(
        self,
        respond: impl FnMut(&str, &[Outgoing]) -> Result<Vec<Result<String>>> + 'static,
    ) -> Fakes {
        self.0.borrow_mut().on_queue = Some(Box::new(respond));
        self
    }

    /// Runs `hook` before every single operation (see [`Call`]): it may
    /// change the tables (an item that changes under the worker's feet) and
    /// fail the operation by returning an error.
    pub fn intercept(
        self,
        hook: impl FnMut(&Call, &mut Tables) -> Option<Error> + 'static,
    ) -> Fakes {
        self.0.borrow_mut().hooks.push(Box::new(hook));
        self
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.0.borrow().calls.clone()
    }

    /// How many calls of this [`Call::name`] were made.
    pub fn count(&self, name: &str) -> usize {
        self.0
            .borrow()
            .calls
            .iter()
            .filter(|c| c.name() == name)
            .count()
    }

    /// Every service request so far (those of `call` and `call_many`), in order.
    pub fn requests(&self) -> Vec<Request> {
        self.0
            .borrow()
            .calls
            .iter()
            .flat_map(|c| match c {
                Call::Service(r) => vec![r.clone()],
                Call::ServiceMany(rs) => rs.clone(),
                _ => Vec::new(),
            })
            .collect()
    }

    /// Every `send_batch` so far: queue and messages, in order (failed ones too).
    pub fn sends(&self) -> Vec<(String, Vec<Outgoing>)> {
        self.0
            .borrow()
            .calls
            .iter()
            .filter_map(|c| match c {
                Call::Send { queue, messages } => Some((queue.clone(), messages.clone())),
                _ => None,
            })
            .collect()
    }

    /// The messages the default queue answer took for `queue`.
    pub fn queued(&self, queue: &str) -> Vec<Outgoing> {
        self.0
            .borrow()
            .queued
            .get(queue)
            .cloned()
            .unwrap_or_default()
    }

    /// The item of `table` with this key.
    pub fn item(&self, table: &str, key: &Value) -> Option<Value> {
        self.0.borrow().tables.get(table, key).cloned()
    }

    /// Every item of `table`, in key order.
    pub fn items(&self, table: &str) -> Vec<Value> {
        self.0.borrow().tables.items(table)
    }

    fn record(&self, call: Call) -> std::cell::RefMut<'_, State> {
        let mut state = self.0.borrow_mut();
        state.calls.push(call);
        state
    }
}

/// A response with this status and JSON body (`content-type: application/json`).
pub fn json_response(status: u16, body: &Value) -> Response {
    Response {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string(),
    }
}

/// A response with this status and an empty body.
pub fn status(status: u16) -> Response {
    Response {
        status,
        headers: Vec::new(),
        body: String::new(),
    }
}

impl Backend for Fakes {
    fn config_get(&mut self, key: &str) -> Result<Option<Value>> {
        let mut s = self.record(Call::Config { key: key.into() });
        s.intercept(&Call::Config { key: key.into() })?;
        Ok(s.settings.get(key).cloned())
    }

    fn config_all(&mut self) -> Result<Value> {
        Ok(Value::Object(self.0.borrow().settings.clone()))
    }

    fn table_get(&mut self, table: &str, key: &Value) -> Result<Option<Value>> {
        let call = Call::Get {
            table: table.into(),
            key: key.clone(),
        };
        let mut s = self.record(call.clone());
        s.intercept(&call)?;
        s.tables.key(table, key)?;
        Ok(s.tables.get(table, key).cloned())
    }

    fn table_batch_get(&mut self, table: &str, keys: &[Value]) -> Result<Vec<Option<Value>>> {
        let call = Call::BatchGet {
            table: table.into(),
            keys: keys.to_vec(),
        };
        let mut s = self.record(call.clone());
        s.intercept(&call)?;
        keys.iter()
            .map(|k| {
                s.tables.key(table, k)?;
                Ok(s.tables.get(table, k).cloned())
            })
            .collect()
    }

    fn table_put(
        &mut self,
        table: &str,
        item: &Value,
        condition: Option<&Condition>,
    ) -> Result<()> {
        let mut s = self.record(Call::Put {
            table: table.into(),
            item: item.clone(),
            condition: condition.cloned(),
        });
        s.put(table, item, condition)
    }

    fn table_update(
        &mut self,
        table: &str,
        key: &Value,
        set: &Value,
        remove: &[String],
        condition: Option<&Condition>,
    ) -> Result<Value> {
        let mut s = self.record(Call::Update {
            table: table.into(),
            key: key.clone(),
            set: set.clone(),
            remove: remove.to_vec(),
            condition: condition.cloned(),
        });
        s.update(table, key, set, remove, condition)
    }

    fn table_delete(
        &mut self,
        table: &str,
        key: &Value,
        condition: Option<&Condition>,
    ) -> Result<()> {
        let call = Call::Delete {
            table: table.into(),
            key: key.clone(),
            condition: condition.cloned(),
        };
        let mut s = self.record(call.clone());
        s.intercept(&call)?;
        s.tables.delete(table, key, condition)
    }

    fn table_query(
        &mut self,
        table: &str,
        partition: &Value,
        sort_prefix: Option<&str>,
        limit: Option<u32>,
        start_after: Option<&Value>,
    ) -> Result<Page> {
        let call = Call::Query {
            table: table.into(),
            partition: partition.clone(),
            sort_prefix: sort_prefix.map(str::to_string),
            limit,
            start_after: start_after.cloned(),
        };
        let mut s = self.record(call.clone());
        s.intercept(&call)?;
        let cap = s.page_cap.unwrap_or(1000);
        let limit = limit.unwrap_or(cap).min(cap) as usize;
        s.tables
            .query(table, partition, sort_prefix, limit, start_after)
    }

    fn table_batch_write(&mut self, table: &str, writes: &[Write]) -> Result<Vec<Result<()>>> {
        let call = Call::BatchWrite {
            table: table.into(),
            writes: writes.to_vec(),
        };
        let mut s = self.record(call.clone());
        s.intercept(&call)?;
        Ok(writes
            .iter()
            .map(|w| match w {
                Write::Put(item) => s.tables.put(table, item, None),
                Write::Delete(key) => s.tables.delete(table, key, None),
            })
            .collect())
    }

    fn table_put_many(&mut self, table: &str, puts: &[PutItem]) -> Result<Vec<Result<()>>> {
        let mut s = self.record(Call::PutMany {
            table: table.into(),
            puts: puts.to_vec(),
        });
        Ok(puts
            .iter()
            .map(|p| s.put(table, &p.item, p.condition.as_ref()))
            .collect())
    }

    fn table_update_many(
        &mut self,
        table: &str,
        updates: &[UpdateItem],
    ) -> Result<Vec<Result<Value>>> {
        let mut s = self.record(Call::UpdateMany {
            table: table.into(),
            updates: updates.to_vec(),
        });
        Ok(updates
            .iter()
            .map(|u| s.update(table, &u.key, &u.set, &u.remove, u.condition.as_ref()))
            .collect())
    }

    fn table_transact_write(
        &mut self,
        table: &str,
        items: &[TransactItem],
    ) -> Result<std::result::Result<(), Vec<u32>>> {
        let call = Call::TransactWrite {
            table: table.into(),
            items: items.to_vec(),
        };
        let mut s = self.record(call.clone());
        s.intercept(&call)?;
        s.tables.transact(table, items)
    }

    fn queue_send_batch(
        &mut self,
        queue: &str,
        messages: &[Outgoing],
    ) -> Result<Vec<Result<String>>> {
        let call = Call::Send {
            queue: queue.into(),
            messages: messages.to_vec(),
        };
        let mut s = self.record(call.clone());
        s.intercept(&call)?;
        if let Some(respond) = s.on_queue.as_mut() {
            return respond(queue, messages);
        }
        let queued = s.queued.entry(queue.to_string()).or_default();
        Ok(messages
            .iter()
            .map(|m| {
                queued.push(m.clone());
                Ok(format!("{queue}-{}", queued.len()))
            })
            .collect())
    }

    fn services_call(&mut self, request: &Request) -> Result<Response> {
        let mut s = self.record(Call::Service(request.clone()));
        s.call(request)
    }

    fn services_call_many(&mut self, requests: &[Request]) -> Result<Vec<Result<Response>>> {
        let mut s = self.record(Call::ServiceMany(requests.to_vec()));
        Ok(requests.iter().map(|r| s.call(r)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::{self, Method};
    use crate::{config, queue, table};
    use serde_json::json;

    fn key(pk: &str, sk: &str) -> Value {
        json!({"PK": pk, "SK": sk})
    }

    #[test]
    fn tables_keep_the_hosts_semantics() {
        let fakes = Fakes::new().with_item("t", json!({"PK": "a", "SK": "1", "v": 1}));
        let _installed = fakes.install();
        // Conditions.
        let err = table::put(
            "t",
            &json!({"PK": "a", "SK": "1"}),
            Some(Condition::NotExists),
        )
        .expect_err("exists");
        assert!(err.is_condition_failed());
        table::put(
            "t",
            &json!({"PK": "a", "SK": "1", "v": 2}),
            Some(Condition::AttributeEquals("v".into(), json!(1))),
        )
        .expect("put");
        // An update creates an absent item, sets and removes attributes.
        let item: Value =
            table::update("t", &key("a", "2"), &json!({"x": 1, "y": 2}), &["y"], None)
                .expect("update");
        assert_eq!(item, json!({"PK": "a", "SK": "2", "x": 1}));
        let err = table::update::<Value>(
            "t",
            &key("a", "3"),
            &json!({}),
            &[],
            Some(Condition::Exists),
        )
        .expect_err("absent");
        assert!(err.is_condition_failed());
        // A key without its attributes is invalid.
        let err = table::get::<Value>("t", &json!({"PK": "a"})).expect_err("no SK");
        assert!(matches!(err, Error::Invalid(_)));
        let items: Vec<Option<Value>> =
            table::batch_get("t", &[key("a", "1"), key("b", "1")]).expect("batch_get");
        assert_eq!(items[0].as_ref().map(|i| i["v"].clone()), Some(json!(2)));
        assert_eq!(items[1], None);
        table::delete("t", &key("a", "2"), None).expect("delete");
        assert_eq!(fakes.items("t").len(), 1);
        assert_eq!(
            fakes.calls().iter().map(Call::name).collect::<Vec<_>>(),
            [
                "put",
                "put",
                "update",
                "update",
                "get",
                "batch_get",
                "delete"
            ]
        );
    }

    #[test]
    fn queries_page_with_a_key_cursor_and_a_cap() {
        let mut fakes = Fakes::new().page_cap(2);
        for sk in ["F#a", "F#b", "F#c", "X#d"] {
            fakes = fakes.with_item("t", json!({"PK": "p", "SK": sk}));
        }
        fakes = fakes.with_item("t", json!({"PK": "q", "SK": "F#z"}));
        let _installed = fakes.install();
        let page: table::Page =
            table::query("t", &json!({"PK": "p"}), Some("F#"), Some(10), None).expect("query");
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.next, Some(key("p", "F#b")));
        let page: table::Page =
            table::query("t", &json!("p"), Some("F#"), None, page.next.as_ref()).expect("query");
        assert_eq!(page.items, vec![key("p", "F#c")]);
        assert_eq!(page.next, None);
    }

    #[test]
    fn many_calls_are_recorded_once_and_intercepted_one_by_one() {
        let fakes = Fakes::new().intercept(|call, tables| match call {
            Call::Put { item, .. } if item["SK"] == "bad" => Some(Error::Throttled("slow".into())),
            Call::Update { key, .. } if key["SK"] == "sneak" => {
                tables.insert("t", json!({"PK": "a", "SK": "sneak", "v": 9}));
                None
            }
            _ => None,
        });
        let _installed = fakes.install();
        let results = table::put_many(
            "t",
            vec![
                table::PutItem {
                    item: key("a", "ok"),
                    condition: None,
                },
                table::PutItem {
                    item: key("a", "bad"),
                    condition: None,
                },
            ],
        )
        .expect("put_many");
        assert!(results[0].is_ok());
        assert!(matches!(results[1], Err(Error::Throttled(_))));
        let results = table::update_many::<Value>(
            "t",
            vec![table::UpdateItem {
                key: key("a", "sneak"),
                set: json!({"w": 1}),
                remove: vec![],
                condition: Some(Condition::NotExists),
            }],
        )
        .expect("update_many");
        assert!(results[0].as_ref().is_err_and(Error::is_condition_failed));
        assert_eq!(fakes.count("put_many"), 1);
        assert_eq!(fakes.count("put"), 0);
        assert_eq!(fakes.count("update_many"), 1);
    }

    #[test]
    fn queues_services_and_settings() {
        let fakes = Fakes::new()
            .setting("queue", json!("q"))
            .on_service("entries", |r| {
                Ok(json_response(
                    if r.path == "/ok" { 200 } else { 503 },
                    &json!({"path": r.path}),
                ))
            });
        let _installed = fakes.install();
        assert_eq!(config::string_or("queue", "x").expect("setting"), "q");
        assert_eq!(config::string_or("other", "x").expect("setting"), "x");
        let ids = queue::send_batch("q", &[queue::Outgoing::new("a"), queue::Outgoing::new("b")])
            .expect("send");
        assert_eq!(
            ids.into_iter().collect::<Result<Vec<_>>>().expect("ids"),
            ["q-1", "q-2"]
        );
        assert_eq!(fakes.queued("q").len(), 2);
        let answers = services::call_many(&[
            Request::new("entries", Method::Get, "/ok"),
            Request::new("entries", Method::Get, "/down"),
            Request::new("nobody", Method::Get, "/"),
        ])
        .expect("call_many");
        assert_eq!(answers[0].as_ref().map(|r| r.status).ok(), Some(200));
        assert_eq!(answers[1].as_ref().map(|r| r.status).ok(), Some(503));
        assert!(matches!(answers[2], Err(Error::NotFound(_))));
        assert_eq!(fakes.requests().len(), 3);
        assert_eq!(fakes.count("call_many"), 1);
        let fakes = Fakes::new().on_queue(|_, _| Err(Error::Denied("q".into())));
        let _installed = fakes.install();
        assert!(queue::send("q", queue::Outgoing::new("a")).is_err());
        assert_eq!(fakes.sends().len(), 1);
    }
}
