//! The host side of `testing/boundary-probe` (`tests/wit/boundary-probe.wit`,
//! a probe-only WIT package: nothing of `usher:platform` changes): the same
//! save-entries-like batch crosses the boundary in each [`Variant`], and the
//! host ends holding what a table backend takes today (`serde_json::Value`
//! items), except for the pass-through, whose bytes the host keeps as they
//! are. Used by `tests/benches/invoke.rs` (`boundary_encodings`) and
//! `tests/tests/component_testing_boundary_probe.rs`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/boundary-probe.wit",
        world: "usher:boundary-probe/boundary-probe",
        imports: { default: trappable },
    });
}

use bindings::usher::boundary_probe::{sink, types};

/// How the batch crosses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// (a) Today: each message body as JSON text, one call; the items back
    /// as JSON text, one crossing; the host parses them.
    Json,
    /// (a) with one call per message and one crossing per item written.
    JsonPerRecord,
    /// (a) with the guest keeping the free-form entry document raw
    /// (`RawValue`): the same text in and out, less parsing inside.
    JsonRaw,
    /// (b) Typed WIT records both ways; the host first parses the stored
    /// JSON text into records (a queue stores text).
    Typed,
    /// (b) with the records already at hand (a backend that holds them
    /// typed): only the canonical ABI's lowering and lifting.
    TypedStored,
    /// (c) postcard bytes both ways; the host first parses the stored text
    /// and encodes it.
    Compact,
    /// (c) with the postcard bytes already stored.
    CompactStored,
    /// (d) The stored bytes through the guest unparsed and back; the host
    /// stores them as they are.
    PassThrough,
}

impl Variant {
    /// Every variant, (a) first.
    pub const ALL: [Variant; 8] = [
        Variant::Json,
        Variant::JsonPerRecord,
        Variant::JsonRaw,
        Variant::Typed,
        Variant::TypedStored,
        Variant::Compact,
        Variant::CompactStored,
        Variant::PassThrough,
    ];

    /// A short label.
    pub fn label(&self) -> &'static str {
        match self {
            Variant::Json => "(a) JSON text, one call",
            Variant::JsonPerRecord => "(a) JSON text, one call per record",
            Variant::JsonRaw => "(a) JSON text, entry document kept raw",
            Variant::Typed => "(b) typed records, host parses text",
            Variant::TypedStored => "(b) typed records, already typed",
            Variant::Compact => "(c) postcard, host parses text",
            Variant::CompactStored => "(c) postcard, already encoded",
            Variant::PassThrough => "(d) bytes passed through",
        }
    }
}

/// A change record's keys as stored (JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TextKeys {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
}

/// An item as stored (JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TextItem {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    campaign_id: String,
    global_user_id: String,
    entry: Value,
    verdict: String,
    needs_replication: bool,
    version: u64,
    created_at: String,
    updated_at: String,
}

/// A change record as stored (JSON).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TextChange {
    table: String,
    event_name: String,
    keys: TextKeys,
    #[serde(default)]
    new_image: Option<TextItem>,
    sequence_number: String,
    timestamp_ms: u64,
}

/// The postcard layout of an item; field for field the guest's
/// `boundary_probe::model::CompactItem` (the host test checks they agree).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CompactItem {
    pk: String,
    sk: String,
    campaign_id: String,
    global_user_id: String,
    entry: String,
    verdict: String,
    needs_replication: bool,
    version: u64,
    created_at: String,
    updated_at: String,
}

/// The postcard layout of a change record (the guest's `CompactChange`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CompactChange {
    table: String,
    event_name: String,
    pk: String,
    sk: String,
    new_image: Option<CompactItem>,
    sequence_number: String,
    timestamp_ms: u64,
}

fn err(what: &str, e: impl std::fmt::Display) -> wasmtime::Error {
    wasmtime::Error::msg(format!("{what}: {e}"))
}

fn parse_change(text: &str) -> wasmtime::Result<TextChange> {
    serde_json::from_str(text).map_err(|e| err("a stored change record", e))
}

fn to_wit_change(c: TextChange) -> types::Change {
    types::Change {
        table: c.table,
        event_name: c.event_name,
        pk: c.keys.pk,
        sk: c.keys.sk,
        new_image: c.new_image.map(|i| types::Entry {
            entry: i.entry.to_string(),
            pk: i.pk,
            sk: i.sk,
            campaign_id: i.campaign_id,
            global_user_id: i.global_user_id,
            verdict: i.verdict,
            needs_replication: i.needs_replication,
            version: i.version,
            created_at: i.created_at,
            updated_at: i.updated_at,
        }),
        sequence_number: c.sequence_number,
        timestamp_ms: c.timestamp_ms,
    }
}

fn to_compact_change(c: TextChange) -> CompactChange {
    CompactChange {
        table: c.table,
        event_name: c.event_name,
        pk: c.keys.pk,
        sk: c.keys.sk,
        new_image: c.new_image.map(|i| CompactItem {
            entry: i.entry.to_string(),
            pk: i.pk,
            sk: i.sk,
            campaign_id: i.campaign_id,
            global_user_id: i.global_user_id,
            verdict: i.verdict,
            needs_replication: i.needs_replication,
            version: i.version,
            created_at: i.created_at,
            updated_at: i.updated_at,
        }),
        sequence_number: c.sequence_number,
        timestamp_ms: c.timestamp_ms,
    }
}

/// A typed or compact item as the `Value` a table backend takes.
#[allow(clippy::too_many_arguments)]
fn item_value(
    pk: String,
    sk: String,
    campaign_id: String,
    global_user_id: String,
    entry: &str,
    verdict: String,
    needs_replication: bool,
    version: u64,
    created_at: String,
    updated_at: String,
) -> wasmtime::Result<Value> {
    serde_json::to_value(TextItem {
        entry: serde_json::from_str(entry).map_err(|e| err("an item's entry", e))?,
        pk,
        sk,
        campaign_id,
        global_user_id,
        verdict,
        needs_replication,
        version,
        created_at,
        updated_at,
    })
    .map_err(|e| err("an item", e))
}

/// One batch in every stored form the variants start from.
pub struct Batch {
    bodies: Vec<String>,
    bytes: Vec<Vec<u8>>,
    typed: Vec<types::Change>,
    compact: Vec<u8>,
}

impl Batch {
    /// The batch of these message bodies (change records, JSON text).
    pub fn new(bodies: Vec<String>) -> wasmtime::Result<Batch> {
        let mut typed = Vec::with_capacity(bodies.len());
        let mut compact = Vec::with_capacity(bodies.len());
        for b in &bodies {
            let c = parse_change(b)?;
            compact.push(to_compact_change(c.clone()));
            typed.push(to_wit_change(c));
        }
        Ok(Batch {
            bytes: bodies.iter().map(|b| b.as_bytes().to_vec()).collect(),
            compact: postcard::to_allocvec(&compact).map_err(|e| err("postcard", e))?,
            typed,
            bodies,
        })
    }

    /// How many messages.
    pub fn len(&self) -> usize {
        self.bodies.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.bodies.is_empty()
    }
}

/// What the guest wrote back.
#[derive(Debug, Default)]
pub struct Written {
    /// The items, as a table backend takes them.
    pub items: Vec<Value>,
    /// The pass-through's bytes, as they were stored.
    pub raw: Vec<Vec<u8>>,
}

struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    written: Written,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for State {}

impl sink::Host for State {
    fn put_json(&mut self, item: String) -> wasmtime::Result<()> {
        let v = serde_json::from_str(&item).map_err(|e| err("put-json", e))?;
        self.written.items.push(v);
        Ok(())
    }

    fn put_json_many(&mut self, items: Vec<String>) -> wasmtime::Result<()> {
        self.written.items.reserve(items.len());
        for item in items {
            self.put_json(item)?;
        }
        Ok(())
    }

    fn put_typed_many(&mut self, items: Vec<types::Entry>) -> wasmtime::Result<()> {
        self.written.items.reserve(items.len());
        for e in items {
            let v = item_value(
                e.pk,
                e.sk,
                e.campaign_id,
                e.global_user_id,
                &e.entry,
                e.verdict,
                e.needs_replication,
                e.version,
                e.created_at,
                e.updated_at,
            )?;
            self.written.items.push(v);
        }
        Ok(())
    }

    fn put_compact_many(&mut self, items: Vec<u8>) -> wasmtime::Result<()> {
        let items: Vec<CompactItem> =
            postcard::from_bytes(&items).map_err(|e| err("put-compact-many", e))?;
        self.written.items.reserve(items.len());
        for e in items {
            let v = item_value(
                e.pk,
                e.sk,
                e.campaign_id,
                e.global_user_id,
                &e.entry,
                e.verdict,
                e.needs_replication,
                e.version,
                e.created_at,
                e.updated_at,
            )?;
            self.written.items.push(v);
        }
        Ok(())
    }

    fn put_bytes_many(&mut self, items: Vec<Vec<u8>>) -> wasmtime::Result<()> {
        self.written.raw.extend(items);
        Ok(())
    }
}

/// A compiled probe component.
pub struct ProbeComponent {
    engine: Engine,
    component: Component,
}

impl ProbeComponent {
    /// Compiles the probe (a plain synchronous engine: the variants share
    /// everything but the encoding).
    pub fn new(wasm: &[u8]) -> wasmtime::Result<ProbeComponent> {
        let engine = Engine::new(&Config::new())?;
        let component = Component::new(&engine, wasm)?;
        Ok(ProbeComponent { engine, component })
    }

    /// A live instance, reused across calls (its heap warm, so that a call
    /// measures the encoding and the crossing, not instantiation).
    pub fn instantiate(&self) -> wasmtime::Result<Probe> {
        let mut linker: Linker<State> = Linker::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        bindings::BoundaryProbe::add_to_linker::<State, wasmtime::component::HasSelf<State>>(
            &mut linker,
            |s| s,
        )?;
        let mut store = Store::new(
            &self.engine,
            State {
                wasi: WasiCtxBuilder::new().build(),
                table: ResourceTable::new(),
                written: Written::default(),
            },
        );
        let probe = bindings::BoundaryProbe::instantiate(&mut store, &self.component, &linker)?;
        Ok(Probe { store, probe })
    }
}

/// A live probe instance.
pub struct Probe {
    store: Store<State>,
    probe: bindings::BoundaryProbe,
}

impl Probe {
    /// Sends the batch across in this variant; what the guest wrote back.
    pub fn run(&mut self, variant: Variant, batch: &Batch) -> wasmtime::Result<Written> {
        let p = self.probe.usher_boundary_probe_probe();
        let store = &mut self.store;
        let answered: Result<u32, String> = match variant {
            Variant::Json => p.call_json(&mut *store, &batch.bodies)?,
            Variant::JsonPerRecord => {
                let mut n = 0u32;
                for body in &batch.bodies {
                    n += p
                        .call_json_one(&mut *store, body)?
                        .map_err(|e| err("json-one", e))?;
                }
                Ok(n)
            }
            Variant::JsonRaw => p.call_json_raw(&mut *store, &batch.bodies)?,
            Variant::Typed => {
                let typed = batch
                    .bodies
                    .iter()
                    .map(|b| parse_change(b).map(to_wit_change))
                    .collect::<wasmtime::Result<Vec<_>>>()?;
                p.call_typed(&mut *store, &typed)?
            }
            Variant::TypedStored => p.call_typed(&mut *store, &batch.typed)?,
            Variant::Compact => {
                let compact = batch
                    .bodies
                    .iter()
                    .map(|b| parse_change(b).map(to_compact_change))
                    .collect::<wasmtime::Result<Vec<_>>>()?;
                let bytes = postcard::to_allocvec(&compact).map_err(|e| err("postcard", e))?;
                p.call_compact(&mut *store, &bytes)?
            }
            Variant::CompactStored => p.call_compact(&mut *store, &batch.compact)?,
            Variant::PassThrough => p.call_pass_through(&mut *store, &batch.bytes)?,
        };
        self.finish(variant.label(), answered)
    }

    /// Variant (a) on message bodies as they are (unchecked JSON text).
    pub fn run_json_text(&mut self, bodies: &[String]) -> wasmtime::Result<Written> {
        let answered = self
            .probe
            .usher_boundary_probe_probe()
            .call_json(&mut self.store, bodies)?;
        self.finish(Variant::Json.label(), answered)
    }

    /// What the guest wrote, checked against what it says it wrote (and
    /// dropped when the call failed).
    fn finish(&mut self, label: &str, answered: Result<u32, String>) -> wasmtime::Result<Written> {
        let written = std::mem::take(&mut self.store.data_mut().written);
        let n = answered.map_err(|e| err(label, e))?;
        let got = written.items.len() + written.raw.len();
        if got != n as usize {
            return Err(err(
                label,
                format!("the guest says it wrote {n} items, the host got {got}"),
            ));
        }
        Ok(written)
    }
}
