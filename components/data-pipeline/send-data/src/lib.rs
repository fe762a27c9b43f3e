//! `data-pipeline/send-data` (batch-worker): ONE component on the five
//! queues `data-sns` fans out to (campaign-queue, market-queue,
//! registration-queue, evt-mapping-queue, reg-markets-queue; five registry
//! entries in `workers/data-pipeline.yaml` sharing this component).
//!
//! **Message.** The body is an analytics record as JSON
//! (`usher_domain::analytics`), the message attribute `type` its type
//! (`CAMPAIGN`, `MARKET`, `REGISTRATION`, `EVENT_MAPPING`,
//! `REGISTERED_MARKET`), as `data-pipeline/process-data` published it.
//!
//! **Validation.** Each record is checked against the JSON Schema of its
//! type, `schemas/<plural>.json` beside this crate (draft 2020-12, formats
//! checked; embedded with `include_str!`, validated with the `jsonschema`
//! crate, which builds for wasm32-wasip2 without its default HTTP/file
//! resolvers). The record's Kafka key is built from the fields
//! `usher_domain::analytics::key_fields` names.
//!
//! **Produced.** The valid records go to `prd2011.dmnd.<plural>` (setting
//! `topics`, by type), one `events.produce` per topic with one record per
//! message: key, value = the message body as received, headers `type` and
//! `content-type: application/json`. The host's producer is idempotent; each
//! record's delivery report decides its message: a failed delivery fails
//! the message alone (retried by its queue; after 3 receives it lands in
//! the queue's dead-letter queue).
//!
//! **Records that fail their schema never reach Kafka.** They are sent
//! straight to the dead-letter queue of their type (setting `dead_letters`,
//! by type) with the reason: attributes `type`, `error` (the schema
//! violations, at most 1000 bytes) and `source` (`data-pipeline/send-data`),
//! and the message counts as processed (retrying cannot fix it). When that
//! send fails, or no dead-letter queue is set for the type, the message
//! fails instead, and the queue's own redrive takes it to the same
//! dead-letter queue after 3 receives (the reason is in the log). A message
//! without a known `type` attribute fails alone (logged).
//!
//! Settings: `topics` (`{TYPE: topic}`, default `prd2011.dmnd.<plural>`),
//! `dead_letters` (`{TYPE: queue}`, no default).

use std::collections::BTreeMap;

use serde_json::Value;
use usher_domain::analytics::{record_key, DataType};
use usher_sdk::events::{self, Delivery, Event};
use usher_sdk::queue::{self, Outgoing};
use usher_sdk::{config, BatchResult, BatchWorker, Message};

/// The longest `error` attribute sent with a record to its dead-letter
/// queue, in bytes.
pub const MAX_REASON_BYTES: usize = 1000;

/// The JSON Schema of a type (`schemas/<plural>.json`).
pub fn schema_text(data_type: DataType) -> &'static str {
    match data_type {
        DataType::Campaign => include_str!("../schemas/campaigns.json"),
        DataType::Market => include_str!("../schemas/markets.json"),
        DataType::Registration => include_str!("../schemas/registrations.json"),
        DataType::EventMapping => include_str!("../schemas/event-mappings.json"),
        DataType::RegisteredMarket => include_str!("../schemas/registered-markets.json"),
    }
}

/// The compiled schemas, one per type, compiled when first needed.
#[derive(Default)]
pub struct Schemas {
    compiled: BTreeMap<DataType, jsonschema::Validator>,
}

impl Schemas {
    /// No schema compiled yet.
    pub fn new() -> Schemas {
        Schemas::default()
    }

    /// Checks `record` against the schema of `data_type`: the violations,
    /// `<path>: <message>` each (the root is `/`); empty when valid.
    pub fn violations(
        &mut self,
        data_type: DataType,
        record: &Value,
    ) -> Result<Vec<String>, String> {
        let validator = match self.compiled.entry(data_type) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => {
                let schema: Value = serde_json::from_str(schema_text(data_type))
                    .map_err(|e| format!("the {data_type} schema is not JSON: {e}"))?;
                let validator = jsonschema::options()
                    .should_validate_formats(true)
                    .build(&schema)
                    .map_err(|e| format!("the {data_type} schema does not compile: {e}"))?;
                v.insert(validator)
            }
        };
        Ok(validator
            .iter_errors(record)
            .map(|e| {
                let path = e.instance_path().to_string();
                let path = if path.is_empty() {
                    "/".to_string()
                } else {
                    path
                };
                format!("{path}: {e}")
            })
            .collect())
    }
}

/// The worker's settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Settings {
    /// The Kafka topic of each type.
    pub topics: BTreeMap<DataType, String>,
    /// The dead-letter queue of each type (where schema failures go).
    pub dead_letters: BTreeMap<DataType, String>,
}

impl Settings {
    /// From the registry's `settings` (see the crate docs).
    pub fn load() -> usher_sdk::Result<Settings> {
        let topics: BTreeMap<DataType, String> = config::get("topics")?.unwrap_or_default();
        let dead_letters: BTreeMap<DataType, String> =
            config::get("dead_letters")?.unwrap_or_default();
        Ok(Settings::new(topics, dead_letters))
    }

    /// Settings with these topics (the missing types get
    /// `prd2011.dmnd.<plural>`) and dead-letter queues.
    pub fn new(
        mut topics: BTreeMap<DataType, String>,
        dead_letters: BTreeMap<DataType, String>,
    ) -> Settings {
        for t in DataType::ALL {
            topics.entry(t).or_insert_with(|| t.default_topic());
        }
        Settings {
            topics,
            dead_letters,
        }
    }

    fn topic(&self, data_type: DataType) -> String {
        self.topics
            .get(&data_type)
            .cloned()
            .unwrap_or_else(|| data_type.default_topic())
    }
}

/// Where records and refused messages go: the `events` and `queue`
/// capabilities ([`Capabilities`]), or a stand-in in unit tests.
pub trait Outputs {
    /// `events::produce`.
    fn produce(
        &mut self,
        topic: &str,
        events: &[Event],
    ) -> usher_sdk::Result<Vec<usher_sdk::Result<Delivery>>>;
    /// `queue::send_batch`.
    fn send(
        &mut self,
        queue: &str,
        messages: &[Outgoing],
    ) -> usher_sdk::Result<Vec<usher_sdk::Result<String>>>;
}

/// The host's capabilities.
pub struct Capabilities;

impl Outputs for Capabilities {
    fn produce(
        &mut self,
        topic: &str,
        events: &[Event],
    ) -> usher_sdk::Result<Vec<usher_sdk::Result<Delivery>>> {
        events::produce(topic, events)
    }

    fn send(
        &mut self,
        queue: &str,
        messages: &[Outgoing],
    ) -> usher_sdk::Result<Vec<usher_sdk::Result<String>>> {
        queue::send_batch(queue, messages)
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// What the check of one message decided.
enum Checked {
    /// Produce it.
    Valid { data_type: DataType, key: String },
    /// Its record can never be valid: to the dead-letter queue with this reason.
    Refused { data_type: DataType, reason: String },
    /// Fail it (retried; the queue's redrive decides).
    Failed(String),
}

fn check(schemas: &mut Schemas, message: &Message) -> Checked {
    let data_type = match message.attribute("type") {
        Some(name) => match DataType::parse(name) {
            Some(t) => t,
            None => return Checked::Failed(format!("unknown type attribute `{name}`")),
        },
        None => return Checked::Failed("the message has no `type` attribute".into()),
    };
    let record: Value = match serde_json::from_str(&message.body) {
        Ok(v) => v,
        Err(e) => {
            return Checked::Refused {
                data_type,
                reason: format!("the body is not JSON: {e}"),
            }
        }
    };
    match schemas.violations(data_type, &record) {
        Ok(v) if v.is_empty() => {}
        Ok(v) => {
            return Checked::Refused {
                data_type,
                reason: format!(
                    "the {data_type} record fails its schema ({}.json): {}",
                    data_type.plural(),
                    v.join("; ")
                ),
            }
        }
        Err(e) => return Checked::Failed(e),
    }
    match record_key(data_type, &record) {
        Some(key) => Checked::Valid { data_type, key },
        // The schemas require the key fields; this is a schema bug.
        None => Checked::Failed(format!("the {data_type} record has no key")),
    }
}

/// Handles a batch (see the crate docs).
pub fn process(
    settings: &Settings,
    messages: &[Message],
    outputs: &mut dyn Outputs,
) -> BatchResult {
    let mut schemas = Schemas::new();
    let mut failures: Vec<String> = Vec::new();
    // By topic: (message index, event).
    let mut to_produce: BTreeMap<String, Vec<(usize, Event)>> = BTreeMap::new();
    // By dead-letter queue: (message index, outgoing).
    let mut to_refuse: BTreeMap<String, Vec<(usize, Outgoing)>> = BTreeMap::new();
    for (i, message) in messages.iter().enumerate() {
        match check(&mut schemas, message) {
            Checked::Valid { data_type, key } => {
                to_produce
                    .entry(settings.topic(data_type))
                    .or_default()
                    .push((
                        i,
                        Event {
                            key: Some(key),
                            value: message.body.as_bytes().to_vec(),
                            headers: vec![
                                ("type".into(), data_type.as_str().into()),
                                ("content-type".into(), "application/json".into()),
                            ],
                        },
                    ));
            }
            Checked::Refused { data_type, reason } => {
                usher_sdk::warn!(message_id = message.id, reason = reason; "record refused by its schema");
                match settings.dead_letters.get(&data_type) {
                    Some(dlq) => to_refuse.entry(dlq.clone()).or_default().push((
                        i,
                        Outgoing::new(message.body.clone())
                            .attribute("type", data_type.as_str())
                            .attribute("error", cut(&reason, MAX_REASON_BYTES))
                            .attribute("source", "data-pipeline/send-data"),
                    )),
                    None => {
                        usher_sdk::warn!(message_id = message.id, data_type = data_type; "no dead_letters queue for the type: failing the message");
                        failures.push(message.id.clone());
                    }
                }
            }
            Checked::Failed(reason) => {
                usher_sdk::warn!(message_id = message.id, reason = reason; "message failed");
                failures.push(message.id.clone());
            }
        }
    }

    for (topic, items) in &to_produce {
        let events: Vec<Event> = items.iter().map(|(_, e)| e.clone()).collect();
        match outputs.produce(topic, &events) {
            Ok(results) => {
                for (n, (i, _)) in items.iter().enumerate() {
                    let id = &messages[*i].id;
                    match results.get(n) {
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            let reason = e.to_string();
                            usher_sdk::warn!(message_id = id, topic = topic, reason = reason; "delivery failed");
                            failures.push(id.clone());
                        }
                        None => {
                            usher_sdk::warn!(message_id = id, topic = topic; "no delivery report");
                            failures.push(id.clone());
                        }
                    }
                }
            }
            Err(e) => {
                let reason = e.to_string();
                usher_sdk::error!(topic = topic, reason = reason; "producing failed");
                failures.extend(items.iter().map(|(i, _)| messages[*i].id.clone()));
            }
        }
    }

    for (dlq, items) in &to_refuse {
        let outgoing: Vec<Outgoing> = items.iter().map(|(_, o)| o.clone()).collect();
        let results = outputs.send(dlq, &outgoing);
        for (n, (i, _)) in items.iter().enumerate() {
            let id = &messages[*i].id;
            let sent = match &results {
                Ok(r) => matches!(r.get(n), Some(Ok(_))),
                Err(_) => false,
            };
            if !sent {
                usher_sdk::warn!(message_id = id, queue = dlq; "sending the refused record to its dead-letter queue failed: failing the message");
                failures.push(id.clone());
            }
        }
    }
    BatchResult::from_failures(messages.len(), failures)
}

/// The worker.
pub struct SendData;

impl BatchWorker for SendData {
    fn handle(messages: Vec<Message>) -> BatchResult {
        match Settings::load() {
            Ok(settings) => process(&settings, &messages, &mut Capabilities),
            Err(e) => {
                usher_sdk::error!(error = e; "cannot read the settings; failing the batch");
                BatchResult::from_failures(messages.len(), messages.iter().map(|m| m.id.clone()))
            }
        }
    }
}

usher_sdk::export_batch_worker!(SendData);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use usher_domain::analytics::{format, DataMessage, EventMappingData};
    use usher_domain::campaign::Market;
    use usher_sdk::Error;

    #[derive(Default)]
    struct Recorded {
        produced: Vec<(String, Vec<Event>)>,
        sent: Vec<(String, Vec<Outgoing>)>,
        fail_key: Option<String>,
        produce_down: bool,
        send_down: bool,
    }

    impl Outputs for Recorded {
        fn produce(
            &mut self,
            topic: &str,
            events: &[Event],
        ) -> usher_sdk::Result<Vec<usher_sdk::Result<Delivery>>> {
            if self.produce_down {
                return Err(Error::Invalid("broker down".into()));
            }
            self.produced.push((topic.into(), events.to_vec()));
            Ok(events
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    if e.key == self.fail_key {
                        Err(Error::Invalid("message timed out".into()))
                    } else {
                        Ok(Delivery {
                            partition: 0,
                            offset: i as i64,
                        })
                    }
                })
                .collect())
        }

        fn send(
            &mut self,
            queue: &str,
            messages: &[Outgoing],
        ) -> usher_sdk::Result<Vec<usher_sdk::Result<String>>> {
            if self.send_down {
                return Err(Error::Invalid("queue down".into()));
            }
            self.sent.push((queue.into(), messages.to_vec()));
            Ok(messages.iter().map(|_| Ok("id".into())).collect())
        }
    }

    fn settings() -> Settings {
        let dlqs = DataType::ALL
            .into_iter()
            .map(|t| (t, format!("{}-dlq", t.plural())))
            .collect();
        Settings::new(BTreeMap::new(), dlqs)
    }

    fn market_record(id: &str) -> Value {
        json!({"campaignId": "c1", "marketId": id, "eventId": "e1", "eventName": "N", "venue": "V",
               "selectionCount": 3, "waitlistCount": 0})
    }

    fn msg(id: &str, t: &str, body: &Value) -> Message {
        Message::new(id, body.to_string()).with_attribute("type", t)
    }

    #[test]
    fn every_record_process_data_formats_passes_its_schema() {
        let market: Market = serde_json::from_value(
            json!({"id": "m1", "campaignId": "c1", "eventId": "e1", "selectionCount": 2}),
        )
        .expect("market");
        let samples = [
            (
                DataType::Campaign,
                json!({"id": "c1", "slug": "s", "opensAt": "2026-12-01T10:00:00Z", "closesAt": "2026-12-02T10:00:00Z"}),
            ),
            (
                DataType::Campaign,
                json!({"id": "c2", "slug": "s2", "name": "N", "status": "CLOSED", "opensAt": "2026-12-01T10:00:00Z",
                "closesAt": "2026-12-02T10:00:00Z", "gate": {"type": "countries", "countries": ["US"]}, "linkedCampaignId": "c1",
                "fields": [{"name": "zip", "type": "string", "required": true}]}),
            ),
            (
                DataType::Market,
                serde_json::to_value(&market).expect("json"),
            ),
            (
                DataType::EventMapping,
                serde_json::to_value(EventMappingData::of_market(&market)).expect("json"),
            ),
            (
                DataType::Registration,
                json!({"campaignId": "c1", "globalUserId": "u", "marketId": "m1", "version": 1,
                "createdAt": "2026-12-01T10:00:00Z", "updatedAt": "2026-12-01T10:00:00Z", "country": "US", "locale": "en-US", "transferredFrom": "c0"}),
            ),
            (
                DataType::RegisteredMarket,
                json!({"campaignId": "c1", "marketId": "m1", "globalUserId": "u", "registeredAt": "2026-12-01T10:00:00Z"}),
            ),
        ];
        let mut schemas = Schemas::new();
        for (t, data) in samples {
            let message = DataMessage::new(t, &data).expect("message");
            let record = format(message.data_type, &message.data).expect("formats");
            let violations = schemas
                .violations(t, &record.to_json())
                .expect("schema compiles");
            assert!(violations.is_empty(), "{t}: {violations:?}");
        }
    }

    #[test]
    fn every_schema_compiles_and_refuses_an_empty_object() {
        let mut schemas = Schemas::new();
        for t in DataType::ALL {
            let v = schemas.violations(t, &json!({})).expect("compiles");
            assert!(v.iter().any(|m| m.contains("required")), "{t}: {v:?}");
        }
    }

    #[test]
    fn valid_records_are_produced_to_their_topic_with_their_key() {
        let mut out = Recorded::default();
        let body = market_record("m1");
        let r = process(
            &settings(),
            &[
                msg("a", "MARKET", &body),
                msg("b", "MARKET", &market_record("m2")),
                msg(
                    "c",
                    "REGISTERED_MARKET",
                    &json!({"campaignId": "c1", "marketId": "m1", "globalUserId": "u1", "registeredAt": "2026-12-01T10:00:00.000Z"}),
                ),
            ],
            &mut out,
        );
        assert!(r.failures.is_empty(), "{r:?}");
        assert_eq!(out.produced.len(), 2, "one produce per topic");
        let (topic, events) = &out.produced[0];
        assert_eq!(topic, "prd2011.dmnd.markets");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].key.as_deref(), Some("c1/m1"));
        assert_eq!(events[0].value, body.to_string().into_bytes());
        assert_eq!(
            events[0].headers[0],
            ("type".to_string(), "MARKET".to_string())
        );
        assert_eq!(out.produced[1].0, "prd2011.dmnd.registered-markets");
        assert_eq!(out.produced[1].1[0].key.as_deref(), Some("c1/m1/u1"));
        assert!(out.sent.is_empty());
    }

    #[test]
    fn a_schema_failure_goes_to_the_dead_letter_queue_with_its_reason_never_to_kafka() {
        let mut out = Recorded::default();
        let mut bad = market_record("m1");
        bad["selectionCount"] = json!(-1);
        bad["extra"] = json!(true);
        let r = process(
            &settings(),
            &[
                msg("bad", "MARKET", &bad),
                Message::new("not-json", "{{").with_attribute("type", "CAMPAIGN"),
                msg("good", "MARKET", &market_record("m2")),
                msg(
                    "bad-time",
                    "REGISTERED_MARKET",
                    &json!({"campaignId": "c1", "marketId": "m1", "globalUserId": "u1", "registeredAt": "noon"}),
                ),
            ],
            &mut out,
        );
        assert!(r.failures.is_empty(), "refused records are handled: {r:?}");
        let produced: Vec<&Event> = out.produced.iter().flat_map(|(_, e)| e).collect();
        assert_eq!(produced.len(), 1);
        assert_eq!(produced[0].key.as_deref(), Some("c1/m2"));
        let sent: BTreeMap<&str, &Vec<Outgoing>> =
            out.sent.iter().map(|(q, m)| (q.as_str(), m)).collect();
        let market = &sent["markets-dlq"][0];
        let error = &market
            .attributes
            .iter()
            .find(|(k, _)| k == "error")
            .expect("error")
            .1;
        assert!(error.contains("/selectionCount"), "{error}");
        assert!(error.contains("extra"), "{error}");
        assert!(error.contains("markets.json"), "{error}");
        assert_eq!(market.body, bad.to_string());
        assert!(sent["campaigns-dlq"][0]
            .attributes
            .iter()
            .any(|(k, v)| k == "error" && v.contains("not JSON")));
        assert!(sent["registered-markets-dlq"][0]
            .attributes
            .iter()
            .any(|(k, v)| k == "error" && v.contains("/registeredAt")));
    }

    #[test]
    fn failures_are_per_message() {
        // A failed delivery fails its message alone.
        let mut out = Recorded {
            fail_key: Some("c1/m2".into()),
            ..Recorded::default()
        };
        let messages = [
            msg("a", "MARKET", &market_record("m1")),
            msg("b", "MARKET", &market_record("m2")),
        ];
        assert_eq!(process(&settings(), &messages, &mut out).failures, ["b"]);
        // A failed produce call fails every message of its topic.
        let mut out = Recorded {
            produce_down: true,
            ..Recorded::default()
        };
        assert_eq!(
            process(&settings(), &messages, &mut out).failures,
            ["a", "b"]
        );
        // A missing or unknown type, and a refused record whose dead-letter
        // send failed or has no dead-letter queue, fail alone.
        let mut out = Recorded {
            send_down: true,
            ..Recorded::default()
        };
        let r = process(
            &settings(),
            &[
                Message::new("untyped", market_record("m1").to_string()),
                msg("odd", "ORDER", &market_record("m1")),
                msg("bad", "MARKET", &json!({})),
                msg("ok", "MARKET", &market_record("m1")),
            ],
            &mut out,
        );
        assert_eq!(r.failures, ["untyped", "odd", "bad"]);
        let no_dlq = Settings::new(BTreeMap::new(), BTreeMap::new());
        let r = process(
            &no_dlq,
            &[msg("bad", "MARKET", &json!({}))],
            &mut Recorded::default(),
        );
        assert_eq!(r.failures, ["bad"]);
    }

    #[test]
    fn settings_read_the_maps_by_type() {
        let fakes = usher_sdk::fakes::Fakes::new()
            .setting("topics", json!({"MARKET": "x.markets"}))
            .setting("dead_letters", json!({"MARKET": "market-queue-dlq"}));
        let _installed = fakes.install();
        let s = Settings::load().expect("settings");
        assert_eq!(s.topic(DataType::Market), "x.markets");
        assert_eq!(
            s.topic(DataType::Registration),
            "prd2011.dmnd.registrations"
        );
        assert_eq!(s.dead_letters[&DataType::Market], "market-queue-dlq");
        let fakes = usher_sdk::fakes::Fakes::new().setting("topics", json!({"ORDER": "x"}));
        let _installed = fakes.install();
        assert!(
            Settings::load().is_err(),
            "an unknown type in the settings is refused"
        );
    }

    #[test]
    fn topics_come_from_the_settings() {
        let topics = [(DataType::Market, "analytics.markets".to_string())]
            .into_iter()
            .collect();
        let s = Settings::new(topics, BTreeMap::new());
        assert_eq!(s.topic(DataType::Market), "analytics.markets");
        assert_eq!(s.topic(DataType::Campaign), "prd2011.dmnd.campaigns");
        assert_eq!(cut("ééé", 3), "é");
    }
}
