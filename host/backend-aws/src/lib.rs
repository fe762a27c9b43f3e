//! Usher's AWS backends: tables on DynamoDB, queues on SQS, topics on SNS,
//! objects on S3, and the host's own secrets from Secrets Manager.
//!
//! [`AwsBackends::from_env`] takes region, credentials and endpoints from
//! the standard AWS configuration chain (environment, profile, container or
//! instance role; `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>`
//! included), then applies Usher's overrides:
//!
//! ```text
//! USHER_AWS_ENDPOINT_URL             every service at one endpoint (local servers)
//! USHER_DYNAMODB_ENDPOINT_URL        one service (also USHER_SQS_, USHER_SNS_,
//! USHER_S3_ …, USHER_SECRETSMANAGER_ENDPOINT_URL)
//! USHER_AWS_REGION                   the region, over AWS_REGION and the profile's
//! USHER_RESOURCE_PREFIX              physical name = prefix + registry name
//! USHER_RESOURCE_NAMES               explicit names: `entries=prod-entries,work=https://sqs…/work`
//! ```
//!
//! A registry name maps to a physical name (explicit mapping first, else the
//! prefix). A queue's physical name may be its URL and a topic's its ARN;
//! otherwise queue URLs are resolved with `GetQueueUrl` and topic ARNs by
//! listing topics, once, and cached.
//!
//! Every AWS error becomes a [`CapError`]: a failed condition is
//! `ConditionFailed`, throttling `Throttled`, connection failures and
//! timeouts `Unavailable`, validation errors `Invalid`, missing resources
//! `NotFound`, access denied `Denied`.

#![deny(missing_docs)]

mod chunks;
mod dynamodb;
mod error;
mod messages;
mod provision;
mod s3;
mod secrets;
mod sns;
mod sqs;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use usher_capabilities::CapError;
use usher_registry::{Resources, TableDef};

pub use dynamodb::DynamoTables;
pub use provision::{ProvisionOptions, ProvisionReport, Provisioned};
pub use s3::{S3Objects, PART_SIZE};
pub use secrets::Secrets;
pub use sns::SnsTopics;
pub use sqs::SqsQueues;

/// Why the AWS backends could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// No region in the configuration chain nor in `USHER_AWS_REGION`.
    #[error("no AWS region: set AWS_REGION (or USHER_AWS_REGION, or a profile's region)")]
    NoRegion,
    /// An environment variable holds something unusable.
    #[error("{var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong.
        message: String,
    },
}

/// An AWS service Usher talks to, for per-service endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    /// DynamoDB (tables).
    DynamoDb,
    /// SQS (queues).
    Sqs,
    /// SNS (topics).
    Sns,
    /// S3 (objects).
    S3,
    /// Secrets Manager (the host's secrets).
    SecretsManager,
}

impl Service {
    /// Every service.
    pub const ALL: [Service; 5] = [
        Service::DynamoDb,
        Service::Sqs,
        Service::Sns,
        Service::S3,
        Service::SecretsManager,
    ];

    /// The variable overriding this service's endpoint, e.g.
    /// `USHER_DYNAMODB_ENDPOINT_URL`.
    pub fn endpoint_env_var(self) -> &'static str {
        match self {
            Service::DynamoDb => "USHER_DYNAMODB_ENDPOINT_URL",
            Service::Sqs => "USHER_SQS_ENDPOINT_URL",
            Service::Sns => "USHER_SNS_ENDPOINT_URL",
            Service::S3 => "USHER_S3_ENDPOINT_URL",
            Service::SecretsManager => "USHER_SECRETSMANAGER_ENDPOINT_URL",
        }
    }

    /// The AWS SDK's own variable for this service's endpoint, e.g.
    /// `AWS_ENDPOINT_URL_DYNAMODB`.
    fn aws_env_var(self) -> &'static str {
        match self {
            Service::DynamoDb => "AWS_ENDPOINT_URL_DYNAMODB",
            Service::Sqs => "AWS_ENDPOINT_URL_SQS",
            Service::Sns => "AWS_ENDPOINT_URL_SNS",
            Service::S3 => "AWS_ENDPOINT_URL_S3",
            Service::SecretsManager => "AWS_ENDPOINT_URL_SECRETS_MANAGER",
        }
    }
}

/// Maps registry (logical) resource names to physical AWS names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceNames {
    prefix: String,
    explicit: BTreeMap<String, String>,
}

impl ResourceNames {
    /// Names with this prefix before every registry name.
    pub fn with_prefix(prefix: impl Into<String>) -> ResourceNames {
        ResourceNames {
            prefix: prefix.into(),
            explicit: BTreeMap::new(),
        }
    }

    /// Maps one registry name to a physical name (for a queue also its URL,
    /// for a topic also its ARN), over the prefix.
    pub fn insert(&mut self, logical: impl Into<String>, physical: impl Into<String>) {
        self.explicit.insert(logical.into(), physical.into());
    }

    /// The physical name of a registry name.
    pub fn physical(&self, logical: &str) -> String {
        match self.explicit.get(logical) {
            Some(p) => p.clone(),
            None => format!("{}{logical}", self.prefix),
        }
    }

    /// Reads `logical=physical` pairs separated by commas (the format of
    /// `USHER_RESOURCE_NAMES`).
    pub fn parse_pairs(&mut self, text: &str) -> Result<(), String> {
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some((l, p)) if !l.trim().is_empty() && !p.trim().is_empty() => {
                    self.insert(l.trim(), p.trim());
                }
                _ => return Err(format!("`{pair}` is not `logical=physical`")),
            }
        }
        Ok(())
    }
}

/// Builds [`AwsBackends`]: configuration chain, endpoint overrides,
/// region, credentials, timeouts and resource names.
#[derive(Debug, Clone, Default)]
pub struct AwsBuilder {
    endpoint_url: Option<String>,
    service_endpoints: BTreeMap<Service, String>,
    region: Option<String>,
    credentials: Option<(String, String)>,
    names: ResourceNames,
    connect_timeout: Option<Duration>,
    operation_timeout: Option<Duration>,
    attempt_timeout: Option<Duration>,
    max_attempts: Option<u32>,
    tables: BTreeMap<String, TableDef>,
}

fn env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

impl AwsBuilder {
    /// A builder with Usher's environment variables applied (see the crate
    /// documentation).
    pub fn from_env() -> Result<AwsBuilder, AwsError> {
        let mut b = AwsBuilder {
            endpoint_url: env("USHER_AWS_ENDPOINT_URL"),
            region: env("USHER_AWS_REGION"),
            ..AwsBuilder::default()
        };
        for s in Service::ALL {
            if let Some(url) = env(s.endpoint_env_var()) {
                b.service_endpoints.insert(s, url);
            }
        }
        if let Some(prefix) = env("USHER_RESOURCE_PREFIX") {
            b.names.prefix = prefix;
        }
        if let Some(pairs) = env("USHER_RESOURCE_NAMES") {
            b.names
                .parse_pairs(&pairs)
                .map_err(|message| AwsError::Env {
                    var: "USHER_RESOURCE_NAMES".into(),
                    message,
                })?;
        }
        Ok(b)
    }

    /// The registry's resources: the tables' key schemas (a table not in
    /// them is `NotFound`).
    pub fn resources(mut self, resources: &Resources) -> AwsBuilder {
        self.tables = resources.tables.clone();
        self
    }

    /// One endpoint for every service (a local server).
    pub fn endpoint_url(mut self, url: impl Into<String>) -> AwsBuilder {
        self.endpoint_url = Some(url.into());
        self
    }

    /// The endpoint of one service, over [`AwsBuilder::endpoint_url`].
    pub fn service_endpoint_url(mut self, service: Service, url: impl Into<String>) -> AwsBuilder {
        self.service_endpoints.insert(service, url.into());
        self
    }

    /// The region, over the configuration chain's.
    pub fn region(mut self, region: impl Into<String>) -> AwsBuilder {
        self.region = Some(region.into());
        self
    }

    /// Static credentials instead of the chain's (for local servers).
    pub fn credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> AwsBuilder {
        self.credentials = Some((access_key_id.into(), secret_access_key.into()));
        self
    }

    /// The prefix of physical resource names.
    pub fn resource_prefix(mut self, prefix: impl Into<String>) -> AwsBuilder {
        self.names.prefix = prefix.into();
        self
    }

    /// The physical name of one registry name (for a queue also its URL,
    /// for a topic also its ARN).
    pub fn resource_name(
        mut self,
        logical: impl Into<String>,
        physical: impl Into<String>,
    ) -> AwsBuilder {
        self.names.insert(logical, physical);
        self
    }

    /// How long to wait for a connection.
    pub fn connect_timeout(mut self, timeout: Duration) -> AwsBuilder {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How long one call may take, retries included.
    pub fn operation_timeout(mut self, timeout: Duration) -> AwsBuilder {
        self.operation_timeout = Some(timeout);
        self
    }

    /// How long one attempt of a call may take.
    pub fn attempt_timeout(mut self, timeout: Duration) -> AwsBuilder {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// How many attempts a call gets (1: no retries).
    pub fn max_attempts(mut self, attempts: u32) -> AwsBuilder {
        self.max_attempts = Some(attempts.max(1));
        self
    }

    /// Loads the configuration chain and builds the clients.
    pub async fn build(self) -> Result<AwsBackends, AwsError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some((id, secret)) = &self.credentials {
            loader = loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                id.clone(),
                secret.clone(),
                None,
                None,
                "usher-static",
            ));
        }
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        if self.connect_timeout.is_some()
            || self.operation_timeout.is_some()
            || self.attempt_timeout.is_some()
        {
            let mut t = TimeoutConfig::builder();
            if let Some(d) = self.connect_timeout {
                t = t.connect_timeout(d);
            }
            if let Some(d) = self.operation_timeout {
                t = t.operation_timeout(d);
            }
            if let Some(d) = self.attempt_timeout {
                t = t.operation_attempt_timeout(d);
            }
            loader = loader.timeout_config(t.build());
        }
        if let Some(n) = self.max_attempts {
            loader = loader.retry_config(RetryConfig::standard().with_max_attempts(n));
        }
        let config = loader.load().await;
        if config.region().is_none() {
            return Err(AwsError::NoRegion);
        }
        Ok(self.clients(&config))
    }

    fn clients(self, config: &SdkConfig) -> AwsBackends {
        let endpoint = |s: Service| self.service_endpoints.get(&s).cloned();
        let names = Arc::new(self.names.clone());

        let mut ddb = aws_sdk_dynamodb::config::Builder::from(config);
        if let Some(url) = endpoint(Service::DynamoDb) {
            ddb = ddb.endpoint_url(url);
        }
        let mut sqs = aws_sdk_sqs::config::Builder::from(config);
        if let Some(url) = endpoint(Service::Sqs) {
            sqs = sqs.endpoint_url(url);
        }
        let mut sns = aws_sdk_sns::config::Builder::from(config);
        if let Some(url) = endpoint(Service::Sns) {
            sns = sns.endpoint_url(url);
        }
        // A local S3 answers at one host: path-style addressing.
        let s3_local = self.endpoint_url.is_some()
            || endpoint(Service::S3).is_some()
            || env("AWS_ENDPOINT_URL").is_some()
            || env(Service::S3.aws_env_var()).is_some();
        let mut s3 = aws_sdk_s3::config::Builder::from(config).force_path_style(s3_local);
        if let Some(url) = endpoint(Service::S3) {
            s3 = s3.endpoint_url(url);
        }
        let mut sm = aws_sdk_secretsmanager::config::Builder::from(config);
        if let Some(url) = endpoint(Service::SecretsManager) {
            sm = sm.endpoint_url(url);
        }

        AwsBackends {
            tables: Arc::new(DynamoTables::new(
                aws_sdk_dynamodb::Client::from_conf(ddb.build()),
                Arc::clone(&names),
                self.tables,
            )),
            queues: Arc::new(SqsQueues::new(
                aws_sdk_sqs::Client::from_conf(sqs.build()),
                Arc::clone(&names),
            )),
            topics: Arc::new(SnsTopics::new(
                aws_sdk_sns::Client::from_conf(sns.build()),
                Arc::clone(&names),
            )),
            objects: Arc::new(S3Objects::new(
                aws_sdk_s3::Client::from_conf(s3.build()),
                Arc::clone(&names),
            )),
            secrets: Arc::new(Secrets::new(aws_sdk_secretsmanager::Client::from_conf(
                sm.build(),
            ))),
            names,
        }
    }
}

/// The AWS backends of one host process. Cheap to clone.
#[derive(Clone)]
pub struct AwsBackends {
    tables: Arc<DynamoTables>,
    queues: Arc<SqsQueues>,
    topics: Arc<SnsTopics>,
    objects: Arc<S3Objects>,
    secrets: Arc<Secrets>,
    names: Arc<ResourceNames>,
}

impl AwsBackends {
    /// The backends configured from the standard AWS chain and Usher's
    /// environment variables, for the registry's resources.
    pub async fn from_env(resources: &Resources) -> Result<AwsBackends, AwsError> {
        AwsBuilder::from_env()?.resources(resources).build().await
    }

    /// A builder that reads no Usher environment variable (the AWS chain
    /// still applies).
    pub fn builder() -> AwsBuilder {
        AwsBuilder::default()
    }

    /// Tables on DynamoDB.
    pub fn tables(&self) -> Arc<DynamoTables> {
        Arc::clone(&self.tables)
    }

    /// Queues on SQS.
    pub fn queues(&self) -> Arc<SqsQueues> {
        Arc::clone(&self.queues)
    }

    /// Topics on SNS.
    pub fn topics(&self) -> Arc<SnsTopics> {
        Arc::clone(&self.topics)
    }

    /// Objects on S3.
    pub fn objects(&self) -> Arc<S3Objects> {
        Arc::clone(&self.objects)
    }

    /// The host's secrets in Secrets Manager.
    pub fn secrets(&self) -> Arc<Secrets> {
        Arc::clone(&self.secrets)
    }

    /// A secret's text (by name or ARN), e.g. the Kafka client certificate.
    pub async fn get_secret_string(&self, name: &str) -> Result<String, CapError> {
        self.secrets.get_secret_string(name).await
    }

    /// The mapping of registry names to physical names.
    pub fn names(&self) -> &ResourceNames {
        &self.names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names_map_explicitly_then_by_prefix() {
        let mut names = ResourceNames::with_prefix("prod-");
        names
            .parse_pairs(" entries = live-entries ,work=https://sqs.example/1/work,")
            .expect("pairs");
        assert_eq!(names.physical("entries"), "live-entries");
        assert_eq!(names.physical("work"), "https://sqs.example/1/work");
        assert_eq!(names.physical("users"), "prod-users");
        assert!(names.parse_pairs("nothing").is_err());
        assert!(names.parse_pairs("a=").is_err());
    }
}
