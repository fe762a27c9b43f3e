//! The interpreter: one execution of a state machine, every step recorded
//! in the [`Store`].
//!
//! A resumed execution (after a restart) runs the machine again from its
//! input: every Task whose outcome was recorded takes that outcome instead
//! of invoking its worker again, every Wait its recorded due time, and the
//! other states (Choice, Pass, Map's fan-out, Succeed, Fail) are pure
//! functions of their input, so the replay reaches the same point and goes
//! on from there. A Task interrupted mid-flight (invoked, its result not
//! yet recorded) is invoked again: workers must be idempotent, as Step
//! Functions' Lambda tasks are (at-least-once). A Task's outcome is its
//! final one: a Task interrupted between two retries starts its retries
//! again.
//!
//! Step keys: `<scope><State>#<visit>`, the scope being empty at the top
//! and `<MapState>#<visit>@<attempt>/<index>/` inside a Map's iteration;
//! the visit counts the entries into the state within its scope (a loop
//! visits a state again).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::stream::{StreamExt, TryStreamExt};
use serde_json::{json, Value};

use crate::asl::{Kind, Machine, Retrier, State, WaitFor};
use crate::paths::{self, PathError};
use crate::store::{Store, StoreError};

/// An error of a state (or of the execution): its name and cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The error name (`States.TaskFailed`, a worker's own error kind …).
    pub error: String,
    /// The cause.
    pub cause: String,
    /// Whether a Task produced it (`States.TaskFailed` matches those).
    pub task: bool,
}

impl Failure {
    /// A failure that is not a task's.
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Failure {
        Failure {
            error: error.into(),
            cause: cause.into(),
            task: false,
        }
    }

    fn runtime(state: &str, e: PathError) -> Failure {
        Failure::new("States.Runtime", format!("state `{state}`: {e}"))
    }

    fn storage(e: StoreError) -> Failure {
        Failure::new("Usher.Storage", e.to_string())
    }

    fn json(&self) -> Value {
        json!({"Error": self.error, "Cause": self.cause})
    }
}

/// Invokes the worker of a Task.
#[async_trait::async_trait]
pub trait TaskInvoker: Send + Sync {
    /// Invokes `worker` with `payload`: its answer, or its error (the
    /// worker's own error kind as the name; `States.Timeout` past
    /// `timeout`; `States.TaskFailed` when it trapped).
    async fn invoke(
        &self,
        worker: &str,
        payload: Value,
        timeout: Option<Duration>,
    ) -> Result<Value, Failure>;
}

/// One execution being run.
pub struct Execution<'a> {
    /// Its id.
    pub id: String,
    /// Its workflow's name.
    pub workflow: String,
    /// Its input.
    pub input: Value,
    /// When it started (RFC 3339).
    pub start_time: String,
    /// 1 for the first run, one more per resume.
    pub run: u32,
    /// The machine.
    pub machine: &'a Machine,
    /// The workers.
    pub invoker: &'a dyn TaskInvoker,
    /// The record.
    pub store: &'a Store,
}

/// Whether a retrier's or catcher's `ErrorEquals` takes `f`.
pub fn error_matches(names: &[String], f: &Failure) -> bool {
    names.iter().any(|n| {
        n == &f.error
            || (n == "States.ALL" && f.error != "States.Runtime")
            || (n == "States.TaskFailed" && f.task && f.error != "States.Timeout")
    })
}

type Boxed<'b> = Pin<Box<dyn Future<Output = Result<Value, Failure>> + Send + 'b>>;

/// What a state decided.
enum Step {
    Next(String, Value),
    End(Value),
}

impl Execution<'_> {
    /// Runs the execution to its end: its output, or its error.
    pub async fn run(&self) -> Result<Value, Failure> {
        self.scope(self.machine, self.input.clone(), String::new(), None)
            .await
    }

    fn context(&self, state: &str, retry: u32, item: Option<&(usize, Value)>) -> Value {
        let mut ctx = json!({
            "Execution": {
                "Id": self.id,
                "Input": self.input,
                "Name": self.id,
                "StartTime": self.start_time,
            },
            "StateMachine": {"Id": self.workflow, "Name": self.workflow},
            "State": {
                "Name": state,
                "EnteredTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "RetryCount": retry,
            },
        });
        if let Some((index, value)) = item {
            ctx["Map"] = json!({"Item": {"Index": index, "Value": value}});
        }
        ctx
    }

    async fn event(&self, key: String, kind: &'static str, state: &str, data: Value) {
        if let Err(e) = self.store.event(&self.id, key, kind, state, data).await {
            tracing::warn!(execution = self.id, error = %e, "could not record a history event");
        }
    }

    /// Runs the states of `machine` from its `StartAt`.
    fn scope<'b>(
        &'b self,
        machine: &'b Machine,
        input: Value,
        prefix: String,
        item: Option<(usize, Value)>,
    ) -> Boxed<'b> {
        Box::pin(async move {
            let mut visits: BTreeMap<String, u32> = BTreeMap::new();
            let mut current = machine.start_at.clone();
            let mut input = input;
            loop {
                let Some(state) = machine.states.get(&current) else {
                    return Err(Failure::new(
                        "States.Runtime",
                        format!("no state `{current}`"),
                    ));
                };
                let visit = visits.entry(current.clone()).or_insert(0);
                *visit += 1;
                let key = format!("{prefix}{current}#{visit}");
                let path = state_path(&prefix, &current);
                self.event(
                    format!("{key}>"),
                    "StateEntered",
                    &path,
                    json!({"input": input, "type": state.type_name}),
                )
                .await;
                let step = self
                    .state(&current, state, input, &key, &path, item.as_ref())
                    .await;
                match step {
                    Ok(Step::Next(next, output)) => {
                        self.event(
                            format!("{key}<"),
                            "StateExited",
                            &path,
                            json!({"output": output, "next": next}),
                        )
                        .await;
                        current = next;
                        input = output;
                    }
                    Ok(Step::End(output)) => {
                        self.event(
                            format!("{key}<"),
                            "StateExited",
                            &path,
                            json!({"output": output}),
                        )
                        .await;
                        return Ok(output);
                    }
                    Err(f) => {
                        self.event(
                            format!("{key}!failed"),
                            "StateFailed",
                            &path,
                            json!({"error": f.error, "cause": f.cause}),
                        )
                        .await;
                        return Err(f);
                    }
                }
            }
        })
    }

    async fn state(
        &self,
        name: &str,
        state: &State,
        raw: Value,
        key: &str,
        path: &str,
        item: Option<&(usize, Value)>,
    ) -> Result<Step, Failure> {
        let c = &state.common;
        let rt = |e: PathError| Failure::runtime(path, e);
        let ctx = self.context(name, 0, item);
        let effective = match &c.input_path {
            Some(p) => paths::read(p, &raw, &ctx).map_err(rt)?,
            None => json!({}),
        };
        let next = |output: Value| -> Result<Step, Failure> {
            let output = match &c.output_path {
                Some(p) => paths::read(p, &output, &ctx).map_err(rt)?,
                None => json!({}),
            };
            Ok(match &c.next {
                Some(n) if !c.end => Step::Next(n.clone(), output),
                _ => Step::End(output),
            })
        };
        match &state.kind {
            Kind::Succeed => next(effective).map(|s| match s {
                Step::Next(_, o) | Step::End(o) => Step::End(o),
            }),
            Kind::Fail { error, cause } => Err(Failure::new(
                error.clone().unwrap_or_else(|| "States.Fail".to_string()),
                cause.clone().unwrap_or_default(),
            )),
            Kind::Pass { result } => {
                let produced = match (result, &c.parameters) {
                    (Some(r), _) => r.clone(),
                    (None, Some(t)) => paths::template(t, &effective, &ctx).map_err(rt)?,
                    (None, None) => effective,
                };
                let out = paths::place(raw, c.result_path.as_deref(), produced).map_err(rt)?;
                next(out)
            }
            Kind::Choice { choices, default } => {
                for rule in choices {
                    if crate::choice::matches(rule, &effective, &ctx).map_err(rt)? {
                        let target = rule["Next"].as_str().unwrap_or_default().to_string();
                        let out = match &c.output_path {
                            Some(p) => paths::read(p, &effective, &ctx).map_err(rt)?,
                            None => json!({}),
                        };
                        return Ok(Step::Next(target, out));
                    }
                }
                match default {
                    Some(d) => {
                        let out = match &c.output_path {
                            Some(p) => paths::read(p, &effective, &ctx).map_err(rt)?,
                            None => json!({}),
                        };
                        Ok(Step::Next(d.clone(), out))
                    }
                    None => Err(Failure::new(
                        "States.NoChoiceMatched",
                        format!("state `{path}`: no choice rule matched and there is no Default"),
                    )),
                }
            }
            Kind::Wait { until } => {
                let due_ms = match self.store.step(&self.id, key).await {
                    Ok(Some(v)) if v["dueMs"].is_u64() => v["dueMs"].as_u64().unwrap_or(0),
                    Ok(_) => {
                        let due = wait_due_ms(until, &effective, &ctx).map_err(rt)?;
                        self.store
                            .record_step(
                                &self.id,
                                key,
                                &json!({"dueMs": due}),
                                "WaitScheduled",
                                path,
                                json!({"dueMs": due}),
                            )
                            .await
                            .map_err(Failure::storage)?;
                        due
                    }
                    Err(e) => return Err(Failure::storage(e)),
                };
                let now = now_ms();
                if due_ms > now {
                    tokio::time::sleep(Duration::from_millis(due_ms - now)).await;
                }
                next(effective)
            }
            Kind::Task { .. } | Kind::Map { .. } => {
                let input = match (&state.kind, &c.parameters) {
                    (Kind::Task { .. }, Some(t)) => {
                        paths::template(t, &effective, &ctx).map_err(rt)?
                    }
                    _ => effective,
                };
                let outcome = self.with_retries(name, state, input, key, path, item).await;
                match outcome {
                    Ok(result) => {
                        let result = match &c.result_selector {
                            Some(t) => paths::template(t, &result, &ctx).map_err(rt)?,
                            None => result,
                        };
                        let out =
                            paths::place(raw, c.result_path.as_deref(), result).map_err(rt)?;
                        next(out)
                    }
                    Err(f) => {
                        let Some(catcher) =
                            c.catch.iter().find(|k| error_matches(&k.error_equals, &f))
                        else {
                            return Err(f);
                        };
                        self.event(
                            format!("{key}!caught"),
                            "CatchTaken",
                            path,
                            json!({"error": f.error, "cause": f.cause, "next": catcher.next}),
                        )
                        .await;
                        let out = paths::place(raw, catcher.result_path.as_deref(), f.json())
                            .map_err(rt)?;
                        Ok(Step::Next(catcher.next.clone(), out))
                    }
                }
            }
        }
    }

    /// A Task or Map with its retriers: the final outcome.
    async fn with_retries(
        &self,
        name: &str,
        state: &State,
        input: Value,
        key: &str,
        path: &str,
        item: Option<&(usize, Value)>,
    ) -> Result<Value, Failure> {
        if matches!(state.kind, Kind::Task { .. }) {
            // A Task whose outcome is recorded is not run again.
            let recorded = self
                .store
                .step(&self.id, key)
                .await
                .map_err(Failure::storage)?;
            if let Some(recorded) = recorded {
                return match recorded {
                    Value::Object(o) if o.contains_key("result") => {
                        Ok(o.get("result").cloned().unwrap_or(Value::Null))
                    }
                    other => Err(Failure {
                        error: other["error"]
                            .as_str()
                            .unwrap_or("States.TaskFailed")
                            .to_string(),
                        cause: other["cause"].as_str().unwrap_or_default().to_string(),
                        task: true,
                    }),
                };
            }
        }
        let mut counts = vec![0u32; state.common.retry.len()];
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = match &state.kind {
                Kind::Task {
                    worker,
                    timeout_seconds,
                } => {
                    self.task(worker, *timeout_seconds, input.clone(), key, path, attempt)
                        .await
                }
                Kind::Map {
                    items_path,
                    item_selector,
                    max_concurrency,
                    processor,
                } => {
                    self.map(
                        name,
                        &input,
                        items_path,
                        item_selector.as_ref(),
                        *max_concurrency,
                        processor,
                        &format!("{key}@{attempt}"),
                        path,
                        item,
                    )
                    .await
                }
                _ => return Err(Failure::new("States.Runtime", "not a Task or Map")),
            };
            let f = match outcome {
                Ok(v) => return Ok(v),
                Err(f) => f,
            };
            let retrier = state
                .common
                .retry
                .iter()
                .position(|r| error_matches(&r.error_equals, &f))
                .filter(|i| counts[*i] < state.common.retry[*i].max_attempts);
            let Some(i) = retrier else {
                if matches!(state.kind, Kind::Task { .. }) {
                    // The final failure of a Task is its outcome: a resumed
                    // execution takes it (to its catcher) without a new run.
                    self.store
                        .record_step(
                            &self.id,
                            key,
                            &json!({"error": f.error, "cause": f.cause}),
                            "TaskGaveUp",
                            path,
                            json!({"error": f.error, "cause": f.cause, "attempts": attempt}),
                        )
                        .await
                        .map_err(Failure::storage)?;
                }
                return Err(f);
            };
            let retrier: &Retrier = &state.common.retry[i];
            let wait = retrier.interval_seconds
                * retrier
                    .backoff_rate
                    .powi(i32::try_from(counts[i]).unwrap_or(i32::MAX));
            let wait = retrier.max_delay_seconds.map_or(wait, |m| wait.min(m));
            counts[i] += 1;
            self.event(
                format!("{key}~a{attempt}r{}!retry", self.run),
                "StateRetried",
                path,
                json!({"error": f.error, "cause": f.cause, "attempt": attempt, "waitSeconds": wait}),
            )
            .await;
            tokio::time::sleep(Duration::from_secs_f64(wait.max(0.0))).await;
        }
    }

    async fn task(
        &self,
        worker: &str,
        timeout_seconds: Option<u64>,
        payload: Value,
        key: &str,
        path: &str,
        attempt: u32,
    ) -> Result<Value, Failure> {
        self.event(
            format!("{key}~a{attempt}r{}", self.run),
            "TaskScheduled",
            path,
            json!({"worker": worker, "payload": payload, "attempt": attempt, "run": self.run}),
        )
        .await;
        let outcome = self
            .invoker
            .invoke(worker, payload, timeout_seconds.map(Duration::from_secs))
            .await;
        match &outcome {
            Ok(result) => {
                self.store
                    .record_step(
                        &self.id,
                        key,
                        &json!({"result": result}),
                        "TaskSucceeded",
                        path,
                        json!({"worker": worker, "output": result, "attempt": attempt}),
                    )
                    .await
                    .map_err(Failure::storage)?;
            }
            Err(f) => {
                // Only the final failure is recorded (by the caller's
                // retriers deciding not to retry): record every failure
                // as an event, and the outcome once no retry follows.
                self.event(
                    format!("{key}~a{attempt}r{}!failed", self.run),
                    "TaskFailed",
                    path,
                    json!({"worker": worker, "error": f.error, "cause": f.cause, "attempt": attempt}),
                )
                .await;
            }
        }
        outcome.map_err(|f| Failure { task: true, ..f })
    }

    #[allow(clippy::too_many_arguments)]
    async fn map(
        &self,
        name: &str,
        input: &Value,
        items_path: &str,
        selector: Option<&Value>,
        max_concurrency: usize,
        processor: &Machine,
        scope: &str,
        path: &str,
        item: Option<&(usize, Value)>,
    ) -> Result<Value, Failure> {
        let ctx = self.context(name, 0, item);
        let items = paths::read(items_path, input, &ctx).map_err(|e| Failure::runtime(path, e))?;
        let Value::Array(items) = items else {
            return Err(Failure::new(
                "States.Runtime",
                format!(
                    "state `{path}`: ItemsPath `{items_path}` selects {}, not a list",
                    paths::abbreviate(&items)
                ),
            ));
        };
        let mut inputs = Vec::with_capacity(items.len());
        for (index, value) in items.into_iter().enumerate() {
            let item = (index, value);
            let item_input = match selector {
                Some(t) => {
                    let ctx = self.context(name, 0, Some(&item));
                    paths::template(t, input, &ctx).map_err(|e| Failure::runtime(path, e))?
                }
                None => item.1.clone(),
            };
            inputs.push((item, item_input));
        }
        let limit = if max_concurrency == 0 {
            inputs.len().max(1)
        } else {
            max_concurrency
        };
        let outputs: Vec<Value> =
            futures::stream::iter(inputs.into_iter().map(|((index, value), item_input)| {
                self.scope(
                    processor,
                    item_input,
                    format!("{scope}/{index}/"),
                    Some((index, value)),
                )
            }))
            .buffered(limit)
            .try_collect()
            .await?;
        Ok(Value::Array(outputs))
    }
}

/// A state's path for the history: `Map/Inner` inside a Map.
fn state_path(prefix: &str, name: &str) -> String {
    // The prefix is `Map#1@1/3/Inner#1@1/0/`: keep the state names only.
    let mut parts: Vec<&str> = prefix
        .split('/')
        .filter_map(|p| p.split_once('#').map(|(n, _)| n))
        .collect();
    parts.push(name);
    parts.join("/")
}

fn now_ms() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0)
}

fn wait_due_ms(until: &WaitFor, input: &Value, ctx: &Value) -> Result<u64, PathError> {
    let seconds = |s: f64| now_ms() + (s.max(0.0) * 1000.0) as u64;
    let at = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|d| u64::try_from(d.timestamp_millis()).unwrap_or(0))
            .map_err(|e| PathError(format!("`{t}` is not an RFC 3339 timestamp: {e}")))
    };
    match until {
        WaitFor::Seconds(s) => Ok(seconds(*s)),
        WaitFor::SecondsPath(p) => {
            let v = paths::read(p, input, ctx)?;
            v.as_f64()
                .filter(|s| *s >= 0.0)
                .map(seconds)
                .ok_or_else(|| PathError(format!("SecondsPath `{p}` selects {v}, not seconds")))
        }
        WaitFor::Timestamp(t) => at(t),
        WaitFor::TimestampPath(p) => {
            let v = paths::read(p, input, ctx)?;
            match v.as_str() {
                Some(t) => at(t),
                None => Err(PathError(format!(
                    "TimestampPath `{p}` selects {v}, not a timestamp"
                ))),
            }
        }
    }
}

/// Checks an input against the first state's input processing (its
/// `InputPath`, `Parameters`, a Map's `ItemsPath`): an input that cannot
/// start the machine is refused at start, naming the state.
pub fn precheck(machine: &Machine, input: &Value) -> Result<(), String> {
    let name = &machine.start_at;
    let Some(state) = machine.states.get(name) else {
        return Ok(());
    };
    let ctx = json!({"Execution": {"Input": input}});
    let fail = |e: PathError| format!("state `{name}`: {e}");
    let effective = match &state.common.input_path {
        Some(p) => paths::read(p, input, &ctx).map_err(fail)?,
        None => json!({}),
    };
    match &state.kind {
        Kind::Map { items_path, .. } => {
            let items = paths::read(items_path, &effective, &ctx).map_err(fail)?;
            if !items.is_array() {
                return Err(format!(
                    "state `{name}`: ItemsPath `{items_path}` selects {}, not a list",
                    paths::abbreviate(&items)
                ));
            }
        }
        Kind::Task { .. } => {
            if let Some(t) = &state.common.parameters {
                paths::template(t, &effective, &ctx).map_err(fail)?;
            }
        }
        _ => {}
    }
    Ok(())
}
