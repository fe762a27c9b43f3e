//! The `usher` binary end to end: push (checked), ls, promote, rollback,
//! invoke, and clear errors on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn wasm(name: &str) -> PathBuf {
    let path = root().join("build/components").join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is not built: run `just build-components`",
        path.display()
    );
    path
}

struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let reg = dir.path().join("workers");
        std::fs::create_dir_all(&reg).expect("mkdir");
        std::fs::write(reg.join("resources.yaml"), "queues: { inbox: {} }\n").expect("write");
        let echo = usher_store_digest(&wasm("testing/echo"));
        std::fs::write(
            reg.join("testing.yaml"),
            format!("domain: testing\nworkers:\n  echo:\n    component: {{ name: testing/echo, version: 0.1.0, sha256: \"{echo}\" }}\n    trigger: {{ invoke: {{}} }}\n"),
        )
        .expect("write");
        Self { dir }
    }

    fn usher(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_usher"))
            .arg("--registry")
            .arg(self.dir.path().join("workers"))
            .arg("--store")
            .arg(self.dir.path().join("store"))
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("usher runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.usher(args);
        assert!(
            out.status.success(),
            "usher {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.usher(args);
        assert!(!out.status.success(), "usher {args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.to_string_lossy().into_owned()
    }
}

fn usher_store_digest(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).expect("read")))
}

fn live_version(ls: &str, worker: &str) -> String {
    let rows: Value = serde_json::from_str(ls).expect("ls --json");
    rows.as_array()
        .and_then(|r| r.iter().find(|w| w["worker"] == worker))
        .map(|w| {
            w["live"]["version"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default()
}

#[test]
fn push_promote_rollback_and_invoke() {
    let sb = Sandbox::new();
    let echo = wasm("testing/echo");
    let echo = echo.to_str().expect("path");
    sb.ok(&["push", "testing/echo", echo, "--version", "0.1.0"]);
    // The same component again as 0.2.0 (a new version may reuse bytes).
    sb.ok(&["push", "testing/echo", echo, "--version", "0.2.0"]);
    assert_eq!(
        live_version(&sb.ok(&["ls", "--json"]), "testing/echo"),
        "0.1.0"
    );

    sb.ok(&["promote", "testing/echo", "0.2.0"]);
    assert_eq!(
        live_version(&sb.ok(&["ls", "--json"]), "testing/echo"),
        "0.2.0"
    );
    assert!(sb.ok(&["ls"]).contains("0.2.0"));

    let event = sb.file("event.json", r#"{"hello": "world"}"#);
    let out: Value = serde_json::from_str(&sb.ok(&[
        "invoke",
        "testing/echo",
        "--event",
        &event,
        "--data",
        sb.dir.path().join("data").to_str().expect("p"),
    ]))
    .expect("json");
    assert_eq!(out["version"], "0.2.0");
    assert_eq!(
        out["result"],
        serde_json::json!({"kind": "invoke", "result": {"Ok": {"hello": "world"}}})
    );

    sb.ok(&["rollback", "testing/echo"]);
    assert_eq!(
        live_version(&sb.ok(&["ls", "--json"]), "testing/echo"),
        "0.1.0"
    );
    let err = sb.fails(&["rollback", "testing/echo"]);
    assert!(err.contains("testing/echo"), "{err}");
}

#[test]
fn bad_input_gives_clear_errors() {
    let sb = Sandbox::new();
    // A component that does not fit the worker's trigger is refused at push.
    let err = sb.fails(&[
        "push",
        "testing/echo",
        wasm("testing/queue-sender").to_str().expect("p"),
        "--version",
        "0.3.0",
    ]);
    assert!(
        err.contains("invoke-worker") && err.contains("batch-worker"),
        "{err}"
    );
    // The same version cannot name other bytes.
    sb.ok(&[
        "push",
        "testing/echo",
        wasm("testing/echo").to_str().expect("p"),
        "--version",
        "0.1.0",
    ]);
    // (The 0.1.2 echo of the compatibility fixtures: it fits the worker's
    // entry, so only its bytes differ.)
    let old_echo = root().join("tests/fixtures/compat/0.1.2/testing/echo.wasm");
    let err = sb.fails(&[
        "push",
        "testing/echo",
        old_echo.to_str().expect("p"),
        "--version",
        "0.1.0",
    ]);
    assert!(err.to_lowercase().contains("0.1.0"), "{err}");
    assert!(err.contains("already pushed"), "{err}");
    // Unknown worker.
    let err = sb.fails(&["promote", "testing/nope", "0.1.0"]);
    assert!(
        err.contains("testing/nope") && err.contains("testing/echo"),
        "{err}"
    );
    // Promoting a version never pushed.
    let err = sb.fails(&["promote", "testing/echo", "9.9.9"]);
    assert!(err.contains("9.9.9"), "{err}");
    // An event that is not JSON names the file.
    let bad = sb.file("bad.json", "{nope");
    let err = sb.fails(&["invoke", "testing/echo", "--event", &bad]);
    assert!(
        err.contains("bad.json") && err.contains("not valid JSON"),
        "{err}"
    );
    // A missing component is named at start.
    let fresh = Sandbox::new();
    let event = fresh.file("e.json", "{}");
    let err = fresh.fails(&["invoke", "testing/echo", "--event", &event]);
    assert!(
        err.contains("worker testing/echo") && err.contains("not in the store"),
        "{err}"
    );
}

/// The stderr of a run that must exit with status 1.
fn fails_with_1(out: std::io::Result<Output>) -> String {
    let out = out.expect("usher runs");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    err
}

/// `usher lambda` outside Lambda and `usher provision` against an endpoint
/// nobody listens on fail with a clear error, not a panic.
#[test]
fn lambda_and_provision_errors_are_clear() {
    let sb = Sandbox::new();
    let out = Command::new(env!("CARGO_BIN_EXE_usher"))
        .arg("lambda")
        .env("USHER_WORKER", "testing/echo")
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .env("RUST_BACKTRACE", "0")
        .output();
    let err = fails_with_1(out);
    assert!(
        err.contains("AWS_LAMBDA_RUNTIME_API is not set") && !err.contains("panicked"),
        "{err}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let out = Command::new(env!("CARGO_BIN_EXE_usher"))
        .arg("--registry")
        .arg(sb.dir.path().join("workers"))
        .arg("provision")
        .env("USHER_AWS_ENDPOINT_URL", format!("http://{closed}"))
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("RUST_BACKTRACE", "0")
        .output();
    let err = fails_with_1(out);
    assert!(
        err.contains("provisioning") && err.contains("unavailable") && !err.contains("panicked"),
        "{err}"
    );
}
