//! What the selection workers send the Entry and Code services about
//! codes and verdicts, and what those answer (see
//! `components/services/CONTRACTS.md`):
//!
//! * Entry Service `POST /entries/assign-codes` and Code Service
//!   `POST /codes/assign` / `POST /codes/mark-assigned`: an
//!   [`AssignCodes`] body, an [`AssignOutcome`] answer;
//! * Entry Service `POST /entries/verdicts`: [`Verdicts`] →
//!   [`VerdictsOutcome`];
//! * Entry Service `GET /markets/{marketId}/selections`: a
//!   [`SelectionsPage`];
//!
//! plus the small helpers they share: [`counts_of`] (the verdict counts of
//! some selections), [`encode_component`] (a path segment or query value,
//! percent-encoded) and [`now_rfc3339`] (the time of a write, by
//! [`crate::rfc3339`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{campaign::VerdictCounts, Verdict};

/// At most this many assignments in one Code Service `assign` /
/// `mark-assigned` request.
pub const CODES_PER_REQUEST: usize = 100;

/// A code given to a fan: `{"globalUserId","code"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CodeAssignment {
    /// The fan.
    pub global_user_id: String,
    /// The access code.
    pub code: String,
}

/// The body of Entry Service `POST /entries/assign-codes` (≤ 25
/// assignments) and of Code Service `POST /codes/assign` and
/// `POST /codes/mark-assigned` (≤ 100).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignCodes {
    /// The campaign.
    pub campaign_id: String,
    /// The market.
    pub market_id: String,
    /// The codes and their fans.
    pub assignments: Vec<CodeAssignment>,
}

/// One assignment a service refused: the code is held by another fan, the
/// fan holds another code, the code is not reserved, the entry is unknown …
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conflict {
    /// The fan.
    #[serde(default)]
    pub global_user_id: String,
    /// The code.
    #[serde(default)]
    pub code: String,
    /// Why, in the service's words.
    #[serde(default)]
    pub reason: String,
}

/// The answer of an assign or mark request:
/// `{"assigned"|"marked": n, "already": n, "conflicts": [Conflict…]}`.
/// `already` (the same code already with the same fan) is a success.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignOutcome {
    /// Newly assigned (Entry Service, Code Service `assign`) or marked
    /// (Code Service `mark-assigned`, answered as `marked`).
    #[serde(default, alias = "marked")]
    pub assigned: u64,
    /// Already so: a redelivery, nothing done twice.
    #[serde(default)]
    pub already: u64,
    /// Refused assignments.
    #[serde(default)]
    pub conflicts: Vec<Conflict>,
}

/// One fan's verdict in [`Verdicts`]: `{"globalUserId","verdict","code"?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerdictItem {
    /// The fan.
    pub global_user_id: String,
    /// WINNER, LOSER or WAITLIST.
    pub verdict: Verdict,
    /// A winner's code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// The body of Entry Service `POST /entries/verdicts` (≤ 25 verdicts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdicts {
    /// The campaign.
    pub campaign_id: String,
    /// The market.
    pub market_id: String,
    /// The draw that decided them.
    pub draw_id: String,
    /// The verdicts.
    pub verdicts: Vec<VerdictItem>,
}

/// The answer of `POST /entries/verdicts`: `{"updated": n, "missing": [globalUserId…]}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerdictsOutcome {
    /// Entries whose verdict was written (or already was this one).
    #[serde(default)]
    pub updated: u64,
    /// Fans the service has no entry for.
    #[serde(default)]
    pub missing: Vec<String>,
}

/// One page of Entry Service `GET /markets/{marketId}/selections`:
/// `{"selections":[VerdictItem…],"next": cursor|null}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SelectionsPage {
    /// The entries with a verdict other than PENDING, by `globalUserId`.
    #[serde(default)]
    pub selections: Vec<VerdictItem>,
    /// Pass as `after` for the next page; `None` (or null) on the last.
    #[serde(default)]
    pub next: Option<Value>,
}

impl SelectionsPage {
    /// The cursor of the next page as the `after` query value: a string as
    /// is, any other JSON as its text; `None` on the last page.
    pub fn next_cursor(&self) -> Option<String> {
        match &self.next {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        }
    }
}

/// The verdict counts of some verdicts (PENDING is not counted).
pub fn counts_of<'a>(verdicts: impl IntoIterator<Item = &'a Verdict>) -> VerdictCounts {
    let mut counts = VerdictCounts::default();
    for verdict in verdicts {
        match verdict {
            Verdict::Winner => counts.winners += 1,
            Verdict::Loser => counts.losers += 1,
            Verdict::Waitlist => counts.waitlisted += 1,
            Verdict::Pending => {}
        }
    }
    counts
}

/// `text` percent-encoded for a URL path segment or query value: every
/// byte but the unreserved ones (`A-Z a-z 0-9 - . _ ~`) as `%XX`.
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Now, RFC 3339 UTC with milliseconds (the wall clock; see
/// [`crate::rfc3339::now`]).
pub fn now_rfc3339() -> String {
    crate::rfc3339::now()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timestamps() {
        let now = now_rfc3339();
        assert!(now.ends_with('Z'), "{now}");
        assert!(crate::rfc3339::is_valid(&now), "{now}");
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(encode_component("c-1_a.b~"), "c-1_a.b~");
        assert_eq!(encode_component("a b/c#d?é"), "a%20b%2Fc%23d%3F%C3%A9");
    }

    #[test]
    fn outcomes_parse_with_defaults_and_aliases() {
        let a: AssignOutcome =
            serde_json::from_value(json!({"marked": 3, "already": 1})).expect("mark answer");
        assert_eq!((a.assigned, a.already, a.conflicts.len()), (3, 1, 0));
        let a: AssignOutcome = serde_json::from_value(json!({
            "assigned": 1, "already": 0,
            "conflicts": [{"globalUserId": "u", "code": "C", "reason": "held by u2"}]
        }))
        .expect("assign answer");
        assert_eq!(a.conflicts[0].reason, "held by u2");
        let v: VerdictsOutcome =
            serde_json::from_value(json!({"updated": 2, "missing": ["u9"]})).expect("verdicts");
        assert_eq!(v.missing, vec!["u9"]);
    }

    #[test]
    fn bodies_and_pages() {
        let body = Verdicts {
            campaign_id: "c".into(),
            market_id: "m".into(),
            draw_id: "c.m".into(),
            verdicts: vec![
                VerdictItem {
                    global_user_id: "u1".into(),
                    verdict: Verdict::Winner,
                    code: Some("C1".into()),
                },
                VerdictItem {
                    global_user_id: "u2".into(),
                    verdict: Verdict::Loser,
                    code: None,
                },
            ],
        };
        assert_eq!(
            serde_json::to_value(&body).expect("json"),
            json!({"campaignId": "c", "marketId": "m", "drawId": "c.m", "verdicts": [
                {"globalUserId": "u1", "verdict": "WINNER", "code": "C1"},
                {"globalUserId": "u2", "verdict": "LOSER"}]})
        );
        let page: SelectionsPage = serde_json::from_value(json!({
            "selections": [{"globalUserId": "u1", "verdict": "WAITLIST"}], "next": "u1"
        }))
        .expect("page");
        assert_eq!(page.next_cursor().as_deref(), Some("u1"));
        let last: SelectionsPage =
            serde_json::from_value(json!({"selections": [], "next": null})).expect("page");
        assert_eq!(last.next_cursor(), None);
        let counts = counts_of(&[
            Verdict::Winner,
            Verdict::Loser,
            Verdict::Winner,
            Verdict::Pending,
        ]);
        assert_eq!(
            (counts.winners, counts.losers, counts.waitlisted),
            (2, 1, 0)
        );
    }
}
