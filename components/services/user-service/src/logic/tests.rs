use super::*;
use usher_sdk::fakes::Fakes;
use usher_sdk::Error;

const T: &str = "users";

fn call(method: &str, path: &str, query: &str, body: Option<Value>) -> (u16, Value) {
    let request = HttpRequest {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        ..HttpRequest::default()
    };
    let response = handle(&Settings::default(), &request);
    let value = serde_json::from_slice(&response.body).expect("a JSON answer");
    (response.status, value)
}

fn user(id: &str) -> Value {
    json!({"globalUserId": id, "email": format!("{id}@example.com"), "firstName": "Ada", "country": "US"})
}

#[test]
fn batch_upsert_stores_valid_users_and_fails_invalid_ones_alone() {
    let fakes = Fakes::new();
    let _i = fakes.install();
    let (status, body) = call(
        "POST",
        "/users/batch-upsert",
        "",
        Some(json!({"users": [
            user("u1"),
            {"globalUserId": "u2", "email": "not-an-email"},
            {"email": "x@example.com"},
            {"globalUserId": "u3", "email": "u3@example.com", "country": "XX"},
            {"globalUserId": "u4", "email": "u4@example.com", "country": "de", "vip": true},
        ]})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["upserted"], 2);
    let failures = body["failures"].as_array().expect("failures");
    let summary: Vec<(u64, Option<&str>)> = failures
        .iter()
        .map(|f| {
            (
                f["index"].as_u64().unwrap_or(99),
                f["globalUserId"].as_str(),
            )
        })
        .collect();
    assert_eq!(summary, [(1, Some("u2")), (2, None), (3, Some("u3"))]);
    assert!(failures[0]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("email")));
    assert!(failures[2]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("ISO")));
    assert_eq!(call("GET", "/users/u1", "", None), (200, user("u1")));
    assert_eq!(
        call("GET", "/users/u4", "", None).1,
        json!({"globalUserId": "u4", "email": "u4@example.com", "country": "DE", "vip": true})
    );
    assert_eq!(call("GET", "/users/u2", "", None).0, 404);
    assert_eq!(fakes.items(T).len(), 2);
}

#[test]
fn upsert_replaces_and_keeps_created_at() {
    let fakes = Fakes::new();
    let _i = fakes.install();
    batch_upsert(T, &json!({"users": [user("u1")]}), 1_000).expect("first");
    let mut changed = user("u1");
    changed["firstName"] = json!("Grace");
    let body =
        batch_upsert(T, &json!({"users": [changed.clone(), user("u2")]}), 5_000).expect("second");
    assert_eq!(body, json!({"upserted": 2, "failures": []}));
    let item = fakes.item(T, &user_key("u1")).expect("item");
    assert_eq!(item["user"], changed);
    assert_eq!(item["createdAt"], "1970-01-01T00:00:01.000Z");
    assert_eq!(item["updatedAt"], "1970-01-01T00:00:05.000Z");
    // The same user twice in one request: the last one wins.
    let mut last = user("u1");
    last["firstName"] = json!("Last");
    batch_upsert(T, &json!({"users": [user("u1"), last.clone()]}), 6_000).expect("third");
    assert_eq!(fakes.item(T, &user_key("u1")).expect("item")["user"], last);
}

#[test]
fn batch_limits_and_shapes() {
    let fakes = Fakes::new();
    let _i = fakes.install();
    let many: Vec<Value> = (0..26).map(|i| user(&format!("u{i}"))).collect();
    assert_eq!(
        call(
            "POST",
            "/users/batch-upsert",
            "",
            Some(json!({"users": many}))
        )
        .0,
        413
    );
    assert_eq!(
        call("POST", "/users/batch-upsert", "", Some(json!({"user": []}))).0,
        400
    );
    assert_eq!(
        call("POST", "/users/batch-upsert", "", Some(json!([]))).0,
        400
    );
    assert_eq!(call("GET", "/users/batch-upsert", "", None).0, 404);
    assert_eq!(call("DELETE", "/users/u1", "", None).0, 405);
    assert!(fakes.items(T).is_empty());
    let empty = call(
        "POST",
        "/users/batch-upsert",
        "",
        Some(json!({"users": []})),
    );
    assert_eq!(empty, (200, json!({"upserted": 0, "failures": []})));
}

fn job(id: &str, market: &str, fans: &[&str]) -> Value {
    json!({"jobId": id, "campaignId": "c1", "marketId": market, "templateId": "winner", "fans": fans})
}

#[test]
fn email_jobs_are_idempotent_by_job_id() {
    let fakes = Fakes::new();
    let _i = fakes.install();
    let (status, body) = call(
        "POST",
        "/email-jobs",
        "",
        Some(job("j1", "m1", &["u1", "u2", "u1"])),
    );
    assert_eq!(
        (status, body),
        (
            200,
            json!({"jobId": "j1", "enqueued": 2, "duplicate": false})
        )
    );
    let received = fakes.item(T, &job_key("j1")).expect("job")["receivedAt"].clone();
    let (status, body) = call(
        "POST",
        "/email-jobs",
        "",
        Some(job("j1", "m1", &["u1", "u2", "u1"])),
    );
    assert_eq!(
        (status, body),
        (
            200,
            json!({"jobId": "j1", "enqueued": 2, "duplicate": true})
        )
    );
    assert_eq!(
        fakes.item(T, &job_key("j1")).expect("job")["receivedAt"],
        received,
        "first receipt kept"
    );
    // The same jobId for another job.
    let answer = call("POST", "/email-jobs", "", Some(job("j1", "m1", &["u3"])));
    assert_eq!(answer.0, 409, "{answer:?}");
    let (status, full) = call("GET", "/email-jobs/j1", "", None);
    assert_eq!(status, 200);
    assert_eq!(full["fans"], json!(["u1", "u2"]));
    assert_eq!(full["receivedAt"], received);
    assert!(full.get("PK").is_none() && full.get("sendAt").is_none());
    assert_eq!(call("GET", "/email-jobs/none", "", None).0, 404);
}

#[test]
fn a_crash_between_the_job_and_its_index_is_repaired_by_the_retry() {
    let fakes = Fakes::new().intercept(|call, _| match call {
        usher_sdk::fakes::Call::Put { item, .. } if item["PK"] == "JOBS#c1" => {
            Some(Error::Unavailable("index down".into()))
        }
        _ => None,
    });
    {
        let _i = fakes.install();
        assert_eq!(
            call("POST", "/email-jobs", "", Some(job("j1", "m1", &["u1"]))).0,
            503
        );
    }
    // A fresh backend with the job item only.
    let job_item = fakes.item(T, &job_key("j1")).expect("job");
    let fakes = Fakes::new().with_item(T, job_item);
    let _i = fakes.install();
    assert_eq!(
        call("GET", "/email-jobs", "campaignId=c1", None).1["jobs"],
        json!([])
    );
    let body = call("POST", "/email-jobs", "", Some(job("j1", "m1", &["u1"]))).1;
    assert_eq!(body["duplicate"], true);
    assert_eq!(
        call("GET", "/email-jobs", "campaignId=c1", None).1["jobs"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[test]
fn email_job_validation() {
    let fakes = Fakes::new();
    let _i = fakes.install();
    let many: Vec<String> = (0..501).map(|i| format!("u{i}")).collect();
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"campaignId": "c", "marketId": "m", "templateId": "t", "fans": ["u"]}),
            400,
            "jobId is required",
        ),
        (
            {
                let mut j = job("j", "m", &["u"]);
                j["campaignId"] = json!("");
                j
            },
            400,
            "campaignId is empty",
        ),
        (
            {
                let mut j = job("j", "m", &["u"]);
                j["marketId"] = json!("a#b");
                j
            },
            400,
            "'#'",
        ),
        (
            {
                let mut j = job("j", "m", &["u"]);
                j["templateId"] = json!(3);
                j
            },
            400,
            "must be a string",
        ),
        (
            {
                let mut j = job("j", "m", &[]);
                j["fans"] = json!([]);
                j
            },
            400,
            "fans is empty",
        ),
        (
            {
                let mut j = job("j", "m", &[]);
                j["fans"] = json!(["u", 3]);
                j
            },
            400,
            "fans[1]",
        ),
        (
            {
                let mut j = job("j", "m", &[]);
                j["fans"] = json!(many);
                j
            },
            413,
            "at most 500",
        ),
        (
            {
                let mut j = job("j", "m", &["u"]);
                j["sendAt"] = json!("soon");
                j
            },
            400,
            "sendAt",
        ),
    ];
    for (body, status, reason) in cases {
        let answer = call("POST", "/email-jobs", "", Some(body.clone()));
        assert_eq!(answer.0, status, "{body}: {answer:?}");
        assert!(
            answer.1["error"]
                .as_str()
                .is_some_and(|e| e.contains(reason)),
            "{body}: {answer:?}"
        );
    }
    assert!(fakes.items(T).is_empty());
    let mut with_time = job("j", "m", &["u"]);
    with_time["sendAt"] = json!("2026-12-24T18:00:00Z");
    assert_eq!(call("POST", "/email-jobs", "", Some(with_time)).0, 200);
    let listed = call("GET", "/email-jobs", "campaignId=c1", None).1;
    assert_eq!(listed["jobs"][0]["sendAt"], "2026-12-24T18:00:00Z");
}

#[test]
fn jobs_are_listed_by_campaign_and_market_and_paged() {
    let fakes = Fakes::new().page_cap(1000);
    let _i = fakes.install();
    for (j, m) in [("j3", "m1"), ("j1", "m1"), ("j2", "m2"), ("j4", "m10")] {
        call("POST", "/email-jobs", "", Some(job(j, m, &["u1", "u2"])));
    }
    let mut other = job("j9", "m1", &["u1"]);
    other["campaignId"] = json!("c2");
    call("POST", "/email-jobs", "", Some(other));
    let ids = |page: &Value| -> Vec<String> {
        page["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|j| j["jobId"].as_str().map(String::from))
            .collect()
    };
    let (status, page) = call("GET", "/email-jobs", "campaignId=c1&marketId=m1", None);
    assert_eq!(status, 200);
    assert_eq!(ids(&page), ["j1", "j3"]);
    assert_eq!(page["next"], Value::Null);
    let first = &page["jobs"][0];
    assert_eq!(
        (
            &first["campaignId"],
            &first["marketId"],
            &first["templateId"],
            &first["fans"]
        ),
        (&json!("c1"), &json!("m1"), &json!("winner"), &json!(2))
    );
    assert!(first["receivedAt"].as_str().is_some_and(rfc3339::is_valid));
    // m1 does not list m10's jobs.
    assert_eq!(
        ids(&call("GET", "/email-jobs", "campaignId=c1&marketId=m10", None).1),
        ["j4"]
    );
    // The whole campaign, a page at a time.
    let mut all = Vec::new();
    let mut query = "campaignId=c1&limit=1".to_string();
    loop {
        let page = call("GET", "/email-jobs", &query, None).1;
        all.extend(ids(&page));
        match page["next"].as_str() {
            Some(next) => {
                query = format!("campaignId=c1&limit=1&after={}", next.replace('#', "%23"))
            }
            None => break,
        }
        assert!(all.len() < 10, "paging terminates");
    }
    assert_eq!(all, ["j1", "j3", "j4", "j2"]);
    assert_eq!(call("GET", "/email-jobs", "", None).0, 400);
    assert_eq!(
        call("GET", "/email-jobs", "campaignId=c1&limit=0", None).0,
        400
    );
    assert_eq!(
        call(
            "GET",
            "/email-jobs",
            "campaignId=c1&marketId=m1&after=m2%23j2",
            None
        )
        .0,
        400
    );
}

#[test]
fn a_job_is_triggered_once_and_not_before_its_send_time() {
    let fakes = Fakes::new();
    let _i = fakes.install();
    let mut j = job("r#c1#m1#0", "m1", &["u1", "u2"]);
    j["sendAt"] = json!("2030-01-01T00:00:10.000Z");
    assert_eq!(call("POST", "/email-jobs", "", Some(j)).0, 200);
    let due = rfc3339::parse_millis("2030-01-01T00:00:10.000Z").expect("time");
    // Before its sendAt: refused, nothing recorded.
    let early = trigger_job(T, "r#c1#m1#0", due - 1).expect_err("early");
    assert_eq!(early.status, 409);
    assert!(fakes.item(T, &trigger_key("r#c1#m1#0")).is_none());
    // The first trigger sends it; every later one answers the first time.
    let first = trigger_job(T, "r#c1#m1#0", due + 5_000).expect("first");
    assert_eq!(
        first,
        json!({"jobId": "r#c1#m1#0", "triggered": true, "triggeredAt": "2030-01-01T00:00:15.000Z", "fans": 2})
    );
    for later in [due + 6_000, due + 60_000] {
        let again = trigger_job(T, "r#c1#m1#0", later).expect("again");
        assert_eq!(again["triggered"], false);
        assert_eq!(again["triggeredAt"], "2030-01-01T00:00:15.000Z");
    }
    // The job and its listing show when it was triggered.
    let (status, full) = call("GET", "/email-jobs/r%23c1%23m1%230", "", None);
    assert_eq!(status, 200, "{full}");
    assert_eq!(full["triggeredAt"], "2030-01-01T00:00:15.000Z");
    let listed = call("GET", "/email-jobs", "campaignId=c1&marketId=m1", None).1;
    assert_eq!(listed["jobs"][0]["triggeredAt"], "2030-01-01T00:00:15.000Z");
    // Through the route; an unknown job is a 404.
    let (status, body) = call("POST", "/email-jobs/r%23c1%23m1%230/trigger", "", None);
    assert_eq!((status, body["triggered"].clone()), (200, json!(false)));
    assert_eq!(call("POST", "/email-jobs/nope/trigger", "", None).0, 404);
}

#[test]
fn a_crash_after_the_trigger_record_is_repaired_by_the_retry() {
    let fakes = Fakes::new().intercept(|call, _| match call {
        usher_sdk::fakes::Call::Update { key, .. } if key["SK"] == "JOB" => {
            Some(Error::Unavailable("table down".into()))
        }
        _ => None,
    });
    {
        let _i = fakes.install();
        assert_eq!(
            call("POST", "/email-jobs", "", Some(job("j1", "m1", &["u1"]))).0,
            200
        );
        assert_eq!(trigger_job(T, "j1", 1_000).expect_err("down").status, 503);
    }
    let items: Vec<Value> = [
        job_key("j1"),
        trigger_key("j1"),
        index_key("c1", "m1", "j1"),
    ]
    .iter()
    .filter_map(|k| fakes.item(T, k))
    .collect();
    assert_eq!(items.len(), 3, "the trigger record was written");
    let mut fresh = Fakes::new();
    for item in items {
        fresh = fresh.with_item(T, item);
    }
    let _i = fresh.install();
    let again = trigger_job(T, "j1", 2_000).expect("retry");
    assert_eq!(again["triggered"], false, "sent by the first attempt");
    assert_eq!(
        fresh.item(T, &job_key("j1")).expect("job")["triggeredAt"],
        again["triggeredAt"]
    );
}
