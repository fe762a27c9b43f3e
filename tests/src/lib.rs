//! `usher-testing`: the test host.
//!
//! Loads built components (referenced by the generated constants in
//! [`components`]), gives them embedded backends in memory and a scripted
//! Entry Service, records every capability call, feeds JSON fixtures and lets
//! a test assert on results and effects.
//!
//! ```no_run
//! # async fn demo() -> Result<(), usher_testing::TestError> {
//! use usher_testing::{components, TestHost};
//! let host = TestHost::builder()
//!     .resources("queues: { save-entries: {} }")
//!     .worker(&components::TESTING_ECHO, "trigger: { invoke: {} }")
//!     .build()?;
//! let out = host.invoke("testing/echo", usher_engine::Input::Invoke(serde_json::json!({"a": 1}))).await?;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use serde_json::Value;
use usher_backend_embedded::Embedded;
use usher_capabilities::{
    Backends, CallRecord, CapError, Recorder, ServiceBackend, ServiceRequest, ServiceResponse,
};
use usher_engine::{EngineOptions, Input, Invocation, LocalInvoker, Runtime, UsherEngine};
use usher_registry::Registry;
use usher_store::{Digest, LocalStore};

pub mod boundary_probe;

/// The built components of the repository.
pub mod components {
    /// A component of the repository and where its build lands.
    #[derive(Debug, Clone, Copy)]
    pub struct Component {
        /// `<domain>/<worker>`.
        pub name: &'static str,
        /// The built `.wasm` file.
        pub path: &'static str,
    }

    impl Component {
        /// The component's bytes; panics with a hint when it was not built.
        pub fn bytes(&self) -> Vec<u8> {
            std::fs::read(self.path).unwrap_or_else(|e| {
                panic!(
                    "{} is not built at {} ({e}): run `just build-components`",
                    self.name, self.path
                )
            })
        }
    }

    include!(concat!(env!("OUT_DIR"), "/components.rs"));
}

/// A failure of the test host itself.
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    /// Setting up failed.
    #[error("test host setup: {0}")]
    Setup(String),
    /// The invocation failed.
    #[error(transparent)]
    Invoke(#[from] usher_engine::InvokeError),
}

fn setup<E: std::fmt::Display>(e: E) -> TestError {
    TestError::Setup(e.to_string())
}

type Handler = Box<dyn FnMut(&ServiceRequest) -> Result<ServiceResponse, CapError> + Send>;

/// A scripted stand-in for the internal HTTP services: answers with a
/// handler the test sets, and keeps every request.
pub struct FakeServices {
    handler: Mutex<Handler>,
    calls: Mutex<Vec<ServiceRequest>>,
}

impl FakeServices {
    /// Answers every request `200 {}`.
    pub fn ok() -> Arc<Self> {
        Self::with(|_| Ok(json_response(200, "{}")))
    }

    /// Answers with `handler`.
    pub fn with(
        handler: impl FnMut(&ServiceRequest) -> Result<ServiceResponse, CapError> + Send + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            handler: Mutex::new(Box::new(handler)),
            calls: Mutex::new(Vec::new()),
        })
    }

    /// Replaces the handler.
    pub fn set(
        &self,
        handler: impl FnMut(&ServiceRequest) -> Result<ServiceResponse, CapError> + Send + 'static,
    ) {
        if let Ok(mut h) = self.handler.lock() {
            *h = Box::new(handler);
        }
    }

    /// Every request so far.
    pub fn calls(&self) -> Vec<ServiceRequest> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Requests to one path.
    pub fn calls_to(&self, path: &str) -> Vec<ServiceRequest> {
        self.calls()
            .into_iter()
            .filter(|c| c.path == path)
            .collect()
    }
}

/// A response with a JSON body.
pub fn json_response(status: u16, body: &str) -> ServiceResponse {
    ServiceResponse {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.into(),
    }
}

#[async_trait]
impl ServiceBackend for FakeServices {
    async fn call(&self, request: ServiceRequest) -> Result<ServiceResponse, CapError> {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(request.clone());
        }
        let mut handler = self
            .handler
            .lock()
            .map_err(|_| CapError::Fault("fake services handler poisoned".into()))?;
        (handler)(&request)
    }
}

/// The engine shared by every test host of a test process: 128 instance
/// slots, or `USHER_TEST_MAX_INSTANCES` (fewer slots reserve less address
/// space, which a run under valgrind needs: BENCHMARKS.md, P5).
pub fn shared_engine() -> Arc<UsherEngine> {
    static ENGINE: OnceLock<Arc<UsherEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            Arc::new(
                UsherEngine::new(EngineOptions {
                    max_instances: std::env::var("USHER_TEST_MAX_INSTANCES")
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(128),
                    ..EngineOptions::default()
                })
                .expect("the test engine starts"),
            )
        })
        .clone()
}

/// A component store shared by the test hosts of a test process (content
/// addressed, so sharing is safe; each host uses its own release env).
pub fn shared_store() -> Arc<LocalStore> {
    static STORE: OnceLock<(tempfile::TempDir, Arc<LocalStore>)> = OnceLock::new();
    STORE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temporary folder");
            let store = Arc::new(LocalStore::open(dir.path()).expect("the test store opens"));
            (dir, store)
        })
        .1
        .clone()
}

/// Builds a [`TestHost`].
#[derive(Default)]
pub struct TestHostBuilder {
    resources: String,
    workers: Vec<(String, String, components::Component)>,
    services: Option<Arc<FakeServices>>,
    service_backend: Option<Arc<dyn ServiceBackend>>,
    registry_dir: Option<PathBuf>,
}

impl TestHostBuilder {
    /// The `resources.yaml` text.
    pub fn resources(mut self, yaml: &str) -> Self {
        self.resources = yaml.to_string();
        self
    }

    /// A worker running `component`; `yaml` is the worker's entry without its
    /// `component:` line (trigger, grants, settings, limits …). The worker's
    /// name is the component's name.
    pub fn worker(mut self, component: &components::Component, yaml: &str) -> Self {
        self.workers
            .push((component.name.to_string(), yaml.to_string(), *component));
        self
    }

    /// A worker named `name` running `component`.
    pub fn named_worker(
        mut self,
        name: &str,
        component: &components::Component,
        yaml: &str,
    ) -> Self {
        self.workers
            .push((name.to_string(), yaml.to_string(), *component));
        self
    }

    /// Uses a registry folder (the repository's `workers/`, say): its files are
    /// copied and every worker is pinned to the built component of its name.
    pub fn registry_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.registry_dir = Some(dir.into());
        self
    }

    /// The scripted services.
    pub fn services(mut self, services: Arc<FakeServices>) -> Self {
        self.services = Some(services);
        self
    }

    /// A real services backend (e.g. `usher-backend-http` against a test
    /// server) instead of the scripted services; [`TestHost::services`] then
    /// sees no calls.
    pub fn service_backend(mut self, backend: Arc<dyn ServiceBackend>) -> Self {
        self.service_backend = Some(backend);
        self
    }

    /// Writes the registry, stores the components, starts the runtime.
    pub fn build(self) -> Result<TestHost, TestError> {
        let dir = tempfile::tempdir().map_err(setup)?;
        let registry_dir = dir.path().join("workers");
        std::fs::create_dir_all(&registry_dir).map_err(setup)?;
        let store = shared_store();
        if let Some(src) = &self.registry_dir {
            copy_registry(src, &registry_dir, &store)?;
        }
        if self.registry_dir.is_none() || !self.resources.is_empty() {
            std::fs::write(registry_dir.join("resources.yaml"), &self.resources).map_err(setup)?;
        }
        let mut by_domain: std::collections::BTreeMap<String, String> = Default::default();
        for (name, yaml, component) in &self.workers {
            let (domain, key) = name
                .split_once('/')
                .ok_or_else(|| TestError::Setup(format!("worker name {name} needs a domain")))?;
            let digest = store.put_component(&component.bytes()).map_err(setup)?;
            let mut entry = format!(
                "  {key}:\n    component: {{ name: {name}, version: 0.1.0, sha256: {} }}\n",
                digest.hex()
            );
            for line in yaml.lines() {
                entry.push_str("    ");
                entry.push_str(line);
                entry.push('\n');
            }
            by_domain
                .entry(domain.to_string())
                .or_insert_with(|| format!("domain: {domain}\nworkers:\n"))
                .push_str(&entry);
        }
        for (domain, text) in &by_domain {
            std::fs::write(registry_dir.join(format!("{domain}.yaml")), text).map_err(setup)?;
        }
        let registry = Arc::new(Registry::load(&registry_dir).map_err(setup)?);
        for (name, spec) in &registry.workers {
            let digest = Digest::parse(&spec.component.sha256).map_err(setup)?;
            store
                .record_version(name, &spec.component.version, &digest)
                .map_err(setup)?;
        }
        let embedded = Embedded::in_memory(&registry.resources).map_err(setup)?;
        let services = self.services.unwrap_or_else(FakeServices::ok);
        let invoker = Arc::new(LocalInvoker::new());
        let service_backend: Arc<dyn ServiceBackend> = match self.service_backend {
            Some(backend) => backend,
            None => services.clone(),
        };
        let backends: Backends = embedded.backends(
            service_backend,
            Arc::new(usher_codec::HostCodec),
            invoker.clone(),
        );
        let recorder = Arc::new(Recorder::new());
        let env = format!("test-{}", unique());
        let runtime = Runtime::start(
            shared_engine(),
            registry,
            store.clone(),
            &env,
            Arc::new(backends),
            None,
        )
        .map_err(setup)?
        .with_recorder(recorder.clone());
        let runtime = Arc::new(runtime);
        invoker.bind(&runtime);
        Ok(TestHost {
            runtime,
            recorder,
            embedded,
            services,
            store,
            env,
            _dir: dir,
        })
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed) + u64::from(std::process::id()) * 1_000_000
}

fn copy_registry(src: &Path, dst: &Path, store: &LocalStore) -> Result<(), TestError> {
    for entry in std::fs::read_dir(src).map_err(setup)? {
        let path = entry.map_err(setup)?.path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let name = path
                .file_name()
                .ok_or_else(|| TestError::Setup("bad file".into()))?;
            std::fs::copy(&path, dst.join(name)).map_err(setup)?;
        }
    }
    // Pin every worker whose component was built to the built digest (by
    // the component's name: several workers may run one component).
    let workers = components_of_workers(dst)?;
    for component in components::ALL {
        let mut pinned = false;
        for (worker, name) in &workers {
            if name != component.name {
                continue;
            }
            let (file, key) = usher_registry::locate_worker(dst, worker).map_err(setup)?;
            let digest = store.put_component(&component.bytes()).map_err(setup)?;
            let version = semver::Version::new(0, 1, 0);
            usher_registry::set_component_pin(&file, &key, &version, &digest.hex())
                .map_err(setup)?;
            pinned = true;
        }
        if !pinned {
            // A worker named as its component but not readable above.
            if let Ok((file, key)) = usher_registry::locate_worker(dst, component.name) {
                let digest = store.put_component(&component.bytes()).map_err(setup)?;
                let version = semver::Version::new(0, 1, 0);
                usher_registry::set_component_pin(&file, &key, &version, &digest.hex())
                    .map_err(setup)?;
            }
        }
    }
    Ok(())
}

/// `(worker full name, component name)` of every worker of the registry
/// folder `dir`.
fn components_of_workers(dir: &Path) -> Result<Vec<(String, String)>, TestError> {
    let registry = Registry::load(dir).map_err(setup)?;
    Ok(registry
        .workers
        .iter()
        .map(|(name, spec)| (name.clone(), spec.component.name.clone()))
        .collect())
}

/// A running test host.
pub struct TestHost {
    /// The runtime holding the workers.
    pub runtime: Arc<Runtime>,
    /// Every capability call of every invocation.
    pub recorder: Arc<Recorder>,
    /// The in-memory backends.
    pub embedded: Embedded,
    /// The scripted services.
    pub services: Arc<FakeServices>,
    /// The component store.
    pub store: Arc<LocalStore>,
    /// The release env this host reads.
    pub env: String,
    _dir: tempfile::TempDir,
}

impl TestHost {
    /// Starts building a host.
    pub fn builder() -> TestHostBuilder {
        TestHostBuilder::default()
    }

    /// One invocation.
    pub async fn invoke(&self, worker: &str, input: Input) -> Result<Invocation, TestError> {
        Ok(self.runtime.invoke(worker, &input, None).await?)
    }

    /// One invocation of an event given as JSON (any shape `usher invoke` accepts).
    pub async fn invoke_json(&self, worker: &str, event: Value) -> Result<Invocation, TestError> {
        let trigger = self.runtime.worker(worker)?.spec().trigger.clone();
        let input = usher_trigger_lambda::events::read_event(&trigger, event).map_err(setup)?;
        self.invoke(worker, input).await
    }

    /// Promotes a pushed version of a worker in this host's release env (the
    /// registry pin becomes the rollback target of a first promotion).
    pub fn promote(&self, worker: &str, version: &semver::Version) -> Result<(), TestError> {
        let spec = self.runtime.registry().worker(worker).map_err(setup)?;
        usher_engine::release::promote(&self.store, &self.env, spec, version).map_err(setup)?;
        Ok(())
    }

    /// The capability calls of one function so far.
    pub fn calls(&self, capability: &str, function: &str) -> Vec<CallRecord> {
        self.recorder.calls_to(capability, function)
    }
}

/// Reads a JSON fixture under `tests/fixtures/`.
pub fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}
