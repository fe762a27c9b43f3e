//! testing/echo: invoke-worker round trip, typed errors, logging with the
//! correlation id, and a fresh instance per invocation.

use serde_json::json;
use usher_engine::{Input, InvokeFailure, Output};
use usher_testing::{components, TestHost};

fn host() -> TestHost {
    TestHost::builder()
        .worker(&components::TESTING_ECHO, "trigger: { invoke: {} }")
        .build()
        .expect("test host")
}

#[tokio::test]
async fn echoes_its_payload() {
    let host = host();
    let payload = json!({"a": [1, 2, 3], "b": "ü"});
    let out = host
        .invoke("testing/echo", Input::Invoke(payload.clone()))
        .await
        .expect("invocation");
    assert_eq!(out.output, Output::Invoke(Ok(payload)));
}

#[tokio::test]
async fn typed_errors_reach_the_caller() {
    let host = host();
    let out = host
        .invoke("testing/echo", Input::Invoke(json!({"fail": "nope"})))
        .await
        .expect("invocation");
    assert_eq!(
        out.output,
        Output::Invoke(Err(InvokeFailure {
            kind: "Requested".into(),
            message: "nope".into()
        }))
    );
}

#[tokio::test]
async fn logs_carry_the_message_and_fields() {
    let host = host();
    host.invoke("testing/echo", Input::Invoke(json!({"log": "hello"})))
        .await
        .expect("invocation");
    let logs = host.calls("log", "write");
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].request["message"], "hello");
}

#[tokio::test]
async fn a_batch_event_for_an_invoke_worker_is_refused_clearly() {
    let host = host();
    let err = host
        .invoke("testing/echo", Input::Batch(vec![]))
        .await
        .expect_err("wrong input");
    assert!(err.to_string().contains("invoke-worker"), "{err}");
}
