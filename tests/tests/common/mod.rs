// Shared helpers of the component tests (included with `mod common;`).
#![allow(dead_code)]

use serde_json::{json, Value};
use usher_engine::BatchMessage;

/// A demand-table entry item.
pub fn entry(campaign: &str, user: &str, version: u64, needs_replication: bool) -> Value {
    json!({
        "PK": format!("ENTRY#{campaign}#{user}"),
        "SK": "ENTRY",
        "campaignId": campaign,
        "globalUserId": user,
        "entry": {"firstName": "Ada", "zip": "10001"},
        "verdict": "PENDING",
        "needsReplication": needs_replication,
        "version": version,
        "createdAt": "2026-11-01T00:00:00Z",
        "updatedAt": format!("2026-11-01T00:00:{:02}Z", version % 60),
    })
}

/// The key of an entry item.
pub fn key_of(item: &Value) -> Value {
    json!({"PK": item["PK"], "SK": item["SK"]})
}

/// A change record as enqueue-entries sends it to save-entries.
pub fn change(
    event: &str,
    new_image: Option<&Value>,
    old_image: Option<&Value>,
    seq: u64,
) -> Value {
    let image = new_image.or(old_image).expect("an image");
    json!({
        "table": "demand-table",
        "eventName": event,
        "keys": key_of(image),
        "newImage": new_image,
        "oldImage": old_image,
        "sequenceNumber": seq.to_string(),
        "timestampMs": 1_790_000_000_000u64 + seq,
    })
}

/// A queue message carrying `body`.
pub fn message(id: &str, body: String) -> BatchMessage {
    BatchMessage {
        message_id: id.to_string(),
        body,
        attributes: vec![],
        receive_count: 1,
    }
}
