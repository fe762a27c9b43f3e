//! The worker's logic. It calls the SDK's capability functions directly;
//! natively (tests) they reach the backend installed on the thread
//! (`usher_sdk::fakes`).

use std::collections::{BTreeMap, BTreeSet};

use usher_domain::user::{self, MAX_USERS_PER_BATCH};
use usher_sdk::json::json;
use usher_sdk::services::{self, Method, Request};
use usher_sdk::{config, BatchResult, Message, Value};

/// At most this many requests in one `services::call_many`.
pub const MAX_REQUESTS_PER_CALL: usize = 256;

/// The worker's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The User Service's name (`service`, default `users`).
    pub service: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            service: "users".into(),
        }
    }
}

impl Settings {
    /// Reads the settings with the config capability, defaults for absent keys.
    pub fn load() -> usher_sdk::Result<Settings> {
        let d = Settings::default();
        Ok(Settings {
            service: config::string_or("service", &d.service)?,
        })
    }
}

/// Why a message body cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// Not JSON.
    #[error("the body is not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    /// JSON but not an object.
    #[error("the body must be a user record or {{\"users\":[…]}}, not {0}")]
    NotAnObject(&'static str),
    /// `users` is not an array.
    #[error("`users` must be an array of user records")]
    UsersNotAnArray,
}

/// The records of a message body: `[body]` for one record, the `users`
/// array for `{"users":[…]}`.
pub fn parse_message(body: &str) -> Result<Vec<Value>, MessageError> {
    let value: Value = serde_json::from_str(body)?;
    let Value::Object(mut object) = value else {
        return Err(MessageError::NotAnObject(kind(&value)));
    };
    match object.remove("users") {
        None => Ok(vec![Value::Object(object)]),
        Some(Value::Array(users)) => Ok(users),
        Some(_) => Err(MessageError::UsersNotAnArray),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One user to upsert: its last valid record in the batch and every message
/// that carried it.
struct Pending {
    record: Value,
    messages: Vec<usize>,
}

/// Handles a batch (see the crate docs).
pub fn process(settings: &Settings, messages: &[Message]) -> BatchResult {
    let mut failed: BTreeSet<usize> = BTreeSet::new();
    let mut pending: BTreeMap<String, Pending> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let records = match parse_message(&message.body) {
            Ok(records) => records,
            Err(reason) => {
                usher_sdk::warn!(message_id = message.id, reason = reason; "malformed message failed");
                failed.insert(i);
                continue;
            }
        };
        for (index, record) in records.iter().enumerate() {
            match user::validate(record) {
                Ok(u) => {
                    let record = match serde_json::to_value(&u) {
                        Ok(r) => r,
                        Err(e) => {
                            usher_sdk::error!(message_id = message.id, error = e; "encoding a user failed");
                            failed.insert(i);
                            continue;
                        }
                    };
                    let id = u.global_user_id;
                    match pending.get_mut(&id) {
                        Some(p) => {
                            p.record = record;
                            if !p.messages.contains(&i) {
                                p.messages.push(i);
                            }
                        }
                        None => {
                            order.push(id.clone());
                            pending.insert(
                                id,
                                Pending {
                                    record,
                                    messages: vec![i],
                                },
                            );
                        }
                    }
                }
                Err(reason) => {
                    usher_sdk::warn!(message_id = message.id, index = index, reason = reason;
                        "invalid user record: the message fails");
                    failed.insert(i);
                }
            }
        }
    }

    let users: Vec<&Pending> = order.iter().filter_map(|id| pending.get(id)).collect();
    let chunks: Vec<&[&Pending]> = users.chunks(MAX_USERS_PER_BATCH).collect();
    for group in chunks.chunks(MAX_REQUESTS_PER_CALL) {
        let mut requests = Vec::with_capacity(group.len());
        let mut sendable = Vec::with_capacity(group.len());
        for chunk in group {
            let records: Vec<&Value> = chunk.iter().map(|p| &p.record).collect();
            match Request::new(
                settings.service.as_str(),
                Method::Post,
                "/users/batch-upsert",
            )
            .json(&json!({"users": records}))
            {
                Ok(request) => {
                    requests.push(request);
                    sendable.push(*chunk);
                }
                Err(e) => {
                    usher_sdk::error!(error = e; "encoding a request failed");
                    fail_chunk(&mut failed, chunk);
                }
            }
        }
        let answers = match services::call_many(&requests) {
            Ok(answers) if answers.len() == requests.len() => answers,
            other => {
                let reason = match other {
                    Ok(a) => format!("{} answers for {} requests", a.len(), requests.len()),
                    Err(e) => e.to_string(),
                };
                usher_sdk::warn!(requests = requests.len(), reason = reason; "calling the User Service failed");
                for chunk in &sendable {
                    fail_chunk(&mut failed, chunk);
                }
                continue;
            }
        };
        for (chunk, answer) in sendable.iter().zip(answers) {
            let response = match answer {
                Ok(r) if r.status == 200 => r,
                Ok(r) => {
                    usher_sdk::warn!(status = r.status, body = r.body, users = chunk.len();
                        "the User Service refused a chunk");
                    fail_chunk(&mut failed, chunk);
                    continue;
                }
                Err(e) => {
                    usher_sdk::warn!(error = e, users = chunk.len(); "a User Service call failed");
                    fail_chunk(&mut failed, chunk);
                    continue;
                }
            };
            let body: Value = match response.json() {
                Ok(b) => b,
                Err(e) => {
                    usher_sdk::warn!(error = e; "the User Service's answer is not JSON");
                    fail_chunk(&mut failed, chunk);
                    continue;
                }
            };
            let Some(failures) = body.get("failures").and_then(Value::as_array) else {
                usher_sdk::warn!(body = body; "the User Service's answer has no `failures`");
                fail_chunk(&mut failed, chunk);
                continue;
            };
            for failure in failures {
                let index = failure.get("index").and_then(Value::as_u64);
                match index
                    .and_then(|i| usize::try_from(i).ok())
                    .and_then(|i| chunk.get(i))
                {
                    Some(p) => {
                        let ids: Vec<&str> = p
                            .messages
                            .iter()
                            .filter_map(|&m| messages.get(m).map(|m| m.id.as_str()))
                            .collect();
                        usher_sdk::warn!(message_ids = ids.join(","), reason = failure.get("reason").unwrap_or(&Value::Null);
                            "the User Service refused a user: its messages fail");
                        failed.extend(p.messages.iter().copied());
                    }
                    None => {
                        usher_sdk::warn!(failure = failure; "a failure the chunk cannot place: the chunk fails");
                        fail_chunk(&mut failed, chunk);
                    }
                }
            }
        }
    }
    let result = BatchResult::from_failures(
        messages.len(),
        failed
            .iter()
            .filter_map(|&i| messages.get(i).map(|m| m.id.clone())),
    );
    usher_sdk::info!(received = result.received, processed = result.processed,
        failed = result.failed, users = users.len(); "upsert-users batch done");
    result
}

fn fail_chunk(failed: &mut BTreeSet<usize>, chunk: &[&Pending]) {
    for p in chunk {
        failed.extend(p.messages.iter().copied());
    }
}

#[cfg(test)]
mod tests;
