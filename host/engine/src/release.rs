//! Release edits that know the registry: the registry's pin is the version a
//! worker runs before its first promotion, so it is what a first rollback
//! returns to.

use usher_registry::WorkerSpec;
use usher_store::{Digest, LocalStore, ReleaseEntry, StoreError};

/// Makes `version` live for the worker in `env`. When nothing was promoted
/// for the worker yet, the registry's pinned version is recorded as live
/// first, so that `rollback` can return to it.
pub fn promote(
    store: &LocalStore,
    env: &str,
    spec: &WorkerSpec,
    version: &semver::Version,
) -> Result<ReleaseEntry, StoreError> {
    if store.live(env, &spec.name)?.is_none() && &spec.component.version != version {
        if let Ok(pinned) = Digest::parse(&spec.component.sha256) {
            if store.has_component(&pinned) {
                store.record_version(&spec.name, &spec.component.version, &pinned)?;
                store.promote(env, &spec.name, &spec.component.version)?;
            }
        }
    }
    store.promote(env, &spec.name, version)
}
