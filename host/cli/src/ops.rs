//! The operator page of `usher up` and its JSON API, mounted at `/ops`:
//!
//! * `GET /ops/`: the page (static HTML and JavaScript embedded in the
//!   binary, `ops/page.html`; no build chain): workers with their live
//!   version, trigger, rates and failures; queues and dead-letter queues
//!   with depth and messages, and replay; versions with promote and
//!   rollback; workflow executions (through the `/workflows` routes);
//! * `GET /ops/api/workers`: every worker with its live version and digest,
//!   registry pin, trigger, counters and pushed versions;
//! * `POST /ops/api/workers/{domain}/{worker}/promote` (body
//!   `{"version": "x.y.z"}`) and `POST …/rollback`: as `usher promote` and
//!   `usher rollback`; the running host swaps within its release-watch
//!   interval;
//! * `GET /ops/api/queues`: every queue with its depth, its dead-letter
//!   queue and, for a dead-letter queue, its sources;
//! * `GET /ops/api/queues/{queue}/messages[?limit=N]`: its messages (bodies
//!   cut to 2000 characters; default 50, at most 1000);
//! * `POST /ops/api/queues/{queue}/replay` (body `{"to": "queue"}`
//!   optional): as `usher dlq replay`: 200 `{"moved", "from", "to"}`.
//!
//! Errors are `{"error": "…"}` with 400 (bad body or version), 404 (unknown
//! worker, queue or version) or 409 (nothing to roll back to, no replay
//! target).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use usher_backend_embedded::EmbeddedQueues;
use usher_engine::Runtime;
use usher_registry::Trigger;
use usher_store::{ComponentStore, StoreError};
use usher_trigger_local::WorkerCounters;

/// The page, embedded in the binary.
const PAGE: &str = include_str!("ops/page.html");
/// Default and largest number of messages listed.
const LIST_DEFAULT: u32 = 50;
const LIST_MAX: u32 = 1000;
/// Characters of a body shown.
const BODY_CHARS: usize = 2000;

/// What the routes read: the runtime, the queues, the store and the
/// triggers' counters (set once the triggers have started).
pub struct Ops {
    pub runtime: Arc<Runtime>,
    pub queues: Arc<EmbeddedQueues>,
    pub store: Arc<dyn ComponentStore>,
    pub env: String,
    pub counters: OnceLock<BTreeMap<String, Arc<WorkerCounters>>>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

fn store_error(e: StoreError) -> Response {
    let status = match &e {
        StoreError::UnknownVersion { .. } | StoreError::NotReleased { .. } => StatusCode::NOT_FOUND,
        StoreError::NoHistory { .. } | StoreError::VersionConflict { .. } => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

/// The router, to be mounted at `/ops`.
pub fn router(ops: Arc<Ops>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/workers", get(workers))
        .route("/api/workers/{domain}/{worker}/promote", post(promote))
        .route("/api/workers/{domain}/{worker}/rollback", post(rollback))
        .route("/api/queues", get(queues))
        .route("/api/queues/{queue}/messages", get(messages))
        .route("/api/queues/{queue}/replay", post(replay))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "operator routes: GET /ops/, GET /ops/api/workers, POST /ops/api/workers/{domain}/{worker}/promote|rollback, GET /ops/api/queues, GET /ops/api/queues/{queue}/messages, POST /ops/api/queues/{queue}/replay",
            )
        })
        .with_state(ops)
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
        .into_response()
}

fn trigger_source(trigger: &Trigger) -> String {
    match trigger {
        Trigger::Queue { queue } => queue.clone(),
        Trigger::Stream { table, .. } => table.clone(),
        Trigger::Schedule { cron } => cron.clone(),
        Trigger::Invoke => String::new(),
        Trigger::Resolver {
            type_name,
            field_name,
        } => format!("{type_name}.{field_name}"),
        Trigger::Http { route } => route.clone(),
    }
}

async fn workers(State(ops): State<Arc<Ops>>) -> Response {
    let release = match ops.store.release(&ops.env).await {
        Ok(r) => r,
        Err(e) => return store_error(e),
    };
    let mut rows = Vec::new();
    for (name, live) in ops.runtime.workers() {
        let current = live.current();
        let spec = live.spec();
        let versions: Vec<Value> = match ops.store.versions(name).await {
            Ok(v) => v
                .iter()
                .map(|e| json!({"version": e.version.to_string(), "digest": e.digest.to_string(), "pushed_at": e.pushed_at}))
                .collect(),
            Err(_) => Vec::new(),
        };
        let history: Vec<String> = release
            .entry(name)
            .map(|e| e.history.iter().map(|h| h.version.to_string()).collect())
            .unwrap_or_default();
        let mut row = json!({
            "name": name,
            "version": current.version.to_string(),
            "digest": current.digest.to_string(),
            "pinned": spec.component.version.to_string(),
            "released": release.entry(name).map(|e| e.version.to_string()),
            "history": history,
            "trigger": spec.trigger.kind(),
            "source": trigger_source(&spec.trigger),
            "versions": versions,
        });
        if let Some(c) = ops.counters.get().and_then(|c| c.get(name)) {
            let s = c.snapshot();
            row["counters"] = json!({
                "received": s.received,
                "succeeded": s.succeeded,
                "failed": s.failed,
                "in_flight": s.in_flight,
                "given_up": s.given_up,
                "invocations": s.invocations,
                "busy_ms": u64::try_from(s.busy.as_millis()).unwrap_or(u64::MAX),
            });
        }
        rows.push(row);
    }
    Json(json!({"env": ops.env, "workers": rows})).into_response()
}

/// The worker `<domain>/<worker>` of the registry, or the 404 message.
fn worker_name(ops: &Ops, domain: &str, worker: &str) -> Result<String, String> {
    let name = format!("{domain}/{worker}");
    if ops.runtime.registry().workers.contains_key(&name) {
        Ok(name)
    } else {
        Err(format!("no worker `{name}` in the registry"))
    }
}

async fn promote(
    State(ops): State<Arc<Ops>>,
    Path((domain, worker)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let name = match worker_name(&ops, &domain, &worker) {
        Ok(n) => n,
        Err(message) => return error(StatusCode::NOT_FOUND, message),
    };
    let version = match serde_json::from_slice::<Value>(&body) {
        Ok(v) => match v.get("version").and_then(Value::as_str) {
            Some(text) => match semver::Version::parse(text) {
                Ok(v) => v,
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("version `{text}` is not a semantic version: {e}"),
                    )
                }
            },
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "the body must be {\"version\": \"x.y.z\"}",
                )
            }
        },
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body is not JSON: {e}"),
            )
        }
    };
    let spec = match ops.runtime.registry().worker(&name) {
        Ok(s) => s.clone(),
        Err(e) => return error(StatusCode::NOT_FOUND, e.to_string()),
    };
    match ops.store.versions(&name).await {
        Ok(v) if v.iter().any(|e| e.version == version) || spec.component.version == version => {}
        Ok(_) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("{name} has no pushed version {version} (`usher push` it first)"),
            )
        }
        Err(e) => return store_error(e),
    }
    match crate::store_cmds::promote_over_pin(ops.store.as_ref(), &ops.env, &spec, &version).await {
        Ok(entry) => Json(json!({
            "worker": name,
            "version": entry.version.to_string(),
            "digest": entry.digest.to_string(),
            "env": ops.env,
        }))
        .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

async fn rollback(
    State(ops): State<Arc<Ops>>,
    Path((domain, worker)): Path<(String, String)>,
) -> Response {
    let name = match worker_name(&ops, &domain, &worker) {
        Ok(n) => n,
        Err(message) => return error(StatusCode::NOT_FOUND, message),
    };
    match ops.store.release(&ops.env).await {
        Ok(r) if r.entry(&name).is_some_and(|e| !e.history.is_empty()) => {}
        Ok(_) => {
            return error(
                StatusCode::CONFLICT,
                format!(
                    "{name} has no earlier live version in {} to roll back to",
                    ops.env
                ),
            )
        }
        Err(e) => return store_error(e),
    }
    match ops.store.rollback(&ops.env, &name).await {
        Ok(entry) => Json(json!({
            "worker": name,
            "version": entry.version.to_string(),
            "digest": entry.digest.to_string(),
            "env": ops.env,
        }))
        .into_response(),
        Err(e) => store_error(e),
    }
}

async fn queues(State(ops): State<Arc<Ops>>) -> Response {
    let registry = ops.runtime.registry();
    let dlqs = crate::dlq::dead_letter_queues(registry);
    let mut rows = Vec::new();
    for (name, def) in &registry.resources.queues {
        let d = match ops.queues.depth(name).await {
            Ok(d) => d,
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
        rows.push(json!({
            "name": name,
            "dead_letter": def.dead_letter,
            "is_dead_letter": dlqs.contains_key(name),
            "sources": dlqs.get(name).cloned().unwrap_or_default(),
            "consumer": registry.worker_for_queue(name).map(|w| w.name.clone()),
            "depth": d.visible + d.in_flight + d.delayed,
            "visible": d.visible,
            "in_flight": d.in_flight,
            "delayed": d.delayed,
        }));
    }
    Json(json!({"queues": rows})).into_response()
}

async fn messages(
    State(ops): State<Arc<Ops>>,
    Path(queue): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    if !ops.runtime.registry().resources.queues.contains_key(&queue) {
        return error(
            StatusCode::NOT_FOUND,
            format!("no queue `{queue}` in resources.yaml"),
        );
    }
    let limit = match params.get("limit") {
        None => LIST_DEFAULT,
        Some(text) => match text.parse::<u32>() {
            Ok(n) if (1..=LIST_MAX).contains(&n) => n,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("limit `{text}` is not a number in 1..={LIST_MAX}"),
                )
            }
        },
    };
    match ops.queues.list(&queue, limit).await {
        Ok(list) => {
            let rows: Vec<Value> = list
                .iter()
                .map(|m| {
                    let mut body: String = m.body.chars().take(BODY_CHARS).collect();
                    if m.body.chars().nth(BODY_CHARS).is_some() {
                        body.push('…');
                    }
                    json!({
                        "id": m.message_id,
                        "receive_count": m.receive_count,
                        "source": m.dead_letter_source,
                        "sent_at_ms": m.sent_at_ms,
                        "attributes": m.attributes.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
                        "body": body,
                    })
                })
                .collect();
            Json(json!({"queue": queue, "messages": rows})).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn replay(State(ops): State<Arc<Ops>>, Path(queue): Path<String>, body: Bytes) -> Response {
    let registry = ops.runtime.registry();
    if !registry.resources.queues.contains_key(&queue) {
        return error(
            StatusCode::NOT_FOUND,
            format!("no queue `{queue}` in resources.yaml"),
        );
    }
    let to = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => match v.get("to") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return error(StatusCode::BAD_REQUEST, "`to` must be a queue name"),
            },
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("the body is not JSON: {e}"),
                )
            }
        }
    };
    let target = match crate::dlq::replay_target(registry, &queue, to.as_deref()) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::CONFLICT, format!("{e:#}")),
    };
    match crate::dlq::move_all(&ops.queues, &queue, &target, |_| {}).await {
        Ok(moved) => Json(json!({"moved": moved, "from": queue, "to": target})).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}
