//! The draw of one market, step by step (see the crate docs).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{json, Value};
use usher_domain::campaign::{Market, VerdictCounts};
use usher_domain::draw::{
    self, market_entries_path, percent_encode, reservation_count, reservation_id, BatchOrder,
    DrawInputs, DrawOutcome, DrawRecord, DrawStatus, EntriesPage, RULE,
};
use usher_domain::selection::{Selection, SelectionBatch, MAX_RESERVATION, SELECTIONS_PER_MESSAGE};
use usher_domain::Verdict;
use usher_sdk::queue::{self, Outgoing};
use usher_sdk::services::{self, Method, Request, Response};
use usher_sdk::{config, table, Error, InvokeError};

/// The most requests one `services::call_many` carries.
const CALL_MANY_MAX: usize = 256;

/// The worker's settings (the registry entry's `settings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The table of draw records (`draws`).
    pub table: String,
    /// The queue of selections (`save-selection`).
    pub queue: String,
    /// The Campaign Service (`campaigns`).
    pub campaigns: String,
    /// The Entry Service (`entries`).
    pub entries: String,
    /// The Code Service (`codes`).
    pub codes: String,
    /// Entries per Entry Service page (`page_size`, default and at most 5000).
    pub page_size: u32,
    /// Messages per `queue::send_batch` call (`send_chunk`, default 500).
    pub send_chunk: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            table: "draws".into(),
            queue: "save-selection".into(),
            campaigns: "campaigns".into(),
            entries: "entries".into(),
            codes: "codes".into(),
            page_size: 5000,
            send_chunk: 500,
        }
    }
}

impl Settings {
    /// The settings of the registry entry, defaults for those not set.
    pub fn load() -> usher_sdk::Result<Settings> {
        let d = Settings::default();
        Ok(Settings {
            table: config::string_or("table", &d.table)?,
            queue: config::string_or("queue", &d.queue)?,
            campaigns: config::string_or("campaigns_service", &d.campaigns)?,
            entries: config::string_or("entries_service", &d.entries)?,
            codes: config::string_or("codes_service", &d.codes)?,
            page_size: config::get_or("page_size", d.page_size)?.clamp(1, 5000),
            send_chunk: config::get_or("send_chunk", d.send_chunk)?.max(1),
        })
    }
}

/// The invocation's payload (the Step Functions task's input).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Payload {
    /// The campaign.
    pub campaign_id: String,
    /// The market.
    pub market_id: String,
    /// Winners to draw (default: the market's `selectionCount`).
    #[serde(default)]
    pub selection_count: Option<u64>,
    /// Fans to waitlist (default: the market's `waitlistCount`).
    #[serde(default)]
    pub waitlist_count: Option<u64>,
    /// The draw's id (default `<campaignId>.<marketId>`).
    #[serde(default)]
    pub draw_id: Option<String>,
    /// The seed (default: a fresh random one, recorded).
    #[serde(default)]
    pub seed: Option<String>,
}

impl Payload {
    /// The payload of an invocation: 400-style errors for what is missing.
    pub fn parse(value: Value) -> Result<Payload, InvokeError> {
        if !value.is_object() {
            return Err(InvokeError::invalid_input(
                "the payload must be a JSON object {campaignId, marketId, selectionCount?, waitlistCount?, drawId?, seed?}",
            ));
        }
        let p: Payload = serde_json::from_value(value)
            .map_err(|e| InvokeError::invalid_input(format!("bad payload: {e}")))?;
        for (name, v) in [
            ("campaignId", Some(&p.campaign_id)),
            ("marketId", Some(&p.market_id)),
            ("drawId", p.draw_id.as_ref()),
            ("seed", p.seed.as_ref()),
        ] {
            if v.is_some_and(|s| s.is_empty()) {
                return Err(InvokeError::invalid_input(format!(
                    "{name} must be a non-empty string"
                )));
            }
        }
        Ok(p)
    }

    /// The draw's id.
    pub fn draw_id(&self) -> String {
        self.draw_id
            .clone()
            .unwrap_or_else(|| format!("{}.{}", self.campaign_id, self.market_id))
    }
}

/// Why the draw stopped: a reason code (documented in the crate docs) and a
/// message, answered in `errors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The reason code.
    pub reason: &'static str,
    /// What happened.
    pub message: String,
}

impl Failure {
    fn new(reason: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            reason,
            message: message.into(),
        }
    }

    fn json(&self) -> Value {
        json!({"reason": self.reason, "message": self.message})
    }
}

/// What the answer's `stats` holds, filled in as the draw goes.
#[derive(Debug, Default)]
struct Stats {
    draw_id: String,
    campaign_id: String,
    market_id: String,
    status: Option<DrawStatus>,
    existing: bool,
    entries: Option<u64>,
    unscored: u64,
    selection_count: Option<u64>,
    waitlist_count: Option<u64>,
    outcome: Option<(DrawOutcome, String, String)>,
    reservations: u64,
    codes: u64,
    batches: u64,
    enqueued: u64,
    finished: bool,
    /// Milliseconds per step: (step, ms), in order.
    timings: Vec<(&'static str, u64)>,
}

impl Stats {
    fn json(&self) -> Value {
        let counts = self.outcome.as_ref().map(|(o, _, _)| o.counts);
        json!({
            "drawId": self.draw_id,
            "campaignId": self.campaign_id,
            "marketId": self.market_id,
            "status": self.status,
            "existingRecord": self.existing,
            "entries": self.entries,
            "unscored": self.unscored,
            "selectionCount": self.selection_count,
            "waitlistCount": self.waitlist_count,
            "winners": counts.map(|c| c.winners),
            "waitlist": counts.map(|c| c.waitlist),
            "losers": counts.map(|c| c.losers),
            "seed": self.outcome.as_ref().map(|(_, seed, _)| seed),
            "inputDigest": self.outcome.as_ref().map(|(_, _, d)| d),
            "resultDigest": self.outcome.as_ref().map(|(o, _, _)| &o.result_digest),
            "reservations": self.reservations,
            "codes": self.codes,
            "batches": self.batches,
            "enqueued": self.enqueued,
            "finished": self.finished,
            "timingsMs": self.timings.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        })
    }
}

/// Runs one invocation: `{"stats": {…}, "errors": [{"reason", "message"}…]}`;
/// a payload that is not one is an `InvalidInput` error.
pub fn run(settings: &Settings, payload: Value) -> Result<Value, InvokeError> {
    let payload = Payload::parse(payload)?;
    let mut stats = Stats {
        draw_id: payload.draw_id(),
        campaign_id: payload.campaign_id.clone(),
        market_id: payload.market_id.clone(),
        ..Stats::default()
    };
    let mut errors: Vec<Failure> = Vec::new();
    if let Err(failures) = execute(settings, &payload, &mut stats) {
        errors = failures;
    }
    for e in &errors {
        usher_sdk::warn!(draw = stats.draw_id, reason = e.reason; "{}", e.message);
    }
    Ok(json!({
        "stats": stats.json(),
        "errors": errors.iter().map(Failure::json).collect::<Vec<_>>(),
    }))
}

type Step<T> = Result<T, Vec<Failure>>;

fn fail<T>(reason: &'static str, message: impl Into<String>) -> Step<T> {
    Err(vec![Failure::new(reason, message)])
}

fn execute(settings: &Settings, payload: &Payload, stats: &mut Stats) -> Step<()> {
    let draw_id = stats.draw_id.clone();
    let (campaign, market) = (payload.campaign_id.as_str(), payload.market_id.as_str());

    // 1. An earlier run's record: its seed and counts, never a second draw.
    let mut existing = read_record(settings, &draw_id)?;
    if let Some(r) = &existing {
        check_payload_against(payload, r)?;
    }

    // 2. The counts: the record's, the payload's, or the market's.
    let (selection_count, waitlist_count) = match &existing {
        Some(r) => (r.selection_count, r.waitlist_count),
        None => match (payload.selection_count, payload.waitlist_count) {
            (Some(s), Some(w)) => (s, w),
            (s, w) => {
                let m = read_market(settings, campaign, market)?;
                (
                    s.unwrap_or(m.selection_count),
                    w.unwrap_or(m.waitlist_count),
                )
            }
        },
    };
    stats.selection_count = Some(selection_count);
    stats.waitlist_count = Some(waitlist_count);

    // 3. Every entry of the market.
    let mut clock = Clock::start();
    let (inputs, unscored) = read_entries(settings, campaign, market)?;
    stats.timings.push(("readEntries", clock.lap()));
    stats.entries = Some(inputs.len() as u64);
    stats.unscored = unscored;
    if inputs.is_empty() {
        return fail(
            "no-entries",
            format!("market {market} of campaign {campaign} has no entries in the Entry Service: nothing to draw"),
        );
    }

    // 4. The draw (or its recomputation from the record).
    let mut record = match existing.take() {
        Some(r) => {
            let outcome = recompute(&inputs, &r)?;
            stats.outcome = Some((outcome, r.seed.clone(), inputs.digest().to_string()));
            stats.existing = true;
            r
        }
        None => {
            let seed = payload
                .seed
                .clone()
                .unwrap_or_else(|| fresh_seed(&draw_id, inputs.digest()));
            let outcome = draw::draw(&inputs, &seed, selection_count, waitlist_count);
            check_pool(settings, campaign, market, outcome.counts.winners)?;
            let record = new_record(
                payload,
                &draw_id,
                &seed,
                selection_count,
                waitlist_count,
                &inputs,
                &outcome,
            );
            stats.outcome = Some((outcome, seed, inputs.digest().to_string()));
            record
        }
    };
    stats.status = Some(record.status);
    stats.timings.push(("draw", clock.lap()));
    let counts = match &stats.outcome {
        Some((o, _, _)) => o.counts,
        None => return fail("internal", "no outcome"),
    };
    let expected = VerdictCounts {
        winners: counts.winners,
        losers: counts.losers,
        waitlisted: counts.waitlist,
    };

    // 5. PROCESSING (a draw already FINISHED answers 409: go on, it is a re-run).
    report_stats(
        settings,
        campaign,
        market,
        &draw_id,
        "PROCESSING",
        inputs.len() as u64,
        expected,
        true,
    )?;

    // 6. The record, before anything is reserved or enqueued.
    if !stats.existing {
        match write_record(settings, &record)? {
            None => {}
            Some(theirs) => {
                // A concurrent run recorded this draw first: follow its record.
                check_payload_against(payload, &theirs)?;
                let outcome = recompute(&inputs, &theirs)?;
                stats.outcome = Some((outcome, theirs.seed.clone(), inputs.digest().to_string()));
                stats.existing = true;
                record = theirs;
            }
        }
    }
    let outcome = match &stats.outcome {
        Some((o, _, _)) => o,
        None => return fail("internal", "no outcome"),
    };
    stats.timings.push(("processingAndRecord", clock.lap()));

    // 7. The winners' codes: the same reservations on every run.
    let codes = reserve(settings, &record)?;
    stats.reservations = record.reservations;
    stats.codes = codes.len() as u64;
    if record.status == DrawStatus::Drawn {
        set_status(settings, &mut record, DrawStatus::Reserved)?;
    }
    stats.status = Some(record.status);
    stats.timings.push(("reserve", clock.lap()));

    // 8. Every selection, in rank order, 25 to a message.
    let mut progress = (0u64, 0u64);
    let sent = enqueue(settings, &record, &inputs, outcome, &codes, &mut progress);
    (stats.batches, stats.enqueued) = progress;
    stats.timings.push(("enqueue", clock.lap()));
    sent?;

    // 9. FINISHED, and the record says so.
    report_stats(
        settings,
        campaign,
        market,
        &draw_id,
        "FINISHED",
        inputs.len() as u64,
        expected,
        false,
    )?;
    stats.finished = true;
    if record.status != DrawStatus::Enqueued {
        set_status(settings, &mut record, DrawStatus::Enqueued)?;
    }
    stats.timings.push(("finish", clock.lap()));
    stats.status = Some(record.status);
    Ok(())
}

fn check_payload_against(payload: &Payload, r: &DrawRecord) -> Step<()> {
    let mut problems = Vec::new();
    if r.campaign_id != payload.campaign_id || r.market_id != payload.market_id {
        problems.push(format!(
            "draw {} is recorded for campaign {} market {}, not campaign {} market {}",
            r.draw_id, r.campaign_id, r.market_id, payload.campaign_id, payload.market_id
        ));
    }
    if payload
        .selection_count
        .is_some_and(|s| s != r.selection_count)
    {
        problems.push(format!(
            "draw {} is recorded with selectionCount {}, the payload asks {}",
            r.draw_id,
            r.selection_count,
            payload.selection_count.unwrap_or_default()
        ));
    }
    if payload
        .waitlist_count
        .is_some_and(|w| w != r.waitlist_count)
    {
        problems.push(format!(
            "draw {} is recorded with waitlistCount {}, the payload asks {}",
            r.draw_id,
            r.waitlist_count,
            payload.waitlist_count.unwrap_or_default()
        ));
    }
    if payload.seed.as_ref().is_some_and(|s| *s != r.seed) {
        problems.push(format!(
            "draw {} is recorded with another seed than the payload's",
            r.draw_id
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems
            .into_iter()
            .map(|p| {
                Failure::new(
                    "record-mismatch",
                    format!("{p}: not re-drawing (use another drawId for another draw)"),
                )
            })
            .collect())
    }
}

/// The draw recomputed from a record: the entries must be the recorded ones.
fn recompute(inputs: &DrawInputs, r: &DrawRecord) -> Step<DrawOutcome> {
    if r.rule != RULE {
        return fail(
            "unknown-rule",
            format!(
                "draw {} was made with rule {}, this worker knows {RULE}",
                r.draw_id, r.rule
            ),
        );
    }
    if inputs.digest() != r.input_digest {
        return fail(
            "entries-changed",
            format!(
                "the entries changed since draw {} was recorded: {} entries with input digest {} then, {} with {} now; not re-drawing",
                r.draw_id,
                r.entries,
                r.input_digest,
                inputs.len(),
                inputs.digest()
            ),
        );
    }
    let outcome = draw::draw(inputs, &r.seed, r.selection_count, r.waitlist_count);
    if outcome.result_digest != r.result_digest {
        return fail(
            "result-mismatch",
            format!(
                "recomputing draw {} gives result digest {}, the record says {}",
                r.draw_id, outcome.result_digest, r.result_digest
            ),
        );
    }
    Ok(outcome)
}

#[allow(clippy::too_many_arguments)]
fn new_record(
    payload: &Payload,
    draw_id: &str,
    seed: &str,
    selection_count: u64,
    waitlist_count: u64,
    inputs: &DrawInputs,
    outcome: &DrawOutcome,
) -> DrawRecord {
    let now = now_rfc3339();
    DrawRecord {
        draw_id: draw_id.to_string(),
        campaign_id: payload.campaign_id.clone(),
        market_id: payload.market_id.clone(),
        rule: RULE.to_string(),
        seed: seed.to_string(),
        selection_count,
        waitlist_count,
        entries: inputs.len() as u64,
        counts: outcome.counts,
        input_digest: inputs.digest().to_string(),
        result_digest: outcome.result_digest.clone(),
        reservation_id: draw_id.to_string(),
        reservations: reservation_count(outcome.counts.winners) as u64,
        created_at: now.clone(),
        updated_at: now,
        status: DrawStatus::Drawn,
        batch_order: BatchOrder::Fan,
        other: Default::default(),
    }
}

// ------------------------------------------------------------------ services

fn service_failure(reason: &'static str, what: &str, e: &Error) -> Vec<Failure> {
    vec![Failure::new(reason, format!("{what}: {e}"))]
}

fn status_failure(reason: &'static str, what: &str, r: &Response) -> Vec<Failure> {
    let body: String = r.body.chars().take(300).collect();
    vec![Failure::new(
        reason,
        format!("{what}: status {} {body}", r.status),
    )]
}

fn read_market(settings: &Settings, campaign: &str, market: &str) -> Step<Market> {
    let path = format!(
        "/campaigns/{}/markets/{}",
        percent_encode(campaign),
        percent_encode(market)
    );
    let what = format!("reading market {market} of campaign {campaign} from the Campaign Service");
    let r = services::get(&settings.campaigns, &path)
        .map_err(|e| service_failure("campaign-service", &what, &e))?;
    match r.status {
        200..=299 => r.json::<Market>().map_err(|e| {
            vec![Failure::new(
                "campaign-service",
                format!("{what}: the answer is not a market: {e}"),
            )]
        }),
        404 => fail(
            "unknown-market",
            format!("the Campaign Service knows no market {market} of campaign {campaign}"),
        ),
        _ => Err(status_failure("campaign-service", &what, &r)),
    }
}

/// Every entry of the market, page by page; how many had no usable score.
pub fn read_entries(settings: &Settings, campaign: &str, market: &str) -> Step<(DrawInputs, u64)> {
    let mut entries = Vec::new();
    let mut unscored = 0u64;
    let mut after: Option<String> = None;
    loop {
        let path = market_entries_path(campaign, market, settings.page_size, after.as_deref());
        let what = format!("reading the entries of market {market} from the Entry Service");
        let r = services::get(&settings.entries, &path)
            .map_err(|e| service_failure("entry-service", &what, &e))?;
        if !r.is_success() {
            return Err(status_failure("entry-service", &what, &r));
        }
        let page: EntriesPage = r.json().map_err(|e| {
            vec![Failure::new(
                "entry-service",
                format!("{what}: the answer is not a page of entries: {e}"),
            )]
        })?;
        unscored += page.entries.iter().filter(|e| e.score.is_none()).count() as u64;
        entries.extend(page.entries.into_iter().map(|e| e.draw_entry()));
        match page.next.filter(|n| !n.is_empty()) {
            Some(next) if after.as_deref() == Some(next.as_str()) => {
                return fail(
                    "entry-service",
                    format!("{what}: the Entry Service answered the same cursor {next} twice"),
                )
            }
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let inputs = DrawInputs::new(entries)
        .map_err(|e| vec![Failure::new("bad-entries", format!("market {market}: {e}"))])?;
    Ok((inputs, unscored))
}

fn check_pool(settings: &Settings, campaign: &str, market: &str, winners: u64) -> Step<()> {
    if winners == 0 {
        return Ok(());
    }
    let path = format!(
        "/pools/{}/{}",
        percent_encode(campaign),
        percent_encode(market)
    );
    let what = format!("reading the code pool of market {market} from the Code Service");
    let r = services::get(&settings.codes, &path)
        .map_err(|e| service_failure("code-service", &what, &e))?;
    match r.status {
        200..=299 => {
            let available = r
                .json::<Value>()
                .ok()
                .and_then(|v| v.get("available").and_then(Value::as_u64));
            match available {
                Some(a) if a >= winners => Ok(()),
                Some(a) => fail(
                    "not-enough-codes",
                    format!("market {market} has {a} codes available and {winners} winners to draw: load codes (or lower the selection count); nothing was drawn"),
                ),
                None => fail(
                    "code-service",
                    format!("{what}: the answer has no `available` count"),
                ),
            }
        }
        404 => fail(
            "no-codes",
            format!("market {market} of campaign {campaign} has no code pool: load codes first; nothing was drawn"),
        ),
        _ => Err(status_failure("code-service", &what, &r)),
    }
}

#[allow(clippy::too_many_arguments)]
fn report_stats(
    settings: &Settings,
    campaign: &str,
    market: &str,
    draw_id: &str,
    status: &str,
    entries: u64,
    expected: VerdictCounts,
    conflict_is_fine: bool,
) -> Step<()> {
    let path = format!(
        "/campaigns/{}/markets/{}/stats",
        percent_encode(campaign),
        percent_encode(market)
    );
    let body =
        json!({"status": status, "drawId": draw_id, "entries": entries, "expected": expected});
    let what = format!("reporting {status} to the Campaign Service");
    let request = Request::new(&settings.campaigns, Method::Put, path)
        .json(&body)
        .map_err(|e| service_failure("campaign-service", &what, &e))?;
    let r = services::call(&request).map_err(|e| service_failure("campaign-service", &what, &e))?;
    match r.status {
        200..=299 => Ok(()),
        409 if conflict_is_fine => {
            usher_sdk::info!(draw = draw_id; "the market's stats are FINISHED already: a re-run");
            Ok(())
        }
        404 => fail(
            "unknown-market",
            format!("{what}: the Campaign Service knows no market {market} of campaign {campaign}"),
        ),
        _ => Err(status_failure("campaign-service", &what, &r)),
    }
}

/// Reserves every winner's code: reservation `n` is `<reservationId>#<n>`
/// with [`MAX_RESERVATION`] codes (the last fewer), all of them at once
/// (`call_many`). The codes in rank order.
pub fn reserve(settings: &Settings, record: &DrawRecord) -> Step<Vec<String>> {
    let winners = record.counts.winners as usize;
    let n = reservation_count(record.counts.winners);
    let mut requests = Vec::with_capacity(n);
    let mut wanted = Vec::with_capacity(n);
    for i in 0..n {
        let count = MAX_RESERVATION.min(winners - i * MAX_RESERVATION);
        let id = reservation_id(&record.reservation_id, i);
        let body = json!({
            "reservationId": id,
            "campaignId": record.campaign_id,
            "marketId": record.market_id,
            "count": count,
        });
        let request = Request::new(&settings.codes, Method::Post, "/reservations")
            .json(&body)
            .map_err(|e| service_failure("code-service", "a reservation", &e))?;
        requests.push(request);
        wanted.push((id, count));
    }
    let mut codes = Vec::with_capacity(winners);
    let mut failures = Vec::new();
    for (chunk, wanted) in requests
        .chunks(CALL_MANY_MAX)
        .zip(wanted.chunks(CALL_MANY_MAX))
    {
        let answers = services::call_many(chunk)
            .map_err(|e| service_failure("code-service", "reserving codes", &e))?;
        for (answer, (id, count)) in answers.into_iter().zip(wanted) {
            let what = format!("reservation {id} of {count} codes");
            match answer {
                Err(e) => failures.extend(service_failure("code-service", &what, &e)),
                Ok(r) if r.is_success() => {
                    let got: Option<Vec<String>> = r
                        .json::<Value>()
                        .ok()
                        .and_then(|v| v.get("codes").cloned())
                        .and_then(|c| serde_json::from_value(c).ok());
                    match got {
                        Some(got) if got.len() == *count => codes.extend(got),
                        Some(got) => failures.push(Failure::new(
                            "code-service",
                            format!("{what}: the Code Service answered {} codes", got.len()),
                        )),
                        None => failures.push(Failure::new(
                            "code-service",
                            format!("{what}: the answer has no list of codes"),
                        )),
                    }
                }
                Ok(r) if r.status == 409 => {
                    let available = r
                        .json::<Value>()
                        .ok()
                        .and_then(|v| v.get("available").and_then(Value::as_u64));
                    failures.push(Failure::new(
                        "not-enough-codes",
                        format!(
                            "{what}: the Code Service has {} available; no selection was enqueued (load codes and run the draw again: the same winners, the reservations made are kept)",
                            available.map_or("fewer".to_string(), |a| a.to_string())
                        ),
                    ));
                }
                Ok(r) => failures.extend(status_failure("code-service", &what, &r)),
            }
        }
    }
    if failures.is_empty() {
        Ok(codes)
    } else {
        Err(failures)
    }
}

/// The draw's fans as (index into the inputs, rank), in the record's
/// [`BatchOrder`]: position `p` goes to message `batch` `p / 25`.
fn batch_positions(order: BatchOrder, outcome: &DrawOutcome) -> Vec<(u32, u64)> {
    match order {
        BatchOrder::Rank => outcome
            .order
            .iter()
            .enumerate()
            .map(|(rank, &index)| (index, rank as u64))
            .collect(),
        BatchOrder::Fan => outcome
            .ranks()
            .into_iter()
            .enumerate()
            // At most u32::MAX entries (checked by DrawInputs).
            .map(|(index, rank)| (index as u32, u64::from(rank)))
            .collect(),
    }
}

/// Sends every selection in the record's [`BatchOrder`],
/// [`SELECTIONS_PER_MESSAGE`] to a message, `send_chunk` messages per
/// `send_batch`: (messages, selections).
fn enqueue(
    settings: &Settings,
    record: &DrawRecord,
    inputs: &DrawInputs,
    outcome: &DrawOutcome,
    codes: &[String],
    progress: &mut (u64, u64),
) -> Step<()> {
    let per_send = SELECTIONS_PER_MESSAGE * settings.send_chunk;
    let positions = batch_positions(record.batch_order, outcome);
    let mut failures = Vec::new();
    let mut sent_messages = 0u64;
    let mut sent_selections = 0u64;
    for (group_no, group) in positions.chunks(per_send).enumerate() {
        let first_batch = group_no * settings.send_chunk;
        let mut messages = Vec::with_capacity(settings.send_chunk);
        let mut sizes = Vec::with_capacity(settings.send_chunk);
        for (i, batch) in group.chunks(SELECTIONS_PER_MESSAGE).enumerate() {
            let selections: Vec<Selection> = batch
                .iter()
                .map(|&(index, rank)| {
                    let verdict = outcome.counts.verdict(rank);
                    Selection {
                        global_user_id: inputs.entries()[index as usize].global_user_id.clone(),
                        verdict,
                        code: (verdict == Verdict::Winner)
                            .then(|| codes.get(rank as usize).cloned())
                            .flatten(),
                        rank,
                    }
                })
                .collect();
            if selections
                .iter()
                .any(|s| s.verdict == Verdict::Winner && s.code.is_none())
            {
                return fail(
                    "internal",
                    "a winner without a reserved code: nothing more enqueued",
                );
            }
            let message = SelectionBatch {
                campaign_id: record.campaign_id.clone(),
                market_id: record.market_id.clone(),
                draw_id: record.draw_id.clone(),
                batch: (first_batch + i) as u64,
                selections,
            };
            sizes.push(message.selections.len() as u64);
            messages.push(
                Outgoing::json(&message)
                    .map_err(|e| service_failure("internal", "a selection message", &e))?
                    .attribute("drawId", record.draw_id.as_str()),
            );
        }
        match queue::send_batch(&settings.queue, &messages) {
            Err(e) => failures.push(Failure::new(
                "queue",
                format!(
                    "sending {} selection messages to {}: {e}",
                    messages.len(),
                    settings.queue
                ),
            )),
            Ok(results) => {
                for (k, (result, size)) in results.into_iter().zip(&sizes).enumerate() {
                    match result {
                        Ok(_) => {
                            sent_messages += 1;
                            sent_selections += size;
                        }
                        Err(e) => failures.push(Failure::new(
                            "queue",
                            format!(
                                "selection batch {} to {}: {e}",
                                first_batch + k,
                                settings.queue
                            ),
                        )),
                    }
                }
            }
        }
    }
    *progress = (sent_messages, sent_selections);
    if failures.is_empty() {
        Ok(())
    } else {
        failures.truncate(20);
        failures.push(Failure::new(
            "queue",
            "not every selection was enqueued: FINISHED is not reported; run the draw again (the same draw, the batches again; the save side is idempotent)",
        ));
        Err(failures)
    }
}

// ------------------------------------------------------------------ the record

fn read_record(settings: &Settings, draw_id: &str) -> Step<Option<DrawRecord>> {
    let item: Option<Value> =
        table::get(&settings.table, &DrawRecord::key(draw_id)).map_err(|e| {
            service_failure(
                "table",
                &format!("reading the record of draw {draw_id}"),
                &e,
            )
        })?;
    item.map(|i| {
        DrawRecord::from_item(i).map_err(|e| {
            vec![Failure::new(
                "bad-record",
                format!("the record of draw {draw_id} is not a draw record: {e}"),
            )]
        })
    })
    .transpose()
}

/// Writes a new record (only when none exists); the record already there
/// when another run wrote it first.
fn write_record(settings: &Settings, record: &DrawRecord) -> Step<Option<DrawRecord>> {
    let item = record
        .to_item()
        .map_err(|e| vec![Failure::new("internal", format!("the draw record: {e}"))])?;
    match table::put(&settings.table, &item, Some(table::Condition::NotExists)) {
        Ok(()) => Ok(None),
        Err(e) if e.is_condition_failed() => match read_record(settings, &record.draw_id)? {
            Some(theirs) => Ok(Some(theirs)),
            None => fail(
                "table",
                format!(
                    "the record of draw {} exists and cannot be read",
                    record.draw_id
                ),
            ),
        },
        Err(e) => Err(service_failure(
            "table",
            &format!("writing the record of draw {}", record.draw_id),
            &e,
        )),
    }
}

fn set_status(settings: &Settings, record: &mut DrawRecord, status: DrawStatus) -> Step<()> {
    let now = now_rfc3339();
    table::update::<Value>(
        &settings.table,
        &DrawRecord::key(&record.draw_id),
        &json!({"status": status, "updatedAt": now}),
        &[],
        Some(table::Condition::Exists),
    )
    .map_err(|e| {
        service_failure(
            "table",
            &format!("recording draw {} as {status:?}", record.draw_id),
            &e,
        )
    })?;
    record.status = status;
    record.updated_at = now;
    Ok(())
}

// ------------------------------------------------------------------ seed and time

/// Wall-clock laps for the answer's `timingsMs` (the P8 profile).
struct Clock(std::time::Instant);

impl Clock {
    fn start() -> Clock {
        Clock(std::time::Instant::now())
    }

    /// Milliseconds since the start or the previous lap.
    fn lap(&mut self) -> u64 {
        let now = std::time::Instant::now();
        let ms = now.duration_since(self.0).as_millis() as u64;
        self.0 = now;
        ms
    }
}

/// A fresh seed: SHA-256 of the draw id, the input digest, the clock and two
/// numbers from the host's random source (std's `RandomState` keys come
/// from WASI `random`), 32 hex digits.
fn fresh_seed(draw_id: &str, input_digest: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let a = RandomState::new().hash_one(draw_id);
    let b = RandomState::new().hash_one(nanos);
    let mut seed = draw::sha256_hex(&[
        draw_id.as_bytes(),
        input_digest.as_bytes(),
        &nanos.to_be_bytes(),
        &a.to_be_bytes(),
        &b.to_be_bytes(),
    ]);
    seed.truncate(32);
    seed
}

/// Now as RFC 3339 UTC ([`usher_domain::rfc3339::now`]).
pub fn now_rfc3339() -> String {
    usher_domain::rfc3339::now()
}

#[cfg(test)]
mod tests;
