//! services/user-service under wasmtime: the User Service's HTTP contract
//! (components/services/user-service/openapi.yaml) on an embedded table,
//! with one e-mail job sent many times at once.

use serde_json::{json, Value};
use usher_capabilities::TableBackend;
use usher_engine::{HttpRequest, Input, Output, Runtime};
use usher_testing::{components, TestHost};

const WORKER: &str = "services/user-service";

fn host() -> TestHost {
    TestHost::builder()
        .resources("tables: { users: { partition_key: PK, sort_key: SK } }")
        .worker(
            &components::SERVICES_USER_SERVICE,
            "trigger: { http: { route: /services/users } }\ngrants: { tables: [users] }\nsettings: { table: users }",
        )
        .build()
        .expect("test host")
}

async fn call_on(
    runtime: &Runtime,
    method: &str,
    path: &str,
    query: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let input = Input::Http(HttpRequest {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
    });
    let out = runtime
        .invoke(WORKER, &input, None)
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

async fn call(
    host: &TestHost,
    method: &str,
    path: &str,
    query: &str,
    body: Option<Value>,
) -> (u16, Value) {
    call_on(&host.runtime, method, path, query, body.as_ref()).await
}

fn user(id: &str) -> Value {
    json!({"globalUserId": id, "email": format!("{id}@example.com"), "firstName": "Ada", "country": "GB", "locale": "en-GB"})
}

#[tokio::test]
async fn batch_upsert_fails_invalid_users_alone() {
    let host = host();
    let (status, body) = call(
        &host,
        "POST",
        "/users/batch-upsert",
        "",
        Some(json!({"users": [
            user("u1"),
            {"globalUserId": "u2", "email": "u2-at-example.com"},
            {"globalUserId": "u3", "email": "u3@example.com", "country": "Britain"},
            user("u4"),
        ]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["upserted"], 2);
    let failures = body["failures"].as_array().expect("failures");
    assert_eq!(
        failures
            .iter()
            .map(|f| (f["index"].as_u64(), f["globalUserId"].as_str()))
            .collect::<Vec<_>>(),
        [(Some(1), Some("u2")), (Some(2), Some("u3"))]
    );
    assert_eq!(
        call(&host, "GET", "/users/u1", "", None).await,
        (200, user("u1"))
    );
    assert_eq!(call(&host, "GET", "/users/u2", "", None).await.0, 404);
    let item = host
        .embedded
        .tables()
        .get("users", &json!({"PK": "USER#u4", "SK": "PROFILE"}))
        .await
        .expect("get")
        .expect("item");
    assert_eq!(item["user"], user("u4"));
    assert!(item["createdAt"].as_str().is_some_and(|t| t.ends_with('Z')));
    let many: Vec<Value> = (0..26).map(|i| user(&format!("u{i}"))).collect();
    assert_eq!(
        call(
            &host,
            "POST",
            "/users/batch-upsert",
            "",
            Some(json!({"users": many}))
        )
        .await
        .0,
        413
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_job_sent_many_times_at_once_is_enqueued_once() {
    let host = host();
    let job = json!({"jobId": "job-1", "campaignId": "c1", "marketId": "m1", "templateId": "winners",
                     "fans": ["u1", "u2", "u3"], "sendAt": "2026-12-24T18:00:00Z"});
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let runtime = host.runtime.clone();
            let job = job.clone();
            tokio::spawn(
                async move { call_on(&runtime, "POST", "/email-jobs", "", Some(&job)).await },
            )
        })
        .collect();
    let mut fresh = 0;
    for task in tasks {
        let (status, body) = task.await.expect("task");
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            (&body["jobId"], &body["enqueued"]),
            (&json!("job-1"), &json!(3))
        );
        if body["duplicate"] == json!(false) {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1, "exactly one request enqueued the job");
    let (status, page) = call(
        &host,
        "GET",
        "/email-jobs",
        "campaignId=c1&marketId=m1",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let jobs = page["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (&jobs[0]["fans"], &jobs[0]["templateId"], &jobs[0]["sendAt"]),
        (&json!(3), &json!("winners"), &json!("2026-12-24T18:00:00Z"))
    );
    assert!(jobs[0]["receivedAt"]
        .as_str()
        .is_some_and(|t| t.starts_with("20")));
    let (_, full) = call(&host, "GET", "/email-jobs/job-1", "", None).await;
    assert_eq!(full["fans"], json!(["u1", "u2", "u3"]));
    // The same id for another job.
    let mut other = job.clone();
    other["templateId"] = json!("losers");
    assert_eq!(
        call(&host, "POST", "/email-jobs", "", Some(other)).await.0,
        409
    );
}

#[tokio::test]
async fn jobs_are_listed_a_page_at_a_time() {
    let host = host();
    for i in 0..7 {
        let market = if i % 2 == 0 { "m1" } else { "m2" };
        let job = json!({"jobId": format!("j{i}"), "campaignId": "c1", "marketId": market,
                         "templateId": "t", "fans": [format!("u{i}")]});
        assert_eq!(
            call(&host, "POST", "/email-jobs", "", Some(job)).await.0,
            200
        );
    }
    let mut seen = Vec::new();
    let mut query = "campaignId=c1&limit=3".to_string();
    for _ in 0..10 {
        let (status, page) = call(&host, "GET", "/email-jobs", &query, None).await;
        assert_eq!(status, 200, "{page}");
        let jobs = page["jobs"].as_array().expect("jobs");
        assert!(jobs.len() <= 3);
        seen.extend(jobs.iter().map(|j| {
            format!(
                "{}/{}",
                j["marketId"].as_str().unwrap_or(""),
                j["jobId"].as_str().unwrap_or("")
            )
        }));
        match page["next"].as_str() {
            Some(next) => {
                query = format!("campaignId=c1&limit=3&after={}", next.replace('#', "%23"))
            }
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["m1/j0", "m1/j2", "m1/j4", "m1/j6", "m2/j1", "m2/j3", "m2/j5"]
    );
    let (_, page) = call(
        &host,
        "GET",
        "/email-jobs",
        "campaignId=c1&marketId=m2",
        None,
    )
    .await;
    assert_eq!(page["jobs"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        call(&host, "GET", "/email-jobs", "marketId=m2", None)
            .await
            .0,
        400
    );
}

#[tokio::test]
async fn an_email_job_triggered_many_times_at_once_is_sent_once() {
    let host = host();
    let job = json!({"jobId": "winner#c1#m1#d1#0", "campaignId": "c1", "marketId": "m1", "templateId": "reminder-winner",
                     "fans": ["u1", "u2"], "sendAt": "2026-01-01T00:00:00Z"});
    assert_eq!(
        call(&host, "POST", "/email-jobs", "", Some(job)).await.0,
        200
    );
    let later = json!({"jobId": "later", "campaignId": "c1", "marketId": "m1", "templateId": "reminder-winner",
                       "fans": ["u3"], "sendAt": "2999-01-01T00:00:00Z"});
    assert_eq!(
        call(&host, "POST", "/email-jobs", "", Some(later)).await.0,
        200
    );
    let path = "/email-jobs/winner%23c1%23m1%23d1%230/trigger";
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let runtime = host.runtime.clone();
            tokio::spawn(async move { call_on(&runtime, "POST", path, "", None).await })
        })
        .collect();
    let mut first = 0;
    let mut times = std::collections::BTreeSet::new();
    for task in tasks {
        let (status, body) = task.await.expect("task");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["fans"], 2);
        first += usize::from(body["triggered"] == json!(true));
        times.insert(
            body["triggeredAt"]
                .as_str()
                .expect("triggeredAt")
                .to_string(),
        );
    }
    assert_eq!(first, 1, "exactly one trigger sent the job");
    assert_eq!(
        times.len(),
        1,
        "every answer names the one trigger: {times:?}"
    );
    let (_, full) = call(
        &host,
        "GET",
        "/email-jobs/winner%23c1%23m1%23d1%230",
        "",
        None,
    )
    .await;
    assert_eq!(
        full["triggeredAt"].as_str(),
        times.iter().next().map(String::as_str)
    );
    // Not due yet: refused; unknown: 404.
    let (status, body) = call(&host, "POST", "/email-jobs/later/trigger", "", None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        call(&host, "POST", "/email-jobs/none/trigger", "", None)
            .await
            .0,
        404
    );
}
