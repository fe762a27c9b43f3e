//! The guest's side of every encoding: the typed serde model the worker
//! code sees (what `usher_sdk`'s serde-typed API would hand a worker), and
//! the conversions each encoding needs. Natively testable; the wasm exports
//! in `lib.rs` only call these.

use serde::{Deserialize, Serialize};
#[cfg(feature = "raw")]
use serde_json::value::RawValue;
use serde_json::Value;

/// A demand-table entry item as a worker reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    /// Partition key.
    #[serde(rename = "PK")]
    pub pk: String,
    /// Sort key.
    #[serde(rename = "SK")]
    pub sk: String,
    /// The campaign.
    pub campaign_id: String,
    /// The fan.
    pub global_user_id: String,
    /// The fan's free-form entry document.
    pub entry: Value,
    /// The verdict.
    pub verdict: String,
    /// Whether the Entry Service still has to get it.
    pub needs_replication: bool,
    /// The item's version.
    pub version: u64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// A change record's keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Keys {
    /// Partition key.
    #[serde(rename = "PK")]
    pub pk: String,
    /// Sort key.
    #[serde(rename = "SK")]
    pub sk: String,
}

/// A change record as a worker reads it (a save-entries message body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// The table.
    pub table: String,
    /// INSERT, MODIFY or REMOVE.
    pub event_name: String,
    /// The item's keys.
    pub keys: Keys,
    /// The item after the change (none for a REMOVE).
    #[serde(default)]
    pub new_image: Option<Item>,
    /// The change log's sequence number.
    pub sequence_number: String,
    /// When it changed.
    pub timestamp_ms: u64,
}

#[cfg(feature = "raw")]
/// An item whose free-form `entry` document stays raw JSON text: the
/// worker reads the fields it knows, the rest crosses as it came.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawItem {
    /// Partition key.
    #[serde(rename = "PK")]
    pub pk: String,
    /// Sort key.
    #[serde(rename = "SK")]
    pub sk: String,
    /// The campaign.
    pub campaign_id: String,
    /// The fan.
    pub global_user_id: String,
    /// The fan's free-form entry document, unparsed.
    pub entry: Box<RawValue>,
    /// The verdict.
    pub verdict: String,
    /// Whether the Entry Service still has to get it.
    pub needs_replication: bool,
    /// The item's version.
    pub version: u64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

#[cfg(feature = "raw")]
/// A change record whose image keeps its entry document raw.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawChange {
    /// The table.
    pub table: String,
    /// INSERT, MODIFY or REMOVE.
    pub event_name: String,
    /// The item's keys.
    pub keys: Keys,
    /// The item after the change.
    #[serde(default)]
    pub new_image: Option<RawItem>,
    /// The change log's sequence number.
    pub sequence_number: String,
    /// When it changed.
    pub timestamp_ms: u64,
}

#[cfg(feature = "raw")]
/// (a) with the entry document kept raw: the same items as [`json_batch`].
pub fn json_raw_batch(messages: &[String]) -> Result<Vec<String>, Unreadable> {
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        let change: RawChange = serde_json::from_str(m).map_err(|e| Unreadable(e.to_string()))?;
        if let Some(mut item) = change.new_image {
            item.needs_replication = false;
            out.push(serde_json::to_string(&item).map_err(|e| Unreadable(e.to_string()))?);
        }
    }
    Ok(out)
}

/// The postcard form of an item: postcard is not self-describing, so the
/// free-form `entry` document travels as JSON text inside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompactItem {
    /// Partition key.
    pub pk: String,
    /// Sort key.
    pub sk: String,
    /// The campaign.
    pub campaign_id: String,
    /// The fan.
    pub global_user_id: String,
    /// The entry document, JSON text.
    pub entry: String,
    /// The verdict.
    pub verdict: String,
    /// Whether the Entry Service still has to get it.
    pub needs_replication: bool,
    /// The item's version.
    pub version: u64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// The postcard form of a change record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompactChange {
    /// The table.
    pub table: String,
    /// INSERT, MODIFY or REMOVE.
    pub event_name: String,
    /// Partition key.
    pub pk: String,
    /// Sort key.
    pub sk: String,
    /// The item after the change.
    pub new_image: Option<CompactItem>,
    /// The change log's sequence number.
    pub sequence_number: String,
    /// When it changed.
    pub timestamp_ms: u64,
}

/// Why a batch could not be read.
#[derive(Debug)]
pub struct Unreadable(pub String);

/// The worker's logic on one change: the item it writes, if any (what
/// save-entries does to an item it has replicated: clear the flag).
pub fn step(change: Change) -> Option<Item> {
    change.new_image.map(|mut item| {
        item.needs_replication = false;
        item
    })
}

/// An item's compact form.
pub fn to_compact(item: &Item) -> CompactItem {
    CompactItem {
        pk: item.pk.clone(),
        sk: item.sk.clone(),
        campaign_id: item.campaign_id.clone(),
        global_user_id: item.global_user_id.clone(),
        entry: item.entry.to_string(),
        verdict: item.verdict.clone(),
        needs_replication: item.needs_replication,
        version: item.version,
        created_at: item.created_at.clone(),
        updated_at: item.updated_at.clone(),
    }
}

/// A change record's compact form.
pub fn to_compact_change(c: &Change) -> CompactChange {
    CompactChange {
        table: c.table.clone(),
        event_name: c.event_name.clone(),
        pk: c.keys.pk.clone(),
        sk: c.keys.sk.clone(),
        new_image: c.new_image.as_ref().map(to_compact),
        sequence_number: c.sequence_number.clone(),
        timestamp_ms: c.timestamp_ms,
    }
}

/// An item from its compact form (its entry document parsed).
pub fn from_compact(item: CompactItem) -> Result<Item, Unreadable> {
    Ok(Item {
        entry: serde_json::from_str(&item.entry).map_err(|e| Unreadable(e.to_string()))?,
        pk: item.pk,
        sk: item.sk,
        campaign_id: item.campaign_id,
        global_user_id: item.global_user_id,
        verdict: item.verdict,
        needs_replication: item.needs_replication,
        version: item.version,
        created_at: item.created_at,
        updated_at: item.updated_at,
    })
}

/// A change record from its compact form.
pub fn change_from_compact(c: CompactChange) -> Result<Change, Unreadable> {
    Ok(Change {
        table: c.table,
        event_name: c.event_name,
        keys: Keys { pk: c.pk, sk: c.sk },
        new_image: c.new_image.map(from_compact).transpose()?,
        sequence_number: c.sequence_number,
        timestamp_ms: c.timestamp_ms,
    })
}

/// (a) JSON text in: the items the batch writes, JSON text each.
pub fn json_batch(messages: &[String]) -> Result<Vec<String>, Unreadable> {
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        if let Some(item) = json_one(m)? {
            out.push(item);
        }
    }
    Ok(out)
}

/// (a) per record: one message's item, JSON text.
pub fn json_one(message: &str) -> Result<Option<String>, Unreadable> {
    let change: Change = serde_json::from_str(message).map_err(|e| Unreadable(e.to_string()))?;
    step(change)
        .map(|item| serde_json::to_string(&item).map_err(|e| Unreadable(e.to_string())))
        .transpose()
}

/// (c) postcard in, postcard out: the encoded items and how many.
pub fn compact_batch(batch: &[u8]) -> Result<(Vec<u8>, usize), Unreadable> {
    let changes: Vec<CompactChange> =
        postcard::from_bytes(batch).map_err(|e| Unreadable(e.to_string()))?;
    let mut items = Vec::with_capacity(changes.len());
    for c in changes {
        if let Some(item) = step(change_from_compact(c)?) {
            items.push(to_compact(&item));
        }
    }
    let bytes = postcard::to_extend(&items, Vec::new()).map_err(|e| Unreadable(e.to_string()))?;
    Ok((bytes, items.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(i: u64) -> String {
        json!({"table": "demand-table", "eventName": "MODIFY", "keys": {"PK": format!("ENTRY#c1#u{i}"), "SK": "ENTRY"},
            "newImage": {"PK": format!("ENTRY#c1#u{i}"), "SK": "ENTRY", "campaignId": "c1", "globalUserId": format!("u{i}"),
                "entry": {"firstName": "Ada", "zip": "10001"}, "verdict": "PENDING", "needsReplication": true,
                "version": i, "createdAt": "2026-11-01T00:00:00Z", "updatedAt": "2026-11-01T00:00:01Z"},
            "sequenceNumber": i.to_string(), "timestampMs": 0})
        .to_string()
    }

    #[test]
    fn json_clears_the_flag_and_keeps_the_rest() {
        let out = json_batch(&[body(1), body(2)]).unwrap();
        assert_eq!(out.len(), 2);
        let item: Value = serde_json::from_str(&out[1]).unwrap();
        assert_eq!(item["needsReplication"], json!(false));
        assert_eq!(item["version"], json!(2));
        assert_eq!(item["entry"], json!({"firstName": "Ada", "zip": "10001"}));
    }

    #[cfg(feature = "raw")]
    #[test]
    fn the_raw_model_writes_the_same_items() {
        let bodies = [body(1), body(2)];
        let parsed = |texts: Vec<String>| -> Vec<Value> {
            texts
                .iter()
                .map(|t| serde_json::from_str(t).unwrap())
                .collect()
        };
        assert_eq!(
            parsed(json_raw_batch(&bodies).unwrap()),
            parsed(json_batch(&bodies).unwrap())
        );
        assert!(json_raw_batch(&["[]".to_string()]).is_err());
    }

    #[test]
    fn a_remove_writes_nothing_and_bad_json_is_refused() {
        let remove = json!({"table": "t", "eventName": "REMOVE", "keys": {"PK": "p", "SK": "s"},
            "sequenceNumber": "9", "timestampMs": 0})
        .to_string();
        assert_eq!(json_one(&remove).unwrap(), None);
        assert!(json_one("{not json").is_err());
    }

    #[test]
    fn compact_round_trips_the_same_items_as_json() {
        let bodies = [body(1), body(2), body(3)];
        let compact: Vec<CompactChange> = bodies
            .iter()
            .map(|b| to_compact_change(&serde_json::from_str(b).unwrap()))
            .collect();
        let (out, n) = compact_batch(&postcard::to_extend(&compact, Vec::new()).unwrap()).unwrap();
        assert_eq!(n, 3);
        let items: Vec<CompactItem> = postcard::from_bytes(&out).unwrap();
        let via_json: Vec<Item> = json_batch(&bodies)
            .unwrap()
            .iter()
            .map(|t| serde_json::from_str(t).unwrap())
            .collect();
        let via_compact: Vec<Item> = items
            .into_iter()
            .map(|i| from_compact(i).unwrap())
            .collect();
        assert_eq!(via_compact, via_json);
        assert!(compact_batch(b"\xff\xff").is_err());
    }
}
