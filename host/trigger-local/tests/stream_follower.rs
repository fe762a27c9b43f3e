//! The stream follower on replication/enqueue-entries: the demand table's
//! changes reach the save-entries queue, the checkpoint advances and a
//! restart resumes after it; a poison record goes to the on-failure queue.

mod common;

use std::sync::Arc;

use common::{entry, put_all, sent_seqs, until};
use serde_json::json;
use usher_testing::{components, TestHost};
use usher_trigger_local::{
    FailureMessage, StepOutcome, StreamFollower, TriggerOptions, Triggers, WorkerCounters,
};

const WORKER: &str = "replication/enqueue-entries";

fn host(max_retries: u32) -> TestHost {
    host_with(&format!("max_retries: {max_retries}"))
}

/// The test host with `extra` (e.g. `max_retries: 3`) in the stream trigger.
fn host_with(extra: &str) -> TestHost {
    TestHost::builder()
        .resources(
            "tables: { demand-table: { partition_key: PK, sort_key: SK } }\n\
             queues: { save-entries: {}, enqueue-entries-failures: {} }",
        )
        .worker(
            &components::REPLICATION_ENQUEUE_ENTRIES,
            &format!(
                "trigger:\n  stream: {{ table: demand-table, {extra}, on_failure: enqueue-entries-failures }}\n\
                 batch_size: 10\n\
                 grants: {{ queues: [save-entries] }}\n\
                 settings: {{ queue: save-entries }}"
            ),
        )
        .build()
        .expect("test host")
}

fn follower(host: &TestHost) -> StreamFollower {
    StreamFollower::new(
        host.runtime.clone(),
        host.embedded.change_log(),
        host.embedded.queues(),
        WORKER,
        Arc::new(WorkerCounters::default()),
    )
    .expect("follower")
}

async fn checkpoint(host: &TestHost) -> Option<u64> {
    host.embedded
        .change_log()
        .checkpoint_get(WORKER)
        .await
        .expect("checkpoint")
}

async fn latest(host: &TestHost) -> u64 {
    host.embedded
        .change_log()
        .latest_seq("demand-table")
        .await
        .expect("latest")
}

#[tokio::test]
async fn changes_reach_the_queue_and_a_restart_resumes_after_the_checkpoint() {
    let host = host(3);
    put_all(
        &host,
        &[
            entry("c1", "u1", true),
            entry("c1", "u2", false),
            entry("c1", "u3", true),
        ],
    )
    .await;
    let mut f = follower(&host);
    let top = latest(&host).await;
    assert_eq!(
        f.step().await.expect("step"),
        StepOutcome::Advanced {
            records: 3,
            checkpoint: top
        }
    );
    assert_eq!(checkpoint(&host).await, Some(top));
    assert_eq!(f.step().await.expect("step"), StepOutcome::Idle);
    let first = sent_seqs(&host, "save-entries").await;
    assert_eq!(first.len(), 2, "the two flagged entries: {first:?}");

    // A restart (a new follower) resumes after the checkpoint: nothing is resent.
    let mut restarted = follower(&host);
    assert_eq!(restarted.step().await.expect("step"), StepOutcome::Idle);
    put_all(&host, &[entry("c1", "u4", true)]).await;
    assert!(matches!(
        restarted.step().await.expect("step"),
        StepOutcome::Advanced { records: 1, .. }
    ));
    let mut all = sent_seqs(&host, "save-entries").await;
    assert_eq!(all.len(), 3, "{all:?}");
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 3, "no record sent twice");
    assert_eq!(checkpoint(&host).await, Some(latest(&host).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_triggers_follow_the_table_and_resume_after_shutdown() {
    let host = host(3);
    let triggers = Triggers::start(
        host.runtime.clone(),
        &host.embedded,
        TriggerOptions::default(),
    )
    .expect("triggers");
    assert_eq!(triggers.workers().collect::<Vec<_>>(), vec![WORKER]);
    put_all(&host, &[entry("c2", "u1", true), entry("c2", "u2", true)]).await;
    until("two messages in save-entries", || async {
        sent_seqs(&host, "save-entries").await.len() == 2
    })
    .await;
    until("the checkpoint at the newest change", || async {
        checkpoint(&host).await == Some(latest(&host).await)
    })
    .await;
    let counters = triggers.snapshot()[WORKER];
    assert_eq!((counters.received, counters.succeeded), (2, 2));
    triggers.shutdown().await.expect("shutdown");

    // Written while stopped: picked up after the restart, the rest not resent.
    put_all(&host, &[entry("c2", "u3", true)]).await;
    let triggers = Triggers::start(
        host.runtime.clone(),
        &host.embedded,
        TriggerOptions::default(),
    )
    .expect("triggers");
    until("three messages in save-entries", || async {
        sent_seqs(&host, "save-entries").await.len() >= 3
    })
    .await;
    until("the checkpoint at the newest change", || async {
        checkpoint(&host).await == Some(latest(&host).await)
    })
    .await;
    triggers.shutdown().await.expect("shutdown");
    let seqs = sent_seqs(&host, "save-entries").await;
    assert_eq!(seqs.len(), 3, "nothing resent after the restart: {seqs:?}");
}

#[tokio::test]
async fn starting_position_latest_skips_what_was_written_before() {
    let host = TestHost::builder()
        .resources(
            "tables: { demand-table: { partition_key: PK, sort_key: SK } }\n\
             queues: { save-entries: {} }",
        )
        .worker(
            &components::REPLICATION_ENQUEUE_ENTRIES,
            "trigger:\n  stream: { table: demand-table, starting_position: latest }\n\
             grants: { queues: [save-entries] }",
        )
        .build()
        .expect("test host");
    put_all(&host, &[entry("c3", "u1", true)]).await;
    let mut f = follower(&host);
    assert_eq!(f.step().await.expect("step"), StepOutcome::Idle);
    assert_eq!(checkpoint(&host).await, Some(latest(&host).await));
    put_all(&host, &[entry("c3", "u2", true)]).await;
    assert!(matches!(
        f.step().await.expect("step"),
        StepOutcome::Advanced { records: 1, .. }
    ));
    assert_eq!(
        sent_seqs(&host, "save-entries").await,
        vec![latest(&host).await]
    );
}

#[tokio::test]
async fn a_poison_record_goes_to_the_on_failure_queue_and_the_follower_moves_on() {
    let host = host(2);
    // A flagged entry too large for a queue message: its send fails, every
    // time, and only it fails.
    let mut poison = entry("c4", "poison", true);
    poison["blob"] = json!("x".repeat(300 * 1024));
    put_all(
        &host,
        &[
            entry("c4", "u1", true),
            entry("c4", "u2", true),
            poison,
            entry("c4", "u3", true),
            entry("c4", "u4", true),
        ],
    )
    .await;
    let rows = host
        .embedded
        .change_log()
        .read("demand-table", 0, 100)
        .await
        .expect("read");
    let seq: Vec<u64> = rows.iter().map(|r| r.seq).collect();
    let mut f = follower(&host);

    // The poison fails: the checkpoint stops just before it and the batch
    // is halved at each retry.
    assert_eq!(
        f.step().await.expect("step"),
        StepOutcome::Retrying {
            failed: 1,
            from_seq: seq[2],
            attempt: 1,
            window: 2
        }
    );
    assert_eq!(checkpoint(&host).await, Some(seq[1]));
    assert_eq!(
        f.step().await.expect("step"),
        StepOutcome::Retrying {
            failed: 1,
            from_seq: seq[2],
            attempt: 2,
            window: 1
        }
    );
    // max_retries 2: the third failure gives up on it.
    assert_eq!(
        f.step().await.expect("step"),
        StepOutcome::GaveUp {
            records: 1,
            checkpoint: seq[2]
        }
    );
    assert_eq!(checkpoint(&host).await, Some(seq[2]));
    assert!(matches!(
        f.step().await.expect("step"),
        StepOutcome::Advanced { records: 2, .. }
    ));
    assert_eq!(f.step().await.expect("step"), StepOutcome::Idle);
    assert_eq!(f.counters().snapshot().given_up, 1);

    let failures = common::bodies(&host, "enqueue-entries-failures").await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    let message: FailureMessage = serde_json::from_str(&failures[0]).expect("failure message");
    assert_eq!(message.worker, WORKER);
    assert_eq!(message.table, "demand-table");
    assert_eq!(message.attempts, 3);
    assert_eq!(message.first_sequence_number, seq[2].to_string());
    assert!(message.truncated, "the poison's images exceed a message");
    assert_eq!(message.records.len(), 1);
    assert_eq!(message.records[0].sequence_number, seq[2].to_string());
    assert_eq!(
        message.records[0].keys,
        json!({"PK": "ENTRY#c4#poison", "SK": "ENTRY"})
    );

    // Every other record reached save-entries (the one after the poison
    // more than once: at least once), the poison never did.
    let mut sent = sent_seqs(&host, "save-entries").await;
    sent.sort();
    sent.dedup();
    assert_eq!(sent, vec![seq[0], seq[1], seq[3], seq[4]]);
    assert_eq!(checkpoint(&host).await, Some(seq[4]));
}

/// The trigger's filter: a change neither of whose images passes is skipped
/// (the checkpoint still moves past it), the others reach the worker.
#[tokio::test]
async fn the_trigger_filter_skips_the_changes_it_does_not_pass() {
    let host = host_with("filter: [ { attribute: PK, prefix: [\"ENTRY#c1#\"] } ]");
    put_all(
        &host,
        &[
            entry("c1", "u1", true),
            entry("c2", "u2", true),
            entry("c1", "u3", true),
        ],
    )
    .await;
    let mut f = follower(&host);
    let top = latest(&host).await;
    assert_eq!(
        f.step().await.expect("step"),
        StepOutcome::Advanced {
            records: 2,
            checkpoint: top
        }
    );
    assert_eq!(sent_seqs(&host, "save-entries").await.len(), 2);
    // Only filtered-out changes: skipped, the checkpoint moves past them.
    put_all(&host, &[entry("c2", "u4", true)]).await;
    let top = latest(&host).await;
    assert_eq!(
        f.step().await.expect("step"),
        StepOutcome::Advanced {
            records: 0,
            checkpoint: top
        }
    );
    assert_eq!(checkpoint(&host).await, Some(top));
    assert_eq!(sent_seqs(&host, "save-entries").await.len(), 2);
}
