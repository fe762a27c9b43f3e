//! Differential test of the interpreter against moto's Step Functions
//! (moto 5.2 with `execute_state_machine` set through `POST
//! /moto-api/config`, Lambda without Docker). moto's Lambda tasks answer
//! their payload (its lambda-simple backend echoes the request), so both
//! sides run with echoing workers: the comparison covers what the
//! interpreter itself does — Choice, Map (ItemsPath, ItemSelector with the
//! context object, MaxConcurrency 1 so the order is fixed), Pass (Result,
//! Parameters, intrinsic functions), Fail, Retry and Catch on a Map, and
//! InputPath, Parameters, ResultSelector, ResultPath, OutputPath — state by
//! state: the status, the output (or the error) and the sequence of states
//! entered.
//!
//! A known difference, kept out of the cases: moto's `States.ALL` also
//! catches `States.Runtime` (a path that selects nothing); Step Functions'
//! does not (its documentation: "States.ALL … cannot catch … Runtime
//! error types"), and usher follows Step Functions.
//!
//! moto is driven with boto3 from moto's own venv (`tests/moto_sfn.py`,
//! lighter than adding aws-sdk-sfn to the build). Needs `USHER_TEST_AWS`
//! (`scripts/servers start DIR`); skipped without it unless
//! `USHER_REQUIRE_SERVERS=1`. The python is `USHER_MOTO_PYTHON`, or the
//! venv `scripts/servers` installs (`$HOME/.cache/usher/venv-moto`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use usher_registry::WorldKind;
use usher_workflows::interp::Execution;
use usher_workflows::{asl, Failure, Store, TaskInvoker};

struct Echo;

#[async_trait::async_trait]
impl TaskInvoker for Echo {
    async fn invoke(&self, _: &str, payload: Value, _: Option<Duration>) -> Result<Value, Failure> {
        Ok(payload)
    }
}

fn endpoint() -> Option<String> {
    match std::env::var("USHER_TEST_AWS") {
        Ok(e) if !e.is_empty() => Some(e),
        _ => {
            if std::env::var("USHER_REQUIRE_SERVERS").as_deref() == Ok("1") {
                panic!("USHER_TEST_AWS is not set but USHER_REQUIRE_SERVERS=1: start the servers with `scripts/servers start DIR` and source DIR/servers.env");
            }
            eprintln!("skipped: USHER_TEST_AWS is not set (moto)");
            None
        }
    }
}

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("USHER_MOTO_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".to_string());
    PathBuf::from(home).join(".cache/usher/venv-moto/bin/python")
}

/// The workers a definition's Task resources name (`${domain/worker}`).
fn workers(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("\"${") {
        let after = &rest[i + 3..];
        if let Some(end) = after.find("}\"") {
            out.push(after[..end].to_string());
            rest = &after[end..];
        } else {
            break;
        }
    }
    out.sort();
    out.dedup();
    out
}

fn function_name(worker: &str) -> String {
    worker.replace('/', "-")
}

/// The definition as deployed: each `${domain/worker}` replaced by the
/// function's ARN.
fn deployed(text: &str) -> String {
    let mut out = text.to_string();
    for w in workers(text) {
        out = out.replace(
            &format!("${{{w}}}"),
            &format!(
                "arn:aws:lambda:us-east-1:123456789012:function:{}",
                function_name(&w)
            ),
        );
    }
    out
}

fn on_moto(endpoint: &str, name: &str, text: &str, input: &Value) -> Value {
    let request = json!({
        "endpoint": endpoint,
        "name": name,
        "definition": deployed(text),
        "functions": workers(text).iter().map(|w| function_name(w)).collect::<Vec<_>>(),
        "input": input.to_string(),
    });
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/moto_sfn.py");
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("moto's python (USHER_MOTO_PYTHON)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.to_string().as_bytes())
        .expect("write the request");
    let out = child.wait_with_output().expect("moto_sfn.py");
    assert!(
        out.status.success(),
        "moto_sfn.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("moto_sfn.py prints JSON")
}

async fn locally(text: &str, input: &Value) -> Value {
    let registry: BTreeMap<String, WorldKind> = workers(text)
        .into_iter()
        .map(|w| (w, WorldKind::Invoke))
        .collect();
    let machine = asl::parse(text, &registry).expect("the definition loads");
    let store = Store::in_memory().expect("store");
    store.create("x:1", "x", input).await.expect("create");
    let outcome = Execution {
        id: "x:1".into(),
        workflow: "x".into(),
        input: input.clone(),
        start_time: "2026-01-01T00:00:00.000Z".into(),
        run: 1,
        machine: &machine,
        invoker: &Echo,
        store: &store,
    }
    .run()
    .await;
    let entered: Vec<String> = store
        .history("x:1")
        .await
        .expect("history")
        .into_iter()
        .filter(|e| e.kind == "StateEntered")
        .map(|e| e.state.rsplit('/').next().unwrap_or_default().to_string())
        .collect();
    match outcome {
        Ok(output) => {
            json!({"status": "SUCCEEDED", "output": output, "error": null, "entered": entered})
        }
        Err(f) => {
            json!({"status": "FAILED", "output": null, "error": f.error, "entered": entered})
        }
    }
}

/// (name, definition, input) of every machine compared.
fn cases() -> Vec<(String, String, Value)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../workflows");
    let file = |n: &str| std::fs::read_to_string(root.join(n)).expect("workflow file");
    let mut cases = vec![
        (
            "selection".to_string(),
            file("selection.asl.json"),
            json!({"campaignId": "c1", "marketIds": ["m1", "m2"]}),
        ),
        (
            "notification".to_string(),
            file("notification.asl.json"),
            json!({"round": 1}),
        ),
    ];
    let machines = [
        (
            "paths",
            json!({"StartAt": "T", "States": {
                "T": {"Type": "Task", "Resource": "${t/echo}",
                      "InputPath": "$.in",
                      "Parameters": {"v.$": "$.x", "fixed": [1, {"k": "v"}], "f.$": "States.Format('{}-{}', $.x, $.s)", "a.$": "States.Array($.x, $.s)"},
                      "ResultSelector": {"got.$": "$.v", "f.$": "$.f", "a.$": "$.a"},
                      "ResultPath": "$.in.result",
                      "OutputPath": "$.in",
                      "Next": "P"},
                "P": {"Type": "Pass", "Result": {"r": [1, 2]}, "ResultPath": "$.pass", "Next": "Q"},
                "Q": {"Type": "Pass", "InputPath": "$.pass", "Parameters": {"len.$": "States.ArrayLength($.r)", "first.$": "$.r[0]"}, "ResultPath": null, "Next": "End"},
                "End": {"Type": "Pass", "OutputPath": "$.result", "End": true}
            }}),
            json!({"in": {"x": 7, "s": "seven"}, "other": true}),
        ),
        (
            "choice",
            json!({"StartAt": "C", "States": {
                "C": {"Type": "Choice", "Choices": [
                    {"And": [{"Variable": "$.n", "NumericGreaterThan": 5}, {"Not": {"Variable": "$.s", "StringEquals": "no"}}], "Next": "Big"},
                    {"Variable": "$.flag", "IsPresent": true, "Next": "Flagged"},
                    {"Or": [{"Variable": "$.s", "StringMatches": "a*z"}, {"Variable": "$.b", "BooleanEquals": true}], "Next": "Matched"}
                ], "Default": "Other"},
                "Big": {"Type": "Pass", "Result": "big", "ResultPath": "$.route", "Next": "T"},
                "Flagged": {"Type": "Pass", "Result": "flagged", "ResultPath": "$.route", "Next": "T"},
                "Matched": {"Type": "Pass", "Result": "matched", "ResultPath": "$.route", "Next": "T"},
                "Other": {"Type": "Fail", "Error": "NoRoute", "Cause": "no rule matched"},
                "T": {"Type": "Choice", "Choices": [{"Variable": "$.t", "TimestampLessThan": "2026-06-01T00:00:00Z", "Next": "Early"}], "Default": "Late"},
                "Early": {"Type": "Succeed"},
                "Late": {"Type": "Succeed", "OutputPath": "$.route"}
            }}),
            json!({"n": 3, "s": "abcz", "t": "2026-07-01T00:00:00Z"}),
        ),
        (
            "map",
            json!({"StartAt": "M", "States": {
                "M": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 1,
                      "ItemSelector": {"value.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index", "tag.$": "$.tag"},
                      "ItemProcessor": {"StartAt": "Even", "States": {
                          "Even": {"Type": "Choice", "Choices": [{"Variable": "$.value.n", "NumericGreaterThan": 1, "Next": "Work"}], "Default": "Skip"},
                          "Work": {"Type": "Task", "Resource": "${t/echo}", "ResultSelector": {"n.$": "$.value.n", "i.$": "$.index"}, "End": true},
                          "Skip": {"Type": "Pass", "Result": "skipped", "End": true}
                      }},
                      "ResultPath": "$.results", "Next": "Done"},
                "Done": {"Type": "Succeed"}
            }}),
            json!({"tag": "x", "items": [{"n": 1}, {"n": 2}, {"n": 3}]}),
        ),
        (
            "catch",
            json!({"StartAt": "M", "States": {
                "M": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 1,
                      "ItemProcessor": {"StartAt": "Check", "States": {
                          "Check": {"Type": "Choice", "Choices": [{"Variable": "$", "StringEquals": "bad", "Next": "Bad"}], "Default": "Ok"},
                          "Bad": {"Type": "Fail", "Error": "BadItem", "Cause": "a bad item"},
                          "Ok": {"Type": "Task", "Resource": "${t/echo}", "End": true}
                      }},
                      "Retry": [{"ErrorEquals": ["BadItem"], "IntervalSeconds": 1, "MaxAttempts": 1}],
                      "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Recorded"}],
                      "Next": "Done"},
                "Recorded": {"Type": "Pass", "Parameters": {"error.$": "$.error.Error", "cause.$": "$.error.Cause"}, "Next": "Failed"},
                "Failed": {"Type": "Fail", "Error": "Recorded"},
                "Done": {"Type": "Succeed"}
            }}),
            json!({"items": ["a", "bad"]}),
        ),
        (
            "caught-pass-on",
            json!({"StartAt": "M", "States": {
                "M": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 1,
                      "ItemProcessor": {"StartAt": "Bad", "States": {"Bad": {"Type": "Fail", "Error": "Nope", "Cause": "always"}}},
                      "Catch": [{"ErrorEquals": ["Nope"], "ResultPath": "$.caught", "Next": "After"}],
                      "End": true},
                "After": {"Type": "Pass", "End": true}
            }}),
            json!({"items": [1]}),
        ),
    ];
    for (name, doc, input) in machines {
        cases.push((name.to_string(), doc.to_string(), input));
    }
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_interpreter_agrees_with_moto() {
    let Some(endpoint) = endpoint() else { return };
    let run = std::process::id();
    let mut disagreements = Vec::new();
    for (name, text, input) in cases() {
        let local = locally(&text, &input).await;
        let moto = tokio::task::spawn_blocking({
            let (endpoint, text, input) = (endpoint.clone(), text.clone(), input.clone());
            let machine = format!("{name}-{run}");
            move || on_moto(&endpoint, &machine, &text, &input)
        })
        .await
        .expect("moto run");
        eprintln!("{name}:\n  usher {local}\n  moto  {moto}");
        for field in ["status", "output", "error", "entered"] {
            if local[field] != moto[field] {
                disagreements.push(format!(
                    "{name}: {field}: usher {} vs moto {}",
                    local[field], moto[field]
                ));
            }
        }
    }
    assert!(
        disagreements.is_empty(),
        "usher and moto disagree:\n{}",
        disagreements.join("\n")
    );
}
