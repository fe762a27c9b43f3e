use std::cell::{Cell, RefCell};
use std::rc::Rc;

use serde_json::json;
use usher_domain::Verdict;
use usher_sdk::fakes::{self, Call, Fakes};
use usher_sdk::Error;

use super::*;

const TABLE: &str = "demand-table";

fn entry(user: &str, verdict: &str, code: Option<&str>) -> Value {
    let mut item = json!({
        "PK": format!("ENTRY#c1#{user}"), "SK": "ENTRY", "campaignId": "c1",
        "globalUserId": user, "marketId": "m1", "verdict": verdict,
        "needsReplication": false, "version": 2,
        "createdAt": "2026-12-01T00:00:00Z", "updatedAt": "2026-12-01T00:00:00Z",
    });
    if let Some(code) = code {
        item["accessCode"] = json!(code);
    }
    item
}

fn key(user: &str) -> Value {
    json!({"PK": format!("ENTRY#c1#{user}"), "SK": "ENTRY"})
}

fn sel(user: &str, verdict: Verdict, code: Option<&str>) -> VerdictItem {
    VerdictItem {
        global_user_id: user.into(),
        verdict,
        code: code.map(str::to_string),
    }
}

fn query_param<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = path.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then_some(v)
    })
}

/// An Entry Service answering the selections of market m1 of c1, paged by
/// `after` (the last globalUserId of the previous page).
fn service(fakes: Fakes, selections: Vec<VerdictItem>) -> Fakes {
    fakes.on_service("entries", move |r| {
        let (path, _) = r.path.split_once('?').unwrap_or((&r.path, ""));
        if path != "/markets/m1/selections" || query_param(&r.path, "campaignId") != Some("c1") {
            return Ok(fakes::json_response(
                404,
                &json!({"error": "unknown market"}),
            ));
        }
        let limit: usize = query_param(&r.path, "limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(1000);
        let after = query_param(&r.path, "after");
        let rest: Vec<&VerdictItem> = selections
            .iter()
            .filter(|s| after.is_none_or(|a| s.global_user_id.as_str() > a))
            .collect();
        let page: Vec<&VerdictItem> = rest.iter().take(limit).copied().collect();
        let next = (rest.len() > limit).then(|| page.last().map(|s| s.global_user_id.clone()));
        Ok(fakes::json_response(
            200,
            &json!({"selections": page, "next": next.flatten()}),
        ))
    })
}

fn settings(page_size: u32) -> Settings {
    Settings {
        page_size,
        ..Settings::default()
    }
}

fn refresh_msg(id: &str, market: &str) -> Message {
    Message::new(
        id,
        json!({"campaignId": "c1", "marketId": market}).to_string(),
    )
}

fn market() -> (Fakes, Vec<VerdictItem>) {
    let fakes = Fakes::new()
        .with_item(TABLE, entry("u1", "WINNER", Some("A")))
        .with_item(TABLE, entry("u2", "LOSER", None))
        .with_item(TABLE, entry("u3", "WINNER", Some("WRONG")))
        .with_item(TABLE, entry("u4", "WINNER", Some("D")))
        .with_item(TABLE, entry("u6", "PENDING", None));
    let selections = vec![
        sel("u1", Verdict::Winner, Some("A")),
        sel("u2", Verdict::Winner, Some("B")),
        sel("u3", Verdict::Winner, Some("C")),
        sel("u4", Verdict::Loser, None),
        sel("u5", Verdict::Waitlist, None),
        sel("u6", Verdict::Waitlist, None),
    ];
    (fakes, selections)
}

#[test]
fn rewrites_only_what_differs_page_by_page_and_again_nothing() {
    let (fakes, selections) = market();
    let fakes = service(fakes, selections);
    let _installed = fakes.install();
    let r = Refresh {
        campaign_id: "c1".into(),
        market_id: "m1".into(),
    };
    let summary = refresh(&settings(2), &r).expect("refresh");
    assert_eq!(
        summary,
        Summary {
            read: 6,
            changed: 4,
            unchanged: 1,
            absent: 1,
            pages: 3
        }
    );
    let get = |u: &str| fakes.item(TABLE, &key(u)).expect(u);
    assert_eq!(
        (&get("u2")["verdict"], &get("u2")["accessCode"]),
        (&json!("WINNER"), &json!("B"))
    );
    assert_eq!(get("u3")["accessCode"], "C");
    assert_eq!(get("u4")["verdict"], "LOSER");
    assert!(get("u4").get("accessCode").is_none());
    assert_eq!(get("u6")["verdict"], "WAITLIST");
    assert_eq!(
        get("u1")["updatedAt"],
        "2026-12-01T00:00:00Z",
        "agreeing entry untouched"
    );
    assert_ne!(get("u2")["updatedAt"], "2026-12-01T00:00:00Z");
    assert_eq!(get("u2")["needsReplication"], false);
    assert!(fakes.item(TABLE, &key("u5")).is_none(), "never created");
    // Conditional on the updatedAt read; updates only, never puts.
    let conditions: Vec<Option<Condition>> = fakes
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::UpdateMany { updates, .. } => Some(updates),
            _ => None,
        })
        .flatten()
        .map(|u| u.condition)
        .collect();
    assert_eq!(conditions.len(), 4);
    assert!(conditions.iter().all(|c| *c
        == Some(Condition::AttributeEquals(
            "updatedAt".into(),
            json!("2026-12-01T00:00:00Z")
        ))));
    assert_eq!(fakes.count("put") + fakes.count("put_many"), 0);
    // The pages asked: limit 2, then after u2, after u4.
    let paths: Vec<String> = fakes.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        vec![
            "/markets/m1/selections?campaignId=c1&limit=2",
            "/markets/m1/selections?campaignId=c1&limit=2&after=u2",
            "/markets/m1/selections?campaignId=c1&limit=2&after=u4",
        ]
    );
    // Again: nothing differs, nothing written.
    let updates_before = fakes.count("update_many");
    let again = refresh(&settings(1000), &r).expect("refresh");
    assert_eq!((again.changed, again.unchanged, again.absent), (0, 5, 1));
    assert_eq!(fakes.count("update_many"), updates_before);
}

#[test]
fn an_entry_changed_meanwhile_is_compared_again() {
    let (fakes, selections) = market();
    // The first update of u2 finds it written meanwhile (its updatedAt
    // moved on, still LOSER); the second attempt goes through.
    let hits = Rc::new(Cell::new(0));
    let h = hits.clone();
    let fakes = service(fakes, selections).intercept(move |call, tables| {
        if let Call::Update { key, .. } = call {
            if key["PK"] == "ENTRY#c1#u2" {
                h.set(h.get() + 1);
                if h.get() == 1 {
                    let mut item = tables.get(TABLE, key).cloned().expect("u2");
                    item["updatedAt"] = json!("2026-12-02T00:00:00Z");
                    tables.insert(TABLE, item);
                }
            }
        }
        None
    });
    let _installed = fakes.install();
    let r = process(&settings(1000), &[refresh_msg("m", "m1")]);
    assert!(r.failures.is_empty(), "{r:?}");
    assert_eq!(hits.get(), 2);
    assert_eq!(
        fakes.item(TABLE, &key("u2")).expect("u2")["accessCode"],
        "B"
    );
}

#[test]
fn an_entry_that_keeps_changing_fails_the_message() {
    let (fakes, selections) = market();
    let fakes = service(fakes, selections).intercept(|call, tables| {
        if let Call::Update { key, .. } = call {
            if key["PK"] == "ENTRY#c1#u3" {
                let mut item = tables.get(TABLE, key).cloned().expect("u3");
                let n = item["version"].as_u64().unwrap_or(0) + 1;
                item["version"] = json!(n);
                item["updatedAt"] = json!(format!("2026-12-02T00:00:{n:02}Z"));
                tables.insert(TABLE, item);
            }
        }
        None
    });
    let _installed = fakes.install();
    let r = process(&settings(1000), &[refresh_msg("m", "m1")]);
    assert_eq!(r.failures, vec!["m"]);
    // The others were still rewritten.
    assert_eq!(
        fakes.item(TABLE, &key("u2")).expect("u2")["accessCode"],
        "B"
    );
}

#[test]
fn failures_are_per_message() {
    let (fakes, selections) = market();
    let fakes = service(fakes, selections);
    let _installed = fakes.install();
    let r = process(
        &settings(1000),
        &[
            refresh_msg("unknown", "nope"),
            Message::new("bad", "{\"campaignId\": \"c1\"}"),
            Message::new(
                "empty",
                json!({"campaignId": "", "marketId": "m1"}).to_string(),
            ),
            refresh_msg("ok", "m1"),
        ],
    );
    assert_eq!(r.failures, vec!["unknown", "bad", "empty"]);
    assert_eq!(
        fakes.item(TABLE, &key("u2")).expect("u2")["verdict"],
        "WINNER"
    );
}

#[test]
fn table_and_service_errors_fail_the_message() {
    let (fakes, selections) = market();
    let fakes = service(fakes, selections).intercept(|call, _| match call {
        Call::BatchGet { .. } => Some(Error::Unavailable("table down".into())),
        _ => None,
    });
    let _installed = fakes.install();
    let r = process(&settings(1000), &[refresh_msg("m", "m1")]);
    assert_eq!(r.failures, vec!["m"]);
    drop(_installed);

    let (fakes, _) = market();
    let fakes = fakes.intercept(|call, _| match call {
        Call::Update { .. } => Some(Error::Throttled("slow".into())),
        _ => None,
    });
    let fakes = service(fakes, market().1);
    let _installed = fakes.install();
    assert_eq!(
        process(&settings(1000), &[refresh_msg("m", "m1")]).failures,
        vec!["m"]
    );
    drop(_installed);

    // A service whose cursor does not advance.
    let calls = Rc::new(RefCell::new(0));
    let c = calls.clone();
    let fakes = Fakes::new().on_service("entries", move |_| {
        *c.borrow_mut() += 1;
        Ok(fakes::json_response(
            200,
            &json!({"selections": [{"globalUserId": "u1", "verdict": "LOSER"}], "next": "u1"}),
        ))
    });
    let _installed = fakes.install();
    assert_eq!(
        process(&settings(1000), &[refresh_msg("m", "m1")]).failures,
        vec!["m"]
    );
    assert_eq!(*calls.borrow(), 2);
}

#[test]
fn settings_clamp_the_page_size() {
    let fakes = Fakes::new().setting("page_size", json!(100_000));
    let _installed = fakes.install();
    assert_eq!(Settings::load().expect("settings").page_size, 5000);
}
