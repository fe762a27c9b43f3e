//! Every worker of a registry, live: start-up validation, invocation with the
//! worker's grants and limits, and hot swap of new releases.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use serde_json::{Map, Value};
use usher_capabilities::{
    Backends, CapError, CapabilityCtx, Recorder, WorkerIdentity, WorkerInvoker,
};
use usher_registry::{Grants, Registry, WorkerSpec};
use usher_store::{Digest, LocalStore};
use wasmtime::component::Component;

use crate::engine::{InvocationLimits, PreparedWorker, UsherEngine};
use crate::io::{Input, Output};
use crate::{EngineError, InvokeError, StartupError};

/// One version of a worker, compiled and ready to instantiate.
pub struct LiveVersion {
    /// The component version.
    pub version: semver::Version,
    /// The component digest.
    pub digest: Digest,
    identity: Arc<WorkerIdentity>,
    prepared: PreparedWorker,
}

/// A worker and the version it currently runs; the version swaps atomically.
pub struct LiveWorker {
    spec: Arc<WorkerSpec>,
    grants: Arc<Grants>,
    settings: Arc<Map<String, Value>>,
    limits: InvocationLimits,
    current: ArcSwap<LiveVersion>,
}

impl LiveWorker {
    /// The worker's registry entry.
    pub fn spec(&self) -> &WorkerSpec {
        &self.spec
    }

    /// The version that new invocations take.
    pub fn current(&self) -> Arc<LiveVersion> {
        self.current.load_full()
    }
}

/// What one invocation produced.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The worker's answer.
    pub output: Output,
    /// The version that answered.
    pub version: semver::Version,
    /// The correlation id used.
    pub correlation_id: String,
    /// Wall time of the invocation.
    pub elapsed: Duration,
}

/// A version swap done by [`Runtime::refresh`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swap {
    /// The worker.
    pub worker: String,
    /// The version before.
    pub from: semver::Version,
    /// The version now live.
    pub to: semver::Version,
}

/// Every worker of a registry, ready to invoke.
pub struct Runtime {
    engine: Arc<UsherEngine>,
    registry: Arc<Registry>,
    store: Arc<LocalStore>,
    env: String,
    backends: Arc<Backends>,
    workers: BTreeMap<String, Arc<LiveWorker>>,
    recorder: Option<Arc<Recorder>>,
}

impl Runtime {
    /// Loads, checks and prepares every worker of the registry (or only those
    /// named in `only`). Refuses to start, naming each worker and problem, when
    /// a component is missing from the store or its digest differs, when it
    /// does not export the world its trigger needs, or when it imports a
    /// capability it was not granted.
    pub fn start(
        engine: Arc<UsherEngine>,
        registry: Arc<Registry>,
        store: Arc<LocalStore>,
        env: &str,
        backends: Arc<Backends>,
        only: Option<&[String]>,
    ) -> Result<Self, StartupError> {
        let release = store.release(env).map_err(|e| {
            StartupError::single("(release)", format!("cannot read release `{env}`: {e}"))
        })?;
        let mut problems = Vec::new();
        let mut workers = BTreeMap::new();
        if let Some(names) = only {
            for name in names {
                if !registry.workers.contains_key(name) {
                    problems.push((
                        name.clone(),
                        format!(
                            "no such worker in the registry at {}",
                            registry.dir.display()
                        ),
                    ));
                }
            }
        }
        for (name, spec) in &registry.workers {
            if only.is_some_and(|names| !names.contains(name)) {
                continue;
            }
            let pinned = match Digest::parse(&spec.component.sha256) {
                Ok(d) => d,
                Err(e) => {
                    problems.push((name.clone(), format!("bad sha256 pin: {e}")));
                    continue;
                }
            };
            let (version, digest) = match release.workers.get(name) {
                Some(entry) => (entry.version.clone(), entry.digest),
                None => (spec.component.version.clone(), pinned),
            };
            // The registry's pin must be present and intact, whatever is live
            // (the live component itself is verified as it loads).
            if digest != pinned {
                if let Err(e) = store.read_component(&pinned) {
                    problems.push((
                        name.clone(),
                        format!(
                            "component {}@{} ({pinned}) is not usable: {e}",
                            spec.component.name, spec.component.version
                        ),
                    ));
                    continue;
                }
            }
            match load_version(&engine, &store, spec, version, digest) {
                Ok(live) => {
                    workers.insert(
                        name.clone(),
                        Arc::new(LiveWorker {
                            spec: Arc::new(spec.clone()),
                            grants: Arc::new(spec.grants.clone()),
                            settings: Arc::new(spec.settings.clone()),
                            limits: InvocationLimits::of(spec),
                            current: ArcSwap::from_pointee(live),
                        }),
                    );
                }
                Err(p) => problems.extend(p.into_iter().map(|m| (name.clone(), m))),
            }
        }
        if !problems.is_empty() {
            return Err(StartupError { problems });
        }
        for (name, live) in &workers {
            usher_telemetry::metric::live_version(name, &live.current().identity.version, true);
        }
        Ok(Self {
            engine,
            registry,
            store,
            env: env.to_string(),
            backends,
            workers,
            recorder: None,
        })
    }

    /// Records every capability call of every invocation (test host).
    pub fn with_recorder(mut self, recorder: Arc<Recorder>) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// The live workers by name.
    pub fn workers(&self) -> &BTreeMap<String, Arc<LiveWorker>> {
        &self.workers
    }

    /// The registry the runtime was started from.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<UsherEngine> {
        &self.engine
    }

    /// One live worker.
    pub fn worker(&self, name: &str) -> Result<&Arc<LiveWorker>, InvokeError> {
        self.workers
            .get(name)
            .ok_or_else(|| InvokeError::UnknownWorker {
                name: name.to_string(),
                known: self.workers.keys().cloned().collect(),
            })
    }

    /// Runs one invocation of a worker in a fresh instance of its current version.
    pub async fn invoke(
        &self,
        worker: &str,
        input: &Input,
        correlation_id: Option<String>,
    ) -> Result<Invocation, InvokeError> {
        let live = self.worker(worker)?;
        let version = live.current.load_full();
        let correlation_id = correlation_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let caps = self.caps(live, &version, correlation_id.clone());
        let started = Instant::now();
        let output = self
            .engine
            .run(&version.prepared, caps, live.limits, input)
            .await;
        let elapsed = started.elapsed();
        let (outcome, failed) = crate::io::outcome_of(input, &output);
        usher_telemetry::metric::invocation(
            worker,
            &version.identity.version,
            outcome,
            elapsed,
            input.len() as u64,
            failed,
        );
        match output {
            Ok(output) => Ok(Invocation {
                output,
                version: version.version.clone(),
                correlation_id,
                elapsed,
            }),
            Err(e) => {
                tracing::error!(worker, version = %version.version, correlation_id, error = %e, "invocation failed");
                Err(e)
            }
        }
    }

    fn caps(
        &self,
        live: &LiveWorker,
        version: &LiveVersion,
        correlation_id: String,
    ) -> CapabilityCtx {
        let caps = CapabilityCtx::new(
            version.identity.clone(),
            live.grants.clone(),
            live.settings.clone(),
            self.backends.clone(),
            correlation_id,
        );
        match &self.recorder {
            Some(r) => caps.with_recorder(r.clone()),
            None => caps,
        }
    }

    /// Instantiates the worker's current version without calling it (the
    /// benchmarks' measure of instantiation alone).
    pub async fn instantiate_only(&self, worker: &str) -> Result<(), InvokeError> {
        let live = self.worker(worker)?;
        let version = live.current.load_full();
        let caps = self.caps(live, &version, String::new());
        self.engine
            .instantiate_only(&version.prepared, caps, live.limits)
            .await
    }

    /// Like [`Runtime::invoke`], but a failed invocation (trap, deadline,
    /// memory limit) becomes the answer that fails every record of the input.
    pub async fn invoke_or_fail_all(
        &self,
        worker: &str,
        input: &Input,
        correlation_id: Option<String>,
    ) -> Result<Invocation, InvokeError> {
        let cid = correlation_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        match self.invoke(worker, input, Some(cid.clone())).await {
            Err(
                e @ (InvokeError::Trap { .. }
                | InvokeError::Deadline { .. }
                | InvokeError::MemoryLimit { .. }),
            ) => {
                let live = self.worker(worker)?;
                Ok(Invocation {
                    output: input.fail_all(&e.to_string()),
                    version: live.current().version.clone(),
                    correlation_id: cid,
                    elapsed: Duration::ZERO,
                })
            }
            other => other,
        }
    }

    /// Reads the release file and swaps every worker whose live version
    /// changed. Compilation happens here, off the invocation path; in-flight
    /// invocations finish on the version they started with. A release that
    /// fails its checks is refused and the old version keeps serving.
    pub async fn refresh(&self) -> Result<Vec<Swap>, EngineError> {
        let release = self
            .store
            .release(&self.env)
            .map_err(|e| EngineError::Store(e.to_string()))?;
        let mut swaps = Vec::new();
        for (name, live) in &self.workers {
            let Some(entry) = release.workers.get(name) else {
                continue;
            };
            let current = live.current.load_full();
            if current.digest == entry.digest && current.version == entry.version {
                continue;
            }
            let engine = self.engine.clone();
            let store = self.store.clone();
            let spec = live.spec.clone();
            let (version, digest) = (entry.version.clone(), entry.digest);
            let loaded = tokio::task::spawn_blocking(move || {
                load_version(&engine, &store, &spec, version, digest)
            })
            .await
            .map_err(|e| EngineError::Wasmtime(format!("compile task failed: {e}")))?;
            match loaded {
                Ok(new) => {
                    let swap = Swap {
                        worker: name.clone(),
                        from: current.version.clone(),
                        to: new.version.clone(),
                    };
                    live.current.store(Arc::new(new));
                    usher_telemetry::metric::hot_swap(
                        name,
                        &swap.from.to_string(),
                        &swap.to.to_string(),
                    );
                    tracing::info!(worker = %name, from = %swap.from, to = %swap.to, "swapped to the new release");
                    swaps.push(swap);
                }
                Err(problems) => {
                    tracing::error!(worker = %name, version = %entry.version, problems = ?problems, "release refused; the old version keeps serving");
                }
            }
        }
        Ok(swaps)
    }

    /// Polls the release file every `interval` and swaps changed workers.
    pub fn watch(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut last: Option<Vec<u8>> = None;
            loop {
                tokio::time::sleep(interval).await;
                let Some(rt) = weak.upgrade() else { break };
                let content = std::fs::read(rt.store.release_path(&rt.env)).ok();
                if content != last {
                    if let Err(e) = rt.refresh().await {
                        tracing::error!(error = %e, "release refresh failed");
                        continue;
                    }
                    last = content;
                }
            }
        })
    }
}

/// Loads a component version from the store (precompiled when possible,
/// compiling and caching the artifact otherwise), checks it against the
/// worker's entry and prepares it.
pub fn load_version(
    engine: &UsherEngine,
    store: &LocalStore,
    spec: &WorkerSpec,
    version: semver::Version,
    digest: Digest,
) -> Result<LiveVersion, Vec<String>> {
    let what = format!("component {}@{version} ({digest})", spec.component.name);
    let component =
        load_component(engine, store, &digest).map_err(|e| vec![format!("{what}: {e}")])?;
    let problems = engine.check(&component, spec);
    if !problems.is_empty() {
        return Err(problems
            .into_iter()
            .map(|p| format!("{what}: {p}"))
            .collect());
    }
    let prepared = engine
        .prepare(&component, spec.trigger.world())
        .map_err(|e| vec![format!("{what}: {e}")])?;
    Ok(LiveVersion {
        identity: Arc::new(WorkerIdentity {
            name: spec.name.clone(),
            version: version.to_string(),
        }),
        version,
        digest,
        prepared,
    })
}

/// A component by digest: the precompiled artifact when the store has one for
/// this engine, else compiled from the verified bytes (and the artifact saved).
pub fn load_component(
    engine: &UsherEngine,
    store: &LocalStore,
    digest: &Digest,
) -> Result<Component, EngineError> {
    // Always verify the source: a missing or altered component is refused
    // even when an artifact derived from it is cached.
    let bytes = store
        .read_component(digest)
        .map_err(|e| EngineError::Store(e.to_string()))?;
    let key = engine.engine_key();
    if store.has_precompiled(digest, key) {
        return engine.load_precompiled(&store.precompiled_path(digest, key));
    }
    let artifact = engine.precompile(&bytes)?;
    let path = store
        .write_precompiled(digest, key, &artifact)
        .map_err(|e| EngineError::Store(e.to_string()))?;
    engine.load_precompiled(&path)
}

/// Invokes workers of a [`Runtime`] for the `workers` capability; bound to
/// the runtime after it starts (the runtime's backends contain this invoker).
#[derive(Default)]
pub struct LocalInvoker {
    runtime: OnceLock<Weak<Runtime>>,
}

impl LocalInvoker {
    /// An unbound invoker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds the invoker to its runtime.
    pub fn bind(&self, runtime: &Arc<Runtime>) {
        let _ = self.runtime.set(Arc::downgrade(runtime));
    }

    fn runtime(&self) -> Result<Arc<Runtime>, CapError> {
        self.runtime
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| CapError::Unavailable("the runtime is not running".into()))
    }
}

async fn invoke_for_capability(
    rt: &Runtime,
    worker: &str,
    payload: Value,
    cid: &str,
) -> Result<Value, CapError> {
    match rt
        .invoke(worker, &Input::Invoke(payload), Some(cid.to_string()))
        .await
    {
        Ok(Invocation {
            output: Output::Invoke(Ok(v)),
            ..
        }) => Ok(v),
        Ok(Invocation {
            output: Output::Invoke(Err(f)),
            ..
        }) => Err(CapError::Invalid(format!("{}: {}", f.kind, f.message))),
        Ok(_) => Err(CapError::Invalid(format!(
            "worker {worker} is not an invoke-worker"
        ))),
        Err(InvokeError::UnknownWorker { name, .. }) => {
            Err(CapError::NotFound(format!("worker {name}")))
        }
        Err(e) => Err(CapError::Unavailable(e.to_string())),
    }
}

#[async_trait]
impl WorkerInvoker for LocalInvoker {
    async fn invoke(
        &self,
        worker: &str,
        payload: Value,
        correlation_id: &str,
    ) -> Result<Value, CapError> {
        let rt = self.runtime()?;
        invoke_for_capability(&rt, worker, payload, correlation_id).await
    }

    async fn invoke_async(
        &self,
        worker: &str,
        payload: Value,
        correlation_id: &str,
    ) -> Result<(), CapError> {
        let rt = self.runtime()?;
        rt.worker(worker)
            .map_err(|_| CapError::NotFound(format!("worker {worker}")))?;
        let (worker, cid) = (worker.to_string(), correlation_id.to_string());
        tokio::spawn(async move {
            if let Err(e) = invoke_for_capability(&rt, &worker, payload, &cid).await {
                tracing::error!(worker, correlation_id = cid, error = %e, "asynchronous invocation failed");
            }
        });
        Ok(())
    }
}
