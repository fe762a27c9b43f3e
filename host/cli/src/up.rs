//! `usher up`: every worker of the registry on the embedded backends — queue
//! pollers, stream followers, schedules, the change-log trimmer, the HTTP
//! listener (http-workers, `POST /invoke/{domain}/{worker}`, `POST
//! /resolvers/{typeName}/{fieldName}`, the workflows at `/workflows` and the
//! Prometheus metrics at `GET /metrics`), hot swap of promoted releases — with
//! a live summary on stderr every 2 s (and a last one after stopping) until
//! Ctrl-C.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use usher_backend_embedded::{Embedded, EmbeddedQueues};
use usher_engine::{EngineOptions, LocalInvoker, Runtime, UsherEngine};
use usher_registry::Trigger;
use usher_trigger_local::{
    CounterSnapshot, HttpListener, TriggerOptions, Triggers, WorkerCounters,
};
use usher_workflows::{RuntimeInvoker, Workflows};

use crate::store_cmds::Paths;

/// How often the summary is printed.
const SUMMARY_EVERY: Duration = Duration::from_secs(2);
/// How often the release file is checked for promotions and rollbacks.
const WATCH_EVERY: Duration = Duration::from_millis(500);

/// Everything `usher up` starts: the runtime, the release watcher, the HTTP
/// listener and the triggers, over the embedded backends of one data folder.
pub struct Host {
    /// The runtime.
    pub runtime: Arc<Runtime>,
    /// The embedded backends.
    pub embedded: Embedded,
    listener: HttpListener,
    triggers: Triggers,
    watcher: tokio::task::JoinHandle<()>,
    /// Service → the http-worker serving it at this listener.
    served: BTreeMap<String, String>,
    /// Whether the `events` capability goes to Kafka (USHER_KAFKA_BROKERS)
    /// rather than the embedded event log.
    pub events_on_kafka: bool,
    /// The workflows (`workflows/*.asl.json`) and their executions.
    pub workflows: Arc<Workflows>,
}

impl Host {
    /// The listener's address (the bound one when `--listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// The triggers' counters now.
    pub fn snapshot(&self) -> BTreeMap<String, CounterSnapshot> {
        self.triggers.snapshot()
    }

    /// The triggers' live counters (still readable after [`Host::shutdown`]).
    pub fn counters(&self) -> BTreeMap<String, Arc<WorkerCounters>> {
        self.triggers.counters().clone()
    }

    /// Stops the triggers (finishing the batches in flight), then the
    /// listener and the watcher.
    pub async fn shutdown(self) -> Result<()> {
        // Triggers first: a batch in flight may still call a service served by
        // the listener (save-entries → the Entry Service).
        self.workflows.shutdown();
        let stopped = self.triggers.shutdown().await;
        let listener = self.listener.shutdown().await;
        self.watcher.abort();
        listener.context("stopping the HTTP listener")?;
        stopped?;
        Ok(())
    }
}

/// Starts every worker of the registry on the embedded backends in `data`
/// with the HTTP listener on `listen` (port 0: any free port). Every
/// service an http-worker of the registry serves points at this listener
/// (see [`crate::services::point_at_listener`]; a `USHER_SERVICE_<NAME>_URL`
/// still wins).
pub async fn start(paths: &Paths, data: &Path, listen: SocketAddr) -> Result<Host> {
    start_with(paths, data, listen, false).await
}

/// [`start`], serving `POST /dev/token` when `dev_tokens` (`usher up
/// --dev-tokens`: development tokens for the routes that declare JWT auth).
pub async fn start_with(
    paths: &Paths,
    data: &Path,
    listen: SocketAddr,
    dev_tokens: bool,
) -> Result<Host> {
    // Before the runtime starts, so its first gauges are recorded.
    usher_telemetry::metric::install()?;
    let mut registry = paths.registry()?;
    let workflows_dir = paths.workflows_dir();
    let loaded = usher_workflows::load_dir(&workflows_dir, &registry)
        .with_context(|| format!("loading the workflows in {}", workflows_dir.display()))?;
    // Bound before the services are configured, so they get its address
    // (the bound port when `listen` has port 0).
    let socket = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = socket.local_addr()?;
    let served = crate::services::point_at_listener(&mut registry, addr);
    let registry = Arc::new(registry);
    let embedded = Embedded::open(data, &registry.resources)
        .with_context(|| format!("opening the embedded backends in {}", data.display()))?;
    // Only the tables some stream-worker follows keep a change log, as only
    // they have a stream in AWS (terraform's `stream_enabled`).
    embedded
        .tables()
        .log_changes_only_of(registry.workers.values().filter_map(|w| match &w.trigger {
            Trigger::Stream { table, .. } => Some(table.clone()),
            _ => None,
        }));
    let services = crate::services::http_services(&registry)?;
    let invoker = Arc::new(LocalInvoker::new());
    let mut backends =
        embedded.backends(services, Arc::new(usher_codec::HostCodec), invoker.clone());
    let events_on_kafka = match kafka_events_from_env()? {
        Some(events) => {
            backends.events = events;
            true
        }
        None => false,
    };
    let store = Arc::new(paths.store()?);
    let ops_store: Arc<dyn usher_store::ComponentStore> = store.clone();
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
    let store = usher_workflows::Store::open(data)
        .with_context(|| format!("opening the workflow executions in {}", data.display()))?;
    let workflows = Workflows::new(loaded, store, Arc::new(RuntimeInvoker(runtime.clone())));
    let ops = Arc::new(crate::ops::Ops {
        runtime: runtime.clone(),
        queues: embedded.queues(),
        store: ops_store,
        env: paths.env.clone(),
        counters: std::sync::OnceLock::new(),
    });
    let options = usher_trigger_local::ListenerOptions {
        dev_tokens,
        ..Default::default()
    };
    let listener = HttpListener::serve_with_options(
        runtime.clone(),
        socket,
        vec![
            (
                "/workflows".to_string(),
                usher_workflows::http::router(workflows.clone()),
            ),
            ("/ops".to_string(), crate::ops::router(ops.clone())),
            (
                "/metrics".to_string(),
                crate::metrics::router(
                    runtime.clone(),
                    embedded.queues(),
                    embedded.change_log(),
                    workflows.clone(),
                )?,
            ),
        ],
        &options,
    )
    .with_context(|| format!("listening on {addr}"))?;
    let triggers = Triggers::start(runtime.clone(), &embedded, TriggerOptions::default())?;
    let _ = ops.counters.set(triggers.counters().clone());
    // Executions left running by the last stop (or a kill) go on.
    let resumed = workflows.resume().await?;
    if resumed > 0 {
        tracing::info!(resumed, "workflow executions resumed");
    }
    workflows.start_schedules();
    Ok(Host {
        runtime,
        embedded,
        listener,
        triggers,
        watcher,
        served,
        events_on_kafka,
        workflows,
    })
}

/// The events capability on Kafka instead of the embedded event log, when
/// `USHER_KAFKA_BROKERS` is set (`host:port[,…]`): with the TLS client
/// certificate of the JSON file `USHER_KAFKA_CERT_FILE` when set (the
/// Secrets Manager secret's format: `{"cert_pem","key_pem","ca_pem"?}`),
/// checked at start-up (an expired certificate stops `usher up`, one within
/// `USHER_KAFKA_CERT_WARN_DAYS` (default 30) days of expiry logs a warning).
fn kafka_events_from_env() -> Result<Option<Arc<dyn usher_capabilities::EventBackend>>> {
    let brokers = match std::env::var("USHER_KAFKA_BROKERS") {
        Ok(b) if !b.trim().is_empty() => b,
        _ => return Ok(None),
    };
    let mut config = usher_backend_kafka::KafkaConfig::new(brokers.trim());
    if let Ok(file) = std::env::var("USHER_KAFKA_CERT_FILE") {
        if !file.is_empty() {
            let json = std::fs::read_to_string(&file)
                .with_context(|| format!("reading the Kafka client certificate {file}"))?;
            config.client_certificate = Some(
                usher_backend_kafka::ClientCertificate::from_secret_json(&json)
                    .with_context(|| format!("the Kafka client certificate {file}"))?,
            );
        }
    }
    if let Ok(days) = std::env::var("USHER_KAFKA_CERT_WARN_DAYS") {
        config.expiry_warning_days = days.parse().with_context(|| {
            format!("USHER_KAFKA_CERT_WARN_DAYS `{days}` is not a number of days")
        })?;
    }
    let events = usher_backend_kafka::KafkaEvents::connect(&config)
        .with_context(|| format!("connecting the Kafka producer to {brokers}"))?;
    match events.certificate_status() {
        Some(status) if status.warning => {
            eprintln!("usher up: events on Kafka at {brokers}; WARNING: {status}: renew it before it expires")
        }
        Some(status) => eprintln!("usher up: events on Kafka at {brokers} (TLS; {status})"),
        None => eprintln!("usher up: events on Kafka at {brokers} (plaintext)"),
    }
    Ok(Some(Arc::new(events)))
}

pub async fn run(paths: &Paths, data: &Path, listen: SocketAddr, dev_tokens: bool) -> Result<()> {
    // The signal handlers first, so that a Ctrl-C from the moment the
    // workers start is a clean stop, never the default (killed) action.
    let stop = stop_signal();
    let host = start_with(paths, data, listen, dev_tokens).await?;
    if dev_tokens {
        eprintln!("usher up: --dev-tokens: POST /dev/token signs tokens for the protected routes (development only)");
    }
    let runtime = host.runtime.clone();
    eprintln!(
        "usher up: {} worker(s), data {}, listening on http://{} (Ctrl-C stops)",
        runtime.workers().len(),
        data.display(),
        host.local_addr()
    );
    eprintln!("  operator page: http://{}/ops/", host.local_addr());
    for (route, worker) in host.listener.routes().list() {
        eprintln!("  http {route} -> {worker}");
    }
    for (type_name, field_name, worker) in host.listener.resolvers().list() {
        eprintln!("  POST /resolvers/{type_name}/{field_name} -> {worker}");
    }
    for line in crate::services::describe(runtime.registry(), &host.served) {
        eprintln!("  {line}");
    }
    for name in host.workflows.names() {
        match host.workflows.schedules().get(&name) {
            Some(s) => eprintln!(
                "  workflow {name}: POST /workflows/{name}/executions, schedule {}",
                s.cron
            ),
            None => eprintln!("  workflow {name}: POST /workflows/{name}/executions"),
        }
    }

    // The archive's compaction, a host task: the closed days of each
    // archive (archive/archive-changes' settings) every
    // USHER_ARCHIVE_COMPACT_SECS (default 3600) and at start-up.
    let every = std::env::var("USHER_ARCHIVE_COMPACT_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(3600);
    let compaction = crate::archive::spawn_compaction(
        host.embedded.objects(),
        runtime.registry().archive_sites(),
        Duration::from_secs(every),
    );

    let queues = host.embedded.queues();
    let mut ticker = tokio::time::interval(SUMMARY_EVERY);
    ticker.tick().await;
    // One signal future for the whole loop: a new one per iteration would
    // miss a SIGINT that arrives while the summary is being written (a
    // signal only wakes the listeners that exist when it arrives).
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticker.tick() => {
                let counters = host.snapshot();
                eprint!("{}", summary(&runtime, &counters, &queues).await);
                if let Err(e) = crate::status::write(data, &runtime, &counters, &queues).await {
                    tracing::warn!(error = %e, "could not write the status file");
                }
            }
        }
    }

    eprintln!("usher up: stopping (finishing the batches in flight)");
    if let Some(task) = compaction {
        task.abort();
    }
    let last = host.counters();
    let stopped = host.shutdown().await;
    let counters = counters_now(&last);
    eprint!("{}", summary(&runtime, &counters, &queues).await);
    if let Err(e) = crate::status::write(data, &runtime, &counters, &queues).await {
        tracing::warn!(error = %e, "could not write the status file");
    }
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

/// Ctrl-C (SIGINT), or SIGTERM on Unix. The handlers are installed when
/// this is called (not when the future is first polled), so a signal that
/// arrives in between is not lost.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                (Ok(mut interrupt), Err(_)) => {
                    interrupt.recv().await;
                }
                (Err(_), _) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
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
            Trigger::Schedule { cron } => format!("schedule {cron}"),
            Trigger::Invoke => "invoke".to_string(),
            Trigger::Resolver {
                type_name,
                field_name,
            } => format!("resolver {type_name}.{field_name}"),
        };
        let _ = write!(out, "{name} {version}  {source}");
        match (counters.get(name), &spec.trigger) {
            (Some(c), Trigger::Schedule { .. }) => {
                let _ = write!(
                    out,
                    "  runs {} ok {} failed {} running {} skipped {} next {}",
                    c.received,
                    c.succeeded,
                    c.failed,
                    c.in_flight,
                    c.skipped,
                    c.next_due().unwrap_or_else(|| "-".to_string())
                );
            }
            (Some(c), _) => {
                let _ = write!(
                    out,
                    "  received {} ok {} failed {} in-flight {} given-up {}",
                    c.received, c.succeeded, c.failed, c.in_flight, c.given_up
                );
            }
            (None, _) => {}
        }
        out.push('\n');
    }
    out
}
