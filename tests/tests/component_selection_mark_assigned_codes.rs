//! selection/mark-assigned-codes under wasmtime (made by `just new-worker`).

use serde_json::json;
use usher_engine::{ChangeRecord, Input, Output};
use usher_testing::{components, TestHost};

#[tokio::test]
async fn every_change_is_processed() {
    let host = TestHost::builder()
        .resources("tables: { mark-assigned-codes: { partition_key: PK, sort_key: SK } }")
        .worker(
            &components::SELECTION_MARK_ASSIGNED_CODES,
            "trigger: { stream: { table: mark-assigned-codes } }",
        )
        .build()
        .expect("test host");
    let record: ChangeRecord = serde_json::from_value(json!({
        "table": "mark-assigned-codes", "eventName": "INSERT", "keys": {"PK": "a", "SK": "b"},
        "newImage": {"PK": "a", "SK": "b"}, "sequenceNumber": "1",
    }))
    .expect("change record");
    let out = host
        .invoke("selection/mark-assigned-codes", Input::Stream(vec![record]))
        .await
        .expect("invocation");
    match out.output {
        Output::Stream(s) => assert!(s.failures.is_empty(), "{s:?}"),
        other => panic!("{other:?}"),
    }
}
