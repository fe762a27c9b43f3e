//! Queues on SQS: `SendMessageBatch` in requests of at most ten messages
//! (and 256 KiB), string message attributes, per-message delay.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use aws_sdk_sqs::Client;
use parking_lot::Mutex;
use usher_capabilities::{CapError, OutgoingMessage, QueueBackend};

use crate::error::{code, sdk};
use crate::{chunks, messages, ResourceNames};

/// The [`QueueBackend`] on SQS. Queue URLs are resolved by name once and
/// cached (a physical name that is a URL is used as is).
pub struct SqsQueues {
    client: Client,
    names: Arc<ResourceNames>,
    urls: Mutex<HashMap<String, String>>,
}

fn is_url(name: &str) -> bool {
    name.starts_with("https://") || name.starts_with("http://")
}

impl SqsQueues {
    pub(crate) fn new(client: Client, names: Arc<ResourceNames>) -> SqsQueues {
        SqsQueues {
            client,
            names,
            urls: Mutex::new(HashMap::new()),
        }
    }

    /// The SQS client (for pollers and tests).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The URL of a queue by its registry name.
    pub async fn queue_url(&self, queue: &str) -> Result<String, CapError> {
        if let Some(url) = self.urls.lock().get(queue) {
            return Ok(url.clone());
        }
        let physical = self.names.physical(queue);
        let url = if is_url(&physical) {
            physical
        } else {
            let out = self
                .client
                .get_queue_url()
                .queue_name(&physical)
                .send()
                .await
                .map_err(|e| {
                    sdk(
                        &format!("SQS GetQueueUrl of queue `{queue}` (`{physical}`)"),
                        e,
                    )
                })?;
            out.queue_url.ok_or_else(|| {
                CapError::Unavailable(format!(
                    "SQS GetQueueUrl of queue `{queue}` (`{physical}`) answered no URL"
                ))
            })?
        };
        self.urls.lock().insert(queue.to_string(), url.clone());
        Ok(url)
    }

    async fn send_chunk(
        &self,
        queue: &str,
        url: &str,
        chunk: Vec<(usize, OutgoingMessage)>,
    ) -> Result<Vec<(usize, Result<String, CapError>)>, CapError> {
        let what = format!("SQS SendMessageBatch to queue `{queue}`");
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
            let delay = m
                .delay_seconds
                .map(|d| i32::try_from(d).unwrap_or(i32::MAX));
            entries.push(
                SendMessageBatchRequestEntry::builder()
                    .id(n.to_string())
                    .message_body(&m.body)
                    .set_delay_seconds(delay)
                    .set_message_attributes((!attributes.is_empty()).then_some(attributes))
                    .build()
                    .map_err(|e| CapError::Fault(format!("{what}: {e}")))?,
            );
        }
        let out = match self
            .client
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                if matches!(
                    code(&e),
                    Some("QueueDoesNotExist" | "AWS.SimpleQueueService.NonExistentQueue")
                ) {
                    // The queue went away: resolve it again next time.
                    self.urls.lock().remove(queue);
                }
                return Err(sdk(&what, e));
            }
        };
        Ok(messages::results(
            &what,
            &chunk,
            out.successful().iter().map(|s| (s.id(), s.message_id())),
            out.failed()
                .iter()
                .map(|f| (f.id(), f.sender_fault(), f.code(), f.message())),
        ))
    }
}

#[async_trait]
impl QueueBackend for SqsQueues {
    async fn send_batch(
        &self,
        queue: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<Result<String, CapError>>, CapError> {
        let url = self.queue_url(queue).await?;
        let (requests, mut results) = messages::prepare(messages);
        chunks::send(requests, &mut results, |chunk| {
            self.send_chunk(queue, &url, chunk)
        })
        .await?;
        Ok(chunks::finish(results, "SQS SendMessageBatch"))
    }
}
