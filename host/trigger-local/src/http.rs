//! The HTTP listener of `usher up`, an axum [`Router`]: every http-worker
//! nested at its route (whole segments, the longest route wins, the worker
//! gets the path below it), `POST /invoke/{domain}/{worker}` for
//! invoke-workers, `POST /resolvers/{typeName}/{fieldName}` for resolver
//! workers (AppSync-style), a fallback answering the JSON 404 and
//! [`DefaultBodyLimit`] bounding every body to [`MAX_REQUEST_BYTES`] (413).
//!
//! A worker whose route declares `auth` (registry `trigger.http.auth.jwt`)
//! gets only requests whose bearer JWT `usher_auth` verified, with the
//! claims in the `x-usher-claims` header; others are answered 401
//! `{"error": "unauthorized: …"}`. `GET /heartbeat` is always open;
//! `POST /dev/token` signs development tokens only when the listener was
//! started with [`ListenerOptions::dev_tokens`] (`usher up --dev-tokens`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, OriginalUri, Path, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{any, get, post, MethodRouter};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use usher_auth::{AuthError, EnvSecrets, SecretSource, Verifiers};
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

/// Why the HTTP listener cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// Binding or reading the socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A protected route's keys cannot be read.
    #[error("authentication: {0}")]
    Auth(#[from] AuthError),
    /// An http-worker's route cannot be served by the router.
    #[error("worker {worker}: the http route `{route}` cannot be served: {reason}")]
    Route {
        /// The worker.
        worker: String,
        /// Its route.
        route: String,
        /// Why.
        reason: String,
    },
}

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

    /// Refuses a route the router cannot nest as the listener promises:
    /// one below `/invoke` or `/resolvers` (the listener's own endpoints),
    /// one with `{` or `}` (path parameters of the router, not literal
    /// text), and a route `/a/` next to a route `/a` (both would claim the
    /// paths below `/a/`).
    fn check(&self, route: &str, worker: &str) -> Result<(), ListenerError> {
        let refuse = |reason: String| ListenerError::Route {
            worker: worker.to_string(),
            route: route.to_string(),
            reason,
        };
        for reserved in [INVOKE_PREFIX, RESOLVERS_PREFIX] {
            let endpoint = reserved.trim_end_matches('/');
            if route == endpoint || route.starts_with(reserved) {
                return Err(refuse(format!(
                    "the paths below {endpoint} are the listener's own"
                )));
            }
        }
        if route.contains(['{', '}']) {
            return Err(refuse("a route may not contain `{` or `}`".to_string()));
        }
        if let Some(bare) = route.strip_suffix('/').filter(|b| b.len() > 1) {
            if let Some((_, other)) = self.routes.iter().find(|(r, _)| r == bare) {
                return Err(refuse(format!(
                    "worker {other} serves `{bare}`, whose paths this route would share"
                )));
            }
        }
        Ok(())
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
    resolvers: Arc<Resolvers>,
    auth: Arc<Verifiers>,
}

/// How the listener serves, beyond the registry.
pub struct ListenerOptions {
    /// Serve `POST /dev/token` (development only: anyone reaching the
    /// listener can get a token).
    pub dev_tokens: bool,
    /// Where the routes' `secret:` keys come from (default: the
    /// `USHER_SECRET_<NAME>` environment variables).
    pub secrets: Box<dyn SecretSource + Send + Sync>,
}

impl Default for ListenerOptions {
    fn default() -> Self {
        ListenerOptions {
            dev_tokens: false,
            secrets: Box::new(EnvSecrets),
        }
    }
}

/// The listener's router: every http-worker nested at its route (a worker
/// at `/` is the fallback), the invoke and resolver endpoints, the JSON 404
/// fallback and the body limit. Fails on a route it cannot serve (see
/// [`ListenerError::Route`]).
pub fn router(runtime: Arc<Runtime>) -> Result<Router, ListenerError> {
    router_with(runtime, Vec::new())
}

/// [`router`] with more routers of the host nested at their prefixes
/// (`usher up` mounts its workflows at `/workflows`); an http-worker route
/// below one of them is refused.
pub fn router_with(
    runtime: Arc<Runtime>,
    mounts: Vec<(String, Router)>,
) -> Result<Router, ListenerError> {
    router_with_options(runtime, mounts, &ListenerOptions::default())
}

/// [`router_with`] with [`ListenerOptions`]; fails when a protected
/// route's keys cannot be read.
pub fn router_with_options(
    runtime: Arc<Runtime>,
    mounts: Vec<(String, Router)>,
    options: &ListenerOptions,
) -> Result<Router, ListenerError> {
    let routes = Routes::of(&runtime);
    let auth = Verifiers::for_workers(
        runtime.workers().values().map(|live| live.spec()),
        options.secrets.as_ref(),
    )?;
    let shared = Shared {
        resolvers: Arc::new(Resolvers::of(&runtime)),
        auth: Arc::new(auth),
        runtime,
    };
    let resolvers = Router::new()
        .route(
            "/{type_name}/{field_name}",
            post(resolve).fallback(resolver_method_not_allowed),
        )
        .fallback(resolver_path_not_found);
    let mut app = Router::new()
        // Routes are the registry's text, not axum patterns: a segment
        // starting with `:` or `*` is literal.
        .without_v07_checks()
        .route(
            "/invoke/{domain}/{worker}",
            post(invoke).fallback(invoke_method_not_allowed),
        )
        .nest("/resolvers", resolvers)
        .route("/heartbeat", get(heartbeat));
    if options.dev_tokens {
        app = app.route("/dev/token", post(dev_token));
    }
    for (prefix, mount) in mounts.iter() {
        app = app.nest_service(prefix, mount.clone());
    }
    let mut root = None;
    for (route, worker) in routes.list() {
        routes.check(route, worker)?;
        if let Some((prefix, _)) = mounts
            .iter()
            .find(|(p, _)| route == p || route.starts_with(&format!("{p}/")))
        {
            return Err(ListenerError::Route {
                worker: worker.clone(),
                route: route.clone(),
                reason: format!("the paths below {prefix} are the host's own"),
            });
        }
        let service = http_worker(shared.clone(), worker.clone());
        if route == "/" {
            root = Some(service);
        } else {
            app = app.nest_service(route, service);
        }
    }
    let app = match root {
        Some(service) => app.fallback_service(service),
        None => app.fallback(path_not_found),
    };
    let labels = Arc::new(RouteLabels {
        routes: routes.list().iter().map(|(r, _)| r.clone()).collect(),
        mounts: mounts.iter().map(|(p, _)| p.clone()).collect(),
        workers: shared.runtime.workers().keys().cloned().collect(),
        resolvers: shared.resolvers.clone(),
    });
    Ok(app
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .layer(axum::middleware::from_fn_with_state(labels, observe))
        .with_state(shared))
}

/// What names a request's route in the metrics and spans: a bounded set
/// (the registry's routes, the host's mounts, the known invoke-workers and
/// resolvers), never the raw path.
struct RouteLabels {
    /// The http-workers' routes, longest first.
    routes: Vec<String>,
    mounts: Vec<String>,
    workers: std::collections::BTreeSet<String>,
    resolvers: Arc<Resolvers>,
}

impl RouteLabels {
    fn label(&self, path: &str) -> String {
        let below = |prefix: &str| {
            prefix == "/"
                || path == prefix
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| prefix.ends_with('/') || rest.starts_with('/'))
        };
        if let Some(rest) = path.strip_prefix(INVOKE_PREFIX) {
            return match rest.trim_end_matches('/') {
                w if self.workers.contains(w) => format!("{INVOKE_PREFIX}{w}"),
                _ => "/invoke/{unknown}".to_string(),
            };
        }
        if let Some(rest) = path.strip_prefix(RESOLVERS_PREFIX) {
            let mut parts = rest.trim_end_matches('/').splitn(2, '/');
            return match (parts.next(), parts.next()) {
                (Some(t), Some(f)) if self.resolvers.get(t, f).is_some() => {
                    format!("{RESOLVERS_PREFIX}{t}/{f}")
                }
                _ => "/resolvers/{unknown}".to_string(),
            };
        }
        if let Some(m) = self.mounts.iter().find(|m| below(m)) {
            return m.clone();
        }
        match self.routes.iter().find(|r| below(r)) {
            Some(r) => r.clone(),
            None => "unmatched".to_string(),
        }
    }
}

/// Every request of the listener: an `http_request` span (continuing the
/// caller's trace from its W3C `traceparent` header), and the Prometheus
/// request counter and response-time histogram by route, method and
/// status.
async fn observe(
    State(labels): State<Arc<RouteLabels>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    use tracing::Instrument;
    let started = std::time::Instant::now();
    let route = labels.label(request.uri().path());
    let method = request.method().as_str().to_string();
    // Owned before any await: the body makes `&Request` not `Send`.
    let [correlation_id, traceparent, tracestate] = {
        use usher_telemetry::propagation::{CORRELATION_ID, TRACEPARENT, TRACESTATE};
        [CORRELATION_ID, TRACEPARENT, TRACESTATE].map(|name| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
    };
    let span = tracing::info_span!(
        "http_request",
        method = %method,
        route = %route,
        correlation_id = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    if let Some(cid) = &correlation_id {
        span.record("correlation_id", cid.as_str());
    }
    usher_telemetry::propagation::set_parent(&span, traceparent.as_deref(), tracestate.as_deref());
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("status", status);
    usher_telemetry::metric::http_request(&route, &method, status, started.elapsed());
    response
}

/// The service of one http-worker: every method, the path below its route.
fn http_worker(shared: Shared, worker: String) -> MethodRouter {
    any(move |request: Request| {
        let shared = shared.clone();
        let worker = worker.clone();
        async move { serve_http(&shared, &worker, request).await }
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
    pub async fn bind(
        runtime: Arc<Runtime>,
        addr: SocketAddr,
    ) -> Result<HttpListener, ListenerError> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        HttpListener::serve(runtime, listener)
    }

    /// Serves the runtime's http-workers, invoke-workers and resolvers on a
    /// socket bound beforehand (so that its address can be known before the
    /// runtime exists). Must be called inside a tokio runtime.
    pub fn serve(
        runtime: Arc<Runtime>,
        listener: tokio::net::TcpListener,
    ) -> Result<HttpListener, ListenerError> {
        Self::serve_with(runtime, listener, Vec::new())
    }

    /// [`HttpListener::serve`] with more routers nested at their prefixes
    /// (see [`router_with`]).
    pub fn serve_with(
        runtime: Arc<Runtime>,
        listener: tokio::net::TcpListener,
        mounts: Vec<(String, Router)>,
    ) -> Result<HttpListener, ListenerError> {
        Self::serve_with_options(runtime, listener, mounts, &ListenerOptions::default())
    }

    /// [`HttpListener::serve_with`] with [`ListenerOptions`].
    pub fn serve_with_options(
        runtime: Arc<Runtime>,
        listener: tokio::net::TcpListener,
        mounts: Vec<(String, Router)>,
        options: &ListenerOptions,
    ) -> Result<HttpListener, ListenerError> {
        let addr = listener.local_addr()?;
        let routes = Routes::of(&runtime);
        let resolvers = Resolvers::of(&runtime);
        let app = router_with_options(runtime, mounts, options)?;
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

/// `response` with `Allow: POST` (the answer of a 405).
fn allow_post(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(axum::http::header::ALLOW, HeaderValue::from_static("POST"));
    response
}

/// The body within the router's [`DefaultBodyLimit`], or why it cannot be
/// read (413 over [`MAX_REQUEST_BYTES`]).
async fn read_body(request: Request) -> Result<Bytes, (StatusCode, String)> {
    Bytes::from_request(request, &())
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the request body is larger than {MAX_REQUEST_BYTES} bytes"),
                )
            } else {
                (
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {}", rejection.body_text()),
                )
            }
        })
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

/// The fallback: no worker serves the path.
async fn path_not_found(OriginalUri(uri): OriginalUri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no worker serves the path {}", uri.path()),
    )
}

/// One request to an http-worker; the router has stripped its route from
/// the request's path.
async fn serve_http(shared: &Shared, worker: &str, request: Request) -> Response {
    let runtime = &shared.runtime;
    let cid = correlation_id(&request);
    let method = request.method().as_str().to_ascii_uppercase();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    // The claims header is the host's: never a client's, on any route.
    let mut headers: Vec<(String, String)> = header_pairs(&request)
        .filter(|(name, _)| name != usher_auth::CLAIMS_HEADER)
        .collect();
    if let Some(verifier) = shared.auth.get(worker) {
        if let Err(e) = verifier.authorize(&mut headers) {
            tracing::info!(worker, reason = %e, "request refused: 401");
            return unauthorized(&e);
        }
    }
    let body = match read_body(request).await {
        Ok(b) => b,
        Err((status, message)) => return error(status, message),
    };
    let input = Input::Http(HttpRequest {
        method,
        path,
        query,
        headers,
        body: body.to_vec(),
    });
    match runtime.invoke(worker, &input, cid).await {
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

/// The 401 answer, with `WWW-Authenticate: Bearer`.
fn unauthorized(e: &AuthError) -> Response {
    let mut response = json_response(StatusCode::UNAUTHORIZED, &e.body());
    response.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer"),
    );
    response
}

/// `GET /heartbeat`: the listener is up (never authenticated).
async fn heartbeat() -> Response {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

/// `POST /dev/token[?worker=domain/name][&ttl_s=N]` with a JSON object of
/// claims (e.g. `{"sub","permissions":["REPORT"],"campaigns":["c1"]}`):
/// a token for the worker's route (default: the first protected route that
/// has an HMAC key), signed with its first HMAC key, `iss`/`aud` of the
/// route, `exp` = now + `ttl_s` (default 3600) unless the claims hold one.
/// Served only with [`ListenerOptions::dev_tokens`].
async fn dev_token(State(shared): State<Shared>, request: Request) -> Response {
    let query = request.uri().query().unwrap_or("").to_string();
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.replace("%2F", "/").replace("%2f", "/"))
    };
    let ttl_s = match param("ttl_s").map(|t| t.parse::<u64>()) {
        None => 3600,
        Some(Ok(t)) => t,
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "ttl_s must be a number of seconds"),
    };
    let verifier = match param("worker") {
        Some(w) => shared.auth.get(&w).map(|v| (w.clone(), v.clone())),
        None => shared
            .auth
            .iter()
            .find(|(_, v)| v.can_sign())
            .map(|(w, v)| (w.to_string(), v.clone())),
    };
    let Some((worker, verifier)) = verifier else {
        return error(
            StatusCode::NOT_FOUND,
            "no protected route to sign a token for",
        );
    };
    let body = match read_body(request).await {
        Ok(b) => b,
        Err((status, message)) => return error(status, message),
    };
    let claims = match parse_json(&body) {
        Ok(v) => v,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match verifier.dev_token(&claims, ttl_s, now) {
        Ok(token) => json_response(
            StatusCode::OK,
            &json!({"token": token, "worker": worker, "expiresIn": ttl_s}),
        ),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// `/invoke/{domain}/{worker}` with another method than POST.
async fn invoke_method_not_allowed() -> Response {
    allow_post(error(
        StatusCode::METHOD_NOT_ALLOWED,
        "invoke-workers take POST /invoke/{domain}/{worker}",
    ))
}

/// `POST /invoke/{domain}/{worker}`.
async fn invoke(
    State(shared): State<Shared>,
    path: Result<Path<(String, String)>, PathRejection>,
    request: Request,
) -> Response {
    let worker = match path {
        Ok(Path((domain, name))) => format!("{domain}/{name}"),
        Err(_) => {
            let path = request.uri().path();
            let name = path.strip_prefix(INVOKE_PREFIX).unwrap_or(path);
            return error(StatusCode::NOT_FOUND, format!("no worker {name}"));
        }
    };
    let runtime = &shared.runtime;
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
    let body = match read_body(request).await {
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

/// The fallback below `/resolvers`: a path that is not
/// `/resolvers/{typeName}/{fieldName}`.
async fn resolver_path_not_found(OriginalUri(uri): OriginalUri) -> Response {
    resolver_error(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!(
            "resolvers take POST {RESOLVERS_PREFIX}{{typeName}}/{{fieldName}}; not {}",
            uri.path()
        ),
    )
}

/// The worker of `/resolvers/{typeName}/{fieldName}`, or why there is none
/// (the message of the 404 answer).
fn resolver_of(
    shared: &Shared,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(String, String, String), String> {
    let Path((type_name, field_name)) =
        path.map_err(|e| format!("not a resolver path: {}", e.body_text()))?;
    match shared.resolvers.get(&type_name, &field_name) {
        Some(worker) => Ok((type_name, field_name, worker.to_string())),
        None => Err(format!("no worker resolves {type_name}.{field_name}")),
    }
}

/// The 404 answer of an unknown resolver.
fn resolver_not_found(message: String) -> Response {
    resolver_error(StatusCode::NOT_FOUND, "NotFound", message)
}

/// `/resolvers/{typeName}/{fieldName}` with another method than POST: 404
/// for an unknown resolver, else 405.
async fn resolver_method_not_allowed(
    State(shared): State<Shared>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    if let Err(message) = resolver_of(&shared, path) {
        return resolver_not_found(message);
    }
    allow_post(resolver_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!("resolvers take POST {RESOLVERS_PREFIX}{{typeName}}/{{fieldName}}"),
    ))
}

/// `POST /resolvers/{typeName}/{fieldName}`.
async fn resolve(
    State(shared): State<Shared>,
    path: Result<Path<(String, String)>, PathRejection>,
    request: Request,
) -> Response {
    let (type_name, field_name, worker) = match resolver_of(&shared, path) {
        Ok(found) => found,
        Err(message) => return resolver_not_found(message),
    };
    let cid = correlation_id(&request);
    let headers: BTreeMap<String, String> = header_pairs(&request).collect();
    let body = match read_body(request).await {
        Ok(b) => b,
        Err((status, message)) => return resolver_error(status, "BadRequest", message),
    };
    let body = match parse_json(&body) {
        Ok(v) => v,
        Err(message) => return resolver_error(StatusCode::BAD_REQUEST, "InvalidJson", message),
    };
    let event = resolver_event(&type_name, &field_name, &body, &headers);
    match shared
        .runtime
        .invoke(&worker, &Input::Invoke(event), cid)
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
