//! The HTTP listener with the built services/entry-service (an http-worker
//! below a route prefix) and testing/echo (an invoke-worker), over real HTTP.

use std::net::SocketAddr;

use serde_json::{json, Value};
use usher_testing::{components, TestHost};
use usher_trigger_local::{HttpListener, MAX_REQUEST_BYTES};

fn host() -> TestHost {
    TestHost::builder()
        .resources("tables: { entries: { partition_key: PK, sort_key: SK } }")
        .worker(
            &components::SERVICES_ENTRY_SERVICE,
            "trigger: { http: { route: /services/entries } }\ngrants: { tables: [entries] }\nsettings: { table: entries }",
        )
        .worker(&components::TESTING_ECHO, "trigger: { invoke: {} }")
        .build()
        .expect("test host")
}

async fn listen(host: &TestHost) -> (HttpListener, String) {
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let listener = HttpListener::bind(host.runtime.clone(), addr)
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr());
    (listener, base)
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let ct = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(ct.starts_with("application/json"), "content-type {ct}");
    (status, response.json().await.expect("a JSON body"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_entry_service_answers_below_its_route() {
    let host = host();
    let (listener, base) = listen(&host).await;
    let client = reqwest::Client::new();
    let entries: Vec<Value> = (0..3)
        .map(|i| json!({"campaignId": "c1", "globalUserId": format!("u{i}"), "version": 1, "marketId": "m1"}))
        .collect();
    let (status, body) = json_of(
        client
            .post(format!("{base}/services/entries/entries/batch-upsert"))
            .json(&json!({ "entries": entries }))
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["upserted"], 3, "{body}");

    let (status, body) = json_of(
        client
            .get(format!(
                "{base}/services/entries/campaigns/c1/entries?limit=2"
            ))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["entries"].as_array().map(Vec::len), Some(2), "{body}");
    assert_eq!(body["next"], "u1", "{body}");

    // The worker's own 404 for a path below its route it does not know.
    let (status, _) = json_of(
        client
            .get(format!("{base}/services/entries/nope"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(status, 404);
    // Whole segments only: /services/entriesX is no route.
    let (status, body) = json_of(
        client
            .get(format!("{base}/services/entriesX/campaigns/c1/entries"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().is_some(), "{body}");
    listener.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn invoke_workers_answer_json_and_typed_errors_are_400() {
    let host = host();
    let (listener, base) = listen(&host).await;
    let client = reqwest::Client::new();
    let (status, body) = json_of(
        client
            .post(format!("{base}/invoke/testing/echo"))
            .json(&json!({"a": 1}))
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!((status, body), (200, json!({"a": 1})));

    let (status, body) = json_of(
        client
            .post(format!("{base}/invoke/testing/echo"))
            .json(&json!({"fail": "no"}))
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(
        (status, body),
        (400, json!({"errorType": "Requested", "message": "no"}))
    );

    let (status, body) = json_of(
        client
            .post(format!("{base}/invoke/testing/echo"))
            .body("{not json")
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["errorType"], "InvalidJson");

    let (status, _) = json_of(
        client
            .post(format!("{base}/invoke/testing/missing"))
            .json(&json!({}))
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(status, 404);
    // An http-worker is not invocable this way.
    let (status, _) = json_of(
        client
            .post(format!("{base}/invoke/services/entry-service"))
            .json(&json!({}))
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = json_of(
        client
            .get(format!("{base}/invoke/testing/echo"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(status, 405);
    listener.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_routes_are_404_and_large_bodies_413() {
    let host = host();
    let (listener, base) = listen(&host).await;
    let client = reqwest::Client::new();
    let (status, body) = json_of(
        client
            .get(format!("{base}/elsewhere"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(status, 404, "{body}");

    let big = vec![b' '; MAX_REQUEST_BYTES + 1];
    let (status, _) = json_of(
        client
            .post(format!("{base}/services/entries/entries/batch-upsert"))
            .body(big.clone())
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(status, 413);
    let (status, _) = json_of(
        client
            .post(format!("{base}/invoke/testing/echo"))
            .body(big)
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(status, 413);
    listener.shutdown().await.expect("shutdown");
}
