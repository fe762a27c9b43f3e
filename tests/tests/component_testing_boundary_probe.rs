//! `testing/boundary-probe` under wasmtime (its own WIT world, not a
//! platform worker): every encoding of the same batch writes the same items
//! back, the pass-through hands back the very bytes, and a malformed
//! message is refused, not written.

use serde_json::{json, Value};
use usher_testing::boundary_probe::{Batch, ProbeComponent, Variant};
use usher_testing::components;

fn body(i: usize) -> String {
    let pk = format!("ENTRY#c1#u{i}");
    let image = json!({"PK": pk, "SK": "ENTRY", "campaignId": "c1", "globalUserId": format!("u{i}"),
        "entry": {"firstName": "Ada", "zip": "10001", "tags": [i, "x"]}, "verdict": "PENDING",
        "needsReplication": true, "version": i + 1, "createdAt": "2026-11-01T00:00:00Z", "updatedAt": "2026-11-01T00:00:01Z"});
    let mut change = json!({"table": "demand-table", "eventName": "MODIFY", "keys": {"PK": pk, "SK": "ENTRY"},
        "sequenceNumber": i.to_string(), "timestampMs": 17});
    // Every third change is a REMOVE: no new image, nothing written.
    if i % 3 != 2 {
        change["newImage"] = image;
    }
    change.to_string()
}

fn bodies(n: usize) -> Vec<String> {
    (0..n).map(body).collect()
}

#[test]
fn every_encoding_writes_the_same_items() {
    let probe = ProbeComponent::new(&components::TESTING_BOUNDARY_PROBE.bytes()).expect("compile");
    let mut instance = probe.instantiate().expect("instantiate");
    let batch = Batch::new(bodies(10)).expect("batch");

    let reference = instance.run(Variant::Json, &batch).expect("json").items;
    assert_eq!(reference.len(), 7, "three of the ten are REMOVEs");
    for (n, item) in reference.iter().enumerate() {
        assert_eq!(item["needsReplication"], json!(false), "item {n}");
        assert_eq!(item["entry"]["zip"], json!("10001"));
    }
    let first: Value = serde_json::from_str(&body(0)).expect("json");
    let mut expected = first["newImage"].clone();
    expected["needsReplication"] = json!(false);
    assert_eq!(reference[0], expected);

    for variant in Variant::ALL {
        // Twice: the instance is reused across calls.
        for _ in 0..2 {
            let written = instance.run(variant, &batch).expect("run");
            if variant == Variant::PassThrough {
                assert!(written.items.is_empty());
                let raw: Vec<String> = written
                    .raw
                    .into_iter()
                    .map(|b| String::from_utf8(b).expect("utf-8"))
                    .collect();
                assert_eq!(raw, bodies(10), "{}", variant.label());
            } else {
                assert!(written.raw.is_empty());
                assert_eq!(written.items, reference, "{}", variant.label());
            }
        }
    }
}

#[test]
fn a_large_batch_crosses_in_every_encoding() {
    let probe = ProbeComponent::new(&components::TESTING_BOUNDARY_PROBE.bytes()).expect("compile");
    let mut instance = probe.instantiate().expect("instantiate");
    let batch = Batch::new(bodies(500)).expect("batch");
    let reference = instance.run(Variant::Json, &batch).expect("json").items;
    assert_eq!(reference.len(), 334);
    for variant in Variant::ALL {
        let written = instance.run(variant, &batch).expect("run");
        assert_eq!(
            written.items.len() + written.raw.len(),
            if variant == Variant::PassThrough {
                500
            } else {
                334
            },
            "{}",
            variant.label()
        );
    }
}

#[test]
fn a_malformed_message_is_refused_and_nothing_is_written() {
    let probe = ProbeComponent::new(&components::TESTING_BOUNDARY_PROBE.bytes()).expect("compile");
    let mut instance = probe.instantiate().expect("instantiate");
    let mut messages = bodies(3);
    messages[1] = r#"{"table": "demand-table", "eventName": "MODIFY"}"#.into();
    // The host cannot even build the typed or compact forms of it.
    assert!(Batch::new(messages.clone()).is_err());
    // As JSON text the guest refuses it, before writing anything.
    let good = Batch::new(bodies(3)).expect("batch");
    let e = instance
        .run_json_text(&messages)
        .expect_err("a malformed message fails the batch");
    assert!(e.to_string().contains("missing field"), "{e}");
    // The instance still serves the next batch.
    assert_eq!(
        instance
            .run(Variant::Json, &good)
            .expect("json")
            .items
            .len(),
        2
    );
}
