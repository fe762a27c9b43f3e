//! The suite of the `topic` backend trait.
//!
//! The caller creates a topic and two empty queues subscribed to it with
//! raw message delivery (the queue message is the published body and
//! attributes): `all` without a filter policy, `filtered` with
//! [`filter_policy`]. It receives from them through a
//! [`QueueProbe`](crate::queue::QueueProbe).

use std::time::Duration;

use serde_json::{json, Value};
use usher_capabilities::{OutgoingMessage, TopicBackend};

use crate::queue::{collect, ids, message, same_messages, QueueProbe};
use crate::{expect_err, unique_name};

/// The filter policy of the `filtered` subscription: attribute `kind` is
/// `keep`.
pub fn filter_policy() -> Value {
    json!({"kind": ["keep"]})
}

/// Runs every case of the suite, in order.
pub async fn all(
    t: &dyn TopicBackend,
    probe: &dyn QueueProbe,
    topic: &str,
    all_queue: &str,
    filtered_queue: &str,
) {
    eprintln!("topic: publish_batch");
    publish_batch(t, probe, topic, all_queue, filtered_queue).await;
    eprintln!("topic: unknown_topic");
    unknown_topic(t).await;
}

/// More messages than one request carries: one id per message in order;
/// every valid message reaches `all` with its body and attributes, only
/// those with `kind` = `keep` reach `filtered`; a message over the size
/// limit is `Invalid` alone; a delay is ignored.
pub async fn publish_batch(
    t: &dyn TopicBackend,
    probe: &dyn QueueProbe,
    topic: &str,
    all_queue: &str,
    filtered_queue: &str,
) {
    assert!(t
        .publish_batch(topic, Vec::new())
        .await
        .expect("empty batch")
        .is_empty());
    let messages: Vec<OutgoingMessage> = (0..14)
        .map(|i| {
            let body = format!("{{\"n\":{i}}}");
            match i {
                7 => message(&body, &[]),
                9 => OutgoingMessage {
                    delay_seconds: Some(60),
                    ..message(&body, &[("kind", "keep")])
                },
                11 => message(&"x".repeat(300 * 1024), &[("kind", "keep")]),
                _ if i % 3 == 0 => message(&body, &[("kind", "keep"), ("n", &i.to_string())]),
                _ => message(&body, &[("kind", "drop"), ("other", "keep")]),
            }
        })
        .collect();
    let mut results = t
        .publish_batch(topic, messages.clone())
        .await
        .expect("publish_batch 14");
    assert_eq!(results.len(), 14);
    expect_err("message 11 (too large)", results.remove(11), "invalid");
    let ids = ids("publish_batch", &results);

    let mut valid = messages;
    valid.remove(11);
    // Queue messages have ids of their own: match them by body.
    let arrived_all = collect(probe, all_queue, 13, Duration::from_secs(20)).await;
    let arrived_filtered = collect(probe, filtered_queue, 5, Duration::from_secs(20)).await;
    for (name, arrived, expected) in [
        ("all", arrived_all, valid.clone()),
        (
            "filtered",
            arrived_filtered,
            valid
                .iter()
                .filter(|m| m.attributes.contains(&("kind".into(), "keep".into())))
                .cloned()
                .collect(),
        ),
    ] {
        let sent: Vec<(String, OutgoingMessage)> = expected
            .into_iter()
            .map(|m| {
                let id = arrived
                    .iter()
                    .find(|a| a.body == m.body)
                    .map(|a| a.message_id.clone())
                    .unwrap_or_else(|| format!("(did not arrive: {})", m.body));
                (id, m)
            })
            .collect();
        same_messages(&format!("publish_batch: queue `{name}`"), &arrived, &sent);
    }
    assert_eq!(ids.len(), 13);
}

/// Publishing to a topic that does not exist is `NotFound`.
pub async fn unknown_topic(t: &dyn TopicBackend) {
    expect_err(
        "publish to an unknown topic",
        t.publish_batch(&unique_name("no-such-topic"), vec![message("x", &[])])
            .await,
        "not_found",
    );
}
