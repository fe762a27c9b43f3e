use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::*;

/// 2026-12-02T10:00:00Z.
const NOW: i64 = 1_796_205_600_000;

type Responder = Box<dyn FnMut(&str, &str) -> Result<(u16, String), String>>;

/// An in-memory cache, scripted services and demand-table entries, with a
/// record of every call.
struct Fake {
    cache: BTreeMap<String, (String, u32)>,
    cache_down: bool,
    respond: Responder,
    entries: BTreeMap<(String, String), Value>,
    gets: Vec<(String, String)>,
    warnings: Vec<String>,
}

fn campaign(id: &str, slug: &str) -> Value {
    json!({
        "id": id, "slug": slug, "name": "Tour", "status": "OPEN",
        "opensAt": "2026-12-01T00:00:00Z", "closesAt": "2026-12-31T00:00:00Z",
        "gate": {"type": "none"},
        "fields": [
            {"name": "firstName", "type": "string", "required": true, "constraints": {"minLength": 1, "maxLength": 10}},
            {"name": "age", "type": "integer", "required": true, "constraints": {"min": 16, "max": 120}},
            {"name": "newsletter", "type": "boolean"},
        ],
    })
}

fn market_json(campaign: &str, id: &str) -> Value {
    json!({"id": id, "campaignId": campaign, "eventId": "e1", "selectionCount": 10})
}

/// A Campaign Service with these campaigns (by slug) and markets, an Entry
/// Service inviting `invited`.
fn services(campaigns: Vec<Value>, invited: &'static [&'static str]) -> Responder {
    Box::new(move |service, path| {
        if service == "entries" {
            let email = path
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .replace("%40", "@");
            return Ok((
                200,
                json!({"invited": invited.contains(&email.as_str())}).to_string(),
            ));
        }
        if let Some(slug) = path.strip_prefix("/campaigns/by-slug/") {
            return Ok(campaigns
                .iter()
                .find(|c| c["slug"] == slug)
                .map(|c| (200, c.to_string()))
                .unwrap_or((404, r#"{"error":"not found"}"#.into())));
        }
        let parts: Vec<&str> = path.split('/').collect();
        if let ["", "campaigns", c, "markets", m] = parts.as_slice() {
            if campaigns.iter().any(|x| x["id"] == *c) && m.starts_with('m') {
                return Ok((200, market_json(c, m).to_string()));
            }
            return Ok((404, r#"{"error":"not found"}"#.into()));
        }
        Ok((404, "{}".into()))
    })
}

impl Fake {
    fn new(respond: Responder) -> Fake {
        Fake {
            cache: BTreeMap::new(),
            cache_down: false,
            respond,
            entries: BTreeMap::new(),
            gets: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn with(campaigns: Vec<Value>) -> Fake {
        Fake::new(services(campaigns, &["vip@fans.example"]))
    }

    fn service_calls(&self, service: &str) -> usize {
        self.gets.iter().filter(|(s, _)| s == service).count()
    }
}

impl Lookup for Fake {
    fn cache_get(&mut self, key: &str) -> Result<Option<String>, String> {
        if self.cache_down {
            return Err("connection refused".into());
        }
        Ok(self.cache.get(key).map(|(v, _)| v.clone()))
    }
    fn cache_set(&mut self, key: &str, value: &str, ttl: u32) -> Result<(), String> {
        if self.cache_down {
            return Err("connection refused".into());
        }
        self.cache.insert(key.into(), (value.into(), ttl));
        Ok(())
    }
    fn get(&mut self, service: &str, path: &str) -> Result<(u16, String), String> {
        self.gets.push((service.into(), path.into()));
        (self.respond)(service, path)
    }
    fn entry(&mut self, campaign_id: &str, user: &str) -> Result<Option<Value>, String> {
        Ok(self
            .entries
            .get(&(campaign_id.into(), user.into()))
            .cloned())
    }
    fn warn(&mut self, message: &str) {
        self.warnings.push(message.into());
    }
}

fn request(args: Value) -> Request {
    parse_request(&json!({"arguments": args})).expect("a valid request")
}

fn args(slug: &str) -> Value {
    json!({
        "slug": slug, "marketId": "m1",
        "entry": {"firstName": "Ann", "age": 30},
        "userInfo": {"globalUserId": "u1", "email": "Fan@Fans.example", "country": "us"},
    })
}

fn reason_of(fake: &mut Fake, args: Value) -> Option<Reason> {
    evaluate(fake, &Services::default(), &request(args), NOW)
        .expect("evaluated")
        .refusal
        .map(|r| r.reason)
}

#[test]
fn an_eligible_fan_gets_the_campaign_and_its_fields() {
    let mut fake = Fake::with(vec![campaign("c1", "tour")]);
    let e = evaluate(&mut fake, &Services::default(), &request(args("tour")), NOW).expect("ok");
    assert!(e.is_eligible());
    let answer = e.answer();
    assert_eq!(answer["isEligible"], true);
    assert_eq!(answer["campaignId"], "c1");
    assert_eq!(answer["marketId"], "m1");
    assert_eq!(answer["fields"][1]["name"], "age");
    assert!(answer.get("reason").is_none());
    assert!(answer.get("linkedCampaignId").is_none());
}

#[test]
fn every_reason_is_reached() {
    let mut c = campaign("c1", "tour");
    let mut seen = Vec::new();
    let mut check = |campaigns: Vec<Value>, a: Value, want: Reason| {
        let mut fake = Fake::with(campaigns);
        assert_eq!(reason_of(&mut fake, a.clone()), Some(want), "{a}");
        seen.push(want);
    };
    check(vec![c.clone()], args("nope"), Reason::CampaignNotFound);
    check(
        vec![c.clone()],
        args("Not A Slug!"),
        Reason::CampaignNotFound,
    );
    for status in ["DRAFT", "CLOSED"] {
        let mut d = c.clone();
        d["status"] = json!(status);
        check(vec![d], args("tour"), Reason::CampaignNotOpen);
    }
    let mut future = c.clone();
    future["opensAt"] = json!("2026-12-02T10:00:00.001Z");
    check(vec![future], args("tour"), Reason::CampaignNotStarted);
    let mut ended = c.clone();
    ended["closesAt"] = json!("2026-12-02T10:00:00Z"); // closes exactly now
    check(vec![ended], args("tour"), Reason::CampaignEnded);
    let mut a = args("tour");
    a["marketId"] = json!("x9");
    check(vec![c.clone()], a, Reason::UnknownMarket);
    c["gate"] = json!({"type": "countries", "countries": ["US", "CA"]});
    let mut a = args("tour");
    a["userInfo"]["country"] = json!("FR");
    check(vec![c.clone()], a, Reason::CountryNotAllowed);
    let mut a = args("tour");
    a["userInfo"].as_object_mut().map(|u| u.remove("country"));
    check(vec![c.clone()], a, Reason::CountryNotAllowed);
    c["gate"] = json!({"type": "invite-only"});
    check(vec![c.clone()], args("tour"), Reason::NotInvited);
    c["gate"] = json!({"type": "none"});
    let mut a = args("tour");
    a["doTransfer"] = json!(true);
    check(vec![c.clone()], a.clone(), Reason::NoLinkedCampaign);
    let mut itself = c.clone();
    itself["linkedCampaignId"] = json!("c1");
    check(vec![itself], a.clone(), Reason::NoLinkedCampaign);
    let mut linked = c.clone();
    linked["linkedCampaignId"] = json!("old");
    check(vec![linked], a, Reason::NothingToTransfer);
    let mut a = args("tour");
    a["entry"].as_object_mut().map(|e| e.remove("age"));
    check(vec![c.clone()], a, Reason::MissingField);
    let mut a = args("tour");
    a["entry"]["age"] = Value::Null;
    check(vec![c.clone()], a, Reason::MissingField);
    let mut a = args("tour");
    a["entry"]["shoeSize"] = json!(42);
    check(vec![c.clone()], a, Reason::UnknownField);
    let mut a = args("tour");
    a["entry"]["age"] = json!(12);
    check(vec![c.clone()], a, Reason::InvalidField);
    // ALREADY_SELECTED (transfer of a drawn entry) and INVALID_REQUEST
    // (parse) are tested below.
    seen.extend([Reason::AlreadySelected, Reason::InvalidRequest]);
    for r in Reason::ALL {
        assert!(seen.contains(&r), "{r} not covered");
    }
}

#[test]
fn an_invited_fan_passes_and_the_email_is_lower_cased() {
    let mut c = campaign("c1", "tour");
    c["gate"] = json!({"type": "invite-only"});
    let mut fake = Fake::with(vec![c]);
    let mut a = args("tour");
    a["userInfo"]["email"] = json!("VIP@fans.example");
    assert_eq!(reason_of(&mut fake, a), None);
    assert!(fake
        .gets
        .iter()
        .any(|(s, p)| s == "entries" && p == "/campaigns/c1/invites/vip%40fans.example"));
}

#[test]
fn bad_requests_are_invalid_request() {
    let good = args("tour");
    let mut cases = Vec::new();
    for (path, value) in [
        ("slug", Value::Null),
        ("slug", json!("")),
        ("slug", json!(3)),
        ("marketId", json!(5)),
        ("marketId", json!("")),
        ("entry", json!([1])),
        ("entry", json!({"big": "x".repeat(MAX_ENTRY_BYTES)})),
        ("userInfo", Value::Null),
        ("doTransfer", json!("yes")),
    ] {
        let mut a = good.clone();
        a[path] = value;
        cases.push(a);
    }
    for (field, value) in [
        ("globalUserId", json!("")),
        ("globalUserId", json!(7)),
        ("email", json!("not-an-email")),
        ("email", json!("a@b")),
        ("email", json!("a b@c.d")),
        ("country", json!("USA")),
    ] {
        let mut a = good.clone();
        a["userInfo"][field] = value;
        cases.push(a);
    }
    for a in cases {
        let err = parse_request(&json!({"arguments": a})).expect_err("refused");
        assert_eq!(err.reason, Reason::InvalidRequest, "{a}");
    }
    assert_eq!(
        parse_request(&json!("text"))
            .expect_err("not an object")
            .reason,
        Reason::InvalidRequest
    );
    // The plain arguments are read too, the entry defaults to {}.
    let plain = parse_request(&json!({"slug": "s", "userInfo": {"globalUserId": "u", "email": "u@x.io", "locale": "en", "tier": 3}}))
        .expect("plain");
    assert!(plain.entry.is_empty());
    assert!(!plain.do_transfer);
    assert_eq!(plain.market_id, None);
    assert_eq!(
        serde_json::to_value(&plain.user_info).expect("json"),
        json!({"globalUserId": "u", "email": "u@x.io", "locale": "en", "tier": 3})
    );
}

#[test]
fn a_campaign_is_cached_for_an_hour_and_then_served_from_the_cache() {
    let mut fake = Fake::with(vec![campaign("c1", "tour")]);
    assert_eq!(reason_of(&mut fake, args("tour")), None);
    assert_eq!(fake.service_calls("campaigns"), 2); // campaign + market
    let (value, ttl) = fake
        .cache
        .get("campaign:slug:tour")
        .cloned()
        .expect("cached");
    assert_eq!(ttl, CACHE_TTL_SECONDS);
    assert_eq!(
        serde_json::from_str::<Value>(&value).expect("json")["id"],
        "c1"
    );
    assert_eq!(
        fake.cache.get("campaign:c1:market:m1").map(|e| e.1),
        Some(3600)
    );
    // A hit: no call at all.
    assert_eq!(reason_of(&mut fake, args("tour")), None);
    assert_eq!(fake.service_calls("campaigns"), 2);
}

#[test]
fn a_campaign_service_outage_is_survived_with_the_campaign_cached() {
    let mut fake = Fake::with(vec![campaign("c1", "tour")]);
    assert_eq!(reason_of(&mut fake, args("tour")), None);
    fake.respond = Box::new(|_, _| Err("connection refused".into()));
    assert_eq!(reason_of(&mut fake, args("tour")), None);
    let mut a = args("tour");
    a["entry"]["age"] = json!(3);
    assert_eq!(reason_of(&mut fake, a), Some(Reason::InvalidField));
    // Not cached: a typed error, not "not found".
    let err = evaluate(
        &mut fake,
        &Services::default(),
        &request(args("other")),
        NOW,
    )
    .expect_err("outage");
    assert!(
        matches!(err, LookupError::CampaignServiceUnavailable(_)),
        "{err}"
    );
    assert_eq!(err.kind(), "CampaignServiceUnavailable");
    // A 5xx is an outage too; another status an error; neither is cached.
    fake.respond = Box::new(|_, _| Ok((503, "busy".into())));
    let err = evaluate(
        &mut fake,
        &Services::default(),
        &request(args("other")),
        NOW,
    )
    .expect_err("503");
    assert!(matches!(err, LookupError::CampaignServiceUnavailable(_)));
    fake.respond = Box::new(|_, _| Ok((200, "{\"not\": \"a campaign\"}".into())));
    let err = evaluate(
        &mut fake,
        &Services::default(),
        &request(args("other")),
        NOW,
    )
    .expect_err("garbage");
    assert!(matches!(err, LookupError::CampaignServiceError(_)));
    assert!(!fake.cache.contains_key("campaign:slug:other"));
}

#[test]
fn not_found_is_cached_for_thirty_seconds() {
    let mut fake = Fake::with(vec![]);
    assert_eq!(
        reason_of(&mut fake, args("ghost")),
        Some(Reason::CampaignNotFound)
    );
    assert_eq!(
        fake.cache.get("campaign:slug:ghost").cloned(),
        Some(("null".to_string(), NOT_FOUND_TTL_SECONDS))
    );
    assert_eq!(
        reason_of(&mut fake, args("ghost")),
        Some(Reason::CampaignNotFound)
    );
    assert_eq!(fake.service_calls("campaigns"), 1);
    // An unknown market likewise.
    let mut fake = Fake::with(vec![campaign("c1", "tour")]);
    let mut a = args("tour");
    a["marketId"] = json!("zz");
    assert_eq!(reason_of(&mut fake, a.clone()), Some(Reason::UnknownMarket));
    assert_eq!(reason_of(&mut fake, a), Some(Reason::UnknownMarket));
    assert_eq!(
        fake.cache.get("campaign:c1:market:zz").map(|e| e.1),
        Some(30)
    );
    assert_eq!(fake.service_calls("campaigns"), 2);
}

#[test]
fn a_failing_cache_is_bypassed() {
    let mut fake = Fake::with(vec![campaign("c1", "tour")]);
    fake.cache_down = true;
    assert_eq!(reason_of(&mut fake, args("tour")), None);
    assert_eq!(reason_of(&mut fake, args("tour")), None);
    assert_eq!(fake.service_calls("campaigns"), 4);
    assert!(fake.warnings.iter().any(|w| w.contains("cache failed")));
    // A corrupt entry is replaced.
    let mut fake = Fake::with(vec![campaign("c1", "tour")]);
    fake.cache
        .insert("campaign:slug:tour".into(), ("{broken".into(), 10));
    assert_eq!(reason_of(&mut fake, args("tour")), None);
    assert!(fake.cache["campaign:slug:tour"].0.contains("\"c1\""));
}

#[test]
fn a_market_of_another_campaign_is_unknown() {
    let mut fake = Fake::new(Box::new(|_, path| {
        if path.starts_with("/campaigns/by-slug/") {
            Ok((200, campaign("c1", "tour").to_string()))
        } else {
            Ok((200, market_json("c2", "m1").to_string()))
        }
    }));
    assert_eq!(
        reason_of(&mut fake, args("tour")),
        Some(Reason::UnknownMarket)
    );
}

#[test]
fn invite_checks_that_fail_are_errors() {
    let mut c = campaign("c1", "tour");
    c["gate"] = json!({"type": "invite-only"});
    for (answer, kind) in [
        (Err("timeout".to_string()), "EntryServiceUnavailable"),
        (Ok((503, "x".to_string())), "EntryServiceUnavailable"),
        (Ok((404, "{}".to_string())), "EntryServiceError"),
        (Ok((200, "{}".to_string())), "EntryServiceError"),
    ] {
        let campaign = c.clone();
        let mut fake = Fake::new(Box::new(move |service, path| {
            if service == "entries" {
                answer.clone()
            } else if path.starts_with("/campaigns/by-slug/") {
                Ok((200, campaign.to_string()))
            } else {
                Ok((200, market_json("c1", "m1").to_string()))
            }
        }));
        let err = evaluate(&mut fake, &Services::default(), &request(args("tour")), NOW)
            .expect_err("error");
        assert_eq!(err.kind(), kind, "{err}");
    }
}

#[test]
fn a_campaign_with_unreadable_times_is_an_error() {
    let mut c = campaign("c1", "tour");
    c["opensAt"] = json!("yesterday");
    let mut fake = Fake::with(vec![c]);
    let err = evaluate(&mut fake, &Services::default(), &request(args("tour")), NOW)
        .expect_err("bad time");
    assert_eq!(err.kind(), "InvalidCampaign");
}

#[test]
fn a_transfer_merges_the_linked_entry_under_the_request() {
    let mut c = campaign("c1", "tour");
    c["linkedCampaignId"] = json!("old");
    let mut fake = Fake::with(vec![c]);
    fake.entries.insert(
        ("old".into(), "u1".into()),
        json!({"PK": "ENTRY#old#u1", "SK": "ENTRY", "entry": {"firstName": "Ann", "age": 30, "newsletter": true}, "verdict": "PENDING", "version": 4}),
    );
    let mut a = args("tour");
    a["doTransfer"] = json!(true);
    a["entry"] = json!({"age": 31});
    let e = evaluate(&mut fake, &Services::default(), &request(a.clone()), NOW).expect("ok");
    assert!(e.is_eligible(), "{:?}", e.refusal);
    assert_eq!(
        Value::Object(e.entry.clone()),
        json!({"firstName": "Ann", "age": 31, "newsletter": true})
    );
    let t = e.transfer.clone().expect("a transfer");
    assert_eq!(t.from, "old");
    assert_eq!(t.source.expect("source")["version"], 4);
    assert_eq!(e.answer()["transferFrom"], "old");
    assert_eq!(e.answer()["linkedCampaignId"], "old");
    // The merged entry is validated.
    a["entry"] = json!({"age": "x"});
    assert_eq!(reason_of(&mut fake, a.clone()), Some(Reason::InvalidField));
    // A drawn entry cannot move.
    if let Some(i) = fake.entries.get_mut(&("old".to_string(), "u1".to_string())) {
        i["verdict"] = json!("WINNER");
    }
    a["entry"] = json!({});
    assert_eq!(
        reason_of(&mut fake, a.clone()),
        Some(Reason::AlreadySelected)
    );
    // Retried after the move: the entry here, transferred from `old`.
    fake.entries.clear();
    fake.entries.insert(
        ("c1".into(), "u1".into()),
        json!({"entry": {"firstName": "Ann", "age": 31}, "transferredFrom": "old", "verdict": "PENDING"}),
    );
    let e = evaluate(&mut fake, &Services::default(), &request(a.clone()), NOW).expect("ok");
    assert!(e.is_eligible());
    assert_eq!(e.transfer.expect("transfer").source, None);
    assert_eq!(e.entry["age"], 31);
    // An entry here that was not transferred is no transfer.
    if let Some(o) = fake
        .entries
        .get_mut(&("c1".to_string(), "u1".to_string()))
        .and_then(Value::as_object_mut)
    {
        o.remove("transferredFrom");
    }
    assert_eq!(reason_of(&mut fake, a), Some(Reason::NothingToTransfer));
}

#[test]
fn values_are_checked_by_type_and_constraints() {
    let def = |t: &str, c: Value| -> FieldDef {
        serde_json::from_value(json!({"name": "f", "type": t, "constraints": c})).expect("def")
    };
    let ok = |d: &FieldDef, v: Value| check_value(d, &v).is_ok();
    let s = def("string", json!({"minLength": 2, "maxLength": 3}));
    assert!(ok(&s, json!("ab")) && ok(&s, json!("äöü")));
    assert!(!ok(&s, json!("a")) && !ok(&s, json!("abcd")) && !ok(&s, json!(12)));
    let n = def("number", json!({"min": 1.5, "max": 2}));
    assert!(ok(&n, json!(1.5)) && ok(&n, json!(2)));
    assert!(!ok(&n, json!(1)) && !ok(&n, json!(2.01)) && !ok(&n, json!("2")));
    let i = def("integer", json!({}));
    assert!(ok(&i, json!(-3)) && ok(&i, json!(4.0)) && ok(&i, json!(u64::MAX)));
    assert!(!ok(&i, json!(4.5)) && !ok(&i, json!(true)));
    let b = def("boolean", json!({}));
    assert!(ok(&b, json!(false)) && !ok(&b, json!("true")));
    let e = def("email", json!({"maxLength": 20}));
    assert!(ok(&e, json!("a@b.co")));
    assert!(!ok(&e, json!("a@b")) && !ok(&e, json!("averyveryverylong@b.co")) && !ok(&e, json!(1)));
    let d = def("date", json!({}));
    assert!(ok(&d, json!("2024-02-29")));
    assert!(
        !ok(&d, json!("2023-02-29")) && !ok(&d, json!("2024-13-01")) && !ok(&d, json!("24-1-1"))
    );
    let en = def("string", json!({"enum": ["S", "M"]}));
    assert!(ok(&en, json!("M")) && !ok(&en, json!("L")));
    let en = def("integer", json!({"enum": [1, 2]}));
    assert!(ok(&en, json!(2.0)) && !ok(&en, json!(3)));
    let err = check_value(&s, &json!(5)).expect_err("type");
    assert_eq!(err, "must be a string, not a number");
}

#[test]
fn times_parse_and_format() {
    assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(parse_rfc3339_ms("2026-12-02T10:00:00Z"), Some(NOW));
    assert_eq!(parse_rfc3339_ms("2026-12-02T10:00:00.5Z"), Some(NOW + 500));
    assert_eq!(parse_rfc3339_ms("2026-12-02T11:30:00+01:30"), Some(NOW));
    assert_eq!(parse_rfc3339_ms("2026-12-02T08:00:00-02:00"), Some(NOW));
    assert_eq!(parse_rfc3339_ms("1969-12-31T23:59:59Z"), Some(-1000));
    for bad in [
        "",
        "2026-12-02",
        "2026-12-02T10:00Z",
        "2026-12-02T25:00:00Z",
        "2026-12-02T10:00:00",
        "2026-12-02T10:00:00+0100",
        "2026-02-30T10:00:00Z",
        "2026-12-02T10:00:00.Z",
    ] {
        assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
    }
    assert_eq!(format_rfc3339_ms(NOW + 7), "2026-12-02T10:00:00.007Z");
    assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
    for ms in [0, NOW, 951_782_400_123, 4_102_444_799_999, -86_400_000] {
        assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(ms)), Some(ms), "{ms}");
    }
}

#[test]
fn segments_are_encoded_and_keys_named() {
    assert_eq!(encode_segment("a b/c@d.e~_-"), "a%20b%2Fc%40d.e~_-");
    assert_eq!(campaign_key("tour"), "campaign:slug:tour");
    assert_eq!(market_key("c", "m"), "campaign:c:market:m");
    assert!(is_slug("tour-2026") && !is_slug("Tour") && !is_slug("") && !is_slug("a/b"));
    let codes: Vec<String> = Reason::ALL
        .iter()
        .map(|r| {
            serde_json::to_value(r)
                .expect("json")
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(
        codes,
        Reason::ALL.iter().map(|r| r.code()).collect::<Vec<_>>()
    );
}
