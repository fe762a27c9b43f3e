//! The Code Service's routing, validation and table logic (see the crate
//! docs for the item layout and the guarantees). It calls the SDK's table
//! functions directly; natively (tests) they reach `usher_sdk::fakes`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::de::IgnoredAny;
use usher_domain::selection::MAX_RESERVATION;
use usher_sdk::json::json;
use usher_sdk::router::{HttpError, Router};
use usher_sdk::table::{
    self, Condition, PutItem, TransactItem, TransactUpdate, UpdateItem, Write, MAX_TRANSACT_ITEMS,
};
use usher_sdk::{HttpRequest, HttpResponse, Value};

/// A request that cannot be served: `{"error": message}` with its status.
pub type Failure = HttpError;

/// At most this many codes per `POST /pools/{c}/{m}/codes`.
pub const MAX_LOAD: usize = 5000;
/// At most this many assignments per `/codes/assign` or `/codes/mark-assigned`.
pub const MAX_ASSIGNMENTS: usize = 100;
/// The longest code accepted, in bytes.
pub const MAX_CODE_LEN: usize = 256;
/// Codes per stored chunk item of a reservation (its claims and its answer).
pub const CHUNK: usize = 1000;
/// Keys or writes per table call (the host takes at most 10,000).
const CALL: usize = 5000;
/// Attempts of an optimistic read-modify-write of a pool's counters.
pub const COUNTER_ATTEMPTS: usize = 64;
/// How many completed reservation ids a pool's counters remember, so that a
/// reservation is counted once even when its completion is retried.
pub const COUNTED_MEMORY: usize = 64;

const CODE_PREFIX: &str = "CODE#";
const FAN_PREFIX: &str = "FAN#";
const COUNTS_SK: &str = "COUNTS";
const RECORD_SK: &str = "RECORD";
const CLAIM_PREFIX: &str = "CLAIM#";
const AVAILABLE: &str = "AVAILABLE";
const COMPLETE: &str = "COMPLETE";

/// The service's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The codes table (`table`, default `codes`; keys `PK`/`SK`).
    pub table: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            table: "codes".into(),
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

/// Serves one request (the routes of the crate docs).
pub fn handle(settings: &Settings, request: &HttpRequest) -> HttpResponse {
    let table = settings.table.as_str();
    Router::new()
        .post("/pools/{campaignId}/{marketId}/codes", |r| {
            let pool = Pool::new(r.param("campaignId"), r.param("marketId"))?;
            Ok(HttpResponse::json_ok(&load_codes(
                table,
                &pool,
                &r.json_object()?,
            )?))
        })
        .get("/pools/{campaignId}/{marketId}/codes", |r| {
            let pool = Pool::new(r.param("campaignId"), r.param("marketId"))?;
            let limit = match r.query("limit")? {
                None => 1000,
                Some(l) => l
                    .parse::<u32>()
                    .ok()
                    .filter(|l| (1..=1000).contains(l))
                    .ok_or_else(|| Failure::bad_request("limit must be 1 to 1000"))?,
            };
            Ok(HttpResponse::json_ok(&list_codes(
                table,
                &pool,
                limit,
                r.query("after")?.as_deref(),
            )?))
        })
        .get("/pools/{campaignId}/{marketId}", |r| {
            let pool = Pool::new(r.param("campaignId"), r.param("marketId"))?;
            Ok(HttpResponse::json_ok(&pool_counts(table, &pool)?))
        })
        .post("/reservations", |r| reserve(table, &r.json_object()?))
        .get("/reservations/{reservationId}", |r| {
            Ok(HttpResponse::json_ok(&get_reservation(
                table,
                r.param("reservationId"),
            )?))
        })
        .post("/codes/assign", |r| {
            Ok(HttpResponse::json_ok(&assign(
                table,
                &r.json_object()?,
                false,
            )?))
        })
        .post("/codes/mark-assigned", |r| {
            Ok(HttpResponse::json_ok(&assign(
                table,
                &r.json_object()?,
                true,
            )?))
        })
        .handle(request)
}

// ------------------------------------------------------------------ pools

/// A pool: the codes of one market of one campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// The campaign.
    pub campaign_id: String,
    /// The market.
    pub market_id: String,
}

impl Pool {
    /// A pool; 400 unless both ids are non-empty and free of `#` (the
    /// separator of the table's keys).
    pub fn new(campaign_id: &str, market_id: &str) -> Result<Pool, Failure> {
        for (name, id) in [("campaignId", campaign_id), ("marketId", market_id)] {
            if id.is_empty() || id.contains('#') {
                return Err(Failure::bad_request(format!(
                    "{name} must be a non-empty string without '#', not {id:?}"
                )));
            }
        }
        Ok(Pool {
            campaign_id: campaign_id.into(),
            market_id: market_id.into(),
        })
    }

    fn of_body(body: &Value) -> Result<Pool, Failure> {
        Pool::new(
            body.get("campaignId").and_then(Value::as_str).unwrap_or(""),
            body.get("marketId").and_then(Value::as_str).unwrap_or(""),
        )
    }

    /// The pool's partition key: `POOL#<campaignId>#<marketId>`.
    pub fn partition(&self) -> String {
        format!("POOL#{}#{}", self.campaign_id, self.market_id)
    }

    /// A code's item key.
    pub fn code_key(&self, code: &str) -> Value {
        json!({"PK": self.partition(), "SK": format!("{CODE_PREFIX}{code}")})
    }

    /// A fan's item key (the fan holds at most one code of the pool).
    pub fn fan_key(&self, fan: &str) -> Value {
        json!({"PK": self.partition(), "SK": format!("{FAN_PREFIX}{fan}")})
    }

    fn counts_key(&self) -> Value {
        json!({"PK": self.partition(), "SK": COUNTS_SK})
    }
}

/// A pool's counters, kept in its `COUNTS` item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Codes loaded.
    pub total: i64,
    /// Codes in no reservation.
    pub available: i64,
    /// Codes reserved, not yet assigned.
    pub reserved: i64,
    /// Codes assigned to a fan (marked ones included).
    pub assigned: i64,
    /// Codes marked as assigned.
    pub marked: i64,
}

impl Counts {
    fn of(item: Option<&Value>) -> Counts {
        let n = |name: &str| {
            item.and_then(|i| i.get(name))
                .and_then(Value::as_i64)
                .unwrap_or(0)
        };
        Counts {
            total: n("total"),
            available: n("available"),
            reserved: n("reserved"),
            assigned: n("assigned"),
            marked: n("marked"),
        }
    }

    fn add(&mut self, d: &Counts) {
        self.total += d.total;
        self.available += d.available;
        self.reserved += d.reserved;
        self.assigned += d.assigned;
        self.marked += d.marked;
    }
}

/// How a counter update moves the reservation scan's starting point.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hint {
    /// Leave it.
    Keep,
    /// Codes became available (loaded or released); the smallest of them.
    /// The hint restarts from the beginning when it is past that code, and
    /// the availability epoch grows.
    Available(String),
    /// Every code up to this one was seen not available by a reservation
    /// that read the epoch given: the hint moves there when the epoch is
    /// unchanged (no code became available meanwhile).
    Raise(String, i64),
}

/// Applies `delta` to the pool's counters with an optimistic
/// read-modify-write (conditional on the item's `version`), retried on a
/// lost race. With `once`, a reservation id: the update is skipped when the
/// counters already counted it. The counters after.
fn bump(
    table: &str,
    pool: &Pool,
    delta: &Counts,
    hint: &Hint,
    once: Option<&str>,
) -> Result<Value, Failure> {
    let key = pool.counts_key();
    for _ in 0..COUNTER_ATTEMPTS {
        let current: Option<Value> = table::get(table, &key)
            .map_err(|e| Failure::from_table("reading the pool counters", &e))?;
        let mut counted: Vec<Value> = current
            .as_ref()
            .and_then(|c| c.get("counted"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(id) = once {
            if counted.iter().any(|c| c.as_str() == Some(id)) {
                return Ok(current.unwrap_or(Value::Null));
            }
            counted.push(json!(id));
            if counted.len() > COUNTED_MEMORY {
                counted.drain(..counted.len() - COUNTED_MEMORY);
            }
        }
        let mut counts = Counts::of(current.as_ref());
        counts.add(delta);
        let version = current
            .as_ref()
            .and_then(|c| c.get("version"))
            .and_then(Value::as_i64);
        let field = |name: &str| current.as_ref().and_then(|c| c.get(name)).cloned();
        let mut epoch = field("epoch").and_then(|e| e.as_i64()).unwrap_or(0);
        let mut scan_after = field("scanAfter").and_then(|s| s.as_str().map(str::to_string));
        match hint {
            Hint::Keep => {}
            Hint::Available(smallest) => {
                epoch += 1;
                if scan_after
                    .as_deref()
                    .is_some_and(|s| smallest.as_str() <= s)
                {
                    scan_after = None;
                }
            }
            Hint::Raise(to, seen_epoch) => {
                if epoch == *seen_epoch && scan_after.as_deref().is_none_or(|s| s < to.as_str()) {
                    scan_after = Some(to.clone());
                }
            }
        }
        let item = json!({
            "PK": pool.partition(), "SK": COUNTS_SK,
            "campaignId": pool.campaign_id, "marketId": pool.market_id,
            "total": counts.total, "available": counts.available, "reserved": counts.reserved,
            "assigned": counts.assigned, "marked": counts.marked,
            "version": version.unwrap_or(0) + 1, "epoch": epoch,
            "scanAfter": scan_after, "counted": counted,
        });
        let condition = match version {
            None if current.is_none() => Condition::NotExists,
            None => Condition::Exists,
            Some(v) => Condition::AttributeEquals("version".into(), json!(v)),
        };
        match table::put(table, &item, Some(condition)) {
            Ok(()) => return Ok(item),
            Err(e) if e.is_condition_failed() => continue,
            Err(e) => return Err(Failure::from_table("writing the pool counters", &e)),
        }
    }
    Err(Failure::new(
        503,
        format!("the counters of pool {} stayed contended", pool.partition()),
    ))
}

/// `GET /pools/{campaignId}/{marketId}`.
pub fn pool_counts(table: &str, pool: &Pool) -> Result<Value, Failure> {
    let item: Option<Value> = table::get(table, &pool.counts_key())
        .map_err(|e| Failure::from_table("reading the pool counters", &e))?;
    Ok(counts_view(pool, item.as_ref()))
}

/// `GET /pools/{campaignId}/{marketId}/codes?limit=&after=` (additive,
/// for the exports): one page of the pool's codes in code order,
/// `{"codes":[{"code","status","globalUserId"?,"reservationId"?}],"next"}`;
/// `status` is AVAILABLE, RESERVED, ASSIGNED or MARKED; `next` is the last
/// code of a full page (pass it as `after`), else null.
pub fn list_codes(
    table: &str,
    pool: &Pool,
    limit: u32,
    after: Option<&str>,
) -> Result<Value, Failure> {
    let start = after.map(|code| pool.code_key(code));
    let page = table::query::<Value>(
        table,
        &json!({"PK": pool.partition()}),
        Some(CODE_PREFIX),
        Some(limit),
        start.as_ref(),
    )
    .map_err(|e| Failure::from_table("listing the pool's codes", &e))?;
    let codes: Vec<Value> = page
        .items
        .iter()
        .map(|item| {
            let status = item["status"].as_str().unwrap_or("");
            let word = status.split('#').next().unwrap_or("");
            let mut view = json!({"code": item["code"], "status": word});
            for name in ["globalUserId", "reservationId"] {
                if let Some(v) = item.get(name).filter(|v| !v.is_null()) {
                    view[name] = v.clone();
                }
            }
            if view.get("globalUserId").is_none() && (word == "ASSIGNED" || word == "MARKED") {
                if let Some(fan) = status.split_once('#').map(|(_, f)| f) {
                    view["globalUserId"] = json!(fan);
                }
            }
            view
        })
        .collect();
    let next = match (&page.next, codes.last()) {
        (Some(_), Some(last)) => last["code"].clone(),
        _ => Value::Null,
    };
    Ok(json!({"codes": codes, "next": next}))
}

fn counts_view(pool: &Pool, item: Option<&Value>) -> Value {
    let c = Counts::of(item);
    json!({
        "campaignId": pool.campaign_id, "marketId": pool.market_id,
        "total": c.total, "available": c.available, "reserved": c.reserved,
        "assigned": c.assigned, "marked": c.marked,
    })
}

fn check_code(code: &str) -> bool {
    !code.is_empty() && code.len() <= MAX_CODE_LEN && !code.chars().any(char::is_control)
}

/// `POST /pools/{campaignId}/{marketId}/codes {"codes":[…]}`: each new code
/// is stored AVAILABLE (a conditional put: a code already in the pool, or
/// twice in the request, is counted in `duplicates`, never re-added).
pub fn load_codes(table: &str, pool: &Pool, body: &Value) -> Result<Value, Failure> {
    let list = body
        .get("codes")
        .and_then(Value::as_array)
        .ok_or_else(|| Failure::bad_request("the body needs an array `codes`"))?;
    if list.len() > MAX_LOAD {
        return Err(Failure::new(
            413,
            format!("at most {MAX_LOAD} codes per request, got {}", list.len()),
        ));
    }
    let mut codes: Vec<&str> = Vec::with_capacity(list.len());
    for (i, c) in list.iter().enumerate() {
        match c.as_str() {
            Some(code) if check_code(code) => codes.push(code),
            _ => {
                return Err(Failure::bad_request(format!(
                    "codes[{i}] must be a non-empty string of at most {MAX_CODE_LEN} bytes without control characters"
                )))
            }
        }
    }
    let mut seen = HashSet::new();
    let distinct: Vec<&str> = codes.iter().copied().filter(|c| seen.insert(*c)).collect();
    let mut duplicates = codes.len() - distinct.len();
    let puts: Vec<PutItem> = distinct
        .iter()
        .map(|code| {
            let mut item = pool.code_key(code);
            item["code"] = json!(code);
            item["status"] = json!(AVAILABLE);
            PutItem {
                item,
                condition: Some(Condition::NotExists),
            }
        })
        .collect();
    let results = checked(
        table::put_many(table, puts),
        distinct.len(),
        "storing the codes",
    )?;
    let mut loaded: Vec<&str> = Vec::new();
    for (code, r) in distinct.iter().zip(results) {
        match r {
            Ok(()) => loaded.push(code),
            Err(e) if e.is_condition_failed() => duplicates += 1,
            Err(e) => {
                // Count what was stored before failing: the codes stay.
                count_loaded(table, pool, &loaded)?;
                return Err(Failure::from_table("storing a code", &e));
            }
        }
    }
    count_loaded(table, pool, &loaded)?;
    usher_sdk::info!(loaded = loaded.len(), duplicates = duplicates; "codes loaded");
    Ok(json!({"loaded": loaded.len(), "duplicates": duplicates}))
}

fn count_loaded(table: &str, pool: &Pool, loaded: &[&str]) -> Result<(), Failure> {
    let Some(smallest) = loaded.iter().min() else {
        return Ok(());
    };
    let n = loaded.len() as i64;
    bump(
        table,
        pool,
        &Counts {
            total: n,
            available: n,
            ..Counts::default()
        },
        &Hint::Available(format!("{CODE_PREFIX}{smallest}")),
        None,
    )
    .map(|_| ())
}

fn checked<T>(
    results: usher_sdk::Result<Vec<usher_sdk::Result<T>>>,
    expected: usize,
    what: &str,
) -> Result<Vec<usher_sdk::Result<T>>, Failure> {
    let results = results.map_err(|e| Failure::from_table(what, &e))?;
    if results.len() != expected {
        return Err(Failure::new(
            500,
            format!("{what}: {} results for {expected} items", results.len()),
        ));
    }
    Ok(results)
}

fn batch_get(table: &str, keys: &[Value], what: &str) -> Result<Vec<Option<Value>>, Failure> {
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(CALL) {
        let items = table::batch_get::<Value, Value>(table, chunk)
            .map_err(|e| Failure::from_table(what, &e))?;
        if items.len() != chunk.len() {
            return Err(Failure::new(
                500,
                format!("{what}: {} items for {} keys", items.len(), chunk.len()),
            ));
        }
        out.extend(items);
    }
    Ok(out)
}

/// Conditional updates in calls of at most [`CALL`]; one result each.
fn update_many(
    table: &str,
    updates: Vec<UpdateItem>,
    what: &str,
) -> Result<Vec<usher_sdk::Result<()>>, Failure> {
    let mut out = Vec::with_capacity(updates.len());
    let mut updates = updates.into_iter().peekable();
    while updates.peek().is_some() {
        let chunk: Vec<UpdateItem> = updates.by_ref().take(CALL).collect();
        let n = chunk.len();
        let results = checked(table::update_many::<IgnoredAny>(table, chunk), n, what)?;
        out.extend(results.into_iter().map(|r| r.map(|_| ())));
    }
    Ok(out)
}

/// A code's move (one conditional update of its item) and what it
/// changes in the pool's counters.
struct Move {
    update: UpdateItem,
    delta: Counts,
}

/// Applies moves together with their counting: each transaction holds up
/// to 99 moves and one update adding their deltas to the pool's counters,
/// so a move is never made without being counted, nor counted without
/// being made, whatever crashes between two calls. A move whose condition
/// is false is left out (nothing of it written) and the rest are sent
/// again. One flag per move: whether it was made.
fn counted_moves(
    table: &str,
    pool: &Pool,
    moves: Vec<Move>,
    what: &str,
) -> Result<Vec<bool>, Failure> {
    let mut made = vec![false; moves.len()];
    let indexed: Vec<(usize, Move)> = moves.into_iter().enumerate().collect();
    for chunk in indexed.chunks(MAX_TRANSACT_ITEMS - 1) {
        let mut pending: Vec<&(usize, Move)> = chunk.iter().collect();
        while !pending.is_empty() {
            let mut delta = Counts::default();
            let mut items: Vec<TransactItem> = Vec::with_capacity(pending.len() + 1);
            for (_, m) in &pending {
                delta.add(&m.delta);
                items.push(TransactItem::Update(TransactUpdate {
                    key: m.update.key.clone(),
                    set: m.update.set.clone(),
                    add: json!({}),
                    remove: m.update.remove.clone(),
                    condition: m.update.condition.clone(),
                }));
            }
            items.push(TransactItem::Update(TransactUpdate {
                key: pool.counts_key(),
                set: json!({"campaignId": pool.campaign_id, "marketId": pool.market_id}),
                add: json!({
                    "reserved": delta.reserved, "assigned": delta.assigned,
                    "marked": delta.marked, "available": delta.available,
                    "total": delta.total, "version": 1,
                }),
                remove: Vec::new(),
                condition: None,
            }));
            match table::transact_write(table, items) {
                Ok(Ok(())) => {
                    for (i, _) in &pending {
                        made[*i] = true;
                    }
                    pending.clear();
                }
                Ok(Err(cancelled)) => {
                    let counters = u32::try_from(pending.len()).unwrap_or(u32::MAX);
                    if cancelled.items.iter().any(|&f| f >= counters) {
                        return Err(Failure::new(
                            500,
                            format!("{what}: the counters' update was refused"),
                        ));
                    }
                    let refused: HashSet<u32> = cancelled.items.into_iter().collect();
                    pending = pending
                        .into_iter()
                        .enumerate()
                        .filter(|(n, _)| !refused.contains(&u32::try_from(*n).unwrap_or(u32::MAX)))
                        .map(|(_, m)| m)
                        .collect();
                }
                Err(e) => return Err(Failure::from_table(what, &e)),
            }
        }
    }
    Ok(made)
}

fn batch_write(table: &str, writes: Vec<Write>, what: &str) -> Result<(), Failure> {
    for chunk in writes.chunks(CALL) {
        let results = checked(table::batch_write(table, chunk), chunk.len(), what)?;
        if let Some(e) = results.into_iter().find_map(Result::err) {
            return Err(Failure::from_table(what, &e));
        }
    }
    Ok(())
}

// ----------------------------------------------------------- reservations

fn reservation_partition(id: &str) -> String {
    format!("RESERVATION#{id}")
}

fn record_key(id: &str) -> Value {
    json!({"PK": reservation_partition(id), "SK": RECORD_SK})
}

fn reserved_status(id: &str, generation: i64) -> String {
    format!("RESERVED#{id}#{generation}")
}

/// Whether a code's status says it is held by reservation `id` (any
/// attempt of it).
fn reserved_by(status: &str, id: &str) -> Option<i64> {
    let rest = status.strip_prefix("RESERVED#")?;
    let (rid, generation) = rest.rsplit_once('#')?;
    (rid == id).then(|| generation.parse().ok()).flatten()
}

/// A reservation request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Request {
    id: String,
    pool: Pool,
    count: usize,
}

fn reservation_request(body: &Value) -> Result<Request, Failure> {
    let id = body
        .get("reservationId")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty() && !id.chars().any(char::is_control))
        .ok_or_else(|| Failure::bad_request("reservationId must be a non-empty string"))?;
    let pool = Pool::of_body(body)?;
    let count = body
        .get("count")
        .and_then(Value::as_u64)
        .filter(|n| (1..=MAX_RESERVATION as u64).contains(n))
        .ok_or_else(|| {
            Failure::bad_request(format!(
                "count must be an integer from 1 to {MAX_RESERVATION}"
            ))
        })?;
    Ok(Request {
        id: id.to_string(),
        pool,
        count: count as usize,
    })
}

/// `POST /reservations`: see the crate docs. 200 with the codes, 409 with
/// `available` when the pool has too few, 409 when the id was used for
/// another pool or count, 503 when a newer attempt of the same id took over
/// (retry).
pub fn reserve(table: &str, body: &Value) -> Result<HttpResponse, Failure> {
    let request = reservation_request(body)?;
    let key = record_key(&request.id);
    for _ in 0..COUNTER_ATTEMPTS {
        let record: Option<Value> = table::get(table, &key)
            .map_err(|e| Failure::from_table("reading the reservation", &e))?;
        let generation = match &record {
            Some(r) => {
                same_request(r, &request)?;
                let phase = r.get("phase").and_then(Value::as_str).unwrap_or("");
                if phase == COMPLETE {
                    // Counted at completion; counted again here only when
                    // that crashed before counting (the counters remember).
                    count_reservation(table, &request, r)?;
                    return Ok(HttpResponse::json_ok(&answer_of(table, r)?));
                }
                let generation = r.get("generation").and_then(Value::as_i64).unwrap_or(0) + 1;
                // A new attempt takes over; an older one still running
                // notices at its end and gives back what it took.
                let set =
                    json!({"phase": format!("PENDING#{generation}"), "generation": generation});
                match table::update::<IgnoredAny>(
                    table,
                    &key,
                    &set,
                    &[],
                    Some(Condition::AttributeEquals("phase".into(), json!(phase))),
                ) {
                    Ok(_) => generation,
                    Err(e) if e.is_condition_failed() => continue,
                    Err(e) => return Err(Failure::from_table("taking over the reservation", &e)),
                }
            }
            None => {
                let item = json!({
                    "PK": reservation_partition(&request.id), "SK": RECORD_SK,
                    "reservationId": request.id, "campaignId": request.pool.campaign_id,
                    "marketId": request.pool.market_id, "count": request.count,
                    "phase": "PENDING#1", "generation": 1,
                });
                match table::put(table, &item, Some(Condition::NotExists)) {
                    Ok(()) => 1,
                    Err(e) if e.is_condition_failed() => continue,
                    Err(e) => return Err(Failure::from_table("creating the reservation", &e)),
                }
            }
        };
        return Attempt {
            table,
            request: &request,
            generation,
        }
        .run();
    }
    Err(Failure::new(
        503,
        format!("reservation {} stayed contended", request.id),
    ))
}

fn same_request(record: &Value, request: &Request) -> Result<(), Failure> {
    let same = record.get("campaignId").and_then(Value::as_str) == Some(&request.pool.campaign_id)
        && record.get("marketId").and_then(Value::as_str) == Some(&request.pool.market_id)
        && record.get("count").and_then(Value::as_u64) == Some(request.count as u64);
    if same {
        Ok(())
    } else {
        Err(Failure::new(
            409,
            format!(
                "reservation {} exists for another pool or count ({} {} {})",
                request.id,
                record.get("campaignId").unwrap_or(&Value::Null),
                record.get("marketId").unwrap_or(&Value::Null),
                record.get("count").unwrap_or(&Value::Null),
            ),
        ))
    }
}

fn count_reservation(table: &str, request: &Request, record: &Value) -> Result<(), Failure> {
    if record.get("counted").and_then(Value::as_bool) == Some(true) {
        return Ok(());
    }
    let n = request.count as i64;
    let raise = match (
        record.get("scanTo").and_then(Value::as_str),
        record.get("epoch").and_then(Value::as_i64),
    ) {
        (Some(to), Some(epoch)) => Hint::Raise(to.to_string(), epoch),
        _ => Hint::Keep,
    };
    bump(
        table,
        &request.pool,
        &Counts {
            available: -n,
            reserved: n,
            ..Counts::default()
        },
        &raise,
        Some(&request.id),
    )?;
    // Best effort: the counters remember the id anyway.
    if let Err(e) = table::update::<IgnoredAny>(
        table,
        &record_key(&request.id),
        &json!({"counted": true}),
        &[],
        Some(Condition::Exists),
    ) {
        usher_sdk::warn!(error = e; "marking the reservation counted failed");
    }
    Ok(())
}

/// The 200 answer of a complete reservation: its codes, read from its
/// answer chunks.
fn answer_of(table: &str, record: &Value) -> Result<Value, Failure> {
    let id = record
        .get("reservationId")
        .and_then(Value::as_str)
        .unwrap_or("");
    let generation = record
        .get("generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let chunks = record.get("chunks").and_then(Value::as_u64).unwrap_or(0) as usize;
    let keys: Vec<Value> = (0..chunks).map(|n| answer_key(id, generation, n)).collect();
    let mut codes: Vec<Value> = Vec::new();
    for (n, item) in batch_get(table, &keys, "reading the reservation's codes")?
        .into_iter()
        .enumerate()
    {
        let item = item.ok_or_else(|| {
            Failure::new(
                500,
                format!("reservation {id}: chunk {n} of its codes is missing"),
            )
        })?;
        codes.extend(
            item.get("codes")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        );
    }
    Ok(json!({
        "reservationId": id,
        "campaignId": record.get("campaignId"),
        "marketId": record.get("marketId"),
        "codes": codes,
    }))
}

fn answer_key(id: &str, generation: i64, n: usize) -> Value {
    json!({"PK": reservation_partition(id), "SK": format!("CODES#{generation}#{n:06}")})
}

/// `GET /reservations/{reservationId}`: a complete reservation's answer;
/// 404 when there is none (or it is not complete).
pub fn get_reservation(table: &str, id: &str) -> Result<Value, Failure> {
    let record: Option<Value> = table::get(table, &record_key(id))
        .map_err(|e| Failure::from_table("reading the reservation", &e))?;
    match record {
        Some(r) if r.get("phase").and_then(Value::as_str) == Some(COMPLETE) => answer_of(table, &r),
        Some(_) => Err(Failure::not_found(format!(
            "reservation {id} is not complete"
        ))),
        None => Err(Failure::not_found(format!("no reservation {id}"))),
    }
}

/// One attempt (generation) of a reservation.
struct Attempt<'a> {
    table: &'a str,
    request: &'a Request,
    generation: i64,
}

/// What a scan of the pool found.
struct Scan {
    /// Available codes, in order.
    candidates: Vec<String>,
    /// The sort key of the last code looked at.
    last: Option<String>,
    /// Whether the pool's end was reached.
    exhausted: bool,
}

impl Attempt<'_> {
    fn status(&self) -> String {
        reserved_status(&self.request.id, self.generation)
    }

    fn run(&self) -> Result<HttpResponse, Failure> {
        let table = self.table;
        let pool = &self.request.pool;
        // The counters first: how many codes are available, where the scan
        // starts, and the availability epoch a raise of that start needs.
        let counts: Option<Value> = table::get(table, &pool.counts_key())
            .map_err(|e| Failure::from_table("reading the pool counters", &e))?;
        let epoch = counts
            .as_ref()
            .and_then(|c| c.get("epoch"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let hint = counts
            .as_ref()
            .and_then(|c| c.get("scanAfter"))
            .and_then(Value::as_str)
            .map(str::to_string);

        // What earlier attempts claimed: adopt the codes they hold, retry
        // the ones they did not get to.
        let mut owned: BTreeSet<String> = BTreeSet::new();
        let claimed = self.claims()?;
        let mut retry = Vec::new();
        if !claimed.is_empty() {
            let keys: Vec<Value> = claimed.iter().map(|c| pool.code_key(c)).collect();
            let mut adopt = Vec::new();
            for (code, item) in
                claimed
                    .iter()
                    .zip(batch_get(table, &keys, "reading claimed codes")?)
            {
                let status = item
                    .as_ref()
                    .and_then(|i| i.get("status"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if status == AVAILABLE {
                    retry.push(code.clone());
                } else if let Some(g) = reserved_by(status, &self.request.id) {
                    // Only from older attempts: a newer one is the current
                    // attempt, this one is overtaken and must not take from it.
                    if g == self.generation {
                        owned.insert(code.clone());
                    } else if g < self.generation {
                        adopt.push((code.clone(), status.to_string()));
                    }
                }
            }
            let updates = adopt
                .iter()
                .map(|(code, status)| UpdateItem {
                    key: pool.code_key(code),
                    set: json!({"status": self.status()}),
                    remove: Vec::new(),
                    condition: Some(Condition::AttributeEquals("status".into(), json!(status))),
                })
                .collect();
            for ((code, _), r) in
                adopt
                    .iter()
                    .zip(update_many(table, updates, "adopting claimed codes")?)
            {
                match r {
                    Ok(()) => {
                        owned.insert(code.clone());
                    }
                    Err(e) if e.is_condition_failed() => {}
                    Err(e) => return Err(Failure::from_table("adopting a claimed code", &e)),
                }
            }
        }
        // Never more than asked (an earlier attempt may have held more).
        while owned.len() > self.request.count {
            if let Some(extra) = owned.pop_last() {
                self.release(&[extra])?;
            }
        }

        let available = Counts::of(counts.as_ref()).available;
        if available < self.request.count as i64 && owned.len() < self.request.count {
            // The counters include codes this reservation holds but has not
            // counted yet: `available` still covers them.
            return self.insufficient(&owned, available);
        }

        // This attempt's own claim items (its generation is its own).
        let mut claim_no = 0;
        if !retry.is_empty() {
            let need = self.request.count - owned.len();
            retry.truncate(need);
            self.take(&retry, &mut owned, &mut claim_no)?;
        }
        let mut after = hint.clone();
        let mut from_start = hint.is_none();
        let mut last_seen: Option<String> = None;
        while owned.len() < self.request.count {
            let need = self.request.count - owned.len();
            let scan = self.scan(after.as_deref(), need, &owned)?;
            if scan.last.is_some() {
                last_seen.clone_from(&scan.last);
            }
            self.take(&scan.candidates, &mut owned, &mut claim_no)?;
            if owned.len() >= self.request.count {
                break;
            }
            if scan.exhausted {
                if from_start {
                    let now = pool_counts(table, pool)?;
                    return self.insufficient(
                        &owned,
                        now.get("available").and_then(Value::as_i64).unwrap_or(0),
                    );
                }
                // The hint may be stale (a crash between a release and its
                // counting): once more from the pool's first code.
                from_start = true;
                after = None;
                last_seen = None;
                continue;
            }
            after = scan.last;
        }
        self.complete(&owned, last_seen, epoch)
    }

    /// The codes claimed by any attempt so far.
    fn claims(&self) -> Result<Vec<String>, Failure> {
        let mut codes = Vec::new();
        let mut seen = HashSet::new();
        let mut start: Option<Value> = None;
        loop {
            let page = table::query::<Value>(
                self.table,
                &json!({"PK": reservation_partition(&self.request.id)}),
                Some(CLAIM_PREFIX),
                None,
                start.as_ref(),
            )
            .map_err(|e| Failure::from_table("reading the reservation's claims", &e))?;
            for item in &page.items {
                for c in item
                    .get("codes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    if seen.insert(c.to_string()) {
                        codes.push(c.to_string());
                    }
                }
            }
            match page.next {
                Some(n) => start = Some(n),
                None => return Ok(codes),
            }
        }
    }

    /// Available codes after sort key `after`, up to `need` of them.
    fn scan(
        &self,
        after: Option<&str>,
        need: usize,
        owned: &BTreeSet<String>,
    ) -> Result<Scan, Failure> {
        let pool = &self.request.pool;
        let mut start = after.map(|sk| json!({"PK": pool.partition(), "SK": sk}));
        let mut candidates = Vec::new();
        let mut last = None;
        loop {
            let page = table::query::<Value>(
                self.table,
                &json!({"PK": pool.partition()}),
                Some(CODE_PREFIX),
                None,
                start.as_ref(),
            )
            .map_err(|e| Failure::from_table("scanning the pool", &e))?;
            for item in &page.items {
                let sk = item.get("SK").and_then(Value::as_str).unwrap_or("");
                last = Some(sk.to_string());
                let code = item.get("code").and_then(Value::as_str).unwrap_or("");
                if item.get("status").and_then(Value::as_str) == Some(AVAILABLE)
                    && !owned.contains(code)
                {
                    candidates.push(code.to_string());
                    if candidates.len() == need {
                        return Ok(Scan {
                            candidates,
                            last,
                            exhausted: false,
                        });
                    }
                }
            }
            match page.next {
                Some(n) => start = Some(n),
                None => {
                    return Ok(Scan {
                        candidates,
                        last,
                        exhausted: true,
                    })
                }
            }
        }
    }

    /// Claims `codes` (a claim item first, so that a retry after a crash
    /// finds them) and moves each from AVAILABLE to this attempt's status,
    /// conditionally: a code another reservation took meanwhile is skipped.
    fn take(
        &self,
        codes: &[String],
        owned: &mut BTreeSet<String>,
        claim_no: &mut usize,
    ) -> Result<(), Failure> {
        if codes.is_empty() {
            return Ok(());
        }
        let pool = &self.request.pool;
        let claims: Vec<Write> = codes
            .chunks(CHUNK)
            .map(|chunk| {
                let item = json!({
                    "PK": reservation_partition(&self.request.id),
                    "SK": format!("{CLAIM_PREFIX}{:06}#{:06}", self.generation, *claim_no),
                    "codes": chunk,
                });
                *claim_no += 1;
                Write::Put(item)
            })
            .collect();
        batch_write(self.table, claims, "claiming codes")?;
        let status = self.status();
        let updates = codes
            .iter()
            .map(|code| UpdateItem {
                key: pool.code_key(code),
                set: json!({"status": status, "reservationId": self.request.id}),
                remove: Vec::new(),
                condition: Some(Condition::AttributeEquals(
                    "status".into(),
                    json!(AVAILABLE),
                )),
            })
            .collect();
        for (code, r) in codes
            .iter()
            .zip(update_many(self.table, updates, "reserving codes")?)
        {
            match r {
                Ok(()) => {
                    owned.insert(code.clone());
                }
                Err(e) if e.is_condition_failed() => {}
                Err(e) => return Err(Failure::from_table("reserving a code", &e)),
            }
        }
        Ok(())
    }

    /// Gives codes held by this attempt back (AVAILABLE), conditionally on
    /// this attempt still holding them, and counts them as available again
    /// for the scan's hint.
    fn release(&self, codes: &[String]) -> Result<(), Failure> {
        if codes.is_empty() {
            return Ok(());
        }
        let pool = &self.request.pool;
        let updates = codes
            .iter()
            .map(|code| UpdateItem {
                key: pool.code_key(code),
                set: json!({"status": AVAILABLE}),
                remove: vec!["reservationId".into()],
                condition: Some(Condition::AttributeEquals(
                    "status".into(),
                    json!(self.status()),
                )),
            })
            .collect();
        for r in update_many(self.table, updates, "releasing codes")? {
            match r {
                Ok(()) => {}
                Err(e) if e.is_condition_failed() => {}
                Err(e) => return Err(Failure::from_table("releasing a code", &e)),
            }
        }
        let smallest = codes.iter().min().map(|c| format!("{CODE_PREFIX}{c}"));
        bump(
            self.table,
            pool,
            &Counts::default(),
            &smallest.map_or(Hint::Keep, Hint::Available),
            None,
        )?;
        Ok(())
    }

    /// Too few codes: everything this attempt holds is given back, the
    /// reservation is removed (a later retry may succeed), 409.
    fn insufficient(
        &self,
        owned: &BTreeSet<String>,
        available: i64,
    ) -> Result<HttpResponse, Failure> {
        let owned: Vec<String> = owned.iter().cloned().collect();
        self.release(&owned)?;
        // The record stays, FAILED (a later retry is a new attempt with a
        // new generation: a generation is never used twice), while this
        // attempt is the current one.
        let key = record_key(&self.request.id);
        match table::update::<IgnoredAny>(
            self.table,
            &key,
            &json!({"phase": format!("FAILED#{}", self.generation)}),
            &[],
            Some(Condition::AttributeEquals(
                "phase".into(),
                json!(format!("PENDING#{}", self.generation)),
            )),
        ) {
            Ok(_) => {
                let claims = self.claim_keys()?;
                batch_write(
                    self.table,
                    claims.into_iter().map(Write::Delete).collect(),
                    "removing the claims",
                )?;
            }
            Err(e) if e.is_condition_failed() => {
                return Err(Failure::new(
                    503,
                    format!(
                        "reservation {} was taken over by a newer attempt; retry",
                        self.request.id
                    ),
                ));
            }
            Err(e) => return Err(Failure::from_table("closing the reservation", &e)),
        }
        let available = available.max(0);
        usher_sdk::info!(reservation = self.request.id, count = self.request.count, available = available; "too few codes");
        HttpResponse::json(
            409,
            &json!({
                "error": format!(
                    "pool {} has {available} available codes, {} asked",
                    self.request.pool.partition(),
                    self.request.count
                ),
                "available": available,
            }),
        )
        .map_err(|e| Failure::new(500, e.to_string()))
    }

    fn claim_keys(&self) -> Result<Vec<Value>, Failure> {
        let mut keys = Vec::new();
        let mut start: Option<Value> = None;
        loop {
            let page = table::query::<Value>(
                self.table,
                &json!({"PK": reservation_partition(&self.request.id)}),
                Some(CLAIM_PREFIX),
                None,
                start.as_ref(),
            )
            .map_err(|e| Failure::from_table("reading the reservation's claims", &e))?;
            keys.extend(
                page.items
                    .iter()
                    .map(|i| json!({"PK": i.get("PK"), "SK": i.get("SK")})),
            );
            match page.next {
                Some(n) => start = Some(n),
                None => return Ok(keys),
            }
        }
    }

    /// Writes the answer (sorted codes in chunks), completes the record
    /// (conditional on this attempt being the current one), counts it,
    /// gives back strays of older attempts.
    fn complete(
        &self,
        owned: &BTreeSet<String>,
        scan_to: Option<String>,
        epoch: i64,
    ) -> Result<HttpResponse, Failure> {
        let table = self.table;
        let codes: Vec<&String> = owned.iter().collect();
        let chunks: Vec<Write> = codes
            .chunks(CHUNK)
            .enumerate()
            .map(|(n, chunk)| {
                let mut item = answer_key(&self.request.id, self.generation, n);
                item["codes"] = json!(chunk);
                Write::Put(item)
            })
            .collect();
        let chunk_count = chunks.len();
        batch_write(table, chunks, "storing the reservation's codes")?;
        let key = record_key(&self.request.id);
        let mut set =
            json!({"phase": COMPLETE, "chunks": chunk_count, "counted": false, "epoch": epoch});
        if let Some(to) = &scan_to {
            set["scanTo"] = json!(to);
        }
        let record: Value = match table::update(
            table,
            &key,
            &set,
            &[],
            Some(Condition::AttributeEquals(
                "phase".into(),
                json!(format!("PENDING#{}", self.generation)),
            )),
        ) {
            Ok(record) => record,
            Err(e) if e.is_condition_failed() => {
                // A newer attempt took over: give back what this one holds
                // and let the caller retry.
                let owned: Vec<String> = owned.iter().cloned().collect();
                self.release(&owned)?;
                return Err(Failure::new(
                    503,
                    format!(
                        "reservation {} was taken over by a newer attempt; retry",
                        self.request.id
                    ),
                ));
            }
            Err(e) => return Err(Failure::from_table("completing the reservation", &e)),
        };
        count_reservation(table, self.request, &record)?;
        self.release_strays(owned)?;
        usher_sdk::info!(reservation = self.request.id, count = owned.len(); "codes reserved");
        Ok(HttpResponse::json_ok(&json!({
            "reservationId": self.request.id,
            "campaignId": self.request.pool.campaign_id,
            "marketId": self.request.pool.market_id,
            "codes": codes,
        })))
    }

    /// Codes still held by older attempts of this reservation (claimed but
    /// not adopted) go back to AVAILABLE; the claims are removed.
    fn release_strays(&self, owned: &BTreeSet<String>) -> Result<(), Failure> {
        let pool = &self.request.pool;
        let claimed = self.claims()?;
        let others: Vec<&String> = claimed.iter().filter(|c| !owned.contains(*c)).collect();
        let keys: Vec<Value> = others.iter().map(|c| pool.code_key(c)).collect();
        let mut strays: Vec<(String, String)> = Vec::new();
        for (code, item) in
            others
                .iter()
                .zip(batch_get(self.table, &keys, "reading claimed codes")?)
        {
            let status = item
                .as_ref()
                .and_then(|i| i.get("status"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if reserved_by(status, &self.request.id).is_some_and(|g| g < self.generation) {
                strays.push(((*code).clone(), status.to_string()));
            }
        }
        if !strays.is_empty() {
            let updates = strays
                .iter()
                .map(|(code, status)| UpdateItem {
                    key: pool.code_key(code),
                    set: json!({"status": AVAILABLE}),
                    remove: vec!["reservationId".into()],
                    condition: Some(Condition::AttributeEquals("status".into(), json!(status))),
                })
                .collect();
            update_many(self.table, updates, "releasing stray codes")?;
            let smallest = strays
                .iter()
                .map(|(c, _)| c)
                .min()
                .map(|c| format!("{CODE_PREFIX}{c}"));
            bump(
                self.table,
                pool,
                &Counts::default(),
                &smallest.map_or(Hint::Keep, Hint::Available),
                None,
            )?;
        }
        let claims = self.claim_keys()?;
        batch_write(
            self.table,
            claims.into_iter().map(Write::Delete).collect(),
            "removing the claims",
        )
    }
}

// ------------------------------------------------------------ assignments

/// One assignment of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Assignment {
    code: String,
    fan: String,
}

/// What becomes of one assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Done,
    Already,
    Conflict(String),
}

fn assignments(body: &Value) -> Result<Vec<Assignment>, Failure> {
    let list = body
        .get("assignments")
        .and_then(Value::as_array)
        .ok_or_else(|| Failure::bad_request("the body needs an array `assignments`"))?;
    if list.len() > MAX_ASSIGNMENTS {
        return Err(Failure::new(
            413,
            format!(
                "at most {MAX_ASSIGNMENTS} assignments per request, got {}",
                list.len()
            ),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, a)| {
            match (
                a.get("code").and_then(Value::as_str),
                a.get("globalUserId").and_then(Value::as_str),
            ) {
                (Some(code), Some(fan)) if check_code(code) && !fan.is_empty() => Ok(Assignment {
                    code: code.into(),
                    fan: fan.into(),
                }),
                _ => Err(Failure::bad_request(format!(
                    "assignments[{i}] needs code and globalUserId as non-empty strings"
                ))),
            }
        })
        .collect()
}

fn assigned_status(fan: &str) -> String {
    format!("ASSIGNED#{fan}")
}

fn marked_status(fan: &str) -> String {
    format!("MARKED#{fan}")
}

/// The fan a code's status gives it to, and whether it is marked.
fn holder(status: &str) -> Option<(&str, bool)> {
    if let Some(fan) = status.strip_prefix("ASSIGNED#") {
        Some((fan, false))
    } else {
        status.strip_prefix("MARKED#").map(|fan| (fan, true))
    }
}

/// `POST /codes/assign` (`mark` false) and `POST /codes/mark-assigned`
/// (`mark` true): see the crate docs.
pub fn assign(table: &str, body: &Value, mark: bool) -> Result<Value, Failure> {
    let pool = Pool::of_body(body)?;
    let list = assignments(body)?;
    let mut outcomes: Vec<Option<Outcome>> = vec![None; list.len()];

    // Within one request a code and a fan count once: a later element
    // naming the same code or fan is decided against the earlier one.
    let mut by_code: HashMap<&str, usize> = HashMap::new();
    let mut by_fan: HashMap<&str, usize> = HashMap::new();
    let mut work: Vec<usize> = Vec::new();
    // Repeats of an earlier element: (repeat, earlier), answered as it is.
    let mut repeats: Vec<(usize, usize)> = Vec::new();
    for (i, a) in list.iter().enumerate() {
        match (by_code.get(a.code.as_str()), by_fan.get(a.fan.as_str())) {
            (Some(&j), _) if list[j].fan == a.fan => {
                repeats.push((i, j));
            }
            (Some(_), _) => {
                outcomes[i] = Some(Outcome::Conflict(
                    "the code is given to another fan in this request".into(),
                ))
            }
            (None, Some(_)) => {
                outcomes[i] = Some(Outcome::Conflict(
                    "the fan gets another code in this request".into(),
                ))
            }
            (None, None) => {
                by_code.insert(&a.code, i);
                by_fan.insert(&a.fan, i);
                work.push(i);
            }
        }
    }

    let mut keys = Vec::with_capacity(work.len() * 2);
    for &i in &work {
        keys.push(pool.code_key(&list[i].code));
        keys.push(pool.fan_key(&list[i].fan));
    }
    let items = batch_get(table, &keys, "reading codes and fans")?;
    // A reserved code is given only from a complete reservation's answer
    // (its completing attempt's generation): never from one still being
    // made, failed, or a stray of an overtaken attempt.
    let mut rids: Vec<String> = Vec::new();
    for n in 0..work.len() {
        let status = items[2 * n]
            .as_ref()
            .and_then(|c| c.get("status"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if let Some((rid, _)) = status
            .strip_prefix("RESERVED#")
            .and_then(|r| r.rsplit_once('#'))
        {
            if !rids.iter().any(|r| r == rid) {
                rids.push(rid.to_string());
            }
        }
    }
    let records = batch_get(
        table,
        &rids.iter().map(|r| record_key(r)).collect::<Vec<_>>(),
        "reading reservations",
    )?;
    let complete: HashMap<String, i64> = rids
        .iter()
        .zip(records)
        .filter_map(|(rid, r)| {
            let r = r?;
            (r.get("phase").and_then(Value::as_str) == Some(COMPLETE))
                .then(|| Some((rid.clone(), r.get("generation")?.as_i64()?)))?
        })
        .collect();
    // Planned: (index, status read) for a code to move from RESERVED,
    // (index) for a code to move from ASSIGNED to MARKED.
    let mut claim: Vec<usize> = Vec::new();
    let mut from_reserved: Vec<(usize, String)> = Vec::new();
    let mut to_mark: Vec<usize> = Vec::new();
    for (n, &i) in work.iter().enumerate() {
        let a = &list[i];
        let code = items[2 * n].as_ref();
        let fan = items[2 * n + 1].as_ref();
        let status = code
            .and_then(|c| c.get("status"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let fan_code = fan.and_then(|f| f.get("code")).and_then(Value::as_str);
        let given = status
            .strip_prefix("RESERVED#")
            .and_then(|r| r.rsplit_once('#'))
            .is_none_or(|(rid, g)| complete.get(rid).map(i64::to_string).as_deref() == Some(g));
        let outcome = if given {
            decide(a, code.is_some(), status, fan_code, mark)
        } else {
            Decision::Outcome(Outcome::Conflict(
                "the code's reservation is not complete".into(),
            ))
        };
        match outcome {
            Decision::Outcome(o) => outcomes[i] = Some(o),
            Decision::FromReserved { claim_fan } => {
                if claim_fan {
                    claim.push(i);
                }
                from_reserved.push((i, status.to_string()));
            }
            Decision::Mark => to_mark.push(i),
        }
    }

    // The fan's item first (created only when absent: a fan never holds
    // two codes of the pool), then the code's conditional move.
    let puts = claim
        .iter()
        .map(|&i| {
            let mut item = pool.fan_key(&list[i].fan);
            item["globalUserId"] = json!(list[i].fan);
            item["code"] = json!(list[i].code);
            PutItem {
                item,
                condition: Some(Condition::NotExists),
            }
        })
        .collect();
    let results = checked(table::put_many(table, puts), claim.len(), "claiming fans")?;
    let mut lost_fan: HashSet<usize> = HashSet::new();
    for (&i, r) in claim.iter().zip(results) {
        match r {
            Ok(()) => {}
            Err(e) if e.is_condition_failed() => {
                let fan: Option<Value> = table::get(table, &pool.fan_key(&list[i].fan))
                    .map_err(|e| Failure::from_table("reading a fan", &e))?;
                let holds = fan
                    .as_ref()
                    .and_then(|f| f.get("code"))
                    .and_then(Value::as_str);
                if holds != Some(list[i].code.as_str()) {
                    lost_fan.insert(i);
                    outcomes[i] = Some(Outcome::Conflict(
                        "the fan holds another code of this market".into(),
                    ));
                }
            }
            Err(e) => return Err(Failure::from_table("claiming a fan", &e)),
        }
    }
    from_reserved.retain(|(i, _)| !lost_fan.contains(i));

    let moves: Vec<Move> = from_reserved
        .iter()
        .map(|(i, status)| {
            let a = &list[*i];
            let to = if mark {
                marked_status(&a.fan)
            } else {
                assigned_status(&a.fan)
            };
            Move {
                update: UpdateItem {
                    key: pool.code_key(&a.code),
                    set: json!({"status": to, "globalUserId": a.fan}),
                    remove: Vec::new(),
                    condition: Some(Condition::AttributeEquals("status".into(), json!(status))),
                },
                delta: Counts {
                    reserved: -1,
                    assigned: 1,
                    marked: i64::from(mark),
                    ..Counts::default()
                },
            }
        })
        .collect();
    let made = counted_moves(table, &pool, moves, "assigning codes")?;
    let mut undo: Vec<usize> = Vec::new();
    for ((i, _), made) in from_reserved.iter().zip(made) {
        let i = *i;
        match made {
            true => outcomes[i] = Some(Outcome::Done),
            false => {
                // The code moved meanwhile: decide again on what it is now.
                let code: Option<Value> = table::get(table, &pool.code_key(&list[i].code))
                    .map_err(|e| Failure::from_table("reading a code", &e))?;
                let status = code
                    .as_ref()
                    .and_then(|c| c.get("status"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                match holder(status) {
                    Some((fan, marked)) if fan == list[i].fan => {
                        if mark && !marked {
                            to_mark.push(i);
                        } else {
                            outcomes[i] = Some(Outcome::Already);
                        }
                    }
                    _ => {
                        undo.push(i);
                        outcomes[i] = Some(Outcome::Conflict(format!(
                            "the code changed meanwhile ({})",
                            describe(status)
                        )));
                    }
                }
            }
        }
    }
    // A fan whose code went elsewhere does not keep holding it.
    for i in undo {
        match table::delete(
            table,
            &pool.fan_key(&list[i].fan),
            Some(Condition::AttributeEquals(
                "code".into(),
                json!(list[i].code),
            )),
        ) {
            Ok(()) => {}
            Err(e) if e.is_condition_failed() => {}
            Err(e) => return Err(Failure::from_table("releasing a fan", &e)),
        }
    }

    if !to_mark.is_empty() {
        let moves = to_mark
            .iter()
            .map(|&i| Move {
                update: UpdateItem {
                    key: pool.code_key(&list[i].code),
                    set: json!({"status": marked_status(&list[i].fan)}),
                    remove: Vec::new(),
                    condition: Some(Condition::AttributeEquals(
                        "status".into(),
                        json!(assigned_status(&list[i].fan)),
                    )),
                },
                delta: Counts {
                    marked: 1,
                    ..Counts::default()
                },
            })
            .collect();
        for (&i, made) in to_mark
            .iter()
            .zip(counted_moves(table, &pool, moves, "marking codes")?)
        {
            // Not made: marked meanwhile by a concurrent request, or
            // reassigned (which cannot happen: an assigned code stays its
            // fan's).
            outcomes[i] = Some(if made {
                Outcome::Done
            } else {
                Outcome::Already
            });
        }
    }

    for (i, j) in repeats {
        outcomes[i] = match &outcomes[j] {
            Some(Outcome::Conflict(reason)) => Some(Outcome::Conflict(reason.clone())),
            Some(_) => Some(Outcome::Already),
            None => None,
        };
    }
    let (mut done, mut already) = (0, 0);
    let mut conflicts = Vec::new();
    for (a, o) in list.iter().zip(outcomes) {
        match o {
            Some(Outcome::Done) => done += 1,
            Some(Outcome::Already) => already += 1,
            Some(Outcome::Conflict(reason)) => {
                conflicts.push(json!({"code": a.code, "globalUserId": a.fan, "reason": reason}))
            }
            None => {
                return Err(Failure::new(
                    500,
                    format!("assignment of {} to {} was not decided", a.code, a.fan),
                ))
            }
        }
    }
    let verb = if mark { "marked" } else { "assigned" };
    usher_sdk::info!(done = done, already = already, conflicts = conflicts.len(); "codes {verb}");
    Ok(json!({verb: done, "already": already, "conflicts": conflicts}))
}

/// What to do with one assignment given what was read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    Outcome(Outcome),
    /// Move the code from its RESERVED status (claiming the fan first
    /// unless its item already names this code).
    FromReserved {
        claim_fan: bool,
    },
    /// Move the code from ASSIGNED (to this fan) to MARKED.
    Mark,
}

fn decide(
    a: &Assignment,
    exists: bool,
    status: &str,
    fan_code: Option<&str>,
    mark: bool,
) -> Decision {
    if !exists {
        return Decision::Outcome(Outcome::Conflict("no such code in this pool".into()));
    }
    if let Some((fan, marked)) = holder(status) {
        return if fan != a.fan {
            Decision::Outcome(Outcome::Conflict(
                "the code is assigned to another fan".into(),
            ))
        } else if mark && !marked {
            Decision::Mark
        } else {
            Decision::Outcome(Outcome::Already)
        };
    }
    if !status.starts_with("RESERVED#") {
        return Decision::Outcome(Outcome::Conflict(format!(
            "the code is not reserved ({})",
            describe(status)
        )));
    }
    match fan_code {
        Some(c) if c != a.code => Decision::Outcome(Outcome::Conflict(
            "the fan holds another code of this market".into(),
        )),
        Some(_) => Decision::FromReserved { claim_fan: false },
        None => Decision::FromReserved { claim_fan: true },
    }
}

fn describe(status: &str) -> &str {
    if status.is_empty() {
        "absent"
    } else if status.starts_with("RESERVED#") {
        "reserved"
    } else if status.starts_with("ASSIGNED#") {
        "assigned to another fan"
    } else if status.starts_with("MARKED#") {
        "marked for another fan"
    } else {
        status
    }
}

/// The state counts of a pool's code items (for checks): (available,
/// reserved, assigned, marked) by each code's status.
pub fn tally<'a>(statuses: impl IntoIterator<Item = &'a str>) -> BTreeMap<&'static str, i64> {
    let mut t: BTreeMap<&'static str, i64> = BTreeMap::new();
    for s in statuses {
        let k = if s == AVAILABLE {
            "available"
        } else if s.starts_with("RESERVED#") {
            "reserved"
        } else if s.starts_with("ASSIGNED#") {
            "assigned"
        } else if s.starts_with("MARKED#") {
            *t.entry("assigned").or_insert(0) += 1;
            "marked"
        } else {
            "other"
        };
        *t.entry(k).or_insert(0) += 1;
    }
    t
}

#[cfg(test)]
mod tests;
