//! Topics on SNS: `PublishBatch` in requests of at most ten messages (and
//! 256 KiB), with string message attributes so subscriptions' filter
//! policies apply.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use aws_sdk_sns::Client;
use parking_lot::Mutex;
use usher_capabilities::{CapError, OutgoingMessage, TopicBackend};

use crate::error::sdk;
use crate::{chunks, messages, ResourceNames};

/// The [`TopicBackend`] on SNS. Topic ARNs are found by listing topics,
/// once, and cached (a physical name that is an ARN is used as is). A
/// message's delay does not apply to topics and is ignored.
pub struct SnsTopics {
    client: Client,
    names: Arc<ResourceNames>,
    arns: Mutex<HashMap<String, String>>,
}

impl SnsTopics {
    pub(crate) fn new(client: Client, names: Arc<ResourceNames>) -> SnsTopics {
        SnsTopics {
            client,
            names,
            arns: Mutex::new(HashMap::new()),
        }
    }

    /// The SNS client (for tests).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The ARN of a topic by its registry name.
    pub async fn topic_arn(&self, topic: &str) -> Result<String, CapError> {
        if let Some(arn) = self.arns.lock().get(topic) {
            return Ok(arn.clone());
        }
        let physical = self.names.physical(topic);
        let arn = if physical.starts_with("arn:") {
            physical
        } else {
            let suffix = format!(":{physical}");
            let mut token = None;
            loop {
                let out = self
                    .client
                    .list_topics()
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|e| sdk(&format!("SNS ListTopics for topic `{topic}`"), e))?;
                if let Some(arn) = out
                    .topics()
                    .iter()
                    .filter_map(|t| t.topic_arn())
                    .find(|arn| arn.ends_with(&suffix))
                {
                    break arn.to_string();
                }
                token = out.next_token;
                if token.is_none() {
                    return Err(CapError::NotFound(format!(
                        "topic `{topic}` (`{physical}`) does not exist"
                    )));
                }
            }
        };
        self.arns.lock().insert(topic.to_string(), arn.clone());
        Ok(arn)
    }

    async fn publish_chunk(
        &self,
        topic: &str,
        arn: &str,
        chunk: Vec<(usize, OutgoingMessage)>,
    ) -> Result<Vec<(usize, Result<String, CapError>)>, CapError> {
        let what = format!("SNS PublishBatch to topic `{topic}`");
        let mut entries = Vec::with_capacity(chunk.len());
        for (n, (_, m)) in chunk.iter().enumerate() {
            let mut attributes = HashMap::new();
            for (k, v) in &m.attributes {
                let value = MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(v)
                    .build()
                    .map_err(|e| CapError::Invalid(format!("attribute `{k}`: {e}")))?;
                attributes.insert(k.clone(), value);
            }
            entries.push(
                PublishBatchRequestEntry::builder()
                    .id(n.to_string())
                    .message(&m.body)
                    .set_message_attributes((!attributes.is_empty()).then_some(attributes))
                    .build()
                    .map_err(|e| CapError::Fault(format!("{what}: {e}")))?,
            );
        }
        let out = self
            .client
            .publish_batch()
            .topic_arn(arn)
            .set_publish_batch_request_entries(Some(entries))
            .send()
            .await
            .map_err(|e| sdk(&what, e))?;
        Ok(messages::results(
            &what,
            &chunk,
            out.successful()
                .iter()
                .filter_map(|s| Some((s.id()?, s.message_id()?))),
            out.failed()
                .iter()
                .map(|f| (f.id(), f.sender_fault(), f.code(), f.message())),
        ))
    }
}

#[async_trait]
impl TopicBackend for SnsTopics {
    async fn publish_batch(
        &self,
        topic: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<Result<String, CapError>>, CapError> {
        let arn = self.topic_arn(topic).await?;
        let messages = messages
            .into_iter()
            .map(|m| OutgoingMessage {
                delay_seconds: None,
                ..m
            })
            .collect();
        let (requests, mut results) = messages::prepare(messages);
        chunks::send(requests, &mut results, |chunk| {
            self.publish_chunk(topic, &arn, chunk)
        })
        .await?;
        Ok(chunks::finish(results, "SNS PublishBatch"))
    }
}
