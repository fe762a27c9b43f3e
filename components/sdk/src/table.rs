//! DynamoDB-shaped tables (the `table` capability).
//!
//! Items and keys are JSON objects; pass `serde_json::Value` or any
//! `Serialize` type, and read back `Value` or any `DeserializeOwned` type.
//! A key holds the table's partition key attribute and, when it has one,
//! its sort key attribute, e.g. `{"PK": "ENTRY#c#u", "SK": "ENTRY"}`.

use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use crate::wire::{self, Wire};
use crate::{json, Result};

/// A condition a write must satisfy, checked atomically with the write.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// No item with this key exists.
    NotExists,
    /// An item with this key exists.
    Exists,
    /// An item exists and its attribute (first) equals the value (second).
    AttributeEquals(String, Value),
}

impl Condition {
    /// `AttributeEquals` from anything serializable.
    pub fn attribute_equals<T: Serialize + ?Sized>(name: &str, value: &T) -> Result<Condition> {
        Ok(Condition::AttributeEquals(
            name.to_string(),
            json::to_value(value)?,
        ))
    }
}

/// One write of a [`batch_write`].
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Put (create or replace) the item.
    Put(Value),
    /// Delete the item with this key.
    Delete(Value),
}

/// One page of a [`query`].
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T = Value> {
    /// The items, in sort-key order.
    pub items: Vec<T>,
    /// Pass as `start_after` to read the next page; `None` on the last page.
    pub next: Option<Value>,
}

/// Reads one item by key; `None` when it does not exist.
pub fn get<T: DeserializeOwned>(table: &str, key: &(impl Serialize + ?Sized)) -> Result<Option<T>> {
    let key = wire::encode(key)?;
    sys::get(table, &key)?.map(wire::decode).transpose()
}

/// Reads many items by key with one call; one entry per key, in order.
pub fn batch_get<T: DeserializeOwned, K: Serialize>(
    table: &str,
    keys: &[K],
) -> Result<Vec<Option<T>>> {
    let keys = keys.iter().map(wire::encode).collect::<Result<Vec<_>>>()?;
    sys::batch_get(table, &keys)?
        .into_iter()
        .map(|item| item.map(wire::decode).transpose())
        .collect()
}

/// Creates or replaces an item, optionally under a condition.
pub fn put(
    table: &str,
    item: &(impl Serialize + ?Sized),
    condition: Option<Condition>,
) -> Result<()> {
    let item = wire::encode(item)?;
    sys::put(table, &item, condition)
}

/// Sets the attributes of the object `set` and removes the attributes named in
/// `remove` on the item with this key (creating it when absent unless the
/// condition forbids it); returns the item after the update.
pub fn update<T: DeserializeOwned>(
    table: &str,
    key: &(impl Serialize + ?Sized),
    set: &(impl Serialize + ?Sized),
    remove: &[&str],
    condition: Option<Condition>,
) -> Result<T> {
    let key = wire::encode(key)?;
    let set = wire::encode(set)?;
    let remove: Vec<String> = remove.iter().map(|name| (*name).to_string()).collect();
    wire::decode(sys::update(table, &key, &set, &remove, condition)?)
}

/// Deletes the item with this key, optionally under a condition.
pub fn delete(
    table: &str,
    key: &(impl Serialize + ?Sized),
    condition: Option<Condition>,
) -> Result<()> {
    let key = wire::encode(key)?;
    sys::delete(table, &key, condition)
}

/// Items of one partition whose sort key starts with `sort_prefix`, at most
/// `limit` of them (the host caps a page at 1000), after `start_after`.
pub fn query<T: DeserializeOwned>(
    table: &str,
    partition: &(impl Serialize + ?Sized),
    sort_prefix: Option<&str>,
    limit: Option<u32>,
    start_after: Option<&Value>,
) -> Result<Page<T>> {
    let partition = wire::encode(partition)?;
    let start_after = start_after.map(wire::encode).transpose()?;
    let (items, next) = sys::query(table, &partition, sort_prefix, limit, start_after.as_ref())?;
    Ok(Page {
        items: items.into_iter().map(wire::decode).collect::<Result<_>>()?,
        next: next.map(wire::decode).transpose()?,
    })
}

/// Many puts and deletes (the host sends them in chunks of 25 and retries
/// unprocessed items); one result per write, in order.
pub fn batch_write(table: &str, writes: &[Write]) -> Result<Vec<Result<()>>> {
    let writes = writes
        .iter()
        .map(|write| {
            Ok(match write {
                Write::Put(item) => (true, wire::encode(item)?),
                Write::Delete(key) => (false, wire::encode(key)?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    sys::batch_write(table, writes)
}

/// One conditional put of [`put_many`].
#[derive(Debug, Clone, PartialEq)]
pub struct PutItem {
    /// The item.
    pub item: Value,
    /// The condition it is written under.
    pub condition: Option<Condition>,
}

/// One conditional update of [`update_many`].
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateItem {
    /// The item's key.
    pub key: Value,
    /// The attributes to set (a JSON object).
    pub set: Value,
    /// The attributes to remove.
    pub remove: Vec<String>,
    /// The condition it is applied under.
    pub condition: Option<Condition>,
}

/// Many conditional puts in one call; each succeeds or fails on its own (not
/// a transaction). One result per put, in order.
pub fn put_many(table: &str, puts: Vec<PutItem>) -> Result<Vec<Result<()>>> {
    let puts = puts
        .into_iter()
        .map(|p| Ok((wire::encode(&p.item)?, p.condition)))
        .collect::<Result<Vec<_>>>()?;
    sys::put_many(table, puts)
}

/// The JSON documents of one update: key, set, remove, condition.
type UpdateArgs = (Wire, Wire, Vec<String>, Option<Condition>);

/// Many conditional updates in one call, each on its own as [`update`]. One
/// result (the item after the update) per update, in order.
pub fn update_many<T: DeserializeOwned>(
    table: &str,
    updates: Vec<UpdateItem>,
) -> Result<Vec<Result<T>>> {
    let updates = updates
        .into_iter()
        .map(|u| {
            Ok((
                wire::encode(&u.key)?,
                wire::encode(&u.set)?,
                u.remove,
                u.condition,
            ))
        })
        .collect::<Result<Vec<UpdateArgs>>>()?;
    Ok(sys::update_many(table, updates)?
        .into_iter()
        .map(|r| r.and_then(wire::decode))
        .collect())
}

/// An update of a [`transact_write`]: [`UpdateItem`]'s `set` and
/// `remove`, and `add`, a JSON object of numbers added to the item's
/// numeric attributes (an absent attribute counts as 0).
#[derive(Debug, Clone, PartialEq)]
pub struct TransactUpdate {
    /// The item's key.
    pub key: Value,
    /// The attributes to set (a JSON object).
    pub set: Value,
    /// The numbers to add (a JSON object of numbers).
    pub add: Value,
    /// The attributes to remove.
    pub remove: Vec<String>,
    /// The condition it is applied under.
    pub condition: Option<Condition>,
}

/// One write of a [`transact_write`].
#[derive(Debug, Clone, PartialEq)]
pub enum TransactItem {
    /// Create or replace an item, under the condition.
    Put(PutItem),
    /// Update an item, under the condition.
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

/// A [`transact_write`] that wrote nothing because these items' conditions
/// were false.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancelled {
    /// The items' indexes in the call, ascending.
    pub items: Vec<u32>,
}

/// One item of a transaction, its documents encoded for the capability.
enum TransactArgs {
    Put(Wire, Option<Condition>),
    Update(Wire, Wire, Wire, Vec<String>, Option<Condition>),
    Delete(Wire, Option<Condition>),
    Check(Wire, Condition),
}

/// The most items one [`transact_write`] carries.
pub const MAX_TRANSACT_ITEMS: usize = 100;

/// Up to [`MAX_TRANSACT_ITEMS`] writes to distinct items of one table, all
/// or none (DynamoDB's `TransactWriteItems`): `Ok(Ok(()))` when every
/// condition held and every write was made, `Ok(Err(Cancelled))` when
/// some conditions were false and nothing was written; `Err` when the call
/// failed as a whole (nothing was written either).
pub fn transact_write(
    table: &str,
    items: Vec<TransactItem>,
) -> Result<std::result::Result<(), Cancelled>> {
    let items = items
        .into_iter()
        .map(|item| {
            Ok(match item {
                TransactItem::Put(p) => TransactArgs::Put(wire::encode(&p.item)?, p.condition),
                TransactItem::Update(u) => TransactArgs::Update(
                    wire::encode(&u.key)?,
                    wire::encode(&u.set)?,
                    wire::encode(&u.add)?,
                    u.remove,
                    u.condition,
                ),
                TransactItem::Delete { key, condition } => {
                    TransactArgs::Delete(wire::encode(&key)?, condition)
                }
                TransactItem::Check { key, condition } => {
                    TransactArgs::Check(wire::encode(&key)?, condition)
                }
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(sys::transact_write(table, items)?.map_err(|items| Cancelled { items }))
}

#[cfg(target_arch = "wasm32")]
mod sys {
    use super::Condition;
    use crate::bindings::caps::usher::platform::table as wit;
    use crate::{json, Error, Result};

    fn condition(c: Option<Condition>) -> Result<Option<wit::Condition>> {
        Ok(match c {
            None => None,
            Some(Condition::NotExists) => Some(wit::Condition::NotExists),
            Some(Condition::Exists) => Some(wit::Condition::Exists),
            Some(Condition::AttributeEquals(name, value)) => Some(wit::Condition::AttributeEquals(
                (name, json::to_string(&value)?),
            )),
        })
    }

    pub(super) fn get(table: &str, key: &str) -> Result<Option<String>> {
        Ok(wit::get(table, key)?)
    }

    pub(super) fn batch_get(table: &str, keys: &[String]) -> Result<Vec<Option<String>>> {
        Ok(wit::batch_get(table, keys)?)
    }

    pub(super) fn put(table: &str, item: &str, c: Option<Condition>) -> Result<()> {
        Ok(wit::put(table, item, condition(c)?.as_ref())?)
    }

    pub(super) fn update(
        table: &str,
        key: &str,
        set: &str,
        remove: &[String],
        c: Option<Condition>,
    ) -> Result<String> {
        Ok(wit::update(
            table,
            key,
            set,
            remove,
            condition(c)?.as_ref(),
        )?)
    }

    pub(super) fn delete(table: &str, key: &str, c: Option<Condition>) -> Result<()> {
        Ok(wit::delete(table, key, condition(c)?.as_ref())?)
    }

    pub(super) fn query(
        table: &str,
        partition: &str,
        sort_prefix: Option<&str>,
        limit: Option<u32>,
        start_after: Option<&String>,
    ) -> Result<(Vec<String>, Option<String>)> {
        let page = wit::query(
            table,
            partition,
            sort_prefix,
            limit,
            start_after.map(String::as_str),
        )?;
        Ok((page.items, page.next))
    }

    pub(super) fn batch_write(table: &str, writes: Vec<(bool, String)>) -> Result<Vec<Result<()>>> {
        let writes: Vec<wit::Write> = writes
            .into_iter()
            .map(|(is_put, text)| {
                if is_put {
                    wit::Write::Put(text)
                } else {
                    wit::Write::Delete(text)
                }
            })
            .collect();
        Ok(wit::batch_write(table, &writes)?
            .into_iter()
            .map(|r| r.map_err(Error::from))
            .collect())
    }
    pub(super) fn put_many(
        table: &str,
        puts: Vec<(String, Option<Condition>)>,
    ) -> Result<Vec<Result<()>>> {
        let puts = puts
            .into_iter()
            .map(|(item, c)| {
                Ok(wit::PutItem {
                    item,
                    condition: condition(c)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(wit::put_many(table, &puts)?
            .into_iter()
            .map(|r| r.map_err(Error::from))
            .collect())
    }

    pub(super) fn update_many(
        table: &str,
        updates: Vec<super::UpdateArgs>,
    ) -> Result<Vec<Result<String>>> {
        let updates = updates
            .into_iter()
            .map(|(key, set, remove, c)| {
                Ok(wit::UpdateItem {
                    key,
                    set,
                    remove,
                    condition: condition(c)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(wit::update_many(table, &updates)?
            .into_iter()
            .map(|r| r.map_err(Error::from))
            .collect())
    }

    pub(super) fn transact_write(
        table: &str,
        items: Vec<super::TransactArgs>,
    ) -> Result<std::result::Result<(), Vec<u32>>> {
        use super::TransactArgs;
        let items = items
            .into_iter()
            .map(|item| {
                Ok(match item {
                    TransactArgs::Put(item, c) => wit::TransactItem::Put(wit::PutItem {
                        item,
                        condition: condition(c)?,
                    }),
                    TransactArgs::Update(key, set, add, remove, c) => {
                        wit::TransactItem::Update(wit::TransactUpdate {
                            key,
                            set,
                            add,
                            remove,
                            condition: condition(c)?,
                        })
                    }
                    TransactArgs::Delete(key, c) => {
                        wit::TransactItem::Delete(wit::TransactDelete {
                            key,
                            condition: condition(c)?,
                        })
                    }
                    TransactArgs::Check(key, c) => {
                        let Some(condition) = condition(Some(c))? else {
                            return Err(Error::Invalid("a check needs a condition".into()));
                        };
                        wit::TransactItem::Check(wit::TransactCheck { key, condition })
                    }
                })
            })
            .collect::<Result<Vec<_>>>()?;
        match wit::transact_write(table, &items) {
            Ok(()) => Ok(Ok(())),
            Err(wit::TransactError::Cancelled(failed)) => Ok(Err(failed)),
            Err(wit::TransactError::Failed(e)) => Err(Error::from(e)),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod sys {
    //! Natively every call goes to the thread's [`crate::native`] backend.
    use serde_json::Value;

    use super::{Condition, Page, PutItem, UpdateItem, Write};
    use crate::native;
    use crate::Result;

    pub(super) fn get(table: &str, key: &Value) -> Result<Option<Value>> {
        native::with("table::get", |b| b.table_get(table, key))
    }

    pub(super) fn batch_get(table: &str, keys: &[Value]) -> Result<Vec<Option<Value>>> {
        native::with("table::batch_get", |b| b.table_batch_get(table, keys))
    }

    pub(super) fn put(table: &str, item: &Value, c: Option<Condition>) -> Result<()> {
        native::with("table::put", |b| b.table_put(table, item, c.as_ref()))
    }

    pub(super) fn update(
        table: &str,
        key: &Value,
        set: &Value,
        remove: &[String],
        c: Option<Condition>,
    ) -> Result<Value> {
        native::with("table::update", |b| {
            b.table_update(table, key, set, remove, c.as_ref())
        })
    }

    pub(super) fn delete(table: &str, key: &Value, c: Option<Condition>) -> Result<()> {
        native::with("table::delete", |b| b.table_delete(table, key, c.as_ref()))
    }

    pub(super) fn query(
        table: &str,
        partition: &Value,
        sort_prefix: Option<&str>,
        limit: Option<u32>,
        start_after: Option<&Value>,
    ) -> Result<(Vec<Value>, Option<Value>)> {
        native::with("table::query", |b| {
            b.table_query(table, partition, sort_prefix, limit, start_after)
        })
        .map(|page: Page| (page.items, page.next))
    }

    pub(super) fn batch_write(table: &str, writes: Vec<(bool, Value)>) -> Result<Vec<Result<()>>> {
        let writes: Vec<Write> = writes
            .into_iter()
            .map(|(is_put, v)| {
                if is_put {
                    Write::Put(v)
                } else {
                    Write::Delete(v)
                }
            })
            .collect();
        native::with("table::batch_write", |b| {
            b.table_batch_write(table, &writes)
        })
    }

    pub(super) fn put_many(
        table: &str,
        puts: Vec<(Value, Option<Condition>)>,
    ) -> Result<Vec<Result<()>>> {
        let puts: Vec<PutItem> = puts
            .into_iter()
            .map(|(item, condition)| PutItem { item, condition })
            .collect();
        native::with("table::put_many", |b| b.table_put_many(table, &puts))
    }

    pub(super) fn update_many(
        table: &str,
        updates: Vec<super::UpdateArgs>,
    ) -> Result<Vec<Result<Value>>> {
        let updates: Vec<UpdateItem> = updates
            .into_iter()
            .map(|(key, set, remove, condition)| UpdateItem {
                key,
                set,
                remove,
                condition,
            })
            .collect();
        native::with("table::update_many", |b| {
            b.table_update_many(table, &updates)
        })
    }

    pub(super) fn transact_write(
        table: &str,
        items: Vec<super::TransactArgs>,
    ) -> Result<std::result::Result<(), Vec<u32>>> {
        use super::{TransactArgs, TransactItem, TransactUpdate};
        let items: Vec<TransactItem> = items
            .into_iter()
            .map(|a| match a {
                TransactArgs::Put(item, condition) => {
                    TransactItem::Put(PutItem { item, condition })
                }
                TransactArgs::Update(key, set, add, remove, condition) => {
                    TransactItem::Update(TransactUpdate {
                        key,
                        set,
                        add,
                        remove,
                        condition,
                    })
                }
                TransactArgs::Delete(key, condition) => TransactItem::Delete { key, condition },
                TransactArgs::Check(key, condition) => TransactItem::Check { key, condition },
            })
            .collect();
        native::with("table::transact_write", |b| {
            b.table_transact_write(table, &items)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn attribute_equals_serializes_value() {
        let c = Condition::attribute_equals("version", &3).expect("condition");
        assert_eq!(c, Condition::AttributeEquals("version".into(), json!(3)));
    }

    #[test]
    fn native_calls_are_unsupported() {
        let err = get::<Value>("t", &json!({"PK": "a"})).expect_err("native");
        assert!(matches!(err, crate::Error::Unsupported(_)));
        let err = batch_write("t", &[Write::Delete(json!({"PK": "a"}))]).expect_err("native");
        assert!(matches!(err, crate::Error::Unsupported(_)));
    }
}
