//! testing/queue-sender: the queue capability refuses a queue outside the
//! worker's grant with a guest-visible error, per message.

use usher_engine::{BatchMessage, Input, Output};
use usher_testing::{components, TestHost};

fn msg(id: &str, queue: &str) -> BatchMessage {
    BatchMessage {
        message_id: id.into(),
        body: format!("{{\"for\":\"{queue}\"}}"),
        attributes: vec![("queue".into(), queue.into())],
        receive_count: 1,
    }
}

#[tokio::test]
async fn sends_to_granted_queues_and_is_denied_the_others() {
    let host = TestHost::builder()
        .resources("queues: { inbox: {}, allowed: {}, forbidden: {} }")
        .worker(
            &components::TESTING_QUEUE_SENDER,
            "trigger: { queue: inbox }\ngrants: { queues: [allowed] }",
        )
        .build()
        .expect("test host");
    let out = host
        .invoke(
            "testing/queue-sender",
            Input::Batch(vec![
                msg("ok", "allowed"),
                msg("no", "forbidden"),
                msg("ghost", "nonexistent"),
            ]),
        )
        .await
        .expect("invocation");
    let Output::Batch(b) = &out.output else {
        panic!("{:?}", out.output)
    };
    let mut failures = b.failures.clone();
    failures.sort();
    assert_eq!(failures, vec!["ghost".to_string(), "no".to_string()]);
    let calls = host.calls("queue", "send-batch");
    let denied: Vec<_> = calls
        .iter()
        .filter(|c| c.outcome.as_ref().is_err_and(|e| e.starts_with("denied")))
        .collect();
    assert_eq!(denied.len(), 2, "{calls:?}");
    let queued = host
        .embedded
        .queues()
        .receive("allowed", 10, Some(std::time::Duration::from_secs(30)))
        .await
        .expect("receive");
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].body, "{\"for\":\"allowed\"}");
}

#[tokio::test]
async fn a_component_importing_an_ungranted_capability_is_refused_at_start() {
    let err = TestHost::builder()
        .resources("queues: { inbox: {} }")
        .worker(
            &components::TESTING_QUEUE_SENDER,
            "trigger: { queue: inbox }",
        )
        .build()
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("testing/queue-sender"), "{err}");
    assert!(err.contains("usher:platform/queue"), "{err}");
}
