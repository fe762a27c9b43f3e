//! The span of one event (a queue batch, a stream batch, a schedule tick,
//! an HTTP request), which the worker's `invocation` span and its
//! capability calls go below: one trace per event. A queue batch whose
//! messages carry one `traceparent` continues that trace (the sender's
//! invocation is its parent); messages from several traces are linked. A
//! stream batch does the same with the `traceparent` its changes were
//! written under (the change log keeps the writer's trace context), so one
//! fan's entry is one trace from the worker that wrote it on.

use usher_backend_embedded::ChangeRow;
use usher_engine::BatchMessage;
use usher_telemetry::propagation::{self, CORRELATION_ID, TRACEPARENT};

/// Continues the trace of a batch's messages in `span`: the one
/// `traceparent` they share becomes its parent; several are linked. Also
/// answers the correlation id the messages share, if any (the invocation
/// then keeps the sender's).
pub(crate) fn continue_batch(span: &tracing::Span, messages: &[BatchMessage]) -> Option<String> {
    propagation::continue_from(
        span,
        messages.iter().filter_map(|m| m.attribute(TRACEPARENT)),
    );
    BatchMessage::shared_attribute(messages, CORRELATION_ID).map(str::to_string)
}

/// Continues the traces the changes of a stream batch were written under
/// in `span` (one: its parent; several: linked).
pub(crate) fn continue_rows(span: &tracing::Span, rows: &[ChangeRow]) {
    propagation::continue_from(span, rows.iter().filter_map(|r| r.traceparent.as_deref()));
}
