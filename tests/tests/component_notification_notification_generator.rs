//! notification/notification-generator under wasmtime, on the repository's
//! registry entry (daily schedule): a tick records the FINISHED draw's
//! winner reminder, due at the tick's time; a failing Campaign Service fails
//! the tick.

mod notification_common;

use notification_common::{finished_draw, services};
use serde_json::json;
use usher_engine::{Input, Output, Tick};
use usher_testing::{json_response, FakeServices, TestHost};

fn tick(time: &str) -> Input {
    Input::Scheduled(Tick {
        schedule: "notification/notification-generator".into(),
        scheduled_time: time.into(),
    })
}

#[tokio::test]
async fn a_tick_records_the_reminders_due() {
    let w = finished_draw(25);
    let host = TestHost::builder()
        .registry_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../workers"))
        .services(services(&w))
        .build()
        .expect("test host");
    let out = host
        .invoke(
            "notification/notification-generator",
            tick("2026-12-06T06:00:00Z"),
        )
        .await
        .expect("invocation");
    let Output::Scheduled(Ok(summary)) = out.output else {
        panic!("{:?}", out.output)
    };
    assert_eq!(
        (summary["marketCount"].clone(), summary["userCount"].clone()),
        (json!(1), json!(25))
    );
    let out = host
        .invoke(
            "notification/get-markets-to-notify",
            Input::Invoke(json!({"now": "2026-12-06T06:00:00Z"})),
        )
        .await
        .expect("invocation");
    assert_eq!(
        out.output,
        Output::Invoke(Ok(json!({"marketIds": ["m1"], "campaignIds": ["c1"],
                                 "markets": [{"campaignId": "c1", "marketId": "m1"}]})))
    );
    let out = host
        .invoke(
            "notification/get-markets-to-notify",
            Input::Invoke(json!({"now": "2026-12-06T05:59:59Z"})),
        )
        .await
        .expect("invocation");
    assert_eq!(
        out.output,
        Output::Invoke(Ok(
            json!({"marketIds": [], "campaignIds": [], "markets": []})
        ))
    );
}

#[tokio::test]
async fn a_campaign_service_down_fails_the_tick() {
    let host = TestHost::builder()
        .registry_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../workers"))
        .services(FakeServices::with(|_| {
            Ok(json_response(503, "{\"error\":\"down\"}"))
        }))
        .build()
        .expect("test host");
    let out = host
        .invoke(
            "notification/notification-generator",
            tick("2026-12-06T06:00:00Z"),
        )
        .await
        .expect("invocation");
    assert!(
        matches!(out.output, Output::Scheduled(Err(ref e)) if e.contains("503")),
        "{:?}",
        out.output
    );
}
