//! testing/counter: no state leaks between invocations (a fresh instance each time).

use serde_json::json;
use usher_engine::{Input, Output};
use usher_testing::{components, TestHost};

#[tokio::test]
async fn every_invocation_starts_from_a_fresh_instance() {
    let host = TestHost::builder()
        .worker(&components::TESTING_COUNTER, "trigger: { invoke: {} }")
        .build()
        .expect("test host");
    for i in 0..5 {
        let out = host
            .invoke("testing/counter", Input::Invoke(json!({"i": i})))
            .await
            .expect("invocation");
        assert_eq!(
            out.output,
            Output::Invoke(Ok(json!({"calls": 1, "remembered": 1}))),
            "invocation {i}"
        );
    }
}
