//! The host refuses to start, naming the worker and the problem, when a
//! component is missing or its digest differs.

use std::sync::Arc;

use usher_backend_embedded::Embedded;
use usher_capabilities::NoCodec;
use usher_engine::{LocalInvoker, Runtime};
use usher_registry::Registry;
use usher_store::{Digest, LocalStore};
use usher_testing::{components, shared_engine, FakeServices};

fn start(registry_dir: &std::path::Path, store: Arc<LocalStore>) -> Result<Runtime, String> {
    let registry = Arc::new(Registry::load(registry_dir).map_err(|e| e.to_string())?);
    let embedded = Embedded::in_memory(&registry.resources).map_err(|e| e.to_string())?;
    let backends = embedded.backends(
        FakeServices::ok(),
        Arc::new(NoCodec),
        Arc::new(LocalInvoker::new()),
    );
    Runtime::start(
        shared_engine(),
        registry,
        store,
        "dev",
        Arc::new(backends),
        None,
    )
    .map_err(|e| e.to_string())
}

fn registry_with_pin(dir: &std::path::Path, sha: &str) {
    std::fs::write(dir.join("resources.yaml"), "").expect("write");
    std::fs::write(
        dir.join("testing.yaml"),
        format!("domain: testing\nworkers:\n  echo:\n    component: {{ name: testing/echo, version: 0.1.0, sha256: {sha} }}\n    trigger: {{ invoke: {{}} }}\n"),
    )
    .expect("write");
}

#[test]
fn a_missing_component_is_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Arc::new(LocalStore::open(dir.path().join("store")).expect("store"));
    let reg = dir.path().join("workers");
    std::fs::create_dir_all(&reg).expect("mkdir");
    registry_with_pin(&reg, &"ab".repeat(32));
    let err = start(&reg, store).err().expect("refused");
    assert!(err.contains("worker testing/echo"), "{err}");
    assert!(err.contains("testing/echo@0.1.0"), "{err}");
}

#[test]
fn a_tampered_component_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Arc::new(LocalStore::open(dir.path().join("store")).expect("store"));
    let bytes = components::TESTING_ECHO.bytes();
    let digest: Digest = store.put_component(&bytes).expect("put");
    let reg = dir.path().join("workers");
    std::fs::create_dir_all(&reg).expect("mkdir");
    registry_with_pin(&reg, &digest.hex());
    assert!(start(&reg, store.clone()).is_ok());
    // The first start left a precompiled artifact: a restart does not recompile.
    assert!(store.has_precompiled(&digest, shared_engine().engine_key()));

    // Flip a byte of the stored file: the digest no longer matches.
    let path = store.component_path(&digest);
    let mut tampered = bytes.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    std::fs::write(&path, tampered).expect("tamper");
    let err = start(&reg, store).err().expect("refused");
    assert!(err.contains("worker testing/echo"), "{err}");
    assert!(err.contains("modified or corrupted"), "{err}");
}
