//! Usher's content-addressed component store.
//!
//! Component bytes are stored by their SHA-256 digest, next to the artifacts
//! precompiled from them for each engine build. A worker's pushed versions
//! map version → digest, and each environment's release file says which
//! version of each worker is live, with a short history for rollbacks.
//!
//! [`LocalStore`] keeps all of this in a directory; every write is atomic
//! and release edits are serialized with a file lock, so a running host can
//! watch `releases/<env>.json` while `usher promote` rewrites it.
//! [`S3Store`] keeps the same layout on an S3 prefix and edits versions and
//! release files with conditional writes (If-Match on the ETag read, retried
//! on 412). [`ComponentStore`] is the interface both offer;
//! [`StoreLocation`] parses `s3://bucket/prefix` or a folder.
//!
//! ```no_run
//! # fn main() -> Result<(), usher_store::StoreError> {
//! use usher_store::LocalStore;
//! let store = LocalStore::open(".usher/store")?;
//! let digest = store.put_component(b"\0asm...")?;
//! let version = semver::Version::new(0, 1, 0);
//! store.record_version("replication/save-entries", &version, &digest)?;
//! store.promote("dev", "replication/save-entries", &version)?;
//! assert_eq!(store.live("dev", "replication/save-entries")?.map(|e| e.digest), Some(digest));
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod api;
mod digest;
mod error;
mod local;
mod s3;

pub use api::{ComponentStore, StoreLocation};
pub use s3::S3Store;

pub use digest::Digest;
pub use error::StoreError;
pub use local::{
    HistoryEntry, LocalStore, Release, ReleaseEntry, Result, VersionEntry, HISTORY_LIMIT,
};

#[cfg(test)]
mod tests;
