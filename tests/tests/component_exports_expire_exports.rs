//! exports/expire-exports under wasmtime (made by `just new-worker`).

use serde_json::json;
use usher_engine::{Input, Output, Tick};
use usher_testing::{components, TestHost};

#[tokio::test]
async fn a_tick_answers_its_time() {
    let host = TestHost::builder()
        .worker(
            &components::EXPORTS_EXPIRE_EXPORTS,
            "trigger: { schedule: { cron: \"0 */5 * * * *\" } }",
        )
        .build()
        .expect("test host");
    let tick = Tick {
        schedule: "exports/expire-exports".into(),
        scheduled_time: "2026-01-01T00:05:00Z".into(),
    };
    let out = host
        .invoke("exports/expire-exports", Input::Scheduled(tick))
        .await
        .expect("invocation");
    assert_eq!(
        out.output,
        Output::Scheduled(Ok(json!({"scheduledTime": "2026-01-01T00:05:00Z"})))
    );
}
