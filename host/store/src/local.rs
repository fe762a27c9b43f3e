//! The store in a local directory.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use semver::Version;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::{Digest, StoreError};

/// Results of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How many earlier releases of a worker a release file remembers.
pub const HISTORY_LIMIT: usize = 20;

/// One pushed version of a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionEntry {
    /// The version.
    pub version: Version,
    /// The digest of the component bytes.
    pub digest: Digest,
    /// When it was pushed (RFC 3339, UTC).
    pub pushed_at: String,
}

/// The versions file of one worker: every pushed version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct VersionsFile {
    pub(crate) versions: Vec<VersionEntry>,
}

impl VersionsFile {
    /// Records `version` as `digest`; the entry and whether the file changed.
    /// [`StoreError::VersionConflict`] when the version has other bytes.
    pub(crate) fn record(
        &mut self,
        worker: &str,
        version: &Version,
        digest: &Digest,
    ) -> Result<(VersionEntry, bool)> {
        if let Some(existing) = self.versions.iter().find(|e| e.version == *version) {
            if existing.digest == *digest {
                return Ok((existing.clone(), false));
            }
            return Err(StoreError::VersionConflict {
                worker: worker.to_string(),
                version: Box::new(version.clone()),
                existing: existing.digest,
                new: *digest,
            });
        }
        let entry = VersionEntry {
            version: version.clone(),
            digest: *digest,
            pushed_at: now_rfc3339(),
        };
        self.versions.push(entry.clone());
        self.versions.sort_by(|a, b| a.version.cmp(&b.version));
        Ok((entry, true))
    }

    /// One pushed version; [`StoreError::UnknownVersion`] when absent.
    pub(crate) fn find(self, worker: &str, version: &Version) -> Result<VersionEntry> {
        let mut versions = self.versions;
        versions.sort_by(|a, b| a.version.cmp(&b.version));
        match versions.iter().find(|e| e.version == *version) {
            Some(entry) => Ok(entry.clone()),
            None => Err(StoreError::UnknownVersion {
                worker: worker.to_string(),
                version: version.clone(),
                known: versions.into_iter().map(|e| e.version).collect(),
            }),
        }
    }
}

/// The release file of one environment: the live version of each worker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// The live entry of each released worker, by worker name.
    pub workers: BTreeMap<String, ReleaseEntry>,
}

impl Release {
    /// The live entry of a worker, if it is released.
    pub fn entry(&self, worker: &str) -> Option<&ReleaseEntry> {
        self.workers.get(worker)
    }

    /// Makes `pushed` the live entry of `worker`: the previous live version
    /// (when different) goes onto the history, most recent last, keeping at
    /// most [`HISTORY_LIMIT`]. Promoting the live version again changes nothing.
    pub fn promote(&mut self, worker: &str, pushed: &VersionEntry) -> ReleaseEntry {
        let mut history = Vec::new();
        if let Some(current) = self.workers.get(worker) {
            if current.version == pushed.version && current.digest == pushed.digest {
                return current.clone();
            }
            history = current.history.clone();
            history.push(HistoryEntry {
                version: current.version.clone(),
                digest: current.digest,
            });
            if history.len() > HISTORY_LIMIT {
                history.drain(..history.len() - HISTORY_LIMIT);
            }
        }
        let entry = ReleaseEntry {
            version: pushed.version.clone(),
            digest: pushed.digest,
            promoted_at: now_rfc3339(),
            history,
        };
        self.workers.insert(worker.to_string(), entry.clone());
        entry
    }

    /// Makes the previous live version of `worker` live again (the last
    /// history entry); [`StoreError::NotReleased`] or [`StoreError::NoHistory`]
    /// when there is nothing to roll back to. `env` names the environment in
    /// those errors.
    pub fn rollback(&mut self, env: &str, worker: &str) -> Result<ReleaseEntry> {
        let current = self
            .workers
            .get_mut(worker)
            .ok_or_else(|| StoreError::NotReleased {
                env: env.to_string(),
                worker: worker.to_string(),
            })?;
        let previous = current.history.pop().ok_or_else(|| StoreError::NoHistory {
            env: env.to_string(),
            worker: worker.to_string(),
            live: current.version.clone(),
        })?;
        *current = ReleaseEntry {
            version: previous.version,
            digest: previous.digest,
            promoted_at: now_rfc3339(),
            history: std::mem::take(&mut current.history),
        };
        Ok(current.clone())
    }
}

/// The live version of one worker in one environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseEntry {
    /// The live version.
    pub version: Version,
    /// The digest of its component.
    pub digest: Digest,
    /// When it became live (RFC 3339, UTC).
    pub promoted_at: String,
    /// The earlier live versions, most recent last (at most [`HISTORY_LIMIT`]).
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
}

/// An earlier live version of a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The version.
    pub version: Version,
    /// The digest of its component.
    pub digest: Digest,
}

/// The content-addressed component store in a local directory.
///
/// ```text
/// components/sha256-<hex>.wasm                    component bytes, named by digest
/// precompiled/sha256-<hex>.<engine_key>.cwasm     precompiled artifact per engine build
/// versions/<worker, '/' as '~'>.json              {"versions":[{version, digest, pushed_at}]}
/// releases/<env>.json                             {"workers":{"<worker>":{version, digest, promoted_at, history}}}
/// ```
///
/// Every file is written atomically (a temporary file in the same directory,
/// then a rename), and read-modify-write of versions and release files
/// happens under an exclusive file lock, so several processes may use one
/// store at once.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

const COMPONENTS: &str = "components";
const PRECOMPILED: &str = "precompiled";
const VERSIONS: &str = "versions";
const RELEASES: &str = "releases";

impl LocalStore {
    /// Opens the store at `root`, creating it and its directories if needed.
    pub fn open(root: impl Into<PathBuf>) -> Result<LocalStore> {
        let root = root.into();
        for dir in [COMPONENTS, PRECOMPILED, VERSIONS, RELEASES] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).map_err(|source| StoreError::Io { path, source })?;
        }
        Ok(LocalStore { root })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    // ----- components -----

    /// Where the component with this digest is (or would be) stored.
    pub fn component_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join(COMPONENTS)
            .join(format!("{}.wasm", digest.file_stem()))
    }

    /// Whether the component is in the store (its bytes are not checked).
    pub fn has_component(&self, digest: &Digest) -> bool {
        self.component_path(digest).is_file()
    }

    /// Stores component bytes under their digest and returns it. Idempotent:
    /// storing the same bytes again does nothing (a stored file whose bytes
    /// no longer match is replaced).
    pub fn put_component(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        let path = self.component_path(&digest);
        if let Ok(existing) = std::fs::read(&path) {
            if Digest::of(&existing) == digest {
                return Ok(digest);
            }
        }
        write_atomically(&path, bytes)?;
        Ok(digest)
    }

    /// The component's bytes, checked against the digest.
    ///
    /// [`StoreError::MissingComponent`] when it is not stored,
    /// [`StoreError::DigestMismatch`] when the stored bytes were modified.
    pub fn read_component(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.component_path(digest);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(StoreError::MissingComponent {
                    digest: *digest,
                    path,
                })
            }
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(StoreError::DigestMismatch {
                expected: *digest,
                actual,
                path,
            });
        }
        Ok(bytes)
    }

    // ----- precompiled artifacts -----

    /// Where the artifact precompiled from this component by the engine
    /// build `engine_key` is (or would be) stored. `engine_key` must be a
    /// plain name (letters, digits, `-`, `_`, `.`); see [`LocalStore::write_precompiled`].
    pub fn precompiled_path(&self, digest: &Digest, engine_key: &str) -> PathBuf {
        self.root
            .join(PRECOMPILED)
            .join(format!("{}.{engine_key}.cwasm", digest.file_stem()))
    }

    /// Whether a precompiled artifact exists for this component and engine build.
    pub fn has_precompiled(&self, digest: &Digest, engine_key: &str) -> bool {
        check_plain_name("engine key", engine_key).is_ok()
            && self.precompiled_path(digest, engine_key).is_file()
    }

    /// Stores a precompiled artifact (atomically) and returns its path.
    pub fn write_precompiled(
        &self,
        digest: &Digest,
        engine_key: &str,
        bytes: &[u8],
    ) -> Result<PathBuf> {
        check_plain_name("engine key", engine_key)?;
        let path = self.precompiled_path(digest, engine_key);
        write_atomically(&path, bytes)?;
        Ok(path)
    }

    // ----- versions -----

    /// The versions file of a worker.
    pub fn versions_path(&self, worker: &str) -> PathBuf {
        self.root
            .join(VERSIONS)
            .join(format!("{}.json", worker.replace('/', "~")))
    }

    /// Records that `version` of `worker` is the component `digest`, which
    /// must already be in the store. Idempotent for the same digest;
    /// [`StoreError::VersionConflict`] when the version was pushed with
    /// other bytes.
    pub fn record_version(
        &self,
        worker: &str,
        version: &Version,
        digest: &Digest,
    ) -> Result<VersionEntry> {
        check_worker_name(worker)?;
        if !self.has_component(digest) {
            return Err(StoreError::MissingComponent {
                digest: *digest,
                path: self.component_path(digest),
            });
        }
        let path = self.versions_path(worker);
        let _lock = FileLock::exclusive(&path.with_extension("lock"))?;
        let mut file: VersionsFile = read_json(&path)?.unwrap_or_default();
        let (entry, changed) = file.record(worker, version, digest)?;
        if changed {
            write_json(&path, &file)?;
        }
        Ok(entry)
    }

    /// The pushed versions of a worker, oldest (lowest semver) first; empty
    /// when none were pushed.
    pub fn versions(&self, worker: &str) -> Result<Vec<VersionEntry>> {
        check_worker_name(worker)?;
        let file: VersionsFile = read_json(&self.versions_path(worker))?.unwrap_or_default();
        let mut versions = file.versions;
        versions.sort_by(|a, b| a.version.cmp(&b.version));
        Ok(versions)
    }

    /// Every worker with at least one pushed version, sorted.
    pub fn workers(&self) -> Result<Vec<String>> {
        let dir = self.root.join(VERSIONS);
        let mut workers = Vec::new();
        for name in list_dir(&dir)? {
            if let Some(stem) = name.strip_suffix(".json") {
                if !stem.starts_with('.') {
                    workers.push(stem.replace('~', "/"));
                }
            }
        }
        workers.sort();
        Ok(workers)
    }

    /// One pushed version of a worker; [`StoreError::UnknownVersion`]
    /// (listing the pushed versions) when it was never pushed.
    pub fn find_version(&self, worker: &str, version: &Version) -> Result<VersionEntry> {
        check_worker_name(worker)?;
        let file: VersionsFile = read_json(&self.versions_path(worker))?.unwrap_or_default();
        file.find(worker, version)
    }

    // ----- releases -----

    /// The release file of an environment.
    pub fn release_path(&self, env: &str) -> PathBuf {
        self.root.join(RELEASES).join(format!("{env}.json"))
    }

    /// The environments that have a release file, sorted.
    pub fn environments(&self) -> Result<Vec<String>> {
        let mut envs: Vec<String> = list_dir(&self.root.join(RELEASES))?
            .into_iter()
            .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
            .filter(|n| !n.starts_with('.'))
            .collect();
        envs.sort();
        Ok(envs)
    }

    /// The release of an environment (empty when nothing was promoted yet).
    pub fn release(&self, env: &str) -> Result<Release> {
        check_plain_name("environment", env)?;
        Ok(read_json(&self.release_path(env))?.unwrap_or_default())
    }

    /// The live entry of a worker in an environment, if it is released.
    pub fn live(&self, env: &str, worker: &str) -> Result<Option<ReleaseEntry>> {
        check_worker_name(worker)?;
        Ok(self.release(env)?.workers.remove(worker))
    }

    /// Makes a pushed version of a worker live in an environment. The
    /// previous live version (when different) goes onto the entry's history,
    /// most recent last, keeping at most [`HISTORY_LIMIT`]. Promoting the
    /// live version again changes nothing.
    ///
    /// The read-modify-write of the release file holds an exclusive lock
    /// on `releases/<env>.lock`, so concurrent promotes do not lose one another.
    pub fn promote(&self, env: &str, worker: &str, version: &Version) -> Result<ReleaseEntry> {
        check_plain_name("environment", env)?;
        let pushed = self.find_version(worker, version)?;
        if !self.has_component(&pushed.digest) {
            return Err(StoreError::MissingComponent {
                digest: pushed.digest,
                path: self.component_path(&pushed.digest),
            });
        }
        self.edit_release(env, |release| Ok(release.promote(worker, &pushed)))
    }

    /// Makes the previous live version of a worker live again: the last
    /// history entry is removed from the history and becomes the live entry
    /// (the version rolled back from is dropped, so repeated rollbacks walk
    /// further back). [`StoreError::NotReleased`] or
    /// [`StoreError::NoHistory`] when there is nothing to roll back to.
    pub fn rollback(&self, env: &str, worker: &str) -> Result<ReleaseEntry> {
        check_plain_name("environment", env)?;
        check_worker_name(worker)?;
        self.edit_release(env, |release| release.rollback(env, worker))
    }

    /// Replaces the release file of an environment (a local mirror of
    /// another store's release), under its lock.
    pub fn replace_release(&self, env: &str, release: &Release) -> Result<()> {
        check_plain_name("environment", env)?;
        let path = self.release_path(env);
        let _lock = FileLock::exclusive(&path.with_extension("lock"))?;
        write_json(&path, release)
    }

    /// Runs `edit` on the environment's release under its lock and writes
    /// the result back when it differs.
    fn edit_release<T>(
        &self,
        env: &str,
        edit: impl FnOnce(&mut Release) -> Result<T>,
    ) -> Result<T> {
        let path = self.release_path(env);
        let _lock = FileLock::exclusive(&path.with_extension("lock"))?;
        let before: Release = read_json(&path)?.unwrap_or_default();
        let mut release = before.clone();
        let out = edit(&mut release)?;
        if release != before {
            write_json(&path, &release)?;
        }
        Ok(out)
    }
}

/// An exclusive advisory lock on a file, released when dropped.
struct FileLock {
    file: File,
}

impl FileLock {
    fn exclusive(path: &Path) -> Result<FileLock> {
        let io = |source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(io)?;
        file.lock().map_err(io)?;
        Ok(FileLock { file })
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Closing the file releases the lock too; unlocking first is explicit.
        let _ = self.file.unlock();
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory, flushed to disk, then renamed over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    // Make the rename itself durable (best effort: not every platform can
    // open a directory).
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StoreError::Json {
                path: path.to_path_buf(),
                source,
            }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| StoreError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    bytes.push(b'\n');
    write_atomically(path, &bytes)
}

fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let io = |source| StoreError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        if let Some(name) = entry.map_err(io)?.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// The current time as RFC 3339 in UTC with milliseconds
/// (`2026-05-01T12:34:56.789Z`).
pub(crate) fn now_rfc3339() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Environment names and engine keys: letters, digits, `-`, `_`, `.`, not
/// starting with `.`, at most 128 characters.
pub(crate) fn check_plain_name(kind: &'static str, name: &str) -> Result<()> {
    let invalid = |reason: &str| StoreError::InvalidName {
        kind,
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.len() > 128 {
        return Err(invalid("it is longer than 128 characters"));
    }
    if name.starts_with('.') {
        return Err(invalid("it starts with `.`"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(invalid("use letters, digits, `-`, `_` and `.`"));
    }
    Ok(())
}

/// Worker names: `/`-separated parts, each a plain name (so `~` never
/// appears and the name maps to one file name and back).
pub(crate) fn check_worker_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(StoreError::InvalidName {
            kind: "worker",
            name: String::new(),
            reason: "it is empty".into(),
        });
    }
    for part in name.split('/') {
        check_plain_name("worker", part).map_err(|e| match e {
            StoreError::InvalidName { reason, .. } => StoreError::InvalidName {
                kind: "worker",
                name: name.to_string(),
                reason: format!("part `{part}`: {reason}"),
            },
            other => other,
        })?;
    }
    Ok(())
}
