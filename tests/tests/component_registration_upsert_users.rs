//! registration/upsert-users under wasmtime, on the repository's registry
//! (workers/registration.yaml, workers/services.yaml, resources.yaml): the
//! worker's `users` service calls reach services/user-service in the same
//! runtime (as `usher up` routes them to its listener), so the users land in
//! the embedded `users` table; and with a scripted failing User Service.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use common::message;
use serde_json::{json, Value};
use usher_capabilities::{CapError, ServiceBackend, ServiceRequest, ServiceResponse, TableBackend};
use usher_engine::{HttpRequest, Input, Output, Runtime};
use usher_testing::{json_response, FakeServices, TestHost};

const WORKER: &str = "registration/upsert-users";

/// The `users` service served by services/user-service in the runtime.
#[derive(Default)]
struct InProcessUsers {
    runtime: OnceLock<Arc<Runtime>>,
    calls: AtomicUsize,
}

#[async_trait]
impl ServiceBackend for InProcessUsers {
    async fn call(&self, request: ServiceRequest) -> Result<ServiceResponse, CapError> {
        if request.service != "users" {
            return Err(CapError::NotFound(request.service));
        }
        self.calls.fetch_add(1, Ordering::SeqCst);
        let runtime = self
            .runtime
            .get()
            .ok_or_else(|| CapError::Unavailable("no runtime yet".into()))?;
        let (path, query) = request
            .path
            .split_once('?')
            .unwrap_or((request.path.as_str(), ""));
        let input = Input::Http(HttpRequest {
            method: request.method.as_str().into(),
            path: path.into(),
            query: query.into(),
            headers: request.headers.clone(),
            body: request.body.unwrap_or_default().into_bytes(),
        });
        let out = runtime
            .invoke("services/user-service", &input, None)
            .await
            .map_err(|e| CapError::Unavailable(e.to_string()))?;
        match out.output {
            Output::Http(r) => Ok(ServiceResponse {
                status: r.status,
                headers: r.headers,
                body: String::from_utf8_lossy(&r.body).into_owned(),
            }),
            other => Err(CapError::Unavailable(format!(
                "not an HTTP answer: {other:?}"
            ))),
        }
    }
}

fn registry() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../workers")
}

fn batch(out: &Output) -> &usher_engine::BatchOutcome {
    match out {
        Output::Batch(b) => b,
        other => panic!("not a batch outcome: {other:?}"),
    }
}

fn user(id: &str) -> Value {
    json!({"globalUserId": id, "email": format!("{id}@example.com"), "country": "US", "tier": "gold"})
}

#[tokio::test]
async fn users_reach_the_user_service_and_invalid_ones_fail_their_message() {
    let users = Arc::new(InProcessUsers::default());
    let host = TestHost::builder()
        .registry_dir(registry())
        .service_backend(users.clone())
        .build()
        .expect("test host");
    let _ = users.runtime.set(host.runtime.clone());

    let mut messages = vec![
        message("one", user("u-single").to_string()),
        message("many", json!({"users": [user("u-a"), user("u-b")]}).to_string()),
        message("bad-email", json!({"globalUserId": "u-bad", "email": "nope"}).to_string()),
        message("mixed", json!({"users": [user("u-c"), {"globalUserId": "u-d", "email": "d@example.com", "country": "XX"}]}).to_string()),
        message("garbage", "{{".to_string()),
    ];
    // Enough users for three chunks.
    for i in 0..55 {
        messages.push(message(
            &format!("bulk-{i}"),
            user(&format!("bulk-{i:02}")).to_string(),
        ));
    }
    let out = host
        .invoke(WORKER, Input::Batch(messages))
        .await
        .expect("invocation");
    let result = batch(&out.output);
    let mut failures = result.failures.clone();
    failures.sort();
    assert_eq!(failures, ["bad-email", "garbage", "mixed"]);
    assert_eq!((result.count.received, result.count.failed), (60, 3));
    // 59 valid users: 3 chunks of ≤ 25 (one call_many: the unit tests
    // check that; the host records each of its requests as a `call`).
    assert_eq!(users.calls.load(Ordering::SeqCst), 3);
    assert_eq!(host.calls("services", "call").len(), 3);

    let tables = host.embedded.tables();
    for id in ["u-single", "u-a", "u-b", "u-c", "bulk-00", "bulk-54"] {
        let item = tables
            .get(
                "users",
                &json!({"PK": format!("USER#{id}"), "SK": "PROFILE"}),
            )
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("{id} stored"));
        assert_eq!(item["user"], user(id));
    }
    for id in ["u-bad", "u-d"] {
        let item = tables
            .get(
                "users",
                &json!({"PK": format!("USER#{id}"), "SK": "PROFILE"}),
            )
            .await
            .expect("get");
        assert!(item.is_none(), "{id} must not be stored");
    }
    // Redelivering the batch's good messages changes nothing and fails nothing.
    let again = host
        .invoke(
            WORKER,
            Input::Batch(vec![message("one", user("u-single").to_string())]),
        )
        .await
        .expect("invocation");
    assert!(batch(&again.output).failures.is_empty());
}

#[tokio::test]
async fn a_failing_user_service_fails_the_messages_of_its_chunk() {
    let services = FakeServices::with(|req| {
        let body: Value =
            serde_json::from_str(req.body.as_deref().unwrap_or("{}")).unwrap_or_default();
        let users = body["users"].as_array().cloned().unwrap_or_default();
        if users.iter().any(|u| u["globalUserId"] == "u-30") {
            return Ok(json_response(503, r#"{"error":"busy"}"#));
        }
        Ok(json_response(
            200,
            &json!({"upserted": users.len(), "failures": []}).to_string(),
        ))
    });
    let host = TestHost::builder()
        .registry_dir(registry())
        .services(services.clone())
        .build()
        .expect("test host");
    let messages = (0..40)
        .map(|i| message(&format!("m{i}"), user(&format!("u-{i}")).to_string()))
        .collect();
    let out = host
        .invoke(WORKER, Input::Batch(messages))
        .await
        .expect("invocation");
    let expected: Vec<String> = (25..40).map(|i| format!("m{i}")).collect();
    assert_eq!(batch(&out.output).failures, expected);
    let calls = services.calls_to("/users/batch-upsert");
    assert_eq!(calls.len(), 2);
    assert!(calls
        .iter()
        .all(|c| c.service == "users" && c.correlation_id == out.correlation_id));
}
