//! # usher-domain
//!
//! The domain types and limits that more than one worker uses, so that each
//! is written once. It is a plain library (no capability calls, no world):
//! workers depend on it next to `usher-sdk`. It is not a worker, so it sits
//! at `components/shared`, outside the `components/<domain>/<worker>` layout
//! the build and the host tests discover workers by.
//!
//! * [`Fan`]: a fan's identity in a campaign, the key the Entry Service and
//!   the score retries use (`{"campaignId","globalUserId"}`).
//! * [`Entry`]: an item of the `demand-table` (the seed's schema), with
//!   [`Verdict`] and the table's key ([`Fan::demand_key`]).
//! * [`CHUNK_SIZE`]: how many entries, keys or fans one Entry Service
//!   request carries at most.
//!
//! * [`campaign`]: campaigns, markets and their stats (the Campaign
//!   Service's shapes, cached by the registration workers).
//! * [`selection`]: the draw's selections and verdict reports (the selection
//!   workers' queue messages).
//! * [`user`]: fans' user records and their validation (the User Service
//!   and `registration/upsert-users`).
//! * [`rfc3339`]: parsing and formatting RFC 3339 times.
//! * [`eligibility`]: who may register to a campaign and with what entry
//!   (the registration workers' checks and reason codes).
//! * [`assignment`]: the code assignments, verdicts and selections the
//!   selection workers exchange with the Entry and Code services.
//! * [`analytics`]: the data pipeline's `{type, data}` messages and the
//!   analytics records they format to (`data-pipeline/*`).
//! * [`draw`]: the draw's ranking rule, its digests and its record (one
//!   rule for the worker that draws and the one that verifies).
//! * [`notification`]: the reminders' records, job ids and send-rate
//!   layout (the notification workers).

#![deny(missing_docs)]

pub mod analytics;
pub mod assignment;
pub mod campaign;
pub mod draw;
pub mod eligibility;
pub mod exports;
pub mod notification;
pub mod rfc3339;
pub mod selection;
pub mod user;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The Entry Service takes at most this many entries, keys or fans per
/// request (more is a 413); its callers send chunks of this size.
pub const CHUNK_SIZE: usize = 25;

/// The sort key of every entry item of the `demand-table`.
pub const ENTRY_SORT_KEY: &str = "ENTRY";

/// A fan's identity in a campaign: `campaignId` and `globalUserId`.
///
/// Its JSON form is `{"campaignId": …, "globalUserId": …}`: the key of an
/// entry in the Entry Service, the body of a `retry-score` message and an
/// element of `/scores/refresh`'s `fans`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fan {
    /// The campaign.
    pub campaign_id: String,
    /// The fan.
    pub global_user_id: String,
}

impl Fan {
    /// A fan of this campaign.
    pub fn new(campaign_id: impl Into<String>, global_user_id: impl Into<String>) -> Fan {
        Fan {
            campaign_id: campaign_id.into(),
            global_user_id: global_user_id.into(),
        }
    }

    /// The fan of a JSON object (an entry, a key, a message body): its
    /// `campaignId` and `globalUserId`, both non-empty strings; `None`
    /// otherwise.
    pub fn of(value: &Value) -> Option<Fan> {
        match (
            value.get("campaignId").and_then(Value::as_str),
            value.get("globalUserId").and_then(Value::as_str),
        ) {
            (Some(c), Some(u)) if !c.is_empty() && !u.is_empty() => Some(Fan::new(c, u)),
            _ => None,
        }
    }

    /// Whether both ids are non-empty.
    pub fn is_valid(&self) -> bool {
        !self.campaign_id.is_empty() && !self.global_user_id.is_empty()
    }

    /// The fan's entry key in the `demand-table`:
    /// `{"PK": "ENTRY#<campaignId>#<globalUserId>", "SK": "ENTRY"}`.
    pub fn demand_key(&self) -> Value {
        json!({
            "PK": format!("ENTRY#{}#{}", self.campaign_id, self.global_user_id),
            "SK": ENTRY_SORT_KEY,
        })
    }
}

/// The selection's outcome for an entry (`verdict` in the `demand-table`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// Not drawn yet.
    #[default]
    Pending,
    /// Drawn: gets an access code.
    Winner,
    /// Not drawn.
    Loser,
    /// May get a code when a winner's is released.
    Waitlist,
}

/// An entry item of the `demand-table`, as the seed describes it:
/// `{PK, SK, campaignId, globalUserId, entry: {…fields}, verdict,
/// accessCode?, needsReplication, version?, createdAt, updatedAt}`.
/// Attributes not named here are kept in [`Entry::other`], so reading and
/// writing an item back loses nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// `ENTRY#<campaignId>#<globalUserId>`.
    #[serde(rename = "PK")]
    pub pk: String,
    /// `ENTRY`.
    #[serde(rename = "SK")]
    pub sk: String,
    /// The campaign.
    pub campaign_id: String,
    /// The fan.
    pub global_user_id: String,
    /// The registration's fields.
    #[serde(default)]
    pub entry: Map<String, Value>,
    /// The selection's outcome.
    #[serde(default)]
    pub verdict: Verdict,
    /// The access code of a winner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_code: Option<String>,
    /// Set by every write that the Entry Service must see; cleared by
    /// `replication/save-entries` once it has.
    #[serde(default)]
    pub needs_replication: bool,
    /// Grows with every write of the entry (also across a removal and
    /// re-insert); replication compares it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// RFC 3339.
    #[serde(default)]
    pub created_at: String,
    /// RFC 3339.
    #[serde(default)]
    pub updated_at: String,
    /// Every other attribute.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Entry {
    /// The entry's fan.
    pub fn fan(&self) -> Fan {
        Fan::new(self.campaign_id.clone(), self.global_user_id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fan_json_form_and_keys() {
        let fan = Fan::new("c1", "u1");
        let v = serde_json::to_value(&fan).expect("json");
        assert_eq!(v, json!({"campaignId": "c1", "globalUserId": "u1"}));
        assert_eq!(Fan::of(&v), Some(fan.clone()));
        assert_eq!(
            fan.demand_key(),
            json!({"PK": "ENTRY#c1#u1", "SK": "ENTRY"})
        );
        assert!(fan.is_valid());
        assert!(!Fan::new("", "u").is_valid());
        for bad in [
            json!({"campaignId": "c"}),
            json!({"campaignId": "", "globalUserId": "u"}),
            json!({"campaignId": 1, "globalUserId": "u"}),
            json!([]),
        ] {
            assert_eq!(Fan::of(&bad), None, "{bad}");
        }
    }

    #[test]
    fn entry_round_trips_with_unknown_attributes() {
        let item = json!({
            "PK": "ENTRY#c#u", "SK": "ENTRY", "campaignId": "c", "globalUserId": "u",
            "entry": {"zip": "10001"}, "verdict": "WINNER", "accessCode": "X1",
            "needsReplication": true, "version": 3,
            "createdAt": "2024-01-01T00:00:00Z", "updatedAt": "2024-01-02T00:00:00Z",
            "marketId": "m1",
        });
        let entry: Entry = serde_json::from_value(item.clone()).expect("entry");
        assert_eq!(entry.verdict, Verdict::Winner);
        assert_eq!(entry.version, Some(3));
        assert_eq!(entry.other.get("marketId"), Some(&json!("m1")));
        assert_eq!(entry.fan(), Fan::new("c", "u"));
        assert_eq!(serde_json::to_value(&entry).expect("json"), item);
        let minimal: Entry = serde_json::from_value(
            json!({"PK": "p", "SK": "ENTRY", "campaignId": "c", "globalUserId": "u"}),
        )
        .expect("minimal");
        assert_eq!(minimal.verdict, Verdict::Pending);
        assert!(!minimal.needs_replication);
    }
}
