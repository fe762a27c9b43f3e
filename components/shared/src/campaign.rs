//! Campaigns and markets, as the Campaign Service stores and answers them
//! (`services/campaign-service`, `openapi.yaml` beside it), and as
//! `registration/check-eligibility` caches them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A campaign's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CampaignStatus {
    /// Being prepared: no registrations.
    #[default]
    Draft,
    /// Taking registrations between `opensAt` and `closesAt`.
    Open,
    /// No more registrations.
    Closed,
}

/// Who may register.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Gate {
    /// Anyone.
    #[default]
    None,
    /// Only fans whose e-mail the Entry Service has an invite for.
    InviteOnly,
    /// Only fans whose `userInfo.country` (ISO 3166-1 alpha-2) is listed.
    Countries {
        /// The allowed countries.
        countries: Vec<String>,
    },
}

/// The type of an entry field's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// A JSON string.
    String,
    /// A JSON number.
    Number,
    /// A JSON integer.
    Integer,
    /// A JSON boolean.
    Boolean,
    /// A string holding an e-mail address.
    Email,
    /// A string holding a date, `YYYY-MM-DD`.
    Date,
}

/// Constraints on an entry field's value; each applies to the types it
/// names and is ignored by the others.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Constraints {
    /// Strings: the fewest characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u32>,
    /// Strings: the most characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    /// Numbers: the smallest value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Numbers: the largest value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Any type: the value must be one of these.
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<Value>>,
}

/// One field a fan fills in to register.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldDef {
    /// The key in the entry's `entry` object.
    pub name: String,
    /// The value's type.
    #[serde(rename = "type")]
    pub field_type: FieldType,
    /// Whether the field must be present (and not null).
    #[serde(default)]
    pub required: bool,
    /// Limits on the value.
    #[serde(default, skip_serializing_if = "is_default_constraints")]
    pub constraints: Constraints,
}

fn is_default_constraints(c: &Constraints) -> bool {
    *c == Constraints::default()
}

/// A campaign: `{id, slug, name, status, opensAt, closesAt, gate, fields,
/// linkedCampaignId?}`. Times are RFC 3339 UTC (`2026-12-02T10:00:00Z`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Campaign {
    /// Unique, chosen by the creator.
    pub id: String,
    /// Unique; what a fan's registration names.
    pub slug: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Lifecycle.
    #[serde(default)]
    pub status: CampaignStatus,
    /// Registrations open (RFC 3339).
    pub opens_at: String,
    /// Registrations close (RFC 3339).
    pub closes_at: String,
    /// Who may register.
    #[serde(default)]
    pub gate: Gate,
    /// The entry's fields.
    #[serde(default)]
    pub fields: Vec<FieldDef>,
    /// A campaign an entry may be transferred to (`doTransfer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linked_campaign_id: Option<String>,
    /// Every other attribute.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A market of a campaign: one event at one venue, with how many fans are
/// drawn as winners and how many are put on the waitlist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Market {
    /// Unique within the campaign.
    pub id: String,
    /// The campaign.
    pub campaign_id: String,
    /// The event.
    pub event_id: String,
    /// Display name of the event.
    #[serde(default)]
    pub event_name: String,
    /// The venue.
    #[serde(default)]
    pub venue: String,
    /// Winners to draw.
    pub selection_count: u64,
    /// Fans to put on the waitlist after the winners.
    #[serde(default)]
    pub waitlist_count: u64,
    /// Every other attribute.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The state of a market's selection, as reported to the Campaign Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum StatsStatus {
    /// The draw is running.
    Processing,
    /// The draw is done and its selections are enqueued.
    Finished,
}

/// Counts of a market's verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerdictCounts {
    /// Winners.
    #[serde(default)]
    pub winners: u64,
    /// Losers.
    #[serde(default)]
    pub losers: u64,
    /// Waitlisted.
    #[serde(default)]
    pub waitlisted: u64,
}

impl VerdictCounts {
    /// The sum of both counts, field by field.
    pub fn add(&mut self, other: &VerdictCounts) {
        self.winners += other.winners;
        self.losers += other.losers;
        self.waitlisted += other.waitlisted;
    }
}
