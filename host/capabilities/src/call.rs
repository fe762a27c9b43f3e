//! The one sequence every capability call goes through, and the argument
//! helpers the capability modules share.
//!
//! A call is: a span (`capability`, with the interface, the function and the
//! resource; the engine's `invocation` span above it carries the worker, its
//! version and the correlation id), the grant check, the call's own work
//! (parse the JSON arguments, call the backend), the recording of the call
//! when a recorder is attached, and the answer: backend errors become the
//! guest-visible `error` variant, a [`CapError::Fault`] traps.

use std::future::Future;

use serde::Serialize;
use serde_json::{json, Map, Value};
use tracing::Instrument;
use usher_registry::Capability;
use usher_world::types;

use crate::limits::MAX_BATCH;
use crate::{Caller, CapError};

/// What every host function returns: a trap, or the guest-visible result.
pub(crate) type HostResult<T> = wasmtime::Result<Result<T, types::Error>>;

/// One capability call: which capability (its grant is checked), which
/// function, which resource.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call<'a> {
    capability: Capability,
    function: &'static str,
    resource: &'a str,
    checked: bool,
}

impl<'a> Call<'a> {
    /// A call on `resource`, checked against the worker's grant.
    pub(crate) fn new(capability: Capability, function: &'static str, resource: &'a str) -> Self {
        Self {
            capability,
            function,
            resource,
            checked: true,
        }
    }

    /// A call on something already checked (a writer the worker opened).
    pub(crate) fn unchecked(mut self) -> Self {
        self.checked = false;
        self
    }
}

/// How a successful call is recorded and answered.
pub(crate) trait Answer<R> {
    /// What the guest gets.
    type Guest;
    /// The outcome as the recorder keeps it.
    fn recorded(&self, outcome: &R) -> Value;
    /// The guest's answer; `Err` traps (a per-record host fault).
    fn answer(self, outcome: R) -> wasmtime::Result<Self::Guest>;
}

/// The backend's answer, recorded as JSON and handed to the guest as it is.
pub(crate) struct Plain;

impl<R: Serialize> Answer<R> for Plain {
    type Guest = R;
    fn recorded(&self, outcome: &R) -> Value {
        serde_json::to_value(outcome).unwrap_or(Value::Null)
    }
    fn answer(self, outcome: R) -> wasmtime::Result<R> {
        Ok(outcome)
    }
}

/// The backend's answer handed to the guest as it is, recorded as a summary
/// (the size of bytes, say, rather than the bytes).
pub(crate) struct Summary<F>(pub(crate) F);

impl<R, F: Fn(&R) -> Value> Answer<R> for Summary<F> {
    type Guest = R;
    fn recorded(&self, outcome: &R) -> Value {
        (self.0)(outcome)
    }
    fn answer(self, outcome: R) -> wasmtime::Result<R> {
        Ok(outcome)
    }
}

/// How the per-record results of a call are recorded.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Records {
    /// `{"failed": n}`.
    Failed,
    /// One `{"ok": …}` or `{"error": "…"}` per record.
    Each,
}

/// A call with one result per record: a record's error reaches the guest
/// alone, a record's host fault traps the invocation.
pub(crate) struct PerRecord<F> {
    pub(crate) records: Records,
    pub(crate) convert: F,
}

impl<X: Serialize, U, F: Fn(X) -> U> Answer<Vec<Result<X, CapError>>> for PerRecord<F> {
    type Guest = Vec<Result<U, types::Error>>;
    fn recorded(&self, outcome: &Vec<Result<X, CapError>>) -> Value {
        match self.records {
            Records::Failed => json!({"failed": outcome.iter().filter(|r| r.is_err()).count()}),
            Records::Each => Value::Array(
                outcome
                    .iter()
                    .map(|r| match r {
                        Ok(v) => json!({ "ok": v }),
                        Err(e) => json!({"error": e.to_string()}),
                    })
                    .collect(),
            ),
        }
    }
    fn answer(self, outcome: Vec<Result<X, CapError>>) -> wasmtime::Result<Self::Guest> {
        outcome
            .into_iter()
            .map(|r| match r {
                Ok(v) => Ok(Ok((self.convert)(v))),
                Err(e) => e.into_guest().map(Err),
            })
            .collect()
    }
}

impl Caller {
    /// The whole sequence of one call: span, grant check, `work` (parse and
    /// call the backend), recording, answer.
    pub(crate) async fn call<R, A: Answer<R>>(
        &self,
        call: Call<'_>,
        request: impl FnOnce() -> Value,
        answer: A,
        work: impl Future<Output = Result<R, CapError>>,
    ) -> HostResult<A::Guest> {
        let outcome = self.attempt(call, work).await;
        self.conclude(call, request, answer, outcome)
    }

    /// The first half of [`Caller::call`]: the grant check and
    /// `work`, in the call's span. For calls that run many attempts at once
    /// and conclude them in order (`services.call-many`).
    pub(crate) async fn attempt<R>(
        &self,
        call: Call<'_>,
        work: impl Future<Output = Result<R, CapError>>,
    ) -> Result<R, CapError> {
        let span = tracing::debug_span!(
            "capability",
            capability = call.capability.interface(),
            function = call.function,
            resource = call.resource,
        );
        async {
            if call.checked {
                self.check(call.capability, call.resource)?;
            }
            work.await
        }
        .instrument(span)
        .await
    }

    /// The second half of [`Caller::call`]: records the call and
    /// answers the guest.
    pub(crate) fn conclude<R, A: Answer<R>>(
        &self,
        call: Call<'_>,
        request: impl FnOnce() -> Value,
        answer: A,
        outcome: Result<R, CapError>,
    ) -> HostResult<A::Guest> {
        let capability = call.capability.interface();
        let (function, resource) = (call.function, call.resource);
        match outcome {
            Ok(r) => {
                if self.recorder.is_some() {
                    let recorded = answer.recorded(&r);
                    self.record(capability, function, resource, request, &Ok(recorded));
                }
                Ok(Ok(answer.answer(r)?))
            }
            Err(e) => {
                self.record::<()>(capability, function, resource, request, &Err(e.clone()));
                tracing::debug!(
                    worker = %self.worker.name,
                    correlation_id = %self.correlation_id,
                    capability, function, resource, error = %e,
                    "capability call failed"
                );
                Ok(Err(e.into_guest()?))
            }
        }
    }

    /// A request as the recorder keeps it, built only when calls are recorded.
    pub(crate) fn recorded(&self, request: impl FnOnce() -> Value) -> Value {
        if self.recorder.is_some() {
            request()
        } else {
            Value::Null
        }
    }
}

/// Parses a JSON argument.
pub(crate) fn parse_json(text: &str, what: &str) -> Result<Value, CapError> {
    serde_json::from_str(text)
        .map_err(|e| CapError::Invalid(format!("{what} is not valid JSON: {e}")))
}

/// Parses a JSON argument that must be an object.
pub(crate) fn parse_object(text: &str, what: &str) -> Result<Map<String, Value>, CapError> {
    match parse_json(text, what)? {
        Value::Object(map) => Ok(map),
        other => Err(CapError::Invalid(format!(
            "{what} must be a JSON object, got {}",
            crate::backend::json_kind(&other)
        ))),
    }
}

/// Refuses a call carrying more than [`MAX_BATCH`] records.
pub(crate) fn check_batch(len: usize) -> Result<(), CapError> {
    if len > MAX_BATCH {
        Err(CapError::Invalid(format!(
            "a call carries at most {MAX_BATCH} records, got {len}"
        )))
    } else {
        Ok(())
    }
}

/// WIT pairs as name/value tuples.
pub(crate) fn pairs(list: Vec<types::Pair>) -> Vec<(String, String)> {
    list.into_iter().map(|p| (p.name, p.value)).collect()
}

/// Name/value tuples as WIT pairs.
pub(crate) fn to_pairs(list: Vec<(String, String)>) -> Vec<types::Pair> {
    list.into_iter()
        .map(|(name, value)| types::Pair { name, value })
        .collect()
}

/// A JSON value as the guest receives it: its text.
pub(crate) fn to_string(v: &Value) -> String {
    v.to_string()
}
