//! exports/expire-exports under wasmtime: a job whose runner's lease ran
//! out goes back to PENDING with a new run message; one claimed too often
//! is EXPIRED.

use serde_json::{json, Value};
use usher_capabilities::TableBackend;
use usher_engine::{Input, Output, Tick};
use usher_testing::{components, TestHost};

fn job(id: &str, attempts: u32) -> Value {
    json!({"PK": "CAMPAIGN#c1", "SK": format!("EXPORT#{id}"), "exportId": id, "campaignId": "c1",
           "exportType": "entries", "state": "TRIGGERED", "fingerprint": format!("f{id}"), "requestedBy": "u",
           "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-01T00:00:00.000Z",
           "version": 4, "fencing": attempts, "attempts": attempts,
           "lease": {"owner": "dead-runner", "expiresAtMs": 1000}})
}

#[tokio::test]
async fn expired_leases_are_requeued_or_expired() {
    let host = TestHost::builder()
        .resources("{ tables: { exports: { partition_key: PK, sort_key: SK } }, queues: { run-export: {} } }")
        .worker(
            &components::EXPORTS_EXPIRE_EXPORTS,
            "trigger: { schedule: { cron: '0 * * * * *' } }\ngrants: { tables: [exports], queues: [run-export] }",
        )
        .build()
        .expect("test host");
    let tables = host.embedded.tables();
    for (id, attempts) in [("a", 1), ("b", 3)] {
        tables
            .put("exports", job(id, attempts), None)
            .await
            .expect("put");
        tables
            .put("exports", json!({"PK": "ACTIVE", "SK": format!("c1#{id}"), "campaignId": "c1", "exportId": id}), None)
            .await
            .expect("index");
    }
    let out = host
        .invoke(
            "exports/expire-exports",
            Input::Scheduled(Tick {
                schedule: "exports/expire-exports".into(),
                scheduled_time: "2026-01-01T00:01:00Z".into(),
            }),
        )
        .await
        .expect("invocation");
    let summary = match out.output {
        Output::Scheduled(Ok(v)) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (summary["requeued"].clone(), summary["expired"].clone()),
        (json!(1), json!(1)),
        "{summary}"
    );
    let get = |id: &str| {
        let tables = tables.clone();
        let id = id.to_string();
        async move {
            tables
                .get(
                    "exports",
                    &json!({"PK": "CAMPAIGN#c1", "SK": format!("EXPORT#{id}")}),
                )
                .await
                .expect("get")
                .expect("job")
        }
    };
    let a = get("a").await;
    assert_eq!(
        (a["state"].as_str(), a["version"].as_u64(), a.get("lease")),
        (Some("PENDING"), Some(5), None)
    );
    let b = get("b").await;
    assert_eq!(b["state"], "EXPIRED");
    let queued = host
        .embedded
        .queues()
        .list("run-export", 10)
        .await
        .expect("list");
    assert_eq!(queued.len(), 1);
    assert!(queued[0].body.contains("\"a\""));
    assert!(tables
        .get("exports", &json!({"PK": "ACTIVE", "SK": "c1#b"}))
        .await
        .expect("get")
        .is_none());
}
