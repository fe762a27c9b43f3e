//! AWS sample events fed to the Lambda handler with the real components on
//! embedded backends; replies checked field by field. The `example-*.json`
//! fixtures are AWS's documented sample events (as kept in
//! aws-lambda-rust-runtime's `lambda-events/src/fixtures/`).

mod common;

use common::{fixture, start, Fixture};
use serde_json::{json, Value};
use usher_capabilities::TableBackend;
use usher_trigger_lambda::{LambdaConfig, LambdaHost};

fn entry(user: &str, version: u64, flagged: bool) -> Value {
    json!({
        "PK": format!("ENTRY#c1#{user}"), "SK": "ENTRY", "campaignId": "c1", "globalUserId": user,
        "entry": {"firstName": "Ada", "zip": "10001"}, "verdict": "PENDING",
        "needsReplication": flagged, "version": version,
        "createdAt": "2026-11-01T00:00:00Z", "updatedAt": format!("2026-11-01T00:00:{version:02}Z"),
    })
}

/// A host serving replication/save-entries, with a flagged entry of u1 in
/// the demand table (keep the fixture alive).
async fn save_entries_with_a_flagged_entry() -> (Fixture, common::Running) {
    let fx = Fixture::new();
    let run = start(&fx.config("replication/save-entries")).await;
    run.embedded
        .tables()
        .put("demand-table", entry("u1", 1, true), None)
        .await
        .expect("seed");
    (fx, run)
}

/// u1's entry was replicated: the Entry Service was called and the flag cleared.
async fn assert_replicated(run: &common::Running) {
    assert!(!run.services.calls().is_empty());
    let item = run
        .embedded
        .tables()
        .get("demand-table", &json!({"PK": "ENTRY#c1#u1", "SK": "ENTRY"}))
        .await
        .expect("get")
        .expect("the entry");
    assert_eq!(item["needsReplication"], json!(false));
}

#[tokio::test]
async fn sqs_partial_failure_reports_the_failed_message_id() {
    let (_fx, run) = save_entries_with_a_flagged_entry().await;

    let reply = run
        .host
        .handle(fixture("sqs-save-entries.json"))
        .await
        .expect("a partial batch response");
    assert_eq!(
        reply,
        json!({"batchItemFailures": [{"itemIdentifier": "2e1424d4-f796-459a-8184-9c92662be6da"}]})
    );
    // The valid message was replicated: the Entry Service was called and the flag cleared.
    assert_replicated(&run).await;

    // Success: an empty list.
    let mut ok = fixture("sqs-save-entries.json");
    ok["Records"].as_array_mut().expect("records").truncate(1);
    let reply = run.host.handle(ok).await.expect("reply");
    assert_eq!(reply, json!({"batchItemFailures": []}));
}

#[tokio::test]
async fn sqs_batch_whose_every_message_failed_is_an_invocation_error() {
    let fx = Fixture::new();
    let run = start(&fx.config("replication/save-entries")).await;
    let mut event = fixture("sqs-save-entries.json");
    event["Records"].as_array_mut().expect("records").remove(0);
    let err = run
        .host
        .handle(event)
        .await
        .expect_err("whole batch failed");
    assert_eq!(err.error_type, "BatchFailed");
    assert!(
        err.message.contains("every one of the 1 records failed"),
        "{err}"
    );
    assert_eq!(
        err.to_json(),
        json!({"errorType": "BatchFailed", "errorMessage": err.message})
    );
}

async fn queued_bodies(run: &common::Running) -> Vec<Value> {
    run.embedded
        .queues()
        .list("save-entries", 100)
        .await
        .expect("list")
        .into_iter()
        .map(|m| serde_json::from_str(&m.body).expect("body"))
        .collect()
}

#[tokio::test]
async fn dynamodb_stream_records_are_converted_to_plain_json() {
    let fx = Fixture::new();
    let run = start(&fx.config("replication/enqueue-entries")).await;
    let reply = run
        .host
        .handle(fixture("dynamodb-stream.json"))
        .await
        .expect("reply");
    assert_eq!(reply, json!({"batchItemFailures": []}));
    let bodies = queued_bodies(&run).await;
    // The flagged INSERT and the REMOVE are enqueued; the cleared MODIFY is not.
    let seqs: Vec<&str> = bodies
        .iter()
        .map(|b| b["sequenceNumber"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        seqs,
        [
            "4421584500000000017450439091",
            "4421584500000000017450439093"
        ]
    );
    assert_eq!(bodies[0]["eventName"], "INSERT");
    assert_eq!(bodies[0]["table"], "demand-table");
    assert_eq!(
        bodies[0]["keys"],
        json!({"PK": "ENTRY#c1#u1", "SK": "ENTRY"})
    );
    assert_eq!(bodies[0]["newImage"], entry("u1", 1, true));
    assert_eq!(bodies[0]["timestampMs"], json!(1_790_000_000_000u64));
    assert_eq!(bodies[1]["eventName"], "REMOVE");
    assert_eq!(bodies[1]["oldImage"], entry("u3", 1, false));
}

#[tokio::test]
async fn dynamodb_records_carried_by_kinesis_answer_by_kinesis_sequence_number() {
    let fx = Fixture::new();
    let run = start(&fx.config("replication/enqueue-entries")).await;
    let reply = run
        .host
        .handle(fixture("kinesis-dynamodb.json"))
        .await
        .expect("reply");
    assert_eq!(reply, json!({"batchItemFailures": []}));
    let bodies = queued_bodies(&run).await;
    assert_eq!(bodies.len(), 2);
    assert_eq!(
        bodies[0]["sequenceNumber"],
        "49590338271490256608559692538361571095921575989136588898"
    );
    assert_eq!(bodies[0]["newImage"], entry("u1", 1, true));
    assert_eq!(bodies[0]["timestampMs"], json!(1_790_000_000_123u64));
    assert_eq!(bodies[1]["eventName"], "REMOVE");

    // A record whose data is not a DynamoDB change record is reported by
    // its sequence number; the record before it goes to the worker.
    let mut bad = fixture("kinesis-dynamodb.json");
    bad["Records"][1]["kinesis"]["data"] = json!("bm90IGpzb24=");
    let reply = run
        .host
        .handle(bad)
        .await
        .expect("a partial batch response");
    assert_eq!(
        reply,
        json!({"batchItemFailures": [{"itemIdentifier": "49590338271490256608559692540925702759324208523137515618"}]})
    );
    let bodies = queued_bodies(&run).await;
    assert_eq!(bodies.len(), 3);
    assert_eq!(
        bodies[2]["sequenceNumber"],
        "49590338271490256608559692538361571095921575989136588898"
    );
}

/// A host serving replication/enqueue-entries (keep the fixture alive).
async fn enqueue_entries() -> (Fixture, common::Running) {
    let fx = Fixture::new();
    let run = start(&fx.config("replication/enqueue-entries")).await;
    (fx, run)
}

/// The sequence numbers of the changes enqueued so far, in order.
async fn queued_sequence_numbers(run: &common::Running) -> Vec<Value> {
    queued_bodies(run)
        .await
        .iter()
        .map(|b| b["sequenceNumber"].clone())
        .collect()
}

/// The sequence numbers of the records of an event, in order.
fn sequence_numbers(event: &Value) -> Vec<String> {
    event["Records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            r["kinesis"]["sequenceNumber"]
                .as_str()
                .or_else(|| r["dynamodb"]["SequenceNumber"].as_str())
                .expect("a sequence number")
                .to_string()
        })
        .collect()
}

fn item_failures(reply: &Value) -> Vec<String> {
    reply["batchItemFailures"]
        .as_array()
        .expect("batchItemFailures")
        .iter()
        .map(|f| f["itemIdentifier"].as_str().expect("id").to_string())
        .collect()
}

#[tokio::test]
async fn aws_sample_kinesis_event_fails_each_record_by_sequence_number() {
    // AWS's sample Kinesis event: its data ("Hello World") is not a DynamoDB
    // change record. Every record is reported, the worker is not invoked and
    // the invocation does not fail.
    let (_fx, run) = enqueue_entries().await;
    let event = fixture("example-kinesis-event.json");
    let reply = run
        .host
        .handle(event.clone())
        .await
        .expect("no invocation error");
    assert_eq!(
        item_failures(&reply),
        [
            "49568167373333333333333333333333333333333333333333333333",
            "49568167373333333334444444444444444444444444444444444444"
        ]
    );
    assert_eq!(item_failures(&reply), sequence_numbers(&event));
    assert!(queued_bodies(&run).await.is_empty());
    assert!(run.host.live_version().is_some(), "the host keeps serving");
}

#[tokio::test]
async fn a_bad_kinesis_record_in_the_middle_fails_alone_and_is_retried_with_those_after_it() {
    let (_fx, run) = enqueue_entries().await;
    // Two good DynamoDB-in-Kinesis records with AWS's sample record between
    // them (its sequence number set between theirs, as in one shard).
    let mut bad = fixture("example-kinesis-event.json")["Records"][0].clone();
    let bad_seq = "49590338271490256608559692539000000000000000000000000000";
    bad["kinesis"]["sequenceNumber"] = json!(bad_seq);
    let mut event = fixture("kinesis-dynamodb.json");
    event["Records"]
        .as_array_mut()
        .expect("records")
        .insert(1, bad);
    let seqs = sequence_numbers(&event);
    assert!(seqs[0] < seqs[1] && seqs[1] < seqs[2], "{seqs:?}");

    let reply = run.host.handle(event.clone()).await.expect("reply");
    assert_eq!(item_failures(&reply), [bad_seq]);
    // The good ones went to the worker (both are replicated changes).
    let sent = queued_sequence_numbers(&run).await;
    assert_eq!(sent, [json!(seqs[0]), json!(seqs[2])]);

    // Lambda checkpoints before the lowest failed sequence number and
    // retries from it: the bad record and the one after it come again. The
    // bad one fails again (until the mapping's retries run out); the one
    // after it is given to the worker a second time (at least once).
    let mut retry = event;
    retry["Records"].as_array_mut().expect("records").remove(0);
    let reply = run.host.handle(retry).await.expect("reply");
    assert_eq!(item_failures(&reply), [bad_seq]);
    let sent = queued_sequence_numbers(&run).await;
    assert_eq!(sent, [json!(seqs[0]), json!(seqs[2]), json!(seqs[2])]);
}

#[tokio::test]
async fn aws_sample_dynamodb_event_is_read_and_a_bad_record_fails_alone() {
    let (_fx, run) = enqueue_entries().await;
    // AWS's sample (binary values, sets, lists, maps, NULL): read, and not
    // replicated (its items are not flagged entries).
    let sample = fixture("example-dynamodb-event.json");
    let reply = run.host.handle(sample.clone()).await.expect("reply");
    assert_eq!(reply, json!({"batchItemFailures": []}));
    assert!(queued_bodies(&run).await.is_empty());

    // A direct DynamoDB stream batch: good records and, in the middle, one
    // whose eventName is not a change. Only that one fails; the others are
    // replicated.
    let mut event = fixture("dynamodb-stream.json");
    let records = event["Records"].as_array_mut().expect("records");
    let mut bad = sample["Records"][0].clone();
    bad["eventName"] = json!("UPSERT");
    bad["dynamodb"]["SequenceNumber"] = json!("4421584500000000017450439092");
    records[1] = bad;
    let reply = run.host.handle(event).await.expect("reply");
    assert_eq!(item_failures(&reply), ["4421584500000000017450439092"]);
    let sent = queued_sequence_numbers(&run).await;
    assert_eq!(
        sent,
        [
            json!("4421584500000000017450439091"),
            json!("4421584500000000017450439093")
        ]
    );
}

#[tokio::test]
async fn sqs_messages_that_cannot_be_read_fail_alone_by_message_id() {
    let (_fx, run) = save_entries_with_a_flagged_entry().await;
    // The good message of the fixture, and AWS's sample message twice made
    // unreadable: no body, then attributes that are not SQS's.
    let mut event = fixture("sqs-save-entries.json");
    let records = event["Records"].as_array_mut().expect("records");
    records.truncate(1);
    let sample = fixture("example-sqs-event.json")["Records"][0].clone();
    let mut no_body = sample.clone();
    no_body["messageId"] = json!("no-body");
    no_body.as_object_mut().expect("object").remove("body");
    let mut bad_attributes = sample;
    bad_attributes["messageId"] = json!("bad-attributes");
    bad_attributes["messageAttributes"]["Attribute1"] = json!("not an attribute");
    records.insert(0, no_body);
    records.push(bad_attributes);

    let reply = run
        .host
        .handle(event)
        .await
        .expect("a partial batch response");
    assert_eq!(item_failures(&reply), ["no-body", "bad-attributes"]);
    // The good message was replicated.
    assert_replicated(&run).await;

    // Nothing readable: every message reported, no invocation error.
    let sample = fixture("example-sqs-event.json");
    let mut unreadable = sample.clone();
    unreadable["Records"][0]
        .as_object_mut()
        .expect("object")
        .remove("body");
    let reply = run.host.handle(unreadable).await.expect("reply");
    assert_eq!(item_failures(&reply), ["MessageID_1"]);

    // AWS's sample message itself is read (its Binary attribute is not
    // carried) and goes to the worker, which refuses the body: its only
    // message failed, so the invocation fails and Lambda retries the batch.
    let err = run
        .host
        .handle(sample)
        .await
        .expect_err("every message failed");
    assert_eq!(err.error_type, "BatchFailed");
}

#[tokio::test]
async fn step_functions_payloads_and_typed_errors() {
    let fx = Fixture::new();
    let run = start(&fx.config("testing/echo")).await;
    let payload = fixture("stepfunctions-payload.json");
    let reply = run.host.handle(payload.clone()).await.expect("reply");
    assert_eq!(reply, payload);
    let err = run
        .host
        .handle(json!({"fail": "market m3 is closed"}))
        .await
        .expect_err("typed error");
    assert_eq!(err.error_type, "Requested");
    assert_eq!(err.message, "market m3 is closed");
}

#[tokio::test]
async fn appsync_resolver_events_pass_arguments_identity_source_and_info() {
    let fx = Fixture::new();
    let run = start(&fx.config("testing/echo-arguments")).await;
    let event = fixture("appsync-resolver.json");
    let reply = run.host.handle(event.clone()).await.expect("reply");
    assert_eq!(reply["arguments"], event["arguments"]);
    assert_eq!(reply["identity"], event["identity"]);
    assert_eq!(reply["source"], Value::Null);
    assert_eq!(reply["info"]["fieldName"], "echoArguments");
    assert_eq!(reply["info"]["parentTypeName"], "Query");
    assert_eq!(
        reply["info"]["selectionSetList"],
        json!(["eligible", "reason"])
    );

    // Only the resolver's fields reach the worker.
    let mut extra = event.clone();
    extra["fail"] = json!("not a resolver field");
    let reply = run.host.handle(extra).await.expect("reply");
    assert_eq!(reply.get("fail"), None);

    // Another field is refused.
    let mut other = event;
    other["info"]["fieldName"] = json!("getEntries");
    let err = run.host.handle(other).await.expect_err("wrong field");
    assert_eq!(err.error_type, "InvalidEvent");
    assert!(
        err.message
            .contains("resolves Query.getEntries, but the worker resolves Query.echoArguments"),
        "{err}"
    );
}

#[tokio::test]
async fn a_worker_stopped_at_its_deadline_or_memory_limit_is_an_invocation_error() {
    let fx = Fixture::new();
    let run = start(&fx.config("testing/spin-forever")).await;
    let err = run.host.handle(json!({})).await.expect_err("deadline");
    assert_eq!(err.error_type, "WorkerTimeout");
    assert!(err.message.contains("200 ms deadline"), "{err}");

    let run = start(&fx.config("testing/memory-bomb")).await;
    let err = run.host.handle(json!({})).await.expect_err("memory");
    assert_eq!(err.error_type, "WorkerMemoryLimit", "{err}");
    // The host keeps serving.
    let err = run.host.handle(json!({})).await.expect_err("memory again");
    assert_eq!(err.error_type, "WorkerMemoryLimit");
}

#[tokio::test]
async fn mismatching_and_malformed_events_are_invalid_events_not_panics() {
    let fx = Fixture::new();
    let sqs = start(&fx.config("replication/save-entries")).await;
    let stream = start(&fx.config("replication/enqueue-entries")).await;
    let cases: Vec<(&LambdaHost, Value, &str)> = vec![
        (
            &sqs.host,
            fixture("dynamodb-stream.json"),
            "the records come from `aws:dynamodb`, but the worker takes SQS messages",
        ),
        (
            &sqs.host,
            json!("just a string"),
            "an SQS event needs a `Records` list",
        ),
        (
            &sqs.host,
            json!({"Records": [{"body": "x", "eventSource": "aws:sqs"}]}),
            "record 0: an SQS message needs a messageId",
        ),
        (
            &stream.host,
            fixture("sqs-save-entries.json"),
            "the records come from `aws:sqs`, but the worker takes DynamoDB stream records",
        ),
        (
            &stream.host,
            json!({"Records": [{"eventSource": "aws:dynamodb", "eventName": "INSERT"}]}),
            "record 0: not a DynamoDB stream record",
        ),
        (
            &stream.host,
            json!({"Records": [{"eventID": "1", "eventName": "INSERT", "awsRegion": "us-east-1", "eventSource": "aws:dynamodb", "dynamodb": {"Keys": {"PK": {"S": "a"}}, "SizeBytes": 1}}]}),
            "needs dynamodb.SequenceNumber",
        ),
        (
            &stream.host,
            fixture("eventbridge-scheduled.json"),
            "a stream event needs a `Records` list",
        ),
    ];
    for (host, event, expected) in cases {
        let err = host.handle(event).await.expect_err(expected);
        assert_eq!(err.error_type, "InvalidEvent", "{err}");
        assert!(
            err.message.contains(expected),
            "{err} (expected: {expected})"
        );
        assert!(err.message.starts_with("replication/"), "{err}");
    }
}

#[tokio::test]
async fn init_errors_are_clear() {
    let fx = Fixture::new();
    let registry = common::registry(&fx.config("testing/echo"));
    let init = |config: LambdaConfig| {
        let registry = registry.clone();
        async move {
            let embedded =
                usher_backend_embedded::Embedded::in_memory(&registry.resources).expect("embedded");
            let backends = embedded.backends(
                usher_testing::FakeServices::ok(),
                std::sync::Arc::new(usher_capabilities::NoCodec),
                std::sync::Arc::new(usher_engine::LocalInvoker::new()),
            );
            LambdaHost::init(
                &config,
                usher_testing::shared_engine(),
                registry,
                std::sync::Arc::new(backends),
            )
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
        }
    };

    let err = init(fx.config("replication/no-such-worker")).await;
    assert!(
        err.starts_with("unknown worker `replication/no-such-worker`: the registry has "),
        "{err}"
    );
    // http-workers are served too (function URL / API Gateway events).
    let err = init(fx.config("services/entry-service")).await;
    assert_eq!(err, "", "an http-worker starts under usher lambda");

    // A component whose bytes do not match their digest.
    let spec = registry.worker("testing/echo").expect("echo");
    let path = fx
        .store
        .join("components")
        .join(format!("sha256-{}.wasm", spec.component.sha256));
    let mut bytes = std::fs::read(&path).expect("component");
    bytes.push(0);
    std::fs::write(&path, bytes).expect("tamper");
    let err = init(fx.config("testing/echo")).await;
    assert!(err.contains("the file was modified or corrupted"), "{err}");

    let missing = LambdaConfig::from_lookup(|_| None).expect_err("no worker");
    assert_eq!(
        missing.to_string(),
        "USHER_WORKER is not set: it names what the function serves"
    );
    let bad = LambdaConfig::from_lookup(|n| match n {
        "USHER_WORKER" => Some("testing/echo".into()),
        "USHER_RELEASE_CHECK_SECS" => Some("soon".into()),
        _ => None,
    })
    .expect_err("bad interval");
    assert!(
        bad.to_string().contains("`soon` is not a whole number"),
        "{bad}"
    );
}

#[tokio::test]
async fn an_http_worker_answers_function_url_requests() {
    let fx = Fixture::new();
    let run = start(&fx.config("services/entry-service")).await;
    let request = |method: &str, path: &str| {
        json!({
            "version": "2.0",
            "rawPath": path,
            "rawQueryString": "",
            "headers": {"accept": "application/json"},
            "requestContext": {"http": {"method": method, "path": path}},
            "isBase64Encoded": false
        })
    };
    // A UTF-8 body is answered as text (base64 only when it is not UTF-8).
    let decode = |reply: &Value| -> Value {
        serde_json::from_str(reply["body"].as_str().expect("body")).expect("a JSON body")
    };
    // Under the worker's route (as `usher up` serves it) and at the URL's root.
    for path in [
        "/services/entries/campaigns/c-url/entries",
        "/campaigns/c-url/entries",
    ] {
        let reply = run.host.handle(request("GET", path)).await.expect("reply");
        assert_eq!(reply["statusCode"], 200, "{path}: {reply}");
        assert_eq!(reply["isBase64Encoded"], false);
        assert!(decode(&reply).is_object(), "{path}: {reply}");
    }
    let reply = run
        .host
        .handle(request("GET", "/no/such/route"))
        .await
        .expect("reply");
    assert_eq!(reply["statusCode"], 404, "{reply}");
    assert!(decode(&reply)["error"].is_string(), "{reply}");
}

/// A function URL event (payload 2.0) for `method path` with headers.
fn function_url_event(method: &str, path: &str, headers: Value, body: Option<&str>) -> Value {
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": headers,
        "requestContext": {"http": {"method": method, "path": path, "sourceIp": "127.0.0.1"}},
        "body": body, "isBase64Encoded": false,
    })
}

#[tokio::test]
async fn function_url_requests_are_verified_as_under_usher_up() {
    let fx = Fixture::new();
    let config = fx.config("exports/export-api");
    let run = start(&config).await;
    let registry = common::registry(&config);
    let spec = registry.worker("exports/export-api").expect("spec");
    let verifiers = usher_auth::Verifiers::for_workers([spec], &usher_auth::MapSecrets::default())
        .expect("verifier");
    let verifier = verifiers.get("exports/export-api").expect("protected");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = json!({"sub": "ana", "permissions": ["REPORT"], "campaigns": ["c1"]});
    let token = verifier.dev_token(&claims, 300, now).expect("token");
    let expired = verifier
        .dev_token(&json!({"sub": "ana", "exp": now - 60}), 300, now)
        .expect("token");
    let body = r#"{"exportType":"markets"}"#;

    // No token, a forged claims header, an expired token: 401 before the worker.
    for headers in [
        json!({}),
        json!({"x-usher-claims": claims.to_string()}),
        json!({"authorization": format!("Bearer {expired}")}),
    ] {
        let reply = run
            .host
            .handle(function_url_event(
                "POST",
                "/campaigns/c1/exports",
                headers.clone(),
                Some(body),
            ))
            .await
            .expect("reply");
        assert_eq!(reply["statusCode"], 401, "{headers}: {reply}");
        assert_eq!(reply["headers"]["www-authenticate"], "Bearer");
        let error: Value =
            serde_json::from_str(reply["body"].as_str().expect("body")).expect("json");
        assert!(
            error["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("unauthorized: ")),
            "{error}"
        );
    }
    assert!(run.services.calls().is_empty(), "the worker never ran");

    // A valid token: the worker gets the claims and creates the job.
    let reply = run
        .host
        .handle(function_url_event(
            "POST",
            "/campaigns/c1/exports",
            json!({"authorization": format!("Bearer {token}"), "content-type": "application/json"}),
            Some(body),
        ))
        .await
        .expect("reply");
    assert_eq!(reply["statusCode"], 202, "{reply}");
    let job: Value = serde_json::from_str(reply["body"].as_str().expect("body")).expect("json");
    assert_eq!(
        (job["state"].as_str(), job["requestedBy"].as_str()),
        (Some("PENDING"), Some("ana"))
    );
    // Another campaign: the worker's 403.
    let reply = run
        .host
        .handle(function_url_event(
            "GET",
            "/campaigns/c2/exports",
            json!({"authorization": format!("Bearer {token}")}),
            None,
        ))
        .await
        .expect("reply");
    assert_eq!(reply["statusCode"], 403, "{reply}");
}
