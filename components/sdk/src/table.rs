//! DynamoDB-shaped tables (the `table` capability).
//!
//! Items and keys are JSON objects; pass `serde_json::Value` or any
//! `Serialize` type, and read back `Value` or any `DeserializeOwned` type.
//! A key holds the table's partition key attribute and, when it has one,
//! its sort key attribute, e.g. `{"PK": "ENTRY#c#u", "SK": "ENTRY"}`.

use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

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
    let key = json::to_string(key)?;
    sys::get(table, &key)?
        .map(|item| json::from_str(&item))
        .transpose()
}

/// Reads many items by key with one call; one entry per key, in order.
pub fn batch_get<T: DeserializeOwned, K: Serialize>(
    table: &str,
    keys: &[K],
) -> Result<Vec<Option<T>>> {
    let keys = keys
        .iter()
        .map(json::to_string)
        .collect::<Result<Vec<_>>>()?;
    sys::batch_get(table, &keys)?
        .into_iter()
        .map(|item| item.map(|text| json::from_str(&text)).transpose())
        .collect()
}

/// Creates or replaces an item, optionally under a condition.
pub fn put(
    table: &str,
    item: &(impl Serialize + ?Sized),
    condition: Option<Condition>,
) -> Result<()> {
    let item = json::to_string(item)?;
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
    let key = json::to_string(key)?;
    let set = json::to_string(set)?;
    let remove: Vec<String> = remove.iter().map(|name| (*name).to_string()).collect();
    json::from_str(&sys::update(table, &key, &set, &remove, condition)?)
}

/// Deletes the item with this key, optionally under a condition.
pub fn delete(
    table: &str,
    key: &(impl Serialize + ?Sized),
    condition: Option<Condition>,
) -> Result<()> {
    let key = json::to_string(key)?;
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
    let partition = json::to_string(partition)?;
    let start_after = start_after.map(json::to_string).transpose()?;
    let (items, next) = sys::query(
        table,
        &partition,
        sort_prefix,
        limit,
        start_after.as_deref(),
    )?;
    Ok(Page {
        items: items
            .iter()
            .map(|text| json::from_str(text))
            .collect::<Result<_>>()?,
        next: next.map(|text| json::from_str(&text)).transpose()?,
    })
}

/// Many puts and deletes (the host sends them in chunks of 25 and retries
/// unprocessed items); one result per write, in order.
pub fn batch_write(table: &str, writes: &[Write]) -> Result<Vec<Result<()>>> {
    let writes = writes
        .iter()
        .map(|write| {
            Ok(match write {
                Write::Put(item) => (true, json::to_string(item)?),
                Write::Delete(key) => (false, json::to_string(key)?),
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
        .map(|p| Ok((json::to_string(&p.item)?, p.condition)))
        .collect::<Result<Vec<_>>>()?;
    sys::put_many(table, puts)
}

/// The JSON texts of one update: key, set, remove, condition.
type UpdateArgs = (String, String, Vec<String>, Option<Condition>);

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
                json::to_string(&u.key)?,
                json::to_string(&u.set)?,
                u.remove,
                u.condition,
            ))
        })
        .collect::<Result<Vec<UpdateArgs>>>()?;
    Ok(sys::update_many(table, updates)?
        .into_iter()
        .map(|r| r.and_then(|text| json::from_str(&text)))
        .collect())
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
        start_after: Option<&str>,
    ) -> Result<(Vec<String>, Option<String>)> {
        let page = wit::query(table, partition, sort_prefix, limit, start_after)?;
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
}

#[cfg(not(target_arch = "wasm32"))]
mod sys {
    use super::Condition;
    use crate::{Error, Result};

    pub(super) fn get(_table: &str, _key: &str) -> Result<Option<String>> {
        Err(Error::native("table::get"))
    }

    pub(super) fn batch_get(_table: &str, _keys: &[String]) -> Result<Vec<Option<String>>> {
        Err(Error::native("table::batch_get"))
    }

    pub(super) fn put(_table: &str, _item: &str, _c: Option<Condition>) -> Result<()> {
        Err(Error::native("table::put"))
    }

    pub(super) fn update(
        _table: &str,
        _key: &str,
        _set: &str,
        _remove: &[String],
        _c: Option<Condition>,
    ) -> Result<String> {
        Err(Error::native("table::update"))
    }

    pub(super) fn delete(_table: &str, _key: &str, _c: Option<Condition>) -> Result<()> {
        Err(Error::native("table::delete"))
    }

    pub(super) fn query(
        _table: &str,
        _partition: &str,
        _sort_prefix: Option<&str>,
        _limit: Option<u32>,
        _start_after: Option<&str>,
    ) -> Result<(Vec<String>, Option<String>)> {
        Err(Error::native("table::query"))
    }

    pub(super) fn batch_write(
        _table: &str,
        _writes: Vec<(bool, String)>,
    ) -> Result<Vec<Result<()>>> {
        Err(Error::native("table::batch_write"))
    }
    pub(super) fn put_many(
        _table: &str,
        _puts: Vec<(String, Option<Condition>)>,
    ) -> Result<Vec<Result<()>>> {
        Err(Error::native("table::put_many"))
    }

    pub(super) fn update_many(
        _table: &str,
        _updates: Vec<super::UpdateArgs>,
    ) -> Result<Vec<Result<String>>> {
        Err(Error::native("table::update_many"))
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
