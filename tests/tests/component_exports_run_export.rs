//! exports/run-export under wasmtime (made by `just new-worker`).

use usher_engine::{BatchMessage, Input, Output};
use usher_testing::{components, TestHost};

#[tokio::test]
async fn a_message_that_is_not_json_fails_alone() {
    let host = TestHost::builder()
        .resources("queues: { run-export: {} }")
        .worker(
            &components::EXPORTS_RUN_EXPORT,
            "trigger: { queue: run-export }",
        )
        .build()
        .expect("test host");
    let message = |id: &str, body: &str| BatchMessage {
        message_id: id.into(),
        body: body.into(),
        attributes: vec![],
        receive_count: 1,
    };
    let out = host
        .invoke(
            "exports/run-export",
            Input::Batch(vec![message("a", "{}"), message("b", "nope")]),
        )
        .await
        .expect("invocation");
    match out.output {
        Output::Batch(b) => assert_eq!(b.failures, vec!["b".to_string()]),
        other => panic!("{other:?}"),
    }
}
