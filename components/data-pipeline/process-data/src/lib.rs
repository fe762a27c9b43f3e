//! `data-pipeline/process-data` (batch-worker on `data-queue`): formats each
//! `{"type", "data"}` message into its analytics record and publishes it to
//! the `data-sns` topic.
//!
//! **Message.** `{"type": "CAMPAIGN"|"MARKET"|"REGISTRATION"|"EVENT_MAPPING"|"REGISTERED_MARKET",
//! "data": {…}}`; the `data` of each type and the record it formats to are
//! documented in `usher_domain::analytics` (one module for this worker, the
//! workers that feed `data-queue` and `send-data`).
//!
//! **Published.** One `data-sns` message per record: the body is the record
//! as JSON, the message attribute `type` its type (the subscriptions'
//! filter policies route it to one of campaign-queue, market-queue,
//! registration-queue, evt-mapping-queue, reg-markets-queue). The valid
//! messages of a batch are published in one `publish-batch`.
//!
//! **Failures, per message.** A message fails alone, with its reason logged
//! (`message_id`, `reason`), when its body is not JSON or not `{type, data}`,
//! its type is unknown, or its data lacks what its record needs; and when
//! its publish failed (the whole publish call failing fails every message
//! that was to be published). Such a message is retried by the queue and,
//! after `max_receive_count` (3) receives, lands in `data-queue-dlq`.
//! Formatting is a pure function of the message, so a redelivered message
//! publishes the same record again (send-data's Kafka key keeps it one
//! record per thing for a compacting consumer).
//!
//! Settings: `topic` (default `data-sns`).

use usher_domain::analytics::{format_body, AnalyticsRecord};
use usher_sdk::topic::{self, Outgoing};
use usher_sdk::{config, BatchResult, BatchWorker, Message};

/// The worker's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The topic the records are published to.
    pub topic: String,
}

impl Settings {
    /// From the registry's `settings`.
    pub fn load() -> usher_sdk::Result<Settings> {
        Ok(Settings {
            topic: config::string_or("topic", "data-sns")?,
        })
    }
}

/// The `data-sns` message of a record: its JSON, attribute `type`.
pub fn outgoing(record: &AnalyticsRecord) -> Outgoing {
    Outgoing::new(record.to_json().to_string()).attribute("type", record.data_type().as_str())
}

/// A publish call: `topic::publish_batch`, or a stand-in in unit tests.
pub type Publish<'a> =
    dyn FnMut(&str, &[Outgoing]) -> usher_sdk::Result<Vec<usher_sdk::Result<String>>> + 'a;

/// Handles a batch (see the crate docs), publishing through `publish`.
pub fn process(
    settings: &Settings,
    messages: &[Message],
    publish: &mut Publish<'_>,
) -> BatchResult {
    let mut failures: Vec<String> = Vec::new();
    let mut ids: Vec<&str> = Vec::new();
    let mut out: Vec<Outgoing> = Vec::new();
    for message in messages {
        match format_body(&message.body) {
            Ok(record) => {
                ids.push(&message.id);
                out.push(outgoing(&record));
            }
            Err(e) => {
                let reason = e.to_string();
                usher_sdk::warn!(message_id = message.id, reason = reason; "data message refused");
                failures.push(message.id.clone());
            }
        }
    }
    if !out.is_empty() {
        match publish(&settings.topic, &out) {
            Ok(results) => {
                for (i, id) in ids.iter().enumerate() {
                    match results.get(i) {
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            let reason = e.to_string();
                            usher_sdk::warn!(message_id = id, topic = settings.topic, reason = reason; "publish failed");
                            failures.push((*id).to_string());
                        }
                        None => {
                            usher_sdk::warn!(message_id = id, topic = settings.topic; "no publish result for the message");
                            failures.push((*id).to_string());
                        }
                    }
                }
            }
            Err(e) => {
                let reason = e.to_string();
                usher_sdk::error!(topic = settings.topic, reason = reason; "publishing the batch failed");
                failures.extend(ids.iter().map(|id| (*id).to_string()));
            }
        }
    }
    BatchResult::from_failures(messages.len(), failures)
}

/// The worker.
pub struct ProcessData;

impl BatchWorker for ProcessData {
    fn handle(messages: Vec<Message>) -> BatchResult {
        match Settings::load() {
            Ok(settings) => process(&settings, &messages, &mut topic::publish_batch),
            Err(e) => {
                usher_sdk::error!(error = e; "cannot read the settings; failing the batch");
                BatchResult::from_failures(messages.len(), messages.iter().map(|m| m.id.clone()))
            }
        }
    }
}

usher_sdk::export_batch_worker!(ProcessData);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use usher_sdk::Error;

    fn settings() -> Settings {
        Settings {
            topic: "data-sns".into(),
        }
    }

    fn market(id: &str) -> String {
        json!({"type": "MARKET", "data": {"id": id, "campaignId": "c1", "eventId": "e1", "selectionCount": 5}})
            .to_string()
    }

    #[test]
    fn valid_messages_are_published_with_their_type_and_bad_ones_fail_alone() {
        let mut published: Vec<(String, Vec<Outgoing>)> = Vec::new();
        let messages = [
            Message::new("m1", market("m1")),
            Message::new("garbage", "{{"),
            Message::new("unknown", r#"{"type":"ORDER","data":{}}"#),
            Message::new("m2", market("m2")),
            Message::new(
                "no-event",
                r#"{"type":"MARKET","data":{"id":"x","campaignId":"c1","selectionCount":1}}"#,
            ),
        ];
        let r = process(&settings(), &messages, &mut |topic, out| {
            published.push((topic.to_string(), out.to_vec()));
            Ok(out
                .iter()
                .enumerate()
                .map(|(i, _)| Ok(format!("id-{i}")))
                .collect())
        });
        assert_eq!(r.failures, ["garbage", "unknown", "no-event"]);
        assert_eq!((r.received, r.processed, r.failed), (5, 2, 3));
        assert_eq!(published.len(), 1, "one publish call for the batch");
        let (topic, out) = &published[0];
        assert_eq!(topic, "data-sns");
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0].attributes,
            [("type".to_string(), "MARKET".to_string())]
        );
        let body: Value = serde_json::from_str(&out[1].body).expect("json");
        assert_eq!(body["marketId"], "m2");
        assert_eq!(body["waitlistCount"], 0);
    }

    #[test]
    fn a_failed_publish_fails_its_message_and_a_failed_call_fails_every_publish() {
        let messages = [
            Message::new("a", market("a")),
            Message::new("b", market("b")),
        ];
        let r = process(&settings(), &messages, &mut |_, _| {
            Ok(vec![
                Ok("x".into()),
                Err(Error::Invalid("throttled".into())),
            ])
        });
        assert_eq!(r.failures, ["b"]);
        let r = process(&settings(), &messages, &mut |_, _| {
            Err(Error::Invalid("down".into()))
        });
        assert_eq!(r.failures, ["a", "b"]);
        // A short answer fails the messages without a result.
        let r = process(&settings(), &messages, &mut |_, _| Ok(vec![Ok("x".into())]));
        assert_eq!(r.failures, ["b"]);
    }

    #[test]
    fn nothing_is_published_when_every_message_is_bad() {
        let mut calls = 0;
        let r = process(&settings(), &[Message::new("x", "nope")], &mut |_, _| {
            calls += 1;
            Ok(vec![])
        });
        assert_eq!(r.failures, ["x"]);
        assert_eq!(calls, 0);
    }
}
