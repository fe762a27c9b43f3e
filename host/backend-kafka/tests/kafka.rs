//! The Kafka producer against a real broker (tansu, `USHER_TEST_KAFKA`,
//! started by `scripts/servers`): the events conformance suite read back by
//! a consumer, and an unreachable broker.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use usher_backend_conformance::{events, server, unique_name};
use usher_backend_kafka::{KafkaConfig, KafkaEvents};
use usher_capabilities::{CapError, Delivery, Event, EventBackend};

/// Creates `topic` with `partitions` partitions.
async fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create topics");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
}

/// Reads one record back with a consumer assigned to its partition and offset.
struct ConsumerProbe {
    brokers: String,
}

#[async_trait]
impl events::EventProbe for ConsumerProbe {
    async fn read(&self, topic: &str, at: Delivery) -> Result<Event, String> {
        let brokers = self.brokers.clone();
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || read_one(&brokers, &topic, at))
            .await
            .map_err(|e| e.to_string())?
    }
}

fn read_one(brokers: &str, topic: &str, at: Delivery) -> Result<Event, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "usher-conformance-probe")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(|e| e.to_string())?;
    // From the partition's start: tansu 0.6 answers a fetch from an offset
    // inside a record batch with nothing, so skip up to the wanted offset.
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, at.partition, Offset::Beginning)
        .map_err(|e| e.to_string())?;
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) if m.partition() == at.partition && m.offset() == at.offset => {
                let key = m
                    .key()
                    .map(|k| String::from_utf8(k.to_vec()).map_err(|e| e.to_string()))
                    .transpose()?;
                let headers = match m.headers() {
                    Some(h) => h
                        .iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect(),
                    None => Vec::new(),
                };
                return Ok(Event {
                    key,
                    value: m.payload().unwrap_or_default().to_vec(),
                    headers,
                });
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("consuming {topic} at {at:?}: {e}")),
            None => {}
        }
    }
    Err(format!("no record at {at:?} in {topic} within 20 s"))
}

#[tokio::test]
async fn events_conformance_on_kafka() {
    let Some(brokers) = server("USHER_TEST_KAFKA") else {
        return;
    };
    let topic = unique_name("usher-events");
    create_topic(&brokers, &topic, 3).await;
    let mut config = KafkaConfig::new(&brokers);
    config.message_timeout = Duration::from_secs(20);
    let backend = KafkaEvents::connect(&config).expect("producer");
    let probe = ConsumerProbe {
        brokers: brokers.clone(),
    };
    events::run_all(&backend, &probe, &topic, &unique_name("usher-missing")).await;
    backend.flush(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test]
async fn a_topic_created_after_a_miss_is_found() {
    let Some(brokers) = server("USHER_TEST_KAFKA") else {
        return;
    };
    let topic = unique_name("usher-late");
    let backend = KafkaEvents::connect(&KafkaConfig::new(&brokers)).expect("producer");
    let event = Event {
        key: None,
        value: b"v".to_vec(),
        headers: vec![],
    };
    assert!(matches!(
        backend.produce(&topic, vec![event.clone()]).await,
        Err(CapError::NotFound(_))
    ));
    create_topic(&brokers, &topic, 1).await;
    let results = backend.produce(&topic, vec![event]).await.unwrap();
    assert!(results[0].is_ok(), "{results:?}");
}

/// A port nothing listens on: bind one, then drop the listener.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn an_unreachable_broker_fails_each_record_in_bounded_time() {
    let mut config = KafkaConfig::new(&format!("127.0.0.1:{}", closed_port()));
    config.message_timeout = Duration::from_secs(2);
    config.metadata_timeout = Duration::from_secs(2);
    let backend = KafkaEvents::connect(&config).expect("the producer does not wait for brokers");
    let event = |v: &str| Event {
        key: Some("k".into()),
        value: v.as_bytes().to_vec(),
        headers: vec![],
    };
    let started = Instant::now();
    let results = backend
        .produce("anything", vec![event("a"), event("b"), event("c")])
        .await
        .expect("per-record results");
    assert_eq!(results.len(), 3);
    for r in &results {
        assert!(matches!(r, Err(CapError::Unavailable(_))), "{r:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    // An oversized value is still Invalid, even with the cluster down.
    let big = Event {
        key: None,
        value: vec![0; usher_capabilities::MAX_EVENT_VALUE_BYTES + 1],
        headers: vec![],
    };
    let results = backend
        .produce("anything", vec![big, event("d")])
        .await
        .unwrap();
    assert!(
        matches!(results[0], Err(CapError::Invalid(_))),
        "{results:?}"
    );
    assert!(
        matches!(results[1], Err(CapError::Unavailable(_))),
        "{results:?}"
    );
}
