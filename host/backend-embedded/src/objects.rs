//! S3-shaped objects as files: `<root>/<bucket>/<key>`.
//!
//! Writes land in `<root>/.tmp` first and are renamed into place, so a
//! reader sees a whole object or none. The entity tag is the hex SHA-256 of
//! the content; listings reuse the tags computed at write time while the
//! file is unchanged.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use usher_capabilities::{CapError, ObjectBackend, ObjectInfo, ObjectWriter};

use crate::EmbeddedError;

/// The longest key, in bytes (as S3).
pub const MAX_KEY_BYTES: usize = 1024;

const TMP_DIR: &str = ".tmp";

/// A temporary file untouched for this long is a crashed write's leftover.
const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(3600);

/// Entity tags by file, valid while the file's modification time and size
/// are unchanged.
#[derive(Default)]
struct Etags(Mutex<HashMap<PathBuf, (SystemTime, u64, String)>>);

impl Etags {
    fn remember(&self, path: &Path, etag: &str) {
        if let Ok(meta) = fs::metadata(path) {
            if let Ok(modified) = meta.modified() {
                self.0
                    .lock()
                    .insert(path.to_path_buf(), (modified, meta.len(), etag.to_string()));
            }
        }
    }

    fn etag(&self, path: &Path, meta: &fs::Metadata) -> std::io::Result<String> {
        let modified = meta.modified()?;
        if let Some((m, size, etag)) = self.0.lock().get(path) {
            if *m == modified && *size == meta.len() {
                return Ok(etag.clone());
            }
        }
        let mut hasher = Sha256::new();
        let mut file = fs::File::open(path)?;
        std::io::copy(&mut file, &mut hasher)?;
        let etag = hex::encode(hasher.finalize());
        self.0
            .lock()
            .insert(path.to_path_buf(), (modified, meta.len(), etag.clone()));
        Ok(etag)
    }
}

struct Inner {
    root: PathBuf,
    buckets: BTreeSet<String>,
    etags: Etags,
    /// The temporary folder of an in-memory store, removed with it.
    _temp: Option<tempfile::TempDir>,
}

/// The embedded [`ObjectBackend`]: one folder per bucket. Content types
/// are accepted and not stored (reads return the bytes only).
pub struct EmbeddedObjects {
    inner: Arc<Inner>,
}

fn io_error(path: &Path, e: &std::io::Error) -> CapError {
    CapError::Unavailable(format!("objects: {}: {e}", path.display()))
}

/// Checks that a key names a file inside its bucket.
fn check_key(key: &str) -> Result<(), CapError> {
    let invalid = |why: &str| Err(CapError::Invalid(format!("object key `{key}` {why}")));
    if key.is_empty() {
        return Err(CapError::Invalid("the object key is empty".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return invalid(&format!("is longer than {MAX_KEY_BYTES} bytes"));
    }
    if key.starts_with('/') {
        return invalid("is an absolute path");
    }
    if key.contains('\\') || key.contains('\0') {
        return invalid("contains `\\` or a NUL character");
    }
    if key.ends_with('/') {
        return invalid("ends with `/`");
    }
    for part in key.split('/') {
        match part {
            "" => return invalid("has an empty path segment (`//`)"),
            "." | ".." => return invalid(&format!("has a `{part}` segment")),
            _ => {}
        }
    }
    Ok(())
}

impl EmbeddedObjects {
    /// Opens the object store under `root` (creating a folder per bucket), or
    /// in a temporary folder when `None`.
    pub(crate) fn open(
        root: Option<&Path>,
        buckets: &[String],
    ) -> Result<EmbeddedObjects, EmbeddedError> {
        let (root, temp) = match root {
            Some(r) => (r.to_path_buf(), None),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("usher-objects-")
                    .tempdir()
                    .map_err(|source| EmbeddedError::Io {
                        path: std::env::temp_dir(),
                        source,
                    })?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        for bucket in buckets {
            if bucket.is_empty()
                || bucket.starts_with('.')
                || bucket.contains('/')
                || bucket.contains('\\')
            {
                return Err(EmbeddedError::Config(format!(
                    "bucket name `{bucket}` cannot be a folder name"
                )));
            }
        }
        for dir in buckets
            .iter()
            .map(|b| root.join(b))
            .chain(std::iter::once(root.join(TMP_DIR)))
        {
            fs::create_dir_all(&dir).map_err(|source| EmbeddedError::Io { path: dir, source })?;
        }
        // Leftovers of writes a crash interrupted. Only old ones: another
        // process may have this data folder open and be writing now (`usher
        // status` and the CLI's readers open it beside a running `usher up`),
        // and its temporary files are touched by every write.
        if let Ok(entries) = fs::read_dir(root.join(TMP_DIR)) {
            for entry in entries.flatten() {
                let stale = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .is_some_and(|age| age >= STALE_TEMP);
                if stale {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        Ok(EmbeddedObjects {
            inner: Arc::new(Inner {
                root,
                buckets: buckets.iter().cloned().collect(),
                etags: Etags::default(),
                _temp: temp,
            }),
        })
    }

    /// The folder holding the buckets.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The file of an object, after checking the bucket and the key.
    fn path(&self, bucket: &str, key: &str) -> Result<PathBuf, CapError> {
        if !self.inner.buckets.contains(bucket) {
            return Err(CapError::NotFound(format!(
                "bucket `{bucket}` is not defined"
            )));
        }
        check_key(key)?;
        Ok(self.inner.root.join(bucket).join(key))
    }

    fn temp_path(&self) -> PathBuf {
        self.inner
            .root
            .join(TMP_DIR)
            .join(uuid::Uuid::new_v4().simple().to_string())
    }
}

/// Moves a finished temporary file to its key.
fn place(temp: &Path, dest: &Path, key: &str) -> Result<(), CapError> {
    let conflict = || {
        CapError::Invalid(format!(
            "object key `{key}` conflicts with another key (a key cannot be both an object and a prefix of other keys ending in `/`)"
        ))
    };
    // A delete removes the folders it empties (see `delete`): one racing
    // this put can remove `parent` (or a folder above it) while it is made
    // or before the rename, which then finds no folder. The folders are
    // made again and the rename retried; only folders that keep vanishing
    // fail the put.
    let mut attempts = 0;
    loop {
        attempts += 1;
        if let Some(parent) = dest.parent() {
            match fs::create_dir_all(parent) {
                Ok(()) => {}
                // A folder above it vanished while it was being made (seen
                // as "not found", or as "already exists" for a folder that
                // was there and is gone by the time it is looked at, or is
                // back by then, made again by another put). Only a file
                // where a folder is needed is a conflict.
                Err(e)
                    if attempts < 100
                        && (e.kind() == ErrorKind::NotFound
                            || (e.kind() == ErrorKind::AlreadyExists
                                && (parent.is_dir() || !parent.exists()))) =>
                {
                    continue
                }
                Err(e) => {
                    let _ = fs::remove_file(temp);
                    return Err(match e.kind() {
                        ErrorKind::AlreadyExists | ErrorKind::NotADirectory => conflict(),
                        _ => io_error(parent, &e),
                    });
                }
            }
        }
        if dest.is_dir() {
            let _ = fs::remove_file(temp);
            return Err(conflict());
        }
        match fs::rename(temp, dest) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound && attempts < 100 && temp.exists() => {}
            Err(e) => {
                let _ = fs::remove_file(temp);
                return Err(io_error(dest, &e));
            }
        }
    }
}

async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, CapError> + Send + 'static,
) -> Result<R, CapError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CapError::Fault(format!("objects task failed: {e}")))?
}

/// Every file under `dir` as (key, path), keys relative to `base`.
fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(base, &path, out)?;
        } else if kind.is_file() {
            let Ok(rel) = path.strip_prefix(base) else {
                continue;
            };
            let parts: Option<Vec<&str>> =
                rel.components().map(|c| c.as_os_str().to_str()).collect();
            if let Some(parts) = parts {
                out.push((parts.join("/"), path));
            }
        }
    }
    Ok(())
}

#[async_trait]
impl ObjectBackend for EmbeddedObjects {
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        _content_type: Option<&str>,
    ) -> Result<ObjectInfo, CapError> {
        let dest = self.path(bucket, key)?;
        let temp = self.temp_path();
        let inner = Arc::clone(&self.inner);
        let key = key.to_string();
        blocking(move || {
            let etag = hex::encode(Sha256::digest(&body));
            let written = (|| {
                let mut file = fs::File::create(&temp)?;
                file.write_all(&body)?;
                file.sync_all()
            })();
            if let Err(e) = written {
                let _ = fs::remove_file(&temp);
                return Err(io_error(&temp, &e));
            }
            place(&temp, &dest, &key)?;
            inner.etags.remember(&dest, &etag);
            Ok(ObjectInfo {
                key,
                size: body.len() as u64,
                etag,
            })
        })
        .await
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, CapError> {
        let path = self.path(bucket, key)?;
        blocking(move || match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::NotFound | ErrorKind::IsADirectory | ErrorKind::NotADirectory
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(io_error(&path, &e)),
        })
        .await
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<ObjectInfo>, CapError> {
        if !self.inner.buckets.contains(bucket) {
            return Err(CapError::NotFound(format!(
                "bucket `{bucket}` is not defined"
            )));
        }
        let inner = Arc::clone(&self.inner);
        let base = self.inner.root.join(bucket);
        let prefix = prefix.to_string();
        blocking(move || {
            // Walk only the folder the prefix points into.
            let start = match prefix.rfind('/') {
                Some(i) if check_key(&prefix[..i]).is_ok() => base.join(&prefix[..i]),
                Some(_) => return Ok(Vec::new()),
                None => base.clone(),
            };
            let mut files = Vec::new();
            walk(&base, &start, &mut files).map_err(|e| io_error(&start, &e))?;
            files.retain(|(key, _)| key.starts_with(prefix.as_str()));
            files.sort_by(|a, b| a.0.cmp(&b.0));
            files.truncate(limit as usize);
            let mut out = Vec::with_capacity(files.len());
            for (key, path) in files {
                let meta = match fs::metadata(&path) {
                    Ok(m) => m,
                    // Deleted under our feet: not listed.
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_error(&path, &e)),
                };
                let etag = inner
                    .etags
                    .etag(&path, &meta)
                    .map_err(|e| io_error(&path, &e))?;
                out.push(ObjectInfo {
                    key,
                    size: meta.len(),
                    etag,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn open_writer(
        &self,
        bucket: &str,
        key: &str,
        _content_type: Option<&str>,
    ) -> Result<Box<dyn ObjectWriter>, CapError> {
        let dest = self.path(bucket, key)?;
        let temp = self.temp_path();
        let file = {
            let temp = temp.clone();
            blocking(move || fs::File::create(&temp).map_err(|e| io_error(&temp, &e))).await?
        };
        Ok(Box::new(FileWriter {
            inner: Arc::clone(&self.inner),
            file: Some(file),
            temp,
            dest,
            key: key.to_string(),
            hasher: Sha256::new(),
            size: 0,
        }))
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), CapError> {
        let path = self.path(bucket, key)?;
        let base = self.inner.root.join(bucket);
        blocking(move || {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::NotFound | ErrorKind::IsADirectory | ErrorKind::NotADirectory
                    ) => {}
                Err(e) => return Err(io_error(&path, &e)),
            }
            // Empty folders left behind would stop a later put of their
            // name as a key: remove them, up to the bucket.
            let mut dir = path.parent().map(Path::to_path_buf);
            while let Some(d) = dir {
                if d == base || !d.starts_with(&base) || fs::remove_dir(&d).is_err() {
                    break;
                }
                dir = d.parent().map(Path::to_path_buf);
            }
            Ok(())
        })
        .await
    }
}

/// A large object written to a temporary file, renamed into place by
/// `finish` and removed by `abort` (or when dropped unfinished).
struct FileWriter {
    inner: Arc<Inner>,
    file: Option<fs::File>,
    temp: PathBuf,
    dest: PathBuf,
    key: String,
    hasher: Sha256,
    size: u64,
}

#[async_trait]
impl ObjectWriter for FileWriter {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), CapError> {
        let Some(mut file) = self.file.take() else {
            return Err(CapError::Invalid("the object writer is closed".into()));
        };
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        let chunk = chunk.to_vec();
        let temp = self.temp.clone();
        let (file, result) = tokio::task::spawn_blocking(move || {
            let r = file.write_all(&chunk);
            (file, r)
        })
        .await
        .map_err(|e| CapError::Fault(format!("objects task failed: {e}")))?;
        self.file = Some(file);
        result.map_err(|e| io_error(&temp, &e))
    }

    async fn finish(mut self: Box<Self>) -> Result<ObjectInfo, CapError> {
        let Some(file) = self.file.take() else {
            return Err(CapError::Invalid("the object writer is closed".into()));
        };
        let etag = hex::encode(std::mem::take(&mut self.hasher).finalize());
        let (temp, dest, key, size) = (
            self.temp.clone(),
            self.dest.clone(),
            self.key.clone(),
            self.size,
        );
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            if let Err(e) = file.sync_all() {
                let _ = fs::remove_file(&temp);
                return Err(io_error(&temp, &e));
            }
            drop(file);
            place(&temp, &dest, &key)?;
            inner.etags.remember(&dest, &etag);
            Ok(ObjectInfo { key, size, etag })
        })
        .await
    }

    async fn abort(mut self: Box<Self>) {
        if let Some(file) = self.file.take() {
            drop(file);
            let temp = self.temp.clone();
            let _ = tokio::task::spawn_blocking(move || fs::remove_file(temp)).await;
        }
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}
