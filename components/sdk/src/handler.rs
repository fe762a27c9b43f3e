//! Plain Rust types for handler inputs and outputs, and the traits a worker
//! implements. They exist on every target, so worker logic compiles and is
//! unit-tested natively; the `export_*_worker!` macros adapt them to the WIT
//! exports inside a component.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value;

use crate::{json, Result};

// ---------------------------------------------------------------- batch

/// One received queue message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// The message id (the SQS `messageId`).
    pub id: String,
    /// The body.
    pub body: String,
    /// Message attributes.
    pub attributes: Vec<(String, String)>,
    /// How many times this message has been received, this time included.
    pub receive_count: u32,
}

impl Message {
    /// A message with this id and body, received once, without attributes.
    pub fn new(id: impl Into<String>, body: impl Into<String>) -> Message {
        Message {
            id: id.into(),
            body: body.into(),
            attributes: Vec::new(),
            receive_count: 1,
        }
    }

    /// Adds an attribute (handy in tests).
    pub fn with_attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Message {
        self.attributes.push((name.into(), value.into()));
        self
    }

    /// The first attribute with this name.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        json::from_str(&self.body)
    }
}

/// What a batch worker did with a batch: the failed message ids (retried by
/// the queue; the rest are deleted) and counts for reporting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchResult {
    /// Ids of the messages that failed.
    pub failures: Vec<String>,
    /// Messages received.
    pub received: u32,
    /// Messages processed successfully.
    pub processed: u32,
    /// Messages that failed.
    pub failed: u32,
}

impl BatchResult {
    /// Every one of `received` messages processed.
    pub fn all_processed(received: usize) -> BatchResult {
        BatchResult::from_failures(received, Vec::<String>::new())
    }

    /// `received` messages of which those in `failures` failed (duplicate ids
    /// are counted once; order is kept).
    pub fn from_failures<I, S>(received: usize, failures: I) -> BatchResult
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let unique = dedup_keep_order(failures);
        let received = count(received);
        let failed = count(unique.len()).min(received);
        BatchResult {
            failures: unique,
            received,
            processed: received - failed,
            failed,
        }
    }

    /// One outcome per message: `(message id, succeeded?)`.
    pub fn from_outcomes<I, S>(outcomes: I) -> BatchResult
    where
        I: IntoIterator<Item = (S, bool)>,
        S: Into<String>,
    {
        let mut received = 0usize;
        let mut failures = Vec::new();
        for (id, ok) in outcomes {
            received += 1;
            if !ok {
                failures.push(id.into());
            }
        }
        BatchResult::from_failures(received, failures)
    }

    /// One result per message: `(message id, result)`; errors are failures.
    pub fn from_results<I, S, T, E>(results: I) -> BatchResult
    where
        I: IntoIterator<Item = (S, std::result::Result<T, E>)>,
        S: Into<String>,
    {
        BatchResult::from_outcomes(results.into_iter().map(|(id, r)| (id, r.is_ok())))
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A worker fed batches of queue messages (`batch-worker` world).
pub trait BatchWorker {
    /// Handles a batch.
    fn handle(messages: Vec<Message>) -> BatchResult;
}

// ---------------------------------------------------------------- stream

/// What kind of change a [`Change`] is. Serialized as DynamoDB's event
/// names: `INSERT`, `MODIFY`, `REMOVE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ChangeKind {
    /// A new item.
    Insert,
    /// An existing item changed.
    Modify,
    /// An item was deleted.
    Remove,
}

impl ChangeKind {
    /// The DynamoDB event name: `INSERT`, `MODIFY` or `REMOVE`.
    pub fn event_name(self) -> &'static str {
        match self {
            ChangeKind::Insert => "INSERT",
            ChangeKind::Modify => "MODIFY",
            ChangeKind::Remove => "REMOVE",
        }
    }
}

/// One table change record.
///
/// Its JSON form (serde) is the DynamoDB-stream-like object
/// `{"table","eventName","keys","newImage","oldImage","sequenceNumber","timestampMs"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// The table that changed.
    #[serde(default)]
    pub table: String,
    /// The change kind.
    #[serde(rename = "eventName")]
    pub kind: ChangeKind,
    /// The item's key attributes.
    #[serde(default)]
    pub keys: Value,
    /// The item after the change (insert, modify).
    #[serde(default)]
    pub new_image: Option<Value>,
    /// The item before the change (modify, remove).
    #[serde(default)]
    pub old_image: Option<Value>,
    /// The change's sequence number (decimal digits, increasing per shard).
    #[serde(default)]
    pub sequence_number: String,
    /// When the change happened, milliseconds since the Unix epoch.
    #[serde(default)]
    pub timestamp_ms: u64,
}

/// What a stream worker did with a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamResult {
    /// Sequence numbers of failed records; the stream resumes from the lowest.
    pub failures: Vec<String>,
}

impl StreamResult {
    /// Every record processed.
    pub fn ok() -> StreamResult {
        StreamResult::default()
    }

    /// These sequence numbers failed (duplicates are kept once, order kept).
    pub fn from_failures<I, S>(failures: I) -> StreamResult
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let unique = dedup_keep_order(failures);
        StreamResult { failures: unique }
    }
}

/// A worker fed batches of table change records (`stream-worker` world).
pub trait StreamWorker {
    /// Handles a batch of changes.
    fn handle(changes: Vec<Change>) -> StreamResult;
}

// ---------------------------------------------------------------- invoke

/// A typed invocation failure (AppSync `errorType` + message; a Step
/// Functions error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct InvokeError {
    /// A short machine-readable error type, e.g. `InvalidInput`.
    pub kind: String,
    /// A human-readable message.
    pub message: String,
}

impl InvokeError {
    /// An error of this kind.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> InvokeError {
        InvokeError {
            kind: kind.into(),
            message: message.into(),
        }
    }

    /// An `InvalidInput` error.
    pub fn invalid_input(message: impl Into<String>) -> InvokeError {
        InvokeError::new("InvalidInput", message)
    }

    /// An `Internal` error.
    pub fn internal(message: impl Into<String>) -> InvokeError {
        InvokeError::new("Internal", message)
    }
}

impl From<crate::Error> for InvokeError {
    fn from(e: crate::Error) -> Self {
        let kind = match &e {
            crate::Error::Json(_) | crate::Error::Invalid(_) => "InvalidInput",
            crate::Error::Denied(_) => "Denied",
            crate::Error::NotFound(_) => "NotFound",
            crate::Error::ConditionFailed(_) => "ConditionFailed",
            crate::Error::Unavailable(_) | crate::Error::Throttled(_) => "Unavailable",
            crate::Error::Unsupported(_) => "Unsupported",
            crate::Error::Status { .. } => "ServiceError",
        };
        InvokeError::new(kind, e.to_string())
    }
}

/// A worker invoked directly (`invoke-worker` world): JSON in, JSON or a
/// typed error out. A payload that is not JSON never reaches the worker: it
/// is answered with an `InvalidInput` error.
pub trait InvokeWorker {
    /// Handles one invocation.
    fn handle(payload: Value) -> std::result::Result<Value, InvokeError>;
}

// ---------------------------------------------------------------- scheduled

/// One tick of a schedule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tick {
    /// The schedule's name (the registry's schedule id).
    pub schedule: String,
    /// When the tick was due, RFC 3339.
    pub scheduled_time: String,
}

/// A worker run on a schedule (`scheduled-worker` world): the JSON summary
/// is logged by the host, the error fails the tick.
pub trait ScheduledWorker {
    /// Handles a tick.
    fn handle(tick: Tick) -> std::result::Result<Value, String>;
}

// ---------------------------------------------------------------- http

/// An incoming HTTP request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpRequest {
    /// The method, upper case.
    pub method: String,
    /// The path below the worker's route prefix, starting with `/`.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// Request headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        json::from_slice(&self.body)
    }

    /// The value of query parameter `name` (not percent-decoded).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then_some(v)
        })
    }
}

/// An HTTP answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpResponse {
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// An empty response with this status.
    pub fn new(status: u16) -> HttpResponse {
        HttpResponse {
            status,
            ..HttpResponse::default()
        }
    }

    /// A `text/plain` response.
    pub fn text(status: u16, body: impl Into<String>) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: body.into().into_bytes(),
        }
    }

    /// An `application/json` response.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Result<HttpResponse> {
        Ok(HttpResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: json::to_string(value)?.into_bytes(),
        })
    }

    /// A 200 `application/json` response of a JSON value (which always
    /// serializes).
    pub fn json_ok(value: &Value) -> HttpResponse {
        HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
        }
    }

    /// Adds a header.
    pub fn with_header(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> HttpResponse {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A worker serving HTTP requests (`http-worker` world).
pub trait HttpWorker {
    /// Handles a request.
    fn handle(request: HttpRequest) -> HttpResponse;
}

/// The strings in order, each kept once.
fn dedup_keep_order<I, S>(items: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut seen = std::collections::HashSet::new();
    let mut unique = Vec::new();
    for item in items {
        let item: String = item.into();
        if seen.insert(item.clone()) {
            unique.push(item);
        }
    }
    unique
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn batch_result_counts() {
        let r = BatchResult::from_failures(5, ["b", "d", "b"]);
        assert_eq!(r.failures, vec!["b", "d"]);
        assert_eq!((r.received, r.processed, r.failed), (5, 3, 2));
        assert_eq!(BatchResult::all_processed(2).processed, 2);
    }

    #[test]
    fn batch_result_from_outcomes_and_results() {
        let r = BatchResult::from_outcomes([("a", true), ("b", false), ("c", true)]);
        assert_eq!(r.failures, vec!["b"]);
        assert_eq!((r.received, r.processed, r.failed), (3, 2, 1));
        let r = BatchResult::from_results([("a", Ok(())), ("b", Err("boom"))]);
        assert_eq!(r.failures, vec!["b"]);
        assert_eq!((r.received, r.processed, r.failed), (2, 1, 1));
    }

    #[test]
    fn message_helpers() {
        let m = Message::new("1", r#"{"x":1}"#).with_attribute("queue", "q");
        assert_eq!(m.attribute("queue"), Some("q"));
        assert_eq!(m.attribute("nope"), None);
        let v: Value = m.json().expect("json");
        assert_eq!(v["x"], 1);
    }

    #[test]
    fn change_json_form() {
        let c = Change {
            table: "demand-table".into(),
            kind: ChangeKind::Remove,
            keys: json!({"PK": "a", "SK": "ENTRY"}),
            new_image: None,
            old_image: Some(json!({"PK": "a"})),
            sequence_number: "42".into(),
            timestamp_ms: 7,
        };
        let v = serde_json::to_value(&c).expect("serialize");
        assert_eq!(
            v,
            json!({"table": "demand-table", "eventName": "REMOVE", "keys": {"PK": "a", "SK": "ENTRY"},
                   "newImage": null, "oldImage": {"PK": "a"}, "sequenceNumber": "42", "timestampMs": 7})
        );
        let back: Change = serde_json::from_value(v).expect("parse");
        assert_eq!(back, c);
        let minimal: Change =
            serde_json::from_str(r#"{"eventName":"INSERT","newImage":{"a":1}}"#).expect("parse");
        assert_eq!(minimal.kind, ChangeKind::Insert);
        assert_eq!(minimal.old_image, None);
        assert_eq!(ChangeKind::Modify.event_name(), "MODIFY");
    }

    #[test]
    fn stream_result_dedups() {
        assert_eq!(
            StreamResult::from_failures(["1", "2", "1"]).failures,
            vec!["1", "2"]
        );
        assert!(StreamResult::ok().failures.is_empty());
    }

    #[test]
    fn invoke_error_from_sdk_error() {
        let e = InvokeError::from(crate::Error::Denied("table t".into()));
        assert_eq!(e.kind, "Denied");
        assert_eq!(e.to_string(), "Denied: denied: table t");
    }

    #[test]
    fn http_helpers() {
        let req = HttpRequest {
            method: "GET".into(),
            path: "/x".into(),
            query: "a=1&b=two&flag".into(),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: br#"{"k":true}"#.to_vec(),
        };
        assert_eq!(req.header("content-type"), Some("application/json"));
        assert_eq!(req.query_param("b"), Some("two"));
        assert_eq!(req.query_param("flag"), Some(""));
        assert_eq!(req.query_param("c"), None);
        let v: Value = req.json().expect("json");
        assert_eq!(v["k"], true);
        let res = HttpResponse::json(201, &json!({"ok": 1})).expect("json");
        assert_eq!(res.body, br#"{"ok":1}"#);
        assert_eq!(HttpResponse::text(404, "no").status, 404);
    }
}
