use super::*;
use usher_sdk::fakes::{json_response, Fakes};
use usher_sdk::Error;

fn user(id: &str) -> Value {
    json!({"globalUserId": id, "email": format!("{id}@example.com"), "country": "US"})
}

fn msg(id: &str, body: Value) -> Message {
    Message::new(id, body.to_string())
}

/// A User Service that takes every user but those whose id starts with
/// `refused`, as the real one answers.
fn service(request: &Request) -> usher_sdk::Result<services::Response> {
    let body: Value =
        serde_json::from_str(request.body.as_deref().unwrap_or("{}")).unwrap_or_default();
    let users = body["users"].as_array().cloned().unwrap_or_default();
    let failures: Vec<Value> = users
        .iter()
        .enumerate()
        .filter(|(_, u)| {
            u["globalUserId"]
                .as_str()
                .is_some_and(|id| id.starts_with("refused"))
        })
        .map(|(i, u)| json!({"index": i, "globalUserId": u["globalUserId"], "reason": "refused"}))
        .collect();
    Ok(json_response(
        200,
        &json!({"upserted": users.len() - failures.len(), "failures": failures}),
    ))
}

fn bodies(fakes: &Fakes) -> Vec<Vec<String>> {
    fakes
        .requests()
        .iter()
        .map(|r| {
            assert_eq!(
                (r.service.as_str(), r.method, r.path.as_str()),
                ("users", Method::Post, "/users/batch-upsert")
            );
            let body: Value =
                serde_json::from_str(r.body.as_deref().unwrap_or("{}")).expect("json");
            body["users"]
                .as_array()
                .expect("users")
                .iter()
                .filter_map(|u| u["globalUserId"].as_str().map(String::from))
                .collect()
        })
        .collect()
}

#[test]
fn both_message_shapes_are_upserted_in_one_call() {
    let fakes = Fakes::new().on_service("users", service);
    let _i = fakes.install();
    let r = process(
        &Settings::default(),
        &[
            msg("a", user("u1")),
            msg("b", json!({"users": [user("u2"), user("u3")]})),
            msg("c", json!({"users": []})),
        ],
    );
    assert!(r.failures.is_empty(), "{r:?}");
    assert_eq!((r.received, r.processed), (3, 3));
    assert_eq!(bodies(&fakes), [["u1", "u2", "u3"]]);
    assert_eq!(fakes.count("call_many"), 1);
}

#[test]
fn an_invalid_user_fails_only_its_own_message() {
    let fakes = Fakes::new().on_service("users", service);
    let _i = fakes.install();
    let r = process(
        &Settings::default(),
        &[
            msg("ok", user("u1")),
            msg("bad-email", json!({"globalUserId": "u2", "email": "nope"})),
            msg(
                "mixed",
                json!({"users": [user("u3"), {"globalUserId": "u4", "email": "u4@example.com", "country": "ZZ"}]}),
            ),
            Message::new("garbage", "{not json"),
            msg("array", json!([user("u5")])),
            msg("users-not-array", json!({"users": user("u6")})),
            msg("refused-by-service", user("refused-1")),
        ],
    );
    assert_eq!(
        r.failures,
        [
            "bad-email",
            "mixed",
            "garbage",
            "array",
            "users-not-array",
            "refused-by-service"
        ]
    );
    // The valid records were sent (u3 of the failing message too).
    assert_eq!(bodies(&fakes), [["u1", "u3", "refused-1"]]);
}

#[test]
fn chunks_of_25_and_a_failed_chunk_fails_only_its_messages() {
    let fakes = Fakes::new().on_service("users", |request: &Request| {
        let body: Value =
            serde_json::from_str(request.body.as_deref().unwrap_or("{}")).unwrap_or_default();
        if body["users"]
            .as_array()
            .is_some_and(|u| u.iter().any(|u| u["globalUserId"] == "u30"))
        {
            return Err(Error::Unavailable("timeout".into()));
        }
        service(request)
    });
    let _i = fakes.install();
    let messages: Vec<Message> = (0..60)
        .map(|i| msg(&format!("m{i}"), user(&format!("u{i}"))))
        .collect();
    let r = process(&Settings::default(), &messages);
    let sizes: Vec<usize> = bodies(&fakes).iter().map(Vec::len).collect();
    assert_eq!(sizes, [25, 25, 10]);
    assert_eq!(fakes.count("call_many"), 1, "every chunk in one call_many");
    let expected: Vec<String> = (25..50).map(|i| format!("m{i}")).collect();
    assert_eq!(r.failures, expected);
}

#[test]
fn a_service_error_status_or_a_malformed_answer_fails_the_chunk() {
    for answer in [
        json_response(503, &json!({"error": "busy"})),
        json_response(200, &json!({"ok": true})),
        json_response(413, &json!({"error": "too many"})),
    ] {
        let fakes = Fakes::new().on_service("users", move |_: &Request| Ok(answer.clone()));
        let _i = fakes.install();
        let r = process(
            &Settings::default(),
            &[msg("a", user("u1")), msg("b", user("u2"))],
        );
        assert_eq!(r.failures, ["a", "b"]);
    }
}

#[test]
fn the_same_user_in_two_messages_is_sent_once_with_the_later_record() {
    let fakes = Fakes::new().on_service("users", service);
    let _i = fakes.install();
    let mut later = user("u1");
    later["firstName"] = json!("Later");
    let r = process(
        &Settings::default(),
        &[
            msg("a", user("u1")),
            msg("b", later.clone()),
            msg("c", user("refused-2")),
            msg("d", user("refused-2")),
        ],
    );
    assert_eq!(
        r.failures,
        ["c", "d"],
        "both messages of a refused user fail"
    );
    let requests = fakes.requests();
    let body: Value =
        serde_json::from_str(requests[0].body.as_deref().unwrap_or("{}")).expect("json");
    assert_eq!(body["users"], json!([later, user("refused-2")]));
}

#[test]
fn parse_message_shapes() {
    assert_eq!(parse_message(&user("u").to_string()).expect("one").len(), 1);
    assert_eq!(parse_message(r#"{"users":[{},{}]}"#).expect("two").len(), 2);
    assert!(matches!(
        parse_message("3"),
        Err(MessageError::NotAnObject("a number"))
    ));
    assert!(matches!(
        parse_message(r#"{"users":{}}"#),
        Err(MessageError::UsersNotAnArray)
    ));
    assert!(matches!(
        parse_message("nope"),
        Err(MessageError::NotJson(_))
    ));
}
