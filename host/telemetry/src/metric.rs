//! The Prometheus metrics of the host: one recorder per process
//! ([`install`]), rendered in the text exposition format by [`render`]
//! (`GET /metrics` on `usher up`'s listener), and the one place where each
//! metric's name and labels are written.
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `usher_invocations_total` | counter | worker, version, outcome (`ok`, `partial`: some records failed, `failed`: every record or the typed error, `error`: trap, deadline, memory limit) |
//! | `usher_invocation_duration_seconds` | histogram | worker, version |
//! | `usher_records_total` | counter | worker, version |
//! | `usher_record_failures_total` | counter | worker, version |
//! | `usher_hot_swaps_total` | counter | worker |
//! | `usher_worker_live_info` | gauge (1) | worker, version |
//! | `usher_queue_messages` | gauge | queue, state (`visible`, `in_flight`, `delayed`) |
//! | `usher_dlq_messages` | gauge | queue, source |
//! | `usher_stream_lag_changes` | gauge | worker, table |
//! | `usher_workflow_executions` | gauge | workflow, status |
//! | `usher_http_requests_total` | counter | route, method, status |
//! | `usher_http_request_duration_seconds` | histogram | route, method, status |
//!
//! Before [`install`] (or in a process that never calls it: the test host,
//! `usher lambda`) recording is a no-op of the `metrics` facade.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Invocations, by worker, version and outcome.
pub const INVOCATIONS: &str = "usher_invocations_total";
/// Invocation wall time.
pub const INVOCATION_DURATION: &str = "usher_invocation_duration_seconds";
/// Records (messages, changes, requests) given to workers.
pub const RECORDS: &str = "usher_records_total";
/// Records a worker reported failed (or that failed with the invocation).
pub const RECORD_FAILURES: &str = "usher_record_failures_total";
/// Hot swaps of a worker to another version.
pub const HOT_SWAPS: &str = "usher_hot_swaps_total";
/// The live version of each worker (value 1).
pub const LIVE_VERSION: &str = "usher_worker_live_info";
/// Messages of a queue by state.
pub const QUEUE_MESSAGES: &str = "usher_queue_messages";
/// Messages waiting in a dead-letter queue.
pub const DLQ_MESSAGES: &str = "usher_dlq_messages";
/// Changes of a table not yet checkpointed by a stream worker.
pub const STREAM_LAG: &str = "usher_stream_lag_changes";
/// Workflow executions by status.
pub const WORKFLOW_EXECUTIONS: &str = "usher_workflow_executions";
/// HTTP requests of the listener, by route, method and status.
pub const HTTP_REQUESTS: &str = "usher_http_requests_total";
/// HTTP response time of the listener.
pub const HTTP_DURATION: &str = "usher_http_request_duration_seconds";

/// The histograms' buckets, in seconds (1 ms to 60 s).
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Why the recorder could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("the Prometheus recorder: {0}")]
pub struct MetricsError(String);

/// Installs the process's Prometheus recorder (once; later calls return
/// the same handle).
pub fn install() -> Result<&'static PrometheusHandle, MetricsError> {
    if let Some(h) = HANDLE.get() {
        return Ok(h);
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
        .map_err(|e| MetricsError(e.to_string()))?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| MetricsError(e.to_string()))?;
    describe();
    Ok(HANDLE.get_or_init(|| handle))
}

/// The metrics now, in Prometheus's text format (empty before [`install`]).
pub fn render() -> String {
    match HANDLE.get() {
        Some(h) => {
            h.run_upkeep();
            h.render()
        }
        None => String::new(),
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(INVOCATIONS, "Worker invocations by outcome.");
    describe_histogram!(
        INVOCATION_DURATION,
        Unit::Seconds,
        "Worker invocation wall time."
    );
    describe_counter!(
        RECORDS,
        "Records given to workers (messages, changes, requests)."
    );
    describe_counter!(RECORD_FAILURES, "Records that failed.");
    describe_counter!(HOT_SWAPS, "Hot swaps to another version.");
    describe_gauge!(LIVE_VERSION, "The live version of each worker (1).");
    describe_gauge!(QUEUE_MESSAGES, "Messages of a queue by state.");
    describe_gauge!(DLQ_MESSAGES, "Messages in a dead-letter queue.");
    describe_gauge!(
        STREAM_LAG,
        "Table changes a stream worker has not checkpointed yet."
    );
    describe_gauge!(WORKFLOW_EXECUTIONS, "Workflow executions by status.");
    describe_counter!(HTTP_REQUESTS, "HTTP requests of the listener.");
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP response time of the listener."
    );
}

/// The outcome of one invocation, for [`invocation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every record succeeded.
    Ok,
    /// Some records failed.
    Partial,
    /// Every record failed, or the worker answered its typed error.
    Failed,
    /// The invocation itself failed (trap, deadline, memory limit).
    Error,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Partial => "partial",
            Outcome::Failed => "failed",
            Outcome::Error => "error",
        }
    }
}

/// Records one invocation.
pub fn invocation(
    worker: &str,
    version: &str,
    outcome: Outcome,
    elapsed: Duration,
    records: u64,
    failed: u64,
) {
    let (w, v) = (worker.to_string(), version.to_string());
    counter!(INVOCATIONS, "worker" => w.clone(), "version" => v.clone(), "outcome" => outcome.as_str())
        .increment(1);
    histogram!(INVOCATION_DURATION, "worker" => w.clone(), "version" => v.clone())
        .record(elapsed.as_secs_f64());
    counter!(RECORDS, "worker" => w.clone(), "version" => v.clone()).increment(records);
    counter!(RECORD_FAILURES, "worker" => w, "version" => v).increment(failed);
}

/// Records a hot swap and the new live version.
pub fn hot_swap(worker: &str, from: &str, to: &str) {
    counter!(HOT_SWAPS, "worker" => worker.to_string()).increment(1);
    live_version(worker, from, false);
    live_version(worker, to, true);
}

/// Sets (or clears) a worker's live version.
pub fn live_version(worker: &str, version: &str, live: bool) {
    gauge!(LIVE_VERSION, "worker" => worker.to_string(), "version" => version.to_string())
        .set(if live { 1.0 } else { 0.0 });
}

/// Sets a queue's depth.
pub fn queue_depth(queue: &str, visible: u64, in_flight: u64, delayed: u64) {
    for (state, n) in [
        ("visible", visible),
        ("in_flight", in_flight),
        ("delayed", delayed),
    ] {
        gauge!(QUEUE_MESSAGES, "queue" => queue.to_string(), "state" => state).set(n as f64);
    }
}

/// Sets a dead-letter queue's depth.
pub fn dlq_depth(queue: &str, source: &str, depth: u64) {
    gauge!(DLQ_MESSAGES, "queue" => queue.to_string(), "source" => source.to_string())
        .set(depth as f64);
}

/// Sets a stream worker's lag.
pub fn stream_lag(worker: &str, table: &str, changes: u64) {
    gauge!(STREAM_LAG, "worker" => worker.to_string(), "table" => table.to_string())
        .set(changes as f64);
}

/// Sets the number of a workflow's executions with a status.
pub fn workflow_executions(workflow: &str, status: &str, n: u64) {
    gauge!(WORKFLOW_EXECUTIONS, "workflow" => workflow.to_string(), "status" => status.to_string())
        .set(n as f64);
}

/// Records one HTTP request of the listener.
pub fn http_request(route: &str, method: &str, status: u16, elapsed: Duration) {
    let (r, m, s) = (route.to_string(), method.to_string(), status.to_string());
    counter!(HTTP_REQUESTS, "route" => r.clone(), "method" => m.clone(), "status" => s.clone())
        .increment(1);
    histogram!(HTTP_DURATION, "route" => r, "method" => m, "status" => s)
        .record(elapsed.as_secs_f64());
}
