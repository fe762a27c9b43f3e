//! Change-log retention: changes every follower checkpointed past go once
//! older than the retention; a follower that has not read them keeps them;
//! a table nobody follows keeps its changes for the retention only.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{entry, put_all, until};
use serde_json::json;
use usher_capabilities::TableBackend;
use usher_testing::{components, TestHost};
use usher_trigger_local::{
    ChangeLogTrimmer, StepOutcome, StreamFollower, TriggerOptions, Triggers, WorkerCounters,
};

const FAST: &str = "replication/enqueue-entries";
const LAGGING: &str = "replication/enqueue-lagging";
const SHORT: Duration = Duration::from_millis(50);
const LONG: Duration = Duration::from_secs(3600);

fn follower_yaml() -> &'static str {
    "trigger:\n  stream: { table: demand-table }\n\
     batch_size: 100\n\
     grants: { queues: [save-entries] }\n\
     settings: { queue: save-entries }"
}

fn host(lagging: bool) -> TestHost {
    let mut builder = TestHost::builder()
        .resources(
            "tables: { demand-table: { partition_key: PK, sort_key: SK }, loose: { partition_key: PK } }\n\
             queues: { save-entries: {} }",
        )
        .worker(&components::REPLICATION_ENQUEUE_ENTRIES, follower_yaml());
    if lagging {
        builder = builder.named_worker(
            LAGGING,
            &components::REPLICATION_ENQUEUE_ENTRIES,
            follower_yaml(),
        );
    }
    builder.build().expect("test host")
}

fn follower(host: &TestHost, worker: &str) -> StreamFollower {
    StreamFollower::new(
        host.runtime.clone(),
        host.embedded.change_log(),
        host.embedded.queues(),
        worker,
        Arc::new(WorkerCounters::default()),
    )
    .expect("follower")
}

async fn logged(host: &TestHost, table: &str) -> u64 {
    host.embedded
        .change_log()
        .count(table)
        .await
        .expect("count")
}

fn trimmer(host: &TestHost, retention: Duration) -> ChangeLogTrimmer {
    ChangeLogTrimmer::new(&host.runtime, host.embedded.change_log(), retention)
}

#[tokio::test]
async fn only_changes_every_follower_passed_and_older_than_the_retention_go() {
    let host = host(true);
    put_all(
        &host,
        &[
            entry("c1", "u1", true),
            entry("c1", "u2", false),
            entry("c1", "u3", true),
        ],
    )
    .await;
    host.embedded
        .tables()
        .put("loose", json!({"PK": "a"}), None)
        .await
        .expect("put");
    let mut fast = follower(&host, FAST);
    assert!(matches!(
        fast.step().await.expect("step"),
        StepOutcome::Advanced { records: 3, .. }
    ));
    tokio::time::sleep(SHORT * 2).await;

    // Within the retention nothing goes, followed or not.
    assert!(trimmer(&host, LONG)
        .trim_once()
        .await
        .expect("trim")
        .is_empty());
    assert_eq!(logged(&host, "demand-table").await, 3);
    assert_eq!(logged(&host, "loose").await, 1);

    // Past the retention: the unfollowed table's change goes; the followed
    // ones stay, the lagging follower has not read them.
    let report = trimmer(&host, SHORT).trim_once().await.expect("trim");
    assert_eq!(report.get("loose"), Some(&1), "{report:?}");
    assert_eq!(report.get("demand-table"), None, "{report:?}");
    assert_eq!(logged(&host, "demand-table").await, 3);
    assert_eq!(logged(&host, "loose").await, 0);

    // The lagging follower reads them (nothing was lost), then they go.
    let mut lagging = follower(&host, LAGGING);
    assert!(matches!(
        lagging.step().await.expect("step"),
        StepOutcome::Advanced { records: 3, .. }
    ));
    let report = trimmer(&host, SHORT).trim_once().await.expect("trim");
    assert_eq!(report.get("demand-table"), Some(&3), "{report:?}");
    assert_eq!(logged(&host, "demand-table").await, 0);

    // Newer changes only the fast follower read: kept, however old.
    put_all(&host, &[entry("c1", "u4", true), entry("c1", "u5", true)]).await;
    assert!(matches!(
        fast.step().await.expect("step"),
        StepOutcome::Advanced { records: 2, .. }
    ));
    tokio::time::sleep(SHORT * 2).await;
    assert!(trimmer(&host, SHORT)
        .trim_once()
        .await
        .expect("trim")
        .is_empty());
    assert_eq!(logged(&host, "demand-table").await, 2);
    assert!(matches!(
        lagging.step().await.expect("step"),
        StepOutcome::Advanced { records: 2, .. }
    ));
    assert_eq!(lagging.step().await.expect("step"), StepOutcome::Idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usher_up_trims_the_log_as_followers_pass_and_keeps_following() {
    let host = host(false);
    let options = TriggerOptions {
        change_log_retention: Duration::from_millis(100),
        trim_every: Duration::from_millis(20),
        ..TriggerOptions::default()
    };
    let triggers = Triggers::start(host.runtime.clone(), &host.embedded, options).expect("start");
    put_all(&host, &[entry("c2", "u1", true), entry("c2", "u2", true)]).await;
    until(
        "the follower passed both and the log was trimmed",
        || async {
            triggers.snapshot()[FAST].succeeded == 2 && logged(&host, "demand-table").await == 0
        },
    )
    .await;
    // The follower goes on after a trim.
    put_all(&host, &[entry("c2", "u3", true)]).await;
    until("the third change followed and trimmed", || async {
        triggers.snapshot()[FAST].succeeded == 3 && logged(&host, "demand-table").await == 0
    })
    .await;
    triggers.shutdown().await.expect("shutdown");
    assert_eq!(
        host.embedded
            .queues()
            .list("save-entries", 100)
            .await
            .expect("list")
            .len(),
        3
    );
}
