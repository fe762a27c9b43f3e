//! `selection/mark-assigned-codes` (stream-worker): follows the changes of the `mark-assigned-codes` table.
//!
//! Made by `just new-worker`: replace the logic, keep it callable natively
//! (the capability calls reach `usher_sdk::fakes` in the unit tests).

use usher_sdk::{Change, StreamResult, StreamWorker};

/// Handles a batch of changes: every record is processed.
pub fn process(changes: &[Change]) -> StreamResult {
    usher_sdk::info!(records = changes.len(); "changes received");
    StreamResult::ok()
}

/// The worker.
pub struct MarkAssignedCodes;

impl StreamWorker for MarkAssignedCodes {
    fn handle(changes: Vec<Change>) -> StreamResult {
        process(&changes)
    }
}

usher_sdk::export_stream_worker!(MarkAssignedCodes);

#[cfg(test)]
mod tests {
    use super::*;
    use usher_sdk::fakes::Fakes;
    use usher_sdk::json::json;
    use usher_sdk::ChangeKind;

    #[test]
    fn every_change_is_processed() {
        let fakes = Fakes::new();
        let _installed = fakes.install();
        let change = Change {
            table: "mark-assigned-codes".into(),
            kind: ChangeKind::Insert,
            keys: json!({"PK": "a", "SK": "b"}),
            new_image: Some(json!({"PK": "a", "SK": "b"})),
            old_image: None,
            sequence_number: "1".into(),
            timestamp_ms: 0,
        };
        assert!(process(&[change]).failures.is_empty());
        assert!(fakes.calls().is_empty());
    }
}
