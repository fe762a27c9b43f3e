//! `usher lambda`: one worker of the registry as an AWS Lambda function.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use usher_backend_embedded::Embedded;
use usher_capabilities::{Backends, NoCodec};
use usher_engine::LocalInvoker;
use usher_registry::Registry;
use usher_trigger_lambda::{LambdaConfig, LambdaHost};

use crate::store_cmds::Paths;

/// Reads the function's environment (the global `--registry`, `--store` and
/// `--env` read the same USHER_* variables), starts the worker and serves
/// invocations until the Lambda runtime API stops.
pub async fn run(paths: &Paths) -> Result<()> {
    let mut config = LambdaConfig::from_env()?;
    config.registry = paths.registry.clone();
    config.store = paths.location()?;
    config.env = paths.env.clone();
    let registry = Arc::new(config.load_registry()?);
    let invoker = Arc::new(LocalInvoker::new());
    let backends = lambda_backends(&registry, invoker.clone())?;
    let host = LambdaHost::init(
        &config,
        usher_trigger_lambda::default_engine()?,
        registry,
        Arc::new(backends),
    )
    .await
    .with_context(|| format!("starting worker {}", config.worker))?;
    invoker.bind(host.runtime());
    usher_trigger_lambda::run(Arc::new(host))
        .await
        .map_err(|e| anyhow!("the Lambda runtime stopped: {e}"))
}

/// The backends `usher lambda` gives its worker.
///
/// NOT YET AWS: until `usher-backend-aws` is wired here, the tables,
/// queues, topics, objects, events and cache are the embedded ones in
/// `USHER_DATA` (default `/tmp/usher-data`, Lambda's writable folder), the
/// services are real HTTP (`host/backend-http`) and the codec is `NoCodec`.
/// Replace the embedded part with `AwsBackends` (DynamoDB, SQS, SNS, S3)
/// when that crate lands.
fn lambda_backends(registry: &Registry, invoker: Arc<LocalInvoker>) -> Result<Backends> {
    let data = std::env::var_os("USHER_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/usher-data"));
    tracing::warn!(data = %data.display(), "usher lambda runs on the embedded backends (the AWS backends are not wired yet)");
    let embedded = Embedded::open(&data, &registry.resources)
        .with_context(|| format!("opening the embedded backends in {}", data.display()))?;
    let services = crate::services::http_services(registry)?;
    Ok(embedded.backends(services, Arc::new(NoCodec), invoker))
}
