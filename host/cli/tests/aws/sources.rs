//! Lambda's event-source mappings, run locally: a DynamoDB stream follower,
//! a Kinesis stream follower and an SQS poller that read the real servers
//! (DynamoDB Local's stream API, moto's Kinesis and SQS) and invoke a
//! function through its [`RuntimeApi`] with the event JSON Lambda sends,
//! acting on the reply as Lambda does with `ReportBatchItemFailures`; and
//! DynamoDB's Kinesis streaming destination (which DynamoDB Local lacks),
//! copying a table's stream records into a Kinesis stream as DynamoDB does:
//!
//! * streams: a batch is retried from its first failed sequence number (the
//!   whole batch on an invocation error) up to `max_retries` times, then
//!   given up and counted (Lambda would send it to the on-failure
//!   destination); records are delivered in order per shard;
//! * queue: the messages that did not fail are deleted; failed ones (all of
//!   them on an invocation error) stay and come back after the visibility
//!   timeout, and SQS moves them to the dead-letter queue after
//!   `maxReceiveCount` receives.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use serde_json::{json, Map, Value};
use tokio::sync::watch;

use super::runtime_api::RuntimeApi;

/// How long a source waits for one invocation's answer.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a source did.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Invocations made.
    pub invocations: AtomicU64,
    /// Records (messages) delivered, counting redeliveries.
    pub records: AtomicU64,
    /// Invocations that ended in a function error.
    pub errors: AtomicU64,
    /// Records reported in `batchItemFailures`.
    pub item_failures: AtomicU64,
    /// Stream records given up after the retries.
    pub given_up: AtomicU64,
}

impl SourceStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn summary(&self) -> String {
        format!(
            "{} invocations, {} records, {} errors, {} item failures, {} given up",
            Self::get(&self.invocations),
            Self::get(&self.records),
            Self::get(&self.errors),
            Self::get(&self.item_failures),
            Self::get(&self.given_up)
        )
    }
}

/// The identifiers a reply lists in `batchItemFailures`.
fn item_failures(reply: &Value) -> Vec<String> {
    reply["batchItemFailures"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_string))
        .collect()
}

/// Where a DynamoDB stream's records go.
pub enum StreamTarget {
    /// A function, invoked with DynamoDB stream events (Lambda's DynamoDB
    /// event-source mapping).
    Function(Arc<RuntimeApi>),
    /// A Kinesis data stream, one record per change in the JSON of
    /// DynamoDB's Kinesis streaming destination, the item's key as the
    /// partition key.
    Kinesis {
        client: aws_sdk_kinesis::Client,
        stream: String,
        /// The table's name in the records.
        table: String,
    },
}

/// A DynamoDB stream mapped to a target.
pub struct StreamSource {
    pub client: aws_sdk_dynamodbstreams::Client,
    pub stream_arn: String,
    pub batch_size: i32,
    pub max_retries: u32,
}

enum Shard {
    /// Not read yet; read once its parent is done.
    Waiting {
        parent: Option<String>,
    },
    /// Being read; `after` is the last record delivered (a new iterator
    /// starts after it when this one expires).
    Reading {
        iterator: Option<String>,
        after: Option<String>,
    },
    Done,
}

impl StreamSource {
    /// Follows the stream from its oldest record until `stop` turns true.
    pub async fn run(
        self,
        target: StreamTarget,
        stats: Arc<SourceStats>,
        stop: watch::Receiver<bool>,
    ) {
        let mut shards: Vec<(String, Shard)> = Vec::new();
        let mut described: Option<Instant> = None;
        while !*stop.borrow() {
            if described.is_none_or(|at| at.elapsed() > Duration::from_secs(2)) {
                self.describe(&mut shards).await;
                described = Some(Instant::now());
            }
            let mut delivered = false;
            for i in 0..shards.len() {
                let (iterator, after) = match &shards[i].1 {
                    Shard::Done => continue,
                    Shard::Reading {
                        iterator: Some(iterator),
                        after,
                    } => (iterator.clone(), after.clone()),
                    Shard::Reading {
                        iterator: None,
                        after,
                    } => match self.iterator(&shards[i].0, after.as_deref()).await {
                        Some(iterator) => (iterator, after.clone()),
                        None => continue,
                    },
                    Shard::Waiting { parent } => {
                        let parent_done = parent.as_ref().is_none_or(|p| {
                            shards
                                .iter()
                                .find(|(id, _)| id == p)
                                .is_none_or(|(_, s)| matches!(s, Shard::Done))
                        });
                        if !parent_done {
                            continue;
                        }
                        match self.iterator(&shards[i].0, None).await {
                            Some(iterator) => (iterator, None),
                            None => continue,
                        }
                    }
                };
                let page = match self
                    .client
                    .get_records()
                    .shard_iterator(&iterator)
                    .limit(self.batch_size)
                    .send()
                    .await
                {
                    Ok(page) => page,
                    Err(e) => {
                        // An expired iterator, or DynamoDB Local's
                        // TrimmedDataAccessException on an iterator taken
                        // while the shard was empty: take a new one.
                        let e = e.into_service_error();
                        if !e.is_expired_iterator_exception()
                            && !e.is_trimmed_data_access_exception()
                        {
                            eprintln!("stream source: GetRecords: {e:?}");
                        }
                        shards[i].1 = Shard::Reading {
                            iterator: None,
                            after,
                        };
                        continue;
                    }
                };
                let records = page.records();
                let mut after = after;
                if !records.is_empty() {
                    delivered = true;
                    let events: Vec<Value> = records
                        .iter()
                        .map(|r| lambda_stream_record(r, &self.stream_arn))
                        .collect();
                    match &target {
                        StreamTarget::Function(function) => {
                            let sequence = |r: &Value| r["dynamodb"]["SequenceNumber"].clone();
                            deliver_in_order(function, &stats, events, sequence, self.max_retries)
                                .await;
                        }
                        StreamTarget::Kinesis {
                            client,
                            stream,
                            table,
                        } => put_into_kinesis(client, stream, table, &stats, events).await,
                    }
                    after = records
                        .last()
                        .and_then(|r| r.dynamodb())
                        .and_then(|r| r.sequence_number())
                        .map(str::to_string);
                }
                shards[i].1 = match page.next_shard_iterator() {
                    Some(next) => Shard::Reading {
                        iterator: Some(next.to_string()),
                        after,
                    },
                    None => Shard::Done,
                };
            }
            if !delivered {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    async fn describe(&self, shards: &mut Vec<(String, Shard)>) {
        let mut start: Option<String> = None;
        loop {
            let out = match self
                .client
                .describe_stream()
                .stream_arn(&self.stream_arn)
                .set_exclusive_start_shard_id(start.clone())
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) => {
                    eprintln!("stream source: DescribeStream: {e:?}");
                    return;
                }
            };
            let Some(description) = out.stream_description() else {
                return;
            };
            for shard in description.shards() {
                let Some(id) = shard.shard_id() else { continue };
                if !shards.iter().any(|(known, _)| known == id) {
                    shards.push((
                        id.to_string(),
                        Shard::Waiting {
                            parent: shard.parent_shard_id().map(str::to_string),
                        },
                    ));
                }
            }
            match description.last_evaluated_shard_id() {
                Some(last) => start = Some(last.to_string()),
                None => return,
            }
        }
    }

    /// An iterator at the shard's oldest record, or after `after`.
    async fn iterator(&self, shard: &str, after: Option<&str>) -> Option<String> {
        let request = self
            .client
            .get_shard_iterator()
            .stream_arn(&self.stream_arn)
            .shard_id(shard);
        let request = match after {
            Some(sequence) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(sequence),
            None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        match request.send().await {
            Ok(out) => out.shard_iterator().map(str::to_string),
            Err(e) => {
                eprintln!("stream source: GetShardIterator: {e:?}");
                None
            }
        }
    }
}

/// Invokes the function with a batch of ordered records until it succeeds,
/// retrying from the first record whose `sequence` a reply lists as failed
/// (the whole rest on an invocation error), up to `max_retries` times.
async fn deliver_in_order(
    function: &RuntimeApi,
    stats: &SourceStats,
    records: Vec<Value>,
    sequence: impl Fn(&Value) -> Value,
    max_retries: u32,
) {
    let mut from = 0;
    let mut attempt = 0;
    loop {
        let batch = &records[from..];
        stats.invocations.fetch_add(1, Ordering::Relaxed);
        stats
            .records
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let failed_at = match function
            .invoke(json!({ "Records": batch }), INVOKE_TIMEOUT)
            .await
        {
            Ok(reply) => {
                let failures = item_failures(&reply);
                if failures.is_empty() {
                    return;
                }
                stats
                    .item_failures
                    .fetch_add(failures.len() as u64, Ordering::Relaxed);
                // Lambda retries from the lowest failed sequence number.
                batch
                    .iter()
                    .position(|r| {
                        sequence(r)
                            .as_str()
                            .is_some_and(|s| failures.iter().any(|f| f == s))
                    })
                    .unwrap_or(0)
            }
            Err(e) => {
                eprintln!("stream source: the function failed: {e:?}");
                stats.errors.fetch_add(1, Ordering::Relaxed);
                0
            }
        };
        attempt += 1;
        if attempt > max_retries {
            stats
                .given_up
                .fetch_add((batch.len() - failed_at) as u64, Ordering::Relaxed);
            return;
        }
        from += failed_at;
        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
    }
}

/// Puts stream records into a Kinesis stream one by one (so that they keep
/// their order), as DynamoDB's Kinesis streaming destination writes them.
async fn put_into_kinesis(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    table: &str,
    stats: &SourceStats,
    records: Vec<Value>,
) {
    for record in records {
        let mut change = record["dynamodb"].clone();
        let keys = change["Keys"].to_string();
        if let Some(change) = change.as_object_mut() {
            change.remove("SequenceNumber");
            change.remove("StreamViewType");
            let millis = change["ApproximateCreationDateTime"].as_i64().unwrap_or(0) * 1000;
            change.insert("ApproximateCreationDateTime".into(), json!(millis));
            change.insert(
                "ApproximateCreationDateTimePrecision".into(),
                json!("MILLISECOND"),
            );
        }
        let data = json!({
            "awsRegion": record["awsRegion"],
            "eventID": record["eventID"],
            "eventName": record["eventName"],
            "userIdentity": null,
            "recordFormat": "application/json",
            "tableName": table,
            "dynamodb": change,
            "eventSource": "aws:dynamodb",
        });
        let mut attempt = 0;
        loop {
            let put = client
                .put_record()
                .stream_name(stream)
                .partition_key(&keys)
                .data(aws_sdk_kinesis::primitives::Blob::new(data.to_string()))
                .send()
                .await;
            match put {
                Ok(_) => break,
                Err(e) => {
                    attempt += 1;
                    assert!(attempt < 10, "Kinesis PutRecord keeps failing: {e:?}");
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
            }
        }
        stats.records.fetch_add(1, Ordering::Relaxed);
    }
}

/// A Kinesis data stream (carrying DynamoDB changes) mapped to a function.
pub struct KinesisSource {
    pub client: aws_sdk_kinesis::Client,
    pub stream: String,
    pub stream_arn: String,
    pub batch_size: i32,
    pub max_retries: u32,
}

impl KinesisSource {
    /// Follows every shard from its oldest record until `stop` turns true.
    pub async fn run(
        self,
        function: Arc<RuntimeApi>,
        stats: Arc<SourceStats>,
        stop: watch::Receiver<bool>,
    ) {
        let shards = self
            .client
            .list_shards()
            .stream_name(&self.stream)
            .send()
            .await
            .expect("ListShards");
        let mut iterators = Vec::new();
        for shard in shards.shards() {
            let iterator = self
                .client
                .get_shard_iterator()
                .stream_name(&self.stream)
                .shard_id(shard.shard_id())
                .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
                .send()
                .await
                .expect("GetShardIterator")
                .shard_iterator
                .expect("an iterator");
            iterators.push((shard.shard_id().to_string(), Some(iterator)));
        }
        while !*stop.borrow() {
            let mut delivered = false;
            for (shard, iterator) in &mut iterators {
                let Some(current) = iterator.clone() else {
                    continue;
                };
                let page = match self
                    .client
                    .get_records()
                    .shard_iterator(&current)
                    .limit(self.batch_size)
                    .send()
                    .await
                {
                    Ok(page) => page,
                    Err(e) => {
                        eprintln!("kinesis source: GetRecords: {e:?}");
                        continue;
                    }
                };
                if !page.records().is_empty() {
                    delivered = true;
                    let events: Vec<Value> = page
                        .records()
                        .iter()
                        .map(|r| lambda_kinesis_record(r, shard, &self.stream_arn))
                        .collect();
                    let sequence = |r: &Value| r["kinesis"]["sequenceNumber"].clone();
                    deliver_in_order(&function, &stats, events, sequence, self.max_retries).await;
                }
                *iterator = page.next_shard_iterator().map(str::to_string);
            }
            if !delivered {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// A Kinesis record in the shape Lambda delivers it.
fn lambda_kinesis_record(
    record: &aws_sdk_kinesis::types::Record,
    shard: &str,
    stream_arn: &str,
) -> Value {
    use base64::Engine;
    let arrival = record
        .approximate_arrival_timestamp()
        .map(|t| t.as_secs_f64())
        .unwrap_or(0.0);
    json!({
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": record.partition_key(),
            "sequenceNumber": record.sequence_number(),
            "data": base64::engine::general_purpose::STANDARD.encode(record.data().as_ref()),
            "approximateArrivalTimestamp": arrival,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": format!("{shard}:{}", record.sequence_number()),
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/usher-e2e",
        "awsRegion": "us-east-1",
        "eventSourceARN": stream_arn,
    })
}

/// A stream record in the shape Lambda delivers it.
fn lambda_stream_record(record: &Record, stream_arn: &str) -> Value {
    let mut dynamodb = Map::new();
    if let Some(change) = record.dynamodb() {
        let item = |image: &HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>| {
            serde_json::to_value(serde_dynamo::Item::from(image.clone())).expect("an image")
        };
        if let Some(t) = change.approximate_creation_date_time() {
            dynamodb.insert("ApproximateCreationDateTime".into(), json!(t.secs()));
        }
        if let Some(keys) = change.keys() {
            dynamodb.insert("Keys".into(), item(keys));
        }
        if let Some(image) = change.new_image() {
            dynamodb.insert("NewImage".into(), item(image));
        }
        if let Some(image) = change.old_image() {
            dynamodb.insert("OldImage".into(), item(image));
        }
        dynamodb.insert("SequenceNumber".into(), json!(change.sequence_number()));
        dynamodb.insert("SizeBytes".into(), json!(change.size_bytes()));
        if let Some(view) = change.stream_view_type() {
            dynamodb.insert("StreamViewType".into(), json!(view.as_str()));
        }
    }
    json!({
        "eventID": record.event_id(),
        "eventName": record.event_name().map(|n| n.as_str()),
        "eventVersion": record.event_version(),
        "eventSource": "aws:dynamodb",
        "awsRegion": record.aws_region(),
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    })
}

/// An SQS queue mapped to a function.
pub struct QueueSource {
    pub client: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub queue_arn: String,
    /// At most 10 (one ReceiveMessage).
    pub batch_size: i32,
}

impl QueueSource {
    /// Polls the queue until `stop` turns true.
    pub async fn run(
        self,
        function: Arc<RuntimeApi>,
        stats: Arc<SourceStats>,
        stop: watch::Receiver<bool>,
    ) {
        while !*stop.borrow() {
            let received = self
                .client
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(self.batch_size)
                .wait_time_seconds(1)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send()
                .await;
            let messages = match received {
                Ok(out) => out.messages.unwrap_or_default(),
                Err(e) => {
                    eprintln!("queue source: ReceiveMessage: {e:?}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if messages.is_empty() {
                continue;
            }
            let records: Vec<Value> = messages
                .iter()
                .map(|m| lambda_sqs_record(m, &self.queue_arn))
                .collect();
            stats.invocations.fetch_add(1, Ordering::Relaxed);
            stats
                .records
                .fetch_add(records.len() as u64, Ordering::Relaxed);
            let failed: HashSet<String> = match function
                .invoke(json!({ "Records": records }), INVOKE_TIMEOUT)
                .await
            {
                Ok(reply) => {
                    let failed = item_failures(&reply);
                    stats
                        .item_failures
                        .fetch_add(failed.len() as u64, Ordering::Relaxed);
                    failed.into_iter().collect()
                }
                Err(e) => {
                    eprintln!("queue source: the function failed: {e:?}");
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    messages
                        .iter()
                        .filter_map(|m| m.message_id().map(str::to_string))
                        .collect()
                }
            };
            let done: Vec<DeleteMessageBatchRequestEntry> = messages
                .iter()
                .enumerate()
                .filter(|(_, m)| m.message_id().is_some_and(|id| !failed.contains(id)))
                .map(|(n, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(n.to_string())
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .build()
                        .expect("a delete entry")
                })
                .collect();
            if done.is_empty() {
                continue;
            }
            match self
                .client
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(done))
                .send()
                .await
            {
                Ok(out) if !out.failed().is_empty() => {
                    eprintln!("queue source: some deletes failed: {:?}", out.failed());
                }
                Ok(_) => {}
                Err(e) => eprintln!("queue source: DeleteMessageBatch: {e:?}"),
            }
        }
    }
}

/// An SQS message in the shape Lambda delivers it.
fn lambda_sqs_record(message: &Message, queue_arn: &str) -> Value {
    let attributes: Map<String, Value> = message
        .attributes()
        .into_iter()
        .flatten()
        .map(|(name, value)| (name.as_str().to_string(), json!(value)))
        .collect();
    let message_attributes: Map<String, Value> = message
        .message_attributes()
        .into_iter()
        .flatten()
        .map(|(name, value)| {
            (
                name.clone(),
                json!({
                    "stringValue": value.string_value(),
                    "stringListValues": [],
                    "binaryListValues": [],
                    "dataType": value.data_type(),
                }),
            )
        })
        .collect();
    json!({
        "messageId": message.message_id(),
        "receiptHandle": message.receipt_handle(),
        "body": message.body(),
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message.md5_of_body(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": "us-east-1",
    })
}
