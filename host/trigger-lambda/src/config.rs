//! The function's environment.

use std::path::PathBuf;
use std::time::Duration;

use usher_registry::Registry;
use usher_store::StoreLocation;

use crate::InitError;

/// The default release check interval, in seconds.
pub const DEFAULT_RELEASE_CHECK_SECS: u64 = 30;

/// Where an S3 store is mirrored by default (Lambda's writable folder).
pub const DEFAULT_MIRROR: &str = "/tmp/usher-store-mirror";

/// What the function serves, from its environment.
#[derive(Debug, Clone)]
pub struct LambdaConfig {
    /// `USHER_WORKER`: the worker, e.g. `replication/save-entries` (required).
    pub worker: String,
    /// `USHER_STORE`: `s3://bucket/prefix` or a folder (default `.usher/store`).
    pub store: StoreLocation,
    /// `USHER_ENV`: the release environment (default `dev`).
    pub env: String,
    /// `USHER_REGISTRY`: the registry folder (default `workers`).
    pub registry: PathBuf,
    /// `USHER_RELEASE_CHECK_SECS`: how often the release file is checked
    /// between invocations (default 30 s; 0 checks before every invocation).
    pub release_check: Duration,
    /// `USHER_MIRROR`: the local mirror of an S3 store (default
    /// `/tmp/usher-store-mirror`).
    pub mirror: PathBuf,
}

impl LambdaConfig {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<LambdaConfig, InitError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `var` (tests pass a map).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<LambdaConfig, InitError> {
        let get = |name: &str| var(name).filter(|v| !v.is_empty());
        let worker = get("USHER_WORKER").ok_or(InitError::MissingVar("USHER_WORKER"))?;
        let store_text = get("USHER_STORE").unwrap_or_else(|| ".usher/store".to_string());
        let store = StoreLocation::parse(&store_text).map_err(|e| InitError::BadVar {
            var: "USHER_STORE",
            message: e.to_string(),
        })?;
        let secs = match get("USHER_RELEASE_CHECK_SECS") {
            None => DEFAULT_RELEASE_CHECK_SECS,
            Some(text) => text.parse().map_err(|_| InitError::BadVar {
                var: "USHER_RELEASE_CHECK_SECS",
                message: format!("`{text}` is not a whole number of seconds"),
            })?,
        };
        Ok(LambdaConfig {
            worker,
            store,
            env: get("USHER_ENV").unwrap_or_else(|| "dev".to_string()),
            registry: get("USHER_REGISTRY")
                .unwrap_or_else(|| "workers".to_string())
                .into(),
            release_check: Duration::from_secs(secs),
            mirror: get("USHER_MIRROR")
                .unwrap_or_else(|| DEFAULT_MIRROR.to_string())
                .into(),
        })
    }

    /// Loads and validates the registry folder.
    pub fn load_registry(&self) -> Result<Registry, InitError> {
        Registry::load(&self.registry).map_err(|e| InitError::Registry {
            dir: self.registry.clone(),
            message: e.to_string(),
        })
    }
}
