//! W3C trace context: the `traceparent` of the current span, to send with
//! service calls and queue messages, and the parent of a span taken from
//! one. Without the OpenTelemetry layer installed (no exporter, text logs)
//! there is no trace context: [`current_traceparent`] is `None` and
//! [`set_parent`] does nothing.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C header (and message attribute) carrying the trace context.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C header carrying vendor trace state.
pub const TRACESTATE: &str = "tracestate";
/// The header (and message attribute) carrying the correlation id.
pub const CORRELATION_ID: &str = "x-correlation-id";

/// The trace context of `span` as W3C headers (`traceparent`, and
/// `tracestate` when there is one); empty when the span has none.
pub fn headers_of(span: &tracing::Span) -> Vec<(String, String)> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return Vec::new();
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    let mut out: Vec<(String, String)> = carrier.into_iter().collect();
    out.sort();
    out
}

/// The `traceparent` of the current span, when it has a trace context.
pub fn current_traceparent() -> Option<String> {
    headers_of(&tracing::Span::current())
        .into_iter()
        .find(|(k, _)| k == TRACEPARENT)
        .map(|(_, v)| v)
}

/// Makes the remote span of `traceparent` (and `tracestate`) the parent of
/// `span`; an invalid or missing `traceparent` leaves `span` a root.
/// Must be called before the span is first entered.
pub fn set_parent(span: &tracing::Span, traceparent: Option<&str>, tracestate: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let mut carrier = HashMap::new();
    carrier.insert(TRACEPARENT.to_string(), traceparent.to_string());
    if let Some(state) = tracestate {
        carrier.insert(TRACESTATE.to_string(), state.to_string());
    }
    let cx = TraceContextPropagator::new().extract(&carrier);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// Links `span` to the remote span of each `traceparent` (a batch's
/// messages from several traces). Must be called before the span is
/// first entered.
pub fn add_links<'a>(span: &tracing::Span, traceparents: impl IntoIterator<Item = &'a str>) {
    let propagator = TraceContextPropagator::new();
    for tp in traceparents {
        let mut carrier = HashMap::new();
        carrier.insert(TRACEPARENT.to_string(), tp.to_string());
        let cx = propagator.extract(&carrier);
        let sc = cx.span().span_context().clone();
        if sc.is_valid() {
            span.add_link(sc);
        }
    }
}

/// Continues the traces of an event's records in `span`: the one
/// `traceparent` they share becomes its parent, several are linked (OTel's
/// batch receive), none leaves it a root. Must be called before the span is
/// first entered.
pub fn continue_from<'a>(span: &tracing::Span, traceparents: impl IntoIterator<Item = &'a str>) {
    let mut parents: Vec<&str> = traceparents.into_iter().collect();
    parents.sort_unstable();
    parents.dedup();
    match parents.as_slice() {
        [] => {}
        [one] => set_parent(span, Some(one), None),
        many => add_links(span, many.iter().copied()),
    }
}

/// The trace id and span id (hex) of `span`, when it has a trace context.
pub fn ids_of(span: &tracing::Span) -> Option<(String, String)> {
    let cx = span.context();
    let span_ref = cx.span();
    let sc = span_ref.span_context();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    fn with_otel(f: impl FnOnce()) {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f);
    }

    #[test]
    fn without_the_layer_there_is_no_trace_context() {
        let span = tracing::info_span!("x");
        let _g = span.enter();
        assert_eq!(current_traceparent(), None);
        assert!(headers_of(&span).is_empty());
    }

    #[test]
    fn a_traceparent_round_trips_into_a_child_span() {
        with_otel(|| {
            let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
            let span = tracing::info_span!("queue_batch");
            set_parent(&span, Some(parent), None);
            let (trace_id, span_id) = ids_of(&span).expect("ids");
            assert_eq!(trace_id, "0af7651916cd43dd8448eb211c80319c");
            assert_ne!(span_id, "b7ad6b7169203331");
            let _g = span.enter();
            let tp = current_traceparent().expect("a traceparent");
            assert_eq!(tp, format!("00-{trace_id}-{span_id}-01"));
        });
    }

    #[test]
    fn an_invalid_traceparent_leaves_a_root() {
        with_otel(|| {
            let span = tracing::info_span!("queue_batch");
            set_parent(&span, Some("garbage"), None);
            let (trace_id, _) = ids_of(&span).expect("ids");
            assert_ne!(trace_id, "00000000000000000000000000000000");
        });
    }
}
