//! `usher up`: every worker of the registry on the embedded backends — queue
//! pollers, stream followers, the HTTP listener (http-workers and `POST
//! /invoke/{domain}/{worker}`), hot swap of promoted releases — with a live
//! summary on stderr every 2 s (and a last one after stopping) until Ctrl-C.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use usher_backend_embedded::{Embedded, EmbeddedQueues};
use usher_capabilities::NoCodec;
use usher_engine::{EngineOptions, LocalInvoker, Runtime, UsherEngine};
use usher_registry::Trigger;
use usher_trigger_local::{
    CounterSnapshot, HttpListener, TriggerOptions, Triggers, WorkerCounters,
};

use crate::store_cmds::Paths;

/// How often the summary is printed.
const SUMMARY_EVERY: Duration = Duration::from_secs(2);
/// How often the release file is checked for promotions and rollbacks.
const WATCH_EVERY: Duration = Duration::from_millis(500);

pub async fn run(paths: &Paths, data: &Path, listen: SocketAddr) -> Result<()> {
    let registry = Arc::new(paths.registry()?);
    let embedded = Embedded::open(data, &registry.resources)
        .with_context(|| format!("opening the embedded backends in {}", data.display()))?;
    let services = crate::services::http_services(&registry)?;
    let invoker = Arc::new(LocalInvoker::new());
    let backends = embedded.backends(services, Arc::new(NoCodec), invoker.clone());
    let store = Arc::new(paths.store()?);
    let engine = Arc::new(UsherEngine::new(EngineOptions::default())?);
    let runtime = Arc::new(Runtime::start(
        engine,
        registry,
        store,
        &paths.env,
        Arc::new(backends),
        None,
    )?);
    invoker.bind(&runtime);
    let watcher = runtime.watch(WATCH_EVERY);
    let listener = HttpListener::bind(runtime.clone(), listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let triggers = Triggers::start(runtime.clone(), &embedded, TriggerOptions::default())?;
    eprintln!(
        "usher up: {} worker(s), data {}, listening on http://{} (Ctrl-C stops)",
        runtime.workers().len(),
        data.display(),
        listener.local_addr()
    );
    for (route, worker) in listener.routes().list() {
        eprintln!("  http {route} -> {worker}");
    }

    let queues = embedded.queues();
    let mut ticker = tokio::time::interval(SUMMARY_EVERY);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = stop_signal() => break,
            _ = ticker.tick() => eprint!("{}", summary(&runtime, &triggers.snapshot(), &queues).await),
        }
    }

    eprintln!("usher up: stopping (finishing the batches in flight)");
    // Triggers first: a batch in flight may still call a service served by
    // the listener (save-entries → the Entry Service).
    let last = triggers.counters().clone();
    let stopped = triggers.shutdown().await;
    listener
        .shutdown()
        .await
        .context("stopping the HTTP listener")?;
    eprint!("{}", summary(&runtime, &counters_now(&last), &queues).await);
    watcher.abort();
    stopped?;
    eprintln!("usher up: stopped");
    Ok(())
}

fn counters_now(
    counters: &BTreeMap<String, Arc<WorkerCounters>>,
) -> BTreeMap<String, CounterSnapshot> {
    counters
        .iter()
        .map(|(name, c)| (name.clone(), c.snapshot()))
        .collect()
}

/// Ctrl-C (SIGINT), or SIGTERM on Unix.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// One summary: a line per worker with its live version, trigger, queue
/// depth and counters.
async fn summary(
    runtime: &Runtime,
    counters: &BTreeMap<String, CounterSnapshot>,
    queues: &EmbeddedQueues,
) -> String {
    let mut out = String::from("--\n");
    for (name, live) in runtime.workers() {
        let version = live.current().version.clone();
        let spec = live.spec();
        let source = match &spec.trigger {
            Trigger::Queue { queue } => match queues.depth(queue).await {
                Ok(d) => format!(
                    "queue {queue} (visible {}, in flight {}, delayed {})",
                    d.visible, d.in_flight, d.delayed
                ),
                Err(e) => format!("queue {queue} (depth unavailable: {e})"),
            },
            Trigger::Stream { table, .. } => format!("stream {table}"),
            Trigger::Http { route } => format!("http {route}"),
            Trigger::Schedule { cron } => format!("schedule {cron} (not run by usher up yet)"),
            Trigger::Invoke => "invoke".to_string(),
            Trigger::Resolver {
                type_name,
                field_name,
            } => format!("resolver {type_name}.{field_name}"),
        };
        let _ = write!(out, "{name} {version}  {source}");
        if let Some(c) = counters.get(name) {
            let _ = write!(
                out,
                "  received {} ok {} failed {} in-flight {} given-up {}",
                c.received, c.succeeded, c.failed, c.in_flight, c.given_up
            );
        }
        out.push('\n');
    }
    out
}
