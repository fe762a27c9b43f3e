//! `replication/enqueue-entries` (stream-worker): forwards the `demand-table`
//! changes that need replication to the save-entries queue.
//!
//! Kept records:
//! * INSERT and MODIFY whose new image has `needsReplication == true`;
//! * REMOVE whose old image is an entry item (has `campaignId` and
//!   `globalUserId`). The seed filtered on the new image only, so it
//!   silently dropped every deletion: deletions must replicate too.
//!
//! Each kept record is sent with one `queue::send_batch` to the queue named
//! by the setting `queue` (default `save-entries`); the body is the change
//! as JSON, `{"table","eventName","keys","newImage","oldImage","sequenceNumber","timestampMs"}`,
//! with the attribute `eventName`. A failed send fails that record (by
//! sequence number); when the whole call fails, every kept record fails.
//! Filtered-out records are successes.

use usher_sdk::json::{bool_field, str_field};
use usher_sdk::queue::{self, Outgoing};
use usher_sdk::{config, Change, ChangeKind, StreamResult, StreamWorker};

/// The queue used when the `queue` setting is absent.
pub const DEFAULT_QUEUE: &str = "save-entries";

/// Whether a change must be replicated.
pub fn needs_replication(change: &Change) -> bool {
    match change.kind {
        ChangeKind::Insert | ChangeKind::Modify => change
            .new_image
            .as_ref()
            .and_then(|image| bool_field(image, "needsReplication"))
            .unwrap_or(false),
        ChangeKind::Remove => change.old_image.as_ref().is_some_and(|image| {
            str_field(image, "campaignId").is_some() && str_field(image, "globalUserId").is_some()
        }),
    }
}

/// The queue message for a change.
pub fn to_message(change: &Change) -> usher_sdk::Result<Outgoing> {
    Ok(Outgoing::json(change)?.attribute("eventName", change.kind.event_name()))
}

/// Handles a batch of changes.
pub fn process(queue_name: &str, changes: &[Change]) -> StreamResult {
    let mut failures = Vec::new();
    let mut kept: Vec<&Change> = Vec::new();
    let mut messages = Vec::new();
    for change in changes.iter().filter(|c| needs_replication(c)) {
        match to_message(change) {
            Ok(message) => {
                kept.push(change);
                messages.push(message);
            }
            Err(e) => {
                usher_sdk::warn!(sequence_number = change.sequence_number, error = e;
                    "cannot encode a change");
                failures.push(change.sequence_number.clone());
            }
        }
    }
    if !messages.is_empty() {
        match queue::send_batch(queue_name, &messages) {
            Ok(results) => {
                for (n, change) in kept.iter().enumerate() {
                    match results.get(n) {
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            usher_sdk::warn!(sequence_number = change.sequence_number, error = e;
                                "sending a change failed");
                            failures.push(change.sequence_number.clone());
                        }
                        None => {
                            usher_sdk::warn!(sequence_number = change.sequence_number;
                                "no send result for a change");
                            failures.push(change.sequence_number.clone());
                        }
                    }
                }
            }
            Err(e) => {
                usher_sdk::warn!(queue = queue_name, records = kept.len(), error = e;
                    "sending the batch failed");
                failures.extend(kept.iter().map(|c| c.sequence_number.clone()));
            }
        }
    }
    usher_sdk::info!(received = changes.len(), queued = kept.len(), failed = failures.len();
        "enqueue-entries batch done");
    StreamResult::from_failures(failures)
}

/// The worker.
pub struct EnqueueEntries;

impl StreamWorker for EnqueueEntries {
    fn handle(changes: Vec<Change>) -> StreamResult {
        match config::string_or("queue", DEFAULT_QUEUE) {
            Ok(queue_name) => process(&queue_name, &changes),
            Err(e) => {
                usher_sdk::error!(error = e; "cannot read the settings; failing the batch");
                StreamResult::from_failures(changes.iter().map(|c| c.sequence_number.clone()))
            }
        }
    }
}

usher_sdk::export_stream_worker!(EnqueueEntries);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use usher_sdk::fakes::Fakes;
    use usher_sdk::Error;

    /// A queue whose sends of these indices fail, or (`short`) that answers
    /// one result too few.
    fn queue(fail_items: Vec<usize>, short: bool) -> Fakes {
        Fakes::new().on_queue(move |_, messages| {
            let n = if short {
                messages.len() - 1
            } else {
                messages.len()
            };
            Ok((0..n)
                .map(|i| {
                    if fail_items.contains(&i) {
                        Err(Error::Throttled("slow".into()))
                    } else {
                        Ok(format!("id-{i}"))
                    }
                })
                .collect())
        })
    }

    fn entry(flag: bool) -> Value {
        json!({"PK": "ENTRY#c#u", "SK": "ENTRY", "campaignId": "c", "globalUserId": "u",
               "needsReplication": flag, "version": 2})
    }

    fn change(kind: ChangeKind, new: Option<Value>, old: Option<Value>, seq: &str) -> Change {
        Change {
            table: "demand-table".into(),
            kind,
            keys: json!({"PK": "ENTRY#c#u", "SK": "ENTRY"}),
            new_image: new,
            old_image: old,
            sequence_number: seq.into(),
            timestamp_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn filter() {
        use ChangeKind::*;
        assert!(needs_replication(&change(
            Insert,
            Some(entry(true)),
            None,
            "1"
        )));
        assert!(needs_replication(&change(
            Modify,
            Some(entry(true)),
            Some(entry(false)),
            "1"
        )));
        assert!(!needs_replication(&change(
            Modify,
            Some(entry(false)),
            Some(entry(true)),
            "1"
        )));
        assert!(!needs_replication(&change(
            Insert,
            Some(json!({"needsReplication": "true"})),
            None,
            "1"
        )));
        assert!(!needs_replication(&change(Insert, None, None, "1")));
        // Deletions replicate (the seed dropped them: no new image).
        assert!(needs_replication(&change(
            Remove,
            None,
            Some(entry(false)),
            "1"
        )));
        assert!(!needs_replication(&change(
            Remove,
            None,
            Some(json!({"PK": "CAMPAIGN#c"})),
            "1"
        )));
        assert!(!needs_replication(&change(Remove, None, None, "1")));
    }

    #[test]
    fn message_body_and_attribute() {
        let c = change(ChangeKind::Remove, None, Some(entry(true)), "42");
        let m = to_message(&c).expect("message");
        assert_eq!(
            m.attributes,
            vec![("eventName".to_string(), "REMOVE".to_string())]
        );
        let body: Value = serde_json::from_str(&m.body).expect("json");
        assert_eq!(
            body,
            json!({"table": "demand-table", "eventName": "REMOVE",
                   "keys": {"PK": "ENTRY#c#u", "SK": "ENTRY"},
                   "newImage": null, "oldImage": entry(true),
                   "sequenceNumber": "42", "timestampMs": 1_700_000_000_000u64})
        );
    }

    #[test]
    fn sends_kept_records_in_one_call() {
        let changes = vec![
            change(ChangeKind::Insert, Some(entry(true)), None, "1"),
            change(
                ChangeKind::Modify,
                Some(entry(false)),
                Some(entry(true)),
                "2",
            ),
            change(ChangeKind::Remove, None, Some(entry(false)), "3"),
        ];
        let fakes = Fakes::new();
        let _installed = fakes.install();
        let r = process("save-entries", &changes);
        assert!(r.failures.is_empty());
        let sends = fakes.sends();
        assert_eq!(sends.len(), 1);
        assert_eq!(sends[0].0, "save-entries");
        let kinds: Vec<&str> = sends[0]
            .1
            .iter()
            .map(|m| m.attributes[0].1.as_str())
            .collect();
        assert_eq!(kinds, vec!["INSERT", "REMOVE"]);
    }

    #[test]
    fn a_failed_send_fails_that_record_only() {
        let changes = vec![
            change(ChangeKind::Insert, Some(entry(true)), None, "1"),
            change(ChangeKind::Modify, Some(entry(false)), None, "2"),
            change(ChangeKind::Modify, Some(entry(true)), None, "3"),
            change(ChangeKind::Remove, None, Some(entry(true)), "4"),
        ];
        // Kept: 1, 3, 4; the second send (record 3) fails.
        let installed = queue(vec![1], false).install();
        assert_eq!(process("q", &changes).failures, vec!["3"]);
        drop(installed);
        // A missing answer counts as a failure.
        let _installed = queue(vec![], true).install();
        assert_eq!(process("q", &changes).failures, vec!["4"]);
    }

    #[test]
    fn a_failed_call_fails_every_kept_record() {
        let changes = vec![
            change(ChangeKind::Insert, Some(entry(true)), None, "1"),
            change(ChangeKind::Modify, Some(entry(false)), None, "2"),
            change(ChangeKind::Remove, None, Some(entry(true)), "3"),
        ];
        let fakes = Fakes::new().on_queue(|queue, _| Err(Error::NotFound(queue.to_string())));
        let _installed = fakes.install();
        assert_eq!(process("q", &changes).failures, vec!["1", "3"]);
    }

    #[test]
    fn nothing_to_send_sends_nothing() {
        let changes = vec![change(ChangeKind::Modify, Some(entry(false)), None, "1")];
        let fakes = Fakes::new();
        let _installed = fakes.install();
        assert!(process("q", &changes).failures.is_empty());
        assert!(fakes.calls().is_empty());
    }
}
