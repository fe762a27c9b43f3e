use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use serde_json::json;
use usher_sdk::fakes::{self, Call, Fakes};
use usher_sdk::{Error, Value};

use super::*;

/// A Code Service: code → (fan holding it, marked?); reserved codes are
/// free to mark; a code never goes to two fans.
#[derive(Default)]
struct Codes {
    reserved: BTreeSet<String>,
    held: BTreeMap<String, (String, bool)>,
    marks_made: u64,
    /// Markets answered 503.
    down: BTreeSet<String>,
    requests: Vec<usize>,
}

fn service(state: &Rc<RefCell<Codes>>) -> Fakes {
    let state = state.clone();
    Fakes::new().on_service("codes", move |r| {
        assert_eq!(r.path, MARK);
        let mut s = state.borrow_mut();
        let body: Value = serde_json::from_str(r.body.as_deref().unwrap_or("{}"))?;
        let market = format!(
            "{}/{}",
            body["campaignId"].as_str().unwrap_or(""),
            body["marketId"].as_str().unwrap_or("")
        );
        let assignments = body["assignments"].as_array().cloned().unwrap_or_default();
        assert!(assignments.len() <= CODES_PER_REQUEST);
        s.requests.push(assignments.len());
        if s.down.contains(&market) {
            return Ok(fakes::json_response(503, &json!({"error": "busy"})));
        }
        let (mut marked, mut already, mut conflicts) = (0, 0, Vec::new());
        for a in assignments {
            let code = a["code"].as_str().unwrap_or_default().to_string();
            let fan = a["globalUserId"].as_str().unwrap_or_default().to_string();
            match s.held.get(&code).cloned() {
                Some((holder, true)) if holder == fan => already += 1,
                Some((holder, _)) if holder != fan => conflicts.push(json!({
                    "code": code, "globalUserId": fan, "reason": format!("assigned to {holder}")})),
                Some(_) => {
                    s.held.insert(code, (fan, true));
                    s.marks_made += 1;
                    marked += 1;
                }
                None if s.reserved.contains(&code) => {
                    s.held.insert(code, (fan, true));
                    s.marks_made += 1;
                    marked += 1;
                }
                None => conflicts
                    .push(json!({"code": code, "globalUserId": fan, "reason": "not reserved"})),
            }
        }
        Ok(fakes::json_response(
            200,
            &json!({"marked": marked, "already": already, "conflicts": conflicts}),
        ))
    })
}

fn image(user: &str, market: &str, verdict: &str, code: Option<&str>) -> Value {
    let mut item = json!({
        "PK": format!("ENTRY#c1#{user}"), "SK": "ENTRY", "campaignId": "c1",
        "globalUserId": user, "marketId": market, "verdict": verdict, "version": 1,
    });
    if let Some(code) = code {
        item["accessCode"] = json!(code);
    }
    item
}

fn change(seq: u64, kind: ChangeKind, new: Option<Value>, old: Option<Value>) -> Change {
    let keys = new
        .as_ref()
        .or(old.as_ref())
        .map(|i| json!({"PK": i["PK"], "SK": "ENTRY"}))
        .unwrap_or(Value::Null);
    Change {
        table: "demand-table".into(),
        kind,
        keys,
        new_image: new,
        old_image: old,
        sequence_number: seq.to_string(),
        timestamp_ms: 0,
    }
}

/// A code newly given: PENDING → WINNER with a code.
fn won(seq: u64, user: &str, market: &str, code: &str) -> Change {
    change(
        seq,
        ChangeKind::Modify,
        Some(image(user, market, "WINNER", Some(code))),
        Some(image(user, market, "PENDING", None)),
    )
}

fn reserved(codes: impl IntoIterator<Item = String>) -> Rc<RefCell<Codes>> {
    Rc::new(RefCell::new(Codes {
        reserved: codes.into_iter().collect(),
        ..Codes::default()
    }))
}

#[test]
fn filters_the_records_that_give_a_winner_a_code() {
    let same_code = change(
        3,
        ChangeKind::Modify,
        Some(image("u", "m1", "WINNER", Some("A"))),
        Some(image("u", "m1", "WINNER", Some("A"))),
    );
    let other_code = change(
        4,
        ChangeKind::Modify,
        Some(image("u", "m1", "WINNER", Some("B"))),
        Some(image("u", "m1", "WINNER", Some("A"))),
    );
    let loser = change(
        5,
        ChangeKind::Modify,
        Some(image("u", "m1", "LOSER", None)),
        None,
    );
    let insert = change(
        6,
        ChangeKind::Insert,
        Some(image("u", "m1", "WINNER", Some("A"))),
        None,
    );
    let remove = change(
        7,
        ChangeKind::Remove,
        None,
        Some(image("u", "m1", "WINNER", Some("A"))),
    );
    let no_code = change(
        8,
        ChangeKind::Modify,
        Some(image("u", "m1", "WINNER", None)),
        None,
    );
    assert_eq!(to_mark(&same_code), Ok(None));
    assert_eq!(to_mark(&loser), Ok(None));
    assert_eq!(to_mark(&insert), Ok(None));
    assert_eq!(to_mark(&remove), Ok(None));
    assert_eq!(to_mark(&no_code), Ok(None));
    assert_eq!(
        to_mark(&other_code).expect("ok").map(|m| m.assignment.code),
        Some("B".to_string())
    );
    assert_eq!(
        to_mark(&won(1, "u", "m1", "A")),
        Ok(Some(ToMark {
            campaign_id: "c1".into(),
            market_id: "m1".into(),
            assignment: CodeAssignment {
                global_user_id: "u".into(),
                code: "A".into()
            }
        }))
    );
    let mut no_market = won(9, "u", "m1", "A");
    if let Some(img) = no_market.new_image.as_mut() {
        img.as_object_mut().expect("object").remove("marketId");
    }
    assert_eq!(
        to_mark(&no_market),
        Err(BadRecord::MissingField {
            field: "marketId",
            code: "A".into()
        })
    );

    // Only the kept ones reach the service; the others cost no call.
    let state = reserved(["A".to_string(), "B".to_string()]);
    let fakes = service(&state);
    let _installed = fakes.install();
    let r = process(
        "codes",
        &[same_code.clone(), loser, insert, remove, no_code],
    );
    assert!(r.failures.is_empty());
    assert_eq!(fakes.calls().len(), 0);
    let r = process("codes", &[same_code, other_code, no_market]);
    assert_eq!(r.failures, vec!["9"], "the record without marketId fails");
    assert_eq!(state.borrow().marks_made, 1);
}

#[test]
fn batches_by_market_in_hundreds_all_in_one_call_many() {
    let codes: Vec<String> = (0..250).map(|i| format!("K{i:03}")).collect();
    let state = reserved(codes.clone());
    let fakes = service(&state);
    let _installed = fakes.install();
    let changes: Vec<Change> = codes
        .iter()
        .enumerate()
        .map(|(i, code)| {
            let market = if i < 230 { "m1" } else { "m2" };
            won(i as u64 + 1, &format!("u{i:03}"), market, code)
        })
        .collect();
    let r = process("codes", &changes);
    assert!(r.failures.is_empty(), "{r:?}");
    assert_eq!(fakes.count("call_many"), 1);
    assert_eq!(fakes.count("call"), 0);
    let mut sizes = state.borrow().requests.clone();
    sizes.sort();
    assert_eq!(sizes, vec![20, 30, 100, 100]);
    assert_eq!(state.borrow().marks_made, 250);
    // Every request holds one market's codes.
    for req in fakes.requests() {
        let body: Value = serde_json::from_str(req.body.as_deref().unwrap_or("")).expect("json");
        let market = body["marketId"].as_str().expect("market").to_string();
        for a in body["assignments"].as_array().expect("assignments") {
            let n: usize = a["globalUserId"].as_str().expect("fan")[1..]
                .parse()
                .expect("n");
            assert_eq!(market == "m1", n < 230);
        }
    }
}

#[test]
fn a_redelivered_batch_marks_nothing_twice() {
    let state = reserved(["A".to_string(), "B".to_string()]);
    let fakes = service(&state);
    let _installed = fakes.install();
    let batch = vec![won(1, "u1", "m1", "A"), won(2, "u2", "m1", "B")];
    assert!(process("codes", &batch).failures.is_empty());
    // Retried from the first record, and one record twice in a batch.
    let mut again = batch.clone();
    again.push(won(1, "u1", "m1", "A"));
    assert!(process("codes", &again).failures.is_empty());
    assert_eq!(state.borrow().marks_made, 2);
    assert_eq!(
        state.borrow().requests,
        vec![2, 2],
        "the duplicate sent once"
    );
}

#[test]
fn a_conflict_fails_its_record_by_sequence_number() {
    let state = reserved(["A".to_string(), "C".to_string()]);
    // B is held by another fan.
    state
        .borrow_mut()
        .held
        .insert("B".into(), ("u9".into(), true));
    let fakes = service(&state);
    let _installed = fakes.install();
    let r = process(
        "codes",
        &[
            won(10, "u1", "m1", "A"),
            won(11, "u2", "m1", "B"),
            won(12, "u3", "m1", "C"),
            won(13, "u4", "m1", "NOT-RESERVED"),
        ],
    );
    assert_eq!(r.failures, vec!["11", "13"]);
    assert_eq!(
        state.borrow().held.get("B"),
        Some(&("u9".to_string(), true))
    );
    assert_eq!(state.borrow().marks_made, 2);
}

#[test]
fn a_failed_request_fails_its_records_only() {
    let state = reserved(["A".to_string(), "B".to_string()]);
    state.borrow_mut().down.insert("c1/m2".into());
    let fakes = service(&state);
    let _installed = fakes.install();
    let r = process(
        "codes",
        &[
            won(1, "u1", "m1", "A"),
            won(2, "u2", "m2", "B"),
            won(3, "u3", "m2", "B2"),
        ],
    );
    assert_eq!(r.failures, vec!["2", "3"]);
    drop(_installed);

    // The whole call failing fails every kept record.
    let fakes = Fakes::new()
        .intercept(|call, _| match call {
            Call::Service(_) => Some(Error::Unavailable("down".into())),
            _ => None,
        })
        .on_service("codes", |_| Ok(fakes::status(200)));
    let _installed = fakes.install();
    let r = process("codes", &[won(1, "u1", "m1", "A"), won(2, "u2", "m1", "B")]);
    assert_eq!(r.failures, vec!["1", "2"]);
    drop(_installed);

    // An answer that accounts for fewer codes than sent.
    let fakes = Fakes::new().on_service("codes", |_| {
        Ok(fakes::json_response(
            200,
            &json!({"marked": 1, "already": 0, "conflicts": []}),
        ))
    });
    let _installed = fakes.install();
    let r = process("codes", &[won(1, "u1", "m1", "A"), won(2, "u2", "m1", "B")]);
    assert_eq!(r.failures, vec!["1", "2"]);
}
