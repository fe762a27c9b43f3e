//! The suite of the [`EventBackend`] trait (Kafka-shaped event streams).
//!
//! The contract, as `usher-backend-embedded` and `usher-backend-kafka` both
//! keep it:
//!
//! - `produce` answers one result per record, in the order of the batch;
//! - records of one partition get increasing offsets in batch order, and
//!   records with the same key land on the same partition;
//! - what a consumer reads back is what was produced: key, value and headers
//!   (header order kept);
//! - a value up to [`MAX_EVENT_VALUE_BYTES`] is accepted; a larger one fails
//!   alone (`Invalid`) while the rest of the batch is delivered;
//! - a topic that does not exist fails the whole call with `NotFound`
//!   (topics are infrastructure, never created by producing);
//! - an empty batch is an empty answer.
//!
//! The caller supplies an [`EventProbe`] that reads records back, since
//! reading is not part of the trait (workers only produce).

use std::collections::BTreeMap;

use async_trait::async_trait;
use usher_capabilities::{CapError, Delivery, Event, EventBackend, MAX_EVENT_VALUE_BYTES};

/// Reads back what a backend stored, so the suite can compare it with what
/// it produced. Implemented by the test of each backend (the embedded event
/// log's reader, a Kafka consumer …).
#[async_trait]
pub trait EventProbe: Send + Sync {
    /// The record stored in `topic` at `delivery` (partition and offset).
    async fn read(&self, topic: &str, delivery: Delivery) -> Result<Event, String>;
}

fn event(key: Option<&str>, value: &[u8], headers: &[(&str, &str)]) -> Event {
    Event {
        key: key.map(str::to_string),
        value: value.to_vec(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn delivered(results: Vec<Result<Delivery, CapError>>, what: &str) -> Vec<Delivery> {
    results
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|e| panic!("{what}: record {i} was not delivered: {e}")))
        .collect()
}

/// Checks that records of one partition have increasing offsets in batch order.
fn assert_offsets_increase(deliveries: &[Delivery], what: &str) {
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for (i, d) in deliveries.iter().enumerate() {
        assert!(d.offset >= 0, "{what}: record {i} has offset {}", d.offset);
        if let Some(prev) = last.insert(d.partition, d.offset) {
            assert!(
                d.offset > prev,
                "{what}: record {i} got offset {} in partition {} after offset {prev}",
                d.offset,
                d.partition
            );
        }
    }
}

async fn assert_reads_back(probe: &dyn EventProbe, topic: &str, sent: &[Event], at: &[Delivery]) {
    for (i, (want, d)) in sent.iter().zip(at).enumerate() {
        let got = probe
            .read(topic, *d)
            .await
            .unwrap_or_else(|e| panic!("reading record {i} back at {d:?}: {e}"));
        assert_eq!(got.key, want.key, "key of record {i} at {d:?}");
        assert_eq!(
            got.value.len(),
            want.value.len(),
            "value length of record {i} at {d:?}"
        );
        assert!(got.value == want.value, "value of record {i} at {d:?}");
        assert_eq!(got.headers, want.headers, "headers of record {i} at {d:?}");
    }
}

/// A batch with keys (and one without), headers (a repeated name, an empty
/// value) and binary values: one delivery per record in order, offsets
/// increasing per partition, equal keys on one partition, and every record
/// read back as sent. Then a second batch continues after the first.
pub async fn produce_batch(backend: &dyn EventBackend, probe: &dyn EventProbe, topic: &str) {
    let batch = vec![
        event(
            Some("fan-1"),
            b"{\"n\":1}",
            &[("type", "CAMPAIGN"), ("trace", "t-1")],
        ),
        event(Some("fan-2"), b"{\"n\":2}", &[]),
        event(None, &[0, 159, 146, 150, 255], &[("binary", "yes")]),
        event(
            Some("fan-1"),
            b"{\"n\":3}",
            &[("dup", "a"), ("dup", "b"), ("empty", "")],
        ),
        event(Some("fan-3"), b"", &[("empty-value", "true")]),
        event(
            Some("fan-1"),
            "ünïcödé ✓".as_bytes(),
            &[("ключ", "значение")],
        ),
    ];
    let results = backend
        .produce(topic, batch.clone())
        .await
        .unwrap_or_else(|e| panic!("producing to `{topic}`: {e}"));
    assert_eq!(results.len(), batch.len(), "one result per record");
    let first = delivered(results, "first batch");
    assert_offsets_increase(&first, "first batch");
    let fan1: Vec<i32> = [0, 3, 5].iter().map(|&i| first[i].partition).collect();
    assert!(
        fan1.iter().all(|p| *p == fan1[0]),
        "records keyed fan-1 landed on partitions {fan1:?}"
    );
    assert_reads_back(probe, topic, &batch, &first).await;

    let again = vec![
        event(Some("fan-1"), b"{\"n\":4}", &[]),
        event(Some("fan-2"), b"{\"n\":5}", &[]),
    ];
    let second = delivered(
        backend
            .produce(topic, again.clone())
            .await
            .unwrap_or_else(|e| panic!("producing again to `{topic}`: {e}")),
        "second batch",
    );
    let mut both = first.clone();
    both.extend_from_slice(&second);
    assert_offsets_increase(&both, "two batches");
    assert_reads_back(probe, topic, &again, &second).await;
}

/// Many records at once (the batch is produced concurrently by real
/// backends): still one result per record in order and increasing offsets
/// per partition.
pub async fn large_batch(backend: &dyn EventBackend, probe: &dyn EventProbe, topic: &str) {
    let batch: Vec<Event> = (0..200)
        .map(|i| {
            let key = format!("k-{}", i % 7);
            let value = format!("record {i}");
            let n = i.to_string();
            event(Some(&key), value.as_bytes(), &[("n", &n)])
        })
        .collect();
    let results = backend
        .produce(topic, batch.clone())
        .await
        .unwrap_or_else(|e| panic!("producing 200 records to `{topic}`: {e}"));
    assert_eq!(results.len(), batch.len(), "one result per record");
    let at = delivered(results, "large batch");
    assert_offsets_increase(&at, "large batch");
    // Spot checks: the first, one in the middle and the last.
    for i in [0, 101, 199] {
        assert_reads_back(probe, topic, &batch[i..=i], &at[i..=i]).await;
    }
}

/// A value of exactly [`MAX_EVENT_VALUE_BYTES`] is delivered; one byte more
/// fails that record alone with `Invalid`, and its neighbours are delivered.
pub async fn value_size_limit(backend: &dyn EventBackend, probe: &dyn EventProbe, topic: &str) {
    let at_limit = event(Some("big"), &vec![b'x'; MAX_EVENT_VALUE_BYTES], &[]);
    let too_big = event(Some("big"), &vec![b'y'; MAX_EVENT_VALUE_BYTES + 1], &[]);
    let small = event(Some("small"), b"fine", &[]);
    let results = backend
        .produce(
            topic,
            vec![small.clone(), too_big, at_limit.clone(), small.clone()],
        )
        .await
        .unwrap_or_else(|e| panic!("producing to `{topic}`: {e}"));
    assert_eq!(results.len(), 4, "one result per record");
    match &results[1] {
        Err(CapError::Invalid(_)) => {}
        other => panic!("a value of MAX_EVENT_VALUE_BYTES + 1 gave {other:?}, not Invalid"),
    }
    let kept: Vec<Delivery> = [0, 2, 3]
        .iter()
        .map(|&i| match &results[i] {
            Ok(d) => *d,
            Err(e) => panic!("record {i} beside the oversized one was not delivered: {e}"),
        })
        .collect();
    assert_offsets_increase(&kept, "records beside the oversized one");
    assert_reads_back(probe, topic, &[small.clone(), at_limit, small], &kept).await;
}

/// An empty batch is an empty answer.
pub async fn empty_batch(backend: &dyn EventBackend, topic: &str) {
    let results = backend
        .produce(topic, Vec::new())
        .await
        .unwrap_or_else(|e| panic!("producing nothing to `{topic}`: {e}"));
    assert!(results.is_empty(), "an empty batch gave {results:?}");
}

/// A topic that does not exist fails the whole call with `NotFound`, and
/// asking again does not create it.
pub async fn missing_topic(backend: &dyn EventBackend, missing: &str) {
    for attempt in 1..=2 {
        match backend
            .produce(missing, vec![event(Some("k"), b"v", &[])])
            .await
        {
            Err(CapError::NotFound(message)) => assert!(
                message.contains(missing),
                "the NotFound error does not name the topic: {message}"
            ),
            other => panic!("producing to missing topic `{missing}` (attempt {attempt}) gave {other:?}, not NotFound"),
        }
    }
}

/// Every test of the suite. `topic` must exist and may already hold records;
/// `missing` must not exist.
pub async fn run_all(
    backend: &dyn EventBackend,
    probe: &dyn EventProbe,
    topic: &str,
    missing: &str,
) {
    produce_batch(backend, probe, topic).await;
    large_batch(backend, probe, topic).await;
    value_size_limit(backend, probe, topic).await;
    empty_batch(backend, topic).await;
    missing_topic(backend, missing).await;
}
