//! The WIT compatibility promise: component binaries built against an older
//! `usher:platform@0.1.x` run unchanged on this host.
//!
//! `tests/fixtures/compat/0.1.2/` holds the release 0.1.2 binaries of the
//! replication workers, the Entry Service and `testing/echo`, exactly as they
//! were built (against `usher:platform@0.1.0`) before 0.1.1 added
//! `services.call-many`. Never rebuild them: they stand for components
//! already deployed. Each test runs one of them on this host and checks what
//! it did, as the component's own host test does.

mod common;

use common::{change, entry, key_of, message};
use serde_json::{json, Value};
use usher_capabilities::TableBackend;
use usher_engine::{ChangeRecord, HttpRequest, Input, Output};
use usher_testing::components::Component;
use usher_testing::{FakeServices, TestHost};

macro_rules! fixture {
    ($name:literal) => {
        Component {
            name: $name,
            path: concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/fixtures/compat/0.1.2/",
                $name,
                ".wasm"
            ),
        }
    };
}

const ENQUEUE_ENTRIES: Component = fixture!("replication/enqueue-entries");
const SAVE_ENTRIES: Component = fixture!("replication/save-entries");
const RETRY_SCORE: Component = fixture!("replication/retry-score");
const ENTRY_SERVICE: Component = fixture!("services/entry-service");
const ECHO: Component = fixture!("testing/echo");

const RESOURCES: &str = "\
tables:
  demand-table: { partition_key: PK, sort_key: SK }
  entries: { partition_key: PK, sort_key: SK }
queues:
  save-entries: {}
  retry-score: {}
services:
  entries: { url: \"http://127.0.0.1:9\" }
";

/// The imports of a fixture name the old package version: the point of the
/// test is that this host (a newer 0.1.x) still links them.
#[test]
fn the_fixtures_were_built_against_an_older_package_version() {
    for c in [
        ENQUEUE_ENTRIES,
        SAVE_ENTRIES,
        RETRY_SCORE,
        ENTRY_SERVICE,
        ECHO,
    ] {
        let bytes = c.bytes();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains("usher:platform/") && text.contains("@0.1.0"),
            "{} should import usher:platform@0.1.0",
            c.name
        );
        assert!(
            !text.contains(&format!("@{}", usher_world::PLATFORM_VERSION)),
            "{} should not know this host's package version {}",
            c.name,
            usher_world::PLATFORM_VERSION
        );
    }
}

#[tokio::test]
async fn an_old_invoke_worker_answers() {
    let host = TestHost::builder()
        .worker(&ECHO, "trigger: { invoke: {} }")
        .build()
        .expect("the 0.1.2 echo links on this host");
    let out = host
        .invoke("testing/echo", Input::Invoke(json!({"hello": "old world"})))
        .await
        .expect("invocation");
    match out.output {
        Output::Invoke(Ok(v)) => assert_eq!(v["hello"], "old world", "{v}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_old_stream_worker_enqueues_flagged_changes() {
    let host = TestHost::builder()
        .resources(RESOURCES)
        .worker(
            &ENQUEUE_ENTRIES,
            "trigger: { stream: { table: demand-table } }\ngrants: { queues: [save-entries] }\nsettings: { queue: save-entries }",
        )
        .build()
        .expect("the 0.1.2 enqueue-entries links on this host");
    let flagged = entry("c1", "u1", 1, true);
    let cleared = entry("c1", "u2", 1, false);
    let changes: Vec<ChangeRecord> = [
        change("INSERT", Some(&flagged), None, 10),
        change("MODIFY", Some(&cleared), Some(&flagged), 11),
    ]
    .into_iter()
    .map(|v| serde_json::from_value(v).expect("change record"))
    .collect();
    let out = host
        .invoke("replication/enqueue-entries", Input::Stream(changes))
        .await
        .expect("invocation");
    match &out.output {
        Output::Stream(s) => assert!(s.failures.is_empty(), "{s:?}"),
        other => panic!("{other:?}"),
    }
    let sent: Vec<Value> = host
        .calls("queue", "send-batch")
        .iter()
        .flat_map(|c| {
            c.request["messages"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|m| serde_json::from_str(m["body"].as_str().unwrap_or("null")).expect("json"))
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["sequenceNumber"], "10");
}

#[tokio::test]
async fn an_old_batch_worker_replicates_and_clears_the_flag() {
    let services = FakeServices::ok();
    let host = TestHost::builder()
        .resources(RESOURCES)
        .worker(
            &SAVE_ENTRIES,
            "trigger: { queue: save-entries }\ngrants: { tables: [demand-table], queues: [retry-score], services: [entries] }\nsettings: { table: demand-table, service: entries, retry_queue: retry-score }",
        )
        .services(services.clone())
        .build()
        .expect("the 0.1.2 save-entries links on this host");
    let fresh = entry("c1", "u1", 2, true);
    host.embedded
        .tables()
        .put("demand-table", fresh.clone(), None)
        .await
        .expect("seed");
    let out = host
        .invoke(
            "replication/save-entries",
            Input::Batch(vec![
                message("m-1", change("MODIFY", Some(&fresh), None, 1).to_string()),
                message("m-bad", "{not json".to_string()),
            ]),
        )
        .await
        .expect("invocation");
    match &out.output {
        Output::Batch(b) => assert_eq!(b.failures, vec!["m-bad".to_string()], "{b:?}"),
        other => panic!("{other:?}"),
    }
    // The old binary calls the Entry Service one request at a time (`call`).
    let upserts = services.calls_to("/entries/batch-upsert");
    assert_eq!(upserts.len(), 1, "{:?}", services.calls());
    assert!(upserts[0]
        .body
        .as_deref()
        .unwrap_or("")
        .contains("\"globalUserId\":\"u1\""));
    let item = host
        .embedded
        .tables()
        .get("demand-table", &key_of(&fresh))
        .await
        .expect("get")
        .expect("the item");
    assert_eq!(item["needsReplication"], false, "{item}");
}

#[tokio::test]
async fn an_old_batch_worker_calls_its_service_per_message() {
    let services = FakeServices::ok();
    let host = TestHost::builder()
        .resources(RESOURCES)
        .worker(
            &RETRY_SCORE,
            "trigger: { queue: retry-score }\ngrants: { services: [entries] }\nsettings: { service: entries }",
        )
        .services(services.clone())
        .build()
        .expect("the 0.1.2 retry-score links on this host");
    let out = host
        .invoke(
            "replication/retry-score",
            Input::Batch(vec![message(
                "r-1",
                json!({"campaignId": "c1", "globalUserId": "u1"}).to_string(),
            )]),
        )
        .await
        .expect("invocation");
    match &out.output {
        Output::Batch(b) => assert!(b.failures.is_empty(), "{b:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(services.calls_to("/scores/refresh").len(), 1);
}

#[tokio::test]
async fn an_old_http_worker_serves_its_contract() {
    let host = TestHost::builder()
        .resources(RESOURCES)
        .worker(
            &ENTRY_SERVICE,
            "trigger: { http: { route: /entries-service } }\ngrants: { tables: [entries] }\nsettings: { table: entries }",
        )
        .build()
        .expect("the 0.1.2 entry-service links on this host");
    let body = json!({"entries": [{"campaignId": "c1", "globalUserId": "u1", "version": 3, "marketId": "m1", "points": 7}]});
    let out = host
        .invoke(
            "services/entry-service",
            Input::Http(HttpRequest {
                method: "POST".into(),
                path: "/entries/batch-upsert".into(),
                query: String::new(),
                headers: vec![("content-type".into(), "application/json".into())],
                body: body.to_string().into_bytes(),
            }),
        )
        .await
        .expect("invocation");
    let Output::Http(response) = out.output else {
        panic!("not an http answer")
    };
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    let stored = host
        .embedded
        .tables()
        .get("entries", &json!({"PK": "CAMPAIGN#c1", "SK": "FAN#u1"}))
        .await
        .expect("get")
        .expect("the upserted entry is stored");
    assert_eq!(stored["version"], 3, "{stored}");
    assert_eq!(stored["marketId"], "m1", "{stored}");
}
