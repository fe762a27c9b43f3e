//! testing/memory-bomb: growing past the memory limit is refused, reported as
//! such, and the host serves the next invocation.

use serde_json::json;
use usher_engine::{Input, InvokeError, Output};
use usher_testing::{components, TestHost};

#[tokio::test]
async fn memory_growth_past_the_limit_is_refused_and_the_host_keeps_serving() {
    let host = TestHost::builder()
        .worker(
            &components::TESTING_MEMORY_BOMB,
            "trigger: { invoke: {} }\nlimits: { memory_mb: 32 }",
        )
        .worker(&components::TESTING_ECHO, "trigger: { invoke: {} }")
        .build()
        .expect("test host");
    for _ in 0..3 {
        let err = host
            .invoke("testing/memory-bomb", Input::Invoke(json!({})))
            .await
            .expect_err("refused");
        match err {
            usher_testing::TestError::Invoke(InvokeError::MemoryLimit {
                limit_bytes,
                requested_bytes,
            }) => {
                assert_eq!(limit_bytes, 32 << 20);
                assert!(requested_bytes > limit_bytes);
            }
            other => panic!("expected a memory limit error, got {other}"),
        }
    }
    let out = host
        .invoke("testing/echo", Input::Invoke(json!("still here")))
        .await
        .expect("echo");
    assert_eq!(out.output, Output::Invoke(Ok(json!("still here"))));
}
