//! The draw: the one ranking rule of a market's selection, its digests and
//! its record. `selection/enqueue-market-selections` draws with it and
//! `selection/verify-draw` (and `usher draw verify`) recomputes with it, so
//! the rule exists once.
//!
//! # The rule (`usher-draw-v1`)
//!
//! Inputs: the market's entries as `(globalUserId, score)` pairs (a score is
//! a non-negative integer; an entry without one counts as 0), a seed (any
//! string, recorded), `selectionCount` and `waitlistCount`.
//!
//! 1. The entries are sorted by `globalUserId` (byte order). A fan listed
//!    twice is an error ([`DrawError::DuplicateFan`]).
//! 2. Each fan gets a uniform 64-bit number `x`: the first 8 bytes
//!    (big-endian) of `SHA-256("usher-draw-v1" ‖ u32be(len(seed)) ‖ seed ‖
//!    globalUserId)`, with its lowest bit set (so `x > 0`).
//! 3. From it an exponential variable `e = 64·2^32 − log2q(x)` where
//!    `log2q(x)` is `log2(x)` in fixed point with 32 fractional bits: the
//!    integer part is the highest set bit `k`; the mantissa `z` is the 32
//!    bits of `x` from bit `k` down (`z = (x << (63 − k)) >> 32`), and each
//!    of 32 rounds squares it (`z = z·z >> 31`, 64-bit) and takes a 1 bit
//!    (and halves `z`) when `z ≥ 2^32`. Integers only: every platform
//!    computes the same bits (`e ≈ −log2(x / 2^64) · 2^32`).
//! 4. The fan's key is `floor(e · 2^25 / (score + 1))` (64-bit).
//! 5. The ranking is by key ascending, ties by `globalUserId` ascending. This
//!    is weighted random sampling without replacement with exponential clocks
//!    (Efraimidis–Spirakis): the chance that a fan comes before any other is
//!    proportional to `score + 1` (a score of 0 still has a chance).
//! 6. The first `selectionCount` of the ranking are `WINNER`, the next
//!    `waitlistCount` are `WAITLIST`, the rest `LOSER` (fewer entries than
//!    the counts: everyone is a winner, then waitlisted).
//!
//! # Digests (SHA-256, lowercase hex)
//!
//! * input digest: over the entries sorted by `globalUserId`, for each
//!   `u32be(len(globalUserId)) ‖ globalUserId ‖ u64be(score)`.
//! * result digest: `u64be(selectionCount) ‖ u64be(waitlistCount)`, then
//!   for each fan in rank order `u32be(len(globalUserId)) ‖ globalUserId ‖
//!   verdict byte` (1 winner, 2 waitlist, 3 loser).
//!
//! Anyone with the entries, the seed and the counts can recompute both with
//! a few lines in any language (`components/shared/draw_reference.py` does,
//! in Python); the record keeps both digests, so a later
//! change of the entries (input digest) or of the outcome (result digest)
//! shows.
//!
//! # The record
//!
//! [`DrawRecord`]: one item per draw in the `draws` table, key
//! `{"PK": "DRAW#<drawId>", "SK": "RECORD"}`, written before any selection
//! is enqueued and never re-drawn.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::Verdict;

/// The name (and version) of the ranking rule; recorded with every draw.
pub const RULE: &str = "usher-draw-v1";

/// The sort key of a draw record.
pub const RECORD_SORT_KEY: &str = "RECORD";

/// Fractional bits of the fixed-point logarithm.
const LOG_FRACTION_BITS: u32 = 32;

/// The clock's shift before the division by the weight.
const KEY_SHIFT: u32 = 25;

/// Why a draw cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DrawError {
    /// The same fan is among the entries twice.
    #[error("fan {0} is listed twice among the entries")]
    DuplicateFan(String),
    /// A fan without an id.
    #[error("an entry has an empty globalUserId")]
    EmptyFan,
    /// More entries than the rule handles (u32 indices).
    #[error("{0} entries is more than a draw handles ({max})", max = u32::MAX)]
    TooMany(usize),
}

/// One entry of a draw: the fan and its score.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DrawEntry {
    /// The fan.
    pub global_user_id: String,
    /// The fan's score (the weight is `score + 1`).
    pub score: u64,
}

impl DrawEntry {
    /// An entry.
    pub fn new(global_user_id: impl Into<String>, score: u64) -> DrawEntry {
        DrawEntry {
            global_user_id: global_user_id.into(),
            score,
        }
    }
}

/// A draw's inputs in their canonical order (sorted by `globalUserId`,
/// no fan twice), with their digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrawInputs {
    entries: Vec<DrawEntry>,
    digest: String,
}

impl DrawInputs {
    /// Sorts the entries and computes the input digest.
    pub fn new(mut entries: Vec<DrawEntry>) -> Result<DrawInputs, DrawError> {
        if u32::try_from(entries.len()).is_err() {
            return Err(DrawError::TooMany(entries.len()));
        }
        // The Entry Service lists a market's entries in this order already.
        if !entries
            .windows(2)
            .all(|p| p[0].global_user_id <= p[1].global_user_id)
        {
            entries.sort_unstable_by(|a, b| a.global_user_id.cmp(&b.global_user_id));
        }
        for pair in entries.windows(2) {
            if pair[0].global_user_id == pair[1].global_user_id {
                return Err(DrawError::DuplicateFan(pair[0].global_user_id.clone()));
            }
        }
        if entries.first().is_some_and(|e| e.global_user_id.is_empty()) {
            return Err(DrawError::EmptyFan);
        }
        let mut hasher = Sha256::new();
        for e in &entries {
            hash_id(&mut hasher, &e.global_user_id);
            hasher.update(e.score.to_be_bytes());
        }
        Ok(DrawInputs {
            entries,
            digest: hex(&hasher.finalize()),
        })
    }

    /// The entries, sorted by `globalUserId`.
    pub fn entries(&self) -> &[DrawEntry] {
        &self.entries
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The input digest (see the [module docs](self)).
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The index (in [`DrawInputs::entries`]) of a fan.
    pub fn index_of(&self, global_user_id: &str) -> Option<usize> {
        self.entries
            .binary_search_by(|e| e.global_user_id.as_str().cmp(global_user_id))
            .ok()
    }
}

/// How many winners, waitlisted and losers a draw of `entries` entries with
/// these counts has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrawCounts {
    /// Winners: `min(selectionCount, entries)`.
    pub winners: u64,
    /// Waitlisted: `min(waitlistCount, entries - winners)`.
    pub waitlist: u64,
    /// The rest.
    pub losers: u64,
}

impl DrawCounts {
    /// The counts of a draw.
    pub fn of(entries: u64, selection_count: u64, waitlist_count: u64) -> DrawCounts {
        let winners = selection_count.min(entries);
        let waitlist = waitlist_count.min(entries - winners);
        DrawCounts {
            winners,
            waitlist,
            losers: entries - winners - waitlist,
        }
    }

    /// The verdict of the fan at this rank (0 = first).
    pub fn verdict(&self, rank: u64) -> Verdict {
        if rank < self.winners {
            Verdict::Winner
        } else if rank < self.winners + self.waitlist {
            Verdict::Waitlist
        } else {
            Verdict::Loser
        }
    }
}

/// A draw's outcome: the ranking and its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrawOutcome {
    /// Indices into [`DrawInputs::entries`], in rank order.
    pub order: Vec<u32>,
    /// The counts.
    pub counts: DrawCounts,
    /// The result digest (see the [module docs](self)).
    pub result_digest: String,
}

impl DrawOutcome {
    /// The rank of each entry (by index into [`DrawInputs::entries`]).
    pub fn ranks(&self) -> Vec<u32> {
        let mut ranks = vec![0u32; self.order.len()];
        for (rank, &index) in self.order.iter().enumerate() {
            // `order` has at most u32::MAX entries (checked by DrawInputs).
            ranks[index as usize] = rank as u32;
        }
        ranks
    }
}

/// Draws: ranks the inputs with the seed and splits them by the counts (the
/// rule of the [module docs](self)).
pub fn draw(
    inputs: &DrawInputs,
    seed: &str,
    selection_count: u64,
    waitlist_count: u64,
) -> DrawOutcome {
    let mut prefix = Sha256::new();
    prefix.update(RULE.as_bytes());
    hash_id(&mut prefix, seed);
    let mut keyed: Vec<(u64, u32)> = inputs
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut h = prefix.clone();
            h.update(e.global_user_id.as_bytes());
            let digest = h.finalize();
            let mut first = [0u8; 8];
            first.copy_from_slice(&digest[..8]);
            // At most u32::MAX entries (checked by DrawInputs).
            (key(u64::from_be_bytes(first), e.score), i as u32)
        })
        .collect();
    // (key, index) pairs are distinct, and the index order is the
    // globalUserId order: ties go to the smaller globalUserId.
    keyed.sort_unstable();
    let order: Vec<u32> = keyed.into_iter().map(|(_, i)| i).collect();
    let counts = DrawCounts::of(inputs.len() as u64, selection_count, waitlist_count);
    let mut hasher = Sha256::new();
    hasher.update(selection_count.to_be_bytes());
    hasher.update(waitlist_count.to_be_bytes());
    for (rank, &i) in order.iter().enumerate() {
        hash_id(&mut hasher, &inputs.entries[i as usize].global_user_id);
        hasher.update([verdict_byte(counts.verdict(rank as u64))]);
    }
    DrawOutcome {
        order,
        counts,
        result_digest: hex(&hasher.finalize()),
    }
}

/// A fan's ranking key from its hash `x` and its score: the exponential
/// clock `−log2(x / 2^64) / (score + 1)` in fixed point,
/// `floor(e · 2^25 / (score + 1))` with `e` in units of 2^−32 (so `e < 2^38`
/// and the key fits 63 bits).
pub fn key(x: u64, score: u64) -> u64 {
    let x = x | 1;
    let clock = (64u64 << LOG_FRACTION_BITS) - log2_fixed(x);
    (clock << KEY_SHIFT) / score.saturating_add(1)
}

/// `log2(x)` for `x > 0` in fixed point with [`LOG_FRACTION_BITS`]
/// fractional bits: the integer part is the position of the highest set
/// bit; the fraction comes bit by bit from squaring the mantissa, kept as
/// its top 32 bits (Q31, truncated after each squaring; 64-bit integers
/// only).
fn log2_fixed(x: u64) -> u64 {
    let int = 63 - u64::from(x.leading_zeros());
    // The mantissa in [1, 2) as Q31: the 32 bits from the highest set one.
    let mut z: u64 = (x << (63 - int)) >> 32;
    let mut frac = 0u64;
    for _ in 0..LOG_FRACTION_BITS {
        z = (z * z) >> 31;
        frac <<= 1;
        if z >= 1u64 << 32 {
            z >>= 1;
            frac |= 1;
        }
    }
    (int << LOG_FRACTION_BITS) | frac
}

fn verdict_byte(v: Verdict) -> u8 {
    match v {
        Verdict::Winner => 1,
        Verdict::Waitlist => 2,
        Verdict::Loser => 3,
        Verdict::Pending => 0,
    }
}

fn hash_id(hasher: &mut Sha256, id: &str) {
    // Ids longer than 4 GiB cannot reach a draw (bodies are bounded far below).
    hasher.update((id.len() as u32).to_be_bytes());
    hasher.update(id.as_bytes());
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// SHA-256 of some bytes, lowercase hex (for seeds made from several parts).
pub fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    hex(&h.finalize())
}

/// The id of reservation `n` of a draw: `<reservationId>#<n>`.
pub fn reservation_id(reservation_base: &str, n: usize) -> String {
    format!("{reservation_base}#{n}")
}

/// How many Code Service reservations a draw with this many winners makes
/// ([`crate::selection::MAX_RESERVATION`] codes each, the last one fewer).
pub fn reservation_count(winners: u64) -> usize {
    (winners as usize).div_ceil(crate::selection::MAX_RESERVATION)
}

/// Where a draw is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DrawStatus {
    /// The record is written; codes may not be reserved yet.
    #[default]
    Drawn,
    /// Every winner's code is reserved.
    Reserved,
    /// Every selection is enqueued and FINISHED reported.
    Enqueued,
}

/// How a draw's selections are cut into `save-selection` messages of
/// [`crate::selection::SELECTIONS_PER_MESSAGE`]: message `batch` `n` holds
/// positions `25n…` of this order. Recorded with the draw, so that a re-run
/// sends the same batches again (their report ids `<drawId>#<n>` are counted
/// once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum BatchOrder {
    /// By rank: what a record without `batchOrder` (written before fan
    /// order) was sent in.
    #[default]
    Rank,
    /// By fan (`globalUserId` byte order, the order of
    /// [`DrawInputs::entries`]): the table keys every message's writes go
    /// to (`ENTRY#<campaign>#<fan>`, `FAN#<fan>`) follow one another, so a
    /// batch of messages writes neighbouring keys instead of keys scattered
    /// over the whole market.
    Fan,
}

/// The record of a draw (an item of the `draws` table, with `PK`
/// `DRAW#<drawId>` and `SK` `RECORD` added by [`DrawRecord::to_item`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrawRecord {
    /// The draw (default `<campaignId>.<marketId>`).
    pub draw_id: String,
    /// The campaign.
    pub campaign_id: String,
    /// The market.
    pub market_id: String,
    /// The rule ([`RULE`]).
    pub rule: String,
    /// The seed.
    pub seed: String,
    /// Winners asked.
    pub selection_count: u64,
    /// Waitlisted asked.
    pub waitlist_count: u64,
    /// Entries drawn from.
    pub entries: u64,
    /// Winners, waitlisted and losers.
    #[serde(flatten)]
    pub counts: DrawCounts,
    /// The input digest.
    pub input_digest: String,
    /// The result digest.
    pub result_digest: String,
    /// The reservations' id base: reservation `n` is `<reservationId>#<n>`.
    pub reservation_id: String,
    /// How many reservations the winners' codes take.
    pub reservations: u64,
    /// When the draw was made (RFC 3339 UTC).
    pub created_at: String,
    /// When the record last changed.
    #[serde(default)]
    pub updated_at: String,
    /// Where the draw is.
    #[serde(default)]
    pub status: DrawStatus,
    /// How its selections are cut into messages ([`BatchOrder::Rank`] when
    /// the record has none).
    #[serde(default)]
    pub batch_order: BatchOrder,
    /// Every other attribute.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl DrawRecord {
    /// The table key of a draw's record.
    pub fn key(draw_id: &str) -> Value {
        serde_json::json!({"PK": format!("DRAW#{draw_id}"), "SK": RECORD_SORT_KEY})
    }

    /// The record as a table item (with its key).
    pub fn to_item(&self) -> Result<Value, serde_json::Error> {
        let mut item = serde_json::to_value(self)?;
        if let (Value::Object(obj), Value::Object(key)) =
            (&mut item, DrawRecord::key(&self.draw_id))
        {
            obj.extend(key);
        }
        Ok(item)
    }

    /// The record of a table item (its key attributes dropped).
    pub fn from_item(mut item: Value) -> Result<DrawRecord, serde_json::Error> {
        if let Value::Object(obj) = &mut item {
            obj.remove("PK");
            obj.remove("SK");
        }
        serde_json::from_value(item)
    }
}

// ------------------------------------------------------------ Entry Service pages

/// The path of one page of a market's entries at the Entry Service:
/// `/markets/{marketId}/entries?campaignId=&limit=&after=`.
pub fn market_entries_path(
    campaign_id: &str,
    market_id: &str,
    limit: u32,
    after: Option<&str>,
) -> String {
    page_path("entries", campaign_id, market_id, limit, after)
}

/// The path of one page of a market's selections at the Entry Service:
/// `/markets/{marketId}/selections?campaignId=&limit=&after=`.
pub fn market_selections_path(
    campaign_id: &str,
    market_id: &str,
    limit: u32,
    after: Option<&str>,
) -> String {
    page_path("selections", campaign_id, market_id, limit, after)
}

fn page_path(
    what: &str,
    campaign_id: &str,
    market_id: &str,
    limit: u32,
    after: Option<&str>,
) -> String {
    let mut path = format!(
        "/markets/{}/{what}?campaignId={}&limit={limit}",
        percent_encode(market_id),
        percent_encode(campaign_id)
    );
    if let Some(after) = after {
        path.push_str("&after=");
        path.push_str(&percent_encode(after));
    }
    path
}

/// Percent-encodes every byte but the unreserved ones (`A-Z a-z 0-9 - . _ ~`),
/// for a path segment or a query value.
pub fn percent_encode(text: &str) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(DIGITS[usize::from(b >> 4)] as char);
            out.push(DIGITS[usize::from(b & 15)] as char);
        }
    }
    out
}

/// One page of `GET /markets/{marketId}/entries`, reduced to what a draw
/// reads: each entry's `globalUserId` and `score` (every other attribute is
/// skipped without being kept).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EntriesPage {
    /// The entries.
    pub entries: Vec<PageEntry>,
    /// The cursor of the next page; `None` on the last.
    #[serde(default)]
    pub next: Option<String>,
}

/// An entry of an [`EntriesPage`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageEntry {
    /// The fan.
    pub global_user_id: String,
    /// The score when it is a non-negative integer (a float with no
    /// fraction counts); `None` when absent or anything else.
    #[serde(default, deserialize_with = "lenient_score")]
    pub score: Option<u64>,
}

impl PageEntry {
    /// The draw's entry: an entry without a score counts as 0.
    pub fn draw_entry(self) -> DrawEntry {
        DrawEntry {
            global_user_id: self.global_user_id,
            score: self.score.unwrap_or(0),
        }
    }
}

/// One page of `GET /markets/{marketId}/selections`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SelectionsPage {
    /// The selections.
    pub selections: Vec<SavedSelection>,
    /// The cursor of the next page; `None` on the last.
    #[serde(default)]
    pub next: Option<String>,
}

/// A saved selection as the Entry Service lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedSelection {
    /// The fan.
    pub global_user_id: String,
    /// The verdict saved.
    pub verdict: Verdict,
    /// The code assigned.
    #[serde(default)]
    pub code: Option<String>,
}

fn lenient_score<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a score")
        }
        fn visit_u64<E>(self, v: u64) -> Result<Option<u64>, E> {
            Ok(Some(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Option<u64>, E> {
            Ok(u64::try_from(v).ok())
        }
        fn visit_f64<E>(self, v: f64) -> Result<Option<u64>, E> {
            // Whole, non-negative and exactly representable only.
            Ok((v >= 0.0 && v.fract() == 0.0 && v < 9_007_199_254_740_992.0).then_some(v as u64))
        }
        fn visit_str<E>(self, _: &str) -> Result<Option<u64>, E> {
            Ok(None)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Option<u64>, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Option<u64>, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Option<u64>, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<u64>, D::Error> {
            d.deserialize_any(V)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut a: A,
        ) -> Result<Option<u64>, A::Error> {
            while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut a: A,
        ) -> Result<Option<u64>, A::Error> {
            while a
                .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                .is_some()
            {}
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests;
