//! `usher lambda`: one worker of the registry as an AWS Lambda function.

use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use usher_capabilities::{Backends, CacheBackend, CapError, Delivery, Event, EventBackend};
use usher_engine::LocalInvoker;
use usher_registry::Registry;
use usher_trigger_lambda::{LambdaConfig, LambdaHost};

use crate::store_cmds::Paths;

/// Reads the function's environment (the global `--registry`, `--store` and
/// `--env` read the same USHER_* variables), starts the worker and serves
/// invocations until the Lambda runtime API stops.
pub async fn run(paths: &Paths) -> Result<()> {
    check_lambda_environment()?;
    if let Some(task) = std::env::var("USHER_TASK").ok().filter(|t| !t.is_empty()) {
        return run_task(paths, &task).await;
    }
    let host = match init(paths).await {
        Ok(host) => host,
        Err(e) => {
            report_init_error(&e).await;
            return Err(e);
        }
    };
    usher_trigger_lambda::run(Arc::new(host))
        .await
        .map_err(|e| anyhow!("the Lambda runtime stopped: {e}"))
}

/// The host tasks a function can run instead of a worker (`USHER_TASK`).
pub const TASKS: [&str; 1] = [ARCHIVE_COMPACT];

/// `USHER_TASK=archive-compact` with `USHER_WORKER` naming an archive worker:
/// each invocation compacts that archive on S3, as `usher up`'s compaction
/// task does locally (the Terraform schedules it hourly). The event is the
/// scheduler's (anything without `day`: every closed day), or `{"day":
/// "YYYY-MM-DD"}` for that day only, closed or not. The answer lists the
/// days merged; a failure is the invocation's error, retried by the
/// schedule (a rerun with the same inputs writes the same object).
pub const ARCHIVE_COMPACT: &str = "archive-compact";

/// Runs a host task as the function (see [`TASKS`]).
async fn run_task(paths: &Paths, task: &str) -> Result<()> {
    let started = match task {
        ARCHIVE_COMPACT => archive_compact_init(paths).await,
        other => Err(anyhow!(
            "USHER_TASK is `{other}`, not a task of `usher lambda` (one of: {})",
            TASKS.join(", ")
        )),
    };
    let (objects, site) = match started {
        Ok(ready) => ready,
        Err(e) => {
            report_init_error(&e).await;
            return Err(e);
        }
    };
    let site = Arc::new(site);
    usher_trigger_lambda::run_task(move |event: serde_json::Value| {
        let (objects, site) = (objects.clone(), site.clone());
        async move {
            archive_compact(objects.as_ref(), &site, &event)
                .await
                .map_err(|e| format!("{e:#}"))
        }
    })
    .await
    .map_err(|e| anyhow!("the Lambda runtime stopped: {e}"))
}

/// The archive `USHER_WORKER` names, and S3.
async fn archive_compact_init(
    paths: &Paths,
) -> Result<(
    Arc<dyn usher_capabilities::ObjectBackend>,
    usher_registry::ArchiveSite,
)> {
    let worker = std::env::var("USHER_WORKER")
        .ok()
        .filter(|w| !w.is_empty())
        .ok_or_else(|| anyhow!("USHER_TASK={ARCHIVE_COMPACT} needs USHER_WORKER, the archive worker whose objects it compacts"))?;
    let registry = Registry::load(&paths.registry)
        .with_context(|| format!("loading the registry {}", paths.registry.display()))?;
    let site = registry
        .archive_sites()
        .into_iter()
        .find(|s| s.worker == worker)
        .ok_or_else(|| {
            anyhow!(
                "`{worker}` is not an archive of the registry (a worker of component {} with a `bucket` setting)",
                usher_registry::ARCHIVE_COMPONENT
            )
        })?;
    let objects = usher_backend_aws::AwsBackends::from_env(&registry.resources)
        .await
        .context("configuring the AWS backends")?
        .objects();
    Ok((objects, site))
}

/// One invocation of the `archive-compact` task.
async fn archive_compact(
    objects: &dyn usher_capabilities::ObjectBackend,
    site: &usher_registry::ArchiveSite,
    event: &serde_json::Value,
) -> Result<serde_json::Value> {
    let which = match event.get("day") {
        None | Some(serde_json::Value::Null) => crate::archive::Days::Closed,
        Some(serde_json::Value::String(d)) => crate::archive::Days::Only(d.clone()),
        Some(other) => return Err(anyhow!("`day` is {other}, not a day (\"YYYY-MM-DD\")")),
    };
    let reports = crate::archive::compact(objects, site, &which).await?;
    for r in &reports {
        tracing::info!(worker = %site.worker, folder = %r.folder, inputs = r.inputs.len(), records = r.records, duplicates = r.duplicates, "archive day compacted");
    }
    Ok(serde_json::json!({
        "worker": site.worker,
        "compacted": reports.iter().map(|r| serde_json::json!({
            "folder": r.folder,
            "inputs": r.inputs.len(),
            "output": r.output,
            "records": r.records,
            "duplicates": r.duplicates,
        })).collect::<Vec<_>>(),
    }))
}

/// Posts an init failure to the Runtime API's `/runtime/init/error`, so
/// Lambda reports it with its type (`UnknownWorker`, `ComponentStore` …,
/// `InitFailed` for the rest) rather than as a bare process exit.
async fn report_init_error(e: &anyhow::Error) {
    let error_type = e
        .downcast_ref::<usher_trigger_lambda::InitError>()
        .map_or("InitFailed", |e| e.error_type());
    let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") else {
        return;
    };
    let body = serde_json::json!({
        "errorType": error_type,
        "errorMessage": format!("{e:#}"),
        "stackTrace": [],
    });
    let sent = reqwest::Client::new()
        .post(format!("http://{api}/2018-06-01/runtime/init/error"))
        .header("Lambda-Runtime-Function-Error-Type", error_type)
        .json(&body)
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await;
    if let Err(report) = sent {
        tracing::error!(error = %report, "could not report the init error to the Runtime API");
    }
}

/// Loads the configuration and registry, builds the backends and starts
/// the worker.
async fn init(paths: &Paths) -> Result<LambdaHost> {
    let mut config = LambdaConfig::from_env()?;
    config.registry = paths.registry.clone();
    config.store = paths.location()?;
    config.env = paths.env.clone();
    let registry = Arc::new(config.load_registry()?);
    let invoker = Arc::new(LocalInvoker::new());
    let (backends, secrets) = lambda_backends(&registry, &config.worker, invoker.clone()).await?;
    let host = LambdaHost::init_with_secrets(
        &config,
        usher_trigger_lambda::default_engine()?,
        registry,
        Arc::new(backends),
        &secrets,
    )
    .await
    .with_context(|| format!("starting worker {}", config.worker))?;
    invoker.bind(host.runtime());
    Ok(host)
}

/// The variables Lambda sets and `lambda_runtime` requires: a clear error
/// outside Lambda (or a Runtime API emulator) rather than its panic.
fn check_lambda_environment() -> Result<()> {
    for var in [
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
    ] {
        if std::env::var(var).map_or(true, |v| v.is_empty()) {
            return Err(anyhow!(
                "{var} is not set: `usher lambda` runs inside AWS Lambda, or against a Lambda Runtime API emulator that sets it"
            ));
        }
    }
    let memory = std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").unwrap_or_default();
    if memory.parse::<i32>().is_err() {
        return Err(anyhow!(
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE is `{memory}`, not a size in MB: `usher lambda` runs inside AWS Lambda, or against a Lambda Runtime API emulator that sets it"
        ));
    }
    Ok(())
}

/// The backends `usher lambda` gives its worker: tables on DynamoDB, queues
/// on SQS, topics on SNS and objects on S3 (`usher-backend-aws`, from the
/// standard AWS configuration chain plus the `USHER_*_ENDPOINT_URL`,
/// `USHER_RESOURCE_PREFIX` and `USHER_RESOURCE_NAMES` overrides); events on
/// Kafka when `USHER_KAFKA_BROKERS` is set (TLS client certificate from the
/// Secrets Manager secret named by `USHER_KAFKA_CERT_SECRET`, its expiry
/// checked now); the cache on Redis when `USHER_REDIS_URL` is set, else an
/// in-memory TTL cache of this function instance; services over real HTTP
/// (`host/backend-http`); the codec of `usher-codec` (Avro, Parquet). Also
/// the Secrets Manager secrets the worker's http route names as JWT keys
/// (`trigger.http.auth`).
async fn lambda_backends(
    registry: &Registry,
    worker: &str,
    invoker: Arc<LocalInvoker>,
) -> Result<(Backends, usher_auth::MapSecrets)> {
    let aws = usher_backend_aws::AwsBackends::from_env(&registry.resources)
        .await
        .context("configuring the AWS backends")?;
    let mut secrets = usher_auth::MapSecrets::default();
    for name in usher_auth::secret_names(registry.workers.get(worker)) {
        let value = aws
            .get_secret_string(&name)
            .await
            .with_context(|| format!("reading the JWT key secret `{name}`"))?;
        secrets.0.insert(name, value);
    }
    let events: Arc<dyn EventBackend> = match std::env::var("USHER_KAFKA_BROKERS") {
        Ok(brokers) if !brokers.is_empty() => {
            let mut config = usher_backend_kafka::KafkaConfig::new(&brokers);
            if let Ok(secret) = std::env::var("USHER_KAFKA_CERT_SECRET") {
                let json = aws
                    .get_secret_string(&secret)
                    .await
                    .with_context(|| format!("reading the Kafka client certificate `{secret}`"))?;
                config.client_certificate = Some(
                    usher_backend_kafka::ClientCertificate::from_secret_json(&json)
                        .with_context(|| format!("the Kafka client certificate `{secret}`"))?,
                );
            }
            Arc::new(
                usher_backend_kafka::KafkaEvents::connect(&config)
                    .context("connecting the Kafka producer")?,
            )
        }
        _ => Arc::new(NoEvents),
    };
    let cache: Arc<dyn CacheBackend> = match std::env::var("USHER_REDIS_URL") {
        Ok(url) if !url.is_empty() => {
            let prefix = std::env::var("USHER_REDIS_PREFIX").unwrap_or_else(|_| "usher".into());
            Arc::new(
                usher_backend_redis::RedisCache::connect(
                    &url,
                    usher_backend_redis::RedisOptions::with_prefix(&prefix),
                )
                .await
                .context("configuring the Redis cache")?,
            )
        }
        _ => Arc::new(usher_backend_embedded::EmbeddedCache::new()),
    };
    let backends = Backends {
        table: aws.tables(),
        queue: aws.queues(),
        topic: aws.topics(),
        objects: aws.objects(),
        events,
        cache,
        services: crate::services::http_services(registry)?,
        codec: Arc::new(usher_codec::HostCodec),
        workers: invoker,
    };
    Ok((backends, secrets))
}

/// The events capability of a function without `USHER_KAFKA_BROKERS`: every
/// produce is answered `unsupported`, naming the missing setting.
struct NoEvents;

#[async_trait::async_trait]
impl EventBackend for NoEvents {
    async fn produce(
        &self,
        topic: &str,
        _events: Vec<Event>,
    ) -> Result<Vec<Result<Delivery, CapError>>, CapError> {
        Err(CapError::Unsupported(format!(
            "no Kafka brokers are configured for this function (USHER_KAFKA_BROKERS); cannot produce to `{topic}`"
        )))
    }
}
