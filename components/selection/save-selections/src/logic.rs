//! The worker's logic (see the crate docs). It calls the SDK's capability
//! functions directly; natively they reach `usher_sdk::fakes` in the tests.

use std::collections::{BTreeMap, BTreeSet};

use usher_domain::assignment::{
    counts_of, now_rfc3339, AssignCodes, AssignOutcome, CodeAssignment, VerdictItem, Verdicts,
    VerdictsOutcome,
};
use usher_domain::selection::{SelectionBatch, VerdictReport};
use usher_domain::{Fan, Verdict};
use usher_sdk::json::json;
use usher_sdk::queue::{self, Outgoing};
use usher_sdk::services::{self, Method, Request, Response};
use usher_sdk::table::{self, Condition, UpdateItem};
use usher_sdk::{config, BatchResult, Message};

/// The worker's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The entries table (`table`, default `demand-table`).
    pub table: String,
    /// The Entry Service's name (`service`, default `entries`).
    pub service: String,
    /// Where the verdict reports go (`report_queue`, default `verdict-reporter`).
    pub report_queue: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            table: "demand-table".into(),
            service: "entries".into(),
            report_queue: "verdict-reporter".into(),
        }
    }
}

impl Settings {
    /// Reads the settings with the config capability, defaults for absent keys.
    pub fn load() -> usher_sdk::Result<Settings> {
        let d = Settings::default();
        Ok(Settings {
            table: config::string_or("table", &d.table)?,
            service: config::string_or("service", &d.service)?,
            report_queue: config::string_or("report_queue", &d.report_queue)?,
        })
    }
}

/// Why a message is not a batch of selections to save.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidBatch {
    /// Not JSON, or not the shape of a `SelectionBatch`.
    #[error("the body is not a selection batch: {0}")]
    NotABatch(String),
    /// `campaignId`, `marketId` or `drawId` is empty.
    #[error("{0} is empty")]
    MissingId(&'static str),
    /// A selection without a fan.
    #[error("selection {0} has no globalUserId")]
    NoFan(usize),
    /// A selection whose verdict is PENDING.
    #[error("selection {0} ({1}) is PENDING: a draw decides WINNER, LOSER or WAITLIST")]
    Pending(usize, String),
    /// A winner without its code.
    #[error("winner {0} has no code")]
    WinnerWithoutCode(String),
    /// A loser or waitlisted fan with a code.
    #[error("{0} is not a winner but carries code {1}")]
    CodeWithoutWin(String, String),
    /// A fan twice in the batch.
    #[error("fan {0} is selected twice")]
    DuplicateFan(String),
    /// A code given to two fans of the batch.
    #[error("code {0} goes to two fans")]
    DuplicateCode(String),
}

/// Parses and checks one message body.
pub fn parse(body: &str) -> Result<SelectionBatch, InvalidBatch> {
    let batch: SelectionBatch =
        serde_json::from_str(body).map_err(|e| InvalidBatch::NotABatch(e.to_string()))?;
    for (name, value) in [
        ("campaignId", &batch.campaign_id),
        ("marketId", &batch.market_id),
        ("drawId", &batch.draw_id),
    ] {
        if value.is_empty() {
            return Err(InvalidBatch::MissingId(name));
        }
    }
    let mut fans = BTreeSet::new();
    let mut codes = BTreeSet::new();
    for (i, s) in batch.selections.iter().enumerate() {
        if s.global_user_id.is_empty() {
            return Err(InvalidBatch::NoFan(i));
        }
        if !fans.insert(s.global_user_id.as_str()) {
            return Err(InvalidBatch::DuplicateFan(s.global_user_id.clone()));
        }
        let code = s.code.as_deref().filter(|c| !c.is_empty());
        match (s.verdict, code) {
            (Verdict::Pending, _) => {
                return Err(InvalidBatch::Pending(i, s.global_user_id.clone()))
            }
            (Verdict::Winner, None) => {
                return Err(InvalidBatch::WinnerWithoutCode(s.global_user_id.clone()))
            }
            (Verdict::Winner, Some(code)) => {
                if !codes.insert(code) {
                    return Err(InvalidBatch::DuplicateCode(code.to_string()));
                }
            }
            (_, Some(code)) => {
                return Err(InvalidBatch::CodeWithoutWin(
                    s.global_user_id.clone(),
                    code.to_string(),
                ))
            }
            (_, None) => {}
        }
    }
    Ok(batch)
}

/// One batch to save and the messages that carry it.
struct Job {
    batch: SelectionBatch,
    report_id: String,
    messages: Vec<usize>,
    /// Why it failed; `None` while it goes on.
    failed: Option<String>,
}

impl Job {
    fn fail(&mut self, reason: String) {
        if self.failed.is_none() {
            self.failed = Some(reason);
        }
    }

    fn going(&self) -> bool {
        self.failed.is_none()
    }
}

/// The Entry Service's assign path.
const ASSIGN: &str = "/entries/assign-codes";
/// The Entry Service's verdicts path.
const VERDICTS: &str = "/entries/verdicts";

/// Handles a batch (see the crate docs).
pub fn process(settings: &Settings, messages: &[Message]) -> BatchResult {
    let mut failed: BTreeSet<usize> = BTreeSet::new();

    // 1. Parse, and merge duplicate deliveries of one batch.
    let mut jobs: Vec<Job> = Vec::new();
    let mut by_report: BTreeMap<String, usize> = BTreeMap::new();
    for (i, message) in messages.iter().enumerate() {
        let batch = match parse(&message.body) {
            Ok(batch) => batch,
            Err(reason) => {
                usher_sdk::warn!(message_id = message.id, reason = reason; "bad selection batch failed");
                failed.insert(i);
                continue;
            }
        };
        let report_id = format!("{}#{}", batch.draw_id, batch.batch);
        match by_report.get(&report_id) {
            Some(&j) if jobs[j].batch == batch => jobs[j].messages.push(i),
            Some(_) => {
                usher_sdk::warn!(message_id = message.id, report_id = report_id;
                    "another message of this delivery has the same report id with other selections; failed");
                failed.insert(i);
            }
            None => {
                by_report.insert(report_id.clone(), jobs.len());
                jobs.push(Job {
                    batch,
                    report_id,
                    messages: vec![i],
                    failed: None,
                });
            }
        }
    }

    // 2. Codes to the winners' entries, then 3. the verdicts.
    assign_codes(settings, &mut jobs);
    write_verdicts(settings, &mut jobs);
    // 4. The demand-table, 5. the reports.
    let (updated, absent) = update_table(settings, &mut jobs);
    send_reports(settings, &mut jobs);

    let mut saved = 0usize;
    for job in &jobs {
        match &job.failed {
            None => saved += 1,
            Some(reason) => {
                let ids: Vec<&str> = job
                    .messages
                    .iter()
                    .filter_map(|&i| messages.get(i).map(|m| m.id.as_str()))
                    .collect();
                usher_sdk::warn!(message_ids = ids.join(","), report_id = job.report_id, reason = reason;
                    "selection batch failed");
                failed.extend(job.messages.iter().copied());
            }
        }
    }
    let result = BatchResult::from_failures(
        messages.len(),
        failed
            .iter()
            .filter_map(|&i| messages.get(i).map(|m| m.id.clone())),
    );
    usher_sdk::info!(received = result.received, processed = result.processed,
        failed = result.failed, batches_saved = saved, entries_updated = updated,
        entries_not_in_table = absent; "save-selections batch done");
    result
}

/// One request and, per item it carries, the job it belongs to.
struct Call {
    request: Request,
    /// The owning job of each item, in order.
    owners: Vec<usize>,
    /// The fans of the items, in order.
    fans: Vec<String>,
}

impl Call {
    /// The distinct jobs of the request.
    fn jobs(&self) -> BTreeSet<usize> {
        self.owners.iter().copied().collect()
    }
}

/// Verdicts per Entry Service request: the items of many jobs (of one
/// campaign, market and draw) go together, so a batch of 40 messages costs
/// a few requests instead of one per message (the service takes up to
/// 1000 verdicts).
pub const SELECTIONS_PER_REQUEST: usize = 500;

/// Code assignments per Entry Service request: the seed's Entry Service
/// takes at most 25 (`assignCodes`, "batch: 25 per request"), so the
/// assignments of many jobs go in requests of 25, all in one `call_many`.
pub const ASSIGNMENTS_PER_REQUEST: usize = usher_domain::CHUNK_SIZE;

/// A campaign, market and draw.
type DrawKey = (String, String, String);

/// The items of one request: their draw, owning jobs and the items.
type Group<T> = (DrawKey, Vec<usize>, Vec<T>);

/// Groups the items of the going jobs by campaign, market and draw, in
/// requests of at most `per_request` items: (key, owners,
/// items).
///
/// With `alone`, only those jobs, each in requests of its own (the second
/// pass after a request of many jobs failed as a whole: a failure stays
/// the message's own).
fn grouped<T: Clone>(
    jobs: &[Job],
    alone: Option<&BTreeSet<usize>>,
    per_request: usize,
    items_of: impl Fn(&Job) -> Vec<T>,
) -> Vec<Group<T>> {
    type Key = (usize, String, String, String);
    let mut groups: BTreeMap<Key, (Vec<usize>, Vec<T>)> = BTreeMap::new();
    for (j, job) in jobs.iter().enumerate().filter(|(_, j)| j.going()) {
        if alone.is_some_and(|a| !a.contains(&j)) {
            continue;
        }
        let key = (
            if alone.is_some() { j } else { 0 },
            job.batch.campaign_id.clone(),
            job.batch.market_id.clone(),
            job.batch.draw_id.clone(),
        );
        let group = groups.entry(key).or_default();
        for item in items_of(job) {
            group.0.push(j);
            group.1.push(item);
        }
    }
    let mut out = Vec::new();
    for ((_, c, m, d), (owners, items)) in groups {
        let key = (c, m, d);
        for (o, i) in owners.chunks(per_request).zip(items.chunks(per_request)) {
            out.push((key.clone(), o.to_vec(), i.to_vec()));
        }
    }
    out
}

/// The services' most requests in one `call_many`.
const CALL_MANY_MAX: usize = 256;

/// Sends every request, `CALL_MANY_MAX` per `services::call_many`; one
/// answer (or the error's text) per request, in order.
fn call_all(requests: &[Request]) -> Vec<Result<Response, String>> {
    let mut answers = Vec::with_capacity(requests.len());
    for chunk in requests.chunks(CALL_MANY_MAX) {
        match services::call_many(chunk) {
            Ok(got) if got.len() == chunk.len() => {
                answers.extend(got.into_iter().map(|a| a.map_err(|e| e.to_string())))
            }
            Ok(got) => {
                let reason = format!("{} answers for {} requests", got.len(), chunk.len());
                answers.extend(chunk.iter().map(|_| Err(reason.clone())));
            }
            Err(e) => {
                let reason = e.to_string();
                answers.extend(chunk.iter().map(|_| Err(reason.clone())));
            }
        }
    }
    answers
}

/// A 2xx answer's JSON body, or why there is none.
fn success_body<T: serde::de::DeserializeOwned>(
    what: &str,
    answer: Result<Response, String>,
) -> Result<T, String> {
    let response = answer.map_err(|e| format!("{what}: {e}"))?;
    if !response.is_success() {
        return Err(format!(
            "{what}: status {}: {}",
            response.status,
            response.body.chars().take(300).collect::<String>()
        ));
    }
    response
        .json::<T>()
        .map_err(|e| format!("{what}: unreadable answer: {e}"))
}

fn request(
    settings: &Settings,
    path: &str,
    body: &impl serde::Serialize,
) -> Result<Request, String> {
    Request::new(&settings.service, Method::Post, path)
        .json(body)
        .map_err(|e| format!("cannot encode {path}: {e}"))
}

/// Step 2: the winners' codes, the jobs' assignments together (see
/// [`ASSIGNMENTS_PER_REQUEST`]), every request in one `call_many`. A
/// conflict fails the job of its fan; the jobs of a request of many jobs
/// that failed as a whole are sent again each alone (one more
/// `call_many`), so a failure stays its own message's.
fn assign_codes(settings: &Settings, jobs: &mut [Job]) {
    let again = assign_pass(settings, jobs, None);
    if !again.is_empty() {
        assign_pass(settings, jobs, Some(&again));
    }
}

/// One pass of [`assign_codes`]; the jobs to send again alone (those of a
/// request of many jobs that failed as a whole).
fn assign_pass(
    settings: &Settings,
    jobs: &mut [Job],
    alone: Option<&BTreeSet<usize>>,
) -> BTreeSet<usize> {
    let mut again = BTreeSet::new();
    let groups = grouped(jobs, alone, ASSIGNMENTS_PER_REQUEST, |job| {
        job.batch
            .selections
            .iter()
            .filter(|s| s.verdict == Verdict::Winner)
            .filter_map(|s| {
                s.code.as_ref().map(|code| CodeAssignment {
                    global_user_id: s.global_user_id.clone(),
                    code: code.clone(),
                })
            })
            .collect()
    });
    let mut calls = Vec::new();
    for ((campaign_id, market_id, _), owners, assignments) in groups {
        let fans = assignments
            .iter()
            .map(|a| a.global_user_id.clone())
            .collect();
        let body = AssignCodes {
            campaign_id,
            market_id,
            assignments,
        };
        match request(settings, ASSIGN, &body) {
            Ok(request) => calls.push(Call {
                request,
                owners,
                fans,
            }),
            Err(reason) => {
                for j in owners {
                    jobs[j].fail(reason.clone());
                }
            }
        }
    }
    let requests: Vec<Request> = calls.iter().map(|c| c.request.clone()).collect();
    for (call, answer) in calls.iter().zip(call_all(&requests)) {
        match success_body::<AssignOutcome>(ASSIGN, answer) {
            Err(_) if alone.is_none() && call.jobs().len() > 1 => again.extend(call.jobs()),
            Err(reason) => {
                for j in call.jobs() {
                    jobs[j].fail(reason.clone());
                }
            }
            Ok(outcome) => {
                let accounted = outcome.assigned + outcome.already + outcome.conflicts.len() as u64;
                if accounted != call.owners.len() as u64 {
                    let reason = format!(
                        "{ASSIGN}: the answer accounts for {} assigned + {} already + {} conflicts of {} assignments",
                        outcome.assigned,
                        outcome.already,
                        outcome.conflicts.len(),
                        call.owners.len()
                    );
                    for j in call.jobs() {
                        jobs[j].fail(reason.clone());
                    }
                    continue;
                }
                let owner_of: BTreeMap<&str, usize> = call
                    .fans
                    .iter()
                    .map(String::as_str)
                    .zip(call.owners.iter().copied())
                    .collect();
                let mut by_job: BTreeMap<usize, Vec<String>> = BTreeMap::new();
                for c in &outcome.conflicts {
                    let reason = format!("{} ← {}: {}", c.code, c.global_user_id, c.reason);
                    match owner_of.get(c.global_user_id.as_str()) {
                        Some(&j) => by_job.entry(j).or_default().push(reason),
                        // A conflict naming no fan of the request: every
                        // job of it fails (nothing is known to be right).
                        None => {
                            for j in call.jobs() {
                                by_job.entry(j).or_default().push(reason.clone());
                            }
                        }
                    }
                }
                for (j, reasons) in by_job {
                    jobs[j].fail(format!(
                        "{ASSIGN}: {} conflict(s): {}",
                        reasons.len(),
                        reasons.join("; ")
                    ));
                }
                if outcome.already > 0 {
                    usher_sdk::info!(already = outcome.already;
                        "codes already assigned (a redelivery): nothing assigned twice");
                }
            }
        }
    }
    again
}

/// Step 3: the going jobs' verdicts together (see
/// [`SELECTIONS_PER_REQUEST`]), every request in one `call_many`; as in
/// step 2, a request of many jobs that failed is sent again job by job.
fn write_verdicts(settings: &Settings, jobs: &mut [Job]) {
    let again = verdicts_pass(settings, jobs, None);
    if !again.is_empty() {
        verdicts_pass(settings, jobs, Some(&again));
    }
}

/// One pass of [`write_verdicts`]; the jobs to send again alone.
fn verdicts_pass(
    settings: &Settings,
    jobs: &mut [Job],
    alone: Option<&BTreeSet<usize>>,
) -> BTreeSet<usize> {
    let mut again = BTreeSet::new();
    let groups = grouped(jobs, alone, SELECTIONS_PER_REQUEST, |job| {
        job.batch
            .selections
            .iter()
            .map(|s| VerdictItem {
                global_user_id: s.global_user_id.clone(),
                verdict: s.verdict,
                code: s.code.clone(),
            })
            .collect()
    });
    let mut calls = Vec::new();
    for ((campaign_id, market_id, draw_id), owners, verdicts) in groups {
        let fans = verdicts.iter().map(|v| v.global_user_id.clone()).collect();
        let body = Verdicts {
            campaign_id,
            market_id,
            draw_id,
            verdicts,
        };
        match request(settings, VERDICTS, &body) {
            Ok(request) => calls.push(Call {
                request,
                owners,
                fans,
            }),
            Err(reason) => {
                for j in owners {
                    jobs[j].fail(reason.clone());
                }
            }
        }
    }
    let requests: Vec<Request> = calls.iter().map(|c| c.request.clone()).collect();
    for (call, answer) in calls.iter().zip(call_all(&requests)) {
        match success_body::<VerdictsOutcome>(VERDICTS, answer) {
            Err(_) if alone.is_none() && call.jobs().len() > 1 => again.extend(call.jobs()),
            Err(reason) => {
                for j in call.jobs() {
                    jobs[j].fail(reason.clone());
                }
            }
            Ok(outcome) => {
                if !outcome.missing.is_empty() {
                    usher_sdk::warn!(missing = outcome.missing.join(","), asked = call.owners.len();
                        "the Entry Service has no entry for some selected fans");
                }
            }
        }
    }
    again
}

/// Step 4: the demand-table's verdicts, one `update_many` for every going
/// job. Returns (items updated, items not in the table).
fn update_table(settings: &Settings, jobs: &mut [Job]) -> (usize, usize) {
    let now = now_rfc3339();
    let mut owners: Vec<(usize, String)> = Vec::new();
    let mut updates = Vec::new();
    for (j, job) in jobs.iter().enumerate().filter(|(_, j)| j.going()) {
        for s in &job.batch.selections {
            let fan = Fan::new(job.batch.campaign_id.clone(), s.global_user_id.clone());
            let mut set = json!({
                "verdict": s.verdict,
                "drawId": job.batch.draw_id,
                "updatedAt": now,
            });
            let mut remove = Vec::new();
            match &s.code {
                Some(code) => set["accessCode"] = json!(code),
                None => remove.push("accessCode".to_string()),
            }
            updates.push(UpdateItem {
                key: fan.demand_key(),
                set,
                remove,
                condition: Some(Condition::Exists),
            });
            owners.push((j, s.global_user_id.clone()));
        }
    }
    if updates.is_empty() {
        return (0, 0);
    }
    let asked = updates.len();
    let results: Vec<Result<(), String>> =
        match table::update_many::<serde::de::IgnoredAny>(&settings.table, updates) {
            Ok(results) if results.len() == asked => results
                .into_iter()
                .map(|r| match r {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_condition_failed() => Err(String::new()),
                    Err(e) => Err(e.to_string()),
                })
                .collect(),
            Ok(results) => {
                let reason = format!("update_many answered {} of {asked}", results.len());
                (0..asked).map(|_| Err(reason.clone())).collect()
            }
            Err(e) => {
                let reason = e.to_string();
                (0..asked).map(|_| Err(reason.clone())).collect()
            }
        };
    let mut updated = 0;
    let mut absent: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for ((j, fan), result) in owners.into_iter().zip(results) {
        match result {
            Ok(()) => updated += 1,
            Err(reason) if reason.is_empty() => absent.entry(j).or_default().push(fan),
            Err(reason) => jobs[j].fail(format!(
                "updating {}'s entry in {}: {reason}",
                fan, settings.table
            )),
        }
    }
    let mut not_in_table = 0;
    for (j, fans) in absent {
        not_in_table += fans.len();
        usher_sdk::warn!(report_id = jobs[j].report_id, fans = fans.join(","), table = settings.table;
            "selected fans have no entry in the table; nothing written for them");
    }
    (updated, not_in_table)
}

/// Step 5: one report per going job, one `send_batch`.
fn send_reports(settings: &Settings, jobs: &mut [Job]) {
    let mut senders = Vec::new();
    let mut outgoing = Vec::new();
    for (j, job) in jobs.iter_mut().enumerate().filter(|(_, j)| j.going()) {
        let report = VerdictReport {
            campaign_id: job.batch.campaign_id.clone(),
            market_id: job.batch.market_id.clone(),
            report_id: job.report_id.clone(),
            counts: counts_of(job.batch.selections.iter().map(|s| &s.verdict)),
        };
        match Outgoing::json(&report) {
            Ok(m) => {
                outgoing.push(m);
                senders.push(j);
            }
            Err(e) => job.fail(format!("cannot encode the report: {e}")),
        }
    }
    if outgoing.is_empty() {
        return;
    }
    match queue::send_batch(&settings.report_queue, &outgoing) {
        Ok(results) => {
            for (n, &j) in senders.iter().enumerate() {
                match results.get(n) {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => jobs[j].fail(format!(
                        "sending the report to {}: {e}",
                        settings.report_queue
                    )),
                    None => jobs[j].fail(format!(
                        "no send result for the report to {}",
                        settings.report_queue
                    )),
                }
            }
        }
        Err(e) => {
            for &j in &senders {
                jobs[j].fail(format!(
                    "sending the reports to {}: {e}",
                    settings.report_queue
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests;
