//! notification/trigger-reminder-email under wasmtime, on the repository's
//! registry entries: the planned jobs of 25 winners (3 jobs, a second
//! apart) are triggered as they fall due, each exactly once and none before
//! its sendAt; runs after the end trigger nothing.

mod notification_common;

use std::time::Duration;

use notification_common::{finished_draw, now_ms, parse, services};
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
async fn due_jobs_are_triggered_once_each() {
    let w = finished_draw(25);
    let host = TestHost::builder()
        .registry_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../workers"))
        .services(services(&w))
        .build()
        .expect("test host");
    let market = json!({"campaignId": "c1", "marketId": "m1"});
    invoke(&host, "notification/generate-notifications", json!({}))
        .await
        .expect("generated");
    // Not planned yet: nothing to trigger, everything remaining.
    let early = invoke(&host, "notification/trigger-reminder-email", market.clone())
        .await
        .expect("early");
    assert_eq!(
        (early["triggeredCount"].clone(), early["remaining"].clone()),
        (json!(0), json!(25)),
        "{early}"
    );
    invoke(&host, "notification/plan-sends", market.clone())
        .await
        .expect("planned");
    let mut triggered = 0u64;
    let deadline = now_ms() + 15_000;
    loop {
        let answer = invoke(&host, "notification/trigger-reminder-email", market.clone())
            .await
            .expect("answer");
        assert_eq!(answer["errors"], json!([]), "{answer}");
        triggered += answer["triggeredCount"].as_u64().expect("count");
        match answer["nextSendAt"].as_str() {
            None => break,
            Some(next) => {
                assert!(now_ms() < deadline, "not done in time: {answer}");
                let wait = (parse(next) - now_ms()).clamp(50, 1_000);
                tokio::time::sleep(Duration::from_millis(wait as u64)).await;
            }
        }
    }
    assert_eq!(triggered, 25);
    // Once more (a retry after the end): nothing.
    let after = invoke(&host, "notification/trigger-reminder-email", json!({}))
        .await
        .expect("after");
    assert_eq!(after["triggeredCount"], 0, "{after}");
    let world = w.lock().expect("world");
    assert_eq!(world.jobs.len(), 3);
    assert!(
        world.jobs.values().all(|j| j.triggers == 1),
        "each job triggered once"
    );
    assert!(
        world.jobs.values().all(|j| j.early_triggers == 0),
        "none before its sendAt"
    );
}
