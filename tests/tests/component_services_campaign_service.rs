//! services/campaign-service under wasmtime: the Campaign Service's HTTP
//! contract (components/services/campaign-service/openapi.yaml) on an
//! embedded table, with concurrent invocations racing for one slug and
//! sending one verdict report many times at once.

use std::sync::Arc;

use serde_json::{json, Value};
use usher_capabilities::TableBackend;
use usher_engine::{HttpRequest, Input, Output, Runtime};
use usher_testing::{components, TestHost};

const WORKER: &str = "services/campaign-service";

fn host() -> TestHost {
    TestHost::builder()
        .resources(
            "tables: { campaigns: { partition_key: PK, sort_key: SK } }\nqueues: { data-queue: {} }",
        )
        .worker(
            &components::SERVICES_CAMPAIGN_SERVICE,
            "trigger: { http: { route: /services/campaigns } }\ngrants: { tables: [campaigns], queues: [data-queue] }\nsettings: { table: campaigns, data_queue: data-queue }",
        )
        .build()
        .expect("test host")
}

fn request(method: &str, path: &str, body: Option<&Value>) -> Input {
    Input::Http(HttpRequest {
        method: method.into(),
        path: path.into(),
        query: String::new(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
    })
}

/// One request on the runtime; the status and the JSON body.
async fn call_on(
    runtime: &Runtime,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let out = runtime
        .invoke(WORKER, &request(method, path, body), None)
        .await
        .expect("invocation");
    match out.output {
        Output::Http(response) => {
            let body = serde_json::from_slice(&response.body).expect("a JSON answer");
            (response.status, body)
        }
        other => panic!("{other:?}"),
    }
}

async fn call(host: &TestHost, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    call_on(&host.runtime, method, path, body.as_ref()).await
}

fn campaign(id: &str, slug: &str) -> Value {
    json!({
        "id": id, "slug": slug, "name": "Presale", "status": "OPEN",
        "opensAt": "2026-12-01T10:00:00Z", "closesAt": "2026-12-09T10:00:00+01:00",
        "gate": {"type": "none"},
        "fields": [{"name": "zip", "type": "string", "required": true, "constraints": {"minLength": 5}}],
        "linkedCampaignId": "c0", "promoter": "Usher Live",
    })
}

fn market(campaign: &str, id: &str) -> Value {
    json!({"id": id, "campaignId": campaign, "eventId": format!("evt-{id}"), "eventName": "Show",
           "venue": "Arena", "selectionCount": 10, "waitlistCount": 2})
}

#[tokio::test]
async fn campaigns_markets_stats_and_reports() {
    let host = host();
    let (status, body) = call(
        &host,
        "PUT",
        "/campaigns/c1",
        Some(campaign("c1", "summer")),
    )
    .await;
    assert_eq!((status, &body), (200, &campaign("c1", "summer")));
    assert_eq!(
        call(&host, "GET", "/campaigns/c1", None).await,
        (200, body.clone())
    );
    assert_eq!(
        call(&host, "GET", "/campaigns/by-slug/summer", None).await,
        (200, body.clone())
    );
    let item = host
        .embedded
        .tables()
        .get("campaigns", &json!({"PK": "SLUG#summer", "SK": "SLUG"}))
        .await
        .expect("get")
        .expect("the slug item");
    assert_eq!(item["campaignId"], "c1");
    // Bad input and unknown things.
    let mut bad = campaign("c1", "summer");
    bad["closesAt"] = json!("2026-11-01T00:00:00Z");
    let (status, body) = call(&host, "PUT", "/campaigns/c1", Some(bad)).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("opensAt")),
        "{body}"
    );
    assert_eq!(call(&host, "GET", "/campaigns/none", None).await.0, 404);
    assert_eq!(call(&host, "DELETE", "/campaigns/c1", None).await.0, 405);
    assert_eq!(
        call(
            &host,
            "PUT",
            "/campaigns/c2/markets/m1",
            Some(market("c2", "m1"))
        )
        .await
        .0,
        404
    );

    // Markets.
    for m in ["m2", "m1"] {
        let (status, body) = call(
            &host,
            "PUT",
            &format!("/campaigns/c1/markets/{m}"),
            Some(market("c1", m)),
        )
        .await;
        assert_eq!((status, body), (200, market("c1", m)));
    }
    let (_, body) = call(&host, "GET", "/campaigns/c1/markets", None).await;
    assert_eq!(
        body,
        json!({"markets": [market("c1", "m1"), market("c1", "m2")]})
    );
    assert_eq!(
        call(&host, "GET", "/campaigns/c1/markets/m2", None).await.1,
        market("c1", "m2")
    );

    // Stats: PROCESSING → reports → FINISHED, never back.
    let stats = |status: &str| json!({"status": status, "drawId": "c1.m1", "entries": 40, "expected": {"winners": 10, "losers": 28, "waitlisted": 2}});
    let path = "/campaigns/c1/markets/m1/stats";
    assert_eq!(call(&host, "GET", path, None).await.0, 404);
    assert_eq!(
        call(&host, "PUT", path, Some(stats("PROCESSING"))).await.0,
        200
    );
    let reports = "/campaigns/c1/markets/m1/verdict-reports";
    for (batch, winners) in [(0, 10), (1, 0)] {
        let (status, body) = call(&host, "POST", reports,
            Some(json!({"reportId": format!("c1.m1#{batch}"), "counts": {"winners": winners, "losers": 14, "waitlisted": 1}}))).await;
        assert_eq!((status, body), (200, json!({"counted": true})));
    }
    let (status, body) = call(&host, "POST", reports, Some(json!({"reportId": "c1.m1#0", "counts": {"winners": 10, "losers": 14, "waitlisted": 1}}))).await;
    assert_eq!((status, body), (200, json!({"counted": false})));
    let (status, body) = call(&host, "PUT", path, Some(stats("FINISHED"))).await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            &body["status"],
            &body["entries"],
            &body["expected"],
            &body["reported"],
            &body["reports"]
        ),
        (
            &json!("FINISHED"),
            &json!(40),
            &json!({"winners": 10, "losers": 28, "waitlisted": 2}),
            &json!({"winners": 10, "losers": 28, "waitlisted": 2}),
            &json!(2)
        )
    );
    assert_eq!(call(&host, "GET", path, None).await.1, body);
    assert_eq!(
        call(&host, "PUT", path, Some(stats("PROCESSING"))).await.0,
        409
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaigns_racing_for_one_slug_get_one_winner_and_409s() {
    let host = host();
    // Warm the instance pool so the racers start together.
    assert_eq!(call(&host, "GET", "/campaigns/none", None).await.0, 404);
    for round in 0..3 {
        let slug = format!("hot-{round}");
        let racers: Vec<_> = (0..6)
            .map(|i| {
                let runtime = host.runtime.clone();
                let body = campaign(&format!("r{round}-{i}"), &slug);
                tokio::spawn(async move {
                    let id = body["id"].as_str().unwrap_or_default().to_string();
                    (
                        id.clone(),
                        call_on(&runtime, "PUT", &format!("/campaigns/{id}"), Some(&body)).await,
                    )
                })
            })
            .collect();
        let mut winners = Vec::new();
        for racer in racers {
            let (id, (status, body)) = racer.await.expect("racer");
            match status {
                200 => winners.push(id),
                409 => assert!(
                    body["error"].as_str().is_some_and(|e| e.contains("taken")),
                    "{body}"
                ),
                other => panic!("{other} {body}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let (status, body) = call(&host, "GET", &format!("/campaigns/by-slug/{slug}"), None).await;
        assert_eq!((status, &body["id"]), (200, &json!(winners[0])));
        // The losers were not written.
        for i in 0..6 {
            let id = format!("r{round}-{i}");
            let expected = if id == winners[0] { 200 } else { 404 };
            assert_eq!(
                call(&host, "GET", &format!("/campaigns/{id}"), None)
                    .await
                    .0,
                expected,
                "{id}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_sent_many_times_at_once_is_counted_once() {
    let host = host();
    assert_eq!(
        call(&host, "PUT", "/campaigns/c1", Some(campaign("c1", "s1")))
            .await
            .0,
        200
    );
    assert_eq!(
        call(
            &host,
            "PUT",
            "/campaigns/c1/markets/m1",
            Some(market("c1", "m1"))
        )
        .await
        .0,
        200
    );
    let path = "/campaigns/c1/markets/m1/stats";
    let processing = json!({"status": "PROCESSING", "drawId": "d1", "entries": 0});
    assert_eq!(call(&host, "PUT", path, Some(processing)).await.0, 200);
    // 4 reports, each sent 5 times, all at once.
    let mut tasks = Vec::new();
    for _copy in 0..5 {
        for report in 0..4u64 {
            let runtime = Arc::clone(&host.runtime);
            let body = json!({"reportId": format!("d1#{report}"), "counts": {"winners": report + 1, "losers": 10}});
            tasks.push(tokio::spawn(async move {
                (
                    report,
                    call_on(
                        &runtime,
                        "POST",
                        "/campaigns/c1/markets/m1/verdict-reports",
                        Some(&body),
                    )
                    .await,
                )
            }));
        }
    }
    let mut counted = [0usize; 4];
    for task in tasks {
        let (report, (status, body)) = task.await.expect("task");
        assert_eq!(status, 200, "{body}");
        if body["counted"] == json!(true) {
            counted[report as usize] += 1;
        }
    }
    assert_eq!(
        counted,
        [1, 1, 1, 1],
        "each report counted by exactly one request"
    );
    let (_, stats) = call(&host, "GET", path, None).await;
    assert_eq!(stats["reports"], 4);
    assert_eq!(
        stats["reported"],
        json!({"winners": 10, "losers": 40, "waitlisted": 0})
    );
}

#[tokio::test]
async fn stored_campaigns_and_markets_feed_the_data_queue() {
    let host = host();
    let campaign = json!({
        "id": "dq", "slug": "dq", "name": "Data", "status": "OPEN",
        "opensAt": "2026-12-01T10:00:00Z", "closesAt": "2026-12-09T10:00:00Z",
    });
    let (status, _) = call_on(&host.runtime, "PUT", "/campaigns/dq", Some(&campaign)).await;
    assert_eq!(status, 200);
    let market = json!({"id": "m1", "campaignId": "dq", "eventId": "e1", "selectionCount": 3});
    let (status, _) = call_on(
        &host.runtime,
        "PUT",
        "/campaigns/dq/markets/m1",
        Some(&market),
    )
    .await;
    assert_eq!(status, 200);
    let received = host
        .embedded
        .queues()
        .receive("data-queue", 10, None)
        .await
        .expect("receive");
    let types: Vec<String> = received
        .iter()
        .map(|m| {
            let v: Value = serde_json::from_str(&m.body).expect("json");
            v["type"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(types, ["CAMPAIGN", "MARKET", "EVENT_MAPPING"]);
}
