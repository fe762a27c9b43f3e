//! testing/table-probe: table grants at call time, conditional writes, bad keys.

use serde_json::{json, Value};
use usher_engine::{Input, Output};
use usher_testing::{components, TestHost};

async fn probe(host: &TestHost, payload: Value) -> Value {
    match host
        .invoke("testing/table-probe", Input::Invoke(payload))
        .await
        .expect("invocation")
        .output
    {
        Output::Invoke(Ok(v)) => v,
        other => panic!("{other:?}"),
    }
}

fn host() -> TestHost {
    TestHost::builder()
        .resources(
            "tables: { mine: { partition_key: PK, sort_key: SK }, secrets: { partition_key: PK } }",
        )
        .worker(
            &components::TESTING_TABLE_PROBE,
            "trigger: { invoke: {} }\ngrants: { tables: [mine] }",
        )
        .build()
        .expect("test host")
}

#[tokio::test]
async fn granted_table_works_and_conditions_hold() {
    let host = host();
    let item = json!({"PK": "a", "SK": "b", "n": 1});
    assert_eq!(
        probe(
            &host,
            json!({"op": "put", "table": "mine", "item": item, "condition": "not-exists"})
        )
        .await,
        json!({"ok": true})
    );
    let again = probe(
        &host,
        json!({"op": "put", "table": "mine", "item": item, "condition": "not-exists"}),
    )
    .await;
    assert!(
        again["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("condition-failed")),
        "{again}"
    );
    let got = probe(
        &host,
        json!({"op": "get", "table": "mine", "key": {"PK": "a", "SK": "b"}}),
    )
    .await;
    assert_eq!(got["item"], item);
}

#[tokio::test]
async fn a_table_outside_the_grant_is_denied_at_call_time() {
    let host = host();
    let denied = probe(
        &host,
        json!({"op": "get", "table": "secrets", "key": {"PK": "x"}}),
    )
    .await;
    assert!(
        denied["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("denied")),
        "{denied}"
    );
}

#[tokio::test]
async fn a_key_missing_its_sort_key_is_invalid() {
    let host = host();
    let bad = probe(
        &host,
        json!({"op": "get", "table": "mine", "key": {"PK": "a"}}),
    )
    .await;
    assert!(
        bad["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("invalid")),
        "{bad}"
    );
}
