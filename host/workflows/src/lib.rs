//! Usher's workflows: Amazon States Language state machines
//! (`workflows/<name>.asl.json`, the same files the deployment gives AWS
//! Step Functions) loaded and validated at start-up, run by `usher up`
//! through the engine's [`Runtime`], their executions and history kept in
//! SQLite and resumed after a restart; optional cron schedules
//! (`workflows/schedules.yaml`, EventBridge Scheduler in AWS).
//!
//! * [`asl`]: the model and the load-time checks (each error names its
//!   state); the Task resource convention `${domain/worker}`.
//! * [`paths`] and [`choice`]: input and output processing, Choice rules.
//! * [`interp`]: the interpreter and its replay on resume.
//! * [`store`]: the executions and their history.
//! * [`http`]: `POST /workflows/{name}/executions`, `GET …/executions[/{id}]`.

#![deny(missing_docs)]

pub mod asl;
pub mod choice;
pub mod http;
pub mod interp;
pub mod paths;
pub mod store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use usher_engine::{Input, InvokeError, Output, Runtime};

pub use asl::{AslError, Machine, WorkerLookup};
pub use interp::{Failure, TaskInvoker};
pub use store::{Event, ExecutionRow, Store, StoreError};

/// The suffix of a state machine file.
pub const ASL_SUFFIX: &str = ".asl.json";
/// The schedules file of the workflows folder.
pub const SCHEDULES_FILE: &str = "schedules.yaml";

/// Why the workflows folder cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("{file}: {message}")]
    Io {
        /// The file.
        file: PathBuf,
        /// Why.
        message: String,
    },
    /// A state machine is refused.
    #[error("workflow file {file}: {error}")]
    Asl {
        /// The file.
        file: PathBuf,
        /// What is wrong (naming the state).
        error: AslError,
    },
    /// The schedules file is refused.
    #[error("{file}: {message}")]
    Schedule {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// One loaded workflow.
#[derive(Debug, Clone)]
pub struct Definition {
    /// Its name (the file name without `.asl.json`).
    pub name: String,
    /// Its file.
    pub file: PathBuf,
    /// The machine.
    pub machine: Machine,
}

/// A schedule of `schedules.yaml`: `<workflow>: { cron: "...", input: {...} }`
/// (six-field cron with seconds, UTC, as the registry's schedules).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// The cron expression.
    pub cron: String,
    /// The input of each execution (default `{}`).
    #[serde(default = "empty_object")]
    pub input: Value,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// The workflows of a folder.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// By name.
    pub definitions: BTreeMap<String, Definition>,
    /// By workflow name.
    pub schedules: BTreeMap<String, Schedule>,
}

/// Loads every `*.asl.json` of `dir` (none when the folder does not exist)
/// and its `schedules.yaml`, validating each machine against `workers`.
pub fn load_dir(dir: &Path, workers: &dyn WorkerLookup) -> Result<Loaded, LoadError> {
    let mut loaded = Loaded::default();
    if !dir.is_dir() {
        return Ok(loaded);
    }
    let io = |file: &Path, e: std::io::Error| LoadError::Io {
        file: file.to_path_buf(),
        message: e.to_string(),
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(ASL_SUFFIX))
        })
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| io(&file, e))?;
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(ASL_SUFFIX))
            .unwrap_or_default()
            .to_string();
        let machine = asl::parse(&text, workers).map_err(|error| LoadError::Asl {
            file: file.clone(),
            error,
        })?;
        loaded.definitions.insert(
            name.clone(),
            Definition {
                name,
                file,
                machine,
            },
        );
    }
    let file = dir.join(SCHEDULES_FILE);
    if file.is_file() {
        let text = std::fs::read_to_string(&file).map_err(|e| io(&file, e))?;
        let bad = |message: String| LoadError::Schedule {
            file: file.clone(),
            message,
        };
        let schedules: BTreeMap<String, Schedule> =
            serde_yaml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        for (name, s) in &schedules {
            if !loaded.definitions.contains_key(name) {
                return Err(bad(format!(
                    "`{name}`: no workflow of that name ({name}{ASL_SUFFIX})"
                )));
            }
            cron::Schedule::from_str(&s.cron)
                .map_err(|e| bad(format!("`{name}`: cron `{}`: {e}", s.cron)))?;
        }
        loaded.schedules = schedules;
    }
    Ok(loaded)
}

/// Why an execution cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No workflow of that name.
    #[error("no workflow `{0}`")]
    UnknownWorkflow(String),
    /// The input cannot start the machine (names the state).
    #[error("workflow `{workflow}`: the input does not fit: {message}")]
    BadInput {
        /// The workflow.
        workflow: String,
        /// Why (naming the state).
        message: String,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The workflows of `usher up`: start, resume, list, describe, schedule.
pub struct Workflows {
    definitions: BTreeMap<String, Arc<Definition>>,
    schedules: BTreeMap<String, Schedule>,
    store: Store,
    invoker: Arc<dyn TaskInvoker>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// An execution with its history.
#[derive(Debug, Clone, Serialize)]
pub struct Described {
    /// The execution.
    pub execution: ExecutionRow,
    /// Its events, in order.
    pub history: Vec<Event>,
}

impl Workflows {
    /// The workflows of `loaded`, recorded in `store`, their Tasks run by
    /// `invoker`.
    pub fn new(loaded: Loaded, store: Store, invoker: Arc<dyn TaskInvoker>) -> Arc<Workflows> {
        Arc::new(Workflows {
            definitions: loaded
                .definitions
                .into_iter()
                .map(|(k, v)| (k, Arc::new(v)))
                .collect(),
            schedules: loaded.schedules,
            store,
            invoker,
            tasks: Mutex::new(Vec::new()),
        })
    }

    /// The workflows' names.
    pub fn names(&self) -> Vec<String> {
        self.definitions.keys().cloned().collect()
    }

    /// The schedules.
    pub fn schedules(&self) -> &BTreeMap<String, Schedule> {
        &self.schedules
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Whether a workflow of that name is loaded.
    pub fn has(&self, name: &str) -> bool {
        self.definitions.contains_key(name)
    }

    /// Starts an execution of `name` with `input`: its id
    /// (`<name>:<uuid>`). The input is checked against the first state.
    pub async fn start(self: &Arc<Self>, name: &str, input: Value) -> Result<String, StartError> {
        let def = self
            .definitions
            .get(name)
            .ok_or_else(|| StartError::UnknownWorkflow(name.to_string()))?
            .clone();
        interp::precheck(&def.machine, &input).map_err(|message| StartError::BadInput {
            workflow: name.to_string(),
            message,
        })?;
        let id = format!("{name}:{}", uuid::Uuid::new_v4());
        self.store.create(&id, name, &input).await?;
        self.spawn(def, id.clone(), input, 1);
        Ok(id)
    }

    /// Resumes every RUNNING execution (after a restart): how many.
    pub async fn resume(self: &Arc<Self>) -> Result<usize, StoreError> {
        let running = self.store.resume_running().await?;
        let mut resumed = 0;
        for (id, workflow, input, runs) in running {
            match self.definitions.get(&workflow) {
                Some(def) => {
                    tracing::info!(execution = id, run = runs, "resuming a workflow execution");
                    self.spawn(def.clone(), id, input, runs);
                    resumed += 1;
                }
                None => {
                    let cause = format!("the workflow `{workflow}` is no longer loaded");
                    self.store
                        .finish(&id, Err(("Usher.WorkflowGone", &cause)))
                        .await?;
                }
            }
        }
        Ok(resumed)
    }

    fn spawn(self: &Arc<Self>, def: Arc<Definition>, id: String, input: Value, run: u32) {
        let me = Arc::clone(self);
        let handle = tokio::spawn(async move {
            let started = match me.store.get(&id).await {
                Ok(Some(row)) => row.started_ms,
                _ => 0,
            };
            let start_time =
                chrono::DateTime::from_timestamp_millis(i64::try_from(started).unwrap_or(0))
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                    .unwrap_or_default();
            let execution = interp::Execution {
                id: id.clone(),
                workflow: def.name.clone(),
                input,
                start_time,
                run,
                machine: &def.machine,
                invoker: me.invoker.as_ref(),
                store: &me.store,
            };
            let outcome = execution.run().await;
            let finished = match &outcome {
                Ok(output) => me.store.finish(&id, Ok(output)).await,
                Err(f) => me.store.finish(&id, Err((&f.error, &f.cause))).await,
            };
            match (outcome, finished) {
                (_, Err(e)) => {
                    tracing::error!(execution = id, error = %e, "could not record the end of an execution")
                }
                (Ok(_), Ok(())) => tracing::info!(execution = id, "workflow execution succeeded"),
                (Err(f), Ok(())) => {
                    tracing::warn!(
                        execution = id,
                        error = f.error,
                        cause = f.cause,
                        "workflow execution failed"
                    )
                }
            }
        });
        let mut tasks = self.tasks.lock();
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }

    /// Starts the schedules: each starts an execution at every due time of
    /// its cron expression (UTC; due times missed while down are not
    /// replayed).
    pub fn start_schedules(self: &Arc<Self>) {
        for (name, schedule) in &self.schedules {
            let Ok(cron) = cron::Schedule::from_str(&schedule.cron) else {
                continue;
            };
            let me = Arc::clone(self);
            let (name, input) = (name.clone(), schedule.input.clone());
            let handle = tokio::spawn(async move {
                loop {
                    let Some(due) = cron.upcoming(chrono::Utc).next() else {
                        return;
                    };
                    let wait = (due - chrono::Utc::now())
                        .to_std()
                        .unwrap_or(Duration::ZERO);
                    tokio::time::sleep(wait).await;
                    match me.start(&name, input.clone()).await {
                        Ok(id) => tracing::info!(
                            workflow = name,
                            execution = id,
                            "scheduled execution started"
                        ),
                        Err(e) => {
                            tracing::warn!(workflow = name, error = %e, "scheduled execution not started")
                        }
                    }
                }
            });
            self.tasks.lock().push(handle);
        }
    }

    /// Executions, newest first.
    pub async fn list(
        &self,
        workflow: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ExecutionRow>, StoreError> {
        self.store.list(workflow, limit).await
    }

    /// One execution and its history.
    pub async fn describe(&self, id: &str) -> Result<Option<Described>, StoreError> {
        match self.store.get(id).await? {
            Some(execution) => Ok(Some(Described {
                history: self.store.history(id).await?,
                execution,
            })),
            None => Ok(None),
        }
    }

    /// Stops the executions in flight and the schedules (running
    /// executions stay RUNNING in the store and resume at the next start).
    pub fn shutdown(&self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }
}

/// The Tasks' invoker of `usher up`: the engine's [`Runtime`], as the
/// listener's `/invoke` route calls it.
pub struct RuntimeInvoker(pub Arc<Runtime>);

#[async_trait::async_trait]
impl TaskInvoker for RuntimeInvoker {
    async fn invoke(
        &self,
        worker: &str,
        payload: Value,
        timeout: Option<Duration>,
    ) -> Result<Value, Failure> {
        let input = Input::Invoke(payload);
        let call = self.0.invoke(worker, &input, None);
        let outcome = match timeout {
            Some(t) => match tokio::time::timeout(t, call).await {
                Ok(o) => o,
                Err(_) => {
                    return Err(Failure::new(
                        "States.Timeout",
                        format!(
                            "{worker} ran past the Task's TimeoutSeconds ({} s)",
                            t.as_secs()
                        ),
                    ))
                }
            },
            None => call.await,
        };
        match outcome {
            Ok(inv) => match inv.output {
                Output::Invoke(Ok(v)) => Ok(v),
                Output::Invoke(Err(f)) => Err(Failure::new(f.kind, f.message)),
                other => Err(Failure::new(
                    "States.TaskFailed",
                    format!("{worker} answered a non-invoke result: {other:?}"),
                )),
            },
            Err(e @ InvokeError::Deadline { .. }) => {
                Err(Failure::new("States.Timeout", format!("{worker}: {e}")))
            }
            Err(e) => Err(Failure::new("States.TaskFailed", format!("{worker}: {e}"))),
        }
    }
}
