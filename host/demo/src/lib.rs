//! `usher-demo`: the demonstrations of `usher demo <name>`, kept apart from
//! the generic host. A demo drives a [`Platform`] — what `usher up` starts,
//! in-process — that the caller starts for it on a data folder and a
//! listener address, writes its data, checks the outcome and prints a
//! summary.
//!
//! * `usher demo presale` ([`presale`]): a whole presale through the
//!   services, the resolvers and the draw; verified end to end.
//! * `usher demo p8` ([`p8`]): benchmark P8 end to end (a market of
//!   1,000,000 entries drawn, saved and reported), verified.
//! * `usher demo replication` ([`replication`]): fan entries written into
//!   `demand-table` replicate to the Entry Service; verified entry by entry.
//!
//! A new demo is a module with its clap arguments and a variant of [`Demo`].

#![deny(missing_docs)]

pub mod p8;
pub mod presale;
pub mod replication;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use usher_backend_embedded::{EmbeddedError, EmbeddedEvents, EmbeddedTables};
use usher_capabilities::CapError;
use usher_registry::Resources;
use usher_trigger_local::CounterSnapshot;

/// An error of the platform a demo runs on (starting or stopping it).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a demo runs against: every worker of the registry on the embedded
/// backends of one data folder, with the HTTP listener (`usher up`'s host).
pub trait Platform {
    /// The HTTP listener's base URL (`http://ADDR`).
    fn base_url(&self) -> String;
    /// How many workers run.
    fn worker_count(&self) -> usize;
    /// The tables of the data folder.
    fn tables(&self) -> Arc<EmbeddedTables>;
    /// Rows written to the data folder's SQLite databases so far.
    fn row_writes(&self) -> u64;
    /// Every triggered worker's counters now.
    fn counters(&self) -> BTreeMap<String, CounterSnapshot>;
    /// The embedded event log the `events` capability writes (the data
    /// pipeline's Kafka stand-in); `None` when events go elsewhere (Kafka).
    fn events(&self) -> Option<Arc<EmbeddedEvents>> {
        None
    }
    /// Stops the platform, finishing the batches in flight.
    fn shutdown(self) -> impl Future<Output = Result<(), BoxError>>;
}

/// A failed demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The arguments do not make a demo.
    #[error("{0}")]
    Usage(String),
    /// The data folder's backends could not be opened.
    #[error("opening the embedded backends in {}: {source}", path.display())]
    Open {
        /// The data folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: EmbeddedError,
    },
    /// A table write or read of the demo failed.
    #[error("{what}: {source}")]
    Table {
        /// What was being done.
        what: String,
        /// The backend's error.
        #[source]
        source: CapError,
    },
    /// Starting the platform failed.
    #[error(transparent)]
    Start(BoxError),
    /// Stopping the platform failed.
    #[error("stopping: {0}")]
    Stop(#[source] BoxError),
    /// The outcome is not what the demo expects.
    #[error("{0}")]
    NotConverged(String),
}

/// `usher demo <name>`.
#[derive(Debug, clap::Subcommand)]
pub enum Demo {
    /// Starts what `usher up` starts, writes fan entries into demand-table
    /// (inserts, ~20% modifications, ~10% removals) and verifies that the
    /// Entry Service ends up holding exactly the table's entries.
    Replication(replication::Args),
    /// Starts what `usher up` starts and runs a presale: a campaign with
    /// markets and code pools, fans checking eligibility and registering,
    /// replication, the draw per market, codes assigned and marked; then
    /// verifies winners, codes, verdicts and every draw.
    Presale(presale::Args),
    /// Benchmark P8 end to end: preloads one market of `--entries` entries
    /// (default 1,000,000) and its code pool, starts what `usher up` starts,
    /// times the draw, save-selections and report-verdicts until every
    /// verdict is reported, and verifies the winners and their codes.
    P8(p8::Args),
}

/// A demo step that did not come out as it must (the demos' one error for
/// "not converged", "refused", "answered wrong").
pub(crate) fn failed(what: impl Into<String>) -> DemoError {
    DemoError::NotConverged(what.into())
}

/// One request to the listener at `base` (a JSON body if any): its status
/// and its answer (JSON, or the text as a string).
pub(crate) async fn send(
    http: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<(u16, serde_json::Value), DemoError> {
    let url = format!("{base}{path}");
    let mut req = http.request(method.clone(), &url);
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| failed(format!("{method} {path}: {e}")))?;
    let status = resp.status().as_u16();
    let text = resp
        .text()
        .await
        .map_err(|e| failed(format!("{method} {path}: reading the answer: {e}")))?;
    let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    Ok((status, value))
}

/// [`send`] that must succeed (2xx): the answer, or an error naming the
/// request, the status and the answer.
pub(crate) async fn send_ok(
    http: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<serde_json::Value, DemoError> {
    let (status, value) = send(http, base, method.clone(), path, body).await?;
    if (200..300).contains(&status) {
        Ok(value)
    } else {
        Err(failed(format!("{method} {path}: {status} {value}")))
    }
}

/// Runs `demo` on the platform `start` starts (given the data folder and
/// the listener address to use); `resources` are the registry's, for the
/// writes a demo makes before the platform starts.
pub async fn run<P, S, F>(demo: Demo, resources: &Resources, start: S) -> Result<(), DemoError>
where
    P: Platform,
    S: FnOnce(PathBuf, SocketAddr) -> F,
    F: Future<Output = Result<P, BoxError>>,
{
    match demo {
        Demo::Replication(args) => replication::run(args, resources, start).await,
        Demo::Presale(args) => presale::run(args, resources, start).await,
        Demo::P8(args) => p8::run(args, resources, start).await,
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// The data folder of a demo: the one given, or a fresh temporary one that
/// [`DataDir::finish`] removes.
pub(crate) struct DataDir {
    path: PathBuf,
    temporary: bool,
}

impl DataDir {
    pub(crate) fn new(given: Option<&Path>) -> DataDir {
        match given {
            Some(d) => DataDir {
                path: d.to_path_buf(),
                temporary: false,
            },
            None => DataDir {
                path: std::env::temp_dir().join(format!(
                    "usher-demo-{}-{}",
                    std::process::id(),
                    now_ms()
                )),
                temporary: true,
            },
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Removes a temporary folder.
    pub(crate) fn finish(self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
