use usher_sdk::fakes::{json_response, Call, Fakes};
use usher_sdk::json::json;
use usher_sdk::Error;

use super::*;
use usher_domain::eligibility::SdkLookup;

/// 2026-12-02T10:00:00Z.
const NOW: i64 = 1_796_205_600_000;
const T: &str = "demand-table";

fn campaign() -> Value {
    json!({
        "id": "c1", "slug": "tour", "status": "OPEN",
        "opensAt": "2026-12-01T00:00:00Z", "closesAt": "2026-12-31T00:00:00Z",
        "gate": {"type": "countries", "countries": ["US"]}, "linkedCampaignId": "old",
        "fields": [
            {"name": "zip", "type": "string", "required": true, "constraints": {"minLength": 5, "maxLength": 5}},
            {"name": "size", "type": "string"},
        ],
    })
}

fn fakes() -> Fakes {
    let c = campaign();
    Fakes::new().on_service("campaigns", move |r| {
        Ok(match r.path.as_str() {
            "/campaigns/by-slug/tour" => json_response(200, &c),
            "/campaigns/c1/markets/m1" | "/campaigns/c1/markets/m2" => json_response(
                200,
                &json!({"id": r.path.rsplit('/').next(), "campaignId": "c1", "eventId": "e", "selectionCount": 1}),
            ),
            _ => json_response(404, &json!({"error": "not found"})),
        })
    })
}

fn settings() -> Settings {
    Settings {
        services: Services::default(),
        table: T.into(),
        user_queue: "user-info".into(),
        data_queue: None,
    }
}

fn args(entry: Value) -> Value {
    json!({"arguments": {
        "slug": "tour", "marketId": "m1", "entry": entry,
        "userInfo": {"globalUserId": "u1", "email": "ann@fans.example", "country": "US", "firstName": "Ann", "locale": "en-US"},
    }})
}

fn run(payload: Value, now: i64) -> Result<Value, InvokeError> {
    let mut lookup = SdkLookup::new(T);
    submit(&mut lookup, &settings(), &payload, now)
}

fn key() -> Value {
    json!({"PK": "ENTRY#c1#u1", "SK": "ENTRY"})
}

#[test]
fn a_new_entry_is_written_as_the_contract_says_and_the_user_queued() {
    let fakes = fakes();
    let _installed = fakes.install();
    let answer = run(args(json!({"zip": "10001"})), NOW).expect("answer");
    assert_eq!(
        answer,
        json!({"isEligible": true, "campaignId": "c1", "globalUserId": "u1", "marketId": "m1",
               "version": 1, "created": true, "unchanged": false})
    );
    assert_eq!(
        fakes.item(T, &key()),
        Some(json!({
            "PK": "ENTRY#c1#u1", "SK": "ENTRY", "campaignId": "c1", "globalUserId": "u1",
            "marketId": "m1", "entry": {"zip": "10001"}, "email": "ann@fans.example",
            "verdict": "PENDING", "needsReplication": true, "version": 1,
            "createdAt": "2026-12-02T10:00:00.000Z", "updatedAt": "2026-12-02T10:00:00.000Z",
        }))
    );
    let queued = fakes.queued("user-info");
    assert_eq!(queued.len(), 1);
    assert_eq!(
        serde_json::from_str::<Value>(&queued[0].body).expect("json"),
        json!({"globalUserId": "u1", "email": "ann@fans.example", "country": "US", "firstName": "Ann", "locale": "en-US"})
    );
    // The write is conditional on the item being new.
    assert!(fakes.calls().iter().any(|c| matches!(
        c,
        Call::Put {
            condition: Some(Condition::NotExists),
            ..
        }
    )));
}

#[test]
fn a_resubmission_raises_the_version_and_keeps_created_at() {
    let fakes = fakes();
    let _installed = fakes.install();
    run(args(json!({"zip": "10001"})), NOW).expect("first");
    // Replication cleared the flag and added an attribute meanwhile.
    fakes.clone().with_item(T, {
        let mut i = fakes.item(T, &key()).expect("item");
        i["needsReplication"] = json!(false);
        i["score"] = json!(7);
        i
    });
    let mut again = args(json!({"zip": "10002", "size": "M"}));
    again["arguments"]["marketId"] = json!("m2");
    let answer = run(again, NOW + 60_000).expect("second");
    assert_eq!(answer["version"], 2);
    assert_eq!(answer["created"], false);
    assert_eq!(answer["marketId"], "m2");
    let item = fakes.item(T, &key()).expect("item");
    assert_eq!(item["version"], 2);
    assert_eq!(item["marketId"], "m2");
    assert_eq!(item["entry"], json!({"zip": "10002", "size": "M"}));
    assert_eq!(item["createdAt"], "2026-12-02T10:00:00.000Z");
    assert_eq!(item["updatedAt"], "2026-12-02T10:01:00.000Z");
    assert_eq!(item["needsReplication"], true);
    assert_eq!(item["score"], 7);
    assert!(fakes.calls().iter().any(|c| matches!(
        c,
        Call::Put { condition: Some(Condition::AttributeEquals(name, v)), .. } if name == "version" && *v == json!(1)
    )));
}

#[test]
fn an_identical_resubmission_writes_nothing() {
    let fakes = fakes();
    let _installed = fakes.install();
    run(args(json!({"zip": "10001"})), NOW).expect("first");
    let answer = run(args(json!({"zip": "10001"})), NOW + 1).expect("again");
    assert_eq!(answer["version"], 1);
    assert_eq!(answer["unchanged"], true);
    assert_eq!(fakes.count("put"), 1);
    assert_eq!(
        fakes.item(T, &key()).expect("item")["updatedAt"],
        "2026-12-02T10:00:00.000Z"
    );
}

#[test]
fn a_stale_write_loses_and_is_retried_from_a_fresh_read() {
    // Another submission of the same fan lands between this one's read and
    // its write, twice.
    let mut sneaks = 0;
    let fakes = fakes().intercept(move |call, tables| {
        if let Call::Put { item, .. } = call {
            if sneaks < 2 {
                sneaks += 1;
                let mut other = item.clone();
                other["entry"] = json!({"zip": "99999"});
                other["version"] = json!(sneaks);
                tables.insert(T, other);
            }
        }
        None
    });
    let _installed = fakes.install();
    let answer = run(args(json!({"zip": "10001"})), NOW).expect("answer");
    // Its write found v1 (not new), then v2, and became v3.
    assert_eq!(answer["version"], 3);
    assert_eq!(answer["created"], false);
    assert_eq!(fakes.count("put"), 3);
    let item = fakes.item(T, &key()).expect("item");
    assert_eq!(item["entry"], json!({"zip": "10001"}));
    assert_eq!(item["version"], 3);
}

#[test]
fn an_entry_that_keeps_changing_is_a_conflict() {
    let fakes = fakes().intercept(|call, tables| {
        if let Call::Put { .. } = call {
            let mut i = tables.get(T, &json!({"PK": "ENTRY#c1#u1", "SK": "ENTRY"})).cloned()
                .unwrap_or_else(|| json!({"PK": "ENTRY#c1#u1", "SK": "ENTRY", "version": 0, "verdict": "PENDING"}));
            i["version"] = json!(i["version"].as_u64().unwrap_or(0) + 1);
            tables.insert(T, i);
        }
        None
    });
    let _installed = fakes.install();
    let err = run(args(json!({"zip": "10001"})), NOW).expect_err("conflict");
    assert_eq!(err.kind, "Conflict");
    assert_eq!(fakes.count("put"), MAX_ATTEMPTS);
}

#[test]
fn a_drawn_entry_is_not_reset() {
    let fakes = fakes().with_item(
        T,
        json!({"PK": "ENTRY#c1#u1", "SK": "ENTRY", "campaignId": "c1", "globalUserId": "u1",
               "entry": {"zip": "10001"}, "verdict": "WINNER", "accessCode": "X", "version": 3}),
    );
    let _installed = fakes.install();
    let answer = run(args(json!({"zip": "10002"})), NOW).expect("answer");
    assert_eq!(answer["isEligible"], false);
    assert_eq!(answer["reason"], "ALREADY_SELECTED");
    assert!(answer["message"]
        .as_str()
        .unwrap_or_default()
        .contains("WINNER"));
    assert_eq!(fakes.count("put"), 0);
    assert_eq!(fakes.count("send_batch"), 0);
    assert_eq!(fakes.item(T, &key()).expect("item")["verdict"], "WINNER");
}

#[test]
fn refusals_write_nothing() {
    let fakes = fakes();
    let _installed = fakes.install();
    let mut cases = vec![
        (args(json!({"zip": "1"})), "INVALID_FIELD"),
        (args(json!({})), "MISSING_FIELD"),
        (args(json!({"zip": "10001", "x": 1})), "UNKNOWN_FIELD"),
    ];
    let mut a = args(json!({"zip": "10001"}));
    a["arguments"]["userInfo"]["country"] = json!("FR");
    cases.push((a, "COUNTRY_NOT_ALLOWED"));
    let mut a = args(json!({"zip": "10001"}));
    a["arguments"].as_object_mut().map(|o| o.remove("marketId"));
    cases.push((a, "INVALID_REQUEST"));
    let mut a = args(json!({"zip": "10001"}));
    a["arguments"]["marketId"] = json!("m9");
    cases.push((a, "UNKNOWN_MARKET"));
    let mut a = args(json!({"zip": "10001"}));
    a["arguments"]["slug"] = json!("nope");
    cases.push((a, "CAMPAIGN_NOT_FOUND"));
    for (payload, reason) in cases {
        let answer = run(payload, NOW).expect("answer");
        assert_eq!(answer["isEligible"], false);
        assert_eq!(answer["reason"], reason);
    }
    let answer = run(args(json!({"zip": "10001"})), NOW + 40 * 86_400_000).expect("answer");
    assert_eq!(answer["reason"], "CAMPAIGN_ENDED");
    assert_eq!(
        fakes.count("put") + fakes.count("send_batch") + fakes.count("delete"),
        0
    );
}

#[test]
fn a_failed_user_record_send_writes_nothing() {
    let fakes = fakes().on_queue(|_, _| Err(Error::Unavailable("queue down".into())));
    let _installed = fakes.install();
    let err = run(args(json!({"zip": "10001"})), NOW).expect_err("unavailable");
    assert_eq!(err.kind, "Unavailable");
    assert!(err.message.contains("user-info"), "{}", err.message);
    assert_eq!(fakes.count("put"), 0);
}

#[test]
fn a_failed_write_is_unavailable() {
    let fakes = fakes().intercept(|call, _| match call {
        Call::Put { .. } => Some(Error::Throttled("slow down".into())),
        _ => None,
    });
    let _installed = fakes.install();
    let err = run(args(json!({"zip": "10001"})), NOW).expect_err("unavailable");
    assert_eq!(err.kind, "Unavailable");
}

fn old_entry(version: u64) -> Value {
    json!({"PK": "ENTRY#old#u1", "SK": "ENTRY", "campaignId": "old", "globalUserId": "u1",
           "marketId": "mx", "entry": {"zip": "20002", "size": "L"}, "email": "ann@fans.example",
           "verdict": "PENDING", "needsReplication": false, "version": version,
           "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-01T00:00:00.000Z"})
}

#[test]
fn do_transfer_moves_the_linked_entry_here() {
    let fakes = fakes().with_item(T, old_entry(3));
    let _installed = fakes.install();
    let mut a = args(json!({"size": "S"}));
    a["arguments"]["doTransfer"] = json!(true);
    let answer = run(a.clone(), NOW).expect("answer");
    assert_eq!(answer["isEligible"], true, "{answer}");
    assert_eq!(answer["version"], 1);
    assert_eq!(answer["transferredFrom"], "old");
    assert_eq!(answer["sourceRemoved"], true);
    let item = fakes.item(T, &key()).expect("moved here");
    assert_eq!(item["entry"], json!({"zip": "20002", "size": "S"}));
    assert_eq!(item["transferredFrom"], "old");
    assert_eq!(item["marketId"], "m1");
    assert_eq!(
        fakes.item(T, &json!({"PK": "ENTRY#old#u1", "SK": "ENTRY"})),
        None
    );
    assert!(fakes.calls().iter().any(|c| matches!(
        c,
        Call::Delete { condition: Some(Condition::AttributeEquals(n, v)), .. } if n == "version" && *v == json!(3)
    )));
    // Submitted again (a client retry): nothing changes, still a success.
    let answer = run(a, NOW + 1).expect("retry");
    assert_eq!(answer["unchanged"], true);
    assert_eq!(answer["sourceRemoved"], true);
    assert_eq!(fakes.count("put"), 1);
}

#[test]
fn do_transfer_follows_a_linked_entry_that_changes_and_spares_a_drawn_one() {
    // The old entry is modified between the read and the delete.
    let mut bumped = false;
    let fakes = fakes()
        .with_item(T, old_entry(3))
        .intercept(move |call, tables| {
            if let Call::Delete { .. } = call {
                if !bumped {
                    bumped = true;
                    tables.insert(T, old_entry(4));
                }
            }
            None
        });
    let _installed = fakes.install();
    let mut a = args(json!({}));
    a["arguments"]["doTransfer"] = json!(true);
    let answer = run(a.clone(), NOW).expect("answer");
    assert_eq!(answer["sourceRemoved"], true);
    assert_eq!(fakes.count("delete"), 2);
    assert_eq!(
        fakes.item(T, &json!({"PK": "ENTRY#old#u1", "SK": "ENTRY"})),
        None
    );

    // Drawn between the read and the delete: it stays.
    let fakes2 = fakes_with_drawn_on_delete();
    let _installed = fakes2.install();
    let answer = run(a, NOW).expect("answer");
    assert_eq!(answer["sourceRemoved"], false);
    assert_eq!(
        fakes2
            .item(T, &json!({"PK": "ENTRY#old#u1", "SK": "ENTRY"}))
            .expect("kept")["verdict"],
        "WINNER"
    );
}

fn fakes_with_drawn_on_delete() -> Fakes {
    let mut drawn = false;
    fakes()
        .with_item(T, old_entry(3))
        .intercept(move |call, tables| {
            if let Call::Delete { .. } = call {
                if !drawn {
                    drawn = true;
                    let mut i = old_entry(4);
                    i["verdict"] = json!("WINNER");
                    tables.insert(T, i);
                }
            }
            None
        })
}

fn data_messages(fakes: &Fakes) -> Vec<Value> {
    fakes
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Send { queue, messages } if queue == "data-queue" => Some(messages),
            _ => None,
        })
        .flatten()
        .map(|m| serde_json::from_str(&m.body).expect("json"))
        .collect()
}

fn run_with_data_queue(payload: Value, now: i64) -> Result<Value, InvokeError> {
    let mut lookup = SdkLookup::new(T);
    let settings = Settings {
        data_queue: Some("data-queue".into()),
        ..settings()
    };
    submit(&mut lookup, &settings, &payload, now)
}

#[test]
fn accepted_submissions_feed_the_data_queue_when_it_is_set() {
    let fakes = fakes();
    let _installed = fakes.install();
    run_with_data_queue(args(json!({"zip": "10001"})), NOW).expect("answer");
    // A resubmission an hour later, then an identical one (unchanged: sent again).
    run_with_data_queue(args(json!({"zip": "10002"})), NOW + 3_600_000).expect("answer");
    run_with_data_queue(args(json!({"zip": "10002"})), NOW + 7_200_000).expect("answer");
    let sent = data_messages(&fakes);
    assert_eq!(sent.len(), 6, "{sent:?}");
    assert_eq!(
        sent[0],
        json!({"type": "REGISTRATION", "data": {"campaignId": "c1", "globalUserId": "u1", "marketId": "m1",
               "version": 1, "createdAt": "2026-12-02T10:00:00.000Z", "updatedAt": "2026-12-02T10:00:00.000Z",
               "country": "US", "locale": "en-US"}})
    );
    assert_eq!(
        sent[1],
        json!({"type": "REGISTERED_MARKET", "data": {"campaignId": "c1", "marketId": "m1", "globalUserId": "u1",
               "registeredAt": "2026-12-02T10:00:00.000Z"}})
    );
    assert_eq!(sent[2]["data"]["version"], 2);
    assert_eq!(sent[2]["data"]["createdAt"], "2026-12-02T10:00:00.000Z");
    assert_eq!(sent[2]["data"]["updatedAt"], "2026-12-02T11:00:00.000Z");
    assert_eq!(
        sent[4], sent[2],
        "an unchanged resubmission sends the same record again"
    );
    // Every message formats into a record.
    for m in &sent {
        usher_domain::analytics::format_body(&m.to_string()).expect("formats");
    }
    // A refusal sends nothing.
    let fakes = self::fakes();
    let _installed = fakes.install();
    let mut refused = args(json!({"zip": "1"}));
    refused["arguments"]["marketId"] = json!("m1");
    let answer = run_with_data_queue(refused, NOW).expect("answer");
    assert_eq!(answer["isEligible"], false);
    assert!(data_messages(&fakes).is_empty());
}

#[test]
fn a_failed_data_message_is_unavailable_after_the_write_and_a_retry_sends_it() {
    let failing = std::rc::Rc::new(std::cell::Cell::new(true));
    let f = failing.clone();
    let fakes = fakes().on_queue(move |queue, messages| {
        if queue == "data-queue" && f.get() {
            Err(Error::Unavailable("queue down".into()))
        } else {
            Ok(messages.iter().map(|_| Ok("id".to_string())).collect())
        }
    });
    let _installed = fakes.install();
    let e = run_with_data_queue(args(json!({"zip": "10001"})), NOW).expect_err("unavailable");
    assert_eq!(e.kind, "Unavailable");
    assert!(e.message.contains("the entry is saved"), "{}", e.message);
    assert!(fakes.item(T, &key()).is_some());
    failing.set(false);
    let answer = run_with_data_queue(args(json!({"zip": "10001"})), NOW + 1000).expect("answer");
    assert_eq!(answer["unchanged"], true);
    let sent = data_messages(&fakes);
    assert_eq!(
        sent.iter().filter(|m| m["type"] == "REGISTRATION").count(),
        2
    );
}
