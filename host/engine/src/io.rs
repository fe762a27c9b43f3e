//! What goes into and comes out of an invocation, in host terms
//! (independent of the generated bindings, serializable for fixtures and
//! `usher invoke`). These are Usher's own types only: AWS's event shapes
//! are read into them in one place, `usher_trigger_lambda::events`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One queue message handed to a batch-worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchMessage {
    /// Message id (SQS `messageId`).
    pub message_id: String,
    /// Body.
    pub body: String,
    /// Message attributes.
    #[serde(default)]
    pub attributes: Vec<(String, String)>,
    /// Receives so far, this one included.
    #[serde(default = "one")]
    pub receive_count: u32,
}

fn one() -> u32 {
    1
}

/// Counts a batch-worker reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Received.
    pub received: u32,
    /// Processed successfully.
    pub processed: u32,
    /// Failed.
    pub failed: u32,
}

/// A batch-worker's answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchOutcome {
    /// Ids of failed messages.
    pub failures: Vec<String>,
    /// Counts.
    pub count: Counts,
}

pub use usher_capabilities::ChangeKind;

/// One table change handed to a stream-worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeRecord {
    /// The table.
    pub table: String,
    /// INSERT, MODIFY or REMOVE.
    pub event_name: ChangeKind,
    /// Key attributes.
    pub keys: Value,
    /// Item after the change.
    #[serde(default)]
    pub new_image: Option<Value>,
    /// Item before the change.
    #[serde(default)]
    pub old_image: Option<Value>,
    /// Sequence number.
    pub sequence_number: String,
    /// Milliseconds since the Unix epoch.
    #[serde(default)]
    pub timestamp_ms: u64,
}

/// A stream-worker's answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamOutcome {
    /// Sequence numbers of failed records.
    pub failures: Vec<String>,
}

/// A typed failure of an invoke-worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvokeFailure {
    /// Machine-readable type.
    pub kind: String,
    /// Message.
    pub message: String,
}

/// One schedule tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tick {
    /// Schedule name.
    pub schedule: String,
    /// When it was due (RFC 3339).
    pub scheduled_time: String,
}

/// An HTTP request for an http-worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpRequest {
    /// Method, upper case.
    pub method: String,
    /// Path below the worker's route.
    pub path: String,
    /// Query string without `?`.
    #[serde(default)]
    pub query: String,
    /// Headers.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// Body.
    #[serde(default)]
    pub body: Vec<u8>,
}

/// An http-worker's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// The input of one invocation; its variant must match the worker's world.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "event", rename_all = "snake_case")]
pub enum Input {
    /// For a batch-worker.
    Batch(Vec<BatchMessage>),
    /// For a stream-worker.
    Stream(Vec<ChangeRecord>),
    /// For an invoke-worker.
    Invoke(Value),
    /// For a scheduled-worker.
    Scheduled(Tick),
    /// For an http-worker.
    Http(HttpRequest),
}

/// The answer of one invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "result", rename_all = "snake_case")]
pub enum Output {
    /// From a batch-worker.
    Batch(BatchOutcome),
    /// From a stream-worker.
    Stream(StreamOutcome),
    /// From an invoke-worker.
    Invoke(Result<Value, InvokeFailure>),
    /// From a scheduled-worker.
    Scheduled(Result<Value, String>),
    /// From an http-worker.
    Http(HttpResponse),
}

impl Input {
    /// The world that can take this input.
    pub fn world(&self) -> usher_registry::WorldKind {
        use usher_registry::WorldKind;
        match self {
            Input::Batch(_) => WorldKind::Batch,
            Input::Stream(_) => WorldKind::Stream,
            Input::Invoke(_) => WorldKind::Invoke,
            Input::Scheduled(_) => WorldKind::Scheduled,
            Input::Http(_) => WorldKind::Http,
        }
    }

    /// How many records the input carries.
    pub fn len(&self) -> usize {
        match self {
            Input::Batch(m) => m.len(),
            Input::Stream(c) => c.len(),
            _ => 1,
        }
    }

    /// Whether the input carries no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The answer that fails every record of this input, for an invocation
    /// that trapped or ran out of time: batches report every message failed,
    /// streams every sequence number, the others a typed error.
    pub fn fail_all(&self, reason: &str) -> Output {
        match self {
            Input::Batch(messages) => Output::Batch(BatchOutcome {
                failures: messages.iter().map(|m| m.message_id.clone()).collect(),
                count: Counts {
                    received: len_u32(messages.len()),
                    processed: 0,
                    failed: len_u32(messages.len()),
                },
            }),
            Input::Stream(changes) => Output::Stream(StreamOutcome {
                failures: changes.iter().map(|c| c.sequence_number.clone()).collect(),
            }),
            Input::Invoke(_) => Output::Invoke(Err(InvokeFailure {
                kind: "WorkerFailed".into(),
                message: reason.into(),
            })),
            Input::Scheduled(_) => Output::Scheduled(Err(reason.into())),
            Input::Http(_) => Output::Http(HttpResponse {
                status: 500,
                headers: vec![("content-type".into(), "application/json".into())],
                body: serde_json::json!({"error": reason})
                    .to_string()
                    .into_bytes(),
            }),
        }
    }
}

pub(crate) fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
