//! The service's routing, validation and table logic. It calls the SDK's
//! table functions directly; natively (tests) they reach the backend
//! installed on the thread (`usher_sdk::fakes`).

use std::collections::BTreeMap;

use usher_domain::rfc3339;
use usher_domain::user::{self, MAX_USERS_PER_BATCH};
use usher_sdk::json::{json, str_field};
use usher_sdk::router::{json_reply as ok, Router};
use usher_sdk::table::{self, Condition, Write};
use usher_sdk::{HttpRequest, HttpResponse, Value};

/// At most this many fans in one e-mail job (more is a 413).
pub const MAX_JOB_FANS: usize = 500;
/// The page size of `GET /email-jobs` without `limit`.
pub const DEFAULT_LIMIT: u32 = 100;
/// The largest `limit` (the host caps a query page at 1000 items).
pub const MAX_LIMIT: u32 = 1000;
/// The longest id accepted (jobId, campaignId, marketId, templateId), in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// A request that cannot be served: its status and message, answered as
/// `{"error": message}` (the SDK router's error).
pub use usher_sdk::router::HttpError as Failure;

/// The service's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The table (`table`, default `users`).
    pub table: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            table: "users".into(),
        }
    }
}

impl Settings {
    /// Reads the settings with the config capability, defaults for absent keys.
    pub fn load() -> usher_sdk::Result<Settings> {
        let d = Settings::default();
        Ok(Settings {
            table: usher_sdk::config::string_or("table", &d.table)?,
        })
    }
}

/// Serves one request (the routes of the crate docs; 404 for an unknown
/// path, 405 for a known path with another method).
pub fn handle(settings: &Settings, request: &HttpRequest) -> HttpResponse {
    let t = settings.table.as_str();
    Router::new()
        .post("/users/batch-upsert", |r| {
            ok(batch_upsert(t, &r.json_object()?, rfc3339::now_millis()))
        })
        .get("/users/{globalUserId}", |r| {
            ok(get_user(t, r.param("globalUserId")))
        })
        .post("/email-jobs", |r| {
            ok(enqueue_job(t, &r.json_object()?, rfc3339::now_millis()))
        })
        .get("/email-jobs", |r| {
            let campaign = r
                .query("campaignId")?
                .filter(|c| !c.is_empty())
                .ok_or_else(|| Failure::bad_request("campaignId query parameter is required"))?;
            let market = r.query("marketId")?.filter(|m| !m.is_empty());
            let limit = match r.query("limit")? {
                None => DEFAULT_LIMIT,
                Some(l) => parse_limit(&l)?,
            };
            let after = r.query("after")?.filter(|a| !a.is_empty());
            ok(list_jobs(
                t,
                &campaign,
                market.as_deref(),
                limit,
                after.as_deref(),
            ))
        })
        .get("/email-jobs/{jobId}", |r| ok(get_job(t, r.param("jobId"))))
        .post("/email-jobs/{jobId}/trigger", |r| {
            ok(trigger_job(t, r.param("jobId"), rfc3339::now_millis()))
        })
        .handle(request)
}

fn parse_limit(text: &str) -> Result<u32, Failure> {
    match text.parse::<u32>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(Failure::bad_request(format!(
            "limit must be an integer from 1 to {MAX_LIMIT}, not {text:?}"
        ))),
    }
}

// ---- users -------------------------------------------------------------

/// The key of a user's item.
pub fn user_key(id: &str) -> Value {
    json!({"PK": format!("USER#{id}"), "SK": "PROFILE"})
}

/// `POST /users/batch-upsert {"users":[…]}` → `{"upserted","failures"}`:
/// each valid user ([`user::validate`]) is stored (replacing the stored
/// record, keeping its `createdAt`); an invalid one fails alone, answered
/// in `failures` as `{"index","globalUserId"?,"reason"}`. A user given more
/// than once: the last one is stored. 413 beyond 25 users.
pub fn batch_upsert(table: &str, body: &Value, now: i64) -> Result<Value, Failure> {
    let list = body
        .get("users")
        .and_then(Value::as_array)
        .ok_or_else(|| Failure::bad_request("the body needs an array `users`"))?;
    if list.len() > MAX_USERS_PER_BATCH {
        return Err(Failure::new(
            413,
            format!(
                "at most {MAX_USERS_PER_BATCH} users per request, got {}",
                list.len()
            ),
        ));
    }
    let mut failures = Vec::new();
    // The last valid record of each user, in the order first seen.
    let mut valid: BTreeMap<String, Value> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut upserted = 0;
    for (index, value) in list.iter().enumerate() {
        match user::validate(value) {
            Ok(u) => {
                let record = serde_json::to_value(&u)
                    .map_err(|e| Failure::new(500, format!("encoding a user: {e}")))?;
                if valid.insert(u.global_user_id.clone(), record).is_none() {
                    order.push(u.global_user_id);
                }
                upserted += 1;
            }
            Err(reason) => {
                let id = value.get("globalUserId").and_then(Value::as_str);
                usher_sdk::info!(index = index, reason = reason; "user refused");
                let mut failure = json!({"index": index, "reason": reason});
                if let Some(id) = id {
                    failure["globalUserId"] = json!(id);
                }
                failures.push(failure);
            }
        }
    }
    if !order.is_empty() {
        let keys: Vec<Value> = order.iter().map(|id| user_key(id)).collect();
        let current = table::batch_get::<Value, Value>(table, &keys)
            .map_err(|e| Failure::from_table("reading the users", &e))?;
        let at = rfc3339::format_millis(now);
        let writes: Vec<Write> = order
            .iter()
            .zip(keys)
            .zip(current.iter().map(Some).chain(std::iter::repeat(None)))
            .map(|((id, key), stored)| {
                let mut item = key;
                item["user"] = valid.get(id).cloned().unwrap_or(Value::Null);
                item["createdAt"] = stored
                    .and_then(Option::as_ref)
                    .and_then(|s| s.get("createdAt").cloned())
                    .unwrap_or_else(|| json!(at));
                item["updatedAt"] = json!(at);
                Write::Put(item)
            })
            .collect();
        let results = table::batch_write(table, &writes)
            .map_err(|e| Failure::from_table("writing the users", &e))?;
        if results.len() != writes.len() {
            return Err(Failure::new(
                500,
                format!(
                    "batch_write answered {} results for {} writes",
                    results.len(),
                    writes.len()
                ),
            ));
        }
        if let Some(e) = results.iter().find_map(|r| r.as_ref().err()) {
            return Err(Failure::from_table("writing a user", e));
        }
    }
    usher_sdk::info!(upserted = upserted, failed = failures.len(); "batch-upsert");
    Ok(json!({"upserted": upserted, "failures": failures}))
}

/// `GET /users/{globalUserId}` → the stored user record.
pub fn get_user(table: &str, id: &str) -> Result<Value, Failure> {
    table::get::<Value>(table, &user_key(id))
        .map_err(|e| Failure::from_table("reading the user", &e))?
        .and_then(|item| item.get("user").cloned())
        .ok_or_else(|| Failure::not_found(format!("no user {id:?}")))
}

// ---- e-mail jobs ---------------------------------------------------------

/// The key of a job's item (the idempotency record, with the fans).
pub fn job_key(job: &str) -> Value {
    json!({"PK": format!("JOB#{job}"), "SK": "JOB"})
}

/// The partition of a campaign's job index items.
fn index_partition(campaign: &str) -> String {
    format!("JOBS#{campaign}")
}

/// The key of a job's index item: `{"PK":"JOBS#<campaignId>","SK":"JOB#<marketId>#<jobId>"}`.
pub fn index_key(campaign: &str, market: &str, job: &str) -> Value {
    json!({"PK": index_partition(campaign), "SK": format!("JOB#{market}#{job}")})
}

fn id_field(body: &Value, name: &str, hash_allowed: bool) -> Result<String, Failure> {
    let value = match body.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) => return Err(Failure::bad_request(format!("{name} is empty"))),
        None | Some(Value::Null) => {
            return Err(Failure::bad_request(format!("{name} is required")))
        }
        Some(other) => {
            return Err(Failure::bad_request(format!(
                "{name} must be a string, not {other}"
            )))
        }
    };
    if value.len() > MAX_ID_BYTES {
        return Err(Failure::bad_request(format!(
            "{name} is over {MAX_ID_BYTES} bytes"
        )));
    }
    if value.chars().any(char::is_control) || (!hash_allowed && value.contains('#')) {
        return Err(Failure::bad_request(format!(
            "{name} {value:?} may not contain control characters{}",
            if hash_allowed { "" } else { " or '#'" }
        )));
    }
    Ok(value)
}

/// A job's summary, as listed.
fn summary(job: &Value) -> Value {
    let mut s = json!({
        "jobId": job["jobId"], "campaignId": job["campaignId"], "marketId": job["marketId"],
        "templateId": job["templateId"], "fans": job["fans"].as_array().map_or(0, Vec::len),
        "receivedAt": job["receivedAt"],
    });
    if let Some(at) = job.get("sendAt").filter(|v| !v.is_null()) {
        s["sendAt"] = at.clone();
    }
    if let Some(at) = job.get("triggeredAt").filter(|v| !v.is_null()) {
        s["triggeredAt"] = at.clone();
    }
    s
}

/// `POST /email-jobs {"jobId","campaignId","marketId","templateId","fans":[…],"sendAt"?}`
/// → `{"jobId","enqueued","duplicate"}`. `jobId` is the idempotency key:
/// the job item is written on condition that it does not exist, so the
/// same job again (or many at once) is enqueued once and answers
/// `duplicate: true`; the same jobId with another campaign, market,
/// template, fans or sendAt is a 409. `fans` are globalUserIds (≤ 500,
/// 413 beyond), repeated ones counted once; `receivedAt` is when the
/// service first got the job.
pub fn enqueue_job(table: &str, body: &Value, now: i64) -> Result<Value, Failure> {
    let job_id = id_field(body, "jobId", true)?;
    let campaign = id_field(body, "campaignId", false)?;
    let market = id_field(body, "marketId", false)?;
    let template = id_field(body, "templateId", true)?;
    let list = body
        .get("fans")
        .and_then(Value::as_array)
        .ok_or_else(|| Failure::bad_request("the body needs an array `fans`"))?;
    if list.len() > MAX_JOB_FANS {
        return Err(Failure::new(
            413,
            format!("at most {MAX_JOB_FANS} fans per job, got {}", list.len()),
        ));
    }
    if list.is_empty() {
        return Err(Failure::bad_request("fans is empty"));
    }
    let mut fans: Vec<&str> = Vec::with_capacity(list.len());
    for (i, fan) in list.iter().enumerate() {
        match fan.as_str() {
            Some(f) if !f.trim().is_empty() => {
                if !fans.contains(&f) {
                    fans.push(f);
                }
            }
            _ => {
                return Err(Failure::bad_request(format!(
                    "fans[{i}] must be a non-empty globalUserId string"
                )))
            }
        }
    }
    let send_at = match body.get("sendAt") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if rfc3339::is_valid(s) => Some(s.clone()),
        Some(other) => {
            return Err(Failure::bad_request(format!(
                "sendAt must be an RFC 3339 time, not {other}"
            )))
        }
    };
    let mut item = job_key(&job_id);
    item["jobId"] = json!(job_id);
    item["campaignId"] = json!(campaign);
    item["marketId"] = json!(market);
    item["templateId"] = json!(template);
    item["fans"] = json!(fans);
    item["sendAt"] = json!(send_at);
    item["receivedAt"] = json!(rfc3339::format_millis(now));
    let (job, duplicate) = match table::put(table, &item, Some(Condition::NotExists)) {
        Ok(()) => (item, false),
        Err(e) if e.is_condition_failed() => {
            let stored = table::get::<Value>(table, &job_key(&job_id))
                .map_err(|e| Failure::from_table("reading the job", &e))?
                .ok_or_else(|| Failure::new(503, "the job changed while read; try again"))?;
            for field in ["campaignId", "marketId", "templateId", "fans", "sendAt"] {
                if stored.get(field).unwrap_or(&Value::Null) != &item[field] {
                    return Err(Failure::new(
                        409,
                        format!("job {job_id:?} was enqueued before with another {field}"),
                    ));
                }
            }
            (stored, true)
        }
        Err(e) => return Err(Failure::from_table("writing the job", &e)),
    };
    // The index item (written again for a duplicate: it repairs a crash
    // between the two writes).
    let mut index = index_key(&campaign, &market, &job_id);
    if let Some(obj) = summary(&job).as_object() {
        for (k, v) in obj {
            index[k] = v.clone();
        }
    }
    table::put(table, &index, None).map_err(|e| Failure::from_table("indexing the job", &e))?;
    let enqueued = job["fans"].as_array().map_or(0, Vec::len);
    usher_sdk::info!(job = job_id, enqueued = enqueued, duplicate = duplicate; "e-mail job");
    Ok(json!({"jobId": job_id, "enqueued": enqueued, "duplicate": duplicate}))
}

/// The key of a job's trigger record (written once: the first trigger).
pub fn trigger_key(job: &str) -> Value {
    json!({"PK": format!("JOB#{job}"), "SK": "TRIGGER"})
}

/// `POST /email-jobs/{jobId}/trigger` → `{"jobId","triggered","triggeredAt","fans"}`:
/// sends the job's e-mails (hands them to the mailer) once. The first
/// trigger writes the job's trigger record on condition that it does not
/// exist and answers `triggered: true`; every later one (a retry, a
/// redelivery, a concurrent trigger) answers `triggered: false` with the
/// first `triggeredAt`, so no job is ever sent twice. The job item gets
/// `triggeredAt` too (set again by a later trigger when a crash came
/// between the two writes). 404 for an unknown job; 409 before the job's
/// `sendAt` (the planned rate holds at the service).
pub fn trigger_job(table: &str, job_id: &str, now: i64) -> Result<Value, Failure> {
    let job = table::get::<Value>(table, &job_key(job_id))
        .map_err(|e| Failure::from_table("reading the job", &e))?
        .ok_or_else(|| Failure::not_found(format!("no e-mail job {job_id:?}")))?;
    let fans = job["fans"].as_array().map_or(0, Vec::len);
    let send_at = job.get("sendAt").and_then(Value::as_str);
    let existing = table::get::<Value>(table, &trigger_key(job_id))
        .map_err(|e| Failure::from_table("reading the trigger", &e))?;
    let (at, triggered) = match existing {
        Some(t) => (
            str_field(&t, "triggeredAt").unwrap_or_default().to_string(),
            false,
        ),
        None => {
            if let Some(due) = send_at.and_then(rfc3339::parse_millis) {
                if now < due {
                    return Err(Failure::new(
                        409,
                        format!(
                            "job {job_id:?} is not due before {}",
                            send_at.unwrap_or_default()
                        ),
                    ));
                }
            }
            let at = rfc3339::format_millis(now);
            let mut item = trigger_key(job_id);
            item["jobId"] = json!(job_id);
            item["triggeredAt"] = json!(at);
            match table::put(table, &item, Some(Condition::NotExists)) {
                Ok(()) => (at, true),
                Err(e) if e.is_condition_failed() => {
                    let stored = table::get::<Value>(table, &trigger_key(job_id))
                        .map_err(|e| Failure::from_table("reading the trigger", &e))?
                        .ok_or_else(|| {
                            Failure::new(503, "the trigger changed while read; try again")
                        })?;
                    (
                        str_field(&stored, "triggeredAt")
                            .unwrap_or_default()
                            .to_string(),
                        false,
                    )
                }
                Err(e) => return Err(Failure::from_table("writing the trigger", &e)),
            }
        }
    };
    if job.get("triggeredAt").and_then(Value::as_str) != Some(at.as_str()) {
        table::update::<Value>(
            table,
            &job_key(job_id),
            &json!({"triggeredAt": at}),
            &[],
            Some(Condition::Exists),
        )
        .map_err(|e| Failure::from_table("marking the job triggered", &e))?;
    }
    if let (Some(c), Some(m)) = (str_field(&job, "campaignId"), str_field(&job, "marketId")) {
        let index = index_key(c, m, job_id);
        let listed = table::get::<Value>(table, &index)
            .map_err(|e| Failure::from_table("reading the job's index", &e))?;
        if listed.is_some_and(|l| l.get("triggeredAt").and_then(Value::as_str) != Some(at.as_str()))
        {
            table::update::<Value>(
                table,
                &index,
                &json!({"triggeredAt": at}),
                &[],
                Some(Condition::Exists),
            )
            .map_err(|e| Failure::from_table("marking the job's index triggered", &e))?;
        }
    }
    usher_sdk::info!(job = job_id, triggered = triggered, fans = fans; "e-mail job trigger");
    Ok(json!({"jobId": job_id, "triggered": triggered, "triggeredAt": at, "fans": fans}))
}

/// `GET /email-jobs/{jobId}` → the job with its fans and `receivedAt`.
pub fn get_job(table: &str, job: &str) -> Result<Value, Failure> {
    let mut item = table::get::<Value>(table, &job_key(job))
        .map_err(|e| Failure::from_table("reading the job", &e))?
        .ok_or_else(|| Failure::not_found(format!("no e-mail job {job:?}")))?;
    if let Some(obj) = item.as_object_mut() {
        obj.remove("PK");
        obj.remove("SK");
        if obj.get("sendAt").is_some_and(Value::is_null) {
            obj.remove("sendAt");
        }
    }
    Ok(item)
}

/// `GET /email-jobs?campaignId=&marketId=&limit=&after=` →
/// `{"jobs":[summary…],"next":cursor|null}`: the campaign's jobs (of one
/// market with `marketId`), ordered by marketId then jobId, `limit` a page
/// (default 100, at most 1000). `next` is an opaque cursor for `after`.
pub fn list_jobs(
    table: &str,
    campaign: &str,
    market: Option<&str>,
    limit: u32,
    after: Option<&str>,
) -> Result<Value, Failure> {
    if market.is_some_and(|m| m.contains('#')) || campaign.contains('#') {
        return Err(Failure::bad_request(
            "campaignId and marketId may not contain '#'",
        ));
    }
    let pk = index_partition(campaign);
    let prefix = match market {
        Some(m) => format!("JOB#{m}#"),
        None => "JOB#".to_string(),
    };
    let start = match after {
        None => None,
        Some(cursor) => {
            let sk = format!("JOB#{cursor}");
            if !sk.starts_with(&prefix) {
                return Err(Failure::bad_request(format!(
                    "after {cursor:?} is not a cursor of this listing"
                )));
            }
            Some(json!({"PK": pk, "SK": sk}))
        }
    };
    let page = table::query::<Value>(
        table,
        &json!({"PK": pk}),
        Some(&prefix),
        Some(limit),
        start.as_ref(),
    )
    .map_err(|e| Failure::from_table("listing the jobs", &e))?;
    let jobs: Vec<Value> = page
        .items
        .iter()
        .map(|item| {
            let mut s = item.clone();
            if let Some(obj) = s.as_object_mut() {
                obj.remove("PK");
                obj.remove("SK");
            }
            s
        })
        .collect();
    let next = page
        .next
        .as_ref()
        .and_then(|k| str_field(k, "SK"))
        .and_then(|sk| sk.strip_prefix("JOB#"))
        .map_or(Value::Null, |c| json!(c));
    Ok(json!({"jobs": jobs, "next": next}))
}

#[cfg(test)]
mod tests;
