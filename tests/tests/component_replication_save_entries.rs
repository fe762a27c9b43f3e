//! replication/save-entries under wasmtime, on the repository's registry
//! entry, with embedded tables and a scripted Entry Service.

mod common;

use common::{change, entry, key_of, message};
use serde_json::{json, Value};
use usher_capabilities::TableBackend;
use usher_engine::{Input, Output};
use usher_testing::{json_response, FakeServices, TestHost};

fn host(services: std::sync::Arc<FakeServices>) -> TestHost {
    TestHost::builder()
        .registry_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../workers"))
        .services(services)
        .build()
        .expect("test host")
}

async fn seed(host: &TestHost, items: &[Value]) {
    let tables = host.embedded.tables();
    for item in items {
        tables
            .put("demand-table", item.clone(), None)
            .await
            .expect("seed");
    }
}

async fn item(host: &TestHost, key: &Value) -> Option<Value> {
    host.embedded
        .tables()
        .get("demand-table", key)
        .await
        .expect("get")
}

fn batch(out: &Output) -> &usher_engine::BatchOutcome {
    match out {
        Output::Batch(b) => b,
        other => panic!("not a batch outcome: {other:?}"),
    }
}

#[tokio::test]
async fn replicates_valid_changes_drops_stale_ones_and_fails_only_malformed_messages() {
    let services = FakeServices::ok();
    let host = host(services.clone());
    let fresh = entry("c1", "u1", 2, true);
    let stale_now = entry("c1", "u2", 5, true); // the table moved on to version 5
    let stale_image = entry("c1", "u2", 4, true);
    let removed = entry("c1", "u3", 1, false); // not in the table any more: a valid delete
    seed(&host, &[fresh.clone(), stale_now.clone()]).await;

    let input = Input::Batch(vec![
        message(
            "m-fresh",
            change("MODIFY", Some(&fresh), None, 1).to_string(),
        ),
        message(
            "m-stale",
            change("MODIFY", Some(&stale_image), None, 2).to_string(),
        ),
        message(
            "m-remove",
            change("REMOVE", None, Some(&removed), 3).to_string(),
        ),
        message("m-garbage", "{not json".to_string()),
    ]);
    let out = host
        .invoke("replication/save-entries", input)
        .await
        .expect("invocation");
    let result = batch(&out.output);
    assert_eq!(result.failures, vec!["m-garbage".to_string()]);
    assert_eq!(
        (
            result.count.received,
            result.count.processed,
            result.count.failed
        ),
        (4, 3, 1)
    );

    let upserts = services.calls_to("/entries/batch-upsert");
    assert_eq!(upserts.len(), 1);
    let body: Value =
        serde_json::from_str(upserts[0].body.as_deref().unwrap_or("{}")).expect("json");
    let entries = body["entries"].as_array().expect("entries");
    assert_eq!(
        entries.len(),
        1,
        "only the fresh change is replicated: {body}"
    );
    assert_eq!(entries[0]["globalUserId"], "u1");

    let deletes = services.calls_to("/entries/batch-delete");
    assert_eq!(deletes.len(), 1);
    let body: Value =
        serde_json::from_str(deletes[0].body.as_deref().unwrap_or("{}")).expect("json");
    assert_eq!(
        body["keys"],
        // With the version deleted at the source (the old image's).
        json!([{"campaignId": "c1", "globalUserId": "u3", "version": 1}])
    );

    // The flag is cleared on the replicated item only.
    assert_eq!(
        item(&host, &key_of(&fresh)).await.expect("item")["needsReplication"],
        false
    );
    assert_eq!(
        item(&host, &key_of(&stale_now)).await.expect("item")["needsReplication"],
        true
    );
    // Every Entry Service call carried the invocation's correlation id.
    assert!(services
        .calls()
        .iter()
        .all(|c| c.correlation_id == out.correlation_id));
}

#[tokio::test]
async fn entry_service_failure_fails_that_chunk_and_keeps_the_flag() {
    let services = FakeServices::with(|req| {
        Ok(if req.path == "/entries/batch-upsert" {
            json_response(503, r#"{"error":"busy"}"#)
        } else {
            json_response(200, "{}")
        })
    });
    let host = host(services.clone());
    let a = entry("c1", "a", 1, true);
    let b = entry("c1", "b", 1, true);
    seed(&host, &[a.clone(), b.clone()]).await;
    let out = host
        .invoke(
            "replication/save-entries",
            Input::Batch(vec![
                message("ma", change("INSERT", Some(&a), None, 1).to_string()),
                message("mb", change("INSERT", Some(&b), None, 2).to_string()),
            ]),
        )
        .await
        .expect("invocation");
    let mut failures = batch(&out.output).failures.clone();
    failures.sort();
    assert_eq!(failures, vec!["ma".to_string(), "mb".to_string()]);
    assert_eq!(
        item(&host, &key_of(&a)).await.expect("item")["needsReplication"],
        true
    );
}

#[tokio::test]
async fn upserts_go_in_chunks_of_25_and_failed_score_refresh_goes_to_retry_queue() {
    // The Entry Service takes every upsert but answers that no score
    // refresh succeeded (`scoreFailures`: every fan of the chunk).
    let services = FakeServices::with(|req| {
        let body: Value =
            serde_json::from_str(req.body.as_deref().unwrap_or("{}")).unwrap_or_default();
        let fans: Vec<Value> = body["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| json!({"campaignId": e["campaignId"], "globalUserId": e["globalUserId"]}))
            .collect();
        Ok(json_response(
            200,
            &json!({"upserted": fans.len(), "ignored": 0, "scoreFailures": fans}).to_string(),
        ))
    });
    let host = host(services.clone());
    let items: Vec<Value> = (0..60)
        .map(|i| entry("c9", &format!("u{i}"), 1, true))
        .collect();
    seed(&host, &items).await;
    let messages = items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            message(
                &format!("m{i}"),
                change("INSERT", Some(it), None, i as u64).to_string(),
            )
        })
        .collect();
    let out = host
        .invoke("replication/save-entries", Input::Batch(messages))
        .await
        .expect("invocation");
    assert!(batch(&out.output).failures.is_empty(), "{:?}", out.output);

    let sizes: Vec<usize> = services
        .calls_to("/entries/batch-upsert")
        .iter()
        .map(|c| {
            serde_json::from_str::<Value>(c.body.as_deref().unwrap_or("{}")).expect("json")
                ["entries"]
                .as_array()
                .map_or(0, Vec::len)
        })
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), 60);
    assert!(sizes.iter().all(|s| *s <= 25), "chunks {sizes:?}");
    // The score refresh is folded into the upserts.
    assert!(services.calls_to("/scores/refresh").is_empty());
    assert!(services.calls_to("/entries/batch-upsert").iter().all(|c| {
        serde_json::from_str::<Value>(c.body.as_deref().unwrap_or("{}")).expect("json")
            ["refreshScores"]
            == true
    }));

    let sent: usize = host
        .calls("queue", "send-batch")
        .iter()
        .filter(|c| c.resource == "retry-score")
        .map(|c| c.request["messages"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(
        sent, 60,
        "every fan whose score refresh failed is queued for retry"
    );
    for it in &items {
        assert_eq!(
            item(&host, &key_of(it)).await.expect("item")["needsReplication"],
            false
        );
    }
}

#[tokio::test]
async fn a_newer_write_keeps_its_flag_when_an_older_change_is_replicated() {
    // The item is written again (version 3) after the change (version 2) was
    // validated; the conditional flag clear must not touch the newer write.
    let services = FakeServices::ok();
    let host = host(services.clone());
    let v2 = entry("c1", "race", 2, true);
    seed(&host, std::slice::from_ref(&v2)).await;
    let tables = host.embedded.tables();
    let newer = entry("c1", "race", 3, true);
    services.set(move |req| {
        if req.path == "/entries/batch-upsert" {
            // The fan edits the entry while the Entry Service call is in flight.
            let tables = tables.clone();
            let newer = newer.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("rt");
                rt.block_on(tables.put("demand-table", newer, None))
                    .expect("put");
            })
            .join()
            .expect("writer thread");
        }
        Ok(json_response(200, "{}"))
    });
    let out = host
        .invoke(
            "replication/save-entries",
            Input::Batch(vec![message(
                "m",
                change("MODIFY", Some(&v2), None, 1).to_string(),
            )]),
        )
        .await
        .expect("invocation");
    assert!(batch(&out.output).failures.is_empty());
    let now = item(&host, &key_of(&v2)).await.expect("item");
    assert_eq!(now["version"], 3);
    assert_eq!(
        now["needsReplication"], true,
        "the newer write still needs replication"
    );
}

#[tokio::test]
async fn sqs_event_fixture_is_accepted() {
    let host = host(FakeServices::ok());
    seed(&host, &[entry("c1", "u1", 2, true)]).await;
    let out = host
        .invoke_json(
            "replication/save-entries",
            usher_testing::fixture("replication/save-entries.sqs.json"),
        )
        .await
        .expect("invocation");
    assert_eq!(batch(&out.output).failures, Vec::<String>::new());
}

#[tokio::test]
async fn an_invocation_that_cannot_run_fails_every_message_of_the_batch() {
    // 1 MiB is less than the component's initial memory: the instance is
    // refused, and the whole batch is reported failed (nothing is lost).
    let host = TestHost::builder()
        .resources("tables: { demand-table: { partition_key: PK, sort_key: SK } }\nqueues: { save-entries: {}, retry-score: {} }\nservices: { entries: { url: 'http://127.0.0.1:9' } }")
        .worker(
            &usher_testing::components::REPLICATION_SAVE_ENTRIES,
            "trigger: { queue: save-entries }\nlimits: { memory_mb: 1 }\ngrants: { tables: [demand-table], queues: [retry-score], services: [entries] }",
        )
        .build()
        .expect("test host");
    let e = entry("c1", "u1", 1, true);
    let input = Input::Batch(vec![
        message("a", change("INSERT", Some(&e), None, 1).to_string()),
        message("b", change("INSERT", Some(&e), None, 2).to_string()),
    ]);
    let err = host
        .invoke("replication/save-entries", input.clone())
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("memory limit"), "{err}");
    let out = host
        .runtime
        .invoke_or_fail_all("replication/save-entries", &input, None)
        .await
        .expect("an answer");
    let result = batch(&out.output);
    assert_eq!(result.failures, vec!["a".to_string(), "b".to_string()]);
    assert_eq!((result.count.received, result.count.failed), (2, 2));
}
