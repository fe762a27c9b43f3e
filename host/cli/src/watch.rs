//! `usher watch <worker>`: rebuilds a worker's component whenever its
//! source folder changes, pushes it as a new version, and promotes it, so
//! the running `usher up` on the same store and environment hot swaps it
//! (its release watcher checks every 0.5 s), as `spin watch` or
//! `cargo lambda watch` do. A failed build shows cargo's errors and
//! changes nothing: the live version keeps serving. A build whose bytes
//! equal the live component's is not pushed.
//!
//! The source folder is `<components>/<component name>` (the registry's
//! `component.name`, e.g. `replication/save-entries`), its crate the
//! folder's name; the build is `just build-components`' build of that one
//! crate (release, `wasm32-wasip2`, the same path remapping, so the cache
//! of the components' target dir is shared with it). Changes are found by
//! polling the folder's files (modification time and size) every
//! [`POLL_EVERY`], skipping `target/` and hidden files; a burst of changes
//! builds once, after [`QUIET_FOR`] without another change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use semver::{Prerelease, Version};
use sha2::{Digest as _, Sha256};

use crate::store_cmds::{promote_over_pin, store_version, tool_engine, Paths};

/// How often the source folder is scanned.
const POLL_EVERY: Duration = Duration::from_millis(300);
/// How long the folder must stay unchanged before a build starts.
const QUIET_FOR: Duration = Duration::from_millis(400);

/// What `usher watch` is asked.
pub struct WatchArgs {
    /// The worker.
    pub worker: String,
    /// The components' workspace (its `Cargo.toml`).
    pub components: PathBuf,
    /// The components' cargo target dir.
    pub target_dir: PathBuf,
    /// Build, push and promote once, then exit (no watching).
    pub once: bool,
}

/// The default target dir: `$USHER_CACHE/components-target`, else
/// `$HOME/.cache/usher/components-target` (the justfile's).
pub fn default_target_dir() -> PathBuf {
    let cache = std::env::var_os("USHER_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/usher")))
        .unwrap_or_else(|| PathBuf::from(".usher/cache"));
    cache.join("components-target")
}

/// The files of the source folder and their (modified, size).
type Snapshot = BTreeMap<PathBuf, (SystemTime, u64)>;

fn snapshot(dir: &Path) -> Snapshot {
    let mut out = Snapshot::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name.ends_with('~') || name == "target" {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if let Ok(modified) = meta.modified() {
                out.insert(entry.path(), (modified, meta.len()));
            }
        }
    }
    out
}

/// The worker's source folder and crate name.
fn source_of(components: &Path, component: &str) -> Result<(PathBuf, String)> {
    let dir = components.join(component);
    if !dir.join("Cargo.toml").is_file() {
        bail!(
            "no component source at {} (the registry's component name `{component}` under --components)",
            dir.display()
        );
    }
    let krate = component
        .rsplit('/')
        .next()
        .filter(|c| !c.is_empty())
        .with_context(|| format!("component name `{component}` names no crate"))?;
    Ok((dir, krate.to_string()))
}

/// Builds the crate as `just build-components` does; `Ok(None)` when the
/// build failed (cargo has printed why on stderr).
fn build(components: &Path, target_dir: &Path, krate: &str) -> Result<Option<PathBuf>> {
    let manifest = components.join("Cargo.toml");
    let root = components
        .canonicalize()
        .with_context(|| format!("{}", components.display()))?;
    let root = root.parent().unwrap_or(&root).to_path_buf();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from(".cargo"));
    let rustflags = format!(
        "--remap-path-prefix={}=/usher --remap-path-prefix={}=/cargo",
        root.display(),
        cargo_home.display()
    );
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .arg("build")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["--release", "--target", "wasm32-wasip2", "-p", krate])
        .env("CARGO_TARGET_DIR", target_dir)
        .env("RUSTFLAGS", rustflags)
        .status()
        .with_context(|| format!("running cargo build for {krate}"))?;
    if !status.success() {
        return Ok(None);
    }
    let artifact = target_dir
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", krate.replace('-', "_")));
    if !artifact.is_file() {
        bail!("the build made no {}", artifact.display());
    }
    Ok(Some(artifact))
}

/// The next watch version: the registry's version with the prerelease
/// `watch.N`, N one more than any `watch.N` already pushed.
fn next_version(base: &Version, pushed: &[Version]) -> Version {
    let n = pushed
        .iter()
        .filter(|v| (v.major, v.minor, v.patch) == (base.major, base.minor, base.patch))
        .filter_map(|v| v.pre.as_str().strip_prefix("watch.")?.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
        + 1;
    let mut v = Version::new(base.major, base.minor, base.patch);
    v.pre = Prerelease::new(&format!("watch.{n}")).unwrap_or(Prerelease::EMPTY);
    v
}

/// One round: build, and push and promote when the bytes changed.
async fn round(paths: &Paths, args: &WatchArgs, krate: &str) -> Result<bool> {
    let registry = paths.registry()?;
    let spec = registry.worker(&args.worker)?;
    let store = paths.any_store().await?;
    let live = store
        .release(&paths.env)
        .await?
        .entry(&args.worker)
        .map(|e| (e.version.clone(), e.digest.to_string()))
        .unwrap_or_else(|| {
            (
                spec.component.version.clone(),
                spec.component.sha256.clone(),
            )
        });
    eprintln!("usher watch: building {} ({krate})", args.worker);
    let (components, target_dir, k) = (
        args.components.clone(),
        args.target_dir.clone(),
        krate.to_string(),
    );
    let built = tokio::task::spawn_blocking(move || build(&components, &target_dir, &k))
        .await
        .context("the build task")??;
    let Some(artifact) = built else {
        eprintln!(
            "usher watch: the build of {} failed (above); {} {} keeps serving",
            args.worker, args.worker, live.0
        );
        return Ok(false);
    };
    let bytes =
        std::fs::read(&artifact).with_context(|| format!("reading {}", artifact.display()))?;
    let digest = hex::encode(Sha256::digest(&bytes));
    if digest == live.1 {
        eprintln!(
            "usher watch: {} is unchanged ({} {} is live)",
            args.worker, args.worker, live.0
        );
        return Ok(true);
    }
    let pushed: Vec<Version> = store
        .versions(&args.worker)
        .await?
        .into_iter()
        .map(|v| v.version)
        .collect();
    let version = next_version(&spec.component.version, &pushed);
    let engine = tool_engine()?;
    if let Err(e) = store_version(&engine, store.as_ref(), spec, &bytes, &version).await {
        eprintln!(
            "usher watch: {} {version} refused: {e:#}; {} {} keeps serving",
            args.worker, args.worker, live.0
        );
        return Ok(false);
    }
    let entry = promote_over_pin(store.as_ref(), &paths.env, spec, &version).await?;
    eprintln!(
        "usher watch: {} {} ({}) is live in {}; a running `usher up` swaps it within a second",
        args.worker, entry.version, entry.digest, paths.env
    );
    Ok(true)
}

/// Runs `usher watch`.
pub async fn run(paths: &Paths, args: WatchArgs) -> Result<()> {
    let registry = paths.registry()?;
    let spec = registry.worker(&args.worker)?;
    let (dir, krate) = source_of(&args.components, &spec.component.name)?;
    if args.once {
        return match round(paths, &args, &krate).await? {
            true => Ok(()),
            false => bail!("the new version of {} was not made live", args.worker),
        };
    }
    let mut seen = snapshot(&dir);
    round(paths, &args, &krate).await?;
    eprintln!(
        "usher watch: watching {} for {} (Ctrl-C stops)",
        dir.display(),
        args.worker
    );
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tokio::time::sleep(POLL_EVERY) => {}
        }
        let now = snapshot(&dir);
        if now == seen {
            continue;
        }
        // Wait for the burst to end.
        let mut settled = now;
        loop {
            tokio::time::sleep(QUIET_FOR).await;
            let again = snapshot(&dir);
            if again == settled {
                break;
            }
            settled = again;
        }
        seen = settled;
        if let Err(e) = round(paths, &args, &krate).await {
            eprintln!("usher watch: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_version_counts_up_per_base() {
        let base = Version::parse("0.1.5").unwrap();
        assert_eq!(next_version(&base, &[]).to_string(), "0.1.5-watch.1");
        let pushed = [
            Version::parse("0.1.5").unwrap(),
            Version::parse("0.1.5-watch.1").unwrap(),
            Version::parse("0.1.5-watch.7").unwrap(),
            Version::parse("0.1.4-watch.9").unwrap(),
        ];
        assert_eq!(next_version(&base, &pushed).to_string(), "0.1.5-watch.8");
    }

    #[test]
    fn snapshot_skips_target_and_hidden_files() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("src")).unwrap();
        std::fs::create_dir_all(tmp.path().join("target")).unwrap();
        std::fs::write(tmp.path().join("src/lib.rs"), "x").unwrap();
        std::fs::write(tmp.path().join("target/x.wasm"), "x").unwrap();
        std::fs::write(tmp.path().join(".lib.rs.swp"), "x").unwrap();
        let s = snapshot(tmp.path());
        assert_eq!(s.len(), 1);
        assert!(s.contains_key(&tmp.path().join("src/lib.rs")));
    }
}
