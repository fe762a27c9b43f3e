//! selection/save-selections under wasmtime, on the repository's registry
//! entry, with the embedded demand-table and verdict-reporter queue and a
//! scripted Entry Service that keeps its assignments (idempotent, with
//! conflicts), so a redelivery can be seen to assign nothing twice.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use usher_capabilities::TableBackend;
use usher_engine::{BatchMessage, Input, Output};
use usher_testing::{json_response, FakeServices, TestHost};

const WORKER: &str = "selection/save-selections";
const TABLE: &str = "demand-table";

/// The Entry Service's assignments: code → fan, and how many were made.
#[derive(Default)]
struct Assignments {
    holders: BTreeMap<String, String>,
    made: u64,
    verdict_requests: u64,
}

fn entry_service(state: Arc<Mutex<Assignments>>) -> Arc<FakeServices> {
    FakeServices::with(move |req| {
        assert_eq!(req.service, "entries");
        let body: Value =
            serde_json::from_str(req.body.as_deref().unwrap_or("{}")).unwrap_or_default();
        let mut s = state.lock().expect("state");
        Ok(match req.path.as_str() {
            "/entries/assign-codes" => {
                let (mut assigned, mut already, mut conflicts) = (0, 0, Vec::new());
                for a in body["assignments"].as_array().into_iter().flatten() {
                    let code = a["code"].as_str().unwrap_or_default().to_string();
                    let fan = a["globalUserId"].as_str().unwrap_or_default().to_string();
                    match s.holders.get(&code) {
                        Some(holder) if *holder == fan => already += 1,
                        Some(holder) => conflicts.push(json!({"globalUserId": fan, "code": code,
                            "reason": format!("code held by {holder}")})),
                        None => {
                            s.holders.insert(code, fan);
                            s.made += 1;
                            assigned += 1;
                        }
                    }
                }
                json_response(
                    200,
                    &json!({"assigned": assigned, "already": already, "conflicts": conflicts})
                        .to_string(),
                )
            }
            "/entries/verdicts" => {
                s.verdict_requests += 1;
                let n = body["verdicts"].as_array().map_or(0, Vec::len);
                json_response(200, &json!({"updated": n, "missing": []}).to_string())
            }
            other => json_response(
                404,
                &json!({"error": format!("no route {other}")}).to_string(),
            ),
        })
    })
}

fn host(services: Arc<FakeServices>) -> TestHost {
    TestHost::builder()
        .registry_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../workers"))
        .services(services)
        .build()
        .expect("test host")
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

async fn seed(host: &TestHost, users: &[&str]) {
    for u in users {
        host.embedded
            .tables()
            .put(TABLE, entry(u), None)
            .await
            .expect("seed");
    }
}

async fn item(host: &TestHost, user: &str) -> Value {
    host.embedded
        .tables()
        .get(TABLE, &key(user))
        .await
        .expect("get")
        .unwrap_or(Value::Null)
}

fn message(id: &str, body: Value) -> BatchMessage {
    BatchMessage {
        message_id: id.to_string(),
        body: body.to_string(),
        attributes: vec![],
        receive_count: 1,
    }
}

fn batch0() -> Value {
    json!({"campaignId": "c1", "marketId": "m1", "drawId": "c1.m1", "batch": 0, "selections": [
        {"globalUserId": "u1", "verdict": "WINNER", "code": "CODE-1", "rank": 0},
        {"globalUserId": "u2", "verdict": "WINNER", "code": "CODE-2", "rank": 1},
        {"globalUserId": "u3", "verdict": "WAITLIST", "rank": 2},
        {"globalUserId": "u4", "verdict": "LOSER", "rank": 3},
    ]})
}

fn batch1() -> Value {
    json!({"campaignId": "c1", "marketId": "m1", "drawId": "c1.m1", "batch": 1, "selections": [
        {"globalUserId": "u5", "verdict": "WINNER", "code": "CODE-5", "rank": 4},
        {"globalUserId": "u6", "verdict": "LOSER", "rank": 5},
    ]})
}

fn failures(out: &Output) -> Vec<String> {
    match out {
        Output::Batch(b) => {
            let mut f = b.failures.clone();
            f.sort();
            f
        }
        other => panic!("not a batch outcome: {other:?}"),
    }
}

async fn reports(host: &TestHost) -> Vec<Value> {
    host.embedded
        .queues()
        .list("verdict-reporter", 100)
        .await
        .expect("list")
        .iter()
        .map(|m| serde_json::from_str(&m.body).expect("json"))
        .collect()
}

#[tokio::test]
async fn saves_and_a_message_delivered_twice_assigns_nothing_twice() {
    let state = Arc::new(Mutex::new(Assignments::default()));
    let services = entry_service(state.clone());
    let host = host(services.clone());
    seed(&host, &["u1", "u2", "u3", "u4", "u5", "u6"]).await;

    let out = host
        .invoke(
            WORKER,
            Input::Batch(vec![message("a", batch0()), message("b", batch1())]),
        )
        .await
        .expect("invocation");
    assert!(failures(&out.output).is_empty(), "{:?}", out.output);
    assert_eq!(state.lock().expect("state").made, 3);
    // Both batches' assignments in one request (the same draw), then their
    // verdicts in one request.
    let paths: Vec<String> = services.calls().into_iter().map(|c| c.path).collect();
    assert_eq!(paths, vec!["/entries/assign-codes", "/entries/verdicts"]);
    assert_eq!(host.calls("table", "update-many").len(), 1);
    assert!(host.calls("table", "put").is_empty());

    let u1 = item(&host, "u1").await;
    assert_eq!(
        (&u1["verdict"], &u1["accessCode"], &u1["drawId"]),
        (&json!("WINNER"), &json!("CODE-1"), &json!("c1.m1"))
    );
    assert_eq!(u1["needsReplication"], false);
    assert_ne!(u1["updatedAt"], "2026-12-01T00:00:00Z");
    assert_eq!(u1["version"], 1);
    assert_eq!(item(&host, "u3").await["verdict"], "WAITLIST");
    assert!(item(&host, "u4").await.get("accessCode").is_none());
    assert_eq!(
        reports(&host).await,
        vec![
            json!({"campaignId": "c1", "marketId": "m1", "reportId": "c1.m1#0",
                   "counts": {"winners": 2, "losers": 1, "waitlisted": 1}}),
            json!({"campaignId": "c1", "marketId": "m1", "reportId": "c1.m1#1",
                   "counts": {"winners": 1, "losers": 1, "waitlisted": 0}}),
        ]
    );

    // Delivered again (an acknowledgement lost): nothing is assigned twice,
    // the table says the same, and the same report id goes again (the
    // Campaign Service counts it once).
    let out = host
        .invoke(WORKER, Input::Batch(vec![message("a", batch0())]))
        .await
        .expect("invocation");
    assert!(failures(&out.output).is_empty(), "{:?}", out.output);
    assert_eq!(state.lock().expect("state").made, 3);
    assert_eq!(item(&host, "u1").await["accessCode"], "CODE-1");
    let ids: Vec<Value> = reports(&host)
        .await
        .into_iter()
        .map(|r| r["reportId"].clone())
        .collect();
    assert_eq!(
        ids,
        vec![json!("c1.m1#0"), json!("c1.m1#1"), json!("c1.m1#0")]
    );
    // Every call carried the invocation's correlation id.
    assert!(services
        .calls()
        .iter()
        .rev()
        .take(2)
        .all(|c| c.correlation_id == out.correlation_id));
}

#[tokio::test]
async fn a_conflict_or_a_bad_message_fails_only_that_message() {
    let state = Arc::new(Mutex::new(Assignments::default()));
    // CODE-5 was given to another fan.
    state
        .lock()
        .expect("state")
        .holders
        .insert("CODE-5".into(), "u99".into());
    let host = host(entry_service(state.clone()));
    seed(&host, &["u1", "u2", "u3", "u4", "u5", "u6"]).await;
    let out = host
        .invoke(
            WORKER,
            Input::Batch(vec![
                message("a", batch0()),
                message("b", batch1()),
                message(
                    "bad",
                    json!({"campaignId": "c1", "marketId": "m1", "drawId": "d", "batch": 9,
                           "selections": [{"globalUserId": "u1", "verdict": "WINNER", "rank": 0}]}),
                ),
            ]),
        )
        .await
        .expect("invocation");
    assert_eq!(failures(&out.output), vec!["b", "bad"]);
    assert_eq!(item(&host, "u2").await["verdict"], "WINNER");
    // Nothing written for the conflicting batch, and no report for it.
    assert_eq!(item(&host, "u5").await["verdict"], "PENDING");
    assert_eq!(item(&host, "u6").await["verdict"], "PENDING");
    let ids: Vec<Value> = reports(&host)
        .await
        .into_iter()
        .map(|r| r["reportId"].clone())
        .collect();
    assert_eq!(ids, vec![json!("c1.m1#0")]);
    assert_eq!(state.lock().expect("state").verdict_requests, 1);
}
