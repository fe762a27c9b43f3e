//! The store's error type.

use std::path::PathBuf;

use crate::Digest;

/// Everything that can go wrong in the component store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file or directory of the store could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A versions or release file is not valid JSON of the expected shape.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },

    /// A string is not a digest.
    #[error("`{input}` is not a SHA-256 digest: {reason} (expected sha256:<64 hex> or <64 hex>)")]
    InvalidDigest {
        /// The string.
        input: String,
        /// Why it is not a digest.
        reason: String,
    },

    /// A worker, environment or engine-key name cannot be used in the store.
    #[error("invalid {kind} name `{name}`: {reason}")]
    InvalidName {
        /// What the name is for (`worker`, `environment`, `engine key`).
        kind: &'static str,
        /// The name.
        name: String,
        /// Why it cannot be used.
        reason: String,
    },

    /// The component is not in the store.
    #[error("component {digest} is not in the store (expected at {})", path.display())]
    MissingComponent {
        /// The component's digest.
        digest: Digest,
        /// Where it would be.
        path: PathBuf,
    },

    /// A stored component's bytes no longer hash to its name: the file was
    /// modified or corrupted.
    #[error("{}: the bytes hash to {actual}, not {expected}; the file was modified or corrupted", path.display())]
    DigestMismatch {
        /// The digest the file is stored under.
        expected: Digest,
        /// The digest of the bytes found.
        actual: Digest,
        /// The file.
        path: PathBuf,
    },

    /// A version was pushed again with different bytes.
    #[error("{worker} {version} was already pushed as {existing}; refusing to record it as {new} (bump the version)")]
    VersionConflict {
        /// The worker.
        worker: String,
        /// The version (boxed to keep the error small).
        version: Box<semver::Version>,
        /// The digest recorded for it.
        existing: Digest,
        /// The digest that was offered.
        new: Digest,
    },

    /// A version of a worker was asked for that was never pushed.
    #[error(
        "{worker} {version} was never pushed; known versions: {}",
        list_versions(known)
    )]
    UnknownVersion {
        /// The worker.
        worker: String,
        /// The version asked for.
        version: semver::Version,
        /// The versions that were pushed, oldest first.
        known: Vec<semver::Version>,
    },

    /// The worker has no live version in the environment.
    #[error("{worker} is not released in environment `{env}`")]
    NotReleased {
        /// The environment.
        env: String,
        /// The worker.
        worker: String,
    },

    /// An S3 request of the store failed.
    #[error("{url}: {message}")]
    S3 {
        /// The object or prefix (`s3://bucket/key`).
        url: String,
        /// What went wrong.
        message: String,
    },

    /// A conditional write of a release or versions file kept losing to
    /// concurrent writers.
    #[error("{url}: still changed by concurrent writers after {attempts} attempts; try again")]
    Contention {
        /// The file (`s3://bucket/key`).
        url: String,
        /// How many read-modify-write rounds were tried.
        attempts: u32,
    },

    /// A store location is neither `s3://bucket[/prefix]` nor a folder.
    #[error("invalid store location `{0}`: expected s3://bucket[/prefix] or a folder")]
    InvalidLocation(String),

    /// A rollback found no earlier version to go back to.
    #[error(
        "{worker} has no earlier release in environment `{env}` to roll back to (live: {live})"
    )]
    NoHistory {
        /// The environment.
        env: String,
        /// The worker.
        worker: String,
        /// The live version.
        live: semver::Version,
    },
}

fn list_versions(known: &[semver::Version]) -> String {
    if known.is_empty() {
        "none".to_string()
    } else {
        known
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}
