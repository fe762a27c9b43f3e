//! The data pipeline end to end against a real Kafka behind a real mTLS
//! proxy: `usher up` (the repository's registry, its Kafka topics renamed
//! per test run) with `USHER_KAFKA_BROKERS` pointing at stunnel, which
//! requires and verifies the client certificate, in front of tansu
//! (`scripts/servers` component `kafka-tls`: USHER_TEST_KAFKA_TLS,
//! USHER_TEST_KAFKA_TLS_DIR). Campaign and market PUTs and submitEntry feed
//! data-queue, as do messages written straight into it; process-data →
//! data-sns → the five queues → send-data → tansu; every topic is read back
//! with an rdkafka consumer and compared with what was sent.
//!
//! The certificates: the good one produces; one signed by another CA and an
//! expired one are refused by the proxy (the expired one also by Usher's own
//! start-up check, which stops `usher up`); one with 5 days left warns at
//! start-up and still produces.
//!
//! Skipped with a message unless the servers run (USHER_REQUIRE_SERVERS=1
//! makes a missing server a failure):
//! `USHER_SERVERS="kafka-tls" scripts/servers start DIR && source DIR/servers.env`.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Platform;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};
use usher_backend_conformance::{server, unique_name};
use usher_backend_kafka::{ClientCertificate, KafkaBackendError, KafkaConfig, KafkaEvents};
use usher_capabilities::{Event, EventBackend, OutgoingMessage, QueueBackend};

/// The five record types: (type, topic suffix).
const TYPES: [(&str, &str); 5] = [
    ("CAMPAIGN", "campaigns"),
    ("MARKET", "markets"),
    ("REGISTRATION", "registrations"),
    ("EVENT_MAPPING", "event-mappings"),
    ("REGISTERED_MARKET", "registered-markets"),
];

struct Tls {
    brokers: String,
    dir: PathBuf,
}

fn tls() -> Option<Tls> {
    let brokers = server("USHER_TEST_KAFKA_TLS")?;
    let dir = PathBuf::from(server("USHER_TEST_KAFKA_TLS_DIR")?);
    Some(Tls { brokers, dir })
}

impl Tls {
    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file))
            .unwrap_or_else(|e| panic!("{}: {e}", self.dir.join(file).display()))
    }

    /// The client certificate `name` as the secret JSON Usher reads.
    fn secret_json(&self, name: &str) -> String {
        json!({
            "cert_pem": self.read(&format!("{name}.pem")),
            "key_pem": self.read(&format!("{name}.key")),
            "ca_pem": self.read("ca.pem"),
        })
        .to_string()
    }

    /// Writes the secret JSON of `name` into `dir`; its path.
    fn secret_file(&self, name: &str, dir: &Path) -> PathBuf {
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, self.secret_json(name)).expect("write the certificate file");
        path
    }

    /// A raw librdkafka client configuration with the certificate `name`
    /// (no expiry check of Usher's: what the proxy alone decides).
    fn client(&self, name: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("security.protocol", "ssl")
            .set("ssl.certificate.pem", self.read(&format!("{name}.pem")))
            .set("ssl.key.pem", self.read(&format!("{name}.key")))
            .set("ssl.ca.pem", self.read("ca.pem"));
        c
    }

    fn config(&self, name: &str) -> KafkaConfig {
        let mut config = KafkaConfig::new(&self.brokers);
        config.client_certificate = Some(
            ClientCertificate::from_secret_json(&self.secret_json(name)).expect("certificate"),
        );
        config.message_timeout = Duration::from_secs(8);
        config.metadata_timeout = Duration::from_secs(8);
        config
    }

    async fn create_topics(&self, topics: &[String]) {
        let admin: AdminClient<DefaultClientContext> =
            self.client("good").create().expect("admin client");
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1)))
            .collect();
        let results = admin
            .create_topics(
                &new,
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .expect("create topics through the proxy");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
        }
    }
}

/// One record read back.
#[derive(Debug, Clone)]
struct Read {
    key: String,
    value: Value,
    headers: BTreeMap<String, String>,
}

/// Every record of partition 0 of `topic` (one partition each), read with a
/// consumer using the good certificate, until `want` records or `within`.
fn read_topic(tls: &Tls, topic: &str, want: usize, within: Duration) -> Vec<Read> {
    let consumer: BaseConsumer = tls
        .client("good")
        .set("group.id", unique_name("e2e-data-pipeline"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("partition");
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| {
                                (
                                    x.key.to_string(),
                                    String::from_utf8_lossy(x.value.unwrap_or_default())
                                        .to_string(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Read {
                    key: String::from_utf8_lossy(m.key().unwrap_or_default()).to_string(),
                    value: serde_json::from_slice(m.payload().unwrap_or_default())
                        .expect("a JSON record"),
                    headers,
                });
            }
            Some(Err(e)) => eprintln!("consumer: {e}"),
            None => {}
        }
    }
    out
}

fn rfc3339(offset_hours: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::hours(offset_hours))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The registry with the Kafka topics of this run (`<run>.prd2011.dmnd.*`).
fn platform(run: &str) -> Platform {
    Platform::new(|name, text| {
        if name == "resources.yaml" || name == "data-pipeline.yaml" {
            text.replace("prd2011.dmnd.", &format!("{run}.prd2011.dmnd."))
        } else {
            text
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_record_reaches_its_kafka_topic_through_mtls() {
    let Some(tls) = tls() else { return };
    let run = unique_name("dp").replace('-', "");
    let topics: BTreeMap<&str, String> = TYPES
        .iter()
        .map(|(t, suffix)| (*t, format!("{run}.prd2011.dmnd.{suffix}")))
        .collect();
    tls.create_topics(&topics.values().cloned().collect::<Vec<_>>())
        .await;

    let mut p = platform(&run);
    let cert = tls.secret_file("good", p.tmp.path());
    p.env
        .push(("USHER_KAFKA_BROKERS".into(), tls.brokers.clone()));
    p.env
        .push(("USHER_KAFKA_CERT_FILE".into(), cert.display().to_string()));
    p.start().await;
    assert!(
        p.log()
            .contains(&format!("events on Kafka at {}", tls.brokers)),
        "{}",
        p.log()
    );

    // The feeders: a campaign, two markets, three fans.
    let http = reqwest::Client::new();
    let campaign = json!({
        "id": format!("c-{run}"), "slug": format!("s-{run}"), "name": "Pipeline", "status": "OPEN",
        "opensAt": rfc3339(-1), "closesAt": rfc3339(24),
        "gate": {"type": "countries", "countries": ["US", "CA"]},
        "fields": [{"name": "zip", "type": "string", "required": true}],
    });
    let cid = format!("c-{run}");
    let put = |path: String, body: Value| {
        let http = http.clone();
        let url = format!("{}{path}", p.base);
        async move {
            let r = http.put(&url).json(&body).send().await.expect("PUT");
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            assert!(status.is_success(), "PUT {url}: {status} {text}");
        }
    };
    put(
        format!("/services/campaigns/campaigns/{cid}"),
        campaign.clone(),
    )
    .await;
    for m in ["m1", "m2"] {
        put(
            format!("/services/campaigns/campaigns/{cid}/markets/{m}"),
            json!({"id": m, "campaignId": cid, "eventId": format!("e-{m}"), "eventName": "Night",
                   "venue": "Arena", "selectionCount": 5, "waitlistCount": 1}),
        )
        .await;
    }
    let fans = [("u1", "m1", "US"), ("u2", "m2", "CA"), ("u3", "m1", "us")];
    for (user, market, country) in fans {
        let args = json!({"arguments": {
            "slug": format!("s-{run}"), "marketId": market, "entry": {"zip": "10001"},
            "userInfo": {"globalUserId": user, "email": format!("{user}@fans.example"), "country": country},
        }});
        let r = http
            .post(format!("{}/resolvers/Mutation/submitEntry", p.base))
            .json(&args)
            .send()
            .await
            .expect("submitEntry");
        let answer: Value = r.json().await.expect("json");
        assert_eq!(answer["isEligible"], true, "{answer}");
    }

    // Straight into data-queue: an event mapping, and two bad messages that
    // fail alone and reach no topic.
    let embedded = p.embedded();
    let raw = |body: Value| OutgoingMessage {
        body: body.to_string(),
        attributes: vec![],
        delay_seconds: None,
    };
    let sent = embedded
        .queues()
        .send_batch(
            "data-queue",
            vec![
                raw(json!({"type": "EVENT_MAPPING", "data": {"campaignId": cid, "marketId": "m9", "eventId": "e-9"}})),
                raw(json!({"type": "ORDER", "data": {}})),
                raw(json!({"type": "MARKET", "data": {"id": "m-bad", "campaignId": cid}})),
            ],
        )
        .await
        .expect("send into data-queue");
    assert!(sent.iter().all(Result::is_ok));

    // Read every topic back.
    let expected: BTreeMap<&str, BTreeSet<String>> = [
        ("CAMPAIGN", vec![cid.clone()]),
        ("MARKET", vec![format!("{cid}/m1"), format!("{cid}/m2")]),
        (
            "EVENT_MAPPING",
            vec![
                format!("{cid}/m1"),
                format!("{cid}/m2"),
                format!("{cid}/m9"),
            ],
        ),
        (
            "REGISTRATION",
            vec![
                format!("{cid}/u1"),
                format!("{cid}/u2"),
                format!("{cid}/u3"),
            ],
        ),
        (
            "REGISTERED_MARKET",
            vec![
                format!("{cid}/m1/u1"),
                format!("{cid}/m2/u2"),
                format!("{cid}/m1/u3"),
            ],
        ),
    ]
    .into_iter()
    .map(|(t, keys)| (t, keys.into_iter().collect()))
    .collect();
    let mut read: BTreeMap<&str, Vec<Read>> = BTreeMap::new();
    for (t, topic) in &topics {
        let want = expected[t].len();
        let tls_ref = &tls;
        let topic = topic.clone();
        let records = tokio::task::block_in_place(|| {
            read_topic(tls_ref, &topic, want, Duration::from_secs(90))
        });
        let keys: BTreeSet<String> = records.iter().map(|r| r.key.clone()).collect();
        assert_eq!(
            keys,
            expected[t],
            "{t} on {topic}: {records:?}\n{}",
            common::tail(&p.log(), 40)
        );
        assert_eq!(
            records.len(),
            want,
            "{t}: exactly one record each: {records:?}"
        );
        for r in &records {
            assert_eq!(r.headers.get("type").map(String::as_str), Some(*t), "{r:?}");
        }
        read.insert(t, records);
    }

    // The records are what was sent, formatted.
    assert_eq!(
        read["CAMPAIGN"][0].value,
        json!({"campaignId": cid, "slug": format!("s-{run}"), "name": "Pipeline", "status": "OPEN",
               "opensAt": campaign["opensAt"].as_str().map(|s| s.replace('Z', ".000Z")),
               "closesAt": campaign["closesAt"].as_str().map(|s| s.replace('Z', ".000Z")),
               "gateType": "countries", "countries": ["US", "CA"], "linkedCampaignId": null,
               "fieldNames": ["zip"]})
    );
    let market = read["MARKET"]
        .iter()
        .find(|r| r.key.ends_with("/m2"))
        .expect("m2");
    assert_eq!(
        market.value,
        json!({"campaignId": cid, "marketId": "m2", "eventId": "e-m2", "eventName": "Night",
               "venue": "Arena", "selectionCount": 5, "waitlistCount": 1})
    );
    let u3 = read["REGISTRATION"]
        .iter()
        .find(|r| r.key.ends_with("/u3"))
        .expect("u3");
    assert_eq!(u3.value["country"], "US", "upper-cased");
    assert_eq!(u3.value["marketId"], "m1");
    assert_eq!(u3.value["version"], 1);
    assert!(u3.value.get("email").is_none(), "no e-mail in analytics");
    let mapping = read["EVENT_MAPPING"]
        .iter()
        .find(|r| r.key.ends_with("/m9"))
        .expect("m9");
    assert_eq!(
        mapping.value,
        json!({"campaignId": cid, "marketId": "m9", "eventId": "e-9", "eventName": null, "venue": null})
    );

    // The two bad messages failed in process-data (retried, then the DLQ),
    // and nothing else failed anywhere.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let failures = common::failures(&p.status());
        let pd = failures.get("data-pipeline/process-data").copied();
        if pd.is_some_and(|(failed, _)| failed >= 2) {
            for (worker, (failed, _)) in &failures {
                if worker != "data-pipeline/process-data" {
                    assert_eq!(
                        *failed,
                        0,
                        "{worker}: {failures:?}\nusher up:\n{}",
                        common::tail(&p.log(), 80)
                    );
                }
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "process-data did not fail the two bad messages: {failures:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(p.stop().await.success(), "{}", p.log());
}

/// Produces one record with a raw librdkafka producer using the certificate
/// `name` (no client-side expiry check): whether the proxy let it through.
async fn raw_produce(tls: &Tls, name: &str, topic: &str) -> Result<(), String> {
    let producer: FutureProducer = tls
        .client(name)
        .set("message.timeout.ms", "8000")
        .create()
        .map_err(|e| e.to_string())?;
    producer
        .send(
            FutureRecord::to(topic).key("k").payload("{}"),
            Duration::from_secs(10),
        )
        .await
        .map(|_| ())
        .map_err(|(e, _)| e.to_string())
}

async fn usher_produce(events: &KafkaEvents, topic: &str) -> Result<(), String> {
    let results = events
        .produce(
            topic,
            vec![Event {
                key: Some("k".into()),
                value: b"{}".to_vec(),
                headers: vec![],
            }],
        )
        .await
        .map_err(|e| e.to_string())?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("no delivery report".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_proxy_refuses_wrong_and_expired_certificates_and_an_expiring_one_warns() {
    let Some(tls) = tls() else { return };
    let topic = unique_name("e2e-mtls");
    tls.create_topics(std::slice::from_ref(&topic)).await;

    // The good certificate produces, through Usher's producer and a raw one.
    let good = KafkaEvents::connect(&tls.config("good")).expect("good certificate");
    assert!(!good.certificate_status().expect("status").warning);
    usher_produce(&good, &topic)
        .await
        .expect("the good certificate produces");
    raw_produce(&tls, "good", &topic).await.expect("raw, good");

    // Signed by another CA: Usher starts (it cannot know), the proxy refuses.
    let wrong = KafkaEvents::connect(&tls.config("wrong-ca")).expect("not expired");
    let e = usher_produce(&wrong, &topic)
        .await
        .expect_err("the proxy refuses a certificate of another CA");
    eprintln!("wrong CA, as Usher reports it: {e}");
    raw_produce(&tls, "wrong-ca", &topic)
        .await
        .expect_err("raw, wrong CA");

    // Expired: Usher refuses to start with it, and the proxy refuses it too.
    match KafkaEvents::connect(&tls.config("expired")) {
        Err(KafkaBackendError::CertificateExpired { subject, .. }) => {
            assert!(subject.contains("usher-expired"), "{subject}")
        }
        Err(other) => panic!("expected CertificateExpired, got {other}"),
        Ok(_) => panic!("an expired certificate was accepted"),
    }
    let e = raw_produce(&tls, "expired", &topic)
        .await
        .expect_err("the proxy refuses an expired certificate");
    eprintln!("expired, raw: {e}");

    // Expiring in 5 days: warns, and produces.
    let expiring = KafkaEvents::connect(&tls.config("expiring")).expect("still valid");
    let status = expiring.certificate_status().expect("status").clone();
    assert!(status.warning, "{status}");
    assert!((4..=5).contains(&status.days_left), "{status}");
    usher_produce(&expiring, &topic)
        .await
        .expect("an expiring certificate still produces");

    // What was produced, read back: the good (2) and expiring (1) records only.
    let t = topic.clone();
    let tls_ref = &tls;
    let records =
        tokio::task::block_in_place(|| read_topic(tls_ref, &t, 4, Duration::from_secs(15)));
    assert_eq!(records.len(), 3, "{records:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usher_up_refuses_an_expired_certificate_and_warns_about_an_expiring_one() {
    let Some(tls) = tls() else { return };
    let run = unique_name("dpcert").replace('-', "");

    // Expired: `usher up` stops at start-up, naming the certificate.
    let p = platform(&run);
    let expired = tls.secret_file("expired", p.tmp.path());
    let out = p
        .usher(&["up", "--listen", "127.0.0.1:0"])
        .arg("--data")
        .arg(&p.data)
        .env("USHER_KAFKA_BROKERS", &tls.brokers)
        .env("USHER_KAFKA_CERT_FILE", &expired)
        .output()
        .expect("usher up");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("expired"), "{stderr}");
    assert!(stderr.contains("usher-expired"), "{stderr}");

    // Expiring in 5 days: `usher up` starts and warns.
    let mut p = p;
    let expiring = tls.secret_file("expiring", p.tmp.path());
    p.env
        .push(("USHER_KAFKA_BROKERS".into(), tls.brokers.clone()));
    p.env.push((
        "USHER_KAFKA_CERT_FILE".into(),
        expiring.display().to_string(),
    ));
    p.start().await;
    let log = p.log();
    assert!(log.contains("WARNING"), "{log}");
    assert!(log.contains("usher-expiring"), "{log}");
    assert!(log.contains("days left"), "{log}");
    let status = p.stop().await;
    assert!(status.success(), "{status}: {}", p.log());
}
