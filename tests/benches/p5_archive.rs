//! Benchmark P5 (a bench binary, not a timed test): records per second per
//! core archiving demand-table changes to Parquet through the
//! `archive/archive-changes` component (under wasmtime, the host's codec,
//! the embedded objects), against the raw arrow-rs writer (arrays built
//! straight from the archived records, `parquet`'s ArrowWriter, the same
//! snappy settings) on the same records in the same run; target ≥ 0.5×.
//! Then the same for Avro (the component against `apache-avro`'s writer).
//!
//! CPU time is the process's (user + system, /proc/self/stat), so
//! records/s/core counts every thread the host used; wall-clock figures are
//! printed beside it.
//!
//! `cargo bench --workspace --bench p5_archive` (after
//! `just build-components pin`); `P5_RECORDS` (default 100,000) and
//! `P5_BATCH` (default: archive-changes' `batch_size` in `workers/`) change
//! the size; `P5_ROUNDS` (default 3) how many times each format's component
//! and raw writer run back to back (the median round's ratio is the
//! figure). `P5_PROFILE=parquet|avro` runs only the component
//! (`P5_PROFILE_RUNS` times), for a profiler; `USHER_TEST_MAX_INSTANCES=2`
//! lets it run under valgrind.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::builder::{
    BooleanBuilder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use serde_json::{json, Value};
use usher_engine::{ChangeRecord, Input, Output};
use usher_testing::{components, TestHost};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The process's CPU time so far (user + system).
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command's closing parenthesis; utime and stime are
    // the 14th and 15th fields overall, in clock ticks (100 per second).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

const DAY: u64 = 1_796_515_200_000;

fn item(i: usize) -> Value {
    json!({
        "PK": format!("ENTRY#campaign-1#fan-{i:07}"), "SK": "ENTRY", "campaignId": "campaign-1",
        "globalUserId": format!("fan-{i:07}"), "marketId": format!("m{}", i % 3),
        "entry": {"firstName": format!("Fan{i}"), "zip": format!("{:05}", 10000 + i % 90000), "age": 18 + i % 60, "newsletter": i.is_multiple_of(2)},
        "email": format!("fan{i}@example.com"), "verdict": "PENDING",
        "needsReplication": true, "version": 1,
        "createdAt": "2026-12-06T10:00:00Z", "updatedAt": "2026-12-06T10:00:00Z",
    })
}

fn changes(n: usize) -> Vec<ChangeRecord> {
    (0..n)
        .map(|i| {
            serde_json::from_value(json!({
                "table": "demand-table", "eventName": "INSERT",
                "keys": {"PK": format!("ENTRY#campaign-1#fan-{i:07}"), "SK": "ENTRY"},
                "newImage": item(i), "sequenceNumber": format!("{}", 1_000_000 + i),
                "timestampMs": DAY + i as u64,
            }))
            .expect("change")
        })
        .collect()
}

fn host(format: &str) -> TestHost {
    TestHost::builder()
        .resources(
            "tables: { demand-table: { partition_key: PK, sort_key: SK } }\nbuckets: [archive]",
        )
        .worker(
            &components::ARCHIVE_ARCHIVE_CHANGES,
            &format!(
                "trigger: {{ stream: {{ table: demand-table }} }}\nbatch_size: 10000\n\
                 limits: {{ memory_mb: 256, timeout_ms: 60000 }}\n\
                 grants: {{ buckets: [archive], codec: true }}\n\
                 settings: {{ bucket: archive, prefix: p5, format: {format}, pii_salt: s }}"
            ),
        )
        .build()
        .expect("test host")
}

struct Run {
    wall: Duration,
    cpu: Duration,
    records: usize,
}

impl Run {
    fn per_core(&self) -> f64 {
        self.records as f64 / self.cpu.as_secs_f64().max(1e-9)
    }
    fn per_wall(&self) -> f64 {
        self.records as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

async fn through_component(host: &TestHost, batches: &[Vec<ChangeRecord>]) -> Run {
    // The inputs are made before the clock starts (the raw writers' inputs
    // are not timed either): the host's own work on them (the images to
    // the WIT's JSON text) is timed, inside the invocation.
    let inputs: Vec<(usize, Input)> = batches
        .iter()
        .map(|b| (b.len(), Input::Stream(b.clone())))
        .collect();
    let (wall0, cpu0) = (Instant::now(), cpu());
    let mut records = 0;
    for (len, input) in inputs {
        let out = host
            .invoke("archive/archive-changes", input)
            .await
            .expect("invocation");
        match out.output {
            Output::Stream(s) => assert!(s.failures.is_empty(), "{s:?}"),
            other => panic!("{other:?}"),
        }
        records += len;
    }
    Run {
        wall: wall0.elapsed(),
        cpu: cpu() - cpu0,
        records,
    }
}

/// The archived records of the component's first objects, read back (so
/// the raw writers write exactly what the component wrote).
async fn archived(host: &TestHost, n_objects: usize) -> Vec<Vec<Value>> {
    use usher_capabilities::ObjectBackend;
    let objects = host.embedded.objects();
    let keys = objects
        .list("archive", "p5/demand/", 100_000)
        .await
        .expect("list");
    let mut out = Vec::new();
    for o in keys.iter().take(n_objects) {
        let bytes = objects
            .get("archive", &o.key)
            .await
            .expect("get")
            .expect("object");
        let reader = apache_avro::Reader::new(&bytes[..]).expect("avro");
        out.push(
            reader
                .map(|r| apache_avro::from_value::<Value>(&r.expect("record")).expect("json"))
                .collect(),
        );
    }
    out
}

/// Parquet straight from typed arrays (the raw arrow-rs writer).
fn raw_parquet(schema: &Value, arrow: &Arc<arrow_schema::Schema>, records: &[Value]) -> Vec<u8> {
    let mut columns: Vec<ArrayRef> = Vec::new();
    for f in schema["fields"].as_array().expect("fields") {
        let name = f["name"].as_str().expect("name");
        let ty = match &f["type"] {
            Value::Array(b) => b
                .iter()
                .find(|t| *t != "null")
                .cloned()
                .unwrap_or(Value::Null),
            t => t.clone(),
        };
        let col: ArrayRef = match ty.as_str() {
            Some("string") => {
                let mut b = StringBuilder::with_capacity(records.len(), records.len() * 32);
                for r in records {
                    b.append_option(r[name].as_str());
                }
                Arc::new(b.finish())
            }
            Some("long") => {
                let mut b = Int64Builder::with_capacity(records.len());
                for r in records {
                    b.append_option(r[name].as_i64());
                }
                Arc::new(b.finish())
            }
            Some("boolean") => {
                let mut b = BooleanBuilder::with_capacity(records.len());
                for r in records {
                    b.append_option(r[name].as_bool());
                }
                Arc::new(b.finish())
            }
            _ => {
                let mut b = TimestampMillisecondBuilder::with_capacity(records.len())
                    .with_timezone("+00:00");
                for r in records {
                    b.append_option(r[name].as_i64());
                }
                Arc::new(b.finish())
            }
        };
        columns.push(col);
    }
    let batch = RecordBatch::try_new(arrow.clone(), columns).expect("batch");
    let mut w = parquet::arrow::ArrowWriter::try_new(
        Vec::new(),
        arrow.clone(),
        Some(usher_codec::parquet_properties()),
    )
    .expect("writer");
    w.write(&batch).expect("write");
    w.into_inner().expect("finish")
}

fn raw_avro(schema: &Value, records: &[Value]) -> Vec<u8> {
    let parsed = apache_avro::Schema::parse(schema).expect("schema");
    let mut w = apache_avro::Writer::with_codec(&parsed, Vec::new(), usher_codec::avro_codec())
        .expect("writer");
    for r in records {
        let mut fields = Vec::new();
        for f in schema["fields"].as_array().expect("fields") {
            let name = f["name"].as_str().expect("name").to_string();
            let v = &r[&name];
            let nullable = f["type"].is_array();
            let logical_ts = f["type"]["logicalType"] == "timestamp-millis";
            let plain = match v {
                Value::Null => apache_avro::types::Value::Null,
                Value::Bool(b) => apache_avro::types::Value::Boolean(*b),
                Value::Number(n) if logical_ts => {
                    apache_avro::types::Value::TimestampMillis(n.as_i64().unwrap_or(0))
                }
                Value::Number(n) => apache_avro::types::Value::Long(n.as_i64().unwrap_or(0)),
                Value::String(s) => apache_avro::types::Value::String(s.clone()),
                other => panic!("unexpected {other}"),
            };
            let value = if nullable {
                let branch = u32::from(!v.is_null());
                apache_avro::types::Value::Union(branch, Box::new(plain))
            } else {
                plain
            };
            fields.push((name, value));
        }
        w.append_value(apache_avro::types::Value::Record(fields))
            .expect("append");
    }
    w.into_inner().expect("finish")
}

fn report(what: &str, component: &Run, raw: &Run) {
    println!(
        "P5 {what}: component {:.0} records/s/core ({:.0} records/s wall, {} records, cpu {:.2} s, wall {:.2} s); raw {:.0} records/s/core ({:.0}/s wall, cpu {:.2} s); ratio {:.2}x (target >= 0.5x)",
        component.per_core(), component.per_wall(), component.records, component.cpu.as_secs_f64(), component.wall.as_secs_f64(),
        raw.per_core(), raw.per_wall(), raw.cpu.as_secs_f64(), component.per_core() / raw.per_core()
    );
}

fn main() {
    let n = env_or("P5_RECORDS", 100_000);
    // The registry's batch size of archive-changes, unless P5_BATCH says.
    let registry_batch = usher_registry::Registry::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workers"),
    )
    .expect("the repository's registry")
    .worker("archive/archive-changes")
    .expect("archive/archive-changes")
    .batch_size as usize;
    let batch = env_or("P5_BATCH", registry_batch);
    println!("P5: {batch} changes a batch (the registry's: {registry_batch})");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let all = changes(n);
    let batches: Vec<Vec<ChangeRecord>> = all.chunks(batch).map(<[ChangeRecord]>::to_vec).collect();
    let schema: Value =
        serde_json::from_str(include_str!("../../schemas/archive/derived/demand.avsc"))
            .expect("avsc");
    let arrow = Arc::new(usher_codec::columns::arrow_schema(&schema).expect("arrow schema"));
    rt.block_on(async {
        if let Ok(format) = std::env::var("P5_PROFILE") {
            // Only the component, for a profiler: `P5_PROFILE=parquet perf record …`.
            // `P5_PROFILE_RUNS` (default 1) runs of every batch: the
            // difference between two counts of a run under valgrind is one
            // run's work, without the setup and the compilation.
            let h = host(&format);
            through_component(&h, &batches[..1]).await;
            let mut run = through_component(&h, &batches).await;
            for _ in 1..env_or("P5_PROFILE_RUNS", 1) {
                run = through_component(&h, &batches).await;
            }
            println!(
                "P5 profile {format}: {:.0} records/s/core (cpu {:.2} s)",
                run.per_core(),
                run.cpu.as_secs_f64()
            );
            return;
        }
        // Avro first: its objects give the archived records back, for the
        // raw writers to write exactly the same values.
        let avro_host = host("avro");
        // Warm-up (compilation, first instance) outside the measure.
        through_component(&avro_host, &batches[..1]).await;
        let first_avro = through_component(&avro_host, &batches).await;
        let records = archived(&avro_host, batches.len()).await;
        let parquet_host = host("parquet");
        through_component(&parquet_host, &batches[..1]).await;
        let raw_run = |write: &dyn Fn(&[Value]) -> usize| {
            let (wall0, cpu0) = (Instant::now(), cpu());
            let mut bytes = 0usize;
            for r in &records {
                bytes += write(r);
            }
            assert!(bytes > 0);
            Run {
                wall: wall0.elapsed(),
                cpu: cpu() - cpu0,
                records: records.iter().map(Vec::len).sum(),
            }
        };
        let raw_avro = |r: &[Value]| raw_avro(&schema, r).len();
        let raw_parquet = |r: &[Value]| raw_parquet(&schema, &arrow, r).len();
        // Rounds of each format's component run and its raw writer's, one
        // right after the other: on a noisy machine only runs made back to
        // back compare, and the median round is the figure.
        let rounds = env_or("P5_ROUNDS", 3).max(1);
        let mut ratios: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        let mut last = None;
        let mut first_avro = Some(first_avro);
        for round in 1..=rounds {
            let parquet = through_component(&parquet_host, &batches).await;
            let raw_parquet_run = raw_run(&raw_parquet);
            let avro = match first_avro.take() {
                Some(run) => run,
                None => through_component(&avro_host, &batches).await,
            };
            let raw_avro_run = raw_run(&raw_avro);
            report(
                &format!("parquet round {round}"),
                &parquet,
                &raw_parquet_run,
            );
            report(&format!("avro round {round}"), &avro, &raw_avro_run);
            ratios[0].push(parquet.per_core() / raw_parquet_run.per_core());
            ratios[1].push(avro.per_core() / raw_avro_run.per_core());
            last = Some((raw_parquet_run, raw_avro_run));
        }
        for (what, mut r) in ["parquet", "avro"].into_iter().zip(ratios) {
            r.sort_by(f64::total_cmp);
            let listed: Vec<String> = r.iter().map(|x| format!("{x:.2}")).collect();
            println!(
                "P5 {what}: median ratio {:.2}x of {rounds} round(s) [{}] (target >= 0.5x)",
                r[r.len() / 2],
                listed.join(", ")
            );
        }
        let Some((raw_parquet_run, raw_avro_run)) = last else {
            return;
        };

        // The host's share: the codec from the records' JSON text (as they
        // cross the boundary), parsed to values then encoded (today's path),
        // and Parquet decoded straight from the text by arrow-json's tape
        // decoder.
        let texts: Vec<Vec<String>> = records
            .iter()
            .map(|r| r.iter().map(|v| v.to_string()).collect())
            .collect();
        let n_records: usize = records.iter().map(Vec::len).sum();
        let timed = |f: &mut dyn FnMut()| {
            let (wall0, cpu0) = (Instant::now(), cpu());
            f();
            Run {
                wall: wall0.elapsed(),
                cpu: cpu() - cpu0,
                records: n_records,
            }
        };
        let values_parquet = timed(&mut || {
            for t in &texts {
                let v = usher_codec::parse_records(t).expect("json");
                usher_codec::encode_parquet(&schema, v).expect("parquet");
            }
        });
        let tape_parquet = timed(&mut || {
            for t in &texts {
                usher_codec::encode_parquet_json(&schema, t).expect("parquet");
            }
        });
        let values_avro = timed(&mut || {
            for t in &texts {
                let v = usher_codec::parse_records(t).expect("json");
                usher_codec::encode_avro(&schema, v).expect("avro");
            }
        });
        report(
            "parquet host codec from text via values",
            &values_parquet,
            &raw_parquet_run,
        );
        report(
            "parquet host codec from text via tape",
            &tape_parquet,
            &raw_parquet_run,
        );
        report(
            "avro host codec from text via values",
            &values_avro,
            &raw_avro_run,
        );
    });
}
