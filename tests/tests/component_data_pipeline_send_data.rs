//! data-pipeline/send-data under wasmtime, on the repository's registry: one
//! component behind five worker entries; valid records reach the embedded
//! event log with their key and headers, a record that fails its JSON Schema
//! goes to its queue's dead-letter queue with the reason and never to the
//! event log, and a message without a `type` fails alone.

mod common;

use serde_json::{json, Value};
use usher_engine::{BatchMessage, Input, Output};
use usher_testing::TestHost;

fn registry() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../workers")
}

fn record(id: &str, t: &str, body: &Value) -> BatchMessage {
    BatchMessage {
        message_id: id.into(),
        body: body.to_string(),
        attributes: vec![("type".into(), t.into())],
        receive_count: 1,
    }
}

fn market(id: &str) -> Value {
    json!({"campaignId": "c1", "marketId": id, "eventId": "e1", "eventName": "N", "venue": "V",
           "selectionCount": 3, "waitlistCount": 0})
}

#[tokio::test]
async fn the_five_entries_run_one_component() {
    let host = TestHost::builder()
        .registry_dir(registry())
        .build()
        .expect("test host");
    let registry = host.runtime.registry();
    let entries: Vec<_> = registry
        .workers
        .values()
        .filter(|w| w.component.name == "data-pipeline/send-data")
        .collect();
    assert_eq!(entries.len(), 5);
    let digests: std::collections::BTreeSet<_> =
        entries.iter().map(|w| w.component.sha256.clone()).collect();
    assert_eq!(digests.len(), 1, "one build pinned five times");
}

#[tokio::test]
async fn valid_records_are_produced_and_schema_failures_go_to_the_dead_letter_queue() {
    let host = TestHost::builder()
        .registry_dir(registry())
        .build()
        .expect("test host");
    let mut bad = market("m3");
    bad["selectionCount"] = json!("many");
    let mut untyped = record("untyped", "MARKET", &market("m4"));
    untyped.attributes.clear();
    let out = host
        .invoke(
            "data-pipeline/send-markets",
            Input::Batch(vec![
                record("a", "MARKET", &market("m1")),
                record("bad", "MARKET", &bad),
                record("b", "MARKET", &market("m2")),
                untyped,
            ]),
        )
        .await
        .expect("invocation");
    let Output::Batch(result) = &out.output else {
        panic!("{:?}", out.output)
    };
    assert_eq!(result.failures, ["untyped"]);

    let records = host
        .embedded
        .events()
        .read("prd2011.dmnd.markets", 0, 10)
        .await
        .expect("read");
    let keys: Vec<_> = records
        .iter()
        .map(|r| r.key.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        keys,
        ["c1/m1", "c1/m2"],
        "the bad record never reaches Kafka"
    );
    assert!(records[0]
        .headers
        .contains(&("type".to_string(), "MARKET".to_string())));

    let dead = host
        .embedded
        .queues()
        .receive("market-queue-dlq", 10, None)
        .await
        .expect("receive");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, bad.to_string());
    let error = dead[0]
        .attributes
        .iter()
        .find(|(k, _)| k == "error")
        .map(|(_, v)| v.clone())
        .expect("an error attribute");
    assert!(error.contains("/selectionCount"), "{error}");
    assert!(error.contains("markets.json"), "{error}");
    assert_eq!(host.calls("events", "produce").len(), 1);
}
