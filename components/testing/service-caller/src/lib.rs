//! `testing/service-caller` (invoke-worker): makes the service calls its
//! payload lists, to test the host's `services` capability.
//!
//! Payload: `{"mode": "many" | "one-by-one", "requests": [{"service", "method"
//! (GET/POST/PUT/PATCH/DELETE), "path", "body"?}]}`. Answer: one entry per
//! request, in order: `{"status", "body"}` or `{"error": "<variant>: <message>"}`.
//! `"many"` sends every request in one `services::call_many`; `"one-by-one"`
//! calls `services::call` for each. A malformed payload is an `InvalidInput`
//! invoke error; a refused `call-many` (too many requests) answers
//! `{"refused": "<variant>: <message>"}`.

use serde::Deserialize;
use usher_sdk::json::json;
use usher_sdk::services::{self, Method, Request, Response};
use usher_sdk::{InvokeError, InvokeWorker, Value};

/// One request of the payload.
#[derive(Debug, Deserialize)]
pub struct Call {
    /// The service name.
    pub service: String,
    /// The method, upper case.
    pub method: String,
    /// The path below the service's base URL.
    pub path: String,
    /// A JSON body.
    #[serde(default)]
    pub body: Option<Value>,
}

/// The payload.
#[derive(Debug, Deserialize)]
pub struct Payload {
    /// `many` or `one-by-one`.
    pub mode: String,
    /// The calls.
    pub requests: Vec<Call>,
}

/// The SDK request of a call.
pub fn request(call: &Call) -> Result<Request, InvokeError> {
    let method = match call.method.as_str() {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "PATCH" => Method::Patch,
        "DELETE" => Method::Delete,
        other => {
            return Err(InvokeError::invalid_input(format!(
                "unknown method {other}"
            )))
        }
    };
    let r = Request::new(call.service.clone(), method, call.path.clone());
    match &call.body {
        Some(body) => r
            .json(body)
            .map_err(|e| InvokeError::invalid_input(e.to_string())),
        None => Ok(r),
    }
}

/// The answer entry of one result.
pub fn answer(result: usher_sdk::Result<Response>) -> Value {
    match result {
        Ok(r) => json!({"status": r.status, "body": r.body}),
        Err(e) => json!({"error": e.to_string()}),
    }
}

/// The worker.
pub struct ServiceCaller;

impl InvokeWorker for ServiceCaller {
    fn handle(payload: Value) -> Result<Value, InvokeError> {
        let payload: Payload = usher_sdk::json::from_value(payload)
            .map_err(|e| InvokeError::invalid_input(e.to_string()))?;
        let requests = payload
            .requests
            .iter()
            .map(request)
            .collect::<Result<Vec<_>, _>>()?;
        match payload.mode.as_str() {
            "many" => match services::call_many(&requests) {
                Ok(results) => Ok(Value::Array(results.into_iter().map(answer).collect())),
                Err(e) => Ok(json!({"refused": e.to_string()})),
            },
            "one-by-one" => Ok(Value::Array(
                requests.iter().map(|r| answer(services::call(r))).collect(),
            )),
            other => Err(InvokeError::invalid_input(format!("unknown mode {other}"))),
        }
    }
}

usher_sdk::export_invoke_worker!(ServiceCaller);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers() {
        let call: Call = serde_json::from_value(
            json!({"service": "s", "method": "POST", "path": "/x", "body": {"a": 1}}),
        )
        .expect("call");
        let r = request(&call).expect("request");
        assert_eq!(r.method, Method::Post);
        assert_eq!(r.body.as_deref(), Some(r#"{"a":1}"#));
        let bad: Call =
            serde_json::from_value(json!({"service": "s", "method": "BREW", "path": "/"}))
                .expect("call");
        assert!(request(&bad).is_err());
        let ok = answer(Ok(Response {
            status: 404,
            headers: vec![],
            body: "{}".into(),
        }));
        assert_eq!(ok, json!({"status": 404, "body": "{}"}));
    }

    #[test]
    fn natively_call_many_is_unsupported() {
        let out = ServiceCaller::handle(
            json!({"mode": "many", "requests": [{"service": "s", "method": "GET", "path": "/"}]}),
        )
        .expect("answer");
        assert!(
            out["refused"]
                .as_str()
                .unwrap_or("")
                .contains("unsupported"),
            "{out}"
        );
    }
}
