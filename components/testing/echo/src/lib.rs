//! `testing/echo` (invoke-worker): returns its payload. A payload
//! `{"fail": "msg"}` (or a resolver event whose `arguments` are
//! `{"fail": "msg"}`) answers an `InvokeError` of kind `Requested`; a
//! payload `{"log": "x"}` also logs `x` at info level.

use usher_sdk::{InvokeError, InvokeWorker, Value};

/// What to do with a payload, decided without side effects.
#[derive(Debug, PartialEq)]
pub enum Action<'a> {
    /// Answer the payload.
    Echo,
    /// Log the message, then answer the payload.
    LogAndEcho(&'a str),
    /// Fail with a `Requested` error carrying the message.
    Fail(String),
}

/// Decides what to do with a payload.
pub fn decide(payload: &Value) -> Action<'_> {
    let fail = payload.get("fail").or_else(|| {
        payload
            .get("arguments")
            .and_then(|arguments| arguments.get("fail"))
    });
    if let Some(fail) = fail {
        let message = fail
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| fail.to_string());
        return Action::Fail(message);
    }
    match payload.get("log").and_then(Value::as_str) {
        Some(line) => Action::LogAndEcho(line),
        None => Action::Echo,
    }
}

/// The echo worker.
pub struct Echo;

impl InvokeWorker for Echo {
    fn handle(payload: Value) -> Result<Value, InvokeError> {
        match decide(&payload) {
            Action::Fail(message) => return Err(InvokeError::new("Requested", message)),
            Action::LogAndEcho(line) => usher_sdk::log::info(line, &[]),
            Action::Echo => {}
        }
        Ok(payload)
    }
}

usher_sdk::export_invoke_worker!(Echo);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn echoes() {
        let p = json!({"a": [1, 2]});
        assert_eq!(Echo::handle(p.clone()), Ok(p));
    }

    #[test]
    fn fails_on_request() {
        let err = Echo::handle(json!({"fail": "boom"})).expect_err("fail");
        assert_eq!(err, InvokeError::new("Requested", "boom"));
    }

    #[test]
    fn fails_on_request_in_resolver_arguments() {
        let err = Echo::handle(json!({"arguments": {"fail": "no"}, "info": {}})).expect_err("fail");
        assert_eq!(err, InvokeError::new("Requested", "no"));
    }

    #[test]
    fn logs_and_echoes() {
        let p = json!({"log": "hello"});
        assert_eq!(decide(&p), Action::LogAndEcho("hello"));
        assert_eq!(Echo::handle(p.clone()), Ok(p));
    }
}
