//! The services a draw talks to, scripted for the selection workers' host
//! tests: the Campaign Service (one market, its stats), the Entry Service
//! (a market's entries and saved selections, paged by globalUserId) and the
//! Code Service (a pool; a reservation id answers the same codes again).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use usher_capabilities::{Method, ServiceRequest, ServiceResponse};
use usher_testing::{json_response, FakeServices};

/// The scripted state.
#[derive(Default)]
pub struct World {
    pub selection_count: u64,
    pub waitlist_count: u64,
    /// globalUserId → score.
    pub entries: BTreeMap<String, u64>,
    /// globalUserId → saved selection.
    pub selections: BTreeMap<String, Value>,
    pub pool: Vec<String>,
    pub reservations: BTreeMap<String, Vec<String>>,
    pub stats: Vec<Value>,
    pub reserve_conflict: bool,
}

pub type Shared = Arc<Mutex<World>>;

pub fn world(entries: usize, selection: u64, waitlist: u64, codes: usize) -> Shared {
    Arc::new(Mutex::new(World {
        selection_count: selection,
        waitlist_count: waitlist,
        entries: (0..entries)
            .map(|i| (format!("fan-{i:06}"), (i as u64 * 31) % 70))
            .collect(),
        pool: (0..codes).map(|i| format!("CODE-{i:06}")).collect(),
        ..World::default()
    }))
}

fn query(path: &str, name: &str) -> Option<String> {
    path.split_once('?')?.1.split('&').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

fn respond(status: u16, body: Value) -> ServiceResponse {
    json_response(status, &body.to_string())
}

fn page<'a>(
    items: impl Iterator<Item = (&'a String, Value)>,
    path: &str,
    key: &str,
) -> ServiceResponse {
    let limit: usize = query(path, "limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(1000);
    let after = query(path, "after");
    let page: Vec<(&String, Value)> = items
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
    let path = r.path.split('?').next().unwrap_or("");
    match (r.service.as_str(), r.method, path) {
        ("campaigns", Method::Get, "/campaigns/c1/markets/m1") => respond(
            200,
            json!({"id": "m1", "campaignId": "c1", "eventId": "e1",
                   "selectionCount": w.selection_count, "waitlistCount": w.waitlist_count}),
        ),
        ("campaigns", Method::Put, "/campaigns/c1/markets/m1/stats") => {
            w.stats.push(body.clone());
            respond(200, body)
        }
        ("entries", Method::Get, "/markets/m1/entries") => page(
            w.entries.iter().map(|(id, score)| {
                (
                    id,
                    json!({"campaignId": "c1", "globalUserId": id, "marketId": "m1",
                            "entry": {"zip": "10001"}, "score": score}),
                )
            }),
            &r.path,
            "entries",
        ),
        ("entries", Method::Get, "/markets/m1/selections") => page(
            w.selections.iter().map(|(id, s)| (id, s.clone())),
            &r.path,
            "selections",
        ),
        ("codes", Method::Get, "/pools/c1/m1") => respond(
            200,
            json!({"total": w.pool.len(), "available": w.pool.len()}),
        ),
        ("codes", Method::Post, "/reservations") => {
            let id = body["reservationId"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let count = body["count"].as_u64().unwrap_or(0) as usize;
            if let Some(codes) = w.reservations.get(&id) {
                return respond(200, json!({"reservationId": id, "codes": codes}));
            }
            if w.reserve_conflict || w.pool.len() < count {
                return respond(
                    409,
                    json!({"error": "not enough codes", "available": w.pool.len()}),
                );
            }
            let codes: Vec<String> = w.pool.drain(..count).collect();
            w.reservations.insert(id.clone(), codes.clone());
            respond(200, json!({"reservationId": id, "codes": codes}))
        }
        ("codes", Method::Get, p) if p.starts_with("/reservations/") => {
            let id = p["/reservations/".len()..].replace("%23", "#");
            match w.reservations.get(&id) {
                Some(codes) => respond(200, json!({"reservationId": id, "codes": codes})),
                None => respond(404, json!({"error": "no such reservation"})),
            }
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

/// The selections of every `send-batch` call a host recorded, in order.
pub fn sent_selections(calls: &[usher_capabilities::CallRecord]) -> Vec<Value> {
    calls
        .iter()
        .flat_map(|c| {
            c.request["messages"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|m| {
            let batch: Value =
                serde_json::from_str(m["body"].as_str().unwrap_or("null")).expect("batch json");
            batch["selections"].as_array().cloned().unwrap_or_default()
        })
        .collect()
}

/// Saves selections as save-selections would (the Entry Service's view).
pub fn save(world: &Shared, selections: &[Value]) {
    let mut w = world.lock().expect("world");
    for s in selections {
        let id = s["globalUserId"].as_str().expect("id").to_string();
        let mut saved = json!({"globalUserId": id, "verdict": s["verdict"]});
        if let Some(code) = s.get("code") {
            saved["code"] = code.clone();
        }
        w.selections.insert(id, saved);
    }
}
