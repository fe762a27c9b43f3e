//! SNS-shaped topics: fan-out to subscribed queues through filter policies.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use usher_capabilities::{CapError, OutgoingMessage, TopicBackend};
use usher_registry::TopicDef;

use crate::filter::FilterPolicy;
use crate::queue::{check_message, EmbeddedQueues, Enqueue};
use crate::EmbeddedError;

struct Subscriber {
    queue: String,
    policy: Option<FilterPolicy>,
}

/// The embedded [`TopicBackend`]: a published message is copied, in one
/// transaction, to every subscribed queue whose filter policy matches its
/// attributes (raw message delivery: the queue message has the published
/// body and attributes, and a message id of its own).
pub struct EmbeddedTopics {
    queues: Arc<EmbeddedQueues>,
    topics: BTreeMap<String, Vec<Subscriber>>,
}

impl EmbeddedTopics {
    /// Builds the topics over the queue store, parsing every filter policy.
    pub(crate) fn new(
        queues: Arc<EmbeddedQueues>,
        topics: &BTreeMap<String, TopicDef>,
        queue_exists: impl Fn(&str) -> bool,
    ) -> Result<EmbeddedTopics, EmbeddedError> {
        let mut out = BTreeMap::new();
        for (name, def) in topics {
            let mut subs = Vec::with_capacity(def.subscriptions.len());
            for (i, sub) in def.subscriptions.iter().enumerate() {
                if !queue_exists(&sub.queue) {
                    return Err(EmbeddedError::Config(format!(
                        "topic `{name}`, subscription {}: queue `{}` is not defined",
                        i + 1,
                        sub.queue
                    )));
                }
                let policy = sub
                    .filter_policy
                    .as_ref()
                    .map(FilterPolicy::parse)
                    .transpose()
                    .map_err(|m| {
                        EmbeddedError::Config(format!(
                            "topic `{name}`, subscription {} (queue `{}`): filter_policy: {m}",
                            i + 1,
                            sub.queue
                        ))
                    })?;
                subs.push(Subscriber {
                    queue: sub.queue.clone(),
                    policy,
                });
            }
            out.insert(name.clone(), subs);
        }
        Ok(EmbeddedTopics {
            queues,
            topics: out,
        })
    }

    /// The queues a message with these attributes would reach.
    pub fn route(
        &self,
        topic: &str,
        attributes: &[(String, String)],
    ) -> Result<Vec<String>, CapError> {
        Ok(self
            .subscribers(topic)?
            .iter()
            .filter(|s| s.policy.as_ref().is_none_or(|p| p.matches(attributes)))
            .map(|s| s.queue.clone())
            .collect())
    }

    fn subscribers(&self, topic: &str) -> Result<&[Subscriber], CapError> {
        self.topics
            .get(topic)
            .map(Vec::as_slice)
            .ok_or_else(|| CapError::NotFound(format!("topic `{topic}` is not defined")))
    }
}

#[async_trait]
impl TopicBackend for EmbeddedTopics {
    async fn publish_batch(
        &self,
        topic: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<Result<String, CapError>>, CapError> {
        self.subscribers(topic)?;
        let mut results = Vec::with_capacity(messages.len());
        let mut batch = Vec::new();
        for message in messages {
            let message = OutgoingMessage {
                delay_seconds: None,
                ..message
            };
            if let Err(e) = check_message(&message) {
                results.push(Err(e));
                continue;
            }
            for queue in self.route(topic, &message.attributes)? {
                batch.push(Enqueue {
                    queue,
                    message_id: uuid::Uuid::new_v4().to_string(),
                    message: message.clone(),
                });
            }
            results.push(Ok(uuid::Uuid::new_v4().to_string()));
        }
        self.queues.enqueue(batch).await?;
        Ok(results)
    }
}
