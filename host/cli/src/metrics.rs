//! `GET /metrics` on `usher up`'s listener: the Prometheus text format of
//! every metric of [`usher_telemetry::metric`]. The counters and histograms
//! are recorded as things happen (invocations, hot swaps, HTTP requests);
//! the gauges (queue and dead-letter depths, stream lag, workflow
//! executions) are read from the data folder at each scrape. Open, no auth
//! (like the rest of the local listener).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use usher_backend_embedded::{ChangeLog, EmbeddedQueues};
use usher_engine::Runtime;
use usher_registry::Trigger;
use usher_telemetry::metric;
use usher_workflows::Workflows;

/// The content type of Prometheus's text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone)]
struct Sources {
    runtime: Arc<Runtime>,
    queues: Arc<EmbeddedQueues>,
    change_log: ChangeLog,
    workflows: Arc<Workflows>,
    /// Dead-letter queue → its source queues.
    dlqs: Arc<BTreeMap<String, Vec<String>>>,
}

/// The router to mount at `/metrics` (installs the process's recorder).
pub fn router(
    runtime: Arc<Runtime>,
    queues: Arc<EmbeddedQueues>,
    change_log: ChangeLog,
    workflows: Arc<Workflows>,
) -> anyhow::Result<Router> {
    metric::install()?;
    let dlqs = Arc::new(crate::dlq::dead_letter_queues(runtime.registry()));
    let sources = Sources {
        runtime,
        queues,
        change_log,
        workflows,
        dlqs,
    };
    Ok(Router::new().route("/", get(scrape)).with_state(sources))
}

async fn scrape(axum::extract::State(s): axum::extract::State<Sources>) -> Response {
    if let Err(e) = gauges(&s).await {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "error": format!("reading the gauges: {e}") }).to_string(),
        )
            .into_response();
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], metric::render()).into_response()
}

/// Reads the gauges from the embedded backends and the workflow store.
async fn gauges(s: &Sources) -> anyhow::Result<()> {
    let registry = s.runtime.registry();
    for queue in registry.resources.queues.keys() {
        let d = s.queues.depth(queue).await?;
        metric::queue_depth(queue, d.visible, d.in_flight, d.delayed);
    }
    for (dlq, sources) in s.dlqs.iter() {
        let d = s.queues.depth(dlq).await?;
        let source = if sources.is_empty() {
            "stream-on-failure".to_string()
        } else {
            sources.join(",")
        };
        metric::dlq_depth(dlq, &source, d.visible + d.in_flight + d.delayed);
    }
    for (name, live) in s.runtime.workers() {
        if let Trigger::Stream { table, .. } = &live.spec().trigger {
            let latest = s.change_log.latest_seq(table).await?;
            let at = s.change_log.checkpoint_get(name).await?.unwrap_or(0);
            metric::stream_lag(name, table, latest.saturating_sub(at));
        }
    }
    for (workflow, status, n) in s.workflows.store().count_by_status().await? {
        metric::workflow_executions(&workflow, &status, n);
    }
    Ok(())
}
