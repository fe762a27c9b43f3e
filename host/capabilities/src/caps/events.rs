//! `events`: producing to Kafka-shaped topics.

use serde_json::json;
use usher_registry::Capability;
use usher_world::{events, types};

use crate::backend::{Delivery, Event};
use crate::call::{check_batch, pairs, Call, HostResult, PerRecord, Records};
use crate::CapabilityCtx;

impl events::Host for CapabilityCtx {
    async fn produce(
        &mut self,
        topic: String,
        records: Vec<events::Event>,
    ) -> HostResult<Vec<Result<events::Delivery, types::Error>>> {
        let caller = &self.caller;
        let count = records.len();
        let work = async {
            check_batch(records.len())?;
            let evs = records
                .into_iter()
                .map(|e| Event {
                    key: e.key,
                    value: e.value,
                    headers: pairs(e.headers),
                })
                .collect();
            caller.backends.events.produce(&topic, evs).await
        };
        let answer = PerRecord {
            records: Records::Failed,
            convert: |d: Delivery| events::Delivery {
                partition: d.partition,
                offset: d.offset,
            },
        };
        let call = Call::new(Capability::Events, "produce", &topic);
        caller
            .call(call, || json!({"events": count}), answer, work)
            .await
    }
}
