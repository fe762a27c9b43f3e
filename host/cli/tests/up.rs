//! `usher up` end to end: the real binary with a pinned copy of the
//! repository's registry. Entries written to demand-table (from this test
//! process, on the same SQLite data folder) flow through
//! replication/enqueue-entries (stream) → the save-entries queue →
//! replication/save-entries → HTTP → the listener → services/entry-service;
//! every one is listed by the Entry Service and cleared in demand-table; then
//! SIGINT stops the host cleanly.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::{copy_registry, free_port, pin_built, usher_at, Up};
use serde_json::{json, Value};
use usher_backend_embedded::Embedded;
use usher_capabilities::TableBackend;
use usher_registry::Registry;

const CAMPAIGN: &str = "c-up";
const ENTRIES: usize = 200;

fn demand_entry(i: usize) -> Value {
    json!({
        "PK": format!("ENTRY#{CAMPAIGN}#u{i:03}"),
        "SK": "ENTRY",
        "campaignId": CAMPAIGN,
        "globalUserId": format!("u{i:03}"),
        "marketId": "m1",
        "entry": {"firstName": "Ada", "zip": "10001"},
        "needsReplication": true,
        "version": 1,
    })
}

async fn listed(client: &reqwest::Client, base: &str) -> Option<usize> {
    let r = client
        .get(format!(
            "{base}/services/entries/campaigns/{CAMPAIGN}/entries?limit=1000"
        ))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    let body: Value = r.json().await.ok()?;
    body["entries"].as_array().map(Vec::len)
}

async fn pending(tables: &Arc<usher_backend_embedded::EmbeddedTables>) -> usize {
    let mut n = 0;
    for i in 0..ENTRIES {
        let key = json!({"PK": format!("ENTRY#{CAMPAIGN}#u{i:03}"), "SK": "ENTRY"});
        match tables.get("demand-table", &key).await {
            Ok(Some(item)) if item["needsReplication"] == json!(false) => {}
            _ => n += 1,
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread")]
async fn up_replicates_entries_through_the_listener_and_stops_on_sigint() {
    let tmp = tempfile::tempdir().expect("tmp");
    let registry_dir = tmp.path().join("workers");
    copy_registry(&registry_dir, |_, text| text);
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
        .env(
            "USHER_SERVICE_ENTRIES_URL",
            format!("{base}/services/entries"),
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("usher up starts");
    let mut up = Up { child, log };

    // Up: the Entry Service answers through the listener.
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while listed(&client, &base).await.is_none() {
        if let Ok(Some(status)) = up.child.try_wait() {
            panic!("usher up exited with {status}:\n{}", up.log());
        }
        assert!(
            Instant::now() < deadline,
            "usher up did not answer:\n{}",
            up.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Write the entries into demand-table from this process.
    let registry = Registry::load(&registry_dir).expect("registry");
    let embedded = Embedded::open(&data, &registry.resources).expect("open the data folder");
    let tables = embedded.tables();
    for i in 0..ENTRIES {
        tables
            .put("demand-table", demand_entry(i), None)
            .await
            .expect("put");
    }

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let count = listed(&client, &base).await;
        if count == Some(ENTRIES) && pending(&tables).await == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not replicated in 60 s: listed {count:?}, {} still flagged\n{}",
            pending(&tables).await,
            up.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // SIGINT: a clean stop, exit 0.
    let pid = i32::try_from(up.child.id()).expect("pid");
    // SAFETY: kill(2) on the pid of our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
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
    assert!(log.contains("usher up: stopped"), "{log}");
    assert!(
        log.contains("replication/save-entries"),
        "no summary:\n{log}"
    );
}
