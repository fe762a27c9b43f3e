//! An S3 store whose endpoint nobody listens on: a clear init error, quickly,
//! no panic. (Its own test binary: it points the AWS configuration chain at
//! a closed port.)

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Fixture;
use usher_backend_embedded::Embedded;
use usher_capabilities::NoCodec;
use usher_engine::LocalInvoker;
use usher_testing::FakeServices;
use usher_trigger_lambda::{LambdaConfig, LambdaHost};

#[tokio::test]
async fn an_unreachable_store_endpoint_is_a_clear_init_error() {
    // Port 9 (discard) on loopback: nothing listens there.
    std::env::set_var("AWS_ENDPOINT_URL", "http://127.0.0.1:9");
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    std::env::set_var("AWS_REGION", "us-east-1");
    let fx = Fixture::new();
    let registry_dir = fx.registry.display().to_string();
    let config = LambdaConfig::from_lookup(|name| match name {
        "USHER_WORKER" => Some("testing/echo".into()),
        "USHER_STORE" => Some("s3://usher-components/prod".into()),
        "USHER_REGISTRY" => Some(registry_dir.clone()),
        _ => None,
    })
    .expect("config");
    let registry = Arc::new(config.load_registry().expect("registry"));
    let embedded = Embedded::in_memory(&registry.resources).expect("embedded");
    let backends = embedded.backends(
        FakeServices::ok(),
        Arc::new(NoCodec),
        Arc::new(LocalInvoker::new()),
    );
    let started = Instant::now();
    let err = LambdaHost::init(
        &config,
        usher_testing::shared_engine(),
        registry,
        Arc::new(backends),
    )
    .await
    .err()
    .expect("refused")
    .to_string();
    assert!(
        err.starts_with("component store s3://usher-components/prod: s3://usher-components: the bucket cannot be reached"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}
