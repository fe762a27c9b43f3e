//! A faulty network in front of a service: a proxy that fails a share of
//! the requests — half of the failures answered 503 at once, half forwarded
//! (so the service does the work) and then held past the client's timeout —
//! and forwards the rest as they are.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// A running fault proxy and what it did.
pub struct Proxy {
    target: String,
    client: reqwest::Client,
    fail_percent: u64,
    hold: Duration,
    seed: AtomicU64,
    /// Requests received.
    pub requests: AtomicU64,
    /// Answered 503 without forwarding.
    pub refused: AtomicU64,
    /// Forwarded, then held past the client's timeout.
    pub held: AtomicU64,
}

impl Proxy {
    /// Starts a proxy on 127.0.0.1 forwarding to `target` (`http://host:port`)
    /// that fails `fail_percent` % of the requests; held answers wait `hold`.
    pub async fn start(
        target: &str,
        fail_percent: u64,
        hold: Duration,
    ) -> (SocketAddr, Arc<Proxy>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let proxy = Arc::new(Proxy {
            target: target.to_string(),
            client: reqwest::Client::new(),
            fail_percent,
            hold,
            seed: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
            requests: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            held: AtomicU64::new(0),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(proxy.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (addr, proxy)
    }

    /// A number in 0..100 from a xorshift generator (deterministic per run
    /// order, no extra dependency).
    fn roll(&self) -> u64 {
        let mut x = self.seed.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.seed.store(x, Ordering::Relaxed);
        x % 100
    }

    /// (requests, refused, held) so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.held.load(Ordering::Relaxed),
        )
    }
}

async fn forward(
    State(proxy): State<Arc<Proxy>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    proxy.requests.fetch_add(1, Ordering::Relaxed);
    let roll = proxy.roll();
    if roll < proxy.fail_percent / 2 {
        proxy.refused.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::SERVICE_UNAVAILABLE, "injected 503").into_response();
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = proxy
        .client
        .request(method, format!("{}{path}", proxy.target))
        .body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    let answer = match request.send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = answer.status();
    let bytes = answer.bytes().await.unwrap_or_default();
    if roll < proxy.fail_percent {
        // The service did the work; the client gives up waiting for it.
        proxy.held.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(proxy.hold).await;
    }
    (status, bytes).into_response()
}
