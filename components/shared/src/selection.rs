//! What the selection workers pass each other: the draw's selections (the
//! `save-selection` queue's messages) and the verdict counts they report
//! (the `verdict-reporter` queue's messages).

use serde::{Deserialize, Serialize};

use crate::{campaign::VerdictCounts, Verdict};

/// At most this many selections in one `save-selection` message (the Entry
/// Service's chunk).
pub const SELECTIONS_PER_MESSAGE: usize = crate::CHUNK_SIZE;

/// The most codes one Code Service reservation holds.
pub const MAX_RESERVATION: usize = 20_000;

/// One fan's outcome in a draw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Selection {
    /// The fan.
    pub global_user_id: String,
    /// WINNER, LOSER or WAITLIST.
    pub verdict: Verdict,
    /// A winner's access code (reserved for this draw).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The fan's place in the draw's ranking (0 = first).
    pub rank: u64,
}

/// A `save-selection` message: up to [`SELECTIONS_PER_MESSAGE`] selections
/// of one draw of one market.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SelectionBatch {
    /// The campaign.
    pub campaign_id: String,
    /// The market.
    pub market_id: String,
    /// The draw that made these selections.
    pub draw_id: String,
    /// The batch's number within the draw (0, 1, …): with `drawId`, the
    /// idempotency key of what the batch reports.
    pub batch: u64,
    /// The selections.
    pub selections: Vec<Selection>,
}

/// A `verdict-reporter` message: the verdicts one saved batch wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerdictReport {
    /// The campaign.
    pub campaign_id: String,
    /// The market.
    pub market_id: String,
    /// `<drawId>#<batch>`: the Campaign Service counts a report once.
    pub report_id: String,
    /// The counts.
    pub counts: VerdictCounts,
}
