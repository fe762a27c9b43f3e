//! Interpreter and loader tests (paths and Choice rules: unit tests in
//! src/paths.rs, src/choice.rs): one machine per state type and path
//! field, the load errors naming their state, and resume after a stop.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};
use usher_registry::WorldKind;

use usher_workflows::asl::{self, AslError};
use usher_workflows::interp::{Execution, Failure, TaskInvoker};
use usher_workflows::store::Store;

/// Workers for the tests: `t/echo` answers its payload, `t/add` adds
/// `by` to `n`, `t/flaky` fails `fails` times with `Flaky` before
/// answering, `t/boom` always fails with `Boom`, `t/slow` sleeps 200 ms.
#[derive(Default)]
struct Workers {
    calls: Mutex<Vec<(String, Value)>>,
    flaky: AtomicU32,
}

#[async_trait::async_trait]
impl TaskInvoker for Workers {
    async fn invoke(
        &self,
        worker: &str,
        payload: Value,
        _timeout: Option<Duration>,
    ) -> Result<Value, Failure> {
        self.calls
            .lock()
            .push((worker.to_string(), payload.clone()));
        match worker {
            "t/echo" => Ok(payload),
            "t/add" => Ok(
                json!({"n": payload["n"].as_i64().unwrap_or(0) + payload["by"].as_i64().unwrap_or(1)}),
            ),
            "t/flaky" => {
                let seen = self.flaky.fetch_add(1, Ordering::SeqCst);
                if u64::from(seen) < payload["fails"].as_u64().unwrap_or(0) {
                    Err(Failure::new("Flaky", format!("attempt {}", seen + 1)))
                } else {
                    Ok(json!({"ok": true, "attempts": seen + 1}))
                }
            }
            "t/boom" => Err(Failure::new("Boom", "it broke")),
            "t/slow" => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok(json!({"slow": payload}))
            }
            other => Err(Failure::new(
                "States.TaskFailed",
                format!("no worker {other}"),
            )),
        }
    }
}

fn registry() -> BTreeMap<String, WorldKind> {
    ["t/echo", "t/add", "t/flaky", "t/boom", "t/slow"]
        .into_iter()
        .map(|w| (w.to_string(), WorldKind::Invoke))
        .chain([("t/queue".to_string(), WorldKind::Batch)])
        .collect()
}

fn machine(doc: Value) -> asl::Machine {
    asl::parse(&doc.to_string(), &registry()).unwrap()
}

async fn run_with(
    doc: Value,
    input: Value,
    workers: &Workers,
    store: &Store,
    id: &str,
    run: u32,
) -> Result<Value, Failure> {
    let m = machine(doc);
    if run == 1 {
        store.create(id, "t", &input).await.unwrap();
    }
    Execution {
        id: id.to_string(),
        workflow: "t".to_string(),
        input,
        start_time: "2026-01-01T00:00:00Z".to_string(),
        run,
        machine: &m,
        invoker: workers,
        store,
    }
    .run()
    .await
}

async fn run(doc: Value, input: Value) -> (Result<Value, Failure>, Vec<(String, Value)>) {
    let workers = Workers::default();
    let store = Store::in_memory().unwrap();
    let out = run_with(doc, input, &workers, &store, "t:1", 1).await;
    let calls = workers.calls.lock().clone();
    (out, calls)
}

fn task(resource: &str, extra: Value) -> Value {
    let mut t = json!({"Type": "Task", "Resource": format!("${{{resource}}}"), "End": true});
    if let (Value::Object(t), Value::Object(e)) = (&mut t, extra) {
        t.extend(e);
    }
    t
}

#[tokio::test]
async fn task_with_paths() {
    let doc = json!({"StartAt": "A", "States": {"A": task("t/echo", json!({
        "InputPath": "$.in",
        "Parameters": {"v.$": "$.x", "fixed": 1, "msg.$": "States.Format('x={}', $.x)"},
        "ResultSelector": {"got.$": "$.v", "msg.$": "$.msg"},
        "ResultPath": "$.in.result",
        "OutputPath": "$.in"
    }))}});
    let (out, calls) = run(doc, json!({"in": {"x": 7}, "other": true})).await;
    assert_eq!(
        calls,
        vec![(
            "t/echo".to_string(),
            json!({"v": 7, "fixed": 1, "msg": "x=7"})
        )]
    );
    assert_eq!(
        out.unwrap(),
        json!({"x": 7, "result": {"got": 7, "msg": "x=7"}})
    );
}

#[tokio::test]
async fn result_path_null_keeps_the_input() {
    let doc = json!({"StartAt": "A", "States": {"A": task("t/echo", json!({"ResultPath": null}))}});
    let (out, _) = run(doc, json!({"a": 1})).await;
    assert_eq!(out.unwrap(), json!({"a": 1}));
}

#[tokio::test]
async fn retry_then_success() {
    let doc = json!({"StartAt": "A", "States": {"A": task("t/flaky", json!({
        "Retry": [{"ErrorEquals": ["Flaky"], "IntervalSeconds": 0.01, "MaxAttempts": 3, "BackoffRate": 1.5}]
    }))}});
    let (out, calls) = run(doc, json!({"fails": 2})).await;
    assert_eq!(out.unwrap(), json!({"ok": true, "attempts": 3}));
    assert_eq!(calls.len(), 3);
}

#[tokio::test]
async fn retry_exhausted_then_catch() {
    let doc = json!({"StartAt": "A", "States": {
        "A": task("t/flaky", json!({
            "End": null,
            "Retry": [{"ErrorEquals": ["States.TaskFailed"], "IntervalSeconds": 0.01, "MaxAttempts": 1}],
            "Catch": [{"ErrorEquals": ["Flaky"], "ResultPath": "$.err", "Next": "Recover"}],
            "Next": "Done"
        })),
        "Recover": {"Type": "Pass", "End": true},
        "Done": {"Type": "Succeed"}
    }});
    let doc = strip_nulls(doc);
    let (out, calls) = run(doc, json!({"fails": 5})).await;
    assert_eq!(calls.len(), 2, "one try and one retry");
    assert_eq!(
        out.unwrap(),
        json!({"fails": 5, "err": {"Error": "Flaky", "Cause": "attempt 2"}})
    );
}

#[tokio::test]
async fn states_all_does_not_catch_runtime_errors() {
    let doc = json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "InputPath": "$.missing", "Next": "B"},
        "B": {"Type": "Succeed"}
    }});
    let (out, _) = run(doc, json!({})).await;
    let f = out.unwrap_err();
    assert_eq!(f.error, "States.Runtime");
    assert!(
        f.cause.contains("`A`") && f.cause.contains("$.missing"),
        "{}",
        f.cause
    );
    let f = Failure::new("States.Runtime", "x");
    assert!(!usher_workflows::interp::error_matches(
        &["States.ALL".to_string()],
        &f
    ));
    let t = Failure {
        task: true,
        ..Failure::new("Boom", "")
    };
    assert!(usher_workflows::interp::error_matches(
        &["States.TaskFailed".to_string()],
        &t
    ));
    let timeout = Failure {
        task: true,
        ..Failure::new("States.Timeout", "")
    };
    assert!(!usher_workflows::interp::error_matches(
        &["States.TaskFailed".to_string()],
        &timeout
    ));
}

#[tokio::test]
async fn uncaught_task_error_fails_the_execution() {
    let doc = json!({"StartAt": "A", "States": {"A": task("t/boom", json!({}))}});
    let (out, _) = run(doc, json!({})).await;
    assert_eq!(
        out.unwrap_err(),
        Failure {
            task: true,
            ..Failure::new("Boom", "it broke")
        }
    );
}

#[tokio::test]
async fn map_with_selector_and_concurrency() {
    let doc = json!({"StartAt": "M", "States": {"M": {
        "Type": "Map",
        "ItemsPath": "$.items",
        "ItemSelector": {"n.$": "$$.Map.Item.Value", "by.$": "$.by", "i.$": "$$.Map.Item.Index"},
        "MaxConcurrency": 2,
        "ItemProcessor": {"StartAt": "Add", "States": {"Add": task("t/add", json!({}))}},
        "ResultPath": "$.sums",
        "End": true
    }}});
    let (out, calls) = run(doc, json!({"items": [1, 2, 3], "by": 10})).await;
    assert_eq!(
        out.unwrap(),
        json!({"items": [1, 2, 3], "by": 10, "sums": [{"n": 11}, {"n": 12}, {"n": 13}]})
    );
    assert_eq!(calls.len(), 3);
}

#[tokio::test]
async fn map_concurrency_is_bounded() {
    let doc = json!({"StartAt": "M", "States": {"M": {
        "Type": "Map",
        "MaxConcurrency": 2,
        "Iterator": {"StartAt": "S", "States": {"S": task("t/slow", json!({}))}},
        "End": true
    }}});
    let started = std::time::Instant::now();
    let (out, _) = run(doc, json!([1, 2, 3, 4])).await;
    assert_eq!(out.unwrap().as_array().map(Vec::len), Some(4));
    // Four 200 ms items two at a time: two rounds, not one, not four.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(390), "{took:?}");
    assert!(took < Duration::from_millis(790), "{took:?}");
}

#[tokio::test]
async fn map_iteration_failure_fails_the_map_and_map_retry_runs_it_again() {
    let doc = json!({"StartAt": "M", "States": {"M": {
        "Type": "Map",
        "ItemsPath": "$.items",
        "ItemProcessor": {"StartAt": "F", "States": {"F": task("t/flaky", json!({}))}},
        "Retry": [{"ErrorEquals": ["Flaky"], "IntervalSeconds": 0.01, "MaxAttempts": 2}],
        "End": true
    }}});
    let (out, calls) = run(doc, json!({"items": [{"fails": 1}]})).await;
    assert_eq!(out.unwrap(), json!([{"ok": true, "attempts": 2}]));
    assert_eq!(calls.len(), 2);
}

#[tokio::test]
async fn choice_rules_and_default() {
    let doc = json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [
            {"And": [{"Variable": "$.n", "NumericGreaterThan": 5}, {"Variable": "$.s", "StringEquals": "x"}], "Next": "Big"},
            {"Variable": "$.flag", "IsPresent": true, "Next": "Flagged"}
        ], "Default": "Other"},
        "Big": {"Type": "Pass", "Result": "big", "End": true},
        "Flagged": {"Type": "Pass", "Result": "flagged", "End": true},
        "Other": {"Type": "Pass", "Result": "other", "End": true}
    }});
    assert_eq!(
        run(doc.clone(), json!({"n": 6, "s": "x"})).await.0.unwrap(),
        json!("big")
    );
    assert_eq!(
        run(doc.clone(), json!({"n": 6, "s": "y", "flag": 0}))
            .await
            .0
            .unwrap(),
        json!("flagged")
    );
    assert_eq!(
        run(doc.clone(), json!({"n": 1, "s": "x"})).await.0.unwrap(),
        json!("other")
    );
    // As Step Functions: a rule whose Variable is missing is a runtime error.
    assert_eq!(
        run(doc, json!({"n": 6})).await.0.unwrap_err().error,
        "States.Runtime"
    );
}

#[tokio::test]
async fn choice_without_match_or_default_fails() {
    let doc = json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": "E"}]},
        "E": {"Type": "Succeed"}
    }});
    assert_eq!(
        run(doc, json!({"n": 2})).await.0.unwrap_err().error,
        "States.NoChoiceMatched"
    );
}

#[tokio::test]
async fn pass_result_parameters_and_paths() {
    let doc = json!({"StartAt": "P", "States": {
        "P": {"Type": "Pass", "Parameters": {"a.$": "$.x", "list.$": "States.Array($.x, 2)"}, "ResultPath": "$.p", "Next": "Q"},
        "Q": {"Type": "Pass", "Result": {"r": 1}, "ResultPath": "$.q", "OutputPath": "$.q", "End": true}
    }});
    assert_eq!(run(doc, json!({"x": 1})).await.0.unwrap(), json!({"r": 1}));
}

#[tokio::test]
async fn wait_seconds_path_and_timestamp() {
    let doc = json!({"StartAt": "W", "States": {
        "W": {"Type": "Wait", "SecondsPath": "$.s", "Next": "T"},
        "T": {"Type": "Wait", "Timestamp": "2020-01-01T00:00:00Z", "Next": "S"},
        "S": {"Type": "Wait", "Seconds": 0, "End": true}
    }});
    let started = std::time::Instant::now();
    let out = run(doc, json!({"s": 0.3})).await.0.unwrap();
    assert_eq!(out, json!({"s": 0.3}));
    assert!(started.elapsed() >= Duration::from_millis(290));
    let bad = json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "SecondsPath": "$.s", "End": true}}});
    assert_eq!(
        run(bad, json!({"s": "x"})).await.0.unwrap_err().error,
        "States.Runtime"
    );
}

#[tokio::test]
async fn fail_and_succeed() {
    let doc = json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Nope", "Cause": "because"}}});
    assert_eq!(
        run(doc, json!({})).await.0.unwrap_err(),
        Failure::new("Nope", "because")
    );
    let doc = json!({"StartAt": "S", "States": {"S": {"Type": "Succeed", "OutputPath": "$.a"}}});
    assert_eq!(run(doc, json!({"a": [1]})).await.0.unwrap(), json!([1]));
}

#[tokio::test]
async fn a_loop_with_an_exit_runs() {
    let doc = json!({"StartAt": "Add", "States": {
        "Add": {"Type": "Task", "Resource": "${t/add}", "Next": "Enough"},
        "Enough": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericGreaterThanEquals": 3, "Next": "Done"}], "Default": "Add"},
        "Done": {"Type": "Succeed"}
    }});
    let (out, calls) = run(doc, json!({"n": 0})).await;
    assert_eq!(out.unwrap(), json!({"n": 3}));
    assert_eq!(calls.len(), 3);
}

/// A resumed execution takes the recorded Task outcomes: the completed
/// steps are not invoked again, the interrupted one is.
#[tokio::test]
async fn resume_does_not_rerun_completed_tasks() {
    let doc = json!({"StartAt": "M", "States": {"M": {
        "Type": "Map",
        "ItemsPath": "$.items",
        "MaxConcurrency": 1,
        "ItemProcessor": {"StartAt": "E", "States": {
            "E": {"Type": "Task", "Resource": "${t/echo}", "Next": "S"},
            "S": {"Type": "Task", "Resource": "${t/slow}", "End": true}
        }},
        "End": true
    }}});
    let store = Store::in_memory().unwrap();
    let first = Workers::default();
    // Stop the first run mid-way: after the first item, in the second's slow task.
    let stopped = tokio::time::timeout(
        Duration::from_millis(300),
        run_with(
            doc.clone(),
            json!({"items": [1, 2]}),
            &first,
            &store,
            "t:r",
            1,
        ),
    )
    .await;
    assert!(stopped.is_err(), "the first run was stopped mid-way");
    let first_calls = first.calls.lock().clone();
    assert_eq!(
        first_calls.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
        ["t/echo", "t/slow", "t/echo", "t/slow"]
    );
    let second = Workers::default();
    let out = run_with(doc, json!({"items": [1, 2]}), &second, &store, "t:r", 2)
        .await
        .unwrap();
    assert_eq!(out, json!([{"slow": 1}, {"slow": 2}]));
    // Only the interrupted slow task of item 2 ran again.
    assert_eq!(*second.calls.lock(), vec![("t/slow".to_string(), json!(2))]);
    let history = store.history("t:r").await.unwrap();
    let scheduled: Vec<_> = history
        .iter()
        .filter(|e| e.kind == "TaskScheduled")
        .collect();
    assert_eq!(
        scheduled.len(),
        5,
        "four in the first run, one in the second"
    );
    let succeeded = history.iter().filter(|e| e.kind == "TaskSucceeded").count();
    assert_eq!(succeeded, 4, "each task's result recorded once");
    let entered = history
        .iter()
        .filter(|e| e.kind == "StateEntered" && e.state == "M/E")
        .count();
    assert_eq!(entered, 2, "a replayed step adds no event twice");
}

fn load_error(doc: Value) -> AslError {
    asl::parse(&doc.to_string(), &registry()).unwrap_err()
}

fn names_state(e: &AslError, state: &str) {
    match e {
        AslError::State { state: s, .. } => assert_eq!(s, state, "{e}"),
        other => panic!("expected an error naming `{state}`, got {other}"),
    }
}

#[test]
fn load_errors_name_the_state() {
    assert!(matches!(
        asl::parse("{not json", &registry()),
        Err(AslError::Malformed(_))
    ));
    let e = load_error(json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true}}}));
    names_state(&e, "P");
    assert!(
        e.to_string().contains("unknown state type `Parallel`"),
        "{e}"
    );
    let e = load_error(json!({"StartAt": "T", "States": {"T": task("t/nope", json!({}))}}));
    names_state(&e, "T");
    assert!(
        e.to_string().contains("t/nope") && e.to_string().contains("not in the registry"),
        "{e}"
    );
    let e = load_error(json!({"StartAt": "T", "States": {"T": task("t/queue", json!({}))}}));
    names_state(&e, "T");
    assert!(e.to_string().contains("invoke-worker"), "{e}");
    let e = load_error(json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Next": "B"},
        "B": {"Type": "Pass", "Next": "A"}
    }}));
    names_state(&e, "A");
    assert!(e.to_string().contains("never reach an end"), "{e}");
    let e =
        load_error(json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nowhere"}}}));
    names_state(&e, "A");
    assert!(e.to_string().contains("Nowhere"), "{e}");
    let e = load_error(json!({"StartAt": "A", "States": {
        "A": {"Type": "Choice", "Choices": [{"Variable": "$.x", "IsNull": true, "Next": "B"}], "Default": "Gone"},
        "B": {"Type": "Succeed"}
    }}));
    names_state(&e, "A");
    let e = load_error(
        json!({"StartAt": "A", "States": {"A": task("t/echo", json!({
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Missing"}]
        }))}}),
    );
    names_state(&e, "A");
    let e = load_error(json!({"StartAt": "Nope", "States": {"A": {"Type": "Succeed"}}}));
    assert!(
        matches!(e, AslError::Malformed(ref m) if m.contains("Nope")),
        "{e}"
    );
    let e = load_error(
        json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true,
        "ItemProcessor": {"StartAt": "X", "States": {"X": {"Type": "Wait", "End": true}}}}}}),
    );
    names_state(&e, "M/X");
    let e = load_error(
        json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "InputPath": "x", "End": true}}}),
    );
    names_state(&e, "A");
}

#[test]
fn the_repository_workflows_load() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workflows");
    let mut workers: BTreeMap<String, WorldKind> = BTreeMap::new();
    for w in [
        "selection/enqueue-market-selections",
        "notification/get-markets-to-notify",
        "notification/plan-sends",
        "notification/trigger-reminder-email",
    ] {
        workers.insert(w.to_string(), WorldKind::Invoke);
    }
    let loaded = usher_workflows::load_dir(&root, &workers).unwrap();
    assert_eq!(
        loaded.definitions.keys().collect::<Vec<_>>(),
        ["notification", "selection"]
    );
    assert_eq!(loaded.schedules["notification"].cron, "0 0 * * * *");
    // Without the notification workers, the notification file is refused,
    // naming its first Task.
    workers.remove("notification/get-markets-to-notify");
    let e = usher_workflows::load_dir(&root, &workers)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("notification.asl.json") && e.contains("GetMarketsToNotify"),
        "{e}"
    );
}

#[tokio::test]
async fn the_notification_machine_runs_with_stand_in_workers() {
    struct Stand;
    #[async_trait::async_trait]
    impl TaskInvoker for Stand {
        async fn invoke(
            &self,
            worker: &str,
            p: Value,
            _: Option<Duration>,
        ) -> Result<Value, Failure> {
            match worker {
                "notification/get-markets-to-notify" => Ok(json!({
                    "marketIds": ["m1", "m2"], "campaignIds": ["c"],
                    "markets": [{"campaignId": "c", "marketId": "m1"}, {"campaignId": "c", "marketId": "m2"}]
                })),
                "notification/plan-sends" => Ok(json!({"plannedCount": 3, "errors": []})),
                "notification/trigger-reminder-email" if p["marketId"] == "m2" => {
                    Err(Failure::new("UserServiceUnavailable", "down"))
                }
                "notification/trigger-reminder-email" => {
                    Ok(json!({"triggeredCount": 3, "errors": []}))
                }
                other => Err(Failure::new("States.TaskFailed", other.to_string())),
            }
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workflows");
    let text = std::fs::read_to_string(root.join("notification.asl.json")).unwrap();
    // Retries of 2 s would slow the test: the same machine with short ones.
    let text = text.replace("\"IntervalSeconds\": 2", "\"IntervalSeconds\": 0.01");
    let workers: BTreeMap<String, WorldKind> = [
        "notification/get-markets-to-notify",
        "notification/plan-sends",
        "notification/trigger-reminder-email",
    ]
    .into_iter()
    .map(|w| (w.to_string(), WorldKind::Invoke))
    .collect();
    let m = asl::parse(&text, &workers).unwrap();
    let store = Store::in_memory().unwrap();
    store
        .create("n:1", "notification", &json!({}))
        .await
        .unwrap();
    let out = Execution {
        id: "n:1".into(),
        workflow: "notification".into(),
        input: json!({}),
        start_time: String::new(),
        run: 1,
        machine: &m,
        invoker: &Stand,
        store: &store,
    }
    .run()
    .await
    .unwrap();
    assert_eq!(
        out["markets"],
        json!([
            {"campaignId": "c", "marketId": "m1", "plannedCount": 3, "triggeredCount": 3},
            {"campaignId": "c", "marketId": "m2", "error": "UserServiceUnavailable", "cause": "down"}
        ])
    );
}

fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.into_iter()
                .filter(|(k, v)| !(k == "End" && v.is_null()))
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        other => other,
    }
}
