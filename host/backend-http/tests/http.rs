//! `HttpServices` against a real HTTP server on 127.0.0.1.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method as HttpMethod, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use usher_backend_http::{AppClaims, HttpServices, JwtConfig, RetryPolicy, ServiceTarget};
use usher_capabilities::{CapError, Method, ServiceBackend, ServiceRequest};
use usher_registry::ServiceDef;

const SECRET: &[u8] = b"test-secret";

#[derive(Clone, Default)]
struct Hits(Arc<Mutex<HashMap<String, u32>>>);

impl Hits {
    fn bump(&self, route: &str) -> u32 {
        let mut map = self.0.lock().unwrap();
        let n = map.entry(route.to_string()).or_default();
        *n += 1;
        *n
    }

    fn get(&self, route: &str) -> u32 {
        self.0.lock().unwrap().get(route).copied().unwrap_or(0)
    }
}

async fn handler(
    State(hits): State<Hits>,
    Path(route): Path<String>,
    method: HttpMethod,
    headers: HeaderMap,
    body: String,
) -> Response {
    let n = hits.bump(&route);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    match route.as_str() {
        "echo" => axum::Json(json!({
            "method": method.as_str(),
            "authorization": header("authorization"),
            "correlation": header("x-correlation-id"),
            "custom": header("x-custom"),
            "content_type": header("content-type"),
            "body": body,
        }))
        .into_response(),
        // Two 503s, then an answer.
        "flaky" if n <= 2 => (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response(),
        "flaky" => (StatusCode::OK, "ok").into_response(),
        // A 429 asking for a one-second pause, then an answer.
        "throttled" if n == 1 => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "slow down",
        )
            .into_response(),
        "throttled" => (StatusCode::OK, "ok").into_response(),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            (StatusCode::OK, "late").into_response()
        }
        "down" => (
            StatusCode::SERVICE_UNAVAILABLE,
            [("x-why", "maintenance")],
            "down",
        )
            .into_response(),
        _ => (StatusCode::NOT_FOUND, "nope").into_response(),
    }
}

async fn server() -> (SocketAddr, Hits) {
    let hits = Hits::default();
    let app = Router::new()
        .route("/api/{route}", any(handler))
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, hits)
}

fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        ..RetryPolicy::default()
    }
}

fn services(addr: SocketAddr, timeout: Duration, retries: u32) -> HttpServices {
    let mut targets = BTreeMap::new();
    targets.insert(
        "entries".to_string(),
        ServiceTarget {
            base_url: format!("http://{addr}/api"),
            timeout,
            retries,
        },
    );
    HttpServices::from_targets(targets, JwtConfig::new("usher-test", SECRET))
        .unwrap()
        .with_retry_policy(fast_policy())
}

fn request(path: &str) -> ServiceRequest {
    ServiceRequest {
        service: "entries".into(),
        method: Method::Get,
        path: path.into(),
        headers: vec![],
        body: None,
        correlation_id: "corr-123".into(),
    }
}

#[tokio::test]
async fn headers_are_sent_and_the_token_verifies() {
    let (addr, hits) = server().await;
    let mut defs = BTreeMap::new();
    defs.insert(
        "entries".to_string(),
        ServiceDef {
            url: format!("http://{addr}/api/"),
            timeout_ms: 2000,
            retries: 1,
        },
    );
    let s = HttpServices::new(defs, JwtConfig::new("usher-test", SECRET)).unwrap();
    let mut req = request("/echo?x=1");
    req.method = Method::Post;
    req.body = Some(r#"{"a":1}"#.into());
    req.headers = vec![
        ("X-Custom".into(), "yes".into()),
        ("Authorization".into(), "Bearer forged".into()),
        ("X-Correlation-Id".into(), "forged".into()),
    ];
    let resp = s.call(req.clone()).await.unwrap();
    assert_eq!(resp.status, 200);
    assert!(resp
        .headers
        .iter()
        .any(|(k, v)| k == "content-type" && v.contains("json")));
    let echo: Value = serde_json::from_str(&resp.body).unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["correlation"], "corr-123");
    assert_eq!(echo["custom"], "yes");
    assert_eq!(echo["content_type"], "application/json");
    assert_eq!(echo["body"], r#"{"a":1}"#);

    let auth = echo["authorization"].as_str().unwrap();
    let token = auth.strip_prefix("Bearer ").expect("a bearer token");
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&["entries"]);
    validation.set_issuer(&["usher-test"]);
    let claims =
        jsonwebtoken::decode::<AppClaims>(token, &DecodingKey::from_secret(SECRET), &validation)
            .unwrap()
            .claims;
    assert_eq!(claims.sub, "usher-test");
    assert_eq!(claims.aud, "entries");
    assert_eq!(claims.exp - claims.iat, JwtConfig::DEFAULT_TTL.as_secs());
    // A wrong secret does not verify.
    assert!(jsonwebtoken::decode::<AppClaims>(
        token,
        &DecodingKey::from_secret(b"other"),
        &validation
    )
    .is_err());

    // The token is cached between calls.
    let again: Value = serde_json::from_str(&s.call(req).await.unwrap().body).unwrap();
    assert_eq!(again["authorization"], auth);
    assert_eq!(hits.get("echo"), 2);
}

#[tokio::test]
async fn retries_503_then_succeeds() {
    let (addr, hits) = server().await;
    let s = services(addr, Duration::from_secs(2), 3);
    let resp = s.call(request("/flaky")).await.unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, "ok");
    assert_eq!(hits.get("flaky"), 3);
}

#[tokio::test]
async fn honours_retry_after() {
    let (addr, hits) = server().await;
    let s = services(addr, Duration::from_secs(2), 2);
    let start = Instant::now();
    let resp = s.call(request("/throttled")).await.unwrap();
    let waited = start.elapsed();
    assert_eq!(resp.status, 200);
    assert_eq!(hits.get("throttled"), 2);
    // The backoff alone would be ~10 ms; Retry-After asked for a second.
    assert!(waited >= Duration::from_millis(950), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
}

#[tokio::test]
async fn retry_after_is_capped() {
    let (addr, hits) = server().await;
    let s = services(addr, Duration::from_secs(2), 2).with_retry_policy(RetryPolicy {
        max_retry_after: Duration::from_millis(100),
        ..fast_policy()
    });
    let start = Instant::now();
    assert_eq!(s.call(request("/throttled")).await.unwrap().status, 200);
    assert!(start.elapsed() < Duration::from_millis(900));
    assert_eq!(hits.get("throttled"), 2);
}

#[tokio::test]
async fn timeouts_are_retried_then_unavailable() {
    let (addr, hits) = server().await;
    let s = services(addr, Duration::from_millis(200), 2);
    let start = Instant::now();
    let err = s.call(request("/slow")).await.unwrap_err();
    assert!(
        matches!(&err, CapError::Unavailable(m) if m.contains("timed out")),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(3));
    // Give the server a moment to count the last attempt.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(hits.get("slow"), 3);
}

#[tokio::test]
async fn not_found_is_returned_without_retry() {
    let (addr, hits) = server().await;
    let s = services(addr, Duration::from_secs(2), 3);
    let resp = s.call(request("/missing")).await.unwrap();
    assert_eq!(resp.status, 404);
    assert_eq!(resp.body, "nope");
    assert_eq!(hits.get("missing"), 1);
}

#[tokio::test]
async fn exhausted_retries_return_the_last_answer() {
    let (addr, hits) = server().await;
    let s = services(addr, Duration::from_secs(2), 2);
    let resp = s.call(request("/down")).await.unwrap();
    assert_eq!(resp.status, 503);
    assert_eq!(resp.body, "down");
    assert!(resp
        .headers
        .iter()
        .any(|(k, v)| k == "x-why" && v == "maintenance"));
    assert_eq!(hits.get("down"), 3);
}

#[tokio::test]
async fn connection_refused_is_retried_then_unavailable() {
    // A port nobody listens on any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let s = services(addr, Duration::from_secs(1), 2);
    let err = s.call(request("/echo")).await.unwrap_err();
    assert!(
        matches!(&err, CapError::Unavailable(m) if m.contains("after 3 attempt")),
        "{err}"
    );
}

#[tokio::test]
async fn unknown_service_and_bad_requests() {
    let (addr, hits) = server().await;
    let s = services(addr, Duration::from_secs(1), 0);
    let mut req = request("/echo");
    req.service = "users".into();
    assert!(matches!(s.call(req).await, Err(CapError::NotFound(_))));

    let escape = s.call(request("/../../admin")).await;
    assert!(matches!(escape, Err(CapError::Invalid(_))), "{escape:?}");
    let mut bad_header = request("/echo");
    bad_header.headers = vec![("bad header".into(), "x".into())];
    assert!(matches!(
        s.call(bad_header).await,
        Err(CapError::Invalid(_))
    ));
    assert_eq!(hits.get("echo"), 0);
}
