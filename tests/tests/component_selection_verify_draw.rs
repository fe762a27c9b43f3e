//! selection/verify-draw under wasmtime, on the repository's registry
//! entries: a draw made by selection/enqueue-market-selections verifies,
//! before and after its selections are saved; a changed entry or a wrong
//! saved verdict does not.

mod selection_common;

use selection_common::{save, sent_selections, services, world};
use serde_json::{json, Value};
use usher_engine::{Input, Output};
use usher_testing::TestHost;

async fn invoke(host: &TestHost, worker: &str, payload: Value) -> Result<Value, String> {
    let out = host
        .invoke(worker, Input::Invoke(payload))
        .await
        .expect("invocation");
    match out.output {
        Output::Invoke(r) => r.map_err(|e| format!("{}: {}", e.kind, e.message)),
        other => panic!("{other:?}"),
    }
}

async fn verify(host: &TestHost) -> Value {
    invoke(host, "selection/verify-draw", json!({"drawId": "c1.m1"}))
        .await
        .expect("verify answer")
}

#[tokio::test]
async fn a_draw_verifies_and_a_changed_one_does_not() {
    let w = world(1_000, 120, 30, 200);
    let host = TestHost::builder()
        .registry_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../workers"))
        .services(services(&w))
        .build()
        .expect("test host");
    let drawn = invoke(
        &host,
        "selection/enqueue-market-selections",
        json!({"campaignId": "c1", "marketId": "m1"}),
    )
    .await
    .expect("draw");
    assert_eq!(drawn["errors"], json!([]), "{drawn}");

    // Before anything is saved: it matches, nothing saved yet.
    let answer = verify(&host).await;
    assert_eq!(answer["matches"], true, "{answer}");
    assert_eq!(answer["resultDigest"], drawn["stats"]["resultDigest"]);
    assert_eq!(answer["selections"]["saved"], 0);

    // Saved as save-selections would: every verdict and code agrees.
    let sent = sent_selections(&host.calls("queue", "send-batch"));
    save(&w, &sent);
    let answer = verify(&host).await;
    assert_eq!(answer["matches"], true, "{answer}");
    assert_eq!(answer["selections"]["complete"], true);
    assert_eq!(answer["selections"]["codesChecked"], 120);

    // A saved loser turned winner.
    let loser = sent
        .iter()
        .find(|s| s["verdict"] == "LOSER")
        .expect("a loser")
        .clone();
    let mut forged = loser.clone();
    forged["verdict"] = json!("WINNER");
    forged["code"] = json!("FORGED");
    save(&w, &[forged]);
    let answer = verify(&host).await;
    assert_eq!(answer["matches"], false);
    assert_eq!(answer["selections"]["disagree"], 1, "{answer}");
    save(&w, &[loser]);

    // A changed score: the inputs no longer match the record.
    {
        let mut w = w.lock().expect("world");
        let first = w.entries.keys().next().cloned().expect("a fan");
        *w.entries.get_mut(&first).expect("fan") += 1;
    }
    let answer = verify(&host).await;
    assert_eq!(answer["matches"], false);
    assert!(
        answer["differences"].to_string().contains("input digest"),
        "{answer}"
    );

    let missing = invoke(&host, "selection/verify-draw", json!({"drawId": "nope"})).await;
    assert!(missing.is_err_and(|e| e.starts_with("NotFound")));
}
