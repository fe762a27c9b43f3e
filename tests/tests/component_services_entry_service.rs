//! services/entry-service under wasmtime: the Entry Service's HTTP contract
//! (components/services/entry-service/openapi.yaml) on an embedded table.

use serde_json::{json, Value};
use usher_capabilities::TableBackend;
use usher_engine::{HttpRequest, Input, Output};
use usher_testing::{components, TestHost};

fn host() -> TestHost {
    TestHost::builder()
        .resources("tables: { entries: { partition_key: PK, sort_key: SK } }")
        .worker(
            &components::SERVICES_ENTRY_SERVICE,
            "trigger: { http: { route: /entries-service } }\ngrants: { tables: [entries] }",
        )
        .build()
        .expect("test host")
}

/// One request; the status and the JSON body.
async fn call(host: &TestHost, method: &str, path: &str, query: &str, body: &[u8]) -> (u16, Value) {
    let request = HttpRequest {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_vec(),
    };
    let out = host
        .invoke("services/entry-service", Input::Http(request))
        .await
        .expect("invocation");
    match out.output {
        Output::Http(response) => {
            assert!(
                response
                    .headers
                    .iter()
                    .any(|(n, v)| n == "content-type" && v == "application/json"),
                "{response:?}"
            );
            let body = serde_json::from_slice(&response.body).expect("a JSON answer");
            (response.status, body)
        }
        other => panic!("{other:?}"),
    }
}

async fn post(host: &TestHost, path: &str, body: Value) -> (u16, Value) {
    call(host, "POST", path, "", body.to_string().as_bytes()).await
}

async fn get(host: &TestHost, path: &str, query: &str) -> (u16, Value) {
    call(host, "GET", path, query, b"").await
}

fn entry(campaign: &str, user: &str, version: u64, market: &str) -> Value {
    json!({"campaignId": campaign, "globalUserId": user, "version": version, "marketId": market, "points": 7})
}

async fn stored(host: &TestHost, campaign: &str, user: &str) -> Option<Value> {
    host.embedded
        .tables()
        .get(
            "entries",
            &json!({"PK": format!("CAMPAIGN#{campaign}"), "SK": format!("FAN#{user}")}),
        )
        .await
        .expect("get")
}

fn users(page: &Value) -> Vec<&str> {
    page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["globalUserId"].as_str())
        .collect()
}

#[tokio::test]
async fn upsert_then_list_by_campaign() {
    let host = host();
    let (status, body) = post(
        &host,
        "/entries/batch-upsert",
        json!({"entries": [entry("c1", "u1", 1, "m1"), entry("c1", "u2", 1, "m2"), entry("c2", "u3", 1, "m1")]}),
    )
    .await;
    assert_eq!((status, body), (200, json!({"upserted": 3, "ignored": 0})));
    assert_eq!(
        stored(&host, "c1", "u1").await,
        Some(
            json!({"PK": "CAMPAIGN#c1", "SK": "FAN#u1", "entry": entry("c1", "u1", 1, "m1"),
                    "marketId": "m1", "version": 1})
        )
    );
    let (status, page) = get(&host, "/campaigns/c1/entries", "").await;
    assert_eq!(status, 200);
    assert_eq!(
        page,
        json!({"entries": [entry("c1", "u1", 1, "m1"), entry("c1", "u2", 1, "m2")], "next": null})
    );
    // Paging with limit and the cursor.
    let (_, page) = get(&host, "/campaigns/c1/entries", "limit=1").await;
    assert_eq!((users(&page), &page["next"]), (vec!["u1"], &json!("u1")));
    let (_, page) = get(&host, "/campaigns/c1/entries", "limit=1&after=u1").await;
    assert_eq!((users(&page), &page["next"]), (vec!["u2"], &Value::Null));
    // Upserting again is idempotent.
    let (_, body) = post(
        &host,
        "/entries/batch-upsert",
        json!({"entries": [entry("c1", "u1", 1, "m1")]}),
    )
    .await;
    assert_eq!(body, json!({"upserted": 1, "ignored": 0}));
    let (_, page) = get(&host, "/campaigns/c1/entries", "").await;
    assert_eq!(users(&page), ["u1", "u2"]);
}

#[tokio::test]
async fn a_lower_version_is_ignored() {
    let host = host();
    post(
        &host,
        "/entries/batch-upsert",
        json!({"entries": [entry("c1", "u1", 5, "m1")]}),
    )
    .await;
    let (status, body) = post(
        &host,
        "/entries/batch-upsert",
        json!({"entries": [entry("c1", "u1", 4, "m2")]}),
    )
    .await;
    assert_eq!((status, body), (200, json!({"upserted": 0, "ignored": 1})));
    let item = stored(&host, "c1", "u1").await.expect("item");
    assert_eq!(
        (&item["version"], &item["marketId"]),
        (&json!(5), &json!("m1"))
    );
    let (_, body) = post(
        &host,
        "/entries/batch-upsert",
        json!({"entries": [entry("c1", "u1", 6, "m2")]}),
    )
    .await;
    assert_eq!(body, json!({"upserted": 1, "ignored": 0}));
    assert_eq!(
        stored(&host, "c1", "u1").await.expect("item")["marketId"],
        "m2"
    );
}

#[tokio::test]
async fn delete_removes_entries() {
    let host = host();
    post(
        &host,
        "/entries/batch-upsert",
        json!({"entries": [entry("c1", "u1", 1, "m1"), entry("c1", "u2", 1, "m1")]}),
    )
    .await;
    let (status, body) = post(
        &host,
        "/entries/batch-delete",
        json!({"keys": [{"campaignId": "c1", "globalUserId": "u1"}, {"campaignId": "c1", "globalUserId": "absent"}]}),
    )
    .await;
    assert_eq!((status, body), (200, json!({"deleted": 2, "ignored": 0})));
    assert_eq!(stored(&host, "c1", "u1").await, None);
    let (_, page) = get(&host, "/campaigns/c1/entries", "").await;
    assert_eq!(users(&page), ["u2"]);
}

#[tokio::test]
async fn market_listing_filters_the_campaign() {
    let host = host();
    post(
        &host,
        "/entries/batch-upsert",
        json!({"entries": [
            entry("c1", "u1", 1, "m1"),
            entry("c1", "u2", 1, "m2"),
            {"campaignId": "c1", "globalUserId": "u3", "entry": {"marketId": "m1"}},
            entry("c2", "u4", 1, "m1"),
        ]}),
    )
    .await;
    let (status, page) = get(&host, "/markets/m1/entries", "campaignId=c1").await;
    assert_eq!(status, 200);
    assert_eq!(users(&page), ["u1", "u3"]);
    let (status, body) = get(&host, "/markets/m1/entries", "").await;
    assert_eq!(status, 400);
    assert!(body["error"]
        .as_str()
        .is_some_and(|e| e.contains("campaignId")));
}

#[tokio::test]
async fn score_refresh_scores_stored_entries() {
    let host = host();
    post(
        &host,
        "/entries/batch-upsert",
        json!({"entries": [entry("c1", "u1", 3, "m1")]}),
    )
    .await;
    let (status, body) = post(
        &host,
        "/scores/refresh",
        json!({"fans": [{"campaignId": "c1", "globalUserId": "u1"}, {"campaignId": "c1", "globalUserId": "nobody"}]}),
    )
    .await;
    assert_eq!((status, body), (200, json!({"refreshed": 1, "missing": 1})));
    // 10 × five non-null attributes + version 3.
    assert_eq!(stored(&host, "c1", "u1").await.expect("item")["score"], 53);
    assert_eq!(stored(&host, "c1", "nobody").await, None);
    let (_, page) = get(&host, "/campaigns/c1/entries", "").await;
    assert_eq!(page["entries"][0]["score"], 53);
}

#[tokio::test]
async fn an_upsert_with_refresh_scores_stores_the_scores_in_the_same_request() {
    let host = host();
    post(
        &host,
        "/entries/batch-upsert",
        json!({"entries": [entry("c1", "newer", 5, "m1")]}),
    )
    .await;
    let (status, body) = post(
        &host,
        "/entries/batch-upsert",
        json!({"entries": [entry("c1", "u1", 3, "m1"), entry("c1", "newer", 4, "m1")], "refreshScores": true}),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"upserted": 1, "ignored": 1, "scoreFailures": []})
        )
    );
    // 10 × five non-null attributes + the version: the written entry's own,
    // and the stored (newer, version 5) entry of the ignored one.
    assert_eq!(stored(&host, "c1", "u1").await.expect("item")["score"], 53);
    assert_eq!(
        stored(&host, "c1", "newer").await.expect("item")["score"],
        55
    );
    let (_, page) = get(&host, "/campaigns/c1/entries", "").await;
    assert_eq!(page["entries"][1]["score"], 53);
    let (status, _) = post(
        &host,
        "/entries/batch-upsert",
        json!({"entries": [entry("c1", "u1", 3, "m1")], "refreshScores": 1}),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn more_than_25_items_is_413() {
    let host = host();
    let entries: Vec<Value> = (0..26)
        .map(|i| entry("c1", &format!("u{i}"), 1, "m1"))
        .collect();
    let (status, body) = post(&host, "/entries/batch-upsert", json!({"entries": entries})).await;
    assert_eq!(status, 413);
    assert!(body["error"].is_string());
    let (_, page) = get(&host, "/campaigns/c1/entries", "").await;
    assert_eq!(page["entries"], json!([]));
    let fans: Vec<Value> = (0..26)
        .map(|i| json!({"campaignId": "c1", "globalUserId": i.to_string()}))
        .collect();
    assert_eq!(
        post(&host, "/scores/refresh", json!({"fans": fans}))
            .await
            .0,
        413
    );
}

#[tokio::test]
async fn bad_json_is_400() {
    let host = host();
    let (status, body) = call(&host, "POST", "/entries/batch-upsert", "", b"{not json").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().is_some_and(|e| e.contains("JSON")));
    let (status, _) = post(
        &host,
        "/entries/batch-upsert",
        json!({"entries": [{"campaignId": "c1"}]}),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn unknown_path_is_404_and_wrong_method_405() {
    let host = host();
    let (status, body) = get(&host, "/nope", "").await;
    assert_eq!(status, 404);
    assert!(body["error"].is_string());
    let (status, _) = get(&host, "/entries/batch-upsert", "").await;
    assert_eq!(status, 405);
    let (status, _) = get(&host, "/campaigns//entries", "").await;
    assert_eq!(status, 404);
}

async fn put(host: &TestHost, path: &str, body: Value) -> (u16, Value) {
    call(host, "PUT", path, "", body.to_string().as_bytes()).await
}

fn selection_users(page: &Value) -> Vec<&str> {
    page["selections"]
        .as_array()
        .expect("selections")
        .iter()
        .filter_map(|e| e["globalUserId"].as_str())
        .collect()
}

#[tokio::test]
async fn invites_are_checked_lower_cased() {
    let host = host();
    let (status, body) = put(
        &host,
        "/campaigns/c1/invites",
        json!({"emails": ["Fan.One@Example.COM", "fan2@example.com"]}),
    )
    .await;
    assert_eq!((status, body), (200, json!({"invited": 2})));
    let (_, body) = get(&host, "/campaigns/c1/invites/fan.one%40example.com", "").await;
    assert_eq!(body, json!({"invited": true}));
    let (_, body) = get(&host, "/campaigns/c1/invites/FAN2@EXAMPLE.COM", "").await;
    assert_eq!(body, json!({"invited": true}));
    let (_, body) = get(&host, "/campaigns/c2/invites/fan2@example.com", "").await;
    assert_eq!(body, json!({"invited": false}));
    let (status, _) = put(&host, "/campaigns/c1/invites", json!({"emails": ["nope"]})).await;
    assert_eq!(status, 400);
}

/// The draw's outcome: codes assigned (a fan never gets two, a code never
/// goes to two fans), verdicts stored, listed as selections, and kept when
/// replication upserts the same entries again.
#[tokio::test]
async fn codes_and_verdicts_survive_replication() {
    let host = host();
    let entries: Vec<Value> = (0..6)
        .map(|i| entry("c1", &format!("u{i}"), 1, "m1"))
        .collect();
    post(&host, "/entries/batch-upsert", json!({"entries": entries})).await;
    let (status, body) = post(
        &host,
        "/entries/assign-codes",
        json!({"campaignId": "c1", "marketId": "m1", "assignments": [
            {"globalUserId": "u0", "code": "A"}, {"globalUserId": "u1", "code": "B"},
            {"globalUserId": "u2", "code": "A"}, {"globalUserId": "u0", "code": "C"},
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["assigned"], &body["already"]),
        (&json!(2), &json!(0))
    );
    assert_eq!(body["conflicts"].as_array().map(Vec::len), Some(2));
    let (_, again) = post(
        &host,
        "/entries/assign-codes",
        json!({"campaignId": "c1", "marketId": "m1", "assignments": [
            {"globalUserId": "u0", "code": "A"}, {"globalUserId": "u1", "code": "B"}]}),
    )
    .await;
    assert_eq!(again, json!({"assigned": 0, "already": 2, "conflicts": []}));
    let (status, body) = post(
        &host,
        "/entries/verdicts",
        json!({"campaignId": "c1", "marketId": "m1", "drawId": "c1.m1", "verdicts": [
            {"globalUserId": "u0", "verdict": "WINNER", "code": "A"},
            {"globalUserId": "u1", "verdict": "WINNER", "code": "B"},
            {"globalUserId": "u2", "verdict": "LOSER"},
            {"globalUserId": "u3", "verdict": "WAITLIST"},
            {"globalUserId": "ghost", "verdict": "LOSER"},
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"updated": 4, "missing": ["ghost"]}));
    // Replication writes the entries again (a newer version, refreshing).
    let entries: Vec<Value> = (0..6)
        .map(|i| entry("c1", &format!("u{i}"), 2, "m1"))
        .collect();
    post(
        &host,
        "/entries/batch-upsert",
        json!({"entries": entries, "refreshScores": true}),
    )
    .await;
    let (status, page) = get(&host, "/markets/m1/selections", "campaignId=c1").await;
    assert_eq!(status, 200);
    assert_eq!(
        page,
        json!({"selections": [
            {"globalUserId": "u0", "verdict": "WINNER", "code": "A", "drawId": "c1.m1"},
            {"globalUserId": "u1", "verdict": "WINNER", "code": "B", "drawId": "c1.m1"},
            {"globalUserId": "u2", "verdict": "LOSER", "drawId": "c1.m1"},
            {"globalUserId": "u3", "verdict": "WAITLIST", "drawId": "c1.m1"},
        ], "next": null})
    );
    let (_, page) = get(&host, "/markets/m1/selections", "campaignId=c1&limit=3").await;
    assert_eq!(
        (selection_users(&page), &page["next"]),
        (vec!["u0", "u1", "u2"], &json!("u2"))
    );
    let (_, page) = get(&host, "/markets/m1/selections", "campaignId=c1&after=u2").await;
    assert_eq!(selection_users(&page), ["u3"]);
    let (_, page) = get(&host, "/markets/m1/entries", "campaignId=c1").await;
    assert_eq!(users(&page).len(), 6);
    assert!(page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .all(|e| e["score"].is_number() && e["version"] == 2));
}

/// The market list reads the market's own index: a page of 5000 of a
/// market of 12,000 entries (the campaign has 24,000), paged to the end.
#[tokio::test]
async fn market_pages_come_from_the_index() {
    let host = host();
    for chunk in (0..24_000).collect::<Vec<u32>>().chunks(25) {
        let entries: Vec<Value> = chunk
            .iter()
            .map(|i| {
                entry(
                    "c1",
                    &format!("u{i:06}"),
                    1,
                    if i % 2 == 0 { "even" } else { "odd" },
                )
            })
            .collect();
        let (status, body) =
            post(&host, "/entries/batch-upsert", json!({"entries": entries})).await;
        assert_eq!(status, 200, "{body}");
    }
    let mut seen = Vec::new();
    let mut after = String::new();
    let started = std::time::Instant::now();
    loop {
        let query = if after.is_empty() {
            "campaignId=c1&limit=5000".to_string()
        } else {
            format!("campaignId=c1&limit=5000&after={after}")
        };
        let (status, page) = get(&host, "/markets/even/entries", &query).await;
        assert_eq!(status, 200);
        let users: Vec<String> = users(&page).into_iter().map(str::to_string).collect();
        assert!(users.len() <= 5000);
        seen.extend(users);
        match page["next"].as_str() {
            Some(n) => after = n.to_string(),
            None => break,
        }
    }
    let listed = started.elapsed();
    // The same items read straight from the table, for comparison.
    let started = std::time::Instant::now();
    let tables = host.embedded.tables();
    let mut start: Option<Value> = None;
    let mut n = 0;
    loop {
        let page = tables
            .query(
                "entries",
                &json!({"PK": "MARKET#c1#even"}),
                Some("FAN#"),
                1000,
                start.as_ref(),
            )
            .await
            .expect("query");
        n += page.items.len();
        match page.next {
            Some(k) => start = Some(k),
            None => break,
        }
    }
    assert_eq!(n, 12_000);
    eprintln!(
        "12,000 entries of a market in pages of 5000: {:.2} s (the table's own queries: {:.2} s)",
        listed.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(seen.len(), 12_000);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    // Deleting an entry removes it from its market's list.
    post(
        &host,
        "/entries/batch-delete",
        json!({"keys": [{"campaignId": "c1", "globalUserId": "u000000"}]}),
    )
    .await;
    let (_, page) = get(&host, "/markets/even/entries", "campaignId=c1&limit=1").await;
    assert_eq!(users(&page), ["u000002"]);
}

/// Concurrent assign-codes requests with random, often conflicting pairs
/// (seeded): every pair answered assigned or already holds at the end, a
/// fan's item and its code's item always name each other, and no code or
/// fan was answered as given twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_code_assignments_stay_consistent() {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    let host = Arc::new(host());
    let mut state: u64 = 0x5EED;
    let mut next = move |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    for case in 0..12 {
        let market = format!("m{case}");
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let pairs: Vec<Value> = (0..1 + next(8))
                .map(|_| json!({"globalUserId": format!("f{}", next(10)), "code": format!("K{}", next(10))}))
                .collect();
            let (host, market) = (host.clone(), market.clone());
            tasks.push(tokio::spawn(async move {
                let (status, body) = post(
                    &host,
                    "/entries/assign-codes",
                    json!({"campaignId": "c1", "marketId": market, "assignments": pairs.clone()}),
                )
                .await;
                (pairs, status, body)
            }));
        }
        let mut given: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut holds: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for t in tasks {
            let (pairs, status, body) = t.await.expect("task");
            assert_eq!(status, 200, "{body}");
            let refused: Vec<(String, String)> = body["conflicts"]
                .as_array()
                .expect("conflicts")
                .iter()
                .map(|c| {
                    (
                        c["globalUserId"].as_str().unwrap_or("").into(),
                        c["code"].as_str().unwrap_or("").into(),
                    )
                })
                .collect();
            let n_refused = refused.len();
            let answered =
                body["assigned"].as_u64().unwrap_or(0) + body["already"].as_u64().unwrap_or(0);
            assert_eq!(answered as usize + n_refused, pairs.len(), "{body}");
            let mut refused = refused;
            for p in &pairs {
                let pair = (
                    p["globalUserId"].as_str().unwrap_or("").to_string(),
                    p["code"].as_str().unwrap_or("").to_string(),
                );
                if let Some(i) = refused.iter().position(|r| *r == pair) {
                    refused.remove(i);
                    continue;
                }
                given
                    .entry(pair.1.clone())
                    .or_default()
                    .insert(pair.0.clone());
                holds.entry(pair.0).or_default().insert(pair.1);
            }
        }
        for (code, fans) in &given {
            assert!(fans.len() <= 1, "case {case}: {code} given to {fans:?}");
        }
        for (fan, codes) in &holds {
            assert!(codes.len() <= 1, "case {case}: {fan} got {codes:?}");
        }
        let tables = host.embedded.tables();
        let page = tables
            .query(
                "entries",
                &json!({"PK": format!("ASSIGN#c1#{market}")}),
                None,
                1000,
                None,
            )
            .await
            .expect("query");
        let mut fan_items: BTreeMap<String, String> = BTreeMap::new();
        let mut code_items: BTreeMap<String, String> = BTreeMap::new();
        for item in &page.items {
            let sk = item["SK"].as_str().unwrap_or("");
            if let Some(f) = sk.strip_prefix("FAN#") {
                fan_items.insert(f.into(), item["code"].as_str().unwrap_or("").into());
            } else if let Some(c) = sk.strip_prefix("CODE#") {
                code_items.insert(c.into(), item["globalUserId"].as_str().unwrap_or("").into());
            }
        }
        assert_eq!(
            fan_items.len(),
            code_items.len(),
            "case {case}: {fan_items:?} {code_items:?}"
        );
        for (fan, code) in &fan_items {
            assert_eq!(
                code_items.get(code),
                Some(fan),
                "case {case}: {fan_items:?} {code_items:?}"
            );
        }
        for (code, fans) in &given {
            for fan in fans {
                assert_eq!(
                    fan_items.get(fan),
                    Some(code),
                    "case {case}: {fan} was told {code}"
                );
            }
        }
    }
}
