//! Event streams, Kafka-shaped (the `events` capability): an idempotent producer.

use crate::Result;

/// One record to produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// The partitioning key.
    pub key: Option<String>,
    /// The payload.
    pub value: Vec<u8>,
    /// Record headers.
    pub headers: Vec<(String, String)>,
}

/// Where a record was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The partition it went to.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
}

/// Produces records to a topic; one delivery report per record, in order.
/// The outer error means nothing was produced.
pub fn produce(topic: &str, events: &[Event]) -> Result<Vec<Result<Delivery>>> {
    sys::produce(topic, events)
}

#[cfg(target_arch = "wasm32")]
mod sys {
    use super::{Delivery, Event};
    use crate::bindings::caps::usher::platform::{events as wit, types::Pair};
    use crate::{Error, Result};

    pub(super) fn produce(topic: &str, events: &[Event]) -> Result<Vec<Result<Delivery>>> {
        let events: Vec<wit::Event> = events
            .iter()
            .map(|e| wit::Event {
                key: e.key.clone(),
                value: e.value.clone(),
                headers: e
                    .headers
                    .iter()
                    .map(|(name, value)| Pair {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
            })
            .collect();
        Ok(wit::produce(topic, &events)?
            .into_iter()
            .map(|r| {
                r.map(|d| Delivery {
                    partition: d.partition,
                    offset: d.offset,
                })
                .map_err(Error::from)
            })
            .collect())
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod sys {
    use super::{Delivery, Event};
    use crate::{Error, Result};

    pub(super) fn produce(_topic: &str, _events: &[Event]) -> Result<Vec<Result<Delivery>>> {
        Err(Error::native("events::produce"))
    }
}
