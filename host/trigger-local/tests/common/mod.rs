// Shared helpers of the trigger tests (included with `mod common;`).
#![allow(dead_code)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use usher_capabilities::{OutgoingMessage, QueueBackend, TableBackend};
use usher_testing::TestHost;

/// A demand-table entry item.
pub fn entry(campaign: &str, user: &str, needs_replication: bool) -> Value {
    json!({
        "PK": format!("ENTRY#{campaign}#{user}"),
        "SK": "ENTRY",
        "campaignId": campaign,
        "globalUserId": user,
        "entry": {"firstName": "Ada", "zip": "10001"},
        "needsReplication": needs_replication,
        "version": 1,
    })
}

/// Writes items to the demand table.
pub async fn put_all(host: &TestHost, items: &[Value]) {
    let tables = host.embedded.tables();
    for item in items {
        tables
            .put("demand-table", item.clone(), None)
            .await
            .expect("put");
    }
}

/// Sends messages (body, `queue` attribute) to a queue.
pub async fn send(host: &TestHost, queue: &str, messages: &[(&str, &str)]) -> Vec<String> {
    let out = host
        .embedded
        .queues()
        .send_batch(
            queue,
            messages
                .iter()
                .map(|(body, target)| OutgoingMessage {
                    body: (*body).to_string(),
                    attributes: vec![("queue".into(), (*target).to_string())],
                    delay_seconds: None,
                })
                .collect(),
        )
        .await
        .expect("send");
    out.into_iter().map(|r| r.expect("sent")).collect()
}

/// The bodies of every message of a queue (without receiving them).
pub async fn bodies(host: &TestHost, queue: &str) -> Vec<String> {
    host.embedded
        .queues()
        .list(queue, 10_000)
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.body)
        .collect()
}

/// The `sequenceNumber`s of the change records sent to a queue.
pub async fn sent_seqs(host: &TestHost, queue: &str) -> Vec<u64> {
    bodies(host, queue)
        .await
        .iter()
        .map(|b| {
            let v: Value = serde_json::from_str(b).expect("json body");
            v["sequenceNumber"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("a sequence number")
        })
        .collect()
}

/// Waits until `check` holds; panics after 5 s (a hang, not a timing
/// assertion: the condition is reached in a few milliseconds).
pub async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
