//! Publish/subscribe topics, SNS-shaped (the `topic` capability):
//! subscribers filter on message attributes.

use serde::Serialize;

use crate::{json, Result};

/// A message to publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outgoing {
    /// The message body (usually JSON).
    pub body: String,
    /// Attributes that subscription filter policies match on.
    pub attributes: Vec<(String, String)>,
}

impl Outgoing {
    /// A message with this body and no attributes.
    pub fn new(body: impl Into<String>) -> Outgoing {
        Outgoing {
            body: body.into(),
            attributes: Vec::new(),
        }
    }

    /// A message whose body is `value` as JSON.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Outgoing> {
        Ok(Outgoing::new(json::to_string(value)?))
    }

    /// Adds a message attribute.
    pub fn attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Outgoing {
        self.attributes.push((name.into(), value.into()));
        self
    }
}

/// Publishes messages to a topic; one result per message, in order: its
/// message id or its error. The outer error means nothing was published.
pub fn publish_batch(topic: &str, messages: &[Outgoing]) -> Result<Vec<Result<String>>> {
    sys::publish_batch(topic, messages)
}

#[cfg(target_arch = "wasm32")]
mod sys {
    use super::Outgoing;
    use crate::bindings::caps::usher::platform::{topic as wit, types::Pair};
    use crate::{Error, Result};

    pub(super) fn publish_batch(topic: &str, messages: &[Outgoing]) -> Result<Vec<Result<String>>> {
        let messages: Vec<wit::Outgoing> = messages
            .iter()
            .map(|m| wit::Outgoing {
                body: m.body.clone(),
                attributes: m
                    .attributes
                    .iter()
                    .map(|(name, value)| Pair {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
            })
            .collect();
        Ok(wit::publish_batch(topic, &messages)?
            .into_iter()
            .map(|r| r.map_err(Error::from))
            .collect())
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod sys {
    use super::Outgoing;
    use crate::{Error, Result};

    pub(super) fn publish_batch(
        _topic: &str,
        _messages: &[Outgoing],
    ) -> Result<Vec<Result<String>>> {
        Err(Error::native("topic::publish_batch"))
    }
}
