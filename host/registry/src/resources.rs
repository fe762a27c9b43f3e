//! `resources.yaml`: the infrastructure resources workers may be granted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::RegistryError;
use crate::names::check_resource_name;

/// The infrastructure resources of the registry (`resources.yaml`).
///
/// Terraform and the embedded backends both create exactly these.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Resources {
    /// DynamoDB-shaped tables, by name.
    pub tables: BTreeMap<String, TableDef>,
    /// Queues, by name.
    pub queues: BTreeMap<String, QueueDef>,
    /// Fan-out topics, by name.
    pub topics: BTreeMap<String, TopicDef>,
    /// Object buckets.
    pub buckets: Vec<String>,
    /// Kafka topics workers may produce to.
    pub event_topics: Vec<String>,
    /// Internal HTTP services, by name.
    pub services: BTreeMap<String, ServiceDef>,
}

impl Resources {
    /// Whether a table of this name exists.
    pub fn has_table(&self, name: &str) -> bool {
        self.tables.contains_key(name)
    }

    /// Whether a queue of this name exists.
    pub fn has_queue(&self, name: &str) -> bool {
        self.queues.contains_key(name)
    }

    /// Whether a topic of this name exists.
    pub fn has_topic(&self, name: &str) -> bool {
        self.topics.contains_key(name)
    }

    /// Whether a bucket of this name exists.
    pub fn has_bucket(&self, name: &str) -> bool {
        self.buckets.iter().any(|b| b == name)
    }

    /// Whether a Kafka topic of this name exists.
    pub fn has_event_topic(&self, name: &str) -> bool {
        self.event_topics.iter().any(|t| t == name)
    }

    /// Whether a service of this name exists.
    pub fn has_service(&self, name: &str) -> bool {
        self.services.contains_key(name)
    }

    /// Reads and validates a resources file. Returns the resources and the
    /// semantic problems found (unknown dead-letter queue, bad URL …); a file
    /// that cannot be parsed at all is an `Err`.
    pub(crate) fn parse_file(
        file: &Path,
    ) -> Result<(Resources, Vec<RegistryError>), RegistryError> {
        let text = std::fs::read_to_string(file).map_err(|source| RegistryError::Io {
            path: file.to_path_buf(),
            source,
        })?;
        Self::parse_str(file, &text)
    }

    pub(crate) fn parse_str(
        file: &Path,
        text: &str,
    ) -> Result<(Resources, Vec<RegistryError>), RegistryError> {
        let mut value: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| RegistryError::File {
                file: file.to_path_buf(),
                message: e.to_string(),
            })?;
        if value.is_null() {
            return Ok((Resources::default(), Vec::new()));
        }
        value.apply_merge().map_err(|e| RegistryError::File {
            file: file.to_path_buf(),
            message: e.to_string(),
        })?;
        let raw: RawResources =
            serde_path_to_error::deserialize(value).map_err(|e| RegistryError::File {
                file: file.to_path_buf(),
                message: crate::load::path_message(&e),
            })?;
        let resources = Resources {
            tables: raw.tables,
            queues: raw
                .queues
                .into_iter()
                .map(|(k, v)| (k, v.unwrap_or_default()))
                .collect(),
            topics: raw
                .topics
                .into_iter()
                .map(|(k, v)| (k, v.unwrap_or_default()))
                .collect(),
            buckets: raw.buckets,
            event_topics: raw.event_topics,
            services: raw.services,
        };
        let errors = resources.validate(file);
        Ok((resources, errors))
    }

    fn validate(&self, file: &Path) -> Vec<RegistryError> {
        let mut errors = Vec::new();
        let mut err = |kind: &'static str, name: &str, message: String| {
            errors.push(RegistryError::Resource {
                file: file.to_path_buf(),
                kind,
                name: name.to_string(),
                message,
            })
        };

        for (name, table) in &self.tables {
            if let Err(m) = check_resource_name(name) {
                err("table", name, m);
            }
            if table.partition_key.trim().is_empty() {
                err("table", name, "partition_key is empty".into());
            }
            if let Some(sk) = &table.sort_key {
                if sk.trim().is_empty() {
                    err("table", name, "sort_key is empty".into());
                } else if *sk == table.partition_key {
                    err(
                        "table",
                        name,
                        format!("sort_key `{sk}` is the same attribute as partition_key"),
                    );
                }
            }
        }

        for (name, queue) in &self.queues {
            if let Err(m) = check_resource_name(name) {
                err("queue", name, m);
            }
            if queue.visibility_timeout_s > QueueDef::MAX_VISIBILITY_TIMEOUT_S {
                err(
                    "queue",
                    name,
                    format!(
                        "visibility_timeout_s {} is out of range (0..={})",
                        queue.visibility_timeout_s,
                        QueueDef::MAX_VISIBILITY_TIMEOUT_S
                    ),
                );
            }
            if !(1..=QueueDef::MAX_RECEIVE_COUNT).contains(&queue.max_receive_count) {
                err(
                    "queue",
                    name,
                    format!(
                        "max_receive_count {} is out of range (1..={})",
                        queue.max_receive_count,
                        QueueDef::MAX_RECEIVE_COUNT
                    ),
                );
            }
            if !(QueueDef::MIN_RETENTION_S..=QueueDef::MAX_RETENTION_S).contains(&queue.retention_s)
            {
                err(
                    "queue",
                    name,
                    format!(
                        "retention_s {} is out of range ({}..={})",
                        queue.retention_s,
                        QueueDef::MIN_RETENTION_S,
                        QueueDef::MAX_RETENTION_S
                    ),
                );
            }
            if let Some(dlq) = &queue.dead_letter {
                if dlq == name {
                    err("queue", name, "dead_letter is the queue itself".into());
                } else if !self.queues.contains_key(dlq) {
                    err(
                        "queue",
                        name,
                        format!(
                            "dead_letter queue `{dlq}` is not defined under queues:{}",
                            known(self.queues.keys())
                        ),
                    );
                }
            }
        }

        for (name, topic) in &self.topics {
            if let Err(m) = check_resource_name(name) {
                err("topic", name, m);
            }
            for (i, sub) in topic.subscriptions.iter().enumerate() {
                if !self.queues.contains_key(&sub.queue) {
                    err(
                        "topic",
                        name,
                        format!(
                            "subscription {} names queue `{}`, which is not defined under queues:{}",
                            i + 1,
                            sub.queue,
                            known(self.queues.keys())
                        ),
                    );
                }
                if let Some(policy) = &sub.filter_policy {
                    if !policy.is_object() {
                        err(
                            "topic",
                            name,
                            format!(
                                "subscription {} (queue `{}`): filter_policy must be a mapping of attribute name to accepted values",
                                i + 1,
                                sub.queue
                            ),
                        );
                    }
                }
            }
        }

        for (kind, list) in [
            ("bucket", &self.buckets),
            ("event topic", &self.event_topics),
        ] {
            let mut seen = BTreeSet::new();
            for name in list {
                if let Err(m) = check_resource_name(name) {
                    err(kind, name, m);
                }
                if !seen.insert(name.as_str()) {
                    err(kind, name, "listed more than once".into());
                }
            }
        }

        for (name, service) in &self.services {
            if let Err(m) = check_resource_name(name) {
                err("service", name, m);
            }
            match url::Url::parse(&service.url) {
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                Ok(u) => err(
                    "service",
                    name,
                    format!(
                        "url `{}` has scheme `{}`; expected http or https",
                        service.url,
                        u.scheme()
                    ),
                ),
                Err(e) => err(
                    "service",
                    name,
                    format!("url `{}` does not parse: {e}", service.url),
                ),
            }
            if service.timeout_ms == 0 {
                err("service", name, "timeout_ms must be at least 1".into());
            }
        }
        errors
    }
}

/// `"; defined: a, b"` or `" (none are defined)"`, for error messages.
pub(crate) fn known<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        " (none are defined)".to_string()
    } else {
        format!(" (defined: {})", names.join(", "))
    }
}

/// A table's key schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableDef {
    /// The partition key attribute.
    pub partition_key: String,
    /// The sort key attribute, if the table has one.
    #[serde(default)]
    pub sort_key: Option<String>,
}

/// A queue's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueDef {
    /// Seconds a received message stays invisible to other receivers (default 30).
    pub visibility_timeout_s: u32,
    /// Receives after which a message moves to the dead-letter queue (default 3).
    pub max_receive_count: u32,
    /// The dead-letter queue, if any.
    pub dead_letter: Option<String>,
    /// Seconds a message is kept (default 14 days).
    pub retention_s: u64,
}

impl QueueDef {
    /// Default visibility timeout in seconds.
    pub const DEFAULT_VISIBILITY_TIMEOUT_S: u32 = 30;
    /// Default maximum receive count.
    pub const DEFAULT_MAX_RECEIVE_COUNT: u32 = 3;
    /// Default retention in seconds (14 days).
    pub const DEFAULT_RETENTION_S: u64 = 14 * 24 * 3600;
    /// Largest visibility timeout in seconds (12 hours, as SQS).
    pub const MAX_VISIBILITY_TIMEOUT_S: u32 = 12 * 3600;
    /// Largest maximum receive count (as SQS).
    pub const MAX_RECEIVE_COUNT: u32 = 1000;
    /// Smallest retention in seconds (as SQS).
    pub const MIN_RETENTION_S: u64 = 60;
    /// Largest retention in seconds (14 days, as SQS).
    pub const MAX_RETENTION_S: u64 = 14 * 24 * 3600;
}

impl Default for QueueDef {
    fn default() -> Self {
        QueueDef {
            visibility_timeout_s: Self::DEFAULT_VISIBILITY_TIMEOUT_S,
            max_receive_count: Self::DEFAULT_MAX_RECEIVE_COUNT,
            dead_letter: None,
            retention_s: Self::DEFAULT_RETENTION_S,
        }
    }
}

/// A fan-out topic and its subscriptions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicDef {
    /// The queues that receive the topic's messages.
    pub subscriptions: Vec<Subscription>,
}

/// One queue subscribed to a topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    /// The subscribed queue.
    pub queue: String,
    /// An SNS-style filter policy on message attributes
    /// (`{ type: [CAMPAIGN] }`); every message when absent.
    #[serde(default)]
    pub filter_policy: Option<serde_json::Value>,
}

/// An internal HTTP service workers may call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDef {
    /// The base URL (may be overridden at run time, see [`ServiceDef::effective_url`]).
    pub url: String,
    /// Timeout of one attempt, in milliseconds (default 3000).
    #[serde(default = "default_service_timeout_ms")]
    pub timeout_ms: u64,
    /// Retries after a 429, a 503 or a timeout (default 3).
    #[serde(default = "default_service_retries")]
    pub retries: u32,
}

fn default_service_timeout_ms() -> u64 {
    ServiceDef::DEFAULT_TIMEOUT_MS
}

fn default_service_retries() -> u32 {
    ServiceDef::DEFAULT_RETRIES
}

impl ServiceDef {
    /// Default timeout in milliseconds.
    pub const DEFAULT_TIMEOUT_MS: u64 = 3000;
    /// Default number of retries.
    pub const DEFAULT_RETRIES: u32 = 3;

    /// The environment variable that overrides the URL of service `name`:
    /// `USHER_SERVICE_<NAME>_URL`, the name upper-cased with every character
    /// other than a letter or digit replaced by `_` (`entries-v2` →
    /// `USHER_SERVICE_ENTRIES_V2_URL`).
    pub fn url_env_var(name: &str) -> String {
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("USHER_SERVICE_{name}_URL")
    }

    /// The URL to call for service `name`: the value of
    /// [`ServiceDef::url_env_var`] when that variable is set and not empty,
    /// the registry's `url` otherwise.
    pub fn effective_url(&self, name: &str) -> String {
        self.effective_url_with(name, |var| std::env::var(var).ok())
    }

    /// [`ServiceDef::effective_url`] with the environment lookup supplied by
    /// the caller (for tests, or a host that keeps its own environment map).
    pub fn effective_url_with(
        &self,
        name: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> String {
        match lookup(&Self::url_env_var(name)) {
            Some(url) if !url.trim().is_empty() => url.trim().to_string(),
            _ => self.url.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResources {
    #[serde(default)]
    tables: BTreeMap<String, TableDef>,
    #[serde(default)]
    queues: BTreeMap<String, Option<QueueDef>>,
    #[serde(default)]
    topics: BTreeMap<String, Option<TopicDef>>,
    #[serde(default)]
    buckets: Vec<String>,
    #[serde(default)]
    event_topics: Vec<String>,
    #[serde(default)]
    services: BTreeMap<String, ServiceDef>,
}
