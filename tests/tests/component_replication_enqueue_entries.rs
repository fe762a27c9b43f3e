//! replication/enqueue-entries under wasmtime: filtering and per-record failures.

mod common;

use common::{change, entry};
use usher_engine::{ChangeRecord, Input, Output};
use usher_testing::{FakeServices, TestHost};

fn host() -> TestHost {
    TestHost::builder()
        .registry_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../workers"))
        .services(FakeServices::ok())
        .build()
        .expect("test host")
}

fn record(v: serde_json::Value) -> ChangeRecord {
    serde_json::from_value(v).expect("change record")
}

fn sent_bodies(host: &TestHost) -> Vec<serde_json::Value> {
    host.calls("queue", "send-batch")
        .iter()
        .flat_map(|c| {
            c.request["messages"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|m| serde_json::from_str(m["body"].as_str().unwrap_or("null")).expect("body json"))
        .collect()
}

#[tokio::test]
async fn keeps_flagged_changes_and_removals_and_drops_the_rest() {
    let host = host();
    let flagged = entry("c1", "u1", 1, true);
    let cleared = entry("c1", "u2", 1, false);
    let removed = entry("c1", "u3", 1, false);
    let changes = vec![
        record(change("INSERT", Some(&flagged), None, 10)),
        record(change("MODIFY", Some(&cleared), Some(&flagged), 11)),
        record(change("REMOVE", None, Some(&removed), 12)),
        record(
            serde_json::json!({"table": "demand-table", "eventName": "INSERT", "keys": {"PK": "CAMPAIGN#c1", "SK": "META"}, "newImage": {"PK": "CAMPAIGN#c1", "SK": "META"}, "sequenceNumber": "13"}),
        ),
    ];
    let out = host
        .invoke("replication/enqueue-entries", Input::Stream(changes))
        .await
        .expect("invocation");
    match &out.output {
        Output::Stream(s) => assert!(s.failures.is_empty(), "{s:?}"),
        other => panic!("{other:?}"),
    }
    let sent = sent_bodies(&host);
    let seqs: Vec<&str> = sent
        .iter()
        .map(|b| b["sequenceNumber"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        seqs,
        vec!["10", "12"],
        "the flagged insert and the removal are replicated"
    );
    assert!(host
        .calls("queue", "send-batch")
        .iter()
        .all(|c| c.resource == "save-entries"));
}

#[tokio::test]
async fn the_stream_fixture_is_accepted() {
    let host = host();
    let out = host
        .invoke_json(
            "replication/enqueue-entries",
            usher_testing::fixture("replication/enqueue-entries.stream.json"),
        )
        .await
        .expect("invocation");
    assert_eq!(out.output, Output::Stream(Default::default()));
    assert_eq!(sent_bodies(&host).len(), 2);
}

#[tokio::test]
async fn a_queue_outside_the_grant_fails_every_kept_record() {
    // Same component, but configured to send to a queue it is not granted.
    let host = TestHost::builder()
        .resources("queues: { save-entries: {}, elsewhere: {} }")
        .worker(
            &usher_testing::components::REPLICATION_ENQUEUE_ENTRIES,
            "trigger: { invoke: {} }\ngrants: { queues: [save-entries] }\nsettings: { queue: elsewhere }",
        )
        .build();
    // An invoke trigger does not fit a stream-worker: the host refuses to start.
    let err = host.err().expect("refused").to_string();
    assert!(
        err.contains("replication/enqueue-entries") && err.contains("stream-worker"),
        "{err}"
    );

    let host = TestHost::builder()
        .resources("tables: { demand-table: { partition_key: PK, sort_key: SK } }\nqueues: { save-entries: {}, elsewhere: {} }")
        .worker(
            &usher_testing::components::REPLICATION_ENQUEUE_ENTRIES,
            "trigger: { stream: { table: demand-table } }\ngrants: { queues: [save-entries] }\nsettings: { queue: elsewhere }",
        )
        .build()
        .expect("host");
    let flagged = entry("c1", "u1", 1, true);
    let out = host
        .invoke(
            "replication/enqueue-entries",
            Input::Stream(vec![record(change("INSERT", Some(&flagged), None, 7))]),
        )
        .await
        .expect("invocation");
    assert_eq!(
        out.output,
        Output::Stream(usher_engine::StreamOutcome {
            failures: vec!["7".into()]
        })
    );
    let calls = host.calls("queue", "send-batch");
    assert!(
        calls[0]
            .outcome
            .as_ref()
            .is_err_and(|e| e.contains("denied")),
        "{calls:?}"
    );
}
