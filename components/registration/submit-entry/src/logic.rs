//! The worker's logic: the checks, then the conditional write.

use usher_domain::analytics::{DataMessage, DataType, RegisteredMarketData, RegistrationData};
use usher_domain::eligibility::{
    self, format_rfc3339_ms, Evaluation, Lookup, Reason, Refusal, Request, Services, Transfer,
};
use usher_domain::{Fan, Verdict, ENTRY_SORT_KEY};
use usher_sdk::json::{json, Map};
use usher_sdk::table::Condition;
use usher_sdk::{config, queue, table, Error, InvokeError, Value};

/// How many times a write whose condition failed is tried again (from a
/// fresh read) before the answer is `Conflict`.
pub const MAX_ATTEMPTS: usize = 8;

/// The worker's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The services called.
    pub services: Services,
    /// The `demand-table`.
    pub table: String,
    /// The queue the user records go to (`user-info`).
    pub user_queue: String,
    /// The data pipeline's queue (`data_queue`, default none): when set,
    /// every accepted submission (unchanged ones too, so a client's retry
    /// sends them again) sends a `REGISTRATION` and a `REGISTERED_MARKET`
    /// message (`usher_domain::analytics`).
    pub data_queue: Option<String>,
}

impl Settings {
    /// From the registry's `settings`.
    pub fn load() -> usher_sdk::Result<Settings> {
        Ok(Settings {
            services: Services::load()?,
            table: eligibility::table_setting()?,
            user_queue: config::string_or("user_queue", "user-info")?,
            data_queue: config::get("data_queue")?,
        })
    }
}

fn unavailable(what: &str, e: Error) -> InvokeError {
    InvokeError::new("Unavailable", format!("{what}: {e}"))
}

fn refused(evaluation: Evaluation, refusal: Refusal) -> Value {
    Evaluation {
        refusal: Some(refusal),
        ..evaluation
    }
    .answer()
}

fn verdict_of(item: &Value) -> Verdict {
    item.get("verdict")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

/// The condition that the item is still the one read: its `version`, else
/// its `updatedAt`, else that it exists.
fn unchanged_since(item: &Value) -> Condition {
    match (item.get("version"), item.get("updatedAt")) {
        (Some(v @ Value::Number(_)), _) => Condition::AttributeEquals("version".into(), v.clone()),
        (_, Some(u @ Value::String(_))) => {
            Condition::AttributeEquals("updatedAt".into(), u.clone())
        }
        _ => Condition::Exists,
    }
}

/// What the write did.
struct Written {
    version: u64,
    created: bool,
    unchanged: bool,
    created_at: String,
    updated_at: String,
}

/// Registers the request at `now_ms` (see the crate docs): the answer, a
/// refusal included, or the typed error that kept it from being made.
pub fn submit(
    lookup: &mut dyn Lookup,
    settings: &Settings,
    payload: &Value,
    now_ms: i64,
) -> Result<Value, InvokeError> {
    let request = match eligibility::parse_request(payload) {
        Ok(r) if r.market_id.is_some() => r,
        Ok(_) => {
            let refusal = Refusal::new(
                Reason::InvalidRequest,
                "`marketId` is required to submit an entry",
            );
            return Ok(Evaluation::refused(None, None, Map::new(), refusal).answer());
        }
        Err(refusal) => return Ok(Evaluation::refused(None, None, Map::new(), refusal).answer()),
    };
    let evaluation = eligibility::evaluate(lookup, &settings.services, &request, now_ms)
        .map_err(|e| InvokeError::new(e.kind(), e.to_string()))?;
    let (Some(campaign), None) = (&evaluation.campaign, &evaluation.refusal) else {
        return Ok(evaluation.answer());
    };
    let fan = Fan::new(
        campaign.id.clone(),
        request.user_info.global_user_id.clone(),
    );
    let key = fan.demand_key();
    let current: Option<Value> =
        table::get(&settings.table, &key).map_err(|e| unavailable("reading the entry", e))?;
    if let Some(refusal) = current.as_ref().and_then(already_selected) {
        return Ok(refused(evaluation, refusal));
    }
    let user = queue::Outgoing::json(&request.user_info).map_err(InvokeError::from)?;
    queue::send(&settings.user_queue, user).map_err(|e| {
        unavailable(
            &format!("sending the user record to {}", settings.user_queue),
            e,
        )
    })?;
    let written = match write(settings, &fan, &request, &evaluation, current, now_ms)? {
        Ok(w) => w,
        Err(refusal) => return Ok(refused(evaluation, refusal)),
    };
    let mut answer = json!({
        "isEligible": true,
        "campaignId": fan.campaign_id,
        "globalUserId": fan.global_user_id,
        "marketId": request.market_id,
        "version": written.version,
        "created": written.created,
        "unchanged": written.unchanged,
    });
    if let Some(t) = &evaluation.transfer {
        answer["transferredFrom"] = json!(t.from);
        answer["sourceRemoved"] = json!(remove_source(settings, &fan, t)?);
    }
    send_data_messages(settings, &fan, &request, &evaluation, &written)?;
    usher_sdk::log::info(
        "entry submitted",
        &[
            ("campaignId", &fan.campaign_id),
            ("globalUserId", &fan.global_user_id),
            ("version", &written.version.to_string()),
        ],
    );
    Ok(answer)
}

fn already_selected(item: &Value) -> Option<Refusal> {
    let verdict = verdict_of(item);
    (verdict != Verdict::Pending).then(|| {
        Refusal::new(
            Reason::AlreadySelected,
            format!(
                "the entry has the verdict {} already; it cannot be submitted again",
                serde_json::to_value(verdict)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            ),
        )
    })
}

/// The conditional write loop: `Ok(Err(refusal))` when a verdict appeared.
fn write(
    settings: &Settings,
    fan: &Fan,
    request: &Request,
    evaluation: &Evaluation,
    mut current: Option<Value>,
    now_ms: i64,
) -> Result<Result<Written, Refusal>, InvokeError> {
    let key = fan.demand_key();
    let now = format_rfc3339_ms(now_ms);
    let entry = Value::Object(evaluation.entry.clone());
    let market = json!(request.market_id);
    let email = json!(request.user_info.email);
    let transferred_from = evaluation.transfer.as_ref().map(|t| json!(t.from));
    for attempt in 0..MAX_ATTEMPTS {
        if attempt > 0 {
            current = table::get(&settings.table, &key)
                .map_err(|e| unavailable("reading the entry", e))?;
        }
        let (item, condition, version, created, created_at) = match &current {
            None => {
                let mut item = json!({
                    "PK": key["PK"], "SK": ENTRY_SORT_KEY,
                    "campaignId": fan.campaign_id, "globalUserId": fan.global_user_id,
                    "marketId": market, "entry": entry, "email": email,
                    "verdict": "PENDING", "needsReplication": true, "version": 1,
                    "createdAt": now, "updatedAt": now,
                });
                if let Some(from) = &transferred_from {
                    item["transferredFrom"] = from.clone();
                }
                (item, Condition::NotExists, 1, true, now.clone())
            }
            Some(old) => {
                if let Some(refusal) = already_selected(old) {
                    return Ok(Err(refusal));
                }
                let same_transfer = transferred_from.is_none()
                    || old.get("transferredFrom") == transferred_from.as_ref();
                let old_version = old.get("version").and_then(Value::as_u64);
                if old.get("entry") == Some(&entry)
                    && old.get("marketId") == Some(&market)
                    && old.get("email") == Some(&email)
                    && same_transfer
                {
                    let time = |name: &str| {
                        old.get(name)
                            .and_then(Value::as_str)
                            .map_or_else(|| now.clone(), str::to_string)
                    };
                    return Ok(Ok(Written {
                        version: old_version.unwrap_or(0),
                        created: false,
                        unchanged: true,
                        created_at: time("createdAt"),
                        updated_at: time("updatedAt"),
                    }));
                }
                let version = old_version.unwrap_or(0) + 1;
                let mut item = old.clone();
                let created_at = old.get("createdAt").cloned().unwrap_or_else(|| json!(now));
                let created_at_text = created_at
                    .as_str()
                    .map_or_else(|| now.clone(), str::to_string);
                for (name, value) in [
                    ("campaignId", json!(fan.campaign_id)),
                    ("globalUserId", json!(fan.global_user_id)),
                    ("marketId", market.clone()),
                    ("entry", entry.clone()),
                    ("email", email.clone()),
                    ("verdict", json!("PENDING")),
                    ("needsReplication", json!(true)),
                    ("version", json!(version)),
                    ("createdAt", created_at),
                    ("updatedAt", json!(now)),
                ] {
                    item[name] = value;
                }
                if let Some(from) = &transferred_from {
                    item["transferredFrom"] = from.clone();
                }
                (item, unchanged_since(old), version, false, created_at_text)
            }
        };
        match table::put(&settings.table, &item, Some(condition)) {
            Ok(()) => {
                return Ok(Ok(Written {
                    version,
                    created,
                    unchanged: false,
                    created_at,
                    updated_at: now,
                }))
            }
            Err(e) if e.is_condition_failed() => {
                usher_sdk::log::info(
                    "the entry changed under the write; reading it again",
                    &[("globalUserId", &fan.global_user_id)],
                );
            }
            Err(e) => return Err(unavailable("writing the entry", e)),
        }
    }
    Err(InvokeError::new(
        "Conflict",
        format!(
            "the entry of {} in campaign {} changed {MAX_ATTEMPTS} times while it was being written; submit again",
            fan.global_user_id, fan.campaign_id
        ),
    ))
}

/// Sends the data pipeline's messages of an accepted submission (see
/// [`Settings::data_queue`]). The entry is already written: a failed send is
/// the typed error `Unavailable`, and submitting again (unchanged) sends
/// them again.
fn send_data_messages(
    settings: &Settings,
    fan: &Fan,
    request: &Request,
    evaluation: &Evaluation,
    written: &Written,
) -> Result<(), InvokeError> {
    let Some(data_queue) = &settings.data_queue else {
        return Ok(());
    };
    let market_id = request.market_id.clone().unwrap_or_default();
    let registration = RegistrationData {
        campaign_id: fan.campaign_id.clone(),
        global_user_id: fan.global_user_id.clone(),
        market_id: market_id.clone(),
        version: written.version,
        created_at: written.created_at.clone(),
        updated_at: written.updated_at.clone(),
        country: request
            .user_info
            .country
            .as_ref()
            .map(|c| c.to_ascii_uppercase()),
        locale: request.user_info.locale.clone(),
        transferred_from: evaluation.transfer.as_ref().map(|t| t.from.clone()),
    };
    let registered = RegisteredMarketData {
        campaign_id: fan.campaign_id.clone(),
        market_id,
        global_user_id: fan.global_user_id.clone(),
        registered_at: written.updated_at.clone(),
    };
    let encode = |m: Result<DataMessage, usher_domain::analytics::FormatError>| {
        m.map_err(|e| InvokeError::internal(e.to_string()))
            .and_then(|m| queue::Outgoing::json(&m).map_err(InvokeError::from))
    };
    let messages = [
        encode(DataMessage::new(DataType::Registration, &registration))?,
        encode(DataMessage::new(DataType::RegisteredMarket, &registered))?,
    ];
    let failed = |e: String| {
        unavailable(
            &format!("the entry is saved, but sending its data messages to {data_queue} failed; submit again"),
            Error::Unavailable(e),
        )
    };
    let results = queue::send_batch(data_queue, &messages).map_err(|e| failed(e.to_string()))?;
    if results.len() != messages.len() {
        return Err(failed(format!(
            "{} results for {} messages",
            results.len(),
            messages.len()
        )));
    }
    if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
        return Err(failed(e.to_string()));
    }
    Ok(())
}

/// Deletes the transferred entry in the linked campaign; whether it is gone.
fn remove_source(settings: &Settings, fan: &Fan, transfer: &Transfer) -> Result<bool, InvokeError> {
    let Some(mut source) = transfer.source.clone() else {
        return Ok(true); // removed by the first attempt of this transfer
    };
    let key = Fan::new(transfer.from.clone(), fan.global_user_id.clone()).demand_key();
    let failed = |e| {
        unavailable(
            &format!(
                "the entry was written to campaign {}; removing it from campaign {} failed (submit again to finish the transfer)",
                fan.campaign_id, transfer.from
            ),
            e,
        )
    };
    for _ in 0..MAX_ATTEMPTS {
        if verdict_of(&source) != Verdict::Pending {
            usher_sdk::log::warn(
                "the transferred entry was drawn meanwhile; it stays in the linked campaign",
                &[
                    ("globalUserId", &fan.global_user_id),
                    ("from", &transfer.from),
                ],
            );
            return Ok(false);
        }
        match table::delete(&settings.table, &key, Some(unchanged_since(&source))) {
            Ok(()) => return Ok(true),
            Err(e) if e.is_condition_failed() => match table::get(&settings.table, &key) {
                Ok(Some(item)) => source = item,
                Ok(None) => return Ok(true),
                Err(e) => return Err(failed(e)),
            },
            Err(e) => return Err(failed(e)),
        }
    }
    Err(InvokeError::new(
        "Conflict",
        format!(
            "the entry in campaign {} kept changing while it was being removed; submit again to finish the transfer",
            transfer.from
        ),
    ))
}

#[cfg(test)]
mod tests;
