//! The store on an S3 prefix: the same layout as [`LocalStore`](crate::LocalStore).
//!
//! Versions and release files are edited read-modify-write with conditional
//! writes: `PutObject` with `If-Match: <ETag read>` (or `If-None-Match: *`
//! when the file does not exist yet), retried from a fresh read when S3
//! answers 412 Precondition Failed (or 409 for a conflicting concurrent
//! conditional write), so two concurrent promotes never lose one another.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use semver::Version;
use serde::{de::DeserializeOwned, Serialize};

use crate::api::ComponentStore;
use crate::local::{
    check_plain_name, check_worker_name, Release, ReleaseEntry, Result, VersionEntry, VersionsFile,
};
use crate::{Digest, StoreError};

/// How many read-modify-write rounds an edit tries before giving up.
const EDIT_ATTEMPTS: u32 = 30;

/// The content-addressed component store on an S3 prefix.
///
/// ```text
/// <prefix>/components/sha256-<hex>.wasm
/// <prefix>/precompiled/sha256-<hex>.<engine_key>.cwasm
/// <prefix>/versions/<worker, '/' as '~'>.json
/// <prefix>/releases/<env>.json
/// ```
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

/// The precondition of a write.
enum Condition<'a> {
    /// Write whatever is there.
    None,
    /// Only when the object's ETag is still this one.
    IfMatch(&'a str),
    /// Only when the object does not exist.
    IfAbsent,
}

impl S3Store {
    /// A store on `s3://bucket/prefix` using `client`.
    pub fn new(client: aws_sdk_s3::Client, bucket: &str, prefix: &str) -> S3Store {
        S3Store {
            client,
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        }
    }

    /// An S3 client from the standard AWS configuration chain (environment,
    /// profile, instance/task role); `AWS_ENDPOINT_URL` (or
    /// `AWS_ENDPOINT_URL_S3`) points it at a local server, in which case
    /// path-style addressing is used.
    pub async fn client_from_env() -> aws_sdk_s3::Client {
        let config = aws_config::load_from_env().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&config);
        if config.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some() {
            builder = builder.force_path_style(true);
        }
        aws_sdk_s3::Client::from_conf(builder.build())
    }

    /// Opens `s3://bucket/prefix` with [`S3Store::client_from_env`] and checks
    /// that the bucket is reachable (a clear error now rather than at the
    /// first read).
    pub async fn from_env(bucket: &str, prefix: &str) -> Result<S3Store> {
        let store = S3Store::new(Self::client_from_env().await, bucket, prefix);
        store.check_reachable().await?;
        Ok(store)
    }

    /// Checks that the bucket exists and can be reached.
    pub async fn check_reachable(&self) -> Result<()> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(drop)
            .map_err(|e| StoreError::S3 {
                url: format!("s3://{}", self.bucket),
                message: format!("the bucket cannot be reached: {}", describe(&e)),
            })
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key prefix (no leading or trailing `/`; may be empty).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    /// `s3://bucket/<prefix>/<rel>`, for messages.
    pub fn url(&self, rel: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.key(rel))
    }

    fn component_key(digest: &Digest) -> String {
        format!("components/{}.wasm", digest.file_stem())
    }

    fn precompiled_key(digest: &Digest, engine_key: &str) -> String {
        format!("precompiled/{}.{engine_key}.cwasm", digest.file_stem())
    }

    fn versions_key(worker: &str) -> String {
        format!("versions/{}.json", worker.replace('/', "~"))
    }

    fn release_key(env: &str) -> String {
        format!("releases/{env}.json")
    }

    fn error<E, R>(&self, rel: &str, e: &SdkError<E, R>) -> StoreError
    where
        E: std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        StoreError::S3 {
            url: self.url(rel),
            message: describe(e),
        }
    }

    /// An object's bytes and ETag; `None` when it does not exist.
    async fn get(&self, rel: &str) -> Result<Option<(Vec<u8>, Option<String>)>> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(rel))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if status(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(self.error(rel, &e)),
        };
        let etag = out.e_tag().map(str::to_string);
        let bytes = out.body.collect().await.map_err(|e| StoreError::S3 {
            url: self.url(rel),
            message: format!("reading the body: {e}"),
        })?;
        Ok(Some((bytes.into_bytes().to_vec(), etag)))
    }

    /// An object's ETag; `None` when it does not exist.
    async fn etag(&self, rel: &str) -> Result<Option<String>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.key(rel))
            .send()
            .await
        {
            Ok(out) => Ok(Some(out.e_tag().unwrap_or_default().to_string())),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(self.error(rel, &e)),
        }
    }

    /// Writes an object; `Ok(false)` when the condition did not hold.
    async fn put(&self, rel: &str, bytes: Vec<u8>, condition: Condition<'_>) -> Result<bool> {
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.key(rel))
            .body(ByteStream::from(bytes));
        request = match condition {
            Condition::None => request,
            Condition::IfMatch(etag) => request.if_match(etag),
            Condition::IfAbsent => request.if_none_match("*"),
        };
        match request.send().await {
            Ok(_) => Ok(true),
            // 412: the precondition failed; 409: a concurrent conditional
            // write to the same key is in progress (S3 asks to retry).
            Err(e) if matches!(status(&e), Some(412 | 409)) => Ok(false),
            Err(e) => Err(self.error(rel, &e)),
        }
    }

    /// Every key name below `rel_dir/`, relative to it.
    async fn list(&self, rel_dir: &str) -> Result<Vec<String>> {
        let prefix = self.key(&format!("{rel_dir}/"));
        let mut names = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| self.error(rel_dir, &e))?;
            for object in out.contents() {
                if let Some(name) = object.key().and_then(|k| k.strip_prefix(&prefix)) {
                    names.push(name.to_string());
                }
            }
            match out.next_continuation_token() {
                Some(next) if out.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => break,
            }
        }
        Ok(names)
    }

    async fn read_json<T: DeserializeOwned>(&self, rel: &str) -> Result<Option<(T, String)>> {
        let Some((bytes, etag)) = self.get(rel).await? else {
            return Ok(None);
        };
        let value = serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            path: self.url(rel).into(),
            source,
        })?;
        Ok(Some((value, etag.unwrap_or_default())))
    }

    /// Runs `edit` on the JSON file `rel` and writes the result back with a
    /// conditional write when it changed; on a lost race, reads again and
    /// re-applies `edit`.
    async fn edit_json<T, R>(
        &self,
        rel: &str,
        mut edit: impl FnMut(&mut T) -> Result<R> + Send,
    ) -> Result<R>
    where
        T: DeserializeOwned + Serialize + Default + Clone + PartialEq + Send,
        R: Send,
    {
        for attempt in 0..EDIT_ATTEMPTS {
            let current: Option<(T, String)> = self.read_json(rel).await?;
            let (before, etag) = match current {
                Some((value, etag)) => (value, Some(etag)),
                None => (T::default(), None),
            };
            let mut after = before.clone();
            let out = edit(&mut after)?;
            if after == before {
                return Ok(out);
            }
            let mut bytes =
                serde_json::to_vec_pretty(&after).map_err(|source| StoreError::Json {
                    path: self.url(rel).into(),
                    source,
                })?;
            bytes.push(b'\n');
            let condition = match &etag {
                Some(etag) => Condition::IfMatch(etag),
                None => Condition::IfAbsent,
            };
            if self.put(rel, bytes, condition).await? {
                return Ok(out);
            }
            backoff(attempt).await;
        }
        Err(StoreError::Contention {
            url: self.url(rel),
            attempts: EDIT_ATTEMPTS,
        })
    }

    /// The ETag of an environment's release file (`None` when nothing was
    /// promoted): a cheap check whether the release changed.
    pub async fn release_etag(&self, env: &str) -> Result<Option<String>> {
        check_plain_name("environment", env)?;
        self.etag(&Self::release_key(env)).await
    }

    /// The release of an environment and the ETag it was read at.
    pub async fn release_with_etag(&self, env: &str) -> Result<(Release, Option<String>)> {
        check_plain_name("environment", env)?;
        Ok(match self.read_json(&Self::release_key(env)).await? {
            Some((release, etag)) => (release, Some(etag)),
            None => (Release::default(), None),
        })
    }

    /// The artifact precompiled from `digest` by the engine build
    /// `engine_key`, if one was stored.
    pub async fn read_precompiled(
        &self,
        digest: &Digest,
        engine_key: &str,
    ) -> Result<Option<Vec<u8>>> {
        check_plain_name("engine key", engine_key)?;
        Ok(self
            .get(&Self::precompiled_key(digest, engine_key))
            .await?
            .map(|(bytes, _)| bytes))
    }
}

/// A short pause before retrying a lost conditional write: grows with the
/// attempt, with jitter so racing writers spread out.
async fn backoff(attempt: u32) {
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos() % 20))
        .unwrap_or(0);
    let base = 10 * u64::from(attempt.min(10) + 1);
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}

fn status<E, R>(e: &SdkError<E, R>) -> Option<u16>
where
    R: HttpStatus,
{
    e.raw_response().map(HttpStatus::status_code)
}

/// The HTTP status of a raw SDK response.
trait HttpStatus {
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

fn describe<E, R>(e: &SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    DisplayErrorContext(e).to_string()
}

#[async_trait]
impl ComponentStore for S3Store {
    fn location(&self) -> String {
        self.url("").trim_end_matches('/').to_string()
    }

    async fn put_component(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        let rel = Self::component_key(&digest);
        // Content addressed: an intact copy already there is kept.
        if let Ok(existing) = self.read_component(&digest).await {
            if Digest::of(&existing) == digest {
                return Ok(digest);
            }
        }
        self.put(&rel, bytes.to_vec(), Condition::None).await?;
        Ok(digest)
    }

    async fn has_component(&self, digest: &Digest) -> Result<bool> {
        Ok(self.etag(&Self::component_key(digest)).await?.is_some())
    }

    async fn read_component(&self, digest: &Digest) -> Result<Vec<u8>> {
        let rel = Self::component_key(digest);
        let Some((bytes, _)) = self.get(&rel).await? else {
            return Err(StoreError::MissingComponent {
                digest: *digest,
                path: self.url(&rel).into(),
            });
        };
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(StoreError::DigestMismatch {
                expected: *digest,
                actual,
                path: self.url(&rel).into(),
            });
        }
        Ok(bytes)
    }

    async fn has_precompiled(&self, digest: &Digest, engine_key: &str) -> Result<bool> {
        check_plain_name("engine key", engine_key)?;
        Ok(self
            .etag(&Self::precompiled_key(digest, engine_key))
            .await?
            .is_some())
    }

    async fn read_precompiled(&self, digest: &Digest, engine_key: &str) -> Result<Option<Vec<u8>>> {
        S3Store::read_precompiled(self, digest, engine_key).await
    }

    async fn write_precompiled(
        &self,
        digest: &Digest,
        engine_key: &str,
        bytes: &[u8],
    ) -> Result<()> {
        check_plain_name("engine key", engine_key)?;
        self.put(
            &Self::precompiled_key(digest, engine_key),
            bytes.to_vec(),
            Condition::None,
        )
        .await
        .map(drop)
    }

    async fn record_version(
        &self,
        worker: &str,
        version: &Version,
        digest: &Digest,
    ) -> Result<VersionEntry> {
        check_worker_name(worker)?;
        if !self.has_component(digest).await? {
            return Err(StoreError::MissingComponent {
                digest: *digest,
                path: self.url(&Self::component_key(digest)).into(),
            });
        }
        self.edit_json(&Self::versions_key(worker), |file: &mut VersionsFile| {
            file.record(worker, version, digest).map(|(entry, _)| entry)
        })
        .await
    }

    async fn versions(&self, worker: &str) -> Result<Vec<VersionEntry>> {
        check_worker_name(worker)?;
        let file: VersionsFile = self
            .read_json(&Self::versions_key(worker))
            .await?
            .map(|(file, _)| file)
            .unwrap_or_default();
        let mut versions = file.versions;
        versions.sort_by(|a, b| a.version.cmp(&b.version));
        Ok(versions)
    }

    async fn workers(&self) -> Result<Vec<String>> {
        let mut workers: Vec<String> = self
            .list("versions")
            .await?
            .into_iter()
            .filter_map(|n| n.strip_suffix(".json").map(|s| s.replace('~', "/")))
            .filter(|n| !n.starts_with('.'))
            .collect();
        workers.sort();
        Ok(workers)
    }

    async fn release(&self, env: &str) -> Result<Release> {
        Ok(self.release_with_etag(env).await?.0)
    }

    async fn promote(&self, env: &str, worker: &str, version: &Version) -> Result<ReleaseEntry> {
        check_plain_name("environment", env)?;
        let pushed = VersionsFile {
            versions: self.versions(worker).await?,
        }
        .find(worker, version)?;
        if !self.has_component(&pushed.digest).await? {
            return Err(StoreError::MissingComponent {
                digest: pushed.digest,
                path: self.url(&Self::component_key(&pushed.digest)).into(),
            });
        }
        self.edit_json(&Self::release_key(env), |release: &mut Release| {
            Ok(release.promote(worker, &pushed))
        })
        .await
    }

    async fn rollback(&self, env: &str, worker: &str) -> Result<ReleaseEntry> {
        check_plain_name("environment", env)?;
        check_worker_name(worker)?;
        self.edit_json(&Self::release_key(env), |release: &mut Release| {
            release.rollback(env, worker)
        })
        .await
    }
}
