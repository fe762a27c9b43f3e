//! `usher dlq ls`, `usher dlq replay` and `usher demo replication` on the
//! real binary with a copy of the repository's registry. The dead-letter
//! messages are made from this test process (on the same SQLite data folder,
//! kept open while the binary runs): sent to retry-score and received past
//! its max_receive_count, so they are redriven to retry-score-dlq.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::common;

use common::{copy_registry, pin_built, usher_at};
use serde_json::Value;
use usher_backend_embedded::Embedded;
use usher_capabilities::{OutgoingMessage, QueueBackend};
use usher_registry::Registry;

fn usher(registry: &Path, store: &Path, args: &[&str]) -> Command {
    let mut c = usher_at(registry, store);
    c.args(args);
    c
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn message(body: String) -> OutgoingMessage {
    OutgoingMessage {
        body,
        attributes: vec![],
        delay_seconds: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dlq_ls_and_replay() {
    let tmp = tempfile::tempdir().expect("tmp");
    let registry_dir = tmp.path().join("workers");
    copy_registry(&registry_dir, |_, text| text);
    let store = tmp.path().join("store");
    let data = tmp.path().join("data");

    let registry = Registry::load(&registry_dir).expect("registry");
    let embedded = Embedded::open(&data, &registry.resources).expect("open the data folder");
    let queues = embedded.queues();
    let long = "x".repeat(500);
    let bodies: Vec<OutgoingMessage> = (0..3)
        .map(|i| message(format!("{{\"fan\":{i},\"pad\":\"{long}\"}}")))
        .collect();
    queues
        .send_batch("retry-score", bodies)
        .await
        .expect("send");
    queues
        .send_batch(
            "enqueue-entries-failures",
            vec![message("{\"batch\":1}".into())],
        )
        .await
        .expect("send");
    // max_receive_count 3: the fourth receive redrives them.
    for _ in 0..4 {
        queues
            .receive("retry-score", 10, Some(Duration::ZERO))
            .await
            .expect("receive");
    }
    assert_eq!(
        queues
            .depth("retry-score-dlq")
            .await
            .expect("depth")
            .visible,
        3
    );

    let data_arg = data.to_str().expect("utf-8");
    // Every dead-letter queue with its depth.
    let out = usher(
        &registry_dir,
        &store,
        &["dlq", "ls", "--json", "--data", data_arg],
    )
    .output()
    .expect("dlq ls");
    let listed: Value = serde_json::from_str(&ok(&out, "dlq ls --json")).expect("json");
    let depth = |q: &str| {
        listed
            .as_array()
            .expect("array")
            .iter()
            .find(|r| r["queue"] == q)
            .unwrap_or_else(|| panic!("{q} not listed: {listed}"))["depth"]
            .as_u64()
            .expect("depth")
    };
    assert_eq!(depth("retry-score-dlq"), 3);
    assert_eq!(depth("save-entries-dlq"), 0);
    assert_eq!(depth("enqueue-entries-failures"), 1);
    assert!(!listed
        .as_array()
        .expect("array")
        .iter()
        .any(|r| r["queue"] == "retry-score"));
    let out = usher(&registry_dir, &store, &["dlq", "ls", "--data", data_arg])
        .output()
        .expect("dlq ls");
    let table = ok(&out, "dlq ls");
    assert!(
        table.contains("retry-score-dlq") && table.contains("retry-score"),
        "{table}"
    );

    // One queue's messages.
    let out = usher(
        &registry_dir,
        &store,
        &["dlq", "ls", "retry-score-dlq", "--json", "--data", data_arg],
    )
    .output()
    .expect("dlq ls QUEUE");
    let messages: Value = serde_json::from_str(&ok(&out, "dlq ls QUEUE")).expect("json");
    let messages = messages.as_array().expect("array");
    assert_eq!(messages.len(), 3);
    for m in messages {
        assert_eq!(m["source"], "retry-score", "{m}");
        assert!(m["receive_count"].as_u64().is_some(), "{m}");
        assert!(m["id"].as_str().is_some_and(|s| !s.is_empty()), "{m}");
        let body = m["body"].as_str().expect("body");
        assert!(body.starts_with("{\"fan\":"), "{body}");
        assert!(body.chars().count() <= 201, "{}", body.len());
    }

    // No source for a stream's on_failure queue: a clear refusal.
    let out = usher(
        &registry_dir,
        &store,
        &[
            "dlq",
            "replay",
            "enqueue-entries-failures",
            "--data",
            data_arg,
        ],
    )
    .output()
    .expect("dlq replay");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--to"), "{err}");
    assert_eq!(
        queues
            .depth("enqueue-entries-failures")
            .await
            .expect("depth")
            .visible,
        1
    );

    // Replay to the source queue, receive counts reset.
    let out = usher(
        &registry_dir,
        &store,
        &["dlq", "replay", "retry-score-dlq", "--data", data_arg],
    )
    .output()
    .expect("dlq replay");
    let said = ok(&out, "dlq replay");
    assert!(said.contains("replayed 3 message(s)"), "{said}");
    assert_eq!(
        queues
            .depth("retry-score-dlq")
            .await
            .expect("depth")
            .visible,
        0
    );
    let back = queues.list("retry-score", 100).await.expect("list");
    assert_eq!(back.len(), 3);
    assert!(back.iter().all(|m| m.receive_count == 0));

    // --to names the target explicitly.
    let out = usher(
        &registry_dir,
        &store,
        &[
            "dlq",
            "replay",
            "enqueue-entries-failures",
            "--to",
            "retry-score",
            "--data",
            data_arg,
        ],
    )
    .output()
    .expect("dlq replay --to");
    assert!(ok(&out, "dlq replay --to").contains("replayed 1 message(s)"));
    assert_eq!(
        queues.list("retry-score", 100).await.expect("list").len(),
        4
    );
}

#[test]
fn demo_replication_converges_with_300_entries() {
    let tmp = tempfile::tempdir().expect("tmp");
    let registry_dir = tmp.path().join("workers");
    copy_registry(&registry_dir, |_, text| text);
    let store = tmp.path().join("store");
    pin_built(&registry_dir, &store);
    let data = tmp.path().join("data");
    let out = usher(
        &registry_dir,
        &store,
        &["demo", "replication", "--entries", "300", "--timeout", "90"],
    )
    .arg("--data")
    .arg(&data)
    .env_remove("USHER_SERVICE_ENTRIES_URL")
    .output()
    .expect("usher demo");
    let said = ok(&out, "usher demo replication");
    assert!(said.contains("converged"), "{said}");
    assert!(said.contains("entries written     300"), "{said}");
    assert!(said.contains("modified            60"), "{said}");
    assert!(said.contains("removed             30"), "{said}");
    assert!(said.contains("replicated          270"), "{said}");
    assert!(said.contains("entries/s"), "{said}");
}
