//! A registry (the repository's workers plus testing workers) and a local
//! component store holding the built components, for the Lambda host tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use usher_backend_embedded::Embedded;
use usher_capabilities::NoCodec;
use usher_engine::LocalInvoker;
use usher_registry::Registry;
use usher_store::LocalStore;
use usher_testing::{components, FakeServices};
use usher_trigger_lambda::{LambdaConfig, LambdaHost};

/// The testing workers added to the repository's registry.
const TESTING: &str = "domain: testing
workers:
  echo:
    component: { name: testing/echo, version: 0.1.0, sha256: PIN }
    trigger: { invoke: {} }
  echo-arguments:
    component: { name: testing/echo, version: 0.1.0, sha256: PIN }
    trigger: { resolver: { type_name: Query, field_name: echoArguments } }
  spin-forever:
    component: { name: testing/spin-forever, version: 0.1.0, sha256: PIN }
    trigger: { invoke: {} }
    limits: { timeout_ms: 200 }
  memory-bomb:
    component: { name: testing/memory-bomb, version: 0.1.0, sha256: PIN }
    trigger: { invoke: {} }
    limits: { memory_mb: 16 }
";

/// A registry folder and a store folder with every worker pinned to its
/// built component.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub registry: PathBuf,
    pub store: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = dir.path().join("workers");
        let store_dir = dir.path().join("store");
        std::fs::create_dir_all(&registry).expect("registry dir");
        let store = LocalStore::open(&store_dir).expect("store");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workers");
        for entry in std::fs::read_dir(&repo).expect("workers/") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let name = path.file_name().expect("file name");
                std::fs::copy(&path, registry.join(name)).expect("copy");
            }
        }
        std::fs::write(registry.join("testing.yaml"), TESTING).expect("testing.yaml");
        let version = semver::Version::new(0, 1, 0);
        for component in components::ALL {
            let digest = store.put_component(&component.bytes()).expect("put");
            for worker in workers_running(&registry, component.name) {
                let (file, key) =
                    usher_registry::locate_worker(&registry, &worker).expect("locate");
                usher_registry::set_component_pin(&file, &key, &version, &digest.hex())
                    .expect("pin");
            }
        }
        Fixture {
            dir,
            registry,
            store: store_dir,
        }
    }

    pub fn config(&self, worker: &str) -> LambdaConfig {
        let store = self.store.display().to_string();
        let registry = self.registry.display().to_string();
        let worker = worker.to_string();
        LambdaConfig::from_lookup(|name| match name {
            "USHER_WORKER" => Some(worker.clone()),
            "USHER_STORE" => Some(store.clone()),
            "USHER_REGISTRY" => Some(registry.clone()),
            "USHER_ENV" => Some("lambda-test".into()),
            "USHER_RELEASE_CHECK_SECS" => Some("0".into()),
            _ => None,
        })
        .expect("config")
    }
}

/// The workers of the registry folder whose component is `component`.
fn workers_running(registry: &Path, component: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(registry).expect("registry") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read");
        let Some(domain) = text
            .lines()
            .find_map(|l| l.strip_prefix("domain: ").map(str::trim))
        else {
            continue;
        };
        let mut key = None;
        for line in text.lines() {
            if let Some(k) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
                if !k.starts_with(' ') {
                    key = Some(k.to_string());
                }
            }
            if line.contains(&format!("name: {component},")) {
                if let Some(k) = &key {
                    out.push(format!("{domain}/{k}"));
                }
            }
        }
    }
    out
}

/// A started host and the embedded backends and services it runs on.
pub struct Running {
    pub host: LambdaHost,
    pub embedded: Embedded,
    pub services: Arc<FakeServices>,
}

pub async fn start(config: &LambdaConfig) -> Running {
    let registry = Arc::new(config.load_registry().expect("registry"));
    let embedded = Embedded::in_memory(&registry.resources).expect("embedded");
    let services = FakeServices::ok();
    let invoker = Arc::new(LocalInvoker::new());
    let backends = embedded.backends(services.clone(), Arc::new(NoCodec), invoker.clone());
    let host = LambdaHost::init(
        config,
        usher_testing::shared_engine(),
        registry,
        Arc::new(backends),
    )
    .await
    .expect("the host starts");
    invoker.bind(host.runtime());
    Running {
        host,
        embedded,
        services,
    }
}

/// The registry of a config (for tests that build backends themselves).
pub fn registry(config: &LambdaConfig) -> Arc<Registry> {
    Arc::new(config.load_registry().expect("registry"))
}

/// Reads a fixture of `tests/fixtures/`.
pub fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("fixture");
    serde_json::from_str(&text).expect("fixture json")
}
