//! Client certificates: secret JSON, PEM checks and expiry, with
//! certificates generated here (rcgen) on fixed dates.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{date_time_ymd, BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use usher_backend_kafka::{ClientCertificate, KafkaBackendError, KafkaConfig, KafkaEvents};

/// 2030-01-01T00:00:00Z.
fn jan_2030() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_893_456_000)
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

struct Made {
    cert_pem: String,
    key_pem: String,
}

/// A self-signed client certificate valid from 2029-01-01 to `not_after`.
fn client_cert(cn: &str, not_after: (i32, u8, u8)) -> Made {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["client.usher.test".to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.not_before = date_time_ymd(2029, 1, 1);
    params.not_after = date_time_ymd(not_after.0, not_after.1, not_after.2);
    let cert = params.self_signed(&key).unwrap();
    Made {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn secret(m: &Made) -> String {
    serde_json::json!({"cert_pem": m.cert_pem, "key_pem": m.key_pem}).to_string()
}

#[test]
fn status_counts_days_and_warns_within_the_window() {
    // Expires 2030-03-02: 60 days after 2030-01-01.
    let m = client_cert("usher-client", (2030, 3, 2));
    let cert = ClientCertificate::from_secret_json(&secret(&m)).unwrap();

    let s = cert.status(jan_2030(), 30).unwrap();
    assert_eq!(s.days_left, 60);
    assert!(!s.warning);
    assert!(s.subject.contains("usher-client"), "{}", s.subject);
    assert_eq!(s.not_after, jan_2030() + days(60));
    assert!(
        s.not_after_text.contains("02 Mar 2030"),
        "{}",
        s.not_after_text
    );
    assert!(s.to_string().contains("60 days left"), "{s}");

    // 31 days later: 29 days left, inside the 30-day window.
    let s = cert.status(jan_2030() + days(31), 30).unwrap();
    assert_eq!(s.days_left, 29);
    assert!(s.warning);
    // The window is configurable.
    assert!(!cert.status(jan_2030() + days(31), 7).unwrap().warning);
    // The last hour: 0 whole days, still valid, warning.
    let s = cert
        .status(jan_2030() + days(60) - Duration::from_secs(3600), 30)
        .unwrap();
    assert_eq!((s.days_left, s.warning), (0, true));
}

#[test]
fn an_expired_certificate_refuses_to_start() {
    let m = client_cert("old-client", (2029, 12, 31));
    let cert = ClientCertificate::from_secret_json(&secret(&m)).unwrap();
    let err = cert.status(jan_2030(), 30).unwrap_err();
    assert!(
        matches!(&err, KafkaBackendError::CertificateExpired { subject, .. } if subject.contains("old-client")),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("expired") && text.contains("31 Dec 2029"),
        "{text}"
    );

    let mut config = KafkaConfig::new("127.0.0.1:9");
    config.client_certificate = Some(cert);
    let err = KafkaEvents::connect_at(&config, jan_2030())
        .err()
        .expect("refused");
    assert!(
        matches!(err, KafkaBackendError::CertificateExpired { .. }),
        "{err}"
    );
    // Expiring exactly now counts as expired.
    let err = KafkaEvents::connect_at(&config, jan_2030() - Duration::from_secs(86_400))
        .err()
        .expect("refused at notAfter");
    assert!(
        matches!(err, KafkaBackendError::CertificateExpired { .. }),
        "{err}"
    );
}

#[test]
fn a_certificate_not_yet_valid_refuses_to_start() {
    let m = client_cert("future-client", (2031, 1, 1));
    let cert = ClientCertificate::from_secret_json(&secret(&m)).unwrap();
    let before = UNIX_EPOCH + Duration::from_secs(1_800_000_000); // 2027
    assert!(matches!(
        cert.status(before, 30),
        Err(KafkaBackendError::CertificateNotYetValid { .. })
    ));
}

#[test]
fn a_chain_is_as_good_as_its_first_expiry() {
    // A CA that expires before the leaf it signed.
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "usher-intermediate");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.not_before = date_time_ymd(2029, 1, 1);
    ca_params.not_after = date_time_ymd(2030, 1, 11);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["client.usher.test".to_string()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "usher-leaf");
    leaf.not_before = date_time_ymd(2029, 1, 1);
    leaf.not_after = date_time_ymd(2031, 1, 1);
    let leaf = leaf.signed_by(&leaf_key, &issuer).unwrap();

    let json = serde_json::json!({
        "certificate": format!("{}{}", leaf.pem(), ca.pem()),
        "private_key": leaf_key.serialize_pem(),
        "ca": ca.pem(),
    })
    .to_string();
    let cert = ClientCertificate::from_secret_json(&json).expect("aliases are accepted");
    assert!(cert.ca_pem.is_some());
    let s = cert.status(jan_2030(), 30).unwrap();
    assert_eq!(s.days_left, 10);
    assert!(s.warning);
    assert!(s.subject.contains("usher-intermediate"), "{}", s.subject);
}

#[test]
fn bad_secrets_are_clear_errors() {
    let m = client_cert("c", (2031, 1, 1));
    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), "not valid JSON"),
        ("[1,2]".into(), "wrong fields"),
        (
            serde_json::json!({"cert_pem": m.cert_pem}).to_string(),
            "wrong fields",
        ),
        (
            serde_json::json!({"cert_pem": 5, "key_pem": m.key_pem}).to_string(),
            "wrong fields",
        ),
        (
            serde_json::json!({"cert_pem": "hello", "key_pem": m.key_pem}).to_string(),
            "holds no PEM certificate",
        ),
        (
            serde_json::json!({"cert_pem": m.cert_pem, "key_pem": m.cert_pem}).to_string(),
            "no PEM private key",
        ),
        (
            serde_json::json!({"cert_pem": m.cert_pem, "key_pem": m.key_pem, "ca_pem": "nope"})
                .to_string(),
            "`ca_pem` holds no PEM certificate",
        ),
    ];
    for (json, want) in cases {
        let err = ClientCertificate::from_secret_json(&json)
            .err()
            .unwrap_or_else(|| panic!("accepted {json}"));
        let text = err.to_string();
        assert!(text.contains(want), "{json}: {text}");
        assert!(
            !text.contains("PRIVATE KEY-----\n"),
            "the key leaked: {text}"
        );
    }

    // Well-formed PEM around bytes that are not a certificate.
    let garbage = "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n";
    let json = serde_json::json!({"cert_pem": garbage, "key_pem": m.key_pem}).to_string();
    let err = ClientCertificate::from_secret_json(&json).unwrap_err();
    assert!(matches!(err, KafkaBackendError::Certificate(_)), "{err}");

    // Extra fields in the secret are ignored.
    let json =
        serde_json::json!({"cert_pem": m.cert_pem, "key_pem": m.key_pem, "rotated": "2029-01-01"})
            .to_string();
    ClientCertificate::from_secret_json(&json).unwrap();
}

#[test]
fn debug_output_never_shows_the_key() {
    let m = client_cert("c", (2031, 1, 1));
    let cert = ClientCertificate::from_secret_json(&secret(&m)).unwrap();
    let shown = format!("{cert:?}");
    assert!(shown.contains("<redacted>"), "{shown}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
}

#[test]
fn the_producer_takes_the_certificate_and_exposes_its_status() {
    let m = client_cert("tls-client", (2030, 1, 21));
    let mut config = KafkaConfig::new("127.0.0.1:9");
    config.client_certificate = Some(ClientCertificate::from_secret_json(&secret(&m)).unwrap());
    let tls = config.client_config();
    assert_eq!(tls.get("security.protocol"), Some("ssl"));
    assert_eq!(tls.get("ssl.certificate.pem"), Some(m.cert_pem.as_str()));
    assert_eq!(tls.get("ssl.key.pem"), Some(m.key_pem.as_str()));
    assert_eq!(tls.get("ssl.ca.pem"), None);

    // librdkafka parses the PEMs and checks the key against the certificate.
    let events = KafkaEvents::connect_at(&config, jan_2030()).expect("producer with TLS");
    let status = events.certificate_status().expect("a status");
    assert_eq!(status.days_left, 20);
    assert!(status.warning);

    // A key that is not the certificate's is refused by librdkafka.
    let other = client_cert("other", (2031, 1, 1));
    let mut wrong = config.clone();
    wrong.client_certificate = Some(ClientCertificate {
        cert_pem: m.cert_pem.clone(),
        key_pem: other.key_pem,
        ca_pem: None,
    });
    let err = KafkaEvents::connect_at(&wrong, jan_2030())
        .err()
        .expect("refused");
    assert!(matches!(err, KafkaBackendError::Client(_)), "{err}");
}

#[test]
fn plaintext_has_no_status_and_the_producer_settings_are_fixed() {
    let mut config = KafkaConfig::new("127.0.0.1:9");
    config.properties.push(("linger.ms".into(), "7".into()));
    let c = config.client_config();
    for (k, v) in [
        ("bootstrap.servers", "127.0.0.1:9"),
        ("enable.idempotence", "true"),
        ("acks", "all"),
        ("max.in.flight.requests.per.connection", "5"),
        ("allow.auto.create.topics", "false"),
        ("message.timeout.ms", "30000"),
        ("linger.ms", "7"),
    ] {
        assert_eq!(c.get(k), Some(v), "{k}");
    }
    assert_eq!(c.get("security.protocol"), None);
    let events = KafkaEvents::connect(&config).unwrap();
    assert!(events.certificate_status().is_none());
}
