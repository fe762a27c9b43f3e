use std::cell::RefCell;
use std::rc::Rc;

use usher_sdk::fakes::{Call, Fakes};
use usher_sdk::json::json;
use usher_sdk::{Error, HttpRequest, Value};

use super::*;

/// The SDK's in-memory table (the host's semantics: conditions, prefix
/// queries with a `{"PK","SK"}` cursor, a page cap), installed for the
/// test, with hooks: `down` fails every call with `unavailable`; an item
/// put in `sneak` is stored (replacing the item) right before the next put
/// or update of its key.
struct Fake {
    fakes: Fakes,
    _installed: usher_sdk::native::Installed,
    down: Rc<RefCell<bool>>,
    sneak: Rc<RefCell<Option<Value>>>,
}

impl Default for Fake {
    fn default() -> Fake {
        Fake::new(Fakes::new())
    }
}

impl Fake {
    fn new(fakes: Fakes) -> Fake {
        let down = Rc::new(RefCell::new(false));
        let sneak: Rc<RefCell<Option<Value>>> = Rc::new(RefCell::new(None));
        let (d, s) = (down.clone(), sneak.clone());
        let fakes = fakes.intercept(move |call, tables| {
            if *d.borrow() {
                return Some(Error::Unavailable("table down".into()));
            }
            let key = match call {
                Call::Put { item, .. } => item,
                Call::Update { key, .. } => key,
                _ => return None,
            };
            let due = s
                .borrow()
                .as_ref()
                .is_some_and(|i| i["PK"] == key["PK"] && i["SK"] == key["SK"]);
            if due {
                if let Some(item) = s.borrow_mut().take() {
                    tables.insert("entries", item);
                }
            }
            None
        });
        Fake {
            _installed: fakes.install(),
            fakes,
            down,
            sneak,
        }
    }

    fn page_cap(cap: u32) -> Fake {
        Fake::new(Fakes::new().page_cap(cap))
    }

    fn down() -> Fake {
        let fake = Fake::default();
        *fake.down.borrow_mut() = true;
        fake
    }

    fn sneak(&self, item: Value) {
        *self.sneak.borrow_mut() = Some(item);
    }

    fn count(&self, call: &str) -> usize {
        self.fakes.count(call)
    }
}

fn request(method: &str, path: &str, query: &str, body: &str) -> HttpRequest {
    HttpRequest {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        headers: vec![],
        body: body.as_bytes().to_vec(),
    }
}

fn call(fake: &mut Fake, method: &str, path: &str, query: &str, body: Value) -> (u16, Value) {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let _ = fake;
    let response = handle(&Settings::default(), &request(method, path, query, &body));
    let value = serde_json::from_slice(&response.body).expect("JSON answer");
    assert!(response
        .headers
        .iter()
        .any(|(n, v)| n == "content-type" && v == "application/json"));
    (response.status, value)
}

fn entry(campaign: &str, user: &str, version: i64) -> Value {
    json!({"campaignId": campaign, "globalUserId": user, "version": version})
}

fn upsert(fake: &mut Fake, entries: Vec<Value>) -> (u16, Value) {
    call(
        fake,
        "POST",
        "/entries/batch-upsert",
        "",
        json!({"entries": entries}),
    )
}

fn stored(fake: &Fake, campaign: &str, user: &str) -> Option<Value> {
    fake.fakes.item(
        "entries",
        &json!({"PK": format!("CAMPAIGN#{campaign}"), "SK": format!("FAN#{user}")}),
    )
}

#[test]
fn routes() {
    let mut fake = Fake::default();
    let status = |fake: &mut Fake, method: &str, path: &str, body: Value| {
        call(fake, method, path, "campaignId=c", body).0
    };
    let fans = json!({"fans": []});
    assert_eq!(
        status(
            &mut fake,
            "POST",
            "/entries/batch-upsert",
            json!({"entries": []})
        ),
        200
    );
    assert_eq!(
        status(
            &mut fake,
            "post",
            "/entries/batch-delete/",
            json!({"keys": []})
        ),
        200
    );
    assert_eq!(
        status(&mut fake, "POST", "/scores/refresh", fans.clone()),
        200
    );
    // Path parameters are percent-decoded.
    upsert(&mut fake, vec![entry("c 1", "u", 1)]);
    let (_, page) = call(
        &mut fake,
        "GET",
        "/campaigns/c%201/entries",
        "",
        Value::Null,
    );
    assert_eq!(page["entries"][0]["campaignId"], "c 1");
    assert_eq!(
        status(&mut fake, "GET", "/markets/m1/entries", Value::Null),
        200
    );
    for path in ["/campaigns//entries", "/", "/entries"] {
        assert_eq!(status(&mut fake, "GET", path, Value::Null), 404, "{path}");
    }
    for (method, path, allow) in [
        ("GET", "/entries/batch-upsert", "POST"),
        ("DELETE", "/campaigns/c/entries", "GET"),
    ] {
        let r = handle(&Settings::default(), &request(method, path, "", ""));
        assert_eq!(r.status, 405);
        assert!(r.headers.contains(&("allow".into(), allow.into())));
    }
    assert_eq!(
        status(&mut fake, "GET", "/campaigns/%zz/entries", Value::Null),
        400
    );
}

#[test]
fn errors_are_json_with_status() {
    let mut fake = Fake::default();
    let (status, body) = call(&mut fake, "GET", "/nope", "", Value::Null);
    assert_eq!(status, 404);
    assert!(body["error"].as_str().is_some_and(|e| e.contains("/nope")));
    let response = handle(
        &Settings::default(),
        &request("PUT", "/scores/refresh", "", "{}"),
    );
    assert_eq!(response.status, 405);
    assert!(response.headers.contains(&("allow".into(), "POST".into())));
    assert!(fake.fakes.calls().is_empty());
}

#[test]
fn upsert_stores_the_item_shape() {
    let mut fake = Fake::default();
    let nested =
        json!({"campaignId": "c", "globalUserId": "u2", "version": 1, "entry": {"marketId": "m9"}});
    let (status, body) = upsert(
        &mut fake,
        vec![
            json!({"campaignId": "c", "globalUserId": "u1", "marketId": "m1", "version": 3, "x": true}),
            nested.clone(),
            json!({"campaignId": "c", "globalUserId": "u3"}),
        ],
    );
    assert_eq!((status, body), (200, json!({"upserted": 3, "ignored": 0})));
    assert_eq!(
        stored(&fake, "c", "u1"),
        Some(
            json!({"PK": "CAMPAIGN#c", "SK": "FAN#u1", "marketId": "m1", "version": 3,
            "entry": {"campaignId": "c", "globalUserId": "u1", "marketId": "m1", "version": 3, "x": true}})
        )
    );
    assert_eq!(
        stored(&fake, "c", "u2"),
        Some(
            json!({"PK": "CAMPAIGN#c", "SK": "FAN#u2", "marketId": "m9", "version": 1, "entry": nested})
        )
    );
    let u3 = stored(&fake, "c", "u3").expect("u3");
    assert_eq!(u3["version"], Value::Null);
    assert!(u3.get("marketId").is_none());
    // One read for the batch, one conditional put per entry (in one call).
    assert_eq!((fake.count("batch_get"), fake.count("put_many")), (1, 1));
    let puts: Vec<usize> = fake
        .fakes
        .calls()
        .iter()
        .filter_map(|c| match c {
            Call::PutMany { puts, .. } => Some(puts.len()),
            _ => None,
        })
        .collect();
    // The three entries and the market index items of the two with a
    // market, in the same call.
    assert_eq!(puts, [5]);
    assert_eq!(
        fake.fakes
            .item("entries", &json!({"PK": "MARKET#c#m9", "SK": "FAN#u2"}))
            .expect("index")["entry"],
        nested
    );
}

#[test]
fn upsert_never_goes_back_in_time() {
    let mut fake = Fake::default();
    upsert(&mut fake, vec![entry("c", "u", 5)]);
    let (_, body) = upsert(&mut fake, vec![entry("c", "u", 4)]);
    assert_eq!(body, json!({"upserted": 0, "ignored": 1}));
    assert_eq!(stored(&fake, "c", "u").expect("item")["version"], 5);
    // The same version again is idempotent, a newer one wins.
    let (_, body) = upsert(&mut fake, vec![entry("c", "u", 5), entry("c", "u", 7)]);
    assert_eq!(body, json!({"upserted": 2, "ignored": 0}));
    // Within one batch a later older version compares against the newer write.
    let (_, body) = upsert(&mut fake, vec![entry("c", "u", 9), entry("c", "u", 8)]);
    assert_eq!(body, json!({"upserted": 1, "ignored": 1}));
    assert_eq!(stored(&fake, "c", "u").expect("item")["version"], 9);
    // Numeric strings compare as numbers; without versions nothing is compared.
    assert!(is_older(Some(&json!("10")), Some(&json!({"version": 11}))));
    assert!(!is_older(Some(&json!(12)), Some(&json!({"version": "11"}))));
    assert!(!is_older(None, Some(&json!({"version": 11}))));
    assert!(!is_older(Some(&json!(1)), Some(&json!({"version": null}))));
    assert!(!is_older(Some(&json!(1)), None));
}

#[test]
fn upsert_loses_to_a_concurrent_newer_write() {
    let mut fake = Fake::default();
    upsert(&mut fake, vec![entry("c", "u", 1)]);
    // Between the read and the put, version 9 lands: the put's condition
    // fails, the re-read sees 9 and the upsert of 2 is ignored.
    fake.sneak(item_of(
        &Fan {
            campaign_id: "c".into(),
            global_user_id: "u".into(),
        },
        &entry("c", "u", 9),
    ));
    let (_, body) = upsert(&mut fake, vec![entry("c", "u", 2)]);
    assert_eq!(body, json!({"upserted": 0, "ignored": 1}));
    assert_eq!(stored(&fake, "c", "u").expect("item")["version"], 9);
    assert_eq!(fake.count("get"), 1);
}

#[test]
fn upsert_validation() {
    let mut fake = Fake::default();
    let many: Vec<Value> = (0..26).map(|i| entry("c", &format!("u{i}"), 1)).collect();
    let (status, body) = upsert(&mut fake, many);
    assert_eq!(status, 413);
    assert!(body["error"].as_str().is_some_and(|e| e.contains("25")));
    let exactly: Vec<Value> = (0..25).map(|i| entry("c", &format!("u{i}"), 1)).collect();
    assert_eq!(upsert(&mut fake, exactly).1["upserted"], 25);

    let bad = |body: &str| {
        let r = handle(
            &Settings::default(),
            &request("POST", "/entries/batch-upsert", "", body),
        );
        (
            r.status,
            serde_json::from_slice::<Value>(&r.body).expect("json"),
        )
    };
    let before = fake.fakes.calls().len();
    for body in [
        "{not json",
        "",
        "[]",
        "{}",
        r#"{"entries": {}}"#,
        r#"{"entries": [1]}"#,
        r#"{"entries": [{"campaignId": "c"}]}"#,
        r#"{"entries": [{"campaignId": "", "globalUserId": "u"}]}"#,
        r#"{"entries": [{"campaignId": 1, "globalUserId": "u"}]}"#,
    ] {
        let (status, answer) = bad(body);
        assert_eq!(status, 400, "{body}");
        assert!(answer["error"].is_string(), "{body}");
    }
    // Validation happens before any table call.
    assert_eq!(fake.fakes.calls().len(), before);
    assert_eq!(
        upsert(&mut fake, vec![]).1,
        json!({"upserted": 0, "ignored": 0})
    );
}

#[test]
fn delete_removes_entries() {
    let mut fake = Fake::default();
    upsert(&mut fake, vec![entry("c", "a", 1), entry("c", "b", 1)]);
    let (status, body) = call(
        &mut fake,
        "POST",
        "/entries/batch-delete",
        "",
        json!({"keys": [{"campaignId": "c", "globalUserId": "a"}, {"campaignId": "c", "globalUserId": "a"},
                        {"campaignId": "c", "globalUserId": "absent"}]}),
    );
    assert_eq!((status, body), (200, json!({"deleted": 2, "ignored": 0})));
    assert!(stored(&fake, "c", "a").is_none());
    assert!(stored(&fake, "c", "b").is_some());
    let (status, _) = call(
        &mut fake,
        "POST",
        "/entries/batch-delete",
        "",
        json!({"keys": [{"campaignId": "c"}]}),
    );
    assert_eq!(status, 400);
    let keys: Vec<Value> = (0..26)
        .map(|i| json!({"campaignId": "c", "globalUserId": i.to_string()}))
        .collect();
    let (status, _) = call(
        &mut fake,
        "POST",
        "/entries/batch-delete",
        "",
        json!({"keys": keys}),
    );
    assert_eq!(status, 413);
    let (_, body) = call(
        &mut fake,
        "POST",
        "/entries/batch-delete",
        "",
        json!({"keys": []}),
    );
    assert_eq!(body, json!({"deleted": 0, "ignored": 0}));
}

#[test]
fn a_versioned_delete_never_removes_a_newer_entry() {
    let mut fake = Fake::default();
    upsert(&mut fake, vec![entry("c", "old", 3), entry("c", "new", 9)]);
    let (status, body) = call(
        &mut fake,
        "POST",
        "/entries/batch-delete",
        "",
        json!({"keys": [
            {"campaignId": "c", "globalUserId": "old", "version": 3},
            // Deleted at version 5 at the source, but re-inserted at 9 since.
            {"campaignId": "c", "globalUserId": "new", "version": 5},
            {"campaignId": "c", "globalUserId": "absent", "version": 1},
        ]}),
    );
    assert_eq!((status, body), (200, json!({"deleted": 1, "ignored": 2})));
    assert!(stored(&fake, "c", "old").is_none());
    assert!(stored(&fake, "c", "new").is_some());
}

#[test]
fn campaign_listing_pages() {
    let mut fake = Fake::default();
    upsert(
        &mut fake,
        vec![
            entry("c", "a", 1),
            entry("c", "b", 1),
            entry("c", "c", 1),
            entry("other", "z", 1),
        ],
    );
    let (status, page) = call(
        &mut fake,
        "GET",
        "/campaigns/c/entries",
        "limit=2",
        Value::Null,
    );
    assert_eq!(status, 200);
    assert_eq!(
        page,
        json!({"entries": [entry("c", "a", 1), entry("c", "b", 1)], "next": "b"})
    );
    let (_, page) = call(
        &mut fake,
        "GET",
        "/campaigns/c/entries",
        "limit=2&after=b",
        Value::Null,
    );
    assert_eq!(page, json!({"entries": [entry("c", "c", 1)], "next": null}));
    let (_, page) = call(&mut fake, "GET", "/campaigns/c/entries", "", Value::Null);
    assert_eq!(page["entries"].as_array().map(Vec::len), Some(3));
    let (_, page) = call(&mut fake, "GET", "/campaigns/none/entries", "", Value::Null);
    assert_eq!(page, json!({"entries": [], "next": null}));
    for q in ["limit=0", "limit=1001", "limit=x", "limit=-1"] {
        assert_eq!(
            call(&mut fake, "GET", "/campaigns/c/entries", q, Value::Null).0,
            400,
            "{q}"
        );
    }
}

#[test]
fn market_listing_filters_every_page() {
    let mut fake = Fake::page_cap(2);
    let mut entries = Vec::new();
    for i in 0..7 {
        let market = if i % 2 == 0 { "m1" } else { "m2" };
        entries
            .push(json!({"campaignId": "c", "globalUserId": format!("u{i}"), "marketId": market}));
    }
    entries.push(json!({"campaignId": "c", "globalUserId": "n", "entry": {"marketId": "m1"}}));
    entries.push(json!({"campaignId": "d", "globalUserId": "u0", "marketId": "m1"}));
    upsert(&mut fake, entries);
    let (status, body) = call(
        &mut fake,
        "GET",
        "/markets/m1/entries",
        "campaignId=c",
        Value::Null,
    );
    assert_eq!(status, 200);
    let users: Vec<&str> = body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["globalUserId"].as_str())
        .collect();
    assert_eq!(users, ["n", "u0", "u2", "u4", "u6"]);
    // The market's own index, not the campaign: 5 items in pages of 2.
    assert_eq!(fake.count("query"), 3);
    let (status, _) = call(&mut fake, "GET", "/markets/m1/entries", "", Value::Null);
    assert_eq!(status, 400);
    let (_, body) = call(
        &mut fake,
        "GET",
        "/markets/m3/entries",
        "campaignId=c",
        Value::Null,
    );
    assert_eq!(body, json!({"entries": [], "next": null}));
}

#[test]
fn scores_are_deterministic() {
    assert_eq!(
        score(&json!({"campaignId": "c", "globalUserId": "u", "version": 4})),
        34
    );
    assert_eq!(
        score(&json!({"campaignId": "c", "globalUserId": "u", "x": null})),
        20
    );
    assert_eq!(score(&json!({"a": 1, "version": -3})), 20);
    assert_eq!(score(&json!({"a": 1, "version": 1.5})), 20);
    assert_eq!(score(&Value::Null), 0);
    // A draw's outcome and the replication's bookkeeping do not count: a
    // winner's entry replicated after the draw keeps the score it was
    // drawn with.
    let pending = json!({"campaignId": "c", "globalUserId": "u", "verdict": "PENDING",
        "needsReplication": true, "updatedAt": "2026-01-01T00:00:00Z", "version": 2});
    let mut won = pending.clone();
    won["verdict"] = json!("WINNER");
    won["accessCode"] = json!("CODE-1");
    won["drawId"] = json!("c.m1");
    won["needsReplication"] = json!(false);
    won["updatedAt"] = json!("2026-01-02T00:00:00Z");
    assert_eq!(score(&pending), 32);
    assert_eq!(score(&won), score(&pending));
}

#[test]
fn refresh_scores_sets_the_score() {
    let mut fake = Fake::default();
    upsert(
        &mut fake,
        vec![
            entry("c", "a", 4),
            json!({"campaignId": "c", "globalUserId": "b", "marketId": "m"}),
        ],
    );
    let (status, body) = call(
        &mut fake,
        "POST",
        "/scores/refresh",
        "",
        json!({"fans": [{"campaignId": "c", "globalUserId": "a"}, {"campaignId": "c", "globalUserId": "b"},
                        {"campaignId": "c", "globalUserId": "gone"}]}),
    );
    assert_eq!((status, body), (200, json!({"refreshed": 2, "missing": 1})));
    assert_eq!(stored(&fake, "c", "a").expect("a")["score"], 34);
    assert_eq!(stored(&fake, "c", "b").expect("b")["score"], 30);
    assert!(
        stored(&fake, "c", "gone").is_none(),
        "a refresh never creates an item"
    );
    let (_, page) = call(&mut fake, "GET", "/campaigns/c/entries", "", Value::Null);
    assert_eq!(
        page["entries"][0],
        json!({"campaignId": "c", "globalUserId": "a", "version": 4, "score": 34})
    );
    let fans: Vec<Value> = (0..26)
        .map(|i| json!({"campaignId": "c", "globalUserId": i.to_string()}))
        .collect();
    assert_eq!(
        call(
            &mut fake,
            "POST",
            "/scores/refresh",
            "",
            json!({"fans": fans})
        )
        .0,
        413
    );
    assert_eq!(
        call(
            &mut fake,
            "POST",
            "/scores/refresh",
            "",
            json!({"fans": "x"})
        )
        .0,
        400
    );
}

#[test]
fn refresh_scores_the_newest_entry() {
    let mut fake = Fake::default();
    upsert(&mut fake, vec![entry("c", "a", 1)]);
    let fan = Fan {
        campaign_id: "c".into(),
        global_user_id: "a".into(),
    };
    fake.sneak(item_of(
        &fan,
        &json!({"campaignId": "c", "globalUserId": "a", "version": 2, "x": 1}),
    ));
    let (_, body) = call(
        &mut fake,
        "POST",
        "/scores/refresh",
        "",
        json!({"fans": [{"campaignId": "c", "globalUserId": "a"}]}),
    );
    assert_eq!(body, json!({"refreshed": 1, "missing": 0}));
    assert_eq!(stored(&fake, "c", "a").expect("a")["score"], 42);
}

#[test]
fn table_failures_are_5xx() {
    let mut fake = Fake::down();
    let (status, body) = upsert(&mut fake, vec![entry("c", "u", 1)]);
    assert_eq!(status, 503);
    assert!(body["error"]
        .as_str()
        .is_some_and(|e| e.contains("table down")));
    assert_eq!(
        call(&mut fake, "GET", "/campaigns/c/entries", "", Value::Null).0,
        503
    );
    assert_eq!(
        Failure::from_table("x", &Error::Denied("t".into())).status,
        500
    );
}

#[test]
fn an_entry_over_max_entry_bytes_is_refused_with_400() {
    let fake = Fake::default();
    let settings = Settings {
        max_entry_bytes: 200,
        ..Settings::default()
    };
    let mut big = entry("c", "big", 1);
    big["entry"] = json!({"notes": "x".repeat(300)});
    let body = json!({"entries": [entry("c", "small", 1), big]}).to_string();
    let r = handle(
        &settings,
        &request("POST", "/entries/batch-upsert", "", &body),
    );
    assert_eq!(r.status, 400);
    let answer: Value = serde_json::from_slice(&r.body).expect("json");
    let message = answer["error"].as_str().expect("error");
    assert!(
        message.contains("entries[1]") && message.contains("200"),
        "{message}"
    );
    // Nothing of the refused request was written.
    assert!(stored(&fake, "c", "small").is_none());
    // Under the limit it goes through.
    let body = json!({"entries": [entry("c", "small", 1)]}).to_string();
    let r = handle(
        &settings,
        &request("POST", "/entries/batch-upsert", "", &body),
    );
    assert_eq!(r.status, 200);
    assert!(stored(&fake, "c", "small").is_some());
}

fn upsert_refreshing(fake: &mut Fake, entries: Vec<Value>) -> (u16, Value) {
    call(
        fake,
        "POST",
        "/entries/batch-upsert",
        "",
        json!({"entries": entries, "refreshScores": true}),
    )
}

#[test]
fn upsert_with_refresh_scores_stores_each_score_and_refreshes_ignored_entries() {
    let mut fake = Fake::default();
    upsert(&mut fake, vec![entry("c", "old", 5)]);
    assert!(stored(&fake, "c", "old")
        .expect("old")
        .get("score")
        .is_none());
    let calls = fake.fakes.calls().len();
    let (status, body) =
        upsert_refreshing(&mut fake, vec![entry("c", "a", 4), entry("c", "old", 3)]);
    assert_eq!(
        (status, body),
        (
            200,
            json!({"upserted": 1, "ignored": 1, "scoreFailures": []})
        )
    );
    // The written entry carries its score; the ignored one's stored (newer)
    // entry is refreshed, as /scores/refresh would.
    assert_eq!(stored(&fake, "c", "a").expect("a")["score"], 34);
    assert_eq!(stored(&fake, "c", "old").expect("old")["score"], 35);
    assert_eq!(stored(&fake, "c", "old").expect("old")["version"], 5);
    let names: Vec<&str> = fake.fakes.calls()[calls..].iter().map(Call::name).collect();
    assert_eq!(names, ["batch_get", "put_many", "batch_get", "update_many"]);
    // Nothing ignored: one read and one write, nothing more.
    let calls = fake.fakes.calls().len();
    let (_, body) = upsert_refreshing(&mut fake, vec![entry("c", "b", 1)]);
    assert_eq!(
        body,
        json!({"upserted": 1, "ignored": 0, "scoreFailures": []})
    );
    assert_eq!(fake.fakes.calls().len() - calls, 2);
    let (_, page) = call(&mut fake, "GET", "/campaigns/c/entries", "", Value::Null);
    assert_eq!(
        page["entries"][1],
        json!({"campaignId": "c", "globalUserId": "b", "version": 1, "score": 31})
    );
    // Without the flag the answer and the item are as before.
    let (_, body) = upsert(&mut fake, vec![entry("c", "b", 2)]);
    assert_eq!(body, json!({"upserted": 1, "ignored": 0}));
    assert!(stored(&fake, "c", "b").expect("b").get("score").is_none());
}

#[test]
fn a_failed_refresh_of_an_ignored_entry_is_answered_in_score_failures() {
    let mut fake = Fake::new(Fakes::new().intercept(|call, _| {
        matches!(call, Call::Update { .. }).then(|| Error::Unavailable("scores down".into()))
    }));
    upsert(&mut fake, vec![entry("c", "old", 5)]);
    let (status, body) =
        upsert_refreshing(&mut fake, vec![entry("c", "new", 1), entry("c", "old", 3)]);
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"upserted": 1, "ignored": 1,
               "scoreFailures": [{"campaignId": "c", "globalUserId": "old"}]})
    );
    assert_eq!(stored(&fake, "c", "new").expect("new")["score"], 31);
}

#[test]
fn refresh_scores_must_be_a_boolean() {
    let mut fake = Fake::default();
    let (status, body) = call(
        &mut fake,
        "POST",
        "/entries/batch-upsert",
        "",
        json!({"entries": [entry("c", "u", 1)], "refreshScores": "yes"}),
    );
    assert_eq!(status, 400);
    assert!(body["error"]
        .as_str()
        .is_some_and(|e| e.contains("refreshScores")));
    assert!(fake.fakes.calls().is_empty());
}
