//! selection/report-verdicts under wasmtime, on the repository's registry
//! entry, with a scripted Campaign Service (`verdict-reports/batch`) that
//! counts each report id once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use usher_engine::{BatchMessage, Input, Output};
use usher_testing::{json_response, FakeServices, TestHost};

const WORKER: &str = "selection/report-verdicts";

#[derive(Default)]
struct Stats {
    /// market path → [winners, losers, waitlisted].
    reported: BTreeMap<String, [u64; 3]>,
    seen: BTreeSet<String>,
}

fn campaign_service(state: Arc<Mutex<Stats>>) -> Arc<FakeServices> {
    FakeServices::with(move |req| {
        assert_eq!(req.service, "campaigns");
        let Some(market) = req.path.strip_suffix("/verdict-reports/batch") else {
            return Ok(json_response(404, r#"{"error":"no route"}"#));
        };
        if market.ends_with("/markets/unknown") {
            return Ok(json_response(404, r#"{"error":"no such market"}"#));
        }
        let body: Value =
            serde_json::from_str(req.body.as_deref().unwrap_or("{}")).unwrap_or_default();
        let mut s = state.lock().expect("state");
        let mut results = Vec::new();
        for report in body["reports"].as_array().cloned().unwrap_or_default() {
            let rid = report["reportId"].as_str().unwrap_or_default().to_string();
            let counted = s.seen.insert(format!("{market}#{rid}"));
            if counted {
                let c = &report["counts"];
                let e = s.reported.entry(market.to_string()).or_default();
                e[0] += c["winners"].as_u64().unwrap_or(0);
                e[1] += c["losers"].as_u64().unwrap_or(0);
                e[2] += c["waitlisted"].as_u64().unwrap_or(0);
            }
            results.push(json!({"reportId": rid, "counted": counted}));
        }
        Ok(json_response(200, &json!({"results": results}).to_string()))
    })
}

fn host(services: Arc<FakeServices>) -> TestHost {
    TestHost::builder()
        .registry_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../workers"))
        .services(services)
        .build()
        .expect("test host")
}

fn report(id: &str, market: &str, report_id: &str, w: u64, l: u64) -> BatchMessage {
    BatchMessage {
        message_id: id.to_string(),
        body: json!({"campaignId": "c1", "marketId": market, "reportId": report_id,
                     "counts": {"winners": w, "losers": l, "waitlisted": 1}})
        .to_string(),
        attributes: vec![],
        receive_count: 1,
    }
}

fn failures(out: &Output) -> Vec<String> {
    match out {
        Output::Batch(b) => {
            let mut f = b.failures.clone();
            f.sort();
            f
        }
        other => panic!("not a batch outcome: {other:?}"),
    }
}

#[tokio::test]
async fn each_report_is_counted_once_even_when_delivered_again() {
    let state = Arc::new(Mutex::new(Stats::default()));
    let services = campaign_service(state.clone());
    let host = host(services.clone());
    let out = host
        .invoke(
            WORKER,
            Input::Batch(vec![
                report("a", "m1", "c1.m1#0", 2, 22),
                report("b", "m1", "c1.m1#1", 1, 23),
            ]),
        )
        .await
        .expect("invocation");
    assert!(failures(&out.output).is_empty(), "{:?}", out.output);
    // Both reports of the market in one request.
    let calls = services.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].path,
        "/campaigns/c1/markets/m1/verdict-reports/batch"
    );
    let body: Value = serde_json::from_str(calls[0].body.as_deref().unwrap_or("")).expect("json");
    assert_eq!(
        body,
        json!({"reports": [
            {"reportId": "c1.m1#0", "counts": {"winners": 2, "losers": 22, "waitlisted": 1}},
            {"reportId": "c1.m1#1", "counts": {"winners": 1, "losers": 23, "waitlisted": 1}},
        ]})
    );
    // Redelivered: answered counted=false, which is a success.
    let out = host
        .invoke(
            WORKER,
            Input::Batch(vec![report("a", "m1", "c1.m1#0", 2, 22)]),
        )
        .await
        .expect("invocation");
    assert!(failures(&out.output).is_empty(), "{:?}", out.output);
    assert_eq!(
        state
            .lock()
            .expect("state")
            .reported
            .get("/campaigns/c1/markets/m1"),
        Some(&[3, 45, 2])
    );
}

#[tokio::test]
async fn an_unknown_market_or_a_bad_body_fails_only_its_message() {
    let state = Arc::new(Mutex::new(Stats::default()));
    let host = host(campaign_service(state.clone()));
    let mut bad = report("bad", "m1", "x", 0, 0);
    bad.body = "{\"campaignId\": \"c1\"}".into();
    let out = host
        .invoke(
            WORKER,
            Input::Batch(vec![
                report("a", "m1", "c1.m1#0", 2, 22),
                report("u", "unknown", "c1.unknown#0", 1, 0),
                bad,
            ]),
        )
        .await
        .expect("invocation");
    assert_eq!(failures(&out.output), vec!["bad", "u"]);
    assert_eq!(state.lock().expect("state").seen.len(), 1);
}
