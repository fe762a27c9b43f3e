//! The end-to-end harness: a copy of the repository's registry (optionally
//! edited), a component store pinned from `build/components`, and the real
//! `usher up` binary as a child process on a data folder and a free port.
//! The test process opens the same SQLite data folder to write demand-table
//! and to check the outcome, and talks to the Entry Service over HTTP.

#![allow(dead_code)]

pub mod proxy;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use usher_backend_embedded::Embedded;
use usher_capabilities::{CapError, Condition, TableBackend};
use usher_registry::Registry;

pub const TABLE: &str = "demand-table";

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Copies the repository's `workers/*.yaml` into `dir`, applying
/// `edit(file name, text)` to each.
pub fn copy_registry(dir: &Path, edit: impl Fn(&str, String) -> String) {
    std::fs::create_dir_all(dir).expect("mkdir");
    for entry in std::fs::read_dir(root().join("workers")).expect("workers/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .to_string();
            let text = std::fs::read_to_string(&path).expect("read");
            std::fs::write(dir.join(&name), edit(&name, text)).expect("write");
        }
    }
}

/// An `usher` command on a registry folder and a component store (a folder
/// or `s3://…`).
pub fn usher_at(registry: &Path, store: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_usher"));
    c.arg("--registry")
        .arg(registry)
        .arg("--store")
        .arg(store)
        .env("RUST_BACKTRACE", "0");
    c
}

/// Copies into `store` the precompiled artifacts `just pin` left in the
/// repository's store (`.usher/store/precompiled`), so `usher pin` does not
/// compile every component again for each test (about 45 CPU-seconds each
/// time). An artifact is named by its component's digest and the engine's
/// compatibility key, so only one of the same bytes and the same engine is
/// ever used, and the engine re-hashes the component on every load. Copied,
/// not linked: a test may alter its store's files.
fn seed_precompiled(store: &Path) {
    let Ok(entries) = std::fs::read_dir(root().join(".usher/store/precompiled")) else {
        return;
    };
    let to = store.join("precompiled");
    if std::fs::create_dir_all(&to).is_err() {
        return;
    }
    for e in entries.flatten() {
        let _ = std::fs::copy(e.path(), to.join(e.file_name()));
    }
}

/// `usher pin` of the built components (`build/components`) into `store`,
/// pinning the registry to them; panics with its stderr when it fails.
pub fn pin_built(registry: &Path, store: &Path) {
    seed_precompiled(store);
    let pinned = usher_at(registry, store)
        .arg("pin")
        .arg("--from")
        .arg(root().join("build/components"))
        .arg("--sources")
        .arg(root().join("components"))
        .output()
        .expect("usher pin");
    assert!(
        pinned.status.success(),
        "usher pin: {}",
        String::from_utf8_lossy(&pinned.stderr)
    );
}

/// A child `usher up` and its log file, killed if the test ends (or fails)
/// before stopping it.
pub struct Up {
    pub child: Child,
    pub log: PathBuf,
}

impl Up {
    /// Everything it wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A registry copy, a store and a data folder, and `usher up` when started.
pub struct Platform {
    pub tmp: tempfile::TempDir,
    pub registry_dir: PathBuf,
    pub store: PathBuf,
    pub data: PathBuf,
    pub port: u16,
    /// Where `usher up` listens.
    pub base: String,
    /// Where the `entries` service URL points (the listener, or a proxy).
    pub entries_url: String,
    /// More environment for `usher up` (other `USHER_SERVICE_<NAME>_URL`s).
    pub env: Vec<(String, String)>,
    /// More arguments for `usher up` (e.g. `--dev-tokens`).
    pub up_args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
    starts: usize,
}

impl Platform {
    /// Copies `workers/*.yaml`, applying `edit(file name, text)` to each,
    /// and pins the built components into a fresh store.
    pub fn new(edit: impl Fn(&str, String) -> String) -> Platform {
        let tmp = tempfile::tempdir().expect("tmp");
        let registry_dir = tmp.path().join("workers");
        copy_registry(&registry_dir, edit);
        // The selection workflow (the presale demo's draw), beside the
        // registry where `usher up` looks for workflows.
        let workflows = tmp.path().join("workflows");
        std::fs::create_dir_all(&workflows).expect("mkdir workflows");
        std::fs::copy(
            root().join("workflows/selection.asl.json"),
            workflows.join("selection.asl.json"),
        )
        .expect("copy workflows/selection.asl.json");
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let platform = Platform {
            store: tmp.path().join("store"),
            data: tmp.path().join("data"),
            log: tmp.path().join("up.log"),
            registry_dir,
            entries_url: format!("{base}/services/entries"),
            env: Vec::new(),
            up_args: Vec::new(),
            base,
            port,
            tmp,
            child: None,
            starts: 0,
        };
        pin_built(&platform.registry_dir, &platform.store);
        platform
    }

    /// An `usher` command on this registry and store.
    pub fn usher(&self, args: &[&str]) -> Command {
        let mut c = usher_at(&self.registry_dir, &self.store);
        c.args(args);
        c
    }

    /// Runs an `usher` command to completion; panics with its output when it fails.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.usher(args).output().expect("usher runs");
        assert!(
            out.status.success(),
            "usher {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Everything `usher up` wrote to stderr so far (every start).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Starts `usher up` and waits until the Entry Service answers through
    /// its listener.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "usher up is already running");
        self.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let child = self
            .usher(&["up"])
            .arg("--data")
            .arg(&self.data)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(&self.up_args)
            .env("USHER_SERVICE_ENTRIES_URL", &self.entries_url)
            .env("USHER_LOG", "warn")
            // After the defaults, so a test can override them (USHER_LOG).
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("usher up starts");
        self.child = Some(child);
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let probe = client
                .get(format!(
                    "{}/services/entries/campaigns/probe/entries",
                    self.base
                ))
                .send()
                .await;
            if probe.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("usher up exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "usher up did not answer in 30 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGINT, and the exit status once it stopped (at most 30 s).
    pub async fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("usher up is running");
        let pid = i32::try_from(child.id()).expect("pid");
        // SAFETY: kill(2) on the pid of our own child process.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "usher up did not stop on SIGINT in 30 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9`: no chance to finish anything.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("usher up is running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }

    /// The registry as the child loads it.
    pub fn registry(&self) -> Registry {
        Registry::load(&self.registry_dir).expect("registry")
    }

    /// The data folder's embedded backends, opened from this process.
    pub fn embedded(&self) -> Embedded {
        Embedded::open(&self.data, &self.registry().resources).expect("open the data folder")
    }

    /// `<data>/status.json`, written by `usher up` every 2 s and at stop.
    pub fn status(&self) -> Value {
        std::fs::read(self.data.join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }

    /// Waits until the status file shows a version of `worker`.
    pub async fn wait_for_version(&self, worker: &str, version: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while self.status()["workers"][worker]["version"] != json!(version) {
            assert!(
                Instant::now() < deadline,
                "{worker} is not at {version}: {}\n{}",
                self.status(),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The demand-table key of a fan's entry.
pub fn key(campaign: &str, user: &str) -> Value {
    json!({"PK": format!("ENTRY#{campaign}#{user}"), "SK": "ENTRY"})
}

/// A flagged fan entry at `version`.
pub fn entry(campaign: &str, user: &str, version: u64) -> Value {
    json!({
        "PK": format!("ENTRY#{campaign}#{user}"),
        "SK": "ENTRY",
        "campaignId": campaign,
        "globalUserId": user,
        "marketId": "m1",
        "entry": {"firstName": "Ada", "zip": "10001", "answers": {"q1": version}},
        "needsReplication": true,
        "version": version,
    })
}

/// Versions come from one counter, so that an entry's versions only grow,
/// also across a removal and a re-insert (the Entry Service ignores an
/// older version, as the registration system's versions never go back).
static NEXT_VERSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Writes the entry at a new, higher version (read, then a write conditional
/// on the version read, retried when another writer got in between): how the
/// registration workers write. Returns the version written.
pub async fn bump(tables: &dyn TableBackend, campaign: &str, user: &str) -> u64 {
    for _ in 0..100 {
        let current = tables.get(TABLE, &key(campaign, user)).await.expect("get");
        let version = NEXT_VERSION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let condition = match &current {
            Some(item) => Condition::AttributeEquals("version".into(), item["version"].clone()),
            None => Condition::NotExists,
        };
        match tables
            .put(TABLE, entry(campaign, user, version), Some(condition))
            .await
        {
            Ok(()) => return version,
            Err(CapError::ConditionFailed(_)) => tokio::task::yield_now().await,
            Err(e) => panic!("writing {user}: {e}"),
        }
    }
    panic!("could not write {user} in 100 attempts");
}

/// Deletes the entry; the next [`bump`] re-creates it.
pub async fn remove(tables: &dyn TableBackend, campaign: &str, user: &str) {
    tables
        .delete(TABLE, &key(campaign, user), None)
        .await
        .expect("delete");
}

/// The Entry Service's entries of a campaign (globalUserId → version), every page.
pub async fn service_entries(
    client: &reqwest::Client,
    base: &str,
    campaign: &str,
) -> Option<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let mut req = client
            .get(format!(
                "{base}/services/entries/campaigns/{campaign}/entries"
            ))
            .query(&[("limit", "1000")]);
        if let Some(a) = &after {
            req = req.query(&[("after", a.as_str())]);
        }
        let r = req.send().await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        let body: Value = r.json().await.ok()?;
        for e in body["entries"].as_array()? {
            let user = e["globalUserId"].as_str()?.to_string();
            let version = e["version"].as_u64()?;
            // A fan listed twice would be a duplicate.
            assert!(
                out.insert(user.clone(), version).is_none(),
                "{user} is listed twice"
            );
        }
        match body["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    Some(out)
}

/// What the table holds for these users: (globalUserId → version of the
/// entries present, how many are still flagged).
pub async fn table_state(
    tables: &dyn TableBackend,
    campaign: &str,
    users: &[String],
) -> (BTreeMap<String, u64>, usize) {
    let mut present = BTreeMap::new();
    let mut flagged = 0;
    for chunk in users.chunks(100) {
        let keys: Vec<Value> = chunk.iter().map(|u| key(campaign, u)).collect();
        let items = tables.batch_get(TABLE, &keys).await.expect("batch_get");
        for (user, item) in chunk.iter().zip(items) {
            if let Some(item) = item {
                if item["needsReplication"] != json!(false) {
                    flagged += 1;
                }
                present.insert(user.clone(), item["version"].as_u64().expect("version"));
            }
        }
    }
    (present, flagged)
}

/// Waits until the Entry Service holds exactly the table's entries of these
/// users at the table's versions and no entry is flagged; panics with the
/// differences after `within`.
pub async fn converge(
    platform: &Platform,
    tables: &dyn TableBackend,
    campaign: &str,
    users: &[String],
    within: Duration,
) -> BTreeMap<String, u64> {
    converge_with(&platform.base, tables, campaign, users, within, || {
        format!(
            "status {}\n{}",
            platform.status(),
            tail(&platform.log(), 60)
        )
    })
    .await
}

/// [`converge`] against the Entry Service at `base`; `context()` is added
/// to the panic message.
pub async fn converge_with(
    base: &str,
    tables: &dyn TableBackend,
    campaign: &str,
    users: &[String],
    within: Duration,
    context: impl Fn() -> String,
) -> BTreeMap<String, u64> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + within;
    loop {
        let (table, flagged) = table_state(tables, campaign, users).await;
        let service = service_entries(&client, base, campaign).await;
        if flagged == 0 && service.as_ref() == Some(&table) {
            return table;
        }
        if Instant::now() >= deadline {
            let service = service.unwrap_or_default();
            let missing = table.keys().filter(|u| !service.contains_key(*u)).count();
            let stale = table
                .iter()
                .filter(|(u, v)| service.get(*u).is_some_and(|s| s != *v))
                .count();
            let extra = service.keys().filter(|u| !table.contains_key(*u)).count();
            panic!(
                "not converged in {within:?}: table {} entries ({flagged} flagged); the Entry Service {} ({missing} missing, {stale} at another version, {extra} extra)\n{}",
                table.len(),
                service.len(),
                context()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `bytes` with a custom section `name` appended (valid for a component as
/// for a module: section id 0, size, name, payload).
pub fn with_custom_section(mut bytes: Vec<u8>, name: &str, payload: &[u8]) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut content = Vec::new();
    leb(name.len(), &mut content);
    content.extend_from_slice(name.as_bytes());
    content.extend_from_slice(payload);
    bytes.push(0);
    leb(content.len(), &mut bytes);
    bytes.extend(content);
    bytes
}

/// The last `n` lines of a text.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Every worker's failed and given-up counts from the status file.
pub fn failures(status: &Value) -> BTreeMap<String, (u64, u64)> {
    status["workers"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, w)| w.get("failed").is_some())
        .map(|(name, w)| {
            (
                name.clone(),
                (
                    w["failed"].as_u64().unwrap_or(0),
                    w["given_up"].as_u64().unwrap_or(0),
                ),
            )
        })
        .collect()
}
