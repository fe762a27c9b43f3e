//! notification/plan-sends under wasmtime (made by `just new-worker`).

use serde_json::json;
use usher_engine::{Input, Output};
use usher_testing::{components, TestHost};

#[tokio::test]
async fn echoes_an_object() {
    let host = TestHost::builder()
        .worker(
            &components::NOTIFICATION_PLAN_SENDS,
            "trigger: { invoke: {} }",
        )
        .build()
        .expect("test host");
    let out = host
        .invoke("notification/plan-sends", Input::Invoke(json!({"a": 1})))
        .await
        .expect("invocation");
    assert_eq!(out.output, Output::Invoke(Ok(json!({"echo": {"a": 1}}))));
}
