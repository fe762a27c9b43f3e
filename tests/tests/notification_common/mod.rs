//! The services the notification workers talk to, scripted for their host
//! tests: the Campaign Service (campaigns, markets, stats), the Entry
//! Service (a market's entries and selections, paged by globalUserId) and
//! the User Service (e-mail jobs idempotent by jobId, a 409 for the same id
//! with other content; triggers sent once, refused before `sendAt`).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use usher_capabilities::{Method, ServiceRequest, ServiceResponse};
use usher_testing::{json_response, FakeServices};

/// One e-mail job as the fake User Service holds it.
#[derive(Debug, Clone)]
pub struct Job {
    pub body: Value,
    pub send_at_ms: i64,
    pub posts: u32,
    pub triggers: u32,
    pub early_triggers: u32,
}

/// A market: (campaignId, marketId).
pub type MarketKey = (String, String);
/// A saved selection: (fan, verdict, drawId).
pub type Saved = (String, String, String);

/// The scripted state.
#[derive(Default)]
pub struct World {
    pub campaigns: Vec<Value>,
    /// campaignId → market ids.
    pub markets: BTreeMap<String, Vec<String>>,
    /// (campaignId, marketId) → stats.
    pub stats: BTreeMap<(String, String), Value>,
    /// (campaignId, marketId) → registered fans.
    pub entries: BTreeMap<(String, String), Vec<String>>,
    /// (campaignId, marketId) → (fan, verdict, drawId).
    pub selections: BTreeMap<MarketKey, Vec<Saved>>,
    pub jobs: BTreeMap<String, Job>,
}

pub type Shared = Arc<Mutex<World>>;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("a time")
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn parse(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .expect("RFC 3339")
        .timestamp_millis()
}

/// Campaign c1 (CLOSED) whose market m1's draw `c1.m1` is FINISHED with
/// `winners` winners (and as many losers).
pub fn finished_draw(winners: usize) -> Shared {
    let mut w = World::default();
    w.campaigns.push(json!({"id": "c1", "slug": "c1", "name": "c1", "status": "CLOSED",
        "opensAt": "2026-01-01T00:00:00Z", "closesAt": "2026-01-02T00:00:00Z", "gate": {"type": "none"}, "fields": []}));
    w.markets.insert("c1".into(), vec!["m1".into()]);
    w.stats.insert(
        ("c1".into(), "m1".into()),
        json!({"campaignId": "c1", "marketId": "m1", "status": "FINISHED", "drawId": "c1.m1",
               "expected": {"winners": winners, "losers": winners, "waitlisted": 0}}),
    );
    let selections = (0..winners * 2)
        .map(|i| {
            let verdict = if i % 2 == 0 { "WINNER" } else { "LOSER" };
            (
                format!("fan-{i:06}"),
                verdict.to_string(),
                "c1.m1".to_string(),
            )
        })
        .collect();
    w.selections.insert(("c1".into(), "m1".into()), selections);
    Arc::new(Mutex::new(w))
}

/// Adds campaign c2, OPEN and closing in 30 hours, market m1 with `fans`
/// registered fans.
pub fn closing_campaign(world: &Shared, fans: usize) {
    let mut w = world.lock().expect("world");
    w.campaigns.push(
        json!({"id": "c2", "slug": "c2", "name": "c2", "status": "OPEN",
        "opensAt": "2026-01-01T00:00:00Z", "closesAt": rfc3339(now_ms() + 30 * 3_600_000),
        "gate": {"type": "none"}, "fields": []}),
    );
    w.markets.insert("c2".into(), vec!["m1".into()]);
    w.entries.insert(
        ("c2".into(), "m1".into()),
        (0..fans).map(|i| format!("reg-{i:06}")).collect(),
    );
}

fn query(path: &str, name: &str) -> Option<String> {
    path.split_once('?')?.1.split('&').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k == name).then(|| v.replace("%23", "#"))
    })
}

fn respond(status: u16, body: Value) -> ServiceResponse {
    json_response(status, &body.to_string())
}

fn page(items: Vec<(String, Value)>, path: &str, key: &str) -> ServiceResponse {
    let limit: usize = query(path, "limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(1000);
    let after = query(path, "after");
    let page: Vec<(String, Value)> = items
        .into_iter()
        .filter(|(id, _)| after.as_deref().is_none_or(|a| id.as_str() > a))
        .take(limit)
        .collect();
    let next = (page.len() == limit).then(|| page[limit - 1].0.clone());
    let list: Vec<Value> = page.into_iter().map(|(_, v)| v).collect();
    respond(200, json!({key: list, "next": next}))
}

fn handle(w: &mut World, r: &ServiceRequest) -> ServiceResponse {
    let body: Value = r
        .body
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    let path = r.path.split('?').next().unwrap_or("").replace("%23", "#");
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (r.service.as_str(), r.method, parts.as_slice()) {
        ("campaigns", Method::Get, ["campaigns"]) => {
            respond(200, json!({"campaigns": w.campaigns, "next": null}))
        }
        ("campaigns", Method::Get, ["campaigns", c, "markets"]) => {
            let list: Vec<Value> = w
                .markets
                .get(*c)
                .into_iter()
                .flatten()
                .map(|m| json!({"id": m, "campaignId": c}))
                .collect();
            respond(200, json!({"markets": list}))
        }
        ("campaigns", Method::Get, ["campaigns", c, "markets", m, "stats"]) => {
            match w.stats.get(&(c.to_string(), m.to_string())) {
                Some(s) => respond(200, s.clone()),
                None => respond(404, json!({"error": "no stats"})),
            }
        }
        ("entries", Method::Get, ["markets", m, "entries"]) => {
            let c = query(&r.path, "campaignId").unwrap_or_default();
            let items = w
                .entries
                .get(&(c.clone(), m.to_string()))
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|f| {
                    (
                        f.clone(),
                        json!({"campaignId": c, "globalUserId": f, "marketId": m}),
                    )
                })
                .collect();
            page(items, &r.path, "entries")
        }
        ("entries", Method::Get, ["markets", m, "selections"]) => {
            let c = query(&r.path, "campaignId").unwrap_or_default();
            let items = w
                .selections
                .get(&(c, m.to_string()))
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|(f, v, d)| {
                    (
                        f.clone(),
                        json!({"globalUserId": f, "verdict": v, "drawId": d}),
                    )
                })
                .collect();
            page(items, &r.path, "selections")
        }
        ("users", Method::Post, ["email-jobs"]) => {
            let id = body["jobId"].as_str().unwrap_or_default().to_string();
            let fans = body["fans"].as_array().map_or(0, Vec::len);
            if fans == 0 || fans > 500 {
                return respond(400, json!({"error": "fans"}));
            }
            match w.jobs.get_mut(&id) {
                Some(job) if job.body == body => {
                    job.posts += 1;
                    respond(
                        200,
                        json!({"jobId": id, "enqueued": fans, "duplicate": true}),
                    )
                }
                Some(_) => respond(409, json!({"error": "another job"})),
                None => {
                    let send_at_ms = body["sendAt"].as_str().map(parse).unwrap_or(0);
                    w.jobs.insert(
                        id.clone(),
                        Job {
                            body,
                            send_at_ms,
                            posts: 1,
                            triggers: 0,
                            early_triggers: 0,
                        },
                    );
                    respond(
                        200,
                        json!({"jobId": id, "enqueued": fans, "duplicate": false}),
                    )
                }
            }
        }
        ("users", Method::Post, ["email-jobs", id, "trigger"]) => {
            let Some(job) = w.jobs.get_mut(*id) else {
                return respond(404, json!({"error": "no job"}));
            };
            if now_ms() < job.send_at_ms {
                job.early_triggers += 1;
                return respond(409, json!({"error": "not due"}));
            }
            job.triggers += 1;
            let fans = job.body["fans"].as_array().map_or(0, Vec::len);
            respond(
                200,
                json!({"jobId": id, "triggered": job.triggers == 1, "triggeredAt": "t", "fans": fans}),
            )
        }
        _ => respond(404, json!({"error": format!("unknown path {}", r.path)})),
    }
}

/// The scripted services over `world`.
pub fn services(world: &Shared) -> Arc<FakeServices> {
    let w = world.clone();
    FakeServices::with(move |r| {
        let mut w = w
            .lock()
            .map_err(|_| usher_capabilities::CapError::Fault("world poisoned".into()))?;
        Ok(handle(&mut w, r))
    })
}

/// The most fans due in any one-second window of the fake's jobs.
pub fn most_in_a_second(world: &Shared) -> u64 {
    let w = world.lock().expect("world");
    let mut jobs: Vec<(i64, u64)> = w
        .jobs
        .values()
        .map(|j| {
            (
                j.send_at_ms,
                j.body["fans"].as_array().map_or(0, Vec::len) as u64,
            )
        })
        .collect();
    jobs.sort_unstable();
    let (mut best, mut sum, mut lo) = (0, 0u64, 0usize);
    for hi in 0..jobs.len() {
        sum += jobs[hi].1;
        while jobs[hi].0 - jobs[lo].0 >= 1000 {
            sum -= jobs[lo].1;
            lo += 1;
        }
        best = best.max(sum);
    }
    best
}

/// Every fan's number of jobs.
pub fn fans_jobs(world: &Shared) -> BTreeMap<String, usize> {
    let w = world.lock().expect("world");
    let mut out = BTreeMap::new();
    for j in w.jobs.values() {
        for f in j.body["fans"].as_array().into_iter().flatten() {
            *out.entry(f.as_str().unwrap_or_default().to_string())
                .or_insert(0) += 1;
        }
    }
    out
}
