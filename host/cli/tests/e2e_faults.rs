//! End to end with a faulty Entry Service: a proxy in front of it fails 30%
//! of the requests — half answered 503 at once, half forwarded (so the
//! service does the work) and then held past the client's timeout — while
//! 2,000 entries are written, modified and removed. The HTTP client retries
//! once; calls that fail twice fail their messages, which come back after
//! the visibility timeout; everything converges: nothing lost, nothing
//! duplicated, nothing in a dead-letter queue.

use crate::common;

use std::time::Duration;

use common::proxy::Proxy;
use common::{bump, converge, remove, Platform};

const CAMPAIGN: &str = "c-faults";
const ENTRIES: usize = 2_000;
/// The client's timeout for the entries service in this test.
const TIMEOUT_MS: u64 = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_faulty_entry_service_still_converges() {
    let mut platform = Platform::new(|name, text| match name {
        "resources.yaml" => text
            .replace("timeout_ms: 3000", &format!("timeout_ms: {TIMEOUT_MS}"))
            .replace("retries: 3", "retries: 1")
            .replace("visibility_timeout_s: 30", "visibility_timeout_s: 2"),
        _ => text,
    });
    let (proxy_addr, proxy) =
        Proxy::start(&platform.base, 30, Duration::from_millis(TIMEOUT_MS * 3)).await;
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
    let (requests, refused, held) = proxy.counts();
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
