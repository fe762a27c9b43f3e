//! `replication/retry-score` (batch-worker): retries score refreshes that
//! `save-entries` could not make.
//!
//! Each message is `{"campaignId","globalUserId"}`; a malformed message
//! fails alone. The valid fans are refreshed with
//! `POST /scores/refresh {"fans":[…]}` in chunks of at most 25 (each fan
//! once); a chunk answered non-2xx, or whose call fails, fails its messages.
//!
//! Setting: `service` (default `entries`).

use usher_domain::{Fan, CHUNK_SIZE};
use usher_sdk::json::json;
use usher_sdk::services;
use usher_sdk::{config, BatchResult, BatchWorker, Message};

/// The service used when the `service` setting is absent.
pub const DEFAULT_SERVICE: &str = "entries";

/// Parses a message body; an error unless both ids are non-empty strings.
pub fn parse(body: &str) -> usher_sdk::Result<Fan> {
    let fan: Fan = usher_sdk::json::from_str(body)?;
    if !fan.is_valid() {
        return Err(usher_sdk::Error::Invalid(
            "campaignId and globalUserId must not be empty".into(),
        ));
    }
    Ok(fan)
}

/// Handles a batch.
pub fn process(service: &str, messages: &[Message]) -> BatchResult {
    let mut failures: Vec<String> = Vec::new();
    // Each fan once, with the ids of the messages that asked for it.
    let mut fans: Vec<(Fan, Vec<&str>)> = Vec::new();
    for message in messages {
        match parse(&message.body) {
            Ok(fan) => match fans.iter_mut().find(|(f, _)| *f == fan) {
                Some((_, ids)) => ids.push(&message.id),
                None => fans.push((fan, vec![&message.id])),
            },
            Err(e) => {
                usher_sdk::warn!(message_id = message.id, reason = e; "malformed message failed");
                failures.push(message.id.clone());
            }
        }
    }
    for chunk in fans.chunks(CHUNK_SIZE) {
        let body = json!({"fans": chunk.iter().map(|(f, _)| f).collect::<Vec<_>>()});
        let reason = match services::post_json(service, "/scores/refresh", &body) {
            Ok(r) if r.is_success() => continue,
            Ok(r) => format!("status {}", r.status),
            Err(e) => e.to_string(),
        };
        usher_sdk::warn!(fans = chunk.len(), reason = reason; "score refresh failed");
        failures.extend(
            chunk
                .iter()
                .flat_map(|(_, ids)| ids.iter().map(|id| (*id).to_string())),
        );
    }
    BatchResult::from_failures(messages.len(), failures)
}

/// The worker.
pub struct RetryScore;

impl BatchWorker for RetryScore {
    fn handle(messages: Vec<Message>) -> BatchResult {
        match config::string_or("service", DEFAULT_SERVICE) {
            Ok(service) => process(&service, &messages),
            Err(e) => {
                usher_sdk::error!(error = e; "cannot read the settings; failing the batch");
                BatchResult::from_failures(messages.len(), messages.iter().map(|m| m.id.clone()))
            }
        }
    }
}

usher_sdk::export_batch_worker!(RetryScore);

#[cfg(test)]
mod tests {
    use super::*;
    use usher_sdk::fakes::{self, Fakes};
    use usher_sdk::{Error, Value};

    /// The Entry Service answering its nth request with `Some(status)` or
    /// `None` (a call error) as `answers` says; 200 otherwise.
    fn service(answers: Vec<(usize, Option<u16>)>) -> Fakes {
        let mut nth = 0;
        Fakes::new().on_service("entries", move |_| {
            let answer = answers.iter().find(|(n, _)| *n == nth).map(|(_, a)| *a);
            nth += 1;
            match answer {
                Some(None) => Err(Error::Unavailable("down".into())),
                Some(Some(status)) => Ok(fakes::status(status)),
                None => Ok(fakes::status(200)),
            }
        })
    }

    /// Every request: service, path and JSON body.
    fn posts(fakes: &Fakes) -> Vec<(String, String, Value)> {
        fakes
            .requests()
            .into_iter()
            .map(|r| {
                let body = serde_json::from_str(r.body.as_deref().unwrap_or("null")).expect("json");
                (r.service, r.path, body)
            })
            .collect()
    }

    fn msg(id: &str, c: &str, u: &str) -> Message {
        Message::new(id, json!({"campaignId": c, "globalUserId": u}).to_string())
    }

    #[test]
    fn malformed_messages_fail_alone() {
        let messages = vec![
            Message::new("a", "not json"),
            Message::new("b", r#"{"campaignId":"c"}"#),
            Message::new("c", r#"{"campaignId":"","globalUserId":"u"}"#),
            msg("d", "c1", "u1"),
        ];
        let fakes = service(vec![]);
        let _installed = fakes.install();
        let r = process("entries", &messages);
        assert_eq!(r.failures, vec!["a", "b", "c"]);
        assert_eq!((r.received, r.processed, r.failed), (4, 1, 3));
        let posts = posts(&fakes);
        assert_eq!(posts.len(), 1);
        assert_eq!(posts[0].0, "entries");
        assert_eq!(posts[0].1, "/scores/refresh");
        assert_eq!(
            posts[0].2,
            json!({"fans": [{"campaignId": "c1", "globalUserId": "u1"}]})
        );
    }

    #[test]
    fn chunks_of_25_and_failed_chunks_fail_their_messages() {
        let messages: Vec<Message> = (0..55)
            .map(|n| msg(&format!("m{n:02}"), "c", &format!("u{n:02}")))
            .collect();
        let fakes = service(vec![(0, Some(500)), (2, None)]);
        let _installed = fakes.install();
        let r = process("entries", &messages);
        let sizes: Vec<usize> = posts(&fakes)
            .iter()
            .map(|(_, _, b)| b["fans"].as_array().map_or(0, Vec::len))
            .collect();
        assert_eq!(sizes, vec![25, 25, 5]);
        let expected: Vec<String> = (0..25).chain(50..55).map(|n| format!("m{n:02}")).collect();
        assert_eq!(r.failures, expected);
        assert_eq!((r.received, r.processed, r.failed), (55, 25, 30));
    }

    #[test]
    fn a_fan_is_refreshed_once() {
        let messages = vec![msg("a", "c", "u"), msg("b", "c", "u")];
        let fakes = service(vec![(0, Some(429))]);
        let _installed = fakes.install();
        let r = process("entries", &messages);
        assert_eq!(posts(&fakes)[0].2["fans"].as_array().map(Vec::len), Some(1));
        assert_eq!(r.failures, vec!["a", "b"]);
    }

    #[test]
    fn empty_batch_calls_nothing() {
        let fakes = service(vec![]);
        let _installed = fakes.install();
        let r = process("entries", &[]);
        assert_eq!((r.received, r.processed, r.failed), (0, 0, 0));
        assert!(fakes.calls().is_empty());
    }
}
