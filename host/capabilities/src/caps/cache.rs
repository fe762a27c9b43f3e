//! `cache`: get/set with a TTL.

use std::time::Duration;

use serde_json::{json, Value};
use usher_registry::Capability;
use usher_world::cache;

use crate::call::{Call, HostResult, Plain};
use crate::CapabilityCtx;

impl cache::Host for CapabilityCtx {
    async fn get(&mut self, key: String) -> HostResult<Option<String>> {
        let caller = &self.caller;
        let work = caller.backends.cache.get(&key);
        let call = Call::new(Capability::Cache, "get", &key);
        caller.call(call, || Value::Null, Plain, work).await
    }

    async fn set(
        &mut self,
        key: String,
        value: String,
        ttl_seconds: Option<u32>,
    ) -> HostResult<()> {
        let caller = &self.caller;
        let ttl = ttl_seconds.map(|s| Duration::from_secs(u64::from(s)));
        let work = caller.backends.cache.set(&key, &value, ttl);
        let call = Call::new(Capability::Cache, "set", &key);
        let request = || json!({"ttl_seconds": ttl_seconds});
        caller.call(call, request, Plain, work).await
    }

    async fn delete(&mut self, key: String) -> HostResult<()> {
        let caller = &self.caller;
        let work = caller.backends.cache.delete(&key);
        let call = Call::new(Capability::Cache, "delete", &key);
        caller.call(call, || Value::Null, Plain, work).await
    }
}
