//! `usher lambda` continues the sender's trace: an SQS message's
//! `traceparent` attribute becomes the parent of the event's span, so what
//! the worker does runs in that trace. Seen from outside through the
//! embedded change log, which keeps the trace context of each write. Its own
//! test binary: it installs the global tracing subscriber (the OpenTelemetry
//! layer, nothing exported).

mod common;

use common::{fixture, start, Fixture};
use serde_json::{json, Value};
use usher_capabilities::TableBackend;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn entry(version: u64) -> Value {
    json!({
        "PK": "ENTRY#c1#u1", "SK": "ENTRY", "campaignId": "c1", "globalUserId": "u1",
        "entry": {"firstName": "Ada", "zip": "10001"}, "verdict": "PENDING",
        "needsReplication": true, "version": version,
        "createdAt": "2026-11-01T00:00:00Z", "updatedAt": format!("2026-11-01T00:00:{version:02}Z"),
    })
}

/// The trace id of the newest change of u1's entry (the flag cleared).
async fn last_write_trace(run: &common::Running) -> Option<String> {
    let rows = run
        .embedded
        .change_log()
        .read("demand-table", 0, 1000)
        .await
        .expect("the change log");
    let last = rows.last().expect("a change");
    assert_eq!(
        last.new_image
            .as_ref()
            .expect("an image")
            .value()
            .expect("JSON")["needsReplication"],
        json!(false)
    );
    last.traceparent
        .as_deref()
        .map(|tp| tp.split('-').nth(1).expect("a trace id").to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqs_message_traceparent_continues_into_the_worker() {
    let _telemetry = usher_telemetry::init(&usher_telemetry::Options {
        format: usher_telemetry::LogFormat::Json,
        service_name: "test".into(),
        export_traces: false,
    })
    .expect("telemetry");
    let fx = Fixture::new();
    let run = start(&fx.config("replication/save-entries")).await;
    let one = || {
        let mut event = fixture("sqs-save-entries.json");
        event["Records"]
            .as_array_mut()
            .expect("records")
            .truncate(1);
        event
    };

    // A message sent under trace TRACE_ID: the worker's write is in it.
    run.embedded
        .tables()
        .put("demand-table", entry(1), None)
        .await
        .expect("seed");
    let mut traced = one();
    traced["Records"][0]["messageAttributes"] = json!({
        "traceparent": {"stringValue": format!("00-{TRACE_ID}-00f067aa0ba902b7-01"), "dataType": "String"},
    });
    let reply = run.host.handle(traced).await.expect("reply");
    assert_eq!(reply, json!({"batchItemFailures": []}));
    assert_eq!(last_write_trace(&run).await.as_deref(), Some(TRACE_ID));

    // Without one, the event starts a trace of its own.
    run.embedded
        .tables()
        .put("demand-table", entry(1), None)
        .await
        .expect("seed again");
    let reply = run.host.handle(one()).await.expect("reply");
    assert_eq!(reply, json!({"batchItemFailures": []}));
    let own = last_write_trace(&run)
        .await
        .expect("a trace context under the layer");
    assert_ne!(own, TRACE_ID);
}
