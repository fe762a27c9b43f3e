//! data-pipeline/process-data under wasmtime, on the repository's registry
//! (workers/data-pipeline.yaml, resources.yaml): `{type, data}` messages are
//! formatted and published to data-sns, whose five subscriptions' filter
//! policies route each record to its queue; bad messages fail alone. Then
//! the routed messages are handed to the five send-data entries (one
//! component) and read back from the embedded event log.

mod common;

use std::collections::BTreeMap;

use common::message;
use serde_json::{json, Value};
use usher_engine::{BatchMessage, Input, Output};
use usher_testing::TestHost;

const WORKER: &str = "data-pipeline/process-data";

fn registry() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../workers")
}

fn batch(out: &Output) -> &usher_engine::BatchOutcome {
    match out {
        Output::Batch(b) => b,
        other => panic!("not a batch outcome: {other:?}"),
    }
}

fn data(t: &str, data: Value) -> String {
    json!({"type": t, "data": data}).to_string()
}

/// One valid message of each type, plus bad ones.
fn messages() -> Vec<BatchMessage> {
    vec![
        message(
            "campaign",
            data(
                "CAMPAIGN",
                json!({"id": "c1", "slug": "tour", "name": "Tour", "status": "OPEN",
            "opensAt": "2026-12-01T10:00:00Z", "closesAt": "2026-12-10T10:00:00Z"}),
            ),
        ),
        message(
            "market",
            data(
                "MARKET",
                json!({"id": "m1", "campaignId": "c1", "eventId": "e1",
            "eventName": "Night", "venue": "Arena", "selectionCount": 10, "waitlistCount": 2}),
            ),
        ),
        message(
            "mapping",
            data(
                "EVENT_MAPPING",
                json!({"campaignId": "c1", "marketId": "m1", "eventId": "e1"}),
            ),
        ),
        message(
            "registration",
            data(
                "REGISTRATION",
                json!({"campaignId": "c1", "globalUserId": "u1", "marketId": "m1",
            "version": 1, "createdAt": "2026-12-02T10:00:00Z", "updatedAt": "2026-12-02T10:00:00Z", "country": "US"}),
            ),
        ),
        message(
            "registered",
            data(
                "REGISTERED_MARKET",
                json!({"campaignId": "c1", "marketId": "m1",
            "globalUserId": "u1", "registeredAt": "2026-12-02T10:00:00Z"}),
            ),
        ),
        message("garbage", "{{".into()),
        message("unknown", data("ORDER", json!({}))),
        message("no-data", json!({"type": "MARKET"}).to_string()),
        message(
            "bad-time",
            data(
                "REGISTERED_MARKET",
                json!({"campaignId": "c1", "marketId": "m1",
            "globalUserId": "u1", "registeredAt": "soon"}),
            ),
        ),
    ]
}

async fn drain(host: &TestHost, queue: &str) -> Vec<BatchMessage> {
    let received = host
        .embedded
        .queues()
        .receive(queue, 10, None)
        .await
        .expect("receive");
    received
        .into_iter()
        .map(|r| BatchMessage {
            message_id: r.message_id,
            body: r.body,
            attributes: r.attributes,
            receive_count: r.receive_count,
        })
        .collect()
}

#[tokio::test]
async fn records_fan_out_by_type_and_reach_their_kafka_topics() {
    let host = TestHost::builder()
        .registry_dir(registry())
        .build()
        .expect("test host");
    let out = host
        .invoke(WORKER, Input::Batch(messages()))
        .await
        .expect("invocation");
    let result = batch(&out.output);
    let mut failures = result.failures.clone();
    failures.sort();
    assert_eq!(failures, ["bad-time", "garbage", "no-data", "unknown"]);
    assert_eq!(host.calls("topic", "publish-batch").len(), 1);
    // The reason of each refused message is in the worker's log.
    let log: String = host
        .calls("log", "write")
        .iter()
        .map(|c| c.request.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(log.contains("unknown type `ORDER`"), "{log}");
    assert!(
        log.contains("`registeredAt` is not an RFC 3339 time"),
        "{log}"
    );

    // data-sns routed one record to each queue, by its `type` attribute.
    let routes = [
        (
            "campaign-queue",
            "CAMPAIGN",
            "data-pipeline/send-campaigns",
            "prd2011.dmnd.campaigns",
            "c1",
        ),
        (
            "market-queue",
            "MARKET",
            "data-pipeline/send-markets",
            "prd2011.dmnd.markets",
            "c1/m1",
        ),
        (
            "evt-mapping-queue",
            "EVENT_MAPPING",
            "data-pipeline/send-event-mappings",
            "prd2011.dmnd.event-mappings",
            "c1/m1",
        ),
        (
            "registration-queue",
            "REGISTRATION",
            "data-pipeline/send-registrations",
            "prd2011.dmnd.registrations",
            "c1/u1",
        ),
        (
            "reg-markets-queue",
            "REGISTERED_MARKET",
            "data-pipeline/send-registered-markets",
            "prd2011.dmnd.registered-markets",
            "c1/m1/u1",
        ),
    ];
    let mut bodies = BTreeMap::new();
    for (queue, t, send_worker, topic, key) in routes {
        let routed = drain(&host, queue).await;
        assert_eq!(routed.len(), 1, "{queue}: {routed:?}");
        assert!(
            routed[0]
                .attributes
                .contains(&("type".to_string(), t.to_string())),
            "{queue}: {:?}",
            routed[0].attributes
        );
        bodies.insert(t, routed[0].body.clone());
        // The send-data entry of that queue produces it to its topic.
        let out = host
            .invoke(send_worker, Input::Batch(routed.clone()))
            .await
            .expect("send-data");
        assert!(
            batch(&out.output).failures.is_empty(),
            "{send_worker}: {:?}",
            out.output
        );
        let records = host
            .embedded
            .events()
            .read(topic, 0, 10)
            .await
            .expect("read");
        assert_eq!(records.len(), 1, "{topic}");
        assert_eq!(records[0].key.as_deref(), Some(key));
        assert_eq!(records[0].value, routed[0].body.as_bytes());
    }
    let market: Value = serde_json::from_str(&bodies["MARKET"]).expect("json");
    assert_eq!(
        market,
        json!({"campaignId": "c1", "marketId": "m1", "eventId": "e1", "eventName": "Night",
               "venue": "Arena", "selectionCount": 10, "waitlistCount": 2})
    );
    let registration: Value = serde_json::from_str(&bodies["REGISTRATION"]).expect("json");
    assert_eq!(registration["createdAt"], "2026-12-02T10:00:00.000Z");
    assert_eq!(registration["locale"], Value::Null);
}
