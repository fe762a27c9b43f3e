//! `config`: the worker's own settings from the registry.

use serde_json::Value;
use usher_world::config;

use crate::call::to_string;
use crate::CapabilityCtx;

impl config::Host for CapabilityCtx {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.caller.settings.get(&key).map(to_string))
    }

    async fn all(&mut self) -> wasmtime::Result<String> {
        Ok(Value::Object((*self.caller.settings).clone()).to_string())
    }
}
