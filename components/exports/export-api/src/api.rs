//! The export API's logic (natively testable with `usher_sdk::fakes`).

use serde_json::{json, Value};
use usher_domain::exports::{
    self, active_key, campaign_partition, dedupe_key, fingerprint, job_key, new_export_id,
    parse_request, run_message, Claims, ExportJob, ExportState, MAX_BODY_BYTES, REPORT_PERMISSION,
};
use usher_domain::rfc3339;
use usher_sdk::queue::{self, Outgoing};
use usher_sdk::router::{HttpError, Reply, Routed, Router};
use usher_sdk::table::{self, Condition};
use usher_sdk::{config, services, Error, HttpRequest, HttpResponse};

/// How old a dedupe item pointing at no job must be to be replaced (its
/// writer crashed before writing the job), in milliseconds.
const ORPHAN_DEDUPE_MS: i64 = 10_000;

/// The worker's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The jobs table.
    pub table: String,
    /// The runner's queue.
    pub queue: String,
    /// The Campaign Service (empty: not checked).
    pub campaign_service: String,
}

impl Settings {
    /// From the registry's settings.
    pub fn load() -> usher_sdk::Result<Settings> {
        Ok(Settings {
            table: config::string_or("table", "exports")?,
            queue: config::string_or("queue", "run-export")?,
            campaign_service: config::string_or("campaign_service", "campaigns")?,
        })
    }
}

/// Serves one request (paths below `/campaigns`).
pub fn handle(settings: &Settings, request: &HttpRequest) -> HttpResponse {
    Router::new()
        .post("/{campaignId}/exports", |r| create(settings, r))
        .get("/{campaignId}/exports", |r| list(settings, r))
        .get("/{campaignId}/exports/{exportId}", |r| read(settings, r))
        .handle(request)
}

/// The verified claims, allowed REPORT on the campaign; 401/403 otherwise.
fn authorize(r: &Routed<'_>, campaign_id: &str) -> Result<Claims, HttpError> {
    let claims =
        Claims::parse(r.request().header(claims_header())).map_err(|e| HttpError::new(401, e))?;
    exports::check_id("campaignId", campaign_id).map_err(HttpError::bad_request)?;
    if let Some(reason) = claims.refuse(REPORT_PERMISSION, campaign_id) {
        return Err(HttpError::new(403, reason));
    }
    Ok(claims)
}

/// A random nonce for a new export id (two identical requests in one
/// millisecond after the first job ended get two ids): std's `RandomState`
/// draws its keys from the platform's random source (WASI `random`).
fn nonce(sub: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write(sub.as_bytes());
    format!("{sub}:{:016x}", hasher.finish())
}

/// The header the host puts the verified claims in.
fn claims_header() -> &'static str {
    "x-usher-claims"
}

fn table_error(what: &str) -> impl Fn(Error) -> HttpError + '_ {
    move |e| HttpError::from_table(what, &e)
}

fn create(settings: &Settings, r: &Routed<'_>) -> Reply {
    let campaign_id = r.param("campaignId");
    let claims = authorize(r, campaign_id)?;
    if r.request().body.len() > MAX_BODY_BYTES {
        return Err(HttpError::new(
            413,
            format!("the body is larger than {MAX_BODY_BYTES} bytes"),
        ));
    }
    let body: Value = r.json()?;
    let request = parse_request(&body).map_err(HttpError::bad_request)?;
    check_campaign(settings, campaign_id, request.market_id.as_deref())?;
    let fingerprint = fingerprint(campaign_id, &request);
    // An identical job still PENDING or TRIGGERED is the answer.
    for _ in 0..3 {
        let now_ms = rfc3339::now_millis();
        let now = rfc3339::format_millis(now_ms);
        let export_id = new_export_id(now_ms, campaign_id, &fingerprint, &nonce(&claims.sub));
        let dedupe = {
            let mut item = dedupe_key(campaign_id, &fingerprint);
            item["exportId"] = json!(export_id);
            item["createdAtMs"] = json!(now_ms);
            item
        };
        match table::put(&settings.table, &dedupe, Some(Condition::NotExists)) {
            Ok(()) => {}
            Err(Error::ConditionFailed(_)) => {
                if let Some(job) = existing(settings, campaign_id, &fingerprint, now_ms)? {
                    return Ok(HttpResponse::json_ok(&job.view()));
                }
                continue;
            }
            Err(e) => {
                return Err(HttpError::from_table(
                    "writing the export's dedupe item",
                    &e,
                ))
            }
        }
        let job = ExportJob {
            export_id: export_id.clone(),
            campaign_id: campaign_id.to_string(),
            export_type: request.export_type.name.to_string(),
            market_id: request.market_id.clone(),
            state: ExportState::Pending,
            fingerprint: fingerprint.clone(),
            requested_by: claims.sub.clone(),
            created_at: now.clone(),
            updated_at: now,
            version: 1,
            fencing: 0,
            attempts: 0,
            lease: None,
            row_count: None,
            size: None,
            file: None,
            completing: None,
            error: None,
            finished_at: None,
        };
        table::put(&settings.table, &job.item(), Some(Condition::NotExists))
            .map_err(table_error("writing the export job"))?;
        let mut index = active_key(campaign_id, &export_id);
        index["campaignId"] = json!(campaign_id);
        index["exportId"] = json!(export_id);
        table::put(&settings.table, &index, None)
            .map_err(table_error("indexing the export job"))?;
        // A lost message is re-sent by expire-exports (the job stays PENDING).
        match Outgoing::json(&run_message(campaign_id, &export_id))
            .and_then(|m| queue::send(&settings.queue, m))
        {
            Ok(_) => {}
            Err(e) => {
                usher_sdk::warn!(export_id = export_id.as_str(), error = e; "the run message was not sent; expire-exports re-sends it")
            }
        }
        usher_sdk::info!(export_id = export_id.as_str(), campaign_id = campaign_id, export_type = request.export_type.name; "export job created");
        let mut response = HttpResponse::json_ok(&job.view());
        response.status = 202;
        return Ok(response);
    }
    Err(HttpError::new(
        503,
        "the export's dedupe item changed under this request three times; retry",
    ))
}

/// The job an existing dedupe item points at when it is still PENDING or
/// TRIGGERED; `None` after removing a stale dedupe item (its job ended, or
/// its writer died before writing the job) so the caller can try again.
fn existing(
    settings: &Settings,
    campaign_id: &str,
    fingerprint: &str,
    now_ms: i64,
) -> Result<Option<ExportJob>, HttpError> {
    let key = dedupe_key(campaign_id, fingerprint);
    let Some(dedupe) = table::get::<Value>(&settings.table, &key)
        .map_err(table_error("reading the export's dedupe item"))?
    else {
        return Ok(None);
    };
    let export_id = dedupe["exportId"].as_str().unwrap_or_default().to_string();
    let job = table::get::<Value>(&settings.table, &job_key(campaign_id, &export_id))
        .map_err(table_error("reading the export job"))?
        .map(ExportJob::from_item)
        .transpose()
        .map_err(|e| HttpError::new(500, e))?;
    let stale = match &job {
        Some(job) => job.state.is_terminal(),
        None => now_ms - dedupe["createdAtMs"].as_i64().unwrap_or(0) > ORPHAN_DEDUPE_MS,
    };
    if let (Some(job), false) = (&job, stale) {
        return Ok(Some(job.clone()));
    }
    if !stale {
        return Err(HttpError::new(
            503,
            "an identical export is being created; retry",
        ));
    }
    match table::delete(
        &settings.table,
        &key,
        Some(Condition::AttributeEquals(
            "exportId".into(),
            json!(export_id),
        )),
    ) {
        Ok(()) | Err(Error::ConditionFailed(_)) => Ok(None),
        Err(e) => Err(HttpError::from_table("removing a stale dedupe item", &e)),
    }
}

/// 404 for an unknown campaign, 400 for a market it does not have.
fn check_campaign(
    settings: &Settings,
    campaign_id: &str,
    market: Option<&str>,
) -> Result<(), HttpError> {
    if settings.campaign_service.is_empty() {
        return Ok(());
    }
    let service = |e: Error| HttpError::new(503, format!("the Campaign Service: {e}"));
    let path = format!("/campaigns/{}", encode(campaign_id));
    let campaign = services::get(&settings.campaign_service, &path).map_err(service)?;
    match campaign.status {
        200 => {}
        404 => return Err(HttpError::not_found(format!("no campaign {campaign_id}"))),
        s => {
            return Err(HttpError::new(
                503,
                format!("the Campaign Service answered {s}: {}", campaign.body),
            ))
        }
    }
    if let Some(market) = market {
        let path = format!(
            "/campaigns/{}/markets/{}",
            encode(campaign_id),
            encode(market)
        );
        let answer = services::get(&settings.campaign_service, &path).map_err(service)?;
        match answer.status {
            200 => {}
            404 => {
                return Err(HttpError::bad_request(format!(
                    "campaign {campaign_id} has no market {market}"
                )))
            }
            s => {
                return Err(HttpError::new(
                    503,
                    format!("the Campaign Service answered {s}: {}", answer.body),
                ))
            }
        }
    }
    Ok(())
}

/// Percent-encodes a path segment.
pub fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn list(settings: &Settings, r: &Routed<'_>) -> Reply {
    let campaign_id = r.param("campaignId");
    authorize(r, campaign_id)?;
    let limit = match r.query("limit")? {
        None => 20,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=100).contains(l))
            .ok_or_else(|| HttpError::bad_request("limit must be 1 to 100"))?,
    };
    let after = r.query("after")?;
    let start = match &after {
        Some(id) => {
            exports::check_id("after", id).map_err(HttpError::bad_request)?;
            Some(job_key(campaign_id, id))
        }
        None => None,
    };
    let page = table::query::<Value>(
        &settings.table,
        &json!({"PK": campaign_partition(campaign_id)}),
        Some("EXPORT#"),
        Some(limit),
        start.as_ref(),
    )
    .map_err(table_error("listing the export jobs"))?;
    let jobs = page
        .items
        .into_iter()
        .map(ExportJob::from_item)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| HttpError::new(500, e))?;
    let next = match (&page.next, jobs.last()) {
        (Some(_), Some(last)) => json!(last.export_id),
        _ => Value::Null,
    };
    let views: Vec<Value> = jobs.iter().map(ExportJob::view).collect();
    Ok(HttpResponse::json_ok(
        &json!({"exports": views, "next": next}),
    ))
}

fn read(settings: &Settings, r: &Routed<'_>) -> Reply {
    let campaign_id = r.param("campaignId");
    authorize(r, campaign_id)?;
    let export_id = r.param("exportId");
    exports::check_id("exportId", export_id).map_err(HttpError::bad_request)?;
    let item = table::get::<Value>(&settings.table, &job_key(campaign_id, export_id))
        .map_err(table_error("reading the export job"))?
        .ok_or_else(|| {
            HttpError::not_found(format!("no export {export_id} in campaign {campaign_id}"))
        })?;
    let job = ExportJob::from_item(item).map_err(|e| HttpError::new(500, e))?;
    Ok(HttpResponse::json_ok(&job.view()))
}

#[cfg(test)]
mod tests;
