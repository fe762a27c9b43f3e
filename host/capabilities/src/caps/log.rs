//! `log`: structured log lines with the worker, version and correlation id.

use serde_json::json;
use usher_world::{log, types};

use crate::call::pairs;
use crate::{CapError, CapabilityCtx};

impl log::Host for CapabilityCtx {
    async fn write(
        &mut self,
        level: log::Level,
        message: String,
        fields: Vec<types::Pair>,
    ) -> wasmtime::Result<()> {
        let fields = pairs(fields);
        let rendered = fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        let worker = &self.caller.worker.name;
        let version = &self.caller.worker.version;
        let cid = &self.caller.correlation_id;
        macro_rules! emit {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    worker,
                    version,
                    correlation_id = cid,
                    fields = rendered,
                    "{message}"
                )
            };
        }
        match level {
            log::Level::Trace => emit!(tracing::Level::TRACE),
            log::Level::Debug => emit!(tracing::Level::DEBUG),
            log::Level::Info => emit!(tracing::Level::INFO),
            log::Level::Warn => emit!(tracing::Level::WARN),
            log::Level::Error => emit!(tracing::Level::ERROR),
        }
        let level_name = match level {
            log::Level::Trace => "trace",
            log::Level::Debug => "debug",
            log::Level::Info => "info",
            log::Level::Warn => "warn",
            log::Level::Error => "error",
        };
        self.caller.record(
            "log",
            "write",
            "",
            || json!({"level": level_name, "message": message, "fields": fields}),
            &Ok::<_, CapError>(()),
        );
        Ok(())
    }

    async fn correlation_id(&mut self) -> wasmtime::Result<String> {
        Ok(self.caller.correlation_id.clone())
    }
}
