//! A worker's validated registry entry.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::grants::Grants;

/// One worker of the registry, with every default applied and validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerSpec {
    /// The full name, `<domain>/<key>` (e.g. `replication/save-entries`).
    pub name: String,
    /// The domain the worker belongs to (the `domain:` of its file).
    pub domain: String,
    /// The component that implements the worker, pinned by digest.
    pub component: ComponentRef,
    /// What makes the worker run.
    pub trigger: Trigger,
    /// How many records one invocation receives at most.
    pub batch_size: u32,
    /// How many batches of a queue trigger run side by side at most (the
    /// SQS event source mapping's maximum concurrency; default 1; queue
    /// triggers only).
    pub concurrency: u32,
    /// Memory and time limits of one invocation.
    pub limits: Limits,
    /// The resources the worker may touch.
    pub grants: Grants,
    /// The worker's own settings (the `config` capability serves them).
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// The authentication of an http trigger (`trigger.http.auth`): the
    /// host verifies it before the worker runs. `None`: the route is open.
    pub http_auth: Option<crate::auth::HttpAuth>,
}

impl WorkerSpec {
    /// The largest accepted `concurrency`.
    pub const MAX_CONCURRENCY: u32 = 64;

    /// The worker's key inside its domain (the part after the `/`).
    pub fn key(&self) -> &str {
        self.name
            .split_once('/')
            .map_or(self.name.as_str(), |(_, key)| key)
    }

    /// The world the worker's component must export (from its trigger).
    pub fn world(&self) -> WorldKind {
        self.trigger.world()
    }
}

/// The component a worker runs: name, version and the digest of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentRef {
    /// The component's name in the store (defaults to the worker's full name).
    pub name: String,
    /// The pinned version.
    pub version: semver::Version,
    /// The SHA-256 of the component's bytes: 64 lowercase hex characters,
    /// without a `sha256:` prefix.
    pub sha256: String,
}

/// Memory and time limits of one invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Maximum linear memory, in MiB (1..=4096, default 64).
    pub memory_mb: u32,
    /// Maximum wall time of one invocation, in milliseconds (1..=900000, default 5000).
    pub timeout_ms: u64,
}

impl Limits {
    /// Default memory limit in MiB.
    pub const DEFAULT_MEMORY_MB: u32 = 64;
    /// Default timeout in milliseconds.
    pub const DEFAULT_TIMEOUT_MS: u64 = 5000;
    /// Largest accepted memory limit in MiB.
    pub const MAX_MEMORY_MB: u32 = 4096;
    /// Largest accepted timeout in milliseconds (15 minutes, as AWS Lambda).
    pub const MAX_TIMEOUT_MS: u64 = 900_000;

    /// The memory limit in bytes.
    pub fn memory_bytes(&self) -> u64 {
        u64::from(self.memory_mb) * 1024 * 1024
    }

    /// The timeout as a [`Duration`].
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mb: Self::DEFAULT_MEMORY_MB,
            timeout_ms: Self::DEFAULT_TIMEOUT_MS,
        }
    }
}

/// Where a stream follower starts reading when it has no checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartingPosition {
    /// Only records written after the follower starts.
    Latest,
    /// The oldest record still retained (the default).
    #[default]
    TrimHorizon,
}

/// One rule of a stream trigger's `filter`: a change passes when its new
/// image or its old image has `attribute` as a string equal to one of
/// `equals` or starting with one of `prefix`, or (`is`) as that boolean;
/// with `events`, only a change of one of those kinds (`INSERT`, `MODIFY`,
/// `REMOVE`) passes, and a rule of `events` alone (no attribute) passes
/// every change of those kinds. A change passes the filter when it passes
/// any rule (an empty filter passes everything). In AWS each rule becomes
/// the event-source mapping's filter criteria (one per image it can have,
/// and `eventName`), which is why a filter has at most two rules (Lambda
/// takes five filters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamFilterRule {
    /// The item attribute compared (e.g. `SK`); empty in a rule of
    /// `events` alone.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub attribute: String,
    /// Accepted values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub equals: Vec<String>,
    /// Accepted prefixes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefix: Vec<String>,
    /// The accepted boolean (instead of `equals` / `prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is: Option<bool>,
    /// The kinds of change the rule passes (`INSERT`, `MODIFY`, `REMOVE`);
    /// empty: every kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
}

impl StreamFilterRule {
    /// At most this many rules: each is up to two Lambda filters, Lambda
    /// takes five.
    pub const MAX_RULES: usize = 2;

    /// The kinds of change `events` may name.
    pub const EVENTS: [&'static str; 3] = ["INSERT", "MODIFY", "REMOVE"];

    /// Whether the rule compares an attribute (else it has `events` only).
    pub fn has_attribute(&self) -> bool {
        !self.attribute.is_empty()
    }

    /// Whether `image` (an item as plain JSON) passes this rule's attribute
    /// test (a rule of `events` alone: any image).
    pub fn matches(&self, image: &serde_json::Value) -> bool {
        if !self.has_attribute() {
            return true;
        }
        match image.get(&self.attribute) {
            Some(serde_json::Value::String(value)) => {
                self.equals.iter().any(|e| e == value)
                    || self.prefix.iter().any(|p| value.starts_with(p))
            }
            Some(serde_json::Value::Bool(b)) => self.is == Some(*b),
            _ => false,
        }
    }

    /// The kind of change with these images: INSERT (new only), MODIFY
    /// (both), REMOVE (old only).
    fn kind(
        new_image: Option<&serde_json::Value>,
        old_image: Option<&serde_json::Value>,
    ) -> Option<&'static str> {
        match (new_image.is_some(), old_image.is_some()) {
            (true, false) => Some("INSERT"),
            (true, true) => Some("MODIFY"),
            (false, true) => Some("REMOVE"),
            (false, false) => None,
        }
    }

    /// Whether a change with these images passes this rule.
    pub fn passes_rule(
        &self,
        new_image: Option<&serde_json::Value>,
        old_image: Option<&serde_json::Value>,
    ) -> bool {
        let Some(kind) = Self::kind(new_image, old_image) else {
            return false;
        };
        if !self.events.is_empty() && !self.events.iter().any(|e| e == kind) {
            return false;
        }
        new_image.is_some_and(|i| self.matches(i)) || old_image.is_some_and(|i| self.matches(i))
    }

    /// Whether a change with these images passes `filter` (any rule, either
    /// image; an empty filter passes everything).
    pub fn passes(
        filter: &[StreamFilterRule],
        new_image: Option<&serde_json::Value>,
        old_image: Option<&serde_json::Value>,
    ) -> bool {
        filter.is_empty()
            || filter
                .iter()
                .any(|rule| rule.passes_rule(new_image, old_image))
    }

    /// The Lambda filter patterns of `filter` (per rule: one per image the
    /// changes it passes can have, new then old, with `eventName` when it
    /// names events; a rule of `events` alone is one pattern on
    /// `eventName`), for a DynamoDB stream or, with `kinesis`, for DynamoDB
    /// records carried by a Kinesis stream (under `data`).
    pub fn lambda_patterns(filter: &[StreamFilterRule], kinesis: bool) -> Vec<serde_json::Value> {
        let mut patterns = Vec::new();
        let wrap = |record: serde_json::Value| {
            if kinesis {
                serde_json::json!({ "data": record })
            } else {
                record
            }
        };
        for rule in filter {
            let events = (!rule.events.is_empty()).then(|| serde_json::json!(rule.events));
            if !rule.has_attribute() {
                patterns.push(wrap(serde_json::json!({ "eventName": events })));
                continue;
            }
            let test = match rule.is {
                Some(b) => serde_json::json!({ "BOOL": [b] }),
                None => {
                    let accepted: Vec<serde_json::Value> = rule
                        .equals
                        .iter()
                        .map(|e| serde_json::json!(e))
                        .chain(
                            rule.prefix
                                .iter()
                                .map(|p| serde_json::json!({ "prefix": p })),
                        )
                        .collect();
                    serde_json::json!({ "S": accepted })
                }
            };
            let can = |kinds: [&str; 2]| {
                rule.events.is_empty() || rule.events.iter().any(|e| kinds.contains(&e.as_str()))
            };
            for (image, possible) in [
                ("NewImage", can(["INSERT", "MODIFY"])),
                ("OldImage", can(["MODIFY", "REMOVE"])),
            ] {
                if !possible {
                    continue;
                }
                let mut record = serde_json::json!({
                    "dynamodb": { image: { rule.attribute.clone(): test.clone() } }
                });
                if let Some(events) = &events {
                    record["eventName"] = events.clone();
                }
                patterns.push(wrap(record));
            }
        }
        patterns
    }
}

/// What makes a worker run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Messages of a queue, in batches.
    Queue {
        /// The queue (a `queues:` entry of resources.yaml).
        queue: String,
    },
    /// The change stream of a table.
    Stream {
        /// The table (a `tables:` entry of resources.yaml).
        table: String,
        /// How many times a failed batch is retried before it is given up (default 3).
        max_retries: u32,
        /// The queue that receives a record of each batch given up on, if any.
        on_failure: Option<String>,
        /// Where to start without a checkpoint (default trim horizon).
        starting_position: StartingPosition,
        /// Which changes reach the worker (empty: all of them); in AWS the
        /// event-source mapping's filter criteria.
        filter: Vec<StreamFilterRule>,
    },
    /// A schedule.
    Schedule {
        /// A cron expression with seconds (6 or 7 fields), e.g. `0 */5 * * * *`.
        cron: String,
    },
    /// Direct invocation (another worker, Step Functions, the CLI).
    Invoke,
    /// A GraphQL (AppSync-style) field resolver.
    Resolver {
        /// The GraphQL type, e.g. `Query`.
        type_name: String,
        /// The field of that type, e.g. `getEntries`.
        field_name: String,
    },
    /// An HTTP route of the host's listener.
    Http {
        /// The route, starting with `/`.
        route: String,
    },
}

impl Trigger {
    /// The world the worker's component must export for this trigger.
    pub fn world(&self) -> WorldKind {
        match self {
            Trigger::Queue { .. } => WorldKind::Batch,
            Trigger::Stream { .. } => WorldKind::Stream,
            Trigger::Schedule { .. } => WorldKind::Scheduled,
            Trigger::Invoke | Trigger::Resolver { .. } => WorldKind::Invoke,
            Trigger::Http { .. } => WorldKind::Http,
        }
    }

    /// The trigger's kind as written in the registry (`queue`, `stream`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Queue { .. } => "queue",
            Trigger::Stream { .. } => "stream",
            Trigger::Schedule { .. } => "schedule",
            Trigger::Invoke => "invoke",
            Trigger::Resolver { .. } => "resolver",
            Trigger::Http { .. } => "http",
        }
    }

    /// The default batch size for this trigger (10 for queues, 100 for streams, 1 otherwise).
    pub fn default_batch_size(&self) -> u32 {
        match self {
            Trigger::Queue { .. } => 10,
            Trigger::Stream { .. } => 100,
            _ => 1,
        }
    }

    /// The largest accepted batch size for this trigger (10000 for queues and streams, 1 otherwise).
    pub fn max_batch_size(&self) -> u32 {
        match self {
            Trigger::Queue { .. } | Trigger::Stream { .. } => 10_000,
            _ => 1,
        }
    }
}

/// The worlds of `wit/platform.wit` a worker component can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorldKind {
    /// `batch-worker`: queue messages in, per-message failures out.
    Batch,
    /// `stream-worker`: change records in, failed sequence numbers out.
    Stream,
    /// `invoke-worker`: JSON in, JSON or an error out.
    Invoke,
    /// `scheduled-worker`: a schedule tick in.
    Scheduled,
    /// `http-worker`: request in, response out.
    Http,
}

impl WorldKind {
    /// Every world kind.
    pub const ALL: [WorldKind; 5] = [
        WorldKind::Batch,
        WorldKind::Stream,
        WorldKind::Invoke,
        WorldKind::Scheduled,
        WorldKind::Http,
    ];

    /// The WIT world's name (`batch-worker`, `stream-worker`, …).
    pub fn world_name(&self) -> &'static str {
        match self {
            WorldKind::Batch => "batch-worker",
            WorldKind::Stream => "stream-worker",
            WorldKind::Invoke => "invoke-worker",
            WorldKind::Scheduled => "scheduled-worker",
            WorldKind::Http => "http-worker",
        }
    }

    /// The interface the world exports, without version
    /// (`usher:platform/batch-handler`, …).
    pub fn export_interface(&self) -> &'static str {
        match self {
            WorldKind::Batch => "usher:platform/batch-handler",
            WorldKind::Stream => "usher:platform/stream-handler",
            WorldKind::Invoke => "usher:platform/invoke-handler",
            WorldKind::Scheduled => "usher:platform/scheduled-handler",
            WorldKind::Http => "usher:platform/http-handler",
        }
    }

    /// The world kind whose exported interface is `name`, with or without a
    /// `@version` suffix.
    pub fn from_export_interface(name: &str) -> Option<WorldKind> {
        let unversioned = name.split_once('@').map_or(name, |(n, _)| n);
        WorldKind::ALL
            .into_iter()
            .find(|w| w.export_interface() == unversioned)
    }
}

impl fmt::Display for WorldKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.world_name())
    }
}
