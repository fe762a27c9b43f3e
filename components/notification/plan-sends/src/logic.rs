//! plan-sends' logic: plans each due notification of a market as e-mail
//! jobs spread at the target rate, and sends them to the User Service.

use usher_domain::notification::sdk::{market_fans, notifications, read_slots};
use usher_domain::notification::{
    ceil_second, market_prefix, rate_key, slot_key, slots_of, Layout, Notification, Plan, State,
};
use usher_domain::rfc3339;
use usher_sdk::json::json;
use usher_sdk::services::{self, Method, Request};
use usher_sdk::table::{self, Condition, PutItem};
use usher_sdk::{InvokeError, Value};

/// How often a notification is read again after another attempt moved it
/// (a takeover, a concurrent plan), and the rate cursor after a race.
const ATTEMPTS: usize = 8;
/// Requests per `services.call-many` crossing (the host's limit is 256).
const REQUESTS_PER_CALL: usize = 200;
/// Slot items per `table.put-many` call.
const PUTS_PER_CALL: usize = 100;

/// The worker's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The notifications table (`table`, default `notifications`).
    pub table: String,
    /// The Entry Service (`entries_service`, default `entries`).
    pub entries: String,
    /// The User Service (`users_service`, default `users`).
    pub users: String,
    /// Fans per second at most (`target_rate_per_s`, default 10).
    pub target_rate_per_s: f64,
    /// Entry Service page size (`page_size`, default 1000, 1..=5000).
    pub page_size: u32,
    /// The worker asked for the due markets with `{}` (`markets_worker`,
    /// default `notification/get-markets-to-notify`).
    pub markets_worker: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            table: "notifications".into(),
            entries: "entries".into(),
            users: "users".into(),
            target_rate_per_s: usher_domain::notification::DEFAULT_RATE_PER_S,
            page_size: 1000,
            markets_worker: "notification/get-markets-to-notify".into(),
        }
    }
}

impl Settings {
    /// From the worker's settings, defaults for absent keys.
    pub fn load() -> usher_sdk::Result<Settings> {
        use usher_sdk::config;
        let d = Settings::default();
        Ok(Settings {
            table: config::string_or("table", &d.table)?,
            entries: config::string_or("entries_service", &d.entries)?,
            users: config::string_or("users_service", &d.users)?,
            target_rate_per_s: config::get_or("target_rate_per_s", d.target_rate_per_s)?,
            page_size: config::get_or("page_size", d.page_size)?.clamp(1, 5000),
            markets_worker: config::string_or("markets_worker", &d.markets_worker)?,
        })
    }
}

/// A market of the payload or of get-markets-to-notify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Market {
    /// The campaign.
    pub campaign: String,
    /// The market.
    pub market: String,
}

fn id_of(v: &Value, name: &str) -> Result<Option<String>, InvokeError> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && !s.contains('#') => Ok(Some(s.clone())),
        Some(other) => Err(InvokeError::invalid_input(format!(
            "{name} must be a non-empty string without '#', not {other}"
        ))),
    }
}

/// The payload's markets (`{"campaignId","marketId"}`), or, for `{}`, the
/// due markets of get-markets-to-notify; and the payload's `now` (tests).
pub fn markets_of(
    settings: &Settings,
    payload: &Value,
) -> Result<(Vec<Market>, Option<i64>), InvokeError> {
    if !payload.is_object() {
        return Err(InvokeError::invalid_input(
            "the payload must be an object: {} or {\"campaignId\",\"marketId\"}",
        ));
    }
    let now = match payload.get("now") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(rfc3339::parse_millis(s).ok_or_else(|| {
            InvokeError::invalid_input(format!("now must be an RFC 3339 time, not {s:?}"))
        })?),
        Some(other) => {
            return Err(InvokeError::invalid_input(format!(
                "now must be an RFC 3339 time, not {other}"
            )))
        }
    };
    match (id_of(payload, "campaignId")?, id_of(payload, "marketId")?) {
        (Some(campaign), Some(market)) => Ok((vec![Market { campaign, market }], now)),
        (None, None) => {
            let mut ask = json!({});
            if let Some(n) = payload.get("now") {
                ask["now"] = n.clone();
            }
            let due: Value =
                usher_sdk::workers::invoke(&settings.markets_worker, &ask).map_err(|e| {
                    InvokeError::new(
                        "Unavailable",
                        format!(
                            "asking {} for the due markets: {e}",
                            settings.markets_worker
                        ),
                    )
                })?;
            let list = due
                .get("markets")
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    InvokeError::internal(format!(
                        "{} answered no `markets`: {due}",
                        settings.markets_worker
                    ))
                })?;
            let mut out = Vec::new();
            for m in list {
                if let (Some(c), Some(k)) = (id_of(m, "campaignId")?, id_of(m, "marketId")?) {
                    out.push(Market {
                        campaign: c,
                        market: k,
                    });
                }
            }
            Ok((out, now))
        }
        _ => Err(InvokeError::invalid_input(
            "campaignId and marketId go together (or neither, for every due market)",
        )),
    }
}

/// What planning one notification gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Fans in jobs the User Service holds.
    pub planned: u64,
    /// Jobs the User Service holds.
    pub jobs: u64,
    /// Jobs it already had (a retry).
    pub duplicates: u64,
}

fn error(n: &Notification, reason: &str, message: impl Into<String>) -> Value {
    json!({"campaignId": n.campaign_id, "marketId": n.market_id,
           "notificationId": n.notification_id, "reason": reason, "message": message.into()})
}

/// Plans every due notification of the payload's markets at `now_ms`:
/// `{"plannedCount","jobs","duplicates","notifications","markets","targetRatePerS","errors":[…]}`.
/// A failure of one notification is an entry of `errors` (`reason`:
/// entry-service, user-service, table, conflict, settings); run again, it
/// picks up where it stopped.
pub fn run(settings: &Settings, payload: &Value, now_ms: i64) -> Result<Value, InvokeError> {
    let (markets, now) = markets_of(settings, payload)?;
    let now_ms = now.unwrap_or(now_ms);
    let layout = Layout::for_rate(settings.target_rate_per_s).map_err(InvokeError::internal)?;
    let mut total = Outcome::default();
    let mut errors = Vec::new();
    let mut count = 0u64;
    for m in &markets {
        let notes = notifications(&settings.table, &market_prefix(&m.campaign, &m.market))
            .map_err(|e| InvokeError::new("Unavailable", e))?;
        for n in notes.into_iter().filter(|n| n.is_due(now_ms)) {
            count += 1;
            match plan_notification(settings, layout, n.clone(), now_ms) {
                Ok(o) => {
                    total.planned += o.planned;
                    total.jobs += o.jobs;
                    total.duplicates += o.duplicates;
                }
                Err((reason, message)) => {
                    usher_sdk::warn!(notification = n.notification_id, reason = reason, error = message; "not planned");
                    errors.push(error(&n, reason, message));
                }
            }
        }
    }
    Ok(json!({
        "plannedCount": total.planned, "jobs": total.jobs, "duplicates": total.duplicates,
        "notifications": count, "markets": markets.len(),
        "targetRatePerS": settings.target_rate_per_s, "errors": errors,
    }))
}

type Failed = (&'static str, String);

fn read(settings: &Settings, key: &Value) -> Result<Notification, Failed> {
    table::get::<Notification>(&settings.table, key)
        .map_err(|e| ("table", format!("reading the notification: {e}")))?
        .ok_or_else(|| ("table", "the notification is gone".to_string()))
}

/// Drives one notification to ENQUEUED (or DONE with nobody to remind).
pub fn plan_notification(
    settings: &Settings,
    layout: Layout,
    mut n: Notification,
    now_ms: i64,
) -> Result<Outcome, Failed> {
    let key = n.key();
    // A PLANNING left by another attempt is taken over at once (it may have
    // died with `usher up`), but not by an attempt whose own plan was taken
    // over meanwhile: two live attempts never keep undoing each other.
    let mut may_take_over = true;
    for _ in 0..ATTEMPTS {
        match (n.state, n.plan.clone()) {
            (State::Done, plan) | (State::Enqueued, plan) => {
                let plan = plan.unwrap_or_else(|| empty_plan(&n));
                return Ok(Outcome {
                    planned: plan.fans,
                    jobs: plan.slots,
                    duplicates: plan.slots,
                });
            }
            (State::Planned, Some(plan)) => return send_jobs(settings, &n, &plan),
            (State::Planning, _) if !may_take_over => {
                return Err((
                    "conflict",
                    format!(
                        "{} is being planned by another attempt; run again",
                        n.notification_id
                    ),
                ))
            }
            _ => {
                if !make_plan(settings, layout, &n, now_ms)? {
                    may_take_over = false;
                }
            }
        }
        n = read(settings, &key)?;
    }
    Err((
        "conflict",
        format!("{} kept moving under this attempt", n.notification_id),
    ))
}

fn empty_plan(n: &Notification) -> Plan {
    Plan {
        plan_id: n.plan_id.clone().unwrap_or_default(),
        start_ms: 0,
        layout: Layout {
            fans_per_job: 1,
            spacing_ms: 1000,
        },
        slots: 0,
        fans: 0,
    }
}

fn plan_id(n: &Notification, now_ms: i64) -> String {
    let cid: String = usher_sdk::log::correlation_id()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(24)
        .collect();
    format!("{now_ms}-{cid}-{}", n.triggered_slots)
}

/// Claims the notification for a new plan (DUE, or PLANNING by an attempt
/// that may have died: taken over), writes the plan's slots and fixes it
/// (PLANNED) on condition that no other attempt took it over meanwhile.
/// Answers whether this attempt's plan was fixed; `false` (no error) when
/// another attempt moved the notification first (the caller reads it again).
fn make_plan(
    settings: &Settings,
    layout: Layout,
    n: &Notification,
    now_ms: i64,
) -> Result<bool, Failed> {
    let t = &settings.table;
    let id = plan_id(n, now_ms);
    let condition = match (n.state, &n.plan_id) {
        (State::Planning, Some(p)) => Condition::AttributeEquals("planId".into(), json!(p)),
        (State::Planning, None) | (State::Due, _) => {
            Condition::AttributeEquals("state".into(), json!(n.state))
        }
        // PLANNED without a plan: a record this code never writes.
        _ => {
            return Err((
                "table",
                format!("{} is {:?} without a plan", n.notification_id, n.state),
            ))
        }
    };
    let now = rfc3339::format_millis(now_ms);
    match table::update::<Value>(
        t,
        &n.key(),
        &json!({"state": State::Planning, "planId": id, "updatedAt": now}),
        &[],
        Some(condition),
    ) {
        Ok(_) => {}
        Err(e) if e.is_condition_failed() => return Ok(false),
        Err(e) => return Err(("table", format!("claiming the notification: {e}"))),
    }
    let fans = market_fans(
        &settings.entries,
        n.kind,
        &n.campaign_id,
        &n.market_id,
        &n.round,
        settings.page_size,
    )
    .map_err(|e| ("entry-service", e))?;
    let slots = layout.slots(fans.len());
    let start_ms = if slots == 0 {
        now_ms
    } else {
        reserve(settings, layout.window_ms(slots), now_ms)?
    };
    let planned = slots_of(&n.notification_id, &fans, layout, start_ms);
    for chunk in planned.chunks(PUTS_PER_CALL) {
        let puts = chunk
            .iter()
            .map(|s| {
                let mut item = slot_key(&n.notification_id, &id, s.slot);
                item["slot"] = json!(s.slot);
                item["jobId"] = json!(s.job_id);
                item["sendAt"] = json!(s.send_at);
                item["fans"] = json!(s.fans);
                PutItem {
                    item,
                    condition: None,
                }
            })
            .collect();
        let results =
            table::put_many(t, puts).map_err(|e| ("table", format!("writing the plan: {e}")))?;
        if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
            return Err(("table", format!("writing the plan: {e}")));
        }
    }
    let plan = Plan {
        plan_id: id.clone(),
        start_ms,
        layout,
        slots: slots as u64,
        fans: fans.len() as u64,
    };
    let state = if slots == 0 {
        State::Done
    } else {
        State::Planned
    };
    match table::update::<Value>(
        t,
        &n.key(),
        &json!({"state": state, "plan": plan, "triggeredSlots": 0, "updatedAt": now}),
        &[],
        Some(Condition::AttributeEquals("planId".into(), json!(id))),
    ) {
        Ok(_) => {
            usher_sdk::info!(notification = n.notification_id, plan = id, fans = fans.len(), slots = slots, start = rfc3339::format_millis(start_ms); "planned");
            Ok(true)
        }
        Err(e) if e.is_condition_failed() => Ok(false),
        Err(e) => Err(("table", format!("fixing the plan: {e}"))),
    }
}

/// Reserves `window_ms` of the send-rate cursor from `now_ms` (a whole
/// second) or where the last plan ends, whichever is later: the start.
fn reserve(settings: &Settings, window_ms: i64, now_ms: i64) -> Result<i64, Failed> {
    let t = &settings.table;
    for _ in 0..ATTEMPTS * 4 {
        let cursor = table::get::<Value>(t, &rate_key())
            .map_err(|e| ("table", format!("reading the rate cursor: {e}")))?;
        let (free, version, condition) = match &cursor {
            None => (0, 0, Condition::NotExists),
            Some(c) => {
                let v = c.get("version").and_then(Value::as_u64).unwrap_or(0);
                (
                    c.get("nextFreeMs").and_then(Value::as_i64).unwrap_or(0),
                    v,
                    Condition::AttributeEquals("version".into(), json!(v)),
                )
            }
        };
        let start = ceil_second(now_ms).max(free);
        let mut item = rate_key();
        item["nextFreeMs"] = json!(start + window_ms);
        item["version"] = json!(version + 1);
        match table::put(t, &item, Some(condition)) {
            Ok(()) => return Ok(start),
            Err(e) if e.is_condition_failed() => continue,
            Err(e) => return Err(("table", format!("reserving the send window: {e}"))),
        }
    }
    Err(("conflict", "the send-rate cursor kept changing".into()))
}

/// Sends every job of a fixed plan (the same ids, fans and sendAt every
/// time), then marks the notification ENQUEUED when all were taken.
fn send_jobs(settings: &Settings, n: &Notification, plan: &Plan) -> Result<Outcome, Failed> {
    let slots = read_slots(&settings.table, n, plan, 0).map_err(|e| ("table", e))?;
    let mut outcome = Outcome::default();
    let mut failures = Vec::new();
    for chunk in slots.chunks(REQUESTS_PER_CALL) {
        let requests = chunk
            .iter()
            .map(|s| {
                Request::new(&settings.users, Method::Post, "/email-jobs").json(&json!({
                    "jobId": s.job_id, "campaignId": n.campaign_id, "marketId": n.market_id,
                    "templateId": n.template_id, "fans": s.fans, "sendAt": s.send_at,
                }))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ("internal", format!("encoding a job: {e}")))?;
        let answers = services::call_many(&requests)
            .map_err(|e| ("user-service", format!("sending the jobs: {e}")))?;
        for (s, answer) in chunk.iter().zip(answers) {
            match answer {
                Ok(r) if r.status == 200 => {
                    let body: Value = r.json().unwrap_or(Value::Null);
                    outcome.jobs += 1;
                    outcome.planned += body
                        .get("enqueued")
                        .and_then(Value::as_u64)
                        .unwrap_or(s.fans.len() as u64);
                    if body.get("duplicate").and_then(Value::as_bool) == Some(true) {
                        outcome.duplicates += 1;
                    }
                }
                Ok(r) => failures.push(format!("job {}: {} {}", s.job_id, r.status, r.body)),
                Err(e) => failures.push(format!("job {}: {e}", s.job_id)),
            }
        }
    }
    if let Some(first) = failures.first() {
        return Err((
            "user-service",
            format!(
                "{} of {} jobs not taken (first: {first})",
                failures.len(),
                slots.len()
            ),
        ));
    }
    match table::update::<Value>(
        &settings.table,
        &n.key(),
        &json!({"state": State::Enqueued, "updatedAt": rfc3339::now()}),
        &[],
        Some(Condition::AttributeEquals(
            "state".into(),
            json!(State::Planned),
        )),
    ) {
        Ok(_) => {}
        Err(e) if e.is_condition_failed() => {}
        Err(e) => return Err(("table", format!("marking the jobs enqueued: {e}"))),
    }
    Ok(outcome)
}
