//! Loading and validating the registry directory.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use crate::error::RegistryError;
use crate::grants::Grants;
use crate::names::{check_component_name, check_resource_name};
use crate::resources::{known, Resources};
use crate::spec::{ComponentRef, Limits, StartingPosition, StreamFilterRule, Trigger, WorkerSpec};
use crate::text;

/// The names of the resources file, in order of preference.
pub const RESOURCES_FILES: [&str; 2] = ["resources.yaml", "resources.yml"];

/// The worker registry: every worker of every domain file of a directory,
/// plus the infrastructure resources they may use.
#[derive(Debug, Clone, PartialEq)]
pub struct Registry {
    /// The directory the registry was loaded from.
    pub dir: PathBuf,
    /// Every worker, by full name (`<domain>/<key>`).
    pub workers: BTreeMap<String, WorkerSpec>,
    /// The infrastructure resources (`resources.yaml`).
    pub resources: Resources,
}

impl Registry {
    /// Loads and validates a registry directory: `resources.yaml` (optional;
    /// no resources when absent) and every other `*.yaml` / `*.yml` file in
    /// it, each one domain. Files whose name starts with `.` are skipped;
    /// subdirectories are not read.
    ///
    /// Every problem found is reported: one problem as itself, several as
    /// [`RegistryError::Multiple`].
    pub fn load(dir: &Path) -> Result<Registry, RegistryError> {
        let io = |source| RegistryError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let is_yaml = name.ends_with(".yaml") || name.ends_with(".yml");
            if !is_yaml || name.starts_with('.') || !path.is_file() {
                continue;
            }
            files.push(path);
        }
        files.sort();

        let resource_files: Vec<&PathBuf> = files.iter().filter(|p| is_resources_file(p)).collect();
        let resources = match resource_files.as_slice() {
            [] => Resources::default(),
            [file] => {
                let (resources, errors) = Resources::parse_file(file)?;
                if let Some(e) = RegistryError::from_list(errors) {
                    return Err(e);
                }
                resources
            }
            [first, second, ..] => {
                return Err(RegistryError::File {
                    file: (*second).clone(),
                    message: format!(
                        "both {} and {} exist; keep one resources file",
                        first.display(),
                        second.display()
                    ),
                })
            }
        };

        let mut sources = Vec::new();
        for file in files.iter().filter(|p| !is_resources_file(p)) {
            let text = std::fs::read_to_string(file).map_err(|source| RegistryError::Io {
                path: file.clone(),
                source,
            })?;
            sources.push((file.clone(), text));
        }
        let sources: Vec<(&Path, &str)> = sources
            .iter()
            .map(|(f, t)| (f.as_path(), t.as_str()))
            .collect();
        build(dir, resources, &sources)
    }

    /// The worker named `name` (full name, `<domain>/<key>`).
    pub fn worker(&self, name: &str) -> Result<&WorkerSpec, RegistryError> {
        self.workers
            .get(name)
            .ok_or_else(|| RegistryError::UnknownWorker {
                dir: self.dir.clone(),
                name: name.to_string(),
                known: self.workers.keys().cloned().collect(),
            })
    }

    /// The worker a queue triggers, if any.
    pub fn worker_for_queue(&self, queue: &str) -> Option<&WorkerSpec> {
        self.workers
            .values()
            .find(|w| matches!(&w.trigger, Trigger::Queue { queue: q } if q == queue))
    }

    /// The workers following a table's stream.
    pub fn workers_for_stream(&self, table: &str) -> Vec<&WorkerSpec> {
        self.workers
            .values()
            .filter(|w| matches!(&w.trigger, Trigger::Stream { table: t, .. } if t == table))
            .collect()
    }

    /// The worker serving an HTTP route, if any.
    pub fn worker_for_route(&self, route: &str) -> Option<&WorkerSpec> {
        self.workers
            .values()
            .find(|w| matches!(&w.trigger, Trigger::Http { route: r } if r == route))
    }

    /// The worker resolving a GraphQL field, if any.
    pub fn worker_for_resolver(&self, type_name: &str, field_name: &str) -> Option<&WorkerSpec> {
        self.workers.values().find(|w| {
            matches!(&w.trigger, Trigger::Resolver { type_name: t, field_name: f }
                if t == type_name && f == field_name)
        })
    }

    /// The domains of the registry, sorted, without duplicates.
    pub fn domains(&self) -> Vec<&str> {
        let mut domains: Vec<&str> = self.workers.values().map(|w| w.domain.as_str()).collect();
        domains.sort_unstable();
        domains.dedup();
        domains
    }
}

fn is_resources_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| RESOURCES_FILES.contains(&n))
}

/// `"<path>: <message>"`, or the message alone at the root.
pub(crate) fn path_message<E: std::fmt::Display>(e: &serde_path_to_error::Error<E>) -> String {
    let path = e.path().to_string();
    if path.is_empty() || path == "." {
        e.inner().to_string()
    } else {
        format!("{path}: {}", e.inner())
    }
}

/// Builds and validates a registry from the text of its domain files.
fn build(
    dir: &Path,
    resources: Resources,
    sources: &[(&Path, &str)],
) -> Result<Registry, RegistryError> {
    let mut errors = Vec::new();
    let mut workers: BTreeMap<String, WorkerSpec> = BTreeMap::new();
    let mut origin: HashMap<String, PathBuf> = HashMap::new();
    // Validation order follows file order, then the order of the file.
    let mut order: Vec<String> = Vec::new();
    // Workers that are defined but invalid: references to them are not
    // reported again.
    let mut invalid: HashSet<String> = HashSet::new();

    for (file, text) in sources {
        let parsed = match parse_domain_file(file, text) {
            Ok(parsed) => parsed,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        for (full, entry) in parsed {
            match entry {
                Err(e) => {
                    errors.push(e);
                    invalid.insert(full);
                }
                Ok(spec) => {
                    if let Some(first) = origin.get(&spec.name) {
                        errors.push(RegistryError::DuplicateWorker {
                            worker: spec.name.clone(),
                            first: first.clone(),
                            second: file.to_path_buf(),
                        });
                        continue;
                    }
                    origin.insert(spec.name.clone(), file.to_path_buf());
                    order.push(spec.name.clone());
                    workers.insert(spec.name.clone(), spec);
                }
            }
        }
    }

    // Checks that need the resources or the whole registry.
    let mut queue_consumers: HashMap<&str, &str> = HashMap::new();
    let mut routes: HashMap<&str, &str> = HashMap::new();
    let mut resolvers: HashMap<(&str, &str), &str> = HashMap::new();
    for name in &order {
        let Some(spec) = workers.get(name) else {
            continue;
        };
        let file = origin.get(name).cloned().unwrap_or_default();
        let line = sources
            .iter()
            .find(|(f, _)| *f == file.as_path())
            .and_then(|(_, t)| text::worker_line(t, spec.key()));
        let mut problems = check_references(spec, &resources, &workers, &invalid);
        match &spec.trigger {
            Trigger::Queue { queue } => {
                if let Some(other) = queue_consumers.insert(queue, name) {
                    problems.push(format!(
                        "queue `{queue}` already triggers worker {other}; a queue has one consumer"
                    ));
                }
            }
            Trigger::Http { route } => {
                if let Some(other) = routes.insert(route, name) {
                    problems.push(format!(
                        "route `{route}` is already served by worker {other}"
                    ));
                }
            }
            Trigger::Resolver {
                type_name,
                field_name,
            } => {
                if let Some(other) = resolvers.insert((type_name, field_name), name) {
                    problems.push(format!(
                        "resolver {type_name}.{field_name} is already served by worker {other}"
                    ));
                }
            }
            _ => {}
        }
        for message in problems {
            errors.push(worker_error(&file, name, line, message));
        }
    }

    if let Some(e) = RegistryError::from_list(errors) {
        return Err(e);
    }
    Ok(Registry {
        dir: dir.to_path_buf(),
        workers,
        resources,
    })
}

fn worker_error(file: &Path, worker: &str, line: Option<usize>, message: String) -> RegistryError {
    RegistryError::Worker {
        file: file.to_path_buf(),
        worker: worker.to_string(),
        line,
        message,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDomainFile {
    domain: String,
    #[serde(default)]
    workers: Option<serde_yaml::Mapping>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorker {
    component: RawComponent,
    trigger: RawTrigger,
    #[serde(default)]
    batch_size: Option<u32>,
    #[serde(default)]
    concurrency: Option<u32>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    grants: Option<Grants>,
    #[serde(default)]
    settings: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    #[serde(default)]
    name: Option<String>,
    version: semver::Version,
    sha256: serde_yaml::Value,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default)]
    memory_mb: Option<u32>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    stream: Option<RawStream>,
    #[serde(default)]
    schedule: Option<RawSchedule>,
    #[serde(default)]
    invoke: Option<RawInvoke>,
    #[serde(default)]
    resolver: Option<RawResolver>,
    #[serde(default)]
    http: Option<RawHttp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStream {
    table: String,
    #[serde(default = "default_max_retries")]
    max_retries: u32,
    #[serde(default)]
    on_failure: Option<String>,
    #[serde(default)]
    starting_position: StartingPosition,
    #[serde(default)]
    filter: Vec<StreamFilterRule>,
}

fn default_max_retries() -> u32 {
    3
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    cron: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInvoke {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResolver {
    type_name: String,
    field_name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    route: String,
    #[serde(default)]
    auth: Option<crate::auth::HttpAuth>,
}

const TRIGGER_KINDS: &str =
    "exactly one of `queue: NAME`, `stream: {table: …}`, `schedule: {cron: …}`, `invoke: {}`, `resolver: {type_name: …, field_name: …}`, `http: {route: …}`";

/// Each entry is the worker's full name and its spec or problem(s).
type ParsedWorkers = Vec<(String, Result<WorkerSpec, RegistryError>)>;

/// Parses one domain file into its workers. An `Err` means the file as a
/// whole is unusable; each inner `Err` is one worker's problem(s).
fn parse_domain_file(file: &Path, text: &str) -> Result<ParsedWorkers, RegistryError> {
    let file_err = |message: String| RegistryError::File {
        file: file.to_path_buf(),
        message,
    };
    let mut value: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| file_err(e.to_string()))?;
    if value.is_null() {
        return Err(file_err(
            "the file is empty; a domain file has `domain:` and `workers:`".into(),
        ));
    }
    value.apply_merge().map_err(|e| file_err(e.to_string()))?;
    let raw: RawDomainFile =
        serde_path_to_error::deserialize(value).map_err(|e| file_err(path_message(&e)))?;
    check_resource_name(&raw.domain).map_err(|m| file_err(format!("domain: {m}")))?;

    let mut out = Vec::new();
    for (key, value) in raw.workers.unwrap_or_default() {
        let key = match key {
            serde_yaml::Value::String(k) => k,
            other => {
                out.push((
                    String::new(),
                    Err(file_err(format!(
                        "workers: the key {other:?} is not a string"
                    ))),
                ));
                continue;
            }
        };
        let full = format!("{}/{}", raw.domain, key);
        let line = text::worker_line(text, &key);
        let err = |message: String| worker_error(file, &full, line, message);
        if let Err(m) = check_resource_name(&key) {
            out.push((full.clone(), Err(err(format!("worker key: {m}")))));
            continue;
        }
        let raw_worker: RawWorker = match serde_path_to_error::deserialize(value) {
            Ok(w) => w,
            Err(e) => {
                out.push((full.clone(), Err(err(path_message(&e)))));
                continue;
            }
        };
        let spec = to_spec(&raw.domain, &full, raw_worker);
        match spec {
            Ok(spec) => out.push((full.clone(), Ok(spec))),
            Err(problems) => {
                let errors = problems.into_iter().map(&err).collect();
                if let Some(e) = RegistryError::from_list(errors) {
                    out.push((full.clone(), Err(e)));
                }
            }
        }
    }
    Ok(out)
}

/// Applies defaults and checks everything that needs only the worker itself.
fn to_spec(domain: &str, full: &str, raw: RawWorker) -> Result<WorkerSpec, Vec<String>> {
    let mut problems = Vec::new();

    let component_name = raw.component.name.unwrap_or_else(|| full.to_string());
    if let Err(m) = check_component_name(&component_name) {
        problems.push(format!("component.name: {m}"));
    }
    let sha256 = match parse_sha256(&raw.component.sha256) {
        Ok(hex) => hex,
        Err(m) => {
            problems.push(format!("component.sha256: {m}"));
            String::new()
        }
    };

    let http_auth = raw.trigger.http.as_ref().and_then(|h| h.auth.clone());
    if let Some(auth) = &http_auth {
        let empty = serde_json::Map::new();
        problems.extend(auth.problems(raw.settings.as_ref().unwrap_or(&empty)));
    }
    let trigger = match to_trigger(raw.trigger) {
        Ok(t) => Some(t),
        Err(m) => {
            problems.push(format!("trigger: {m}"));
            None
        }
    };

    let mut batch_size = 1;
    if let Some(trigger) = &trigger {
        batch_size = raw
            .batch_size
            .unwrap_or_else(|| trigger.default_batch_size());
        let max = trigger.max_batch_size();
        if !(1..=max).contains(&batch_size) {
            problems.push(if max == 1 {
                format!(
                    "batch_size {batch_size}: a {} trigger takes one event per invocation; remove batch_size or set it to 1",
                    trigger.kind()
                )
            } else {
                format!(
                    "batch_size {batch_size} is out of range for a {} trigger (1..={max})",
                    trigger.kind()
                )
            });
        }
    }

    let concurrency = raw.concurrency.unwrap_or(1);
    if !(1..=WorkerSpec::MAX_CONCURRENCY).contains(&concurrency) {
        problems.push(format!(
            "concurrency {concurrency} is out of range (1..={})",
            WorkerSpec::MAX_CONCURRENCY
        ));
    } else if concurrency > 1 && !matches!(trigger, Some(Trigger::Queue { .. }) | None) {
        problems.push(format!(
            "concurrency {concurrency}: only a queue trigger runs batches side by side (a stream is read in order, one batch at a time); remove concurrency or set it to 1"
        ));
    }

    let limits = Limits {
        memory_mb: raw.limits.memory_mb.unwrap_or(Limits::DEFAULT_MEMORY_MB),
        timeout_ms: raw.limits.timeout_ms.unwrap_or(Limits::DEFAULT_TIMEOUT_MS),
    };
    if !(1..=Limits::MAX_MEMORY_MB).contains(&limits.memory_mb) {
        problems.push(format!(
            "limits.memory_mb {} is out of range (1..={})",
            limits.memory_mb,
            Limits::MAX_MEMORY_MB
        ));
    }
    if !(1..=Limits::MAX_TIMEOUT_MS).contains(&limits.timeout_ms) {
        problems.push(format!(
            "limits.timeout_ms {} is out of range (1..={})",
            limits.timeout_ms,
            Limits::MAX_TIMEOUT_MS
        ));
    }

    match trigger {
        Some(trigger) if problems.is_empty() => Ok(WorkerSpec {
            name: full.to_string(),
            domain: domain.to_string(),
            component: ComponentRef {
                name: component_name,
                version: raw.component.version,
                sha256,
            },
            trigger,
            batch_size,
            concurrency,
            limits,
            grants: raw.grants.unwrap_or_default(),
            settings: raw.settings.unwrap_or_default(),
            http_auth,
        }),
        _ => Err(problems),
    }
}

/// Checks a digest: 64 hex characters, optionally prefixed by `sha256:`;
/// returns it in lowercase without the prefix.
fn parse_sha256(value: &serde_yaml::Value) -> Result<String, String> {
    let s = match value {
        serde_yaml::Value::String(s) => s.as_str(),
        serde_yaml::Value::Number(_) => {
            return Err(
                "the digest was read as a number; write it in quotes (sha256: \"…\")".into(),
            )
        }
        other => return Err(format!("expected 64 hex characters, found {other:?}")),
    };
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "`{s}` is not a SHA-256 digest (expected 64 hex characters)"
        ));
    }
    Ok(hex.to_ascii_lowercase())
}

/// A stream filter has at most [`StreamFilterRule::MAX_RULES`] rules, each
/// naming an attribute and at least one accepted value or prefix, or a
/// boolean (`is`), or only `events`.
fn check_stream_filter(filter: &[StreamFilterRule]) -> Result<(), String> {
    if filter.len() > StreamFilterRule::MAX_RULES {
        return Err(format!(
            "stream.filter has {} rules; at most {} (each is two of Lambda's five event-source filters: new image, old image)",
            filter.len(),
            StreamFilterRule::MAX_RULES
        ));
    }
    for rule in filter {
        if let Some(e) = rule
            .events
            .iter()
            .find(|e| !StreamFilterRule::EVENTS.contains(&e.as_str()))
        {
            return Err(format!(
                "stream.filter: unknown event `{e}`; events are {:?}",
                StreamFilterRule::EVENTS
            ));
        }
        let strings = !(rule.equals.is_empty() && rule.prefix.is_empty());
        if !rule.has_attribute() {
            if rule.events.is_empty() {
                return Err("stream.filter: a rule needs an attribute (or events)".into());
            }
            if strings || rule.is.is_some() {
                return Err(
                    "stream.filter: equals, prefix and is compare an attribute; name it".into(),
                );
            }
            continue;
        }
        if rule.attribute.trim().is_empty() {
            return Err("stream.filter: a rule needs an attribute".into());
        }
        if strings && rule.is.is_some() {
            return Err(format!(
                "stream.filter: the rule on `{}` gives both strings (equals, prefix) and a boolean (is); one rule compares one type",
                rule.attribute
            ));
        }
        if !strings && rule.is.is_none() {
            return Err(format!(
                "stream.filter: the rule on `{}` accepts nothing; give equals: [...], prefix: [...] or is: true|false",
                rule.attribute
            ));
        }
    }
    Ok(())
}

fn to_trigger(raw: RawTrigger) -> Result<Trigger, String> {
    let mut found = Vec::new();
    if let Some(queue) = raw.queue {
        found.push(Trigger::Queue { queue });
    }
    if let Some(s) = raw.stream {
        check_stream_filter(&s.filter)?;
        found.push(Trigger::Stream {
            table: s.table,
            max_retries: s.max_retries,
            on_failure: s.on_failure,
            starting_position: s.starting_position,
            filter: s.filter,
        });
    }
    if let Some(s) = raw.schedule {
        check_cron(&s.cron)?;
        found.push(Trigger::Schedule { cron: s.cron });
    }
    if raw.invoke.is_some() {
        found.push(Trigger::Invoke);
    }
    if let Some(r) = raw.resolver {
        if r.type_name.trim().is_empty() || r.field_name.trim().is_empty() {
            return Err("resolver: type_name and field_name must not be empty".into());
        }
        found.push(Trigger::Resolver {
            type_name: r.type_name,
            field_name: r.field_name,
        });
    }
    if let Some(h) = raw.http {
        if !h.route.starts_with('/') {
            return Err(format!("http: route `{}` must start with `/`", h.route));
        }
        found.push(Trigger::Http { route: h.route });
    }
    match found.len() {
        1 => found.pop().ok_or_else(|| TRIGGER_KINDS.to_string()),
        0 => Err(format!("no trigger given; expected {TRIGGER_KINDS}")),
        _ => Err(format!(
            "{} triggers given ({}); expected {TRIGGER_KINDS}",
            found.len(),
            found
                .iter()
                .map(Trigger::kind)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Checks a cron expression: 6 or 7 fields, seconds first (or an `@` shortcut).
pub(crate) fn check_cron(expr: &str) -> Result<(), String> {
    let fields = expr.split_whitespace().count();
    if !expr.trim_start().starts_with('@') && !(6..=7).contains(&fields) {
        return Err(format!(
            "schedule.cron `{expr}` has {fields} fields; expected 6 or 7 (sec min hour day-of-month month day-of-week [year]), e.g. `0 */5 * * * *`"
        ));
    }
    cron::Schedule::from_str(expr).map(|_| ()).map_err(|e| {
        // The parser's message spans lines (expression, caret, reason): keep the reason.
        let text = e.to_string();
        let reason = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty() && l.trim() != "^")
            .unwrap_or("invalid expression")
            .trim()
            .to_string();
        format!("schedule.cron `{expr}` does not parse: {reason}")
    })
}

/// Checks the worker's references to resources and other workers.
fn check_references(
    spec: &WorkerSpec,
    resources: &Resources,
    workers: &BTreeMap<String, WorkerSpec>,
    invalid: &HashSet<String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    match &spec.trigger {
        Trigger::Queue { queue } if !resources.has_queue(queue) => {
            problems.push(format!(
                "trigger.queue `{queue}` is not defined under queues: in resources.yaml{}",
                known(resources.queues.keys())
            ));
        }
        Trigger::Stream {
            table, on_failure, ..
        } => {
            if !resources.has_table(table) {
                problems.push(format!(
                    "trigger.stream.table `{table}` is not defined under tables: in resources.yaml{}",
                    known(resources.tables.keys())
                ));
            }
            if let Some(q) = on_failure {
                if !resources.has_queue(q) {
                    problems.push(format!(
                        "trigger.stream.on_failure queue `{q}` is not defined under queues: in resources.yaml{}",
                        known(resources.queues.keys())
                    ));
                }
            }
        }
        _ => {}
    }

    let g = &spec.grants;
    let checks: [(&str, &Vec<String>, &str, Vec<&String>); 6] = [
        (
            "tables",
            &g.tables,
            "tables",
            resources.tables.keys().collect(),
        ),
        (
            "queues",
            &g.queues,
            "queues",
            resources.queues.keys().collect(),
        ),
        (
            "topics",
            &g.topics,
            "topics",
            resources.topics.keys().collect(),
        ),
        (
            "buckets",
            &g.buckets,
            "buckets",
            resources.buckets.iter().collect(),
        ),
        (
            "services",
            &g.services,
            "services",
            resources.services.keys().collect(),
        ),
        (
            "events",
            &g.events,
            "event_topics",
            resources.event_topics.iter().collect(),
        ),
    ];
    for (field, granted, section, defined) in checks {
        for name in granted {
            if name.is_empty() {
                problems.push(format!("grants.{field}: an empty name"));
            } else if !name.ends_with('*') && !defined.contains(&name) {
                problems.push(format!(
                    "grants.{field}: `{name}` is not defined under {section}: in resources.yaml{}",
                    known(defined.iter().copied())
                ));
            }
        }
    }
    for name in &g.workers {
        if name.is_empty() {
            problems.push("grants.workers: an empty name".into());
        } else if !name.ends_with('*') && !workers.contains_key(name) && !invalid.contains(name) {
            problems.push(format!(
                "grants.workers: no worker named `{name}` in the registry (use the full name, `<domain>/<worker>`){}",
                known(workers.keys())
            ));
        }
    }
    problems
}

#[cfg(test)]
pub(crate) fn build_for_test(
    resources_text: &str,
    sources: &[(&Path, &str)],
) -> Result<Registry, RegistryError> {
    let file = Path::new("resources.yaml");
    let (resources, errors) = Resources::parse_str(file, resources_text)?;
    if let Some(e) = RegistryError::from_list(errors) {
        return Err(e);
    }
    build(Path::new("."), resources, sources)
}
