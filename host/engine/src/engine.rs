//! One wasmtime `Engine` for the process: pooling allocator, epoch ticker,
//! compile/precompile, component checks against a worker's registry entry,
//! and the invocation of a prepared worker in a fresh instance.

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;
use usher_capabilities::CapabilityCtx;
use usher_registry::{Capability, WorkerSpec, WorldKind};
use usher_world::{batch_handler, http_handler, invoke_handler, scheduled_handler, stream_handler};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{
    Component, ComponentExportIndex, ComponentType, InstancePre, Linker, Lower, ResourceTable,
};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::io::{
    len_u32, BatchOutcome, ChangeKind, Counts, HttpResponse, Input, InvokeFailure, JsonText,
    Output, StreamOutcome,
};
use crate::output::GuestOutput;
use crate::{EngineError, InvokeError};

/// How big the engine's pools are and how often its epoch ticks.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Component instances alive at once (concurrent invocations).
    pub max_instances: u32,
    /// The largest linear memory any worker may be given, in MiB.
    pub max_memory_mb: u32,
    /// The epoch tick: the granularity of invocation deadlines.
    pub epoch_tick: Duration,
    /// Bytes of each linear memory (and table) kept resident when an
    /// instance's slot is freed, reset with `memset` (only the pages the
    /// instance touched, found with Linux's `PAGEMAP_SCAN` where the kernel
    /// has it) instead of `madvise`: the next instance in that slot takes no
    /// page faults on them. 0 turns it off (wasmtime's default).
    pub keep_resident_bytes: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            max_instances: 64,
            max_memory_mb: 512,
            epoch_tick: Duration::from_millis(2),
            keep_resident_bytes: DEFAULT_KEEP_RESIDENT_BYTES,
        }
    }
}

/// The default of [`EngineOptions::keep_resident_bytes`]: a fresh instance of
/// the replication workers touches about 1 MiB of its linear memory, the
/// archive's a few MiB per batch of 1,000 changes (2 MiB left it faulting
/// in and zeroing the rest on every batch: P5 in BENCHMARKS.md). Only the
/// pages an instance touched are kept and reset. The bench (`just bench`)
/// measures the difference against 0.
pub const DEFAULT_KEEP_RESIDENT_BYTES: usize = 16 << 20;

/// The limits of one invocation.
#[derive(Debug, Clone, Copy)]
pub struct InvocationLimits {
    /// Linear memory ceiling in bytes.
    pub memory_bytes: usize,
    /// Deadline.
    pub timeout: Duration,
}

impl InvocationLimits {
    /// The limits a worker's registry entry sets.
    pub fn of(spec: &WorkerSpec) -> Self {
        Self {
            memory_bytes: usize::try_from(spec.limits.memory_bytes()).unwrap_or(usize::MAX),
            timeout: spec.limits.timeout(),
        }
    }
}

/// The store data of one invocation.
pub(crate) struct InvocationState {
    wasi: WasiCtx,
    table: ResourceTable,
    caps: CapabilityCtx,
    limiter: MemoryLimiter,
}

impl WasiView for InvocationState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Refuses memory growth beyond the worker's limit and remembers that it did,
/// so the resulting trap is reported as what it is.
struct MemoryLimiter {
    max_bytes: usize,
    refused: Option<usize>,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.refused = Some(desired);
            Ok(false)
        } else {
            Ok(true)
        }
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// A compiled worker version, ready to instantiate: the `InstancePre` and the
/// export indices of its world.
pub struct PreparedWorker {
    pre: InstancePre<InvocationState>,
    exports: Exports,
    world: WorldKind,
}

enum Exports {
    Batch(batch_handler::GuestIndices),
    /// The stream handler's `handle` function, called with [`ChangeArg`]s.
    Stream(ComponentExportIndex),
    Invoke(invoke_handler::GuestIndices),
    Scheduled(scheduled_handler::GuestIndices),
    Http(http_handler::GuestIndices),
}

impl PreparedWorker {
    /// The world this worker exports.
    pub fn world(&self) -> WorldKind {
        self.world
    }
}

/// The process's engine. Cheap to share behind an `Arc`.
pub struct UsherEngine {
    engine: Engine,
    linker: Linker<InvocationState>,
    options: EngineOptions,
    engine_key: String,
    ticker_stop: Arc<AtomicBool>,
    /// One permit per instance slot of the pool ([`EngineOptions::max_instances`]):
    /// an invocation waits for a free slot instead of failing when every slot
    /// is taken (a burst of concurrent service requests — save-selections'
    /// `call-many`s to the Entry Service — would otherwise trap with
    /// "maximum concurrent limit … reached").
    slots: Arc<tokio::sync::Semaphore>,
}

impl Drop for UsherEngine {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn engine_err(context: &str) -> impl FnOnce(wasmtime::Error) -> EngineError + '_ {
    move |e| EngineError::Wasmtime(format!("{context}: {e:#}"))
}

impl UsherEngine {
    /// Builds the engine, its linker (WASI p2 and every capability) and starts
    /// the epoch ticker.
    pub fn new(options: EngineOptions) -> Result<Self, EngineError> {
        let mut pool = PoolingAllocationConfig::default();
        let max_memory = usize::try_from(options.max_memory_mb)
            .unwrap_or(usize::MAX)
            .saturating_mul(1 << 20);
        pool.total_component_instances(options.max_instances)
            .total_core_instances(options.max_instances.saturating_mul(8))
            .total_memories(options.max_instances.saturating_mul(2))
            .total_tables(options.max_instances.saturating_mul(8))
            .total_stacks(options.max_instances)
            .max_memories_per_component(4)
            .max_core_instances_per_component(16)
            .max_tables_per_component(16)
            .max_memory_size(max_memory)
            .max_unused_warm_slots(options.max_instances)
            .linear_memory_keep_resident(options.keep_resident_bytes)
            .table_keep_resident(options.keep_resident_bytes.min(64 << 10));
        if options.keep_resident_bytes > 0 {
            pool.pagemap_scan(wasmtime::Enabled::Auto);
        }
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(engine_err("creating the engine"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_err("linking WASI"))?;
        usher_capabilities::add_to_linker(&mut linker, |s: &mut InvocationState| &mut s.caps)
            .map_err(engine_err("linking capabilities"))?;

        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = format!("wasmtime48-{:016x}", hasher.finish());

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let stop = ticker_stop.clone();
        let tick = options.epoch_tick;
        std::thread::Builder::new()
            .name("usher-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| EngineError::Wasmtime(format!("starting the epoch ticker: {e}")))?;

        let slots = Arc::new(tokio::sync::Semaphore::new(
            usize::try_from(options.max_instances).unwrap_or(usize::MAX),
        ));
        Ok(Self {
            engine,
            linker,
            options,
            engine_key,
            ticker_stop,
            slots,
        })
    }

    /// A key that changes whenever precompiled artifacts stop being compatible.
    pub fn engine_key(&self) -> &str {
        &self.engine_key
    }

    /// The options the engine was built with.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Compiles component bytes.
    pub fn compile(&self, bytes: &[u8]) -> Result<Component, EngineError> {
        Component::new(&self.engine, bytes).map_err(engine_err("compiling the component"))
    }

    /// Compiles component bytes into a precompiled artifact.
    pub fn precompile(&self, bytes: &[u8]) -> Result<Vec<u8>, EngineError> {
        self.engine
            .precompile_component(bytes)
            .map_err(engine_err("precompiling the component"))
    }

    /// Loads a precompiled artifact written by [`UsherEngine::precompile`].
    pub fn load_precompiled(&self, path: &Path) -> Result<Component, EngineError> {
        // SAFETY: the artifact was produced by `precompile` of an engine with
        // the same `engine_key` (it is part of the file name the store uses),
        // and the store only writes such files atomically into its own folder.
        unsafe { Component::deserialize_file(&self.engine, path) }
            .map_err(|e| EngineError::Wasmtime(format!("loading {}: {e:#}", path.display())))
    }

    /// Loads an artifact [`UsherEngine::precompile`] made, from memory (for
    /// checking a component just compiled, or one whose artifact the
    /// store already holds).
    pub fn load_artifact(&self, artifact: &[u8]) -> Result<Component, EngineError> {
        // SAFETY: the bytes are a `precompile` output of an engine with the
        // same `engine_key`: made by this process, or read from the store
        // under that key (the store writes such files atomically).
        unsafe { Component::deserialize(&self.engine, artifact) }
            .map_err(|e| EngineError::Wasmtime(format!("loading a precompiled artifact: {e:#}")))
    }

    /// The import and export names of a component.
    pub fn interfaces(&self, component: &Component) -> (Vec<String>, Vec<String>) {
        let ty = component.component_type();
        let imports = ty
            .imports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let exports = ty
            .exports(&self.engine)
            .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentInstance(_)))
            .map(|(n, _)| n.to_string())
            .collect();
        (imports, exports)
    }

    /// Checks a component against a worker's registry entry: it exports the
    /// world its trigger needs and imports only WASI and capabilities the
    /// worker was granted. Returns every problem found.
    pub fn check(&self, component: &Component, spec: &WorkerSpec) -> Vec<String> {
        let mut problems = Vec::new();
        let (imports, exports) = self.interfaces(component);
        let world = spec.trigger.world();
        let wanted = world.export_interface();
        if !exports.iter().any(|e| unversioned(e) == wanted) {
            let actual: Vec<&str> = exports
                .iter()
                .filter_map(|e| WorldKind::from_export_interface(unversioned(e)))
                .map(|w| w.world_name())
                .collect();
            problems.push(format!(
                "its {} trigger needs a {} (export `{wanted}`), but the component is {} (exports [{}])",
                spec.trigger.kind(),
                world.world_name(),
                if actual.is_empty() { "no worker".to_string() } else { format!("a {}", actual.join(" and ")) },
                exports.join(", ")
            ));
        }
        for import in &imports {
            if import.starts_with("wasi:") {
                continue;
            }
            match Capability::from_interface(import) {
                Some(cap) if spec.grants.covers(cap) => {}
                Some(cap) => problems.push(format!(
                    "it imports `{import}` but is granted no {cap:?} resources"
                )),
                None if unversioned(import).starts_with("usher:platform/types") => {}
                None => problems.push(format!(
                    "it imports `{import}`, which the host does not provide"
                )),
            }
        }
        problems
    }

    /// Prepares a checked component for fast instantiation.
    pub fn prepare(
        &self,
        component: &Component,
        world: WorldKind,
    ) -> Result<PreparedWorker, EngineError> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(engine_err("linking the component"))?;
        let missing = |e: wasmtime::Error| {
            EngineError::Wasmtime(format!(
                "the component does not export the {} world: {e:#}",
                world.world_name()
            ))
        };
        let exports = match world {
            WorldKind::Batch => {
                Exports::Batch(batch_handler::GuestIndices::new(&pre).map_err(missing)?)
            }
            WorldKind::Stream => {
                // Checks the export's shape as the bindings would.
                stream_handler::GuestIndices::new(&pre).map_err(missing)?;
                let interface = format!(
                    "{}@{}",
                    WorldKind::Stream.export_interface(),
                    usher_world::PLATFORM_VERSION
                );
                let handle = component
                    .get_export_index(None, &interface)
                    .and_then(|i| component.get_export_index(Some(&i), "handle"))
                    .ok_or_else(|| missing(wasmtime::format_err!("no `{interface}.handle`")))?;
                Exports::Stream(handle)
            }
            WorldKind::Invoke => {
                Exports::Invoke(invoke_handler::GuestIndices::new(&pre).map_err(missing)?)
            }
            WorldKind::Scheduled => {
                Exports::Scheduled(scheduled_handler::GuestIndices::new(&pre).map_err(missing)?)
            }
            WorldKind::Http => {
                Exports::Http(http_handler::GuestIndices::new(&pre).map_err(missing)?)
            }
        };
        Ok(PreparedWorker {
            pre,
            exports,
            world,
        })
    }

    /// A fresh store for one invocation: WASI with stdout and stderr
    /// captured (bounded, never a trap), the
    /// capability context, the memory limiter and the epoch deadline.
    fn new_store(
        &self,
        caps: CapabilityCtx,
        limits: InvocationLimits,
    ) -> (Store<InvocationState>, GuestOutput) {
        let output = GuestOutput::new();
        let wasi = WasiCtxBuilder::new()
            .stdout(output.clone())
            .stderr(output.clone())
            .build();
        let state = InvocationState {
            wasi,
            table: ResourceTable::new(),
            caps,
            limiter: MemoryLimiter {
                max_bytes: limits.memory_bytes,
                refused: None,
            },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // At every epoch tick the guest yields to the executor (so a busy
        // guest never starves other invocations on the same threads) and is
        // interrupted once its deadline has passed.
        let deadline = std::time::Instant::now() + limits.timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if std::time::Instant::now() >= deadline {
                wasmtime::UpdateDeadline::Interrupt
            } else {
                wasmtime::UpdateDeadline::Yield(1)
            })
        });
        (store, output)
    }

    /// Waits (at most the invocation's timeout) for a free instance slot of
    /// the pool; when none frees up in time the invocation fails with
    /// [`InvokeError::Deadline`] without having run.
    async fn slot(
        &self,
        limits: InvocationLimits,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, InvokeError> {
        let deadline = || InvokeError::Deadline {
            timeout_ms: millis(limits.timeout),
        };
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => Ok(permit),
            Err(_) => {
                tracing::debug!("every instance slot is taken: waiting for one");
                match tokio::time::timeout(limits.timeout, self.slots.clone().acquire_owned()).await
                {
                    Ok(Ok(permit)) => Ok(permit),
                    _ => Err(deadline()),
                }
            }
        }
    }

    /// Creates a fresh store and instance of `worker` without calling it:
    /// what every invocation pays before the worker's logic runs (used by the
    /// benchmarks to split instantiation from the call).
    pub async fn instantiate_only(
        &self,
        worker: &PreparedWorker,
        caps: CapabilityCtx,
        limits: InvocationLimits,
    ) -> Result<(), InvokeError> {
        // Declared before the store: the slot is given back after the
        // instance is dropped.
        let _slot = self.slot(limits).await?;
        let (mut store, stderr) = self.new_store(caps, limits);
        match worker.pre.instantiate_async(&mut store).await {
            Ok(_) => Ok(()),
            Err(e) => Err(classify(e, store.data().limiter.refused, limits, &stderr)),
        }
    }

    /// Runs one invocation in a fresh instance, within `limits`. A trap, a
    /// refused memory growth or a passed deadline is an `InvokeError`; the
    /// engine keeps serving.
    pub async fn run(
        &self,
        worker: &PreparedWorker,
        caps: CapabilityCtx,
        limits: InvocationLimits,
        input: &Input,
    ) -> Result<Output, InvokeError> {
        if input.world() != worker.world {
            return Err(InvokeError::WrongInput {
                expected: worker.world,
                got: input.world(),
            });
        }
        // Every capability call of the invocation is a span below this one,
        // which names the worker, its version and the correlation id.
        let span = tracing::info_span!(
            "invocation",
            worker = %caps.worker().name,
            version = %caps.worker().version,
            correlation_id = caps.correlation_id(),
            records = input.len(),
            outcome = tracing::field::Empty,
        );
        let outcome_span = span.clone();
        // Declared before the store: the slot is given back after the
        // instance is dropped.
        let _slot = self.slot(limits).await?;
        let (mut store, stderr) = self.new_store(caps, limits);
        // The epoch stops guest code; the wall-clock timeout also stops a
        // guest that waits on a slow host call.
        let call = call(&mut store, worker, input).instrument(span);
        let result = tokio::time::timeout(limits.timeout + self.options.epoch_tick * 2, call).await;
        let refused = store.data().limiter.refused;
        let result = match result {
            Err(_) => Err(InvokeError::Deadline {
                timeout_ms: millis(limits.timeout),
            }),
            Ok(Ok(output)) => Ok(output),
            Ok(Err(e)) => Err(classify(e, refused, limits, &stderr)),
        };
        let (outcome, _) = crate::io::outcome_of(input, &result);
        outcome_span.record("outcome", outcome.as_str());
        result
    }
}

/// The stream handler's `change` record, lowered straight from the host's
/// [`ChangeRecord`]s' strings (the bindings' own record owns its strings,
/// which cost a copy of every image before the copy into the guest).
#[derive(ComponentType, Lower)]
#[component(record)]
struct ChangeArg<'a> {
    table: &'a str,
    kind: stream_handler::ChangeKind,
    keys: &'a str,
    #[component(name = "new-image")]
    new_image: Option<&'a str>,
    #[component(name = "old-image")]
    old_image: Option<&'a str>,
    #[component(name = "sequence-number")]
    sequence_number: &'a str,
    #[component(name = "timestamp-ms")]
    timestamp_ms: u64,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn unversioned(name: &str) -> &str {
    name.split('@').next().unwrap_or(name)
}

fn classify(
    error: wasmtime::Error,
    refused: Option<usize>,
    limits: InvocationLimits,
    output: &GuestOutput,
) -> InvokeError {
    let guest_output = output.contents().trim().to_string();
    if let Some(desired) = refused {
        return InvokeError::MemoryLimit {
            limit_bytes: limits.memory_bytes,
            requested_bytes: desired,
        };
    }
    if matches!(
        error.downcast_ref::<wasmtime::Trap>(),
        Some(wasmtime::Trap::Interrupt)
    ) {
        return InvokeError::Deadline {
            timeout_ms: millis(limits.timeout),
        };
    }
    InvokeError::Trap {
        message: format!("{error:#}"),
        guest_output,
    }
}

async fn call(
    store: &mut Store<InvocationState>,
    worker: &PreparedWorker,
    input: &Input,
) -> wasmtime::Result<Output> {
    let instance = worker.pre.instantiate_async(&mut *store).await?;
    Ok(match (&worker.exports, input) {
        (Exports::Batch(idx), Input::Batch(messages)) => {
            let guest = idx.load(&mut *store, &instance)?;
            let arg: Vec<batch_handler::Message> = messages
                .iter()
                .map(|m| batch_handler::Message {
                    id: m.message_id.clone(),
                    body: m.body.clone(),
                    attributes: m
                        .attributes
                        .iter()
                        .map(|(name, value)| usher_world::types::Pair {
                            name: name.clone(),
                            value: value.clone(),
                        })
                        .collect(),
                    receive_count: m.receive_count,
                })
                .collect();
            let r = guest.call_handle(&mut *store, &arg).await?;
            // Only ids of this batch can fail (an unknown one fails the whole
            // batch); the count of received is the host's.
            match input.known_failures(r.failures) {
                Ok(failures) => Output::Batch(BatchOutcome {
                    failures,
                    count: Counts {
                        received: len_u32(messages.len()),
                        processed: r.counts.processed,
                        failed: r.counts.failed,
                    },
                }),
                Err(unknown) => {
                    tracing::warn!(worker = %store.data().caps.worker().name, id = %unknown.0, "a batch-worker reported a failure for a message it was not given; failing the batch");
                    input.fail_all(&unknown.to_string())
                }
            }
        }
        (Exports::Stream(handle), Input::Stream(changes)) => {
            let handle = instance
                .get_typed_func::<(&[ChangeArg<'_>],), (stream_handler::StreamResult,)>(
                    &mut *store,
                    handle,
                )?;
            let arg: Vec<ChangeArg<'_>> = changes
                .iter()
                .map(|c| ChangeArg {
                    table: &c.table,
                    kind: match c.event_name {
                        ChangeKind::Insert => stream_handler::ChangeKind::Insert,
                        ChangeKind::Modify => stream_handler::ChangeKind::Modify,
                        ChangeKind::Remove => stream_handler::ChangeKind::Remove,
                    },
                    keys: c.keys.as_str(),
                    new_image: c.new_image.as_ref().map(JsonText::as_str),
                    old_image: c.old_image.as_ref().map(JsonText::as_str),
                    sequence_number: &c.sequence_number,
                    timestamp_ms: c.timestamp_ms,
                })
                .collect();
            let (r,) = handle.call_async(&mut *store, (&arg,)).await?;
            // Only sequence numbers of this batch can fail (an unknown one
            // fails the whole batch).
            match input.known_failures(r.failures) {
                Ok(failures) => Output::Stream(StreamOutcome { failures }),
                Err(unknown) => {
                    tracing::warn!(worker = %store.data().caps.worker().name, sequence_number = %unknown.0, "a stream-worker reported a failure for a record it was not given; failing the batch");
                    input.fail_all(&unknown.to_string())
                }
            }
        }
        (Exports::Invoke(idx), Input::Invoke(payload)) => {
            let guest = idx.load(&mut *store, &instance)?;
            let r = guest.call_handle(&mut *store, &payload.to_string()).await?;
            Output::Invoke(match r {
                Ok(text) => match serde_json::from_str(&text) {
                    Ok(v) => Ok(v),
                    Err(e) => Err(InvokeFailure {
                        kind: "InvalidOutput".into(),
                        message: format!("the worker answered with invalid JSON: {e}"),
                    }),
                },
                Err(e) => Err(InvokeFailure {
                    kind: e.kind,
                    message: e.message,
                }),
            })
        }
        (Exports::Scheduled(idx), Input::Scheduled(tick)) => {
            let guest = idx.load(&mut *store, &instance)?;
            let arg = scheduled_handler::Tick {
                schedule: tick.schedule.clone(),
                scheduled_time: tick.scheduled_time.clone(),
            };
            let r = guest.call_handle(&mut *store, &arg).await?;
            Output::Scheduled(r.and_then(|text| {
                serde_json::from_str(&text).map_err(|e| format!("invalid JSON summary: {e}"))
            }))
        }
        (Exports::Http(idx), Input::Http(req)) => {
            let guest = idx.load(&mut *store, &instance)?;
            let arg = http_handler::Request {
                method: req.method.clone(),
                path: req.path.clone(),
                query: req.query.clone(),
                headers: req
                    .headers
                    .iter()
                    .map(|(name, value)| usher_world::types::Pair {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
                body: req.body.clone(),
            };
            let r = guest.call_handle(&mut *store, &arg).await?;
            Output::Http(HttpResponse {
                status: r.status,
                headers: r.headers.into_iter().map(|p| (p.name, p.value)).collect(),
                body: r.body,
            })
        }
        _ => {
            return Err(wasmtime::format_err!(
                "input does not match the worker's world"
            ))
        }
    })
}
