//! `testing/queue-sender` (batch-worker): sends each message's body to the
//! queue named by its `queue` attribute (to test the host's runtime grant
//! check). A message without the attribute, or whose send fails, fails.

use usher_sdk::queue::{self, Outgoing};
use usher_sdk::{BatchResult, BatchWorker, Message};

/// The effects the worker needs.
pub trait Ports {
    /// `queue::send_batch`.
    fn send_batch(
        &mut self,
        queue: &str,
        messages: &[Outgoing],
    ) -> usher_sdk::Result<Vec<usher_sdk::Result<String>>>;
}

/// Sends one message's body; `Err` with the reason when it fails.
fn forward(ports: &mut impl Ports, message: &Message) -> Result<String, String> {
    let name = message
        .attribute("queue")
        .ok_or_else(|| "no `queue` attribute".to_string())?;
    let results = ports
        .send_batch(name, &[Outgoing::new(message.body.clone())])
        .map_err(|e| e.to_string())?;
    match results.into_iter().next() {
        Some(Ok(id)) => Ok(id),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("no send result".to_string()),
    }
}

/// Handles a batch.
pub fn process(ports: &mut impl Ports, messages: &[Message]) -> BatchResult {
    BatchResult::from_results(messages.iter().map(|m| {
        let result = forward(ports, m);
        if let Err(reason) = &result {
            usher_sdk::warn!(message_id = m.id, reason = reason; "send failed");
        }
        (m.id.clone(), result)
    }))
}

/// The worker.
pub struct QueueSender;

struct Host;

impl Ports for Host {
    fn send_batch(
        &mut self,
        queue_name: &str,
        messages: &[Outgoing],
    ) -> usher_sdk::Result<Vec<usher_sdk::Result<String>>> {
        queue::send_batch(queue_name, messages)
    }
}

impl BatchWorker for QueueSender {
    fn handle(messages: Vec<Message>) -> BatchResult {
        process(&mut Host, &messages)
    }
}

usher_sdk::export_batch_worker!(QueueSender);

#[cfg(test)]
mod tests {
    use super::*;
    use usher_sdk::Error;

    #[derive(Default)]
    struct Fake {
        sent: Vec<(String, String)>,
    }

    impl Ports for Fake {
        fn send_batch(
            &mut self,
            queue: &str,
            messages: &[Outgoing],
        ) -> usher_sdk::Result<Vec<usher_sdk::Result<String>>> {
            if queue == "forbidden" {
                return Err(Error::Denied(format!("queue {queue}")));
            }
            self.sent
                .extend(messages.iter().map(|m| (queue.to_string(), m.body.clone())));
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
        }
    }

    #[test]
    fn sends_to_the_named_queue_and_fails_per_message() {
        let messages = vec![
            Message::new("a", "hello").with_attribute("queue", "granted"),
            Message::new("b", "x").with_attribute("queue", "forbidden"),
            Message::new("c", "y"),
            Message::new("d", "z").with_attribute("queue", "flaky"),
        ];
        let mut fake = Fake::default();
        let r = process(&mut fake, &messages);
        assert_eq!(r.failures, vec!["b", "c", "d"]);
        assert_eq!((r.received, r.processed, r.failed), (4, 1, 3));
        assert_eq!(fake.sent[0], ("granted".to_string(), "hello".to_string()));
    }
}
