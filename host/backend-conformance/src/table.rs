//! The suite of the `table` backend trait.
//!
//! The caller creates two tables and passes their names:
//! - `sorted`: partition key [`PARTITION_KEY`] and sort key [`SORT_KEY`],
//!   both strings;
//! - `simple`: partition key [`SIMPLE_KEY`] (a string), no sort key.
//!
//! Every case writes under partitions of its own ([`unique_name`]), so the
//! suite can run again on the same tables.

use serde_json::{json, Map, Value};
use usher_capabilities::{
    CapError, Condition, JsonText, PutItem, TableBackend, TransactError, TransactItem,
    TransactUpdate, UpdateItem, WriteOp,
};

use crate::{expect_err, unique_name};

/// The partition key attribute of the `sorted` table (a string).
pub const PARTITION_KEY: &str = "pk";
/// The sort key attribute of the `sorted` table (a string).
pub const SORT_KEY: &str = "sk";
/// The partition key attribute of the `simple` table (a string).
pub const SIMPLE_KEY: &str = "id";

/// Runs every case of the suite, in order.
pub async fn all(t: &dyn TableBackend, sorted: &str, simple: &str) {
    eprintln!("table: get_put_round_trip");
    get_put_round_trip(t, sorted, simple).await;
    eprintln!("table: conditional_put");
    conditional_put(t, simple).await;
    eprintln!("table: update");
    update(t, sorted, simple).await;
    eprintln!("table: conditional_delete");
    conditional_delete(t, simple).await;
    eprintln!("table: batch_get");
    batch_get(t, sorted).await;
    eprintln!("table: batch_write");
    batch_write(t, sorted, simple).await;
    eprintln!("table: put_many_and_update_many");
    put_many_and_update_many(t, simple).await;
    eprintln!("table: transact_write");
    transact_write(t, sorted, simple).await;
    eprintln!("table: query");
    query(t, sorted, simple).await;
    eprintln!("table: text_reads");
    text_reads(t, sorted, simple).await;
    eprintln!("table: invalid_requests");
    invalid_requests(t, sorted, simple).await;
}

/// `put_many` and `update_many`: each write under its own condition, one
/// result per write in order, a failed one failing alone.
pub async fn put_many_and_update_many(t: &dyn TableBackend, simple: &str) {
    let a = unique_name("many-a");
    let b = unique_name("many-b");
    t.put(simple, json!({ SIMPLE_KEY: a, "v": 1 }), None)
        .await
        .expect("put a");
    let results = t
        .put_many(
            simple,
            vec![
                PutItem {
                    item: json!({ SIMPLE_KEY: a, "v": 9 }),
                    condition: Some(Condition::NotExists),
                },
                PutItem {
                    item: json!({ SIMPLE_KEY: b, "v": 1 }),
                    condition: Some(Condition::NotExists),
                },
                PutItem {
                    item: json!({ "v": 1 }),
                    condition: None,
                },
                PutItem {
                    item: json!({ SIMPLE_KEY: a, "v": 2 }),
                    condition: Some(Condition::AttributeEquals("v".into(), json!(1))),
                },
            ],
        )
        .await
        .expect("put_many");
    assert_eq!(results.len(), 4, "{results:?}");
    expect_err("put_many: a exists", results[0].clone(), "condition_failed");
    assert!(results[1].is_ok(), "{results:?}");
    expect_err("put_many: no key", results[2].clone(), "invalid");
    assert!(results[3].is_ok(), "{results:?}");
    let stored = t.get(simple, &simple_key(&a)).await.expect("get a");
    assert_eq!(stored, Some(json!({ SIMPLE_KEY: a, "v": 2 })));

    let mut set = Map::new();
    set.insert("flag".into(), json!(false));
    let updated = t
        .update_many(
            simple,
            vec![
                UpdateItem {
                    key: simple_key(&a),
                    set: set.clone(),
                    remove: vec!["v".into()],
                    condition: Some(Condition::AttributeEquals("v".into(), json!(2))),
                },
                UpdateItem {
                    key: simple_key(&b),
                    set: set.clone(),
                    remove: vec![],
                    condition: Some(Condition::AttributeEquals("v".into(), json!(7))),
                },
            ],
        )
        .await
        .expect("update_many");
    assert_eq!(updated.len(), 2, "{updated:?}");
    assert_eq!(
        updated[0].as_ref().expect("update a"),
        &json!({ SIMPLE_KEY: a, "flag": false })
    );
    expect_err(
        "update_many: b's v is not 7",
        updated[1].clone(),
        "condition_failed",
    );
    let stored = t.get(simple, &simple_key(&b)).await.expect("get b");
    assert_eq!(stored, Some(json!({ SIMPLE_KEY: b, "v": 1 })));

    // Many keys, each written twice in one call (a backend may run keys
    // side by side, but one key's writes in order): the second put's
    // condition holds only after the first.
    let keys: Vec<String> = (0..20).map(|n| unique_name(&format!("many-{n}"))).collect();
    let mut puts = Vec::new();
    for (v, condition) in [
        (0, Condition::NotExists),
        (1, Condition::AttributeEquals("v".into(), json!(0))),
    ] {
        for key in &keys {
            puts.push(PutItem {
                item: json!({ SIMPLE_KEY: key, "v": v }),
                condition: Some(condition.clone()),
            });
        }
    }
    let results = t.put_many(simple, puts).await.expect("put_many of 40");
    assert_eq!(results.len(), 40);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let stored = t
        .batch_get(
            simple,
            &keys.iter().map(|k| simple_key(k)).collect::<Vec<_>>(),
        )
        .await
        .expect("batch_get");
    for (key, item) in keys.iter().zip(stored) {
        assert_eq!(item, Some(json!({ SIMPLE_KEY: key, "v": 1 })), "{key}");
    }
}

/// `transact_write`: all or none. Every kind of item, `add` on present and
/// absent attributes; a false condition cancels the whole transaction
/// (nothing written, the false items' indexes answered); two items on
/// one key and malformed items are refused as invalid.
pub async fn transact_write(t: &dyn TableBackend, sorted: &str, simple: &str) {
    let p = unique_name("tx");
    let (a, b, c, d) = (
        sorted_key(&p, "a"),
        sorted_key(&p, "b"),
        sorted_key(&p, "c"),
        sorted_key(&p, "d"),
    );
    t.put(sorted, with(a.clone(), json!({"n": 5, "s": "x"})), None)
        .await
        .expect("put a");
    t.put(sorted, with(c.clone(), json!({"v": 1})), None)
        .await
        .expect("put c");
    t.put(sorted, with(d.clone(), json!({"v": 1})), None)
        .await
        .expect("put d");
    let update = |key: &Value, set: Value, add: Value, condition: Option<Condition>| {
        TransactItem::Update(TransactUpdate {
            key: key.clone(),
            set: set.as_object().cloned().unwrap_or_default(),
            add: add.as_object().cloned().unwrap_or_default(),
            remove: Vec::new(),
            condition,
        })
    };
    // Everything holds: every write is made.
    t.transact_write(
        sorted,
        vec![
            update(
                &a,
                json!({"s": "y"}),
                json!({"n": -2, "m": 3}),
                Some(Condition::AttributeEquals("s".into(), json!("x"))),
            ),
            TransactItem::Put(PutItem {
                item: with(b.clone(), json!({"v": 7})),
                condition: Some(Condition::NotExists),
            }),
            TransactItem::Delete {
                key: c.clone(),
                condition: Some(Condition::Exists),
            },
            TransactItem::Check {
                key: d.clone(),
                condition: Condition::AttributeEquals("v".into(), json!(1)),
            },
        ],
    )
    .await
    .expect("a transaction whose conditions hold");
    assert_eq!(
        t.get(sorted, &a).await.expect("get a"),
        Some(with(a.clone(), json!({"n": 3, "m": 3, "s": "y"})))
    );
    assert_eq!(
        t.get(sorted, &b).await.expect("get b"),
        Some(with(b.clone(), json!({"v": 7})))
    );
    assert_eq!(t.get(sorted, &c).await.expect("get c"), None);
    assert_eq!(
        t.get(sorted, &d).await.expect("get d"),
        Some(with(d.clone(), json!({"v": 1})))
    );

    // Two false conditions (items 1 and 3): nothing at all is written.
    let e = sorted_key(&p, "e");
    let cancelled = t
        .transact_write(
            sorted,
            vec![
                update(&a, json!({}), json!({"n": 100}), None),
                TransactItem::Put(PutItem {
                    item: with(b.clone(), json!({"v": 8})),
                    condition: Some(Condition::NotExists),
                }),
                TransactItem::Put(PutItem {
                    item: with(e.clone(), json!({"v": 1})),
                    condition: Some(Condition::NotExists),
                }),
                TransactItem::Check {
                    key: d.clone(),
                    condition: Condition::AttributeEquals("v".into(), json!(2)),
                },
            ],
        )
        .await;
    assert_eq!(cancelled, Err(TransactError::Cancelled(vec![1, 3])));
    assert_eq!(
        t.get(sorted, &a).await.expect("get a"),
        Some(with(a.clone(), json!({"n": 3, "m": 3, "s": "y"}))),
        "a cancelled transaction wrote its first item"
    );
    assert_eq!(t.get(sorted, &e).await.expect("get e"), None);

    // An update of an absent item creates it, its additions from 0.
    let f = simple_key(&unique_name("tx-f"));
    t.transact_write(
        simple,
        vec![update(&f, json!({"k": "v"}), json!({"count": 2}), None)],
    )
    .await
    .expect("an update creating its item");
    assert_eq!(
        t.get(simple, &f).await.expect("get f"),
        Some(with(f.clone(), json!({"k": "v", "count": 2})))
    );

    // Refused as a whole, nothing written: two items on one key, a
    // malformed key, an addition to a key attribute or to a set attribute.
    let invalid = |r: Result<(), TransactError>, what: &str| match r {
        Err(TransactError::Failed(CapError::Invalid(_))) => {}
        other => panic!("{what}: expected invalid, got {other:?}"),
    };
    invalid(
        t.transact_write(
            simple,
            vec![
                update(&f, json!({}), json!({"count": 1}), None),
                update(&f, json!({}), json!({"count": 1}), None),
            ],
        )
        .await,
        "one key twice",
    );
    invalid(
        t.transact_write(
            simple,
            vec![TransactItem::Delete {
                key: json!({"nope": 1}),
                condition: None,
            }],
        )
        .await,
        "a malformed key",
    );
    invalid(
        t.transact_write(
            simple,
            vec![update(&f, json!({"count": 1}), json!({"count": 1}), None)],
        )
        .await,
        "set and add one attribute",
    );
    invalid(
        t.transact_write(
            simple,
            vec![update(&f, json!({}), json!({ SIMPLE_KEY: 1 }), None)],
        )
        .await,
        "add to the key",
    );
    invalid(
        t.transact_write(simple, vec![update(&f, json!({}), json!({}), None)])
            .await,
        "an update changing nothing",
    );
    assert_eq!(
        t.get(simple, &f).await.expect("get f"),
        Some(with(f.clone(), json!({"k": "v", "count": 2}))),
        "a refused transaction wrote"
    );
}

fn sorted_key(pk: &str, sk: &str) -> Value {
    json!({ PARTITION_KEY: pk, SORT_KEY: sk })
}

fn simple_key(id: &str) -> Value {
    json!({ SIMPLE_KEY: id })
}

fn with(base: Value, extra: Value) -> Value {
    let (Value::Object(mut a), Value::Object(b)) = (base, extra) else {
        panic!("with: both must be objects")
    };
    a.extend(b);
    Value::Object(a)
}

/// Items of every JSON shape come back as they were written; a missing
/// item is `None`; a put replaces the whole item.
pub async fn get_put_round_trip(t: &dyn TableBackend, sorted: &str, simple: &str) {
    let pk = unique_name("rt");
    let key = sorted_key(&pk, "a");
    assert_eq!(t.get(sorted, &key).await.expect("get missing"), None);

    let item = with(
        key.clone(),
        json!({
            "count": 42,
            "negative": -7,
            "ratio": 1.5,
            "big": 9_007_199_254_740_993u64,
            "empty": "",
            "text": "héllo ✓",
            "yes": true,
            "no": false,
            "nothing": null,
            "list": [1, "two", {"three": [3]}, [], {}],
            "map": {"nested": {"deep": [false, null]}, "n": 0},
        }),
    );
    t.put(sorted, item.clone(), None).await.expect("put");
    assert_eq!(t.get(sorted, &key).await.expect("get"), Some(item));

    // A put replaces the whole item: attributes it lacks are gone.
    let replaced = with(key.clone(), json!({"only": "this"}));
    t.put(sorted, replaced.clone(), None)
        .await
        .expect("put again");
    assert_eq!(t.get(sorted, &key).await.expect("get"), Some(replaced));

    // Same partition, other sort key: another item.
    assert_eq!(
        t.get(sorted, &sorted_key(&pk, "b")).await.expect("get b"),
        None
    );

    let id = unique_name("simple");
    let item = json!({ SIMPLE_KEY: id, "name": "x" });
    t.put(simple, item.clone(), None).await.expect("put simple");
    assert_eq!(
        t.get(simple, &simple_key(&id)).await.expect("get simple"),
        Some(item)
    );
}

/// `NotExists`, `Exists` and `AttributeEquals` on put; a failed condition
/// is `ConditionFailed` and leaves the item as it was.
pub async fn conditional_put(t: &dyn TableBackend, simple: &str) {
    let id = unique_name("cond");
    let key = simple_key(&id);
    let v = |n: i64| json!({ SIMPLE_KEY: id, "v": n, "state": format!("s{n}") });

    expect_err(
        "put Exists on a missing item",
        t.put(simple, v(0), Some(Condition::Exists)).await,
        "condition_failed",
    );
    expect_err(
        "put AttributeEquals on a missing item",
        t.put(
            simple,
            v(0),
            Some(Condition::AttributeEquals("v".into(), json!(0))),
        )
        .await,
        "condition_failed",
    );
    assert_eq!(t.get(simple, &key).await.expect("get"), None);

    t.put(simple, v(1), Some(Condition::NotExists))
        .await
        .expect("put NotExists on a missing item");
    expect_err(
        "put NotExists on an existing item",
        t.put(simple, v(2), Some(Condition::NotExists)).await,
        "condition_failed",
    );
    assert_eq!(t.get(simple, &key).await.expect("get"), Some(v(1)));

    t.put(simple, v(2), Some(Condition::Exists))
        .await
        .expect("put Exists on an existing item");
    t.put(
        simple,
        v(3),
        Some(Condition::AttributeEquals("v".into(), json!(2))),
    )
    .await
    .expect("put AttributeEquals (number) that holds");
    t.put(
        simple,
        v(4),
        Some(Condition::AttributeEquals("state".into(), json!("s3"))),
    )
    .await
    .expect("put AttributeEquals (string) that holds");
    expect_err(
        "put AttributeEquals that does not hold",
        t.put(
            simple,
            v(5),
            Some(Condition::AttributeEquals("v".into(), json!(3))),
        )
        .await,
        "condition_failed",
    );
    expect_err(
        "put AttributeEquals on an absent attribute",
        t.put(
            simple,
            v(5),
            Some(Condition::AttributeEquals("absent".into(), json!(4))),
        )
        .await,
        "condition_failed",
    );
    expect_err(
        "put AttributeEquals with the value's type differing",
        t.put(
            simple,
            v(5),
            Some(Condition::AttributeEquals("v".into(), json!("4"))),
        )
        .await,
        "condition_failed",
    );
    assert_eq!(t.get(simple, &key).await.expect("get"), Some(v(4)));
}

/// Update sets and removes attributes and returns the whole item after it;
/// it creates a missing item from its key; conditions hold as for put; key
/// attributes cannot change.
pub async fn update(t: &dyn TableBackend, sorted: &str, simple: &str) {
    let pk = unique_name("upd");
    let key = sorted_key(&pk, "1");
    let set = |v: Value| -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("set must be an object"),
        }
    };

    // On a missing item: created from the key.
    let created = t
        .update(
            sorted,
            &key,
            set(json!({"a": 1, "b": "x", "nested": {"l": [1, 2]}})),
            &[],
            None,
        )
        .await
        .expect("update creating the item");
    let expected = with(
        key.clone(),
        json!({"a": 1, "b": "x", "nested": {"l": [1, 2]}}),
    );
    assert_eq!(created, expected, "update returns the item after it");
    assert_eq!(t.get(sorted, &key).await.expect("get"), Some(expected));

    // Set and remove together; removing an absent attribute is fine.
    let after = t
        .update(
            sorted,
            &key,
            set(json!({"a": 2, "c": true})),
            &["b".to_string(), "never-there".to_string()],
            None,
        )
        .await
        .expect("update set + remove");
    let expected = with(
        key.clone(),
        json!({"a": 2, "c": true, "nested": {"l": [1, 2]}}),
    );
    assert_eq!(after, expected);
    assert_eq!(t.get(sorted, &key).await.expect("get"), Some(expected));

    // Only removes.
    let after = t
        .update(sorted, &key, Map::new(), &["nested".to_string()], None)
        .await
        .expect("update remove only");
    assert_eq!(after, with(key.clone(), json!({"a": 2, "c": true})));

    // Conditions.
    let after = t
        .update(
            sorted,
            &key,
            set(json!({"a": 3})),
            &[],
            Some(Condition::AttributeEquals("a".into(), json!(2))),
        )
        .await
        .expect("update AttributeEquals that holds");
    assert_eq!(after["a"], json!(3));
    expect_err(
        "update AttributeEquals that does not hold",
        t.update(
            sorted,
            &key,
            set(json!({"a": 4})),
            &[],
            Some(Condition::AttributeEquals("a".into(), json!(2))),
        )
        .await,
        "condition_failed",
    );
    expect_err(
        "update NotExists on an existing item",
        t.update(
            sorted,
            &key,
            set(json!({"a": 4})),
            &[],
            Some(Condition::NotExists),
        )
        .await,
        "condition_failed",
    );
    t.update(
        sorted,
        &key,
        set(json!({"a": 4})),
        &[],
        Some(Condition::Exists),
    )
    .await
    .expect("update Exists on an existing item");
    let missing = sorted_key(&pk, "2");
    expect_err(
        "update Exists on a missing item",
        t.update(
            sorted,
            &missing,
            set(json!({"a": 1})),
            &[],
            Some(Condition::Exists),
        )
        .await,
        "condition_failed",
    );
    assert_eq!(
        t.get(sorted, &missing).await.expect("get"),
        None,
        "a failed conditional update creates nothing"
    );
    assert_eq!(
        t.get(sorted, &key).await.expect("get"),
        Some(with(key.clone(), json!({"a": 4, "c": true})))
    );

    // Key attributes cannot be set nor removed; an attribute cannot be both
    // set and removed.
    expect_err(
        "update setting the sort key",
        t.update(sorted, &key, set(json!({ SORT_KEY: "9" })), &[], None)
            .await,
        "invalid",
    );
    expect_err(
        "update removing the partition key",
        t.update(sorted, &key, Map::new(), &[PARTITION_KEY.to_string()], None)
            .await,
        "invalid",
    );
    expect_err(
        "update setting and removing the same attribute",
        t.update(sorted, &key, set(json!({"a": 5})), &["a".to_string()], None)
            .await,
        "invalid",
    );
    expect_err(
        "update on a key that is not a key",
        t.update(
            simple,
            &json!({"name": "x"}),
            set(json!({"a": 1})),
            &[],
            None,
        )
        .await,
        "invalid",
    );
    assert_eq!(
        t.get(sorted, &key).await.expect("get"),
        Some(with(key.clone(), json!({"a": 4, "c": true}))),
        "refused updates change nothing"
    );
}

/// Delete removes the item; deleting a missing item is fine; conditions
/// hold as for put.
pub async fn conditional_delete(t: &dyn TableBackend, simple: &str) {
    let id = unique_name("del");
    let key = simple_key(&id);
    t.delete(simple, &key, None)
        .await
        .expect("delete a missing item");
    expect_err(
        "delete Exists on a missing item",
        t.delete(simple, &key, Some(Condition::Exists)).await,
        "condition_failed",
    );
    t.put(simple, json!({ SIMPLE_KEY: id, "v": 1 }), None)
        .await
        .expect("put");
    expect_err(
        "delete NotExists on an existing item",
        t.delete(simple, &key, Some(Condition::NotExists)).await,
        "condition_failed",
    );
    expect_err(
        "delete AttributeEquals that does not hold",
        t.delete(
            simple,
            &key,
            Some(Condition::AttributeEquals("v".into(), json!(2))),
        )
        .await,
        "condition_failed",
    );
    assert!(t.get(simple, &key).await.expect("get").is_some());
    t.delete(
        simple,
        &key,
        Some(Condition::AttributeEquals("v".into(), json!(1))),
    )
    .await
    .expect("delete AttributeEquals that holds");
    assert_eq!(t.get(simple, &key).await.expect("get"), None);

    t.put(simple, json!({ SIMPLE_KEY: id }), None)
        .await
        .expect("put");
    t.delete(simple, &key, Some(Condition::Exists))
        .await
        .expect("delete Exists on an existing item");
    assert_eq!(t.get(simple, &key).await.expect("get"), None);
}

/// One answer per key, in the order asked, `None` for missing items, also
/// for more keys than one request carries and for repeated keys.
pub async fn batch_get(t: &dyn TableBackend, sorted: &str) {
    assert!(t.batch_get(sorted, &[]).await.expect("empty").is_empty());
    let pk = unique_name("bget");
    let item = |i: usize| json!({ PARTITION_KEY: pk, SORT_KEY: format!("{i:03}"), "i": i });
    for i in (0..130).filter(|i| i % 3 != 0) {
        t.put(sorted, item(i), None).await.expect("put");
    }
    // Reverse order, every item asked, missing ones included.
    let keys: Vec<Value> = (0..130)
        .rev()
        .map(|i| sorted_key(&pk, &format!("{i:03}")))
        .collect();
    let got = t.batch_get(sorted, &keys).await.expect("batch_get 130");
    assert_eq!(got.len(), 130);
    for (n, i) in (0..130).rev().enumerate() {
        let expected = (i % 3 != 0).then(|| item(i));
        assert_eq!(got[n], expected, "batch_get answer {n} (item {i})");
    }

    // Repeated keys each get their answer.
    let a = sorted_key(&pk, "001");
    let missing = sorted_key(&pk, "000");
    let got = t
        .batch_get(sorted, &[a.clone(), missing.clone(), a, missing])
        .await
        .expect("batch_get with repeats");
    assert_eq!(got, vec![Some(item(1)), None, Some(item(1)), None]);

    expect_err(
        "batch_get with a malformed key",
        t.batch_get(
            sorted,
            &[sorted_key(&pk, "001"), json!({ PARTITION_KEY: pk })],
        )
        .await,
        "invalid",
    );
}

/// More writes than one request carries, puts and deletes mixed, one
/// result per write in order; a malformed write fails alone; writes to the
/// same key apply in order.
pub async fn batch_write(t: &dyn TableBackend, sorted: &str, simple: &str) {
    assert!(t
        .batch_write(sorted, Vec::new())
        .await
        .expect("empty batch")
        .is_empty());
    let pk = unique_name("bwrite");
    let item = |i: usize| json!({ PARTITION_KEY: pk, SORT_KEY: format!("{i:03}"), "i": i });
    let writes: Vec<WriteOp> = (0..60).map(|i| WriteOp::Put(item(i))).collect();
    let results = t.batch_write(sorted, writes).await.expect("batch_write 60");
    assert_eq!(results.len(), 60);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let page = t
        .query(sorted, &json!(pk), None, 100, None)
        .await
        .expect("query");
    assert_eq!(page.items, (0..60).map(item).collect::<Vec<_>>());

    // Deletes of every other item, puts of new ones, and malformed writes
    // in the middle.
    let mut writes = Vec::new();
    let mut bad = Vec::new();
    for i in 0..60 {
        if i % 2 == 0 {
            writes.push(WriteOp::Delete(sorted_key(&pk, &format!("{i:03}"))));
        }
        if i == 13 {
            bad.push(writes.len());
            writes.push(WriteOp::Put(json!({ PARTITION_KEY: pk, "no": "sort key" })));
        }
        if i == 40 {
            bad.push(writes.len());
            writes.push(WriteOp::Delete(
                json!({ PARTITION_KEY: pk, SORT_KEY: "040", "x": 1 }),
            ));
        }
    }
    for i in 60..70 {
        writes.push(WriteOp::Put(item(i)));
    }
    let n = writes.len();
    let results = t
        .batch_write(sorted, writes)
        .await
        .expect("batch_write mixed");
    assert_eq!(results.len(), n);
    for (i, r) in results.iter().enumerate() {
        if bad.contains(&i) {
            assert!(
                matches!(r, Err(CapError::Invalid(_))),
                "write {i} is malformed: expected invalid, got {r:?}"
            );
        } else {
            assert!(r.is_ok(), "write {i}: {r:?}");
        }
    }
    let page = t
        .query(sorted, &json!(pk), None, 100, None)
        .await
        .expect("query");
    let expected: Vec<Value> = (0..70)
        .filter(|i| i % 2 == 1 || *i >= 60)
        .map(item)
        .collect();
    assert_eq!(page.items, expected);

    // Several writes to one key apply in order.
    let id = unique_name("same");
    let v = |n: i64| json!({ SIMPLE_KEY: id, "v": n });
    let other = unique_name("other");
    let results = t
        .batch_write(
            simple,
            vec![
                WriteOp::Put(v(1)),
                WriteOp::Put(json!({ SIMPLE_KEY: other })),
                WriteOp::Put(v(2)),
                WriteOp::Delete(simple_key(&other)),
                WriteOp::Put(v(3)),
            ],
        )
        .await
        .expect("batch_write same keys");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(
        t.get(simple, &simple_key(&id)).await.expect("get"),
        Some(v(3))
    );
    assert_eq!(t.get(simple, &simple_key(&other)).await.expect("get"), None);
}

/// Items of one partition in sort-key order, by sort-key prefix, a page of
/// at most `limit` items with `next` set only when more remain, continued
/// with `start_after`.
pub async fn query(t: &dyn TableBackend, sorted: &str, simple: &str) {
    let pk = unique_name("query");
    let other = unique_name("query-other");
    let mut writes = Vec::new();
    for i in 0..25 {
        writes.push(WriteOp::Put(
            json!({ PARTITION_KEY: pk, SORT_KEY: format!("a#{i:02}"), "i": i }),
        ));
        writes.push(WriteOp::Put(
            json!({ PARTITION_KEY: pk, SORT_KEY: format!("b#{i:02}") }),
        ));
        writes.push(WriteOp::Put(
            json!({ PARTITION_KEY: other, SORT_KEY: format!("a#{i:02}") }),
        ));
    }
    writes.push(WriteOp::Put(json!({ PARTITION_KEY: pk, SORT_KEY: "a" })));
    writes.push(WriteOp::Put(json!({ PARTITION_KEY: pk, SORT_KEY: "A#00" })));
    let results = t.batch_write(sorted, writes).await.expect("batch_write");
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    // Paging through a prefix, 10 at a time.
    let mut seen = Vec::new();
    let mut start: Option<Value> = None;
    let mut pages = 0;
    loop {
        let page = t
            .query(sorted, &json!(pk), Some("a#"), 10, start.as_ref())
            .await
            .expect("query page");
        pages += 1;
        assert!(page.items.len() <= 10);
        seen.extend(page.items.iter().map(|i| i["i"].as_i64().expect("i")));
        match page.next {
            Some(next) => {
                let last = page.items.last().expect("a page with next has items");
                assert_eq!(next, sorted_key(&pk, last[SORT_KEY].as_str().expect("sk")));
                start = Some(next);
            }
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (0..25).collect::<Vec<_>>());

    // Exactly a page: no `next`.
    let page = t
        .query(sorted, &json!({ PARTITION_KEY: pk }), Some("a#2"), 5, None)
        .await
        .expect("query exact page");
    assert_eq!(page.items.len(), 5);
    assert_eq!(page.next, None);

    // No prefix: the whole partition in sort-key (byte) order; a bare sort
    // key value as start-after.
    let whole = t
        .query(sorted, &json!(pk), None, 1000, None)
        .await
        .expect("query whole partition");
    assert_eq!(whole.items.len(), 52);
    assert_eq!(whole.items[0][SORT_KEY], json!("A#00"));
    assert_eq!(whole.items[1][SORT_KEY], json!("a"));
    assert_eq!(whole.next, None);
    let rest = t
        .query(sorted, &json!(pk), None, 1000, Some(&json!("a#24")))
        .await
        .expect("query with a bare start-after");
    assert_eq!(rest.items.len(), 25);
    assert_eq!(rest.items[0][SORT_KEY], json!("b#00"));

    // A limit of 0 reads as 1.
    let one = t
        .query(sorted, &json!(pk), Some("b#"), 0, None)
        .await
        .expect("query limit 0");
    assert_eq!(one.items.len(), 1);
    assert!(one.next.is_some());

    // Nothing there.
    let none = t
        .query(sorted, &json!(unique_name("empty")), None, 10, None)
        .await
        .expect("query an empty partition");
    assert_eq!(none.items, Vec::<Value>::new());
    assert_eq!(none.next, None);
    let none = t
        .query(sorted, &json!(pk), Some("c#"), 10, None)
        .await
        .expect("query a prefix nothing has");
    assert!(none.items.is_empty());

    // A table without sort key: its one item per partition.
    let id = unique_name("q-simple");
    t.put(simple, json!({ SIMPLE_KEY: id, "x": 1 }), None)
        .await
        .expect("put");
    let page = t
        .query(simple, &json!(id), None, 10, None)
        .await
        .expect("query simple");
    assert_eq!(page.items, vec![json!({ SIMPLE_KEY: id, "x": 1 })]);
    assert_eq!(page.next, None);
    expect_err(
        "query a table without sort key by prefix",
        t.query(simple, &json!(id), Some("a"), 10, None).await,
        "invalid",
    );
    expect_err(
        "query with a partition object holding other attributes",
        t.query(
            sorted,
            &json!({ PARTITION_KEY: pk, SORT_KEY: "a" }),
            None,
            10,
            None,
        )
        .await,
        "invalid",
    );
    expect_err(
        "query with a partition that is not a string or number",
        t.query(sorted, &json!([pk]), None, 10, None).await,
        "invalid",
    );
}

/// Malformed keys and items are `Invalid`; an unknown table is `NotFound`.
pub async fn invalid_requests(t: &dyn TableBackend, sorted: &str, simple: &str) {
    let pk = unique_name("bad");
    let cases: Vec<(&str, Value)> = vec![
        ("a key missing the sort key", json!({ PARTITION_KEY: pk })),
        ("a key missing the partition key", json!({ SORT_KEY: "a" })),
        (
            "a key with a non-key attribute",
            json!({ PARTITION_KEY: pk, SORT_KEY: "a", "x": 1 }),
        ),
        ("a key that is not an object", json!(pk)),
        (
            "a key attribute that is a boolean",
            json!({ PARTITION_KEY: true, SORT_KEY: "a" }),
        ),
        (
            "a key attribute that is an object",
            json!({ PARTITION_KEY: pk, SORT_KEY: {"a": 1} }),
        ),
        (
            "a key attribute that is the empty string",
            json!({ PARTITION_KEY: "", SORT_KEY: "a" }),
        ),
    ];
    for (what, key) in &cases {
        expect_err(what, t.get(sorted, key).await, "invalid");
        expect_err(what, t.delete(sorted, key, None).await, "invalid");
    }
    expect_err(
        "put of an item that is not an object",
        t.put(sorted, json!([1, 2]), None).await,
        "invalid",
    );
    expect_err(
        "put of an item missing the sort key",
        t.put(sorted, json!({ PARTITION_KEY: pk, "x": 1 }), None)
            .await,
        "invalid",
    );
    expect_err(
        "put of an item missing the partition key",
        t.put(simple, json!({"x": 1}), None).await,
        "invalid",
    );
    expect_err(
        "put of an item whose key is null",
        t.put(simple, json!({ SIMPLE_KEY: null }), None).await,
        "invalid",
    );
    expect_err(
        "a key of the simple table with a sort key",
        t.get(simple, &json!({ SIMPLE_KEY: pk, SORT_KEY: "a" }))
            .await,
        "invalid",
    );
    let unknown = unique_name("no-such-table");
    expect_err(
        "get from an unknown table",
        t.get(&unknown, &simple_key(&pk)).await,
        "not_found",
    );
    expect_err(
        "put to an unknown table",
        t.put(&unknown, json!({ SIMPLE_KEY: pk }), None).await,
        "not_found",
    );
    expect_err(
        "query an unknown table",
        t.query(&unknown, &json!(pk), None, 10, None).await,
        "not_found",
    );
}

/// The `*_text` reads answer what the `Value` reads answer, as the compact
/// text serde_json writes of it (what a guest was always handed): the same
/// items, misses, pages and continuation keys, and the items after
/// `update_many_text`'s updates.
pub async fn text_reads(t: &dyn TableBackend, sorted: &str, simple: &str) {
    let text = |v: &Value| serde_json::to_string(v).expect("serializes");
    let texts = |items: &[Option<JsonText>]| -> Vec<Option<String>> {
        items
            .iter()
            .map(|i| i.as_ref().map(|t| t.as_str().to_string()))
            .collect()
    };
    let pk = unique_name("text");
    let item = |i: usize| {
        json!({
            PARTITION_KEY: pk,
            SORT_KEY: format!("k{i:03}"),
            "i": i,
            "half": i as f64 / 2.0,
            "name": format!("fan \"{i}\" é ✓ \\ \n"),
            "nested": {"z": [1, "two", null, true, {"b": 1, "a": 2}], "a": {}},
            "flag": i.is_multiple_of(2),
        })
    };
    for i in 0..12 {
        t.put(sorted, item(i), None).await.expect("put");
    }
    let key = |i: usize| sorted_key(&pk, &format!("k{i:03}"));

    let got = t.get_text(sorted, &key(3)).await.expect("get_text");
    assert_eq!(
        got.as_ref().map(JsonText::as_str),
        Some(text(&item(3)).as_str())
    );
    assert_eq!(got.expect("found").value().expect("parses"), item(3));
    assert!(t
        .get_text(sorted, &key(99))
        .await
        .expect("get_text of a miss")
        .is_none());

    let keys = vec![key(5), key(99), key(0), key(5)];
    let values = t.batch_get(sorted, &keys).await.expect("batch_get");
    let got = t
        .batch_get_text(sorted, &keys)
        .await
        .expect("batch_get_text");
    assert_eq!(
        texts(&got),
        values
            .iter()
            .map(|v| v.as_ref().map(text))
            .collect::<Vec<_>>()
    );
    assert_eq!(texts(&got)[1], None);

    // Pages of 5, by prefix, continued from each page's key.
    let mut after: Option<Value> = None;
    let mut seen = 0;
    loop {
        let page = t
            .query(
                sorted,
                &json!({ PARTITION_KEY: pk }),
                Some("k0"),
                5,
                after.as_ref(),
            )
            .await
            .expect("query");
        let page_text = t
            .query_text(
                sorted,
                &json!({ PARTITION_KEY: pk }),
                Some("k0"),
                5,
                after.as_ref(),
            )
            .await
            .expect("query_text");
        assert_eq!(
            page_text
                .items
                .iter()
                .map(|t| t.as_str().to_string())
                .collect::<Vec<_>>(),
            page.items.iter().map(text).collect::<Vec<_>>()
        );
        assert_eq!(page_text.next, page.next);
        seen += page.items.len();
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, 12);

    // update_many_text: each item after its update, a failed one alone.
    let id = unique_name("text-upd");
    t.put(
        simple,
        json!({ SIMPLE_KEY: id, "v": 1, "keep": {"x": "y"} }),
        None,
    )
    .await
    .expect("put");
    let set = |v: Value| match v {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let got = t
        .update_many_text(
            simple,
            vec![
                UpdateItem {
                    key: json!({ SIMPLE_KEY: id }),
                    set: set(json!({"v": 2, "w": "é"})),
                    remove: vec!["keep".into()],
                    condition: Some(Condition::Exists),
                },
                UpdateItem {
                    key: json!({ SIMPLE_KEY: unique_name("text-missing") }),
                    set: set(json!({"v": 1})),
                    remove: vec![],
                    condition: Some(Condition::Exists),
                },
            ],
        )
        .await
        .expect("update_many_text");
    assert_eq!(got.len(), 2);
    let after_update = json!({ SIMPLE_KEY: id, "v": 2, "w": "é" });
    assert_eq!(
        got[0].as_ref().expect("updated").as_str(),
        text(&after_update)
    );
    assert!(matches!(got[1], Err(CapError::ConditionFailed(_))));
    assert_eq!(
        t.get(simple, &json!({ SIMPLE_KEY: id }))
            .await
            .expect("get"),
        Some(after_update)
    );
}
