//! The per-invocation capability context.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};
use usher_registry::{Capability, Grants};
use wasmtime::component::ResourceTable;

use crate::backend::Backends;
use crate::caps::LogVolume;
use crate::record::{CallRecord, Recorder};
use crate::CapError;

/// Which worker, at which version, is running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerIdentity {
    /// Full worker name, e.g. `replication/save-entries`.
    pub name: String,
    /// The component version that runs.
    pub version: String,
}

/// Everything a capability call needs to know about its caller. One per
/// invocation: it lives in the invocation's wasmtime store.
pub struct CapabilityCtx {
    pub(crate) caller: Caller,
    /// The guest's open object writers. The context owns its table rather
    /// than sharing the store's WASI table: the writers are no WASI
    /// resource's children, the capability layer stays usable without a
    /// WASI view, and the linker keeps handing out `&mut CapabilityCtx`.
    pub(crate) writers: ResourceTable,
    /// What the invocation has logged, against its log volume.
    pub(crate) log: LogVolume,
}

/// The read-only part of a [`CapabilityCtx`]: who calls, what it may touch,
/// and where calls go. `Sync`, so a call's future can hold it across awaits
/// (and many calls of a `call-many` can share it).
pub(crate) struct Caller {
    pub(crate) worker: Arc<WorkerIdentity>,
    pub(crate) grants: Arc<Grants>,
    pub(crate) settings: Arc<Map<String, Value>>,
    pub(crate) backends: Arc<Backends>,
    pub(crate) correlation_id: String,
    pub(crate) recorder: Option<Arc<Recorder>>,
}

impl CapabilityCtx {
    /// A context for one invocation of `worker`.
    pub fn new(
        worker: Arc<WorkerIdentity>,
        grants: Arc<Grants>,
        settings: Arc<Map<String, Value>>,
        backends: Arc<Backends>,
        correlation_id: String,
    ) -> Self {
        Self {
            caller: Caller {
                worker,
                grants,
                settings,
                backends,
                correlation_id,
                recorder: None,
            },
            writers: ResourceTable::new(),
            log: LogVolume::default(),
        }
    }

    /// Records every capability call of this invocation into `recorder`.
    pub fn with_recorder(mut self, recorder: Arc<Recorder>) -> Self {
        self.caller.recorder = Some(recorder);
        self
    }

    /// The worker this context belongs to.
    pub fn worker(&self) -> &WorkerIdentity {
        &self.caller.worker
    }

    /// The invocation's correlation id.
    pub fn correlation_id(&self) -> &str {
        &self.caller.correlation_id
    }
}

impl Caller {
    /// Refuses a resource outside the worker's grant.
    pub(crate) fn check(&self, cap: Capability, resource: &str) -> Result<(), CapError> {
        if self.grants.allows(cap, resource) {
            Ok(())
        } else {
            tracing::warn!(
                worker = %self.worker.name,
                correlation_id = %self.correlation_id,
                capability = ?cap,
                resource,
                "capability call refused: outside the worker's grant"
            );
            Err(CapError::Denied(format!(
                "worker {} is not granted {cap:?} `{resource}`",
                self.worker.name
            )))
        }
    }

    /// Records a call when a recorder is attached; `request` is only built then.
    pub(crate) fn record<T: Serialize>(
        &self,
        capability: &'static str,
        function: &'static str,
        resource: &str,
        request: impl FnOnce() -> Value,
        outcome: &Result<T, CapError>,
    ) {
        if let Some(recorder) = &self.recorder {
            recorder.push(CallRecord {
                capability,
                function,
                resource: resource.to_string(),
                request: request(),
                outcome: match outcome {
                    Ok(v) => Ok(serde_json::to_value(v).unwrap_or(Value::Null)),
                    Err(e) => Err(e.to_string()),
                },
            });
        }
    }
}
