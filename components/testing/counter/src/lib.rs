//! `testing/counter` (invoke-worker): increments a static counter and a
//! heap-held list on every call and answers both. In a host that reuses
//! instances the answers would grow; Usher gives every invocation a fresh
//! instance, so every answer is `{"calls": 1, "remembered": 1}`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use usher_sdk::{InvokeError, InvokeWorker, Value};

static CALLS: AtomicU32 = AtomicU32::new(0);
static REMEMBERED: Mutex<Vec<Value>> = Mutex::new(Vec::new());

/// Records one call; returns (calls so far, payloads remembered so far).
pub fn record(payload: Value) -> (u32, usize) {
    let calls = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
    let remembered = match REMEMBERED.lock() {
        Ok(mut list) => {
            list.push(payload);
            list.len()
        }
        Err(_) => 0,
    };
    (calls, remembered)
}

/// The counter worker.
pub struct Counter;

impl InvokeWorker for Counter {
    fn handle(payload: Value) -> Result<Value, InvokeError> {
        let (calls, remembered) = record(payload);
        Ok(serde_json::json!({"calls": calls, "remembered": remembered}))
    }
}

usher_sdk::export_invoke_worker!(Counter);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_within_one_process() {
        let (a, _) = record(Value::Null);
        let (b, _) = record(Value::Null);
        assert_eq!(b, a + 1);
    }
}
