//! The events and cache conformance suites (`usher-backend-conformance`)
//! against the embedded backends: the same code that runs against Kafka and
//! Redis.

use async_trait::async_trait;
use usher_backend_conformance::{cache, events};
use usher_backend_embedded::{Embedded, EmbeddedEvents};
use usher_capabilities::{Delivery, Event};
use usher_registry::Resources;

struct LogProbe<'a>(&'a EmbeddedEvents);

#[async_trait]
impl events::EventProbe for LogProbe<'_> {
    async fn read(&self, topic: &str, at: Delivery) -> Result<Event, String> {
        if at.partition != 0 {
            return Err(format!("the embedded log has one partition, not {at:?}"));
        }
        let offset = u64::try_from(at.offset).map_err(|e| e.to_string())?;
        let mut records = self
            .0
            .read(topic, offset, 1)
            .await
            .map_err(|e| e.to_string())?;
        let record = records
            .pop()
            .ok_or_else(|| format!("no record at {at:?}"))?;
        Ok(Event {
            key: record.key,
            value: record.value,
            headers: record.headers,
        })
    }
}

fn embedded() -> Embedded {
    let mut r = Resources::default();
    r.event_topics.push("analytics".into());
    Embedded::in_memory(&r).expect("embedded backends")
}

#[tokio::test]
async fn events_conformance() {
    let e = embedded();
    let ev = e.events();
    events::run_all(ev.as_ref(), &LogProbe(&ev), "analytics", "not-a-topic").await;
}

#[tokio::test]
async fn cache_conformance() {
    let e = embedded();
    cache::run_all(e.cache().as_ref(), "conformance").await;
}
