//! replication/retry-score under wasmtime.

use serde_json::Value;
use usher_engine::Output;
use usher_testing::{json_response, FakeServices, TestHost};

fn host(services: std::sync::Arc<FakeServices>) -> TestHost {
    TestHost::builder()
        .registry_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../workers"))
        .services(services)
        .build()
        .expect("test host")
}

#[tokio::test]
async fn refreshes_scores_and_fails_only_the_malformed_message() {
    let services = FakeServices::ok();
    let host = host(services.clone());
    let out = host
        .invoke_json(
            "replication/retry-score",
            usher_testing::fixture("replication/retry-score.sqs.json"),
        )
        .await
        .expect("invocation");
    let Output::Batch(b) = &out.output else {
        panic!("{:?}", out.output)
    };
    assert_eq!(b.failures, vec!["r-2".to_string()]);
    let calls = services.calls_to("/scores/refresh");
    assert_eq!(calls.len(), 1);
    let body: Value = serde_json::from_str(calls[0].body.as_deref().unwrap_or("{}")).expect("json");
    assert_eq!(body["fans"][0]["globalUserId"], "u1");
}

#[tokio::test]
async fn a_failed_refresh_fails_its_messages() {
    let services = FakeServices::with(|_| Ok(json_response(503, "{}")));
    let host = host(services);
    let out = host
        .invoke_json(
            "replication/retry-score",
            usher_testing::fixture("replication/retry-score.sqs.json"),
        )
        .await
        .expect("invocation");
    let Output::Batch(b) = &out.output else {
        panic!("{:?}", out.output)
    };
    let mut failures = b.failures.clone();
    failures.sort();
    assert_eq!(failures, vec!["r-1".to_string(), "r-2".to_string()]);
    assert_eq!((b.count.processed, b.count.failed), (0, 2));
}
