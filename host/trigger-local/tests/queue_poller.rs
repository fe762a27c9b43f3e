//! The queue poller on testing/queue-sender: messages whose send is denied
//! stay in the queue and, after max_receive_count receives, land in the
//! dead-letter queue; the others are deleted.

mod common;

use std::sync::Arc;

use common::{bodies, send, until};
use usher_testing::{components, TestHost};
use usher_trigger_local::{PollOutcome, QueuePoller, TriggerOptions, Triggers, WorkerCounters};

const WORKER: &str = "testing/queue-sender";

fn host() -> TestHost {
    TestHost::builder()
        .resources(
            "queues:\n  inbox: { visibility_timeout_s: 0, max_receive_count: 2, dead_letter: inbox-dlq }\n  inbox-dlq: {}\n  allowed: {}\n  forbidden: {}",
        )
        .worker(
            &components::TESTING_QUEUE_SENDER,
            "trigger: { queue: inbox }\nbatch_size: 10\ngrants: { queues: [allowed] }",
        )
        .build()
        .expect("test host")
}

async fn empty(host: &TestHost, queue: &str) -> bool {
    let d = host.embedded.queues().depth(queue).await.expect("depth");
    d.visible + d.in_flight + d.delayed == 0
}

#[tokio::test]
async fn denied_messages_are_redriven_to_the_dead_letter_queue_and_the_others_deleted() {
    let host = host();
    send(
        &host,
        "inbox",
        &[
            ("one", "allowed"),
            ("denied", "forbidden"),
            ("two", "allowed"),
        ],
    )
    .await;
    let poller = QueuePoller::new(
        host.runtime.clone(),
        host.embedded.queues(),
        WORKER,
        Arc::new(WorkerCounters::default()),
    )
    .expect("poller");
    assert_eq!(
        poller.poll_once().await.expect("poll"),
        PollOutcome::Processed {
            received: 3,
            deleted: 2,
            failed: 1
        }
    );
    // Visibility timeout 0: the failed message is back at once.
    assert_eq!(
        poller.poll_once().await.expect("poll"),
        PollOutcome::Processed {
            received: 1,
            deleted: 0,
            failed: 1
        }
    );
    // Received twice (max_receive_count 2): redriven instead of delivered.
    assert_eq!(poller.poll_once().await.expect("poll"), PollOutcome::Empty);
    assert!(empty(&host, "inbox").await);
    let dlq = host
        .embedded
        .queues()
        .list("inbox-dlq", 10)
        .await
        .expect("list");
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(dlq[0].body, "denied");
    assert_eq!(dlq[0].dead_letter_source.as_deref(), Some("inbox"));
    let mut delivered = bodies(&host, "allowed").await;
    delivered.sort();
    assert_eq!(delivered, vec!["one", "two"]);
    assert!(empty(&host, "forbidden").await);
    let c = poller.counters().snapshot();
    assert_eq!(
        (c.received, c.succeeded, c.failed, c.in_flight),
        (4, 2, 2, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_poller_drains_the_queue_and_stops_on_shutdown() {
    let host = host();
    let triggers = Triggers::start(
        host.runtime.clone(),
        &host.embedded,
        TriggerOptions::default(),
    )
    .expect("triggers");
    send(
        &host,
        "inbox",
        &[("a", "allowed"), ("b", "forbidden"), ("c", "allowed")],
    )
    .await;
    until("the denied message in the dead-letter queue", || async {
        bodies(&host, "inbox-dlq").await == vec!["b".to_string()]
    })
    .await;
    until("the inbox empty", || empty(&host, "inbox")).await;
    let counters = triggers.snapshot()[WORKER];
    triggers.shutdown().await.expect("shutdown");
    let mut delivered = bodies(&host, "allowed").await;
    delivered.sort();
    assert_eq!(delivered, vec!["a", "c"]);
    assert_eq!((counters.succeeded, counters.failed), (2, 2));

    // Stopped: a new message stays.
    send(&host, "inbox", &[("d", "allowed")]).await;
    assert_eq!(
        host.embedded
            .queues()
            .depth("inbox")
            .await
            .expect("depth")
            .visible,
        1
    );
}
