//! Hot swap: a new release is compiled off the invocation path and swapped
//! atomically; continuous load across the swap sees zero failed invocations.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use usher_engine::{Input, Output};
use usher_testing::{components, TestHost};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_failed_invocations_across_a_swap_under_load() {
    // Version 0.1.0 of `testing/swappable` is the echo component; 0.2.0 is the
    // table-probe component, which answers the same payload with a typed
    // InvalidInput error, so each answer tells which version gave it.
    let host = TestHost::builder()
        .resources("tables: { t: { partition_key: PK } }")
        .named_worker(
            "testing/swappable",
            &components::TESTING_ECHO,
            "trigger: { invoke: {} }\ngrants: { tables: [t] }",
        )
        .build()
        .expect("test host");
    let v2 = host
        .store
        .put_component(&components::TESTING_TABLE_PROBE.bytes())
        .expect("put");
    let version2 = semver::Version::new(0, 2, 0);
    host.store
        .record_version("testing/swappable", &version2, &v2)
        .expect("record");
    let watcher = host.runtime.watch(Duration::from_millis(20));

    let stop = Arc::new(AtomicBool::new(false));
    let (old, new, failed) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (rt, stop, old, new, failed) = (
            host.runtime.clone(),
            stop.clone(),
            old.clone(),
            new.clone(),
            failed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut last_was_new = false;
            while !stop.load(Ordering::Relaxed) {
                match rt
                    .invoke(
                        "testing/swappable",
                        &Input::Invoke(json!({"ping": 1})),
                        None,
                    )
                    .await
                {
                    Ok(inv) => match (&inv.output, inv.version.minor) {
                        (Output::Invoke(Ok(_)), 1) => {
                            assert!(
                                !last_was_new,
                                "an old version answered after the new one did"
                            );
                            old.fetch_add(1, Ordering::Relaxed);
                        }
                        (Output::Invoke(Err(e)), 2) if e.kind == "InvalidInput" => {
                            last_was_new = true;
                            new.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("unexpected answer {other:?}"),
                    },
                    Err(e) => {
                        eprintln!("failed invocation: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before_swap = old.load(Ordering::Relaxed);
    host.promote("testing/swappable", &version2)
        .expect("promote");
    // Wait until the new version answers.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while new.load(Ordering::Relaxed) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new release never went live"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load task");
    }
    watcher.abort();
    assert!(before_swap > 0, "load ran before the swap");
    assert!(new.load(Ordering::Relaxed) > 0);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no invocation failed across the swap"
    );
    assert_eq!(
        host.runtime
            .worker("testing/swappable")
            .expect("worker")
            .current()
            .version,
        version2
    );

    // Roll back: the old version is live again.
    host.store
        .rollback(&host.env, "testing/swappable")
        .expect("rollback");
    let swaps = host.runtime.refresh().await.expect("refresh");
    assert_eq!(swaps.len(), 1);
    let out = host
        .invoke("testing/swappable", Input::Invoke(json!({"ping": 2})))
        .await
        .expect("invoke");
    assert_eq!(out.output, Output::Invoke(Ok(json!({"ping": 2}))));
}

#[tokio::test]
async fn a_release_that_does_not_fit_the_worker_is_refused_and_the_old_version_keeps_serving() {
    let host = TestHost::builder()
        .resources("queues: { inbox: {} }")
        .named_worker(
            "testing/strict",
            &components::TESTING_ECHO,
            "trigger: { invoke: {} }",
        )
        .build()
        .expect("test host");
    // queue-sender is a batch-worker: it cannot serve an invoke trigger.
    let bad = host
        .store
        .put_component(&components::TESTING_QUEUE_SENDER.bytes())
        .expect("put");
    let v = semver::Version::new(0, 3, 0);
    host.store
        .record_version("testing/strict", &v, &bad)
        .expect("record");
    host.promote("testing/strict", &v).expect("promote");
    let swaps = host.runtime.refresh().await.expect("refresh");
    assert!(swaps.is_empty());
    let out = host
        .invoke("testing/strict", Input::Invoke(json!(5)))
        .await
        .expect("old version serves");
    assert_eq!(out.output, Output::Invoke(Ok(json!(5))));
    assert_eq!(out.version, semver::Version::new(0, 1, 0));
}
