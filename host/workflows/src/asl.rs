//! The Amazon States Language model and its load-time validation.
//!
//! A state machine is read state by state, so that every problem names its
//! state: an unknown `Type` (Parallel included: the interpreter does not run
//! it), a `Next`/`Default`/`Catch` target that does not exist, a missing
//! `StartAt`, a path that does not parse, a Task whose resource names no
//! invoke-worker of the registry, and a state from which no end can be
//! reached (a cycle with no Succeed, Fail or `End`).
//!
//! Task resources: `"Resource": "${domain/worker}"`, the worker's name in
//! `${…}`. `usher up` invokes that worker; the deployment replaces the
//! placeholder with the function's ARN (a Lambda ARN as a Task resource is
//! Step Functions' direct Lambda integration: the task's result is the
//! function's answer, a function error's `errorType` is the error name).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::Value;
use usher_registry::WorldKind;

use crate::paths;

/// A state machine (or a Map's item processor).
#[derive(Debug, Clone)]
pub struct Machine {
    /// The first state.
    pub start_at: String,
    /// Every state by name.
    pub states: BTreeMap<String, State>,
}

/// One state: the fields every type shares, and its type's own.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Common {
    /// The next state.
    #[serde(default)]
    pub next: Option<String>,
    /// Whether the state ends its machine.
    #[serde(default)]
    pub end: bool,
    /// `InputPath` (absent: `$`; `null`: `{}`).
    #[serde(default = "dollar", deserialize_with = "nullable")]
    pub input_path: Option<String>,
    /// `OutputPath` (absent: `$`; `null`: `{}`).
    #[serde(default = "dollar", deserialize_with = "nullable")]
    pub output_path: Option<String>,
    /// `ResultPath` (absent: `$`; `null`: the input unchanged).
    #[serde(default = "dollar", deserialize_with = "nullable")]
    pub result_path: Option<String>,
    /// `Parameters`.
    #[serde(default)]
    pub parameters: Option<Value>,
    /// `ResultSelector`.
    #[serde(default)]
    pub result_selector: Option<Value>,
    /// `Retry`.
    #[serde(default)]
    pub retry: Vec<Retrier>,
    /// `Catch`.
    #[serde(default)]
    pub catch: Vec<Catcher>,
}

fn dollar() -> Option<String> {
    Some("$".to_string())
}

fn nullable<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)
}

/// A retrier.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Retrier {
    /// The errors it retries.
    pub error_equals: Vec<String>,
    /// The first wait (default 1 s).
    #[serde(default = "one")]
    pub interval_seconds: f64,
    /// Retries at most (default 3).
    #[serde(default = "three")]
    pub max_attempts: u32,
    /// The factor between waits (default 2).
    #[serde(default = "two")]
    pub backoff_rate: f64,
    /// The longest wait.
    #[serde(default)]
    pub max_delay_seconds: Option<f64>,
}

fn one() -> f64 {
    1.0
}
fn two() -> f64 {
    2.0
}
fn three() -> u32 {
    3
}

/// A catcher.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Catcher {
    /// The errors it catches.
    pub error_equals: Vec<String>,
    /// Where the error goes in the state's input (default `$`).
    #[serde(default = "dollar", deserialize_with = "nullable")]
    pub result_path: Option<String>,
    /// The state to go to.
    pub next: String,
}

/// What a state does.
#[derive(Debug, Clone)]
pub enum Kind {
    /// Invokes a worker.
    Task {
        /// The worker (`domain/name`).
        worker: String,
        /// `TimeoutSeconds`.
        timeout_seconds: Option<u64>,
    },
    /// Runs an item processor over a list.
    Map {
        /// `ItemsPath` (default `$`).
        items_path: String,
        /// `ItemSelector` (or the older `Parameters`).
        item_selector: Option<Value>,
        /// `MaxConcurrency` (0: no limit).
        max_concurrency: usize,
        /// `ItemProcessor` (or the older `Iterator`).
        processor: Box<Machine>,
    },
    /// Chooses the next state.
    Choice {
        /// The rules, in order.
        choices: Vec<Value>,
        /// The state when no rule matches.
        default: Option<String>,
    },
    /// Passes its input (or `Result`) on.
    Pass {
        /// `Result`.
        result: Option<Value>,
    },
    /// Waits.
    Wait {
        /// How long or until when.
        until: WaitFor,
    },
    /// Ends the machine successfully.
    Succeed,
    /// Ends the machine with an error.
    Fail {
        /// `Error`.
        error: Option<String>,
        /// `Cause`.
        cause: Option<String>,
    },
}

/// What a Wait state waits for.
#[derive(Debug, Clone)]
pub enum WaitFor {
    /// `Seconds`.
    Seconds(f64),
    /// `SecondsPath`.
    SecondsPath(String),
    /// `Timestamp`.
    Timestamp(String),
    /// `TimestampPath`.
    TimestampPath(String),
}

/// One state.
#[derive(Debug, Clone)]
pub struct State {
    /// Its type's name (`Task`, `Map` …).
    pub type_name: String,
    /// The shared fields.
    pub common: Common,
    /// What it does.
    pub kind: Kind,
}

impl State {
    /// The states this one can go to.
    fn targets(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.common.next.iter().map(String::as_str).collect();
        out.extend(self.common.catch.iter().map(|c| c.next.as_str()));
        if let Kind::Choice { choices, default } = &self.kind {
            out.extend(choices.iter().filter_map(|c| c["Next"].as_str()));
            out.extend(default.iter().map(String::as_str));
        }
        out
    }

    /// Whether the state ends its machine by itself.
    fn terminal(&self) -> bool {
        self.common.end || matches!(self.kind, Kind::Succeed | Kind::Fail { .. })
    }
}

/// The state types the interpreter runs.
pub const STATE_TYPES: [&str; 7] = ["Task", "Map", "Choice", "Pass", "Wait", "Succeed", "Fail"];

/// Why a state machine file is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AslError {
    /// Not JSON, or not a state machine at all.
    #[error("{0}")]
    Malformed(String),
    /// A state is wrong.
    #[error("state `{state}`: {problem}")]
    State {
        /// The state (`Map/Inner` inside a Map's processor).
        state: String,
        /// What is wrong.
        problem: String,
    },
}

fn state_error(state: &str, problem: impl Into<String>) -> AslError {
    AslError::State {
        state: state.to_string(),
        problem: problem.into(),
    }
}

/// What the validation needs of the registry: the world of a worker, or
/// `None` when the registry has no such worker.
pub trait WorkerLookup {
    /// The world of `worker`.
    fn world(&self, worker: &str) -> Option<WorldKind>;
}

impl WorkerLookup for usher_registry::Registry {
    fn world(&self, worker: &str) -> Option<WorldKind> {
        self.workers.get(worker).map(|w| w.trigger.world())
    }
}

impl WorkerLookup for BTreeMap<String, WorldKind> {
    fn world(&self, worker: &str) -> Option<WorldKind> {
        self.get(worker).copied()
    }
}

/// Parses and validates a state machine's JSON text.
pub fn parse(text: &str, workers: &dyn WorkerLookup) -> Result<Machine, AslError> {
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| AslError::Malformed(format!("not valid JSON: {e}")))?;
    machine(&doc, "", workers)
}

/// The worker a Task resource names: `${domain/worker}`.
pub fn resource_worker(resource: &str) -> Option<&str> {
    resource
        .strip_prefix("${")
        .and_then(|r| r.strip_suffix('}'))
        .filter(|w| w.contains('/'))
}

fn machine(doc: &Value, prefix: &str, workers: &dyn WorkerLookup) -> Result<Machine, AslError> {
    let where_ = if prefix.is_empty() {
        "the state machine".to_string()
    } else {
        format!("the item processor of `{}`", prefix.trim_end_matches('/'))
    };
    let obj = doc
        .as_object()
        .ok_or_else(|| AslError::Malformed(format!("{where_} must be a JSON object")))?;
    let start_at = obj
        .get("StartAt")
        .and_then(Value::as_str)
        .ok_or_else(|| AslError::Malformed(format!("{where_} has no `StartAt`")))?
        .to_string();
    let raw = obj
        .get("States")
        .and_then(Value::as_object)
        .ok_or_else(|| AslError::Malformed(format!("{where_} has no `States` object")))?;
    let mut states = BTreeMap::new();
    for (name, value) in raw {
        let full = format!("{prefix}{name}");
        states.insert(name.clone(), state(&full, value, workers)?);
    }
    if !states.contains_key(&start_at) {
        return Err(AslError::Malformed(format!(
            "{where_}: `StartAt` names `{start_at}`, which is not one of its states"
        )));
    }
    for (name, s) in &states {
        for target in s.targets() {
            if !states.contains_key(target) {
                return Err(state_error(
                    &format!("{prefix}{name}"),
                    format!("goes to `{target}`, which is not a state of {where_}"),
                ));
            }
        }
        if !s.terminal() && s.common.next.is_none() && !matches!(s.kind, Kind::Choice { .. }) {
            return Err(state_error(
                &format!("{prefix}{name}"),
                "has neither `Next` nor `End: true`",
            ));
        }
    }
    // Every state must reach an end: walk backwards from the terminal states.
    let mut reaches: BTreeSet<&str> = states
        .iter()
        .filter(|(_, s)| s.terminal())
        .map(|(n, _)| n.as_str())
        .collect();
    loop {
        let before = reaches.len();
        for (name, s) in &states {
            if !reaches.contains(name.as_str()) && s.targets().iter().any(|t| reaches.contains(t)) {
                reaches.insert(name);
            }
        }
        if reaches.len() == before {
            break;
        }
    }
    if let Some((name, _)) = states.iter().find(|(n, _)| !reaches.contains(n.as_str())) {
        return Err(state_error(
            &format!("{prefix}{name}"),
            "can never reach an end: it is in a cycle with no Succeed, Fail or `End: true` state on the way out",
        ));
    }
    Ok(Machine { start_at, states })
}

fn state(name: &str, value: &Value, workers: &dyn WorkerLookup) -> Result<State, AslError> {
    let obj = value
        .as_object()
        .ok_or_else(|| state_error(name, "must be a JSON object"))?;
    let type_name = obj
        .get("Type")
        .and_then(Value::as_str)
        .ok_or_else(|| state_error(name, "has no `Type`"))?
        .to_string();
    if !STATE_TYPES.contains(&type_name.as_str()) {
        return Err(state_error(
            name,
            format!(
                "unknown state type `{type_name}` (usher runs {})",
                STATE_TYPES.join(", ")
            ),
        ));
    }
    let common: Common =
        serde_json::from_value(value.clone()).map_err(|e| state_error(name, e.to_string()))?;
    for (field, path) in [
        ("InputPath", &common.input_path),
        ("OutputPath", &common.output_path),
    ] {
        if let Some(p) = path {
            paths::check_path(p).map_err(|e| state_error(name, format!("{field}: {e}")))?;
        }
    }
    if let Some(p) = &common.result_path {
        paths::check_reference(p).map_err(|e| state_error(name, format!("ResultPath: {e}")))?;
    }
    for c in &common.catch {
        if let Some(p) = &c.result_path {
            paths::check_reference(p)
                .map_err(|e| state_error(name, format!("Catch ResultPath: {e}")))?;
        }
    }
    for (field, t) in [
        ("Parameters", &common.parameters),
        ("ResultSelector", &common.result_selector),
    ] {
        if let Some(t) = t {
            paths::check_template(t).map_err(|e| state_error(name, format!("{field}: {e}")))?;
        }
    }
    let retries = !common.retry.is_empty() || !common.catch.is_empty();
    let str_field = |f: &str| obj.get(f).and_then(Value::as_str).map(str::to_string);
    let kind = match type_name.as_str() {
        "Task" => {
            let resource = str_field("Resource")
                .ok_or_else(|| state_error(name, "a Task needs a `Resource`"))?;
            let worker = resource_worker(&resource).ok_or_else(|| {
                state_error(
                    name,
                    format!("Resource `{resource}`: usher runs `${{domain/worker}}` resources (the worker's name; the deployment puts the function's ARN there)"),
                )
            })?;
            match workers.world(worker) {
                Some(WorldKind::Invoke) => {}
                Some(other) => {
                    return Err(state_error(
                        name,
                        format!(
                            "Resource names worker `{worker}`, a {}; a Task needs an invoke-worker",
                            other.world_name()
                        ),
                    ))
                }
                None => {
                    return Err(state_error(
                        name,
                        format!("Resource names worker `{worker}`, which is not in the registry"),
                    ))
                }
            }
            Kind::Task {
                worker: worker.to_string(),
                timeout_seconds: obj.get("TimeoutSeconds").and_then(Value::as_u64),
            }
        }
        "Map" => {
            let processor = obj
                .get("ItemProcessor")
                .or_else(|| obj.get("Iterator"))
                .ok_or_else(|| state_error(name, "a Map needs an `ItemProcessor`"))?;
            let processor = machine(processor, &format!("{name}/"), workers)?;
            let items_path = str_field("ItemsPath").unwrap_or_else(|| "$".to_string());
            paths::check_path(&items_path)
                .map_err(|e| state_error(name, format!("ItemsPath: {e}")))?;
            let item_selector = obj
                .get("ItemSelector")
                .cloned()
                .or_else(|| common.parameters.clone());
            if let Some(t) = &item_selector {
                paths::check_template(t)
                    .map_err(|e| state_error(name, format!("ItemSelector: {e}")))?;
            }
            let max_concurrency = match obj.get("MaxConcurrency") {
                None => 0,
                Some(v) => v
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| {
                        state_error(name, "MaxConcurrency must be a non-negative integer")
                    })?,
            };
            Kind::Map {
                items_path,
                item_selector,
                max_concurrency,
                processor: Box::new(processor),
            }
        }
        "Choice" => {
            if common.next.is_some() || common.end {
                return Err(state_error(name, "a Choice takes no `Next` or `End`"));
            }
            let choices = obj
                .get("Choices")
                .and_then(Value::as_array)
                .filter(|c| !c.is_empty())
                .ok_or_else(|| state_error(name, "a Choice needs a non-empty `Choices` list"))?
                .clone();
            for (i, rule) in choices.iter().enumerate() {
                if rule["Next"].as_str().is_none() {
                    return Err(state_error(name, format!("Choices[{i}] has no `Next`")));
                }
                crate::choice::check(rule, true)
                    .map_err(|e| state_error(name, format!("Choices[{i}]: {e}")))?;
            }
            Kind::Choice {
                choices,
                default: str_field("Default"),
            }
        }
        "Pass" => Kind::Pass {
            result: obj.get("Result").cloned(),
        },
        "Wait" => {
            let until = if let Some(s) = obj.get("Seconds") {
                WaitFor::Seconds(
                    s.as_f64()
                        .filter(|s| *s >= 0.0)
                        .ok_or_else(|| state_error(name, "Seconds must be a number ≥ 0"))?,
                )
            } else if let Some(p) = str_field("SecondsPath") {
                WaitFor::SecondsPath(p)
            } else if let Some(t) = str_field("Timestamp") {
                chrono::DateTime::parse_from_rfc3339(&t)
                    .map_err(|e| state_error(name, format!("Timestamp: {e}")))?;
                WaitFor::Timestamp(t)
            } else if let Some(p) = str_field("TimestampPath") {
                WaitFor::TimestampPath(p)
            } else {
                return Err(state_error(
                    name,
                    "a Wait needs Seconds, SecondsPath, Timestamp or TimestampPath",
                ));
            };
            Kind::Wait { until }
        }
        "Succeed" => Kind::Succeed,
        "Fail" => Kind::Fail {
            error: str_field("Error"),
            cause: str_field("Cause"),
        },
        other => return Err(state_error(name, format!("unknown state type `{other}`"))),
    };
    if retries && !matches!(kind, Kind::Task { .. } | Kind::Map { .. }) {
        return Err(state_error(
            name,
            format!("a {type_name} state takes no Retry or Catch"),
        ));
    }
    Ok(State {
        type_name,
        common,
        kind,
    })
}
