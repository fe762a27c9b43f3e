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

use crate::common;

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

/// Writes the entries into demand-table from this process and waits until
/// the Entry Service at `base` lists every one and none is flagged.
async fn replicate(
    client: &reqwest::Client,
    base: &str,
    registry_dir: &std::path::Path,
    data: &std::path::Path,
    up: &Up,
) {
    let registry = Registry::load(registry_dir).expect("registry");
    let embedded = Embedded::open(data, &registry.resources).expect("open the data folder");
    let tables = embedded.tables();
    for i in 0..ENTRIES {
        tables
            .put("demand-table", demand_entry(i), None)
            .await
            .expect("put");
    }

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let count = listed(client, base).await;
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
    replicate(&client, &base, &registry_dir, &data, &up).await;

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

/// The service rule of `usher up`, with two services served by http-workers
/// of the registry and one served by nobody here: on a listener that is
/// not the registry's (`127.0.0.1:8090`), with no `USHER_SERVICE_*_URL`,
/// both point at it, and replication reaches the Entry Service through it.
#[tokio::test(flavor = "multi_thread")]
async fn up_points_every_service_an_http_worker_serves_at_its_listener() {
    let tmp = tempfile::tempdir().expect("tmp");
    let registry_dir = tmp.path().join("workers");
    copy_registry(&registry_dir, |name, text| {
        if name == "resources.yaml" {
            text.replace(
                "\nservices:\n",
                "\nservices:\n  scores: { url: \"http://127.0.0.1:9/scores\" }\n  loyalty: { url: \"https://loyalty.example.com\" }\n",
            )
        } else {
            text
        }
    });
    let store = tmp.path().join("store");
    pin_built(&registry_dir, &store);
    // The `scores` service's worker runs the Entry Service's component
    // (added after `usher pin`, which pins each worker to the component
    // built under its own name).
    let services = registry_dir.join("services.yaml");
    let text = std::fs::read_to_string(&services).expect("services.yaml");
    let component = text
        .lines()
        .find(|l| {
            l.trim_start()
                .starts_with("component: { name: services/entry-service")
        })
        .expect("the entry-service pin")
        .trim_start()
        .to_string();
    std::fs::write(
        &services,
        format!(
            "{text}\n  scores-service:\n    {component}\n    trigger:\n      http: {{ route: /services/scores }}\n    grants:\n      tables: [entries]\n    settings:\n      table: entries\n"
        ),
    )
    .expect("write services.yaml");

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let data = tmp.path().join("data");
    let log = tmp.path().join("up.log");
    let child = usher_at(&registry_dir, &store)
        .args(["up", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data")
        .arg(&data)
        .env_remove("USHER_SERVICE_ENTRIES_URL")
        .env_remove("USHER_SERVICE_SCORES_URL")
        .env_remove("USHER_SERVICE_LOYALTY_URL")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("usher up starts");
    let mut up = Up { child, log };

    let expected = [
        format!(
            "service entries -> {base}/services/entries (served here by services/entry-service)"
        ),
        format!(
            "service scores -> {base}/services/scores (served here by services/scores-service)"
        ),
        "service loyalty -> https://loyalty.example.com (the registry's)".to_string(),
    ];
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let said_all = |log: String| expected.iter().all(|l| log.contains(l.as_str()));
    while listed(&client, &base).await.is_none() || !said_all(up.log()) {
        if let Ok(Some(status)) = up.child.try_wait() {
            panic!("usher up exited with {status}:\n{}", up.log());
        }
        assert!(
            Instant::now() < deadline,
            "usher up did not answer or say {expected:#?}:\n{}",
            up.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let scores = client
        .get(format!(
            "{base}/services/scores/campaigns/{CAMPAIGN}/entries"
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(scores.status().as_u16(), 200);

    // save-entries reaches the Entry Service at this listener.
    replicate(&client, &base, &registry_dir, &data, &up).await;
}
