use super::*;
use usher_sdk::fakes::{Call, Fakes};

const T: &str = "campaigns";

fn call(method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let request = HttpRequest {
        method: method.into(),
        path: path.into(),
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        ..HttpRequest::default()
    };
    let response = handle(&Settings::default(), &request);
    let value = serde_json::from_slice(&response.body).expect("a JSON answer");
    (response.status, value)
}

fn campaign(id: &str, slug: &str) -> Value {
    json!({
        "id": id, "slug": slug, "name": "Presale", "status": "OPEN",
        "opensAt": "2026-12-01T10:00:00Z", "closesAt": "2026-12-09T10:00:00Z",
        "gate": {"type": "countries", "countries": ["US", "gb"]},
        "fields": [
            {"name": "zip", "type": "string", "required": true, "constraints": {"minLength": 5, "maxLength": 5}},
            {"name": "age", "type": "integer", "required": true, "constraints": {"min": 16}},
        ],
    })
}

fn market(campaign: &str, id: &str) -> Value {
    json!({"id": id, "campaignId": campaign, "eventId": format!("evt-{id}"), "eventName": "Show", "venue": "Arena",
           "selectionCount": 10, "waitlistCount": 2})
}

fn put_c(id: &str, slug: &str) -> (u16, Value) {
    call("PUT", &format!("/campaigns/{id}"), Some(campaign(id, slug)))
}

fn error_of(answer: &(u16, Value)) -> &str {
    answer.1["error"].as_str().unwrap_or("")
}

#[test]
fn put_get_and_by_slug() {
    let fakes = Fakes::new();
    let _i = fakes.install();
    let (status, body) = put_c("c1", "summer-tour");
    assert_eq!(status, 200, "{body}");
    // Countries are stored in upper case.
    assert_eq!(
        body["gate"],
        json!({"type": "countries", "countries": ["US", "GB"]})
    );
    assert_eq!(call("GET", "/campaigns/c1", None), (200, body.clone()));
    assert_eq!(
        call("GET", "/campaigns/by-slug/summer-tour", None),
        (200, body.clone())
    );
    assert_eq!(call("GET", "/campaigns/nope", None).0, 404);
    assert_eq!(call("GET", "/campaigns/by-slug/nope", None).0, 404);
    let item = fakes.item(T, &campaign_key("c1")).expect("item");
    assert_eq!(
        (&item["version"], &item["slug"]),
        (&json!(1), &json!("summer-tour"))
    );
    // Again: idempotent, a new version.
    assert_eq!(put_c("c1", "summer-tour").0, 200);
    assert_eq!(
        fakes.item(T, &campaign_key("c1")).expect("item")["version"],
        2
    );
}

#[test]
fn router_answers_404_and_405() {
    let fakes = Fakes::new();
    let _i = fakes.install();
    assert_eq!(call("GET", "/nothing/here", None).0, 404);
    assert_eq!(call("DELETE", "/campaigns/c1", None).0, 405);
    assert_eq!(call("POST", "/campaigns/c1/markets/m1/stats", None).0, 405);
    assert_eq!(call("PUT", "/campaigns/c1", None).0, 400); // no body
}

#[test]
fn campaign_validation_says_what_is_wrong() {
    let fakes = Fakes::new();
    let _i = fakes.install();
    let cases: Vec<(Value, &str)> = vec![
        (json!({"id": "c1"}), "not a campaign"),
        (
            {
                let mut c = campaign("other", "s");
                c["id"] = json!("other");
                c
            },
            "not the path's",
        ),
        (
            {
                let mut c = campaign("c1", "s");
                c["slug"] = json!("Bad Slug");
                c
            },
            "a-z, 0-9",
        ),
        (
            {
                let mut c = campaign("c1", "s");
                c["slug"] = json!("");
                c
            },
            "slug must be",
        ),
        (
            {
                let mut c = campaign("c1", "s");
                c["opensAt"] = json!("tomorrow");
                c
            },
            "opensAt",
        ),
        (
            {
                let mut c = campaign("c1", "s");
                c["closesAt"] = json!("2026-11-01T00:00:00Z");
                c
            },
            "before closesAt",
        ),
        (
            {
                let mut c = campaign("c1", "s");
                c["fields"][1]["name"] = json!("zip");
                c
            },
            "more than once",
        ),
        (
            {
                let mut c = campaign("c1", "s");
                c["fields"][0]["constraints"]["minLength"] = json!(9);
                c
            },
            "minLength",
        ),
        (
            {
                let mut c = campaign("c1", "s");
                c["fields"][0]["type"] = json!("color");
                c
            },
            "not a campaign",
        ),
        (
            {
                let mut c = campaign("c1", "s");
                c["gate"] = json!({"type": "countries", "countries": ["XX"]});
                c
            },
            "ISO 3166-1",
        ),
        (
            {
                let mut c = campaign("c1", "s");
                c["gate"] = json!({"type": "countries", "countries": []});
                c
            },
            "at least one",
        ),
        (
            {
                let mut c = campaign("c1", "s");
                c["linkedCampaignId"] = json!("c1");
                c
            },
            "itself",
        ),
    ];
    for (body, reason) in cases {
        let answer = call("PUT", "/campaigns/c1", Some(body.clone()));
        assert_eq!(answer.0, 400, "{body}: {answer:?}");
        assert!(error_of(&answer).contains(reason), "{body}: {answer:?}");
    }
    let answer = call("PUT", "/campaigns/a%23b", Some(campaign("a#b", "s")));
    assert_eq!(answer.0, 400, "{answer:?}");
    let answer = call("PUT", "/campaigns/by-slug", Some(campaign("by-slug", "s")));
    assert_eq!(answer.0, 400, "{answer:?}");
    assert!(fakes.items(T).is_empty(), "nothing written");
}

#[test]
fn a_slug_held_by_another_campaign_is_a_409_and_a_moved_slug_is_free() {
    let fakes = Fakes::new();
    let _i = fakes.install();
    assert_eq!(put_c("c1", "tour").0, 200);
    let answer = put_c("c2", "tour");
    assert_eq!(answer.0, 409, "{answer:?}");
    assert!(error_of(&answer).contains("c1"));
    assert!(
        fakes.item(T, &campaign_key("c2")).is_none(),
        "nothing half-written"
    );
    // c1 moves to another slug: the old one answers 404 and is free.
    assert_eq!(put_c("c1", "tour-2").0, 200);
    assert_eq!(call("GET", "/campaigns/by-slug/tour", None).0, 404);
    assert_eq!(call("GET", "/campaigns/by-slug/tour-2", None).1["id"], "c1");
    assert_eq!(put_c("c2", "tour").0, 200);
    assert_eq!(call("GET", "/campaigns/by-slug/tour", None).1["id"], "c2");
    // c1 cannot go back.
    assert_eq!(put_c("c1", "tour").0, 409);
}

#[test]
fn a_claim_never_written_is_free_only_once_stale() {
    let now = 1_800_000_000_000;
    // c9 claimed the slug and crashed before writing its campaign.
    let fakes = Fakes::new().with_item(
        T,
        json!({"PK": "SLUG#tour", "SK": "SLUG", "campaignId": "c9", "claimVersion": 1,
               "claim": "c9@1", "claimedAt": now - 1000}),
    );
    let _i = fakes.install();
    let body = campaign("c1", "tour");
    let answer = put_campaign(T, "c1", &body, now).expect_err("fresh claim");
    assert_eq!(answer.status, 409);
    put_campaign(T, "c1", &body, now + STALE_CLAIM_MS).expect("stale claim taken over");
    assert_eq!(
        fakes.item(T, &slug_key("tour")).expect("slug")["campaignId"],
        "c1"
    );
}

#[test]
fn two_campaigns_racing_for_a_slug_one_loses() {
    // c2's claim lands between c1's read of the slug and c1's write.
    let mut done = false;
    let fakes = Fakes::new().intercept(move |call, tables| {
        if let Call::Put { item, .. } = call {
            if !done && item["PK"] == "SLUG#tour" && item["campaignId"] == "c1" {
                done = true;
                tables.insert(
                    T,
                    json!({"PK": "SLUG#tour", "SK": "SLUG", "campaignId": "c2", "claimVersion": 1,
                           "claim": "c2@1", "claimedAt": rfc3339::now_millis()}),
                );
            }
        }
        None
    });
    let _i = fakes.install();
    let answer = put_c("c1", "tour");
    assert_eq!(answer.0, 409, "{answer:?}");
    assert!(fakes.item(T, &campaign_key("c1")).is_none());
    assert_eq!(
        fakes.item(T, &slug_key("tour")).expect("slug")["campaignId"],
        "c2"
    );
}

#[test]
fn a_concurrent_put_of_the_same_campaign_is_read_again() {
    let mut done = false;
    let fakes = Fakes::new().intercept(move |call, tables| {
        if let Call::Put { item, .. } = call {
            if !done && item["SK"] == "CAMPAIGN" {
                done = true;
                let mut other = item.clone();
                other["version"] = json!(7);
                other["slug"] = json!("elsewhere");
                tables.insert(T, other);
            }
        }
        None
    });
    let _i = fakes.install();
    assert_eq!(put_c("c1", "tour").0, 200);
    assert_eq!(
        fakes.item(T, &campaign_key("c1")).expect("item")["version"],
        8
    );
    assert_eq!(call("GET", "/campaigns/by-slug/tour", None).1["id"], "c1");
}

#[test]
fn markets() {
    let fakes = Fakes::new();
    let _i = fakes.install();
    assert_eq!(
        call("PUT", "/campaigns/c1/markets/m1", Some(market("c1", "m1"))).0,
        404
    );
    put_c("c1", "tour");
    for m in ["m2", "m1", "m10"] {
        let (status, body) = call(
            "PUT",
            &format!("/campaigns/c1/markets/{m}"),
            Some(market("c1", m)),
        );
        assert_eq!((status, body), (200, market("c1", m)));
    }
    let (status, body) = call("GET", "/campaigns/c1/markets", None);
    assert_eq!(status, 200);
    let ids: Vec<&str> = body["markets"]
        .as_array()
        .expect("markets")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["m1", "m10", "m2"]);
    assert_eq!(
        call("GET", "/campaigns/c1/markets/m2", None),
        (200, market("c1", "m2"))
    );
    assert_eq!(call("GET", "/campaigns/c1/markets/m3", None).0, 404);
    assert_eq!(call("GET", "/campaigns/c9/markets", None).0, 404);
    let answer = call("PUT", "/campaigns/c1/markets/m1", Some(market("c1", "m2")));
    assert_eq!(answer.0, 400);
    let answer = call("PUT", "/campaigns/c1/markets/m1", Some(market("c2", "m1")));
    assert!(error_of(&answer).contains("campaignId"), "{answer:?}");
    let answer = call(
        "PUT",
        "/campaigns/c1/markets/m1",
        Some(json!({"id": "m1", "campaignId": "c1", "eventId": "e", "selectionCount": -1})),
    );
    assert_eq!(answer.0, 400);
}

fn setup_market() -> Fakes {
    let fakes = Fakes::new();
    {
        let _i = fakes.install();
        put_c("c1", "tour");
        call("PUT", "/campaigns/c1/markets/m1", Some(market("c1", "m1")));
    }
    fakes
}

fn stats(status: &str, draw: &str) -> Value {
    json!({"status": status, "drawId": draw, "entries": 100, "expected": {"winners": 10, "losers": 88, "waitlisted": 2}})
}

const STATS: &str = "/campaigns/c1/markets/m1/stats";
const REPORTS: &str = "/campaigns/c1/markets/m1/verdict-reports";

fn report(id: &str, winners: u64) -> Value {
    json!({"reportId": id, "counts": {"winners": winners, "losers": 1}})
}

#[test]
fn stats_go_from_processing_to_finished_and_never_back() {
    let fakes = setup_market();
    let _i = fakes.install();
    assert_eq!(call("GET", STATS, None).0, 404);
    assert_eq!(
        call(
            "PUT",
            "/campaigns/c1/markets/m9/stats",
            Some(stats("PROCESSING", "d1"))
        )
        .0,
        404
    );
    let (status, body) = call("PUT", STATS, Some(stats("PROCESSING", "d1")));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["status"], &body["drawId"], &body["reports"]),
        (&json!("PROCESSING"), &json!("d1"), &json!(0))
    );
    assert_eq!(
        call("POST", REPORTS, Some(report("d1#0", 3))).1,
        json!({"counted": true})
    );
    let (status, body) = call("PUT", STATS, Some(stats("FINISHED", "d1")));
    assert_eq!(status, 200);
    assert_eq!(
        body["expected"],
        json!({"winners": 10, "losers": 88, "waitlisted": 2})
    );
    assert_eq!(
        body["reported"],
        json!({"winners": 3, "losers": 1, "waitlisted": 0}),
        "kept"
    );
    assert_eq!(call("GET", STATS, None), (200, body.clone()));
    // FINISHED again is fine; back to PROCESSING for the same draw is not.
    assert_eq!(call("PUT", STATS, Some(stats("FINISHED", "d1"))).0, 200);
    let answer = call("PUT", STATS, Some(stats("PROCESSING", "d1")));
    assert_eq!(answer.0, 409, "{answer:?}");
    assert_eq!(call("GET", STATS, None).1["status"], "FINISHED");
    // A new draw starts over.
    let (status, body) = call("PUT", STATS, Some(stats("PROCESSING", "d2")));
    assert_eq!(status, 200);
    assert_eq!(
        (&body["reports"], &body["reported"]["winners"]),
        (&json!(0), &json!(0))
    );
    // Bad bodies.
    for bad in [
        json!({"status": "DONE", "drawId": "d"}),
        json!({"status": "FINISHED"}),
        json!({"status": "FINISHED", "drawId": ""}),
        json!({"status": "FINISHED", "drawId": "d", "entries": -1}),
        json!({"status": "FINISHED", "drawId": "d", "extra": 1}),
    ] {
        assert_eq!(call("PUT", STATS, Some(bad.clone())).0, 400, "{bad}");
    }
}

#[test]
fn a_report_is_counted_once() {
    let fakes = setup_market();
    let _i = fakes.install();
    call("PUT", STATS, Some(stats("PROCESSING", "d1")));
    assert_eq!(
        call("POST", REPORTS, Some(report("d1#0", 3))).1,
        json!({"counted": true})
    );
    assert_eq!(
        call("POST", REPORTS, Some(report("d1#1", 2))).1,
        json!({"counted": true})
    );
    // Redelivered: not counted again.
    assert_eq!(
        call("POST", REPORTS, Some(report("d1#0", 3))).1,
        json!({"counted": false})
    );
    assert_eq!(
        call("POST", REPORTS, Some(report("d1#1", 2))).1,
        json!({"counted": false})
    );
    let answer = call("POST", REPORTS, Some(report("d1#0", 4)));
    assert_eq!(answer.0, 409, "{answer:?}");
    let body = call("GET", STATS, None).1;
    assert_eq!(
        (&body["reported"], &body["reports"]),
        (
            &json!({"winners": 5, "losers": 2, "waitlisted": 0}),
            &json!(2)
        )
    );
    // Both report items are marked counted.
    for r in ["d1#0", "d1#1"] {
        assert_eq!(
            fakes.item(T, &report_key("c1", "m1", r)).expect("report")["state"],
            "counted"
        );
    }
    // Bad input and unknown markets.
    assert_eq!(
        call("POST", REPORTS, Some(json!({"reportId": "", "counts": {}}))).0,
        400
    );
    assert_eq!(
        call(
            "POST",
            REPORTS,
            Some(json!({"reportId": "x", "counts": {"winners": "3"}}))
        )
        .0,
        400
    );
    assert_eq!(
        call(
            "POST",
            "/campaigns/c1/markets/m9/verdict-reports",
            Some(report("x", 1))
        )
        .0,
        404
    );
    // Another draw's report is refused.
    let answer = call(
        "POST",
        REPORTS,
        Some(json!({"reportId": "d0#0", "drawId": "d0", "counts": {}})),
    );
    assert_eq!(answer.0, 409, "{answer:?}");
}

#[test]
fn a_report_before_any_stats_creates_them() {
    let fakes = setup_market();
    let _i = fakes.install();
    assert_eq!(
        call("POST", REPORTS, Some(report("d1#0", 3))).1,
        json!({"counted": true})
    );
    let body = call("GET", STATS, None).1;
    assert_eq!(
        (&body["status"], &body["drawId"], &body["reports"]),
        (&json!("PROCESSING"), &Value::Null, &json!(1))
    );
    // The draw's own PUT keeps the count.
    let body = call("PUT", STATS, Some(stats("FINISHED", "d1"))).1;
    assert_eq!(body["reported"]["winners"], 3);
}

#[test]
fn a_crash_between_adding_and_marking_adds_nothing_twice() {
    let fakes = setup_market();
    let _i = fakes.install();
    call("PUT", STATS, Some(stats("PROCESSING", "d1")));
    // The first delivery adds the counts, then dies marking the report.
    let key = report_key("c1", "m1", "d1#0");
    assert_eq!(
        call("POST", REPORTS, Some(report("d1#0", 3))).1["counted"],
        true
    );
    // Put the report back in its "claimed" state, as if the mark never happened.
    let mut item = fakes.item(T, &key).expect("report");
    item["state"] = json!("claimed");
    let _ = table::put(T, &item, None);
    assert_eq!(
        call("POST", REPORTS, Some(report("d1#0", 3))).1,
        json!({"counted": false})
    );
    assert_eq!(call("GET", STATS, None).1["reports"], 1);
    // Claimed and then overtaken by another report (which marks it counted
    // before replacing lastReport): still not counted twice.
    item["state"] = json!("claimed");
    let _ = table::put(T, &item, None);
    assert_eq!(
        call("POST", REPORTS, Some(report("d1#1", 1))).1["counted"],
        true
    );
    assert_eq!(fakes.item(T, &key).expect("report")["state"], "counted");
    assert_eq!(
        call("POST", REPORTS, Some(report("d1#0", 3))).1,
        json!({"counted": false})
    );
    let body = call("GET", STATS, None).1;
    assert_eq!(
        (&body["reports"], &body["reported"]["winners"]),
        (&json!(2), &json!(4))
    );
    // Claimed but never added (a crash right after the claim): the
    // redelivery adds it.
    let _ = table::put(
        T,
        &json!({"PK": "CAMPAIGN#c1", "SK": "REPORT#m1#d1#2", "reportId": "d1#2",
                "counts": {"winners": 5, "losers": 0, "waitlisted": 0}, "state": "claimed"}),
        None,
    );
    assert_eq!(
        call(
            "POST",
            REPORTS,
            Some(json!({"reportId": "d1#2", "counts": {"winners": 5}}))
        )
        .1,
        json!({"counted": true})
    );
    let body = call("GET", STATS, None).1;
    assert_eq!(
        (&body["reports"], &body["reported"]["winners"]),
        (&json!(3), &json!(9))
    );
}

#[test]
fn a_report_racing_a_stats_write_is_retried() {
    // Another report lands on the stats between this one's read and write.
    let mut done = false;
    let fakes = setup_market().intercept(move |call, tables| {
        if let Call::Put {
            item,
            condition: Some(Condition::AttributeEquals(..)),
            ..
        } = call
        {
            if !done && item["lastReport"] == "r1" {
                done = true;
                let mut other = item.clone();
                other["lastReport"] = json!("r0");
                other["reports"] = json!(1);
                other["reported"] = json!({"winners": 100, "losers": 0, "waitlisted": 0});
                other["version"] = json!(50);
                tables.insert(T, other);
            }
        }
        None
    });
    let _i = fakes.install();
    call("PUT", STATS, Some(stats("PROCESSING", "d1")));
    assert_eq!(
        call("POST", REPORTS, Some(report("r1", 1))).1["counted"],
        true
    );
    let body = call("GET", STATS, None).1;
    assert_eq!(
        (&body["reports"], &body["reported"]["winners"]),
        (&json!(2), &json!(101))
    );
}

#[test]
fn markets_are_listed_across_query_pages() {
    let fakes = Fakes::new().page_cap(2);
    let _i = fakes.install();
    put_c("c1", "tour");
    let ids: Vec<String> = (0..7).map(|i| format!("m{i}")).collect();
    for m in &ids {
        assert_eq!(
            call(
                "PUT",
                &format!("/campaigns/c1/markets/{m}"),
                Some(market("c1", m))
            )
            .0,
            200
        );
    }
    let (status, body) = call("GET", "/campaigns/c1/markets", None);
    assert_eq!(status, 200);
    let listed: Vec<&str> = body["markets"]
        .as_array()
        .expect("markets")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(listed, ids);
    assert!(fakes.count("query") >= 4, "read a page at a time");
}

#[test]
fn campaigns_are_listed_by_id_paged_and_by_status() {
    let fakes = Fakes::new();
    let _i = fakes.install();
    for (id, status) in [
        ("c3", "OPEN"),
        ("c1", "DRAFT"),
        ("c2", "OPEN"),
        ("c4", "CLOSED"),
    ] {
        let mut c = campaign(id, &format!("slug-{id}"));
        c["status"] = json!(status);
        assert_eq!(call("PUT", &format!("/campaigns/{id}"), Some(c)).0, 200);
    }
    // c2 closed by a later PUT: the listing reads the campaign itself.
    let mut c2 = campaign("c2", "slug-c2");
    c2["status"] = json!("CLOSED");
    assert_eq!(call("PUT", "/campaigns/c2", Some(c2)).0, 200);
    let ids = |v: &Value| -> Vec<String> {
        v["campaigns"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c["id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (status, all) = call("GET", "/campaigns", None);
    assert_eq!(status, 200, "{all}");
    assert_eq!(ids(&all), ["c1", "c2", "c3", "c4"]);
    assert_eq!(all["next"], Value::Null);
    let open = list_campaigns(T, Some("OPEN"), 100, None).expect("open");
    assert_eq!(ids(&open), ["c3"]);
    let first = list_campaigns(T, None, 3, None).expect("page");
    assert_eq!(ids(&first), ["c1", "c2", "c3"]);
    assert_eq!(first["next"], "c3");
    let rest = list_campaigns(T, None, 3, Some("c3")).expect("page 2");
    assert_eq!(ids(&rest), ["c4"]);
    assert_eq!(
        list_campaigns(T, Some("SOON"), 3, None)
            .expect_err("bad")
            .status,
        400
    );
}

const BATCH: &str = "/campaigns/c1/markets/m1/verdict-reports/batch";

fn results(answer: &(u16, Value)) -> Vec<Value> {
    assert_eq!(answer.0, 200, "{answer:?}");
    answer.1["results"].as_array().cloned().expect("results")
}

#[test]
fn a_batch_of_reports_is_counted_once_each() {
    let fakes = setup_market();
    let _i = fakes.install();
    call("PUT", STATS, Some(stats("PROCESSING", "d1")));
    // One report alone first; then a batch that repeats it, repeats one of
    // its own, and brings one with other counts than a stored one.
    assert_eq!(
        call("POST", REPORTS, Some(report("d1#0", 3))).1["counted"],
        true
    );
    let answer = call(
        "POST",
        BATCH,
        Some(json!({"reports": [
            report("d1#0", 3), report("d1#1", 2), report("d1#2", 1),
            report("d1#1", 2), report("d1#2", 7), report("d1#0", 9),
        ]})),
    );
    let r = results(&answer);
    assert_eq!(r.len(), 6);
    assert_eq!(r[0], json!({"reportId": "d1#0", "counted": false}));
    assert_eq!(r[1], json!({"reportId": "d1#1", "counted": true}));
    assert_eq!(r[2], json!({"reportId": "d1#2", "counted": true}));
    assert_eq!(r[3], json!({"reportId": "d1#1", "counted": false}));
    assert_eq!(
        (r[4]["status"].as_u64(), r[5]["status"].as_u64()),
        (Some(409), Some(409))
    );
    let body = call("GET", STATS, None).1;
    assert_eq!(
        (&body["reported"], &body["reports"]),
        (
            &json!({"winners": 6, "losers": 3, "waitlisted": 0}),
            &json!(3)
        )
    );
    for rid in ["d1#0", "d1#1", "d1#2"] {
        assert_eq!(
            fakes.item(T, &report_key("c1", "m1", rid)).expect("report")["state"],
            "counted"
        );
    }
    // The whole batch again (a redelivery): nothing counted twice, and a
    // single report after a batch still counts once.
    let r = results(&call(
        "POST",
        BATCH,
        Some(json!({"reports": [report("d1#1", 2), report("d1#2", 1)]})),
    ));
    assert!(r.iter().all(|x| x["counted"] == false), "{r:?}");
    assert_eq!(
        call("POST", REPORTS, Some(report("d1#3", 1))).1["counted"],
        true
    );
    assert_eq!(
        call("POST", REPORTS, Some(report("d1#3", 1))).1["counted"],
        false
    );
    let body = call("GET", STATS, None).1;
    assert_eq!(
        (&body["reports"], &body["reported"]["winners"]),
        (&json!(4), &json!(7))
    );
    // Another draw's report fails alone.
    let r = results(&call(
        "POST",
        BATCH,
        Some(json!({"reports": [
            {"reportId": "d0#0", "drawId": "d0", "counts": {"winners": 1}},
            {"reportId": "d1#4", "drawId": "d1", "counts": {"winners": 1}},
        ]})),
    ));
    assert_eq!(r[0]["status"], 409, "{r:?}");
    assert_eq!(r[1]["counted"], true, "{r:?}");
    // Bad input, too many, unknown markets.
    assert_eq!(
        call("POST", BATCH, Some(json!({"reports": [{"reportId": ""}]}))).0,
        400
    );
    assert_eq!(call("POST", BATCH, Some(json!({"nope": []}))).0, 400);
    let many: Vec<Value> = (0..=MAX_BATCH_REPORTS)
        .map(|i| report(&format!("x{i}"), 1))
        .collect();
    assert_eq!(call("POST", BATCH, Some(json!({"reports": many}))).0, 413);
    assert_eq!(
        call(
            "POST",
            "/campaigns/c1/markets/m9/verdict-reports/batch",
            Some(json!({"reports": [report("x", 1)]}))
        )
        .0,
        404
    );
}

#[test]
fn a_crash_after_a_batch_added_its_counts_adds_nothing_twice() {
    let fakes = setup_market();
    let _i = fakes.install();
    call("PUT", STATS, Some(stats("PROCESSING", "d1")));
    let r = results(&call(
        "POST",
        BATCH,
        Some(json!({"reports": [report("d1#0", 3), report("d1#1", 2)]})),
    ));
    assert!(r.iter().all(|x| x["counted"] == true));
    // As if the batch died before marking its reports counted: the stats'
    // lastReports still name them.
    for rid in ["d1#0", "d1#1"] {
        let key = report_key("c1", "m1", rid);
        let mut item = fakes.item(T, &key).expect("report");
        item["state"] = json!("claimed");
        let _ = table::put(T, &item, None);
    }
    let r = results(&call(
        "POST",
        BATCH,
        Some(json!({"reports": [report("d1#1", 2), report("d1#0", 3)]})),
    ));
    assert!(r.iter().all(|x| x["counted"] == false), "{r:?}");
    // Overtaken by a single report (which marks the batch's reports before
    // replacing them in the stats): still counted once.
    let key = report_key("c1", "m1", "d1#0");
    let mut item = fakes.item(T, &key).expect("report");
    item["state"] = json!("claimed");
    let _ = table::put(T, &item, None);
    assert_eq!(
        call("POST", REPORTS, Some(report("d1#2", 1))).1["counted"],
        true
    );
    assert_eq!(fakes.item(T, &key).expect("report")["state"], "counted");
    let r = results(&call(
        "POST",
        BATCH,
        Some(json!({"reports": [report("d1#0", 3)]})),
    ));
    assert_eq!(r[0]["counted"], false);
    let body = call("GET", STATS, None).1;
    assert_eq!(
        (&body["reports"], &body["reported"]["winners"]),
        (&json!(3), &json!(6))
    );
}

fn call_with(settings: &Settings, method: &str, path: &str, body: Value) -> (u16, Value) {
    let request = HttpRequest {
        method: method.into(),
        path: path.into(),
        body: body.to_string().into_bytes(),
        ..HttpRequest::default()
    };
    let response = handle(settings, &request);
    let value = serde_json::from_slice(&response.body).expect("a JSON answer");
    (response.status, value)
}

fn sent(fakes: &Fakes) -> Vec<(String, Value)> {
    fakes
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Send { queue, messages } => Some((queue, messages)),
            _ => None,
        })
        .flat_map(|(q, ms)| {
            ms.into_iter()
                .map(move |m| (q.clone(), serde_json::from_str(&m.body).expect("json")))
        })
        .collect()
}

#[test]
fn stored_campaigns_and_markets_feed_the_data_queue_when_it_is_set() {
    let fakes = Fakes::new();
    let _i = fakes.install();
    let settings = Settings {
        data_queue: Some("data-queue".into()),
        ..Settings::default()
    };
    let (status, stored) = call_with(&settings, "PUT", "/campaigns/c1", campaign("c1", "tour"));
    assert_eq!(status, 200, "{stored}");
    let (status, _) = call_with(
        &settings,
        "PUT",
        "/campaigns/c1/markets/m1",
        market("c1", "m1"),
    );
    assert_eq!(status, 200);
    // A refused PUT sends nothing.
    let (status, _) = call_with(
        &settings,
        "PUT",
        "/campaigns/c1/markets/m2",
        json!({"id": "m2"}),
    );
    assert_eq!(status, 400);
    let sent = sent(&fakes);
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert!(sent.iter().all(|(q, _)| q == "data-queue"));
    assert_eq!(sent[0].1, json!({"type": "CAMPAIGN", "data": stored}));
    assert_eq!(sent[1].1["type"], "MARKET");
    assert_eq!(sent[1].1["data"]["id"], "m1");
    assert_eq!(
        sent[2].1,
        json!({"type": "EVENT_MAPPING", "data": {"campaignId": "c1", "marketId": "m1", "eventId": "evt-m1", "eventName": "Show", "venue": "Arena"}})
    );
    // Without the setting nothing is sent.
    let fakes = Fakes::new();
    let _i = fakes.install();
    assert_eq!(put_c("c2", "other").0, 200);
    assert!(self::sent(&fakes).is_empty());
}

#[test]
fn a_failed_data_message_answers_503_and_the_put_can_be_repeated() {
    let fakes =
        Fakes::new().on_queue(|_, _| Err(usher_sdk::Error::Unavailable("queue down".into())));
    let _i = fakes.install();
    let settings = Settings {
        data_queue: Some("data-queue".into()),
        ..Settings::default()
    };
    let (status, body) = call_with(&settings, "PUT", "/campaigns/c1", campaign("c1", "tour"));
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("PUT it again"),
        "{body}"
    );
    // The campaign itself is stored.
    assert!(fakes.item(T, &campaign_key("c1")).is_some());
}
