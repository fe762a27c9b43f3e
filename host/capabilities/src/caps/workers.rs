//! `workers`: invoking another worker.

use serde_json::json;
use usher_registry::Capability;
use usher_world::workers;

use crate::call::{parse_json, to_string, Call, HostResult, Plain};
use crate::CapabilityCtx;

impl workers::Host for CapabilityCtx {
    async fn invoke(&mut self, worker: String, payload: String) -> HostResult<String> {
        let caller = &self.caller;
        let work = async {
            let payload = parse_json(&payload, "payload")?;
            caller
                .backends
                .workers
                .invoke(&worker, payload, &caller.correlation_id)
                .await
        };
        let call = Call::new(Capability::Workers, "invoke", &worker);
        Ok(caller
            .call(call, || json!({"payload": payload}), Plain, work)
            .await?
            .map(|v| to_string(&v)))
    }

    async fn invoke_async(&mut self, worker: String, payload: String) -> HostResult<()> {
        let caller = &self.caller;
        let work = async {
            let payload = parse_json(&payload, "payload")?;
            caller
                .backends
                .workers
                .invoke_async(&worker, payload, &caller.correlation_id)
                .await
        };
        let call = Call::new(Capability::Workers, "invoke-async", &worker);
        caller
            .call(call, || json!({"payload": payload}), Plain, work)
            .await
    }
}
