//! The service's routing, validation and table logic. It calls the SDK's
//! table functions directly; natively (tests) they reach the backend
//! installed on the thread (`usher_sdk::fakes`).

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use usher_domain::Fan;
use usher_sdk::json::{json, str_field};
use usher_sdk::router::{json_reply as ok, Router};
use usher_sdk::table::{self, Condition, Page, PutItem, UpdateItem, Write};
use usher_sdk::{HttpRequest, HttpResponse, Value};

/// At most this many entries, keys or fans per request (more is a 413).
pub const MAX_ITEMS: usize = usher_domain::CHUNK_SIZE;
/// The page size of `GET /campaigns/{id}/entries` without `limit`.
pub const DEFAULT_LIMIT: u32 = 100;
/// The largest `limit` (the host caps a query page at 1000 items).
pub const MAX_LIMIT: u32 = 1000;
/// Attempts of a read-compare-write before answering 409.
pub const WRITE_ATTEMPTS: usize = 3;

/// Every item's sort key starts with this.
const FAN_PREFIX: &str = "FAN#";

/// The service's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The entries table (`table`, default `entries`).
    pub table: String,
    /// The largest entry document accepted, in bytes of JSON
    /// (`max_entry_bytes`, default 65536): a larger one is refused with 400.
    pub max_entry_bytes: u64,
}

/// The default of [`Settings::max_entry_bytes`].
pub const DEFAULT_MAX_ENTRY_BYTES: u64 = 64 * 1024;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            table: "entries".into(),
            max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
        }
    }
}

impl Settings {
    /// Reads the settings with the config capability, defaults for absent keys.
    pub fn load() -> usher_sdk::Result<Settings> {
        let d = Settings::default();
        Ok(Settings {
            table: usher_sdk::config::string_or("table", &d.table)?,
            max_entry_bytes: usher_sdk::config::get_or("max_entry_bytes", d.max_entry_bytes)?,
        })
    }
}

/// A request that cannot be served: its status and message, answered as
/// `{"error": message}` (the SDK router's error).
pub use usher_sdk::router::HttpError as Failure;

/// Serves one request (the routes are those of the crate docs; 404 for an
/// unknown path, 405 for a known path with another method).
pub fn handle(settings: &Settings, request: &HttpRequest) -> HttpResponse {
    let table = settings.table.as_str();
    Router::new()
        .post("/entries/batch-upsert", |r| {
            ok(batch_upsert(
                table,
                settings.max_entry_bytes,
                &r.json_object()?,
            ))
        })
        .post("/entries/batch-delete", |r| {
            ok(batch_delete(table, &r.json_object()?))
        })
        .post("/scores/refresh", |r| {
            ok(refresh_scores(table, &r.json_object()?))
        })
        .get("/campaigns/{campaignId}/entries", |r| {
            let limit = match r.query("limit")? {
                None => DEFAULT_LIMIT,
                Some(l) => parse_limit(&l)?,
            };
            let after = r.query("after")?.filter(|a| !a.is_empty());
            ok(campaign_entries(
                table,
                r.param("campaignId"),
                limit,
                after.as_deref(),
            ))
        })
        .get("/markets/{marketId}/entries", |r| {
            let (campaign, limit, after) = market_query(r)?;
            let body = presale::market_entries(
                table,
                r.param("marketId"),
                &campaign,
                limit,
                after.as_deref(),
            )?;
            Ok(HttpResponse {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: body.into_bytes(),
            })
        })
        .get("/markets/{marketId}/selections", |r| {
            let (campaign, limit, after) = market_query(r)?;
            ok(presale::selections(
                table,
                r.param("marketId"),
                &campaign,
                limit,
                after.as_deref(),
            ))
        })
        .put("/campaigns/{campaignId}/invites", |r| {
            ok(presale::put_invites(
                table,
                r.param("campaignId"),
                &r.json_object()?,
            ))
        })
        .get("/campaigns/{campaignId}/invites/{email}", |r| {
            ok(presale::get_invite(
                table,
                r.param("campaignId"),
                r.param("email"),
            ))
        })
        .post("/entries/assign-codes", |r| {
            ok(presale::assign_codes(table, &r.json_object()?))
        })
        .post("/entries/verdicts", |r| {
            ok(presale::verdicts(table, &r.json_object()?))
        })
        .handle(request)
}

/// `campaignId` (required), `limit` and `after` of the market lists.
fn market_query(
    r: &usher_sdk::router::Routed<'_>,
) -> Result<(String, u32, Option<String>), Failure> {
    let campaign = r
        .query("campaignId")?
        .filter(|c| !c.is_empty())
        .ok_or_else(|| Failure::bad_request("campaignId query parameter is required"))?;
    let limit = presale::parse_market_limit(r.query("limit")?.as_deref())?;
    let after = r.query("after")?.filter(|a| !a.is_empty());
    Ok((campaign, limit, after))
}

fn parse_limit(text: &str) -> Result<u32, Failure> {
    match text.parse::<u32>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(Failure::bad_request(format!(
            "limit must be an integer from 1 to {MAX_LIMIT}, not {text:?}"
        ))),
    }
}

/// The array `field` of the body: 400 when absent or not an array, 413
/// beyond [`MAX_ITEMS`].
fn items<'a>(body: &'a Value, field: &str) -> Result<&'a [Value], Failure> {
    let list = body
        .get(field)
        .and_then(Value::as_array)
        .ok_or_else(|| Failure::bad_request(format!("the body needs an array `{field}`")))?;
    if list.len() > MAX_ITEMS {
        return Err(Failure::new(
            413,
            format!(
                "at most {MAX_ITEMS} {field} per request, got {}",
                list.len()
            ),
        ));
    }
    Ok(list)
}

/// The fan of element `index` of `field`: 400 unless it has `campaignId`
/// and `globalUserId` as non-empty strings.
fn fan_of(value: &Value, field: &str, index: usize) -> Result<Fan, Failure> {
    Fan::of(value).ok_or_else(|| {
        Failure::bad_request(format!(
            "{field}[{index}] needs campaignId and globalUserId as non-empty strings"
        ))
    })
}

/// The item's key of a fan: `{"PK": "CAMPAIGN#<campaignId>", "SK": "FAN#<globalUserId>"}`.
pub fn key_of(fan: &Fan) -> Value {
    json!({"PK": partition(&fan.campaign_id), "SK": format!("{FAN_PREFIX}{}", fan.global_user_id)})
}

fn partition(campaign_id: &str) -> String {
    format!("CAMPAIGN#{campaign_id}")
}

fn fans(list: &[Value], field: &str) -> Result<Vec<Fan>, Failure> {
    list.iter()
        .enumerate()
        .map(|(i, v)| fan_of(v, field, i))
        .collect()
}

/// The stored item of an entry.
pub fn item_of(fan: &Fan, entry: &Value) -> Value {
    let mut item = key_of(fan);
    item["entry"] = entry.clone();
    let market = entry
        .get("marketId")
        .or_else(|| entry.get("entry").and_then(|e| e.get("marketId")))
        .filter(|m| !m.is_null());
    if let Some(market) = market {
        item["marketId"] = market.clone();
    }
    // Always present (null without one) so that a write can be conditional on it.
    item["version"] = entry.get("version").cloned().unwrap_or(Value::Null);
    item
}

/// A version as a number, for comparing: a JSON number or a numeric string.
fn version_number(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

/// Whether an upsert carrying `incoming` must be ignored given the stored
/// item: both versions are numbers and the incoming one is lower.
pub fn is_older(incoming: Option<&Value>, stored: Option<&Value>) -> bool {
    match (
        version_number(incoming),
        version_number(stored.and_then(|s| s.get("version"))),
    ) {
        (Some(new), Some(old)) => new < old,
        _ => false,
    }
}

/// The condition that the stored item is still the one we read.
fn unchanged(current: Option<&Value>) -> Condition {
    match current {
        None => Condition::NotExists,
        Some(item) => match item.get("version") {
            Some(v) => Condition::AttributeEquals("version".into(), v.clone()),
            None => Condition::Exists,
        },
    }
}

fn batch_get(table: &str, keys: &[Value]) -> Result<Vec<Option<Value>>, Failure> {
    match table::batch_get::<Value, Value>(table, keys) {
        Ok(items) if items.len() == keys.len() => Ok(items),
        Ok(items) => Err(Failure::new(
            500,
            format!(
                "batch_get answered {} items for {} keys",
                items.len(),
                keys.len()
            ),
        )),
        Err(e) => Err(Failure::from_table("reading the entries", &e)),
    }
}

/// `POST /entries/batch-upsert`.
pub fn batch_upsert(table: &str, max_entry_bytes: u64, body: &Value) -> Result<Value, Failure> {
    let entries = items(body, "entries")?;
    let refresh = match body.get("refreshScores") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(Failure::bad_request("refreshScores must be a boolean")),
    };
    // With `refreshScores`, a written item carries its score: the refresh
    // is part of the write itself.
    let item_for = |fan: &Fan, entry: &Value| {
        let mut item = item_of(fan, entry);
        if refresh {
            item["score"] = json!(score(entry));
        }
        item
    };
    // The fans written, and those whose entry was not (older than stored).
    let mut written: Vec<&Fan> = Vec::new();
    let mut not_written: Vec<&Fan> = Vec::new();
    let mut parsed = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        if !entry.is_object() {
            return Err(Failure::bad_request(format!(
                "entries[{i}] is not an object"
            )));
        }
        let size = serde_json::to_vec(entry).map_or(0, |v| v.len() as u64);
        if size > max_entry_bytes {
            return Err(Failure::bad_request(format!(
                "entries[{i}] is {size} bytes of JSON, over the limit of {max_entry_bytes}"
            )));
        }
        parsed.push((fan_of(entry, "entries", i)?, entry));
    }
    let keys: Vec<Value> = parsed.iter().map(|(f, _)| key_of(f)).collect();
    let distinct = keys.iter().enumerate().all(|(n, k)| !keys[..n].contains(k));
    // The market index item of each entry (in the market it names) is read
    // with the entries and written in the same call, conditional on what was
    // read; the entries whose index could not be written that way (a lost
    // race, a move to another market, duplicates) are brought in line after.
    let markets: Vec<Option<String>> = parsed
        .iter()
        .map(|(f, e)| presale::market_of(&item_of(f, e)))
        .collect();
    let index_keys: Vec<Value> = if distinct {
        parsed
            .iter()
            .zip(&markets)
            .filter_map(|((f, _), m)| Some(presale::index_key(f, m.as_deref()?)))
            .collect()
    } else {
        Vec::new()
    };
    let mut all_keys = keys.clone();
    all_keys.extend(index_keys);
    let mut current = batch_get(table, &all_keys)?;
    let mut index_read = current.split_off(keys.len()).into_iter();
    let index_read: Vec<Option<Option<Value>>> = markets
        .iter()
        .map(|m| {
            if distinct && m.is_some() {
                index_read.next()
            } else {
                None
            }
        })
        .collect();
    // Where each entry was listed before: its market index item there goes
    // when the entry moves to another market.
    let old_markets: BTreeMap<Fan, String> = parsed
        .iter()
        .zip(&current)
        .filter_map(|((f, _), c)| Some((f.clone(), presale::market_of(c.as_ref()?)?)))
        .collect();
    let mut resync: Vec<Fan> = Vec::new();
    let (mut upserted, mut ignored) = (0, 0);
    if distinct {
        // Every write in one call, each conditional on what was read; a
        // write that lost a race is retried on its own.
        let mut plan = Vec::new();
        let mut puts = Vec::new();
        for (n, (fan, entry)) in parsed.iter().enumerate() {
            if old_markets
                .get(fan)
                .is_some_and(|old| markets[n].as_ref() != Some(old))
            {
                resync.push(fan.clone());
            }
            if is_older(entry.get("version"), current[n].as_ref()) {
                ignored += 1;
                not_written.push(fan);
                usher_sdk::debug!(key = keys[n]; "older version ignored");
            } else {
                let item = item_for(fan, entry);
                let index = match (&markets[n], &index_read[n]) {
                    (Some(m), Some(read)) => Some((
                        presale::index_of(fan, m, &item),
                        presale::index_unchanged(read.as_ref()),
                    )),
                    _ => None,
                };
                plan.push((n, index.is_some()));
                puts.push((item, unchanged(current[n].as_ref())));
                if let Some(index) = index {
                    puts.push(index);
                }
            }
        }
        let results = table::put_many(
            table,
            puts.iter()
                .map(|(item, c)| PutItem {
                    item: item.clone(),
                    condition: Some(c.clone()),
                })
                .collect(),
        )
        .map_err(|e| Failure::from_table("writing the entries", &e))?;
        if results.len() != puts.len() {
            return Err(Failure::new(
                500,
                format!(
                    "put_many answered {} results for {} puts",
                    results.len(),
                    puts.len()
                ),
            ));
        }
        let mut puts = puts.into_iter();
        let mut results = results.into_iter();
        for (n, indexed) in plan {
            let (Some((item, _)), Some(result)) = (puts.next(), results.next()) else {
                break;
            };
            let index_ok = if indexed {
                puts.next();
                matches!(results.next(), Some(Ok(())))
            } else {
                true
            };
            let written = match result {
                Ok(()) => true,
                Err(e) if e.is_condition_failed() => {
                    let stored = table::get::<Value>(table, &keys[n])
                        .map_err(|e| Failure::from_table("reading an entry", &e))?;
                    resync.push(parsed[n].0.clone());
                    write_one(table, &keys[n], parsed[n].1, &item, stored, 1)?
                }
                Err(e) => return Err(Failure::from_table("writing an entry", &e)),
            };
            if !index_ok {
                resync.push(parsed[n].0.clone());
            }
            if written {
                upserted += 1;
            } else {
                ignored += 1;
                not_written.push(&parsed[n].0);
            }
        }
    } else {
        // One entry more than once: one write after another, each later
        // duplicate compared against what the earlier one stored.
        for (n, (fan, entry)) in parsed.iter().enumerate() {
            let item = item_for(fan, entry);
            let stored = current[n].take();
            if write_one(table, &keys[n], entry, &item, stored, 0)? {
                upserted += 1;
                written.push(fan);
                for (later, key) in keys.iter().enumerate().skip(n + 1) {
                    if *key == keys[n] {
                        current[later] = Some(item.clone());
                    }
                }
            } else {
                ignored += 1;
                not_written.push(fan);
            }
        }
        resync.extend(parsed.iter().map(|(f, _)| f.clone()));
    }
    if !resync.is_empty() {
        presale::sync_index(table, &resync, &old_markets)?;
    }
    usher_sdk::info!(upserted = upserted, ignored = ignored; "batch-upsert");
    let mut answer = json!({"upserted": upserted, "ignored": ignored});
    if refresh {
        // A written entry carries its score. An ignored one (older than the
        // stored entry) leaves the stored entry, refreshed as
        // `/scores/refresh` would; when that fails, its fan is answered in
        // `scoreFailures` (the entries themselves are stored: no error).
        let mut stale: Vec<Fan> = Vec::new();
        for fan in not_written {
            if !written.contains(&fan) && !stale.contains(fan) {
                stale.push(fan.clone());
            }
        }
        let failures = match refresh_fans(table, &stale) {
            Ok(_) => Vec::new(),
            Err(e) => {
                usher_sdk::warn!(fans = stale.len(), error = e.message; "refreshing the scores of ignored entries failed");
                stale
            }
        };
        answer["scoreFailures"] = json!(failures);
    }
    Ok(answer)
}

/// Writes one entry unless the stored one is newer, conditional on the
/// stored one being what was read, re-reading and retrying (up to
/// [`WRITE_ATTEMPTS`] in all, `attempt` made already) when another write got
/// in between. Whether it was written.
fn write_one(
    table: &str,
    key: &Value,
    entry: &Value,
    item: &Value,
    mut stored: Option<Value>,
    mut attempt: usize,
) -> Result<bool, Failure> {
    loop {
        if is_older(entry.get("version"), stored.as_ref()) {
            usher_sdk::debug!(key = key; "older version ignored");
            return Ok(false);
        }
        match table::put(table, item, Some(unchanged(stored.as_ref()))) {
            Ok(()) => return Ok(true),
            Err(e) if e.is_condition_failed() && attempt + 1 < WRITE_ATTEMPTS => {
                attempt += 1;
                stored = table::get::<Value>(table, key)
                    .map_err(|e| Failure::from_table("reading an entry", &e))?;
            }
            Err(e) => return Err(Failure::from_table("writing an entry", &e)),
        }
    }
}

/// `table::update_many` setting `set` under each condition; the updated
/// items are not needed, so they are not built.
fn update_many(
    table: &str,
    updates: &[(Value, Value, Condition)],
) -> usher_sdk::Result<Vec<usher_sdk::Result<()>>> {
    let updates = updates
        .iter()
        .map(|(key, set, c)| UpdateItem {
            key: key.clone(),
            set: set.clone(),
            remove: Vec::new(),
            condition: Some(c.clone()),
        })
        .collect();
    Ok(table::update_many::<IgnoredAny>(table, updates)?
        .into_iter()
        .map(|r| r.map(|_| ()))
        .collect())
}

/// `POST /entries/batch-delete`.
pub fn batch_delete(table: &str, body: &Value) -> Result<Value, Failure> {
    let list = items(body, "keys")?;
    let fans = fans(list, "keys")?;
    // A key may carry the `version` of the entry that was deleted at the
    // source: a stored entry with a newer version is then kept (a delete
    // that arrives after a newer re-insert must not remove it).
    let mut unversioned: Vec<Value> = Vec::new();
    let mut versioned: Vec<(Value, Value)> = Vec::new();
    for (fan, raw) in fans.iter().zip(list) {
        let key = key_of(fan);
        match raw.get("version").filter(|v| !v.is_null()) {
            Some(v) => {
                if !versioned.iter().any(|(k, _)| *k == key) {
                    versioned.push((key, v.clone()));
                }
            }
            None => {
                if !unversioned.contains(&key) {
                    unversioned.push(key);
                }
            }
        }
    }
    // The markets the entries are listed in, to remove their index items.
    let distinct: Vec<Fan> = fans.iter().fold(Vec::new(), |mut v, f| {
        if !v.contains(f) {
            v.push(f.clone());
        }
        v
    });
    let before = batch_get(table, &distinct.iter().map(key_of).collect::<Vec<_>>())?;
    let old_markets: BTreeMap<Fan, String> = distinct
        .iter()
        .zip(&before)
        .filter_map(|(f, c)| Some((f.clone(), presale::market_of(c.as_ref()?)?)))
        .collect();
    let mut deleted = 0;
    let mut ignored = 0;
    if !unversioned.is_empty() {
        let writes: Vec<Write> = unversioned.iter().cloned().map(Write::Delete).collect();
        let results = table::batch_write(table, &writes)
            .map_err(|e| Failure::from_table("deleting entries", &e))?;
        if results.len() != writes.len() {
            return Err(Failure::new(
                500,
                format!(
                    "batch_write answered {} results for {} deletes",
                    results.len(),
                    writes.len()
                ),
            ));
        }
        if let Some(e) = results.iter().find_map(|r| r.as_ref().err()) {
            return Err(Failure::from_table("deleting an entry", e));
        }
        deleted += unversioned.len();
    }
    if !versioned.is_empty() {
        let keys: Vec<Value> = versioned.iter().map(|(k, _)| k.clone()).collect();
        let current = batch_get(table, &keys)?;
        for ((key, version), stored) in versioned.iter().zip(current) {
            if delete_one(table, key, version, stored)? {
                deleted += 1;
            } else {
                ignored += 1;
            }
        }
    }
    presale::sync_index(table, &distinct, &old_markets)?;
    usher_sdk::info!(deleted = deleted, ignored = ignored; "batch-delete");
    Ok(json!({"deleted": deleted, "ignored": ignored}))
}

/// Deletes one entry unless it is absent or newer than `version`,
/// conditional on the stored one being what was read (re-reading and
/// deciding again, up to [`WRITE_ATTEMPTS`] in all, when another write got
/// in between). Whether it was deleted.
fn delete_one(
    table: &str,
    key: &Value,
    version: &Value,
    mut stored: Option<Value>,
) -> Result<bool, Failure> {
    let mut attempt = 0;
    loop {
        if stored.is_none() || is_older(Some(version), stored.as_ref()) {
            usher_sdk::debug!(key = key; "delete of an absent or newer entry ignored");
            return Ok(false);
        }
        match table::delete(table, key, Some(unchanged(stored.as_ref()))) {
            Ok(()) => return Ok(true),
            Err(e) if e.is_condition_failed() && attempt + 1 < WRITE_ATTEMPTS => {
                attempt += 1;
                stored = table::get::<Value>(table, key)
                    .map_err(|e| Failure::from_table("reading an entry", &e))?;
            }
            Err(e) => return Err(Failure::from_table("deleting an entry", &e)),
        }
    }
}

/// The attributes a score does not count: a draw's outcome (which the
/// draw itself writes, so counting them would let a draw change its own
/// inputs when a replication of the entry lands after it) and the
/// replication's bookkeeping.
pub const UNSCORED_ATTRIBUTES: [&str; 6] = [
    "verdict",
    "accessCode",
    "drawId",
    "needsReplication",
    "updatedAt",
    "score",
];

/// The score of an entry: 10 × the number of its top-level attributes that
/// are not null (but for [`UNSCORED_ATTRIBUTES`]), plus its `version` when
/// that is a non-negative integer (0 otherwise). Deterministic: it depends
/// on the registration alone.
pub fn score(entry: &Value) -> u64 {
    let fields = entry.as_object().map_or(0, |o| {
        o.iter()
            .filter(|(k, v)| !v.is_null() && !UNSCORED_ATTRIBUTES.contains(&k.as_str()))
            .count()
    });
    let version = entry.get("version").and_then(Value::as_u64).unwrap_or(0);
    (fields as u64).saturating_mul(10).saturating_add(version)
}

/// `POST /scores/refresh`.
pub fn refresh_scores(table: &str, body: &Value) -> Result<Value, Failure> {
    let fans = fans(items(body, "fans")?, "fans")?;
    let (refreshed, missing) = refresh_fans(table, &fans)?;
    Ok(json!({"refreshed": refreshed, "missing": missing}))
}

/// Sets the score of each fan's stored entry: how many were refreshed and
/// how many are missing.
fn refresh_fans(table: &str, fans: &[Fan]) -> Result<(usize, usize), Failure> {
    if fans.is_empty() {
        return Ok((0, 0));
    }
    let keys: Vec<Value> = fans.iter().map(key_of).collect();
    let current = batch_get(table, &keys)?;
    let (mut refreshed, mut missing) = (0, 0);
    // Every update in one call, each conditional on the item read; one that
    // lost a race is retried on its own.
    // The market index item of each scored entry gets the same score in
    // the same call (it must exist); one that fails is brought in line
    // after.
    let mut plan = Vec::new();
    let mut updates = Vec::new();
    for ((fan, key), stored) in fans.iter().zip(&keys).zip(&current) {
        match stored {
            Some(item) => {
                let set = json!({"score": score(item.get("entry").unwrap_or(&Value::Null))});
                let market = presale::market_of(item);
                plan.push((fan, key, market.is_some()));
                updates.push((key.clone(), set.clone(), unchanged(Some(item))));
                if let Some(m) = market {
                    updates.push((presale::index_key(fan, &m), set, Condition::Exists));
                }
            }
            None => missing += 1,
        }
    }
    let results =
        update_many(table, &updates).map_err(|e| Failure::from_table("scoring the entries", &e))?;
    if results.len() != updates.len() {
        return Err(Failure::new(
            500,
            format!(
                "update_many answered {} results for {} updates",
                results.len(),
                updates.len()
            ),
        ));
    }
    let mut resync: Vec<Fan> = Vec::new();
    let mut results = results.into_iter();
    for (fan, key, indexed) in plan {
        let Some(result) = results.next() else {
            break;
        };
        if indexed && !matches!(results.next(), Some(Ok(()))) {
            resync.push(fan.clone());
        }
        let found = match result {
            Ok(()) => true,
            Err(e) if e.is_condition_failed() => {
                resync.push(fan.clone());
                let stored = table::get::<Value>(table, key)
                    .map_err(|e| Failure::from_table("reading an entry", &e))?;
                refresh_one(table, key, stored, 1)?
            }
            Err(e) => return Err(Failure::from_table("scoring an entry", &e)),
        };
        if found {
            refreshed += 1;
        } else {
            missing += 1;
        }
    }
    if !resync.is_empty() {
        presale::sync_index(table, &resync, &BTreeMap::new())?;
    }
    usher_sdk::info!(refreshed = refreshed, missing = missing; "scores refreshed");
    Ok((refreshed, missing))
}

/// Sets one entry's score, conditional on the item being the one read,
/// re-reading and retrying (up to [`WRITE_ATTEMPTS`] in all, `attempt` made
/// already) when another write got in between. Whether the entry exists.
fn refresh_one(
    table: &str,
    key: &Value,
    mut stored: Option<Value>,
    mut attempt: usize,
) -> Result<bool, Failure> {
    loop {
        let Some(item) = stored.as_ref() else {
            return Ok(false);
        };
        let set = json!({"score": score(item.get("entry").unwrap_or(&Value::Null))});
        match table::update::<IgnoredAny>(table, key, &set, &[], Some(unchanged(Some(item)))) {
            Ok(IgnoredAny) => return Ok(true),
            Err(e) if e.is_condition_failed() && attempt + 1 < WRITE_ATTEMPTS => {
                attempt += 1;
                stored = table::get::<Value>(table, key)
                    .map_err(|e| Failure::from_table("reading an entry", &e))?;
            }
            Err(e) if e.is_condition_failed() => {
                // Deleted meanwhile (update with `exists` semantics failed).
                return match table::get::<Value>(table, key) {
                    Ok(None) => Ok(false),
                    _ => Err(Failure::from_table("scoring an entry", &e)),
                };
            }
            Err(e) => return Err(Failure::from_table("scoring an entry", &e)),
        }
    }
}

/// An entry as listed: the stored entry with the item's `score` when it has one.
pub fn view(item: &Value) -> Value {
    let mut entry = item.get("entry").cloned().unwrap_or_else(|| json!({}));
    if let (Some(score), Some(obj)) = (item.get("score"), entry.as_object_mut()) {
        obj.insert("score".into(), score.clone());
    }
    entry
}

/// The cursor of a query page: the `globalUserId` of its last item.
fn cursor(next: Option<&Value>) -> Value {
    next.and_then(|k| str_field(k, "SK"))
        .and_then(|sk| sk.strip_prefix(FAN_PREFIX))
        .map_or(Value::Null, |id| Value::String(id.to_string()))
}

fn query_page(
    table: &str,
    campaign: &str,
    limit: u32,
    after: Option<&str>,
) -> Result<Page, Failure> {
    let pk = partition(campaign);
    let start = after.map(|a| json!({"PK": pk, "SK": format!("{FAN_PREFIX}{a}")}));
    table::query(
        table,
        &json!({"PK": pk}),
        Some(FAN_PREFIX),
        Some(limit),
        start.as_ref(),
    )
    .map_err(|e| Failure::from_table("querying entries", &e))
}

/// `GET /campaigns/{campaignId}/entries?limit=&after=`.
pub fn campaign_entries(
    table: &str,
    campaign: &str,
    limit: u32,
    after: Option<&str>,
) -> Result<Value, Failure> {
    let page = query_page(table, campaign, limit, after)?;
    let entries: Vec<Value> = page.items.iter().map(view).collect();
    Ok(json!({"entries": entries, "next": cursor(page.next.as_ref())}))
}

pub mod presale;

#[cfg(test)]
mod tests;
