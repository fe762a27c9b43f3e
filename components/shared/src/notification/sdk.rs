//! The notification workers' outside world through the capabilities
//! (feature `sdk`): the generator's rule (what `notification/notification-generator`
//! and `notification/generate-notifications` run), reading the recorded
//! notifications, and a market's fans from the Entry Service.

use serde_json::{json, Value};
use usher_sdk::services::{self, Method, Request};
use usher_sdk::table::{self, Condition};

use super::{
    plan_partition, slot_key, Notification, Plan, ReminderKind, Slot, State,
    NOTIFICATIONS_PARTITION,
};
use crate::assignment::encode_component;
use crate::rfc3339;

/// The generator's settings (registry `settings`).
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorSettings {
    /// The notifications table (`table`, default `notifications`).
    pub table: String,
    /// The Campaign Service (`campaigns_service`, default `campaigns`).
    pub campaigns: String,
    /// The Entry Service (`entries_service`, default `entries`).
    pub entries: String,
    /// Campaigns closing within this many hours get a closing reminder
    /// (`closing_window_hours`, default 48).
    pub closing_window_hours: f64,
    /// A closing reminder is due this many hours before the close
    /// (`closing_lead_hours`, default 24).
    pub closing_lead_hours: f64,
    /// Entry Service page size (`page_size`, default 1000, 1..=5000).
    pub page_size: u32,
}

impl Default for GeneratorSettings {
    fn default() -> Self {
        GeneratorSettings {
            table: "notifications".into(),
            campaigns: "campaigns".into(),
            entries: "entries".into(),
            closing_window_hours: 48.0,
            closing_lead_hours: 24.0,
            page_size: 1000,
        }
    }
}

impl GeneratorSettings {
    /// From the worker's settings, defaults for absent keys.
    pub fn load() -> usher_sdk::Result<GeneratorSettings> {
        use usher_sdk::config;
        let d = GeneratorSettings::default();
        Ok(GeneratorSettings {
            table: config::string_or("table", &d.table)?,
            campaigns: config::string_or("campaigns_service", &d.campaigns)?,
            entries: config::string_or("entries_service", &d.entries)?,
            closing_window_hours: config::get_or("closing_window_hours", d.closing_window_hours)?,
            closing_lead_hours: config::get_or("closing_lead_hours", d.closing_lead_hours)?,
            page_size: config::get_or("page_size", d.page_size)?.clamp(1, 5000),
        })
    }
}

/// A GET that must answer 200 with JSON (`Ok(None)` for a 404).
pub fn get_json(service: &str, path: &str) -> Result<Option<Value>, String> {
    let r = services::call(&Request::new(service, Method::Get, path))
        .map_err(|e| format!("GET {service}{path}: {e}"))?;
    match r.status {
        200 => r
            .json::<Value>()
            .map(Some)
            .map_err(|e| format!("GET {service}{path}: a malformed answer: {e}")),
        404 => Ok(None),
        s => Err(format!("GET {service}{path}: {s} {}", truncate(&r.body))),
    }
}

fn truncate(text: &str) -> &str {
    match text.char_indices().nth(300) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

fn cursor_text(next: &Value) -> Option<String> {
    match next {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The fans a reminder goes to, sorted and without repeats: every fan
/// registered in the market (closing; the Entry Service's market entries),
/// or every WINNER of the draw `round` (winner; its market selections).
pub fn market_fans(
    entries_service: &str,
    kind: ReminderKind,
    campaign: &str,
    market: &str,
    round: &str,
    page_size: u32,
) -> Result<Vec<String>, String> {
    let (list, key) = match kind {
        ReminderKind::Closing => ("entries", "entries"),
        ReminderKind::Winner => ("selections", "selections"),
    };
    let mut fans = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = format!(
            "/markets/{}/{list}?campaignId={}&limit={page_size}",
            encode_component(market),
            encode_component(campaign)
        );
        if let Some(a) = &after {
            path.push_str("&after=");
            path.push_str(&encode_component(a));
        }
        let page = get_json(entries_service, &path)?
            .ok_or_else(|| format!("GET {entries_service}{path}: 404"))?;
        let items = page
            .get(key)
            .and_then(Value::as_array)
            .ok_or_else(|| format!("GET {entries_service}{path}: no `{key}` array"))?;
        for item in items {
            let Some(fan) = item.get("globalUserId").and_then(Value::as_str) else {
                continue;
            };
            let wanted = match kind {
                ReminderKind::Closing => true,
                ReminderKind::Winner => {
                    item.get("verdict").and_then(Value::as_str) == Some("WINNER")
                        && item
                            .get("drawId")
                            .and_then(Value::as_str)
                            .is_none_or(|d| d == round)
                }
            };
            if wanted && !fan.is_empty() {
                fans.push(fan.to_string());
            }
        }
        match page.get("next").and_then(cursor_text) {
            Some(n) if !items.is_empty() => after = Some(n),
            _ => break,
        }
    }
    fans.sort_unstable();
    fans.dedup();
    Ok(fans)
}

/// Every notification of the table whose sort key starts with `prefix`
/// (all of them with ""), every page.
pub fn notifications(table_name: &str, prefix: &str) -> Result<Vec<Notification>, String> {
    let mut out = Vec::new();
    let mut start: Option<Value> = None;
    loop {
        let page = table::query::<Notification>(
            table_name,
            &json!({"PK": NOTIFICATIONS_PARTITION}),
            Some(prefix),
            Some(1000),
            start.as_ref(),
        )
        .map_err(|e| format!("reading the notifications: {e}"))?;
        out.extend(page.items);
        match page.next {
            Some(n) => start = Some(n),
            None => return Ok(out),
        }
    }
}

/// The due markets' answer of `notification/get-markets-to-notify`:
/// `{"marketIds","campaignIds","markets":[{"campaignId","marketId"}]}`
/// (each once, in the table's order) of the notifications due at `now_ms`
/// and not done.
pub fn markets_due(table_name: &str, now_ms: i64) -> Result<Value, String> {
    let mut markets: Vec<(String, String)> = Vec::new();
    for n in notifications(table_name, "")? {
        let pair = (n.campaign_id.clone(), n.market_id.clone());
        if n.is_due(now_ms) && !markets.contains(&pair) {
            markets.push(pair);
        }
    }
    let mut campaign_ids: Vec<&str> = Vec::new();
    for (c, _) in &markets {
        if !campaign_ids.contains(&c.as_str()) {
            campaign_ids.push(c);
        }
    }
    Ok(json!({
        "marketIds": markets.iter().map(|(_, m)| m).collect::<Vec<_>>(),
        "campaignIds": campaign_ids,
        "markets": markets.iter().map(|(c, m)| json!({"campaignId": c, "marketId": m})).collect::<Vec<_>>(),
    }))
}

/// One reminder the rule found.
struct Found {
    kind: ReminderKind,
    campaign: String,
    market: String,
    round: String,
    due_ms: i64,
    users: u64,
}

/// Runs the generator's rule at `now_ms` (see the module docs of
/// [`super`]): lists every campaign (Campaign Service `GET /campaigns`,
/// every page) and its markets; a market whose stats are FINISHED gets a
/// winner reminder for its draw, and each market of an OPEN campaign
/// closing within the window a closing reminder. Each is recorded once
/// (a put on condition that it does not exist). Answers
/// `{"marketCount","userCount","created","existing","errors":[…]}`:
/// `marketCount` reminders (per market and kind) found, `userCount` fans
/// they go to (winners from the stats, registered fans counted from the
/// Entry Service). A campaign that cannot be read is an entry of `errors`
/// (the others go on); the listing itself failing is an `Err`.
pub fn generate(s: &GeneratorSettings, now_ms: i64) -> Result<Value, String> {
    let now = rfc3339::format_millis(now_ms);
    let window_ms = (s.closing_window_hours * 3_600_000.0) as i64;
    let lead_ms = (s.closing_lead_hours * 3_600_000.0) as i64;
    let mut campaigns = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = "/campaigns?limit=100".to_string();
        if let Some(a) = &after {
            path.push_str("&after=");
            path.push_str(&encode_component(a));
        }
        let page = get_json(&s.campaigns, &path)?
            .ok_or_else(|| format!("GET {}{path}: 404", s.campaigns))?;
        let list = page
            .get("campaigns")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let empty = list.is_empty();
        campaigns.extend(list);
        match page.get("next").and_then(cursor_text) {
            Some(n) if !empty => after = Some(n),
            _ => break,
        }
    }
    let mut found: Vec<Found> = Vec::new();
    let mut errors: Vec<Value> = Vec::new();
    for c in &campaigns {
        let Some(id) = c.get("id").and_then(Value::as_str) else {
            continue;
        };
        if let Err(e) = campaign_reminders(s, c, id, now_ms, window_ms, lead_ms, &mut found) {
            usher_sdk::warn!(campaign = id, error = e; "campaign skipped");
            errors.push(json!({"campaignId": id, "reason": "service", "message": e}));
        }
    }
    let (mut created, mut existing) = (0u64, 0u64);
    for f in &found {
        let n = Notification::new(
            f.kind,
            &f.campaign,
            &f.market,
            &f.round,
            &rfc3339::format_millis(f.due_ms),
            f.users,
            &now,
        );
        let item = serde_json::to_value(&n).map_err(|e| format!("encoding a notification: {e}"))?;
        match table::put(&s.table, &item, Some(Condition::NotExists)) {
            Ok(()) => created += 1,
            Err(e) if e.is_condition_failed() => existing += 1,
            Err(e) => errors.push(json!({
                "campaignId": f.campaign, "marketId": f.market, "reason": "table",
                "message": format!("recording {}: {e}", n.notification_id),
            })),
        }
    }
    let users: u64 = found.iter().map(|f| f.users).sum();
    usher_sdk::info!(markets = found.len(), users = users, created = created; "notifications generated");
    Ok(json!({
        "marketCount": found.len(), "userCount": users, "created": created,
        "existing": existing, "campaigns": campaigns.len(), "errors": errors,
    }))
}

fn campaign_reminders(
    s: &GeneratorSettings,
    campaign: &Value,
    id: &str,
    now_ms: i64,
    window_ms: i64,
    lead_ms: i64,
    found: &mut Vec<Found>,
) -> Result<(), String> {
    let cid = encode_component(id);
    let markets = get_json(&s.campaigns, &format!("/campaigns/{cid}/markets"))?
        .and_then(|v| v.get("markets").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    let closes = campaign
        .get("closesAt")
        .and_then(Value::as_str)
        .and_then(rfc3339::parse_millis);
    let open = campaign.get("status").and_then(Value::as_str) == Some("OPEN");
    for m in &markets {
        let Some(mid) = m.get("id").and_then(Value::as_str) else {
            continue;
        };
        let stats = get_json(
            &s.campaigns,
            &format!("/campaigns/{cid}/markets/{}/stats", encode_component(mid)),
        )?;
        if let Some(st) =
            stats.filter(|st| st.get("status").and_then(Value::as_str) == Some("FINISHED"))
        {
            if let Some(draw) = st.get("drawId").and_then(Value::as_str) {
                found.push(Found {
                    kind: ReminderKind::Winner,
                    campaign: id.into(),
                    market: mid.into(),
                    round: draw.into(),
                    due_ms: now_ms,
                    users: st
                        .pointer("/expected/winners")
                        .and_then(Value::as_u64)
                        .unwrap_or(0),
                });
            }
        }
        if let Some(close) = closes.filter(|c| open && *c > now_ms && *c <= now_ms + window_ms) {
            let fans = market_fans(&s.entries, ReminderKind::Closing, id, mid, "", s.page_size)?;
            found.push(Found {
                kind: ReminderKind::Closing,
                campaign: id.into(),
                market: mid.into(),
                round: close.to_string(),
                due_ms: (close - lead_ms).max(now_ms),
                users: fans.len() as u64,
            });
        }
    }
    Ok(())
}

/// Whether `state` still has work for plan-sends.
pub fn needs_planning(state: State) -> bool {
    matches!(state, State::Due | State::Planning | State::Planned)
}

/// The slots of a fixed plan from slot `from` on, in order: all of them,
/// or an error naming how many were found.
pub fn read_slots(
    table_name: &str,
    n: &Notification,
    plan: &Plan,
    from: u64,
) -> Result<Vec<Slot>, String> {
    let mut out: Vec<Slot> = Vec::new();
    let mut start = (from > 0).then(|| slot_key(&n.notification_id, &plan.plan_id, from - 1));
    loop {
        let page = table::query::<Slot>(
            table_name,
            &json!({"PK": plan_partition(&n.notification_id, &plan.plan_id)}),
            Some("SLOT#"),
            Some(1000),
            start.as_ref(),
        )
        .map_err(|e| format!("reading the plan: {e}"))?;
        out.extend(
            page.items
                .into_iter()
                .filter(|s| s.slot >= from && s.slot < plan.slots),
        );
        match page.next {
            Some(k) => start = Some(k),
            None => break,
        }
    }
    let expected = plan.slots.saturating_sub(from);
    if out.len() as u64 != expected
        || out
            .iter()
            .enumerate()
            .any(|(i, s)| s.slot != from + i as u64)
    {
        return Err(format!(
            "plan {} holds {} of its {expected} slots from {from}",
            plan.plan_id,
            out.len()
        ));
    }
    Ok(out)
}

/// A job id as the User Service path of the job.
pub fn job_path(job_id: &str) -> String {
    format!("/email-jobs/{}", encode_component(job_id))
}
