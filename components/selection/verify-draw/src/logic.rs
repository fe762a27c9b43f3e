//! The verification of one draw (see the crate docs).

use std::collections::HashMap;

use serde_json::{json, Value};
use usher_domain::draw::{
    self, market_entries_path, market_selections_path, reservation_count, reservation_id,
    DrawInputs, DrawOutcome, DrawRecord, EntriesPage, SelectionsPage, RULE,
};
use usher_domain::selection::MAX_RESERVATION;
use usher_domain::Verdict;
use usher_sdk::services::{self, Method, Request};
use usher_sdk::{config, table, Error, InvokeError};

/// The most requests one `services::call_many` carries.
const CALL_MANY_MAX: usize = 256;

/// Examples kept per kind of difference.
const EXAMPLES: usize = 10;

/// The worker's settings (the registry entry's `settings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The table of draw records (`draws`).
    pub table: String,
    /// The Entry Service (`entries`).
    pub entries: String,
    /// The Code Service (`codes`).
    pub codes: String,
    /// Items per Entry Service page (`page_size`, default and at most 5000).
    pub page_size: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            table: "draws".into(),
            entries: "entries".into(),
            codes: "codes".into(),
            page_size: 5000,
        }
    }
}

impl Settings {
    /// The settings of the registry entry, defaults for those not set.
    pub fn load() -> usher_sdk::Result<Settings> {
        let d = Settings::default();
        Ok(Settings {
            table: config::string_or("table", &d.table)?,
            entries: config::string_or("entries_service", &d.entries)?,
            codes: config::string_or("codes_service", &d.codes)?,
            page_size: config::get_or("page_size", d.page_size)?.clamp(1, 5000),
        })
    }
}

fn unavailable(what: &str, e: Error) -> InvokeError {
    let mut err = InvokeError::from(e);
    err.message = format!("{what}: {}", err.message);
    err
}

fn bad_status(what: &str, r: &services::Response) -> InvokeError {
    let body: String = r.body.chars().take(300).collect();
    InvokeError::new(
        "ServiceError",
        format!("{what}: status {} {body}", r.status),
    )
}

/// Verifies the draw `{"drawId"}` names: the answer of the crate docs. No
/// record → a `NotFound` error; a service that cannot be read → its error
/// (`Unavailable`, `ServiceError`): a verification that could not look is
/// not a verdict.
pub fn run(settings: &Settings, payload: Value) -> Result<Value, InvokeError> {
    let draw_id = payload
        .get("drawId")
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty())
        .ok_or_else(|| InvokeError::invalid_input("the payload must be {\"drawId\": \"…\"}"))?
        .to_string();
    let item: Option<Value> = table::get(&settings.table, &DrawRecord::key(&draw_id))
        .map_err(|e| unavailable(&format!("reading the record of draw {draw_id}"), e))?;
    let record = match item {
        Some(item) => DrawRecord::from_item(item).map_err(|e| {
            InvokeError::new(
                "BadRecord",
                format!("the record of draw {draw_id} is not a draw record: {e}"),
            )
        })?,
        None => {
            return Err(InvokeError::new(
                "NotFound",
                format!("there is no record of draw {draw_id}"),
            ))
        }
    };

    let mut differences: Vec<String> = Vec::new();
    let recorded = json!({
        "rule": record.rule, "seed": record.seed,
        "selectionCount": record.selection_count, "waitlistCount": record.waitlist_count,
        "entries": record.entries, "winners": record.counts.winners,
        "waitlist": record.counts.waitlist, "losers": record.counts.losers,
        "inputDigest": record.input_digest, "resultDigest": record.result_digest,
        "status": record.status, "createdAt": record.created_at,
    });
    if record.rule != RULE {
        differences.push(format!(
            "the draw was made with rule {}, this verifier knows {RULE}",
            record.rule
        ));
    }

    let entries = read_entries(settings, &record.campaign_id, &record.market_id)?;
    let inputs = match DrawInputs::new(entries) {
        Ok(inputs) => inputs,
        Err(e) => {
            differences.push(format!("the Entry Service's entries cannot be drawn: {e}"));
            return Ok(json!({
                "drawId": draw_id, "matches": false, "recorded": recorded,
                "differences": differences,
            }));
        }
    };
    let outcome = draw::draw(
        &inputs,
        &record.seed,
        record.selection_count,
        record.waitlist_count,
    );
    if inputs.len() as u64 != record.entries {
        differences.push(format!(
            "{} entries recorded, {} in the Entry Service now",
            record.entries,
            inputs.len()
        ));
    }
    if inputs.digest() != record.input_digest {
        differences.push(format!(
            "input digest: recorded {}, recomputed {} (the entries or their scores changed)",
            record.input_digest,
            inputs.digest()
        ));
    }
    if outcome.result_digest != record.result_digest {
        differences.push(format!(
            "result digest: recorded {}, recomputed {}",
            record.result_digest, outcome.result_digest
        ));
    }
    if outcome.counts != record.counts {
        differences.push(format!(
            "counts: recorded {} winners, {} waitlisted, {} losers; recomputed {}, {}, {}",
            record.counts.winners,
            record.counts.waitlist,
            record.counts.losers,
            outcome.counts.winners,
            outcome.counts.waitlist,
            outcome.counts.losers
        ));
    }

    let selections = check_selections(settings, &record, &inputs, &outcome, &mut differences)?;
    let matches = differences.is_empty();
    Ok(json!({
        "drawId": draw_id,
        "campaignId": record.campaign_id,
        "marketId": record.market_id,
        "matches": matches,
        "inputDigest": inputs.digest(),
        "resultDigest": outcome.result_digest,
        "recorded": recorded,
        "recomputed": {
            "entries": inputs.len(),
            "winners": outcome.counts.winners,
            "waitlist": outcome.counts.waitlist,
            "losers": outcome.counts.losers,
            "inputDigest": inputs.digest(),
            "resultDigest": outcome.result_digest,
        },
        "selections": selections,
        "differences": differences,
    }))
}

fn read_entries(
    settings: &Settings,
    campaign: &str,
    market: &str,
) -> Result<Vec<draw::DrawEntry>, InvokeError> {
    let what = format!("reading the entries of market {market} from the Entry Service");
    let mut entries = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = market_entries_path(campaign, market, settings.page_size, after.as_deref());
        let r = services::get(&settings.entries, &path).map_err(|e| unavailable(&what, e))?;
        if !r.is_success() {
            return Err(bad_status(&what, &r));
        }
        let page: EntriesPage = r.json().map_err(|e| {
            InvokeError::new(
                "ServiceError",
                format!("{what}: not a page of entries: {e}"),
            )
        })?;
        entries.extend(page.entries.into_iter().map(|e| e.draw_entry()));
        match page.next.filter(|n| !n.is_empty()) {
            Some(next) if after.as_deref() == Some(next.as_str()) => {
                return Err(InvokeError::new(
                    "ServiceError",
                    format!("{what}: the same cursor {next} twice"),
                ))
            }
            Some(next) => after = Some(next),
            None => return Ok(entries),
        }
    }
}

/// A verdict as the JSON says it (`WINNER` …).
fn name(v: Verdict) -> &'static str {
    match v {
        Verdict::Pending => "PENDING",
        Verdict::Winner => "WINNER",
        Verdict::Loser => "LOSER",
        Verdict::Waitlist => "WAITLIST",
    }
}

/// How the Entry Service's saved selections compare with the recomputed
/// verdicts (and the winners' codes with the draw's reservations).
#[derive(Debug, Default)]
struct SelectionCheck {
    saved: u64,
    agree: u64,
    disagree: u64,
    unknown: u64,
    winners_without_code: u64,
    codes_on_non_winners: u64,
    duplicate_codes: u64,
    codes_checked: u64,
    code_mismatches: u64,
}

fn check_selections(
    settings: &Settings,
    record: &DrawRecord,
    inputs: &DrawInputs,
    outcome: &DrawOutcome,
    differences: &mut Vec<String>,
) -> Result<Value, InvokeError> {
    let (campaign, market) = (record.campaign_id.as_str(), record.market_id.as_str());
    let what = format!("reading the selections of market {market} from the Entry Service");
    let ranks = outcome.ranks();
    let mut c = SelectionCheck::default();
    let mut examples: HashMap<&'static str, Vec<String>> = HashMap::new();
    let mut note = |kind: &'static str, text: String| {
        let list = examples.entry(kind).or_default();
        if list.len() < EXAMPLES {
            list.push(text);
        }
    };
    // Winners' codes by rank, to check against the reservations.
    let mut winner_codes: Vec<(u64, String, String)> = Vec::new();
    let mut codes_seen: HashMap<String, String> = HashMap::new();
    let mut after: Option<String> = None;
    loop {
        let path = market_selections_path(campaign, market, settings.page_size, after.as_deref());
        let r = services::get(&settings.entries, &path).map_err(|e| unavailable(&what, e))?;
        if !r.is_success() {
            return Err(bad_status(&what, &r));
        }
        let page: SelectionsPage = r.json().map_err(|e| {
            InvokeError::new(
                "ServiceError",
                format!("{what}: not a page of selections: {e}"),
            )
        })?;
        for s in page.selections {
            if s.verdict == Verdict::Pending {
                continue;
            }
            c.saved += 1;
            let Some(index) = inputs.index_of(&s.global_user_id) else {
                c.unknown += 1;
                note(
                    "unknown",
                    format!(
                        "{} ({}) is not among the draw's entries",
                        s.global_user_id,
                        name(s.verdict)
                    ),
                );
                continue;
            };
            let rank = u64::from(ranks[index]);
            let expected = outcome.counts.verdict(rank);
            if s.verdict == expected {
                c.agree += 1;
            } else {
                c.disagree += 1;
                note(
                    "disagree",
                    format!(
                        "{} is saved {}, the draw says {} (rank {rank})",
                        s.global_user_id,
                        name(s.verdict),
                        name(expected)
                    ),
                );
            }
            match (&s.code, s.verdict) {
                (None, Verdict::Winner) => {
                    c.winners_without_code += 1;
                    note(
                        "no-code",
                        format!("winner {} has no code", s.global_user_id),
                    );
                }
                (Some(code), Verdict::Winner) => {
                    if let Some(other) = codes_seen.insert(code.clone(), s.global_user_id.clone()) {
                        c.duplicate_codes += 1;
                        note(
                            "duplicate",
                            format!("code {code} is held by {other} and {}", s.global_user_id),
                        );
                    }
                    if expected == Verdict::Winner {
                        winner_codes.push((rank, s.global_user_id.clone(), code.clone()));
                    }
                }
                (Some(code), v) => {
                    c.codes_on_non_winners += 1;
                    note(
                        "code-not-winner",
                        format!("{} is {} and holds code {code}", s.global_user_id, name(v)),
                    );
                }
                (None, _) => {}
            }
        }
        match page.next.filter(|n| !n.is_empty()) {
            Some(next) if after.as_deref() == Some(next.as_str()) => {
                return Err(InvokeError::new(
                    "ServiceError",
                    format!("{what}: the same cursor {next} twice"),
                ))
            }
            Some(next) => after = Some(next),
            None => break,
        }
    }

    // The winners' codes are the draw's reserved codes, in rank order.
    if !winner_codes.is_empty() {
        let reserved = read_reservations(settings, record, differences)?;
        if let Some(reserved) = reserved {
            for (rank, fan, code) in &winner_codes {
                c.codes_checked += 1;
                match reserved.get(*rank as usize) {
                    Some(want) if want == code => {}
                    want => {
                        c.code_mismatches += 1;
                        note(
                            "code-mismatch",
                            format!(
                                "winner {fan} (rank {rank}) holds {code}, the reservation gives {}",
                                want.map_or("nothing", String::as_str)
                            ),
                        );
                    }
                }
            }
        }
    }

    let expected = inputs.len() as u64;
    for (count, kind, text) in [
        (
            c.disagree,
            "disagree",
            "saved selections disagree with the draw",
        ),
        (
            c.unknown,
            "unknown",
            "saved selections are of fans not in the draw",
        ),
        (
            c.winners_without_code,
            "no-code",
            "saved winners have no code",
        ),
        (
            c.codes_on_non_winners,
            "code-not-winner",
            "saved non-winners hold a code",
        ),
        (c.duplicate_codes, "duplicate", "codes are held twice"),
        (
            c.code_mismatches,
            "code-mismatch",
            "winners hold another code than the draw reserved for their rank",
        ),
    ] {
        if count > 0 {
            let ex = examples.get(kind).map(|e| e.join("; ")).unwrap_or_default();
            differences.push(format!("{count} {text} (e.g. {ex})"));
        }
    }
    Ok(json!({
        "expected": expected,
        "saved": c.saved,
        "complete": c.saved == expected && c.agree == expected,
        "agree": c.agree,
        "disagree": c.disagree,
        "unknown": c.unknown,
        "winnersWithoutCode": c.winners_without_code,
        "codesOnNonWinners": c.codes_on_non_winners,
        "duplicateCodes": c.duplicate_codes,
        "codesChecked": c.codes_checked,
        "codeMismatches": c.code_mismatches,
    }))
}

/// The codes of the draw's reservations in rank order; `None` (and a
/// difference) when one of them is missing.
fn read_reservations(
    settings: &Settings,
    record: &DrawRecord,
    differences: &mut Vec<String>,
) -> Result<Option<Vec<String>>, InvokeError> {
    let n = reservation_count(record.counts.winners);
    let ids: Vec<String> = (0..n)
        .map(|i| reservation_id(&record.reservation_id, i))
        .collect();
    let requests: Vec<Request> = ids
        .iter()
        .map(|id| {
            Request::new(
                &settings.codes,
                Method::Get,
                format!("/reservations/{}", draw::percent_encode(id)),
            )
        })
        .collect();
    let mut codes = Vec::with_capacity(record.counts.winners as usize);
    let mut complete = true;
    for (chunk, ids) in requests
        .chunks(CALL_MANY_MAX)
        .zip(ids.chunks(CALL_MANY_MAX))
    {
        let answers = services::call_many(chunk)
            .map_err(|e| unavailable("reading the draw's reservations", e))?;
        for (answer, id) in answers.into_iter().zip(ids) {
            let what = format!("reading reservation {id} from the Code Service");
            let r = answer.map_err(|e| unavailable(&what, e))?;
            match r.status {
                200..=299 => {
                    let got: Vec<String> = r
                        .json::<Value>()
                        .ok()
                        .and_then(|v| v.get("codes").cloned())
                        .and_then(|c| serde_json::from_value(c).ok())
                        .ok_or_else(|| {
                            InvokeError::new("ServiceError", format!("{what}: no list of codes"))
                        })?;
                    if got.len() > MAX_RESERVATION {
                        differences.push(format!("reservation {id} holds {} codes", got.len()));
                    }
                    codes.extend(got);
                }
                404 => {
                    complete = false;
                    differences.push(format!(
                        "reservation {id} does not exist at the Code Service, yet winners hold codes"
                    ));
                }
                _ => return Err(bad_status(&what, &r)),
            }
        }
    }
    Ok(complete.then_some(codes))
}

#[cfg(test)]
mod tests;
