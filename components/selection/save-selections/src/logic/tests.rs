use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use serde_json::json;
use usher_domain::selection::Selection;
use usher_sdk::fakes::{self, Call, Fakes};
use usher_sdk::{Error, Value};

use super::*;

const TABLE: &str = "demand-table";

/// A stateful Entry Service: assignments with the service's idempotency and
/// conflict rules, verdicts, and the fans it knows.
#[derive(Default)]
struct EntryService {
    /// (campaign, market, fan) → code.
    codes: BTreeMap<(String, String, String), String>,
    /// (campaign, market, code) → fan.
    holders: BTreeMap<(String, String, String), String>,
    /// fan → (verdict, code).
    verdicts: BTreeMap<String, (String, Option<String>)>,
    /// Fans it has no entry for.
    unknown: BTreeSet<String>,
    /// How many assignments were made (not `already`).
    assignments_made: u64,
    /// Answer 503 to the assign requests carrying these fans.
    unavailable_for: BTreeSet<String>,
    /// Answer 503 to every verdicts request.
    verdicts_down: bool,
    /// Answer assign requests with `{}` (accounting for nothing).
    assign_answers_nothing: bool,
}

impl EntryService {
    fn answer(&mut self, request: &services::Request) -> usher_sdk::Result<services::Response> {
        let body: Value = serde_json::from_str(request.body.as_deref().unwrap_or("{}"))?;
        let campaign = body["campaignId"].as_str().unwrap_or_default().to_string();
        let market = body["marketId"].as_str().unwrap_or_default().to_string();
        match request.path.as_str() {
            ASSIGN => {
                let assignments = body["assignments"].as_array().cloned().unwrap_or_default();
                assert!(
                    assignments.len() <= ASSIGNMENTS_PER_REQUEST,
                    "an assign request over 25"
                );
                if assignments.iter().any(|a| {
                    self.unavailable_for
                        .contains(a["globalUserId"].as_str().unwrap_or_default())
                }) {
                    return Ok(fakes::json_response(503, &json!({"error": "busy"})));
                }
                if self.assign_answers_nothing {
                    return Ok(fakes::json_response(200, &json!({})));
                }
                let (mut assigned, mut already, mut conflicts) = (0, 0, Vec::new());
                for a in assignments {
                    let fan = a["globalUserId"].as_str().unwrap_or_default().to_string();
                    let code = a["code"].as_str().unwrap_or_default().to_string();
                    let fan_key = (campaign.clone(), market.clone(), fan.clone());
                    let code_key = (campaign.clone(), market.clone(), code.clone());
                    let holder = self.holders.get(&code_key).cloned();
                    let held = self.codes.get(&fan_key).cloned();
                    if self.unknown.contains(&fan) {
                        conflicts
                            .push(json!({"globalUserId": fan, "code": code, "reason": "no entry"}));
                    } else if holder.as_deref() == Some(fan.as_str()) {
                        already += 1;
                    } else if let Some(other) = holder {
                        conflicts.push(json!({"globalUserId": fan, "code": code,
                            "reason": format!("code held by {other}")}));
                    } else if let Some(other) = held {
                        conflicts.push(json!({"globalUserId": fan, "code": code,
                            "reason": format!("fan holds code {other}")}));
                    } else {
                        self.holders.insert(code_key, fan);
                        self.codes.insert(fan_key, code);
                        self.assignments_made += 1;
                        assigned += 1;
                    }
                }
                Ok(fakes::json_response(
                    200,
                    &json!({"assigned": assigned, "already": already, "conflicts": conflicts}),
                ))
            }
            VERDICTS => {
                if self.verdicts_down {
                    return Ok(fakes::json_response(503, &json!({"error": "down"})));
                }
                let verdicts = body["verdicts"].as_array().cloned().unwrap_or_default();
                assert!(
                    verdicts.len() <= SELECTIONS_PER_REQUEST,
                    "a verdicts request over 500"
                );
                let (mut updated, mut missing) = (0, Vec::new());
                for v in verdicts {
                    let fan = v["globalUserId"].as_str().unwrap_or_default().to_string();
                    if self.unknown.contains(&fan) {
                        missing.push(fan);
                        continue;
                    }
                    self.verdicts.insert(
                        fan,
                        (
                            v["verdict"].as_str().unwrap_or_default().to_string(),
                            v["code"].as_str().map(str::to_string),
                        ),
                    );
                    updated += 1;
                }
                Ok(fakes::json_response(
                    200,
                    &json!({"updated": updated, "missing": missing}),
                ))
            }
            other => Ok(fakes::json_response(
                404,
                &json!({"error": format!("no route {other}")}),
            )),
        }
    }
}

fn entry(user: &str) -> Value {
    json!({
        "PK": format!("ENTRY#c1#{user}"), "SK": "ENTRY", "campaignId": "c1",
        "globalUserId": user, "marketId": "m1", "verdict": "PENDING",
        "needsReplication": false, "version": 1,
        "createdAt": "2026-12-01T00:00:00Z", "updatedAt": "2026-12-01T00:00:00Z",
    })
}

fn key(user: &str) -> Value {
    json!({"PK": format!("ENTRY#c1#{user}"), "SK": "ENTRY"})
}

fn selection(user: &str, verdict: Verdict, code: Option<&str>, rank: u64) -> Selection {
    Selection {
        global_user_id: user.into(),
        verdict,
        code: code.map(str::to_string),
        rank,
    }
}

fn batch(n: u64, selections: Vec<Selection>) -> SelectionBatch {
    SelectionBatch {
        campaign_id: "c1".into(),
        market_id: "m1".into(),
        draw_id: "c1.m1".into(),
        batch: n,
        selections,
    }
}

fn message(id: &str, b: &SelectionBatch) -> Message {
    Message::new(id, serde_json::to_string(b).expect("json"))
}

/// Batch 0: two winners, a loser, a waitlisted fan. Batch 1: a winner and
/// two losers.
fn two_batches() -> (SelectionBatch, SelectionBatch) {
    (
        batch(
            0,
            vec![
                selection("u1", Verdict::Winner, Some("CODE-1"), 0),
                selection("u2", Verdict::Winner, Some("CODE-2"), 1),
                selection("u3", Verdict::Waitlist, None, 2),
                selection("u4", Verdict::Loser, None, 3),
            ],
        ),
        batch(
            1,
            vec![
                selection("u5", Verdict::Winner, Some("CODE-5"), 4),
                selection("u6", Verdict::Loser, None, 5),
                selection("u7", Verdict::Loser, None, 6),
            ],
        ),
    )
}

/// The fakes: demand-table with these fans' entries, the Entry Service.
fn setup(users: &[&str], service: &Rc<RefCell<EntryService>>) -> Fakes {
    let mut fakes = Fakes::new();
    for u in users {
        fakes = fakes.with_item(TABLE, entry(u));
    }
    let svc = service.clone();
    fakes.on_service("entries", move |r| svc.borrow_mut().answer(r))
}

fn users(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("u{i}")).collect()
}

fn run(fakes: &Fakes, messages: &[Message]) -> BatchResult {
    let _installed = fakes.install();
    process(&Settings::default(), messages)
}

fn reports(fakes: &Fakes) -> Vec<Value> {
    fakes
        .queued("verdict-reporter")
        .iter()
        .map(|m| serde_json::from_str(&m.body).expect("json"))
        .collect()
}

fn call_manys(fakes: &Fakes) -> Vec<Vec<services::Request>> {
    fakes
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::ServiceMany(rs) => Some(rs),
            _ => None,
        })
        .collect()
}

#[test]
fn saves_codes_verdicts_table_and_reports() {
    let service = Rc::new(RefCell::new(EntryService::default()));
    let all = users(7);
    let names: Vec<&str> = all.iter().map(String::as_str).collect();
    // u4 held a code from an earlier (refreshed) draw: a loser holds none.
    let fakes = setup(&names, &service).with_item(
        TABLE,
        json!({"PK": "ENTRY#c1#u4", "SK": "ENTRY", "campaignId": "c1", "globalUserId": "u4",
               "verdict": "WINNER", "accessCode": "OLD", "needsReplication": true, "version": 3}),
    );
    let (b0, b1) = two_batches();
    let r = run(&fakes, &[message("a", &b0), message("b", &b1)]);
    assert!(r.failures.is_empty(), "{r:?}");
    assert_eq!((r.received, r.processed), (2, 2));

    // One call_many for both batches' assignments (one request: the same
    // draw), one for their verdicts.
    let manys = call_manys(&fakes);
    assert_eq!(manys.len(), 2, "{manys:?}");
    assert!(manys[0].iter().all(|r| r.path == ASSIGN));
    assert_eq!(manys[0].len(), 1);
    assert!(manys[1].iter().all(|r| r.path == VERDICTS));
    assert_eq!(manys[1].len(), 1);
    assert_eq!(service.borrow().assignments_made, 3);
    assert_eq!(
        service.borrow().verdicts.get("u3"),
        Some(&("WAITLIST".to_string(), None))
    );
    assert_eq!(
        service.borrow().verdicts.get("u5"),
        Some(&("WINNER".to_string(), Some("CODE-5".to_string())))
    );

    // The demand-table: updates (not puts), one update_many, each under Exists.
    assert_eq!(fakes.count("update_many"), 1);
    assert_eq!(fakes.count("put") + fakes.count("put_many"), 0);
    let updates = fakes
        .calls()
        .into_iter()
        .find_map(|c| match c {
            Call::UpdateMany { updates, .. } => Some(updates),
            _ => None,
        })
        .expect("update_many");
    assert_eq!(updates.len(), 7);
    assert!(
        updates
            .iter()
            .all(|u| u.condition == Some(Condition::Exists)
                && u.set.get("needsReplication").is_none())
    );
    let u1 = fakes.item(TABLE, &key("u1")).expect("u1");
    assert_eq!(
        (&u1["verdict"], &u1["accessCode"], &u1["drawId"]),
        (&json!("WINNER"), &json!("CODE-1"), &json!("c1.m1"))
    );
    assert_ne!(u1["updatedAt"], "2026-12-01T00:00:00Z");
    assert_eq!(u1["needsReplication"], false);
    let u4 = fakes.item(TABLE, &key("u4")).expect("u4");
    assert_eq!(u4["verdict"], "LOSER");
    assert!(u4.get("accessCode").is_none(), "{u4}");
    assert_eq!(u4["needsReplication"], true, "left alone");
    assert_eq!(u4["version"], 3, "left alone");
    assert_eq!(
        fakes.item(TABLE, &key("u3")).expect("u3")["verdict"],
        "WAITLIST"
    );

    // One report per batch, with its counts.
    assert_eq!(
        reports(&fakes),
        vec![
            json!({"campaignId": "c1", "marketId": "m1", "reportId": "c1.m1#0",
                   "counts": {"winners": 2, "losers": 1, "waitlisted": 1}}),
            json!({"campaignId": "c1", "marketId": "m1", "reportId": "c1.m1#1",
                   "counts": {"winners": 1, "losers": 2, "waitlisted": 0}}),
        ]
    );
}

#[test]
fn a_redelivered_message_assigns_nothing_twice() {
    let service = Rc::new(RefCell::new(EntryService::default()));
    let all = users(7);
    let names: Vec<&str> = all.iter().map(String::as_str).collect();
    let (b0, b1) = two_batches();
    let fakes = setup(&names, &service);
    assert!(run(&fakes, &[message("a", &b0)]).failures.is_empty());
    let first = fakes.items(TABLE);
    // Delivered again (a lost acknowledgement), and twice in one batch.
    let again = setup(&names, &service);
    for item in &first {
        again_insert(&again, item);
    }
    let r = run(
        &again,
        &[message("a", &b0), message("a2", &b0), message("b", &b1)],
    );
    assert!(r.failures.is_empty(), "{r:?}");
    assert_eq!(r.processed, 3);
    // u1, u2 once (first delivery) and u5 once: 3 assignments made in all.
    assert_eq!(service.borrow().assignments_made, 3);
    // The duplicate in one delivery was sent once.
    let assigns: Vec<services::Request> = again
        .requests()
        .into_iter()
        .filter(|r| r.path == ASSIGN)
        .collect();
    assert_eq!(assigns.len(), 1, "batch 0 once and batch 1, in one request");
    let body: Value =
        serde_json::from_str(assigns[0].body.as_deref().unwrap_or("{}")).expect("json");
    assert_eq!(
        body["assignments"].as_array().map(Vec::len),
        Some(3),
        "batch 0's two winners once, batch 1's one"
    );
    // The same report id again: the Campaign Service counts it once.
    let ids: Vec<Value> = reports(&again)
        .into_iter()
        .map(|r| r["reportId"].clone())
        .collect();
    assert_eq!(ids, vec![json!("c1.m1#0"), json!("c1.m1#1")]);
    let u1 = again.item(TABLE, &key("u1")).expect("u1");
    assert_eq!(u1["accessCode"], "CODE-1");
}

fn again_insert(fakes: &Fakes, item: &Value) {
    let _installed = fakes.install();
    usher_sdk::table::put(TABLE, item, None).expect("seed");
}

#[test]
fn a_conflict_fails_its_message_with_nothing_written_and_the_others_go_through() {
    let service = Rc::new(RefCell::new(EntryService::default()));
    // CODE-5 is already held by another fan (u9).
    service
        .borrow_mut()
        .holders
        .insert(("c1".into(), "m1".into(), "CODE-5".into()), "u9".into());
    let all = users(7);
    let names: Vec<&str> = all.iter().map(String::as_str).collect();
    let fakes = setup(&names, &service);
    let (b0, b1) = two_batches();
    let r = run(&fakes, &[message("a", &b0), message("b", &b1)]);
    assert_eq!(r.failures, vec!["b"]);
    // No verdicts, table writes or report for the failed batch.
    let verdict_fans: Vec<String> = fakes
        .requests()
        .iter()
        .filter(|r| r.path == VERDICTS)
        .flat_map(|r| {
            let body: Value =
                serde_json::from_str(r.body.as_deref().unwrap_or("{}")).expect("json");
            body["verdicts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| v["globalUserId"].as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(verdict_fans, vec!["u1", "u2", "u3", "u4"]);
    for u in ["u5", "u6", "u7"] {
        assert_eq!(fakes.item(TABLE, &key(u)).expect(u)["verdict"], "PENDING");
    }
    assert_eq!(reports(&fakes).len(), 1);
    assert_eq!(
        fakes.item(TABLE, &key("u1")).expect("u1")["verdict"],
        "WINNER"
    );
    // The fan that holds another code is a conflict too.
    let service2 = Rc::new(RefCell::new(EntryService::default()));
    service2
        .borrow_mut()
        .codes
        .insert(("c1".into(), "m1".into(), "u1".into()), "OTHER".into());
    let fakes = setup(&names, &service2);
    assert_eq!(run(&fakes, &[message("a", &b0)]).failures, vec!["a"]);
    assert_eq!(fakes.count("update_many"), 0);
    assert!(reports(&fakes).is_empty());
}

#[test]
fn a_failed_call_fails_only_its_message() {
    let service = Rc::new(RefCell::new(EntryService::default()));
    service.borrow_mut().unavailable_for.insert("u5".into());
    let all = users(7);
    let names: Vec<&str> = all.iter().map(String::as_str).collect();
    let fakes = setup(&names, &service);
    let (b0, b1) = two_batches();
    let r = run(&fakes, &[message("a", &b0), message("b", &b1)]);
    assert_eq!(r.failures, vec!["b"]);
    assert_eq!(
        fakes.item(TABLE, &key("u5")).expect("u5")["verdict"],
        "PENDING"
    );
    assert_eq!(
        fakes.item(TABLE, &key("u2")).expect("u2")["verdict"],
        "WINNER"
    );

    // The verdicts request failing fails every message that needed it, and
    // the table is not touched.
    let service = Rc::new(RefCell::new(EntryService {
        verdicts_down: true,
        ..EntryService::default()
    }));
    let fakes = setup(&names, &service);
    let r = run(&fakes, &[message("a", &b0), message("b", &b1)]);
    assert_eq!(r.failures, vec!["a", "b"]);
    assert_eq!(fakes.count("update_many"), 0);
    assert!(reports(&fakes).is_empty());

    // A transport error of the whole call_many fails every message.
    let fakes = Fakes::new()
        .with_item(TABLE, entry("u1"))
        .intercept(|call, _| match call {
            Call::Service(_) => Some(Error::Unavailable("no route to host".into())),
            _ => None,
        })
        .on_service("entries", |_| Ok(fakes::status(200)));
    let r = run(&fakes, &[message("a", &b0)]);
    assert_eq!(r.failures, vec!["a"]);

    // An answer that does not account for every assignment fails too.
    let service = Rc::new(RefCell::new(EntryService {
        assign_answers_nothing: true,
        ..EntryService::default()
    }));
    let fakes = setup(&names, &service);
    assert_eq!(run(&fakes, &[message("a", &b0)]).failures, vec!["a"]);
}

#[test]
fn bad_messages_fail_alone_with_their_reason() {
    let ok = two_batches().0;
    let cases: Vec<(&str, String, InvalidBatch)> = vec![
        (
            "not-json",
            "{nope".into(),
            InvalidBatch::NotABatch(String::new()),
        ),
        (
            "no-draw",
            serde_json::to_string(&SelectionBatch {
                draw_id: String::new(),
                ..ok.clone()
            })
            .expect("json"),
            InvalidBatch::MissingId("drawId"),
        ),
        (
            "pending",
            serde_json::to_string(&batch(5, vec![selection("u1", Verdict::Pending, None, 0)]))
                .expect("json"),
            InvalidBatch::Pending(0, "u1".into()),
        ),
        (
            "no-code",
            serde_json::to_string(&batch(5, vec![selection("u1", Verdict::Winner, None, 0)]))
                .expect("json"),
            InvalidBatch::WinnerWithoutCode("u1".into()),
        ),
        (
            "loser-code",
            serde_json::to_string(&batch(
                5,
                vec![selection("u1", Verdict::Loser, Some("X"), 0)],
            ))
            .expect("json"),
            InvalidBatch::CodeWithoutWin("u1".into(), "X".into()),
        ),
        (
            "dup-fan",
            serde_json::to_string(&batch(
                5,
                vec![
                    selection("u1", Verdict::Loser, None, 0),
                    selection("u1", Verdict::Winner, Some("X"), 1),
                ],
            ))
            .expect("json"),
            InvalidBatch::DuplicateFan("u1".into()),
        ),
        (
            "dup-code",
            serde_json::to_string(&batch(
                5,
                vec![
                    selection("u1", Verdict::Winner, Some("X"), 0),
                    selection("u2", Verdict::Winner, Some("X"), 1),
                ],
            ))
            .expect("json"),
            InvalidBatch::DuplicateCode("X".into()),
        ),
    ];
    for (_, body, want) in &cases {
        match (parse(body), want) {
            (Err(InvalidBatch::NotABatch(_)), InvalidBatch::NotABatch(_)) => {}
            (got, want) => assert_eq!(got.as_ref().err(), Some(want), "{body}"),
        }
    }
    let service = Rc::new(RefCell::new(EntryService::default()));
    let fakes = setup(&["u1", "u2", "u3", "u4"], &service);
    let mut messages: Vec<Message> = cases
        .iter()
        .map(|(id, body, _)| Message::new(*id, body.clone()))
        .collect();
    messages.push(message("good", &ok));
    let r = run(&fakes, &messages);
    let mut want: Vec<&str> = cases.iter().map(|(id, _, _)| *id).collect();
    want.sort();
    let mut got = r.failures.clone();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(r.processed, 1);
    // Only the good batch reached the service: one assign, one verdicts request.
    assert_eq!(fakes.requests().len(), 2);
    assert_eq!(service.borrow().assignments_made, 2);
}

#[test]
fn many_selections_go_in_one_request() {
    let service = Rc::new(RefCell::new(EntryService::default()));
    let all = users(60);
    let names: Vec<&str> = all.iter().map(String::as_str).collect();
    let fakes = setup(&names, &service);
    let selections: Vec<Selection> = (0..60)
        .map(|i| {
            let u = format!("u{}", i + 1);
            if i < 30 {
                selection(&u, Verdict::Winner, Some(&format!("K{i}")), i)
            } else {
                selection(&u, Verdict::Loser, None, i)
            }
        })
        .collect();
    let r = run(&fakes, &[message("big", &batch(0, selections))]);
    assert!(r.failures.is_empty(), "{r:?}");
    let sizes = |path: &str, field: &str| -> Vec<usize> {
        fakes
            .requests()
            .iter()
            .filter(|r| r.path == path)
            .map(|r| {
                let body: Value =
                    serde_json::from_str(r.body.as_deref().unwrap_or("{}")).expect("json");
                body[field].as_array().map(Vec::len).unwrap_or(0)
            })
            .collect()
    };
    // Verdicts go together (up to 500 a request); assignments 25 a request
    // (the seed's Entry Service limit).
    assert_eq!(sizes(ASSIGN, "assignments"), vec![25, 5]);
    assert_eq!(sizes(VERDICTS, "verdicts"), vec![60]);
    assert_eq!(service.borrow().assignments_made, 30);
    assert_eq!(
        reports(&fakes)[0]["counts"],
        json!({"winners": 30, "losers": 30, "waitlisted": 0})
    );
}

#[test]
fn an_entry_missing_from_the_table_is_not_created() {
    let service = Rc::new(RefCell::new(EntryService::default()));
    // u4 has no demand-table entry.
    let fakes = setup(&["u1", "u2", "u3"], &service);
    let (b0, _) = two_batches();
    let r = run(&fakes, &[message("a", &b0)]);
    assert!(r.failures.is_empty(), "{r:?}");
    assert!(fakes.item(TABLE, &key("u4")).is_none());
    assert_eq!(fakes.items(TABLE).len(), 3);
    assert_eq!(reports(&fakes).len(), 1);
}

#[test]
fn a_failed_table_update_or_report_send_fails_the_message() {
    let all = users(7);
    let names: Vec<&str> = all.iter().map(String::as_str).collect();
    let (b0, b1) = two_batches();

    // u6's update is throttled: batch 1 fails, batch 0 is saved and reported.
    let service = Rc::new(RefCell::new(EntryService::default()));
    let fakes = setup(&names, &service).intercept(|call, _| match call {
        Call::Update { key, .. } if key["PK"] == "ENTRY#c1#u6" => {
            Some(Error::Throttled("slow down".into()))
        }
        _ => None,
    });
    let r = run(&fakes, &[message("a", &b0), message("b", &b1)]);
    assert_eq!(r.failures, vec!["b"]);
    let ids: Vec<Value> = reports(&fakes)
        .into_iter()
        .map(|r| r["reportId"].clone())
        .collect();
    assert_eq!(ids, vec![json!("c1.m1#0")]);

    // The second report's send fails: only its message fails.
    let service = Rc::new(RefCell::new(EntryService::default()));
    let fakes = setup(&names, &service).on_queue(|_, messages| {
        Ok((0..messages.len())
            .map(|i| {
                if i == 1 {
                    Err(Error::Unavailable("sqs".into()))
                } else {
                    Ok(format!("id-{i}"))
                }
            })
            .collect())
    });
    let r = run(&fakes, &[message("a", &b0), message("b", &b1)]);
    assert_eq!(r.failures, vec!["b"]);

    // The queue refusing the whole send fails both.
    let service = Rc::new(RefCell::new(EntryService::default()));
    let fakes = setup(&names, &service).on_queue(|_, _| Err(Error::Denied("queue".into())));
    let r = run(&fakes, &[message("a", &b0), message("b", &b1)]);
    assert_eq!(r.failures, vec!["a", "b"]);
}

#[test]
fn two_messages_with_one_report_id_but_other_selections_fail_the_second() {
    let service = Rc::new(RefCell::new(EntryService::default()));
    let all = users(7);
    let names: Vec<&str> = all.iter().map(String::as_str).collect();
    let fakes = setup(&names, &service);
    let (b0, _) = two_batches();
    let mut other = b0.clone();
    other.selections.pop();
    let r = run(&fakes, &[message("a", &b0), message("x", &other)]);
    assert_eq!(r.failures, vec!["x"]);
    assert_eq!(reports(&fakes).len(), 1);
}

#[test]
fn settings_come_from_config() {
    let fakes = Fakes::new()
        .setting("table", json!("t2"))
        .setting("report_queue", json!("q2"));
    let _installed = fakes.install();
    let s = Settings::load().expect("settings");
    assert_eq!(
        s,
        Settings {
            table: "t2".into(),
            service: "entries".into(),
            report_queue: "q2".into()
        }
    );
}
