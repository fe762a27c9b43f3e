//! Events in, AWS reply shapes out: the one place the host reads AWS's
//! event shapes (with `aws_lambda_events`) and turns them into Usher's own
//! input types ([`Input`], [`BatchMessage`], [`ChangeRecord`], [`Tick`]).
//!
//! The worker's trigger in the registry decides which event shape is
//! expected: SQS for queue workers, DynamoDB stream records (direct, or
//! carried by Kinesis as the seed's demand table delivers them) for stream
//! workers, EventBridge scheduled events for schedules, AppSync direct
//! resolver events for resolvers, any JSON (Step Functions, direct invoke)
//! for invoke workers.
//!
//! Two readers share the parsing:
//! * [`parse_event`] is `usher lambda`'s: AWS shapes only, record by record.
//! * [`read_event`] is for `usher invoke` and the test host: Usher's tagged
//!   form (`{"kind": "batch", "event": [...]}`) and Usher's own records too,
//!   a bare list where AWS has `{"Records": [...]}`; any record it cannot
//!   read is an error naming it.
//!
//! # One bad record in a batch
//!
//! Under `usher lambda` a record that names itself (an SQS `messageId`, a
//! stream sequence number) but cannot be turned into Usher's input (an SQS
//! message without a body, a Kinesis record whose data is not a DynamoDB
//! change record, an `eventName` that is not INSERT, MODIFY or REMOVE …) is
//! [`Rejected`] alone: the reason is logged, the record is reported in
//! `batchItemFailures`, and the other records go to the worker. When no
//! record can be read, the worker is not invoked and every record is
//! reported (a partial batch response, not an invocation error). An event
//! that is not of the trigger's shape, or a record that does not name
//! itself, is an `InvalidEvent` invocation error: there is nothing to
//! report it by.
//!
//! What Lambda then does: an SQS message reported failed becomes visible
//! again after the visibility timeout and, if it stays bad, goes to the
//! dead-letter queue after `maxReceiveCount` receives; the others are
//! deleted. A stream (DynamoDB, Kinesis) checkpoints before the *lowest*
//! failed sequence number and retries from there: the records after a bad
//! one have been processed by the worker, and are given to it again with
//! the retry (at least once). A stream record that stays bad holds its
//! shard until the event source mapping's `MaximumRetryAttempts` (or
//! `MaximumRecordAgeInSeconds`) runs out and the on-failure destination
//! takes the batch, as for any failed record.

use aws_lambda_events::event::appsync::AppSyncDirectResolverEvent;
use aws_lambda_events::event::dynamodb::EventRecord as DynamoDbRecord;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::kinesis::KinesisEventRecord;
use aws_lambda_events::event::sqs::SqsMessage;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};
use usher_engine::{BatchMessage, ChangeKind, ChangeRecord, Input, JsonText, Output, Tick};
use usher_registry::{StreamFilterRule, Trigger};

use crate::LambdaError;

/// Why an event cannot be read as a worker's input; the message names the
/// record and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EventError(pub String);

/// A record that names itself (an SQS message id, a stream sequence
/// number) but cannot be turned into Usher's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Its position in the event.
    pub index: usize,
    /// What its id is: `message id` or `sequence number`.
    pub what: &'static str,
    /// Its message id or sequence number.
    pub id: String,
    /// Why it cannot be read.
    pub reason: String,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "record {} ({} {}): {}",
            self.index, self.what, self.id, self.reason
        )
    }
}

/// An event read for a worker: the input of the records it could read, and
/// the records it could not.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The input of every record that could be read, in event order.
    pub input: Input,
    /// The records that could not, in event order.
    pub rejected: Vec<Rejected>,
}

impl From<Input> for Parsed {
    fn from(input: Input) -> Self {
        Parsed {
            input,
            rejected: Vec::new(),
        }
    }
}

impl Parsed {
    /// The input, or an error naming the first record that could not be read.
    fn strict(self) -> Result<Input, String> {
        match self.rejected.into_iter().next() {
            Some(rejected) => Err(rejected.to_string()),
            None => Ok(self.input),
        }
    }
}

/// Reads `event` as the input of a worker with `trigger`: the records that
/// can be read, and those that cannot (see the module's doc). An event that
/// is not of the trigger's shape, or a record that does not name itself, is
/// an `InvalidEvent` error naming the record and why.
pub fn parse_event(worker: &str, trigger: &Trigger, event: Value) -> Result<Parsed, LambdaError> {
    aws_event(trigger, event).map_err(|message| LambdaError::invalid_event(worker, message))
}

/// Reads an event file (`usher invoke`, the test host) for a worker with
/// `trigger`. Accepted shapes: Usher's tagged form `{"kind": "batch",
/// "event": [...]}`; what [`parse_event`] accepts (for batch and stream
/// workers also as a bare list of records); for stream-workers Usher's own
/// change records (`table`, `eventName`, `keys`, `newImage`, `oldImage`,
/// `sequenceNumber`, `timestampMs`) in a `Records` list or a bare list; for
/// scheduled-workers a tick (`schedule`, `scheduledTime`); for invoke and
/// resolver workers any JSON payload, as it is; for http-workers a request.
/// Errors name the record and the reason.
pub fn read_event(trigger: &Trigger, value: Value) -> Result<Input, EventError> {
    let world = trigger.world();
    if value.get("kind").is_some() && value.get("event").is_some() {
        let input: Input = serde_json::from_value(value)
            .map_err(|e| EventError(format!("not a valid tagged event: {e}")))?;
        if input.world() != world {
            return Err(EventError(format!(
                "the event is for a {} but the worker is a {}",
                input.world().world_name(),
                world.world_name()
            )));
        }
        return Ok(input);
    }
    let result = match trigger {
        Trigger::Queue { .. } => listed(
            value,
            "a batch event needs a `Records` list or a list of messages",
        )
        .and_then(|records| sqs(json!({ "Records": records }))),
        Trigger::Stream { table, .. } => listed(
            value,
            "a stream event needs a `Records` list or a list of changes",
        )
        .and_then(|records| {
            if records.first().is_some_and(is_aws_stream_record) {
                stream_records(table, json!({ "Records": records }))
            } else {
                usher_changes(records)
            }
        }),
        Trigger::Schedule { .. } => {
            let aws = ["detail-type", "source", "time"]
                .iter()
                .any(|k| value.get(k).is_some());
            if aws {
                scheduled(value).map(Parsed::from)
            } else {
                serde_json::from_value(value)
                    .map(|tick| Input::Scheduled(tick).into())
                    .map_err(|e| format!("not a schedule tick: {e}"))
            }
        }
        Trigger::Invoke | Trigger::Resolver { .. } => Ok(Input::Invoke(value).into()),
        Trigger::Http { .. } => serde_json::from_value(value)
            .map(|request| Input::Http(request).into())
            .map_err(|e| format!("not an HTTP request: {e}")),
    };
    result.and_then(Parsed::strict).map_err(EventError)
}

/// The records of `{"Records": [...]}` or of a bare list.
fn listed(value: Value, missing: &str) -> Result<Vec<Value>, String> {
    match value {
        Value::Array(records) => Ok(records),
        Value::Object(mut o) => match o.remove("Records") {
            Some(Value::Array(records)) => Ok(records),
            _ => Err(missing.to_string()),
        },
        _ => Err(missing.to_string()),
    }
}

/// Whether a stream record is in AWS's shape (DynamoDB or Kinesis) rather
/// than Usher's.
fn is_aws_stream_record(record: &Value) -> bool {
    ["eventSource", "dynamodb", "kinesis"]
        .iter()
        .any(|k| record.get(k).is_some())
}

fn usher_changes(records: Vec<Value>) -> Result<Parsed, String> {
    records
        .into_iter()
        .enumerate()
        .map(|(i, record)| {
            serde_json::from_value(record)
                .map_err(|e| format!("record {i}: not a change record: {e}"))
        })
        .collect::<Result<Vec<ChangeRecord>, String>>()
        .map(|changes| Input::Stream(changes).into())
}

/// An AWS event for a worker with `trigger`. `Err` is an event that cannot
/// be read at all (the wrong shape, a record that does not name itself).
fn aws_event(trigger: &Trigger, event: Value) -> Result<Parsed, String> {
    match trigger {
        Trigger::Queue { .. } => sqs(event),
        Trigger::Stream { table, filter, .. } => stream(table, filter, event),
        Trigger::Schedule { .. } => scheduled(event).map(Parsed::from),
        Trigger::Invoke => Ok(Input::Invoke(event).into()),
        Trigger::Resolver {
            type_name,
            field_name,
        } => resolver(type_name, field_name, event).map(Parsed::from),
        Trigger::Http { route } => http_request(route, event).map(Parsed::from),
    }
}

/// An HTTP event of a Lambda function URL or an API Gateway HTTP API
/// (payload 2.0: `rawPath`, `rawQueryString`, `headers`, `body`,
/// `isBase64Encoded`, `requestContext.http.method`), or of an API Gateway
/// REST API (payload 1.0: `httpMethod`, `path`, `queryStringParameters`).
/// The worker gets the path below its `route` when the event's path is
/// under it (API Gateway may send the whole path), else the path as it is.
fn http_request(route: &str, event: Value) -> Result<Input, String> {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let method = text(event.pointer("/requestContext/http/method"))
        .or_else(|| text(event.get("httpMethod")))
        .ok_or("not an HTTP event: no requestContext.http.method nor httpMethod")?;
    let raw_path = text(event.get("rawPath"))
        .or_else(|| text(event.get("path")))
        .unwrap_or_else(|| "/".to_string());
    let query = match text(event.get("rawQueryString")) {
        Some(q) => q,
        None => event
            .get("queryStringParameters")
            .and_then(Value::as_object)
            .map(|params| {
                params
                    .iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
                    .collect::<Vec<_>>()
                    .join("&")
            })
            .unwrap_or_default(),
    };
    let mut headers: Vec<(String, String)> = event
        .get("headers")
        .and_then(Value::as_object)
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.to_ascii_lowercase(), v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    if let Some(cookies) = event.get("cookies").and_then(Value::as_array) {
        let joined: Vec<&str> = cookies.iter().filter_map(Value::as_str).collect();
        if !joined.is_empty() {
            headers.push(("cookie".to_string(), joined.join("; ")));
        }
    }
    let body = match event.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(b)) if event.get("isBase64Encoded") == Some(&Value::Bool(true)) => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| format!("the body is not base64 as isBase64Encoded says: {e}"))?
        }
        Some(Value::String(b)) => b.clone().into_bytes(),
        Some(_) => return Err("the body must be a string".into()),
    };
    let trimmed = route.trim_end_matches('/');
    let path = if trimmed.is_empty() {
        raw_path
    } else if raw_path == trimmed {
        "/".to_string()
    } else {
        match raw_path.strip_prefix(trimmed) {
            Some(rest) if rest.starts_with('/') => rest.to_string(),
            _ => raw_path,
        }
    };
    Ok(Input::Http(usher_engine::HttpRequest {
        method: method.to_ascii_uppercase(),
        path,
        query,
        headers,
        body,
    }))
}

/// The function URL / API Gateway answer of an http-worker: `statusCode`,
/// `headers` (one value per name, repeated names joined with `,`;
/// `set-cookie` as `cookies`), the body as text, or base64 when it is not
/// UTF-8.
pub fn http_reply(status: u16, headers: &[(String, String)], body: Vec<u8>) -> Value {
    let mut map = Map::new();
    let mut cookies = Vec::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        if name == "set-cookie" {
            cookies.push(Value::String(value.clone()));
            continue;
        }
        match map.get_mut(&name) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(value);
            }
            _ => {
                map.insert(name, Value::String(value.clone()));
            }
        }
    }
    let (body, encoded) = match String::from_utf8(body) {
        Ok(text) => (text, false),
        Err(e) => {
            use base64::Engine as _;
            (
                base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
                true,
            )
        }
    };
    let mut reply = json!({
        "statusCode": status,
        "headers": map,
        "body": body,
        "isBase64Encoded": encoded,
    });
    if !cookies.is_empty() {
        reply["cookies"] = Value::Array(cookies);
    }
    reply
}

/// The reply for a worker's output on `parsed.input`, in AWS's shape:
/// `batchItemFailures` (message ids for SQS, sequence numbers for streams:
/// the rejected records, then those the worker failed; empty on success),
/// the invoke/resolver result, or an error. A batch whose every record the
/// worker failed is an invocation error, so that Lambda backs off and
/// retries it.
pub fn reply(worker: &str, parsed: &Parsed, output: Output) -> Result<Value, LambdaError> {
    let input = &parsed.input;
    let failures = match output {
        Output::Batch(outcome) => outcome.failures,
        Output::Stream(outcome) => outcome.failures,
        Output::Invoke(Ok(value)) => return Ok(value),
        Output::Invoke(Err(failure)) => {
            return Err(LambdaError::new(&failure.kind, failure.message));
        }
        Output::Scheduled(Ok(value)) => return Ok(value),
        Output::Scheduled(Err(message)) => {
            return Err(LambdaError::new(
                "WorkerFailed",
                format!("{worker}: {message}"),
            ))
        }
        Output::Http(answer) => return Ok(http_reply(answer.status, &answer.headers, answer.body)),
    };
    if !input.is_empty() && failures.len() >= input.len() {
        return Err(LambdaError::new(
            "BatchFailed",
            format!(
                "{worker}: every one of the {} records failed; the whole batch is retried",
                input.len()
            ),
        ));
    }
    Ok(batch_item_failures(
        parsed.rejected.iter().map(|r| r.id.clone()).chain(failures),
    ))
}

/// The reply for an event none of whose records could be read (the worker
/// is not invoked): every record reported in `batchItemFailures`.
pub fn reply_rejected(parsed: &Parsed) -> Value {
    batch_item_failures(parsed.rejected.iter().map(|r| r.id.clone()))
}

/// `{"batchItemFailures": [{"itemIdentifier": id}…]}`, each id once.
fn batch_item_failures(ids: impl Iterator<Item = String>) -> Value {
    let mut seen = std::collections::HashSet::new();
    let items: Vec<Value> = ids
        .filter(|id| seen.insert(id.clone()))
        .map(|id| json!({ "itemIdentifier": id }))
        .collect();
    json!({ "batchItemFailures": items })
}

fn typed<T: DeserializeOwned>(what: &str, value: Value) -> Result<T, String> {
    serde_json::from_value(value).map_err(|e| format!("not {what}: {e}"))
}

/// The `eventSource` of the first record, if any.
fn event_source(records: &[Value]) -> Option<&str> {
    records
        .first()
        .and_then(|r| r.get("eventSource").or_else(|| r.get("EventSource")))
        .and_then(Value::as_str)
}

fn records_of(event: Value, what: &str) -> Result<Vec<Value>, String> {
    match event {
        Value::Object(mut o) => match o.remove("Records") {
            Some(Value::Array(records)) => Ok(records),
            _ => Err(format!("{what} needs a `Records` list")),
        },
        _ => Err(format!("{what} needs a `Records` list")),
    }
}

/// One record's reading: `Err` when it does not even name itself (the event
/// cannot be answered record by record), `Ok(Err)` when it names itself but
/// cannot be read.
type Record<T> = Result<Result<T, Rejected>, String>;

/// Reads each record with `read`, keeping those read and those rejected.
fn each<T>(
    records: Vec<Value>,
    mut read: impl FnMut(usize, Value) -> Record<T>,
    input: impl FnOnce(Vec<T>) -> Input,
) -> Result<Parsed, String> {
    let mut good = Vec::new();
    let mut rejected = Vec::new();
    for (i, record) in records.into_iter().enumerate() {
        match read(i, record)? {
            Ok(item) => good.push(item),
            Err(r) => rejected.push(r),
        }
    }
    Ok(Parsed {
        input: input(good),
        rejected,
    })
}

/// Makes the [`Rejected`] of record `index` for a reason.
fn rejecting(index: usize, what: &'static str, id: String) -> impl Fn(String) -> Rejected {
    move |reason| Rejected {
        index,
        what,
        id: id.clone(),
        reason,
    }
}

/// The string at `path` of a record, if any (and not empty).
fn id_at(record: &Value, path: &[&str]) -> Option<String> {
    path.iter()
        .try_fold(record, |v, key| v.get(key))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn sqs(event: Value) -> Result<Parsed, String> {
    let records = records_of(event, "an SQS event")?;
    if let Some(source) = event_source(&records).filter(|s| *s != "aws:sqs") {
        return Err(format!(
            "the records come from `{source}`, but the worker takes SQS messages (aws:sqs)"
        ));
    }
    each(records, sqs_message, Input::Batch)
}

fn sqs_message(i: usize, raw: Value) -> Record<BatchMessage> {
    let Some(message_id) = id_at(&raw, &["messageId"]) else {
        return Err(format!("record {i}: an SQS message needs a messageId"));
    };
    let reject = rejecting(i, "message id", message_id.clone());
    let m: SqsMessage = match typed("an SQS message", raw) {
        Ok(m) => m,
        Err(e) => return Ok(Err(reject(e))),
    };
    let Some(body) = m.body else {
        return Ok(Err(reject("an SQS message needs a body".into())));
    };
    let receive_count = m
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    // Usher's messages carry string attributes: String and Number ones
    // (their `stringValue`); Binary ones are not carried.
    let mut attributes: Vec<(String, String)> = m
        .message_attributes
        .into_iter()
        .filter_map(|(k, v)| v.string_value.map(|s| (k, s)))
        .collect();
    attributes.sort();
    Ok(Ok(BatchMessage {
        message_id,
        body,
        attributes,
        receive_count,
    }))
}

/// The change records of a DynamoDB or Kinesis event, without those the
/// trigger's `filter` does not pass (the event-source mapping's filter
/// criteria drop them in AWS already; a mapping without them, or a test
/// feeding events by hand, gets the same).
fn stream(table: &str, filter: &[StreamFilterRule], event: Value) -> Result<Parsed, String> {
    let mut parsed = stream_records(table, event)?;
    if let Input::Stream(changes) = &mut parsed.input {
        if !filter.is_empty() {
            // The images are text by now; a filter looks inside them.
            let value = |i: &Option<JsonText>| i.as_ref().and_then(|i| i.value().ok());
            changes.retain(|c| {
                let (new, old) = (value(&c.new_image), value(&c.old_image));
                StreamFilterRule::passes(filter, new.as_ref(), old.as_ref())
            });
        }
    }
    Ok(parsed)
}

fn stream_records(table: &str, event: Value) -> Result<Parsed, String> {
    let records = records_of(event, "a stream event")?;
    match event_source(&records) {
        Some("aws:kinesis") => each(records, |i, r| kinesis_record(table, i, r), Input::Stream),
        Some("aws:dynamodb") | None => {
            each(records, |i, r| dynamodb_record(table, i, r), Input::Stream)
        }
        Some(other) => Err(format!(
            "the records come from `{other}`, but the worker takes DynamoDB stream records (aws:dynamodb, or aws:kinesis carrying them)"
        )),
    }
}

fn dynamodb_record(table: &str, i: usize, raw: Value) -> Record<ChangeRecord> {
    let sequence = id_at(&raw, &["dynamodb", "SequenceNumber"]);
    let record = typed::<DynamoDbRecord>("a DynamoDB stream record", raw);
    let Some(sequence) = sequence else {
        return Err(match record {
            Err(e) => format!("record {i}: {e}"),
            Ok(_) => format!("record {i}: a DynamoDB stream record needs dynamodb.SequenceNumber"),
        });
    };
    let reject = rejecting(i, "sequence number", sequence.clone());
    let record = match record {
        Ok(record) => record,
        Err(e) => return Ok(Err(reject(e))),
    };
    let millis = record
        .change
        .approximate_creation_date_time
        .timestamp_millis();
    Ok(change(table, record, sequence, millis).map_err(reject))
}

fn kinesis_record(table: &str, i: usize, raw: Value) -> Record<ChangeRecord> {
    let Some(sequence) = id_at(&raw, &["kinesis", "sequenceNumber"]) else {
        return Err(format!(
            "record {i}: a Kinesis record needs kinesis.sequenceNumber"
        ));
    };
    let reject = rejecting(i, "sequence number", sequence.clone());
    let r: KinesisEventRecord = match typed("a Kinesis record", raw) {
        Ok(r) => r,
        Err(e) => return Ok(Err(reject(e))),
    };
    let data: Value = match serde_json::from_slice(&r.kinesis.data.0) {
        Ok(data) => data,
        Err(e) => {
            return Ok(Err(reject(format!(
                "the Kinesis data is not the JSON of a DynamoDB change record: {e}"
            ))))
        }
    };
    // DynamoDB → Kinesis records carry ApproximateCreationDateTime in
    // milliseconds (DynamoDB Streams use seconds).
    let millis = data
        .get("dynamodb")
        .and_then(|d| d.get("ApproximateCreationDateTime"))
        .and_then(Value::as_u64)
        .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX))
        .unwrap_or_else(|| r.kinesis.approximate_arrival_timestamp.0.timestamp_millis());
    let record: DynamoDbRecord = match typed("a DynamoDB change record", data) {
        Ok(record) => record,
        Err(e) => return Ok(Err(reject(e))),
    };
    Ok(change(table, record, sequence, millis).map_err(reject))
}

fn change(
    table: &str,
    record: DynamoDbRecord,
    sequence_number: String,
    millis: i64,
) -> Result<ChangeRecord, String> {
    let event_name: ChangeKind = serde_json::from_value(Value::String(record.event_name.clone()))
        .map_err(|_| {
        format!(
            "eventName `{}` is not INSERT, MODIFY or REMOVE",
            record.event_name
        )
    })?;
    let image = |item: serde_dynamo::Item, what: &str| -> Result<Option<JsonText>, String> {
        if item.is_empty() {
            return Ok(None);
        }
        serde_dynamo::from_item::<_, Value>(binary_as_base64(item))
            .map(|v| Some(JsonText::from_value(&v)))
            .map_err(|e| format!("{what} is not a DynamoDB item: {e}"))
    };
    let keys = image(record.change.keys, "Keys")?
        .ok_or_else(|| "a DynamoDB change record needs dynamodb.Keys".to_string())?;
    Ok(ChangeRecord {
        table: table.to_string(),
        event_name,
        keys,
        new_image: image(record.change.new_image, "NewImage")?,
        old_image: image(record.change.old_image, "OldImage")?,
        sequence_number,
        timestamp_ms: u64::try_from(millis).unwrap_or(0),
    })
}

/// Binary attributes (`B`, `BS`, also inside lists and maps) as the base64
/// text DynamoDB's own JSON gives them: plain JSON has no bytes, and
/// `serde_json::Value` refuses to deserialize them.
fn binary_as_base64(item: serde_dynamo::Item) -> serde_dynamo::Item {
    use base64::Engine as _;
    use serde_dynamo::AttributeValue as A;
    fn convert(v: A) -> A {
        match v {
            A::B(bytes) => A::S(base64::engine::general_purpose::STANDARD.encode(bytes)),
            A::Bs(set) => A::Ss(
                set.into_iter()
                    .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
                    .collect(),
            ),
            A::L(list) => A::L(list.into_iter().map(convert).collect()),
            A::M(map) => A::M(map.into_iter().map(|(k, v)| (k, convert(v))).collect()),
            other => other,
        }
    }
    let map = item.into_inner();
    map.into_iter()
        .map(|(k, v)| (k, convert(v)))
        .collect::<std::collections::HashMap<String, A>>()
        .into()
}

fn scheduled(event: Value) -> Result<Input, String> {
    let time = event
        .get("time")
        .and_then(Value::as_str)
        .map(str::to_string);
    let event: EventBridgeEvent<Value> = typed("an EventBridge event", event)?;
    if event.detail_type != "Scheduled Event" {
        return Err(format!(
            "detail-type is `{}`; a scheduled worker takes `Scheduled Event`",
            event.detail_type
        ));
    }
    let scheduled_time = time.ok_or("an EventBridge scheduled event needs a `time`")?;
    let schedule = event
        .resources
        .and_then(|r| r.into_iter().next())
        .unwrap_or_else(|| "schedule".to_string());
    Ok(Input::Scheduled(Tick {
        schedule,
        scheduled_time,
    }))
}

fn resolver(type_name: &str, field_name: &str, event: Value) -> Result<Input, String> {
    if event.is_array() {
        return Err("batched resolver invocations are not supported; disable batching on the AppSync data source".into());
    }
    let typed_event: AppSyncDirectResolverEvent =
        typed("an AppSync direct resolver event", event.clone())?;
    let info = &typed_event.info;
    if info.parent_type_name != type_name || info.field_name != field_name {
        return Err(format!(
            "the event resolves {}.{}, but the worker resolves {type_name}.{field_name}",
            info.parent_type_name, info.field_name
        ));
    }
    let mut payload = Map::new();
    for key in ["arguments", "identity", "source", "info", "prev", "stash"] {
        payload.insert(
            key.to_string(),
            event.get(key).cloned().unwrap_or(Value::Null),
        );
    }
    Ok(Input::Invoke(Value::Object(payload)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventbridge_scheduled_events_become_ticks() {
        let trigger = Trigger::Schedule {
            cron: "0 0 9 * * *".into(),
        };
        let event = json!({
            "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "detail-type": "Scheduled Event", "source": "aws.events", "account": "123456789012",
            "time": "2026-11-01T09:00:00Z", "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/notification-schedule"],
            "detail": {}
        });
        let input = parse_event("notify/generator", &trigger, event.clone()).unwrap();
        assert_eq!(
            input.input,
            Input::Scheduled(Tick {
                schedule: "arn:aws:events:us-east-1:123456789012:rule/notification-schedule".into(),
                scheduled_time: "2026-11-01T09:00:00Z".into(),
            })
        );
        let mut other = event;
        other["detail-type"] = json!("Object Created");
        let err = parse_event("notify/generator", &trigger, other).unwrap_err();
        assert_eq!(err.error_type, "InvalidEvent");
        assert_eq!(
            err.message,
            "notify/generator: detail-type is `Object Created`; a scheduled worker takes `Scheduled Event`"
        );
    }

    #[test]
    fn scheduled_replies_and_failures() {
        let input = Parsed::from(Input::Scheduled(Tick {
            schedule: "s".into(),
            scheduled_time: "t".into(),
        }));
        assert_eq!(
            reply("w", &input, Output::Scheduled(Ok(json!({"sent": 3})))).unwrap(),
            json!({"sent": 3})
        );
        let err = reply("w", &input, Output::Scheduled(Err("no campaigns".into()))).unwrap_err();
        assert_eq!(
            (err.error_type.as_str(), err.message.as_str()),
            ("WorkerFailed", "w: no campaigns")
        );
    }

    fn queue() -> Trigger {
        Trigger::Queue {
            queue: "save-entries".into(),
        }
    }

    fn stream_trigger() -> Trigger {
        Trigger::Stream {
            table: "demand-table".into(),
            max_retries: 3,
            on_failure: None,
            starting_position: Default::default(),
            filter: vec![],
        }
    }

    #[test]
    fn a_stream_filter_drops_the_changes_it_does_not_pass() {
        let Trigger::Stream {
            table,
            max_retries,
            on_failure,
            starting_position,
            ..
        } = stream_trigger()
        else {
            unreachable!()
        };
        let trigger = Trigger::Stream {
            table,
            max_retries,
            on_failure,
            starting_position,
            filter: vec![StreamFilterRule {
                attribute: "SK".into(),
                equals: vec!["ENTRY".into()],
                prefix: vec![],
                is: None,
                events: vec![],
            }],
        };
        let record = |seq: &str, name: &str, image: &str, sk: &str| {
            json!({"eventID": seq, "eventName": name, "awsRegion": "us-east-1",
                "eventSource": "aws:dynamodb",
                "dynamodb": {"Keys": {"PK": {"S": "a"}, "SK": {"S": sk}}, image: {"PK": {"S": "a"}, "SK": {"S": sk}},
                    "SequenceNumber": seq, "SizeBytes": 1}})
        };
        let event = json!({"Records": [
            record("1", "INSERT", "NewImage", "ENTRY"),
            record("2", "INSERT", "NewImage", "META"),
            record("3", "REMOVE", "OldImage", "ENTRY"),
        ]});
        let parsed = parse_event("w", &trigger, event.clone()).unwrap();
        let Input::Stream(changes) = &parsed.input else {
            panic!("a stream input")
        };
        let seqs: Vec<&str> = changes.iter().map(|c| c.sequence_number.as_str()).collect();
        assert_eq!(seqs, ["1", "3"]);
        assert!(parsed.rejected.is_empty());
        // Without a filter every change reaches the worker.
        assert_eq!(
            parse_event("w", &stream_trigger(), event)
                .unwrap()
                .input
                .len(),
            3
        );
    }

    #[test]
    fn event_files_take_the_tagged_form_and_check_the_world() {
        let tagged = json!({"kind": "invoke", "event": {"a": 1}});
        assert_eq!(
            read_event(&Trigger::Invoke, tagged.clone()).unwrap(),
            Input::Invoke(json!({"a": 1}))
        );
        let err = read_event(&queue(), tagged).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the event is for a invoke-worker but the worker is a batch-worker"
        );
        let err = read_event(&queue(), json!({"kind": "batch", "event": 3})).unwrap_err();
        assert!(
            err.to_string().starts_with("not a valid tagged event"),
            "{err}"
        );
    }

    #[test]
    fn event_files_take_sqs_messages_in_records_or_a_bare_list() {
        let message = json!({
            "messageId": "m-1", "body": "hello",
            "attributes": {"ApproximateReceiveCount": "3"},
            "messageAttributes": {
                "b": {"stringValue": "2", "dataType": "Number"},
                "a": {"stringValue": "1", "dataType": "String"},
                "bin": {"binaryValue": "AA==", "dataType": "Binary"}
            }
        });
        let expected = Input::Batch(vec![BatchMessage {
            message_id: "m-1".into(),
            body: "hello".into(),
            attributes: vec![("a".into(), "1".into()), ("b".into(), "2".into())],
            receive_count: 3,
        }]);
        let records = json!({ "Records": [message.clone()] });
        assert_eq!(read_event(&queue(), records).unwrap(), expected);
        assert_eq!(read_event(&queue(), json!([message])).unwrap(), expected);

        // Strict: a record that cannot be read is named.
        let bad = json!([{"messageId": "m-1", "body": "x"}, {"messageId": "m-2"}]);
        assert_eq!(
            read_event(&queue(), bad).unwrap_err().to_string(),
            "record 1 (message id m-2): an SQS message needs a body"
        );
        let err = read_event(&queue(), json!({"messages": []})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a batch event needs a `Records` list or a list of messages"
        );
    }

    #[test]
    fn event_files_take_usher_changes_and_aws_stream_records() {
        let usher = json!({"Records": [{
            "table": "demand-table", "eventName": "INSERT", "keys": {"PK": "a"},
            "newImage": {"PK": "a", "n": 1}, "sequenceNumber": "7", "timestampMs": 1000
        }]});
        let expected = Input::Stream(vec![ChangeRecord {
            table: "demand-table".into(),
            event_name: ChangeKind::Insert,
            keys: json!({"PK": "a"}).into(),
            new_image: Some(json!({"PK": "a", "n": 1}).into()),
            old_image: None,
            sequence_number: "7".into(),
            timestamp_ms: 1000,
        }]);
        assert_eq!(read_event(&stream_trigger(), usher).unwrap(), expected);

        let aws = json!([{
            "eventID": "1", "eventName": "INSERT", "awsRegion": "us-east-1",
            "eventSource": "aws:dynamodb",
            "dynamodb": {
                "ApproximateCreationDateTime": 1,
                "Keys": {"PK": {"S": "a"}},
                "NewImage": {"PK": {"S": "a"}, "n": {"N": "1"}},
                "SequenceNumber": "7", "SizeBytes": 1
            }
        }]);
        assert_eq!(read_event(&stream_trigger(), aws).unwrap(), expected);

        let err = read_event(&stream_trigger(), json!([{"table": "t"}])).unwrap_err();
        assert!(
            err.to_string().starts_with("record 0: not a change record"),
            "{err}"
        );
    }

    #[test]
    fn function_url_and_api_gateway_events_become_requests_below_the_route() {
        let route = Trigger::Http {
            route: "/campaigns".into(),
        };
        let event = json!({"version": "2.0", "rawPath": "/campaigns/c1/exports", "rawQueryString": "limit=5",
            "headers": {"Authorization": "Bearer t"}, "cookies": ["a=1", "b=2"],
            "requestContext": {"http": {"method": "post"}},
            "body": "eyJhIjoxfQ==", "isBase64Encoded": true});
        let parsed = aws_event(&route, event).expect("parsed");
        let Input::Http(r) = parsed.input else {
            panic!("not http")
        };
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.query.as_str()),
            ("POST", "/c1/exports", "limit=5")
        );
        assert_eq!(r.body, br#"{"a":1}"#.to_vec());
        assert!(r
            .headers
            .contains(&("authorization".to_string(), "Bearer t".to_string())));
        assert!(r
            .headers
            .contains(&("cookie".to_string(), "a=1; b=2".to_string())));
        // Payload 1.0 (REST API), a path outside the route kept as it is.
        let v1 = json!({"httpMethod": "GET", "path": "/other", "queryStringParameters": {"a": "b"}, "body": null});
        let Input::Http(r) = aws_event(&route, v1).expect("v1").input else {
            panic!("not http")
        };
        assert_eq!((r.path.as_str(), r.query.as_str()), ("/other", "a=b"));
        assert!(aws_event(&route, json!({"Records": []})).is_err());
        let bad = json!({"rawPath": "/campaigns", "requestContext": {"http": {"method": "GET"}}, "body": "%%", "isBase64Encoded": true});
        assert!(aws_event(&route, bad).is_err());
    }

    #[test]
    fn http_replies_are_function_url_answers() {
        let reply = http_reply(
            201,
            &[
                ("Content-Type".into(), "application/json".into()),
                ("set-cookie".into(), "s=1".into()),
                ("x-a".into(), "1".into()),
                ("x-a".into(), "2".into()),
            ],
            br#"{"ok":true}"#.to_vec(),
        );
        assert_eq!(
            reply,
            json!({"statusCode": 201, "headers": {"content-type": "application/json", "x-a": "1,2"},
            "body": r#"{"ok":true}"#, "isBase64Encoded": false, "cookies": ["s=1"]})
        );
        let binary = http_reply(200, &[], vec![0xff, 0x00]);
        assert_eq!(
            (binary["body"].as_str(), binary["isBase64Encoded"].as_bool()),
            (Some("/wA="), Some(true))
        );
    }

    #[test]
    fn event_files_take_ticks_eventbridge_events_and_http_requests() {
        let schedule = Trigger::Schedule {
            cron: "0 0 9 * * *".into(),
        };
        let tick = Tick {
            schedule: "daily".into(),
            scheduled_time: "2026-11-01T09:00:00Z".into(),
        };
        assert_eq!(
            read_event(
                &schedule,
                json!({"schedule": "daily", "scheduledTime": "2026-11-01T09:00:00Z"})
            )
            .unwrap(),
            Input::Scheduled(tick)
        );
        let eventbridge = json!({
            "detail-type": "Scheduled Event", "source": "aws.events",
            "time": "2026-11-01T09:00:00Z", "resources": ["rule/daily"], "detail": {}
        });
        assert_eq!(
            read_event(&schedule, eventbridge).unwrap(),
            Input::Scheduled(Tick {
                schedule: "rule/daily".into(),
                scheduled_time: "2026-11-01T09:00:00Z".into(),
            })
        );
        let err = read_event(&schedule, json!({})).unwrap_err();
        assert!(err.to_string().starts_with("not a schedule tick"), "{err}");
        let http = Trigger::Http { route: "/x".into() };
        let Input::Http(request) =
            read_event(&http, json!({"method": "GET", "path": "/a"})).unwrap()
        else {
            panic!("not an HTTP request")
        };
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("GET", "/a")
        );
        let err = read_event(&http, json!({"path": "/a"})).unwrap_err();
        assert!(err.to_string().starts_with("not an HTTP request"), "{err}");
    }

    #[test]
    fn function_url_requests_and_responses() {
        let http = Trigger::Http {
            route: "/services/entries".into(),
        };
        let event = json!({
            "version": "2.0",
            "rawPath": "/services/entries/campaigns/c1/entries",
            "rawQueryString": "limit=2",
            "headers": {"Content-Type": "application/json", "authorization": "Bearer t"},
            "cookies": ["a=1", "b=2"],
            "requestContext": {"http": {"method": "post", "path": "/services/entries/campaigns/c1/entries"}},
            "body": "eyJhIjoxfQ==",
            "isBase64Encoded": true
        });
        let parsed = parse_event("services/entry-service", &http, event).unwrap();
        let Input::Http(request) = &parsed.input else {
            panic!("not an HTTP request")
        };
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/campaigns/c1/entries");
        assert_eq!(request.query, "limit=2");
        assert_eq!(request.body, br#"{"a":1}"#.to_vec());
        assert!(request
            .headers
            .contains(&("content-type".into(), "application/json".into())));
        assert!(request
            .headers
            .contains(&("cookie".into(), "a=1; b=2".into())));
        // At the function URL's own root the path is passed as it is.
        let root = json!({"rawPath": "/campaigns", "requestContext": {"http": {"method": "GET"}}, "body": "x"});
        let Input::Http(request) = parse_event("w", &http, root).unwrap().input else {
            panic!("not an HTTP request")
        };
        assert_eq!(
            (request.path.as_str(), request.body.as_slice()),
            ("/campaigns", &b"x"[..])
        );
        let err = parse_event("w", &http, json!({"rawPath": "/"})).unwrap_err();
        assert!(
            err.to_string().contains("requestContext.http.method"),
            "{err}"
        );

        // A UTF-8 body is answered as text, repeated headers joined with `,`.
        let reply = reply(
            "w",
            &parsed,
            Output::Http(usher_engine::HttpResponse {
                status: 201,
                headers: vec![
                    ("Content-Type".into(), "application/json".into()),
                    ("Vary".into(), "a".into()),
                    ("vary".into(), "b".into()),
                    ("Set-Cookie".into(), "s=1".into()),
                ],
                body: br#"{"ok":true}"#.to_vec(),
            }),
        )
        .unwrap();
        assert_eq!(
            reply,
            json!({
                "statusCode": 201,
                "headers": {"content-type": "application/json", "vary": "a,b"},
                "cookies": ["s=1"],
                "body": "{\"ok\":true}",
                "isBase64Encoded": false
            })
        );
    }

    #[test]
    fn lambda_rejects_a_bad_record_alone_with_its_id_and_reason() {
        // SQS: a message without a body, one whose attributes are not SQS's.
        let event = json!({"Records": [
            {"messageId": "m-1", "body": "ok", "eventSource": "aws:sqs"},
            {"messageId": "m-2", "eventSource": "aws:sqs"},
            {"messageId": "m-3", "body": "x", "messageAttributes": {"a": "not an attribute"}}
        ]});
        let parsed = parse_event("w", &queue(), event).unwrap();
        assert_eq!(parsed.input.len(), 1);
        let rejected: Vec<(usize, &str, &str)> = parsed
            .rejected
            .iter()
            .map(|r| (r.index, r.id.as_str(), r.reason.as_str()))
            .collect();
        assert_eq!(rejected[0], (1, "m-2", "an SQS message needs a body"));
        assert_eq!((rejected[1].0, rejected[1].1), (2, "m-3"));
        assert!(
            rejected[1].2.starts_with("not an SQS message: "),
            "{}",
            rejected[1].2
        );

        // DynamoDB: an eventName that is not a change.
        let record = |seq: &str, name: &str| {
            json!({"eventID": "1", "eventName": name, "awsRegion": "us-east-1",
                "eventSource": "aws:dynamodb",
                "dynamodb": {"Keys": {"PK": {"S": "a"}}, "SequenceNumber": seq, "SizeBytes": 1}})
        };
        let event = json!({"Records": [record("1", "INSERT"), record("2", "UPSERT")]});
        let parsed = parse_event("w", &stream_trigger(), event).unwrap();
        assert_eq!(parsed.input.len(), 1);
        assert_eq!(
            parsed.rejected,
            vec![Rejected {
                index: 1,
                what: "sequence number",
                id: "2".into(),
                reason: "eventName `UPSERT` is not INSERT, MODIFY or REMOVE".into(),
            }]
        );

        // Kinesis: data that is not a DynamoDB change record.
        let event = json!({"Records": [{
            "eventSource": "aws:kinesis",
            "kinesis": {"partitionKey": "p", "sequenceNumber": "49", "data": "SGVsbG8gV29ybGQ=",
                "approximateArrivalTimestamp": 1480641523.477}
        }]});
        let parsed = parse_event("w", &stream_trigger(), event).unwrap();
        assert!(parsed.input.is_empty());
        assert_eq!(parsed.rejected[0].id, "49");
        assert!(
            parsed.rejected[0]
                .reason
                .starts_with("the Kinesis data is not the JSON of a DynamoDB change record"),
            "{}",
            parsed.rejected[0].reason
        );

        // A record that does not name itself fails the event.
        let event = json!({"Records": [{"eventSource": "aws:kinesis", "kinesis": {"data": ""}}]});
        let err = parse_event("w", &stream_trigger(), event).unwrap_err();
        assert_eq!(
            err.message,
            "w: record 0: a Kinesis record needs kinesis.sequenceNumber"
        );
    }

    #[test]
    fn replies_list_rejected_records_then_the_workers_failures() {
        let message = |id: &str| BatchMessage {
            message_id: id.into(),
            body: "b".into(),
            attributes: Vec::new(),
            receive_count: 1,
        };
        let rejected = |id: &str| Rejected {
            index: 0,
            what: "message id",
            id: id.into(),
            reason: "bad".into(),
        };
        let parsed = Parsed {
            input: Input::Batch(vec![message("a"), message("b")]),
            rejected: vec![rejected("x")],
        };
        let outcome = |failures: &[&str]| {
            Output::Batch(usher_engine::BatchOutcome {
                failures: failures.iter().map(|f| f.to_string()).collect(),
                count: Default::default(),
            })
        };
        assert_eq!(
            reply("w", &parsed, outcome(&["b"])).unwrap(),
            json!({"batchItemFailures": [{"itemIdentifier": "x"}, {"itemIdentifier": "b"}]})
        );
        assert_eq!(
            reply("w", &parsed, outcome(&[])).unwrap(),
            json!({"batchItemFailures": [{"itemIdentifier": "x"}]})
        );
        // The worker failed every record it was given: the whole batch is retried.
        let err = reply("w", &parsed, outcome(&["a", "b"])).unwrap_err();
        assert_eq!(err.error_type, "BatchFailed");
        // Nothing could be read: every record reported, no invocation error.
        let none = Parsed {
            input: Input::Batch(Vec::new()),
            rejected: vec![rejected("x"), rejected("y"), rejected("x")],
        };
        assert_eq!(
            reply_rejected(&none),
            json!({"batchItemFailures": [{"itemIdentifier": "x"}, {"itemIdentifier": "y"}]})
        );
    }

    #[test]
    fn a_batch_the_engine_failed_for_an_unknown_id_is_an_invocation_error() {
        // The engine owns the unknown-id rule: it answers every record
        // failed, which Lambda is told as a failed invocation (the whole
        // batch retried), as Lambda itself treats an unknown itemIdentifier.
        let input = Input::Batch(vec![BatchMessage {
            message_id: "a".into(),
            body: "b".into(),
            attributes: Vec::new(),
            receive_count: 1,
        }]);
        let unknown = input
            .known_failures(vec!["nope".into()])
            .expect_err("unknown id");
        let output = input.fail_all(&unknown.to_string());
        let err = reply("w", &Parsed::from(input), output).unwrap_err();
        assert_eq!(err.error_type, "BatchFailed");
    }
}
