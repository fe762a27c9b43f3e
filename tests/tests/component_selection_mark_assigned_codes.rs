//! selection/mark-assigned-codes under wasmtime, on the repository's
//! registry entry (a stream worker on demand-table), with a scripted Code
//! Service that marks reserved codes once and refuses a code held by
//! another fan.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use usher_engine::{ChangeRecord, Input, Output};
use usher_testing::{json_response, FakeServices, TestHost};

const WORKER: &str = "selection/mark-assigned-codes";

/// code → (fan, marked).
type Codes = BTreeMap<String, Option<String>>;

fn code_service(codes: Arc<Mutex<Codes>>, marks: Arc<Mutex<u64>>) -> Arc<FakeServices> {
    FakeServices::with(move |req| {
        assert_eq!(
            (req.service.as_str(), req.path.as_str()),
            ("codes", "/codes/mark-assigned")
        );
        let body: Value =
            serde_json::from_str(req.body.as_deref().unwrap_or("{}")).unwrap_or_default();
        let mut codes = codes.lock().expect("codes");
        let (mut marked, mut already, mut conflicts) = (0, 0, Vec::new());
        for a in body["assignments"].as_array().into_iter().flatten() {
            let code = a["code"].as_str().unwrap_or_default().to_string();
            let fan = a["globalUserId"].as_str().unwrap_or_default().to_string();
            match codes.get(&code).cloned() {
                Some(None) => {
                    codes.insert(code, Some(fan));
                    *marks.lock().expect("marks") += 1;
                    marked += 1;
                }
                Some(Some(holder)) if holder == fan => already += 1,
                Some(Some(holder)) => conflicts.push(json!({"code": code, "globalUserId": fan,
                    "reason": format!("assigned to {holder}")})),
                None => conflicts
                    .push(json!({"code": code, "globalUserId": fan, "reason": "not reserved"})),
            }
        }
        Ok(json_response(
            200,
            &json!({"marked": marked, "already": already, "conflicts": conflicts}).to_string(),
        ))
    })
}

fn image(user: &str, verdict: &str, code: Option<&str>) -> Value {
    let mut item = json!({
        "PK": format!("ENTRY#c1#{user}"), "SK": "ENTRY", "campaignId": "c1",
        "globalUserId": user, "marketId": "m1", "verdict": verdict, "version": 1,
    });
    if let Some(code) = code {
        item["accessCode"] = json!(code);
    }
    item
}

fn record(seq: u64, event: &str, new: Option<Value>, old: Option<Value>) -> ChangeRecord {
    let keys = new
        .as_ref()
        .or(old.as_ref())
        .map(|i| json!({"PK": i["PK"], "SK": "ENTRY"}));
    serde_json::from_value(json!({
        "table": "demand-table", "eventName": event, "keys": keys,
        "newImage": new, "oldImage": old, "sequenceNumber": seq.to_string(),
    }))
    .expect("change record")
}

fn won(seq: u64, user: &str, code: &str) -> ChangeRecord {
    record(
        seq,
        "MODIFY",
        Some(image(user, "WINNER", Some(code))),
        Some(image(user, "PENDING", None)),
    )
}

fn failures(out: &Output) -> Vec<String> {
    match out {
        Output::Stream(s) => s.failures.clone(),
        other => panic!("not a stream outcome: {other:?}"),
    }
}

#[tokio::test]
async fn marks_new_winners_codes_once_and_fails_a_conflict_by_sequence_number() {
    let codes: Arc<Mutex<Codes>> = Arc::new(Mutex::new(
        ["A", "B", "C"]
            .iter()
            .map(|c| (c.to_string(), None))
            .collect(),
    ));
    codes
        .lock()
        .expect("codes")
        .insert("HELD".into(), Some("u99".into()));
    let marks = Arc::new(Mutex::new(0u64));
    let services = code_service(codes.clone(), marks.clone());
    let host = TestHost::builder()
        .registry_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../workers"))
        .services(services.clone())
        .build()
        .expect("test host");
    let batch = vec![
        won(1, "u1", "A"),
        record(
            2,
            "MODIFY",
            Some(image("u2", "LOSER", None)),
            Some(image("u2", "PENDING", None)),
        ),
        record(3, "INSERT", Some(image("u3", "PENDING", None)), None),
        won(4, "u4", "B"),
        // The same code again (a later write of the entry): not marked again.
        record(
            5,
            "MODIFY",
            Some(image("u1", "WINNER", Some("A"))),
            Some(image("u1", "WINNER", Some("A"))),
        ),
        won(6, "u6", "HELD"),
        won(7, "u7", "C"),
    ];
    let out = host
        .invoke(WORKER, Input::Stream(batch.clone()))
        .await
        .expect("invocation");
    assert_eq!(failures(&out.output), vec!["6".to_string()]);
    assert_eq!(*marks.lock().expect("marks"), 3);
    // One market: one request of four codes.
    let calls = services.calls();
    assert_eq!(calls.len(), 1);
    let body: Value = serde_json::from_str(calls[0].body.as_deref().unwrap_or("")).expect("json");
    assert_eq!(
        (&body["campaignId"], &body["marketId"]),
        (&json!("c1"), &json!("m1"))
    );
    assert_eq!(body["assignments"].as_array().map(Vec::len), Some(4));

    // The stream retries from the failed record; the codes marked before are
    // `already`, nothing is marked twice.
    let out = host
        .invoke(WORKER, Input::Stream(batch[5..].to_vec()))
        .await
        .expect("invocation");
    assert_eq!(failures(&out.output), vec!["6".to_string()]);
    assert_eq!(*marks.lock().expect("marks"), 3);
    assert_eq!(
        codes.lock().expect("codes").get("HELD"),
        Some(&Some("u99".to_string()))
    );
}

#[tokio::test]
async fn an_unavailable_code_service_fails_every_kept_record() {
    let services = FakeServices::with(|_| Ok(json_response(503, r#"{"error":"busy"}"#)));
    let host = TestHost::builder()
        .registry_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../workers"))
        .services(services)
        .build()
        .expect("test host");
    let out = host
        .invoke(
            WORKER,
            Input::Stream(vec![
                record(1, "INSERT", Some(image("u0", "PENDING", None)), None),
                won(2, "u1", "A"),
                won(3, "u2", "B"),
            ]),
        )
        .await
        .expect("invocation");
    assert_eq!(
        failures(&out.output),
        vec!["2".to_string(), "3".to_string()]
    );
}
