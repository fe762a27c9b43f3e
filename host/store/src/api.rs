//! One interface over the local and the S3 store, for the commands that work
//! on either (`usher push/promote/rollback/ls --store …`).

use async_trait::async_trait;
use semver::Version;

use crate::local::{Release, ReleaseEntry, Result, VersionEntry};
use crate::{Digest, LocalStore, S3Store, StoreError};

/// Where a store lives: `s3://bucket[/prefix]` or a local folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A folder ([`LocalStore`]).
    Local(std::path::PathBuf),
    /// An S3 prefix ([`S3Store`]); the prefix has no leading or trailing `/`.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix (may be empty).
        prefix: String,
    },
}

impl StoreLocation {
    /// Parses `s3://bucket[/prefix]`; anything else is a folder.
    pub fn parse(text: &str) -> Result<StoreLocation> {
        let Some(rest) = text.strip_prefix("s3://") else {
            if text.is_empty() {
                return Err(StoreError::InvalidLocation(text.to_string()));
            }
            return Ok(StoreLocation::Local(text.into()));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty()
            || !bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
        {
            return Err(StoreError::InvalidLocation(text.to_string()));
        }
        Ok(StoreLocation::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        })
    }

    /// Opens the store: a folder directly, S3 with the standard AWS
    /// configuration chain (plus `AWS_ENDPOINT_URL` for local servers).
    pub async fn open(&self) -> Result<Box<dyn ComponentStore>> {
        let store: Box<dyn ComponentStore> = match self {
            StoreLocation::Local(dir) => Box::new(LocalStore::open(dir)?),
            StoreLocation::S3 { bucket, prefix } => {
                Box::new(S3Store::from_env(bucket, prefix).await?)
            }
        };
        Ok(store)
    }
}

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Local(dir) => write!(f, "{}", dir.display()),
            StoreLocation::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StoreLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// The operations every component store offers, local or S3.
#[async_trait]
pub trait ComponentStore: Send + Sync {
    /// Where the store is, for messages.
    fn location(&self) -> String;
    /// Stores component bytes under their digest (idempotent).
    async fn put_component(&self, bytes: &[u8]) -> Result<Digest>;
    /// Whether the component is stored (its bytes are not checked).
    async fn has_component(&self, digest: &Digest) -> Result<bool>;
    /// The component's bytes, checked against the digest.
    async fn read_component(&self, digest: &Digest) -> Result<Vec<u8>>;
    /// Whether an artifact precompiled by the engine build `engine_key` exists.
    async fn has_precompiled(&self, digest: &Digest, engine_key: &str) -> Result<bool>;
    /// The artifact precompiled by the engine build `engine_key`, if stored.
    async fn read_precompiled(&self, digest: &Digest, engine_key: &str) -> Result<Option<Vec<u8>>>;
    /// Stores a precompiled artifact.
    async fn write_precompiled(
        &self,
        digest: &Digest,
        engine_key: &str,
        bytes: &[u8],
    ) -> Result<()>;
    /// Records that `version` of `worker` is the stored component `digest`.
    async fn record_version(
        &self,
        worker: &str,
        version: &Version,
        digest: &Digest,
    ) -> Result<VersionEntry>;
    /// The pushed versions of a worker, oldest first.
    async fn versions(&self, worker: &str) -> Result<Vec<VersionEntry>>;
    /// Every worker with at least one pushed version, sorted.
    async fn workers(&self) -> Result<Vec<String>>;
    /// The release of an environment (empty when nothing was promoted).
    async fn release(&self, env: &str) -> Result<Release>;
    /// Makes a pushed version live (see [`Release::promote`]).
    async fn promote(&self, env: &str, worker: &str, version: &Version) -> Result<ReleaseEntry>;
    /// Makes the previous live version live again (see [`Release::rollback`]).
    async fn rollback(&self, env: &str, worker: &str) -> Result<ReleaseEntry>;
}

#[async_trait]
impl ComponentStore for LocalStore {
    fn location(&self) -> String {
        self.root().display().to_string()
    }
    async fn put_component(&self, bytes: &[u8]) -> Result<Digest> {
        LocalStore::put_component(self, bytes)
    }
    async fn has_component(&self, digest: &Digest) -> Result<bool> {
        Ok(LocalStore::has_component(self, digest))
    }
    async fn read_component(&self, digest: &Digest) -> Result<Vec<u8>> {
        LocalStore::read_component(self, digest)
    }
    async fn has_precompiled(&self, digest: &Digest, engine_key: &str) -> Result<bool> {
        Ok(LocalStore::has_precompiled(self, digest, engine_key))
    }
    async fn read_precompiled(&self, digest: &Digest, engine_key: &str) -> Result<Option<Vec<u8>>> {
        if !LocalStore::has_precompiled(self, digest, engine_key) {
            return Ok(None);
        }
        let path = self.precompiled_path(digest, engine_key);
        std::fs::read(&path)
            .map(Some)
            .map_err(|source| StoreError::Io { path, source })
    }
    async fn write_precompiled(
        &self,
        digest: &Digest,
        engine_key: &str,
        bytes: &[u8],
    ) -> Result<()> {
        LocalStore::write_precompiled(self, digest, engine_key, bytes).map(drop)
    }
    async fn record_version(
        &self,
        worker: &str,
        version: &Version,
        digest: &Digest,
    ) -> Result<VersionEntry> {
        LocalStore::record_version(self, worker, version, digest)
    }
    async fn versions(&self, worker: &str) -> Result<Vec<VersionEntry>> {
        LocalStore::versions(self, worker)
    }
    async fn workers(&self) -> Result<Vec<String>> {
        LocalStore::workers(self)
    }
    async fn release(&self, env: &str) -> Result<Release> {
        LocalStore::release(self, env)
    }
    async fn promote(&self, env: &str, worker: &str, version: &Version) -> Result<ReleaseEntry> {
        LocalStore::promote(self, env, worker, version)
    }
    async fn rollback(&self, env: &str, worker: &str) -> Result<ReleaseEntry> {
        LocalStore::rollback(self, env, worker)
    }
}
