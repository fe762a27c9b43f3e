//! Adapters from the WIT handler exports to the SDK's worker traits (wasm32
//! only). Used by the `export_*_worker!` macros; not a public API.

use serde_json::Value;

use crate::bindings::caps::usher::platform::types::Pair;
use crate::handler::{
    BatchWorker, Change, ChangeKind, HttpRequest, HttpWorker, InvokeError, InvokeWorker, Message,
    ScheduledWorker, StreamWorker, Tick,
};

fn pairs_in(pairs: Vec<Pair>) -> Vec<(String, String)> {
    pairs.into_iter().map(|p| (p.name, p.value)).collect()
}

fn pairs_out(pairs: Vec<(String, String)>) -> Vec<Pair> {
    pairs
        .into_iter()
        .map(|(name, value)| Pair { name, value })
        .collect()
}

/// Runs a [`BatchWorker`] on the WIT batch.
pub fn handle_batch<W: BatchWorker>(
    messages: Vec<crate::bindings::batch::exports::usher::platform::batch_handler::Message>,
) -> crate::bindings::batch::exports::usher::platform::batch_handler::BatchResult {
    use crate::bindings::batch::exports::usher::platform::batch_handler as wit;
    let messages = messages
        .into_iter()
        .map(|m| Message {
            id: m.id,
            body: m.body,
            attributes: pairs_in(m.attributes),
            receive_count: m.receive_count,
        })
        .collect();
    let result = W::handle(messages);
    wit::BatchResult {
        failures: result.failures,
        counts: wit::Counts {
            received: result.received,
            processed: result.processed,
            failed: result.failed,
        },
    }
}

/// Runs a [`StreamWorker`] on the WIT batch. A record whose keys or images
/// are not JSON fails without reaching the worker.
pub fn handle_stream<W: StreamWorker>(
    changes: Vec<crate::bindings::stream::exports::usher::platform::stream_handler::Change>,
) -> crate::bindings::stream::exports::usher::platform::stream_handler::StreamResult {
    use crate::bindings::stream::exports::usher::platform::stream_handler as wit;
    fn parse(text: Option<String>) -> Result<Option<Value>, serde_json::Error> {
        text.map(|t| serde_json::from_str(&t)).transpose()
    }
    let mut bad = Vec::new();
    let mut good = Vec::with_capacity(changes.len());
    for c in changes {
        let kind = match c.kind {
            wit::ChangeKind::Insert => ChangeKind::Insert,
            wit::ChangeKind::Modify => ChangeKind::Modify,
            wit::ChangeKind::Remove => ChangeKind::Remove,
        };
        match (
            serde_json::from_str(&c.keys),
            parse(c.new_image),
            parse(c.old_image),
        ) {
            (Ok(keys), Ok(new_image), Ok(old_image)) => good.push(Change {
                table: c.table,
                kind,
                keys,
                new_image,
                old_image,
                sequence_number: c.sequence_number,
                timestamp_ms: c.timestamp_ms,
            }),
            _ => bad.push(c.sequence_number),
        }
    }
    let mut result = W::handle(good);
    bad.append(&mut result.failures);
    wit::StreamResult { failures: bad }
}

/// Runs an [`InvokeWorker`]; a payload that is not JSON is an `InvalidInput` error.
pub fn handle_invoke<W: InvokeWorker>(
    payload: String,
) -> Result<String, crate::bindings::invoke::exports::usher::platform::invoke_handler::InvokeError>
{
    use crate::bindings::invoke::exports::usher::platform::invoke_handler as wit;
    let result = serde_json::from_str::<Value>(&payload)
        .map_err(|e| InvokeError::invalid_input(format!("the payload is not JSON: {e}")))
        .and_then(W::handle);
    match result {
        Ok(value) => Ok(value.to_string()),
        Err(e) => Err(wit::InvokeError {
            kind: e.kind,
            message: e.message,
        }),
    }
}

/// Runs a [`ScheduledWorker`].
pub fn handle_scheduled<W: ScheduledWorker>(
    tick: crate::bindings::scheduled::exports::usher::platform::scheduled_handler::Tick,
) -> Result<String, String> {
    W::handle(Tick {
        schedule: tick.schedule,
        scheduled_time: tick.scheduled_time,
    })
    .map(|summary| summary.to_string())
}

/// Runs an [`HttpWorker`].
pub fn handle_http<W: HttpWorker>(
    request: crate::bindings::http::exports::usher::platform::http_handler::Request,
) -> crate::bindings::http::exports::usher::platform::http_handler::Response {
    use crate::bindings::http::exports::usher::platform::http_handler as wit;
    let response = W::handle(HttpRequest {
        method: request.method,
        path: request.path,
        query: request.query,
        headers: pairs_in(request.headers),
        body: request.body,
    });
    wit::Response {
        status: response.status,
        headers: pairs_out(response.headers),
        body: response.body,
    }
}

/// Runs a [`StreamTextWorker`](crate::stream_text::StreamTextWorker): the
/// changes as the host sent them, nothing parsed.
pub fn handle_stream_text<W: crate::stream_text::StreamTextWorker>(
    changes: Vec<crate::bindings::stream::exports::usher::platform::stream_handler::Change>,
) -> crate::bindings::stream::exports::usher::platform::stream_handler::StreamResult {
    use crate::bindings::stream::exports::usher::platform::stream_handler as wit;
    let changes = changes
        .into_iter()
        .map(|c| crate::stream_text::ChangeText {
            table: c.table,
            kind: match c.kind {
                wit::ChangeKind::Insert => ChangeKind::Insert,
                wit::ChangeKind::Modify => ChangeKind::Modify,
                wit::ChangeKind::Remove => ChangeKind::Remove,
            },
            keys: c.keys,
            new_image: c.new_image,
            old_image: c.old_image,
            sequence_number: c.sequence_number,
            timestamp_ms: c.timestamp_ms,
        })
        .collect();
    let result = W::handle(changes);
    wit::StreamResult {
        failures: result.failures,
    }
}
