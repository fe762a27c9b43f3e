use usher_sdk::fakes::Fakes;
use usher_sdk::json::json;
use usher_sdk::{HttpRequest, Value};

use crate::logic::{handle, Settings};

fn call(method: &str, path: &str, query: &str, body: Value) -> (u16, Value) {
    let response = handle(
        &Settings::default(),
        &HttpRequest {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            headers: vec![],
            body: if body.is_null() {
                Vec::new()
            } else {
                body.to_string().into_bytes()
            },
        },
    );
    (
        response.status,
        serde_json::from_slice(&response.body).expect("JSON answer"),
    )
}

fn upsert(entries: Vec<Value>) -> Value {
    let (status, body) = call(
        "POST",
        "/entries/batch-upsert",
        "",
        json!({"entries": entries, "refreshScores": true}),
    );
    assert_eq!(status, 200, "{body}");
    body
}

fn entry(user: &str, version: u64, market: &str) -> Value {
    json!({"campaignId": "c", "globalUserId": user, "version": version, "marketId": market,
           "entry": {"zip": "1"}, "verdict": "PENDING"})
}

fn users(body: &Value, field: &str) -> Vec<String> {
    body[field]
        .as_array()
        .expect("list")
        .iter()
        .map(|e| e["globalUserId"].as_str().unwrap_or("").to_string())
        .collect()
}

fn all_pages(path: &str, field: &str, limit: u32) -> Vec<String> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut q = format!("campaignId=c&limit={limit}");
        if let Some(a) = &after {
            q.push_str(&format!("&after={a}"));
        }
        let (status, body) = call("GET", path, &q, Value::Null);
        assert_eq!(status, 200, "{body}");
        out.extend(users(&body, field));
        match body["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => return out,
        }
    }
}

#[test]
fn invites_are_lower_cased() {
    let fakes = Fakes::new();
    let _i = fakes.install();
    let (status, body) = call(
        "PUT",
        "/campaigns/c/invites",
        "",
        json!({"emails": ["Ada@Example.com", "ada@example.com ", "bob@x.org"]}),
    );
    assert_eq!((status, body), (200, json!({"invited": 2})));
    for (email, invited) in [
        ("ADA@example.COM", true),
        ("bob%40x.org", true),
        ("eve@x.org", false),
    ] {
        let (status, body) = call(
            "GET",
            &format!("/campaigns/c/invites/{email}"),
            "",
            Value::Null,
        );
        assert_eq!(
            (status, body),
            (200, json!({"invited": invited})),
            "{email}"
        );
    }
    let (status, _) = call(
        "GET",
        "/campaigns/other/invites/ada@example.com",
        "",
        Value::Null,
    );
    assert_eq!(status, 200);
    assert_eq!(
        call(
            "PUT",
            "/campaigns/c/invites",
            "",
            json!({"emails": ["no-at-sign"]})
        )
        .0,
        400
    );
    let many: Vec<String> = (0..1001).map(|i| format!("u{i}@x.org")).collect();
    assert_eq!(
        call("PUT", "/campaigns/c/invites", "", json!({"emails": many})).0,
        413
    );
    assert_eq!(
        call("GET", "/campaigns/c/invites/nope", "", Value::Null).0,
        400
    );
}

#[test]
fn market_entries_are_paged_from_the_index_and_follow_the_entries() {
    let fakes = Fakes::new().page_cap(3);
    let _i = fakes.install();
    let mut entries = Vec::new();
    for i in 0..12 {
        entries.push(entry(
            &format!("u{i:02}"),
            1,
            if i % 3 == 0 { "m2" } else { "m1" },
        ));
    }
    for chunk in entries.chunks(5) {
        upsert(chunk.to_vec());
    }
    let m1 = all_pages("/markets/m1/entries", "entries", 3);
    assert_eq!(m1, ["u01", "u02", "u04", "u05", "u07", "u08", "u10", "u11"]);
    let (_, page) = call(
        "GET",
        "/markets/m1/entries",
        "campaignId=c&limit=5",
        Value::Null,
    );
    assert_eq!(users(&page, "entries").len(), 5);
    assert_eq!(page["next"], "u07");
    assert!(page["entries"][0]["score"].is_number(), "{page}");
    // A move to another market; a delete; a score refresh.
    upsert(vec![entry("u01", 2, "m2")]);
    let (status, _) = call(
        "POST",
        "/entries/batch-delete",
        "",
        json!({"keys": [{"campaignId": "c", "globalUserId": "u02"}]}),
    );
    assert_eq!(status, 200);
    assert_eq!(
        all_pages("/markets/m1/entries", "entries", 1000),
        ["u04", "u05", "u07", "u08", "u10", "u11"]
    );
    assert_eq!(
        all_pages("/markets/m2/entries", "entries", 2),
        ["u00", "u01", "u03", "u06", "u09"]
    );
    // The index item is a copy of the entry item (entry, score, version).
    let index = fakes
        .item("entries", &json!({"PK": "MARKET#c#m2", "SK": "FAN#u01"}))
        .expect("index");
    let item = fakes
        .item("entries", &json!({"PK": "CAMPAIGN#c", "SK": "FAN#u01"}))
        .expect("entry");
    for k in ["entry", "score", "version"] {
        assert_eq!(index[k], item[k], "{k}");
    }
    // A score refresh reaches the index too.
    let mut stale = index.clone();
    stale["score"] = json!(0);
    let fakes = fakes.with_item("entries", stale);
    let (status, _) = call(
        "POST",
        "/scores/refresh",
        "",
        json!({"fans": [{"campaignId": "c", "globalUserId": "u01"}]}),
    );
    assert_eq!(status, 200);
    let index = fakes
        .item("entries", &json!({"PK": "MARKET#c#m2", "SK": "FAN#u01"}))
        .expect("index");
    assert_eq!(index["score"], item["score"]);
    assert_eq!(
        call(
            "GET",
            "/markets/m1/entries",
            "campaignId=c&limit=5001",
            Value::Null
        )
        .0,
        400
    );
}

fn assign(pairs: &[(&str, &str)]) -> Value {
    let assignments: Vec<Value> = pairs
        .iter()
        .map(|(f, c)| json!({"globalUserId": f, "code": c}))
        .collect();
    let (status, body) = call(
        "POST",
        "/entries/assign-codes",
        "",
        json!({"campaignId": "c", "marketId": "m1", "assignments": assignments}),
    );
    assert_eq!(status, 200, "{body}");
    body
}

fn verdicts(list: Value) -> Value {
    let (status, body) = call(
        "POST",
        "/entries/verdicts",
        "",
        json!({"campaignId": "c", "marketId": "m1", "drawId": "d1", "verdicts": list}),
    );
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn codes_verdicts_and_selections() {
    let fakes = Fakes::new();
    let _i = fakes.install();
    upsert((0..5).map(|i| entry(&format!("u{i}"), 1, "m1")).collect());
    let body = assign(&[
        ("u0", "A"),
        ("u1", "B"),
        ("u0", "A"),
        ("u2", "A"),
        ("u0", "C"),
    ]);
    assert_eq!(body["assigned"], 2);
    assert_eq!(body["already"], 1);
    let reasons: Vec<&str> = body["conflicts"]
        .as_array()
        .expect("conflicts")
        .iter()
        .map(|c| c["reason"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        reasons,
        ["the code went to another fan", "the fan has another code"]
    );
    // Idempotent.
    assert_eq!(
        assign(&[("u0", "A"), ("u1", "B")]),
        json!({"assigned": 0, "already": 2, "conflicts": []})
    );
    let body = verdicts(json!([
        {"globalUserId": "u0", "verdict": "WINNER", "code": "A"},
        {"globalUserId": "u1", "verdict": "WINNER", "code": "X"},
        {"globalUserId": "u3", "verdict": "LOSER"},
        {"globalUserId": "u4", "verdict": "WAITLIST"},
        {"globalUserId": "ghost", "verdict": "LOSER"},
    ]));
    assert_eq!(body["updated"], 3);
    assert_eq!(body["missing"], json!(["ghost"]));
    assert_eq!(body["conflicts"][0]["globalUserId"], "u1");
    // A later upsert of the same entries (replication) keeps them.
    upsert((0..5).map(|i| entry(&format!("u{i}"), 2, "m1")).collect());
    let (status, page) = call("GET", "/markets/m1/selections", "campaignId=c", Value::Null);
    assert_eq!(status, 200);
    assert_eq!(
        page,
        json!({"selections": [
            {"globalUserId": "u0", "verdict": "WINNER", "code": "A", "drawId": "d1"},
            {"globalUserId": "u3", "verdict": "LOSER", "drawId": "d1"},
            {"globalUserId": "u4", "verdict": "WAITLIST", "drawId": "d1"},
        ], "next": null})
    );
    assert_eq!(
        all_pages("/markets/m1/selections", "selections", 1),
        ["u0", "u3", "u4"]
    );
    // PENDING takes a selection back.
    verdicts(json!([{"globalUserId": "u4", "verdict": "PENDING"}]));
    assert_eq!(
        all_pages("/markets/m1/selections", "selections", 10),
        ["u0", "u3"]
    );
    // Bad input.
    let bad = |body: Value| call("POST", "/entries/verdicts", "", body).0;
    assert_eq!(
        bad(json!({"campaignId": "c", "marketId": "m1", "verdicts": []})),
        400
    );
    assert_eq!(
        bad(json!({"campaignId": "c", "marketId": "m1", "drawId": "d",
                   "verdicts": [{"globalUserId": "u0", "verdict": "MAYBE"}]})),
        400
    );
    let many: Vec<Value> = (0..=super::MAX_ASSIGNMENTS)
        .map(|i| json!({"globalUserId": format!("u{i}"), "code": "x"}))
        .collect();
    assert_eq!(
        call(
            "POST",
            "/entries/assign-codes",
            "",
            json!({"campaignId": "c", "marketId": "m1", "assignments": many})
        )
        .0,
        413
    );
    let many: Vec<Value> = (0..=super::MAX_SELECTIONS)
        .map(|i| json!({"globalUserId": format!("u{i}"), "verdict": "LOSER"}))
        .collect();
    assert_eq!(
        bad(json!({"campaignId": "c", "marketId": "m1", "drawId": "d", "verdicts": many})),
        413
    );
}

/// A code claimed by another fan between the read and the write (a
/// concurrent request): a conflict, and the fan is left free.
#[test]
fn assign_codes_loses_a_race_cleanly() {
    use std::cell::Cell;
    use std::rc::Rc;
    use usher_sdk::fakes::Call;

    let done = Rc::new(Cell::new(false));
    let d = done.clone();
    let fakes = Fakes::new().intercept(move |call, tables| {
        if let Call::Put { item, .. } = call {
            if item["SK"] == "CODE#A" && !d.get() {
                d.set(true);
                tables.insert(
                    "entries",
                    json!({"PK": "ASSIGN#c#m1", "SK": "CODE#A", "code": "A", "globalUserId": "other"}),
                );
            }
        }
        None
    });
    let _i = fakes.install();
    let body = assign(&[("u0", "A"), ("u1", "B")]);
    assert_eq!(body["assigned"], 1, "{body}");
    assert_eq!(
        body["conflicts"][0]["reason"],
        "the code went to another fan"
    );
    assert!(fakes
        .item("entries", &json!({"PK": "ASSIGN#c#m1", "SK": "FAN#u0"}))
        .is_none());
    // u0 can get another code; B stays u1's.
    let body = assign(&[("u0", "C"), ("u2", "B")]);
    assert_eq!(body["assigned"], 1, "{body}");
    assert_eq!(body["conflicts"][0]["globalUserId"], "u2");
}

/// The listing's text is the same entry as `view` of the item.
#[test]
fn listed_text_equals_the_view() {
    for item in [
        json!({"SK": "FAN#u", "entry": {"a": 1, "b": {"c": [1, 2]}}, "score": 17}),
        json!({"SK": "FAN#u", "entry": {"a": 1, "score": 3}, "score": 17}),
        json!({"SK": "FAN#u", "entry": {}, "score": 2}),
        json!({"SK": "FAN#u", "entry": { }, "score": null}),
        json!({"SK": "FAN#u", "entry": {"a": "x"}}),
        json!({"SK": "FAN#u", "score": 5}),
        json!({"SK": "FAN#u", "entry": [1, 2], "score": 5}),
        json!({"SK": "FAN#u", "entry": null, "score": 5}),
    ] {
        let listed: super::Listed = serde_json::from_str(&item.to_string()).expect("listed");
        let mut text = String::new();
        listed.write(&mut text);
        let got: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(got, crate::logic::view(&item), "{item}");
    }
}
