//! Grants: which resources a worker may touch, and the capabilities they map to.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The WIT package every capability interface belongs to.
pub const PLATFORM_PACKAGE: &str = "usher:platform";

/// The resources a worker may touch, by kind.
///
/// A name ending in `*` grants every resource whose name starts with what
/// precedes the `*` (`"*"` alone grants every resource of the kind).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Grants {
    /// Tables (`table` capability).
    pub tables: Vec<String>,
    /// Queues it may send to (`queue` capability).
    pub queues: Vec<String>,
    /// Topics it may publish to (`topic` capability).
    pub topics: Vec<String>,
    /// Object buckets (`objects` capability).
    pub buckets: Vec<String>,
    /// Internal HTTP services (`services` capability).
    pub services: Vec<String>,
    /// Kafka topics it may produce to (`events` capability).
    pub events: Vec<String>,
    /// Workers it may invoke, by full name (`workers` capability).
    pub workers: Vec<String>,
    /// Whether it may use the cache.
    pub cache: bool,
    /// Whether it may use the Avro/Parquet codec.
    pub codec: bool,
}

impl Grants {
    /// Whether the worker may use capability `cap` on `resource`.
    ///
    /// `log` and `config` are always allowed; `cache` and `codec` follow
    /// their flag (the resource is ignored); the others need a grant naming
    /// the resource exactly, or a grant ending in `*` that is a prefix of it.
    pub fn allows(&self, cap: Capability, resource: &str) -> bool {
        match cap {
            Capability::Log | Capability::Config => true,
            Capability::Cache => self.cache,
            Capability::Codec => self.codec,
            _ => self
                .list(cap)
                .iter()
                .any(|grant| grant_matches(grant, resource)),
        }
    }

    /// Whether the worker may use capability `cap` at all: at least one
    /// resource of its kind is granted, or its flag is set, or it is `log` or
    /// `config`. The host refuses to start a component that imports a
    /// capability its grants do not cover.
    pub fn covers(&self, cap: Capability) -> bool {
        match cap {
            Capability::Log | Capability::Config => true,
            Capability::Cache => self.cache,
            Capability::Codec => self.codec,
            _ => !self.list(cap).is_empty(),
        }
    }

    /// The granted names for a resource-scoped capability (empty for `log`,
    /// `config`, `cache` and `codec`, which have no resource list).
    pub fn list(&self, cap: Capability) -> &[String] {
        match cap {
            Capability::Table => &self.tables,
            Capability::Queue => &self.queues,
            Capability::Topic => &self.topics,
            Capability::Objects => &self.buckets,
            Capability::Events => &self.events,
            Capability::Services => &self.services,
            Capability::Workers => &self.workers,
            Capability::Log | Capability::Config | Capability::Cache | Capability::Codec => &[],
        }
    }

    /// The `usher:platform` capability imports among `imports` that these
    /// grants do not cover, in order. Imports of other packages (WASI …) and
    /// the type-only `usher:platform/types` interface are not capabilities
    /// and are never reported; an unknown `usher:platform/…` interface is.
    pub fn ungranted_imports<'a>(
        &self,
        imports: impl IntoIterator<Item = &'a str>,
    ) -> Vec<&'a str> {
        imports
            .into_iter()
            .filter(|name| {
                let Some(interface) = platform_interface(name) else {
                    return false;
                };
                if interface == "types" {
                    return false;
                }
                match Capability::from_interface(name) {
                    Some(cap) => !self.covers(cap),
                    None => true,
                }
            })
            .collect()
    }
}

fn grant_matches(grant: &str, resource: &str) -> bool {
    match grant.strip_suffix('*') {
        Some(prefix) => resource.starts_with(prefix),
        None => grant == resource,
    }
}

/// The interface name inside `usher:platform` (`table` for
/// `usher:platform/table@0.1.0`), or `None` for another package.
fn platform_interface(name: &str) -> Option<&str> {
    let unversioned = name.split_once('@').map_or(name, |(n, _)| n);
    unversioned
        .strip_prefix(PLATFORM_PACKAGE)?
        .strip_prefix('/')
}

/// A capability interface a worker component may import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// `log`: structured logging (always allowed).
    Log,
    /// `config`: the worker's own settings (always allowed).
    Config,
    /// `table`: DynamoDB-shaped tables (`grants.tables`).
    Table,
    /// `queue`: sending to queues (`grants.queues`).
    Queue,
    /// `topic`: publishing to topics (`grants.topics`).
    Topic,
    /// `objects`: object buckets (`grants.buckets`).
    Objects,
    /// `events`: Kafka topics (`grants.events`).
    Events,
    /// `cache`: the cache (`grants.cache`).
    Cache,
    /// `services`: internal HTTP services (`grants.services`).
    Services,
    /// `codec`: Avro/Parquet encoding (`grants.codec`).
    Codec,
    /// `workers`: invoking other workers (`grants.workers`).
    Workers,
}

impl Capability {
    /// Every capability.
    pub const ALL: [Capability; 11] = [
        Capability::Log,
        Capability::Config,
        Capability::Table,
        Capability::Queue,
        Capability::Topic,
        Capability::Objects,
        Capability::Events,
        Capability::Cache,
        Capability::Services,
        Capability::Codec,
        Capability::Workers,
    ];

    /// The capability of a WIT interface name, with or without version:
    /// `usher:platform/table@0.1.0` and `usher:platform/table` both give
    /// [`Capability::Table`]. `None` for anything else, including the
    /// type-only `usher:platform/types`.
    pub fn from_interface(name: &str) -> Option<Capability> {
        let interface = platform_interface(name)?;
        Capability::ALL
            .into_iter()
            .find(|cap| cap.interface() == interface)
    }

    /// The interface's name inside the package (`table`, `objects`, …).
    pub fn interface(&self) -> &'static str {
        match self {
            Capability::Log => "log",
            Capability::Config => "config",
            Capability::Table => "table",
            Capability::Queue => "queue",
            Capability::Topic => "topic",
            Capability::Objects => "objects",
            Capability::Events => "events",
            Capability::Cache => "cache",
            Capability::Services => "services",
            Capability::Codec => "codec",
            Capability::Workers => "workers",
        }
    }

    /// The unversioned interface name, e.g. `usher:platform/table`.
    pub fn interface_name(&self) -> String {
        format!("{PLATFORM_PACKAGE}/{}", self.interface())
    }

    /// The `grants:` field that governs this capability (`tables`, `buckets`,
    /// `cache` …), or `None` for `log` and `config`, which need no grant.
    pub fn grant_field(&self) -> Option<&'static str> {
        match self {
            Capability::Log | Capability::Config => None,
            Capability::Table => Some("tables"),
            Capability::Queue => Some("queues"),
            Capability::Topic => Some("topics"),
            Capability::Objects => Some("buckets"),
            Capability::Events => Some("events"),
            Capability::Cache => Some("cache"),
            Capability::Services => Some("services"),
            Capability::Codec => Some("codec"),
            Capability::Workers => Some("workers"),
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.interface())
    }
}
