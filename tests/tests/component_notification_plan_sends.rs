//! notification/plan-sends under wasmtime, on the repository's registry
//! entries (target_rate_per_s 10): a market of 3,000 winners is planned,
//! through `{}` (get-markets-to-notify asked through the `workers`
//! capability), as User Service jobs whose sendAt keep every one-second
//! window at or under 10 fans; each winner is in exactly one job; a retry
//! sends the same jobs again (duplicates) and nothing new.

mod notification_common;

use notification_common::{fans_jobs, finished_draw, most_in_a_second, services};
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
async fn three_thousand_winners_at_ten_a_second_each_once() {
    let w = finished_draw(3_000);
    let host = TestHost::builder()
        .registry_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../workers"))
        .services(services(&w))
        .build()
        .expect("test host");
    invoke(&host, "notification/generate-notifications", json!({}))
        .await
        .expect("generated");
    let planned = invoke(&host, "notification/plan-sends", json!({}))
        .await
        .expect("planned");
    assert_eq!(planned["errors"], json!([]), "{planned}");
    assert_eq!(planned["plannedCount"], 3_000);
    assert_eq!(planned["jobs"], 300);
    assert_eq!(planned["markets"], 1);
    let fans = fans_jobs(&w);
    assert_eq!(fans.len(), 3_000);
    assert!(fans.values().all(|n| *n == 1), "a fan in two jobs");
    assert!(
        fans.keys()
            .all(|f| f[4..].parse::<u32>().expect("n") % 2 == 0),
        "winners only"
    );
    assert_eq!(most_in_a_second(&w), 10);
    let (first, last) = {
        let world = w.lock().expect("world");
        let times: Vec<i64> = world.jobs.values().map(|j| j.send_at_ms).collect();
        (
            *times.iter().min().expect("a job"),
            *times.iter().max().expect("a job"),
        )
    };
    assert_eq!(last - first, 299_000, "spread over 300 s, not bursted");
    // The step again (a retry): the same jobs, nothing new.
    let again = invoke(
        &host,
        "notification/plan-sends",
        json!({"campaignId": "c1", "marketId": "m1"}),
    )
    .await
    .expect("again");
    assert_eq!(again["plannedCount"], 3_000, "{again}");
    let world = w.lock().expect("world");
    assert_eq!(world.jobs.len(), 300);
    assert!(
        world.jobs.values().all(|j| j.posts == 1),
        "enqueued: not sent again"
    );
}

#[tokio::test]
async fn a_bad_payload_is_refused() {
    let w = finished_draw(1);
    let host = TestHost::builder()
        .registry_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../workers"))
        .services(services(&w))
        .build()
        .expect("test host");
    for bad in [
        json!({"campaignId": "c1"}),
        json!("x"),
        json!({"campaignId": "c1", "marketId": 1}),
    ] {
        let e = invoke(&host, "notification/plan-sends", bad).await;
        assert!(e.is_err_and(|e| e.starts_with("InvalidInput")));
    }
}
