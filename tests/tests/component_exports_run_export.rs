//! exports/run-export under wasmtime on the embedded backends: a PENDING
//! job is claimed (fencing 1), its CSV streamed through the objects writer
//! to `exports/<c>/<id>/attempt-1.csv` and the job FINISHED with its row
//! count and size; a source failing mid-export FAILS the job with the
//! reason and leaves no file; a job held by a live lease is left alone.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use usher_capabilities::{ObjectBackend, TableBackend};
use usher_engine::{BatchMessage, Input, Output};
use usher_testing::{components, json_response, FakeServices, TestHost};

const RESOURCES: &str = "{ tables: { exports: { partition_key: PK, sort_key: SK }, draws: { partition_key: PK, sort_key: SK } }, queues: { run-export: {} }, buckets: [exports], services: { entries: { url: 'http://e.test' }, campaigns: { url: 'http://c.test' }, users: { url: 'http://u.test' }, codes: { url: 'http://k.test' } } }";
const WORKER: &str = "trigger: { queue: run-export }\ngrants: { tables: [exports, draws], buckets: [exports], services: [entries, campaigns, users, codes] }\nsettings: { page_size: 100, location_prefix: 'file:///data/objects/exports/' }";

fn job(id: &str, state: &str, lease: Option<i64>) -> Value {
    let mut job = json!({"PK": "CAMPAIGN#c1", "SK": format!("EXPORT#{id}"), "exportId": id, "campaignId": "c1",
           "exportType": "entries", "marketId": "m1", "state": state, "fingerprint": format!("f{id}"), "requestedBy": "u",
           "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-01T00:00:00.000Z",
           "version": 1, "fencing": 0, "attempts": 0});
    if let Some(until) = lease {
        job["lease"] = json!({"owner": "other", "expiresAtMs": until});
    }
    job
}

/// 250 entries of market m1 in pages of 100; `fail_after` fails the page
/// after that cursor with a 500.
fn services(fail_after: Arc<Mutex<Option<String>>>) -> Arc<FakeServices> {
    FakeServices::with(move |r| {
        if r.path == "/campaigns/c1" {
            return Ok(json_response(
                200,
                r#"{"id":"c1","fields":[{"name":"size"}]}"#,
            ));
        }
        if r.path.starts_with("/markets/m1/entries") {
            let fail = fail_after.lock().map(|f| f.clone()).unwrap_or(None);
            if let Some(f) = fail {
                if r.path.contains(&format!("after={f}")) {
                    return Ok(json_response(
                        500,
                        r#"{"error":"the entries table is down"}"#,
                    ));
                }
            }
            let start = r
                .path
                .split("after=u")
                .nth(1)
                .and_then(|n| n.parse::<usize>().ok())
                .map_or(0, |n| n + 1);
            let end = (start + 100).min(250);
            let entries: Vec<Value> = (start..end)
                .map(|i| json!({"globalUserId": format!("u{i:04}"), "email": format!("f{i}@x.io"), "version": 1, "entry": {"size": "M, \"tall\""}}))
                .collect();
            let next = if end < 250 {
                json!(format!("u{:04}", end - 1))
            } else {
                Value::Null
            };
            return Ok(json_response(
                200,
                &json!({"entries": entries, "next": next}).to_string(),
            ));
        }
        Ok(json_response(404, r#"{"error":"no"}"#))
    })
}

fn message(id: &str) -> BatchMessage {
    BatchMessage {
        message_id: format!("m-{id}"),
        body: json!({"campaignId": "c1", "exportId": id}).to_string(),
        attributes: vec![],
        receive_count: 1,
    }
}

async fn run(host: &TestHost, id: &str) -> Vec<String> {
    let out = host
        .invoke("exports/run-export", Input::Batch(vec![message(id)]))
        .await
        .expect("invocation");
    match out.output {
        Output::Batch(b) => b.failures,
        other => panic!("{other:?}"),
    }
}

async fn stored(host: &TestHost, id: &str) -> Value {
    host.embedded
        .tables()
        .get(
            "exports",
            &json!({"PK": "CAMPAIGN#c1", "SK": format!("EXPORT#{id}")}),
        )
        .await
        .expect("get")
        .expect("job")
}

#[tokio::test]
async fn a_job_is_streamed_to_one_file_and_finished() {
    let fail = Arc::new(Mutex::new(None));
    let host = TestHost::builder()
        .resources(RESOURCES)
        .worker(&components::EXPORTS_RUN_EXPORT, WORKER)
        .services(services(fail.clone()))
        .build()
        .expect("test host");
    host.embedded
        .tables()
        .put("exports", job("j1", "PENDING", None), None)
        .await
        .expect("put");
    assert!(run(&host, "j1").await.is_empty());
    let done = stored(&host, "j1").await;
    assert_eq!(done["state"], "FINISHED", "{done}");
    assert_eq!(
        (
            done["rowCount"].as_u64(),
            done["fencing"].as_u64(),
            done["attempts"].as_u64()
        ),
        (Some(250), Some(1), Some(1))
    );
    let key = "exports/c1/j1/attempt-1.csv";
    assert_eq!(done["file"]["key"], key);
    assert_eq!(
        done["file"]["location"],
        format!("file:///data/objects/exports/{key}")
    );
    assert!(done.get("lease").is_none());
    let bytes = host
        .embedded
        .objects()
        .get("exports", key)
        .await
        .expect("get")
        .expect("file");
    assert_eq!(done["size"].as_u64(), Some(bytes.len() as u64));
    let text = String::from_utf8(bytes).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "campaignId,marketId,globalUserId,email,version,createdAt,updatedAt,field:size"
    );
    assert_eq!(lines[1], "c1,m1,u0000,f0@x.io,1,,,\"M, \"\"tall\"\"\"");
    assert_eq!(lines.len(), 251);
    // Redelivered: the job is FINISHED, nothing is written again.
    assert!(run(&host, "j1").await.is_empty());
    assert_eq!(stored(&host, "j1").await["version"], done["version"]);
    let files = host
        .embedded
        .objects()
        .list("exports", "exports/c1/j1/", 10)
        .await
        .expect("list");
    assert_eq!(files.len(), 1);
}

#[tokio::test]
async fn a_source_failing_mid_export_fails_the_job_and_leaves_no_file() {
    let fail = Arc::new(Mutex::new(Some("u0099".to_string())));
    let host = TestHost::builder()
        .resources(RESOURCES)
        .worker(&components::EXPORTS_RUN_EXPORT, WORKER)
        .services(services(fail))
        .build()
        .expect("test host");
    let tables = host.embedded.tables();
    tables
        .put("exports", job("j2", "PENDING", None), None)
        .await
        .expect("put");
    tables
        .put("exports", job("j3", "TRIGGERED", Some(i64::MAX / 2)), None)
        .await
        .expect("put");
    assert!(run(&host, "j2").await.is_empty());
    let failed = stored(&host, "j2").await;
    assert_eq!(failed["state"], "FAILED", "{failed}");
    let reason = failed["error"].as_str().unwrap_or_default();
    assert!(
        reason.contains("answered 500") && reason.contains("the entries table is down"),
        "{reason}"
    );
    assert!(failed.get("file").is_none());
    let files = host
        .embedded
        .objects()
        .list("exports", "exports/c1/", 10)
        .await
        .expect("list");
    assert!(files.is_empty(), "{files:?}");
    // A job held by a live lease is left alone.
    assert!(run(&host, "j3").await.is_empty());
    assert_eq!(stored(&host, "j3").await["version"], 1);
}
