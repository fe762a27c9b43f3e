//! The embedded backends against their contracts.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Map, Value};
use usher_backend_embedded::{ChangeKind, Embedded, EmbeddedError};
use usher_capabilities::{
    CacheBackend, CapError, Condition, Event, EventBackend, ObjectBackend, OutgoingMessage,
    PutItem, QueueBackend, TableBackend, TopicBackend, UpdateItem, WriteOp,
};
use usher_registry::{QueueDef, Resources, Subscription, TableDef, TopicDef};

fn resources() -> Resources {
    let mut r = Resources::default();
    r.tables.insert(
        "entries".into(),
        TableDef {
            partition_key: "pk".into(),
            sort_key: Some("sk".into()),
        },
    );
    r.tables.insert(
        "users".into(),
        TableDef {
            partition_key: "id".into(),
            sort_key: None,
        },
    );
    r.queues.insert(
        "work".into(),
        QueueDef {
            visibility_timeout_s: 30,
            max_receive_count: 2,
            dead_letter: Some("work-dlq".into()),
            retention_s: 3600,
        },
    );
    r.queues.insert("work-dlq".into(), QueueDef::default());
    r.queues.insert(
        "short-lived".into(),
        QueueDef {
            retention_s: 1,
            ..QueueDef::default()
        },
    );
    for q in ["campaign", "market", "not-test", "traced", "all"] {
        r.queues.insert(q.into(), QueueDef::default());
    }
    let sub = |queue: &str, policy: Option<Value>| Subscription {
        queue: queue.into(),
        filter_policy: policy,
    };
    r.topics.insert(
        "data".into(),
        TopicDef {
            subscriptions: vec![
                sub("campaign", Some(json!({"type": ["CAMPAIGN"]}))),
                sub("market", Some(json!({"type": [{"prefix": "MARKET"}]}))),
                sub(
                    "not-test",
                    Some(json!({"type": [{"anything-but": ["TEST"]}]})),
                ),
                sub("traced", Some(json!({"trace": [{"exists": true}]}))),
                sub("all", None),
            ],
        },
    );
    r.buckets.push("exports".into());
    r.event_topics.push("analytics".into());
    r
}

fn msg(body: &str, attrs: &[(&str, &str)]) -> OutgoingMessage {
    OutgoingMessage {
        body: body.into(),
        attributes: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        delay_seconds: None,
    }
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

// ---------------------------------------------------------------- tables

#[tokio::test]
async fn table_put_get_and_key_validation() {
    let e = Embedded::in_memory(&resources()).unwrap();
    let t = e.tables();
    t.put("entries", json!({"pk": "a", "sk": "1", "n": 1}), None)
        .await
        .unwrap();
    assert_eq!(
        t.get("entries", &json!({"pk": "a", "sk": "1"}))
            .await
            .unwrap(),
        Some(json!({"pk": "a", "sk": "1", "n": 1}))
    );
    assert_eq!(
        t.get("entries", &json!({"pk": "a", "sk": "2"}))
            .await
            .unwrap(),
        None
    );

    let missing = t.get("entries", &json!({"pk": "a"})).await.unwrap_err();
    assert!(
        matches!(&missing, CapError::Invalid(m) if m.contains("`sk`")),
        "{missing}"
    );
    let extra = t
        .get("entries", &json!({"pk": "a", "sk": "1", "n": 1}))
        .await
        .unwrap_err();
    assert!(
        matches!(&extra, CapError::Invalid(m) if m.contains("`n`")),
        "{extra}"
    );
    let no_pk = t
        .put("entries", json!({"sk": "1"}), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&no_pk, CapError::Invalid(m) if m.contains("`pk`")),
        "{no_pk}"
    );
    let bad_type = t
        .put("entries", json!({"pk": true, "sk": "1"}), None)
        .await
        .unwrap_err();
    assert!(matches!(bad_type, CapError::Invalid(_)));
    assert!(matches!(
        t.get("nope", &json!({"pk": "a"})).await,
        Err(CapError::NotFound(_))
    ));

    // Tables without a sort key; numeric keys.
    t.put("users", json!({"id": 7, "name": "x"}), None)
        .await
        .unwrap();
    assert_eq!(
        t.get("users", &json!({"id": 7})).await.unwrap(),
        Some(json!({"id": 7, "name": "x"}))
    );
    let got = t
        .batch_get(
            "users",
            &[json!({"id": 7}), json!({"id": 8}), json!({"id": 7})],
        )
        .await
        .unwrap();
    assert_eq!(got.iter().filter(|i| i.is_some()).count(), 2);
    assert!(got[1].is_none());
}

#[tokio::test]
async fn conditional_writes() {
    let e = Embedded::in_memory(&resources()).unwrap();
    let t = e.tables();
    let key = json!({"id": "u1"});
    t.put(
        "users",
        json!({"id": "u1", "v": 1}),
        Some(Condition::NotExists),
    )
    .await
    .unwrap();
    let again = t
        .put(
            "users",
            json!({"id": "u1", "v": 2}),
            Some(Condition::NotExists),
        )
        .await;
    assert!(
        matches!(again, Err(CapError::ConditionFailed(_))),
        "{again:?}"
    );

    t.put(
        "users",
        json!({"id": "u1", "v": 2}),
        Some(Condition::AttributeEquals("v".into(), json!(1))),
    )
    .await
    .unwrap();
    let wrong = t
        .put(
            "users",
            json!({"id": "u1", "v": 3}),
            Some(Condition::AttributeEquals("v".into(), json!(1))),
        )
        .await;
    assert!(matches!(wrong, Err(CapError::ConditionFailed(_))));

    // Update: merge set, remove attributes, return the result.
    let updated = t
        .update(
            "users",
            &key,
            obj(json!({"w": "x", "v": 5})),
            &["nothing".to_string()],
            Some(Condition::Exists),
        )
        .await
        .unwrap();
    assert_eq!(updated, json!({"id": "u1", "v": 5, "w": "x"}));
    let updated = t
        .update("users", &key, Map::new(), &["w".to_string()], None)
        .await
        .unwrap();
    assert_eq!(updated, json!({"id": "u1", "v": 5}));
    let key_change = t
        .update("users", &key, obj(json!({"id": "u2"})), &[], None)
        .await;
    assert!(matches!(key_change, Err(CapError::Invalid(_))));

    // Update creates the item when absent, unless a condition forbids it.
    let absent = t
        .update(
            "users",
            &json!({"id": "u9"}),
            obj(json!({"a": 1})),
            &[],
            Some(Condition::Exists),
        )
        .await;
    assert!(matches!(absent, Err(CapError::ConditionFailed(_))));
    assert_eq!(t.get("users", &json!({"id": "u9"})).await.unwrap(), None);
    let created = t
        .update(
            "users",
            &json!({"id": "u9"}),
            obj(json!({"a": 1})),
            &[],
            None,
        )
        .await
        .unwrap();
    assert_eq!(created, json!({"id": "u9", "a": 1}));

    // Delete with and without conditions.
    let cond_del = t
        .delete(
            "users",
            &key,
            Some(Condition::AttributeEquals("v".into(), json!(4))),
        )
        .await;
    assert!(matches!(cond_del, Err(CapError::ConditionFailed(_))));
    t.delete("users", &key, Some(Condition::Exists))
        .await
        .unwrap();
    assert_eq!(t.get("users", &key).await.unwrap(), None);
    assert!(matches!(
        t.delete("users", &key, Some(Condition::Exists)).await,
        Err(CapError::ConditionFailed(_))
    ));
    t.delete("users", &key, None).await.unwrap();
}

#[tokio::test]
async fn change_log_is_written_with_each_write() {
    let e = Embedded::in_memory(&resources()).unwrap();
    let t = e.tables();
    let log = e.change_log();
    let mut watch = log.subscribe("users").unwrap();
    assert_eq!(log.latest_seq("users").await.unwrap(), 0);

    t.put("users", json!({"id": "a", "v": 1}), None)
        .await
        .unwrap();
    assert!(watch.has_changed().unwrap());
    watch.borrow_and_update();
    t.put("users", json!({"id": "a", "v": 2}), None)
        .await
        .unwrap();
    // A failed conditional write leaves no trace.
    let failed = t
        .put(
            "users",
            json!({"id": "a", "v": 3}),
            Some(Condition::NotExists),
        )
        .await;
    assert!(failed.is_err());
    // Writes that change nothing log nothing.
    t.put("users", json!({"id": "a", "v": 2}), None)
        .await
        .unwrap();
    t.delete("users", &json!({"id": "zz"}), None).await.unwrap();
    t.delete("users", &json!({"id": "a"}), None).await.unwrap();
    t.put("entries", json!({"pk": "p", "sk": "s"}), None)
        .await
        .unwrap();

    let rows = log.read("users", 0, 100).await.unwrap();
    let kinds: Vec<ChangeKind> = rows.iter().map(|r| r.event_name).collect();
    assert_eq!(
        kinds,
        vec![ChangeKind::Insert, ChangeKind::Modify, ChangeKind::Remove]
    );
    assert!(rows.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(rows[0].keys, json!({"id": "a"}));
    assert_eq!(rows[0].old_image, None);
    assert_eq!(rows[1].old_image, Some(json!({"id": "a", "v": 1}).into()));
    assert_eq!(rows[1].new_image, Some(json!({"id": "a", "v": 2}).into()));
    assert_eq!(rows[2].new_image, None);
    assert!(rows[0].timestamp_ms > 0);
    assert_eq!(rows[1].sequence_number(), rows[1].seq.to_string());
    assert_eq!(log.latest_seq("users").await.unwrap(), rows[2].seq);

    // Reading after a sequence number, with a limit.
    let after = log.read("users", rows[0].seq, 1).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].seq, rows[1].seq);

    let other = log.read("entries", 0, 100).await.unwrap();
    assert_eq!(other.len(), 1);
    // Each table numbers its own changes.
    assert_eq!(other[0].seq, 1);
    assert!(matches!(
        log.read("nope", 0, 1).await,
        Err(CapError::NotFound(_))
    ));

    // Batch writes log one row per effective write, in the same transaction.
    let results = t
        .batch_write(
            "users",
            vec![
                WriteOp::Put(json!({"id": "b"})),
                WriteOp::Put(json!({"nope": "c"})),
                WriteOp::Delete(json!({"id": "b"})),
                WriteOp::Delete(json!({"id": "never"})),
            ],
        )
        .await
        .unwrap();
    assert!(results[0].is_ok() && results[2].is_ok() && results[3].is_ok());
    assert!(matches!(&results[1], Err(CapError::Invalid(m)) if m.contains("`id`")));
    let batch_rows = log.read("users", rows[2].seq, 100).await.unwrap();
    assert_eq!(batch_rows.len(), 2);

    // Checkpoints and trimming.
    assert_eq!(log.checkpoint_get("follower").await.unwrap(), None);
    log.checkpoint_set("follower", 5).await.unwrap();
    log.checkpoint_set("follower", 9).await.unwrap();
    assert_eq!(log.checkpoint_get("follower").await.unwrap(), Some(9));
    assert_eq!(log.trim_through("users", rows[1].seq).await.unwrap(), 2);
    assert_eq!(log.read("users", 0, 100).await.unwrap().len(), 3);
    assert_eq!(log.count("users").await.unwrap(), 3);

    // Retention: only changes through the sequence number AND older than the
    // cut-off go, at most `limit` at a time, oldest first.
    let all = log.read("users", 0, 100).await.unwrap();
    let newest = all.last().unwrap();
    assert_eq!(log.trim("users", newest.seq, 0, 100).await.unwrap(), 0);
    let after_all = newest.timestamp_ms + 1;
    assert_eq!(
        log.trim("users", all[1].seq, after_all, 1).await.unwrap(),
        1
    );
    let left = log.read("users", 0, 100).await.unwrap();
    assert_eq!(left.first().map(|r| r.seq), Some(all[1].seq));
    assert_eq!(
        log.trim("users", all[1].seq, after_all, 100).await.unwrap(),
        1
    );
    assert_eq!(log.count("users").await.unwrap(), 1);
    // Another table's changes stay.
    assert_eq!(log.count("entries").await.unwrap(), 1);
}

#[tokio::test]
async fn query_pages_by_sort_key_with_prefix() {
    let e = Embedded::in_memory(&resources()).unwrap();
    let t = e.tables();
    let mut writes = Vec::new();
    for i in 0..25 {
        writes.push(WriteOp::Put(
            json!({"pk": "p", "sk": format!("a#{i:02}"), "i": i}),
        ));
        writes.push(WriteOp::Put(json!({"pk": "p", "sk": format!("b#{i:02}")})));
        writes.push(WriteOp::Put(json!({"pk": "q", "sk": format!("a#{i:02}")})));
    }
    let results = t.batch_write("entries", writes).await.unwrap();
    assert!(results.iter().all(Result::is_ok));

    let mut seen = Vec::new();
    let mut start: Option<Value> = None;
    let mut pages = 0;
    loop {
        let page = t
            .query("entries", &json!("p"), Some("a#"), 10, start.as_ref())
            .await
            .unwrap();
        pages += 1;
        seen.extend(page.items.iter().map(|i| i["i"].as_i64().unwrap()));
        match page.next {
            Some(next) => {
                assert_eq!(
                    next,
                    json!({"pk": "p", "sk": page.items.last().unwrap()["sk"]})
                );
                start = Some(next);
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (0..25).collect::<Vec<_>>());

    // Exactly a page: no `next`.
    let page = t
        .query("entries", &json!({"pk": "p"}), Some("a#2"), 5, None)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 5);
    assert_eq!(page.next, None);

    // No prefix: the whole partition in order; a bare sort key as start-after.
    let all = t
        .query("entries", &json!("p"), None, 1000, Some(&json!("a#24")))
        .await
        .unwrap();
    assert_eq!(all.items.len(), 25);
    assert_eq!(all.items[0]["sk"], json!("b#00"));
    // A prefix and a cursor: a cursor before the prefix starts at the
    // prefix, one inside continues after it, one past it ends the match (the
    // query takes one of the two as its bound, never both).
    let from_start = t
        .query("entries", &json!("p"), Some("a#"), 100, Some(&json!("a")))
        .await
        .unwrap();
    assert_eq!(from_start.items.len(), 25);
    let inside = t
        .query(
            "entries",
            &json!("p"),
            Some("a#"),
            100,
            Some(&json!("a#19")),
        )
        .await
        .unwrap();
    let rest: Vec<i64> = inside
        .items
        .iter()
        .map(|i| i["i"].as_i64().unwrap())
        .collect();
    assert_eq!(rest, (20..25).collect::<Vec<_>>());
    assert!(t
        .query(
            "entries",
            &json!("p"),
            Some("a#"),
            100,
            Some(&json!("b#00"))
        )
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(t
        .query("entries", &json!("zz"), None, 10, None)
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(matches!(
        t.query("nope", &json!("p"), None, 10, None).await,
        Err(CapError::NotFound(_))
    ));
}

// ---------------------------------------------------------------- queues

#[tokio::test]
async fn queue_visibility_timeout_and_redelivery() {
    let e = Embedded::in_memory(&resources()).unwrap();
    let q = e.queues();
    let ids = q
        .send_batch("work", vec![msg("one", &[("k", "v")]), msg("two", &[])])
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    let first_id = ids[0].clone().unwrap();
    assert_eq!(q.depth("work").await.unwrap().visible, 2);

    let got = q
        .receive("work", 1, Some(Duration::from_millis(300)))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message_id, first_id);
    assert_eq!(got[0].body, "one");
    assert_eq!(got[0].attributes, vec![("k".to_string(), "v".to_string())]);
    assert_eq!(got[0].receive_count, 1);
    let depth = q.depth("work").await.unwrap();
    assert_eq!((depth.visible, depth.in_flight, depth.delayed), (1, 1, 0));

    // The invisible one is not handed out again until its timeout passes.
    let second = q.receive("work", 10, None).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].body, "two");
    assert!(q.receive("work", 10, None).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let again = q
        .receive("work", 10, Some(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message_id, first_id);
    assert_eq!(again[0].receive_count, 2);
    assert_ne!(again[0].receipt, got[0].receipt);

    // The old receipt is stale; the new one deletes.
    assert!(matches!(
        q.delete("work", &got[0].receipt).await,
        Err(CapError::NotFound(_))
    ));
    assert!(matches!(
        q.delete("work", "garbage").await,
        Err(CapError::Invalid(_))
    ));
    q.delete("work", &again[0].receipt).await.unwrap();
    assert!(q.delete("work", &again[0].receipt).await.is_err());

    // change_visibility to zero makes a message visible again at once.
    q.change_visibility("work", &second[0].receipt, Duration::ZERO)
        .await
        .unwrap();
    let third = q.receive("work", 10, None).await.unwrap();
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].body, "two");
    let results = q
        .delete_batch(
            "work",
            &[third[0].receipt.clone(), second[0].receipt.clone()],
        )
        .await
        .unwrap();
    assert!(results[0].is_ok());
    assert!(results[1].is_err());
    assert_eq!(q.depth("work").await.unwrap(), Default::default());

    assert!(matches!(
        q.send_batch("nope", vec![msg("x", &[])]).await,
        Err(CapError::NotFound(_))
    ));
    assert!(matches!(
        q.receive("nope", 1, None).await,
        Err(CapError::NotFound(_))
    ));
}

#[tokio::test]
async fn queue_delay_and_limits() {
    let e = Embedded::in_memory(&resources()).unwrap();
    let q = e.queues();
    let mut delayed = msg("later", &[]);
    delayed.delay_seconds = Some(1);
    let mut too_long = msg("x", &[]);
    too_long.delay_seconds = Some(901);
    let results = q
        .send_batch(
            "all",
            vec![delayed, too_long, msg(&"x".repeat(256 * 1024 + 1), &[])],
        )
        .await
        .unwrap();
    assert!(results[0].is_ok());
    assert!(matches!(results[1], Err(CapError::Invalid(_))));
    assert!(matches!(results[2], Err(CapError::Invalid(_))));
    assert_eq!(q.depth("all").await.unwrap().delayed, 1);
    assert!(q.receive("all", 10, None).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(q.receive("all", 10, None).await.unwrap().len(), 1);
}

#[tokio::test]
async fn queue_redrive_to_dead_letter_queue_and_replay() {
    let e = Embedded::in_memory(&resources()).unwrap();
    let q = e.queues();
    let id = q
        .send_batch("work", vec![msg("poison", &[("a", "b")])])
        .await
        .unwrap()[0]
        .clone()
        .unwrap();
    // max_receive_count is 2: received twice, then moved instead of a third delivery.
    for n in 1..=2 {
        let got = q.receive("work", 10, Some(Duration::ZERO)).await.unwrap();
        assert_eq!(got.len(), 1, "receive {n}");
        assert_eq!(got[0].receive_count, n);
    }
    assert!(q.receive("work", 10, None).await.unwrap().is_empty());
    assert_eq!(q.depth("work").await.unwrap(), Default::default());

    let dead = q.list("work-dlq", 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message_id, id);
    assert_eq!(dead[0].body, "poison");
    assert_eq!(dead[0].attributes, vec![("a".to_string(), "b".to_string())]);
    assert_eq!(dead[0].dead_letter_source.as_deref(), Some("work"));
    let from_dlq = q
        .receive("work-dlq", 10, Some(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(from_dlq[0].dead_letter_source.as_deref(), Some("work"));
    assert_eq!(from_dlq[0].receive_count, 1);

    // Replay: back to the source with a fresh receive count.
    assert_eq!(q.move_all("work-dlq", "work").await.unwrap(), 1);
    assert!(q.list("work-dlq", 10).await.unwrap().is_empty());
    let replayed = q.receive("work", 10, None).await.unwrap();
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].message_id, id);
    assert_eq!(replayed[0].receive_count, 1);
    assert_eq!(replayed[0].dead_letter_source, None);
    assert!(matches!(
        q.move_all("work", "work").await,
        Err(CapError::Invalid(_))
    ));
}

#[tokio::test]
async fn queue_move_some_moves_the_oldest_in_steps() {
    let e = Embedded::in_memory(&resources()).unwrap();
    let q = e.queues();
    let msgs = (0..5).map(|i| msg(&format!("m{i}"), &[])).collect();
    q.send_batch("work-dlq", msgs).await.unwrap();
    q.receive("work-dlq", 10, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(q.move_some("work-dlq", "work", 2).await.unwrap(), 2);
    assert_eq!(q.move_some("work-dlq", "work", 2).await.unwrap(), 2);
    assert_eq!(q.move_some("work-dlq", "work", 2).await.unwrap(), 1);
    assert_eq!(q.move_some("work-dlq", "work", 2).await.unwrap(), 0);
    let moved = q.list("work", 10).await.unwrap();
    let bodies: Vec<&str> = moved.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["m0", "m1", "m2", "m3", "m4"]);
    assert!(moved.iter().all(|m| m.receive_count == 0));
    // In flight in the DLQ before the move: visible at once in the target.
    assert_eq!(q.depth("work").await.unwrap().visible, 5);
    assert!(matches!(
        q.move_some("work", "work", 1).await,
        Err(CapError::Invalid(_))
    ));
}

#[tokio::test]
async fn queue_retention_drops_old_messages() {
    let e = Embedded::in_memory(&resources()).unwrap();
    let q = e.queues();
    q.send_batch("short-lived", vec![msg("old", &[])])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    q.send_batch("short-lived", vec![msg("new", &[])])
        .await
        .unwrap();
    let got = q.receive("short-lived", 10, None).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "new");
    assert_eq!(q.list("short-lived", 10).await.unwrap().len(), 1);
}

// ---------------------------------------------------------------- topics

#[tokio::test]
async fn topic_filter_policies() {
    let e = Embedded::in_memory(&resources()).unwrap();
    let topics = e.topics();
    let q = e.queues();
    let results = topics
        .publish_batch(
            "data",
            vec![
                msg("c", &[("type", "CAMPAIGN")]),
                msg("m", &[("type", "MARKET_EU")]),
                msg("t", &[("type", "TEST"), ("trace", "1")]),
                msg("none", &[]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(results.len(), 4);
    assert!(results.iter().all(Result::is_ok));

    let bodies = |queue: &'static str| {
        let q = q.clone();
        async move {
            q.list(queue, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.body)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(bodies("campaign").await, vec!["c"]);
    assert_eq!(bodies("market").await, vec!["m"]);
    // anything-but needs the attribute present; TEST is excluded.
    assert_eq!(bodies("not-test").await, vec!["c", "m"]);
    assert_eq!(bodies("traced").await, vec!["t"]);
    assert_eq!(bodies("all").await, vec!["c", "m", "t", "none"]);
    let attrs = &q.list("campaign", 1).await.unwrap()[0].attributes;
    assert_eq!(attrs, &vec![("type".to_string(), "CAMPAIGN".to_string())]);

    assert!(matches!(
        topics.publish_batch("nope", vec![msg("x", &[])]).await,
        Err(CapError::NotFound(_))
    ));
}

#[test]
fn bad_filter_policy_refuses_to_open() {
    let mut r = resources();
    r.topics.insert(
        "bad".into(),
        TopicDef {
            subscriptions: vec![Subscription {
                queue: "all".into(),
                filter_policy: Some(json!({"type": [{"regex": ".*"}]})),
            }],
        },
    );
    assert!(matches!(
        Embedded::in_memory(&r),
        Err(EmbeddedError::Config(_))
    ));
}

// ---------------------------------------------------------------- objects

#[tokio::test]
async fn objects_put_get_list() {
    let e = Embedded::in_memory(&resources()).unwrap();
    let o = e.objects();
    let info = o
        .put("exports", "a/b/c.csv", b"x,y\n".to_vec(), Some("text/csv"))
        .await
        .unwrap();
    assert_eq!(info.key, "a/b/c.csv");
    assert_eq!(info.size, 4);
    assert_eq!(info.etag.len(), 64);
    o.put("exports", "a/a.csv", b"1".to_vec(), None)
        .await
        .unwrap();
    o.put("exports", "b.csv", b"2".to_vec(), None)
        .await
        .unwrap();
    // Replacing an object.
    let replaced = o
        .put("exports", "b.csv", b"22".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(replaced.size, 2);
    assert_eq!(
        o.get("exports", "a/b/c.csv").await.unwrap(),
        Some(b"x,y\n".to_vec())
    );
    assert_eq!(o.get("exports", "a/zz").await.unwrap(), None);
    assert_eq!(o.get("exports", "a").await.unwrap(), None);

    let keys = |list: Vec<usher_capabilities::ObjectInfo>| {
        list.into_iter().map(|i| i.key).collect::<Vec<_>>()
    };
    assert_eq!(
        keys(o.list("exports", "", 100).await.unwrap()),
        vec!["a/a.csv", "a/b/c.csv", "b.csv"]
    );
    assert_eq!(
        keys(o.list("exports", "a/", 100).await.unwrap()),
        vec!["a/a.csv", "a/b/c.csv"]
    );
    assert_eq!(
        keys(o.list("exports", "a/b", 100).await.unwrap()),
        vec!["a/b/c.csv"]
    );
    assert_eq!(
        keys(o.list("exports", "", 1).await.unwrap()),
        vec!["a/a.csv"]
    );
    let listed = o.list("exports", "a/b/", 10).await.unwrap();
    assert_eq!(listed[0].etag, info.etag);

    assert!(matches!(
        o.put("nope", "k", vec![], None).await,
        Err(CapError::NotFound(_))
    ));
    assert!(matches!(
        o.list("nope", "", 1).await,
        Err(CapError::NotFound(_))
    ));
}

#[tokio::test]
async fn objects_refuse_keys_escaping_the_bucket() {
    let e = Embedded::in_memory(&resources()).unwrap();
    let o = e.objects();
    for key in [
        "../escape",
        "a/../../escape",
        "/etc/passwd",
        "a/./b",
        "a//b",
        "",
        "dir/",
        "a\\..\\b",
    ] {
        let r = o.put("exports", key, b"x".to_vec(), None).await;
        assert!(matches!(r, Err(CapError::Invalid(_))), "{key:?}: {r:?}");
        assert!(matches!(
            o.get("exports", key).await,
            Err(CapError::Invalid(_))
        ));
        assert!(o.open_writer("exports", key, None).await.is_err());
    }
    assert!(!o.root().parent().unwrap().join("escape").exists());
    // A key cannot be both an object and a folder of objects.
    o.put("exports", "x/y", b"1".to_vec(), None).await.unwrap();
    assert!(matches!(
        o.put("exports", "x", b"1".to_vec(), None).await,
        Err(CapError::Invalid(_))
    ));
    assert!(matches!(
        o.put("exports", "x/y/z", b"1".to_vec(), None).await,
        Err(CapError::Invalid(_))
    ));
}

#[tokio::test]
async fn object_writer_finish_and_abort() {
    let e = Embedded::in_memory(&resources()).unwrap();
    let o = e.objects();
    let mut w = o
        .open_writer("exports", "big/file.csv", None)
        .await
        .unwrap();
    w.write(b"hello ").await.unwrap();
    assert_eq!(o.get("exports", "big/file.csv").await.unwrap(), None);
    w.write(b"world").await.unwrap();
    let info = w.finish().await.unwrap();
    assert_eq!(info.size, 11);
    let whole = o
        .put("exports", "small.csv", b"hello world".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(info.etag, whole.etag);
    assert_eq!(
        o.get("exports", "big/file.csv").await.unwrap(),
        Some(b"hello world".to_vec())
    );

    let tmp = o.root().join(".tmp");
    let mut w = o.open_writer("exports", "aborted.csv", None).await.unwrap();
    w.write(b"partial").await.unwrap();
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 1);
    w.abort().await;
    assert_eq!(o.get("exports", "aborted.csv").await.unwrap(), None);
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    assert_eq!(o.list("exports", "aborted", 10).await.unwrap().len(), 0);

    // Dropped without finishing: same as an abort.
    let mut w = o.open_writer("exports", "dropped.csv", None).await.unwrap();
    w.write(b"partial").await.unwrap();
    drop(w);
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    assert_eq!(o.get("exports", "dropped.csv").await.unwrap(), None);
}

// ---------------------------------------------------------------- events

#[tokio::test]
async fn events_offsets_from_zero() {
    let e = Embedded::in_memory(&resources()).unwrap();
    let ev = e.events();
    let event = |k: &str, v: &str| Event {
        key: Some(k.into()),
        value: v.as_bytes().to_vec(),
        headers: vec![("h".into(), "1".into())],
    };
    let first = ev
        .produce("analytics", vec![event("a", "1"), event("b", "2")])
        .await
        .unwrap();
    let offsets: Vec<i64> = first.iter().map(|d| d.as_ref().unwrap().offset).collect();
    assert_eq!(offsets, vec![0, 1]);
    assert!(first.iter().all(|d| d.as_ref().unwrap().partition == 0));
    let second = ev
        .produce(
            "analytics",
            vec![
                Event {
                    key: None,
                    value: vec![0; 2 * 1024 * 1024],
                    headers: vec![],
                },
                event("c", "3"),
            ],
        )
        .await
        .unwrap();
    assert!(matches!(second[0], Err(CapError::Invalid(_))));
    assert_eq!(second[1].as_ref().unwrap().offset, 2);

    let read = ev.read("analytics", 1, 10).await.unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(read[0].offset, 1);
    assert_eq!(read[0].key.as_deref(), Some("b"));
    assert_eq!(read[0].value, b"2");
    assert_eq!(read[0].headers, vec![("h".to_string(), "1".to_string())]);
    assert_eq!(ev.end_offset("analytics").await.unwrap(), 3);
    assert!(matches!(
        ev.produce("nope", vec![event("a", "1")]).await,
        Err(CapError::NotFound(_))
    ));
    assert!(matches!(
        ev.read("nope", 0, 1).await,
        Err(CapError::NotFound(_))
    ));
}

// ---------------------------------------------------------------- cache

#[tokio::test]
async fn cache_ttl_expiry() {
    let e = Embedded::in_memory(&resources()).unwrap();
    let c = e.cache();
    c.set("forever", "1", None).await.unwrap();
    c.set("brief", "2", Some(Duration::from_millis(100)))
        .await
        .unwrap();
    assert_eq!(c.get("brief").await.unwrap().as_deref(), Some("2"));
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(c.get("brief").await.unwrap(), None);
    assert_eq!(c.get("forever").await.unwrap().as_deref(), Some("1"));
    assert_eq!(c.len(), 1);
    c.delete("forever").await.unwrap();
    assert!(c.is_empty());
    assert!(matches!(
        c.set("k", "v", Some(Duration::ZERO)).await,
        Err(CapError::Invalid(_))
    ));
}

// ---------------------------------------------------------------- durability

/// On a data folder (a file, WAL) every write is seen by the next read
/// (get, batch_get, query, the change log), also while other tasks keep
/// writing. (A second, read-only connection for the reads was tried on
/// 2026-12-07: P8 on 100,000 entries went from 16.5–17.1 s to 14.0–14.2 s,
/// but on 1,000,000 from 197.66 s to 224.25 s, with 100 s more CPU; it was
/// taken out. This test stays for whoever tries again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_on_a_data_folder_see_every_committed_write() {
    let dir = tempfile::tempdir().unwrap();
    let e = Embedded::open(dir.path(), &resources()).unwrap();
    let t = e.tables();
    let writer = {
        let t = e.tables();
        tokio::spawn(async move {
            for i in 0..200 {
                t.put(
                    "entries",
                    json!({"pk": "noise", "sk": format!("{i:04}")}),
                    None,
                )
                .await
                .unwrap();
            }
        })
    };
    let log = e.change_log();
    for i in 0..200u64 {
        let sk = format!("{i:04}");
        t.put("entries", json!({"pk": "p", "sk": sk, "n": i}), None)
            .await
            .unwrap();
        let key = json!({"pk": "p", "sk": sk});
        assert_eq!(
            t.get("entries", &key).await.unwrap(),
            Some(json!({"pk": "p", "sk": sk, "n": i}))
        );
        let got = t.batch_get("entries", &[key]).await.unwrap();
        assert_eq!(got[0].as_ref().map(|v| v["n"].clone()), Some(json!(i)));
        let page = t
            .query("entries", &json!({"pk": "p"}), None, 1000, None)
            .await
            .unwrap();
        assert_eq!(page.items.len() as u64, i + 1);
        let latest = log.latest_seq("entries").await.unwrap();
        let rows = log.read("entries", latest - 1, 10).await.unwrap();
        assert!(
            rows.iter().any(|r| r.seq == latest),
            "the change log ends at {latest}"
        );
    }
    writer.await.unwrap();
}

#[tokio::test]
async fn state_survives_reopening_the_data_folder() {
    let dir = tempfile::tempdir().unwrap();
    let r = resources();
    let receipt;
    {
        let e = Embedded::open(dir.path(), &r).unwrap();
        e.tables()
            .put("users", json!({"id": "kept", "v": 1}), None)
            .await
            .unwrap();
        e.queues()
            .send_batch(
                "work",
                vec![msg("in flight", &[]), msg("waiting", &[("a", "1")])],
            )
            .await
            .unwrap();
        let got = e.queues().receive("work", 1, None).await.unwrap();
        receipt = got[0].receipt.clone();
        e.change_log().checkpoint_set("follower", 42).await.unwrap();
        e.objects()
            .put("exports", "kept.csv", b"1".to_vec(), None)
            .await
            .unwrap();
        e.events()
            .produce(
                "analytics",
                vec![Event {
                    key: None,
                    value: b"v".to_vec(),
                    headers: vec![],
                }],
            )
            .await
            .unwrap();
    }
    let e = Embedded::open(dir.path(), &r).unwrap();
    assert_eq!(
        e.tables()
            .get("users", &json!({"id": "kept"}))
            .await
            .unwrap(),
        Some(json!({"id": "kept", "v": 1}))
    );
    let log = e.change_log();
    assert_eq!(log.read("users", 0, 10).await.unwrap().len(), 1);
    assert_eq!(log.checkpoint_get("follower").await.unwrap(), Some(42));
    let latest = log.latest_seq("users").await.unwrap();
    assert_eq!(*log.subscribe("users").unwrap().borrow(), latest);
    // A new write continues the sequence.
    e.tables()
        .put("users", json!({"id": "kept", "v": 2}), None)
        .await
        .unwrap();
    assert!(log.latest_seq("users").await.unwrap() > latest);

    let depth = e.queues().depth("work").await.unwrap();
    assert_eq!((depth.visible, depth.in_flight), (1, 1));
    let got = e.queues().receive("work", 10, None).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "waiting");
    assert_eq!(got[0].attributes, vec![("a".to_string(), "1".to_string())]);
    // The in-flight message's receipt still deletes it after the restart.
    e.queues().delete("work", &receipt).await.unwrap();

    assert_eq!(
        e.objects().get("exports", "kept.csv").await.unwrap(),
        Some(b"1".to_vec())
    );
    assert_eq!(e.events().end_offset("analytics").await.unwrap(), 1);
    assert!(dir.path().join("tables/users.db").exists());
    assert!(dir.path().join("checkpoints.db").exists());
    assert!(dir.path().join("objects/exports/kept.csv").exists());
}

/// A data folder of the earlier layout: every table's items and change log,
/// and the checkpoints, in one `tables.db` (the schema as it was, before the
/// `traceparent` column).
fn write_legacy_tables_db(dir: &std::path::Path) {
    let conn = rusqlite::Connection::open(dir.join("tables.db")).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE items (tbl TEXT NOT NULL, pk ANY NOT NULL, sk ANY NOT NULL,
             item TEXT NOT NULL, PRIMARY KEY (tbl, pk, sk)) WITHOUT ROWID;
         CREATE TABLE changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL,
             event_name TEXT NOT NULL, keys TEXT NOT NULL, new_image TEXT, old_image TEXT,
             ts_ms INTEGER NOT NULL);
         CREATE INDEX changes_by_table ON changes (tbl, seq);
         CREATE TABLE checkpoints (consumer TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
         INSERT INTO items VALUES ('users', 'u1', '', '{\"id\":\"u1\",\"v\":2}');
         INSERT INTO items VALUES ('entries', 'p', 's', '{\"n\":1,\"pk\":\"p\",\"sk\":\"s\"}');
         INSERT INTO items VALUES ('gone', 'x', '', '{\"id\":\"x\"}');
         INSERT INTO changes VALUES (3, 'users', 'INSERT', '{\"id\":\"u1\"}', '{\"id\":\"u1\",\"v\":1}', NULL, 1000);
         INSERT INTO changes VALUES (4, 'entries', 'INSERT', '{\"pk\":\"p\",\"sk\":\"s\"}', '{\"n\":1,\"pk\":\"p\",\"sk\":\"s\"}', NULL, 1001);
         INSERT INTO changes VALUES (7, 'users', 'MODIFY', '{\"id\":\"u1\"}', '{\"id\":\"u1\",\"v\":2}', '{\"id\":\"u1\",\"v\":1}', 1002);
         INSERT INTO checkpoints VALUES ('follower', 3);",
    )
    .unwrap();
}

#[tokio::test]
async fn a_data_folder_of_one_tables_db_is_migrated_to_a_database_per_table() {
    let dir = tempfile::tempdir().unwrap();
    write_legacy_tables_db(dir.path());
    let r = resources();
    {
        let e = Embedded::open(dir.path(), &r).unwrap();
        let t = e.tables();
        assert_eq!(
            t.get("users", &json!({"id": "u1"})).await.unwrap(),
            Some(json!({"id": "u1", "v": 2}))
        );
        assert_eq!(
            t.get("entries", &json!({"pk": "p", "sk": "s"}))
                .await
                .unwrap(),
            Some(json!({"n": 1, "pk": "p", "sk": "s"}))
        );
        // The log keeps its sequence numbers, per table.
        let log = e.change_log();
        let users = log.read("users", 0, 10).await.unwrap();
        assert_eq!(users.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![3, 7]);
        assert_eq!(
            users[1].old_image.as_ref().unwrap().as_str(),
            r#"{"id":"u1","v":1}"#
        );
        assert_eq!(users[1].traceparent, None);
        let entries = log.read("entries", 0, 10).await.unwrap();
        assert_eq!(entries.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![4]);
        assert_eq!(log.checkpoint_get("follower").await.unwrap(), Some(3));
        assert_eq!(*log.subscribe("users").unwrap().borrow(), 7);
        // A new write continues the table's sequence.
        t.put("users", json!({"id": "u1", "v": 3}), None)
            .await
            .unwrap();
        assert!(log.latest_seq("users").await.unwrap() > 7);
    }
    assert!(!dir.path().join("tables.db").exists());
    // Kept: it also holds the rows of a table the registry no longer has.
    let old = rusqlite::Connection::open(dir.path().join("tables.db.migrated")).unwrap();
    let gone: i64 = old
        .query_row("SELECT COUNT(*) FROM items WHERE tbl = 'gone'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(gone, 1);
    // Opened again: nothing to migrate, nothing lost.
    let e = Embedded::open(dir.path(), &r).unwrap();
    assert_eq!(
        e.tables().get("users", &json!({"id": "u1"})).await.unwrap(),
        Some(json!({"id": "u1", "v": 3}))
    );
    assert_eq!(e.change_log().read("users", 0, 10).await.unwrap().len(), 3);
}

#[tokio::test]
async fn the_migration_waits_for_another_process_to_let_go_of_tables_db() {
    let dir = tempfile::tempdir().unwrap();
    write_legacy_tables_db(dir.path());
    // Another connection (an earlier usher) has the old file open.
    let other = rusqlite::Connection::open(dir.path().join("tables.db")).unwrap();
    other.execute_batch("SELECT COUNT(*) FROM items").unwrap();
    let refused = Embedded::open(dir.path(), &resources()).err().unwrap();
    assert!(
        refused.to_string().contains("open in another process"),
        "{refused}"
    );
    assert!(dir.path().join("tables.db").exists());
    drop(other);
    let e = Embedded::open(dir.path(), &resources()).unwrap();
    assert_eq!(
        e.tables().get("users", &json!({"id": "u1"})).await.unwrap(),
        Some(json!({"id": "u1", "v": 2}))
    );
    assert!(dir.path().join("tables.db.migrated").exists());
}

#[tokio::test]
async fn writes_to_different_tables_do_not_share_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let e = Embedded::open(dir.path(), &resources()).unwrap();
    let t = e.tables();
    t.put("users", json!({"id": "a"}), None).await.unwrap();
    t.put("entries", json!({"pk": "p", "sk": "s"}), None)
        .await
        .unwrap();
    // Another connection holds `users`' write lock: `entries` is still
    // written (a table's writer waits only for its own table).
    let other = rusqlite::Connection::open(dir.path().join("tables/users.db")).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    tokio::time::timeout(
        std::time::Duration::from_secs(2),
        t.put("entries", json!({"pk": "p", "sk": "t"}), None),
    )
    .await
    .expect("a write to another table waits for no other table's lock")
    .unwrap();
    other.execute_batch("ROLLBACK").unwrap();
    t.put("users", json!({"id": "b"}), None).await.unwrap();
    // Sequence numbers are the table's own.
    let log = e.change_log();
    assert_eq!(log.latest_seq("users").await.unwrap(), 2);
    assert_eq!(log.latest_seq("entries").await.unwrap(), 2);
}

#[tokio::test]
async fn backends_bundle_wires_embedded_parts() {
    use std::sync::Arc;
    use usher_capabilities::{
        CodecBackend, Format, ServiceBackend, ServiceRequest, ServiceResponse, WorkerInvoker,
    };

    struct Nothing;
    #[async_trait::async_trait]
    impl ServiceBackend for Nothing {
        async fn call(&self, _: ServiceRequest) -> Result<ServiceResponse, CapError> {
            Err(CapError::Unsupported("none".into()))
        }
    }
    #[async_trait::async_trait]
    impl CodecBackend for Nothing {
        async fn encode(&self, _: Format, _: &Value, _: Vec<String>) -> Result<Vec<u8>, CapError> {
            Err(CapError::Unsupported("none".into()))
        }
    }
    #[async_trait::async_trait]
    impl WorkerInvoker for Nothing {
        async fn invoke(&self, _: &str, _: Value, _: &str) -> Result<Value, CapError> {
            Err(CapError::Unsupported("none".into()))
        }
        async fn invoke_async(&self, _: &str, _: Value, _: &str) -> Result<(), CapError> {
            Err(CapError::Unsupported("none".into()))
        }
    }
    let e = Embedded::in_memory(&resources()).unwrap();
    let n = Arc::new(Nothing);
    let b = e.backends(n.clone(), n.clone(), n);
    b.table
        .put("users", json!({"id": "x"}), None)
        .await
        .unwrap();
    assert!(e
        .tables()
        .get("users", &json!({"id": "x"}))
        .await
        .unwrap()
        .is_some());
    b.cache.set("k", "v", None).await.unwrap();
    assert_eq!(e.cache().get("k").await.unwrap().as_deref(), Some("v"));
    let _ = BTreeMap::<String, String>::new();
}

// ---------------------------------------------------------------- throughput

/// Prints throughput figures; run with
/// `cargo test --release -p usher-backend-embedded -- --ignored --nocapture throughput`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput() {
    use std::time::Instant;
    const N: usize = 10_000;
    let dir = tempfile::tempdir().unwrap();
    for (label, e) in [
        (
            "file (WAL)",
            Embedded::open(dir.path(), &resources()).unwrap(),
        ),
        ("in-memory", Embedded::in_memory(&resources()).unwrap()),
    ] {
        let t = e.tables();
        let items: Vec<WriteOp> = (0..N)
            .map(|i| {
                WriteOp::Put(json!({"pk": format!("p{}", i % 100), "sk": format!("s{i:06}"), "payload": "x".repeat(100), "n": i}))
            })
            .collect();
        let start = Instant::now();
        let r = t.batch_write("entries", items).await.unwrap();
        let one_txn = start.elapsed();
        assert!(r.iter().all(Result::is_ok));

        // As the capability layer sends them: chunks of 25.
        let start = Instant::now();
        for chunk in 0..(N / 25) {
            let writes = (0..25)
                .map(|j| {
                    let i = chunk * 25 + j;
                    WriteOp::Put(json!({"pk": format!("c{}", i % 100), "sk": format!("s{i:06}"), "payload": "x".repeat(100)}))
                })
                .collect();
            t.batch_write("entries", writes).await.unwrap();
        }
        let chunked = start.elapsed();

        let start = Instant::now();
        for i in 0..2_000 {
            t.put(
                "users",
                json!({"id": format!("u{i}"), "payload": "x".repeat(100)}),
                None,
            )
            .await
            .unwrap();
        }
        let single = start.elapsed();

        let q = e.queues();
        let start = Instant::now();
        for _ in 0..(N / 10) {
            let batch = (0..10)
                .map(|i| msg(&format!("body {i}"), &[("type", "T")]))
                .collect();
            q.send_batch("all", batch).await.unwrap();
        }
        let sent = start.elapsed();
        let start = Instant::now();
        let mut received = 0;
        loop {
            let got = q.receive("all", 10, None).await.unwrap();
            if got.is_empty() {
                break;
            }
            received += got.len();
            let receipts: Vec<String> = got.into_iter().map(|m| m.receipt).collect();
            for r in q.delete_batch("all", &receipts).await.unwrap() {
                r.unwrap();
            }
        }
        let drained = start.elapsed();
        assert_eq!(received, N);

        // Per-message delete (no batching on the consumer side).
        for _ in 0..(N / 10) {
            let batch = (0..10).map(|i| msg(&format!("body {i}"), &[])).collect();
            q.send_batch("all", batch).await.unwrap();
        }
        let start = Instant::now();
        loop {
            let got = q.receive("all", 10, None).await.unwrap();
            if got.is_empty() {
                break;
            }
            for m in got {
                q.delete("all", &m.receipt).await.unwrap();
            }
        }
        let drained_single = start.elapsed();

        let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
        println!(
            "[{label}] table batch_write {N} items, one transaction: {:?} ({:.0} items/s)",
            one_txn,
            rate(N, one_txn)
        );
        println!(
            "[{label}] table batch_write {N} items in chunks of 25: {:?} ({:.0} items/s)",
            chunked,
            rate(N, chunked)
        );
        println!(
            "[{label}] table put one by one, 2000 items: {:?} ({:.0} puts/s)",
            single,
            rate(2000, single)
        );
        println!(
            "[{label}] queue send {N} messages in batches of 10: {:?} ({:.0} msgs/s)",
            sent,
            rate(N, sent)
        );
        println!(
            "[{label}] queue receive(10) + delete_batch {N} messages: {:?} ({:.0} msgs/s)",
            drained,
            rate(N, drained)
        );
        println!(
            "[{label}] queue receive(10) + delete one by one {N} messages: {:?} ({:.0} msgs/s)",
            drained_single,
            rate(N, drained_single)
        );
    }
}

#[tokio::test]
async fn put_many_and_update_many_apply_each_condition_alone_in_one_transaction() {
    let e = Embedded::in_memory(&resources()).unwrap();
    let t = e.tables();
    let log = e.change_log();
    t.put("users", json!({"id": "a", "v": 1}), None)
        .await
        .unwrap();
    let before = log.latest_seq("users").await.unwrap();

    let results = t
        .put_many(
            "users",
            vec![
                // Fails: a exists.
                PutItem {
                    item: json!({"id": "a", "v": 9}),
                    condition: Some(Condition::NotExists),
                },
                PutItem {
                    item: json!({"id": "b", "v": 1}),
                    condition: Some(Condition::NotExists),
                },
                // Malformed: no key.
                PutItem {
                    item: json!({"v": 1}),
                    condition: None,
                },
                PutItem {
                    item: json!({"id": "a", "v": 2}),
                    condition: Some(Condition::AttributeEquals("v".into(), json!(1))),
                },
            ],
        )
        .await
        .unwrap();
    assert!(
        matches!(results[0], Err(CapError::ConditionFailed(_))),
        "{results:?}"
    );
    assert!(results[1].is_ok());
    assert!(
        matches!(results[2], Err(CapError::Invalid(_))),
        "{results:?}"
    );
    assert!(results[3].is_ok());
    assert_eq!(
        t.get("users", &json!({"id": "a"})).await.unwrap().unwrap()["v"],
        2
    );
    // Two changes recorded (b inserted, a modified), in order.
    let changes = log.read("users", before, 10).await.unwrap();
    let kinds: Vec<_> = changes.iter().map(|c| c.event_name).collect();
    assert_eq!(kinds, vec![ChangeKind::Insert, ChangeKind::Modify]);

    let updated = t
        .update_many(
            "users",
            vec![
                UpdateItem {
                    key: json!({"id": "a"}),
                    set: obj(json!({"flag": false})),
                    remove: vec!["v".into()],
                    condition: Some(Condition::AttributeEquals("v".into(), json!(2))),
                },
                UpdateItem {
                    key: json!({"id": "b"}),
                    set: obj(json!({"flag": false})),
                    remove: vec![],
                    condition: Some(Condition::AttributeEquals("v".into(), json!(7))),
                },
                // A key attribute cannot be updated.
                UpdateItem {
                    key: json!({"id": "b"}),
                    set: obj(json!({"id": "c"})),
                    remove: vec![],
                    condition: None,
                },
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        updated[0].as_ref().unwrap(),
        &json!({"id": "a", "flag": false})
    );
    assert!(
        matches!(updated[1], Err(CapError::ConditionFailed(_))),
        "{updated:?}"
    );
    assert!(
        matches!(updated[2], Err(CapError::Invalid(_))),
        "{updated:?}"
    );
    assert_eq!(
        t.get("users", &json!({"id": "b"})).await.unwrap().unwrap(),
        json!({"id": "b", "v": 1})
    );
    // An unknown table fails the call.
    assert!(t.put_many("nope", vec![]).await.is_err());
}

/// The filter the change log applies in SQLite passes exactly the changes
/// `StreamFilterRule::passes` passes, and the scanned-through sequence
/// number lets a follower skip the rest.
#[tokio::test]
async fn read_filtered_passes_exactly_what_the_filter_passes() {
    use usher_registry::StreamFilterRule;
    let e = Embedded::in_memory(&resources()).unwrap();
    let t = e.tables();
    let log = e.change_log();
    let items = [
        json!({"pk": "a", "sk": "ENTRY", "verdict": "WINNER", "flag": true}),
        json!({"pk": "a", "sk": "ENTRY", "verdict": "LOSER", "flag": false}),
        json!({"pk": "b", "sk": "ENTRY", "verdict": "LOSER"}),
        json!({"pk": "b", "sk": "ENTRY", "verdict": {"nested": "WINNER"}, "flag": "true"}),
        json!({"pk": "c", "sk": "SALE#1", "verdict": 7, "flag": 1}),
        json!({"pk": "c", "sk": "SALE#1", "verdict": "WIN", "flag": true}),
        json!({"pk": "d\"q", "sk": "x", "we\"ird": "WINNER"}),
    ];
    for item in &items {
        t.put("entries", item.clone(), None).await.unwrap();
    }
    t.delete("entries", &json!({"pk": "a", "sk": "ENTRY"}), None)
        .await
        .unwrap();
    t.delete("entries", &json!({"pk": "b", "sk": "ENTRY"}), None)
        .await
        .unwrap();
    let all = log.read("entries", 0, 100).await.unwrap();
    assert_eq!(all.len(), 9);
    let rule =
        |attribute: &str, equals: &[&str], prefix: &[&str], is: Option<bool>, events: &[&str]| {
            let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            StreamFilterRule {
                attribute: attribute.to_string(),
                equals: strings(equals),
                prefix: strings(prefix),
                is,
                events: strings(events),
            }
        };
    let filters: Vec<Vec<StreamFilterRule>> = vec![
        vec![rule("verdict", &["WINNER"], &[], None, &[])],
        vec![rule("verdict", &[], &["WIN", "LO"], None, &[])],
        vec![
            rule("sk", &[], &["SALE#"], None, &[]),
            rule("flag", &[], &[], Some(true), &[]),
        ],
        vec![rule("flag", &[], &[], Some(false), &[])],
        vec![rule("", &[], &[], None, &["REMOVE"])],
        vec![
            rule("flag", &[], &[], Some(true), &[]),
            rule("", &[], &[], None, &["REMOVE"]),
        ],
        vec![rule(
            "verdict",
            &["LOSER"],
            &[],
            None,
            &["INSERT", "REMOVE"],
        )],
        vec![rule("we\"ird", &["WINNER"], &[], None, &[])],
        vec![rule("absent", &["x"], &[], None, &[])],
    ];
    for filter in &filters {
        let want: Vec<u64> = all
            .iter()
            .filter(|r| {
                let value = |i: &Option<usher_capabilities::JsonText>| {
                    i.as_ref().map(|i| i.value().expect("JSON"))
                };
                let (new, old) = (value(&r.new_image), value(&r.old_image));
                StreamFilterRule::passes(filter, new.as_ref(), old.as_ref())
            })
            .map(|r| r.seq)
            .collect();
        let (rows, through) = log
            .read_filtered("entries", 0, 100, 100, filter)
            .await
            .unwrap();
        let got: Vec<u64> = rows.iter().map(|r| r.seq).collect();
        assert_eq!(got, want, "{filter:?}");
        assert_eq!(through, all.last().map(|r| r.seq), "{filter:?}");
        assert!(rows.iter().all(|r| all.contains(r)));
        // A page of one: through the first passing change.
        let (one, through) = log
            .read_filtered("entries", 0, 1, 100, filter)
            .await
            .unwrap();
        match want.first() {
            Some(&first) => {
                assert_eq!(one.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![first]);
                assert_eq!(through, Some(first));
            }
            None => assert_eq!(through, all.last().map(|r| r.seq)),
        }
        // A scan of two (a scan is never shorter than the page): through
        // the second change.
        let (two, through) = log.read_filtered("entries", 0, 2, 2, filter).await.unwrap();
        assert!(two.iter().all(|r| r.seq <= all[1].seq));
        assert_eq!(through, Some(all[1].seq));
    }
    // Nothing after the newest.
    let newest = all.last().unwrap().seq;
    let (rows, through) = log
        .read_filtered("entries", newest, 10, 10, &filters[0])
        .await
        .unwrap();
    assert!(rows.is_empty());
    assert_eq!(through, None);
}

/// Under `log_changes_only_of`, the other tables' writes leave no change
/// (their batch writes still write and delete).
#[tokio::test]
async fn only_the_streamed_tables_log_changes() {
    let e = Embedded::in_memory(&resources()).unwrap();
    let t = e.tables();
    let log = e.change_log();
    assert!(t.logs_changes_of("users"));
    t.log_changes_only_of(["entries"]);
    assert!(!t.logs_changes_of("users"));
    assert!(t.logs_changes_of("entries"));
    t.put("users", json!({"id": "a", "v": 1}), None)
        .await
        .unwrap();
    t.update(
        "users",
        &json!({"id": "a"}),
        obj(json!({"v": 2})),
        &[],
        Some(Condition::Exists),
    )
    .await
    .unwrap();
    let results = t
        .batch_write(
            "users",
            vec![
                WriteOp::Put(json!({"id": "b", "v": 1})),
                WriteOp::Delete(json!({"id": "a"})),
                WriteOp::Put(json!({"nope": "c"})),
            ],
        )
        .await
        .unwrap();
    assert!(results[0].is_ok() && results[1].is_ok() && results[2].is_err());
    assert_eq!(t.get("users", &json!({"id": "a"})).await.unwrap(), None);
    assert_eq!(
        t.get("users", &json!({"id": "b"})).await.unwrap(),
        Some(json!({"id": "b", "v": 1}))
    );
    assert_eq!(log.count("users").await.unwrap(), 0);
    t.put("entries", json!({"pk": "p", "sk": "s"}), None)
        .await
        .unwrap();
    assert_eq!(log.count("entries").await.unwrap(), 1);
}

/// A delete removes its emptied folder; a put into that folder at the same
/// moment must still land (the folder is made again), never fail with "no
/// such file or directory" (seen in the archive under `usher up`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn puts_and_deletes_racing_in_one_folder_never_fail_a_put() {
    let e = Embedded::in_memory(&resources()).unwrap();
    let o = std::sync::Arc::new(e.objects());
    let mut tasks = Vec::new();
    for t in 0..4 {
        let o = o.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..300 {
                let key = format!("race/dt=1/{t}-{i}.bin");
                o.put("exports", &key, vec![1u8; 16], None)
                    .await
                    .unwrap_or_else(|e| panic!("put {key}: {e}"));
                o.delete("exports", &key).await.expect("delete");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert!(o.list("exports", "race/", 10).await.unwrap().is_empty());
}

/// Opening a data folder (as `usher status` does beside a running `usher
/// up`) must not remove the temporary files of writes in flight: it did,
/// and the archive's put failed with "No such file or directory" (seen in
/// `e2e_data_pipeline`). Only old leftovers of crashed writes go.
#[tokio::test]
async fn opening_a_data_folder_keeps_the_writes_in_flight_and_clears_old_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let e = Embedded::open(dir.path(), &resources()).unwrap();
    let o = e.objects();
    let tmp = o.root().join(".tmp");
    let old = tmp.join("crashed-long-ago");
    let file = std::fs::File::create(&old).unwrap();
    file.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(7200))
        .unwrap();
    drop(file);
    let mut w = o.open_writer("exports", "live.csv", None).await.unwrap();
    w.write(b"in flight").await.unwrap();

    let other = Embedded::open(dir.path(), &resources()).unwrap();
    assert!(!old.exists(), "an old leftover stays");
    let info = w.finish().await.expect("the write in flight lands");
    assert_eq!(info.size, 9);
    assert_eq!(
        other.objects().get("exports", "live.csv").await.unwrap(),
        Some(b"in flight".to_vec())
    );
}
