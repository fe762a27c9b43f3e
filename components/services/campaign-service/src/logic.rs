//! The service's routing, validation and table logic. It calls the SDK's
//! table functions directly; natively (tests) they reach the backend
//! installed on the thread (`usher_sdk::fakes`).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use usher_domain::analytics::{DataMessage, DataType, EventMappingData};
use usher_domain::campaign::{Campaign, Gate, Market, StatsStatus, VerdictCounts};
use usher_domain::rfc3339;
use usher_domain::user::is_country_code;
use usher_sdk::json::{json, str_field};
use usher_sdk::router::{json_reply as ok, Router};
use usher_sdk::table::{self, Condition, PutItem, UpdateItem};
use usher_sdk::{HttpRequest, HttpResponse, Value};

/// Attempts of a read-compare-write on a campaign before answering 409.
pub const WRITE_ATTEMPTS: usize = 3;
/// Attempts of a read-compare-write on a market's stats (every verdict
/// report of a draw writes the same item) before answering 503.
pub const STATS_ATTEMPTS: usize = 64;
/// A slug claimed by a campaign that was never written with it is free
/// again after this long (a crash between the claim and the write).
pub const STALE_CLAIM_MS: i64 = 60_000;
/// The longest id or slug accepted, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// A request that cannot be served: its status and message, answered as
/// `{"error": message}` (the SDK router's error).
pub use usher_sdk::router::HttpError as Failure;

/// The service's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The table (`table`, default `campaigns`).
    pub table: String,
    /// The data pipeline's queue (`data_queue`, default none): when set, a
    /// stored campaign sends a `CAMPAIGN` message and a stored market a
    /// `MARKET` and an `EVENT_MAPPING` message (`usher_domain::analytics`).
    pub data_queue: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            table: "campaigns".into(),
            data_queue: None,
        }
    }
}

impl Settings {
    /// Reads the settings with the config capability, defaults for absent keys.
    pub fn load() -> usher_sdk::Result<Settings> {
        let d = Settings::default();
        Ok(Settings {
            table: usher_sdk::config::string_or("table", &d.table)?,
            data_queue: usher_sdk::config::get("data_queue")?,
        })
    }
}

/// Serves one request (the routes of the crate docs; 404 for an unknown
/// path, 405 for a known path with another method).
pub fn handle(settings: &Settings, request: &HttpRequest) -> HttpResponse {
    let t = settings.table.as_str();
    Router::new()
        .get("/campaigns", |r| {
            let status = r.query("status")?.filter(|s| !s.is_empty());
            let limit = match r.query("limit")? {
                None => DEFAULT_LIST_LIMIT,
                Some(l) => match l.parse::<u32>() {
                    Ok(n) if (1..=MAX_LIST_LIMIT).contains(&n) => n,
                    _ => {
                        return Err(Failure::bad_request(format!(
                            "limit must be an integer from 1 to {MAX_LIST_LIMIT}, not {l:?}"
                        )))
                    }
                },
            };
            let after = r.query("after")?.filter(|a| !a.is_empty());
            ok(list_campaigns(
                t,
                status.as_deref(),
                limit,
                after.as_deref(),
            ))
        })
        .get("/campaigns/by-slug/{slug}", |r| {
            ok(campaign_by_slug(t, r.param("slug")))
        })
        .put("/campaigns/{id}", |r| {
            let stored = put_campaign(t, r.param("id"), &r.json()?, rfc3339::now_millis())?;
            emit(settings, &[(DataType::Campaign, stored.clone())])?;
            ok(Ok(stored))
        })
        .get("/campaigns/{id}", |r| ok(get_campaign(t, r.param("id"))))
        .get("/campaigns/{id}/markets", |r| {
            ok(list_markets(t, r.param("id")))
        })
        .put("/campaigns/{id}/markets/{mid}", |r| {
            let stored = put_market(t, r.param("id"), r.param("mid"), &r.json()?)?;
            let market: Market = serde_json::from_value(stored.clone())
                .map_err(|e| Failure::new(500, format!("reading the stored market: {e}")))?;
            let mapping = to_value(&EventMappingData::of_market(&market))?;
            emit(
                settings,
                &[
                    (DataType::Market, stored.clone()),
                    (DataType::EventMapping, mapping),
                ],
            )?;
            ok(Ok(stored))
        })
        .get("/campaigns/{id}/markets/{mid}", |r| {
            ok(get_market(t, r.param("id"), r.param("mid")))
        })
        .put("/campaigns/{id}/markets/{mid}/stats", |r| {
            ok(put_stats(
                t,
                r.param("id"),
                r.param("mid"),
                &r.json_object()?,
                rfc3339::now_millis(),
            ))
        })
        .get("/campaigns/{id}/markets/{mid}/stats", |r| {
            ok(get_stats(t, r.param("id"), r.param("mid")))
        })
        .post("/campaigns/{id}/markets/{mid}/verdict-reports/batch", |r| {
            ok(report_verdicts_batch(
                t,
                r.param("id"),
                r.param("mid"),
                &r.json_object()?,
                rfc3339::now_millis(),
            ))
        })
        .post("/campaigns/{id}/markets/{mid}/verdict-reports", |r| {
            ok(report_verdicts(
                t,
                r.param("id"),
                r.param("mid"),
                &r.json_object()?,
                rfc3339::now_millis(),
            ))
        })
        .handle(request)
}

/// Sends the data pipeline's `{type, data}` messages of a stored change to
/// the `data_queue` setting's queue (nothing when it is not set). The change
/// is already stored: a failed send answers 503 so that the client PUTs
/// again (a PUT is idempotent and sends the messages again; the pipeline's
/// records are keyed, so a repeat is the same record).
pub fn emit(settings: &Settings, changes: &[(DataType, Value)]) -> Result<(), Failure> {
    let Some(queue) = &settings.data_queue else {
        return Ok(());
    };
    let mut messages = Vec::with_capacity(changes.len());
    for (data_type, data) in changes {
        let message = DataMessage {
            data_type: *data_type,
            data: data.clone(),
        };
        messages
            .push(usher_sdk::queue::Outgoing::json(&message).map_err(|e| {
                Failure::new(500, format!("encoding the {data_type} message: {e}"))
            })?);
    }
    let results = usher_sdk::queue::send_batch(queue, &messages).map_err(|e| {
        usher_sdk::warn!(queue = queue, error = e; "sending the data messages failed");
        Failure::new(
            503,
            format!("stored, but sending its data messages to {queue} failed ({e}); PUT it again"),
        )
    })?;
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        usher_sdk::warn!(queue = queue, error = e; "sending a data message failed");
        return Err(Failure::new(
            503,
            format!("stored, but sending a data message to {queue} failed ({e}); PUT it again"),
        ));
    }
    if results.len() != messages.len() {
        return Err(Failure::new(
            503,
            format!(
                "stored, but {queue} answered for {} of {} data messages; PUT it again",
                results.len(),
                messages.len()
            ),
        ));
    }
    Ok(())
}

// ---- keys ------------------------------------------------------------------

/// The page size of `GET /campaigns` without `limit`.
pub const DEFAULT_LIST_LIMIT: u32 = 100;
/// The largest `limit` of `GET /campaigns`.
pub const MAX_LIST_LIMIT: u32 = 1000;

/// The key of a campaign's index item, for listing:
/// `{"PK":"CAMPAIGNS","SK":"CAMPAIGN#<id>"}`.
pub fn campaign_index_key(id: &str) -> Value {
    json!({"PK": "CAMPAIGNS", "SK": format!("CAMPAIGN#{id}")})
}

/// `GET /campaigns?status=&limit=&after=` → `{"campaigns":[Campaign…],"next"}`:
/// every campaign by id (`limit` index items a page, default 100, at most
/// 1000; `next` is the last id of the page, for `after`, or null), only
/// those of `status` (DRAFT, OPEN, CLOSED) when given, so a page may hold
/// fewer than `limit` campaigns. An addition for the notification workers.
pub fn list_campaigns(
    table: &str,
    status: Option<&str>,
    limit: u32,
    after: Option<&str>,
) -> Result<Value, Failure> {
    if let Some(s) = status {
        if !["DRAFT", "OPEN", "CLOSED"].contains(&s) {
            return Err(Failure::bad_request(format!(
                "status must be DRAFT, OPEN or CLOSED, not {s:?}"
            )));
        }
    }
    let start = after.map(campaign_index_key);
    let page = table::query::<Value>(
        table,
        &json!({"PK": "CAMPAIGNS"}),
        Some("CAMPAIGN#"),
        Some(limit),
        start.as_ref(),
    )
    .map_err(|e| Failure::from_table("listing the campaigns", &e))?;
    let keys: Vec<Value> = page
        .items
        .iter()
        .filter_map(|i| str_field(i, "campaignId"))
        .map(campaign_key)
        .collect();
    let items = if keys.is_empty() {
        Vec::new()
    } else {
        table::batch_get::<Value, Value>(table, &keys)
            .map_err(|e| Failure::from_table("reading the campaigns", &e))?
    };
    let campaigns: Vec<Value> = items
        .into_iter()
        .flatten()
        .filter_map(|item| item.get("campaign").cloned())
        .filter(|c| status.is_none_or(|s| c.get("status").and_then(Value::as_str) == Some(s)))
        .collect();
    let next = page
        .next
        .as_ref()
        .and_then(|k| str_field(k, "SK"))
        .and_then(|sk| sk.strip_prefix("CAMPAIGN#"))
        .map_or(Value::Null, |c| json!(c));
    Ok(json!({"campaigns": campaigns, "next": next}))
}

fn partition(campaign: &str) -> String {
    format!("CAMPAIGN#{campaign}")
}

/// The key of a campaign's item.
pub fn campaign_key(id: &str) -> Value {
    json!({"PK": partition(id), "SK": "CAMPAIGN"})
}

/// The key of a slug's item (which campaign holds the slug).
pub fn slug_key(slug: &str) -> Value {
    json!({"PK": format!("SLUG#{slug}"), "SK": "SLUG"})
}

/// The key of a market's item.
pub fn market_key(campaign: &str, market: &str) -> Value {
    json!({"PK": partition(campaign), "SK": format!("{MARKET_PREFIX}{market}")})
}

/// The key of a market's stats item.
pub fn stats_key(campaign: &str, market: &str) -> Value {
    json!({"PK": partition(campaign), "SK": format!("STATS#{market}")})
}

/// The key of a verdict report's item.
pub fn report_key(campaign: &str, market: &str, report: &str) -> Value {
    json!({"PK": partition(campaign), "SK": format!("REPORT#{market}#{report}")})
}

const MARKET_PREFIX: &str = "MARKET#";

// ---- validation ------------------------------------------------------------

/// An id (campaign, market): 1 to [`MAX_ID_BYTES`] bytes, no `#`, `/` or
/// control characters.
pub fn check_id(what: &str, id: &str) -> Result<(), Failure> {
    if id.is_empty() {
        return Err(Failure::bad_request(format!("{what} is empty")));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(Failure::bad_request(format!(
            "{what} is over {MAX_ID_BYTES} bytes"
        )));
    }
    if id.chars().any(|c| c == '#' || c == '/' || c.is_control()) {
        return Err(Failure::bad_request(format!(
            "{what} {id:?} may not contain '#', '/' or control characters"
        )));
    }
    Ok(())
}

/// A campaign id: as [`check_id`], and not `by-slug` (the path of the
/// slug lookup).
fn check_campaign_id(id: &str) -> Result<(), Failure> {
    check_id("the campaign id", id)?;
    if id == "by-slug" {
        return Err(Failure::bad_request(
            "`by-slug` is not a campaign id (it is the path of the slug lookup)",
        ));
    }
    Ok(())
}

/// A slug: 1 to [`MAX_ID_BYTES`] characters of `[a-z0-9-]`.
pub fn check_slug(slug: &str) -> Result<(), Failure> {
    if slug.is_empty() || slug.len() > MAX_ID_BYTES {
        return Err(Failure::bad_request(format!(
            "slug must be 1 to {MAX_ID_BYTES} characters"
        )));
    }
    if !slug
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(Failure::bad_request(format!(
            "slug {slug:?} may only contain a-z, 0-9 and -"
        )));
    }
    Ok(())
}

/// Parses and checks a campaign body for `PUT /campaigns/{id}`: the
/// campaign, normalized (gate countries in upper case).
pub fn parse_campaign(id: &str, body: &Value) -> Result<Campaign, Failure> {
    check_campaign_id(id)?;
    let mut campaign: Campaign = serde_json::from_value(body.clone())
        .map_err(|e| Failure::bad_request(format!("the body is not a campaign: {e}")))?;
    if campaign.id != id {
        return Err(Failure::bad_request(format!(
            "the body's id {:?} is not the path's {id:?}",
            campaign.id
        )));
    }
    check_slug(&campaign.slug)?;
    let opens = rfc3339::parse_millis(&campaign.opens_at).ok_or_else(|| {
        Failure::bad_request(format!(
            "opensAt {:?} is not an RFC 3339 time",
            campaign.opens_at
        ))
    })?;
    let closes = rfc3339::parse_millis(&campaign.closes_at).ok_or_else(|| {
        Failure::bad_request(format!(
            "closesAt {:?} is not an RFC 3339 time",
            campaign.closes_at
        ))
    })?;
    if opens >= closes {
        return Err(Failure::bad_request("opensAt must be before closesAt"));
    }
    for (i, field) in campaign.fields.iter().enumerate() {
        if field.name.trim().is_empty() {
            return Err(Failure::bad_request(format!("fields[{i}] has no name")));
        }
        if campaign.fields[..i].iter().any(|f| f.name == field.name) {
            return Err(Failure::bad_request(format!(
                "field name {:?} appears more than once",
                field.name
            )));
        }
        let c = &field.constraints;
        if let (Some(min), Some(max)) = (c.min_length, c.max_length) {
            if min > max {
                return Err(Failure::bad_request(format!(
                    "field {:?}: minLength {min} is over maxLength {max}",
                    field.name
                )));
            }
        }
        if let (Some(min), Some(max)) = (c.min, c.max) {
            if min > max {
                return Err(Failure::bad_request(format!(
                    "field {:?}: min {min} is over max {max}",
                    field.name
                )));
            }
        }
        if c.one_of.as_ref().is_some_and(Vec::is_empty) {
            return Err(Failure::bad_request(format!(
                "field {:?}: enum is empty (no value could pass)",
                field.name
            )));
        }
    }
    if let Gate::Countries { countries } = &mut campaign.gate {
        if countries.is_empty() {
            return Err(Failure::bad_request(
                "a countries gate needs at least one country",
            ));
        }
        for c in countries.iter_mut() {
            let upper = c.to_ascii_uppercase();
            if !is_country_code(&upper) {
                return Err(Failure::bad_request(format!(
                    "gate country {c:?} is not an ISO 3166-1 alpha-2 code"
                )));
            }
            *c = upper;
        }
    }
    if let Some(linked) = &campaign.linked_campaign_id {
        check_id("linkedCampaignId", linked)?;
        if linked == id {
            return Err(Failure::bad_request(
                "a campaign cannot be linked to itself",
            ));
        }
    }
    Ok(campaign)
}

fn to_value<T: Serialize>(value: &T) -> Result<Value, Failure> {
    serde_json::to_value(value).map_err(|e| Failure::new(500, format!("encoding: {e}")))
}

fn get_item(table: &str, key: &Value, what: &str) -> Result<Option<Value>, Failure> {
    table::get::<Value>(table, key).map_err(|e| Failure::from_table(what, &e))
}

// ---- campaigns and slugs ---------------------------------------------------

fn version_of(item: &Value) -> u64 {
    item.get("version").and_then(Value::as_u64).unwrap_or(0)
}

/// `PUT /campaigns/{id}`: creates or replaces the campaign. The write is
/// conditional on the version read (a concurrent PUT of the same campaign
/// makes it read again, [`WRITE_ATTEMPTS`] in all, then 409); the slug is
/// claimed first ([`claim_slug`]; 409 when another campaign holds it).
pub fn put_campaign(table: &str, id: &str, body: &Value, now: i64) -> Result<Value, Failure> {
    let campaign = parse_campaign(id, body)?;
    let stored = to_value(&campaign)?;
    for _ in 0..WRITE_ATTEMPTS {
        let current = get_item(table, &campaign_key(id), "reading the campaign")?;
        let (condition, version) = match &current {
            None => (Condition::NotExists, 1),
            Some(item) => (
                Condition::AttributeEquals(
                    "version".into(),
                    item.get("version").cloned().unwrap_or(Value::Null),
                ),
                version_of(item) + 1,
            ),
        };
        claim_slug(table, &campaign.slug, id, version, now)?;
        let mut item = campaign_key(id);
        item["campaign"] = stored.clone();
        item["slug"] = json!(campaign.slug);
        item["version"] = json!(version);
        item["updatedAt"] = json!(rfc3339::format_millis(now));
        match table::put(table, &item, Some(condition)) {
            Ok(()) => {
                // The listing's index item (only its existence matters: the
                // listing reads the campaign item itself). Written after the
                // campaign, again by every PUT, so a crash in between is
                // repaired by the next PUT of the campaign.
                let mut index = campaign_index_key(id);
                index["campaignId"] = json!(id);
                table::put(table, &index, None)
                    .map_err(|e| Failure::from_table("indexing the campaign", &e))?;
                usher_sdk::info!(campaign = id, slug = campaign.slug, version = version; "campaign stored");
                return Ok(stored);
            }
            Err(e) if e.is_condition_failed() => continue,
            Err(e) => return Err(Failure::from_table("writing the campaign", &e)),
        }
    }
    Err(Failure::new(
        409,
        format!("campaign {id} was changed concurrently {WRITE_ATTEMPTS} times; try again"),
    ))
}

/// The claim token of a slug item: unique per campaign and version.
fn claim_token(campaign: &str, version: u64) -> String {
    format!("{campaign}@{version}")
}

/// Makes campaign `id` the holder of `slug` for the write of its version
/// `version`: the slug item `{"PK":"SLUG#<slug>","SK":"SLUG","campaignId",
/// "claimVersion","claim","claimedAt"}` is written conditionally (absent,
/// or still the claim read), so that of two campaigns racing for a slug one
/// gets it and the other a 409. A slug held by another campaign is free
/// when that campaign has since been written with another slug at or after
/// its claim (it moved away), or when the claim is older than
/// [`STALE_CLAIM_MS`] and that campaign does not use it (a crash between
/// claim and write).
pub fn claim_slug(
    table: &str,
    slug: &str,
    id: &str,
    version: u64,
    now: i64,
) -> Result<(), Failure> {
    let key = slug_key(slug);
    let mut item = key.clone();
    item["campaignId"] = json!(id);
    item["claimVersion"] = json!(version);
    item["claim"] = json!(claim_token(id, version));
    item["claimedAt"] = json!(now);
    for _ in 0..WRITE_ATTEMPTS {
        let condition = match get_item(table, &key, "reading the slug")? {
            None => Condition::NotExists,
            Some(held) => {
                let holder = str_field(&held, "campaignId").unwrap_or_default();
                if holder != id && !slug_is_free(table, &held, slug, now)? {
                    return Err(Failure::new(
                        409,
                        format!("slug {slug:?} is taken by campaign {holder:?}"),
                    ));
                }
                Condition::AttributeEquals(
                    "claim".into(),
                    held.get("claim").cloned().unwrap_or(Value::Null),
                )
            }
        };
        match table::put(table, &item, Some(condition)) {
            Ok(()) => return Ok(()),
            Err(e) if e.is_condition_failed() => continue,
            Err(e) => return Err(Failure::from_table("claiming the slug", &e)),
        }
    }
    Err(Failure::new(
        409,
        format!("slug {slug:?} is being claimed concurrently; try again"),
    ))
}

/// Whether a slug item held by another campaign may be taken over.
fn slug_is_free(table: &str, held: &Value, slug: &str, now: i64) -> Result<bool, Failure> {
    let holder = str_field(held, "campaignId").unwrap_or_default();
    let claim_version = held
        .get("claimVersion")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let old = held
        .get("claimedAt")
        .and_then(Value::as_i64)
        .is_none_or(|at| now.saturating_sub(at) > STALE_CLAIM_MS);
    Ok(
        match get_item(table, &campaign_key(holder), "reading the slug's holder")? {
            None => old,
            Some(campaign) => {
                str_field(&campaign, "slug") != Some(slug)
                    && (version_of(&campaign) >= claim_version || old)
            }
        },
    )
}

/// `GET /campaigns/{id}`.
pub fn get_campaign(table: &str, id: &str) -> Result<Value, Failure> {
    get_item(table, &campaign_key(id), "reading the campaign")?
        .and_then(|item| item.get("campaign").cloned())
        .ok_or_else(|| Failure::not_found(format!("no campaign {id:?}")))
}

/// `GET /campaigns/by-slug/{slug}`: the campaign holding the slug (a slug
/// item left behind by a campaign that moved to another slug is not an
/// answer).
pub fn campaign_by_slug(table: &str, slug: &str) -> Result<Value, Failure> {
    let missing = || Failure::not_found(format!("no campaign with slug {slug:?}"));
    let held = get_item(table, &slug_key(slug), "reading the slug")?.ok_or_else(missing)?;
    let holder = str_field(&held, "campaignId").ok_or_else(missing)?;
    let item =
        get_item(table, &campaign_key(holder), "reading the campaign")?.ok_or_else(missing)?;
    if str_field(&item, "slug") != Some(slug) {
        return Err(missing());
    }
    item.get("campaign").cloned().ok_or_else(missing)
}

fn require_campaign(table: &str, id: &str) -> Result<(), Failure> {
    match get_item(table, &campaign_key(id), "reading the campaign")? {
        Some(_) => Ok(()),
        None => Err(Failure::not_found(format!("no campaign {id:?}"))),
    }
}

// ---- markets ---------------------------------------------------------------

/// `PUT /campaigns/{id}/markets/{mid}`: the campaign must exist; the body's
/// `id` and `campaignId` must be the path's.
pub fn put_market(table: &str, id: &str, mid: &str, body: &Value) -> Result<Value, Failure> {
    check_id("the campaign id", id)?;
    check_id("the market id", mid)?;
    let market: Market = serde_json::from_value(body.clone())
        .map_err(|e| Failure::bad_request(format!("the body is not a market: {e}")))?;
    if market.id != mid {
        return Err(Failure::bad_request(format!(
            "the body's id {:?} is not the path's {mid:?}",
            market.id
        )));
    }
    if market.campaign_id != id {
        return Err(Failure::bad_request(format!(
            "the body's campaignId {:?} is not the path's {id:?}",
            market.campaign_id
        )));
    }
    if market.event_id.trim().is_empty() {
        return Err(Failure::bad_request("eventId is empty"));
    }
    require_campaign(table, id)?;
    let stored = to_value(&market)?;
    let mut item = market_key(id, mid);
    item["market"] = stored.clone();
    item["updatedAt"] = json!(rfc3339::now());
    table::put(table, &item, None).map_err(|e| Failure::from_table("writing the market", &e))?;
    usher_sdk::info!(campaign = id, market = mid; "market stored");
    Ok(stored)
}

/// `GET /campaigns/{id}/markets/{mid}`.
pub fn get_market(table: &str, id: &str, mid: &str) -> Result<Value, Failure> {
    get_item(table, &market_key(id, mid), "reading the market")?
        .and_then(|item| item.get("market").cloned())
        .ok_or_else(|| Failure::not_found(format!("no market {mid:?} in campaign {id:?}")))
}

fn require_market(table: &str, id: &str, mid: &str) -> Result<(), Failure> {
    get_market(table, id, mid).map(|_| ())
}

/// `GET /campaigns/{id}/markets`: every market of the campaign, by id (404
/// for an unknown campaign).
pub fn list_markets(table: &str, id: &str) -> Result<Value, Failure> {
    require_campaign(table, id)?;
    let pk = json!({"PK": partition(id)});
    let mut markets = Vec::new();
    let mut after: Option<Value> = None;
    loop {
        let page = table::query::<Value>(table, &pk, Some(MARKET_PREFIX), None, after.as_ref())
            .map_err(|e| Failure::from_table("listing the markets", &e))?;
        markets.extend(page.items.iter().filter_map(|i| i.get("market").cloned()));
        match page.next {
            Some(next) if after.as_ref() != Some(&next) => after = Some(next),
            _ => break,
        }
    }
    Ok(json!({"markets": markets}))
}

// ---- stats and verdict reports --------------------------------------------

/// A market's stats item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsItem {
    /// `CAMPAIGN#<campaignId>`.
    #[serde(rename = "PK")]
    pub pk: String,
    /// `STATS#<marketId>`.
    #[serde(rename = "SK")]
    pub sk: String,
    /// The campaign.
    pub campaign_id: String,
    /// The market.
    pub market_id: String,
    /// PROCESSING or FINISHED.
    pub status: StatsStatus,
    /// The draw reported (null when only verdict reports arrived so far).
    pub draw_id: Option<String>,
    /// The entries the draw read.
    #[serde(default)]
    pub entries: u64,
    /// The verdicts the draw made.
    #[serde(default)]
    pub expected: VerdictCounts,
    /// The verdicts reported saved (the sum of the counted reports).
    #[serde(default)]
    pub reported: VerdictCounts,
    /// How many reports were counted.
    #[serde(default)]
    pub reports: u64,
    /// RFC 3339.
    #[serde(default)]
    pub updated_at: String,
    /// Grows with every write; writes are conditional on it.
    pub version: u64,
    /// The report counted by the last write (see [`report_verdicts`]).
    #[serde(default)]
    pub last_report: Option<String>,
    /// The reports counted by the last write when it was a batch (see
    /// [`report_verdicts_batch`]); empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_reports: Vec<String>,
}

impl StatsItem {
    fn new(campaign: &str, market: &str, status: StatsStatus, draw: Option<String>) -> StatsItem {
        let key = stats_key(campaign, market);
        StatsItem {
            pk: str_field(&key, "PK").unwrap_or_default().to_string(),
            sk: str_field(&key, "SK").unwrap_or_default().to_string(),
            campaign_id: campaign.to_string(),
            market_id: market.to_string(),
            status,
            draw_id: draw,
            entries: 0,
            expected: VerdictCounts::default(),
            reported: VerdictCounts::default(),
            reports: 0,
            updated_at: String::new(),
            version: 0,
            last_report: None,
            last_reports: Vec::new(),
        }
    }

    /// The reports the last write counted (`lastReport` and `lastReports`).
    fn last_counted(&self) -> impl Iterator<Item = &str> {
        self.last_report
            .as_deref()
            .into_iter()
            .chain(self.last_reports.iter().map(String::as_str))
    }

    /// The `MarketStats` answer.
    pub fn view(&self) -> Value {
        json!({
            "campaignId": self.campaign_id, "marketId": self.market_id,
            "status": self.status, "drawId": self.draw_id, "entries": self.entries,
            "expected": self.expected, "reported": self.reported, "reports": self.reports,
            "updatedAt": self.updated_at,
        })
    }
}

fn read_stats(table: &str, id: &str, mid: &str) -> Result<Option<StatsItem>, Failure> {
    get_item(table, &stats_key(id, mid), "reading the stats")?
        .map(|item| {
            serde_json::from_value(item)
                .map_err(|e| Failure::new(500, format!("a stored stats item is malformed: {e}")))
        })
        .transpose()
}

/// Writes `next` (version `previous + 1`) conditional on the version read:
/// whether it was written (false: another write got in between).
fn write_stats(table: &str, previous: Option<u64>, next: &StatsItem) -> Result<bool, Failure> {
    let condition = match previous {
        None => Condition::NotExists,
        Some(v) => Condition::AttributeEquals("version".into(), json!(v)),
    };
    match table::put(table, &to_value(next)?, Some(condition)) {
        Ok(()) => Ok(true),
        Err(e) if e.is_condition_failed() => Ok(false),
        Err(e) => Err(Failure::from_table("writing the stats", &e)),
    }
}

/// The body of `PUT …/stats`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StatsUpdate {
    status: StatsStatus,
    draw_id: String,
    #[serde(default)]
    entries: u64,
    #[serde(default)]
    expected: VerdictCounts,
}

fn busy(what: &str) -> Failure {
    Failure::new(
        503,
        format!("{what}: the market's stats were written concurrently {STATS_ATTEMPTS} times; try again"),
    )
}

/// `PUT /campaigns/{id}/markets/{mid}/stats`: reports the draw's state.
/// PROCESSING → FINISHED; FINISHED never goes back to PROCESSING for the
/// same `drawId` (409). Another `drawId` than the stored one is a new draw:
/// its `reported` counts start again from zero.
pub fn put_stats(
    table: &str,
    id: &str,
    mid: &str,
    body: &Value,
    now: i64,
) -> Result<Value, Failure> {
    let update: StatsUpdate = serde_json::from_value(body.clone())
        .map_err(|e| Failure::bad_request(format!("the body is not a stats update: {e}")))?;
    if update.draw_id.trim().is_empty() {
        return Err(Failure::bad_request("drawId is empty"));
    }
    require_market(table, id, mid)?;
    for _ in 0..STATS_ATTEMPTS {
        let current = read_stats(table, id, mid)?;
        let previous = current.as_ref().map(|s| s.version);
        let mut next = match current {
            None => StatsItem::new(id, mid, update.status, None),
            Some(s) => {
                let same_draw = s.draw_id.as_deref() == Some(update.draw_id.as_str());
                if same_draw
                    && s.status == StatsStatus::Finished
                    && update.status == StatsStatus::Processing
                {
                    return Err(Failure::new(
                        409,
                        format!(
                            "draw {:?} of market {mid:?} is FINISHED; it cannot go back to PROCESSING",
                            update.draw_id
                        ),
                    ));
                }
                let mut next = s.clone();
                if !same_draw && s.draw_id.is_some() {
                    next.reported = VerdictCounts::default();
                    next.reports = 0;
                }
                next
            }
        };
        next.status = update.status;
        next.draw_id = Some(update.draw_id.clone());
        next.entries = update.entries;
        next.expected = update.expected;
        next.version = previous.unwrap_or(0) + 1;
        next.updated_at = rfc3339::format_millis(now);
        if write_stats(table, previous, &next)? {
            usher_sdk::info!(campaign = id, market = mid, draw = update.draw_id; "stats {:?}", update.status);
            return Ok(next.view());
        }
    }
    Err(busy("reporting the stats"))
}

/// `GET /campaigns/{id}/markets/{mid}/stats`.
pub fn get_stats(table: &str, id: &str, mid: &str) -> Result<Value, Failure> {
    read_stats(table, id, mid)?
        .map(|s| s.view())
        .ok_or_else(|| {
            Failure::not_found(format!("no stats for market {mid:?} of campaign {id:?}"))
        })
}

/// The body of `POST …/verdict-reports`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    report_id: String,
    counts: VerdictCounts,
    #[serde(default)]
    draw_id: Option<String>,
}

const CLAIMED: &str = "claimed";
const COUNTED: &str = "counted";

/// Marks a report item counted (absent: nothing to mark).
fn mark_counted(table: &str, key: &Value) -> Result<(), Failure> {
    match table::update::<serde::de::IgnoredAny>(
        table,
        key,
        &json!({"state": COUNTED}),
        &[],
        Some(Condition::Exists),
    ) {
        Ok(_) => Ok(()),
        Err(e) if e.is_condition_failed() => Ok(()),
        Err(e) => Err(Failure::from_table("marking a report counted", &e)),
    }
}

/// `POST /campaigns/{id}/markets/{mid}/verdict-reports
/// {"reportId","counts","drawId"?}` → `{"counted": bool}`: the counts are
/// added into the stats' `reported` exactly once per `reportId`, also when
/// the same report arrives many times at once or after a crash.
///
/// 1. The report is claimed: its item `REPORT#<mid>#<reportId>` is put
///    (`state: claimed`) on condition that it does not exist. When it does:
///    other counts → 409; `state: counted` → `{"counted": false}`.
/// 2. The counts are added to the stats item by a write conditional on its
///    version, which also sets `lastReport` to this report. Before a write
///    replaces `lastReport`, the report named there is marked counted. So a
///    claimed report was added iff the stats' `lastReport` is it or its own
///    item says counted (read after the stats): a redelivery after a crash
///    between the two writes adds nothing twice.
/// 3. The report's item is marked counted.
///
/// With `drawId`, a report of another draw than the stats' is a 409.
pub fn report_verdicts(
    table: &str,
    id: &str,
    mid: &str,
    body: &Value,
    now: i64,
) -> Result<Value, Failure> {
    let report: Report = serde_json::from_value(body.clone())
        .map_err(|e| Failure::bad_request(format!("the body is not a verdict report: {e}")))?;
    if report.report_id.trim().is_empty() {
        return Err(Failure::bad_request("reportId is empty"));
    }
    if report
        .draw_id
        .as_deref()
        .is_some_and(|d| d.trim().is_empty())
    {
        return Err(Failure::bad_request("drawId is empty"));
    }
    require_market(table, id, mid)?;
    let rid = report.report_id.as_str();
    let key = report_key(id, mid, rid);
    let mut item = key.clone();
    item["reportId"] = json!(rid);
    item["counts"] = json!(report.counts);
    item["state"] = json!(CLAIMED);
    item["receivedAt"] = json!(rfc3339::format_millis(now));
    if let Some(draw) = &report.draw_id {
        item["drawId"] = json!(draw);
    }
    match table::put(table, &item, Some(Condition::NotExists)) {
        Ok(()) => {}
        Err(e) if e.is_condition_failed() => {
            let existing = get_item(table, &key, "reading the report")?
                .ok_or_else(|| Failure::new(503, "the report changed while read; try again"))?;
            if existing.get("counts") != Some(&json!(report.counts)) {
                return Err(Failure::new(
                    409,
                    format!(
                        "report {rid:?} was received before with other counts: {}",
                        existing.get("counts").unwrap_or(&Value::Null)
                    ),
                ));
            }
            if str_field(&existing, "state") == Some(COUNTED) {
                return Ok(json!({"counted": false}));
            }
            // Claimed and perhaps not added: go on.
        }
        Err(e) => return Err(Failure::from_table("claiming the report", &e)),
    }
    for _ in 0..STATS_ATTEMPTS {
        let current = read_stats(table, id, mid)?;
        if current
            .as_ref()
            .is_some_and(|s| s.last_counted().any(|r| r == rid))
        {
            mark_counted(table, &key)?;
            return Ok(json!({"counted": false}));
        }
        let mine = get_item(table, &key, "reading the report")?;
        if mine.as_ref().and_then(|r| str_field(r, "state")) == Some(COUNTED) {
            return Ok(json!({"counted": false}));
        }
        if let (Some(draw), Some(stats_draw)) = (
            report.draw_id.as_deref(),
            current.as_ref().and_then(|s| s.draw_id.as_deref()),
        ) {
            if draw != stats_draw {
                return Err(Failure::new(
                    409,
                    format!(
                        "report {rid:?} is of draw {draw:?}, the market's draw is {stats_draw:?}"
                    ),
                ));
            }
        }
        if let Some(s) = &current {
            for last in s.last_counted() {
                mark_counted(table, &report_key(id, mid, last))?;
            }
        }
        let previous = current.as_ref().map(|s| s.version);
        let mut next = current.unwrap_or_else(|| {
            StatsItem::new(id, mid, StatsStatus::Processing, report.draw_id.clone())
        });
        next.reported.add(&report.counts);
        next.reports += 1;
        next.last_report = Some(rid.to_string());
        next.last_reports = Vec::new();
        next.version = previous.unwrap_or(0) + 1;
        next.updated_at = rfc3339::format_millis(now);
        if write_stats(table, previous, &next)? {
            if let Err(e) = mark_counted(table, &key) {
                // The stats name this report as the last one: the next
                // write marks it.
                usher_sdk::warn!(report = rid, error = e.message; "marking the report counted failed");
            }
            usher_sdk::info!(campaign = id, market = mid, report = rid; "verdict report counted");
            return Ok(json!({"counted": true}));
        }
    }
    Err(busy("counting the report"))
}

/// At most this many reports per `POST …/verdict-reports/batch`.
pub const MAX_BATCH_REPORTS: usize = 1000;

/// The body of `POST …/verdict-reports/batch`.
#[derive(Debug, Clone, Deserialize)]
struct ReportBatch {
    reports: Vec<Report>,
}

/// `POST /campaigns/{id}/markets/{mid}/verdict-reports/batch
/// {"reports":[{"reportId","counts","drawId"?}…]}` (at most
/// [`MAX_BATCH_REPORTS`]; more is a 413) → `{"results":[{"reportId",
/// "counted": bool} | {"reportId","status","error"}…]}`, one result per
/// report in order: the reports of [`report_verdicts`] counted with one
/// write of the stats, each exactly once per `reportId`.
///
/// 1. Every report is claimed with one `put_many` (`not-exists`); a report
///    already there with other counts is answered 409 alone, one already
///    counted `counted: false`. A `reportId` twice in the request is one
///    report (the later one answered `counted: false`, or 409 with other
///    counts).
/// 2. The stats are read; the claimed reports named by its `lastReport` /
///    `lastReports` or whose item says counted were added before (answered
///    `counted: false`); a report of another draw than the stats' is 409.
///    The reports named by the stats are marked counted, then the others'
///    counts are added by one write conditional on the stats' version,
///    which sets `lastReports` to them (the same rule as
///    [`report_verdicts`], for a set of reports).
/// 3. Their items are marked counted.
pub fn report_verdicts_batch(
    table: &str,
    id: &str,
    mid: &str,
    body: &Value,
    now: i64,
) -> Result<Value, Failure> {
    let batch: ReportBatch = serde_json::from_value(body.clone()).map_err(|e| {
        Failure::bad_request(format!("the body is not a batch of verdict reports: {e}"))
    })?;
    if batch.reports.len() > MAX_BATCH_REPORTS {
        return Err(Failure::new(
            413,
            format!(
                "at most {MAX_BATCH_REPORTS} reports per request, got {}",
                batch.reports.len()
            ),
        ));
    }
    for (i, r) in batch.reports.iter().enumerate() {
        if r.report_id.trim().is_empty() {
            return Err(Failure::bad_request(format!(
                "reports[{i}].reportId is empty"
            )));
        }
        if r.draw_id.as_deref().is_some_and(|d| d.trim().is_empty()) {
            return Err(Failure::bad_request(format!(
                "reports[{i}].drawId is empty"
            )));
        }
    }
    require_market(table, id, mid)?;
    let n = batch.reports.len();
    let mut results: Vec<Option<Value>> = vec![None; n];
    let answer = |results: Vec<Option<Value>>| {
        let results: Vec<Value> = results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| json!({"counted": false})))
            .collect();
        json!({"results": results})
    };
    let refuse = |rid: &str, status: u16, error: String| json!({"reportId": rid, "status": status, "error": error});
    // The first occurrence of each reportId; later ones follow it.
    let mut first: BTreeMap<&str, usize> = BTreeMap::new();
    let mut distinct: Vec<usize> = Vec::new();
    for (i, r) in batch.reports.iter().enumerate() {
        match first.get(r.report_id.as_str()) {
            Some(&f) if batch.reports[f].counts == r.counts => {
                results[i] = Some(json!({"reportId": r.report_id, "counted": false}));
            }
            Some(_) => {
                results[i] = Some(refuse(
                    &r.report_id,
                    409,
                    format!(
                        "report {:?} appears twice in the request with other counts",
                        r.report_id
                    ),
                ));
            }
            None => {
                first.insert(r.report_id.as_str(), i);
                distinct.push(i);
            }
        }
    }
    if distinct.is_empty() {
        return Ok(answer(results));
    }
    // 1. Claims.
    let claims: Vec<PutItem> = distinct
        .iter()
        .map(|&i| {
            let r = &batch.reports[i];
            let mut item = report_key(id, mid, &r.report_id);
            item["reportId"] = json!(r.report_id);
            item["counts"] = json!(r.counts);
            item["state"] = json!(CLAIMED);
            item["receivedAt"] = json!(rfc3339::format_millis(now));
            if let Some(draw) = &r.draw_id {
                item["drawId"] = json!(draw);
            }
            PutItem {
                item,
                condition: Some(Condition::NotExists),
            }
        })
        .collect();
    let claimed = table::put_many(table, claims)
        .map_err(|e| Failure::from_table("claiming the reports", &e))?;
    if claimed.len() != distinct.len() {
        return Err(Failure::new(500, "put_many answered the wrong count"));
    }
    let mut there: Vec<usize> = Vec::new();
    for (&i, r) in distinct.iter().zip(claimed) {
        match r {
            Ok(()) => {}
            Err(e) if e.is_condition_failed() => there.push(i),
            Err(e) => return Err(Failure::from_table("claiming a report", &e)),
        }
    }
    let keys: Vec<Value> = there
        .iter()
        .map(|&i| report_key(id, mid, &batch.reports[i].report_id))
        .collect();
    let existing = batch_items(table, &keys)?;
    let mut settled: BTreeSet<usize> = BTreeSet::new();
    for (&i, item) in there.iter().zip(existing) {
        let r = &batch.reports[i];
        let Some(item) = item else {
            results[i] = Some(refuse(
                &r.report_id,
                503,
                "the report changed while read; try again".into(),
            ));
            settled.insert(i);
            continue;
        };
        if item.get("counts") != Some(&json!(r.counts)) {
            results[i] = Some(refuse(
                &r.report_id,
                409,
                format!(
                    "report {:?} was received before with other counts: {}",
                    r.report_id,
                    item.get("counts").unwrap_or(&Value::Null)
                ),
            ));
            settled.insert(i);
        } else if str_field(&item, "state") == Some(COUNTED) {
            results[i] = Some(json!({"reportId": r.report_id, "counted": false}));
            settled.insert(i);
        }
    }
    let pending: Vec<usize> = distinct
        .iter()
        .copied()
        .filter(|i| !settled.contains(i))
        .collect();
    if pending.is_empty() {
        return Ok(answer(results));
    }
    // 2. The stats.
    for _ in 0..STATS_ATTEMPTS {
        let current = read_stats(table, id, mid)?;
        let last: BTreeSet<String> = current
            .as_ref()
            .map(|s| s.last_counted().map(str::to_string).collect())
            .unwrap_or_default();
        let keys: Vec<Value> = pending
            .iter()
            .map(|&i| report_key(id, mid, &batch.reports[i].report_id))
            .collect();
        let mine = batch_items(table, &keys)?;
        let stats_draw = current.as_ref().and_then(|s| s.draw_id.clone());
        let mut adding: Vec<usize> = Vec::new();
        for (&i, item) in pending.iter().zip(&mine) {
            let r = &batch.reports[i];
            let counted_before = last.contains(&r.report_id)
                || item.as_ref().and_then(|it| str_field(it, "state")) == Some(COUNTED);
            if counted_before {
                results[i] = Some(json!({"reportId": r.report_id, "counted": false}));
                continue;
            }
            if let (Some(draw), Some(sd)) = (r.draw_id.as_deref(), stats_draw.as_deref()) {
                if draw != sd {
                    results[i] = Some(refuse(
                        &r.report_id,
                        409,
                        format!(
                            "report {:?} is of draw {draw:?}, the market's draw is {sd:?}",
                            r.report_id
                        ),
                    ));
                    continue;
                }
            }
            adding.push(i);
        }
        let in_last: Vec<Value> = last.iter().map(|l| report_key(id, mid, l)).collect();
        mark_all_counted(table, &in_last)?;
        if adding.is_empty() {
            return Ok(answer(results));
        }
        let first_draw = adding
            .first()
            .and_then(|&i| batch.reports[i].draw_id.clone());
        let previous = current.as_ref().map(|s| s.version);
        let mut next =
            current.unwrap_or_else(|| StatsItem::new(id, mid, StatsStatus::Processing, first_draw));
        for &i in &adding {
            next.reported.add(&batch.reports[i].counts);
        }
        next.reports += adding.len() as u64;
        next.last_report = None;
        next.last_reports = adding
            .iter()
            .map(|&i| batch.reports[i].report_id.clone())
            .collect();
        next.version = previous.unwrap_or(0) + 1;
        next.updated_at = rfc3339::format_millis(now);
        if write_stats(table, previous, &next)? {
            let keys: Vec<Value> = adding
                .iter()
                .map(|&i| report_key(id, mid, &batch.reports[i].report_id))
                .collect();
            if let Err(e) = mark_all_counted(table, &keys) {
                // The stats name these reports: the next write marks them.
                usher_sdk::warn!(reports = keys.len(), error = e.message; "marking the reports counted failed");
            }
            for &i in &adding {
                results[i] = Some(json!({"reportId": batch.reports[i].report_id, "counted": true}));
            }
            usher_sdk::info!(campaign = id, market = mid, counted = adding.len(); "verdict reports counted");
            return Ok(answer(results));
        }
    }
    Err(busy("counting the reports"))
}

/// The items of `keys` (one `batch_get`).
fn batch_items(table: &str, keys: &[Value]) -> Result<Vec<Option<Value>>, Failure> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let items = table::batch_get::<Value, Value>(table, keys)
        .map_err(|e| Failure::from_table("reading the reports", &e))?;
    if items.len() != keys.len() {
        return Err(Failure::new(500, "batch_get answered the wrong count"));
    }
    Ok(items)
}

/// Marks the report items of `keys` counted (one `update_many`; absent
/// ones: nothing to mark).
fn mark_all_counted(table: &str, keys: &[Value]) -> Result<(), Failure> {
    if keys.is_empty() {
        return Ok(());
    }
    let updates = keys
        .iter()
        .map(|k| UpdateItem {
            key: k.clone(),
            set: json!({"state": COUNTED}),
            remove: Vec::new(),
            condition: Some(Condition::Exists),
        })
        .collect();
    let results = table::update_many::<serde::de::IgnoredAny>(table, updates)
        .map_err(|e| Failure::from_table("marking reports counted", &e))?;
    for r in results {
        match r {
            Ok(_) => {}
            Err(e) if e.is_condition_failed() => {}
            Err(e) => return Err(Failure::from_table("marking a report counted", &e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
