//! Observability for the `usher` binary:
//!
//! - [`init`] installs the tracing subscriber: logs on stderr as text, as
//!   JSON lines (`USHER_LOG_FORMAT=json`, with the trace id, span id and
//!   correlation id of the event's span) or, under `usher lambda`, in
//!   Lambda's JSON log format; and, when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, OpenTelemetry traces
//!   exported over OTLP/HTTP (protobuf) in batches;
//! - [`propagation`]: the W3C `traceparent` of the current span, to put on
//!   service calls and queue messages, and to continue a trace from one;
//! - [`metric`]: the Prometheus recorder and the names of every metric the
//!   host records (`/metrics` on `usher up`'s listener).
//!
//! With neither the endpoint nor JSON logs the OpenTelemetry layer is not
//! installed at all: the spans cost what they cost before.

mod json;
pub mod metric;
mod otlp;
pub mod propagation;

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The environment variable choosing the log format (`text`, `json`).
pub const LOG_FORMAT_ENV: &str = "USHER_LOG_FORMAT";
/// The environment variable of the log filter (`warn` when unset).
pub const LOG_FILTER_ENV: &str = "USHER_LOG";

/// How logs are written on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    Text,
    /// One JSON object per line, with the trace, span and correlation ids.
    Json,
    /// Lambda's JSON log format (`timestamp`, `level`, `message`,
    /// `requestId`, plus the trace and correlation ids).
    Lambda,
}

impl LogFormat {
    /// The format `USHER_LOG_FORMAT` asks for (`text` when unset); `lambda`
    /// turns `json` into [`LogFormat::Lambda`].
    pub fn from_env(lambda: bool) -> Result<LogFormat, TelemetryError> {
        let format = match std::env::var(LOG_FORMAT_ENV) {
            Ok(v) if v.eq_ignore_ascii_case("json") => LogFormat::Json,
            Ok(v) if v.is_empty() || v.eq_ignore_ascii_case("text") => LogFormat::Text,
            Ok(v) => return Err(TelemetryError::LogFormat(v)),
            Err(_) => LogFormat::Text,
        };
        Ok(match (format, lambda) {
            (LogFormat::Json, true) => LogFormat::Lambda,
            (f, _) => f,
        })
    }
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `USHER_LOG_FORMAT` has an unknown value.
    #[error("USHER_LOG_FORMAT `{0}` is not `text` or `json`")]
    LogFormat(String),
    /// The OTLP exporter could not be built.
    #[error("the OTLP trace exporter: {0}")]
    Exporter(String),
    /// Another subscriber is installed already.
    #[error("the tracing subscriber: {0}")]
    Subscriber(String),
}

/// What [`init`] is asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// The log format.
    pub format: LogFormat,
    /// The `service.name` of the traces.
    pub service_name: String,
    /// Export traces over OTLP/HTTP (the exporter reads the standard
    /// `OTEL_EXPORTER_OTLP_*` variables).
    pub export_traces: bool,
}

impl Options {
    /// The options of the environment: the log format of
    /// `USHER_LOG_FORMAT`, traces when `OTEL_EXPORTER_OTLP_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (and `OTEL_SDK_DISABLED`
    /// is not `true`), `service.name` from `OTEL_SERVICE_NAME` or `usher`.
    pub fn from_env(lambda: bool) -> Result<Options, TelemetryError> {
        let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
        let disabled =
            std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
        Ok(Options {
            format: LogFormat::from_env(lambda)?,
            service_name: std::env::var("OTEL_SERVICE_NAME")
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "usher".to_string()),
            export_traces: !disabled
                && (set("OTEL_EXPORTER_OTLP_ENDPOINT")
                    || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")),
        })
    }
}

/// Keeps the trace exporter running; dropping it flushes the spans not yet
/// exported and stops the exporter.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    _otlp: Option<otlp::ExportRuntime>,
}

impl Telemetry {
    /// Whether traces are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("usher: flushing the traces failed: {e}");
            }
        }
    }
}

/// The spans the OpenTelemetry layer turns into OpenTelemetry spans: the
/// host's info spans, and the capability calls (debug spans of
/// `usher_capabilities` and `usher_backend_http`).
fn trace_filter() -> Targets {
    Targets::new()
        .with_default(tracing::Level::INFO)
        .with_target("usher_capabilities", tracing::Level::DEBUG)
        .with_target("usher_backend_http", tracing::Level::DEBUG)
        // The exporter's own HTTP client must not trace itself.
        .with_target("hyper", tracing::Level::WARN)
        .with_target("hyper_util", tracing::Level::WARN)
        .with_target("reqwest", tracing::Level::WARN)
        .with_target("h2", tracing::Level::WARN)
        .with_target("opentelemetry", tracing::Level::WARN)
        .with_target("opentelemetry_sdk", tracing::Level::WARN)
        .with_target("opentelemetry_otlp", tracing::Level::WARN)
        .with_target("opentelemetry_http", tracing::Level::WARN)
}

/// Installs the global tracing subscriber (and the W3C trace-context
/// propagator) as `options` ask. The OpenTelemetry layer is installed when
/// traces are exported or logs are JSON (for the ids in each line).
pub fn init(options: &Options) -> Result<Telemetry, TelemetryError> {
    let filter = EnvFilter::try_from_env(LOG_FILTER_ENV).unwrap_or_else(|_| EnvFilter::new("warn"));
    let dispatch = json::DispatchCell::default();
    let fmt_layer = match options.format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            // No colour codes in files and in Lambda's CloudWatch logs.
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed(),
        LogFormat::Json | LogFormat::Lambda => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(json::JsonLines::new(
                options.format == LogFormat::Lambda,
                dispatch.clone(),
            ))
            .with_filter(filter)
            .boxed(),
    };
    let mut export_runtime = None;
    let provider = if options.export_traces {
        let (exporter, rt) = otlp::exporter()?;
        export_runtime = Some(rt);
        Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name(options.service_name.clone())
                        .build(),
                )
                .build(),
        )
    } else if options.format != LogFormat::Text {
        // Ids for the log lines, nothing exported.
        Some(SdkTracerProvider::builder().build())
    } else {
        None
    };
    let otel_layer = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("usher"))
            .with_filter(trace_filter())
    });
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    tracing_subscriber::registry()
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()
        .map_err(|e| TelemetryError::Subscriber(e.to_string()))?;
    // The JSON lines read the ids through the installed dispatcher.
    let _ = dispatch.set(tracing::dispatcher::get_default(|d| d.downgrade()));
    // Only an exporting provider needs shutting down; the id-only one is
    // kept by the layer.
    let provider = if options.export_traces {
        provider
    } else {
        None
    };
    Ok(Telemetry {
        provider,
        _otlp: export_runtime,
    })
}
