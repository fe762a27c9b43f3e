//! `usher lambda`: one worker of the registry as an AWS Lambda function.
//!
//! The function's environment names the worker ([`LambdaConfig`]). At init
//! the host loads the registry, fetches the worker's live component from the
//! component store (an S3 prefix is mirrored into a local folder, every
//! component verified against its sha256; the precompiled artifact for this
//! engine build is used when the store has one) and starts the
//! [`Runtime`](usher_engine::Runtime) for that worker only.
//!
//! [`LambdaHost::handle`] takes an AWS event as JSON and answers in AWS's
//! shape (see [`events`]); [`run`] serves it with `lambda_runtime`. Between
//! invocations the host checks the release file's ETag at the configured
//! interval and hot swaps a new release without a cold start.
//!
//! ```no_run
//! # async fn demo(backends: std::sync::Arc<usher_capabilities::Backends>) -> Result<(), Box<dyn std::error::Error>> {
//! use usher_trigger_lambda::{LambdaConfig, LambdaHost};
//! let config = LambdaConfig::from_env()?;
//! let registry = std::sync::Arc::new(config.load_registry()?);
//! let host = LambdaHost::init(&config, usher_trigger_lambda::default_engine()?, registry, backends).await?;
//! let reply = host.handle(serde_json::json!({"Records": []})).await;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod config;
pub mod events;
mod host;

use std::sync::Arc;

pub use config::{LambdaConfig, DEFAULT_MIRROR, DEFAULT_RELEASE_CHECK_SECS};
pub use host::{default_engine, InitError, LambdaHost};

/// The error of one invocation, as Lambda reports it (`errorType`,
/// `errorMessage`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct LambdaError {
    /// The machine-readable type: `InvalidEvent`, `BatchFailed`,
    /// `WorkerTrapped`, `WorkerTimeout`, `WorkerMemoryLimit`, `WorkerFailed`,
    /// `InternalError`, or an invoke-worker's own error kind.
    pub error_type: String,
    /// What happened.
    pub message: String,
}

impl LambdaError {
    /// An error of `error_type`.
    pub fn new(error_type: &str, message: impl Into<String>) -> Self {
        Self {
            error_type: error_type.to_string(),
            message: message.into(),
        }
    }

    /// An event the worker cannot take.
    pub fn invalid_event(worker: &str, message: impl std::fmt::Display) -> Self {
        Self::new("InvalidEvent", format!("{worker}: {message}"))
    }

    /// The JSON Lambda returns for it: `{"errorType", "errorMessage"}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "errorType": self.error_type, "errorMessage": self.message })
    }
}

impl From<LambdaError> for lambda_runtime::Diagnostic {
    fn from(e: LambdaError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.error_type,
            error_message: e.message,
        }
    }
}

/// Serves the Lambda Runtime API with a host task instead of a worker
/// (`usher lambda` with `USHER_TASK`): each event's payload goes to `task`,
/// whose answer is the invocation's result and whose error its function
/// error (with the whole chain of causes in the message).
pub async fn run_task<F, Fut>(task: F) -> Result<(), lambda_runtime::Error>
where
    F: Fn(serde_json::Value) -> Fut,
    Fut: std::future::Future<Output = Result<serde_json::Value, String>>,
{
    let handler = lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
            let answer = task(event.payload);
            async move { answer.await.map_err(lambda_runtime::Error::from) }
        },
    );
    lambda_runtime::run(handler).await
}

/// Serves `host` with `lambda_runtime` until the runtime API stops (the
/// Lambda request id becomes the correlation id of each invocation).
pub async fn run(host: Arc<LambdaHost>) -> Result<(), lambda_runtime::Error> {
    let handler = lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
            let host = host.clone();
            async move {
                host.handle_with(event.payload, Some(event.context.request_id))
                    .await
            }
        },
    );
    lambda_runtime::run(handler).await
}
