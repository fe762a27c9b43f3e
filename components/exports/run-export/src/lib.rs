//! `exports/run-export` (batch-worker): handles the messages of the `run-export` queue.
//!
//! Made by `just new-worker`: replace the logic, keep it callable natively
//! (the capability calls reach `usher_sdk::fakes` in the unit tests).

use usher_sdk::{BatchResult, BatchWorker, Message, Value};

/// Handles a batch: a message whose body is JSON is processed, any other
/// fails alone (and is retried by the queue).
pub fn process(messages: &[Message]) -> BatchResult {
    BatchResult::from_results(messages.iter().map(|m| (m.id.clone(), m.json::<Value>())))
}

/// The worker.
pub struct RunExport;

impl BatchWorker for RunExport {
    fn handle(messages: Vec<Message>) -> BatchResult {
        process(&messages)
    }
}

usher_sdk::export_batch_worker!(RunExport);

#[cfg(test)]
mod tests {
    use super::*;
    use usher_sdk::fakes::Fakes;

    #[test]
    fn a_message_that_is_not_json_fails_alone() {
        let fakes = Fakes::new();
        let _installed = fakes.install();
        let r = process(&[Message::new("a", r#"{"n":1}"#), Message::new("b", "nope")]);
        assert_eq!(r.failures, vec!["b"]);
        assert_eq!((r.received, r.processed, r.failed), (2, 1, 1));
        assert!(fakes.calls().is_empty());
    }
}
