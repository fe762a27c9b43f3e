//! `usher watch` against a real `usher up`: a copy of testing/echo in a
//! components workspace of its own (so the repository's sources are never
//! edited) is rebuilt when its source changes, pushed, promoted and hot
//! swapped into the running `usher up`, which then answers with the new
//! code; a change that does not compile shows cargo's error and the old
//! version keeps serving; `/metrics` counts the swaps.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common;

use common::{free_port, root, usher_at};
use serde_json::{json, Value};

/// A child process killed when the test ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let path = entry.path();
        if entry.file_name() == "target" {
            continue;
        }
        if path.is_dir() {
            copy_dir(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).expect("copy");
        }
    }
}

/// A components workspace holding only a copy of testing/echo, with the
/// repository's sdk, lock file and release profile.
fn components_copy(dir: &Path) -> PathBuf {
    let repo = root()
        .join("components")
        .canonicalize()
        .expect("components/");
    let ws = dir.join("components");
    copy_dir(&repo.join("testing/echo"), &ws.join("testing/echo"));
    let manifest = std::fs::read_to_string(repo.join("Cargo.toml")).expect("Cargo.toml");
    let version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = "))
        .expect("the workspace version")
        .trim_matches('"')
        .to_string();
    std::fs::write(
        ws.join("Cargo.toml"),
        format!(
            r#"[workspace]
resolver = "2"
members = ["testing/echo"]

[workspace.package]
version = "{version}"
edition = "2021"
license = "Apache-2.0"
rust-version = "1.95"
publish = false

[workspace.dependencies]
usher-sdk = {{ path = "{sdk}" }}
serde_json = "1"

[profile.release]
opt-level = "s"
lto = true
strip = true
panic = "abort"
codegen-units = 1
debug = false
"#,
            sdk = repo.join("sdk").display()
        ),
    )
    .expect("write Cargo.toml");
    std::fs::copy(repo.join("Cargo.lock"), ws.join("Cargo.lock")).expect("Cargo.lock");
    ws
}

/// A registry with testing/echo alone, pinned to the repository's build.
fn registry(dir: &Path, store: &Path) -> PathBuf {
    let workers = dir.join("workers");
    std::fs::create_dir_all(&workers).expect("mkdir");
    std::fs::write(workers.join("resources.yaml"), "").expect("resources.yaml");
    std::fs::write(
        workers.join("testing.yaml"),
        "domain: testing\nworkers:\n  echo:\n    component: { name: testing/echo, version: 0.0.0, sha256: \"0000000000000000000000000000000000000000000000000000000000000000\" }\n    trigger: { invoke: {} }\n",
    )
    .expect("testing.yaml");
    let pinned = usher_at(&workers, store)
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
    workers
}

async fn echo(client: &reqwest::Client, base: &str) -> Option<Value> {
    let r = client
        .post(format!("{base}/invoke/testing/echo"))
        .json(&json!({"a": 1}))
        .send()
        .await
        .ok()?;
    r.status().is_success().then_some(())?;
    r.json().await.ok()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits until `done` holds, at most `within`, polling every 200 ms.
async fn wait_until<F, Fut>(within: Duration, what: &str, logs: &[&Path], mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !done().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}:\n{}",
            logs.iter()
                .map(|l| format!("== {}\n{}", l.display(), read(l)))
                .collect::<String>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_rebuilds_pushes_and_swaps_and_a_broken_build_keeps_the_old_version() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = tmp.path().join("store");
    let workers = registry(tmp.path(), &store);
    let components = components_copy(tmp.path());
    let lib = components.join("testing/echo/src/lib.rs");
    let (up_log, watch_log) = (tmp.path().join("up.log"), tmp.path().join("watch.log"));
    let logs = [up_log.as_path(), watch_log.as_path()];

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _up = Killed(
        usher_at(&workers, &store)
            .arg("up")
            .arg("--data")
            .arg(tmp.path().join("data"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&up_log).expect("log"))
            .spawn()
            .expect("usher up"),
    );
    let client = reqwest::Client::new();
    wait_until(
        Duration::from_secs(30),
        "usher up answering",
        &logs,
        || async { echo(&client, &base).await == Some(json!({"a": 1})) },
    )
    .await;

    // The change is made before `usher watch` starts: its first build
    // already has it (a cold build of the copy's dependencies takes a
    // while on its own target dir).
    let source = read(&lib);
    assert!(source.contains("        Ok(payload)\n"), "{source}");
    std::fs::write(
        &lib,
        source.replace(
            "        Ok(payload)\n",
            "        Ok(Value::Array(vec![payload]))\n",
        ),
    )
    .expect("edit lib.rs");
    let _watch = Killed(
        usher_at(&workers, &store)
            .arg("watch")
            .arg("testing/echo")
            .arg("--components")
            .arg(&components)
            .arg("--target-dir")
            .arg(tmp.path().join("target"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&watch_log).expect("log"))
            .spawn()
            .expect("usher watch"),
    );
    wait_until(
        Duration::from_secs(600),
        "the first rebuild swapped in",
        &logs,
        || async { echo(&client, &base).await == Some(json!([{"a": 1}])) },
    )
    .await;
    assert!(
        read(&watch_log).contains("-watch.1 ("),
        "{}",
        read(&watch_log)
    );

    // A second change while watching: rebuilt, pushed as watch.2, swapped.
    wait_until(Duration::from_secs(30), "watching", &logs, || async {
        read(&watch_log).contains("usher watch: watching")
    })
    .await;
    let source = read(&lib);
    std::fs::write(
        &lib,
        source.replace(
            "        Ok(Value::Array(vec![payload]))\n",
            "        Ok(Value::Array(vec![payload.clone(), payload]))\n",
        ),
    )
    .expect("edit lib.rs");
    wait_until(
        Duration::from_secs(300),
        "the second rebuild swapped in",
        &logs,
        || async { echo(&client, &base).await == Some(json!([{"a": 1}, {"a": 1}])) },
    )
    .await;
    assert!(
        read(&watch_log).contains("-watch.2 ("),
        "{}",
        read(&watch_log)
    );

    // A change that does not compile: cargo's error is shown, nothing is
    // pushed, the live version keeps answering.
    let source = read(&lib);
    std::fs::write(&lib, format!("{source}\nfn broken( {{\n")).expect("edit lib.rs");
    wait_until(
        Duration::from_secs(300),
        "the failed build reported",
        &logs,
        || async { read(&watch_log).contains("failed (above)") },
    )
    .await;
    let log = read(&watch_log);
    assert!(log.contains("error"), "cargo's error is shown:\n{log}");
    assert!(log.contains("-watch.2 keeps serving"), "{log}");
    assert!(!log.contains("watch.3"), "{log}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        echo(&client, &base).await,
        Some(json!([{"a": 1}, {"a": 1}]))
    );
    let ls = usher_at(&workers, &store)
        .args(["ls", "--json"])
        .output()
        .expect("usher ls");
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(ls.contains("-watch.2") && !ls.contains("watch.3"), "{ls}");

    // Both swaps are counted.
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("usher_hot_swaps_total{worker=\"testing/echo\"} 2")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("usher_worker_live_info{")
                && l.contains("-watch.2\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );
}
