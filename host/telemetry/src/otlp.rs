//! The OTLP/HTTP span exporter on the tree's reqwest client.
//!
//! The SDK's batch span processor exports from its own thread, outside any
//! tokio runtime, while reqwest's async client needs one: each export is
//! spawned onto a small runtime of its own ([`ExportRuntime`]) and awaited
//! from there.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{SpanExporter, WithExportConfig, WithHttpConfig};

use crate::TelemetryError;

/// The longest one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The runtime the exports run on (one worker thread).
pub(crate) struct ExportRuntime(Option<tokio::runtime::Runtime>);

impl Drop for ExportRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

#[derive(Debug, Clone)]
struct OtlpClient {
    client: reqwest::Client,
    handle: tokio::runtime::Handle,
}

#[async_trait]
impl HttpClient for OtlpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let (parts, body) = request.into_parts();
        let task = self.handle.spawn(async move {
            let mut rb = client.request(parts.method, parts.uri.to_string());
            for (name, value) in &parts.headers {
                rb = rb.header(name, value);
            }
            let response = rb.body(body).send().await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        });
        let (status, headers, body) = task.await??;
        let mut response = Response::builder().status(status);
        if let Some(h) = response.headers_mut() {
            *h = headers;
        }
        Ok(response.body(body)?)
    }
}

/// The span exporter (endpoint, headers, timeout from the standard
/// `OTEL_EXPORTER_OTLP_*` variables) and the runtime it sends from.
pub(crate) fn exporter() -> Result<(SpanExporter, ExportRuntime), TelemetryError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("usher-otlp")
        .enable_all()
        .build()
        .map_err(|e| TelemetryError::Exporter(format!("its runtime: {e}")))?;
    let client = reqwest::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| TelemetryError::Exporter(format!("its HTTP client: {e}")))?;
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_http_client(OtlpClient {
            client,
            handle: rt.handle().clone(),
        })
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    Ok((exporter, ExportRuntime(Some(rt))))
}
