//! `topic`: SNS-style publishing with message attributes.

use usher_registry::Capability;
use usher_world::{topic, types};

use super::queue::{outgoing, sent, trace_attributes};
use crate::backend::OutgoingMessage;
use crate::call::{check_batch, Call, HostResult};
use crate::CapabilityCtx;

impl topic::Host for CapabilityCtx {
    async fn publish_batch(
        &mut self,
        topic: String,
        messages: Vec<topic::Outgoing>,
    ) -> HostResult<Vec<Result<String, types::Error>>> {
        let caller = &self.caller;
        let trace = trace_attributes(caller);
        let msgs: Vec<OutgoingMessage> = messages
            .into_iter()
            .map(|m| outgoing(m.body, m.attributes, None, &trace))
            .collect();
        let (request, answer) = sent(caller, &msgs);
        let work = async {
            check_batch(msgs.len())?;
            caller.backends.topic.publish_batch(&topic, msgs).await
        };
        let call = Call::new(Capability::Topic, "publish-batch", &topic);
        caller.call(call, || request, answer, work).await
    }
}
