//! End to end on `usher up` with a copy of the repository's registry: fans'
//! user records sent to the `user-info` queue reach the User Service
//! (services/user-service behind the listener, called by URL through the
//! `services` capability) by way of registration/upsert-users; a message
//! holding an invalid user fails alone and, after `max_receive_count` (2)
//! receives, lands in `user-info-dlq` while every other user is stored.

use crate::common;

use std::time::{Duration, Instant};

use common::Platform;
use serde_json::{json, Value};
use usher_capabilities::{OutgoingMessage, QueueBackend, TableBackend};

const FANS: usize = 120;

fn outgoing(body: Value) -> OutgoingMessage {
    OutgoingMessage {
        body: body.to_string(),
        attributes: Vec::new(),
        delay_seconds: None,
    }
}

fn user(id: &str) -> Value {
    json!({"globalUserId": id, "email": format!("{id}@example.com"), "country": "us", "firstName": "Fan"})
}

fn dlq(platform: &Platform) -> Vec<Value> {
    let out = platform.run(&[
        "dlq",
        "ls",
        "user-info-dlq",
        "--json",
        "--data",
        platform.data.to_str().expect("utf-8"),
    ]);
    serde_json::from_str(&out).expect("dlq ls --json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn user_records_reach_the_user_service_and_an_invalid_one_goes_to_the_dlq() {
    let mut platform = Platform::new(|name, text| match name {
        "resources.yaml" => text.replace(
            "user-info: { visibility_timeout_s: 30",
            "user-info: { visibility_timeout_s: 1",
        ),
        _ => text,
    });
    let resources =
        std::fs::read_to_string(platform.registry_dir.join("resources.yaml")).expect("read");
    assert!(
        resources.contains("user-info: { visibility_timeout_s: 1, max_receive_count: 2, dead_letter: user-info-dlq }"),
        "{resources}"
    );
    platform.start().await;
    let embedded = platform.embedded();
    let queues = embedded.queues();

    let mut ids: Vec<String> = (0..FANS).map(|i| format!("fan-{i:03}")).collect();
    let mut messages: Vec<OutgoingMessage> = ids.iter().map(|id| outgoing(user(id))).collect();
    messages.push(outgoing(json!({"users": [user("pair-a"), user("pair-b")]})));
    messages.push(outgoing(
        json!({"globalUserId": "fan-bad", "email": "not-an-address"}),
    ));
    ids.extend(["pair-a".to_string(), "pair-b".to_string()]);
    for chunk in messages.chunks(10) {
        let sent = queues
            .send_batch("user-info", chunk.to_vec())
            .await
            .expect("send");
        assert!(sent.iter().all(Result::is_ok), "{sent:?}");
    }

    // Every valid user is stored, normalized, as the User Service answers it.
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let tables = embedded.tables();
    loop {
        let mut missing = 0;
        for id in &ids {
            let key = json!({"PK": format!("USER#{id}"), "SK": "PROFILE"});
            if tables.get("users", &key).await.expect("get").is_none() {
                missing += 1;
            }
        }
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} users not stored: {}\n{}",
            platform.status(),
            common::tail(&platform.log(), 40)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let answer: Value = client
        .get(format!("{}/services/users/users/fan-007", platform.base))
        .send()
        .await
        .expect("GET user")
        .json()
        .await
        .expect("json");
    assert_eq!(
        answer,
        json!({"globalUserId": "fan-007", "email": "fan-007@example.com", "country": "US", "firstName": "Fan"})
    );

    // The invalid one: in the DLQ after two receives, alone.
    let deadline = Instant::now() + Duration::from_secs(60);
    let dead = loop {
        let dead = dlq(&platform);
        if !dead.is_empty() {
            break dead;
        }
        assert!(
            Instant::now() < deadline,
            "nothing reached user-info-dlq: {}\n{}",
            platform.status(),
            common::tail(&platform.log(), 40)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(dlq(&platform).len(), dead.len());
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0]["body"]
            .as_str()
            .is_some_and(|b| b.contains("fan-bad")),
        "{dead:?}"
    );
    let status = platform.status();
    assert_eq!(
        status["workers"]["registration/upsert-users"]["failed"], 2,
        "{status}"
    );
    let bad = tables
        .get("users", &json!({"PK": "USER#fan-bad", "SK": "PROFILE"}))
        .await
        .expect("get");
    assert!(bad.is_none());

    let status = platform.stop().await;
    assert!(status.success(), "{}", platform.log());
}
