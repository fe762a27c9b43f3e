//! The presale additions of the Entry Service: invites, the market index
//! (entries listed by market, paged), code assignments, verdicts and
//! selections. Items (all in the service's one table):
//!
//! - an invite: `{"PK":"INVITES#<campaignId>","SK":"EMAIL#<lower-cased e-mail>"}`;
//! - a market index item per entry that has a `marketId`:
//!   `{"PK":"MARKET#<campaignId>#<marketId>","SK":"FAN#<globalUserId>","entry",
//!   "score"?,"version","globalUserId","marketId"}`, a copy of the entry item
//!   kept by every write of the entry (batch-upsert, batch-delete, score
//!   refresh), so that a market of 1,000,000 entries is listed by one query
//!   per page instead of a scan of the campaign;
//! - a code assignment, two items created with `not-exists` in the partition
//!   `ASSIGN#<campaignId>#<marketId>`: `FAN#<globalUserId>` → `{"code"}` and
//!   `CODE#<code>` → `{"globalUserId"}` (a fan never gets two codes, a code
//!   never goes to two fans);
//! - a selection (a verdict other than PENDING):
//!   `{"PK":"SELECTION#<campaignId>#<marketId>","SK":"FAN#<globalUserId>",
//!   "globalUserId","verdict","code"?,"drawId"}`. Verdicts and codes live in
//!   their own items, never in the entry item that batch-upsert replaces, so
//!   replication can never wipe them.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;
use serde_json::value::RawValue;
use usher_domain::Fan;
use usher_sdk::json::{json, str_field};
use usher_sdk::table::{self, Condition, PutItem, Write};
use usher_sdk::Value;

use super::{key_of, Failure};

/// At most this many e-mails per `PUT /campaigns/{id}/invites`.
pub const MAX_INVITES: usize = 1000;
/// The page size of the market lists without `limit`.
pub const DEFAULT_MARKET_LIMIT: u32 = 1000;
/// The largest `limit` of the market lists (pages of the table's query are
/// put together).
pub const MAX_MARKET_LIMIT: u32 = 5000;
/// At most this many verdicts per `POST /entries/verdicts` (a caller may put
/// the selections of many messages in one request).
pub const MAX_SELECTIONS: usize = 1000;
/// At most this many assignments per `POST /entries/assign-codes`: the
/// seed's Entry Service takes 25 a request (`assignCodes`).
pub const MAX_ASSIGNMENTS: usize = usher_domain::CHUNK_SIZE;
/// Attempts to bring a market index item in line with its entry.
const SYNC_ATTEMPTS: usize = 5;

const FAN_PREFIX: &str = "FAN#";

fn check_id(name: &str, id: &str) -> Result<(), Failure> {
    if id.is_empty() || id.contains('#') {
        return Err(Failure::bad_request(format!(
            "{name} must be a non-empty string without '#', not {id:?}"
        )));
    }
    Ok(())
}

fn body_str<'a>(body: &'a Value, name: &str) -> Result<&'a str, Failure> {
    let v = body.get(name).and_then(Value::as_str).unwrap_or("");
    check_id(name, v)?;
    Ok(v)
}

fn list<'a>(body: &'a Value, field: &str, max: usize) -> Result<&'a [Value], Failure> {
    let list = body
        .get(field)
        .and_then(Value::as_array)
        .ok_or_else(|| Failure::bad_request(format!("the body needs an array `{field}`")))?;
    if list.len() > max {
        return Err(Failure::new(
            413,
            format!("at most {max} {field} per request, got {}", list.len()),
        ));
    }
    Ok(list)
}

fn batch_get(table: &str, keys: &[Value], what: &str) -> Result<Vec<Option<Value>>, Failure> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let items =
        table::batch_get::<Value, Value>(table, keys).map_err(|e| Failure::from_table(what, &e))?;
    if items.len() != keys.len() {
        return Err(Failure::new(
            500,
            format!("{what}: {} items for {} keys", items.len(), keys.len()),
        ));
    }
    Ok(items)
}

fn all_ok(
    results: usher_sdk::Result<Vec<usher_sdk::Result<()>>>,
    n: usize,
    what: &str,
) -> Result<(), Failure> {
    let results = results.map_err(|e| Failure::from_table(what, &e))?;
    if results.len() != n {
        return Err(Failure::new(
            500,
            format!("{what}: {} results for {n} writes", results.len()),
        ));
    }
    match results.into_iter().find_map(Result::err) {
        Some(e) => Err(Failure::from_table(what, &e)),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------- invites

/// An e-mail as stored: trimmed and lower-cased; `None` unless it looks like
/// one (`local@domain`, no spaces).
pub fn normalize_email(email: &str) -> Option<String> {
    let e = email.trim().to_lowercase();
    let (local, domain) = e.split_once('@')?;
    let ok = !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && e.len() <= 320
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then_some(e)
}

fn invite_key(campaign: &str, email: &str) -> Value {
    json!({"PK": format!("INVITES#{campaign}"), "SK": format!("EMAIL#{email}")})
}

/// `PUT /campaigns/{campaignId}/invites {"emails":[…]}` → `{"invited": n}`
/// (the distinct e-mails of the request, now invited).
pub fn put_invites(table: &str, campaign: &str, body: &Value) -> Result<Value, Failure> {
    check_id("campaignId", campaign)?;
    let emails = list(body, "emails", MAX_INVITES)?;
    let mut distinct: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    for (i, e) in emails.iter().enumerate() {
        let email = e
            .as_str()
            .and_then(normalize_email)
            .ok_or_else(|| Failure::bad_request(format!("emails[{i}] is not an e-mail address")))?;
        if seen.insert(email.clone()) {
            distinct.push(email);
        }
    }
    let writes: Vec<Write> = distinct
        .iter()
        .map(|email| {
            let mut item = invite_key(campaign, email);
            item["email"] = json!(email);
            item["campaignId"] = json!(campaign);
            Write::Put(item)
        })
        .collect();
    all_ok(
        table::batch_write(table, &writes),
        writes.len(),
        "storing the invites",
    )?;
    usher_sdk::info!(campaign = campaign, invited = distinct.len(); "invites stored");
    Ok(json!({"invited": distinct.len()}))
}

/// `GET /campaigns/{campaignId}/invites/{email}` → `{"invited": bool}`.
pub fn get_invite(table: &str, campaign: &str, email: &str) -> Result<Value, Failure> {
    check_id("campaignId", campaign)?;
    let Some(email) = normalize_email(email) else {
        return Err(Failure::bad_request(format!(
            "{email:?} is not an e-mail address"
        )));
    };
    let item: Option<Value> = table::get(table, &invite_key(campaign, &email))
        .map_err(|e| Failure::from_table("reading an invite", &e))?;
    Ok(json!({"invited": item.is_some()}))
}

// ----------------------------------------------------------- market index

/// A market's index partition.
fn market_partition(campaign: &str, market: &str) -> String {
    format!("MARKET#{campaign}#{market}")
}

/// The `marketId` of an entry item, as text (a number by its text).
pub fn market_of(item: &Value) -> Option<String> {
    match item.get("marketId")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub fn index_key(fan: &Fan, market: &str) -> Value {
    json!({"PK": market_partition(&fan.campaign_id, market),
           "SK": format!("{FAN_PREFIX}{}", fan.global_user_id)})
}

/// The index item of an entry item in its market.
pub fn index_of(fan: &Fan, market: &str, entry_item: &Value) -> Value {
    let mut item = index_key(fan, market);
    for name in ["entry", "score", "version"] {
        if let Some(v) = entry_item.get(name) {
            item[name] = v.clone();
        }
    }
    item["globalUserId"] = json!(fan.global_user_id);
    item["marketId"] = json!(market);
    item
}

/// The condition that an index item is still the one read.
pub fn index_unchanged(read: Option<&Value>) -> Condition {
    match read {
        None => Condition::NotExists,
        Some(item) => Condition::AttributeEquals(
            "entry".into(),
            item.get("entry").cloned().unwrap_or(Value::Null),
        ),
    }
}

/// Brings the market index of these fans in line with their entry items:
/// the index item in the entry's market is a copy of it; an index item in
/// one of `old_markets` (where the entry was before) that is no longer the
/// entry's market is removed. Each write is conditional on the index item
/// read, re-done when a concurrent write got in between, so the index ends
/// as the entry is.
pub fn sync_index(
    table: &str,
    fans: &[Fan],
    old_markets: &BTreeMap<Fan, String>,
) -> Result<(), Failure> {
    let mut pending: Vec<Fan> = Vec::new();
    for f in fans {
        if !pending.contains(f) {
            pending.push(f.clone());
        }
    }
    for _ in 0..SYNC_ATTEMPTS {
        if pending.is_empty() {
            return Ok(());
        }
        let keys: Vec<Value> = pending.iter().map(key_of).collect();
        let entries = batch_get(table, &keys, "reading the entries")?;
        // Per fan: the market now, and the index keys to look at.
        let mut targets: Vec<(usize, Value, Option<Value>)> = Vec::new();
        for (n, (fan, entry)) in pending.iter().zip(&entries).enumerate() {
            let now = entry.as_ref().and_then(market_of);
            if let (Some(m), Some(e)) = (&now, entry) {
                targets.push((n, index_key(fan, m), Some(index_of(fan, m, e))));
            }
            if let Some(old) = old_markets.get(fan) {
                if now.as_deref() != Some(old.as_str()) {
                    targets.push((n, index_key(fan, old), None));
                }
            }
        }
        let index_keys: Vec<Value> = targets.iter().map(|(_, k, _)| k.clone()).collect();
        let current = batch_get(table, &index_keys, "reading the market index")?;
        let mut puts = Vec::new();
        let mut plan = Vec::new();
        let mut deletes = Vec::new();
        for ((n, key, want), read) in targets.into_iter().zip(current) {
            match want {
                Some(item) => {
                    if read.as_ref() != Some(&item) {
                        plan.push(n);
                        puts.push(PutItem {
                            item,
                            condition: Some(index_unchanged(read.as_ref())),
                        });
                    }
                }
                None => {
                    if let Some(read) = read {
                        deletes.push((n, key, index_unchanged(Some(&read))));
                    }
                }
            }
        }
        let mut again: Vec<Fan> = Vec::new();
        let n_puts = puts.len();
        if n_puts > 0 {
            let results = table::put_many(table, puts)
                .map_err(|e| Failure::from_table("writing the market index", &e))?;
            if results.len() != n_puts {
                return Err(Failure::new(500, "put_many answered the wrong count"));
            }
            for (n, r) in plan.into_iter().zip(results) {
                match r {
                    Ok(()) => {}
                    Err(e) if e.is_condition_failed() => again.push(pending[n].clone()),
                    Err(e) => return Err(Failure::from_table("writing the market index", &e)),
                }
            }
        }
        for (n, key, c) in deletes {
            match table::delete(table, &key, Some(c)) {
                Ok(()) => {}
                Err(e) if e.is_condition_failed() => again.push(pending[n].clone()),
                Err(e) => return Err(Failure::from_table("removing a market index item", &e)),
            }
        }
        pending.clear();
        for f in again {
            if !pending.contains(&f) {
                pending.push(f);
            }
        }
    }
    if pending.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            409,
            format!(
                "the market index of {} entries stayed contended",
                pending.len()
            ),
        ))
    }
}

/// The `limit` query parameter of the market lists.
pub fn parse_market_limit(text: Option<&str>) -> Result<u32, Failure> {
    match text {
        None | Some("") => Ok(DEFAULT_MARKET_LIMIT),
        Some(t) => match t.parse::<u32>() {
            Ok(n) if (1..=MAX_MARKET_LIMIT).contains(&n) => Ok(n),
            _ => Err(Failure::bad_request(format!(
                "limit must be an integer from 1 to {MAX_MARKET_LIMIT}, not {t:?}"
            ))),
        },
    }
}

/// Up to `limit` items of a partition after fan `after`, in fan order, and
/// the cursor of the next page (the last fan) when there is one.
fn fan_page(
    table: &str,
    partition: &str,
    limit: u32,
    after: Option<&str>,
) -> Result<(Vec<Value>, Option<String>), Failure> {
    let mut items: Vec<Value> = Vec::new();
    let mut start = after.map(|a| json!({"PK": partition, "SK": format!("{FAN_PREFIX}{a}")}));
    loop {
        let want = limit as usize - items.len();
        let page = table::query::<Value>(
            table,
            &json!({"PK": partition}),
            Some(FAN_PREFIX),
            Some(want.min(1000) as u32),
            start.as_ref(),
        )
        .map_err(|e| Failure::from_table("querying the market", &e))?;
        items.extend(page.items);
        match page.next {
            Some(next) if items.len() < limit as usize => start = Some(next),
            Some(_) => {
                let last = items
                    .last()
                    .and_then(|i| str_field(i, "SK"))
                    .and_then(|sk| sk.strip_prefix(FAN_PREFIX))
                    .map(str::to_string);
                return Ok((items, last));
            }
            None => return Ok((items, None)),
        }
    }
}

/// An index item as listed: its entry and score kept as JSON text (a page
/// of 5000 entries is passed through without building them as values).
#[derive(Deserialize)]
struct Listed {
    #[serde(rename = "SK")]
    sk: String,
    #[serde(default, deserialize_with = "raw")]
    entry: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "raw")]
    score: Option<Box<RawValue>>,
}

/// A present attribute as its JSON text, `null` included.
fn raw<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

impl Listed {
    /// The entry with `score` added, as [`view`] does, as JSON text.
    fn write(&self, out: &mut String) {
        let entry = self.entry.as_deref().map_or("{}", |e| e.get().trim());
        match &self.score {
            Some(score) if entry.starts_with('{') && entry.ends_with('}') => {
                let inner = entry[1..entry.len() - 1].trim();
                out.push('{');
                if !inner.is_empty() {
                    out.push_str(inner);
                    out.push(',');
                }
                out.push_str("\"score\":");
                out.push_str(score.get());
                out.push('}');
            }
            _ => out.push_str(entry),
        }
    }
}

/// `GET /markets/{marketId}/entries?campaignId=&limit=&after=` →
/// `{"entries":[{…entry,"score"}],"next"}` from the market index, as JSON
/// text.
pub fn market_entries(
    table: &str,
    market: &str,
    campaign: &str,
    limit: u32,
    after: Option<&str>,
) -> Result<String, Failure> {
    check_id("campaignId", campaign)?;
    check_id("marketId", market)?;
    let partition = market_partition(campaign, market);
    let mut out = String::from("{\"entries\":[");
    let mut count = 0usize;
    let mut last: Option<String> = None;
    let mut start = after.map(|a| json!({"PK": partition, "SK": format!("{FAN_PREFIX}{a}")}));
    let more = loop {
        let want = limit as usize - count;
        let page = table::query::<Listed>(
            table,
            &json!({"PK": partition}),
            Some(FAN_PREFIX),
            Some(want.min(1000) as u32),
            start.as_ref(),
        )
        .map_err(|e| Failure::from_table("querying the market", &e))?;
        for item in &page.items {
            if count > 0 {
                out.push(',');
            }
            item.write(&mut out);
            count += 1;
        }
        if let Some(item) = page.items.last() {
            last = item.sk.strip_prefix(FAN_PREFIX).map(str::to_string);
        }
        match page.next {
            Some(next) if count < limit as usize => start = Some(next),
            Some(_) => break true,
            None => break false,
        }
    };
    out.push_str("],\"next\":");
    match last.filter(|_| more) {
        Some(cursor) => out.push_str(&Value::String(cursor).to_string()),
        None => out.push_str("null"),
    }
    out.push('}');
    Ok(out)
}

// ------------------------------------------------------ codes and verdicts

fn assign_partition(campaign: &str, market: &str) -> String {
    format!("ASSIGN#{campaign}#{market}")
}

fn selection_partition(campaign: &str, market: &str) -> String {
    format!("SELECTION#{campaign}#{market}")
}

/// One `{"globalUserId","code"}` of assign-codes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pair {
    fan: String,
    code: String,
}

/// `POST /entries/assign-codes`: see the module docs. Each assignment
/// claims the code's item, then the fan's (both `not-exists`); a claim that
/// loses removes the other claim it made, conditionally.
pub fn assign_codes(table: &str, body: &Value) -> Result<Value, Failure> {
    let campaign = body_str(body, "campaignId")?;
    let market = body_str(body, "marketId")?;
    let raw = list(body, "assignments", MAX_ASSIGNMENTS)?;
    let pairs: Vec<Pair> = raw
        .iter()
        .enumerate()
        .map(
            |(i, a)| match (str_field(a, "globalUserId"), str_field(a, "code")) {
                (Some(f), Some(c)) if !f.is_empty() && !c.is_empty() => Ok(Pair {
                    fan: f.into(),
                    code: c.into(),
                }),
                _ => Err(Failure::bad_request(format!(
                    "assignments[{i}] needs globalUserId and code as non-empty strings"
                ))),
            },
        )
        .collect::<Result<_, _>>()?;
    let pk = assign_partition(campaign, market);
    let fan_key = |f: &str| json!({"PK": pk, "SK": format!("FAN#{f}")});
    let code_key = |c: &str| json!({"PK": pk, "SK": format!("CODE#{c}")});
    let (mut assigned, mut already) = (0, 0);
    let mut conflicts: Vec<Value> = Vec::new();
    let conflict =
        |p: &Pair, reason: &str| json!({"globalUserId": p.fan, "code": p.code, "reason": reason});
    // Decided in order against what was read and what earlier elements of
    // the request claim; then every code claim in one call, every fan claim
    // in another.
    let mut keys = Vec::new();
    for p in &pairs {
        keys.push(fan_key(&p.fan));
        keys.push(code_key(&p.code));
    }
    let read = batch_get(table, &keys, "reading the assignments")?;
    let mut claimed_fans: BTreeMap<String, String> = BTreeMap::new();
    let mut claimed_codes: BTreeMap<String, String> = BTreeMap::new();
    // (pair, claim the code, claim the fan)
    let mut plan: Vec<(&Pair, bool, bool)> = Vec::new();
    // A repeat of a planned pair in the same request: answered as that one.
    let mut repeats: Vec<(&Pair, usize)> = Vec::new();
    let mut planned: std::collections::HashMap<(&str, &str), usize> =
        std::collections::HashMap::new();
    for (n, p) in pairs.iter().enumerate() {
        if let Some(&k) = planned.get(&(p.fan.as_str(), p.code.as_str())) {
            repeats.push((p, k));
            continue;
        }
        let fan_holds = claimed_fans.get(&p.fan).cloned().or_else(|| {
            read[2 * n]
                .as_ref()
                .and_then(|i| str_field(i, "code"))
                .map(str::to_string)
        });
        let code_goes_to = claimed_codes.get(&p.code).cloned().or_else(|| {
            read[2 * n + 1]
                .as_ref()
                .and_then(|i| str_field(i, "globalUserId"))
                .map(str::to_string)
        });
        if fan_holds.as_deref() == Some(p.code.as_str())
            && code_goes_to.as_deref() == Some(p.fan.as_str())
        {
            already += 1;
        } else if fan_holds.as_deref().is_some_and(|c| c != p.code) {
            conflicts.push(conflict(p, "the fan has another code"));
        } else if code_goes_to.as_deref().is_some_and(|f| f != p.fan) {
            conflicts.push(conflict(p, "the code went to another fan"));
        } else {
            claimed_fans.insert(p.fan.clone(), p.code.clone());
            claimed_codes.insert(p.code.clone(), p.fan.clone());
            planned.insert((p.fan.as_str(), p.code.as_str()), plan.len());
            plan.push((p, code_goes_to.is_none(), fan_holds.is_none()));
        }
    }
    // The codes' items.
    let code_puts: Vec<(usize, PutItem)> = plan
        .iter()
        .enumerate()
        .filter(|(_, (_, claim_code, _))| *claim_code)
        .map(|(n, (p, _, _))| {
            let mut item = code_key(&p.code);
            item["globalUserId"] = json!(p.fan);
            item["code"] = json!(p.code);
            (
                n,
                PutItem {
                    item,
                    condition: Some(Condition::NotExists),
                },
            )
        })
        .collect();
    let mut lost: HashSet<usize> = HashSet::new();
    let mut made_code: HashSet<usize> = HashSet::new();
    let results = put_all(table, code_puts.iter().map(|(_, p)| p.clone()).collect())?;
    for ((n, _), r) in code_puts.iter().zip(results) {
        let p = plan[*n].0;
        match r {
            Ok(()) => {
                made_code.insert(*n);
            }
            Err(e) if e.is_condition_failed() => {
                let now: Option<Value> = table::get(table, &code_key(&p.code))
                    .map_err(|e| Failure::from_table("reading an assignment", &e))?;
                if now.as_ref().and_then(|i| str_field(i, "globalUserId")) != Some(p.fan.as_str()) {
                    conflicts.push(conflict(p, "the code went to another fan"));
                    lost.insert(*n);
                }
            }
            Err(e) => return Err(Failure::from_table("assigning a code", &e)),
        }
    }
    // The fans' items.
    let fan_puts: Vec<(usize, PutItem)> = plan
        .iter()
        .enumerate()
        .filter(|(n, (_, _, claim_fan))| *claim_fan && !lost.contains(n))
        .map(|(n, (p, _, _))| {
            let mut item = fan_key(&p.fan);
            item["code"] = json!(p.code);
            item["globalUserId"] = json!(p.fan);
            (
                n,
                PutItem {
                    item,
                    condition: Some(Condition::NotExists),
                },
            )
        })
        .collect();
    let results = put_all(table, fan_puts.iter().map(|(_, p)| p.clone()).collect())?;
    for ((n, _), r) in fan_puts.iter().zip(results) {
        let p = plan[*n].0;
        match r {
            Ok(()) => {}
            Err(e) if e.is_condition_failed() => {
                let now: Option<Value> = table::get(table, &fan_key(&p.fan))
                    .map_err(|e| Failure::from_table("reading an assignment", &e))?;
                if now.as_ref().and_then(|i| str_field(i, "code")) != Some(p.code.as_str()) {
                    if made_code.contains(n) {
                        release(
                            table,
                            &code_key(&p.code),
                            Condition::AttributeEquals("globalUserId".into(), json!(p.fan)),
                        )?;
                    }
                    conflicts.push(conflict(p, "the fan has another code"));
                    lost.insert(*n);
                }
            }
            Err(e) => return Err(Failure::from_table("assigning a code", &e)),
        }
    }
    assigned += plan.len() - lost.len();
    for (p, k) in repeats {
        if lost.contains(&k) {
            conflicts.push(conflict(
                p,
                "lost together with the same assignment earlier in the request",
            ));
        } else {
            already += 1;
        }
    }
    usher_sdk::info!(assigned = assigned, already = already, conflicts = conflicts.len(); "codes assigned");
    Ok(json!({"assigned": assigned, "already": already, "conflicts": conflicts}))
}

/// `put_many` with one result per put (none for no puts).
fn put_all(table: &str, puts: Vec<PutItem>) -> Result<Vec<usher_sdk::Result<()>>, Failure> {
    if puts.is_empty() {
        return Ok(Vec::new());
    }
    let n = puts.len();
    let results =
        table::put_many(table, puts).map_err(|e| Failure::from_table("assigning codes", &e))?;
    if results.len() != n {
        return Err(Failure::new(
            500,
            format!("put_many answered {} results for {n} puts", results.len()),
        ));
    }
    Ok(results)
}

fn release(table: &str, key: &Value, c: Condition) -> Result<(), Failure> {
    match table::delete(table, key, Some(c)) {
        Ok(()) => Ok(()),
        Err(e) if e.is_condition_failed() => Ok(()),
        Err(e) => Err(Failure::from_table("undoing a claim", &e)),
    }
}

const VERDICTS: [&str; 4] = ["PENDING", "WINNER", "LOSER", "WAITLIST"];

/// `POST /entries/verdicts`: each fan's verdict (and code) is stored in its
/// selection item; a fan with no entry is answered in `missing`; a verdict
/// naming a code the fan was not assigned (assign-codes) is answered in
/// `conflicts` and not stored. PENDING removes the selection.
pub fn verdicts(table: &str, body: &Value) -> Result<Value, Failure> {
    let campaign = body_str(body, "campaignId")?;
    let market = body_str(body, "marketId")?;
    let draw = body
        .get("drawId")
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty())
        .ok_or_else(|| Failure::bad_request("drawId must be a non-empty string"))?;
    let raw = list(body, "verdicts", MAX_SELECTIONS)?;
    let mut parsed: Vec<(String, String, Option<String>)> = Vec::new();
    for (i, v) in raw.iter().enumerate() {
        let fan = str_field(v, "globalUserId").filter(|f| !f.is_empty());
        let verdict = str_field(v, "verdict").filter(|x| VERDICTS.contains(x));
        let code = match v.get("code") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(c)) if !c.is_empty() => Ok(Some(c.clone())),
            Some(_) => Err(()),
        };
        match (fan, verdict, code) {
            (Some(f), Some(x), Ok(c)) => parsed.push((f.into(), x.into(), c)),
            _ => {
                return Err(Failure::bad_request(format!(
                    "verdicts[{i}] needs globalUserId, verdict (one of {VERDICTS:?}) and an optional code string"
                )))
            }
        }
    }
    let fans: Vec<Fan> = parsed
        .iter()
        .map(|(f, _, _)| Fan::new(campaign, f.as_str()))
        .collect();
    let entry_keys: Vec<Value> = fans.iter().map(key_of).collect();
    let entries = batch_get(table, &entry_keys, "reading the entries")?;
    let pk = assign_partition(campaign, market);
    let with_code: Vec<Value> = parsed
        .iter()
        .filter(|(_, _, c)| c.is_some())
        .map(|(f, _, _)| json!({"PK": pk, "SK": format!("FAN#{f}")}))
        .collect();
    let held = batch_get(table, &with_code, "reading the assignments")?;
    let mut held = held.into_iter();
    let mut missing: Vec<String> = Vec::new();
    let mut conflicts: Vec<Value> = Vec::new();
    let mut writes: Vec<Write> = Vec::new();
    let spk = selection_partition(campaign, market);
    for ((fan, verdict, code), entry) in parsed.iter().zip(&entries) {
        let holds = if code.is_some() {
            held.next().flatten()
        } else {
            None
        };
        if entry.is_none() {
            if !missing.contains(fan) {
                missing.push(fan.clone());
            }
            continue;
        }
        if let Some(c) = code {
            if holds.as_ref().and_then(|h| str_field(h, "code")) != Some(c.as_str()) {
                conflicts.push(json!({"globalUserId": fan, "code": c,
                    "reason": "the code is not assigned to the fan (assign-codes first)"}));
                continue;
            }
        }
        let key = json!({"PK": spk, "SK": format!("FAN#{fan}")});
        if verdict == "PENDING" {
            writes.push(Write::Delete(key));
        } else {
            let mut item = key;
            item["globalUserId"] = json!(fan);
            item["campaignId"] = json!(campaign);
            item["marketId"] = json!(market);
            item["verdict"] = json!(verdict);
            item["drawId"] = json!(draw);
            if let Some(c) = code {
                item["code"] = json!(c);
            }
            writes.push(Write::Put(item));
        }
    }
    let updated = writes.len();
    all_ok(
        table::batch_write(table, &writes),
        updated,
        "storing the verdicts",
    )?;
    usher_sdk::info!(updated = updated, missing = missing.len(), conflicts = conflicts.len(); "verdicts stored");
    let mut answer = json!({"updated": updated, "missing": missing});
    if !conflicts.is_empty() {
        answer["conflicts"] = json!(conflicts);
    }
    Ok(answer)
}

/// `GET /markets/{marketId}/selections?campaignId=&limit=&after=` →
/// `{"selections":[{"globalUserId","verdict","code"?,"drawId"}],"next"}`.
pub fn selections(
    table: &str,
    market: &str,
    campaign: &str,
    limit: u32,
    after: Option<&str>,
) -> Result<Value, Failure> {
    check_id("campaignId", campaign)?;
    check_id("marketId", market)?;
    let (items, next) = fan_page(table, &selection_partition(campaign, market), limit, after)?;
    let selections: Vec<Value> = items
        .iter()
        .map(|i| {
            let mut s = json!({
                "globalUserId": i.get("globalUserId"),
                "verdict": i.get("verdict"),
                "drawId": i.get("drawId"),
            });
            if let Some(c) = i.get("code").filter(|c| !c.is_null()) {
                s["code"] = c.clone();
            }
            s
        })
        .collect();
    Ok(json!({"selections": selections, "next": next}))
}

#[cfg(test)]
mod tests;
