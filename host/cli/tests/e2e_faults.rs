//! End to end with a faulty Entry Service: a proxy in front of it fails 30%
//! of the requests — half answered 503 at once, half forwarded (so the
//! service does the work) and then held past the client's timeout — while
//! 2,000 entries are written, modified and removed. The HTTP client retries
//! once; calls that fail twice fail their messages, which come back after
//! the visibility timeout; everything converges: nothing lost, nothing
//! duplicated, nothing in a dead-letter queue.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::{bump, converge, remove, Platform};

const CAMPAIGN: &str = "c-faults";
const ENTRIES: usize = 2_000;
/// The client's timeout for the entries service in this test.
const TIMEOUT_MS: u64 = 400;

struct Proxy {
    target: String,
    client: reqwest::Client,
    seed: AtomicU64,
    requests: AtomicU64,
    refused: AtomicU64,
    held: AtomicU64,
}

impl Proxy {
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
    if roll < 15 {
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
    if roll < 30 {
        // The service did the work; the client gives up waiting for it.
        proxy.held.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(TIMEOUT_MS * 3)).await;
    }
    (status, bytes).into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_faulty_entry_service_still_converges() {
    let proxy_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let proxy_addr = proxy_listener.local_addr().expect("addr");
    // A short client timeout and a short visibility timeout, so that the
    // retries happen within the test; one retry per call only, so that some
    // calls fail for good and their messages come back through the queue.
    let mut platform = Platform::new(|name, text| match name {
        "resources.yaml" => text
            .replace("timeout_ms: 3000", &format!("timeout_ms: {TIMEOUT_MS}"))
            .replace("retries: 3", "retries: 1")
            .replace("visibility_timeout_s: 30", "visibility_timeout_s: 2"),
        _ => text,
    });
    let proxy = Arc::new(Proxy {
        target: platform.base.clone(),
        client: reqwest::Client::new(),
        seed: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
        requests: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        held: AtomicU64::new(0),
    });
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(proxy.clone());
    tokio::spawn(async move { axum::serve(proxy_listener, app).await });
    platform.entries_url = format!("http://{proxy_addr}/services/entries");
    platform.start().await;

    let tables = platform.embedded().tables();
    let users: Vec<String> = (0..ENTRIES).map(|i| format!("u{i:05}")).collect();
    for user in &users {
        bump(tables.as_ref(), CAMPAIGN, user).await;
    }
    for (i, user) in users.iter().enumerate() {
        if i % 4 == 0 {
            bump(tables.as_ref(), CAMPAIGN, user).await;
        }
        if i % 10 == 7 {
            remove(tables.as_ref(), CAMPAIGN, user).await;
        }
    }

    let state = converge(
        &platform,
        tables.as_ref(),
        CAMPAIGN,
        &users,
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(state.len(), ENTRIES - ENTRIES / 10);
    let (requests, refused, held) = (
        proxy.requests.load(Ordering::Relaxed),
        proxy.refused.load(Ordering::Relaxed),
        proxy.held.load(Ordering::Relaxed),
    );
    eprintln!("proxy: {requests} requests, {refused} refused (503), {held} held past the timeout");
    // The faults were really injected, at about the rate asked for. (Since
    // save-entries sends a batch's chunks in one call-many, with the score
    // refresh folded into the upsert, 2,000 entries make only ~100–150
    // requests: the bounds allow for the spread of so few draws.)
    assert!(
        refused >= 5 && held >= 5,
        "too few faults: {refused} / {held} of {requests}"
    );
    let rate = (refused + held) as f64 / requests as f64;
    assert!((0.1..0.5).contains(&rate), "fault rate {rate}");

    let status = platform.stop().await;
    assert!(status.success(), "{}", platform.log());
    // Retried for real: some batches failed and were received again.
    let status = platform.status();
    let save = &status["workers"]["replication/save-entries"];
    assert!(
        save["failed"].as_u64().unwrap_or(0) > 0,
        "no save-entries batch ever failed: {status}"
    );
    // And nothing was given up: the dead-letter queues are empty.
    for dlq in ["save-entries-dlq", "retry-score-dlq"] {
        assert_eq!(status["queues"][dlq]["visible"], 0, "{dlq}: {status}");
    }
}
