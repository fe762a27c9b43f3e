//! testing/ticker: a tick is recorded in the granted table; `fail` records
//! and fails it; `spin` is stopped at the worker's deadline.

use serde_json::json;
use usher_capabilities::TableBackend;
use usher_engine::{Input, InvokeError, Output, Tick};
use usher_testing::{components, TestHost};

const TICKS: &str = "tables: { ticks: { partition_key: PK, sort_key: SK } }";

fn tick(time: &str) -> Input {
    Input::Scheduled(Tick {
        schedule: "testing/ticker".into(),
        scheduled_time: time.into(),
    })
}

#[tokio::test]
async fn a_tick_is_recorded_in_the_table() {
    let host = TestHost::builder()
        .resources(TICKS)
        .worker(
            &components::TESTING_TICKER,
            "trigger: { schedule: { cron: \"* * * * * *\" } }\ngrants: { tables: [ticks] }",
        )
        .build()
        .expect("test host");
    let out = host
        .invoke("testing/ticker", tick("2026-01-01T00:00:01Z"))
        .await
        .expect("invocation");
    assert_eq!(
        out.output,
        Output::Scheduled(Ok(json!({"recorded": "2026-01-01T00:00:01Z"})))
    );
    let item = host
        .embedded
        .tables()
        .get(
            "ticks",
            &json!({"PK": "testing/ticker", "SK": "2026-01-01T00:00:01Z"}),
        )
        .await
        .expect("get")
        .expect("the tick's item");
    assert_eq!(item["scheduledTime"], "2026-01-01T00:00:01Z");
    assert!(item.get("failed").is_none(), "{item}");
}

#[tokio::test]
async fn fail_records_then_fails_the_tick() {
    let host = TestHost::builder()
        .resources(TICKS)
        .worker(
            &components::TESTING_TICKER,
            "trigger: { schedule: { cron: \"* * * * * *\" } }\ngrants: { tables: [ticks] }\nsettings: { fail: true }",
        )
        .build()
        .expect("test host");
    let out = host
        .invoke("testing/ticker", tick("2026-01-01T00:00:02Z"))
        .await
        .expect("invocation");
    match out.output {
        Output::Scheduled(Err(e)) => assert!(e.contains("failed on request"), "{e}"),
        other => panic!("{other:?}"),
    }
    let item = host
        .embedded
        .tables()
        .get(
            "ticks",
            &json!({"PK": "testing/ticker", "SK": "2026-01-01T00:00:02Z"}),
        )
        .await
        .expect("get")
        .expect("the tick's item");
    assert_eq!(item["failed"], true);
}

#[tokio::test]
async fn an_ungranted_table_fails_the_tick() {
    let host = TestHost::builder()
        .resources("tables: { ticks: { partition_key: PK, sort_key: SK }, other: { partition_key: PK, sort_key: SK } }")
        .worker(
            &components::TESTING_TICKER,
            "trigger: { schedule: { cron: \"* * * * * *\" } }\ngrants: { tables: [ticks] }\nsettings: { table: other }",
        )
        .build()
        .expect("test host");
    let out = host
        .invoke("testing/ticker", tick("2026-01-01T00:00:03Z"))
        .await
        .expect("invocation");
    match out.output {
        Output::Scheduled(Err(e)) => assert!(e.contains("denied"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn spin_is_stopped_at_the_deadline() {
    let host = TestHost::builder()
        .resources(TICKS)
        .worker(
            &components::TESTING_TICKER,
            "trigger: { schedule: { cron: \"* * * * * *\" } }\ngrants: { tables: [ticks] }\nsettings: { spin: true }\nlimits: { timeout_ms: 100 }",
        )
        .build()
        .expect("test host");
    let err = host
        .invoke("testing/ticker", tick("2026-01-01T00:00:04Z"))
        .await
        .expect_err("stopped");
    assert!(
        matches!(
            err,
            usher_testing::TestError::Invoke(InvokeError::Deadline { timeout_ms: 100 })
        ),
        "{err}"
    );
}
