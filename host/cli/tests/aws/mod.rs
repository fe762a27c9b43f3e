//! The AWS side of the end-to-end tests: the local servers (DynamoDB Local
//! for tables and their streams, moto for SQS and S3), the real `usher
//! lambda` binary run as functions against a local Lambda Runtime API
//! ([`runtime_api`]), and Lambda's event-source mappings run locally
//! ([`sources`]).

#![allow(dead_code)]

pub mod runtime_api;
pub mod sources;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::types::QueueAttributeName;
use usher_backend_aws::{AwsBackends, Service};
use usher_backend_conformance::server;
use usher_registry::Resources;

use runtime_api::RuntimeApi;
use serde_json::{json, Value};

use crate::common::{root, Platform};

/// Runs `usher` on the S3 component store with the servers' environment;
/// returns its standard output.
pub fn usher_s3(
    platform: &Platform,
    store: &str,
    env: &[(String, String)],
    args: &[&str],
) -> String {
    let out = crate::common::usher_at(&platform.registry_dir, store)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("usher runs");
    assert!(
        out.status.success(),
        "usher {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The `arn` (or `physical`) of a resource in `usher provision --json`.
pub fn provisioned(report: &Value, kind: &str, name: &str, field: &str) -> String {
    report[kind]
        .as_array()
        .and_then(|list| list.iter().find(|r| r["name"] == json!(name)))
        .and_then(|r| r[field].as_str())
        .unwrap_or_else(|| panic!("{kind} {name} is not in {report}"))
        .to_string()
}

/// The registry's resources provisioned on the servers under a fresh
/// prefix, and workers pushed and promoted on a fresh S3 component store.
pub struct Provisioned {
    /// The resource prefix (`e2e-…-`).
    pub prefix: String,
    /// The servers' environment for `usher` commands.
    pub env: Vec<(String, String)>,
    /// `s3://bucket/components`.
    pub store: String,
    /// `usher provision --json`.
    pub report: Value,
}

impl Provisioned {
    /// `usher provision` (visibility timeouts of 5 s) under a fresh prefix,
    /// then `usher push` + `usher promote` of each of `workers` (their
    /// built components, at the registry's versions) on a fresh bucket.
    pub async fn new(servers: &Servers, platform: &Platform, workers: &[&str]) -> Provisioned {
        let registry = platform.registry();
        let prefix = format!("{}-", usher_backend_conformance::unique_name("e2e"));
        let env = servers.env(&prefix);
        let bucket = usher_backend_conformance::unique_name("usher-store");
        servers.bucket(&bucket).await;
        let store = format!("s3://{bucket}/components");
        let report: Value = serde_json::from_str(&usher_s3(
            platform,
            &store,
            &env,
            &["provision", "--visibility-timeout", "5", "--json"],
        ))
        .expect("provision --json");
        for worker in workers {
            let version = registry.workers[*worker].component.version.to_string();
            let file = root().join(format!("build/components/{worker}.wasm"));
            let file = file.to_string_lossy();
            usher_s3(
                platform,
                &store,
                &env,
                &["push", worker, &file, "--version", &version],
            );
            usher_s3(platform, &store, &env, &["promote", worker, &version]);
        }
        Provisioned {
            prefix,
            env,
            store,
            report,
        }
    }

    /// The environment of an `usher lambda` function: the servers, the
    /// store, the registry, and `services` (`USHER_SERVICE_<NAME>_URL`s).
    pub fn function_env(
        &self,
        platform: &Platform,
        services: &[(&str, &str)],
    ) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        env.extend(
            [
                ("USHER_STORE", self.store.as_str()),
                ("USHER_ENV", "dev"),
                ("USHER_REGISTRY", &platform.registry_dir.to_string_lossy()),
                ("USHER_RELEASE_CHECK_SECS", "5"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        env.extend(services.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env
    }

    /// The `arn` (or `physical`) of a resource.
    pub fn resource(&self, kind: &str, name: &str, field: &str) -> String {
        provisioned(&self.report, kind, name, field)
    }
}

/// The local servers `scripts/servers` started.
#[derive(Debug, Clone)]
pub struct Servers {
    /// moto: SQS, SNS, S3, Secrets Manager.
    pub aws: String,
    /// DynamoDB Local: tables and streams.
    pub dynamodb: String,
}

impl Servers {
    /// The servers, or `None` (the test is skipped) when they are not
    /// running; under `USHER_REQUIRE_SERVERS=1` a missing one panics.
    pub fn from_env() -> Option<Servers> {
        Some(Servers {
            aws: server("USHER_TEST_AWS")?,
            dynamodb: server("USHER_TEST_DYNAMODB")?,
        })
    }

    async fn config(&self, endpoint: &str) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "test",
                "test",
                None,
                None,
                "usher-tests",
            ))
            .load()
            .await
    }

    pub async fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.config(&self.dynamodb).await)
    }

    pub async fn streams(&self) -> aws_sdk_dynamodbstreams::Client {
        aws_sdk_dynamodbstreams::Client::new(&self.config(&self.dynamodb).await)
    }

    pub async fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.config(&self.aws).await)
    }

    pub async fn kinesis(&self) -> aws_sdk_kinesis::Client {
        aws_sdk_kinesis::Client::new(&self.config(&self.aws).await)
    }

    /// Creates a Kinesis data stream of `shards` shards; its ARN once active.
    pub async fn kinesis_stream(&self, name: &str, shards: i32) -> String {
        let client = self.kinesis().await;
        client
            .create_stream()
            .stream_name(name)
            .shard_count(shards)
            .send()
            .await
            .expect("CreateStream");
        for _ in 0..100 {
            let summary = client
                .describe_stream_summary()
                .stream_name(name)
                .send()
                .await
                .expect("DescribeStreamSummary");
            let summary = summary.stream_description_summary().expect("a summary");
            if summary.stream_status() == &aws_sdk_kinesis::types::StreamStatus::Active {
                return summary.stream_arn().to_string();
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the Kinesis stream {name} never became active");
    }

    pub async fn s3(&self) -> aws_sdk_s3::Client {
        let config = self.config(&self.aws).await;
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        )
    }

    /// The environment of a process using these servers with every
    /// physical resource name under `prefix`.
    pub fn env(&self, prefix: &str) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.aws.as_str()),
            ("USHER_DYNAMODB_ENDPOINT_URL", self.dynamodb.as_str()),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("USHER_RESOURCE_PREFIX", prefix),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// The AWS backends the test process itself uses (to write the tables).
    pub async fn backends(&self, resources: &Resources, prefix: &str) -> AwsBackends {
        AwsBackends::builder()
            .endpoint_url(self.aws.clone())
            .service_endpoint_url(Service::DynamoDb, self.dynamodb.clone())
            .region("us-east-1")
            .credentials("test", "test")
            .resources(resources)
            .resource_prefix(prefix.to_string())
            .build()
            .await
            .expect("AWS backends")
    }

    /// Creates a bucket.
    pub async fn bucket(&self, name: &str) {
        self.s3()
            .await
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .expect("create bucket");
    }

    /// The messages in a queue (visible and in flight), as SQS counts them.
    pub async fn depth(&self, queue_url: &str) -> u64 {
        let out = self
            .sqs()
            .await
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes");
        let attrs = out.attributes().cloned().unwrap_or_default();
        [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .map(|a| {
            attrs
                .get(a)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
    }
}

/// One worker deployed as a function: the real `usher lambda` binary, in
/// `instances` processes polling one local Runtime API.
pub struct Function {
    pub api: Arc<RuntimeApi>,
    children: Vec<Child>,
    logs: Vec<PathBuf>,
}

impl Function {
    /// Starts `instances` processes of `usher lambda` serving `worker`,
    /// with `env` (the AWS servers, the store, the registry …) and the
    /// variables Lambda sets; their stderr goes to files in `dir`.
    pub async fn start(
        worker: &str,
        instances: usize,
        env: &[(String, String)],
        dir: &Path,
    ) -> Function {
        let name = worker.replace('/', "-");
        let api = Arc::new(RuntimeApi::start(worker).await);
        let mut children = Vec::new();
        let mut logs = Vec::new();
        for n in 0..instances {
            let log = dir.join(format!("{name}-{n}.log"));
            let mirror = dir.join(format!("{name}-{n}-mirror"));
            let child = Command::new(env!("CARGO_BIN_EXE_usher"))
                .arg("lambda")
                .envs(env.iter().map(|(k, v)| (k, v)))
                .env("USHER_WORKER", worker)
                .env("USHER_MIRROR", &mirror)
                .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
                .env("AWS_LAMBDA_FUNCTION_NAME", &name)
                .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
                .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
                .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
                .env("AWS_LAMBDA_LOG_STREAM_NAME", format!("instance-{n}"))
                .env("USHER_LOG", "warn,usher_trigger_lambda=info")
                .env("RUST_BACKTRACE", "0")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log file"))
                .spawn()
                .expect("usher lambda starts");
            children.push(child);
            logs.push(log);
        }
        Function {
            api,
            children,
            logs,
        }
    }

    /// Panics (with the logs) when an instance has exited.
    pub fn assert_running(&mut self) {
        for (n, child) in self.children.iter_mut().enumerate() {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!("instance {n} exited with {status}:\n{}", self.logs());
            }
        }
    }

    /// `kill -9` of every instance (a crash, or Lambda ending a timed-out
    /// invocation): an invocation in flight never gets its answer.
    pub fn kill(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits up to `within` for every instance to exit; their statuses.
    pub async fn wait_exit(
        &mut self,
        within: std::time::Duration,
    ) -> Vec<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        let mut statuses = Vec::new();
        for child in &mut self.children {
            loop {
                if let Some(status) = child.try_wait().expect("try_wait") {
                    statuses.push(status);
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "still running after {within:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        statuses
    }

    /// How many instances' logs contain `text`.
    pub fn log_lines(&self, text: &str) -> usize {
        self.logs
            .iter()
            .filter(|path| std::fs::read_to_string(path).is_ok_and(|log| log.contains(text)))
            .count()
    }

    /// Every instance's stderr (the last 40 lines of each).
    pub fn logs(&self) -> String {
        self.logs
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                format!("--- {}\n{}", path.display(), crate::common::tail(&text, 40))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
