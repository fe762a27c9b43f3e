//! A local AWS Lambda Runtime API (`/2018-06-01/runtime/...`): the HTTP
//! interface a function's runtime polls for its next invocation and posts
//! its response or error to. The real `usher lambda` binary runs against it
//! unchanged (`AWS_LAMBDA_RUNTIME_API=127.0.0.1:PORT`); several processes
//! may poll one API, as concurrent instances of one function do.
//!
//! [`RuntimeApi::invoke`] queues an event and waits for the runtime's
//! answer, as Lambda's synchronous invoke does; an answer that does not come
//! within the timeout is a `Task.TimedOut` error (the function is not killed
//! here, its late answer is dropped).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// A function error as the runtime reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionError {
    pub error_type: String,
    pub message: String,
}

pub type Outcome = Result<Value, FunctionError>;

struct Invocation {
    id: String,
    event: Value,
    deadline_ms: u128,
    reply: oneshot::Sender<Outcome>,
}

struct ApiState {
    function: String,
    queue: mpsc::UnboundedSender<Invocation>,
    next: tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>,
    pending: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    init_errors: Mutex<Vec<Value>>,
    ids: AtomicU64,
}

/// One function's Runtime API on 127.0.0.1.
pub struct RuntimeApi {
    pub addr: SocketAddr,
    state: Arc<ApiState>,
    server: tokio::task::JoinHandle<()>,
}

impl RuntimeApi {
    /// Serves the API of `function` on a free port.
    pub async fn start(function: &str) -> RuntimeApi {
        let (queue, next) = mpsc::unbounded_channel();
        let state = Arc::new(ApiState {
            function: function.to_string(),
            queue,
            next: tokio::sync::Mutex::new(next),
            pending: Mutex::new(HashMap::new()),
            init_errors: Mutex::new(Vec::new()),
            ids: AtomicU64::new(1),
        });
        let app = axum::Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the runtime API");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("runtime API");
        });
        RuntimeApi {
            addr,
            state,
            server,
        }
    }

    /// Invokes the function with `event` and waits up to `timeout` for its
    /// answer.
    pub async fn invoke(&self, event: Value, timeout: Duration) -> Outcome {
        let (reply, answer) = oneshot::channel();
        let id = format!(
            "{}-{}",
            self.state.function.replace('/', "-"),
            self.state.ids.fetch_add(1, Ordering::Relaxed)
        );
        let deadline_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_millis()
            + timeout.as_millis();
        self.state
            .queue
            .send(Invocation {
                id,
                event,
                deadline_ms,
                reply,
            })
            .expect("the API is running");
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(FunctionError {
                error_type: "Runtime.Lost".into(),
                message: "the runtime API dropped the invocation".into(),
            }),
            Err(_) => Err(FunctionError {
                error_type: "Task.TimedOut".into(),
                message: format!("no answer within {timeout:?}"),
            }),
        }
    }

    /// What runtimes posted to `/runtime/init/error`.
    pub fn init_errors(&self) -> Vec<Value> {
        self.state.init_errors.lock().expect("lock").clone()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn next_invocation(State(state): State<Arc<ApiState>>) -> Response {
    let invocation = {
        let mut next = state.next.lock().await;
        match next.recv().await {
            Some(invocation) => invocation,
            None => return StatusCode::GONE.into_response(),
        }
    };
    state
        .pending
        .lock()
        .expect("lock")
        .insert(invocation.id.clone(), invocation.reply);
    let mut headers = HeaderMap::new();
    let header = |text: &str| HeaderValue::from_str(text).expect("header value");
    headers.insert("lambda-runtime-aws-request-id", header(&invocation.id));
    headers.insert(
        "lambda-runtime-deadline-ms",
        header(&invocation.deadline_ms.to_string()),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        header(&format!(
            "arn:aws:lambda:us-east-1:123456789012:function:{}",
            state.function.replace('/', "-")
        )),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        header("Root=1-00000000-000000000000000000000000;Sampled=0"),
    );
    headers.insert("content-type", header("application/json"));
    (headers, invocation.event.to_string()).into_response()
}

fn answer(state: &ApiState, id: &str, outcome: Outcome) -> StatusCode {
    match state.pending.lock().expect("lock").remove(id) {
        Some(reply) => {
            // The invoker may have timed out and gone: nothing to tell.
            let _ = reply.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn response(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    let outcome = serde_json::from_slice(&body).map_err(|e| FunctionError {
        error_type: "Runtime.InvalidResponse".into(),
        message: format!("the response is not JSON: {e}"),
    });
    answer(&state, &id, outcome)
}

async fn error(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let error = FunctionError {
        error_type: value["errorType"].as_str().unwrap_or("").to_string(),
        message: value["errorMessage"].as_str().unwrap_or("").to_string(),
    };
    answer(&state, &id, Err(error))
}

async fn init_error(State(state): State<Arc<ApiState>>, body: Bytes) -> StatusCode {
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.init_errors.lock().expect("lock").push(value);
    StatusCode::ACCEPTED
}
