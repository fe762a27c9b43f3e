//! The operator page of `usher up` (`/ops/`) in headless Chromium, driven
//! by playwright (tests/operator_page.py): it loads with no console error,
//! shows a version promoted by `usher promote` from another process within
//! 2 s, rolls it back from the page, lists a dead-letter queue's messages
//! and replays them from the page until the queue is empty. Also its JSON
//! API's answers to bad requests.
//!
//! Chromium (Debian's) and playwright (PyPI) come from `scripts/pytools`
//! (USHER_CHROMIUM, USHER_BROWSER_PYTHON). Without them the browser test
//! says so and passes, unless USHER_REQUIRE_TOOLS=1 (as `just test` sets).
//! With USHER_OPS_SCREENSHOT set, the screenshot goes there (the README's
//! docs/operator-page.png).

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{root, with_custom_section, Platform};
use serde_json::{json, Value};
use usher_capabilities::{OutgoingMessage, QueueBackend};

const WORKER: &str = "replication/save-entries";
const DLQ: &str = "retry-score-dlq";
const DEAD: usize = 3;

fn tool(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() && Path::new(&v).exists() => Some(v),
        _ => {
            assert!(
                std::env::var("USHER_REQUIRE_TOOLS").as_deref() != Ok("1"),
                "{var} is not set or missing, and USHER_REQUIRE_TOOLS=1: run `bash scripts/pytools install` and `eval \"$(bash scripts/pytools env)\"`"
            );
            eprintln!("SKIPPED: {var} is not set (bash scripts/pytools install; eval \"$(bash scripts/pytools env)\")");
            None
        }
    }
}

async fn dead_letters(platform: &Platform) {
    let queues = platform.embedded().queues();
    let messages = (0..DEAD)
        .map(|i| OutgoingMessage {
            body: json!({"campaignId": "c-ops", "userId": format!("u{i}"), "attempt": i})
                .to_string(),
            attributes: vec![],
            delay_seconds: None,
        })
        .collect();
    queues
        .send_batch(DLQ, messages)
        .await
        .expect("send to the DLQ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_operator_page_in_chromium() {
    let (Some(python), Some(chromium)) = (tool("USHER_BROWSER_PYTHON"), tool("USHER_CHROMIUM"))
    else {
        return;
    };
    let mut platform = Platform::new(|_, text| text);
    platform.start().await;
    dead_letters(&platform).await;

    // A workflow execution for the page to show (no markets: it succeeds at once).
    let client = reqwest::Client::new();
    let started = client
        .post(format!("{}/workflows/selection/executions", platform.base))
        .json(&json!({"campaignId": "c-ops", "marketIds": []}))
        .send()
        .await
        .expect("start an execution");
    assert_eq!(started.status(), 201, "{:?}", started.text().await);

    // A new version, pushed (not promoted) before the page opens.
    let built = std::fs::read(root().join("build/components/replication/save-entries.wasm"))
        .expect("the built save-entries component");
    let file = platform.tmp.path().join("save-entries-0.9.1.wasm");
    std::fs::write(
        &file,
        with_custom_section(built, "usher-ops-page", b"0.9.1"),
    )
    .expect("write");
    platform.run(&[
        "push",
        WORKER,
        file.to_str().expect("utf-8"),
        "--version",
        "0.9.1",
    ]);
    let promote: Vec<String> = [
        env!("CARGO_BIN_EXE_usher"),
        "--registry",
        platform.registry_dir.to_str().expect("utf-8"),
        "--store",
        platform.store.to_str().expect("utf-8"),
        "promote",
        WORKER,
        "0.9.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    let screenshot = std::env::var("USHER_OPS_SCREENSHOT")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            platform
                .tmp
                .path()
                .join("operator-page.png")
                .display()
                .to_string()
        });
    let out = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/operator_page.py"))
        .args([
            "--url",
            &platform.base,
            "--chromium",
            &chromium,
            "--screenshot",
            &screenshot,
        ])
        .args(["--worker", WORKER, "--new-version", "0.9.1", "--dlq", DLQ])
        .args(["--dlq-depth", &DEAD.to_string()])
        .arg("--promote-cmd")
        .arg(serde_json::to_string(&promote).expect("json"))
        .output()
        .expect("run the playwright driver");
    assert!(
        out.status.success(),
        "the browser run failed: {}\n{}\nusher up:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        common::tail(&platform.log(), 40)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("the driver prints JSON");
    eprintln!("operator page: {report}");

    assert_eq!(
        report["console_errors"],
        json!([]),
        "console errors: {report}"
    );
    assert_eq!(
        report["steps"],
        json!(["loaded", "promoted", "rolled back", "replayed"])
    );
    let registry = platform.registry();
    assert_eq!(
        report["workers_shown"].as_u64(),
        Some(registry.workers.len() as u64)
    );
    assert_eq!(
        report["queues_shown"].as_u64(),
        Some(registry.resources.queues.len() as u64)
    );
    assert!(report["executions_shown"].as_u64() >= Some(1), "{report}");
    assert_eq!(report["messages_shown"].as_u64(), Some(DEAD as u64));
    let seconds = report["promote_seconds"].as_f64().expect("promote_seconds");
    assert!(
        seconds <= 2.0,
        "the promoted version showed after {seconds} s (2 s asked)"
    );
    assert!(
        Path::new(&screenshot).is_file(),
        "no screenshot at {screenshot}"
    );

    // What the page did, as the host sees it.
    let queues = platform.embedded().queues();
    let d = queues.depth(DLQ).await.expect("depth");
    assert_eq!(d.visible + d.in_flight + d.delayed, 0, "the DLQ is empty");
    platform
        .wait_for_version(
            WORKER,
            report["old_version"].as_str().expect("old"),
            Duration::from_secs(10),
        )
        .await;
    let ls: Value = serde_json::from_str(&platform.run(&["ls", "--json"])).expect("ls --json");
    let row = ls
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["worker"] == WORKER)
        .cloned()
        .expect("the worker's row");
    assert_eq!(
        row["live"]["version"], report["old_version"],
        "the release is back at the old version: {row}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ops_api_refuses_bad_requests() {
    let mut platform = Platform::new(|_, text| text);
    platform.start().await;
    let client = reqwest::Client::new();
    let base = format!("{}/ops", platform.base);
    let page = client.get(format!("{base}/")).send().await.expect("page");
    assert_eq!(page.status(), 200);
    assert!(page
        .text()
        .await
        .expect("html")
        .contains("<title>usher · operator</title>"));

    let cases: [(&str, &str, Option<Value>, u16, &str); 6] = [
        (
            "POST",
            "/api/workers/replication/nope/promote",
            Some(json!({"version": "1.0.0"})),
            404,
            "no worker",
        ),
        (
            "POST",
            "/api/workers/replication/save-entries/promote",
            Some(json!({"version": "x"})),
            400,
            "not a semantic version",
        ),
        (
            "POST",
            "/api/workers/replication/save-entries/promote",
            Some(json!({"version": "7.7.7"})),
            404,
            "no pushed version",
        ),
        (
            "POST",
            "/api/workers/replication/save-entries/rollback",
            None,
            409,
            "no earlier live version",
        ),
        ("GET", "/api/queues/nope/messages", None, 404, "no queue"),
        (
            "POST",
            "/api/queues/save-entries/replay",
            None,
            409,
            "no queue has it as its dead_letter",
        ),
    ];
    for (method, path, body, status, text) in cases {
        let mut req = if method == "GET" {
            client.get(format!("{base}{path}"))
        } else {
            client.post(format!("{base}{path}"))
        };
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request");
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
        let v: Value = r.json().await.expect("json error");
        assert!(
            v["error"].as_str().unwrap_or_default().contains(text),
            "{method} {path}: {v}"
        );
    }

    // The listing and the replay of a dead-letter queue through the API.
    dead_letters(&platform).await;
    let listed: Value = client
        .get(format!("{base}/api/queues/{DLQ}/messages?limit=2"))
        .send()
        .await
        .expect("messages")
        .json()
        .await
        .expect("json");
    assert_eq!(
        listed["messages"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
    let queues: Value = client
        .get(format!("{base}/api/queues"))
        .send()
        .await
        .expect("queues")
        .json()
        .await
        .expect("json");
    let row = queues["queues"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|q| q["name"] == DLQ)
        .cloned()
        .expect("dlq row");
    assert_eq!(row["depth"], json!(DEAD));
    assert_eq!(row["is_dead_letter"], json!(true));
    assert_eq!(row["sources"], json!(["retry-score"]));
    let replayed: Value = client
        .post(format!("{base}/api/queues/{DLQ}/replay"))
        .send()
        .await
        .expect("replay")
        .json()
        .await
        .expect("json");
    assert_eq!(
        replayed,
        json!({"moved": DEAD, "from": DLQ, "to": "retry-score"})
    );
}
