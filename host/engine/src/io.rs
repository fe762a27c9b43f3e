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

impl BatchMessage {
    /// The value of attribute `name` (case-insensitive), if any.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of attribute `name` when every message of `messages` has
    /// it and it is the same (a batch from one sender's invocation).
    pub fn shared_attribute<'a>(messages: &'a [BatchMessage], name: &str) -> Option<&'a str> {
        let first = messages.first()?.attribute(name)?;
        messages
            .iter()
            .all(|m| m.attribute(name) == Some(first))
            .then_some(first)
    }
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

pub use usher_capabilities::{ChangeKind, JsonText};

/// One table change handed to a stream-worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeRecord {
    /// The table.
    pub table: String,
    /// INSERT, MODIFY or REMOVE.
    pub event_name: ChangeKind,
    /// Key attributes (a JSON object, kept as text: it goes to the worker
    /// as text).
    pub keys: JsonText,
    /// Item after the change (a JSON object, as text).
    #[serde(default)]
    pub new_image: Option<JsonText>,
    /// Item before the change (a JSON object, as text).
    #[serde(default)]
    pub old_image: Option<JsonText>,
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

/// A failure id a batch- or stream-worker reported that names no record of
/// its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the worker reported a failure for `{0}`, which is not in its batch; the whole batch failed"
)]
pub struct UnknownFailure(pub String);

impl Input {
    /// Checks the failure ids a batch- or stream-worker answered against the
    /// records of this input (message ids, sequence numbers) and keeps each
    /// once, in the worker's order. An id that names no record is an
    /// [`UnknownFailure`]: the engine then fails the whole batch
    /// ([`Input::fail_all`]), as Lambda treats a `batchItemFailures`
    /// `itemIdentifier` that names no message of the batch. The engine owns
    /// this rule, so every trigger (`usher up`'s pollers and followers,
    /// `usher lambda`, `usher invoke`, the test host) gets only ids of the
    /// records it gave.
    pub fn known_failures(&self, failures: Vec<String>) -> Result<Vec<String>, UnknownFailure> {
        let ids: std::collections::HashSet<&str> = match self {
            Input::Batch(messages) => messages.iter().map(|m| m.message_id.as_str()).collect(),
            Input::Stream(changes) => changes.iter().map(|c| c.sequence_number.as_str()).collect(),
            _ => std::collections::HashSet::new(),
        };
        let mut seen = std::collections::HashSet::new();
        let mut known = Vec::new();
        for id in failures {
            if !ids.contains(id.as_str()) {
                return Err(UnknownFailure(id));
            }
            if seen.insert(id.clone()) {
                known.push(id);
            }
        }
        Ok(known)
    }
}

/// The outcome of an invocation for the metrics and the `invocation` span,
/// and how many of its records failed: every record (or the whole
/// invocation) when it trapped or ran out of time or memory; the failures a
/// batch- or stream-worker reported; one for a typed error, a failed tick or
/// an HTTP answer of 5xx.
pub fn outcome_of(
    input: &Input,
    result: &Result<Output, crate::InvokeError>,
) -> (usher_telemetry::metric::Outcome, u64) {
    use usher_telemetry::metric::Outcome;
    let n = input.len() as u64;
    let of_failures = |failed: usize| {
        let failed = failed as u64;
        let outcome = match failed {
            0 => Outcome::Ok,
            f if f >= n => Outcome::Failed,
            _ => Outcome::Partial,
        };
        (outcome, failed)
    };
    match result {
        Err(_) => (Outcome::Error, n),
        Ok(Output::Batch(o)) => of_failures(o.failures.len()),
        Ok(Output::Stream(o)) => of_failures(o.failures.len()),
        Ok(Output::Invoke(Err(_))) | Ok(Output::Scheduled(Err(_))) => (Outcome::Failed, 1),
        Ok(Output::Http(r)) if r.status >= 500 => (Outcome::Failed, 1),
        Ok(_) => (Outcome::Ok, 0),
    }
}

pub(crate) fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(ids: &[&str]) -> Input {
        Input::Batch(
            ids.iter()
                .map(|id| BatchMessage {
                    message_id: id.to_string(),
                    body: String::new(),
                    attributes: Vec::new(),
                    receive_count: 1,
                })
                .collect(),
        )
    }

    fn strings(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|id| id.to_string()).collect()
    }

    #[test]
    fn known_failure_ids_are_kept_once_in_order() {
        let input = batch(&["a", "b", "c"]);
        assert_eq!(
            input.known_failures(strings(&["c", "a", "c"])),
            Ok(strings(&["c", "a"]))
        );
        assert_eq!(input.known_failures(Vec::new()), Ok(Vec::new()));
    }

    #[test]
    fn an_unknown_failure_id_fails_the_whole_batch() {
        let input = batch(&["a", "b"]);
        let err = input
            .known_failures(strings(&["a", "nope"]))
            .expect_err("unknown id");
        assert_eq!(err, UnknownFailure("nope".into()));
        assert_eq!(
            err.to_string(),
            "the worker reported a failure for `nope`, which is not in its batch; the whole batch failed"
        );
        assert_eq!(
            input.fail_all(&err.to_string()),
            Output::Batch(BatchOutcome {
                failures: strings(&["a", "b"]),
                count: Counts {
                    received: 2,
                    processed: 0,
                    failed: 2
                },
            })
        );

        let stream = Input::Stream(vec![ChangeRecord {
            table: "t".into(),
            event_name: ChangeKind::Insert,
            keys: serde_json::json!({"PK": "a"}).into(),
            new_image: None,
            old_image: None,
            sequence_number: "7".into(),
            timestamp_ms: 0,
        }]);
        assert_eq!(stream.known_failures(strings(&["7"])), Ok(strings(&["7"])));
        assert_eq!(
            stream.known_failures(strings(&["8"])),
            Err(UnknownFailure("8".into()))
        );
    }
}
