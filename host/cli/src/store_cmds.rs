//! The component store commands: push, promote, rollback, ls, pin.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde_json::json;
use usher_engine::{EngineOptions, UsherEngine};
use usher_registry::{Registry, WorkerSpec};
use usher_store::{ComponentStore, Digest, LocalStore, ReleaseEntry, StoreLocation};

/// Where the registry and store live, and which release environment to use.
pub struct Paths {
    pub registry: PathBuf,
    pub store: PathBuf,
    pub env: String,
    /// `--workflows` (default: the folder `workflows` beside the registry).
    pub workflows: Option<PathBuf>,
}

impl Paths {
    /// The workflows folder: `--workflows`, or `workflows` beside the
    /// registry folder (`workers/../workflows`).
    pub fn workflows_dir(&self) -> PathBuf {
        match &self.workflows {
            Some(dir) => dir.clone(),
            None => {
                let parent = self
                    .registry
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(std::path::Path::new("."));
                parent.join("workflows")
            }
        }
    }

    pub fn registry(&self) -> Result<Registry> {
        Registry::load(&self.registry)
            .with_context(|| format!("loading the registry at {}", self.registry.display()))
    }

    /// The local store folder (commands that run workers need one).
    pub fn store(&self) -> Result<LocalStore> {
        if let StoreLocation::S3 { .. } = self.location()? {
            bail!(
                "--store {}: this command needs a local store folder (s3:// stores serve push, promote, rollback, ls and `usher lambda`)",
                self.store.display()
            );
        }
        LocalStore::open(&self.store)
            .with_context(|| format!("opening the store at {}", self.store.display()))
    }

    /// Where the store is: `s3://bucket/prefix` or a folder.
    pub fn location(&self) -> Result<StoreLocation> {
        Ok(StoreLocation::parse(&self.store.to_string_lossy())?)
    }

    /// The store, local or S3 (endpoint, region and credentials from the
    /// standard AWS configuration chain; `AWS_ENDPOINT_URL` for local servers).
    pub async fn any_store(&self) -> Result<Box<dyn ComponentStore>> {
        let location = self.location()?;
        location
            .open()
            .await
            .with_context(|| format!("opening the store at {location}"))
    }
}

/// A small engine for checking and precompiling components.
pub fn tool_engine() -> Result<Arc<UsherEngine>> {
    Ok(Arc::new(UsherEngine::new(EngineOptions {
        max_instances: 4,
        ..EngineOptions::default()
    })?))
}

/// Stores, checks and precompiles one component for a worker.
pub(crate) async fn store_version(
    engine: &UsherEngine,
    store: &dyn ComponentStore,
    spec: &WorkerSpec,
    bytes: &[u8],
    version: &semver::Version,
) -> Result<Digest> {
    // One compile at most: the stored artifact of these bytes when there is
    // one (`pin` into a store seeded with artifacts compiles nothing), else
    // the artifact made now, which is also what the component is checked on.
    let digest = Digest::of(bytes);
    let stored = match store.read_precompiled(&digest, engine.engine_key()).await? {
        Some(artifact) => engine.load_artifact(&artifact).ok(),
        None => None,
    };
    let (component, made) = match stored {
        Some(component) => (component, None),
        None => {
            let artifact = engine
                .precompile(bytes)
                .with_context(|| format!("compiling the component for {}", spec.name))?;
            (engine.load_artifact(&artifact)?, Some(artifact))
        }
    };
    let problems = engine.check(&component, spec);
    if !problems.is_empty() {
        bail!(
            "the component does not fit worker {}:\n  {}",
            spec.name,
            problems.join("\n  ")
        );
    }
    let digest = store.put_component(bytes).await?;
    store.record_version(&spec.name, version, &digest).await?;
    if let Some(artifact) = made {
        store
            .write_precompiled(&digest, engine.engine_key(), &artifact)
            .await?;
    }
    Ok(digest)
}

pub async fn push(
    paths: &Paths,
    worker: &str,
    file: &Path,
    version: &semver::Version,
) -> Result<()> {
    let registry = paths.registry()?;
    let spec = registry.worker(worker)?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let store = paths.any_store().await?;
    let engine = tool_engine()?;
    let digest = store_version(&engine, store.as_ref(), spec, &bytes, version).await?;
    println!(
        "pushed {worker} {version} {digest} ({} bytes, precompiled)",
        bytes.len()
    );
    Ok(())
}

/// Makes `version` live; when nothing was promoted for the worker yet, the
/// registry's pin is recorded as live first so that `rollback` returns to it
/// (as `usher_engine::release::promote` does for a local store).
pub(crate) async fn promote_over_pin(
    store: &dyn ComponentStore,
    env: &str,
    spec: &WorkerSpec,
    version: &semver::Version,
) -> Result<ReleaseEntry> {
    let released = store.release(env).await?.entry(&spec.name).is_some();
    if !released && &spec.component.version != version {
        if let Ok(pinned) = Digest::parse(&spec.component.sha256) {
            if store.has_component(&pinned).await? {
                store
                    .record_version(&spec.name, &spec.component.version, &pinned)
                    .await?;
                store
                    .promote(env, &spec.name, &spec.component.version)
                    .await?;
            }
        }
    }
    Ok(store.promote(env, &spec.name, version).await?)
}

pub async fn promote(paths: &Paths, worker: &str, version: &semver::Version) -> Result<()> {
    let registry = paths.registry()?;
    let spec = registry.worker(worker)?;
    let store = paths.any_store().await?;
    let entry = promote_over_pin(store.as_ref(), &paths.env, spec, version).await?;
    println!(
        "{worker}: {} {} is live in {}",
        entry.version, entry.digest, paths.env
    );
    Ok(())
}

pub async fn rollback(paths: &Paths, worker: &str) -> Result<()> {
    paths.registry()?.worker(worker)?;
    let entry = paths
        .any_store()
        .await?
        .rollback(&paths.env, worker)
        .await?;
    println!(
        "{worker}: rolled back to {} {} in {}",
        entry.version, entry.digest, paths.env
    );
    Ok(())
}

pub async fn ls(paths: &Paths, as_json: bool) -> Result<()> {
    let registry = paths.registry()?;
    let store = paths.any_store().await?;
    let release = store.release(&paths.env).await?;
    let mut names: Vec<String> = registry.workers.keys().cloned().collect();
    for w in store.workers().await? {
        if !names.contains(&w) {
            names.push(w);
        }
    }
    names.sort();
    let mut rows = Vec::new();
    for name in &names {
        let spec = registry.workers.get(name);
        let live = release
            .workers
            .get(name)
            .map(|e| (e.version.clone(), e.digest.to_string(), "release"));
        let pinned = spec.map(|s| {
            (
                s.component.version.clone(),
                format!("sha256:{}", s.component.sha256),
                "registry pin",
            )
        });
        let (live_version, live_digest, source) = match (live, pinned) {
            (Some(l), _) => (Some(l.0), Some(l.1), l.2),
            (None, Some(p)) => (Some(p.0), Some(p.1), p.2),
            (None, None) => (None, None, "not in the registry"),
        };
        let versions: Vec<serde_json::Value> = store
            .versions(name)
            .await?
            .into_iter()
            .map(|v| {
                json!({
                    "version": v.version.to_string(),
                    "digest": v.digest.to_string(),
                    "pushed_at": v.pushed_at,
                    "live": Some(&v.version) == live_version.as_ref() && Some(v.digest.to_string()) == live_digest,
                })
            })
            .collect();
        rows.push(json!({
            "worker": name,
            "trigger": spec.map(|s| s.trigger.kind()),
            "live": {"version": live_version.map(|v| v.to_string()), "digest": live_digest, "source": source},
            "versions": versions,
        }));
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<34} {:<10} {:<24} {:<6} {:<20} SOURCE",
        "WORKER", "TRIGGER", "VERSION", "LIVE", "DIGEST"
    );
    for row in &rows {
        let worker = row["worker"].as_str().unwrap_or_default();
        let trigger = row["trigger"].as_str().unwrap_or("-");
        let live_version = row["live"]["version"].as_str().unwrap_or("-");
        let live_digest = row["live"]["digest"].as_str().unwrap_or("-");
        let source = row["live"]["source"].as_str().unwrap_or("-");
        let versions = row["versions"].as_array().cloned().unwrap_or_default();
        if versions.is_empty() {
            println!(
                "{worker:<34} {trigger:<10} {live_version:<24} {:<6} {:<20} {source} (not pushed)",
                "*",
                short(live_digest)
            );
        }
        for v in versions {
            let live = if v["live"].as_bool().unwrap_or(false) {
                "*"
            } else {
                ""
            };
            println!(
                "{worker:<34} {trigger:<10} {:<24} {live:<6} {:<20} {}",
                v["version"].as_str().unwrap_or_default(),
                short(v["digest"].as_str().unwrap_or_default()),
                if live.is_empty() { "" } else { source },
            );
        }
    }
    Ok(())
}

fn short(digest: &str) -> String {
    digest.chars().take(19).collect::<String>() + "…"
}

/// The `version` of a component crate's Cargo.toml (following
/// `version.workspace = true` to the components workspace).
fn crate_version(manifest: &Path, workspace_manifest: &Path) -> Result<semver::Version> {
    let read = |path: &Path| -> Result<toml::Table> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        text.parse()
            .with_context(|| format!("parsing {}", path.display()))
    };
    let doc = read(manifest)?;
    let version = doc.get("package").and_then(|p| p.get("version"));
    let text = match version {
        Some(toml::Value::String(v)) => v.clone(),
        Some(toml::Value::Table(t))
            if t.get("workspace").and_then(toml::Value::as_bool) == Some(true) =>
        {
            read(workspace_manifest)?
                .get("workspace")
                .and_then(|w| w.get("package"))
                .and_then(|p| p.get("version"))
                .and_then(toml::Value::as_str)
                .with_context(|| {
                    format!(
                        "{} has no workspace.package.version",
                        workspace_manifest.display()
                    )
                })?
                .to_string()
        }
        _ => bail!("{} has no package.version", manifest.display()),
    };
    Ok(text.parse()?)
}

pub async fn pin(paths: &Paths, from: &Path, components_src: &Path) -> Result<()> {
    let registry = paths.registry()?;
    let store = paths.store()?;
    let engine = tool_engine()?;
    let mut changed = 0;
    for (name, spec) in &registry.workers {
        // The component's own name: several workers may run one component
        // (data-pipeline/send-data on five queues), each pinned to its build.
        let component = &spec.component.name;
        let file = from.join(format!("{component}.wasm"));
        if !file.exists() {
            bail!(
                "worker {name}: no built component {component} at {} (run `just build-components`)",
                file.display()
            );
        }
        let version = crate_version(
            &components_src.join(component).join("Cargo.toml"),
            &components_src.join("Cargo.toml"),
        )?;
        let bytes = std::fs::read(&file)?;
        // A rebuilt component whose crate version was already stored with
        // other bytes becomes a dev pre-release of that version named by its
        // digest, so the store's versions stay immutable.
        let digest = Digest::of(&bytes);
        let version = match store.find_version(name, &version) {
            Ok(existing) if existing.digest != digest => {
                let dev: semver::Version =
                    format!("{version}-dev.{}", &digest.hex()[..12]).parse()?;
                println!("{name}: {version} is already stored with other bytes; pinning {dev} (bump the crate version to release it)");
                dev
            }
            _ => version,
        };
        let digest = store_version(&engine, &store, spec, &bytes, &version)
            .await
            .with_context(|| format!("worker {name}: storing {} as {version}", file.display()))?;
        let (yaml, key) = usher_registry::locate_worker(&paths.registry, name)?;
        if usher_registry::set_component_pin(&yaml, &key, &version, &digest.hex())? {
            changed += 1;
            println!("pinned {name} {version} {digest} in {}", yaml.display());
        } else {
            println!("{name} {version} {digest} (pin unchanged)");
        }
    }
    if changed > 0 {
        println!("{changed} pin(s) changed: commit the registry files");
    }
    Ok(())
}
