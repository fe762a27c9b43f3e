//! The span of one event (a queue batch, a stream batch, a schedule tick,
//! an HTTP request), which the worker's `invocation` span and its
//! capability calls go below: one trace per event. A queue batch whose
//! messages carry one `traceparent` continues that trace (the sender's
//! invocation is its parent); messages from several traces are linked.

use usher_engine::BatchMessage;
use usher_telemetry::propagation::{self, CORRELATION_ID, TRACEPARENT};

fn attribute<'a>(m: &'a BatchMessage, name: &str) -> Option<&'a str> {
    m.attributes
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Continues the trace of a batch's messages in `span`: the one
/// `traceparent` they share becomes its parent; several are linked. Also
/// answers the correlation id the messages share, if any (the invocation
/// then keeps the sender's).
pub(crate) fn continue_batch(span: &tracing::Span, messages: &[BatchMessage]) -> Option<String> {
    let mut parents: Vec<&str> = messages
        .iter()
        .filter_map(|m| attribute(m, TRACEPARENT))
        .collect();
    parents.sort_unstable();
    parents.dedup();
    match parents.as_slice() {
        [] => {}
        [one] => propagation::set_parent(span, Some(one), None),
        many => propagation::add_links(span, many.iter().copied()),
    }
    let first = attribute(messages.first()?, CORRELATION_ID)?;
    messages
        .iter()
        .all(|m| attribute(m, CORRELATION_ID) == Some(first))
        .then(|| first.to_string())
}
