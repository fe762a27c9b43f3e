//! The component store commands: push, promote, rollback, ls, pin.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde_json::json;
use usher_engine::{EngineOptions, UsherEngine};
use usher_registry::{Registry, WorkerSpec};
use usher_store::{Digest, LocalStore};

/// Where the registry and store live, and which release environment to use.
pub struct Paths {
    pub registry: PathBuf,
    pub store: PathBuf,
    pub env: String,
}

impl Paths {
    pub fn registry(&self) -> Result<Registry> {
        Registry::load(&self.registry)
            .with_context(|| format!("loading the registry at {}", self.registry.display()))
    }

    pub fn store(&self) -> Result<LocalStore> {
        LocalStore::open(&self.store)
            .with_context(|| format!("opening the store at {}", self.store.display()))
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
fn store_version(
    engine: &UsherEngine,
    store: &LocalStore,
    spec: &WorkerSpec,
    bytes: &[u8],
    version: &semver::Version,
) -> Result<Digest> {
    let component = engine
        .compile(bytes)
        .with_context(|| format!("compiling the component for {}", spec.name))?;
    let problems = engine.check(&component, spec);
    if !problems.is_empty() {
        bail!(
            "the component does not fit worker {}:\n  {}",
            spec.name,
            problems.join("\n  ")
        );
    }
    let digest = store.put_component(bytes)?;
    store.record_version(&spec.name, version, &digest)?;
    if !store.has_precompiled(&digest, engine.engine_key()) {
        store.write_precompiled(&digest, engine.engine_key(), &engine.precompile(bytes)?)?;
    }
    Ok(digest)
}

pub fn push(paths: &Paths, worker: &str, file: &Path, version: &semver::Version) -> Result<()> {
    let registry = paths.registry()?;
    let spec = registry.worker(worker)?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let store = paths.store()?;
    let engine = tool_engine()?;
    let digest = store_version(&engine, &store, spec, &bytes, version)?;
    println!(
        "pushed {worker} {version} {digest} ({} bytes, precompiled)",
        bytes.len()
    );
    Ok(())
}

pub fn promote(paths: &Paths, worker: &str, version: &semver::Version) -> Result<()> {
    let registry = paths.registry()?;
    let spec = registry.worker(worker)?;
    let entry = usher_engine::release::promote(&paths.store()?, &paths.env, spec, version)?;
    println!(
        "{worker}: {} {} is live in {}",
        entry.version, entry.digest, paths.env
    );
    Ok(())
}

pub fn rollback(paths: &Paths, worker: &str) -> Result<()> {
    paths.registry()?.worker(worker)?;
    let entry = paths.store()?.rollback(&paths.env, worker)?;
    println!(
        "{worker}: rolled back to {} {} in {}",
        entry.version, entry.digest, paths.env
    );
    Ok(())
}

pub fn ls(paths: &Paths, as_json: bool) -> Result<()> {
    let registry = paths.registry()?;
    let store = paths.store()?;
    let release = store.release(&paths.env)?;
    let mut names: Vec<String> = registry.workers.keys().cloned().collect();
    for w in store.workers()? {
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
            .versions(name)?
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

pub fn pin(paths: &Paths, from: &Path, components_src: &Path) -> Result<()> {
    let registry = paths.registry()?;
    let store = paths.store()?;
    let engine = tool_engine()?;
    let mut changed = 0;
    for (name, spec) in &registry.workers {
        let file = from.join(format!("{name}.wasm"));
        if !file.exists() {
            bail!(
                "worker {name}: no built component at {} (run `just build-components`)",
                file.display()
            );
        }
        let version = crate_version(
            &components_src.join(name).join("Cargo.toml"),
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
