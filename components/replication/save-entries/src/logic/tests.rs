use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;

use serde_json::json;
use usher_sdk::fakes::{self, Call, Fakes};
use usher_sdk::queue::Outgoing;
use usher_sdk::table::Condition;
use usher_sdk::{Error, Message, Value};

use super::*;

/// How the Entry Service answers one call.
#[derive(Clone, Copy)]
enum Answer {
    /// This status; a 2xx upsert answers `scoreFailures` (the fans of
    /// `Fake::score_failures` it carries).
    Status(u16),
    /// 200 `{}`: a service that ignores `refreshScores`.
    Bare,
    Error,
}

/// A test's setup of the SDK fakes, and (after [`run`]) what the worker did.
#[derive(Default)]
struct Fake {
    /// The demand-table's items.
    items: Vec<Value>,
    batch_get_fails: bool,
    /// (path, nth call to that path) → answer; default 200.
    answers: HashMap<(String, usize), Answer>,
    /// key JSON text → "condition" | "error"; default success.
    update_answers: HashMap<String, &'static str>,
    send_fails: bool,
    /// A key (JSON text) whose item disappears after the first batch_get.
    vanish_after_first_read: Option<String>,
    /// Indices (within one send) whose send fails.
    send_item_fails: Vec<usize>,
    /// Fans whose score refresh fails in the Entry Service.
    score_failures: Vec<Value>,
    // What the worker did, read from the fakes' record by `run`:
    call_manys: usize,
    batch_gets: Vec<Vec<Value>>,
    posts: Vec<(String, String, Value)>,
    updates: Vec<(String, Value, Value, Condition)>,
    sends: Vec<(String, Vec<Outgoing>)>,
}

impl Fake {
    fn with_item(mut self, item: Value) -> Self {
        self.items.push(item);
        self
    }

    fn answer(mut self, path: &str, nth: usize, answer: Answer) -> Self {
        self.answers.insert((path.to_string(), nth), answer);
        self
    }

    fn posts_to(&self, path: &str) -> Vec<&Value> {
        self.posts
            .iter()
            .filter(|(_, p, _)| p == path)
            .map(|(_, _, b)| b)
            .collect()
    }

    /// The SDK fakes set up as this says.
    fn fakes(&mut self) -> Fakes {
        let mut fakes = Fakes::new();
        for item in &self.items {
            fakes = fakes.with_item("demand-table", item.clone());
        }
        let batch_get_fails = self.batch_get_fails;
        let update_answers = std::mem::take(&mut self.update_answers);
        let vanish = self.vanish_after_first_read.take();
        let reads = Rc::new(Cell::new(0));
        fakes = fakes.intercept(move |call, tables| match call {
            Call::BatchGet { table, .. } => {
                assert_eq!(table, "demand-table");
                reads.set(reads.get() + 1);
                if reads.get() == 2 {
                    if let Some(key) = &vanish {
                        let key: Value = serde_json::from_str(key).expect("key");
                        tables.remove("demand-table", &key);
                    }
                }
                batch_get_fails.then(|| Error::Unavailable("table down".into()))
            }
            Call::Update { key, .. } => match update_answers.get(&key.to_string()) {
                Some(&"condition") => Some(Error::ConditionFailed("version".into())),
                Some(_) => Some(Error::Throttled("slow down".into())),
                None => None,
            },
            _ => None,
        });
        let answers = std::mem::take(&mut self.answers);
        let score_failures = std::mem::take(&mut self.score_failures);
        let mut seen: HashMap<String, usize> = HashMap::new();
        fakes = fakes.on_service("entries", move |request| {
            let nth = seen.entry(request.path.clone()).or_default();
            let answer = answers.get(&(request.path.clone(), *nth)).copied();
            *nth += 1;
            match answer.unwrap_or(Answer::Status(200)) {
                Answer::Status(status)
                    if request.path == "/entries/batch-upsert" && (200..300).contains(&status) =>
                {
                    let body: Value =
                        serde_json::from_str(request.body.as_deref().unwrap_or("{}")).expect("json");
                    let failed: Vec<Value> = body["entries"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|e| json!({"campaignId": e["campaignId"], "globalUserId": e["globalUserId"]}))
                        .filter(|fan| score_failures.contains(fan))
                        .collect();
                    Ok(fakes::json_response(status, &json!({"scoreFailures": failed})))
                }
                Answer::Status(status) => Ok(fakes::status(status)),
                Answer::Bare => Ok(fakes::json_response(200, &json!({}))),
                Answer::Error => Err(Error::Unavailable("connection refused".into())),
            }
        });
        let send_fails = self.send_fails;
        let send_item_fails = std::mem::take(&mut self.send_item_fails);
        fakes.on_queue(move |_, messages| {
            if send_fails {
                return Err(Error::Denied("queue".into()));
            }
            Ok((0..messages.len())
                .map(|i| {
                    if send_item_fails.contains(&i) {
                        Err(Error::Unavailable("sqs".into()))
                    } else {
                        Ok(format!("mid-{i}"))
                    }
                })
                .collect())
        })
    }

    /// Reads what the worker did from the fakes' record.
    fn record(&mut self, fakes: &Fakes) {
        for call in fakes.calls() {
            match call {
                Call::BatchGet { keys, .. } => self.batch_gets.push(keys),
                Call::Update {
                    table,
                    key,
                    set,
                    condition,
                    ..
                } => self
                    .updates
                    .push((table, key, set, condition.expect("a condition"))),
                Call::UpdateMany { table, updates } => {
                    for u in updates {
                        let condition = u.condition.expect("a condition");
                        self.updates.push((table.clone(), u.key, u.set, condition));
                    }
                }
                Call::Send { queue, messages } => self.sends.push((queue, messages)),
                Call::ServiceMany(_) => self.call_manys += 1,
                Call::Service(_) => panic!("one request at a time: use call_many"),
                _ => {}
            }
        }
        for r in fakes.requests() {
            assert_eq!(r.service, "entries");
            let body =
                serde_json::from_str(r.body.as_deref().unwrap_or("null")).expect("json body");
            self.posts.push((r.service, r.path, body));
        }
    }
}

fn item(c: &str, u: &str, version: i64) -> Value {
    json!({
        "PK": format!("ENTRY#{c}#{u}"), "SK": "ENTRY",
        "campaignId": c, "globalUserId": u,
        "entry": {"fields": {"zip": "10001"}}, "verdict": "PENDING",
        "needsReplication": true, "version": version,
        "createdAt": "2024-01-01T00:00:00Z", "updatedAt": format!("2024-01-0{}T00:00:00Z", version.clamp(1, 9)),
    })
}

fn keys(c: &str, u: &str) -> Value {
    json!({"PK": format!("ENTRY#{c}#{u}"), "SK": "ENTRY"})
}

fn change(kind: &str, new_image: Option<Value>, old_image: Option<Value>, key: Value) -> String {
    json!({
        "table": "demand-table", "eventName": kind, "keys": key,
        "newImage": new_image, "oldImage": old_image,
        "sequenceNumber": "100", "timestampMs": 1,
    })
    .to_string()
}

fn put_msg(id: &str, c: &str, u: &str, version: i64) -> Message {
    Message::new(
        id,
        change("MODIFY", Some(item(c, u, version)), None, keys(c, u)),
    )
}

fn delete_msg(id: &str, c: &str, u: &str) -> Message {
    Message::new(id, change("REMOVE", None, Some(item(c, u, 1)), keys(c, u)))
}

fn run(fake: &mut Fake, messages: &[Message]) -> BatchResult {
    let fakes = fake.fakes();
    let installed = fakes.install();
    let result = process(&Settings::default(), messages);
    drop(installed);
    fake.record(&fakes);
    result
}

fn counts(r: &BatchResult) -> (u32, u32, u32) {
    (r.received, r.processed, r.failed)
}

#[test]
fn normalize_put_and_delete() {
    let e = normalize(&put_msg("m", "c1", "u1", 2).body).expect("put");
    assert_eq!(e.op, Op::Put);
    assert_eq!(e.key, keys("c1", "u1"));
    assert_eq!(e.fan.campaign_id, "c1");
    assert_eq!(e.image["version"], 2);
    let e = normalize(&delete_msg("m", "c1", "u1").body).expect("delete");
    assert_eq!(e.op, Op::Delete);
    assert_eq!(e.fan.global_user_id, "u1");
}

#[test]
fn normalize_derives_the_key_when_the_record_has_none() {
    let mut image = item("c1", "u1", 1);
    let expected = keys("c1", "u1");
    let e = normalize(&change("INSERT", Some(image.clone()), None, json!({}))).expect("put");
    assert_eq!(e.key, expected);
    if let Some(o) = image.as_object_mut() {
        o.remove("PK");
        o.remove("SK");
    }
    let e = normalize(&change("INSERT", Some(image), None, Value::Null)).expect("put");
    assert_eq!(e.key, expected);
}

#[test]
fn normalize_rejects_bad_messages() {
    assert!(matches!(
        normalize("not json"),
        Err(NormalizeError::NotAChange(_))
    ));
    assert!(matches!(
        normalize(r#"{"eventName":"UPSERT"}"#),
        Err(NormalizeError::NotAChange(_))
    ));
    assert!(matches!(
        normalize(&change(
            "MODIFY",
            None,
            Some(item("c", "u", 1)),
            keys("c", "u")
        )),
        Err(NormalizeError::MissingImage("MODIFY", "newImage"))
    ));
    assert!(matches!(
        normalize(&change(
            "REMOVE",
            Some(item("c", "u", 1)),
            None,
            keys("c", "u")
        )),
        Err(NormalizeError::MissingImage("REMOVE", "oldImage"))
    ));
    assert!(matches!(
        normalize(&change(
            "INSERT",
            Some(json!({"PK": "X", "campaignId": "c"})),
            None,
            keys("c", "u")
        )),
        Err(NormalizeError::NotAnEntry("newImage"))
    ));
}

#[test]
fn current_put_is_upserted_unflagged_and_scored() {
    let mut fake = Fake::default().with_item(item("c1", "u1", 3));
    let r = run(&mut fake, &[put_msg("m1", "c1", "u1", 3)]);
    assert!(r.failures.is_empty());
    assert_eq!(counts(&r), (1, 1, 0));
    // Validated, then re-read after the upsert.
    assert_eq!(
        fake.batch_gets,
        vec![vec![keys("c1", "u1")], vec![keys("c1", "u1")]]
    );
    // The score refresh is part of the upsert.
    assert_eq!(
        fake.posts_to("/entries/batch-upsert"),
        vec![&json!({"entries": [item("c1", "u1", 3)], "refreshScores": true})]
    );
    assert_eq!(
        fake.updates,
        vec![(
            "demand-table".to_string(),
            keys("c1", "u1"),
            json!({"needsReplication": false}),
            Condition::AttributeEquals("version".into(), json!(3)),
        )]
    );
    assert!(fake.posts_to("/scores/refresh").is_empty());
    assert!(fake.sends.is_empty());
}

#[test]
fn stale_puts_are_dropped_as_processed() {
    // The table moved on to version 4, or the item is gone.
    let mut fake = Fake::default().with_item(item("c1", "u1", 4));
    let r = run(
        &mut fake,
        &[put_msg("m1", "c1", "u1", 3), put_msg("m2", "c2", "u2", 1)],
    );
    assert!(r.failures.is_empty());
    assert_eq!(counts(&r), (2, 2, 0));
    assert!(fake.posts.is_empty());
    assert!(fake.updates.is_empty());
}

#[test]
fn without_version_updated_at_decides() {
    let strip = |mut v: Value| {
        if let Some(o) = v.as_object_mut() {
            o.remove("version");
        }
        v
    };
    let current = strip(item("c1", "u1", 2));
    let mut fake = Fake::default().with_item(current.clone());
    let fresh = Message::new(
        "m1",
        change("MODIFY", Some(current.clone()), None, keys("c1", "u1")),
    );
    let stale = Message::new(
        "m2",
        change(
            "MODIFY",
            Some(strip(item("c1", "u1", 1))),
            None,
            keys("c1", "u1"),
        ),
    );
    let r = run(&mut fake, &[fresh, stale]);
    assert_eq!(counts(&r), (2, 2, 0));
    assert_eq!(
        fake.posts_to("/entries/batch-upsert"),
        vec![&json!({"entries": [current.clone()], "refreshScores": true})]
    );
    assert_eq!(
        fake.updates[0].3,
        Condition::AttributeEquals("updatedAt".into(), current["updatedAt"].clone())
    );
}

#[test]
fn deletes_replicate_only_while_the_item_is_gone() {
    // u1 is gone (valid delete); u2 was re-created (stale delete).
    let mut fake = Fake::default().with_item(item("c1", "u2", 1));
    let r = run(
        &mut fake,
        &[delete_msg("m1", "c1", "u1"), delete_msg("m2", "c1", "u2")],
    );
    assert_eq!(counts(&r), (2, 2, 0));
    assert_eq!(
        fake.posts_to("/entries/batch-delete"),
        // With the version deleted at the source (the old image's).
        vec![&json!({"keys": [{"campaignId": "c1", "globalUserId": "u1", "version": 1}]})]
    );
    assert!(fake.posts_to("/entries/batch-upsert").is_empty());
    assert!(fake.posts_to("/scores/refresh").is_empty());
    assert!(fake.updates.is_empty());
}

#[test]
fn malformed_messages_fail_alone() {
    let mut fake = Fake::default().with_item(item("c1", "u1", 1));
    let r = run(
        &mut fake,
        &[
            Message::new("bad-json", "{nope"),
            Message::new("no-image", change("INSERT", None, None, keys("c1", "u1"))),
            put_msg("good", "c1", "u1", 1),
        ],
    );
    assert_eq!(r.failures, vec!["bad-json", "no-image"]);
    assert_eq!(counts(&r), (3, 1, 2));
    assert_eq!(fake.posts_to("/entries/batch-upsert").len(), 1);
}

#[test]
fn two_changes_of_one_entry_in_a_batch() {
    // v1 then v2 of the same entry; the table holds v2: only v2 is current.
    let mut fake = Fake::default().with_item(item("c1", "u1", 2));
    let r = run(
        &mut fake,
        &[put_msg("m1", "c1", "u1", 1), put_msg("m2", "c1", "u1", 2)],
    );
    assert_eq!(counts(&r), (2, 2, 0));
    // One batch_get to validate, each key once (and one re-read after the upsert).
    assert_eq!(
        fake.batch_gets,
        vec![vec![keys("c1", "u1")], vec![keys("c1", "u1")]]
    );
    assert_eq!(
        fake.posts_to("/entries/batch-upsert"),
        vec![&json!({"entries": [item("c1", "u1", 2)], "refreshScores": true})]
    );
    assert_eq!(fake.updates.len(), 1);
}

#[test]
fn a_redelivered_change_is_replicated_once() {
    let mut fake = Fake::default().with_item(item("c1", "u1", 2));
    let r = run(
        &mut fake,
        &[put_msg("m1", "c1", "u1", 2), put_msg("m2", "c1", "u1", 2)],
    );
    assert_eq!(counts(&r), (2, 2, 0));
    assert_eq!(
        fake.posts_to("/entries/batch-upsert")[0]["entries"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(fake.updates.len(), 1);
}

#[test]
fn a_put_and_a_delete_of_one_entry() {
    // Deleted after the put: the delete is current, the put is stale.
    let mut fake = Fake::default();
    let r = run(
        &mut fake,
        &[put_msg("m1", "c1", "u1", 1), delete_msg("m2", "c1", "u1")],
    );
    assert_eq!(counts(&r), (2, 2, 0));
    assert!(fake.posts_to("/entries/batch-upsert").is_empty());
    assert_eq!(fake.posts_to("/entries/batch-delete").len(), 1);
}

#[test]
fn chunks_of_25_and_a_failed_chunk_fails_only_its_messages() {
    let mut fake = Fake::default().answer("/entries/batch-upsert", 1, Answer::Status(500));
    let mut messages = Vec::new();
    for n in 0..60 {
        let u = format!("u{n:02}");
        fake = fake.with_item(item("c1", &u, 1));
        messages.push(put_msg(&format!("m{n:02}"), "c1", &u, 1));
    }
    let r = run(&mut fake, &messages);
    let sizes: Vec<usize> = fake
        .posts_to("/entries/batch-upsert")
        .iter()
        .map(|b| b["entries"].as_array().map_or(0, Vec::len))
        .collect();
    assert_eq!(sizes, vec![25, 25, 10]);
    // All three chunks in one call_many.
    assert_eq!(fake.call_manys, 1);
    let expected: Vec<String> = (25..50).map(|n| format!("m{n:02}")).collect();
    assert_eq!(r.failures, expected);
    assert_eq!(counts(&r), (60, 35, 25));
    // Only the 35 upserted entries are unflagged; every chunk refreshes its
    // scores itself.
    assert_eq!(fake.updates.len(), 35);
    assert!(fake
        .posts_to("/entries/batch-upsert")
        .iter()
        .all(|b| b["refreshScores"] == true));
    assert!(fake.posts_to("/scores/refresh").is_empty());
}

#[test]
fn a_failed_delete_call_fails_its_chunk() {
    let mut fake = Fake::default().answer("/entries/batch-delete", 0, Answer::Error);
    let r = run(
        &mut fake,
        &[delete_msg("m1", "c1", "u1"), delete_msg("m2", "c1", "u2")],
    );
    assert_eq!(r.failures, vec!["m1", "m2"]);
    assert_eq!(counts(&r), (2, 0, 2));
}

#[test]
fn an_unreadable_table_fails_every_normalized_message() {
    let mut fake = Fake {
        batch_get_fails: true,
        ..Fake::default()
    };
    let r = run(
        &mut fake,
        &[
            put_msg("m1", "c1", "u1", 1),
            Message::new("m2", "[]"),
            delete_msg("m3", "c1", "u3"),
        ],
    );
    assert_eq!(r.failures, vec!["m1", "m2", "m3"]);
    assert_eq!(counts(&r), (3, 0, 3));
    assert!(fake.posts.is_empty());
}

#[test]
fn unflag_condition_failed_is_fine_other_errors_fail() {
    let mut fake = Fake::default()
        .with_item(item("c1", "u1", 1))
        .with_item(item("c1", "u2", 1));
    fake.update_answers
        .insert(keys("c1", "u1").to_string(), "condition");
    fake.update_answers
        .insert(keys("c1", "u2").to_string(), "error");
    let r = run(
        &mut fake,
        &[put_msg("m1", "c1", "u1", 1), put_msg("m2", "c1", "u2", 1)],
    );
    assert_eq!(r.failures, vec!["m2"]);
    assert_eq!(counts(&r), (2, 1, 1));
}

#[test]
fn failed_score_refresh_queues_retries() {
    let mut fake = Fake::default()
        .with_item(item("c1", "u1", 1))
        .with_item(item("c1", "u2", 1))
        .with_item(item("c1", "u3", 1));
    fake.score_failures = vec![
        json!({"campaignId": "c1", "globalUserId": "u1"}),
        json!({"campaignId": "c1", "globalUserId": "u2"}),
    ];
    fake.send_item_fails = vec![1];
    let r = run(
        &mut fake,
        &[
            put_msg("m1", "c1", "u1", 1),
            put_msg("m2", "c1", "u2", 1),
            put_msg("m3", "c1", "u3", 1),
        ],
    );
    assert_eq!(fake.sends.len(), 1);
    let (queue, sent) = &fake.sends[0];
    assert_eq!(queue, "retry-score");
    let bodies: Vec<Value> = sent
        .iter()
        .map(|m| serde_json::from_str(&m.body).expect("json"))
        .collect();
    assert_eq!(
        bodies,
        vec![
            json!({"campaignId": "c1", "globalUserId": "u1"}),
            json!({"campaignId": "c1", "globalUserId": "u2"}),
        ]
    );
    // Only the message whose retry could not be queued fails; u3's score
    // was refreshed with its upsert.
    assert_eq!(r.failures, vec!["m2"]);
    assert_eq!(counts(&r), (3, 2, 1));
}

#[test]
fn failed_refresh_and_failed_send_fail_the_chunk() {
    let mut fake = Fake::default().with_item(item("c1", "u1", 1));
    fake.score_failures = vec![json!({"campaignId": "c1", "globalUserId": "u1"})];
    fake.send_fails = true;
    let r = run(&mut fake, &[put_msg("m1", "c1", "u1", 1)]);
    assert_eq!(r.failures, vec!["m1"]);
}

#[test]
fn empty_batch() {
    let mut fake = Fake::default();
    let r = run(&mut fake, &[]);
    assert_eq!(counts(&r), (0, 0, 0));
    assert!(fake.batch_gets.is_empty());
}

#[test]
fn a_refused_chunk_is_posted_entry_by_entry_so_only_the_bad_entry_fails() {
    // The first post (the whole chunk of 4) is refused with 400; so is the
    // third single post (the bad entry, m2).
    let mut fake = Fake::default()
        .answer("/entries/batch-upsert", 0, Answer::Status(400))
        .answer("/entries/batch-upsert", 3, Answer::Status(400));
    let mut messages = Vec::new();
    for n in 0..4 {
        let u = format!("u{n}");
        fake = fake.with_item(item("c1", &u, 1));
        messages.push(put_msg(&format!("m{n}"), "c1", &u, 1));
    }
    let r = run(&mut fake, &messages);
    let sizes: Vec<usize> = fake
        .posts_to("/entries/batch-upsert")
        .iter()
        .map(|b| b["entries"].as_array().map_or(0, Vec::len))
        .collect();
    assert_eq!(sizes, vec![4, 1, 1, 1, 1]);
    // The chunk in one call_many, its four entries alone in one more.
    assert_eq!(fake.call_manys, 2);
    assert_eq!(r.failures, vec!["m2"]);
    assert_eq!(counts(&r), (4, 3, 1));
    // The three taken entries are unflagged; the refused one keeps its flag.
    assert_eq!(fake.updates.len(), 3);
}

#[test]
fn a_5xx_fails_the_whole_chunk_without_splitting() {
    let mut fake = Fake::default().answer("/entries/batch-upsert", 0, Answer::Status(503));
    let mut messages = Vec::new();
    for n in 0..3 {
        let u = format!("u{n}");
        fake = fake.with_item(item("c1", &u, 1));
        messages.push(put_msg(&format!("m{n}"), "c1", &u, 1));
    }
    let r = run(&mut fake, &messages);
    assert_eq!(fake.posts_to("/entries/batch-upsert").len(), 1);
    assert_eq!(r.failures, vec!["m0", "m1", "m2"]);
}

#[test]
fn an_entry_deleted_while_it_was_upserted_is_deleted_again_in_the_service() {
    // u1 is in the table when the batch validates it and gone when the
    // batch re-reads it after the upsert (deleted meanwhile).
    let mut fake = Fake::default()
        .with_item(item("c1", "u1", 4))
        .with_item(item("c1", "u2", 1));
    fake.vanish_after_first_read = Some(json!({"PK": "ENTRY#c1#u1", "SK": "ENTRY"}).to_string());
    let r = run(
        &mut fake,
        &[put_msg("m1", "c1", "u1", 4), put_msg("m2", "c1", "u2", 1)],
    );
    assert_eq!(counts(&r), (2, 2, 0));
    assert_eq!(
        fake.posts_to("/entries/batch-delete"),
        vec![&json!({"keys": [{"campaignId": "c1", "globalUserId": "u1", "version": 4}]})]
    );
    // Only u2 is unflagged and refreshed.
    assert_eq!(fake.updates.len(), 1);
}

#[test]
fn upserts_and_deletes_go_in_one_call_many() {
    let mut fake = Fake::default();
    let mut messages = Vec::new();
    for n in 0..30 {
        let u = format!("u{n:02}");
        fake = fake.with_item(item("c1", &u, 1));
        messages.push(put_msg(&format!("m{n:02}"), "c1", &u, 1));
    }
    messages.push(delete_msg("d1", "c1", "gone1"));
    messages.push(delete_msg("d2", "c1", "gone2"));
    let r = run(&mut fake, &messages);
    assert_eq!(counts(&r), (32, 32, 0));
    assert_eq!(fake.call_manys, 1);
    assert_eq!(fake.posts_to("/entries/batch-upsert").len(), 2);
    assert_eq!(fake.posts_to("/entries/batch-delete").len(), 1);
    assert!(fake.sends.is_empty());
}

#[test]
fn an_upsert_answer_without_score_failures_queues_every_fan() {
    // A service that ignores `refreshScores` answers no `scoreFailures`:
    // nothing says the scores were refreshed, so every fan is retried.
    let mut fake = Fake::default()
        .with_item(item("c1", "u1", 1))
        .with_item(item("c1", "u2", 1))
        .answer("/entries/batch-upsert", 0, Answer::Bare);
    let r = run(
        &mut fake,
        &[put_msg("m1", "c1", "u1", 1), put_msg("m2", "c1", "u2", 1)],
    );
    assert_eq!(counts(&r), (2, 2, 0));
    let sent: Vec<Value> = fake
        .sends
        .iter()
        .flat_map(|(_, m)| {
            m.iter()
                .map(|m| serde_json::from_str(&m.body).expect("json"))
        })
        .collect();
    assert_eq!(
        sent,
        vec![
            json!({"campaignId": "c1", "globalUserId": "u1"}),
            json!({"campaignId": "c1", "globalUserId": "u2"}),
        ]
    );
}

#[test]
fn the_score_failure_of_an_entry_deleted_meanwhile_is_not_queued() {
    // u1's refresh failed, but u1 was deleted in the table meanwhile: it is
    // deleted again in the Entry Service, and nothing is left to score.
    let mut fake = Fake::default().with_item(item("c1", "u1", 4));
    fake.vanish_after_first_read = Some(json!({"PK": "ENTRY#c1#u1", "SK": "ENTRY"}).to_string());
    fake.score_failures = vec![json!({"campaignId": "c1", "globalUserId": "u1"})];
    let r = run(&mut fake, &[put_msg("m1", "c1", "u1", 4)]);
    assert_eq!(counts(&r), (1, 1, 0));
    assert_eq!(fake.posts_to("/entries/batch-delete").len(), 1);
    assert!(fake.sends.is_empty());
    assert!(fake.updates.is_empty());
}
