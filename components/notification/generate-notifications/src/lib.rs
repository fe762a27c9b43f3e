//! `notification/generate-notifications` (invoke-worker): answers direct invocations.
//!
//! Made by `just new-worker`: replace the logic, keep it callable natively
//! (the capability calls reach `usher_sdk::fakes` in the unit tests).

use usher_sdk::json::json;
use usher_sdk::{InvokeError, InvokeWorker, Value};

/// Answers a payload: an object is echoed back; anything else is an
/// `InvalidInput` error.
pub fn answer(payload: Value) -> Result<Value, InvokeError> {
    if !payload.is_object() {
        return Err(InvokeError::invalid_input(
            "the payload must be a JSON object",
        ));
    }
    Ok(json!({"echo": payload}))
}

/// The worker.
pub struct GenerateNotifications;

impl InvokeWorker for GenerateNotifications {
    fn handle(payload: Value) -> Result<Value, InvokeError> {
        answer(payload)
    }
}

usher_sdk::export_invoke_worker!(GenerateNotifications);

#[cfg(test)]
mod tests {
    use super::*;
    use usher_sdk::fakes::Fakes;

    #[test]
    fn echoes_objects_and_refuses_the_rest() {
        let fakes = Fakes::new();
        let _installed = fakes.install();
        assert_eq!(answer(json!({"a": 1})), Ok(json!({"echo": {"a": 1}})));
        assert_eq!(
            answer(json!(1)).map_err(|e| e.kind),
            Err("InvalidInput".to_string())
        );
        assert!(fakes.calls().is_empty());
    }
}
