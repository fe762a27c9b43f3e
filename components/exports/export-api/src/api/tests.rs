use super::*;
use usher_sdk::fakes::{json_response, Fakes};
use usher_sdk::services::Method;

const CLAIMS: &str = r#"{"sub":"ana","permissions":["REPORT"],"campaigns":["c1"]}"#;

fn settings() -> Settings {
    Settings {
        table: "exports".into(),
        queue: "run-export".into(),
        campaign_service: "campaigns".into(),
    }
}

fn fakes() -> Fakes {
    Fakes::new().on_service("campaigns", |r| {
        assert_eq!(r.method, Method::Get);
        Ok(match r.path.as_str() {
            "/campaigns/c1" | "/campaigns/c2" => json_response(200, &json!({"id": "c1"})),
            "/campaigns/c1/markets/m1" => json_response(200, &json!({"id": "m1"})),
            _ => json_response(404, &json!({"error": "no"})),
        })
    })
}

fn request(method: &str, path: &str, claims: Option<&str>, body: &str) -> HttpRequest {
    HttpRequest {
        method: method.into(),
        path: path.into(),
        query: String::new(),
        headers: claims
            .map(|c| vec![("x-usher-claims".to_string(), c.to_string())])
            .unwrap_or_default(),
        body: body.as_bytes().to_vec(),
    }
}

fn call(method: &str, path: &str, claims: Option<&str>, body: &str) -> (u16, Value) {
    let answer = handle(&settings(), &request(method, path, claims, body));
    let value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    (answer.status, value)
}

#[test]
fn refusals_answer_their_status_and_a_json_reason() {
    let f = fakes();
    let _i = f.install();
    let post = |claims: Option<&str>, path: &str, body: &str| call("POST", path, claims, body);
    let cases: Vec<(u16, &str, (u16, Value))> = vec![
        (
            401,
            "no verified claims",
            post(None, "/c1/exports", r#"{"exportType":"entries"}"#),
        ),
        (
            403,
            "lacks the REPORT permission",
            post(
                Some(r#"{"sub":"x","permissions":["READ"],"campaigns":["c1"]}"#),
                "/c1/exports",
                r#"{"exportType":"entries"}"#,
            ),
        ),
        (
            403,
            "not in the token's scope",
            post(Some(CLAIMS), "/c2/exports", r#"{"exportType":"entries"}"#),
        ),
        (
            400,
            "unknown exportType",
            post(
                Some(CLAIMS),
                "/c1/exports",
                r#"{"exportType":"everything"}"#,
            ),
        ),
        (400, "not JSON", post(Some(CLAIMS), "/c1/exports", "{")),
        (
            400,
            "has no market m9",
            post(
                Some(CLAIMS),
                "/c1/exports",
                r#"{"exportType":"entries","marketId":"m9"}"#,
            ),
        ),
        (
            413,
            "larger than",
            post(
                Some(CLAIMS),
                "/c1/exports",
                &format!(r#"{{"exportType":"entries","x":"{}"}}"#, "a".repeat(20_000)),
            ),
        ),
        (
            404,
            "no campaign c3",
            post(
                Some(r#"{"sub":"x","permissions":["REPORT"],"campaigns":["*"]}"#),
                "/c3/exports",
                r#"{"exportType":"entries"}"#,
            ),
        ),
        (
            404,
            "no export",
            call("GET", "/c1/exports/123", Some(CLAIMS), ""),
        ),
        (
            403,
            "not in the token's scope",
            call("GET", "/c2/exports", Some(CLAIMS), ""),
        ),
    ];
    for (status, reason, (got, body)) in cases {
        assert_eq!(got, status, "{reason}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(reason),
            "{status}: `{error}` lacks `{reason}`"
        );
    }
    assert!(f.queued("run-export").is_empty(), "nothing was created");
}

#[test]
fn a_job_is_created_once_queued_and_listed() {
    let f = fakes();
    let _i = f.install();
    let (status, job) = call(
        "POST",
        "/c1/exports",
        Some(CLAIMS),
        r#"{"exportType":"entries","marketId":"m1"}"#,
    );
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["state"], "PENDING");
    assert_eq!(job["requestedBy"], "ana");
    let id = job["exportId"].as_str().expect("id").to_string();
    let queued = f.queued("run-export");
    assert_eq!(queued.len(), 1);
    assert_eq!(
        serde_json::from_str::<Value>(&queued[0].body).expect("json"),
        json!({"campaignId": "c1", "exportId": id})
    );
    // The identical request gets the same job, no second message.
    let (status, again) = call(
        "POST",
        "/c1/exports",
        Some(CLAIMS),
        r#"{"exportType":"entries","marketId":"m1"}"#,
    );
    assert_eq!(
        (status, again["exportId"].as_str()),
        (200, Some(id.as_str()))
    );
    assert_eq!(f.queued("run-export").len(), 1);
    // Another market (all markets) is another job.
    let (status, other) = call(
        "POST",
        "/c1/exports",
        Some(CLAIMS),
        r#"{"exportType":"entries"}"#,
    );
    assert_eq!(status, 202);
    assert_ne!(other["exportId"], job["exportId"]);

    let (status, one) = call("GET", &format!("/c1/exports/{id}"), Some(CLAIMS), "");
    assert_eq!((status, &one["exportId"]), (200, &json!(id)));
    assert!(one.get("fingerprint").is_none());

    let mut page = request("GET", "/c1/exports", Some(CLAIMS), "");
    page.query = "limit=1".into();
    let first = handle(&settings(), &page);
    let first: Value = serde_json::from_slice(&first.body).expect("json");
    assert_eq!(first["exports"].as_array().map(Vec::len), Some(1));
    let next = first["next"].as_str().expect("next").to_string();
    page.query = format!("limit=1&after={next}");
    let second: Value = serde_json::from_slice(&handle(&settings(), &page).body).expect("json");
    assert_eq!(second["exports"].as_array().map(Vec::len), Some(1));
    assert_ne!(
        second["exports"][0]["exportId"],
        first["exports"][0]["exportId"]
    );
}

#[test]
fn a_finished_job_does_not_stop_a_new_identical_one() {
    let f = fakes();
    let _i = f.install();
    let body = r#"{"exportType":"markets"}"#;
    let (_, job) = call("POST", "/c1/exports", Some(CLAIMS), body);
    let id = job["exportId"].as_str().expect("id");
    let key = job_key("c1", id);
    let mut item = table::get::<Value>("exports", &key)
        .expect("get")
        .expect("job");
    item["state"] = json!("FINISHED");
    table::put("exports", &item, None).expect("put");
    let (status, again) = call("POST", "/c1/exports", Some(CLAIMS), body);
    assert_eq!(status, 202, "{again}");
    assert_ne!(again["exportId"], job["exportId"]);
}
