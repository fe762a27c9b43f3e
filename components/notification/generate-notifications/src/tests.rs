use super::*;
use usher_domain::notification::{Notification, ReminderKind, State};
use usher_sdk::fakes::{self, Fakes};
use usher_sdk::json::json;

const NOW: &str = "2030-01-01T00:00:00.000Z";

fn now() -> i64 {
    rfc3339::parse_millis(NOW).expect("now")
}

fn campaign(id: &str, status: &str, closes: &str) -> Value {
    json!({"id": id, "slug": id, "name": id, "status": status, "opensAt": "2029-12-01T00:00:00Z",
           "closesAt": closes, "gate": {"type": "none"}, "fields": []})
}

/// c1: OPEN, closing in 30 h, markets m1 (FINISHED draw c1.m1, 40 winners)
/// and m2 (no stats); c2: CLOSED, m1 PROCESSING; c3: OPEN, closing in 10 days.
fn campaigns(fakes: Fakes) -> Fakes {
    fakes.on_service("campaigns", |r| {
        let path = r.path.as_str();
        let body = match path {
            p if p.starts_with("/campaigns?") => {
                if p.contains("after=c2") {
                    json!({"campaigns": [campaign("c3", "OPEN", "2030-01-11T00:00:00Z")], "next": null})
                } else {
                    json!({"campaigns": [campaign("c1", "OPEN", "2030-01-02T06:00:00Z"),
                                         campaign("c2", "CLOSED", "2029-12-31T00:00:00Z")], "next": "c2"})
                }
            }
            "/campaigns/c1/markets" => json!({"markets": [{"id": "m1"}, {"id": "m2"}]}),
            "/campaigns/c2/markets" | "/campaigns/c3/markets" => json!({"markets": [{"id": "m1"}]}),
            "/campaigns/c1/markets/m1/stats" => json!({"status": "FINISHED", "drawId": "c1.m1",
                                                       "expected": {"winners": 40, "losers": 3, "waitlisted": 0}}),
            "/campaigns/c2/markets/m1/stats" => json!({"status": "PROCESSING", "drawId": "c2.m1"}),
            _ => return Ok(fakes::json_response(404, &json!({"error": "no"}))),
        };
        Ok(fakes::json_response(200, &body))
    })
}

fn entries(fakes: Fakes) -> Fakes {
    fakes.on_service("entries", |r| {
        let n = if r.path.starts_with("/markets/m1/") {
            12
        } else {
            5
        };
        let list: Vec<Value> = (0..n)
            .map(|i| json!({"globalUserId": format!("u{i}")}))
            .collect();
        Ok(fakes::json_response(
            200,
            &json!({"entries": list, "next": null}),
        ))
    })
}

fn stored(fakes: &Fakes) -> Vec<Notification> {
    fakes
        .items("notifications")
        .into_iter()
        .map(|i| serde_json::from_value(i).expect("notification"))
        .collect()
}

#[test]
fn finished_draws_and_closing_campaigns_are_recorded_once() {
    let fakes = entries(campaigns(Fakes::new()));
    let _i = fakes.install();
    let s = GeneratorSettings::default();
    let answer = run(&s, &json!({}), now()).expect("answer");
    assert_eq!(answer["marketCount"], 3, "{answer}");
    assert_eq!(answer["userCount"], 40 + 12 + 5);
    assert_eq!(
        (answer["created"].clone(), answer["existing"].clone()),
        (json!(3), json!(0))
    );
    assert_eq!(answer["campaigns"], 3);
    let notes = stored(&fakes);
    let kinds: Vec<(String, String, ReminderKind, String)> = notes
        .iter()
        .map(|n| {
            (
                n.campaign_id.clone(),
                n.market_id.clone(),
                n.kind,
                n.due_at.clone(),
            )
        })
        .collect();
    let close = rfc3339::parse_millis("2030-01-02T06:00:00Z").expect("t");
    assert_eq!(
        kinds,
        [
            (
                "c1".into(),
                "m1".into(),
                ReminderKind::Closing,
                "2030-01-01T06:00:00.000Z".into()
            ),
            ("c1".into(), "m1".into(), ReminderKind::Winner, NOW.into()),
            (
                "c1".into(),
                "m2".into(),
                ReminderKind::Closing,
                "2030-01-01T06:00:00.000Z".into()
            ),
        ]
    );
    assert_eq!(notes[0].round, close.to_string());
    assert_eq!(notes[1].round, "c1.m1");
    assert!(notes.iter().all(|n| n.state == State::Due));
    // The next day's run changes nothing recorded (a planned one stays planned).
    let mut planned = notes[1].clone();
    planned.state = State::Done;
    let fakes2 = entries(campaigns(Fakes::new())).with_item(
        "notifications",
        serde_json::to_value(&planned).expect("json"),
    );
    drop(_i);
    let _j = fakes2.install();
    let again = run(&s, &json!({"now": "2030-01-01T01:00:00Z"}), 0).expect("again");
    assert_eq!(
        (again["created"].clone(), again["existing"].clone()),
        (json!(2), json!(1))
    );
    assert!(stored(&fakes2)
        .iter()
        .any(|n| n.kind == ReminderKind::Winner && n.state == State::Done));
}

#[test]
fn a_campaign_service_down_is_an_error_and_bad_payloads_are_refused() {
    let fakes = Fakes::new().on_service("campaigns", |_| {
        Ok(fakes::json_response(503, &json!({"error": "down"})))
    });
    let _i = fakes.install();
    let e = run(&GeneratorSettings::default(), &json!({}), now()).expect_err("down");
    assert_eq!(e.kind, "Unavailable");
    assert!(e.message.contains("503"), "{}", e.message);
    for bad in [json!([]), json!({"now": 3}), json!({"campaignId": "c1"})] {
        assert_eq!(
            run(&GeneratorSettings::default(), &bad, now())
                .expect_err("bad")
                .kind,
            "InvalidInput"
        );
    }
}
