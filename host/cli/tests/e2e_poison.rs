//! End to end: a poison message. The Entry Service refuses entries over
//! `max_entry_bytes`; one fan's entry is too big. save-entries posts its
//! chunk, gets a 400, posts the chunk's entries one by one, and fails only
//! that message; after `max_receive_count` receives the queue moves it — and
//! only it — to save-entries-dlq, while every other entry replicates. Then
//! the cause is fixed (the limit raised, `usher up` restarted) and
//! `usher dlq replay` re-drives the message: the entry replicates.

use crate::common;

use std::time::{Duration, Instant};

use common::{bump, converge, entry, Platform, TABLE};
use serde_json::{json, Value};
use usher_capabilities::TableBackend;

const CAMPAIGN: &str = "c-poison";
const ENTRIES: usize = 300;
const POISON: &str = "u-poison";

fn with_limit(name: &str, text: String, limit: u64) -> String {
    match name {
        "services.yaml" => text.replace(
            "      table: entries\n",
            &format!("      table: entries\n      max_entry_bytes: {limit}\n"),
        ),
        "resources.yaml" => text.replace("visibility_timeout_s: 30", "visibility_timeout_s: 1"),
        _ => text,
    }
}

fn dlq_messages(platform: &Platform) -> Vec<Value> {
    let out = platform.run(&[
        "dlq",
        "ls",
        "save-entries-dlq",
        "--json",
        "--data",
        platform.data.to_str().expect("utf-8"),
    ]);
    serde_json::from_str(&out).expect("dlq ls --json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_message_goes_to_the_dlq_alone_and_replays_once_fixed() {
    let mut platform = Platform::new(|name, text| with_limit(name, text, 2_000));
    let services =
        std::fs::read_to_string(platform.registry_dir.join("services.yaml")).expect("read");
    assert!(services.contains("max_entry_bytes: 2000"), "{services}");
    platform.start().await;
    let tables = platform.embedded().tables();

    let mut users: Vec<String> = (0..ENTRIES).map(|i| format!("u{i:04}")).collect();
    for user in &users[..ENTRIES / 2] {
        bump(tables.as_ref(), CAMPAIGN, user).await;
    }
    let mut poison = entry(CAMPAIGN, POISON, 1);
    poison["entry"]["notes"] = json!("x".repeat(5_000));
    tables
        .put(TABLE, poison, None)
        .await
        .expect("put the poison entry");
    for user in &users[ENTRIES / 2..] {
        bump(tables.as_ref(), CAMPAIGN, user).await;
    }

    // Every other entry replicates.
    converge(
        &platform,
        tables.as_ref(),
        CAMPAIGN,
        &users,
        Duration::from_secs(120),
    )
    .await;

    // The poison message lands in the DLQ after max_receive_count (3) receives.
    let deadline = Instant::now() + Duration::from_secs(60);
    let dead = loop {
        let dead = dlq_messages(&platform);
        if !dead.is_empty() {
            break dead;
        }
        assert!(
            Instant::now() < deadline,
            "no message reached save-entries-dlq: {}\n{}",
            platform.status(),
            common::tail(&platform.log(), 40)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Only it: one message, from save-entries, which failed max_receive_count
    // (3) times and never again; no other message failed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let dead = {
        let again = dlq_messages(&platform);
        assert_eq!(again.len(), dead.len());
        again
    };
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["source"], "save-entries", "{dead:?}");
    assert!(
        dead[0]["body"].as_str().is_some_and(|b| b.contains(POISON)),
        "{dead:?}"
    );
    let status = platform.status();
    assert_eq!(
        status["workers"]["replication/save-entries"]["failed"], 3,
        "{status}"
    );
    let flagged = tables
        .get(TABLE, &common::key(CAMPAIGN, POISON))
        .await
        .expect("get")
        .expect("the poison entry");
    assert_eq!(flagged["needsReplication"], true);

    // Fix the cause: raise the limit, restart.
    let status = platform.stop().await;
    assert!(status.success(), "{}", platform.log());
    let file = platform.registry_dir.join("services.yaml");
    let text = std::fs::read_to_string(&file).expect("read");
    std::fs::write(
        &file,
        text.replace("max_entry_bytes: 2000", "max_entry_bytes: 100000"),
    )
    .expect("write");
    platform.start().await;

    let out = platform.run(&[
        "dlq",
        "replay",
        "save-entries-dlq",
        "--data",
        platform.data.to_str().expect("utf-8"),
    ]);
    assert!(out.contains('1'), "{out}");
    users.push(POISON.to_string());
    converge(
        &platform,
        tables.as_ref(),
        CAMPAIGN,
        &users,
        Duration::from_secs(60),
    )
    .await;
    assert!(dlq_messages(&platform).is_empty());

    let status = platform.stop().await;
    assert!(status.success(), "{}", platform.log());
}
