//! Invocation benchmarks (a bench binary, not a timed test):
//!
//! 1. a fresh instance + call of `replication/save-entries` on a 10-record
//!    batch: p50/p99, and the instantiation part alone;
//! 2. the same logic on 500 records, as wasm and natively, in the same run
//!    (the native build calls the very same backend objects);
//! 3. cold start: `usher invoke` from process exec to the answer, with every
//!    component precompiled (when the `usher` binary is built).
//!
//! 4. the boundary's alternatives: keeping instance memory resident,
//!    `call-many`, the host's JSON share, and the encodings of the same
//!    batch side by side on `testing/boundary-probe` (`boundary_encodings`;
//!    `USHER_BENCH_ONLY=encodings` runs those alone).
//!
//! 5. the cost of metrics and OTLP traces on one invocation
//!    (`USHER_BENCH_ONLY=tracing`, [`tracing_cost`]).
//!
//! Run with `just bench` (or `cargo bench -p usher-testing --bench invoke`).
//! Figures go to BENCHMARKS.md by hand, with this command.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{json, Map, Value};
use usher_capabilities::{
    Backends, CapError, Condition, NoCodec, OutgoingMessage, Page, QueueBackend, ServiceBackend,
    TableBackend, WriteOp,
};
use usher_engine::{BatchMessage, Input, Runtime};
use usher_testing::{components, FakeServices};

/// A HashMap table: the bench measures the worker and the wasm boundary,
/// not a database.
#[derive(Default)]
struct MapTable {
    items: Mutex<HashMap<String, Value>>,
}

fn key_string(v: &Value) -> String {
    format!("{}|{}", v["PK"], v["SK"])
}

#[async_trait]
impl TableBackend for MapTable {
    async fn get(&self, _t: &str, key: &Value) -> Result<Option<Value>, CapError> {
        Ok(self
            .items
            .lock()
            .map_err(|_| CapError::Fault("poisoned".into()))?
            .get(&key_string(key))
            .cloned())
    }
    async fn batch_get(&self, _t: &str, keys: &[Value]) -> Result<Vec<Option<Value>>, CapError> {
        let items = self
            .items
            .lock()
            .map_err(|_| CapError::Fault("poisoned".into()))?;
        Ok(keys
            .iter()
            .map(|k| items.get(&key_string(k)).cloned())
            .collect())
    }
    async fn put(&self, _t: &str, item: Value, _c: Option<Condition>) -> Result<(), CapError> {
        self.items
            .lock()
            .map_err(|_| CapError::Fault("poisoned".into()))?
            .insert(key_string(&item), item);
        Ok(())
    }
    async fn update(
        &self,
        _t: &str,
        key: &Value,
        set: Map<String, Value>,
        _r: &[String],
        c: Option<Condition>,
    ) -> Result<Value, CapError> {
        let mut items = self
            .items
            .lock()
            .map_err(|_| CapError::Fault("poisoned".into()))?;
        let k = key_string(key);
        if let Some(c) = c {
            if !c.holds(items.get(&k)) {
                return Err(CapError::ConditionFailed("condition".into()));
            }
        }
        let item = items.entry(k).or_insert_with(|| key.clone());
        if let Value::Object(o) = item {
            o.extend(set);
        }
        Ok(item.clone())
    }
    async fn delete(&self, _t: &str, key: &Value, _c: Option<Condition>) -> Result<(), CapError> {
        self.items
            .lock()
            .map_err(|_| CapError::Fault("poisoned".into()))?
            .remove(&key_string(key));
        Ok(())
    }
    async fn query(
        &self,
        _t: &str,
        _p: &Value,
        _s: Option<&str>,
        _l: u32,
        _a: Option<&Value>,
    ) -> Result<Page, CapError> {
        Ok(Page::default())
    }
    async fn batch_write(
        &self,
        _t: &str,
        writes: Vec<WriteOp>,
    ) -> Result<Vec<Result<(), CapError>>, CapError> {
        Ok(writes.iter().map(|_| Ok(())).collect())
    }
}

struct NullQueue;

#[async_trait]
impl QueueBackend for NullQueue {
    async fn send_batch(
        &self,
        _q: &str,
        m: Vec<OutgoingMessage>,
    ) -> Result<Vec<Result<String, CapError>>, CapError> {
        Ok(m.iter()
            .enumerate()
            .map(|(i, _)| Ok(format!("m{i}")))
            .collect())
    }
}

fn entry(i: usize) -> Value {
    json!({
        "PK": format!("ENTRY#c1#u{i}"), "SK": "ENTRY", "campaignId": "c1", "globalUserId": format!("u{i}"),
        "entry": {"firstName": "Ada", "zip": "10001", "phone": "+15550100"}, "verdict": "PENDING",
        "needsReplication": true, "version": 1, "createdAt": "2026-11-01T00:00:00Z", "updatedAt": "2026-11-01T00:00:01Z",
    })
}

fn batch(n: usize) -> Vec<BatchMessage> {
    (0..n)
        .map(|i| {
            let e = entry(i);
            let body = json!({"table": "demand-table", "eventName": "MODIFY", "keys": {"PK": e["PK"], "SK": "ENTRY"},
                "newImage": e, "sequenceNumber": i.to_string(), "timestampMs": 0});
            BatchMessage { message_id: format!("m{i}"), body: body.to_string(), attributes: vec![], receive_count: 1 }
        })
        .collect()
}

/// The native build of save-entries' logic over the same backend objects:
/// the SDK's capability calls reach them through this native backend.
struct NativePorts {
    table: Arc<MapTable>,
    services: Arc<FakeServices>,
}

impl usher_sdk::native::Backend for NativePorts {
    fn table_batch_get(
        &mut self,
        table: &str,
        keys: &[Value],
    ) -> usher_sdk::Result<Vec<Option<Value>>> {
        futures::executor::block_on(self.table.batch_get(table, keys))
            .map_err(|e| usher_sdk::Error::Unavailable(e.to_string()))
    }
    fn services_call(
        &mut self,
        request: &usher_sdk::services::Request,
    ) -> usher_sdk::Result<usher_sdk::services::Response> {
        let method = match request.method {
            usher_sdk::services::Method::Get => usher_capabilities::Method::Get,
            usher_sdk::services::Method::Post => usher_capabilities::Method::Post,
            usher_sdk::services::Method::Put => usher_capabilities::Method::Put,
            usher_sdk::services::Method::Patch => usher_capabilities::Method::Patch,
            usher_sdk::services::Method::Delete => usher_capabilities::Method::Delete,
        };
        let req = usher_capabilities::ServiceRequest {
            service: request.service.clone(),
            method,
            path: request.path.clone(),
            headers: request.headers.clone(),
            body: request.body.clone(),
            correlation_id: String::new(),
        };
        let r = futures::executor::block_on(self.services.call(req))
            .map_err(|e| usher_sdk::Error::Unavailable(e.to_string()))?;
        Ok(usher_sdk::services::Response {
            status: r.status,
            headers: r.headers,
            body: r.body,
        })
    }
    fn table_update(
        &mut self,
        table: &str,
        key: &Value,
        set: &Value,
        remove: &[String],
        condition: Option<&usher_sdk::table::Condition>,
    ) -> usher_sdk::Result<Value> {
        let cond = condition.map(|c| match c.clone() {
            usher_sdk::table::Condition::NotExists => Condition::NotExists,
            usher_sdk::table::Condition::Exists => Condition::Exists,
            usher_sdk::table::Condition::AttributeEquals(a, v) => Condition::AttributeEquals(a, v),
        });
        let set = set.as_object().cloned().unwrap_or_default();
        futures::executor::block_on(self.table.update(table, key, set, remove, cond))
            .map_err(|e| usher_sdk::Error::Unavailable(e.to_string()))
    }
    fn queue_send_batch(
        &mut self,
        _q: &str,
        messages: &[usher_sdk::queue::Outgoing],
    ) -> usher_sdk::Result<Vec<usher_sdk::Result<String>>> {
        Ok(messages.iter().map(|_| Ok(String::from("id"))).collect())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

struct Stats {
    p50: Duration,
    p99: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    Stats {
        p50: percentile(&samples, 0.5),
        p99: percentile(&samples, 0.99),
    }
}

async fn measure<F, Fut>(iterations: usize, mut f: F) -> Stats
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..iterations / 10 {
        f().await;
    }
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        f().await;
        samples.push(t.elapsed());
    }
    stats(samples)
}

fn runtime_with(
    engine: Arc<usher_engine::UsherEngine>,
    table: Arc<MapTable>,
    services: Arc<FakeServices>,
) -> Arc<Runtime> {
    runtime_of(
        engine,
        table,
        services,
        &components::REPLICATION_SAVE_ENTRIES.bytes(),
    )
}

/// [`runtime_with`] running this build of save-entries.
fn runtime_of(
    engine: Arc<usher_engine::UsherEngine>,
    table: Arc<MapTable>,
    services: Arc<FakeServices>,
    save_entries: &[u8],
) -> Arc<Runtime> {
    let dir = tempfile::tempdir().expect("tmp");
    let registry_dir = dir.path().join("workers");
    std::fs::create_dir_all(&registry_dir).expect("mkdir");
    let store = usher_testing::shared_store();
    let digest = store.put_component(save_entries).expect("put");
    let caller = store
        .put_component(&components::TESTING_SERVICE_CALLER.bytes())
        .expect("put");
    std::fs::write(
        registry_dir.join("testing.yaml"),
        format!("domain: testing\nworkers:\n  service-caller:\n    component: {{ name: testing/service-caller, version: 0.1.0, sha256: {} }}\n    trigger: {{ invoke: {{}} }}\n    grants: {{ services: [entries] }}\n", caller.hex()),
    )
    .expect("write");
    std::fs::write(registry_dir.join("resources.yaml"), "tables: { demand-table: { partition_key: PK, sort_key: SK } }\nqueues: { save-entries: {}, retry-score: {} }\nservices: { entries: { url: 'http://127.0.0.1:9' } }\n").expect("write");
    std::fs::write(
        registry_dir.join("replication.yaml"),
        format!("domain: replication\nworkers:\n  save-entries:\n    component: {{ name: replication/save-entries, version: 0.1.0, sha256: {} }}\n    trigger: {{ queue: save-entries }}\n    grants: {{ tables: [demand-table], queues: [retry-score], services: [entries] }}\n", digest.hex()),
    )
    .expect("write");
    let registry = Arc::new(usher_registry::Registry::load(&registry_dir).expect("registry"));
    let backends = Backends {
        table: table.clone(),
        queue: Arc::new(NullQueue),
        topic: Arc::new(NoTopic),
        objects: Arc::new(NoObjects),
        events: Arc::new(NoEvents),
        cache: Arc::new(NoCache),
        services,
        codec: Arc::new(NoCodec),
        workers: Arc::new(usher_engine::LocalInvoker::new()),
    };
    let rt = Runtime::start(engine, registry, store, "bench", Arc::new(backends), None)
        .expect("runtime");
    std::mem::forget(dir);
    Arc::new(rt)
}

macro_rules! refuse_all {
    ($name:ident, $trait:path, { $($body:tt)* }) => {
        struct $name;
        #[async_trait]
        impl $trait for $name { $($body)* }
    };
}
refuse_all!(NoTopic, usher_capabilities::TopicBackend, {
    async fn publish_batch(
        &self,
        _t: &str,
        _m: Vec<OutgoingMessage>,
    ) -> Result<Vec<Result<String, CapError>>, CapError> {
        Err(CapError::Unsupported("bench".into()))
    }
});
refuse_all!(NoEvents, usher_capabilities::EventBackend, {
    async fn produce(
        &self,
        _t: &str,
        _e: Vec<usher_capabilities::Event>,
    ) -> Result<Vec<Result<usher_capabilities::Delivery, CapError>>, CapError> {
        Err(CapError::Unsupported("bench".into()))
    }
});
refuse_all!(NoCache, usher_capabilities::CacheBackend, {
    async fn get(&self, _k: &str) -> Result<Option<String>, CapError> {
        Ok(None)
    }
    async fn set(&self, _k: &str, _v: &str, _t: Option<Duration>) -> Result<(), CapError> {
        Ok(())
    }
    async fn delete(&self, _k: &str) -> Result<(), CapError> {
        Ok(())
    }
});
refuse_all!(NoObjects, usher_capabilities::ObjectBackend, {
    async fn put(
        &self,
        _b: &str,
        _k: &str,
        _body: Vec<u8>,
        _c: Option<&str>,
    ) -> Result<usher_capabilities::ObjectInfo, CapError> {
        Err(CapError::Unsupported("bench".into()))
    }
    async fn get(&self, _b: &str, _k: &str) -> Result<Option<Vec<u8>>, CapError> {
        Err(CapError::Unsupported("bench".into()))
    }
    async fn list(
        &self,
        _b: &str,
        _p: &str,
        _l: u32,
    ) -> Result<Vec<usher_capabilities::ObjectInfo>, CapError> {
        Err(CapError::Unsupported("bench".into()))
    }
    async fn open_writer(
        &self,
        _b: &str,
        _k: &str,
        _c: Option<&str>,
    ) -> Result<Box<dyn usher_capabilities::ObjectWriter>, CapError> {
        Err(CapError::Unsupported("bench".into()))
    }
});

async fn seed(table: &MapTable, n: usize) {
    for i in 0..n {
        table
            .put("demand-table", entry(i), None)
            .await
            .expect("seed");
    }
}

fn to_sdk(messages: &[BatchMessage]) -> Vec<usher_sdk::Message> {
    messages
        .iter()
        .map(|m| usher_sdk::Message {
            id: m.message_id.clone(),
            body: m.body.clone(),
            attributes: m.attributes.clone(),
            receive_count: m.receive_count,
        })
        .collect()
}

fn cold_start() -> Option<(Stats, usize)> {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let usher = target.join("release/usher");
    if !usher.exists() {
        eprintln!(
            "cold start: skipped ({} is not built; `just bench` builds it)",
            usher.display()
        );
        return None;
    }
    let dir = tempfile::tempdir().ok()?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let store = dir.path().join("store");
    let data = dir.path().join("data");
    let event = dir.path().join("event.json");
    std::fs::write(&event, r#"{"Records":[]}"#).ok()?;
    let registry = dir.path().join("workers");
    std::fs::create_dir_all(&registry).ok()?;
    for f in std::fs::read_dir(root.join("workers")).ok()? {
        let f = f.ok()?.path();
        std::fs::copy(&f, registry.join(f.file_name()?)).ok()?;
    }
    let run = |args: &[&str]| {
        std::process::Command::new(&usher)
            .current_dir(&root)
            .arg("--store")
            .arg(&store)
            .arg("--registry")
            .arg(&registry)
            .args(args)
            .output()
            .expect("usher runs")
    };
    // Push + precompile every registry component.
    let pin = run(&["pin", "--from", "build/components"]);
    if !pin.status.success() {
        eprintln!(
            "cold start: pin failed: {}",
            String::from_utf8_lossy(&pin.stderr)
        );
        return None;
    }
    let mut samples = Vec::new();
    for i in 0..30 {
        let t = Instant::now();
        let out = run(&[
            "invoke",
            "replication/enqueue-entries",
            "--event",
            event.to_str()?,
            "--data",
            data.to_str()?,
        ]);
        let took = t.elapsed();
        if !out.status.success() {
            eprintln!(
                "cold start: invoke failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        if i >= 3 {
            samples.push(took);
        }
    }
    let n = samples.len();
    Some((stats(samples), n))
}

/// Release written → new version live: `promote` then `Runtime::refresh`
/// (what the release watcher does once it notices the file). The first swap
/// compiles a component with no precompiled artifact; the others load the
/// artifact `usher push` leaves.
async fn swap_latency() -> (Duration, Stats) {
    let host = usher_testing::TestHost::builder()
        .resources("tables: { t: { partition_key: PK } }")
        .named_worker(
            "bench/swappable",
            &components::TESTING_ECHO,
            "trigger: { invoke: {} }\ngrants: { tables: [t] }",
        )
        .build()
        .expect("host");
    let probe = host
        .store
        .put_component(&components::TESTING_TABLE_PROBE.bytes())
        .expect("put");
    let echo = host
        .store
        .put_component(&components::TESTING_ECHO.bytes())
        .expect("put");
    let key = usher_testing::shared_engine().engine_key().to_string();
    let precompiled = |d: &usher_store::Digest| host.store.has_precompiled(d, &key);
    let mut versions = Vec::new();
    for (i, digest) in [probe, echo].into_iter().cycle().take(21).enumerate() {
        let v = semver::Version::new(1, i as u64, 0);
        host.store
            .record_version("bench/swappable", &v, &digest)
            .expect("record");
        versions.push((v, digest));
    }
    assert!(
        !precompiled(&probe),
        "the cold case needs a component without an artifact"
    );
    let mut cold = Duration::ZERO;
    let mut warm = Vec::new();
    for (i, (v, _)) in versions.iter().enumerate() {
        let t = Instant::now();
        host.promote("bench/swappable", v).expect("promote");
        let swaps = host.runtime.refresh().await.expect("refresh");
        let took = t.elapsed();
        assert_eq!(swaps.len(), 1);
        if i == 0 {
            cold = took
        } else {
            warm.push(took)
        }
    }
    (cold, stats(warm))
}

/// Alternatives at the boundary, side by side in this run (BENCHMARKS.md):
/// the pooling allocator keeping freed instances' pages resident or not;
/// 25 service calls as 25 crossings (`services.call`) or one
/// (`services.call-many`); and the share of the host's own JSON text
/// handling (parse what the guest sent, serialize what it gets) in a
/// 500-record invocation, which is what passing the bytes through would save.
async fn boundary_alternatives(
    runtime: &Arc<Runtime>,
    table: &Arc<MapTable>,
    services: &Arc<FakeServices>,
    five_hundred: &Input,
) {
    let madvise = Arc::new(
        usher_engine::UsherEngine::new(usher_engine::EngineOptions {
            max_instances: 128,
            keep_resident_bytes: 0,
            ..usher_engine::EngineOptions::default()
        })
        .expect("engine"),
    );
    let other = runtime_with(madvise, table.clone(), services.clone());
    let ten = Input::Batch(batch(10));
    // Interleaved, so both see the same machine.
    let mut resident = Vec::new();
    let mut reset = Vec::new();
    let mut resident_inst = Vec::new();
    let mut reset_inst = Vec::new();
    for i in 0..2200 {
        for (rt, samples, inst) in [
            (runtime, &mut resident, &mut resident_inst),
            (&other, &mut reset, &mut reset_inst),
        ] {
            let t = Instant::now();
            rt.invoke("replication/save-entries", &ten, None)
                .await
                .expect("invoke");
            let took = t.elapsed();
            let t = Instant::now();
            rt.instantiate_only("replication/save-entries")
                .await
                .expect("instantiate");
            if i >= 200 {
                samples.push(took);
                inst.push(t.elapsed());
            }
        }
    }
    let (resident, reset) = (stats(resident), stats(reset));
    let (resident_inst, reset_inst) = (stats(resident_inst), stats(reset_inst));
    println!("alternative: freed instance memory kept resident (memset) vs reset by madvise, 10-record save-entries:");
    println!(
        "  keep resident {} KiB: invocation p50 {:8.1} µs, instantiation p50 {:6.1} µs",
        usher_engine::DEFAULT_KEEP_RESIDENT_BYTES >> 10,
        micros(resident.p50),
        micros(resident_inst.p50)
    );
    println!(
        "  madvise (wasmtime's default): invocation p50 {:8.1} µs, instantiation p50 {:6.1} µs",
        micros(reset.p50),
        micros(reset_inst.p50)
    );

    let requests: Vec<Value> = (0..25)
        .map(|i| json!({"service": "entries", "method": "POST", "path": format!("/p/{i}"), "body": {"i": i}}))
        .collect();
    let many = Input::Invoke(json!({"mode": "many", "requests": requests}));
    let one_by_one = Input::Invoke(json!({"mode": "one-by-one", "requests": requests}));
    let mut a = Vec::new();
    let mut b = Vec::new();
    for i in 0..2200 {
        for (input, samples) in [(&many, &mut a), (&one_by_one, &mut b)] {
            let t = Instant::now();
            runtime
                .invoke("testing/service-caller", input, None)
                .await
                .expect("invoke");
            if i >= 200 {
                samples.push(t.elapsed());
            }
        }
    }
    let (a, b) = (stats(a), stats(b));
    println!("alternative: 25 service calls (an instant fake service) in one crossing vs 25:");
    println!(
        "  one services.call-many: p50 {:8.1} µs;  25 services.call: p50 {:8.1} µs;  {:.1} µs per extra crossing",
        micros(a.p50),
        micros(b.p50),
        (micros(b.p50) - micros(a.p50)) / 24.0
    );

    // What the host does with the 500 items' JSON text of one invocation:
    // parse the batch-get answer's items out of the backend values and
    // serialize them for the guest, parse the update-many's keys and sets
    // and the upsert bodies the guest sent.
    let items: Vec<Value> = (0..500).map(entry).collect();
    let texts: Vec<String> = items.iter().map(Value::to_string).collect();
    let host_json = measure(200, || {
        for (item, text) in items.iter().zip(&texts) {
            let out = item.to_string();
            let back: Value = serde_json::from_str(text).expect("json");
            std::hint::black_box((out, back));
        }
        async {}
    })
    .await;
    let wasm500 = measure(100, || async {
        runtime
            .invoke("replication/save-entries", five_hundred, None)
            .await
            .expect("invoke");
    })
    .await;
    println!("alternative: host pass-through of item bytes (what the host's own JSON work costs):");
    println!(
        "  serialize + parse 500 items once on the host: p50 {:8.1} µs = {:.1}% of a 500-record invocation (p50 {:8.1} µs)",
        micros(host_json.p50),
        100.0 * host_json.p50.as_secs_f64() / wasm500.p50.as_secs_f64(),
        micros(wasm500.p50)
    );
}

/// `USHER_BENCH_SAVE_ENTRIES_ALT=path.wasm`: another build of save-entries
/// (e.g. another opt-level) against the repository's, interleaved in this
/// run on 10 and 500 records.
async fn save_entries_builds(
    runtime: &Arc<Runtime>,
    table: &Arc<MapTable>,
    services: &Arc<FakeServices>,
) {
    let Ok(path) = std::env::var("USHER_BENCH_SAVE_ENTRIES_ALT") else {
        return;
    };
    let bytes = std::fs::read(&path).expect("USHER_BENCH_SAVE_ENTRIES_ALT");
    let alt = runtime_of(
        usher_testing::shared_engine(),
        table.clone(),
        services.clone(),
        &bytes,
    );
    for (n, iterations) in [(10usize, 2000usize), (500, 150)] {
        let input = Input::Batch(batch(n));
        let mut repo = Vec::new();
        let mut other = Vec::new();
        for i in 0..iterations + iterations / 10 {
            for (rt, samples) in [(runtime, &mut repo), (&alt, &mut other)] {
                let t = Instant::now();
                rt.invoke("replication/save-entries", &input, None)
                    .await
                    .expect("invoke");
                if i >= iterations / 10 {
                    samples.push(t.elapsed());
                }
            }
        }
        let (repo, other) = (stats(repo), stats(other));
        println!(
            "alternative build of save-entries ({path}), {n} records: repository's p50 {:9.1} µs, alternative p50 {:9.1} µs ({:.2}x)",
            micros(repo.p50),
            micros(other.p50),
            other.p50.as_secs_f64() / repo.p50.as_secs_f64()
        );
    }
}

/// Issue 9 item 1: the boundary's encodings side by side in this run, on
/// `testing/boundary-probe` (its own WIT world, `tests/wit/boundary-probe.wit`).
/// The same save-entries-like batch (the messages of [`batch`]) crosses in
/// every [`Variant`], the guest runs the same serde-typed logic on it and
/// writes the items back in the same encoding; the host starts from what
/// its backends hold today (message bodies as stored text) and ends with
/// what a table backend takes (`serde_json::Value` items), except where a
/// variant says "already typed/encoded" (a backend holding that form) or
/// passes bytes through. One warm instance per variant, interleaved calls.
/// Beside them: the guest's own logic compiled natively on the same batch
/// (JSON and postcard), and the host's own share of (a) (parsing what the
/// guest wrote), so the rest is the boundary plus wasm's slower code.
fn boundary_encodings() {
    use usher_testing::boundary_probe::{Batch, ProbeComponent, Variant};
    let probe = ProbeComponent::new(&components::TESTING_BOUNDARY_PROBE.bytes()).expect("probe");
    for (n, iterations) in [(10usize, 3000usize), (500, 300)] {
        let bodies: Vec<String> = batch(n).into_iter().map(|m| m.body).collect();
        let prepared = Batch::new(bodies.clone()).expect("batch");
        let mut instances: Vec<_> = Variant::ALL
            .iter()
            .map(|_| probe.instantiate().expect("instantiate"))
            .collect();
        let mut samples: Vec<Vec<Duration>> = Variant::ALL.iter().map(|_| Vec::new()).collect();
        let warm = iterations / 10;
        for i in 0..iterations + warm {
            for ((variant, instance), samples) in Variant::ALL
                .iter()
                .zip(instances.iter_mut())
                .zip(samples.iter_mut())
            {
                let t = Instant::now();
                let written = instance.run(*variant, &prepared).expect("run");
                std::hint::black_box(&written);
                drop(written);
                if i >= warm {
                    samples.push(t.elapsed());
                }
            }
        }
        let stats: Vec<Stats> = samples.into_iter().map(stats).collect();
        let base = stats[0].p50.as_secs_f64();
        let compact_stored = &stats[Variant::ALL
            .iter()
            .position(|v| *v == Variant::CompactStored)
            .expect("a variant")];
        println!("boundary encodings, {n}-record batch (testing/boundary-probe, one warm instance each, interleaved):");
        for (variant, s) in Variant::ALL.iter().zip(&stats) {
            println!(
                "  {:<40} p50 {:9.1} µs  p99 {:9.1} µs  {:5.2}x of (a)  {:6.2} µs/record",
                variant.label(),
                micros(s.p50),
                micros(s.p99),
                s.p50.as_secs_f64() / base,
                micros(s.p50) / n as f64
            );
        }
        // The same logic natively, and the host's own share of (a).
        let native_json = measure(iterations, || {
            std::hint::black_box(boundary_probe::model::json_batch(&bodies).expect("json"));
            async {}
        });
        let native_json = futures::executor::block_on(native_json);
        let compact_in = prepared_compact(&bodies);
        let native_compact = futures::executor::block_on(measure(iterations, || {
            std::hint::black_box(
                boundary_probe::model::compact_batch(&compact_in).expect("compact"),
            );
            async {}
        }));
        let written: Vec<String> = boundary_probe::model::json_batch(&bodies).expect("json");
        let host_parse = futures::executor::block_on(measure(iterations, || {
            for item in &written {
                std::hint::black_box(serde_json::from_str::<Value>(item).expect("json"));
            }
            async {}
        }));
        println!(
            "  native guest logic: JSON p50 {:9.1} µs ({:.2}x of it in wasm (a)), postcard p50 {:9.1} µs ({:.2}x in wasm (c) stored)",
            micros(native_json.p50),
            base / native_json.p50.as_secs_f64(),
            micros(native_compact.p50),
            compact_stored.p50.as_secs_f64() / native_compact.p50.as_secs_f64()
        );
        println!(
            "  host share of (a): parsing the written items p50 {:9.1} µs = {:.0}% of (a)",
            micros(host_parse.p50),
            100.0 * host_parse.p50.as_secs_f64() / base
        );
    }
}

/// The postcard form of these bodies, as the guest's model encodes it.
fn prepared_compact(bodies: &[String]) -> Vec<u8> {
    use boundary_probe::model::{to_compact_change, Change, CompactChange};
    let changes: Vec<CompactChange> = bodies
        .iter()
        .map(|b| to_compact_change(&serde_json::from_str::<Change>(b).expect("json")))
        .collect();
    postcard::to_allocvec(&changes).expect("postcard")
}

/// The cost of observability on one invocation (`USHER_BENCH_ONLY=tracing`):
/// save-entries on a 10-record batch with nothing installed (as the test
/// host), with the Prometheus recorder, and with the recorder plus the
/// OpenTelemetry layer exporting every span over OTLP/HTTP to a sink on
/// loopback (what `usher up` does with OTEL_EXPORTER_OTLP_ENDPOINT set).
/// One process: a subscriber is global, so the rounds go from less to more.
fn tracing_cost() {
    // Before any thread reads the environment.
    let sink = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the OTLP sink");
    let addr = sink.local_addr().expect("addr");
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(async {
        sink.set_nonblocking(true).expect("nonblocking");
        let listener = tokio::net::TcpListener::from_std(sink).expect("listener");
        let spans_bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = spans_bytes.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                counted.fetch_add(body.len() as u64, std::sync::atomic::Ordering::Relaxed);
                async { "" }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });

        let table = Arc::new(MapTable::default());
        let services = FakeServices::ok();
        let runtime = runtime_with(
            usher_testing::shared_engine(),
            table.clone(),
            services.clone(),
        );
        seed(&table, 500).await;
        let ten = Input::Batch(batch(10));
        let round = || async {
            measure(3000, || async {
                runtime
                    .invoke("replication/save-entries", &ten, None)
                    .await
                    .expect("invoke");
            })
            .await
        };
        let off = round().await;
        usher_telemetry::metric::install().expect("the recorder");
        let metrics = round().await;
        let options = usher_telemetry::Options {
            format: usher_telemetry::LogFormat::Text,
            service_name: "usher-bench".into(),
            export_traces: true,
        };
        let telemetry = usher_telemetry::init(&options).expect("telemetry");
        // Every invocation under an event span, as the triggers run them.
        let traced = measure(3000, || async {
            use tracing::Instrument;
            let span = tracing::info_span!("queue_batch", worker = "replication/save-entries");
            runtime
                .invoke("replication/save-entries", &ten, None)
                .instrument(span)
                .await
                .expect("invoke");
        })
        .await;
        tokio::task::spawn_blocking(move || drop(telemetry))
            .await
            .expect("flush");
        println!("observability cost, save-entries, 10-record batch, fresh instance + call:");
        for (what, m) in [
            ("nothing installed", &off),
            ("Prometheus recorder", &metrics),
            ("recorder + OTLP traces", &traced),
        ] {
            println!(
                "  {what:<24} p50 {:8.1} µs   p99 {:8.1} µs",
                micros(m.p50),
                micros(m.p99)
            );
        }
        println!(
            "  traces + metrics over nothing (p50): {:+.1} µs; {} bytes of OTLP received",
            micros(traced.p50) - micros(off.p50),
            spans_bytes.load(std::sync::atomic::Ordering::Relaxed)
        );
    });
}

fn main() {
    // `USHER_BENCH_ONLY=encodings`: only the boundary encodings (for a
    // profile of them alone).
    if std::env::var("USHER_BENCH_ONLY").as_deref() == Ok("encodings") {
        boundary_encodings();
        return;
    }
    if std::env::var("USHER_BENCH_ONLY").as_deref() == Ok("tracing") {
        tracing_cost();
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(async {
        let table = Arc::new(MapTable::default());
        let services = FakeServices::ok();
        let runtime = runtime_with(
            usher_testing::shared_engine(),
            table.clone(),
            services.clone(),
        );
        seed(&table, 500).await;
        let ten = Input::Batch(batch(10));
        let five_hundred = Input::Batch(batch(500));

        let wasm10 = measure(3000, || async {
            runtime
                .invoke("replication/save-entries", &ten, None)
                .await
                .expect("invoke");
        })
        .await;
        let inst = measure(3000, || async {
            runtime
                .instantiate_only("replication/save-entries")
                .await
                .expect("instantiate");
        })
        .await;
        let settings = save_entries::Settings {
            table: "demand-table".into(),
            service: "entries".into(),
            retry_queue: "retry-score".into(),
        };
        let sdk10 = to_sdk(&batch(10));
        let _native = usher_sdk::native::install(NativePorts {
            table: table.clone(),
            services: services.clone(),
        });
        let native10 = measure(3000, || {
            let r = save_entries::process(&settings, &sdk10);
            assert!(r.failures.is_empty());
            async {}
        })
        .await;
        let wasm500 = measure(200, || async {
            runtime
                .invoke("replication/save-entries", &five_hundred, None)
                .await
                .expect("invoke");
        })
        .await;
        let sdk500 = to_sdk(&batch(500));
        let native500 = measure(200, || {
            let r = save_entries::process(&settings, &sdk500);
            assert!(r.failures.is_empty());
            async {}
        })
        .await;

        println!("save-entries, 10-record batch, fresh instance + call:");
        println!(
            "  wasm   p50 {:8.1} µs   p99 {:8.1} µs",
            micros(wasm10.p50),
            micros(wasm10.p99)
        );
        println!(
            "  instantiation alone  p50 {:8.1} µs   p99 {:8.1} µs",
            micros(inst.p50),
            micros(inst.p99)
        );
        println!(
            "  native p50 {:8.1} µs   p99 {:8.1} µs",
            micros(native10.p50),
            micros(native10.p99)
        );
        println!(
            "  overhead beyond the logic (wasm p50 - native p50): {:.1} µs",
            micros(wasm10.p50) - micros(native10.p50)
        );
        println!("save-entries, 500-record batch:");
        println!(
            "  wasm   p50 {:8.1} µs   p99 {:8.1} µs",
            micros(wasm500.p50),
            micros(wasm500.p99)
        );
        println!(
            "  native p50 {:8.1} µs   p99 {:8.1} µs",
            micros(native500.p50),
            micros(native500.p99)
        );
        println!(
            "  wasm/native (p50): {:.2}x",
            wasm500.p50.as_secs_f64() / native500.p50.as_secs_f64()
        );
        boundary_alternatives(&runtime, &table, &services, &five_hundred).await;
        save_entries_builds(&runtime, &table, &services).await;
        boundary_encodings();
        let (cold, warm) = swap_latency().await;
        println!("hot swap, release written -> new version live (promote + refresh):");
        println!(
            "  compiling (no artifact): {:.1} ms",
            cold.as_secs_f64() * 1e3
        );
        println!(
            "  precompiled artifact (20 swaps): p50 {:.2} ms  p99 {:.2} ms",
            warm.p50.as_secs_f64() * 1e3,
            warm.p99.as_secs_f64() * 1e3
        );
    });
    match cold_start() {
        Some((s, n)) => println!(
            "cold start, `usher invoke` exec to answer, all components precompiled ({n} runs): p50 {:.1} ms  p99 {:.1} ms",
            s.p50.as_secs_f64() * 1e3,
            s.p99.as_secs_f64() * 1e3
        ),
        None => println!("cold start: not measured"),
    }
}
