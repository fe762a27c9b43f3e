//! Objects on S3: whole objects with `PutObject` / `GetObject`, listings
//! with `ListObjectsV2`, and the streaming writer as a multipart upload.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use usher_capabilities::{CapError, ObjectBackend, ObjectInfo, ObjectWriter};

use crate::error::{code, sdk};
use crate::ResourceNames;

/// The size of every part of a multipart upload but the last: S3's
/// smallest. The writer buffers this much before uploading a part; an
/// object smaller than one part is stored with one `PutObject`.
pub const PART_SIZE: usize = 5 * 1024 * 1024;

/// S3's most parts in one upload.
pub const MAX_PARTS: usize = 10_000;

/// The size of part `number` (1-based): [`PART_SIZE`] for the first 1000
/// parts, then 5 MiB more every 1000 parts (10 MiB for parts 1001-2000 …
/// 50 MiB for 9001-10000), so the 10,000 parts S3 allows hold 268 GiB
/// (5 MiB × 1000 × (1 + 2 + … + 10)) while a small object still uploads
/// in 5 MiB parts. Parts past 10,000 are refused by S3.
pub fn part_size(number: usize) -> usize {
    PART_SIZE * (1 + number.saturating_sub(1) / 1000)
}

/// The longest key, in bytes (as S3).
const MAX_KEY_BYTES: usize = 1024;

/// The most keys one `ListObjectsV2` answers.
const LIST_PAGE: u32 = 1000;

/// The [`ObjectBackend`] on S3. Bucket names map through the resource
/// names; keys are S3's (any non-empty key of at most 1024 bytes).
pub struct S3Objects {
    client: Client,
    names: Arc<ResourceNames>,
}

fn check_key(key: &str) -> Result<(), CapError> {
    if key.is_empty() {
        return Err(CapError::Invalid("the object key is empty".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(CapError::Invalid(format!(
            "object key `{}…` is longer than {MAX_KEY_BYTES} bytes",
            key.chars().take(40).collect::<String>()
        )));
    }
    Ok(())
}

/// An entity tag without its quotes.
fn etag(tag: Option<&str>) -> String {
    tag.unwrap_or_default().trim_matches('"').to_string()
}

/// Where an object is: registry and physical bucket, key.
#[derive(Clone)]
struct Location {
    bucket: String,
    physical: String,
    key: String,
}

impl Location {
    fn what(&self, op: &str) -> String {
        format!(
            "S3 {op} of `{}` in bucket `{}` (`{}`)",
            self.key, self.bucket, self.physical
        )
    }
}

impl S3Objects {
    pub(crate) fn new(client: Client, names: Arc<ResourceNames>) -> S3Objects {
        S3Objects { client, names }
    }

    /// The S3 client (for the component store and tests).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn locate(&self, bucket: &str, key: &str) -> Result<Location, CapError> {
        check_key(key)?;
        Ok(Location {
            bucket: bucket.to_string(),
            physical: self.names.physical(bucket),
            key: key.to_string(),
        })
    }
}

async fn put_object(
    client: &Client,
    at: &Location,
    body: Vec<u8>,
    content_type: Option<&str>,
) -> Result<ObjectInfo, CapError> {
    let size = body.len() as u64;
    let out = client
        .put_object()
        .bucket(&at.physical)
        .key(&at.key)
        .body(ByteStream::from(body))
        .set_content_type(content_type.map(str::to_string))
        .send()
        .await
        .map_err(|e| sdk(&at.what("PutObject"), e))?;
    Ok(ObjectInfo {
        key: at.key.clone(),
        size,
        etag: etag(out.e_tag()),
    })
}

#[async_trait]
impl ObjectBackend for S3Objects {
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: Option<&str>,
    ) -> Result<ObjectInfo, CapError> {
        let at = self.locate(bucket, key)?;
        put_object(&self.client, &at, body, content_type).await
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, CapError> {
        let at = self.locate(bucket, key)?;
        let out = match self
            .client
            .get_object()
            .bucket(&at.physical)
            .key(&at.key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(sdk(&at.what("GetObject"), e)),
        };
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| CapError::Unavailable(format!("{}: {e}", at.what("GetObject"))))?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<ObjectInfo>, CapError> {
        let physical = self.names.physical(bucket);
        let what = format!("S3 ListObjectsV2 of `{prefix}` in bucket `{bucket}` (`{physical}`)");
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let left = (limit as usize).saturating_sub(out.len());
            let page = self
                .client
                .list_objects_v2()
                .bucket(&physical)
                .prefix(prefix)
                .max_keys(
                    i32::try_from(left.min(LIST_PAGE as usize))
                        .unwrap_or(1)
                        .max(1),
                )
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| sdk(&what, e))?;
            for o in page.contents() {
                if out.len() == limit as usize {
                    break;
                }
                out.push(ObjectInfo {
                    key: o.key().unwrap_or_default().to_string(),
                    size: o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    etag: etag(o.e_tag()),
                });
            }
            token = page.next_continuation_token;
            if token.is_none() || out.len() >= limit as usize {
                return Ok(out);
            }
        }
    }

    async fn open_writer(
        &self,
        bucket: &str,
        key: &str,
        content_type: Option<&str>,
    ) -> Result<Box<dyn ObjectWriter>, CapError> {
        Ok(Box::new(MultipartWriter {
            client: self.client.clone(),
            at: self.locate(bucket, key)?,
            content_type: content_type.map(str::to_string),
            buffer: Vec::new(),
            upload_id: None,
            parts: Vec::new(),
            size: 0,
            closed: false,
        }))
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), CapError> {
        let at = self.locate(bucket, key)?;
        self.client
            .delete_object()
            .bucket(&at.physical)
            .key(&at.key)
            .send()
            .await
            .map_err(|e| sdk(&at.what("DeleteObject"), e))?;
        Ok(())
    }
}

/// A large object: parts of [`part_size`] uploaded as they fill, the
/// upload completed by `finish` and aborted by `abort` (or, in the
/// background, when dropped unfinished). Nothing is visible before
/// `finish`.
struct MultipartWriter {
    client: Client,
    at: Location,
    content_type: Option<String>,
    buffer: Vec<u8>,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    size: u64,
    closed: bool,
}

impl MultipartWriter {
    fn check_open(&self) -> Result<(), CapError> {
        if self.closed {
            return Err(CapError::Invalid(format!(
                "the writer of `{}` is closed (a write failed)",
                self.at.key
            )));
        }
        Ok(())
    }

    async fn upload_id(&mut self) -> Result<String, CapError> {
        if let Some(id) = &self.upload_id {
            return Ok(id.clone());
        }
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.at.physical)
            .key(&self.at.key)
            .set_content_type(self.content_type.clone())
            .send()
            .await
            .map_err(|e| sdk(&self.at.what("CreateMultipartUpload"), e))?;
        let id = out.upload_id.ok_or_else(|| {
            CapError::Unavailable(format!(
                "{}: no upload id",
                self.at.what("CreateMultipartUpload")
            ))
        })?;
        self.upload_id = Some(id.clone());
        Ok(id)
    }

    /// Uploads `bytes` as the next part.
    async fn upload_part(&mut self, bytes: Vec<u8>) -> Result<(), CapError> {
        let id = self.upload_id().await?;
        let number = i32::try_from(self.parts.len() + 1).unwrap_or(i32::MAX);
        let out = self
            .client
            .upload_part()
            .bucket(&self.at.physical)
            .key(&self.at.key)
            .upload_id(id)
            .part_number(number)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| sdk(&self.at.what(&format!("UploadPart {number}")), e))?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag)
                .set_checksum_crc32(out.checksum_crc32)
                .set_checksum_crc32_c(out.checksum_crc32_c)
                .set_checksum_crc64_nvme(out.checksum_crc64_nvme)
                .set_checksum_sha1(out.checksum_sha1)
                .set_checksum_sha256(out.checksum_sha256)
                .build(),
        );
        Ok(())
    }

    async fn fail(&mut self, e: CapError) -> CapError {
        self.closed = true;
        self.abort_upload().await;
        e
    }

    async fn abort_upload(&mut self) {
        self.buffer = Vec::new();
        if let Some(id) = self.upload_id.take() {
            abort(&self.client, &self.at, &id).await;
        }
    }
}

async fn abort(client: &Client, at: &Location, upload_id: &str) {
    let result = client
        .abort_multipart_upload()
        .bucket(&at.physical)
        .key(&at.key)
        .upload_id(upload_id)
        .send()
        .await;
    if let Err(e) = result {
        if code(&e) != Some("NoSuchUpload") {
            tracing::warn!(key = %at.key, bucket = %at.physical, error = %sdk(&at.what("AbortMultipartUpload"), e), "multipart upload not aborted (a bucket lifecycle rule should clean it up)");
        }
    }
}

#[async_trait]
impl ObjectWriter for MultipartWriter {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), CapError> {
        self.check_open()?;
        self.size += chunk.len() as u64;
        self.buffer.extend_from_slice(chunk);
        while self.buffer.len() >= part_size(self.parts.len() + 1) {
            if self.parts.len() >= MAX_PARTS {
                let e = CapError::Invalid(format!(
                    "`{}` is larger than the {MAX_PARTS} parts of a multipart upload hold",
                    self.at.key
                ));
                return Err(self.fail(e).await);
            }
            let size = part_size(self.parts.len() + 1);
            let rest = self.buffer.split_off(size);
            let part = std::mem::replace(&mut self.buffer, rest);
            if let Err(e) = self.upload_part(part).await {
                return Err(self.fail(e).await);
            }
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<ObjectInfo, CapError> {
        self.check_open()?;
        self.closed = true;
        let Some(id) = self.upload_id.clone() else {
            // Smaller than a part: one PutObject.
            let body = std::mem::take(&mut self.buffer);
            return put_object(&self.client, &self.at, body, self.content_type.as_deref()).await;
        };
        if !self.buffer.is_empty() {
            let last = std::mem::take(&mut self.buffer);
            if let Err(e) = self.upload_part(last).await {
                return Err(self.fail(e).await);
            }
        }
        let parts = std::mem::take(&mut self.parts);
        let completed = self
            .client
            .complete_multipart_upload()
            .bucket(&self.at.physical)
            .key(&self.at.key)
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        match completed {
            Ok(out) => {
                self.upload_id = None;
                Ok(ObjectInfo {
                    key: self.at.key.clone(),
                    size: self.size,
                    etag: etag(out.e_tag()),
                })
            }
            Err(e) => {
                let e = sdk(&self.at.what("CompleteMultipartUpload"), e);
                Err(self.fail(e).await)
            }
        }
    }

    async fn abort(mut self: Box<Self>) {
        self.closed = true;
        self.abort_upload().await;
    }
}

impl Drop for MultipartWriter {
    fn drop(&mut self) {
        // Dropped unfinished: abort the upload in the background.
        if let Some(id) = self.upload_id.take() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let (client, at) = (self.client.clone(), self.at.clone());
                handle.spawn(async move { abort(&client, &at, &id).await });
            }
        }
    }
}

#[cfg(test)]
mod part_tests {
    use super::*;

    #[test]
    fn ten_thousand_growing_parts_hold_an_export_of_hundreds_of_gib() {
        assert_eq!(part_size(1), PART_SIZE);
        assert_eq!(part_size(1000), PART_SIZE);
        assert_eq!(part_size(1001), 2 * PART_SIZE);
        assert_eq!(part_size(MAX_PARTS), 10 * PART_SIZE);
        let total: u64 = (1..=MAX_PARTS).map(|n| part_size(n) as u64).sum();
        assert_eq!(total, 55_000 * PART_SIZE as u64);
        assert!(total > 250 * (1 << 30));
        // S3 caps a part at 5 GiB.
        assert!(part_size(MAX_PARTS) <= 5 * (1 << 30));
    }
}
