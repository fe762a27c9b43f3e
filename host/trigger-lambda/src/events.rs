//! AWS event shapes in, AWS reply shapes out.
//!
//! The worker's trigger in the registry decides which event shape is
//! expected: SQS for queue workers, DynamoDB stream records (direct, or
//! carried by Kinesis as the seed's demand table delivers them) for stream
//! workers, EventBridge scheduled events for schedules, AppSync direct
//! resolver events for resolvers, any JSON (Step Functions, direct invoke)
//! for invoke workers.

use aws_lambda_events::event::appsync::AppSyncDirectResolverEvent;
use aws_lambda_events::event::dynamodb::EventRecord as DynamoDbRecord;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};
use usher_engine::{BatchMessage, ChangeKind, ChangeRecord, Input, Output, Tick};
use usher_registry::Trigger;

use crate::LambdaError;

/// Reads `event` as the input of a worker with `trigger`; a malformed or
/// mismatching event is an `InvalidEvent` error naming the record and why.
pub fn parse_event(worker: &str, trigger: &Trigger, event: Value) -> Result<Input, LambdaError> {
    let invalid = |message: String| LambdaError::invalid_event(worker, message);
    match trigger {
        Trigger::Queue { .. } => sqs(event).map_err(invalid),
        Trigger::Stream { table, .. } => stream(table, event).map_err(invalid),
        Trigger::Schedule { .. } => scheduled(event).map_err(invalid),
        Trigger::Invoke => Ok(Input::Invoke(event)),
        Trigger::Resolver {
            type_name,
            field_name,
        } => resolver(type_name, field_name, event).map_err(invalid),
        Trigger::Http { .. } => Err(invalid(
            "http-workers are served by `usher up`, not by `usher lambda`".into(),
        )),
    }
}

/// The reply for a worker's output, in AWS's shape: `batchItemFailures`
/// (message ids for SQS, sequence numbers for streams; empty on success),
/// the invoke/resolver result, or an error. A batch whose every record
/// failed is an invocation error, so that Lambda backs off and retries it.
pub fn reply(worker: &str, input: &Input, output: Output) -> Result<Value, LambdaError> {
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
        Output::Http(_) => {
            return Err(LambdaError::new(
                "InternalError",
                format!("{worker}: an http-worker answered under `usher lambda`"),
            ))
        }
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
    let items: Vec<Value> = failures
        .into_iter()
        .map(|id| json!({ "itemIdentifier": id }))
        .collect();
    Ok(json!({ "batchItemFailures": items }))
}

fn typed<T: DeserializeOwned>(what: &str, value: Value) -> Result<T, String> {
    serde_json::from_value(value).map_err(|e| format!("not {what}: {e}"))
}

/// The `eventSource` of the first record, if any.
fn event_source(event: &Value) -> Option<&str> {
    event
        .get("Records")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
        .and_then(|r| r.get("eventSource").or_else(|| r.get("EventSource")))
        .and_then(Value::as_str)
}

fn require_records(event: &Value, what: &str) -> Result<(), String> {
    match event.get("Records") {
        Some(Value::Array(_)) => Ok(()),
        _ => Err(format!("{what} needs a `Records` list")),
    }
}

fn sqs(event: Value) -> Result<Input, String> {
    require_records(&event, "an SQS event")?;
    if let Some(source) = event_source(&event).filter(|s| *s != "aws:sqs") {
        return Err(format!(
            "the records come from `{source}`, but the worker takes SQS messages (aws:sqs)"
        ));
    }
    let event: SqsEvent = typed("an SQS event", event)?;
    event
        .records
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let message_id = m
                .message_id
                .ok_or_else(|| format!("record {i}: an SQS message needs a messageId"))?;
            let receive_count = m
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|s| s.parse().ok())
                .unwrap_or(1);
            let mut attributes: Vec<(String, String)> = m
                .message_attributes
                .into_iter()
                .filter_map(|(k, v)| v.string_value.map(|s| (k, s)))
                .collect();
            attributes.sort();
            Ok(BatchMessage {
                message_id,
                body: m.body.unwrap_or_default(),
                attributes,
                receive_count,
            })
        })
        .collect::<Result<Vec<_>, String>>()
        .map(Input::Batch)
}

fn stream(table: &str, event: Value) -> Result<Input, String> {
    require_records(&event, "a stream event")?;
    match event_source(&event) {
        Some("aws:kinesis") => kinesis(table, event),
        Some("aws:dynamodb") | None => dynamodb(table, event),
        Some(other) => Err(format!(
            "the records come from `{other}`, but the worker takes DynamoDB stream records (aws:dynamodb, or aws:kinesis carrying them)"
        )),
    }
}

fn dynamodb(table: &str, event: Value) -> Result<Input, String> {
    let records = match event.get("Records") {
        Some(Value::Array(records)) => records.clone(),
        _ => Vec::new(),
    };
    records
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            let record: DynamoDbRecord =
                typed("a DynamoDB stream record", raw).map_err(|e| format!("record {i}: {e}"))?;
            let sequence = record.change.sequence_number.clone().ok_or_else(|| {
                format!("record {i}: a DynamoDB stream record needs dynamodb.SequenceNumber")
            })?;
            let millis = record
                .change
                .approximate_creation_date_time
                .timestamp_millis();
            change(table, record, sequence, millis).map_err(|e| format!("record {i}: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()
        .map(Input::Stream)
}

fn kinesis(table: &str, event: Value) -> Result<Input, String> {
    let event: KinesisEvent = typed("a Kinesis event", event)?;
    event
        .records
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let sequence = r.kinesis.sequence_number.clone();
            let at = |e: String| format!("record {i} (sequence number {sequence}): {e}");
            let data: Value = serde_json::from_slice(&r.kinesis.data.0).map_err(|e| {
                at(format!(
                    "the Kinesis data is not the JSON of a DynamoDB change record: {e}"
                ))
            })?;
            // DynamoDB → Kinesis records carry ApproximateCreationDateTime in
            // milliseconds (DynamoDB Streams use seconds).
            let millis = data
                .get("dynamodb")
                .and_then(|d| d.get("ApproximateCreationDateTime"))
                .and_then(Value::as_u64)
                .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX))
                .unwrap_or_else(|| r.kinesis.approximate_arrival_timestamp.0.timestamp_millis());
            let record: DynamoDbRecord = typed("a DynamoDB change record", data).map_err(at)?;
            change(table, record, sequence.clone(), millis).map_err(at)
        })
        .collect::<Result<Vec<_>, String>>()
        .map(Input::Stream)
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
    let image = |item: serde_dynamo::Item, what: &str| -> Result<Option<Value>, String> {
        if item.is_empty() {
            return Ok(None);
        }
        serde_dynamo::from_item(item)
            .map(Some)
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
            input,
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
        let input = Input::Scheduled(Tick {
            schedule: "s".into(),
            scheduled_time: "t".into(),
        });
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
}
