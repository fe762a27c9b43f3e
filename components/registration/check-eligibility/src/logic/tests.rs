use usher_sdk::fakes::{json_response, Fakes};
use usher_sdk::json::json;
use usher_sdk::Error;

use super::*;
use usher_domain::eligibility::{now_ms, SdkLookup};

/// 2026-12-02T10:00:00Z.
const NOW: i64 = 1_796_205_600_000;

fn campaign(gate: Value) -> Value {
    json!({
        "id": "c1", "slug": "tour", "status": "OPEN",
        "opensAt": "2026-12-01T00:00:00Z", "closesAt": "2026-12-31T00:00:00Z",
        "gate": gate, "linkedCampaignId": "old",
        "fields": [{"name": "zip", "type": "string", "required": true, "constraints": {"minLength": 5, "maxLength": 5}}],
    })
}

fn fakes(gate: Value) -> Fakes {
    let c = campaign(gate);
    Fakes::new()
        .on_service("campaigns", move |r| {
            Ok(match r.path.as_str() {
                "/campaigns/by-slug/tour" => json_response(200, &c),
                "/campaigns/c1/markets/m1" => json_response(
                    200,
                    &json!({"id": "m1", "campaignId": "c1", "eventId": "e", "selectionCount": 1}),
                ),
                _ => json_response(404, &json!({"error": "not found"})),
            })
        })
        .on_service("entries", |r| {
            Ok(json_response(
                200,
                &json!({"invited": r.path.ends_with("/ann%40fans.example")}),
            ))
        })
}

fn settings() -> Settings {
    Settings {
        services: Services::default(),
        table: "demand-table".into(),
    }
}

fn event(args: Value) -> Value {
    json!({"arguments": args, "identity": null, "info": {"parentTypeName": "Query", "fieldName": "checkEligibility"}})
}

fn args(email: &str, entry: Value) -> Value {
    json!({"slug": "tour", "marketId": "m1", "entry": entry,
           "userInfo": {"globalUserId": "u1", "email": email, "country": "US"}})
}

fn run(payload: Value) -> Result<Value, InvokeError> {
    let mut lookup = SdkLookup::new("demand-table");
    check(&mut lookup, &settings(), &payload, NOW)
}

#[test]
fn answers_an_eligible_fan_through_the_services() {
    let fakes = fakes(json!({"type": "invite-only"}));
    let _installed = fakes.install();
    let answer = run(event(args("Ann@fans.example", json!({"zip": "10001"})))).expect("answer");
    assert_eq!(
        answer,
        json!({
            "isEligible": true, "campaignId": "c1", "marketId": "m1", "linkedCampaignId": "old",
            "fields": [{"name": "zip", "type": "string", "required": true, "constraints": {"minLength": 5, "maxLength": 5}}],
        })
    );
    let paths: Vec<(String, String)> = fakes
        .requests()
        .into_iter()
        .map(|r| (r.service, r.path))
        .collect();
    assert_eq!(
        paths,
        [
            (
                "campaigns".to_string(),
                "/campaigns/by-slug/tour".to_string()
            ),
            ("campaigns".into(), "/campaigns/c1/markets/m1".into()),
            (
                "entries".into(),
                "/campaigns/c1/invites/ann%40fans.example".into()
            ),
        ]
    );
    // Nothing is written.
    assert_eq!(
        fakes.count("put") + fakes.count("update") + fakes.count("send_batch"),
        0
    );
}

#[test]
fn refusals_are_answers_with_a_reason() {
    let fakes = fakes(json!({"type": "invite-only"}));
    let _installed = fakes.install();
    let answer = run(event(args("bob@fans.example", json!({"zip": "10001"})))).expect("answer");
    assert_eq!(answer["isEligible"], false);
    assert_eq!(answer["reason"], "NOT_INVITED");
    assert_eq!(answer["campaignId"], "c1");
    let answer = run(args("ann@fans.example", json!({"zip": "1"}))).expect("answer");
    assert_eq!(answer["reason"], "INVALID_FIELD");
    assert_eq!(answer["field"], "zip");
    let mut a = args("ann@fans.example", json!({"zip": "10001"}));
    a["slug"] = json!("gone");
    let answer = run(a).expect("answer");
    assert_eq!(answer["reason"], "CAMPAIGN_NOT_FOUND");
    assert_eq!(answer["campaignId"], Value::Null);
    assert_eq!(answer["fields"], json!([]));
    let answer = run(json!({"arguments": {"slug": "tour"}})).expect("answer");
    assert_eq!(answer["reason"], "INVALID_REQUEST");
    assert!(answer["message"]
        .as_str()
        .unwrap_or_default()
        .contains("userInfo"));
}

#[test]
fn an_unreachable_campaign_service_is_a_typed_error() {
    let fakes = Fakes::new().on_service("campaigns", |_| Err(Error::Unavailable("timeout".into())));
    let _installed = fakes.install();
    let err = run(args("ann@fans.example", json!({"zip": "10001"}))).expect_err("error");
    assert_eq!(err.kind, "CampaignServiceUnavailable");
    assert!(err.message.contains("timeout"), "{}", err.message);
}

#[test]
fn a_transfer_reads_the_linked_entry_from_the_table() {
    let fakes = fakes(json!({"type": "none"})).with_item(
        "demand-table",
        json!({"PK": "ENTRY#old#u1", "SK": "ENTRY", "entry": {"zip": "20002"}, "verdict": "PENDING"}),
    );
    let _installed = fakes.install();
    let mut a = args("ann@fans.example", json!({}));
    a["doTransfer"] = json!(true);
    let answer = run(a.clone()).expect("answer");
    assert_eq!(answer["isEligible"], true, "{answer}");
    assert_eq!(answer["transferFrom"], "old");
    a["userInfo"]["globalUserId"] = json!("u2");
    let answer = run(a).expect("answer");
    assert_eq!(answer["reason"], "NOTHING_TO_TRANSFER");
}

#[test]
fn settings_name_the_services_and_the_table() {
    let fakes = Fakes::new()
        .setting("campaigns_service", json!("campaigns-v2"))
        .setting("table", json!("t"));
    let _installed = fakes.install();
    let s = Settings::load().expect("settings");
    assert_eq!(s.services.campaigns, "campaigns-v2");
    assert_eq!(s.services.entries, "entries");
    assert_eq!(s.table, "t");
}

#[test]
fn the_clock_is_the_hosts() {
    assert!(now_ms() > NOW - 365 * 86_400_000);
}
