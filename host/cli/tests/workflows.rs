//! `usher up`'s workflows through the real binary: a bad workflow file
//! refuses the start naming the file and the state; `usher workflow
//! start|ls|show` and the `/workflows` routes on the selection workflow; an
//! input that does not fit is refused at start naming the state. (The
//! kill -9 resume runs in e2e_presale, the interpreter's own tests in
//! host/workflows.)

use crate::common;

use std::time::{Duration, Instant};

use common::Platform;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_workflow_file_refuses_the_start_naming_file_and_state() {
    let platform = Platform::new(|_, text| text);
    let dir = platform.tmp.path().join("workflows");
    std::fs::write(
        dir.join("broken.asl.json"),
        json!({"StartAt": "Broken", "States": {
            "Broken": {"Type": "Task", "Resource": "${selection/no-such-worker}", "End": true}
        }})
        .to_string(),
    )
    .expect("write");
    let out = platform
        .usher(&["up", "--listen", "127.0.0.1:0"])
        .arg("--data")
        .arg(&platform.data)
        .output()
        .expect("usher up");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("broken.asl.json")
            && stderr.contains("state `Broken`")
            && stderr.contains("selection/no-such-worker"),
        "{stderr}"
    );

    std::fs::write(
        dir.join("broken.asl.json"),
        json!({"StartAt": "A", "States": {
            "A": {"Type": "Pass", "Next": "B"},
            "B": {"Type": "Pass", "Next": "A"}
        }})
        .to_string(),
    )
    .expect("write");
    let out = platform
        .usher(&["up", "--listen", "127.0.0.1:0"])
        .arg("--data")
        .arg(&platform.data)
        .output()
        .expect("usher up");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("broken.asl.json")
            && stderr.contains("state `A`")
            && stderr.contains("never reach an end"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_cli_and_routes() {
    let mut platform = Platform::new(|_, text| text);
    platform.start().await;
    let url = platform.base.clone();
    let dir = platform.tmp.path();

    // An input that does not fit the first state: refused at start.
    std::fs::write(dir.join("bad.json"), r#"{"campaignId": "c"}"#).expect("write");
    let out = platform
        .usher(&["workflow", "start", "selection", "--url", &url, "--input"])
        .arg(dir.join("bad.json"))
        .output()
        .expect("usher workflow start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("400") && stderr.contains("DrawMarkets") && stderr.contains("$.marketIds"),
        "{stderr}"
    );

    // No markets: the Map runs over nothing and the execution succeeds.
    std::fs::write(
        dir.join("input.json"),
        r#"{"campaignId": "c", "marketIds": []}"#,
    )
    .expect("write");
    let started = platform.run(&[
        "workflow",
        "start",
        "selection",
        "--url",
        &url,
        "--wait",
        "--input",
        dir.join("input.json").to_str().expect("path"),
    ]);
    let id = started
        .lines()
        .next()
        .expect("the execution id")
        .to_string();
    assert!(id.starts_with("selection:"), "{started}");
    assert!(started.contains("SUCCEEDED"), "{started}");

    let ls = platform.run(&["workflow", "ls", "--url", &url, "--json"]);
    let rows: Value = serde_json::from_str(&ls).expect("ls --json");
    assert_eq!(rows[0]["executionId"], json!(id), "{ls}");
    assert_eq!(rows[0]["output"]["draws"], json!([]), "{ls}");

    let show = platform.run(&["workflow", "show", &id, "--url", &url, "--json"]);
    let shown: Value = serde_json::from_str(&show).expect("show --json");
    let kinds: Vec<&str> = shown["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "ExecutionStarted",
            "StateEntered",
            "StateExited",
            "StateEntered",
            "StateExited",
            "ExecutionSucceeded"
        ],
        "{show}"
    );

    // The routes answer JSON errors.
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{url}/workflows/nope/executions"))
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 404);
    let r = client
        .post(format!("{url}/workflows/selection/executions"))
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 400);
    let r = client
        .get(format!(
            "{url}/workflows/selection/executions/selection:missing"
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 404);
    let body: Value = r.json().await.expect("json");
    assert!(body["error"].is_string(), "{body}");

    // A started execution shows up in the list at once.
    let r = client
        .post(format!("{url}/workflows/selection/executions"))
        .body(r#"{"campaignId": "c2", "marketIds": []}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 201);
    let created: Value = r.json().await.expect("json");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list: Value = client
            .get(format!("{url}/workflows/selection/executions"))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        let found = list["executions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["executionId"] == created["executionId"])
            .cloned();
        if found.as_ref().is_some_and(|e| e["status"] == "SUCCEEDED") {
            break;
        }
        assert!(Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = platform.stop().await;
    assert!(status.success(), "{}", platform.log());
}
