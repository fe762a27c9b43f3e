//! `table`: DynamoDB-shaped items as JSON.

use serde_json::{json, Value};
use usher_registry::Capability;
use usher_world::{table, types};

use crate::backend::{
    Condition, PutItem, TextPage, TransactError, TransactItem, TransactUpdate, UpdateItem, WriteOp,
    MAX_TRANSACT_ITEMS,
};
use crate::call::{
    check_batch, parse_json, parse_object, to_string, Call, HostResult, PerRecord, Plain, Records,
};
use crate::key_schema::at_item;
use crate::limits::MAX_PAGE;
use crate::{CapError, CapabilityCtx, JsonText};

fn condition(c: table::Condition) -> Result<Condition, CapError> {
    Ok(match c {
        table::Condition::NotExists => Condition::NotExists,
        table::Condition::Exists => Condition::Exists,
        table::Condition::AttributeEquals((name, value)) => {
            Condition::AttributeEquals(name, parse_json(&value, "condition value")?)
        }
    })
}

fn opt_condition(c: Option<table::Condition>) -> Result<Option<Condition>, CapError> {
    c.map(condition).transpose()
}

fn call<'a>(function: &'static str, table: &'a str) -> Call<'a> {
    Call::new(Capability::Table, function, table)
}

/// The per-record answer of the `*-many` and `batch-write` calls.
fn per_record<X, U>(convert: impl Fn(X) -> U) -> PerRecord<impl Fn(X) -> U> {
    PerRecord {
        records: Records::Failed,
        convert,
    }
}

impl table::Host for CapabilityCtx {
    async fn get(&mut self, table: String, key: String) -> HostResult<Option<String>> {
        let caller = &self.caller;
        let work = async {
            let key = parse_json(&key, "key")?;
            caller.backends.table.get_text(&table, &key).await
        };
        Ok(caller
            .call(call("get", &table), || json!({"key": key}), Plain, work)
            .await?
            .map(|v| v.map(JsonText::into_string)))
    }

    async fn batch_get(
        &mut self,
        table: String,
        keys: Vec<String>,
    ) -> HostResult<Vec<Option<String>>> {
        let caller = &self.caller;
        let work = async {
            check_batch(keys.len())?;
            let parsed = keys
                .iter()
                .map(|k| parse_json(k, "key"))
                .collect::<Result<Vec<_>, _>>()?;
            caller.backends.table.batch_get_text(&table, &parsed).await
        };
        Ok(caller
            .call(
                call("batch-get", &table),
                || json!({"keys": keys}),
                Plain,
                work,
            )
            .await?
            .map(|items| {
                items
                    .into_iter()
                    .map(|i| i.map(JsonText::into_string))
                    .collect()
            }))
    }

    async fn put(
        &mut self,
        table: String,
        item: String,
        cond: Option<table::Condition>,
    ) -> HostResult<()> {
        let caller = &self.caller;
        let work = async {
            let parsed = Value::Object(parse_object(&item, "item")?);
            let cond = opt_condition(cond)?;
            caller.backends.table.put(&table, parsed, cond).await
        };
        caller
            .call(call("put", &table), || json!({"item": item}), Plain, work)
            .await
    }

    async fn update(
        &mut self,
        table: String,
        key: String,
        set: String,
        remove: Vec<String>,
        cond: Option<table::Condition>,
    ) -> HostResult<String> {
        let caller = &self.caller;
        let work = async {
            let parsed_key = parse_json(&key, "key")?;
            let set_map = parse_object(&set, "set")?;
            let cond = opt_condition(cond)?;
            caller
                .backends
                .table
                .update(&table, &parsed_key, set_map, &remove, cond)
                .await
        };
        let request = || json!({"key": key, "set": set, "remove": remove});
        Ok(caller
            .call(call("update", &table), request, Plain, work)
            .await?
            .map(|v| to_string(&v)))
    }

    async fn delete(
        &mut self,
        table: String,
        key: String,
        cond: Option<table::Condition>,
    ) -> HostResult<()> {
        let caller = &self.caller;
        let work = async {
            let parsed = parse_json(&key, "key")?;
            let cond = opt_condition(cond)?;
            caller.backends.table.delete(&table, &parsed, cond).await
        };
        caller
            .call(call("delete", &table), || json!({"key": key}), Plain, work)
            .await
    }

    async fn query(
        &mut self,
        table: String,
        partition: String,
        sort_prefix: Option<String>,
        limit: Option<u32>,
        start_after: Option<String>,
    ) -> HostResult<table::Page> {
        let caller = &self.caller;
        let work = async {
            let partition = parse_json(&partition, "partition")?;
            let start = start_after
                .as_deref()
                .map(|s| parse_json(s, "start-after"))
                .transpose()?;
            let limit = limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
            caller
                .backends
                .table
                .query_text(
                    &table,
                    &partition,
                    sort_prefix.as_deref(),
                    limit,
                    start.as_ref(),
                )
                .await
        };
        let request = || json!({"partition": partition, "sort_prefix": sort_prefix});
        Ok(caller
            .call(call("query", &table), request, Plain, work)
            .await?
            .map(|page: TextPage| table::Page {
                items: page.items.into_iter().map(JsonText::into_string).collect(),
                next: page.next.as_ref().map(to_string),
            }))
    }

    async fn batch_write(
        &mut self,
        table: String,
        writes: Vec<table::Write>,
    ) -> HostResult<Vec<Result<(), types::Error>>> {
        let caller = &self.caller;
        let count = writes.len();
        let work = async {
            check_batch(writes.len())?;
            let ops = writes
                .into_iter()
                .map(|w| match w {
                    table::Write::Put(item) => {
                        Ok(WriteOp::Put(Value::Object(parse_object(&item, "item")?)))
                    }
                    table::Write::Delete(key) => Ok(WriteOp::Delete(parse_json(&key, "key")?)),
                })
                .collect::<Result<Vec<_>, CapError>>()?;
            caller.backends.table.batch_write(&table, ops).await
        };
        let request = || json!({"records": count});
        caller
            .call(
                call("batch-write", &table),
                request,
                per_record(|()| ()),
                work,
            )
            .await
    }

    async fn put_many(
        &mut self,
        table: String,
        puts: Vec<table::PutItem>,
    ) -> HostResult<Vec<Result<(), types::Error>>> {
        let caller = &self.caller;
        let count = puts.len();
        let work = async {
            check_batch(puts.len())?;
            let puts = puts
                .into_iter()
                .map(|p| {
                    Ok(PutItem {
                        item: Value::Object(parse_object(&p.item, "item")?),
                        condition: opt_condition(p.condition)?,
                    })
                })
                .collect::<Result<Vec<_>, CapError>>()?;
            caller.backends.table.put_many(&table, puts).await
        };
        let request = || json!({"records": count});
        caller
            .call(call("put-many", &table), request, per_record(|()| ()), work)
            .await
    }

    async fn update_many(
        &mut self,
        table: String,
        updates: Vec<table::UpdateItem>,
    ) -> HostResult<Vec<Result<String, types::Error>>> {
        let caller = &self.caller;
        let count = updates.len();
        let work = async {
            check_batch(updates.len())?;
            let updates = updates
                .into_iter()
                .map(|u| {
                    Ok(UpdateItem {
                        key: parse_json(&u.key, "key")?,
                        set: parse_object(&u.set, "set")?,
                        remove: u.remove,
                        condition: opt_condition(u.condition)?,
                    })
                })
                .collect::<Result<Vec<_>, CapError>>()?;
            caller
                .backends
                .table
                .update_many_text(&table, updates)
                .await
        };
        let request = || json!({"records": count});
        let answer = per_record(JsonText::into_string);
        caller
            .call(call("update-many", &table), request, answer, work)
            .await
    }

    async fn transact_write(
        &mut self,
        table: String,
        items: Vec<table::TransactItem>,
    ) -> wasmtime::Result<Result<(), table::TransactError>> {
        let caller = &self.caller;
        let count = items.len();
        let work = async {
            if items.is_empty() || items.len() > MAX_TRANSACT_ITEMS {
                return Err(CapError::Invalid(format!(
                    "a transaction carries 1 to {MAX_TRANSACT_ITEMS} items, got {}",
                    items.len()
                )));
            }
            let items = items
                .into_iter()
                .enumerate()
                .map(|(i, item)| transact_item(item).map_err(|e| at_item(i, e)))
                .collect::<Result<Vec<_>, CapError>>()?;
            // The cancellation is an answer, not an error of the call.
            match caller.backends.table.transact_write(&table, items).await {
                Ok(()) => Ok(Ok(())),
                Err(TransactError::Cancelled(failed)) => Ok(Err(failed)),
                Err(TransactError::Failed(e)) => Err(e),
            }
        };
        let request = || json!({"items": count});
        let outcome = caller
            .call(call("transact-write", &table), request, Plain, work)
            .await?;
        Ok(match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(failed)) => Err(table::TransactError::Cancelled(failed)),
            Err(e) => Err(table::TransactError::Failed(e)),
        })
    }
}

/// One write of a transaction as the backends take it.
fn transact_item(item: table::TransactItem) -> Result<TransactItem, CapError> {
    Ok(match item {
        table::TransactItem::Put(p) => TransactItem::Put(PutItem {
            item: Value::Object(parse_object(&p.item, "item")?),
            condition: opt_condition(p.condition)?,
        }),
        table::TransactItem::Update(u) => {
            // The backends check the item (`KeySchema::transact_keys`).
            TransactItem::Update(TransactUpdate {
                key: parse_json(&u.key, "key")?,
                set: parse_object(&u.set, "set")?,
                add: parse_object(&u.add, "add")?,
                remove: u.remove,
                condition: opt_condition(u.condition)?,
            })
        }
        table::TransactItem::Delete(d) => TransactItem::Delete {
            key: parse_json(&d.key, "key")?,
            condition: opt_condition(d.condition)?,
        },
        table::TransactItem::Check(c) => TransactItem::Check {
            key: parse_json(&c.key, "key")?,
            condition: condition(c.condition)?,
        },
    })
}
