//! registration/submit-entry under wasmtime, on the repository's registry
//! entry (resolver Mutation.submitEntry, its grants and settings), with the
//! embedded cache, tables and queues and scripted Campaign and Entry
//! services.

mod registration;

use std::sync::Arc;

use registration::{args, campaign, good_entry, host, resolve, world};
use serde_json::{json, Value};
use usher_capabilities::TableBackend;
use usher_testing::TestHost;

const WORKER: &str = "registration/submit-entry";
const TABLE: &str = "demand-table";

async fn submit(host: &TestHost, arguments: Value) -> Result<Value, (String, String)> {
    resolve(host, WORKER, "Mutation", "submitEntry", arguments).await
}

async fn item(host: &TestHost, campaign: &str, user: &str) -> Option<Value> {
    host.embedded
        .tables()
        .get(
            TABLE,
            &json!({"PK": format!("ENTRY#{campaign}#{user}"), "SK": "ENTRY"}),
        )
        .await
        .expect("get")
}

async fn user_records(host: &TestHost) -> Vec<Value> {
    host.embedded
        .queues()
        .list("user-info", 1000)
        .await
        .expect("list")
        .into_iter()
        .map(|m| serde_json::from_str(&m.body).expect("json"))
        .collect()
}

fn open_world() -> registration::World {
    let mut linked = campaign(
        "c1",
        "tour",
        json!({"type": "countries", "countries": ["US"]}),
    );
    linked["linkedCampaignId"] = json!("old");
    world(vec![linked], &[])
}

#[tokio::test]
async fn writes_the_entry_item_and_queues_the_user_record() {
    let w = open_world();
    let host = host(w.services.clone());
    let answer = submit(&host, args("tour", "u1", good_entry("10001")))
        .await
        .expect("answer");
    assert_eq!(
        answer,
        json!({"isEligible": true, "campaignId": "c1", "globalUserId": "u1", "marketId": "m1",
               "version": 1, "created": true, "unchanged": false})
    );
    let it = item(&host, "c1", "u1").await.expect("written");
    for (name, value) in [
        ("PK", json!("ENTRY#c1#u1")),
        ("SK", json!("ENTRY")),
        ("campaignId", json!("c1")),
        ("globalUserId", json!("u1")),
        ("marketId", json!("m1")),
        ("entry", good_entry("10001")),
        ("email", json!("u1@fans.example")),
        ("verdict", json!("PENDING")),
        ("needsReplication", json!(true)),
        ("version", json!(1)),
    ] {
        assert_eq!(it[name], value, "{name}: {it}");
    }
    assert_eq!(it["createdAt"], it["updatedAt"]);
    assert!(it["createdAt"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z') && t.len() == 24));
    assert_eq!(
        user_records(&host).await,
        vec![
            json!({"globalUserId": "u1", "email": "u1@fans.example", "country": "US", "firstName": "Ann"})
        ]
    );

    // A resubmission: version 2, createdAt kept.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let mut again = args("tour", "u1", good_entry("10002"));
    again["marketId"] = json!("m2");
    let answer = submit(&host, again).await.expect("answer");
    assert_eq!(
        (answer["version"].clone(), answer["created"].clone()),
        (json!(2), json!(false))
    );
    let it2 = item(&host, "c1", "u1").await.expect("written");
    assert_eq!(it2["version"], 2);
    assert_eq!(it2["marketId"], "m2");
    assert_eq!(it2["createdAt"], it["createdAt"]);
    assert_ne!(it2["updatedAt"], it["updatedAt"]);
    // The same again: unchanged, nothing written.
    let mut same = args("tour", "u1", good_entry("10002"));
    same["marketId"] = json!("m2");
    let answer = submit(&host, same).await.expect("answer");
    assert_eq!(answer["unchanged"], true);
    assert_eq!(item(&host, "c1", "u1").await, Some(it2));
}

#[tokio::test]
async fn refusals_write_nothing_and_a_verdict_is_never_reset() {
    let w = open_world();
    let host = host(w.services.clone());
    let mut foreign = args("tour", "u1", good_entry("10001"));
    foreign["userInfo"]["country"] = json!("FR");
    let answer = submit(&host, foreign).await.expect("answer");
    assert_eq!(answer["reason"], "COUNTRY_NOT_ALLOWED");
    let mut no_market = args("tour", "u1", good_entry("10001"));
    no_market["marketId"] = json!(null);
    let answer = submit(&host, no_market).await.expect("answer");
    assert_eq!(answer["reason"], "INVALID_REQUEST");
    assert_eq!(item(&host, "c1", "u1").await, None);
    assert!(user_records(&host).await.is_empty());

    // A winner resubmits: refused, the verdict and code stay.
    let winner = json!({"PK": "ENTRY#c1#u2", "SK": "ENTRY", "campaignId": "c1", "globalUserId": "u2",
                        "marketId": "m1", "entry": good_entry("10001"), "verdict": "WINNER",
                        "accessCode": "CODE-1", "version": 4, "needsReplication": false});
    host.embedded
        .tables()
        .put(TABLE, winner.clone(), None)
        .await
        .expect("seed");
    let answer = submit(&host, args("tour", "u2", good_entry("10009")))
        .await
        .expect("answer");
    assert_eq!(answer["isEligible"], false);
    assert_eq!(answer["reason"], "ALREADY_SELECTED");
    assert_eq!(item(&host, "c1", "u2").await, Some(winner));
}

#[tokio::test]
async fn still_registers_while_the_campaign_service_is_down_once_cached() {
    let w = open_world();
    let host = host(w.services.clone());
    submit(&host, args("tour", "u1", good_entry("10001")))
        .await
        .expect("answer");
    w.set_down(true);
    let answer = submit(&host, args("tour", "u2", good_entry("10002")))
        .await
        .expect("answer");
    assert_eq!(answer["created"], true, "{answer}");
    assert!(item(&host, "c1", "u2").await.is_some());
}

/// `n` submissions of fan u1 at once, each with its own zip: the answers
/// (version and zip of each success, the error kind of each failure).
async fn race(host: &Arc<TestHost>, user: &str, n: usize) -> (Vec<(u64, String)>, Vec<String>) {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let host = host.clone();
            let user = user.to_string();
            tokio::spawn(async move {
                let zip = format!("2{i:04}");
                (
                    submit(&host, args("tour", &user, good_entry(&zip))).await,
                    zip,
                )
            })
        })
        .collect();
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for t in tasks {
        match t.await.expect("task") {
            (Ok(answer), zip) => {
                assert_eq!(answer["isEligible"], true, "{answer}");
                ok.push((answer["version"].as_u64().expect("version"), zip));
            }
            (Err((kind, message)), _) => {
                assert_eq!(kind, "Conflict", "{message}");
                failed.push(kind);
            }
        }
    }
    ok.sort();
    (ok, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_submissions_of_one_fan_each_get_their_own_version() {
    let w = open_world();
    let host = Arc::new(host(w.services.clone()));
    // Warm the cache so that every submission races on the table only.
    submit(&host, args("tour", "warm", good_entry("10000")))
        .await
        .expect("warm");

    // Two at once: both succeed, one version each, the later one stored.
    let (ok, failed) = race(&host, "u1", 2).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(ok.iter().map(|(v, _)| *v).collect::<Vec<_>>(), [1, 2]);
    let it = item(&host, "c1", "u1").await.expect("item");
    assert_eq!(it["version"], 2);
    assert_eq!(it["entry"]["zip"], json!(ok[1].1));

    // Eight at once: every success has its own version (no two answers
    // share one, none is skipped: nothing is lost), a writer that lost
    // every attempt answers Conflict and wrote nothing, and the stored
    // entry is the one with the highest version.
    let (ok, failed) = race(&host, "u2", 8).await;
    assert_eq!(ok.len() + failed.len(), 8);
    assert!(!ok.is_empty());
    let versions: Vec<u64> = ok.iter().map(|(v, _)| *v).collect();
    assert_eq!(versions, (1..=ok.len() as u64).collect::<Vec<_>>());
    let it = item(&host, "c1", "u2").await.expect("item");
    assert_eq!(it["version"], ok.len() as u64);
    assert_eq!(it["entry"]["zip"], json!(ok[ok.len() - 1].1));
}

#[tokio::test]
async fn do_transfer_moves_the_entry_from_the_linked_campaign() {
    let w = open_world();
    let host = host(w.services.clone());
    let old = json!({"PK": "ENTRY#old#u1", "SK": "ENTRY", "campaignId": "old", "globalUserId": "u1",
                     "marketId": "mx", "entry": good_entry("30003"), "email": "u1@fans.example",
                     "verdict": "PENDING", "needsReplication": false, "version": 2,
                     "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-01T00:00:00.000Z"});
    host.embedded
        .tables()
        .put(TABLE, old, None)
        .await
        .expect("seed");
    let mut a = args("tour", "u1", json!({"zip": "40004"}));
    a["doTransfer"] = json!(true);
    let answer = submit(&host, a.clone()).await.expect("answer");
    assert_eq!(answer["transferredFrom"], "old", "{answer}");
    assert_eq!(answer["sourceRemoved"], true);
    let moved = item(&host, "c1", "u1").await.expect("moved");
    let mut want = good_entry("30003");
    want["zip"] = json!("40004");
    assert_eq!(moved["entry"], want);
    assert_eq!(moved["transferredFrom"], "old");
    assert_eq!(item(&host, "old", "u1").await, None);
    // Retried: the same success, nothing written again.
    let answer = submit(&host, a).await.expect("retry");
    assert_eq!(answer["unchanged"], true);
    // Without an entry to transfer.
    let mut b = args("tour", "u9", json!({}));
    b["doTransfer"] = json!(true);
    let answer = submit(&host, b).await.expect("answer");
    assert_eq!(answer["reason"], "NOTHING_TO_TRANSFER");
}
