//! The TLS client certificate of the Kafka producer and its expiry.
//!
//! The certificate, its private key and optionally the CA that signed the
//! brokers' certificates are kept in a Secrets Manager secret as JSON (the
//! fetch is `usher-backend-aws`'s; this module takes the secret's string).
//! Seed tech debt #6: expired Kafka certificates caused publishing outages,
//! noticed only by a daily job. Here the expiry is checked when the producer
//! is made: an expired certificate refuses to start, one that expires
//! within the warning window logs a warning, and both are exposed as a
//! [`CertificateStatus`].

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use x509_parser::pem::Pem;

use crate::KafkaBackendError;

/// A TLS client certificate for the brokers, in PEM.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct ClientCertificate {
    /// The client certificate (the leaf first, then any intermediates).
    #[serde(alias = "certificate", alias = "cert")]
    pub cert_pem: String,
    /// Its private key.
    #[serde(alias = "private_key", alias = "key")]
    pub key_pem: String,
    /// The CA certificate(s) the brokers' certificates are checked against;
    /// the system's CAs when absent.
    #[serde(default, alias = "ca", alias = "ca_certificate")]
    pub ca_pem: Option<String>,
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .field(
                "ca_pem",
                &self.ca_pem.as_ref().map(|c| format!("{} bytes", c.len())),
            )
            .finish()
    }
}

impl ClientCertificate {
    /// Reads the JSON of a secret: an object with `cert_pem`, `key_pem` and
    /// optionally `ca_pem` (also accepted: `certificate`/`cert`,
    /// `private_key`/`key`, `ca`/`ca_certificate`). Checks that each holds
    /// PEM of the right kind and that the certificates parse; the error
    /// never quotes the key.
    pub fn from_secret_json(json: &str) -> Result<ClientCertificate, KafkaBackendError> {
        let cert: ClientCertificate = serde_json::from_str(json).map_err(|e| {
            KafkaBackendError::Secret(format!(
                "expected a JSON object with `cert_pem`, `key_pem` and optionally `ca_pem` ({} at line {} column {})",
                match e.classify() {
                    serde_json::error::Category::Data => "wrong fields or types",
                    serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "not valid JSON",
                    serde_json::error::Category::Io => "unreadable",
                },
                e.line(),
                e.column()
            ))
        })?;
        cert.validate()?;
        Ok(cert)
    }

    /// Checks the PEM blocks: at least one certificate in `cert_pem` (and in
    /// `ca_pem` when given), a private key in `key_pem`.
    pub fn validate(&self) -> Result<(), KafkaBackendError> {
        certificates("cert_pem", &self.cert_pem)?;
        if let Some(ca) = &self.ca_pem {
            certificates("ca_pem", ca)?;
        }
        let key_ok = Pem::iter_from_buffer(self.key_pem.as_bytes())
            .filter_map(Result::ok)
            .any(|p| p.label.ends_with("PRIVATE KEY"));
        if !key_ok {
            return Err(KafkaBackendError::Secret(
                "`key_pem` holds no PEM private key (`-----BEGIN PRIVATE KEY-----` or similar)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The expiry of the client certificate (the earliest `notAfter` of
    /// the certificates in `cert_pem`) at `now`, with a warning when fewer
    /// than `warn_days` days are left. An expired or not yet valid
    /// certificate is an error.
    pub fn status(
        &self,
        now: SystemTime,
        warn_days: u32,
    ) -> Result<CertificateStatus, KafkaBackendError> {
        let certs = certificates("cert_pem", &self.cert_pem)?;
        let now_s = unix_seconds(now);
        let soonest = certs
            .iter()
            .min_by_key(|c| c.not_after)
            .ok_or_else(|| KafkaBackendError::Secret("`cert_pem` holds no certificate".into()))?;
        if let Some(early) = certs.iter().find(|c| c.not_before > now_s) {
            return Err(KafkaBackendError::CertificateNotYetValid {
                subject: early.subject.clone(),
                not_before: early.not_before_text.clone(),
            });
        }
        if soonest.not_after <= now_s {
            return Err(KafkaBackendError::CertificateExpired {
                subject: soonest.subject.clone(),
                not_after: soonest.not_after_text.clone(),
            });
        }
        let left = soonest.not_after - now_s;
        Ok(CertificateStatus {
            subject: soonest.subject.clone(),
            not_after: UNIX_EPOCH
                + Duration::from_secs(u64::try_from(soonest.not_after).unwrap_or(0)),
            not_after_text: soonest.not_after_text.clone(),
            days_left: left / 86_400,
            warning: left < i64::from(warn_days) * 86_400,
        })
    }
}

/// How long the client certificate has left, as checked at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateStatus {
    /// The subject of the certificate that expires first.
    pub subject: String,
    /// When it expires.
    pub not_after: SystemTime,
    /// The same, as RFC 2822 text (UTC).
    pub not_after_text: String,
    /// Whole days left (0 in its last day).
    pub days_left: i64,
    /// Whether it expires within the warning window.
    pub warning: bool,
}

impl fmt::Display for CertificateStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Kafka client certificate `{}` expires {} ({} days left)",
            self.subject, self.not_after_text, self.days_left
        )
    }
}

struct CertFacts {
    subject: String,
    not_before: i64,
    not_before_text: String,
    not_after: i64,
    not_after_text: String,
}

fn certificates(field: &str, pem: &str) -> Result<Vec<CertFacts>, KafkaBackendError> {
    let mut out = Vec::new();
    for (i, block) in Pem::iter_from_buffer(pem.as_bytes()).enumerate() {
        let block = block.map_err(|e| {
            KafkaBackendError::Secret(format!("`{field}`: PEM block {} is malformed: {e}", i + 1))
        })?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        let cert = block.parse_x509().map_err(|e| {
            KafkaBackendError::Certificate(format!(
                "`{field}`: certificate {} is not valid X.509: {e}",
                i + 1
            ))
        })?;
        let validity = cert.validity();
        let text =
            |t: x509_parser::time::ASN1Time| t.to_rfc2822().unwrap_or_else(|_| t.to_string());
        out.push(CertFacts {
            subject: cert.subject().to_string(),
            not_before: validity.not_before.timestamp(),
            not_before_text: text(validity.not_before),
            not_after: validity.not_after.timestamp(),
            not_after_text: text(validity.not_after),
        });
    }
    if out.is_empty() {
        return Err(KafkaBackendError::Secret(format!(
            "`{field}` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)"
        )));
    }
    Ok(out)
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}
