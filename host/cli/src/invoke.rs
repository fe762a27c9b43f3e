//! `usher invoke`: one invocation on the embedded backends.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use usher_backend_embedded::Embedded;
use usher_capabilities::{Recorder, TableBackend};
use usher_engine::{LocalInvoker, Runtime};

use crate::store_cmds::{tool_engine, Paths};

pub async fn run(
    paths: &Paths,
    worker: &str,
    event: &Path,
    data: &Path,
    seed: Option<&Path>,
) -> Result<()> {
    let registry = Arc::new(paths.registry()?);
    let spec = registry.worker(worker)?.clone();
    let text = std::fs::read_to_string(event)
        .with_context(|| format!("reading the event {}", event.display()))?;
    let value: Value = serde_json::from_str(&text)
        .with_context(|| format!("the event {} is not valid JSON", event.display()))?;
    let input =
        usher_trigger_lambda::events::read_event(&spec.trigger, value).with_context(|| {
            format!(
                "the event {} does not fit {worker} ({})",
                event.display(),
                spec.trigger.world().world_name()
            )
        })?;

    let embedded = Embedded::open(data, &registry.resources)
        .with_context(|| format!("opening the embedded backends in {}", data.display()))?;
    if let Some(seed) = seed {
        seed_tables(&embedded, seed).await?;
    }
    let services = crate::services::http_services(&registry)?;
    let invoker = Arc::new(LocalInvoker::new());
    let backends = embedded.backends(services, Arc::new(usher_codec::HostCodec), invoker.clone());
    // Start the worker and the workers it may invoke.
    let mut only = vec![worker.to_string()];
    only.extend(spec.grants.workers.iter().cloned());
    let store = Arc::new(paths.store()?);
    let recorder = Arc::new(Recorder::new());
    let runtime = Runtime::start(
        tool_engine()?,
        registry,
        store,
        &paths.env,
        Arc::new(backends),
        Some(&only),
    )?
    .with_recorder(recorder.clone());
    let runtime = Arc::new(runtime);
    invoker.bind(&runtime);

    let invocation = match runtime.invoke(worker, &input, None).await {
        Ok(inv) => inv,
        Err(e) => bail!("{worker}: {e}"),
    };
    let effects: Vec<Value> = recorder
        .calls()
        .into_iter()
        .map(|c| {
            json!({
                "call": format!("{}.{}", c.capability, c.function),
                "resource": c.resource,
                "request": c.request,
                "outcome": match c.outcome { Ok(v) => json!({"ok": v}), Err(e) => json!({"error": e}) },
            })
        })
        .collect();
    let report = json!({
        "worker": worker,
        "version": invocation.version.to_string(),
        "correlationId": invocation.correlation_id,
        "elapsedMs": invocation.elapsed.as_secs_f64() * 1e3,
        "result": invocation.output,
        "calls": effects,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn seed_tables(embedded: &Embedded, seed: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(seed).with_context(|| format!("reading {}", seed.display()))?;
    let doc: serde_json::Map<String, Value> = serde_json::from_str(&text)
        .with_context(|| format!("{} must be a JSON object of table → items", seed.display()))?;
    let tables = embedded.tables();
    for (table, items) in doc {
        let items = items
            .as_array()
            .with_context(|| format!("seed: `{table}` must be a list of items"))?;
        for (i, item) in items.iter().enumerate() {
            tables
                .put(&table, item.clone(), None)
                .await
                .with_context(|| format!("seed: item {i} of `{table}`"))?;
        }
    }
    Ok(())
}
