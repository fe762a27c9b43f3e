//! registration/check-eligibility under wasmtime, on the repository's
//! registry entry (resolver Query.checkEligibility, its grants and
//! settings), with the embedded cache and tables and scripted Campaign and
//! Entry services.

mod registration;

use registration::{args, campaign, good_entry, host, resolve, world};
use serde_json::json;
use usher_capabilities::{CacheBackend, TableBackend};
use usher_testing::TestHost;

const WORKER: &str = "registration/check-eligibility";

async fn check(
    host: &TestHost,
    arguments: serde_json::Value,
) -> Result<serde_json::Value, (String, String)> {
    resolve(host, WORKER, "Query", "checkEligibility", arguments).await
}

#[tokio::test]
async fn caches_the_campaign_and_answers_through_a_campaign_service_outage() {
    let w = world(vec![campaign("c1", "tour", json!({"type": "none"}))], &[]);
    let host = host(w.services.clone());
    let answer = check(&host, args("tour", "u1", good_entry("10001")))
        .await
        .expect("answer");
    assert_eq!(answer["isEligible"], true, "{answer}");
    assert_eq!(answer["campaignId"], "c1");
    assert_eq!(answer["marketId"], "m1");
    assert_eq!(answer["fields"].as_array().map(Vec::len), Some(4));
    // Cache-aside: the campaign and the market are in the embedded cache.
    let cached = host
        .embedded
        .cache()
        .get("campaign:slug:tour")
        .await
        .expect("cache")
        .expect("cached");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&cached).expect("json")["id"],
        "c1"
    );
    assert!(host
        .embedded
        .cache()
        .get("campaign:c1:market:m1")
        .await
        .expect("cache")
        .is_some());
    assert_eq!(w.services.calls_to("/campaigns/by-slug/tour").len(), 1);
    // A hit: no call.
    let answer = check(&host, args("tour", "u2", good_entry("10002")))
        .await
        .expect("answer");
    assert_eq!(answer["isEligible"], true);
    assert_eq!(w.services.calls().len(), 2);
    // The Campaign Service goes down: the cached campaign still answers,
    // refusals included.
    w.set_down(true);
    let answer = check(&host, args("tour", "u3", good_entry("10003")))
        .await
        .expect("answer");
    assert_eq!(answer["isEligible"], true);
    let mut young = good_entry("10004");
    young["age"] = json!(12);
    let answer = check(&host, args("tour", "u4", young))
        .await
        .expect("answer");
    assert_eq!(answer["reason"], "INVALID_FIELD");
    // A campaign that is not cached: a typed error, not "not found".
    let (kind, message) = check(&host, args("other", "u5", good_entry("10005")))
        .await
        .expect_err("outage");
    assert_eq!(kind, "CampaignServiceUnavailable", "{message}");
    // Nothing was written anywhere.
    for user in ["u1", "u2", "u3"] {
        let key = json!({"PK": format!("ENTRY#c1#{user}"), "SK": "ENTRY"});
        let item = host
            .embedded
            .tables()
            .get("demand-table", &key)
            .await
            .expect("get");
        assert_eq!(item, None);
    }
}

#[tokio::test]
async fn answers_every_reason() {
    let w = world(
        vec![
            campaign(
                "c1",
                "tour",
                json!({"type": "countries", "countries": ["US", "CA"]}),
            ),
            campaign("c2", "vip", json!({"type": "invite-only"})),
            {
                let mut d = campaign("c3", "draft", json!({"type": "none"}));
                d["status"] = json!("DRAFT");
                d
            },
            {
                let mut e = campaign("c4", "ended", json!({"type": "none"}));
                e["closesAt"] = json!("2021-01-01T00:00:00Z");
                e
            },
            {
                let mut f = campaign("c5", "future", json!({"type": "none"}));
                f["opensAt"] = json!("2098-01-01T00:00:00Z");
                f
            },
        ],
        &["vip@fans.example"],
    );
    let host = host(w.services.clone());
    let mut cases = vec![
        (args("nope", "u", good_entry("10001")), "CAMPAIGN_NOT_FOUND"),
        (args("draft", "u", good_entry("10001")), "CAMPAIGN_NOT_OPEN"),
        (args("ended", "u", good_entry("10001")), "CAMPAIGN_ENDED"),
        (
            args("future", "u", good_entry("10001")),
            "CAMPAIGN_NOT_STARTED",
        ),
        (args("vip", "u", good_entry("10001")), "NOT_INVITED"),
    ];
    let mut a = args("tour", "u", good_entry("10001"));
    a["userInfo"]["country"] = json!("FR");
    cases.push((a, "COUNTRY_NOT_ALLOWED"));
    let mut a = args("tour", "u", good_entry("10001"));
    a["marketId"] = json!("m9");
    cases.push((a, "UNKNOWN_MARKET"));
    let mut e = good_entry("10001");
    e.as_object_mut().map(|o| o.remove("age"));
    cases.push((args("tour", "u", e), "MISSING_FIELD"));
    cases.push((
        args(
            "tour",
            "u",
            json!({"firstName": "A", "zip": "1", "age": 20}),
        ),
        "INVALID_FIELD",
    ));
    let mut e = good_entry("10001");
    e["favouriteColour"] = json!("blue");
    cases.push((args("tour", "u", e), "UNKNOWN_FIELD"));
    let mut a = args("tour", "u", good_entry("10001"));
    a["doTransfer"] = json!(true);
    cases.push((a, "NO_LINKED_CAMPAIGN"));
    cases.push((json!({"slug": "tour"}), "INVALID_REQUEST"));
    for (arguments, reason) in cases {
        let answer = check(&host, arguments.clone()).await.expect("answer");
        assert_eq!(answer["isEligible"], false, "{arguments}: {answer}");
        assert_eq!(answer["reason"], reason, "{arguments}: {answer}");
        assert!(answer["message"].is_string());
    }
    // The invited fan passes the invite-only gate (e-mail lower-cased).
    let mut a = args("vip", "vip", good_entry("10001"));
    a["userInfo"]["email"] = json!("VIP@Fans.example");
    let answer = check(&host, a).await.expect("answer");
    assert_eq!(answer["isEligible"], true, "{answer}");
    assert!(!w
        .services
        .calls_to("/campaigns/c2/invites/vip%40fans.example")
        .is_empty());
    // The unknown slug was cached as not found (30 s): asked once more, no call.
    let before = w.services.calls_to("/campaigns/by-slug/nope").len();
    let answer = check(&host, args("nope", "u", good_entry("10001")))
        .await
        .expect("answer");
    assert_eq!(answer["reason"], "CAMPAIGN_NOT_FOUND");
    assert_eq!(w.services.calls_to("/campaigns/by-slug/nope").len(), before);
    assert_eq!(before, 1);
}

#[tokio::test]
async fn an_invite_check_without_the_entry_service_is_a_typed_error() {
    let w = world(
        vec![campaign("c2", "vip", json!({"type": "invite-only"}))],
        &[],
    );
    let host = host(w.services.clone());
    // Cache the campaign and market first, then take the services down.
    let answer = check(&host, args("vip", "u1", good_entry("10001")))
        .await
        .expect("answer");
    assert_eq!(answer["reason"], "NOT_INVITED");
    w.set_down(true);
    let (kind, _) = check(&host, args("vip", "u1", good_entry("10001")))
        .await
        .expect_err("no answer");
    assert_eq!(kind, "EntryServiceUnavailable");
}
