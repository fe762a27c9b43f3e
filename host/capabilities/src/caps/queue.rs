//! `queue`: sending batches to SQS-shaped queues.

use serde_json::{json, Value};
use usher_registry::Capability;
use usher_world::{queue, types};

use crate::backend::OutgoingMessage;
use crate::call::{check_batch, pairs, Call, HostResult, PerRecord, Records};
use crate::{Caller, CapabilityCtx};

/// A guest message as the backend takes it.
pub(super) fn outgoing(
    body: String,
    attributes: Vec<types::Pair>,
    delay_seconds: Option<u32>,
) -> OutgoingMessage {
    OutgoingMessage {
        body,
        attributes: pairs(attributes),
        delay_seconds,
    }
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
        let msgs: Vec<OutgoingMessage> = messages
            .into_iter()
            .map(|m| outgoing(m.body, m.attributes, m.delay_seconds))
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
