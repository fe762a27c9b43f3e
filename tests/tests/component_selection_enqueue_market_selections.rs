//! selection/enqueue-market-selections under wasmtime, on the repository's
//! registry entry (grants, settings, limits), with the embedded `draws`
//! table and queue and scripted Campaign, Entry and Code services.

mod selection_common;

use std::collections::BTreeSet;

use selection_common::{sent_selections, services, world};
use serde_json::{json, Value};
use usher_capabilities::TableBackend;
use usher_engine::{Input, Output};
use usher_testing::TestHost;

const WORKER: &str = "selection/enqueue-market-selections";

fn host(world: &selection_common::Shared) -> TestHost {
    TestHost::builder()
        .registry_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../workers"))
        .services(services(world))
        .build()
        .expect("test host")
}

async fn draw(host: &TestHost, payload: Value) -> Value {
    let out = host
        .invoke(WORKER, Input::Invoke(payload))
        .await
        .expect("invocation");
    match out.output {
        Output::Invoke(Ok(v)) => v,
        other => panic!("{other:?}"),
    }
}

async fn record(host: &TestHost) -> Option<Value> {
    host.embedded
        .tables()
        .get("draws", &json!({"PK": "DRAW#c1.m1", "SK": "RECORD"}))
        .await
        .expect("get")
}

#[tokio::test]
async fn draws_records_reserves_and_enqueues_and_a_re_run_repeats_it() {
    let w = world(2_600, 300, 40, 400);
    let host = host(&w);
    let payload = json!({"campaignId": "c1", "marketId": "m1"});
    let first = draw(&host, payload.clone()).await;
    assert_eq!(first["errors"], json!([]), "{first}");
    let s = &first["stats"];
    assert_eq!(
        (
            s["entries"].as_u64(),
            s["winners"].as_u64(),
            s["waitlist"].as_u64(),
            s["losers"].as_u64()
        ),
        (Some(2_600), Some(300), Some(40), Some(2_260))
    );
    assert_eq!(
        (s["batches"].as_u64(), s["enqueued"].as_u64()),
        (Some(104), Some(2_600))
    );
    let stored = record(&host).await.expect("the draw record");
    assert_eq!(stored["status"], "ENQUEUED");
    assert_eq!(stored["seed"], s["seed"]);
    assert_eq!(stored["inputDigest"], s["inputDigest"]);
    assert_eq!(stored["rule"], "usher-draw-v1");
    assert_eq!(stored["batchOrder"], "FAN");

    // Every fan once, 25 to a message, winners with distinct reserved codes.
    let sent = sent_selections(&host.calls("queue", "send-batch"));
    assert_eq!(sent.len(), 2_600);
    let fans: BTreeSet<&str> = sent
        .iter()
        .filter_map(|s| s["globalUserId"].as_str())
        .collect();
    assert_eq!(fans.len(), 2_600);
    // Cut in fan order: the messages' fans follow one another.
    assert!(sent
        .windows(2)
        .all(|w| w[0]["globalUserId"].as_str() < w[1]["globalUserId"].as_str()));
    let codes: Vec<&str> = sent.iter().filter_map(|s| s["code"].as_str()).collect();
    assert_eq!(codes.len(), 300);
    assert_eq!(codes.iter().collect::<BTreeSet<_>>().len(), 300);
    let queue = host
        .embedded
        .queues()
        .depth("save-selection")
        .await
        .expect("depth");
    assert_eq!(queue.visible, 104);
    {
        let w = w.lock().expect("world");
        assert_eq!(w.reservations.keys().collect::<Vec<_>>(), ["c1.m1#0"]);
        assert_eq!(
            w.stats
                .iter()
                .map(|s| s["status"].clone())
                .collect::<Vec<_>>(),
            [json!("PROCESSING"), json!("FINISHED")]
        );
        assert_eq!(
            w.stats[1]["expected"],
            json!({"winners": 300, "losers": 2_260, "waitlisted": 40})
        );
    }

    // Again (a Step Functions retry): the same draw, the same codes, one record.
    let second = draw(&host, payload).await;
    assert_eq!(second["errors"], json!([]), "{second}");
    assert_eq!(second["stats"]["existingRecord"], true);
    assert_eq!(
        second["stats"]["resultDigest"],
        first["stats"]["resultDigest"]
    );
    let again = sent_selections(&host.calls("queue", "send-batch"));
    assert_eq!(&again[2_600..], &again[..2_600]);
    assert_eq!(w.lock().expect("world").reservations.len(), 1);
    assert_eq!(host.calls("table", "put").len(), 1);
}

#[tokio::test]
async fn a_code_service_conflict_enqueues_nothing_and_says_why() {
    let w = world(100, 20, 0, 50);
    w.lock().expect("world").reserve_conflict = true;
    let host = host(&w);
    let answer = draw(&host, json!({"campaignId": "c1", "marketId": "m1"})).await;
    assert_eq!(
        answer["errors"][0]["reason"], "not-enough-codes",
        "{answer}"
    );
    assert!(host.calls("queue", "send-batch").is_empty());
    assert_eq!(answer["stats"]["finished"], false);
}

#[tokio::test]
async fn too_few_codes_and_no_entries_write_nothing() {
    let w = world(100, 20, 0, 19);
    let host = host(&w);
    let answer = draw(&host, json!({"campaignId": "c1", "marketId": "m1"})).await;
    assert_eq!(
        answer["errors"][0]["reason"], "not-enough-codes",
        "{answer}"
    );
    assert!(record(&host).await.is_none());
    assert!(w.lock().expect("world").stats.is_empty());

    let w = world(0, 20, 0, 50);
    let host = self::host(&w);
    let answer = draw(&host, json!({"campaignId": "c1", "marketId": "m1"})).await;
    assert_eq!(answer["errors"][0]["reason"], "no-entries", "{answer}");
    assert!(record(&host).await.is_none());
}

#[tokio::test]
async fn a_bad_payload_is_an_invalid_input_error() {
    let w = world(10, 2, 0, 5);
    let host = host(&w);
    let out = host
        .invoke(WORKER, Input::Invoke(json!({"campaignId": "c1"})))
        .await
        .expect("invocation");
    match out.output {
        Output::Invoke(Err(e)) => assert_eq!(e.kind, "InvalidInput", "{e:?}"),
        other => panic!("{other:?}"),
    }
}
