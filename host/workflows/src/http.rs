//! The workflows' HTTP routes, mounted by `usher up`'s listener at
//! `/workflows`:
//!
//! * `GET /workflows`: the workflows and their schedules;
//! * `POST /workflows/{name}/executions` (body: the input; empty → `{}`):
//!   201 `{"executionId", "workflow", "status": "RUNNING"}`; 404 unknown
//!   workflow; 400 when the body is not JSON or the input does not fit the
//!   first state (the error names it);
//! * `GET /workflows/{name}/executions[?limit=N]`: its executions, newest
//!   first (default 100);
//! * `GET /workflows/{name}/executions/{id}`: the execution and its history.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::{StartError, Workflows};

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

/// The router (to be nested at `/workflows`).
pub fn router(workflows: Arc<Workflows>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/{name}/executions", get(list).post(start))
        .route("/{name}/executions/{id}", get(show))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "workflow routes: GET /workflows, POST|GET /workflows/{name}/executions, GET /workflows/{name}/executions/{id}",
            )
        })
        .with_state(workflows)
}

async fn index(State(wf): State<Arc<Workflows>>) -> Response {
    Json(json!({
        "workflows": wf.names(),
        "schedules": wf.schedules(),
    }))
    .into_response()
}

async fn start(
    State(wf): State<Arc<Workflows>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let input: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("the input is not JSON: {e}"),
                )
            }
        }
    };
    match wf.start(&name, input).await {
        Ok(id) => (
            StatusCode::CREATED,
            Json(json!({"executionId": id, "workflow": name, "status": "RUNNING"})),
        )
            .into_response(),
        Err(e @ StartError::UnknownWorkflow(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ StartError::BadInput { .. }) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn list(
    State(wf): State<Arc<Workflows>>,
    Path(name): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if !wf.has(&name) {
        return error(StatusCode::NOT_FOUND, format!("no workflow `{name}`"));
    }
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => 100,
        Some(Ok(l)) if l > 0 => l,
        Some(_) => return error(StatusCode::BAD_REQUEST, "limit must be a positive integer"),
    };
    match wf.list(Some(&name), limit).await {
        Ok(rows) => Json(json!({"executions": rows})).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn show(
    State(wf): State<Arc<Workflows>>,
    Path((name, id)): Path<(String, String)>,
) -> Response {
    match wf.describe(&id).await {
        Ok(Some(d)) if d.execution.workflow == name => Json(json!(d)).into_response(),
        Ok(_) => error(
            StatusCode::NOT_FOUND,
            format!("no execution `{id}` of workflow `{name}`"),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
