//! Message queues, SQS-shaped (the `queue` capability).

use serde::Serialize;

use crate::{json, Result};

/// A message to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outgoing {
    /// The message body (usually JSON).
    pub body: String,
    /// Message attributes.
    pub attributes: Vec<(String, String)>,
    /// Seconds before the message becomes visible to consumers.
    pub delay_seconds: Option<u32>,
}

impl Outgoing {
    /// A message with this body and no attributes.
    pub fn new(body: impl Into<String>) -> Outgoing {
        Outgoing {
            body: body.into(),
            ..Outgoing::default()
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

    /// Delays the message's visibility.
    pub fn delay_seconds(mut self, seconds: u32) -> Outgoing {
        self.delay_seconds = Some(seconds);
        self
    }
}

/// Sends messages to a queue (the host sends them in chunks of 10). The
/// result has one entry per message, in order: its message id or its error.
/// The outer error means nothing was sent.
pub fn send_batch(queue: &str, messages: &[Outgoing]) -> Result<Vec<Result<String>>> {
    sys::send_batch(queue, messages)
}

/// Sends one message; its message id.
pub fn send(queue: &str, message: Outgoing) -> Result<String> {
    send_batch(queue, std::slice::from_ref(&message))?
        .into_iter()
        .next()
        .unwrap_or_else(|| {
            Err(crate::Error::Invalid(
                "the host returned no result for the message".into(),
            ))
        })
}

#[cfg(target_arch = "wasm32")]
mod sys {
    use super::Outgoing;
    use crate::bindings::caps::usher::platform::{queue as wit, types::Pair};
    use crate::{Error, Result};

    pub(super) fn send_batch(queue: &str, messages: &[Outgoing]) -> Result<Vec<Result<String>>> {
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
                delay_seconds: m.delay_seconds,
            })
            .collect();
        Ok(wit::send_batch(queue, &messages)?
            .into_iter()
            .map(|r| r.map_err(Error::from))
            .collect())
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod sys {
    use super::Outgoing;
    use crate::{native, Result};

    pub(super) fn send_batch(queue: &str, messages: &[Outgoing]) -> Result<Vec<Result<String>>> {
        native::with("queue::send_batch", |b| b.queue_send_batch(queue, messages))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder() {
        let m = Outgoing::json(&serde_json::json!({"a": 1}))
            .expect("json")
            .attribute("eventName", "INSERT")
            .delay_seconds(5);
        assert_eq!(m.body, r#"{"a":1}"#);
        assert_eq!(m.attributes, vec![("eventName".into(), "INSERT".into())]);
        assert_eq!(m.delay_seconds, Some(5));
    }
}
