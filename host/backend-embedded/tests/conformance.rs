//! The conformance suites of `usher-backend-conformance` against the
//! embedded backends.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use usher_backend_conformance::queue::{Arrived, QueueProbe};
use usher_backend_conformance::{objects, queue, table, topic};
use usher_backend_embedded::{Embedded, EmbeddedQueues};

/// Receives from the embedded queues, polling until `wait` passes.
struct Probe(std::sync::Arc<EmbeddedQueues>);

#[async_trait]
impl QueueProbe for Probe {
    async fn receive(&self, queue: &str, wait: Duration) -> Vec<Arrived> {
        let deadline = Instant::now() + wait;
        loop {
            let got = self
                .0
                .receive(queue, 10, None)
                .await
                .expect("receive from an embedded queue");
            if !got.is_empty() || Instant::now() >= deadline {
                let receipts: Vec<String> = got.iter().map(|m| m.receipt.clone()).collect();
                for r in self.0.delete_batch(queue, &receipts).await.expect("delete") {
                    r.expect("delete a received message");
                }
                return got
                    .into_iter()
                    .map(|m| Arrived {
                        message_id: m.message_id,
                        body: m.body,
                        attributes: m.attributes,
                    })
                    .collect();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn table_conformance() {
    let e = Embedded::in_memory(&usher_backend_conformance::resources()).expect("open");
    table::all(e.tables().as_ref(), "sorted", "simple").await;
}

#[tokio::test]
async fn queue_conformance() {
    let e = Embedded::in_memory(&usher_backend_conformance::resources()).expect("open");
    queue::all(e.queues().as_ref(), &Probe(e.queues()), "work").await;
}

#[tokio::test]
async fn topic_conformance() {
    let e = Embedded::in_memory(&usher_backend_conformance::resources()).expect("open");
    topic::all(
        e.topics().as_ref(),
        &Probe(e.queues()),
        "news",
        "all",
        "filtered",
    )
    .await;
}

#[tokio::test]
async fn objects_conformance() {
    let e = Embedded::in_memory(&usher_backend_conformance::resources()).expect("open");
    objects::all(e.objects().as_ref(), "bucket").await;
}
