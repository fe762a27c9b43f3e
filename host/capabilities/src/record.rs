//! Recording of capability calls, for the test host and for debugging.

use std::sync::Mutex;

use serde::Serialize;
use serde_json::Value;

/// One capability call as the worker made it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallRecord {
    /// The capability interface, e.g. `table`.
    pub capability: &'static str,
    /// The function, e.g. `batch-get`.
    pub function: &'static str,
    /// The resource named by the call (table, queue, service …), empty when none.
    pub resource: String,
    /// The call's arguments as JSON.
    pub request: Value,
    /// The answer as JSON, or the error's text.
    pub outcome: Result<Value, String>,
}

/// A shared, append-only list of calls.
#[derive(Debug, Default)]
pub struct Recorder {
    calls: Mutex<Vec<CallRecord>>,
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a call.
    pub fn push(&self, record: CallRecord) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(record);
        }
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The calls of one capability function (`"queue", "send-batch"`).
    pub fn calls_to(&self, capability: &str, function: &str) -> Vec<CallRecord> {
        self.calls()
            .into_iter()
            .filter(|c| c.capability == capability && c.function == function)
            .collect()
    }

    /// Forgets every call.
    pub fn clear(&self) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.clear();
        }
    }
}
