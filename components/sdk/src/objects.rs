//! Object storage, S3-shaped (the `objects` capability).

use crate::Result;

/// Facts about a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object's key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its entity tag.
    pub etag: String,
}

/// Stores a whole object.
pub fn put(bucket: &str, key: &str, body: &[u8], content_type: Option<&str>) -> Result<ObjectInfo> {
    sys::put(bucket, key, body, content_type)
}

/// Reads a whole object; `None` when it does not exist.
pub fn get(bucket: &str, key: &str) -> Result<Option<Vec<u8>>> {
    sys::get(bucket, key)
}

/// Object keys under a prefix, in key order, at most `limit`.
pub fn list(bucket: &str, prefix: &str, limit: Option<u32>) -> Result<Vec<ObjectInfo>> {
    sys::list(bucket, prefix, limit)
}

/// Writes a large object in parts (a multipart upload in S3). Nothing is
/// visible until [`Writer::finish`]; a writer dropped unfinished is aborted.
#[derive(Debug)]
pub struct Writer {
    inner: sys::Writer,
}

impl Writer {
    /// Starts writing the object `key` into `bucket`.
    pub fn open(bucket: &str, key: &str, content_type: Option<&str>) -> Result<Writer> {
        Ok(Writer {
            inner: sys::Writer::open(bucket, key, content_type)?,
        })
    }

    /// Appends bytes to the object.
    pub fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.inner.write(chunk)
    }

    /// Completes the object and makes it visible.
    pub fn finish(self) -> Result<ObjectInfo> {
        self.inner.finish()
    }
}

#[cfg(target_arch = "wasm32")]
mod sys {
    use super::ObjectInfo;
    use crate::bindings::caps::usher::platform::objects as wit;
    use crate::Result;

    fn info(i: wit::ObjectInfo) -> ObjectInfo {
        ObjectInfo {
            key: i.key,
            size: i.size,
            etag: i.etag,
        }
    }

    pub(super) fn put(
        bucket: &str,
        key: &str,
        body: &[u8],
        content_type: Option<&str>,
    ) -> Result<ObjectInfo> {
        Ok(info(wit::put(bucket, key, body, content_type)?))
    }

    pub(super) fn get(bucket: &str, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(wit::get(bucket, key)?)
    }

    pub(super) fn list(bucket: &str, prefix: &str, limit: Option<u32>) -> Result<Vec<ObjectInfo>> {
        Ok(wit::list(bucket, prefix, limit)?
            .into_iter()
            .map(info)
            .collect())
    }

    #[derive(Debug)]
    pub(super) struct Writer(wit::Writer);

    impl Writer {
        pub(super) fn open(bucket: &str, key: &str, content_type: Option<&str>) -> Result<Writer> {
            Ok(Writer(wit::Writer::open(bucket, key, content_type)?))
        }

        pub(super) fn write(&mut self, chunk: &[u8]) -> Result<()> {
            Ok(self.0.write(chunk)?)
        }

        pub(super) fn finish(self) -> Result<ObjectInfo> {
            Ok(info(wit::Writer::finish(self.0)?))
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod sys {
    use super::ObjectInfo;
    use crate::{Error, Result};

    pub(super) fn put(
        _bucket: &str,
        _key: &str,
        _body: &[u8],
        _content_type: Option<&str>,
    ) -> Result<ObjectInfo> {
        Err(Error::native("objects::put"))
    }

    pub(super) fn get(_bucket: &str, _key: &str) -> Result<Option<Vec<u8>>> {
        Err(Error::native("objects::get"))
    }

    pub(super) fn list(
        _bucket: &str,
        _prefix: &str,
        _limit: Option<u32>,
    ) -> Result<Vec<ObjectInfo>> {
        Err(Error::native("objects::list"))
    }

    /// Natively a writer can never be opened, so this type has no values.
    #[derive(Debug)]
    pub(super) enum Writer {}

    impl Writer {
        pub(super) fn open(
            _bucket: &str,
            _key: &str,
            _content_type: Option<&str>,
        ) -> Result<Writer> {
            Err(Error::native("objects::Writer::open"))
        }

        pub(super) fn write(&mut self, _chunk: &[u8]) -> Result<()> {
            match *self {}
        }

        pub(super) fn finish(self) -> Result<ObjectInfo> {
            match self {}
        }
    }
}
