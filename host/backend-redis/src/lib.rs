//! The `cache` capability over Redis.
//!
//! [`RedisCache`] implements [`CacheBackend`] with one multiplexed
//! connection (`redis::aio::ConnectionManager`, reconnecting on its own):
//! `GET`, `SET … PX` for a time to live, `DEL`. Every key is stored under the
//! deployment's prefix (`{prefix}:{key}`), so several deployments can share
//! one Redis. The connection is made lazily: a host starts while Redis is
//! down, and each call fails with [`CapError::Unavailable`] (within the
//! configured timeouts) until it is back. [`RedisCache::ping`] checks it at
//! start-up for hosts that want to.
//!
//! [`get_or_load`] is the cache-aside helper, written over the trait so it
//! works on the embedded cache too.

#![deny(missing_docs)]

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use usher_capabilities::{CacheBackend, CapError};

/// Why a [`RedisCache`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RedisCacheError {
    /// The URL is not a Redis URL.
    #[error("invalid Redis URL `{url}`: {source}")]
    Url {
        /// The URL as given.
        url: String,
        /// What the client said.
        source: redis::RedisError,
    },
    /// The key prefix is unusable.
    #[error("invalid key prefix `{0}`: it must not be empty or contain whitespace")]
    Prefix(String),
    /// No Tokio runtime to run the connection on.
    #[error("RedisCache::connect must be called within a Tokio runtime")]
    NoRuntime,
    /// The client refused its configuration.
    #[error("Redis client for {addr}: {source}")]
    Client {
        /// host:port.
        addr: String,
        /// What the client said.
        source: redis::RedisError,
    },
}

/// How a [`RedisCache`] talks to Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// The deployment's key prefix: key `k` is stored as `{prefix}:k`.
    pub prefix: String,
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time allowed for one command's answer.
    pub response_timeout: Duration,
    /// Reconnection attempts (with exponential back-off from 100 ms) before a
    /// call fails.
    pub reconnect_retries: usize,
}

impl RedisOptions {
    /// Defaults (2 s to connect, 2 s per command, 2 reconnection attempts)
    /// with this key prefix.
    pub fn with_prefix(prefix: &str) -> RedisOptions {
        RedisOptions {
            prefix: prefix.to_string(),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
            reconnect_retries: 2,
        }
    }
}

/// The longest time to live sent to Redis, in milliseconds; a longer one is
/// stored without expiry (the embedded cache treats a deadline past the
/// clock's range the same way). About 146 million years.
const MAX_TTL_MS: u128 = (i64::MAX / 2) as u128;

/// The Redis [`CacheBackend`].
#[derive(Clone)]
pub struct RedisCache {
    manager: ConnectionManager,
    prefix: String,
    addr: String,
}

impl RedisCache {
    /// A cache on the Redis at `url` (`redis://host:port/db`, `rediss://` is
    /// not built in). Does not connect yet: the first call does (see
    /// [`RedisCache::ping`]). Must be called within a Tokio runtime.
    pub async fn connect(url: &str, options: RedisOptions) -> Result<RedisCache, RedisCacheError> {
        if options.prefix.is_empty() || options.prefix.chars().any(char::is_whitespace) {
            return Err(RedisCacheError::Prefix(options.prefix));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RedisCacheError::NoRuntime);
        }
        let client = redis::Client::open(url).map_err(|source| RedisCacheError::Url {
            url: url.to_string(),
            source,
        })?;
        let addr = client.get_connection_info().addr().to_string();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.response_timeout))
            .set_number_of_retries(options.reconnect_retries)
            .set_max_delay(Duration::from_secs(1));
        let manager =
            ConnectionManager::new_lazy_with_config(client, config).map_err(|source| {
                RedisCacheError::Client {
                    addr: addr.clone(),
                    source,
                }
            })?;
        Ok(RedisCache {
            manager,
            prefix: options.prefix,
            addr,
        })
    }

    /// The key prefix of this deployment.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Sends `PING`: `Ok` when Redis answers.
    pub async fn ping(&self) -> Result<(), CapError> {
        let mut conn = self.manager.clone();
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.unavailable("PING", e))?;
        Ok(())
    }

    /// The cache-aside read of `key` ([`get_or_load`] on this cache).
    pub async fn get_or_load<F, Fut>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        load: F,
    ) -> Result<String, CapError>
    where
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = Result<String, CapError>> + Send,
    {
        get_or_load(self, key, ttl, load).await
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}:{key}", self.prefix)
    }

    fn unavailable(&self, what: &str, e: redis::RedisError) -> CapError {
        CapError::Unavailable(format!("redis at {}: {what}: {e}", self.addr))
    }
}

#[async_trait]
impl CacheBackend for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<String>, CapError> {
        let mut conn = self.manager.clone();
        redis::cmd("GET")
            .arg(self.full_key(key))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.unavailable(&format!("GET `{key}`"), e))
    }

    async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), CapError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.full_key(key)).arg(value);
        match ttl {
            Some(t) if t.is_zero() => {
                return Err(CapError::Invalid(format!(
                    "cache key `{key}`: a time to live must be above zero"
                )))
            }
            // Redis counts in whole milliseconds: round a sub-millisecond
            // rest up, never down to "expired at once".
            Some(t) if t.as_millis() < MAX_TTL_MS => {
                let ms = t.as_millis() + u128::from(t.subsec_nanos() % 1_000_000 != 0);
                cmd.arg("PX").arg(u64::try_from(ms).unwrap_or(u64::MAX));
            }
            _ => {}
        }
        let mut conn = self.manager.clone();
        let _: () = cmd
            .query_async(&mut conn)
            .await
            .map_err(|e| self.unavailable(&format!("SET `{key}`"), e))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), CapError> {
        let mut conn = self.manager.clone();
        let _: i64 = redis::cmd("DEL")
            .arg(self.full_key(key))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.unavailable(&format!("DEL `{key}`"), e))?;
        Ok(())
    }
}

/// Cache-aside: the cached value of `key` when there is one; otherwise the
/// value `load` gives, stored with `ttl` on the way out.
///
/// The cache is an optimisation, never a point of failure: when it cannot be
/// read the value is loaded anyway, and when it cannot be written the loaded
/// value is still returned (both logged as warnings). An error of `load` is
/// returned as is and nothing is cached.
pub async fn get_or_load<F, Fut>(
    cache: &dyn CacheBackend,
    key: &str,
    ttl: Option<Duration>,
    load: F,
) -> Result<String, CapError>
where
    F: FnOnce() -> Fut + Send,
    Fut: Future<Output = Result<String, CapError>> + Send,
{
    match cache.get(key).await {
        Ok(Some(value)) => return Ok(value),
        Ok(None) => {}
        Err(e) => tracing::warn!(key, error = %e, "cache read failed; loading the value"),
    }
    let value = load().await?;
    if let Err(e) = cache.set(key, &value, ttl).await {
        tracing::warn!(key, error = %e, "cache write failed; the loaded value is not cached");
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_urls_and_prefixes_are_refused() {
        let options = RedisOptions::with_prefix("p");
        assert!(matches!(
            RedisCache::connect("http://localhost/", options.clone()).await,
            Err(RedisCacheError::Url { .. })
        ));
        for prefix in ["", "has space"] {
            let err =
                RedisCache::connect("redis://127.0.0.1:1/", RedisOptions::with_prefix(prefix))
                    .await
                    .err()
                    .expect("refused");
            assert!(matches!(err, RedisCacheError::Prefix(_)), "{err}");
        }
    }

    #[test]
    fn connecting_outside_a_runtime_is_an_error() {
        let connect = RedisCache::connect("redis://127.0.0.1:1/", RedisOptions::with_prefix("p"));
        let result = block_on_without_runtime(connect);
        assert!(matches!(result, Err(RedisCacheError::NoRuntime)));
    }

    /// Polls a future that never waits to completion without any runtime.
    fn block_on_without_runtime<F: Future>(f: F) -> F::Output {
        use std::pin::pin;
        use std::task::{Context, Poll, Waker};
        let mut f = pin!(f);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }
}
