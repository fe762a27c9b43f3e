//! The `events` capability over Kafka.
//!
//! [`KafkaEvents`] implements [`EventBackend`] with one rdkafka
//! `FutureProducer` (librdkafka built from source): idempotent
//! (`enable.idempotence=true`), `acks=all`, at most 5 requests in flight per
//! connection, so records of one partition keep their order and are written
//! once. A batch is enqueued in order without waiting, then the delivery
//! reports are collected in order: one result per record.
//!
//! Agreement with the embedded event log (the conformance suite checks it):
//! a topic must exist (it is looked up in the cluster's metadata, and topic
//! auto-creation is off), else the whole call is `NotFound`; a value over
//! [`MAX_EVENT_VALUE_BYTES`] fails its record alone with `Invalid`.
//!
//! TLS: a [`ClientCertificate`] read from a Secrets Manager secret's JSON;
//! its expiry is checked when the producer is made ([`CertificateStatus`]).

#![deny(missing_docs)]

mod certificate;

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use parking_lot::Mutex;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use usher_capabilities::{CapError, Delivery, Event, EventBackend, MAX_EVENT_VALUE_BYTES};

pub use certificate::{CertificateStatus, ClientCertificate};

/// Why a [`KafkaEvents`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum KafkaBackendError {
    /// The secret holding the client certificate is not what is expected.
    #[error("Kafka client certificate secret: {0}")]
    Secret(String),
    /// A certificate could not be parsed.
    #[error("Kafka client certificate: {0}")]
    Certificate(String),
    /// The client certificate has expired: the producer refuses to start.
    #[error("the Kafka client certificate `{subject}` expired on {not_after}; renew it (and update its secret) before starting")]
    CertificateExpired {
        /// Its subject.
        subject: String,
        /// When it expired.
        not_after: String,
    },
    /// The client certificate is not valid yet.
    #[error("the Kafka client certificate `{subject}` is not valid before {not_before}")]
    CertificateNotYetValid {
        /// Its subject.
        subject: String,
        /// When it becomes valid.
        not_before: String,
    },
    /// librdkafka refused the configuration.
    #[error("Kafka producer: {0}")]
    Client(#[from] KafkaError),
}

/// Days before expiry from which the certificate status warns, by default.
pub const DEFAULT_EXPIRY_WARNING_DAYS: u32 = 30;

/// How a [`KafkaEvents`] connects.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]` of the brokers.
    pub bootstrap_servers: String,
    /// The TLS client certificate; plaintext when `None`.
    pub client_certificate: Option<ClientCertificate>,
    /// Warn when the certificate expires within this many days.
    pub expiry_warning_days: u32,
    /// How long a record may take to be delivered, retries included
    /// (`message.timeout.ms`); after it the record fails with `Unavailable`.
    pub message_timeout: Duration,
    /// How long a topic's metadata lookup may take.
    pub metadata_timeout: Duration,
    /// Further librdkafka properties, applied last (they override the above).
    pub properties: Vec<(String, String)>,
}

impl KafkaConfig {
    /// Plaintext to these brokers, 30 s delivery timeout, 10 s metadata
    /// timeout, a 30-day certificate warning window.
    pub fn new(bootstrap_servers: &str) -> KafkaConfig {
        KafkaConfig {
            bootstrap_servers: bootstrap_servers.to_string(),
            client_certificate: None,
            expiry_warning_days: DEFAULT_EXPIRY_WARNING_DAYS,
            message_timeout: Duration::from_secs(30),
            metadata_timeout: Duration::from_secs(10),
            properties: Vec::new(),
        }
    }

    /// The librdkafka configuration of the producer.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set("allow.auto.create.topics", "false")
            .set("message.timeout.ms", millis(self.message_timeout))
            // Room for a value of MAX_EVENT_VALUE_BYTES with its key and headers.
            .set(
                "message.max.bytes",
                (MAX_EVENT_VALUE_BYTES + 48 * 1024).to_string(),
            );
        if let Some(cert) = &self.client_certificate {
            c.set("security.protocol", "ssl")
                .set("ssl.certificate.pem", &cert.cert_pem)
                .set("ssl.key.pem", &cert.key_pem);
            if let Some(ca) = &cert.ca_pem {
                c.set("ssl.ca.pem", ca);
            }
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}

fn millis(d: Duration) -> String {
    d.as_millis().max(1).to_string()
}

/// The Kafka [`EventBackend`].
pub struct KafkaEvents {
    producer: FutureProducer,
    known_topics: Mutex<HashSet<String>>,
    certificate: Option<CertificateStatus>,
    message_timeout: Duration,
    metadata_timeout: Duration,
}

impl KafkaEvents {
    /// Checks the client certificate (an expired one is an error, one
    /// close to expiry a logged warning) and makes the producer. Does not
    /// wait for the brokers: an unreachable cluster shows in each produce.
    pub fn connect(config: &KafkaConfig) -> Result<KafkaEvents, KafkaBackendError> {
        KafkaEvents::connect_at(config, SystemTime::now())
    }

    /// [`KafkaEvents::connect`] with the certificate checked as of `now`.
    pub fn connect_at(
        config: &KafkaConfig,
        now: SystemTime,
    ) -> Result<KafkaEvents, KafkaBackendError> {
        let certificate = match &config.client_certificate {
            Some(cert) => {
                cert.validate()?;
                let status = cert.status(now, config.expiry_warning_days)?;
                if status.warning {
                    tracing::warn!(
                        subject = %status.subject,
                        not_after = %status.not_after_text,
                        days_left = status.days_left,
                        "{status}: renew it before it expires"
                    );
                } else {
                    tracing::info!(days_left = status.days_left, "{status}");
                }
                Some(status)
            }
            None => None,
        };
        let producer: FutureProducer = config.client_config().create()?;
        Ok(KafkaEvents {
            producer,
            known_topics: Mutex::new(HashSet::new()),
            certificate,
            message_timeout: config.message_timeout,
            metadata_timeout: config.metadata_timeout,
        })
    }

    /// The client certificate's expiry as checked at start-up (`None` for
    /// plaintext).
    pub fn certificate_status(&self) -> Option<&CertificateStatus> {
        self.certificate.as_ref()
    }

    /// Waits until every enqueued record is delivered or failed.
    pub async fn flush(&self, timeout: Duration) -> Result<(), CapError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(Timeout::After(timeout)))
            .await
            .map_err(|e| CapError::Fault(format!("flush task: {e}")))?
            .map_err(|e| CapError::Unavailable(format!("Kafka flush: {e}")))
    }

    /// Whether `topic` exists in the cluster. Existing topics are
    /// remembered; a missing one is asked about again next time.
    async fn check_topic(&self, topic: &str) -> Result<(), CapError> {
        if self.known_topics.lock().contains(topic) {
            return Ok(());
        }
        let producer = self.producer.clone();
        let name = topic.to_string();
        let timeout = self.metadata_timeout;
        let metadata = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&name), Timeout::After(timeout))
        })
        .await
        .map_err(|e| CapError::Fault(format!("metadata task: {e}")))?
        .map_err(|e| CapError::Unavailable(format!("Kafka metadata of topic `{topic}`: {e}")))?;
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        match found.map(|t| (t.error(), t.partitions().len())) {
            Some((None, n)) if n > 0 => {
                self.known_topics.lock().insert(topic.to_string());
                Ok(())
            }
            Some((Some(err), _)) => {
                let code = RDKafkaErrorCode::from(err);
                Err(match code {
                    RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => {
                        missing(topic)
                    }
                    _ => map_code(code, &format!("Kafka metadata of topic `{topic}`")),
                })
            }
            _ => Err(missing(topic)),
        }
    }

    /// Enqueues one record, waiting while librdkafka's queue is full (at
    /// most the delivery timeout).
    async fn enqueue(
        &self,
        topic: &str,
        event: &Event,
        deadline: Instant,
    ) -> Result<DeliveryFuture, CapError> {
        loop {
            let mut record = FutureRecord::<str, [u8]>::to(topic).payload(&event.value);
            if let Some(key) = &event.key {
                record = record.key(key.as_str());
            }
            if !event.headers.is_empty() {
                let mut headers = OwnedHeaders::new_with_capacity(event.headers.len());
                for (name, value) in &event.headers {
                    headers = headers.insert(Header {
                        key: name,
                        value: Some(value.as_bytes()),
                    });
                }
                record = record.headers(headers);
            }
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                    if Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(map_error(&e, "enqueueing the record")),
            }
        }
    }
}

fn missing(topic: &str) -> CapError {
    CapError::NotFound(format!("event topic `{topic}` does not exist"))
}

fn map_error(e: &KafkaError, what: &str) -> CapError {
    match e.rdkafka_error_code() {
        Some(code) => map_code(code, &format!("{what}: {e}")),
        None => CapError::Unavailable(format!("Kafka: {what}: {e}")),
    }
}

/// A librdkafka error as the guest sees it.
fn map_code(code: RDKafkaErrorCode, context: &str) -> CapError {
    use RDKafkaErrorCode as C;
    let message = format!("Kafka: {context} ({code:?})");
    match code {
        C::MessageSizeTooLarge
        | C::MessageBatchTooLarge
        | C::InvalidMessageSize
        | C::InvalidMessage
        | C::InvalidRecord
        | C::InvalidArgument
        | C::BadMessage
        | C::InvalidTopic => CapError::Invalid(message),
        C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition => {
            CapError::NotFound(message)
        }
        C::TopicAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::SaslAuthenticationFailed
        | C::Authentication => CapError::Denied(message),
        C::QueueFull | C::ThrottlingQuotaExceeded => CapError::Throttled(message),
        _ => CapError::Unavailable(message),
    }
}

#[async_trait]
impl EventBackend for KafkaEvents {
    async fn produce(
        &self,
        topic: &str,
        events: Vec<Event>,
    ) -> Result<Vec<Result<Delivery, CapError>>, CapError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        // An unreachable cluster fails each record (nothing was enqueued, so
        // nothing is delivered later); a missing topic fails the call.
        let unreachable = match self.check_topic(topic).await {
            Ok(()) => None,
            Err(CapError::Unavailable(reason)) => Some(reason),
            Err(e) => return Err(e),
        };
        let deadline = Instant::now() + self.message_timeout;
        // Enqueue in batch order (per-partition order is kept by the
        // idempotent producer), then collect the reports in the same order.
        let mut pending = Vec::with_capacity(events.len());
        for event in &events {
            pending.push(if event.value.len() > MAX_EVENT_VALUE_BYTES {
                Err(CapError::Invalid(format!(
                    "event value is {} bytes; the limit is {MAX_EVENT_VALUE_BYTES}",
                    event.value.len()
                )))
            } else if let Some(reason) = &unreachable {
                Err(CapError::Unavailable(reason.clone()))
            } else {
                self.enqueue(topic, event, deadline).await
            });
        }
        let mut results = Vec::with_capacity(pending.len());
        for p in pending {
            results.push(match p {
                Ok(future) => match future.await {
                    Ok(Ok(d)) => Ok(Delivery {
                        partition: d.partition,
                        offset: d.offset,
                    }),
                    Ok(Err((e, _))) => Err(map_error(&e, "delivering the record")),
                    Err(_cancelled) => Err(CapError::Unavailable(
                        "Kafka: the producer dropped the record's delivery report".into(),
                    )),
                },
                Err(e) => Err(e),
            });
        }
        Ok(results)
    }
}
