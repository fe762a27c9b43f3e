//! An in-memory key/value cache with expiry (the Redis stand-in).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use usher_capabilities::{CacheBackend, CapError};

/// Sets between two sweeps of expired keys.
const SWEEP_EVERY: u64 = 1024;

struct Entry {
    value: String,
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|t| t > now)
    }
}

/// The embedded [`CacheBackend`]: a map in memory. Expired keys are
/// invisible at once and purged lazily (when read, and by a sweep every
/// 1024 writes). Nothing survives the process, as with a cache.
#[derive(Default)]
pub struct EmbeddedCache {
    map: Mutex<HashMap<String, Entry>>,
    writes: AtomicU64,
}

impl EmbeddedCache {
    /// An empty cache.
    pub fn new() -> EmbeddedCache {
        EmbeddedCache::default()
    }

    /// How many live keys the cache holds.
    pub fn len(&self) -> usize {
        let now = Instant::now();
        self.map.lock().values().filter(|e| e.live(now)).count()
    }

    /// Whether the cache holds no live key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl CacheBackend for EmbeddedCache {
    async fn get(&self, key: &str) -> Result<Option<String>, CapError> {
        let now = Instant::now();
        let mut map = self.map.lock();
        match map.get(key) {
            Some(e) if e.live(now) => Ok(Some(e.value.clone())),
            Some(_) => {
                map.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), CapError> {
        if ttl.is_some_and(|t| t.is_zero()) {
            return Err(CapError::Invalid(format!(
                "cache key `{key}`: a time to live must be above zero"
            )));
        }
        let now = Instant::now();
        let expires = ttl.and_then(|t| now.checked_add(t));
        let mut map = self.map.lock();
        if self.writes.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            map.retain(|_, e| e.live(now));
        }
        map.insert(
            key.to_string(),
            Entry {
                value: value.to_string(),
                expires,
            },
        );
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), CapError> {
        self.map.lock().remove(key);
        Ok(())
    }
}
