//! `usher up`'s status file: `<data>/status.json`, rewritten with every
//! summary (and once more after stopping), so scripts and tests can read the
//! live versions, counters and queue depths without parsing the summary.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};
use usher_backend_embedded::EmbeddedQueues;
use usher_engine::Runtime;
use usher_trigger_local::CounterSnapshot;

/// The status as JSON: `{"workers": {name: {version, trigger, received,
/// succeeded, failed, in_flight, given_up}}, "queues": {name: {visible,
/// in_flight, delayed}}}`.
pub async fn status(
    runtime: &Runtime,
    counters: &BTreeMap<String, CounterSnapshot>,
    queues: &EmbeddedQueues,
) -> Value {
    let mut workers = Map::new();
    for (name, live) in runtime.workers() {
        let mut w = json!({
            "version": live.current().version.to_string(),
            "trigger": live.spec().trigger.kind(),
        });
        if let Some(c) = counters.get(name) {
            w["received"] = json!(c.received);
            w["succeeded"] = json!(c.succeeded);
            w["failed"] = json!(c.failed);
            w["in_flight"] = json!(c.in_flight);
            w["given_up"] = json!(c.given_up);
            w["invocations"] = json!(c.invocations);
            w["busy_ms"] = json!(c.busy.as_millis());
            if live.spec().trigger.kind() == "schedule" {
                w["skipped"] = json!(c.skipped);
                w["next_due"] = json!(c.next_due());
            }
        }
        workers.insert(name.clone(), w);
    }
    let mut depths = Map::new();
    for name in runtime.registry().resources.queues.keys() {
        if let Ok(d) = queues.depth(name).await {
            depths.insert(
                name.clone(),
                json!({"visible": d.visible, "in_flight": d.in_flight, "delayed": d.delayed}),
            );
        }
    }
    json!({"workers": workers, "queues": depths})
}

/// Writes the status to `<data>/status.json` (through a temporary file and a
/// rename, so a reader never sees half a file).
pub async fn write(
    data: &Path,
    runtime: &Runtime,
    counters: &BTreeMap<String, CounterSnapshot>,
    queues: &EmbeddedQueues,
) -> Result<()> {
    let body = serde_json::to_vec_pretty(&status(runtime, counters, queues).await)?;
    let path = data.join("status.json");
    let tmp = data.join("status.json.tmp");
    std::fs::write(&tmp, body).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
