//! Schedules on testing/ticker under a per-second cron: ticks arrive once
//! per due time, the stop is prompt, a failing tick is counted and not
//! retried, and a tick due while the previous run still goes is skipped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};
use usher_capabilities::TableBackend;
use usher_testing::{components, TestHost};
use usher_trigger_local::{
    Scheduler, TickOutcome, TriggerError, TriggerOptions, Triggers, WorkerCounters,
};

const WORKER: &str = "testing/ticker";
const EVERY_SECOND: &str = "\"* * * * * *\"";

fn host(extra: &str) -> TestHost {
    TestHost::builder()
        .resources("tables: { ticks: { partition_key: PK, sort_key: SK } }")
        .worker(
            &components::TESTING_TICKER,
            &format!(
                "trigger: {{ schedule: {{ cron: {EVERY_SECOND} }} }}\ngrants: {{ tables: [ticks] }}\n{extra}"
            ),
        )
        .worker(&components::TESTING_ECHO, "trigger: { invoke: {} }")
        .build()
        .expect("test host")
}

fn start(host: &TestHost) -> Triggers {
    Triggers::start(
        host.runtime.clone(),
        &host.embedded,
        TriggerOptions::default(),
    )
    .expect("triggers")
}

/// The ticks recorded in the table, oldest first.
async fn ticks(host: &TestHost) -> Vec<Value> {
    host.embedded
        .tables()
        .query("ticks", &json!(WORKER), None, 1000, None)
        .await
        .expect("query")
        .items
}

/// Waits until `check` holds; panics after `limit`.
async fn within<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn parse(time: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(time.as_str().expect("a string"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_arrive_at_each_due_time_and_the_stop_is_prompt() {
    let host = host("");
    let started = Utc::now();
    let triggers = start(&host);
    assert_eq!(triggers.workers().collect::<Vec<_>>(), vec![WORKER]);
    within(Duration::from_secs(6), "two ticks", || async {
        ticks(&host).await.len() >= 2
    })
    .await;
    let snapshot = triggers.snapshot()[WORKER];
    assert!(snapshot.received >= 2, "{snapshot:?}");
    assert!(snapshot.succeeded >= 2, "{snapshot:?}");
    assert_eq!(snapshot.failed, 0, "{snapshot:?}");
    let next = snapshot.next_due().expect("a next due time");
    assert!(parse(&json!(next)) > started, "{next}");

    let stopping = Instant::now();
    triggers.shutdown().await.expect("shutdown");
    let took = stopping.elapsed();
    // Generous: a tick of testing/ticker takes milliseconds; the check is
    // that the wait for the next due time does not hold the stop.
    assert!(took < Duration::from_millis(900), "stopped after {took:?}");

    let recorded = ticks(&host).await;
    let times: Vec<DateTime<Utc>> = recorded
        .iter()
        .map(|t| parse(&t["scheduledTime"]))
        .collect();
    for (item, time) in recorded.iter().zip(&times) {
        assert_eq!(item["schedule"], WORKER);
        assert_eq!(time.timestamp_subsec_millis(), 0, "a whole second: {item}");
        assert!(*time > started, "not a tick due before the start: {item}");
    }
    // Each due time at most once (a late wake-up may skip one on a loaded
    // machine; it is counted, never run twice).
    assert!(
        times.windows(2).all(|w| w[1] > w[0]),
        "no due time twice: {times:?}"
    );
    // Nothing after the stop.
    let after = recorded.len();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(ticks(&host).await.len(), after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_tick_is_counted_and_not_retried() {
    let host = host("settings: { fail: true }");
    let started = Instant::now();
    let triggers = start(&host);
    let counters = triggers.counters()[WORKER].clone();
    within(Duration::from_secs(6), "two failed ticks", || async {
        counters.snapshot().failed >= 2
    })
    .await;
    triggers.shutdown().await.expect("shutdown");
    let elapsed = started.elapsed();
    let snapshot = counters.snapshot();
    assert_eq!(snapshot.succeeded, 0, "{snapshot:?}");
    assert_eq!(snapshot.failed, snapshot.received, "{snapshot:?}");
    // Each due time ran once: one recorded attempt per run, at most one run
    // per second elapsed (no retry loop).
    let recorded = ticks(&host).await;
    assert_eq!(recorded.len() as u64, snapshot.received, "{recorded:?}");
    assert!(recorded.iter().all(|t| t["failed"] == true));
    assert!(
        snapshot.received <= elapsed.as_secs() + 1,
        "{} runs in {elapsed:?}",
        snapshot.received
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_due_while_the_previous_run_goes_is_skipped() {
    // Every run spins until its 2.5 s deadline: the due times in between
    // are skipped, never run alongside.
    let host = host("settings: { spin: true }\nlimits: { timeout_ms: 2500 }");
    let triggers = start(&host);
    let counters = triggers.counters()[WORKER].clone();
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let s = counters.snapshot();
        assert!(s.in_flight <= 1, "overlapping runs: {s:?}");
        if s.failed >= 1 && s.skipped >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no skipped tick: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    triggers.shutdown().await.expect("shutdown");
    let s = counters.snapshot();
    assert_eq!(s.in_flight, 0, "{s:?}");
    assert_eq!(s.succeeded, 0, "{s:?}");
    // A 2.5 s run under a per-second schedule skips at least 2 due times.
    assert!(s.skipped >= 2 * s.failed, "{s:?}");
}

#[tokio::test]
async fn one_tick_by_hand_and_the_due_times() {
    let host = host("");
    let counters = Arc::new(WorkerCounters::default());
    let scheduler = Scheduler::new(host.runtime.clone(), WORKER, counters.clone()).expect("new");
    assert_eq!(scheduler.cron(), "* * * * * *");
    let due = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 5).unwrap();
    assert_eq!(scheduler.tick(due).await, TickOutcome::Succeeded);
    assert_eq!(
        ticks(&host).await[0]["scheduledTime"],
        "2026-01-01T00:00:05Z"
    );
    let s = counters.snapshot();
    assert_eq!((s.received, s.succeeded, s.in_flight), (1, 1, 0));

    assert_eq!(
        scheduler.next_after(due),
        Some(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 6).unwrap())
    );
    let later = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 8).unwrap();
    assert_eq!(scheduler.due_between(due, later), 3);
    assert_eq!(scheduler.due_between(due, due), 0);

    assert!(matches!(
        Scheduler::new(host.runtime.clone(), "testing/echo", counters.clone()),
        Err(TriggerError::WrongTrigger {
            expected: "schedule",
            ..
        })
    ));
    assert!(matches!(
        Scheduler::new(host.runtime.clone(), "testing/nope", counters),
        Err(TriggerError::UnknownWorker(_))
    ));
}
