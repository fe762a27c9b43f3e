//! JSON log lines: one object per event, with the event's fields, the
//! worker, version and correlation id of its spans, and the OpenTelemetry
//! trace and span ids of its innermost span. Under `usher lambda` the keys
//! follow Lambda's JSON log format (`timestamp`, `level`, `message`,
//! `requestId`), so CloudWatch reads them as Lambda's own.

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};
use tracing::dispatcher::WeakDispatch;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use opentelemetry::trace::TraceContextExt;

/// Span fields copied into every line of the events below the span (the
/// innermost span that has one wins).
const SPAN_KEYS: [&str; 4] = ["correlation_id", "worker", "version", "requestId"];

/// The dispatcher the format reads the OpenTelemetry ids from: inside a
/// subscriber's callback `tracing::dispatcher::get_default` answers the
/// no-op dispatcher (re-entrancy guard), so [`crate::init`] sets this once
/// the subscriber is installed.
pub(crate) type DispatchCell = Arc<OnceLock<WeakDispatch>>;

/// The JSON line format.
pub(crate) struct JsonLines {
    lambda: bool,
    dispatch: DispatchCell,
}

impl JsonLines {
    pub(crate) fn new(lambda: bool, dispatch: DispatchCell) -> Self {
        Self { lambda, dispatch }
    }
}

#[derive(Default)]
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::from(format!("{value:?}")));
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut fields = fields.0;
        let message = fields.remove("message").unwrap_or(Value::from(""));

        // The spans' fields, innermost first.
        let mut from_spans = Map::new();
        let mut leaf = None;
        if let Some(scope) = ctx.event_scope() {
            for span in scope {
                if leaf.is_none() {
                    leaf = Some((span.id(), span.name()));
                }
                let ext = span.extensions();
                let Some(formatted) = ext.get::<FormattedFields<JsonFields>>() else {
                    continue;
                };
                let Ok(Value::Object(map)) = serde_json::from_str::<Value>(formatted) else {
                    continue;
                };
                for key in SPAN_KEYS {
                    if let Some(v) = map.get(key) {
                        from_spans.entry(key).or_insert_with(|| v.clone());
                    }
                }
            }
        }
        let ids = leaf.as_ref().and_then(|(id, _)| {
            let dispatch = self.dispatch.get()?.upgrade()?;
            let cx = tracing_opentelemetry::get_otel_context(id, &dispatch)?;
            let span = cx.span();
            let sc = span.span_context();
            sc.is_valid()
                .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
        });

        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut line = Map::new();
        line.insert("timestamp".into(), Value::from(now));
        line.insert("level".into(), Value::from(meta.level().as_str()));
        line.insert("message".into(), message);
        if self.lambda {
            if let Some(id) = from_spans.remove("requestId") {
                line.insert("requestId".into(), id);
            }
        }
        line.insert("target".into(), Value::from(meta.target()));
        if let Some((_, name)) = leaf {
            line.insert("span".into(), Value::from(name));
        }
        if let Some((trace_id, span_id)) = ids {
            let (t, s) = if self.lambda {
                ("traceId", "spanId")
            } else {
                ("trace_id", "span_id")
            };
            line.insert(t.into(), Value::from(trace_id));
            line.insert(s.into(), Value::from(span_id));
        }
        for (k, v) in from_spans {
            let key = match (self.lambda, k.as_str()) {
                (true, "correlation_id") => "correlationId".to_string(),
                _ => k,
            };
            line.entry(key).or_insert(v);
        }
        for (k, v) in fields {
            line.entry(k).or_insert(v);
        }
        let text = serde_json::to_string(&Value::Object(line)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::TracerProvider as _;
    use serde_json::Value;
    use tracing_subscriber::fmt::format::JsonFields;
    use tracing_subscriber::layer::SubscriberExt;

    use super::JsonLines;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The lines logged by `f` under the JSON format (`lambda`: Lambda's).
    fn lines(lambda: bool, f: impl FnOnce()) -> Vec<Value> {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let cell = super::DispatchCell::default();
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(move || writer.clone())
                    .fmt_fields(JsonFields::new())
                    .event_format(JsonLines::new(lambda, cell.clone())),
            )
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let dispatch = tracing::Dispatch::new(subscriber);
        cell.set(dispatch.downgrade()).expect("set once");
        tracing::dispatcher::with_default(&dispatch, f);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect()
    }

    #[test]
    fn a_line_carries_the_event_the_span_fields_and_the_trace_ids() {
        let out = lines(false, || {
            let span = tracing::info_span!(
                "invocation",
                worker = "replication/save-entries",
                version = "0.1.5",
                correlation_id = "c-42"
            );
            let _g = span.enter();
            tracing::info!(records = 3, "batch done");
        });
        assert_eq!(out.len(), 1);
        let line = &out[0];
        assert_eq!(line["message"], "batch done");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["records"], 3);
        assert_eq!(line["span"], "invocation");
        assert_eq!(line["worker"], "replication/save-entries");
        assert_eq!(line["version"], "0.1.5");
        assert_eq!(line["correlation_id"], "c-42");
        assert_eq!(line["trace_id"].as_str().map(str::len), Some(32));
        assert_eq!(line["span_id"].as_str().map(str::len), Some(16));
        assert!(line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    }

    #[test]
    fn outside_any_span_there_are_no_ids() {
        let out = lines(false, || tracing::warn!("plain"));
        assert_eq!(out[0]["message"], "plain");
        assert_eq!(out[0]["level"], "WARN");
        assert!(out[0].get("trace_id").is_none());
        assert!(out[0].get("correlation_id").is_none());
    }

    #[test]
    fn lambda_lines_use_lambdas_keys_and_request_id() {
        let out = lines(true, || {
            let lambda = tracing::info_span!("Lambda runtime invoke", requestId = "req-1");
            let _l = lambda.enter();
            let inv = tracing::info_span!("invocation", correlation_id = "c-7");
            let _i = inv.enter();
            tracing::error!("failed");
        });
        let line = &out[0];
        assert_eq!(line["requestId"], "req-1");
        assert_eq!(line["level"], "ERROR");
        assert_eq!(line["message"], "failed");
        assert_eq!(line["correlationId"], "c-7");
        assert_eq!(line["traceId"].as_str().map(str::len), Some(32));
        assert!(line.get("trace_id").is_none());
    }
}
