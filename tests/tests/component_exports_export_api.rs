//! exports/export-api under wasmtime: jobs created (202, a run message),
//! an identical request answered with the same job (200), refusals with
//! their status and JSON reason.

use serde_json::{json, Value};
use usher_capabilities::TableBackend;
use usher_engine::{HttpRequest, Input, Output};
use usher_testing::{components, json_response, FakeServices, TestHost};

const RESOURCES: &str = "{ tables: { exports: { partition_key: PK, sort_key: SK } }, queues: { run-export: {} }, services: { campaigns: { url: 'http://campaigns.test' } } }";
const WORKER: &str = "trigger: { http: { route: /campaigns } }\ngrants: { tables: [exports], queues: [run-export], services: [campaigns] }";
const CLAIMS: &str = r#"{"sub":"ana","permissions":["REPORT"],"campaigns":["c1"]}"#;

fn host() -> TestHost {
    TestHost::builder()
        .resources(RESOURCES)
        .worker(&components::EXPORTS_EXPORT_API, WORKER)
        .services(FakeServices::with(|r| {
            Ok(match r.path.as_str() {
                "/campaigns/c1" => json_response(200, r#"{"id":"c1"}"#),
                "/campaigns/c1/markets/m1" => json_response(200, r#"{"id":"m1"}"#),
                _ => json_response(404, r#"{"error":"no"}"#),
            })
        }))
        .build()
        .expect("test host")
}

async fn call(
    host: &TestHost,
    method: &str,
    path: &str,
    claims: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let request = HttpRequest {
        method: method.into(),
        path: path.into(),
        query: String::new(),
        headers: claims
            .map(|c| vec![("x-usher-claims".to_string(), c.to_string())])
            .unwrap_or_default(),
        body: body.as_bytes().to_vec(),
    };
    let out = host
        .invoke("exports/export-api", Input::Http(request))
        .await
        .expect("invocation");
    match out.output {
        Output::Http(r) => (
            r.status,
            serde_json::from_slice(&r.body).unwrap_or(Value::Null),
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_job_is_created_queued_and_found_again() {
    let host = host();
    let (status, job) = call(
        &host,
        "POST",
        "/c1/exports",
        Some(CLAIMS),
        r#"{"exportType":"entries","marketId":"m1"}"#,
    )
    .await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["state"], "PENDING");
    let id = job["exportId"].as_str().expect("id").to_string();
    let queued = host
        .embedded
        .queues()
        .list("run-export", 10)
        .await
        .expect("list");
    assert_eq!(queued.len(), 1);
    assert_eq!(
        serde_json::from_str::<Value>(&queued[0].body).expect("json"),
        json!({"campaignId": "c1", "exportId": id})
    );
    let stored = host
        .embedded
        .tables()
        .get(
            "exports",
            &json!({"PK": "CAMPAIGN#c1", "SK": format!("EXPORT#{id}")}),
        )
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored["version"], 1);
    let (status, again) = call(
        &host,
        "POST",
        "/c1/exports",
        Some(CLAIMS),
        r#"{"exportType":"entries","marketId":"m1"}"#,
    )
    .await;
    assert_eq!(
        (status, again["exportId"].as_str()),
        (200, Some(id.as_str()))
    );
    let (status, listed) = call(&host, "GET", "/c1/exports", Some(CLAIMS), "").await;
    assert_eq!(status, 200);
    assert_eq!(listed["exports"][0]["exportId"], json!(id));
    let (status, one) = call(&host, "GET", &format!("/c1/exports/{id}"), Some(CLAIMS), "").await;
    assert_eq!((status, &one["state"]), (200, &json!("PENDING")));
}

#[tokio::test]
async fn each_refusal_has_its_status_and_reason() {
    let host = host();
    let no_report = r#"{"sub":"x","permissions":["READ"],"campaigns":["c1"]}"#;
    let big = format!(
        r#"{{"exportType":"entries","pad":"{}"}}"#,
        "x".repeat(17_000)
    );
    let cases = [
        (
            "POST",
            "/c1/exports",
            None,
            r#"{"exportType":"entries"}"#.to_string(),
            401,
            "no verified claims",
        ),
        (
            "POST",
            "/c1/exports",
            Some(no_report),
            r#"{"exportType":"entries"}"#.to_string(),
            403,
            "REPORT permission",
        ),
        (
            "POST",
            "/c2/exports",
            Some(CLAIMS),
            r#"{"exportType":"entries"}"#.to_string(),
            403,
            "not in the token's scope",
        ),
        (
            "POST",
            "/c1/exports",
            Some(CLAIMS),
            r#"{"exportType":"all"}"#.to_string(),
            400,
            "unknown exportType",
        ),
        (
            "POST",
            "/c1/exports",
            Some(CLAIMS),
            r#"{"exportType":"entries","marketId":"zz"}"#.to_string(),
            400,
            "has no market zz",
        ),
        (
            "POST",
            "/c1/exports",
            Some(CLAIMS),
            big,
            413,
            "larger than 16384 bytes",
        ),
        (
            "GET",
            "/c1/exports/0000000000001-abc",
            Some(CLAIMS),
            String::new(),
            404,
            "no export",
        ),
    ];
    for (method, path, claims, body, status, reason) in cases {
        let (got, answer) = call(&host, method, path, claims, &body).await;
        assert_eq!(got, status, "{method} {path}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(reason),
            "{status}: `{error}` lacks `{reason}`"
        );
    }
    assert!(host
        .embedded
        .queues()
        .list("run-export", 10)
        .await
        .expect("list")
        .is_empty());
}
