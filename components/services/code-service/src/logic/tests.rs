use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use usher_sdk::fakes::{Call, Fakes};
use usher_sdk::json::json;
use usher_sdk::{Error, HttpRequest, Value};

use super::*;

const T: &str = "codes";

fn settings() -> Settings {
    Settings::default()
}

fn call(method: &str, path: &str, body: Value) -> (u16, Value) {
    let response = handle(
        &settings(),
        &HttpRequest {
            method: method.into(),
            path: path.into(),
            body: if body.is_null() {
                Vec::new()
            } else {
                body.to_string().into_bytes()
            },
            ..HttpRequest::default()
        },
    );
    let body = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    (response.status, body)
}

fn load(codes: &[String]) -> (u16, Value) {
    call("POST", "/pools/c1/m1/codes", json!({"codes": codes}))
}

fn codes(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:05}")).collect()
}

fn counts() -> Value {
    let (status, body) = call("GET", "/pools/c1/m1", Value::Null);
    assert_eq!(status, 200, "{body}");
    body
}

fn reserve_(id: &str, count: usize) -> (u16, Value) {
    call(
        "POST",
        "/reservations",
        json!({"reservationId": id, "campaignId": "c1", "marketId": "m1", "count": count}),
    )
}

fn assign_(path: &str, pairs: &[(&str, &str)]) -> (u16, Value) {
    let assignments: Vec<Value> = pairs
        .iter()
        .map(|(c, f)| json!({"code": c, "globalUserId": f}))
        .collect();
    call(
        "POST",
        path,
        json!({"campaignId": "c1", "marketId": "m1", "assignments": assignments}),
    )
}

fn code_items(fakes: &Fakes) -> Vec<Value> {
    fakes
        .items(T)
        .into_iter()
        .filter(|i| i["SK"].as_str().is_some_and(|s| s.starts_with("CODE#")))
        .collect()
}

/// The pool counts of the code items themselves must equal the counters.
fn assert_counts_match_items(fakes: &Fakes) {
    let items = code_items(fakes);
    let t = tally(items.iter().filter_map(|i| i["status"].as_str()));
    let c = counts();
    assert_eq!(c["total"], json!(items.len()), "{c}");
    for k in ["available", "reserved", "assigned", "marked"] {
        assert_eq!(
            c[k],
            json!(t.get(k).copied().unwrap_or(0)),
            "{k}: {c} vs {t:?}"
        );
    }
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|c| c.as_str().expect("string").to_string())
        .collect()
}

#[test]
fn loads_codes_and_counts_duplicates() {
    let fakes = Fakes::new();
    let _i = fakes.install();
    let mut list = codes("A", 10);
    list.push("A00003".into());
    assert_eq!(load(&list), (200, json!({"loaded": 10, "duplicates": 1})));
    assert_eq!(
        load(&codes("A", 12)),
        (200, json!({"loaded": 2, "duplicates": 10}))
    );
    let c = counts();
    assert_eq!(
        c,
        json!({"campaignId": "c1", "marketId": "m1", "total": 12, "available": 12,
               "reserved": 0, "assigned": 0, "marked": 0})
    );
    assert_counts_match_items(&fakes);
    // An unknown pool has nothing.
    let (status, body) = call("GET", "/pools/c1/other", Value::Null);
    assert_eq!((status, body["total"].clone()), (200, json!(0)));
}

#[test]
fn bad_requests() {
    let fakes = Fakes::new();
    let _i = fakes.install();
    assert_eq!(load(&codes("A", MAX_LOAD + 1)).0, 413);
    assert_eq!(
        call("POST", "/pools/c1/m1/codes", json!({"codes": [""]})).0,
        400
    );
    assert_eq!(
        call("POST", "/pools/c1/m1/codes", json!({"codes": [3]})).0,
        400
    );
    assert_eq!(call("POST", "/pools/c1/m1/codes", json!({})).0, 400);
    assert_eq!(
        call("POST", "/pools/c%231/m1/codes", json!({"codes": []})).0,
        400
    );
    assert_eq!(reserve_("r", 0).0, 400);
    assert_eq!(reserve_("r", 20_001).0, 400);
    assert_eq!(reserve_("", 1).0, 400);
    assert_eq!(
        call(
            "POST",
            "/reservations",
            json!({"reservationId": "r", "count": 1})
        )
        .0,
        400
    );
    let many: Vec<(&str, &str)> = (0..101).map(|_| ("a", "b")).collect();
    assert_eq!(assign_("/codes/assign", &many).0, 413);
    assert_eq!(
        call(
            "POST",
            "/codes/assign",
            json!({"campaignId": "c1", "marketId": "m1",
            "assignments": [{"code": "a"}]})
        )
        .0,
        400
    );
    assert_eq!(call("GET", "/reservations/nope", Value::Null).0, 404);
    assert_eq!(call("GET", "/reservations", Value::Null).0, 405);
    assert_eq!(call("GET", "/nope", Value::Null).0, 404);
    assert!(fakes.items(T).is_empty());
}

#[test]
fn reservations_are_disjoint_and_idempotent() {
    let fakes = Fakes::new().page_cap(7);
    let _i = fakes.install();
    load(&codes("A", 50));
    let (status, first) = reserve_("r1", 20);
    assert_eq!(status, 200, "{first}");
    let first_codes = strs(&first["codes"]);
    assert_eq!(first_codes.len(), 20);
    assert_eq!(first["reservationId"], "r1");
    // Again: the same codes, counted once.
    assert_eq!(reserve_("r1", 20), (200, first.clone()));
    assert_eq!(
        call("GET", "/reservations/r1", Value::Null),
        (200, first.clone())
    );
    let (status, second) = reserve_("r2", 25);
    assert_eq!(status, 200);
    let second_codes = strs(&second["codes"]);
    assert_eq!(second_codes.len(), 25);
    let a: BTreeSet<_> = first_codes.iter().collect();
    assert!(second_codes.iter().all(|c| !a.contains(c)));
    let c = counts();
    assert_eq!(
        (c["available"].clone(), c["reserved"].clone()),
        (json!(5), json!(45))
    );
    assert_counts_match_items(&fakes);
    // The scan starts after the codes known taken.
    let counters = fakes
        .item(T, &json!({"PK": "POOL#c1#m1", "SK": "COUNTS"}))
        .expect("counters");
    assert_eq!(counters["scanAfter"], "CODE#A00044");
    // Another pool or count for the same id: a conflict.
    assert_eq!(reserve_("r1", 21).0, 409);
    // No claims left behind.
    assert!(fakes
        .items(T)
        .iter()
        .all(|i| !i["SK"].as_str().unwrap_or("").starts_with("CLAIM#")));
}

#[test]
fn too_few_codes_is_a_409_and_keeps_nothing() {
    let fakes = Fakes::new().page_cap(4);
    let _i = fakes.install();
    load(&codes("A", 10));
    assert_eq!(reserve_("r1", 4).0, 200);
    let (status, body) = reserve_("r2", 7);
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["available"], 6);
    assert!(body["error"].is_string());
    assert_counts_match_items(&fakes);
    assert_eq!(counts()["reserved"], 4);
    assert_eq!(
        fakes
            .item(T, &json!({"PK": "RESERVATION#r2", "SK": "RECORD"}))
            .expect("record")["phase"],
        "FAILED#1"
    );
    assert_eq!(call("GET", "/reservations/r2", Value::Null).0, 404);
    // The counters said too few: nothing was even tried. Now the counters
    // claim more than there is (a stale count): the scan finds out, gives
    // back what it took and answers 409 all the same.
    let mut counters = fakes
        .item(T, &json!({"PK": "POOL#c1#m1", "SK": "COUNTS"}))
        .expect("counters");
    counters["available"] = json!(100);
    let fakes = fakes.with_item(T, counters);
    let (status, body) = reserve_("r2", 7);
    assert_eq!(status, 409, "{body}");
    let items = code_items(&fakes);
    assert_eq!(
        items.iter().filter(|i| i["status"] == "AVAILABLE").count(),
        6
    );
    assert!(fakes
        .items(T)
        .iter()
        .all(|i| !i["SK"].as_str().unwrap_or("").starts_with("CLAIM#")));
    // A later retry with the same id succeeds once there are codes.
    load(&codes("B", 5));
    let (status, body) = reserve_("r2", 7);
    assert_eq!(status, 200, "{body}");
    assert_eq!(strs(&body["codes"]).len(), 7);
}

/// A reservation that crashes half-way (the table fails after some codes
/// moved) returns, when retried, exactly `count` codes, including the ones
/// it already held, and leaves no other code reserved.
#[test]
fn a_retried_reservation_after_a_crash_half_way() {
    for crash_at in [1usize, 3, 7, 11, 12] {
        let updates = Rc::new(RefCell::new(0usize));
        let armed = Rc::new(RefCell::new(true));
        let (u, a) = (updates.clone(), armed.clone());
        let fakes = Fakes::new().page_cap(5).intercept(move |call, _| {
            let reserving = matches!(call, Call::Update { set, .. }
                if set["status"].as_str().is_some_and(|s| s.starts_with("RESERVED#")));
            if reserving && *a.borrow() {
                *u.borrow_mut() += 1;
                if *u.borrow() == crash_at {
                    *a.borrow_mut() = false;
                    return Some(Error::Unavailable("crash".into()));
                }
            }
            None
        });
        let _i = fakes.install();
        load(&codes("A", 30));
        let (status, _) = reserve_("r1", 12);
        assert_eq!(status, 503, "crash at {crash_at}");
        let (status, body) = reserve_("r1", 12);
        assert_eq!(status, 200, "crash at {crash_at}: {body}");
        let got: BTreeSet<String> = strs(&body["codes"]).into_iter().collect();
        assert_eq!(got.len(), 12);
        let reserved: BTreeSet<String> = code_items(&fakes)
            .iter()
            .filter(|i| {
                i["status"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("RESERVED#"))
            })
            .map(|i| i["code"].as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(reserved, got, "crash at {crash_at}");
        assert_eq!(reserve_("r1", 12), (200, body.clone()));
        assert_counts_match_items(&fakes);
    }
}

#[test]
fn a_crash_before_counting_is_counted_once_on_retry() {
    let armed = Rc::new(RefCell::new(true));
    let a = armed.clone();
    let fakes = Fakes::new().intercept(move |call, _| {
        // The first counters write of the reservation (it moves `reserved`).
        let counting = matches!(call, Call::Put { item, .. }
            if item["SK"] == "COUNTS" && item["reserved"] == json!(5));
        if counting && *a.borrow() {
            *a.borrow_mut() = false;
            return Some(Error::Unavailable("crash".into()));
        }
        None
    });
    let _i = fakes.install();
    load(&codes("A", 8));
    assert_eq!(reserve_("r1", 5).0, 503);
    let (status, body) = reserve_("r1", 5);
    assert_eq!(status, 200, "{body}");
    assert_eq!(reserve_("r1", 5).0, 200);
    assert_counts_match_items(&fakes);
}

#[test]
fn an_overtaken_attempt_gives_its_codes_back() {
    let fakes = Fakes::new();
    let _i = fakes.install();
    load(&codes("A", 10));
    // Attempt 1 is still running somewhere: its record is pending and it
    // holds two codes it claimed.
    let mut t = fakes.clone();
    t = t.with_item(
        T,
        json!({"PK": "RESERVATION#r1", "SK": "RECORD", "reservationId": "r1",
               "campaignId": "c1", "marketId": "m1", "count": 3,
               "phase": "PENDING#1", "generation": 1}),
    );
    t = t.with_item(
        T,
        json!({"PK": "RESERVATION#r1", "SK": "CLAIM#000001#000000", "codes": ["A00007", "A00008"]}),
    );
    for c in ["A00007", "A00008"] {
        let mut item = t
            .item(T, &json!({"PK": "POOL#c1#m1", "SK": format!("CODE#{c}")}))
            .expect("code");
        item["status"] = json!("RESERVED#r1#1");
        t = t.with_item(T, item);
    }
    // A retry (attempt 2) adopts them and completes with them.
    let (status, body) = reserve_("r1", 3);
    assert_eq!(status, 200, "{body}");
    let got = strs(&body["codes"]);
    assert!(got.contains(&"A00007".to_string()) && got.contains(&"A00008".to_string()));
    assert_counts_match_items(&fakes);
    assert!(code_items(&fakes)
        .iter()
        .all(|i| i["status"] != "RESERVED#r1#1"));
}

#[test]
fn assign_and_mark() {
    let fakes = Fakes::new();
    let _i = fakes.install();
    load(&codes("A", 10));
    let (_, r) = reserve_("r1", 6);
    let c = strs(&r["codes"]);
    let (status, body) = assign_(
        "/codes/assign",
        &[
            (&c[0], "f0"),
            (&c[1], "f1"),
            (&c[0], "f0"),
            (&c[2], "f0"),
            (&c[1], "f9"),
        ],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["assigned"], 2);
    assert_eq!(body["already"], 1);
    let conflicts = body["conflicts"].as_array().expect("conflicts");
    assert_eq!(conflicts.len(), 2, "{body}");
    // Again: already; another fan for a taken code; a second code for a fan;
    // a code not reserved; an unknown code.
    let available = code_items(&fakes)
        .into_iter()
        .find(|i| i["status"] == "AVAILABLE")
        .expect("an available code");
    let available = available["code"].as_str().expect("code").to_string();
    let (_, body) = assign_(
        "/codes/assign",
        &[
            (&c[0], "f0"),
            (&c[1], "f2"),
            (&c[3], "f1"),
            (&available, "f3"),
            ("ZZZ", "f4"),
        ],
    );
    assert_eq!(body["assigned"], 0, "{body}");
    assert_eq!(body["already"], 1);
    let reasons: Vec<&str> = body["conflicts"]
        .as_array()
        .expect("conflicts")
        .iter()
        .map(|c| c["reason"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        reasons,
        [
            "the code is assigned to another fan",
            "the fan holds another code of this market",
            "the code is not reserved (AVAILABLE)",
            "no such code in this pool",
        ]
    );
    // Mark: an assigned code is marked, a reserved one is assigned first.
    let (_, body) = assign_("/codes/mark-assigned", &[(&c[0], "f0"), (&c[4], "f4")]);
    assert_eq!(body, json!({"marked": 2, "already": 0, "conflicts": []}));
    let (_, body) = assign_("/codes/mark-assigned", &[(&c[0], "f0"), (&c[4], "f4")]);
    assert_eq!(body, json!({"marked": 0, "already": 2, "conflicts": []}));
    let (_, body) = assign_("/codes/assign", &[(&c[4], "f4")]);
    assert_eq!(body, json!({"assigned": 0, "already": 1, "conflicts": []}));
    let n = counts();
    assert_eq!(
        (
            n["reserved"].clone(),
            n["assigned"].clone(),
            n["marked"].clone()
        ),
        (json!(3), json!(3), json!(2))
    );
    assert_counts_match_items(&fakes);
}

/// A crash before any one write of an assignment or a marking (the
/// request fails there), then the request again: the counters always equal
/// the codes' states. A move and its counting are one transaction, so no
/// crash falls between them (the kill -9 end-to-end test once found 100
/// codes marked but not counted when they were two writes).
#[test]
fn a_crash_before_any_write_of_an_assignment_keeps_the_counters_exact() {
    for crash_at in 0..8 {
        let writes = Rc::new(RefCell::new(0usize));
        let armed = Rc::new(RefCell::new(false));
        let (w, a) = (writes.clone(), armed.clone());
        let fakes = Fakes::new().intercept(move |call, _| {
            let writing = matches!(
                call,
                Call::Put { .. }
                    | Call::Update { .. }
                    | Call::Delete { .. }
                    | Call::BatchWrite { .. }
                    | Call::TransactWrite { .. }
            );
            if writing && *a.borrow() {
                let n = *w.borrow();
                *w.borrow_mut() += 1;
                if n == crash_at {
                    return Some(Error::Unavailable(format!("crash at write {n}")));
                }
            }
            None
        });
        let _i = fakes.install();
        load(&codes("A", 10));
        let (_, r) = reserve_("r1", 6);
        let c = strs(&r["codes"]);
        let pairs = [(c[0].as_str(), "f0"), (c[1].as_str(), "f1")];
        let marks = [(c[0].as_str(), "f0"), (c[2].as_str(), "f2")];
        *armed.borrow_mut() = true;
        let first = assign_("/codes/assign", &pairs);
        let first_mark = assign_("/codes/mark-assigned", &marks);
        *armed.borrow_mut() = false;
        assert_counts_match_items(&fakes);
        let (status, body) = assign_("/codes/assign", &pairs);
        assert_eq!(status, 200, "crash at {crash_at}: {first:?} then {body}");
        let (status, body) = assign_("/codes/mark-assigned", &marks);
        assert_eq!(
            status, 200,
            "crash at {crash_at}: {first_mark:?} then {body}"
        );
        assert_counts_match_items(&fakes);
        let n = counts();
        assert_eq!(
            (n["assigned"].clone(), n["marked"].clone()),
            (json!(3), json!(2)),
            "crash at {crash_at}: {n}"
        );
    }
}

/// An assignment that loses its code to a concurrent one (the code moves
/// between the read and the write) is a conflict and the fan's claim is
/// removed again, so the fan may get another code.
#[test]
fn a_lost_race_leaves_the_fan_free() {
    let fakes = Fakes::new();
    let _i = fakes.install();
    load(&codes("A", 4));
    let (_, r) = reserve_("r1", 4);
    let c = strs(&r["codes"]);
    let code = c[0].clone();
    let stolen = Rc::new(RefCell::new(false));
    let s = stolen.clone();
    let fakes = fakes.intercept(move |call, tables| {
        if let Call::TransactWrite { items, .. } = call {
            for item in items {
                if let TransactItem::Update(u) = item {
                    if u.set["status"] == "ASSIGNED#f1" && !*s.borrow() {
                        *s.borrow_mut() = true;
                        let mut item = tables.get(T, &u.key).cloned().unwrap_or(Value::Null);
                        item["status"] = json!("ASSIGNED#other");
                        tables.insert(T, item);
                    }
                }
            }
        }
        None
    });
    let (_, body) = assign_("/codes/assign", &[(&code, "f1")]);
    assert_eq!(body["assigned"], 0, "{body}");
    assert_eq!(body["conflicts"].as_array().map(Vec::len), Some(1));
    assert!(fakes
        .item(T, &json!({"PK": "POOL#c1#m1", "SK": "FAN#f1"}))
        .is_none());
    let (_, body) = assign_("/codes/assign", &[(&c[1], "f1")]);
    assert_eq!(body["assigned"], 1, "{body}");
}

#[test]
fn the_status_helpers() {
    assert_eq!(reserved_by("RESERVED#a#b#3", "a#b"), Some(3));
    assert_eq!(reserved_by("RESERVED#a#3", "b"), None);
    assert_eq!(reserved_by("ASSIGNED#x", "x"), None);
    assert_eq!(holder("MARKED#f"), Some(("f", true)));
    assert_eq!(holder("ASSIGNED#f#g"), Some(("f#g", false)));
    let t = tally(["AVAILABLE", "RESERVED#r#1", "ASSIGNED#f", "MARKED#g"]);
    assert_eq!(t.get("assigned"), Some(&2));
    assert_eq!(t.get("marked"), Some(&1));
}

/// Codes held by a reservation still being made (or by an overtaken
/// attempt) are not given to fans: only a complete reservation's answer is.
#[test]
fn only_codes_of_complete_reservations_are_assigned() {
    let fakes = Fakes::new();
    let _i = fakes.install();
    load(&codes("A", 6));
    let (_, r) = reserve_("r1", 2);
    let c = strs(&r["codes"]);
    let mut pending = fakes
        .item(T, &json!({"PK": "POOL#c1#m1", "SK": "CODE#A00005"}))
        .expect("code");
    pending["status"] = json!("RESERVED#r2#1");
    let mut stray = fakes
        .item(T, &json!({"PK": "POOL#c1#m1", "SK": "CODE#A00004"}))
        .expect("code");
    stray["status"] = json!("RESERVED#r1#7");
    let fakes = fakes.with_item(T, pending).with_item(T, stray);
    let (_, body) = assign_(
        "/codes/assign",
        &[(&c[0], "f0"), ("A00005", "f1"), ("A00004", "f2")],
    );
    assert_eq!(body["assigned"], 1, "{body}");
    let reasons: Vec<&str> = body["conflicts"]
        .as_array()
        .expect("conflicts")
        .iter()
        .map(|c| c["reason"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(reasons, ["the code's reservation is not complete"; 2]);
    drop(fakes);
}

#[test]
fn codes_are_listed_in_pages_with_their_state_and_fan() {
    let fakes = Fakes::new();
    let _installed = fakes.install();
    assert_eq!(load(&codes("A", 5)).0, 200);
    let (status, reserved) = reserve_("r1", 2);
    assert_eq!(status, 200, "{reserved}");
    let (status, _) = assign_("/codes/assign", &[("A00000", "fan-1")]);
    assert_eq!(status, 200);
    let list = |q: &str| {
        let response = handle(
            &settings(),
            &HttpRequest {
                method: "GET".into(),
                path: "/pools/c1/m1/codes".into(),
                query: q.into(),
                ..HttpRequest::default()
            },
        );
        (
            response.status,
            serde_json::from_slice::<Value>(&response.body).unwrap_or(Value::Null),
        )
    };
    let (status, first) = list("limit=3");
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["codes"][0]["code"], "A00000");
    assert_eq!(first["codes"][0]["status"], "ASSIGNED");
    assert_eq!(first["codes"][0]["globalUserId"], "fan-1");
    assert_eq!(first["codes"][1]["status"], "RESERVED");
    assert_eq!(first["codes"][2]["status"], "AVAILABLE");
    assert_eq!(first["next"], "A00002");
    let (_, second) = list("limit=3&after=A00002");
    assert_eq!(second["codes"].as_array().map(Vec::len), Some(2));
    assert_eq!(second["next"], Value::Null);
    assert_eq!(list("limit=0").0, 400);
}
