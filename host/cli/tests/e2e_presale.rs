//! The presale end to end on the real `usher up` binary (a child process),
//! driven by the real `usher demo presale --url` (another child), which
//! creates the campaigns, markets and code pools, registers the fans through
//! the resolvers, waits for replication, runs the draw per market and checks
//! everything it promises (winners per market, one code per winner, no code
//! twice, demand-table = the Entry Service, Code Service marked = assigned,
//! every draw verifies).
//!
//! * With 30% of the Code Service's and the Entry Service's requests failing
//!   (half 503 at once, half done by the service and then held past the
//!   client's timeout): retried calls, redelivered messages and a retried
//!   draw must still converge, with nothing in a dead-letter queue.
//! * With `kill -9` of `usher up` the moment each market's draw record is
//!   written (the draw is then in the middle of reserving codes and
//!   enqueueing selections), and a restart: the retried draw reuses the
//!   record and the reservations; nothing is lost, no code goes twice, no
//!   winner is without a code.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::Platform;
use serde_json::{json, Value};
use usher_capabilities::TableBackend;

/// Shorter timeouts for the services the proxy fails, one retry per call,
/// and short visibility timeouts, so that the retries happen within the
/// test.
fn edit_resources(name: &str, text: String) -> String {
    if name != "resources.yaml" {
        return text;
    }
    text.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if trimmed.starts_with("entries: { url:") || trimmed.starts_with("codes: { url:") {
                let (service, rest) = trimmed.split_once(':').unwrap_or_default();
                let url = rest
                    .split('"')
                    .nth(1)
                    .expect("a quoted url in the service line");
                format!("  {service}: {{ url: \"{url}\", timeout_ms: {TIMEOUT_MS}, retries: 1 }}")
            } else {
                line.replace("visibility_timeout_s: 30", "visibility_timeout_s: 3")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The client's timeout for the proxied services.
const TIMEOUT_MS: u64 = 1500;

/// `usher demo presale --url` against the running platform; its output
/// goes to `out` and `err` in the test's folder.
fn demo(platform: &Platform, fans: usize, markets: usize, out: &Path, err: &Path) -> Child {
    platform
        .usher(&["demo", "presale", "--url", &platform.base])
        .arg("--data")
        .arg(&platform.data)
        .args(["--fans", &fans.to_string()])
        .args(["--markets", &markets.to_string()])
        .args(["--timeout", "300"])
        .stdout(std::fs::File::create(out).expect("stdout file"))
        .stderr(std::fs::File::create(err).expect("stderr file"))
        .stdin(Stdio::null())
        .spawn()
        .expect("usher demo presale starts")
}

/// Waits (at most `within`) for the demo to exit; its stdout and stderr.
async fn finish(
    mut child: Child,
    out: &Path,
    err: &Path,
    within: Duration,
) -> (bool, String, String) {
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the demo did not finish in {within:?}:\n{}",
                std::fs::read_to_string(err).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    (
        status.success(),
        std::fs::read_to_string(out).unwrap_or_default(),
        std::fs::read_to_string(err).unwrap_or_default(),
    )
}

/// No message in any dead-letter queue (`<data>/status.json`).
fn assert_no_dead_letters(platform: &Platform) {
    let status = platform.status();
    let queues = status["queues"].as_object().cloned().unwrap_or_default();
    assert!(!queues.is_empty(), "no queues in the status file: {status}");
    for (name, depth) in &queues {
        if name.ends_with("-dlq") {
            assert_eq!(depth["visible"], json!(0), "{name}: {status}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_presale_converges_with_faulty_code_and_entry_services() {
    let mut platform = Platform::new(edit_resources);
    let (proxy_addr, proxy) =
        Proxy::start(&platform.base, 30, Duration::from_millis(TIMEOUT_MS * 2)).await;
    platform.entries_url = format!("http://{proxy_addr}/services/entries");
    platform.env.push((
        "USHER_SERVICE_CODES_URL".into(),
        format!("http://{proxy_addr}/services/codes"),
    ));
    platform.start().await;

    let (out, err) = (
        platform.tmp.path().join("demo.out"),
        platform.tmp.path().join("demo.err"),
    );
    let child = demo(&platform, 600, 2, &out, &err);
    let (ok, stdout, stderr) = finish(child, &out, &err, Duration::from_secs(600)).await;
    assert!(
        ok && stdout.contains("usher demo presale: verified"),
        "the demo failed:\n{stdout}\n{stderr}\nusher up:\n{}",
        common::tail(&platform.log(), 60)
    );
    let (requests, refused, held) = proxy.counts();
    eprintln!("proxy: {requests} requests, {refused} refused (503), {held} held past the timeout");
    eprintln!("{stdout}");
    assert!(
        refused >= 3 && held >= 3,
        "too few faults: {refused} / {held} of {requests}"
    );
    let rate = (refused + held) as f64 / requests as f64;
    assert!((0.1..0.5).contains(&rate), "fault rate {rate}");

    let status = platform.stop().await;
    assert!(status.success(), "{}", platform.log());
    assert_no_dead_letters(&platform);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_presale_survives_kill_9_in_the_middle_of_each_draw() {
    const MARKETS: usize = 2;
    let mut platform = Platform::new(edit_resources);
    platform.start().await;
    let (out, err) = (
        platform.tmp.path().join("demo.out"),
        platform.tmp.path().join("demo.err"),
    );
    let mut child = Some(demo(&platform, 2000, MARKETS, &out, &err));

    // The campaign the demo created (its first line naming it).
    let deadline = Instant::now() + Duration::from_secs(120);
    let campaign = loop {
        let text = std::fs::read_to_string(&err).unwrap_or_default();
        if let Some(c) = text
            .lines()
            .find_map(|l| l.strip_prefix("created campaign "))
            .and_then(|rest| rest.split_whitespace().next())
        {
            break c.to_string();
        }
        if let Some(Ok(Some(status))) = child.as_mut().map(Child::try_wait) {
            panic!("the demo exited with {status} before creating its campaign:\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "no campaign after 120 s:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // kill -9 the moment each market's draw record appears, then restart.
    let tables = platform.embedded().tables();
    let mut kills = 0;
    for market in 1..=MARKETS {
        let key = json!({"PK": format!("DRAW#{campaign}.m{market}"), "SK": "RECORD"});
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let record: Option<Value> = tables.get("draws", &key).await.ok().flatten();
            // The last kill also waits for a Task of the workflow to have
            // completed, so the check that no completed Task runs again has
            // something to hold (the markets' draws may both have started
            // before the first kill).
            let ready = record.is_some() && (market < MARKETS || a_task_completed(&platform).await);
            if ready {
                platform.kill9();
                kills += 1;
                tokio::time::sleep(Duration::from_millis(300)).await;
                platform.start().await;
                break;
            }
            if let Some(Ok(Some(status))) = child.as_mut().map(Child::try_wait) {
                panic!(
                    "the demo exited with {status} before the draw of m{market}:\n{}",
                    std::fs::read_to_string(&err).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no draw record for m{market}:\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let child = child.take().expect("the demo runs");
    let (ok, stdout, stderr) = finish(child, &out, &err, Duration::from_secs(600)).await;
    assert!(
        ok && stdout.contains("usher demo presale: verified"),
        "the demo failed after {kills} kill(s):\n{stdout}\n{stderr}\nusher up:\n{}",
        common::tail(&platform.log(), 60)
    );
    eprintln!("{kills} kill -9; the demo's retries:");
    for line in stderr.lines().filter(|l| l.contains("attempt")) {
        eprintln!("  {line}");
    }
    eprintln!("{stdout}");
    assert_eq!(kills, MARKETS);
    let status = platform.stop().await;
    assert!(status.success(), "{}", platform.log());
    assert_no_dead_letters(&platform);
    draw_workflow_resumed_without_rerunning_completed_steps(&platform, kills).await;
}

/// Whether a Task of the selection workflow's execution has completed.
async fn a_task_completed(platform: &Platform) -> bool {
    let Ok(store) = usher_workflows::Store::open(&platform.data) else {
        return false;
    };
    let Ok(executions) = store.list(Some("selection"), 10).await else {
        return false;
    };
    for execution in executions {
        if let Ok(history) = store.history(&execution.execution_id).await {
            if history.iter().any(|e| e.kind == "TaskSucceeded") {
                return true;
            }
        }
    }
    false
}

/// The draw ran through the selection workflow, killed mid-execution and
/// resumed after each restart: one execution, SUCCEEDED, resumed once per
/// kill that found it running; no Task whose result was recorded was
/// scheduled again afterwards; and, when every kill found it running, at
/// least one Task had completed before a kill (so the check had something
/// to hold).
async fn draw_workflow_resumed_without_rerunning_completed_steps(
    platform: &Platform,
    kills: usize,
) {
    let store = usher_workflows::Store::open(&platform.data).expect("workflows.db");
    let executions = store.list(Some("selection"), 10).await.expect("executions");
    assert_eq!(executions.len(), 1, "{executions:#?}");
    let execution = &executions[0];
    assert_eq!(execution.status, "SUCCEEDED", "{execution:#?}");
    // Resumed once per kill that found it running (the last kill may come
    // as the execution ends).
    assert!(
        execution.runs >= 2 && execution.runs as usize <= 1 + kills,
        "{execution:#?}"
    );
    let history = store
        .history(&execution.execution_id)
        .await
        .expect("history");
    let step = |key: &str| key.split(['~', '!']).next().unwrap_or(key).to_string();
    let mut succeeded: BTreeMap<String, i64> = BTreeMap::new();
    for e in history.iter().filter(|e| e.kind == "TaskSucceeded") {
        succeeded.insert(step(&e.key), e.seq);
    }
    assert!(!succeeded.is_empty(), "{history:#?}");
    for e in history.iter().filter(|e| e.kind == "TaskScheduled") {
        if let Some(done) = succeeded.get(&step(&e.key)) {
            assert!(
                e.seq < *done,
                "{} was scheduled again after its result was recorded: {history:#?}",
                e.key
            );
        }
    }
    let resumed: Vec<i64> = history
        .iter()
        .filter(|e| e.kind == "ExecutionResumed")
        .map(|e| e.seq)
        .collect();
    assert_eq!(resumed.len() as u32, execution.runs - 1, "{history:#?}");
    let last_resume = resumed.iter().max().copied().unwrap_or(0);
    let held = succeeded.values().any(|seq| *seq < last_resume);
    if execution.runs as usize == 1 + kills {
        // Every kill found the execution running, and the last one waited
        // for a completed Task: the check above had something to hold.
        assert!(
            held,
            "no Task had completed before the last kill: {history:#?}"
        );
    } else if !held {
        // The whole draw takes well under a second here: the last kill can
        // come after the execution ended, and then no completed Task was
        // ever interrupted in this run.
        eprintln!(
            "note: the execution ended before the last kill; no completed Task was interrupted in this run"
        );
    }
    let reruns = history
        .iter()
        .filter(|e| e.kind == "TaskScheduled" && e.data["run"].as_u64() > Some(1))
        .count();
    assert!(
        reruns >= 1,
        "no Task interrupted mid-flight was run again: {history:#?}"
    );
}
