//! notification/get-markets-to-notify under wasmtime, on the repository's
//! registry entry: nothing due at first; the markets generated are due
//! until every job of theirs is triggered; bad payloads are refused.

mod notification_common;

use notification_common::{closing_campaign, finished_draw, services};
use serde_json::{json, Value};
use usher_engine::{Input, Output};
use usher_testing::TestHost;

async fn invoke(host: &TestHost, worker: &str, payload: Value) -> Result<Value, String> {
    let out = host
        .invoke(worker, Input::Invoke(payload))
        .await
        .expect("invocation");
    match out.output {
        Output::Invoke(r) => r.map_err(|e| format!("{}: {}", e.kind, e.message)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn due_markets_until_done() {
    let w = finished_draw(3);
    closing_campaign(&w, 0);
    let host = TestHost::builder()
        .registry_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../workers"))
        .services(services(&w))
        .build()
        .expect("test host");
    let none = invoke(&host, "notification/get-markets-to-notify", json!({}))
        .await
        .expect("none");
    assert_eq!(
        none,
        json!({"marketIds": [], "campaignIds": [], "markets": []})
    );
    invoke(&host, "notification/generate-notifications", json!({}))
        .await
        .expect("generated");
    let far = notification_common::rfc3339(notification_common::now_ms() + 7 * 3_600_000);
    let due = invoke(
        &host,
        "notification/get-markets-to-notify",
        json!({"now": far}),
    )
    .await
    .expect("due");
    assert_eq!(due["marketIds"], json!(["m1", "m1"]), "{due}");
    // c2/m1 has nobody registered: planned straight to DONE, no longer due.
    let planned = invoke(
        &host,
        "notification/plan-sends",
        json!({"campaignId": "c2", "marketId": "m1", "now": far}),
    )
    .await
    .expect("planned");
    assert_eq!(planned["plannedCount"], 0, "{planned}");
    let due = invoke(
        &host,
        "notification/get-markets-to-notify",
        json!({"now": far}),
    )
    .await
    .expect("due");
    assert_eq!(due["campaignIds"], json!(["c1"]), "{due}");
    for bad in [
        json!([]),
        json!({"now": "tomorrow"}),
        json!({"campaignId": "c1"}),
    ] {
        let e = invoke(&host, "notification/get-markets-to-notify", bad).await;
        assert!(e.is_err_and(|e| e.starts_with("InvalidInput")));
    }
}
