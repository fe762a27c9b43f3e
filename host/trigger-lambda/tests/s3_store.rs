//! `usher lambda` on an S3 component store (moto_server on 127.0.0.1): init
//! mirrors the live component (verified) and its precompiled artifact; a new
//! release pushed and promoted to S3 is served after the check interval
//! without restarting; a component altered on S3 is refused at init.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Fixture;
use serde_json::json;
use usher_backend_embedded::Embedded;
use usher_capabilities::NoCodec;
use usher_engine::LocalInvoker;
use usher_store::{ComponentStore, Digest, S3Store};
use usher_testing::{components, FakeServices};
use usher_trigger_lambda::{LambdaConfig, LambdaHost};

/// Points the AWS configuration chain at the local server (the same values
/// for every test of this file).
fn use_local_aws(endpoint: &str) {
    std::env::set_var("AWS_ENDPOINT_URL", endpoint);
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    std::env::set_var("AWS_REGION", "us-east-1");
}

async fn bucket() -> (S3Store, String) {
    let client = S3Store::client_from_env().await;
    let bucket = usher_backend_conformance::unique_name("usher-lambda");
    client
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    (S3Store::new(client, &bucket, "store"), bucket)
}

fn config(fx: &Fixture, worker: &str, bucket: &str, interval: &str) -> LambdaConfig {
    let registry = fx.registry.display().to_string();
    let mirror = fx.dir.path().join("mirror").display().to_string();
    let (worker, bucket, interval) = (worker.to_string(), bucket.to_string(), interval.to_string());
    LambdaConfig::from_lookup(|name| match name {
        "USHER_WORKER" => Some(worker.clone()),
        "USHER_STORE" => Some(format!("s3://{bucket}/store")),
        "USHER_REGISTRY" => Some(registry.clone()),
        "USHER_ENV" => Some("prod".into()),
        "USHER_RELEASE_CHECK_SECS" => Some(interval.clone()),
        "USHER_MIRROR" => Some(mirror.clone()),
        _ => None,
    })
    .expect("config")
}

async fn init(config: &LambdaConfig) -> Result<LambdaHost, usher_trigger_lambda::InitError> {
    let registry = Arc::new(config.load_registry().expect("registry"));
    let embedded = Embedded::in_memory(&registry.resources).expect("embedded");
    let invoker = Arc::new(LocalInvoker::new());
    let backends = embedded.backends(FakeServices::ok(), Arc::new(NoCodec), invoker.clone());
    let host = LambdaHost::init(
        config,
        usher_testing::shared_engine(),
        registry,
        Arc::new(backends),
    )
    .await?;
    invoker.bind(host.runtime());
    Ok(host)
}

async fn push(store: &S3Store, worker: &str, version: &str, bytes: &[u8]) -> Digest {
    let engine = usher_testing::shared_engine();
    let digest = store.put_component(bytes).await.expect("put");
    store
        .write_precompiled(
            &digest,
            engine.engine_key(),
            &engine.precompile(bytes).expect("precompile"),
        )
        .await
        .expect("precompiled");
    store
        .record_version(worker, &version.parse().expect("version"), &digest)
        .await
        .expect("record");
    digest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_promoted_on_s3_is_hot_swapped_after_the_interval() {
    let Some(endpoint) = usher_backend_conformance::server("USHER_TEST_AWS") else {
        return;
    };
    use_local_aws(&endpoint);
    let fx = Fixture::new();
    let (store, bucket) = bucket().await;
    let worker = "testing/echo";
    // The registry pin is in the store, nothing promoted yet: the pin serves.
    let pinned = push(&store, worker, "0.1.0", &components::TESTING_ECHO.bytes()).await;
    let config = config(&fx, worker, &bucket, "1");
    let host = init(&config).await.expect("init");
    assert_eq!(host.live_version(), Some("0.1.0".parse().expect("v")));
    assert_eq!(
        host.handle(json!({"x": 1})).await.expect("echo"),
        json!({"x": 1})
    );
    // The mirror holds the verified component and the precompiled artifact.
    let mirror = usher_store::LocalStore::open(&config.mirror).expect("mirror");
    assert!(mirror.read_component(&pinned).is_ok());
    assert!(mirror.has_precompiled(&pinned, usher_testing::shared_engine().engine_key()));

    // A new version (the counter component, also an invoke-worker) is pushed
    // and promoted on S3.
    push(
        &store,
        worker,
        "0.2.0",
        &components::TESTING_COUNTER.bytes(),
    )
    .await;
    store
        .promote("prod", worker, &"0.1.0".parse().expect("v"))
        .await
        .expect("promote the pin first");
    store
        .promote("prod", worker, &"0.2.0".parse().expect("v"))
        .await
        .expect("promote");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reply = host.handle(json!({"x": 1})).await.expect("counter");
    assert_eq!(reply, json!({"calls": 1, "remembered": 1}));
    assert_eq!(host.live_version(), Some("0.2.0".parse().expect("v")));

    // Rolled back on S3: the next check swaps back.
    store.rollback("prod", worker).await.expect("rollback");
    let swaps = host.check_release().await.expect("check");
    assert_eq!(swaps.len(), 1, "{swaps:?}");
    assert_eq!(
        host.handle(json!({"y": 2})).await.expect("echo"),
        json!({"y": 2})
    );
    // Nothing changed: no swap.
    assert!(host.check_release().await.expect("check").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_refuses_a_component_altered_on_s3() {
    let Some(endpoint) = usher_backend_conformance::server("USHER_TEST_AWS") else {
        return;
    };
    use_local_aws(&endpoint);
    let fx = Fixture::new();
    let (store, bucket) = bucket().await;
    let worker = "testing/echo";
    let pinned = Digest::of(&components::TESTING_ECHO.bytes());
    // Other bytes under the pinned digest's name.
    S3Store::client_from_env()
        .await
        .put_object()
        .bucket(&bucket)
        .key(format!("store/components/{}.wasm", pinned.file_stem()))
        .body(components::TESTING_COUNTER.bytes().into())
        .send()
        .await
        .expect("tamper");
    drop(store);
    let err = init(&config(&fx, worker, &bucket, "30"))
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("the file was modified or corrupted"), "{err}");
    assert!(err.contains(&format!("s3://{bucket}/store")), "{err}");

    // A bucket that does not exist.
    let err = init(&config(&fx, worker, "no-such-bucket-usher", "30"))
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("the bucket cannot be reached"), "{err}");
}
