//! trigger-reminder-email's logic.

use usher_domain::notification::sdk::{job_path, notifications, read_slots};
use usher_domain::notification::{market_prefix, Notification, State};
use usher_domain::rfc3339;
use usher_sdk::json::json;
use usher_sdk::services::{self, Method, Request};
use usher_sdk::table::{self, Condition};
use usher_sdk::{InvokeError, Value};

/// Requests per `services.call-many` crossing (the host's limit is 256).
const REQUESTS_PER_CALL: usize = 200;

/// The worker's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The notifications table (`table`, default `notifications`).
    pub table: String,
    /// The User Service (`users_service`, default `users`).
    pub users: String,
    /// Asked for the due markets with `{}` (`markets_worker`).
    pub markets_worker: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            table: "notifications".into(),
            users: "users".into(),
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
            users: config::string_or("users_service", &d.users)?,
            markets_worker: config::string_or("markets_worker", &d.markets_worker)?,
        })
    }
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

fn markets_of(settings: &Settings, payload: &Value) -> Result<Vec<(String, String)>, InvokeError> {
    if !payload.is_object() {
        return Err(InvokeError::invalid_input(
            "the payload must be an object: {} or {\"campaignId\",\"marketId\"}",
        ));
    }
    match (id_of(payload, "campaignId")?, id_of(payload, "marketId")?) {
        (Some(c), Some(m)) => Ok(vec![(c, m)]),
        (None, None) => {
            let due: Value = usher_sdk::workers::invoke(&settings.markets_worker, &json!({}))
                .map_err(|e| {
                    InvokeError::new(
                        "Unavailable",
                        format!(
                            "asking {} for the due markets: {e}",
                            settings.markets_worker
                        ),
                    )
                })?;
            let mut out = Vec::new();
            for m in due
                .get("markets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let (Some(c), Some(k)) = (id_of(m, "campaignId")?, id_of(m, "marketId")?) {
                    out.push((c, k));
                }
            }
            Ok(out)
        }
        _ => Err(InvokeError::invalid_input(
            "campaignId and marketId go together (or neither, for every due market)",
        )),
    }
}

#[derive(Default)]
struct Tally {
    fans: u64,
    jobs: u64,
    already: u64,
    remaining: u64,
    next: Option<i64>,
}

/// Triggers the due jobs of the payload's markets at `now_ms` (see the
/// crate docs for the answer).
pub fn run(settings: &Settings, payload: &Value, now_ms: i64) -> Result<Value, InvokeError> {
    let markets = markets_of(settings, payload)?;
    let mut tally = Tally::default();
    let mut errors = Vec::new();
    for (c, m) in &markets {
        let notes = notifications(&settings.table, &market_prefix(c, m))
            .map_err(|e| InvokeError::new("Unavailable", e))?;
        for n in notes.into_iter().filter(|n| n.state != State::Done) {
            if let Err(e) = trigger(settings, &n, now_ms, &mut tally) {
                usher_sdk::warn!(notification = n.notification_id, error = e; "trigger failed");
                errors.push(json!({"campaignId": n.campaign_id, "marketId": n.market_id,
                                   "notificationId": n.notification_id, "reason": "user-service", "message": e}));
            }
        }
    }
    Ok(json!({
        "triggeredCount": tally.fans, "jobs": tally.jobs, "alreadyTriggered": tally.already,
        "remaining": tally.remaining,
        "nextSendAt": tally.next.map(rfc3339::format_millis),
        "errors": errors,
    }))
}

fn trigger(
    settings: &Settings,
    n: &Notification,
    now_ms: i64,
    tally: &mut Tally,
) -> Result<(), String> {
    let plan = match (&n.state, &n.plan) {
        (State::Enqueued, Some(plan)) => plan,
        _ => {
            // Not planned (or not all sent) yet: plan-sends' turn.
            let due = rfc3339::parse_millis(&n.due_at).unwrap_or(now_ms);
            tally.remaining += n.plan.as_ref().map_or(n.user_count, |p| p.fans);
            tally.next = Some(tally.next.map_or(due, |t| t.min(due)));
            return Ok(());
        }
    };
    let from = n.triggered_slots;
    let slots = read_slots(&settings.table, n, plan, from)?;
    let due: Vec<_> = slots
        .iter()
        .take_while(|s| rfc3339::parse_millis(&s.send_at).is_some_and(|t| t <= now_ms))
        .collect();
    // How many slots from `from` on were answered 200 without a gap.
    let mut done = 0usize;
    let mut first_error: Option<String> = None;
    'chunks: for chunk in due.chunks(REQUESTS_PER_CALL) {
        let requests: Vec<Request> = chunk
            .iter()
            .map(|s| {
                Request::new(
                    &settings.users,
                    Method::Post,
                    format!("{}/trigger", job_path(&s.job_id)),
                )
            })
            .collect();
        let answers = services::call_many(&requests).map_err(|e| format!("triggering: {e}"))?;
        for (s, answer) in chunk.iter().zip(answers) {
            match answer {
                Ok(r) if r.status == 200 => {
                    let body: Value = r.json().unwrap_or(Value::Null);
                    if body.get("triggered").and_then(Value::as_bool) == Some(true) {
                        tally.jobs += 1;
                        tally.fans += body
                            .get("fans")
                            .and_then(Value::as_u64)
                            .unwrap_or(s.fans.len() as u64);
                    } else {
                        tally.already += 1;
                    }
                    done += 1;
                }
                Ok(r) if r.status == 409 => break 'chunks,
                Ok(r) => {
                    first_error = Some(format!("job {}: {} {}", s.job_id, r.status, r.body));
                    break 'chunks;
                }
                Err(e) => {
                    first_error = Some(format!("job {}: {e}", s.job_id));
                    break 'chunks;
                }
            }
        }
    }
    let rest = &slots[done..];
    tally.remaining += rest.iter().map(|s| s.fans.len() as u64).sum::<u64>();
    if let Some(t) = rest.first().and_then(|s| rfc3339::parse_millis(&s.send_at)) {
        tally.next = Some(tally.next.map_or(t, |x| x.min(t)));
    }
    if done > 0 {
        let cursor = from + done as u64;
        let state = if cursor >= plan.slots {
            State::Done
        } else {
            State::Enqueued
        };
        match table::update::<Value>(
            &settings.table,
            &n.key(),
            &json!({"triggeredSlots": cursor, "state": state, "updatedAt": rfc3339::format_millis(now_ms)}),
            &[],
            Some(Condition::AttributeEquals(
                "triggeredSlots".into(),
                json!(from),
            )),
        ) {
            Ok(_) => {}
            // Another run moved the cursor: its own update counts.
            Err(e) if e.is_condition_failed() => {}
            Err(e) => return Err(format!("moving the trigger cursor: {e}")),
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
