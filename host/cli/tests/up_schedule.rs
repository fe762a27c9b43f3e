//! `usher up` runs schedules and serves resolvers: the real binary with a
//! registry of testing/ticker (every second, recording its ticks in a
//! table) and testing/echo behind `POST /resolvers/Query/echo`; the summary
//! shows the schedule's runs and next due time; SIGINT stops it promptly.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common;

use common::{free_port, pin_built, usher_at, Up};
use serde_json::{json, Value};
use usher_backend_embedded::Embedded;
use usher_capabilities::TableBackend;
use usher_registry::Registry;

const ZEROS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[tokio::test(flavor = "multi_thread")]
async fn up_runs_schedules_and_serves_resolvers() {
    let tmp = tempfile::tempdir().expect("tmp");
    let registry_dir = tmp.path().join("workers");
    std::fs::create_dir_all(&registry_dir).expect("mkdir");
    std::fs::write(
        registry_dir.join("resources.yaml"),
        "tables: { ticks: { partition_key: PK, sort_key: SK } }\n",
    )
    .expect("resources");
    std::fs::write(
        registry_dir.join("testing.yaml"),
        format!(
            "domain: testing\nworkers:\n\
             \x20 ticker:\n\
             \x20   component: {{ name: testing/ticker, version: 0.0.1, sha256: \"{ZEROS}\" }}\n\
             \x20   trigger: {{ schedule: {{ cron: \"* * * * * *\" }} }}\n\
             \x20   grants: {{ tables: [ticks] }}\n\
             \x20 echo:\n\
             \x20   component: {{ name: testing/echo, version: 0.0.1, sha256: \"{ZEROS}\" }}\n\
             \x20   trigger: {{ resolver: {{ type_name: Query, field_name: echo }} }}\n"
        ),
    )
    .expect("testing.yaml");
    let store = tmp.path().join("store");
    let data = tmp.path().join("data");
    let usher = |args: &[&str]| {
        let mut c = usher_at(&registry_dir, &store);
        c.args(args);
        c
    };
    pin_built(&registry_dir, &store);

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = tmp.path().join("up.log");
    let child = usher(&["up"])
        .arg("--data")
        .arg(&data)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("usher up starts");
    let mut up = Up { child, log };

    // The resolver answers through the listener.
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let event: Value = loop {
        if let Ok(Some(status)) = up.child.try_wait() {
            panic!("usher up exited with {status}:\n{}", up.log());
        }
        let answer = client
            .post(format!("{base}/resolvers/Query/echo"))
            .json(&json!({"arguments": {"n": 1}}))
            .send()
            .await;
        if let Ok(r) = answer {
            assert_eq!(r.status().as_u16(), 200);
            break r.json().await.expect("JSON");
        }
        assert!(
            Instant::now() < deadline,
            "usher up did not answer:\n{}",
            up.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(event["arguments"], json!({"n": 1}));
    assert_eq!(event["info"]["fieldName"], "echo");

    // Ticks land in the table (read from this process, same data folder).
    let registry = Registry::load(&registry_dir).expect("registry");
    let embedded = Embedded::open(&data, &registry.resources).expect("open the data folder");
    let tables = embedded.tables();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = tables
            .query("ticks", &json!("testing/ticker"), None, 100, None)
            .await
            .expect("query");
        if page.items.len() >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no two ticks:\n{}", up.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // SIGINT: a prompt, clean stop.
    let pid = i32::try_from(up.child.id()).expect("pid");
    // SAFETY: kill(2) on the pid of our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = up.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "usher up did not stop on SIGINT:\n{}",
            up.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log = up.log();
    assert!(status.success(), "usher up exited with {status}:\n{log}");
    assert!(
        log.contains("POST /resolvers/Query/echo -> testing/echo"),
        "{log}"
    );
    let ticker = log
        .lines()
        .rev()
        .find(|l| l.starts_with("testing/ticker "))
        .unwrap_or_else(|| panic!("no summary line for the ticker:\n{log}"));
    assert!(ticker.contains("schedule * * * * * *"), "{ticker}");
    assert!(ticker.contains(" runs "), "{ticker}");
    assert!(ticker.contains(" failed 0 "), "{ticker}");
    assert!(!ticker.contains(" runs 0 "), "{ticker}");
}
