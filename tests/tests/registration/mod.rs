// Shared helpers of the registration workers' host tests (included with
// `mod registration;`): a scripted Campaign Service and Entry Service, and
// resolver events.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use usher_capabilities::{CapError, ServiceRequest, ServiceResponse};
use usher_engine::{Input, Output};
use usher_testing::{json_response, FakeServices, TestHost};

/// An open campaign (2020–2099) with the demo's fields and a gate.
pub fn campaign(id: &str, slug: &str, gate: Value) -> Value {
    json!({
        "id": id, "slug": slug, "name": format!("Campaign {slug}"), "status": "OPEN",
        "opensAt": "2020-01-01T00:00:00Z", "closesAt": "2099-01-01T00:00:00Z",
        "gate": gate,
        "fields": [
            {"name": "firstName", "type": "string", "required": true, "constraints": {"minLength": 1, "maxLength": 50}},
            {"name": "zip", "type": "string", "required": true, "constraints": {"minLength": 5, "maxLength": 5}},
            {"name": "age", "type": "integer", "required": true, "constraints": {"min": 16, "max": 120}},
            {"name": "newsletter", "type": "boolean", "required": false},
        ],
    })
}

/// The scripted services: the Campaign Service knows `campaigns` (each with
/// markets m1 and m2), the Entry Service invites `invited`; while `down` is
/// set every request fails as unreachable.
pub struct World {
    pub services: Arc<FakeServices>,
    pub down: Arc<AtomicBool>,
}

pub fn world(campaigns: Vec<Value>, invited: &'static [&'static str]) -> World {
    let down = Arc::new(AtomicBool::new(false));
    let flag = down.clone();
    let services = FakeServices::with(move |r: &ServiceRequest| {
        if flag.load(Ordering::SeqCst) {
            return Err(CapError::Unavailable(format!("{} is down", r.service)));
        }
        Ok(answer(&campaigns, invited, r))
    });
    World { services, down }
}

impl World {
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

fn answer(campaigns: &[Value], invited: &[&str], r: &ServiceRequest) -> ServiceResponse {
    let not_found = || json_response(404, r#"{"error":"not found"}"#);
    let parts: Vec<&str> = r.path.split('/').collect();
    match (r.service.as_str(), parts.as_slice()) {
        ("campaigns", ["", "campaigns", "by-slug", slug]) => campaigns
            .iter()
            .find(|c| c["slug"] == *slug)
            .map(|c| json_response(200, &c.to_string()))
            .unwrap_or_else(not_found),
        ("campaigns", ["", "campaigns", id, "markets", mid]) => {
            if campaigns.iter().any(|c| c["id"] == *id) && ["m1", "m2"].contains(mid) {
                let m = json!({"id": mid, "campaignId": id, "eventId": format!("evt-{mid}"),
                               "venue": "Arena", "selectionCount": 10, "waitlistCount": 2});
                json_response(200, &m.to_string())
            } else {
                not_found()
            }
        }
        ("entries", ["", "campaigns", _, "invites", email]) => {
            let email = email.replace("%40", "@");
            json_response(
                200,
                &json!({"invited": invited.contains(&email.as_str())}).to_string(),
            )
        }
        _ => not_found(),
    }
}

/// A host on the repository's registry (its grants and settings) with the
/// scripted services.
pub fn host(services: Arc<FakeServices>) -> TestHost {
    TestHost::builder()
        .registry_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../workers"))
        .services(services)
        .build()
        .expect("test host")
}

/// The arguments of a fan's request.
pub fn args(slug: &str, user: &str, entry: Value) -> Value {
    json!({
        "slug": slug, "marketId": "m1", "entry": entry,
        "userInfo": {"globalUserId": user, "email": format!("{user}@fans.example"), "country": "US", "firstName": "Ann"},
        "doTransfer": false,
    })
}

/// A good entry.
pub fn good_entry(zip: &str) -> Value {
    json!({"firstName": "Ann", "zip": zip, "age": 30, "newsletter": true})
}

/// Runs a resolver worker on an AppSync-shaped event (what the listener
/// builds from `{"arguments": …}`): its answer, or its typed error.
pub async fn resolve(
    host: &TestHost,
    worker: &str,
    type_name: &str,
    field: &str,
    arguments: Value,
) -> Result<Value, (String, String)> {
    let event = json!({
        "arguments": arguments, "identity": null, "source": null, "prev": null, "stash": {},
        "request": {"headers": {}},
        "info": {"parentTypeName": type_name, "fieldName": field, "variables": {}, "selectionSetList": []},
    });
    let out = host
        .invoke(worker, Input::Invoke(event))
        .await
        .expect("invocation");
    match out.output {
        Output::Invoke(Ok(v)) => Ok(v),
        Output::Invoke(Err(f)) => Err((f.kind, f.message)),
        other => panic!("not an invoke outcome: {other:?}"),
    }
}
