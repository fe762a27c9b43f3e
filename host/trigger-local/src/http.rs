//! The HTTP listener of `usher up`: http-workers by route prefix,
//! `POST /invoke/{domain}/{worker}` for invoke-workers and `POST
//! /resolvers/{typeName}/{fieldName}` for resolver workers (AppSync-style).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use usher_engine::{HttpRequest, Input, InvokeError, Output, Runtime};
use usher_registry::{Trigger, WorldKind};

/// The largest request body the listener accepts (larger ones get 413).
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// The path prefix of invoke-workers: `POST /invoke/{domain}/{worker}`.
pub const INVOKE_PREFIX: &str = "/invoke/";

/// The path prefix of resolvers: `POST /resolvers/{typeName}/{fieldName}`.
pub const RESOLVERS_PREFIX: &str = "/resolvers/";

/// Headers of a worker's answer the listener sets itself.
const HOP_HEADERS: [&str; 3] = ["content-length", "transfer-encoding", "connection"];

/// The routes of a runtime's http-workers, longest prefix first.
#[derive(Debug, Clone)]
pub struct Routes {
    routes: Vec<(String, String)>,
}

impl Routes {
    /// The `http` routes of every live worker of `runtime`.
    pub fn of(runtime: &Runtime) -> Routes {
        let mut routes: Vec<(String, String)> = runtime
            .workers()
            .iter()
            .filter_map(|(name, live)| match &live.spec().trigger {
                Trigger::Http { route } => Some((route.clone(), name.clone())),
                _ => None,
            })
            .collect();
        routes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Routes { routes }
    }

    /// Every (route, worker), longest route first.
    pub fn list(&self) -> &[(String, String)] {
        &self.routes
    }

    /// The worker serving `path` and the path below its route (at least
    /// `/`). A route matches whole segments: `/a` serves `/a` and `/a/b`,
    /// not `/ab`.
    pub fn resolve<'a>(&'a self, path: &str) -> Option<(&'a str, String)> {
        self.routes.iter().find_map(|(route, worker)| {
            let rest = path.strip_prefix(route.as_str())?;
            if route.ends_with('/') {
                Some((worker.as_str(), format!("/{rest}")))
            } else if rest.is_empty() {
                Some((worker.as_str(), "/".to_string()))
            } else if rest.starts_with('/') {
                Some((worker.as_str(), rest.to_string()))
            } else {
                None
            }
        })
    }
}

/// The resolver workers of a runtime: `(typeName, fieldName)` → worker.
#[derive(Debug, Clone, Default)]
pub struct Resolvers {
    resolvers: BTreeMap<(String, String), String>,
}

impl Resolvers {
    /// The `resolver` triggers of every live worker of `runtime`.
    pub fn of(runtime: &Runtime) -> Resolvers {
        let resolvers = runtime
            .workers()
            .iter()
            .filter_map(|(name, live)| match &live.spec().trigger {
                Trigger::Resolver {
                    type_name,
                    field_name,
                } => Some(((type_name.clone(), field_name.clone()), name.clone())),
                _ => None,
            })
            .collect();
        Resolvers { resolvers }
    }

    /// Every ((typeName, fieldName), worker), sorted.
    pub fn list(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.resolvers
            .iter()
            .map(|((t, f), w)| (t.as_str(), f.as_str(), w.as_str()))
    }

    /// The worker resolving `type_name.field_name`.
    pub fn get(&self, type_name: &str, field_name: &str) -> Option<&str> {
        self.resolvers
            .get(&(type_name.to_string(), field_name.to_string()))
            .map(String::as_str)
    }
}

/// The event a resolver worker gets for a request body, shaped as AppSync's
/// direct Lambda resolver event: `arguments` is the body's `arguments`
/// (or, without that key, the whole body; `{}` for an empty body),
/// `identity`, `source`, `prev` are the body's (or `null`), `stash` the
/// body's (or `{}`), `request.headers` the HTTP request's headers, and
/// `info` names the field (`parentTypeName`, `fieldName`, the body's
/// `variables` or `{}`, `selectionSetList` the body's or `[]`).
pub fn resolver_event(
    type_name: &str,
    field_name: &str,
    body: &Value,
    headers: &BTreeMap<String, String>,
) -> Value {
    let field = |name: &str, default: Value| {
        body.as_object()
            .and_then(|o| o.get(name))
            .cloned()
            .unwrap_or(default)
    };
    let arguments = match body {
        Value::Null => json!({}),
        Value::Object(o) => o.get("arguments").cloned().unwrap_or_else(|| body.clone()),
        other => other.clone(),
    };
    json!({
        "arguments": arguments,
        "identity": field("identity", Value::Null),
        "source": field("source", Value::Null),
        "prev": field("prev", Value::Null),
        "stash": field("stash", json!({})),
        "request": { "headers": headers },
        "info": {
            "parentTypeName": type_name,
            "fieldName": field_name,
            "variables": field("variables", json!({})),
            "selectionSetList": field("selectionSetList", json!([])),
        },
    })
}

#[derive(Clone)]
struct Shared {
    runtime: Arc<Runtime>,
    routes: Arc<Routes>,
    resolvers: Arc<Resolvers>,
}

/// The listener's router (every path goes through one handler).
pub fn router(runtime: Arc<Runtime>) -> axum::Router {
    let routes = Arc::new(Routes::of(&runtime));
    let resolvers = Arc::new(Resolvers::of(&runtime));
    axum::Router::new().fallback(handle).with_state(Shared {
        runtime,
        routes,
        resolvers,
    })
}

/// A running HTTP listener.
pub struct HttpListener {
    addr: SocketAddr,
    routes: Routes,
    resolvers: Resolvers,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl HttpListener {
    /// Binds `addr` (port 0 picks a free port) and serves the runtime's
    /// http-workers, invoke-workers and resolvers. Must be called inside a tokio runtime.
    pub async fn bind(runtime: Arc<Runtime>, addr: SocketAddr) -> std::io::Result<HttpListener> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let routes = Routes::of(&runtime);
        let resolvers = Resolvers::of(&runtime);
        let app = router(runtime);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        tracing::info!(%addr, "HTTP listener started");
        Ok(HttpListener {
            addr,
            routes,
            resolvers,
            stop,
            task,
        })
    }

    /// The address listened on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The http-workers' routes.
    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    /// The resolver workers.
    pub fn resolvers(&self) -> &Resolvers {
        &self.resolvers
    }

    /// Stops accepting connections and waits for the requests in flight.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e.to_string())),
        }
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    json_response(status, &json!({ "error": message.into() }))
}

/// The body, or why it cannot be read (413 over [`MAX_REQUEST_BYTES`]).
async fn read_body(body: Body) -> Result<Bytes, (StatusCode, String)> {
    match axum::body::to_bytes(body, MAX_REQUEST_BYTES).await {
        Ok(bytes) => Ok(bytes),
        Err(e) => {
            let too_large =
                std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
                    e.source()
                })
                .any(|e| e.is::<http_body_util::LengthLimitError>());
            Err(if too_large {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the request body is larger than {MAX_REQUEST_BYTES} bytes"),
                )
            } else {
                (
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {e}"),
                )
            })
        }
    }
}

/// A JSON body: `null` when empty (or only whitespace).
fn parse_json(body: &[u8]) -> Result<Value, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|e| format!("the request body is not JSON: {e}"))
}

/// The request's headers as (lower-case name, value) pairs.
fn header_pairs(request: &Request) -> impl Iterator<Item = (String, String)> + '_ {
    request.headers().iter().map(|(n, v)| {
        (
            n.as_str().to_string(),
            String::from_utf8_lossy(v.as_bytes()).into_owned(),
        )
    })
}

fn correlation_id(request: &Request) -> Option<String> {
    request
        .headers()
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn handle(State(shared): State<Shared>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    if let Some(worker) = path.strip_prefix(INVOKE_PREFIX) {
        return invoke(&shared.runtime, worker.to_string(), request).await;
    }
    if let Some(field) = path.strip_prefix(RESOLVERS_PREFIX) {
        return resolve(&shared, field.to_string(), request).await;
    }
    let Some((worker, rest)) = shared.routes.resolve(&path) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no worker serves the path {path}"),
        );
    };
    let worker = worker.to_string();
    let cid = correlation_id(&request);
    let method = request.method().as_str().to_ascii_uppercase();
    let query = request.uri().query().unwrap_or("").to_string();
    let headers = header_pairs(&request).collect();
    let body = match read_body(request.into_body()).await {
        Ok(b) => b,
        Err((status, message)) => return error(status, message),
    };
    let input = Input::Http(HttpRequest {
        method,
        path: rest,
        query,
        headers,
        body: body.to_vec(),
    });
    match shared.runtime.invoke(&worker, &input, cid).await {
        Ok(inv) => match inv.output {
            Output::Http(answer) => {
                let mut response = Response::new(Body::from(answer.body));
                *response.status_mut() =
                    StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
                for (name, value) in answer.headers {
                    let name = name.to_ascii_lowercase();
                    if HOP_HEADERS.contains(&name.as_str()) {
                        continue;
                    }
                    match (
                        HeaderName::try_from(name.as_str()),
                        HeaderValue::try_from(value.as_str()),
                    ) {
                        (Ok(n), Ok(v)) => {
                            response.headers_mut().append(n, v);
                        }
                        _ => {
                            tracing::warn!(worker, header = name, "invalid response header dropped")
                        }
                    }
                }
                response
            }
            other => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("worker {worker} answered a non-HTTP result: {other:?}"),
            ),
        },
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{worker}: {e}")),
    }
}

async fn invoke(runtime: &Runtime, worker: String, request: Request) -> Response {
    if request.method() != Method::POST {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invoke-workers take POST /invoke/{domain}/{worker}",
        );
        r.headers_mut()
            .insert(axum::http::header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    match runtime.worker(&worker) {
        Ok(live) if live.spec().trigger.world() == WorldKind::Invoke => {}
        Ok(_) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("worker {worker} is not an invoke-worker"),
            )
        }
        Err(_) => return error(StatusCode::NOT_FOUND, format!("no worker {worker}")),
    }
    let cid = correlation_id(&request);
    let body = match read_body(request.into_body()).await {
        Ok(b) => b,
        Err((status, message)) => return error(status, message),
    };
    let payload = match parse_json(&body) {
        Ok(v) => v,
        Err(message) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &json!({"errorType": "InvalidJson", "message": message}),
            )
        }
    };
    match runtime.invoke(&worker, &Input::Invoke(payload), cid).await {
        Ok(inv) => match inv.output {
            Output::Invoke(Ok(v)) => json_response(StatusCode::OK, &v),
            Output::Invoke(Err(f)) => json_response(
                StatusCode::BAD_REQUEST,
                &json!({"errorType": f.kind, "message": f.message}),
            ),
            other => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("worker {worker} answered a non-invoke result: {other:?}"),
            ),
        },
        Err(InvokeError::UnknownWorker { name, .. }) => {
            error(StatusCode::NOT_FOUND, format!("no worker {name}"))
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{worker}: {e}")),
    }
}

/// An AppSync-style error answer: `{"errorType", "errorMessage"}`.
fn resolver_error(status: StatusCode, error_type: &str, message: impl Into<String>) -> Response {
    json_response(
        status,
        &json!({"errorType": error_type, "errorMessage": message.into()}),
    )
}

/// `POST /resolvers/{typeName}/{fieldName}`: `field` is the path after the
/// prefix.
async fn resolve(shared: &Shared, field: String, request: Request) -> Response {
    let Some((type_name, field_name)) = field
        .split_once('/')
        .filter(|(t, f)| !t.is_empty() && !f.is_empty() && !f.contains('/'))
    else {
        return resolver_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("resolvers take POST {RESOLVERS_PREFIX}{{typeName}}/{{fieldName}}; not {RESOLVERS_PREFIX}{field}"),
        );
    };
    let Some(worker) = shared.resolvers.get(type_name, field_name) else {
        return resolver_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("no worker resolves {type_name}.{field_name}"),
        );
    };
    if request.method() != Method::POST {
        let mut r = resolver_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("resolvers take POST {RESOLVERS_PREFIX}{{typeName}}/{{fieldName}}"),
        );
        r.headers_mut()
            .insert(axum::http::header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    let cid = correlation_id(&request);
    let headers: BTreeMap<String, String> = header_pairs(&request).collect();
    let body = match read_body(request.into_body()).await {
        Ok(b) => b,
        Err((status, message)) => return resolver_error(status, "BadRequest", message),
    };
    let body = match parse_json(&body) {
        Ok(v) => v,
        Err(message) => return resolver_error(StatusCode::BAD_REQUEST, "InvalidJson", message),
    };
    let event = resolver_event(type_name, field_name, &body, &headers);
    match shared
        .runtime
        .invoke(worker, &Input::Invoke(event), cid)
        .await
    {
        Ok(inv) => match inv.output {
            Output::Invoke(Ok(v)) => json_response(StatusCode::OK, &v),
            Output::Invoke(Err(f)) => resolver_error(StatusCode::BAD_REQUEST, &f.kind, f.message),
            other => resolver_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "WorkerFailed",
                format!("worker {worker} answered a non-invoke result: {other:?}"),
            ),
        },
        Err(InvokeError::UnknownWorker { name, .. }) => resolver_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("no worker {name}"),
        ),
        Err(e) => resolver_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "WorkerFailed",
            format!("{worker}: {e}"),
        ),
    }
}
