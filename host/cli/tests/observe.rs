//! Observability of the real `usher up` (issue 14): one fan's entry,
//! submitted through `Mutation.submitEntry` by a caller with its own
//! `traceparent`, is one trace from that caller through submit-entry, the
//! demand-table stream and replication to the Entry Service, exported over
//! OTLP/HTTP to a receiver in this test; `/metrics`
//! answers Prometheus's text format, which `promtool check metrics`
//! accepts, with the invocations, records, queue depths, stream lag and
//! HTTP requests of that run; the JSON logs carry the trace and
//! correlation ids.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common;

use axum::body::Bytes;
use axum::routing::post;
use common::Platform;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::Value;

const CAMPAIGN: &str = "c-observe";
const MARKET: &str = "m1";
/// The caller's trace (as AppSync or a front end would send it).
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// One received span, flattened.
#[derive(Debug, Clone)]
struct Span {
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    attributes: BTreeMap<String, String>,
}

impl Span {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

type Spans = Arc<Mutex<Vec<Span>>>;

/// An OTLP/HTTP receiver (protobuf) on a free loopback port.
async fn otlp_receiver() -> (String, Spans) {
    let spans: Spans = Arc::default();
    let sink = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                let request =
                    ExportTraceServiceRequest::decode(body).expect("an OTLP trace request");
                let mut out = sink.lock().expect("lock");
                for rs in request.resource_spans {
                    for ss in rs.scope_spans {
                        for s in ss.spans {
                            let attributes = s
                                .attributes
                                .iter()
                                .map(|kv| {
                                    let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                                        Some(AnyValue::StringValue(s)) => s.clone(),
                                        Some(AnyValue::IntValue(i)) => i.to_string(),
                                        Some(AnyValue::BoolValue(b)) => b.to_string(),
                                        Some(AnyValue::DoubleValue(d)) => d.to_string(),
                                        other => format!("{other:?}"),
                                    };
                                    (kv.key.clone(), v)
                                })
                                .collect();
                            out.push(Span {
                                name: s.name,
                                trace_id: hex::encode(&s.trace_id),
                                span_id: hex::encode(&s.span_id),
                                parent: hex::encode(&s.parent_span_id),
                                attributes,
                            });
                        }
                    }
                }
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), spans)
}

/// The span of `spans` named `name` whose attribute `worker` is `worker`
/// and whose parent is `parent`.
fn child<'a>(spans: &'a [Span], parent: &Span, name: &str, worker: &str) -> Option<&'a Span> {
    spans.iter().find(|s| {
        s.parent == parent.span_id
            && s.trace_id == parent.trace_id
            && s.name == name
            && (worker.is_empty() || s.attr("worker") == Some(worker))
    })
}

/// The chain stream batch → … → the Entry Service's invocation, in one
/// trace, or a description of where it breaks.
fn chain(spans: &[Span]) -> Result<Vec<Span>, String> {
    let mut last_err = String::from("no stream_batch span of replication/enqueue-entries");
    for root in spans.iter().filter(|s| {
        s.name == "stream_batch" && s.attr("worker") == Some("replication/enqueue-entries")
    }) {
        let step = |from: &Span, name: &str, worker: &str| {
            child(spans, from, name, worker).cloned().ok_or_else(|| {
                format!(
                    "no {name} ({worker}) below {} {:?}",
                    from.name, from.attributes
                )
            })
        };
        let attempt = (|| {
            let enqueue = step(root, "invocation", "replication/enqueue-entries")?;
            let batch = step(&enqueue, "queue_batch", "replication/save-entries")?;
            let save = step(&batch, "invocation", "replication/save-entries")?;
            // save-entries → services.call(-many) capability → service_call.
            let call = spans
                .iter()
                .find(|s| {
                    s.name == "service_call"
                        && s.trace_id == save.trace_id
                        && s.attr("service") == Some("entries")
                        && spans
                            .iter()
                            .any(|cap| cap.span_id == s.parent && cap.parent == save.span_id)
                })
                .cloned()
                .ok_or("no service_call to entries below a capability span of save-entries")?;
            let request = spans
                .iter()
                .find(|s| {
                    s.name == "http_request"
                        && s.parent == call.span_id
                        && s.attr("route") == Some("/services/entries")
                })
                .cloned()
                .ok_or("no http_request of /services/entries below the service_call")?;
            let service = step(&request, "invocation", "services/entry-service")?;
            let capability = spans
                .iter()
                .find(|s| s.parent == service.span_id)
                .cloned()
                .ok_or("no capability call below the Entry Service's invocation")?;
            Ok::<_, String>(vec![
                root.clone(),
                enqueue,
                batch,
                save,
                call,
                request,
                service,
                capability,
            ])
        })();
        match attempt {
            Ok(chain) => return Ok(chain),
            Err(e) => last_err = e,
        }
    }
    Err(last_err)
}

/// From the stream batch up to the caller: the batch's ancestors must be
/// the submit-entry invocation, below the `http_request` of
/// `/resolvers/Mutation/submitEntry`, whose parent is the caller's span.
fn up_to_the_caller(spans: &[Span], batch: &Span) -> Result<Vec<String>, String> {
    let mut path = Vec::new();
    let mut at = batch.clone();
    let mut submit = false;
    loop {
        if at.parent.is_empty() {
            return Err(format!("the ancestors {path:?} end without the caller"));
        }
        if at.parent == CALLER_SPAN {
            let request = at.name == "http_request"
                && at.attr("route") == Some("/resolvers/Mutation/submitEntry");
            return if request && submit {
                Ok(path)
            } else {
                Err(format!(
                    "the caller's child is not submit-entry's request: {path:?}"
                ))
            };
        }
        let Some(parent) = spans
            .iter()
            .find(|s| s.span_id == at.parent && s.trace_id == at.trace_id)
        else {
            return Err(format!(
                "the parent of {} is not received yet ({path:?})",
                at.name
            ));
        };
        submit |= parent.name == "invocation"
            && parent.attr("worker") == Some("registration/submit-entry");
        path.push(parent.name.clone());
        at = parent.clone();
    }
}

fn promtool() -> Option<String> {
    let found = Command::new("promtool").arg("--version").output().is_ok();
    if !found && std::env::var("USHER_REQUIRE_SERVERS").is_ok_and(|v| v == "1") {
        panic!("promtool is not installed (scripts/servers install installs Debian's prometheus)");
    }
    found.then(|| "promtool".to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_entry_is_one_trace_and_metrics_and_json_logs_show_it() {
    let (otlp, spans) = otlp_receiver().await;
    let mut platform = Platform::new(|_, text| text);
    platform.env.extend([
        ("OTEL_EXPORTER_OTLP_ENDPOINT".to_string(), otlp.clone()),
        ("OTEL_BSP_SCHEDULE_DELAY".to_string(), "100".to_string()),
        ("USHER_LOG_FORMAT".to_string(), "json".to_string()),
        // "service answered" (debug) is logged inside each service call.
        (
            "USHER_LOG".to_string(),
            "info,usher_backend_http=debug".to_string(),
        ),
    ]);
    platform.start().await;

    // A campaign and market, then one fan's entry submitted as a client
    // would, in the client's trace.
    let client = reqwest::Client::new();
    let put = |path: String, body: Value| {
        let client = client.clone();
        let url = format!("{}{path}", platform.base);
        async move {
            let response = client.put(&url).json(&body).send().await.expect("PUT");
            assert!(
                response.status().is_success(),
                "PUT {url}: {}",
                response.status()
            );
        }
    };
    put(
        format!("/services/campaigns/campaigns/{CAMPAIGN}"),
        serde_json::json!({
            "id": CAMPAIGN, "slug": CAMPAIGN, "name": "Observed", "status": "OPEN",
            "opensAt": "2020-01-01T00:00:00Z", "closesAt": "2099-01-01T00:00:00Z",
            "gate": {"type": "none"},
            "fields": [{"name": "firstName", "type": "string", "required": true}],
        }),
    )
    .await;
    put(
        format!("/services/campaigns/campaigns/{CAMPAIGN}/markets/{MARKET}"),
        serde_json::json!({
            "id": MARKET, "campaignId": CAMPAIGN, "eventId": "e1", "eventName": "Show",
            "venue": "Arena", "selectionCount": 1, "waitlistCount": 0,
        }),
    )
    .await;
    let submitted = client
        .post(format!("{}/resolvers/Mutation/submitEntry", platform.base))
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .json(&serde_json::json!({"arguments": {
            "slug": CAMPAIGN, "marketId": MARKET, "entry": {"firstName": "Ada"},
            "userInfo": {"globalUserId": "fan-1", "email": "fan-1@fans.example", "country": "US"},
        }}))
        .send()
        .await
        .expect("POST submitEntry");
    let status = submitted.status();
    let answer: Value = submitted.json().await.expect("JSON");
    assert!(
        status.is_success() && answer["created"] == true,
        "submitEntry: {status} {answer}\n{}",
        platform.log()
    );

    // Replicated: the Entry Service lists it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = client
            .get(format!(
                "{}/services/entries/campaigns/{CAMPAIGN}/entries",
                platform.base
            ))
            .send()
            .await
            .expect("GET entries")
            .json::<Value>()
            .await
            .expect("JSON");
        if listed["entries"].as_array().is_some_and(|e| e.len() == 1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not replicated in 60 s:\n{}",
            platform.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // One trace from the caller through submit-entry and the stream batch
    // to the Entry Service's table calls.
    let deadline = Instant::now() + Duration::from_secs(30);
    let chain = loop {
        let received = spans.lock().expect("lock").clone();
        let found = chain(&received)
            .and_then(|chain| up_to_the_caller(&received, &chain[0]).map(|_| chain));
        match found {
            Ok(chain) => break chain,
            Err(e) => assert!(
                Instant::now() < deadline,
                "the trace is not complete after 30 s: {e}\n{} spans received: {:#?}",
                received.len(),
                received
                    .iter()
                    .map(|s| (&s.name, &s.attributes))
                    .collect::<Vec<_>>()
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let trace_id = &chain[0].trace_id;
    assert!(chain.iter().all(|s| &s.trace_id == trace_id));
    assert_eq!(trace_id, CALLER_TRACE, "the caller's trace goes on");
    let save = &chain[3];
    assert_eq!(save.attr("records"), Some("1"), "{save:?}");
    assert_eq!(save.attr("outcome"), Some("ok"), "{save:?}");
    assert!(save.attr("version").is_some() && save.attr("correlation_id").is_some());
    // The correlation id travels with the trace: the save-entries
    // invocation keeps the one of the enqueue-entries invocation that sent
    // its message, and the Entry Service gets it as X-Correlation-Id.
    assert_eq!(save.attr("correlation_id"), chain[1].attr("correlation_id"));
    assert_eq!(chain[5].attr("correlation_id"), save.attr("correlation_id"));
    assert_eq!(chain[6].attr("correlation_id"), save.attr("correlation_id"));
    assert_eq!(chain[5].attr("status"), Some("200"));

    // /metrics: Prometheus's text format, with this run's figures.
    let response = client
        .get(format!("{}/metrics", platform.base))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200);
    assert!(response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")));
    let metrics = response.text().await.expect("text");
    let has = |needles: &[&str]| {
        metrics
            .lines()
            .any(|l| !l.starts_with('#') && needles.iter().all(|n| l.contains(n)))
    };
    for needles in [
        &[
            "usher_invocations_total{",
            "worker=\"replication/save-entries\"",
            "outcome=\"ok\"",
        ][..],
        &[
            "usher_records_total{",
            "worker=\"replication/enqueue-entries\"",
        ],
        &[
            "usher_record_failures_total{",
            "worker=\"replication/save-entries\"",
        ],
        &[
            "usher_invocation_duration_seconds_bucket{",
            "worker=\"services/entry-service\"",
        ],
        &[
            "usher_worker_live_info{",
            "worker=\"replication/save-entries\"",
        ],
        &[
            "usher_queue_messages{",
            "queue=\"save-entries\"",
            "state=\"visible\"",
        ],
        &["usher_dlq_messages{", "queue=\"save-entries-dlq\""],
        &[
            "usher_stream_lag_changes{",
            "worker=\"replication/enqueue-entries\"",
            "table=\"demand-table\"",
        ],
        &[
            "usher_http_requests_total{",
            "route=\"/services/entries\"",
            "status=\"200\"",
        ],
        &[
            "usher_http_request_duration_seconds_bucket{",
            "route=\"/services/entries\"",
        ],
    ] {
        assert!(has(needles), "no line with {needles:?} in:\n{metrics}");
    }
    // The stream worker caught up.
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("usher_stream_lag_changes{")
                && l.contains("replication/enqueue-entries")
                && l.ends_with(" 0")),
        "{metrics}"
    );
    // A request to no route is counted under a bounded label.
    let _ = client
        .get(format!("{}/no/such/{}", platform.base, uuid_like()))
        .send()
        .await;
    let metrics_after = client
        .get(format!("{}/metrics", platform.base))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics_after.contains("route=\"unmatched\""),
        "{metrics_after}"
    );
    assert!(
        !metrics_after.contains("/no/such/"),
        "raw paths are never labels"
    );

    match promtool() {
        Some(promtool) => {
            let mut check = Command::new(promtool)
                .args(["check", "metrics"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("promtool runs");
            check
                .stdin
                .take()
                .expect("stdin")
                .write_all(metrics_after.as_bytes())
                .expect("write");
            let out = check.wait_with_output().expect("promtool");
            assert!(
                out.status.success(),
                "promtool check metrics: {}{}\n{metrics_after}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        None => eprintln!("SKIPPED: promtool check metrics (promtool not installed)"),
    }

    let status = platform.stop().await;
    assert!(status.success(), "{}", platform.log());

    // JSON logs: every log line is a JSON object; those of an invocation
    // carry its trace, span and correlation ids.
    let log = platform.log();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.is_empty(), "no JSON log line:\n{log}");
    let in_trace = lines.iter().find(|l| {
        l["trace_id"].as_str() == Some(trace_id.as_str()) && l["correlation_id"].is_string()
    });
    assert!(
        in_trace.is_some(),
        "no log line of trace {trace_id} with its correlation id:\n{log}"
    );
    for line in &lines {
        assert!(
            line["timestamp"].is_string() && line["level"].is_string(),
            "{line}"
        );
    }
}

fn uuid_like() -> String {
    format!("{:x}", std::process::id())
}
