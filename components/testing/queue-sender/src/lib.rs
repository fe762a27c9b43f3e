//! `testing/queue-sender` (batch-worker): sends each message's body to the
//! queue named by its `queue` attribute (to test the host's runtime grant
//! check). A message without the attribute, or whose send fails, fails.

use usher_sdk::queue::{self, Outgoing};
use usher_sdk::{BatchResult, BatchWorker, Message};

/// Sends one message's body; `Err` with the reason when it fails.
fn forward(message: &Message) -> Result<String, String> {
    let name = message
        .attribute("queue")
        .ok_or_else(|| "no `queue` attribute".to_string())?;
    let results = queue::send_batch(name, &[Outgoing::new(message.body.clone())])
        .map_err(|e| e.to_string())?;
    match results.into_iter().next() {
        Some(Ok(id)) => Ok(id),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("no send result".to_string()),
    }
}

/// Handles a batch.
pub fn process(messages: &[Message]) -> BatchResult {
    BatchResult::from_results(messages.iter().map(|m| {
        let result = forward(m);
        if let Err(reason) = &result {
            usher_sdk::warn!(message_id = m.id, reason = reason; "send failed");
        }
        (m.id.clone(), result)
    }))
}

/// The worker.
pub struct QueueSender;

impl BatchWorker for QueueSender {
    fn handle(messages: Vec<Message>) -> BatchResult {
        process(&messages)
    }
}

usher_sdk::export_batch_worker!(QueueSender);

#[cfg(test)]
mod tests {
    use super::*;
    use usher_sdk::fakes::Fakes;
    use usher_sdk::Error;

    /// `forbidden` is not granted; every send to `flaky` fails.
    fn queues() -> Fakes {
        Fakes::new().on_queue(|queue, messages| {
            if queue == "forbidden" {
                return Err(Error::Denied(format!("queue {queue}")));
            }
            Ok(messages
                .iter()
                .map(|_| {
                    if queue == "flaky" {
                        Err(Error::Unavailable("sqs".into()))
                    } else {
                        Ok("id".to_string())
                    }
                })
                .collect())
        })
    }

    #[test]
    fn sends_to_the_named_queue_and_fails_per_message() {
        let messages = vec![
            Message::new("a", "hello").with_attribute("queue", "granted"),
            Message::new("b", "x").with_attribute("queue", "forbidden"),
            Message::new("c", "y"),
            Message::new("d", "z").with_attribute("queue", "flaky"),
        ];
        let fakes = queues();
        let _installed = fakes.install();
        let r = process(&messages);
        assert_eq!(r.failures, vec!["b", "c", "d"]);
        assert_eq!((r.received, r.processed, r.failed), (4, 1, 3));
        let sent = fakes.sends();
        assert_eq!(
            (sent[0].0.as_str(), sent[0].1[0].body.as_str()),
            ("granted", "hello")
        );
    }
}
