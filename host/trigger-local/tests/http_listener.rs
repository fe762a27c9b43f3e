//! The HTTP listener with the built services/entry-service (an http-worker
//! below a route prefix) and testing/echo (an invoke-worker), over real HTTP.

use std::net::SocketAddr;

use serde_json::{json, Value};
use usher_testing::{components, TestHost};
use usher_trigger_local::{HttpListener, ListenerError, MAX_REQUEST_BYTES};

fn host() -> TestHost {
    TestHost::builder()
        .resources("tables: { entries: { partition_key: PK, sort_key: SK } }")
        .worker(
            &components::SERVICES_ENTRY_SERVICE,
            "trigger: { http: { route: /services/entries } }\ngrants: { tables: [entries] }\nsettings: { table: entries }",
        )
        .worker(&components::TESTING_ECHO, "trigger: { invoke: {} }")
        .build()
        .expect("test host")
}

async fn listen(host: &TestHost) -> (HttpListener, String) {
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let listener = HttpListener::bind(host.runtime.clone(), addr)
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr());
    (listener, base)
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let ct = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(ct.starts_with("application/json"), "content-type {ct}");
    (status, response.json().await.expect("a JSON body"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_entry_service_answers_below_its_route() {
    let host = host();
    let (listener, base) = listen(&host).await;
    let client = reqwest::Client::new();
    let entries: Vec<Value> = (0..3)
        .map(|i| json!({"campaignId": "c1", "globalUserId": format!("u{i}"), "version": 1, "marketId": "m1"}))
        .collect();
    let (status, body) = json_of(
        client
            .post(format!("{base}/services/entries/entries/batch-upsert"))
            .json(&json!({ "entries": entries }))
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["upserted"], 3, "{body}");

    let (status, body) = json_of(
        client
            .get(format!(
                "{base}/services/entries/campaigns/c1/entries?limit=2"
            ))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["entries"].as_array().map(Vec::len), Some(2), "{body}");
    assert_eq!(body["next"], "u1", "{body}");

    // The worker's own 404 for a path below its route it does not know.
    let (status, _) = json_of(
        client
            .get(format!("{base}/services/entries/nope"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(status, 404);
    // Whole segments only: /services/entriesX is no route.
    let (status, body) = json_of(
        client
            .get(format!("{base}/services/entriesX/campaigns/c1/entries"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().is_some(), "{body}");
    listener.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn invoke_workers_answer_json_and_typed_errors_are_400() {
    let host = host();
    let (listener, base) = listen(&host).await;
    let client = reqwest::Client::new();
    let (status, body) = json_of(
        client
            .post(format!("{base}/invoke/testing/echo"))
            .json(&json!({"a": 1}))
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!((status, body), (200, json!({"a": 1})));

    let (status, body) = json_of(
        client
            .post(format!("{base}/invoke/testing/echo"))
            .json(&json!({"fail": "no"}))
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(
        (status, body),
        (400, json!({"errorType": "Requested", "message": "no"}))
    );

    let (status, body) = json_of(
        client
            .post(format!("{base}/invoke/testing/echo"))
            .body("{not json")
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["errorType"], "InvalidJson");

    let (status, _) = json_of(
        client
            .post(format!("{base}/invoke/testing/missing"))
            .json(&json!({}))
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(status, 404);
    // An http-worker is not invocable this way.
    let (status, _) = json_of(
        client
            .post(format!("{base}/invoke/services/entry-service"))
            .json(&json!({}))
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = json_of(
        client
            .get(format!("{base}/invoke/testing/echo"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(status, 405);
    listener.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_routes_are_404_and_large_bodies_413() {
    let host = host();
    let (listener, base) = listen(&host).await;
    let client = reqwest::Client::new();
    let (status, body) = json_of(
        client
            .get(format!("{base}/elsewhere"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(status, 404, "{body}");

    let big = vec![b' '; MAX_REQUEST_BYTES + 1];
    let (status, _) = json_of(
        client
            .post(format!("{base}/services/entries/entries/batch-upsert"))
            .body(big.clone())
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(status, 413);
    let (status, _) = json_of(
        client
            .post(format!("{base}/invoke/testing/echo"))
            .body(big)
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(status, 413);
    listener.shutdown().await.expect("shutdown");
}

fn resolver_host() -> TestHost {
    TestHost::builder()
        .named_worker(
            "graphql/check-eligibility",
            &components::TESTING_ECHO,
            "trigger: { resolver: { type_name: Query, field_name: checkEligibility } }",
        )
        .named_worker(
            "graphql/spin",
            &components::TESTING_SPIN_FOREVER,
            "trigger: { resolver: { type_name: Mutation, field_name: spin } }\nlimits: { timeout_ms: 100 }",
        )
        .build()
        .expect("test host")
}

#[tokio::test(flavor = "multi_thread")]
async fn resolvers_get_an_appsync_event_and_answer_its_result() {
    let host = resolver_host();
    let (listener, base) = listen(&host).await;
    assert_eq!(
        listener.resolvers().list().collect::<Vec<_>>(),
        vec![
            ("Mutation", "spin", "graphql/spin"),
            ("Query", "checkEligibility", "graphql/check-eligibility"),
        ]
    );
    let client = reqwest::Client::new();
    let url = format!("{base}/resolvers/Query/checkEligibility");

    // AppSync's shape: arguments, identity, source from the body; info names
    // the field. testing/echo answers the event it got.
    let (status, event) = json_of(
        client
            .post(&url)
            .header("x-correlation-id", "cid-1")
            .json(&json!({
                "arguments": {"slug": "spring-tour", "doTransfer": false},
                "identity": {"sub": "fan-1"},
            }))
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(
        event["arguments"],
        json!({"slug": "spring-tour", "doTransfer": false})
    );
    assert_eq!(event["identity"], json!({"sub": "fan-1"}));
    assert_eq!(event["source"], Value::Null);
    assert_eq!(event["info"]["parentTypeName"], "Query");
    assert_eq!(event["info"]["fieldName"], "checkEligibility");
    assert_eq!(event["request"]["headers"]["x-correlation-id"], "cid-1");

    // A body without `arguments` is the arguments.
    let (status, event) = json_of(
        client
            .post(&url)
            .json(&json!({"slug": "s"}))
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["arguments"], json!({"slug": "s"}));
    assert_eq!(event["identity"], Value::Null);

    // An empty body: no arguments.
    let (status, event) = json_of(client.post(&url).send().await.expect("post")).await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["arguments"], json!({}));

    // The worker's typed error: 400 with AppSync's field names.
    let (status, body) = json_of(
        client
            .post(&url)
            .json(&json!({"arguments": {"fail": "campaign closed"}}))
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body,
        json!({"errorType": "Requested", "errorMessage": "campaign closed"})
    );
    listener.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn resolver_errors_unknown_bad_json_failed_and_wrong_method() {
    let host = resolver_host();
    let (listener, base) = listen(&host).await;
    let client = reqwest::Client::new();

    for path in [
        "/resolvers/Query/nope",
        "/resolvers/Query",
        "/resolvers/Query/checkEligibility/extra",
    ] {
        let (status, body) = json_of(
            client
                .post(format!("{base}{path}"))
                .json(&json!({}))
                .send()
                .await
                .expect("post"),
        )
        .await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["errorType"], "NotFound", "{body}");
        assert!(body["errorMessage"].is_string(), "{body}");
    }

    let (status, body) = json_of(
        client
            .post(format!("{base}/resolvers/Query/checkEligibility"))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errorType"], "InvalidJson", "{body}");

    // An invocation that fails (here: stopped at its deadline) is 500.
    let (status, body) = json_of(
        client
            .post(format!("{base}/resolvers/Mutation/spin"))
            .json(&json!({"arguments": {}}))
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["errorType"], "WorkerFailed", "{body}");

    let response = client
        .get(format!("{base}/resolvers/Query/checkEligibility"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(
        response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok()),
        Some("POST")
    );

    // The resolver worker is an invoke-worker: /invoke/ reaches it too.
    let (status, body) = json_of(
        client
            .post(format!("{base}/invoke/graphql/check-eligibility"))
            .json(&json!({"direct": true}))
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"direct": true}));
    listener.shutdown().await.expect("shutdown");
}

/// The Entry Service three times: at `/svc`, at `/svc/inner` (each on its
/// own table) and at `/` (the fallback), beside testing/echo and a resolver.
fn nested_host() -> TestHost {
    let entry_service = |route: &str, table: &str| {
        format!("trigger: {{ http: {{ route: {route} }} }}\ngrants: {{ tables: [{table}] }}\nsettings: {{ table: {table} }}")
    };
    TestHost::builder()
        .resources(
            "tables:\n  outer: { partition_key: PK, sort_key: SK }\n  inner: { partition_key: PK, sort_key: SK }\n  root: { partition_key: PK, sort_key: SK }",
        )
        .named_worker(
            "services/outer",
            &components::SERVICES_ENTRY_SERVICE,
            &entry_service("/svc", "outer"),
        )
        .named_worker(
            "services/inner",
            &components::SERVICES_ENTRY_SERVICE,
            &entry_service("/svc/inner", "inner"),
        )
        .named_worker(
            "services/root",
            &components::SERVICES_ENTRY_SERVICE,
            &entry_service("/", "root"),
        )
        .worker(&components::TESTING_ECHO, "trigger: { invoke: {} }")
        .named_worker(
            "graphql/check-eligibility",
            &components::TESTING_ECHO,
            "trigger: { resolver: { type_name: Query, field_name: checkEligibility } }",
        )
        .build()
        .expect("test host")
}

async fn listed(client: &reqwest::Client, url: String) -> usize {
    let (status, body) = json_of(client.get(url).send().await.expect("get")).await;
    assert_eq!(status, 200, "{body}");
    body["entries"].as_array().map(Vec::len).expect("entries")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_longest_whole_segment_route_wins_and_a_root_route_is_the_fallback() {
    let host = nested_host();
    // A socket bound before the listener is made (as `usher up` does to
    // configure the services with its address).
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let listener = HttpListener::serve(host.runtime.clone(), socket).expect("serve");
    let base = format!("http://{}", listener.local_addr());
    assert_eq!(
        listener.routes().list(),
        [
            ("/svc/inner".to_string(), "services/inner".to_string()),
            ("/svc".to_string(), "services/outer".to_string()),
            ("/".to_string(), "services/root".to_string()),
        ]
    );
    let client = reqwest::Client::new();
    let upsert = |prefix: &str, n: usize| {
        let entries: Vec<Value> = (0..n)
            .map(|i| json!({"campaignId": "c1", "globalUserId": format!("u{i}"), "version": 1, "marketId": "m1"}))
            .collect();
        client
            .post(format!("{base}{prefix}/entries/batch-upsert"))
            .json(&json!({ "entries": entries }))
            .send()
    };
    for (prefix, n) in [("/svc/inner", 2), ("/svc", 3), ("", 4)] {
        let (status, body) = json_of(upsert(prefix, n).await.expect("post")).await;
        assert_eq!(
            (status, &body["upserted"]),
            (200, &json!(n)),
            "{prefix}: {body}"
        );
    }
    // Each worker sees the path below its own route, on its own table.
    assert_eq!(
        listed(&client, format!("{base}/svc/inner/campaigns/c1/entries")).await,
        2
    );
    assert_eq!(
        listed(&client, format!("{base}/svc/campaigns/c1/entries")).await,
        3
    );
    assert_eq!(
        listed(&client, format!("{base}/campaigns/c1/entries")).await,
        4
    );
    assert_eq!(
        listed(&client, format!("{base}/svc/inner/campaigns/c1/entries/")).await,
        2
    );

    // Whole segments: /svc/innerX is below /svc, not /svc/inner; the
    // worker's own 404 names the path it got.
    let (status, body) = json_of(
        client
            .get(format!("{base}/svc/innerX/campaigns/c1/entries"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let message = body["error"].as_str().expect("an error");
    assert!(message.contains("/innerX/campaigns/c1/entries"), "{body}");
    assert!(!message.contains("/svc"), "{body}");
    // The route itself reaches its worker with the path `/`.
    for path in ["/svc/inner", "/svc/inner/"] {
        let (status, body) = json_of(
            client
                .get(format!("{base}{path}"))
                .send()
                .await
                .expect("get"),
        )
        .await;
        assert_eq!(status, 404, "{body}");
        assert!(
            !body["error"].as_str().expect("an error").contains("inner"),
            "{body}"
        );
    }

    // The listener's own endpoints are not the root worker's.
    let (status, body) = json_of(
        client
            .post(format!("{base}/invoke/testing/echo"))
            .json(&json!({"a": 1}))
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!((status, body), (200, json!({"a": 1})));
    let response = client
        .get(format!("{base}/invoke/testing/echo"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(
        response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    let (status, body) = json_of(
        client
            .post(format!("{base}/resolvers/Query"))
            .json(&json!({}))
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(
        (status, &body["errorType"]),
        (404, &json!("NotFound")),
        "{body}"
    );
    let (status, body) = json_of(
        client
            .post(format!("{base}/resolvers/Query/checkEligibility"))
            .json(&json!({"arguments": {"x": 1}}))
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(
        (status, &body["arguments"]),
        (200, &json!({"x": 1})),
        "{body}"
    );
    // Bodies over the limit are refused on the fallback too.
    let (status, body) = json_of(
        client
            .post(format!("{base}/entries/batch-upsert"))
            .body(vec![b' '; MAX_REQUEST_BYTES + 1])
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    listener.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_the_router_cannot_nest_stop_the_listener() {
    for (routes, refused) in [
        (vec!["/invoke"], "/invoke"),
        (vec!["/resolvers/Query"], "/resolvers/Query"),
        (vec!["/a/{id}"], "/a/{id}"),
        (vec!["/a", "/a/"], "/a/"),
    ] {
        let mut builder = TestHost::builder()
            .resources("tables: { entries: { partition_key: PK, sort_key: SK } }");
        for (i, route) in routes.iter().enumerate() {
            builder = builder.named_worker(
                &format!("services/s{i}"),
                &components::SERVICES_ENTRY_SERVICE,
                &format!("trigger: {{ http: {{ route: \"{route}\" }} }}\ngrants: {{ tables: [entries] }}\nsettings: {{ table: entries }}"),
            );
        }
        let host = builder.build().expect("test host");
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let error = HttpListener::bind(host.runtime.clone(), addr)
            .await
            .err()
            .unwrap_or_else(|| panic!("{routes:?}: the listener started"));
        match &error {
            ListenerError::Route { route, .. } => assert_eq!(route, refused, "{error}"),
            other => panic!("{routes:?}: not a route error: {other}"),
        }
    }
}
