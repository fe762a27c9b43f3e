//! notification/generate-notifications under wasmtime, on the repository's
//! registry entries: a FINISHED draw and an OPEN campaign closing soon are
//! recorded once each; a later run records nothing new; get-markets-to-notify
//! then answers their markets.

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
async fn finished_draws_and_closing_campaigns_are_recorded_once() {
    let w = finished_draw(40);
    closing_campaign(&w, 17);
    let host = TestHost::builder()
        .registry_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../workers"))
        .services(services(&w))
        .build()
        .expect("test host");
    let first = invoke(&host, "notification/generate-notifications", json!({}))
        .await
        .expect("generated");
    assert_eq!(first["marketCount"], 2, "{first}");
    assert_eq!(first["userCount"], 40 + 17);
    assert_eq!(first["created"], 2);
    assert_eq!(first["errors"], json!([]));
    let again = invoke(&host, "notification/generate-notifications", json!({}))
        .await
        .expect("again");
    assert_eq!(
        (again["created"].clone(), again["existing"].clone()),
        (json!(0), json!(2))
    );
    // The winner reminder is due now; the closing one 24 h before the close (in 6 h).
    let due = invoke(&host, "notification/get-markets-to-notify", json!({}))
        .await
        .expect("due");
    assert_eq!(
        due["markets"],
        json!([{"campaignId": "c1", "marketId": "m1"}]),
        "{due}"
    );
    let later = notification_common::rfc3339(notification_common::now_ms() + 7 * 3_600_000);
    let due = invoke(
        &host,
        "notification/get-markets-to-notify",
        json!({"now": later}),
    )
    .await
    .expect("due later");
    assert_eq!(due["campaignIds"], json!(["c1", "c2"]), "{due}");
    // Bad input.
    let bad = invoke(
        &host,
        "notification/generate-notifications",
        json!({"x": 1}),
    )
    .await;
    assert!(bad.is_err_and(|e| e.starts_with("InvalidInput")));
}
