//! testing/service-caller under wasmtime, with the real HTTP services backend
//! (`usher-backend-http`) against an HTTP server on 127.0.0.1: one
//! `services.call-many` crossing runs its requests concurrently, each with its
//! own JWT, `X-Correlation-Id`, retries, timeout and result.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use serde_json::{json, Value};
use usher_backend_http::{HttpServices, JwtConfig, ServiceTarget};
use usher_engine::{Input, Output};
use usher_testing::{components, TestHost};

/// How long the server holds every `/slow/…` request.
const HOLD: Duration = Duration::from_millis(300);

/// A request as the server saw it: route, `authorization`, `x-correlation-id`.
type SeenRequest = (String, Option<String>, Option<String>);

#[derive(Default)]
struct Seen {
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    flaky_attempts: AtomicUsize,
    requests: std::sync::Mutex<Vec<SeenRequest>>,
}

async fn handler(
    State(seen): State<Arc<Seen>>,
    Path(route): Path<String>,
    headers: HeaderMap,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if let Ok(mut r) = seen.requests.lock() {
        r.push((
            route.clone(),
            header("authorization"),
            header("x-correlation-id"),
        ));
    }
    let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    seen.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let response = if route.starts_with("slow/") {
        tokio::time::sleep(HOLD).await;
        axum::Json(json!({"route": route})).into_response()
    } else if route == "missing" {
        (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "no such thing"})),
        )
            .into_response()
    } else if route == "flaky" {
        // The first attempt fails with 503; the retry succeeds.
        if seen.flaky_attempts.fetch_add(1, Ordering::SeqCst) == 0 {
            (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response()
        } else {
            axum::Json(json!({"route": route})).into_response()
        }
    } else if route == "hang" {
        tokio::time::sleep(Duration::from_secs(30)).await;
        axum::Json(json!({})).into_response()
    } else {
        axum::Json(json!({"route": route})).into_response()
    };
    seen.in_flight.fetch_sub(1, Ordering::SeqCst);
    response
}

async fn server() -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let app = Router::new()
        .route("/{*route}", any(handler))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), seen)
}

async fn host() -> (TestHost, Arc<Seen>) {
    let (base, seen) = server().await;
    let mut targets = BTreeMap::new();
    for (name, timeout_ms) in [("alpha", 2000), ("beta", 2000), ("short", 200)] {
        targets.insert(
            name.to_string(),
            ServiceTarget {
                base_url: base.clone(),
                timeout: Duration::from_millis(timeout_ms),
                retries: if name == "short" { 0 } else { 2 },
            },
        );
    }
    let http = HttpServices::from_targets(targets, JwtConfig::new("usher-test", "secret"))
        .expect("http services");
    // The registry names the services the worker is granted; the backend
    // above decides where they go.
    let resources = format!(
        "services:\n  alpha: {{ url: \"{base}\" }}\n  beta: {{ url: \"{base}\" }}\n  short: {{ url: \"{base}\" }}\n"
    );
    let host = TestHost::builder()
        .resources(&resources)
        .worker(
            &components::TESTING_SERVICE_CALLER,
            "trigger: { invoke: {} }\ngrants: { services: [alpha, beta, short] }\nlimits: { timeout_ms: 10000 }",
        )
        .service_backend(Arc::new(http))
        .build()
        .expect("test host");
    (host, seen)
}

async fn run(host: &TestHost, payload: Value) -> Value {
    let out = host
        .invoke("testing/service-caller", Input::Invoke(payload))
        .await
        .expect("invocation");
    match out.output {
        Output::Invoke(Ok(v)) => v,
        other => panic!("{other:?}"),
    }
}

fn slow(n: usize, service: &str) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"service": service, "method": "POST", "path": format!("/slow/{i}"), "body": {"i": i}}))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_call_many_runs_its_requests_concurrently() {
    let (host, seen) = host().await;
    let started = Instant::now();
    let answers = run(
        &host,
        json!({"mode": "many", "requests": slow(10, "alpha")}),
    )
    .await;
    let took = started.elapsed();
    let answers = answers.as_array().expect("an array").clone();
    assert_eq!(answers.len(), 10);
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a["status"], 200, "{a}");
        let body: Value = serde_json::from_str(a["body"].as_str().unwrap_or("")).expect("json");
        assert_eq!(
            body["route"],
            format!("slow/{i}"),
            "answers keep request order"
        );
    }
    // Ten requests each held 300 ms: one after another they would take 3 s.
    assert!(
        seen.max_in_flight.load(Ordering::SeqCst) >= 8,
        "at most {} requests were in flight at once",
        seen.max_in_flight.load(Ordering::SeqCst)
    );
    assert!(took < HOLD * 5, "10 concurrent requests took {took:?}");

    // The same requests one by one: never more than one in flight.
    seen.max_in_flight.store(0, Ordering::SeqCst);
    let answers = run(
        &host,
        json!({"mode": "one-by-one", "requests": slow(3, "alpha")}),
    )
    .await;
    assert_eq!(answers.as_array().map(Vec::len), Some(3));
    assert_eq!(seen.max_in_flight.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_has_its_own_jwt_correlation_id_retries_timeout_and_result() {
    let (host, seen) = host().await;
    let requests = json!([
        {"service": "alpha", "method": "GET", "path": "/ok-alpha"},
        {"service": "beta", "method": "GET", "path": "/ok-beta"},
        {"service": "alpha", "method": "GET", "path": "/missing"},
        {"service": "alpha", "method": "GET", "path": "/flaky"},
        {"service": "short", "method": "GET", "path": "/hang"},
        {"service": "gamma", "method": "GET", "path": "/ok-gamma"},
        {"service": "alpha", "method": "GET", "path": "no-slash"},
    ]);
    let answers = run(&host, json!({"mode": "many", "requests": requests})).await;
    let a = answers.as_array().expect("an array");
    assert_eq!(a.len(), 7, "{answers}");
    assert_eq!(a[0]["status"], 200, "{}", a[0]);
    assert_eq!(a[1]["status"], 200, "{}", a[1]);
    assert_eq!(
        a[2]["status"], 404,
        "a non-2xx status is that request's response: {}",
        a[2]
    );
    assert_eq!(a[3]["status"], 200, "the 503 was retried: {}", a[3]);
    assert!(
        a[4]["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("unavailable"),
        "the 200 ms timeout of `short` is its own: {}",
        a[4]
    );
    assert!(
        a[5]["error"].as_str().unwrap_or("").starts_with("denied"),
        "an ungranted service fails alone: {}",
        a[5]
    );
    assert!(
        a[6]["error"].as_str().unwrap_or("").starts_with("invalid"),
        "{}",
        a[6]
    );
    assert_eq!(seen.flaky_attempts.load(Ordering::SeqCst), 2);

    let requests = seen.requests.lock().expect("lock").clone();
    assert!(
        !requests.iter().any(|(route, ..)| route == "ok-gamma"),
        "denied requests never leave the host"
    );
    let correlation: Vec<&Option<String>> = requests.iter().map(|(_, _, c)| c).collect();
    assert!(correlation.iter().all(|c| c.is_some()), "{requests:?}");
    assert!(
        correlation.windows(2).all(|w| w[0] == w[1]),
        "every request carries the invocation's correlation id: {requests:?}"
    );
    for (route, auth, _) in &requests {
        let auth = auth.as_deref().unwrap_or("");
        assert!(
            auth.starts_with("Bearer ") && auth.len() > 20,
            "{route}: {auth}"
        );
    }
}

#[tokio::test]
async fn more_than_256_requests_are_refused_as_a_whole() {
    let (host, seen) = host().await;
    let requests: Vec<Value> = (0..257)
        .map(|i| json!({"service": "alpha", "method": "GET", "path": format!("/n{i}")}))
        .collect();
    let answer = run(&host, json!({"mode": "many", "requests": requests})).await;
    assert!(
        answer["refused"]
            .as_str()
            .unwrap_or("")
            .starts_with("invalid"),
        "{answer}"
    );
    assert!(seen.requests.lock().expect("lock").is_empty());
}
