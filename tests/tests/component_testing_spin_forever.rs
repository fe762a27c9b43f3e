//! testing/spin-forever: an infinite loop is stopped within its deadline and
//! the host serves the next invocation.

use std::time::{Duration, Instant};

use serde_json::json;
use usher_engine::{Input, InvokeError, Output};
use usher_testing::{components, TestHost};

#[tokio::test]
async fn an_infinite_loop_is_stopped_at_its_deadline_and_the_host_keeps_serving() {
    let host = TestHost::builder()
        .worker(
            &components::TESTING_SPIN_FOREVER,
            "trigger: { invoke: {} }\nlimits: { timeout_ms: 200 }",
        )
        .worker(&components::TESTING_ECHO, "trigger: { invoke: {} }")
        .build()
        .expect("test host");
    let started = Instant::now();
    let err = host
        .invoke("testing/spin-forever", Input::Invoke(json!({})))
        .await
        .expect_err("stopped");
    let took = started.elapsed();
    assert!(
        matches!(
            err,
            usher_testing::TestError::Invoke(InvokeError::Deadline { timeout_ms: 200 })
        ),
        "{err}"
    );
    // Generous bound: the deadline is 200 ms; the check is that it was stopped at all, promptly.
    assert!(took < Duration::from_secs(2), "stopped after {took:?}");

    // The same worker and another one still answer.
    let err = host
        .invoke("testing/spin-forever", Input::Invoke(json!({})))
        .await
        .expect_err("stopped again");
    assert!(err.to_string().contains("200 ms deadline"), "{err}");
    let out = host
        .invoke("testing/echo", Input::Invoke(json!(1)))
        .await
        .expect("echo");
    assert_eq!(out.output, Output::Invoke(Ok(json!(1))));
}

#[tokio::test]
async fn a_stopped_batch_invocation_fails_every_record() {
    let host = TestHost::builder()
        .worker(
            &components::TESTING_SPIN_FOREVER,
            "trigger: { invoke: {} }\nlimits: { timeout_ms: 50 }",
        )
        .build()
        .expect("test host");
    let out = host
        .runtime
        .invoke_or_fail_all("testing/spin-forever", &Input::Invoke(json!({})), None)
        .await
        .expect("an answer");
    match out.output {
        Output::Invoke(Err(f)) => assert!(f.message.contains("deadline"), "{f:?}"),
        other => panic!("{other:?}"),
    }
}
