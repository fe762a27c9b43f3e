//! `selection/mark-assigned-codes` (stream-worker on the `demand-table`):
//! marks the codes given to winners as assigned in the Code Service.
//!
//! Kept records: MODIFY whose new image has `verdict` WINNER and an
//! `accessCode`, and whose old image had no `accessCode` or another one
//! (what `selection/save-selections` and `refresh-selections` write). Every
//! other record is a success without a call; so is a redelivered record
//! whose code the service has marked already.
//!
//! The kept records are grouped by campaign and market (`campaignId`,
//! `marketId`, `globalUserId` of the new image; a kept record without them
//! fails with that reason), each (fan, code) once, and sent as
//! Code Service `POST /codes/mark-assigned`
//! `{"campaignId","marketId","assignments":[{"code","globalUserId"}…]}` in
//! requests of at most 100 assignments, every request of the batch in one
//! `services::call_many` (the host sends them concurrently). The answer
//! `{"marked","already","conflicts":[{"code","globalUserId","reason"}]}`:
//! `already` is a success; a conflict (the code held by another fan, not
//! reserved …) fails its records, with the reason logged; a call error, a
//! non-2xx answer or an answer that does not account for every assignment
//! fails the request's records.
//!
//! Failures are reported by sequence number: the stream resumes from the
//! lowest failed one and retries everything after it (the service is
//! idempotent, so the records that went through are `already` next time);
//! after the trigger's retries the batch goes to the on-failure queue
//! (`mark-assigned-codes-failures` in the registry).
//!
//! Settings: `service` (default `codes`).

use std::collections::BTreeMap;

use usher_domain::assignment::{AssignCodes, AssignOutcome, CodeAssignment, CODES_PER_REQUEST};
use usher_sdk::json::str_field;
use usher_sdk::services::{self, Method, Request, Response};
use usher_sdk::{config, Change, ChangeKind, StreamResult, StreamWorker};

/// The Code Service's name when the `service` setting is absent.
pub const DEFAULT_SERVICE: &str = "codes";

/// The Code Service's path.
pub const MARK: &str = "/codes/mark-assigned";

/// A code to mark: which market, which fan.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ToMark {
    /// The campaign.
    pub campaign_id: String,
    /// The market.
    pub market_id: String,
    /// The fan and the code.
    pub assignment: CodeAssignment,
}

/// Why a kept record cannot be marked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadRecord {
    /// The new image lacks an id.
    #[error("the new image (verdict WINNER with accessCode {code}) has no {field}")]
    MissingField {
        /// The missing attribute.
        field: &'static str,
        /// The code it gives.
        code: String,
    },
}

/// What a change asks for: `Ok(None)` when it is not a code newly given to
/// a winner.
pub fn to_mark(change: &Change) -> Result<Option<ToMark>, BadRecord> {
    if change.kind != ChangeKind::Modify {
        return Ok(None);
    }
    let Some(new) = change.new_image.as_ref() else {
        return Ok(None);
    };
    if str_field(new, "verdict") != Some("WINNER") {
        return Ok(None);
    }
    let Some(code) = str_field(new, "accessCode").filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    let old_code = change
        .old_image
        .as_ref()
        .and_then(|old| str_field(old, "accessCode"));
    if old_code == Some(code) {
        return Ok(None);
    }
    let field = |name: &'static str| {
        str_field(new, name)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .ok_or(BadRecord::MissingField {
                field: name,
                code: code.to_string(),
            })
    };
    Ok(Some(ToMark {
        campaign_id: field("campaignId")?,
        market_id: field("marketId")?,
        assignment: CodeAssignment {
            global_user_id: field("globalUserId")?,
            code: code.to_string(),
        },
    }))
}

/// One request: its market, its assignments, and for each the sequence
/// numbers of the records that asked for it.
struct Chunk {
    campaign_id: String,
    market_id: String,
    items: Vec<(CodeAssignment, Vec<String>)>,
}

/// The services' most requests in one `call_many`.
const CALL_MANY_MAX: usize = 256;

/// Handles a batch of changes (see the crate docs).
pub fn process(service: &str, changes: &[Change]) -> StreamResult {
    let mut failures: Vec<String> = Vec::new();
    // market → assignment → sequence numbers, each assignment once.
    let mut markets: BTreeMap<(String, String), BTreeMap<CodeAssignment, Vec<String>>> =
        BTreeMap::new();
    let mut kept = 0usize;
    for change in changes {
        match to_mark(change) {
            Ok(None) => {}
            Ok(Some(m)) => {
                kept += 1;
                markets
                    .entry((m.campaign_id, m.market_id))
                    .or_default()
                    .entry(m.assignment)
                    .or_default()
                    .push(change.sequence_number.clone());
            }
            Err(reason) => {
                usher_sdk::warn!(sequence_number = change.sequence_number, reason = reason;
                    "cannot mark a code: record failed");
                failures.push(change.sequence_number.clone());
            }
        }
    }
    let mut chunks: Vec<Chunk> = Vec::new();
    for ((campaign_id, market_id), assignments) in markets {
        let items: Vec<(CodeAssignment, Vec<String>)> = assignments.into_iter().collect();
        for part in items.chunks(CODES_PER_REQUEST) {
            chunks.push(Chunk {
                campaign_id: campaign_id.clone(),
                market_id: market_id.clone(),
                items: part.to_vec(),
            });
        }
    }
    let mut marked = 0u64;
    let mut already = 0u64;
    for group in chunks.chunks(CALL_MANY_MAX) {
        let mut requests = Vec::new();
        let mut sendable = Vec::new();
        for chunk in group {
            let body = AssignCodes {
                campaign_id: chunk.campaign_id.clone(),
                market_id: chunk.market_id.clone(),
                assignments: chunk.items.iter().map(|(a, _)| a.clone()).collect(),
            };
            match Request::new(service, Method::Post, MARK).json(&body) {
                Ok(r) => {
                    requests.push(r);
                    sendable.push(chunk);
                }
                Err(e) => {
                    usher_sdk::warn!(error = e; "cannot encode a mark request");
                    fail_chunk(chunk, &mut failures);
                }
            }
        }
        let answers: Vec<Result<Response, String>> = match services::call_many(&requests) {
            Ok(a) if a.len() == requests.len() => a
                .into_iter()
                .map(|r| r.map_err(|e| e.to_string()))
                .collect(),
            Ok(a) => vec![
                Err(format!(
                    "{} answers for {} requests",
                    a.len(),
                    requests.len()
                ));
                requests.len()
            ],
            Err(e) => vec![Err(e.to_string()); requests.len()],
        };
        for (chunk, answer) in sendable.into_iter().zip(answers) {
            let what = format!(
                "{MARK} for {}/{} ({} codes)",
                chunk.campaign_id,
                chunk.market_id,
                chunk.items.len()
            );
            let outcome = match answer {
                Err(e) => Err(e),
                Ok(r) if !r.is_success() => Err(format!(
                    "status {}: {}",
                    r.status,
                    r.body.chars().take(300).collect::<String>()
                )),
                Ok(r) => r
                    .json::<AssignOutcome>()
                    .map_err(|e| format!("unreadable answer: {e}")),
            };
            let outcome = match outcome {
                Ok(o) => o,
                Err(reason) => {
                    usher_sdk::warn!(request = what, reason = reason; "marking codes failed");
                    fail_chunk(chunk, &mut failures);
                    continue;
                }
            };
            let accounted = outcome.assigned + outcome.already + outcome.conflicts.len() as u64;
            if accounted != chunk.items.len() as u64 {
                usher_sdk::warn!(request = what, marked = outcome.assigned, already = outcome.already,
                    conflicts = outcome.conflicts.len(); "the answer does not account for every code; failing the request's records");
                fail_chunk(chunk, &mut failures);
                continue;
            }
            marked += outcome.assigned;
            already += outcome.already;
            for conflict in &outcome.conflicts {
                let matching: Vec<&(CodeAssignment, Vec<String>)> = chunk
                    .items
                    .iter()
                    .filter(|(a, _)| {
                        a.code == conflict.code
                            && (conflict.global_user_id.is_empty()
                                || a.global_user_id == conflict.global_user_id)
                    })
                    .collect();
                usher_sdk::warn!(campaign_id = chunk.campaign_id, market_id = chunk.market_id,
                    code = conflict.code, global_user_id = conflict.global_user_id,
                    reason = conflict.reason; "the Code Service refused to mark a code");
                if matching.is_empty() {
                    // A conflict naming nothing we sent: fail the request
                    // rather than lose one.
                    fail_chunk(chunk, &mut failures);
                }
                for (_, seqs) in matching {
                    failures.extend(seqs.iter().cloned());
                }
            }
        }
    }
    let result = StreamResult::from_failures(failures);
    usher_sdk::info!(records = changes.len(), kept = kept, marked = marked, already = already,
        failed = result.failures.len(); "mark-assigned-codes batch done");
    result
}

fn fail_chunk(chunk: &Chunk, failures: &mut Vec<String>) {
    for (_, seqs) in &chunk.items {
        failures.extend(seqs.iter().cloned());
    }
}

/// The worker.
pub struct MarkAssignedCodes;

impl StreamWorker for MarkAssignedCodes {
    fn handle(changes: Vec<Change>) -> StreamResult {
        match config::string_or("service", DEFAULT_SERVICE) {
            Ok(service) => process(&service, &changes),
            Err(e) => {
                usher_sdk::error!(error = e; "cannot read the settings; failing the batch");
                StreamResult::from_failures(changes.iter().map(|c| c.sequence_number.clone()))
            }
        }
    }
}

usher_sdk::export_stream_worker!(MarkAssignedCodes);

#[cfg(test)]
mod tests;
