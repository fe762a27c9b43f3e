//! `queue`: sending batches to SQS-shaped queues.

use serde_json::{json, Value};
use usher_registry::Capability;
use usher_world::{queue, types};

use crate::backend::OutgoingMessage;
use crate::call::{check_batch, pairs, Call, HostResult, PerRecord, Records};
use crate::{Caller, CapabilityCtx};

/// A guest message as the backend takes it, with the trace context of
/// `trace` (see [`trace_attributes`]) added to its attributes.
pub(super) fn outgoing(
    body: String,
    attributes: Vec<types::Pair>,
    delay_seconds: Option<u32>,
    trace: &[(String, String)],
) -> OutgoingMessage {
    let mut attributes = pairs(attributes);
    for (name, value) in trace {
        if !attributes.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            attributes.push((name.clone(), value.clone()));
        }
    }
    OutgoingMessage {
        body,
        attributes,
        delay_seconds,
    }
}

/// The message attributes that continue the current trace in the worker
/// that receives the message: `traceparent` (W3C, the invocation's span)
/// and `x-correlation-id` (the invocation's correlation id). Empty when
/// there is no trace context (no OpenTelemetry layer installed), so the
/// messages are then exactly the guest's. A guest's own attribute of the
/// same name is kept.
pub(super) fn trace_attributes(ctx: &Caller) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> =
        usher_telemetry::propagation::headers_of(&tracing::Span::current())
            .into_iter()
            .filter(|(k, _)| k == usher_telemetry::propagation::TRACEPARENT)
            .collect();
    if !out.is_empty() {
        out.push((
            usher_telemetry::propagation::CORRELATION_ID.to_string(),
            ctx.correlation_id.clone(),
        ));
    }
    out
}

/// The answer of a send or publish: one message id (or error) per message.
pub(super) type PerMessage = PerRecord<fn(String) -> String>;

/// The recorded request and the per-message answer of a send (queues) or
/// a publish (topics): the messages, and one id or error per message.
pub(super) fn sent(ctx: &Caller, msgs: &[OutgoingMessage]) -> (Value, PerMessage) {
    let request = ctx.recorded(|| json!({ "messages": msgs }));
    let answer = PerRecord {
        records: Records::Each,
        convert: std::convert::identity as fn(String) -> String,
    };
    (request, answer)
}

impl queue::Host for CapabilityCtx {
    async fn send_batch(
        &mut self,
        queue: String,
        messages: Vec<queue::Outgoing>,
    ) -> HostResult<Vec<Result<String, types::Error>>> {
        let caller = &self.caller;
        let trace = trace_attributes(caller);
        let msgs: Vec<OutgoingMessage> = messages
            .into_iter()
            .map(|m| outgoing(m.body, m.attributes, m.delay_seconds, &trace))
            .collect();
        let (request, answer) = sent(caller, &msgs);
        let work = async {
            check_batch(msgs.len())?;
            caller.backends.queue.send_batch(&queue, msgs).await
        };
        let call = Call::new(Capability::Queue, "send-batch", &queue);
        caller.call(call, || request, answer, work).await
    }
}
