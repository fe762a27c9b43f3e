//! selection/refresh-selections under wasmtime, on the repository's
//! registry entry, with the embedded demand-table and a scripted Entry
//! Service whose selections come in pages of two.

use std::sync::Arc;

use serde_json::{json, Value};
use usher_capabilities::TableBackend;
use usher_engine::{BatchMessage, Input, Output};
use usher_testing::{json_response, FakeServices, TestHost};

const WORKER: &str = "selection/refresh-selections";
const TABLE: &str = "demand-table";

fn query_param<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = path.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then_some(v)
    })
}

/// The Entry Service's selections of c1/m1, two per page whatever the limit.
fn entry_service() -> Arc<FakeServices> {
    let selections = [
        json!({"globalUserId": "u1", "verdict": "WINNER", "code": "A"}),
        json!({"globalUserId": "u2", "verdict": "WINNER", "code": "B"}),
        json!({"globalUserId": "u3", "verdict": "LOSER"}),
        json!({"globalUserId": "u4", "verdict": "WAITLIST"}),
        json!({"globalUserId": "u5", "verdict": "LOSER"}),
    ];
    FakeServices::with(move |req| {
        assert_eq!(req.service, "entries");
        let path = req.path.split('?').next().unwrap_or_default();
        if path != "/markets/m1/selections" || query_param(&req.path, "campaignId") != Some("c1") {
            return Ok(json_response(404, r#"{"error":"unknown market"}"#));
        }
        let after = query_param(&req.path, "after");
        let rest: Vec<&Value> = selections
            .iter()
            .filter(|s| after.is_none_or(|a| s["globalUserId"].as_str().unwrap_or("") > a))
            .collect();
        let page: Vec<&Value> = rest.iter().take(2).copied().collect();
        let next = (rest.len() > 2).then(|| page[1]["globalUserId"].clone());
        Ok(json_response(
            200,
            &json!({"selections": page, "next": next}).to_string(),
        ))
    })
}

fn entry(user: &str, verdict: &str, code: Option<&str>) -> Value {
    let mut item = json!({
        "PK": format!("ENTRY#c1#{user}"), "SK": "ENTRY", "campaignId": "c1",
        "globalUserId": user, "marketId": "m1", "verdict": verdict,
        "needsReplication": false, "version": 1,
        "createdAt": "2026-12-01T00:00:00Z", "updatedAt": "2026-12-01T00:00:00Z",
    });
    if let Some(code) = code {
        item["accessCode"] = json!(code);
    }
    item
}

async fn item(host: &TestHost, user: &str) -> Option<Value> {
    host.embedded
        .tables()
        .get(
            TABLE,
            &json!({"PK": format!("ENTRY#c1#{user}"), "SK": "ENTRY"}),
        )
        .await
        .expect("get")
}

fn message(id: &str, market: &str) -> BatchMessage {
    BatchMessage {
        message_id: id.to_string(),
        body: json!({"campaignId": "c1", "marketId": market}).to_string(),
        attributes: vec![],
        receive_count: 1,
    }
}

fn failures(out: &Output) -> Vec<String> {
    match out {
        Output::Batch(b) => b.failures.clone(),
        other => panic!("not a batch outcome: {other:?}"),
    }
}

#[tokio::test]
async fn rewrites_the_verdicts_and_codes_that_differ() {
    let services = entry_service();
    let host = TestHost::builder()
        .registry_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../workers"))
        .services(services.clone())
        .build()
        .expect("test host");
    let tables = host.embedded.tables();
    for it in [
        entry("u1", "WINNER", Some("A")),   // agrees
        entry("u2", "LOSER", None),         // the code and verdict differ
        entry("u3", "WINNER", Some("OLD")), // no longer a winner
        entry("u4", "PENDING", None),       // waitlisted since
                                            // u5 is not in the table
    ] {
        tables.put(TABLE, it, None).await.expect("seed");
    }
    let out = host
        .invoke(WORKER, Input::Batch(vec![message("r", "m1")]))
        .await
        .expect("invocation");
    assert!(failures(&out.output).is_empty(), "{:?}", out.output);
    // Three pages: after u2, after u4.
    let paths: Vec<String> = services.calls().into_iter().map(|c| c.path).collect();
    assert_eq!(paths.len(), 3, "{paths:?}");
    assert!(paths[1].ends_with("&after=u2") && paths[2].ends_with("&after=u4"));

    let u1 = item(&host, "u1").await.expect("u1");
    assert_eq!(u1["updatedAt"], "2026-12-01T00:00:00Z", "untouched");
    let u2 = item(&host, "u2").await.expect("u2");
    assert_eq!(
        (&u2["verdict"], &u2["accessCode"]),
        (&json!("WINNER"), &json!("B"))
    );
    let u3 = item(&host, "u3").await.expect("u3");
    assert_eq!(u3["verdict"], "LOSER");
    assert!(u3.get("accessCode").is_none());
    assert_eq!(item(&host, "u4").await.expect("u4")["verdict"], "WAITLIST");
    assert!(item(&host, "u5").await.is_none(), "never created");
    assert!(host.calls("table", "put").is_empty());
    // The log line says how many changed.
    let logs = host.calls("log", "write");
    assert!(
        logs.iter()
            .any(|c| c.request["message"]
                == "refreshed the market's demand-table verdicts: 3 changed"),
        "{logs:?}"
    );

    // Again: nothing differs, nothing written.
    let updates = host.calls("table", "update-many").len();
    let out = host
        .invoke(WORKER, Input::Batch(vec![message("r", "m1")]))
        .await
        .expect("invocation");
    assert!(failures(&out.output).is_empty());
    assert_eq!(host.calls("table", "update-many").len(), updates);
}

#[tokio::test]
async fn an_unknown_market_fails_its_message() {
    let host = TestHost::builder()
        .registry_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../workers"))
        .services(entry_service())
        .build()
        .expect("test host");
    let out = host
        .invoke(WORKER, Input::Batch(vec![message("x", "nope")]))
        .await
        .expect("invocation");
    assert_eq!(failures(&out.output), vec!["x"]);
}
