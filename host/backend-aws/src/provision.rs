//! Creating the registry's resources on AWS (or on local servers): what
//! `usher provision` runs. Idempotent: a resource that already exists is
//! described and reported, not changed.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    StreamSpecification, StreamViewType,
};
use aws_sdk_sqs::types::QueueAttributeName;
use usher_capabilities::CapError;
use usher_registry::{Resources, TableDef};

use crate::error::{code, sdk};
use crate::AwsBackends;

/// How to create the resources.
#[derive(Debug, Clone, Default)]
pub struct ProvisionOptions {
    /// Every queue's visibility timeout, over the registry's (tests use a
    /// short one).
    pub visibility_timeout_s: Option<u32>,
}

/// One resource as provisioned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioned {
    /// The physical name (a queue's URL, a topic's ARN).
    pub physical: String,
    /// The ARN (a table's stream ARN, a queue's or topic's ARN; empty for a
    /// bucket).
    pub arn: String,
    /// Whether this run created it (`false`: it was there).
    pub created: bool,
}

/// Everything provisioned, by registry name.
#[derive(Debug, Clone, Default)]
pub struct ProvisionReport {
    /// Tables; `arn` is the stream's ARN.
    pub tables: BTreeMap<String, Provisioned>,
    /// Queues; `physical` is the URL.
    pub queues: BTreeMap<String, Provisioned>,
    /// Topics; `physical` is the ARN, every subscription made.
    pub topics: BTreeMap<String, Provisioned>,
    /// Buckets.
    pub buckets: BTreeMap<String, Provisioned>,
}

impl AwsBackends {
    /// Creates the registry's resources under their physical names:
    /// tables (on-demand, string keys, a NEW_AND_OLD_IMAGES stream for the
    /// stream-workers), queues (dead-letter queues first, then each queue
    /// with its visibility timeout, retention and redrive policy), topics
    /// with their queue subscriptions (raw delivery, filter policies on
    /// message attributes), and buckets.
    pub async fn provision(
        &self,
        resources: &Resources,
        options: &ProvisionOptions,
    ) -> Result<ProvisionReport, CapError> {
        let mut report = ProvisionReport::default();
        for (name, def) in &resources.tables {
            let table = self.create_table(name, def).await?;
            report.tables.insert(name.clone(), table);
        }
        let mut queues: Vec<_> = resources.queues.iter().collect();
        // Dead-letter queues first: their ARNs go into the redrive policies.
        queues.sort_by_key(|(_, def)| def.dead_letter.is_some());
        for (name, def) in queues {
            let mut attributes = vec![
                (
                    QueueAttributeName::VisibilityTimeout,
                    options
                        .visibility_timeout_s
                        .unwrap_or(def.visibility_timeout_s)
                        .to_string(),
                ),
                (
                    QueueAttributeName::MessageRetentionPeriod,
                    def.retention_s.to_string(),
                ),
            ];
            if let Some(dlq) = &def.dead_letter {
                let target = report.queues.get(dlq).ok_or_else(|| {
                    CapError::Invalid(format!(
                        "queue {name}: its dead letter queue {dlq} is not a queue of the registry"
                    ))
                })?;
                attributes.push((
                    QueueAttributeName::RedrivePolicy,
                    serde_json::json!({
                        "deadLetterTargetArn": target.arn,
                        "maxReceiveCount": def.max_receive_count,
                    })
                    .to_string(),
                ));
            }
            let queue = self.create_queue(name, attributes).await?;
            report.queues.insert(name.clone(), queue);
        }
        let mut senders: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, def) in &resources.topics {
            let topic = self.create_topic(name).await?;
            for subscription in &def.subscriptions {
                let queue = report.queues.get(&subscription.queue).ok_or_else(|| {
                    CapError::Invalid(format!(
                        "topic {name}: its subscriber {} is not a queue of the registry",
                        subscription.queue
                    ))
                })?;
                self.subscribe(&topic.arn, queue, subscription.filter_policy.as_ref())
                    .await?;
                senders
                    .entry(subscription.queue.clone())
                    .or_default()
                    .push(topic.arn.clone());
            }
            report.topics.insert(name.clone(), topic);
        }
        for (queue, topics) in senders {
            self.allow_topics(&report.queues[&queue], &topics).await?;
        }
        for name in &resources.buckets {
            let bucket = self.create_bucket(name).await?;
            report.buckets.insert(name.clone(), bucket);
        }
        Ok(report)
    }

    async fn create_table(&self, name: &str, def: &TableDef) -> Result<Provisioned, CapError> {
        let physical = self.names().physical(name);
        let client = self.tables().client().clone();
        let attr = |n: &str| {
            AttributeDefinition::builder()
                .attribute_name(n)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| CapError::Invalid(e.to_string()))
        };
        let key = |n: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(n)
                .key_type(kind)
                .build()
                .map_err(|e| CapError::Invalid(e.to_string()))
        };
        let stream = StreamSpecification::builder()
            .stream_enabled(true)
            .stream_view_type(StreamViewType::NewAndOldImages)
            .build()
            .map_err(|e| CapError::Invalid(e.to_string()))?;
        let mut request = client
            .create_table()
            .table_name(&physical)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr(&def.partition_key)?)
            .key_schema(key(&def.partition_key, KeyType::Hash)?)
            .stream_specification(stream);
        if let Some(sk) = &def.sort_key {
            request = request
                .attribute_definitions(attr(sk)?)
                .key_schema(key(sk, KeyType::Range)?);
        }
        let (description, created) = match request.send().await {
            Ok(out) => (out.table_description, true),
            Err(e) if code(&e) == Some("ResourceInUseException") => {
                let out = client
                    .describe_table()
                    .table_name(&physical)
                    .send()
                    .await
                    .map_err(|e| sdk(&format!("DescribeTable {physical}"), e))?;
                (out.table, false)
            }
            Err(e) => return Err(sdk(&format!("CreateTable {physical}"), e)),
        };
        let arn = description
            .and_then(|d| d.latest_stream_arn)
            .unwrap_or_default();
        Ok(Provisioned {
            physical,
            arn,
            created,
        })
    }

    async fn create_queue(
        &self,
        name: &str,
        attributes: Vec<(QueueAttributeName, String)>,
    ) -> Result<Provisioned, CapError> {
        let physical = self.names().physical(name);
        let client = self.queues().client().clone();
        // A queue mapped to its URL (USHER_RESOURCE_NAMES) is used as it is.
        let existing = if physical.starts_with("https://") || physical.starts_with("http://") {
            Some(physical.clone())
        } else {
            let out = client.get_queue_url().queue_name(&physical).send().await;
            out.ok().and_then(|o| o.queue_url)
        };
        let (url, created) = match existing {
            Some(url) => (url, false),
            None => {
                let mut request = client.create_queue().queue_name(&physical);
                for (attribute, value) in attributes {
                    request = request.attributes(attribute, value);
                }
                let out = request
                    .send()
                    .await
                    .map_err(|e| sdk(&format!("CreateQueue {physical}"), e))?;
                let url = out.queue_url.ok_or_else(|| {
                    CapError::Unavailable(format!("CreateQueue {physical}: no queue URL"))
                })?;
                (url, true)
            }
        };
        let arn = client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| sdk(&format!("GetQueueAttributes {physical}"), e))?
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .unwrap_or_default();
        Ok(Provisioned {
            physical: url,
            arn,
            created,
        })
    }

    async fn create_topic(&self, name: &str) -> Result<Provisioned, CapError> {
        let physical = self.names().physical(name);
        // A topic that exists (found by name, or mapped to its ARN with
        // USHER_RESOURCE_NAMES) is used as it is.
        match self.topics().topic_arn(name).await {
            Ok(arn) => {
                return Ok(Provisioned {
                    physical: arn.clone(),
                    arn,
                    created: false,
                })
            }
            Err(CapError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let out = self
            .topics()
            .client()
            .create_topic()
            .name(&physical)
            .send()
            .await
            .map_err(|e| sdk(&format!("CreateTopic {physical}"), e))?;
        let arn = out.topic_arn.unwrap_or_default();
        Ok(Provisioned {
            physical: arn.clone(),
            arn,
            created: true,
        })
    }

    async fn subscribe(
        &self,
        topic_arn: &str,
        queue: &Provisioned,
        filter_policy: Option<&serde_json::Value>,
    ) -> Result<(), CapError> {
        let mut request = self
            .topics()
            .client()
            .subscribe()
            .topic_arn(topic_arn)
            .protocol("sqs")
            .endpoint(&queue.arn)
            .attributes("RawMessageDelivery", "true");
        if let Some(policy) = filter_policy {
            request = request
                .attributes("FilterPolicy", policy.to_string())
                .attributes("FilterPolicyScope", "MessageAttributes");
        }
        // Subscribe is idempotent for the same endpoint and attributes.
        request
            .send()
            .await
            .map_err(|e| sdk(&format!("Subscribe {} to {topic_arn}", queue.arn), e))?;
        Ok(())
    }

    /// Lets the topics send to the queue (the queue policy SNS delivery
    /// needs).
    async fn allow_topics(&self, queue: &Provisioned, topics: &[String]) -> Result<(), CapError> {
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue.arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topics}},
            }],
        });
        self.queues()
            .client()
            .set_queue_attributes()
            .queue_url(&queue.physical)
            .attributes(QueueAttributeName::Policy, policy.to_string())
            .send()
            .await
            .map_err(|e| sdk(&format!("SetQueueAttributes {}", queue.physical), e))?;
        Ok(())
    }

    async fn create_bucket(&self, name: &str) -> Result<Provisioned, CapError> {
        let physical = self.names().physical(name);
        let client = self.objects().client().clone();
        // In us-east-1 CreateBucket answers 200 for a bucket one owns: ask first.
        if client.head_bucket().bucket(&physical).send().await.is_ok() {
            return Ok(Provisioned {
                physical,
                arn: String::new(),
                created: false,
            });
        }
        let mut request = client.create_bucket().bucket(&physical);
        // Outside us-east-1 a bucket names its region.
        if let Some(region) = client.config().region().map(|r| r.to_string()) {
            if region != "us-east-1" {
                request = request.create_bucket_configuration(
                    aws_sdk_s3::types::CreateBucketConfiguration::builder()
                        .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                            region.as_str(),
                        ))
                        .build(),
                );
            }
        }
        let created = match request.send().await {
            Ok(_) => true,
            Err(e)
                if matches!(
                    code(&e),
                    Some("BucketAlreadyOwnedByYou") | Some("BucketAlreadyExists")
                ) =>
            {
                false
            }
            Err(e) => return Err(sdk(&format!("CreateBucket {physical}"), e)),
        };
        Ok(Provisioned {
            physical,
            arn: String::new(),
            created,
        })
    }
}
