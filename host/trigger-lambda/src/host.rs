//! The Lambda host: init, the handler, and the release check between
//! invocations.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::Instrument;
use usher_auth::{MapSecrets, SecretSource, Verifier, Verifiers};
use usher_capabilities::Backends;
use usher_engine::{BatchMessage, EngineOptions, InvokeError, Runtime, Swap, UsherEngine};
use usher_registry::{Registry, WorkerSpec};
use usher_store::{
    ComponentStore, Digest, LocalStore, Release, S3Store, StoreError, StoreLocation,
};
use usher_telemetry::propagation;

use crate::{events, LambdaConfig, LambdaError};

/// Why the host could not start (or, for [`LambdaHost::check_release`], could
/// not check the release). Every variant names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A required environment variable is not set.
    #[error("{0} is not set: it names what the function serves")]
    MissingVar(&'static str),
    /// An environment variable has a value that cannot be used.
    #[error("{var}: {message}")]
    BadVar {
        /// The variable.
        var: &'static str,
        /// Why.
        message: String,
    },
    /// The registry could not be loaded.
    #[error("the registry at {}: {message}", dir.display())]
    Registry {
        /// The registry folder.
        dir: PathBuf,
        /// Why.
        message: String,
    },
    /// The worker is not in the registry.
    #[error("unknown worker `{worker}`: the registry has {}", known.join(", "))]
    UnknownWorker {
        /// The name asked for.
        worker: String,
        /// The registry's workers.
        known: Vec<String>,
    },
    /// The worker's trigger is not one Lambda serves (none today: kept for
    /// compatibility).
    #[error("worker {worker} has a {trigger} trigger, which `usher lambda` does not serve")]
    UnsupportedTrigger {
        /// The worker.
        worker: String,
        /// Its trigger kind.
        trigger: String,
    },
    /// The component store failed (unreachable, a missing component, a
    /// digest that does not match its release …).
    #[error("component store {location}: {source}")]
    Store {
        /// The store.
        location: String,
        /// What failed.
        #[source]
        source: StoreError,
    },
    /// The engine refused to start the worker.
    #[error("{0}")]
    Startup(String),
}

impl InitError {
    /// The `errorType` reported to Lambda's `/runtime/init/error`.
    pub fn error_type(&self) -> &'static str {
        match self {
            InitError::MissingVar(_) | InitError::BadVar { .. } => "InvalidConfiguration",
            InitError::Registry { .. } => "InvalidRegistry",
            InitError::UnknownWorker { .. } => "UnknownWorker",
            InitError::UnsupportedTrigger { .. } => "UnsupportedTrigger",
            InitError::Store { .. } => "ComponentStore",
            InitError::Startup(_) => "StartupFailed",
        }
    }
}

/// The engine `usher lambda` uses: a small pool (one function serves one
/// invocation at a time).
pub fn default_engine() -> Result<Arc<UsherEngine>, InitError> {
    UsherEngine::new(EngineOptions {
        max_instances: 16,
        ..EngineOptions::default()
    })
    .map(Arc::new)
    .map_err(|e| InitError::Startup(format!("the engine does not start: {e}")))
}

/// Where the runtime's components come from.
enum Source {
    /// A local folder: the runtime reads it directly.
    Local(Arc<LocalStore>),
    /// An S3 prefix, mirrored into a local folder the runtime reads.
    S3 {
        s3: S3Store,
        mirror: Arc<LocalStore>,
    },
}

/// What the last release check saw.
struct CheckState {
    checked_at: Instant,
    /// The release file's ETag (S3) or digest of its bytes (folder).
    seen: Option<String>,
}

/// One worker, served as a Lambda function.
pub struct LambdaHost {
    /// The JWT verifier of an http route that declares auth.
    auth: Option<Arc<Verifier>>,
    spec: WorkerSpec,
    env: String,
    runtime: Arc<Runtime>,
    source: Source,
    interval: Duration,
    state: tokio::sync::Mutex<CheckState>,
}

impl LambdaHost {
    /// Starts the host for `config.worker`: checks the worker and its
    /// trigger, fetches its live component (and the registry pin) from the
    /// store, verifying each sha256, and starts the runtime for that worker
    /// only, on `backends`.
    pub async fn init(
        config: &LambdaConfig,
        engine: Arc<UsherEngine>,
        registry: Arc<Registry>,
        backends: Arc<Backends>,
    ) -> Result<LambdaHost, InitError> {
        Self::init_with_secrets(config, engine, registry, backends, &MapSecrets::default()).await
    }

    /// [`LambdaHost::init`] for a worker whose http route may name Secrets
    /// Manager keys: `secrets` holds them (fetched by the caller); the
    /// route's JWT verifier is built here, the same as `usher up`'s.
    pub async fn init_with_secrets(
        config: &LambdaConfig,
        engine: Arc<UsherEngine>,
        registry: Arc<Registry>,
        backends: Arc<Backends>,
        secrets: &dyn SecretSource,
    ) -> Result<LambdaHost, InitError> {
        let spec = registry
            .workers
            .get(&config.worker)
            .cloned()
            .ok_or_else(|| InitError::UnknownWorker {
                worker: config.worker.clone(),
                known: registry.workers.keys().cloned().collect(),
            })?;
        let auth = Verifiers::for_workers([&spec], secrets)
            .map_err(|e| InitError::Startup(e.to_string()))?
            .get(&spec.name)
            .cloned();
        let store_error = |source: StoreError| InitError::Store {
            location: config.store.to_string(),
            source,
        };
        let (source, seen) = match &config.store {
            StoreLocation::Local(dir) => {
                let store = Arc::new(LocalStore::open(dir).map_err(store_error)?);
                let seen = local_marker(&store, &config.env);
                (Source::Local(store), seen)
            }
            StoreLocation::S3 { bucket, prefix } => {
                let s3 = S3Store::new(S3Store::client_from_env().await, bucket, prefix);
                s3.check_reachable().await.map_err(store_error)?;
                let mirror = Arc::new(LocalStore::open(&config.mirror).map_err(store_error)?);
                let seen = mirror_release(&s3, &mirror, &config.env, &spec, engine.engine_key())
                    .await
                    .map_err(store_error)?;
                (Source::S3 { s3, mirror }, seen)
            }
        };
        let store = match &source {
            Source::Local(store) => store.clone(),
            Source::S3 { mirror, .. } => mirror.clone(),
        };
        let only = [spec.name.clone()];
        let runtime = Runtime::start(engine, registry, store, &config.env, backends, Some(&only))
            .map_err(|e| InitError::Startup(e.to_string()))?;
        tracing::info!(worker = %spec.name, store = %config.store, env = %config.env, "usher lambda ready");
        Ok(LambdaHost {
            auth,
            spec,
            env: config.env.clone(),
            runtime: Arc::new(runtime),
            source,
            interval: config.release_check,
            state: tokio::sync::Mutex::new(CheckState {
                checked_at: Instant::now(),
                seen,
            }),
        })
    }

    /// The runtime (to bind a [`usher_engine::LocalInvoker`], or to look at
    /// the live version).
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The worker's registry entry.
    pub fn spec(&self) -> &WorkerSpec {
        &self.spec
    }

    /// The version new invocations take.
    pub fn live_version(&self) -> Option<semver::Version> {
        self.runtime
            .worker(&self.spec.name)
            .ok()
            .map(|w| w.current().version.clone())
    }

    /// Handles one event (see [`LambdaHost::handle_with`]).
    pub async fn handle(&self, event: Value) -> Result<Value, LambdaError> {
        self.handle_with(event, None).await
    }

    /// Handles one event with a correlation id: checks the release when the
    /// interval has passed, parses the event by the worker's trigger,
    /// invokes the worker and answers in AWS's shape. A record that cannot
    /// be read is logged and reported failed by its id; the others go to the
    /// worker (see [`events`]).
    pub async fn handle_with(
        &self,
        event: Value,
        correlation_id: Option<String>,
    ) -> Result<Value, LambdaError> {
        self.check_release_if_due().await;
        let worker = &self.spec.name;
        let mut parsed = events::parse_event(worker, &self.spec.trigger, event)?;
        if let usher_engine::Input::Http(request) = &mut parsed.input {
            // The claims header is the host's: never a client's, on any route.
            request
                .headers
                .retain(|(name, _)| !name.eq_ignore_ascii_case(usher_auth::CLAIMS_HEADER));
        }
        if let (Some(verifier), usher_engine::Input::Http(request)) =
            (&self.auth, &mut parsed.input)
        {
            if let Err(e) = verifier.authorize(&mut request.headers) {
                tracing::info!(worker = %worker, reason = %e, "request refused: 401");
                return Ok(events::http_reply(
                    401,
                    &[
                        ("content-type".to_string(), "application/json".to_string()),
                        ("www-authenticate".to_string(), "Bearer".to_string()),
                    ],
                    e.body().to_string().into_bytes(),
                ));
            }
        }
        for rejected in &parsed.rejected {
            tracing::warn!(worker = %worker, record = rejected.index, id = %rejected.id, reason = %rejected.reason, "a record cannot be read: it is reported failed, the others go to the worker");
        }
        // Nothing for the worker (every record unreadable, or filtered out
        // by the trigger's filter): the answer reports only the rejected.
        if parsed.input.is_empty() {
            return Ok(events::reply_rejected(&parsed));
        }
        // The event's span: it continues the sender's trace from the SQS
        // messages' `traceparent` attributes (one: its parent; several:
        // linked) or an http request's `traceparent` header, and the
        // messages' shared correlation id when the caller gave none.
        let span = tracing::info_span!(
            "lambda_event",
            worker = %worker,
            records = parsed.input.len(),
        );
        let correlation_id = match &parsed.input {
            usher_engine::Input::Batch(messages) => {
                propagation::continue_from(
                    &span,
                    messages
                        .iter()
                        .filter_map(|m| m.attribute(propagation::TRACEPARENT)),
                );
                correlation_id.or_else(|| {
                    BatchMessage::shared_attribute(messages, propagation::CORRELATION_ID)
                        .map(str::to_string)
                })
            }
            usher_engine::Input::Http(request) => {
                let header = |name: &str| {
                    request
                        .headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.as_str())
                };
                propagation::set_parent(
                    &span,
                    header(propagation::TRACEPARENT),
                    header(propagation::TRACESTATE),
                );
                correlation_id
            }
            _ => correlation_id,
        };
        match self
            .runtime
            .invoke(worker, &parsed.input, correlation_id)
            .instrument(span)
            .await
        {
            Ok(invocation) => events::reply(worker, &parsed, invocation.output),
            Err(e) => Err(invoke_error(worker, e)),
        }
    }

    async fn check_release_if_due(&self) {
        let mut state = self.state.lock().await;
        if state.checked_at.elapsed() < self.interval {
            return;
        }
        if let Err(e) = self.check(&mut state).await {
            tracing::error!(worker = %self.spec.name, error = %e, "release check failed; the live version keeps serving");
        }
    }

    /// Checks the release now (whatever the interval) and swaps the worker
    /// when it changed.
    pub async fn check_release(&self) -> Result<Vec<Swap>, InitError> {
        let mut state = self.state.lock().await;
        self.check(&mut state).await
    }

    async fn check(&self, state: &mut CheckState) -> Result<Vec<Swap>, InitError> {
        state.checked_at = Instant::now();
        let store_error =
            |location: String| move |source: StoreError| InitError::Store { location, source };
        let seen = match &self.source {
            Source::Local(store) => local_marker(store, &self.env),
            Source::S3 { s3, .. } => s3
                .release_etag(&self.env)
                .await
                .map_err(store_error(s3.location()))?,
        };
        if seen == state.seen {
            return Ok(Vec::new());
        }
        if let Source::S3 { s3, mirror } = &self.source {
            let key = self.runtime.engine().engine_key().to_string();
            mirror_release(s3, mirror, &self.env, &self.spec, &key)
                .await
                .map_err(store_error(s3.location()))?;
        }
        let swaps = self
            .runtime
            .refresh()
            .await
            .map_err(|e| InitError::Startup(e.to_string()))?;
        state.seen = seen;
        for swap in &swaps {
            tracing::info!(worker = %swap.worker, from = %swap.from, to = %swap.to, "new release swapped in");
        }
        Ok(swaps)
    }
}

fn invoke_error(worker: &str, e: InvokeError) -> LambdaError {
    let kind = match &e {
        InvokeError::Trap { .. } => "WorkerTrapped",
        InvokeError::Deadline { .. } => "WorkerTimeout",
        InvokeError::MemoryLimit { .. } => "WorkerMemoryLimit",
        InvokeError::WrongInput { .. } | InvokeError::UnknownWorker { .. } => "InternalError",
    };
    LambdaError::new(kind, format!("{worker}: {e}"))
}

/// The digest of a local release file's bytes (`None` when absent).
fn local_marker(store: &LocalStore, env: &str) -> Option<String> {
    std::fs::read(store.release_path(env))
        .ok()
        .map(|bytes| Digest::of(&bytes).hex())
}

/// Copies what the worker needs from S3 into the mirror: its live component
/// and the registry pin (each verified against its sha256), their
/// precompiled artifacts for this engine when S3 has them, and a release
/// file holding the worker's entry. Returns the ETag the release was read at.
async fn mirror_release(
    s3: &S3Store,
    mirror: &LocalStore,
    env: &str,
    spec: &WorkerSpec,
    engine_key: &str,
) -> Result<Option<String>, StoreError> {
    let (release, etag) = s3.release_with_etag(env).await?;
    let mut digests = vec![Digest::parse(&spec.component.sha256)?];
    let entry = release.entry(&spec.name).cloned();
    if let Some(entry) = &entry {
        digests.push(entry.digest);
    }
    for digest in digests {
        if mirror.read_component(&digest).is_err() {
            let bytes = s3.read_component(&digest).await?;
            mirror.put_component(&bytes)?;
        }
        if !mirror.has_precompiled(&digest, engine_key) {
            if let Some(artifact) = s3.read_precompiled(&digest, engine_key).await? {
                mirror.write_precompiled(&digest, engine_key, &artifact)?;
            }
        }
    }
    let mut mine = Release::default();
    if let Some(entry) = entry {
        mine.workers.insert(spec.name.clone(), entry);
    }
    mirror.replace_release(env, &mine)?;
    Ok(etag)
}
