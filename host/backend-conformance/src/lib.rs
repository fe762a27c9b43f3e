//! The same test code for every backend of a capability.
//!
//! Each module holds the suite of one backend trait: plain async functions
//! taking the backend as a trait object and the name of a resource the
//! caller has created (a table with the expected key schema, a queue …).
//! `usher-backend-embedded` runs them against SQLite; `usher-backend-aws`,
//! `-kafka` and `-redis` run them against real servers on 127.0.0.1 started
//! by `scripts/servers`. A suite panics (with what differed) on the first
//! behaviour that does not match the contract of the trait.

use std::fmt::Debug;

use usher_capabilities::CapError;
use usher_registry::{QueueDef, Resources, Subscription, TableDef, TopicDef};

pub mod cache;
pub mod events;
pub mod objects;
pub mod queue;
pub mod table;
pub mod topic;

/// The resources the suites use, as a registry declares them: tables
/// `sorted` (PK/SK) and `simple` (PK), queues `work`, `all` and
/// `filtered`, topic `news` (`all` subscribed without a filter policy,
/// `filtered` with [`topic::filter_policy`]) and bucket `bucket`.
pub fn resources() -> Resources {
    let mut r = Resources::default();
    r.tables.insert(
        "sorted".into(),
        TableDef {
            partition_key: table::PARTITION_KEY.into(),
            sort_key: Some(table::SORT_KEY.into()),
        },
    );
    r.tables.insert(
        "simple".into(),
        TableDef {
            partition_key: table::SIMPLE_KEY.into(),
            sort_key: None,
        },
    );
    for q in ["work", "all", "filtered"] {
        r.queues.insert(q.into(), QueueDef::default());
    }
    r.topics.insert(
        "news".into(),
        TopicDef {
            subscriptions: vec![
                Subscription {
                    queue: "all".into(),
                    filter_policy: None,
                },
                Subscription {
                    queue: "filtered".into(),
                    filter_policy: Some(topic::filter_policy()),
                },
            ],
        },
    );
    r.buckets.push("bucket".into());
    r
}

/// The address of a real server for a test, from the environment variable
/// `var` that `scripts/servers start` writes (`USHER_TEST_DYNAMODB`,
/// `USHER_TEST_AWS`, `USHER_TEST_KAFKA`, `USHER_TEST_REDIS`).
///
/// When it is unset the test is skipped (`None`, with a line on stderr),
/// unless `USHER_REQUIRE_SERVERS=1` (set by `just test`), where a missing
/// server is a failure: CI never passes by skipping.
pub fn server(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if std::env::var("USHER_REQUIRE_SERVERS").as_deref() == Ok("1") {
                panic!("{var} is not set but USHER_REQUIRE_SERVERS=1: start the servers with `scripts/servers start DIR` and source DIR/servers.env");
            }
            eprintln!("skipped: {var} is not set (run the tests through `just test`, which starts the servers)");
            None
        }
    }
}

/// A name unique to this process and call, for resources a test creates on a
/// shared server (tables, queues, topics, buckets, Kafka topics, key prefixes).
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The name of an error's kind, as the WIT variant spells it (`invalid`,
/// `not_found`, `condition_failed` …).
pub fn error_kind(e: &CapError) -> &'static str {
    match e {
        CapError::Denied(_) => "denied",
        CapError::NotFound(_) => "not_found",
        CapError::Invalid(_) => "invalid",
        CapError::ConditionFailed(_) => "condition_failed",
        CapError::Unavailable(_) => "unavailable",
        CapError::Throttled(_) => "throttled",
        CapError::Unsupported(_) => "unsupported",
        CapError::Fault(_) => "fault",
    }
}

/// Asserts that `result` is an error of the kind `kind` (see [`error_kind`]);
/// `what` names the case in the panic message.
pub fn expect_err<T: Debug>(what: &str, result: Result<T, CapError>, kind: &str) -> CapError {
    match result {
        Err(e) if error_kind(&e) == kind => e,
        other => panic!("{what}: expected a `{kind}` error, got {other:?}"),
    }
}
