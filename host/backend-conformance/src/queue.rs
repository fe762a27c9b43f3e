//! The suite of the `queue` backend trait.
//!
//! The backend trait only sends, so the caller implements [`QueueProbe`]
//! to receive what arrived in its queues (the topic suite uses it too). The
//! caller creates one empty standard queue for the suite.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use usher_capabilities::{CapError, OutgoingMessage, QueueBackend};

use crate::{expect_err, unique_name};

/// A message as a consumer received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrived {
    /// The message id the queue gave it.
    pub message_id: String,
    /// The body.
    pub body: String,
    /// Message attributes, in any order.
    pub attributes: Vec<(String, String)>,
}

/// The consumer side of the caller's queues.
#[async_trait]
pub trait QueueProbe: Send + Sync {
    /// Receives and deletes the messages visible in `queue` now (at most
    /// ten), waiting up to `wait` for the first one; an empty list when none
    /// came. Panics when the queue cannot be read.
    async fn receive(&self, queue: &str, wait: Duration) -> Vec<Arrived>;
}

/// Receives from `queue` until `n` messages arrived or `within` passed;
/// then checks for a further second that no more arrive.
pub async fn collect(
    probe: &dyn QueueProbe,
    queue: &str,
    n: usize,
    within: Duration,
) -> Vec<Arrived> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        out.extend(probe.receive(queue, Duration::from_millis(500)).await);
    }
    out.extend(probe.receive(queue, Duration::from_secs(1)).await);
    out
}

/// A message with attributes and no delay.
pub fn message(body: &str, attributes: &[(&str, &str)]) -> OutgoingMessage {
    OutgoingMessage {
        body: body.to_string(),
        attributes: attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        delay_seconds: None,
    }
}

/// The ids of a batch's results, checking every one succeeded and that they
/// are distinct and not empty.
pub fn ids(what: &str, results: &[Result<String, CapError>]) -> Vec<String> {
    let ids: Vec<String> = results
        .iter()
        .enumerate()
        .map(|(i, r)| match r {
            Ok(id) if !id.is_empty() => id.clone(),
            other => panic!("{what}: message {i}: {other:?}"),
        })
        .collect();
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "{what}: message ids repeat");
    ids
}

/// Messages by id: body and sorted attributes.
type ById<'a> = BTreeMap<&'a str, (&'a str, Vec<(String, String)>)>;

/// Checks that `arrived` holds exactly the messages `sent` under the ids
/// `ids` (any order), attributes included.
pub fn same_messages(what: &str, arrived: &[Arrived], sent: &[(String, OutgoingMessage)]) {
    let sorted = |a: &[(String, String)]| {
        let mut a = a.to_vec();
        a.sort();
        a
    };
    let got: ById<'_> = arrived
        .iter()
        .map(|m| {
            (
                m.message_id.as_str(),
                (m.body.as_str(), sorted(&m.attributes)),
            )
        })
        .collect();
    assert_eq!(
        got.len(),
        arrived.len(),
        "{what}: a message arrived twice: {arrived:?}"
    );
    let expected: ById<'_> = sent
        .iter()
        .map(|(id, m)| (id.as_str(), (m.body.as_str(), sorted(&m.attributes))))
        .collect();
    assert_eq!(
        got, expected,
        "{what}: what arrived differs from what was sent"
    );
}

/// Runs every case of the suite, in order, on an empty queue.
pub async fn all(q: &dyn QueueBackend, probe: &dyn QueueProbe, queue: &str) {
    eprintln!("queue: send_batch");
    send_batch(q, probe, queue).await;
    eprintln!("queue: invalid_messages");
    invalid_messages(q, probe, queue).await;
    eprintln!("queue: delay");
    delay(q, probe, queue).await;
    eprintln!("queue: unknown_queue");
    unknown_queue(q).await;
}

/// More messages than one request carries, with attributes: one id per
/// message in order, and each arrives once with its body and attributes
/// under that id.
pub async fn send_batch(q: &dyn QueueBackend, probe: &dyn QueueProbe, queue: &str) {
    assert!(q
        .send_batch(queue, Vec::new())
        .await
        .expect("empty batch")
        .is_empty());
    let messages: Vec<OutgoingMessage> = (0..23)
        .map(|i| {
            let body = format!("{{\"n\":{i},\"text\":\"héllo ✓ {}\"}}", "x".repeat(i * 7));
            let mut m = message(&body, &[]);
            for a in 0..(i % 4) {
                m.attributes
                    .push((format!("attr-{a}"), format!("value {i}.{a}")));
            }
            m
        })
        .collect();
    let results = q
        .send_batch(queue, messages.clone())
        .await
        .expect("send_batch 23");
    assert_eq!(results.len(), 23);
    let ids = ids("send_batch", &results);
    let arrived = collect(probe, queue, 23, Duration::from_secs(20)).await;
    let sent: Vec<(String, OutgoingMessage)> = ids.into_iter().zip(messages).collect();
    same_messages("send_batch", &arrived, &sent);
}

/// A message over the limits (body above 256 KiB, delay above 900 s) is
/// `Invalid` alone; the others of its batch are sent.
pub async fn invalid_messages(q: &dyn QueueBackend, probe: &dyn QueueProbe, queue: &str) {
    let mut messages: Vec<OutgoingMessage> = (0..12)
        .map(|i| message(&format!("ok {i}"), &[("i", &i.to_string())]))
        .collect();
    messages[3].delay_seconds = Some(901);
    messages[8].body = "x".repeat(300 * 1024);
    let results = q
        .send_batch(queue, messages.clone())
        .await
        .expect("send_batch with bad messages");
    assert_eq!(results.len(), 12);
    let mut sent = Vec::new();
    for (i, (r, m)) in results.into_iter().zip(messages).enumerate() {
        if i == 3 || i == 8 {
            expect_err(&format!("message {i}"), r, "invalid");
        } else {
            sent.push((r.unwrap_or_else(|e| panic!("message {i}: {e}")), m));
        }
    }
    let arrived = collect(probe, queue, 10, Duration::from_secs(20)).await;
    same_messages("invalid_messages", &arrived, &sent);
}

/// A delayed message arrives only once its delay has passed.
pub async fn delay(q: &dyn QueueBackend, probe: &dyn QueueProbe, queue: &str) {
    let mut later = message("later", &[("when", "later")]);
    later.delay_seconds = Some(3);
    let mut now = message("now", &[]);
    now.delay_seconds = Some(0);
    let sent_at = Instant::now();
    let results = q
        .send_batch(queue, vec![later.clone(), now.clone()])
        .await
        .expect("send_batch with delay");
    let ids = ids("delay", &results);
    let first = probe.receive(queue, Duration::from_millis(500)).await;
    assert!(
        sent_at.elapsed() < Duration::from_millis(2500),
        "the receive took too long to check the delay"
    );
    same_messages("delay: before", &first, &[(ids[1].clone(), now)]);
    let mut arrived = Vec::new();
    while arrived.is_empty() && sent_at.elapsed() < Duration::from_secs(15) {
        arrived = probe.receive(queue, Duration::from_millis(500)).await;
    }
    assert!(
        sent_at.elapsed() >= Duration::from_millis(2500),
        "the delayed message arrived after {:?}",
        sent_at.elapsed()
    );
    same_messages("delay: after", &arrived, &[(ids[0].clone(), later)]);
}

/// Sending to a queue that does not exist is `NotFound`.
pub async fn unknown_queue(q: &dyn QueueBackend) {
    expect_err(
        "send to an unknown queue",
        q.send_batch(&unique_name("no-such-queue"), vec![message("x", &[])])
            .await,
        "not_found",
    );
}
