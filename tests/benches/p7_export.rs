//! Benchmark P7 (a bench binary, not a timed test): the `entries` export of
//! 1,000,000 rows through `exports/run-export` under wasmtime on the
//! embedded backends (SQLite jobs table in memory, the objects store's
//! files in a temporary folder: the CSV's destination, written through the
//! streaming writer). The Entry Service is scripted with its 200 pages of
//! 5,000 entries serialized beforehand (as P8 does), so the figure is the
//! runner's (paging, JSON parsing, CSV, the boundary, the writes), not an
//! Entry Service's table reads; idle RSS is taken after the preparation.
//!
//! Reported: rows/s, the file's size, the host's peak RSS above idle
//! (`VmHWM` reset through `/proc/self/clear_refs` before the run) and the
//! component's memory (the run succeeds under `P7_MEMORY_MB` of linear
//! memory: its peak is at most that).
//!
//! `cargo bench --workspace --bench p7_export` (after `just build-components pin`);
//! `P7_ROWS`, `P7_MEMORY_MB` change the size and the component's limit.

use std::time::Instant;

use serde_json::{json, Value};
use usher_capabilities::{Method, ObjectBackend, TableBackend};
use usher_engine::{BatchMessage, Input, Output};
use usher_testing::{components, json_response, FakeServices, TestHost};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A line of /proc/self/status in kB.
fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// This process's user + system CPU time in seconds (/proc/self/stat,
/// clock ticks of 1/100 s): the figure a loaded machine does not inflate.
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.to_string();
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

fn main() {
    let rows = env_or("P7_ROWS", 1_000_000);
    let memory_mb = env_or("P7_MEMORY_MB", 32);
    let page_size = 5_000;
    // The Entry Service's pages, by cursor, serialized before the run (as
    // P8 does), so the figure is the runner's and not the fake's.
    let prepared = Instant::now();
    let mut pages: std::collections::HashMap<usize, String> = std::collections::HashMap::new();
    let mut start = 0;
    while start < rows.max(1) {
        let end = (start + page_size).min(rows);
        let list: Vec<Value> = (start..end)
            .map(|i| {
                json!({"campaignId": "c1", "globalUserId": format!("user-{i:09}"), "marketId": "m1",
                       "email": format!("fan{i}@example.com"), "entry": {"zip": "10001", "tier": "gold, \"vip\""},
                       "version": 1, "createdAt": "2026-01-01T00:00:00.000Z",
                       "updatedAt": "2026-01-01T00:00:00.000Z", "score": i % 97})
            })
            .collect();
        let next = (end < rows).then(|| format!("user-{:09}", end - 1));
        pages.insert(start, json!({"entries": list, "next": next}).to_string());
        start = end;
    }
    eprintln!(
        "p7: {} pages prepared in {:.1} s",
        pages.len(),
        prepared.elapsed().as_secs_f64()
    );
    let services = FakeServices::with(move |r| {
        let path = r.path.split('?').next().unwrap_or("");
        Ok(match (r.method, path) {
            (Method::Get, "/campaigns/c1") => json_response(
                200,
                r#"{"id":"c1","fields":[{"name":"zip","type":"string"},{"name":"tier","type":"string"}]}"#,
            ),
            (Method::Get, "/markets/m1/entries") => {
                let start = r
                    .path
                    .split('&')
                    .find_map(|p| p.strip_prefix("after=user-"))
                    .and_then(|n| n.parse::<usize>().ok())
                    .map_or(0, |n| n + 1);
                match pages.get(&start) {
                    Some(page) => json_response(200, page),
                    None => json_response(404, r#"{"error":"no page"}"#),
                }
            }
            _ => json_response(404, r#"{"error":"no"}"#),
        })
    });
    let worker = format!(
        "trigger: {{ queue: run-export }}\nlimits: {{ memory_mb: {memory_mb}, timeout_ms: 900000 }}\n\
         grants: {{ tables: [exports, draws], buckets: [exports], services: [entries, campaigns, users, codes] }}\n\
         settings: {{ page_size: {page_size} }}"
    );
    let host = TestHost::builder()
        .resources("{ tables: { exports: { partition_key: PK, sort_key: SK }, draws: { partition_key: PK, sort_key: SK } }, queues: { run-export: {} }, buckets: [exports], services: { entries: { url: 'http://e.test' }, campaigns: { url: 'http://c.test' }, users: { url: 'http://u.test' }, codes: { url: 'http://k.test' } } }")
        .worker(&components::EXPORTS_RUN_EXPORT, &worker)
        .services(services)
        .build()
        .expect("test host");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let job = json!({"PK": "CAMPAIGN#c1", "SK": "EXPORT#p7", "exportId": "p7", "campaignId": "c1",
        "exportType": "entries", "marketId": "m1", "state": "PENDING", "fingerprint": "f", "requestedBy": "bench",
        "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-01T00:00:00.000Z",
        "version": 1, "fencing": 0, "attempts": 0});
    rt.block_on(host.embedded.tables().put("exports", job, None))
        .expect("job");
    // The test host's runtime records every capability call (with the 200
    // pages' bodies): the figure is taken on a runtime without a recorder,
    // as `usher up` runs.
    let runtime = usher_engine::Runtime::start(
        usher_testing::shared_engine(),
        std::sync::Arc::new(host.runtime.registry().clone()),
        host.store.clone(),
        &host.env,
        std::sync::Arc::new(host.embedded.backends(
            host.services.clone(),
            std::sync::Arc::new(usher_capabilities::NoCodec),
            std::sync::Arc::new(usher_engine::LocalInvoker::new()),
        )),
        None,
    )
    .expect("runtime");
    // Warm the instance pool and the artifact: an invocation on a job that does not exist.
    let message = |id: &str| BatchMessage {
        message_id: format!("m-{id}"),
        body: json!({"campaignId": "c1", "exportId": id}).to_string(),
        attributes: vec![],
        receive_count: 1,
    };
    rt.block_on(runtime.invoke(
        "exports/run-export",
        &Input::Batch(vec![message("warm")]),
        None,
    ))
    .expect("warm-up");
    let idle_kb = status_kb("VmRSS:");
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let out = rt
        .block_on(runtime.invoke(
            "exports/run-export",
            &Input::Batch(vec![message("p7")]),
            None,
        ))
        .expect("invocation");
    let elapsed = started.elapsed();
    let cpu = cpu_seconds() - cpu_before;
    let peak_kb = status_kb("VmHWM:");
    match out.output {
        Output::Batch(b) if b.failures.is_empty() => {}
        other => panic!("the export failed: {other:?}"),
    }
    let done = rt
        .block_on(
            host.embedded
                .tables()
                .get("exports", &json!({"PK": "CAMPAIGN#c1", "SK": "EXPORT#p7"})),
        )
        .expect("get")
        .expect("job");
    assert_eq!(done["state"], "FINISHED", "{done}");
    assert_eq!(done["rowCount"].as_u64(), Some(rows as u64));
    let key = done["file"]["key"].as_str().expect("key").to_string();
    let files = rt
        .block_on(host.embedded.objects().list("exports", &key, 1))
        .expect("list");
    let size = files.first().map_or(0, |f| f.size);
    let secs = elapsed.as_secs_f64();
    println!(
        "p7: {rows} rows, {:.1} MB CSV in {secs:.2} s = {:.0} rows/s ({:.1} MB/s); CPU {cpu:.2} s = {:.0} rows per CPU-second; host RSS idle {:.1} MB, peak {:.1} MB (+{:.1} MB); component within {memory_mb} MiB of linear memory",
        size as f64 / 1e6,
        rows as f64 / secs,
        size as f64 / 1e6 / secs,
        rows as f64 / cpu.max(0.01),
        idle_kb as f64 / 1024.0,
        peak_kb as f64 / 1024.0,
        peak_kb.saturating_sub(idle_kb) as f64 / 1024.0,
    );
}
