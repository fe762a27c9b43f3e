//! The conformance suites of `usher-backend-conformance` against real
//! servers on 127.0.0.1: DynamoDB Local (`USHER_TEST_DYNAMODB`) and moto
//! (`USHER_TEST_AWS`: SQS, SNS, S3, Secrets Manager), started by
//! `scripts/servers`. Each test creates its own resources under a unique
//! name prefix.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::json;
use usher_backend_aws::{AwsBackends, ProvisionOptions, Service};
use usher_backend_conformance::queue::{message, Arrived, QueueProbe};
use usher_backend_conformance::{error_kind, objects, queue, server, table, topic, unique_name};
use usher_capabilities::{CapError, ObjectBackend, QueueBackend, TableBackend, TopicBackend};
use usher_registry::{QueueDef, Resources, Subscription, TopicDef};

/// The suites' resources with only the tables, or without them.
fn resources_only(tables: bool) -> Resources {
    let all = usher_backend_conformance::resources();
    if tables {
        Resources {
            tables: all.tables,
            ..Resources::default()
        }
    } else {
        Resources {
            tables: Default::default(),
            ..all
        }
    }
}

/// Backends on the local servers, every physical name under a fresh prefix
/// (so runs never see each other's resources); `None` when a server is
/// not there (the test is skipped).
async fn backends(need_dynamodb: bool) -> Option<(AwsBackends, String)> {
    let aws = server("USHER_TEST_AWS")?;
    let mut b = AwsBackends::builder()
        .endpoint_url(aws)
        .region("us-east-1")
        .credentials("test", "test")
        .resources(&usher_backend_conformance::resources());
    if need_dynamodb {
        b = b.service_endpoint_url(Service::DynamoDb, server("USHER_TEST_DYNAMODB")?);
    }
    let prefix = format!("{}-", unique_name("usher"));
    let backends = b
        .resource_prefix(prefix.clone())
        .build()
        .await
        .expect("AWS backends");
    Some((backends, prefix))
}

async fn create_queue(b: &AwsBackends, physical: &str) -> String {
    b.queues()
        .client()
        .create_queue()
        .queue_name(physical)
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .expect("queue URL")
}

/// Receives from the SQS queues of the test's backends.
struct SqsProbe(AwsBackends);

#[async_trait]
impl QueueProbe for SqsProbe {
    async fn receive(&self, queue: &str, wait: Duration) -> Vec<Arrived> {
        let q = self.0.queues();
        let url = q.queue_url(queue).await.expect("queue URL");
        let wait_s = i32::try_from(wait.as_millis().div_ceil(1000)).unwrap_or(20);
        let out = q
            .client()
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_s.clamp(0, 20))
            .message_attribute_names("All")
            .send()
            .await
            .expect("ReceiveMessage");
        let mut arrived = Vec::new();
        for m in out.messages.unwrap_or_default() {
            q.client()
                .delete_message()
                .queue_url(&url)
                .receipt_handle(m.receipt_handle.clone().expect("receipt"))
                .send()
                .await
                .expect("DeleteMessage");
            let attributes = m
                .message_attributes
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.string_value.unwrap_or_default()))
                .collect();
            arrived.push(Arrived {
                message_id: m.message_id.unwrap_or_default(),
                body: m.body.unwrap_or_default(),
                attributes,
            });
        }
        arrived
    }
}

#[tokio::test]
async fn table_conformance_on_dynamodb_local() {
    let Some((b, _)) = backends(true).await else {
        return;
    };
    let report = b
        .provision(&resources_only(true), &ProvisionOptions::default())
        .await
        .expect("provision the tables");
    assert_eq!(report.tables.len(), 2);
    table::all(b.tables().as_ref(), "sorted", "simple").await;
}

#[tokio::test]
async fn queue_conformance_on_moto_sqs() {
    let Some((b, prefix)) = backends(false).await else {
        return;
    };
    create_queue(&b, &format!("{prefix}work")).await;
    queue::all(b.queues().as_ref(), &SqsProbe(b.clone()), "work").await;
}

#[tokio::test]
async fn topic_conformance_on_moto_sns() {
    let Some((b, _)) = backends(false).await else {
        return;
    };
    b.provision(&resources_only(false), &ProvisionOptions::default())
        .await
        .expect("provision the topic and its queues");
    topic::all(
        b.topics().as_ref(),
        &SqsProbe(b.clone()),
        "news",
        "all",
        "filtered",
    )
    .await;
}

/// `provision` creates every kind of resource with its settings, and a
/// second run changes nothing and reports what is there.
#[tokio::test]
async fn provision_creates_the_registry_resources_once() {
    let Some((b, prefix)) = backends(true).await else {
        return;
    };
    let mut r = resources_only(true);
    r.queues.insert(
        "work".into(),
        QueueDef {
            visibility_timeout_s: 45,
            max_receive_count: 4,
            dead_letter: Some("work-dlq".into()),
            ..QueueDef::default()
        },
    );
    r.queues.insert("work-dlq".into(), QueueDef::default());
    r.topics.insert(
        "news".into(),
        TopicDef {
            subscriptions: vec![Subscription {
                queue: "work".into(),
                filter_policy: None,
            }],
        },
    );
    r.buckets.push("exports".into());
    let first = b
        .provision(&r, &ProvisionOptions::default())
        .await
        .expect("provision");
    assert!(
        first
            .tables
            .values()
            .all(|t| t.created && t.arn.contains("stream")),
        "{first:?}"
    );
    assert!(first.queues.values().all(|q| q.created), "{first:?}");
    assert!(first.buckets["exports"].created);
    assert_eq!(
        first.buckets["exports"].physical,
        format!("{prefix}exports")
    );

    let sqs = b.queues().client().clone();
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&first.queues["work"].physical)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .expect("GetQueueAttributes")
        .attributes
        .unwrap_or_default();
    assert_eq!(attrs[&QueueAttributeName::VisibilityTimeout], "45");
    let redrive: serde_json::Value =
        serde_json::from_str(&attrs[&QueueAttributeName::RedrivePolicy]).expect("redrive JSON");
    assert_eq!(
        redrive["deadLetterTargetArn"],
        json!(first.queues["work-dlq"].arn)
    );
    assert_eq!(
        redrive["maxReceiveCount"].to_string().trim_matches('"'),
        "4"
    );
    assert!(attrs.contains_key(&QueueAttributeName::Policy), "{attrs:?}");

    // The topic delivers to its queue.
    b.topics()
        .publish_batch(
            "news",
            vec![usher_capabilities::OutgoingMessage {
                body: "hello".into(),
                attributes: Vec::new(),
                delay_seconds: None,
            }],
        )
        .await
        .expect("publish")
        .into_iter()
        .for_each(|r| {
            r.expect("published");
        });
    let arrived = SqsProbe(b.clone())
        .receive("work", Duration::from_secs(5))
        .await;
    assert_eq!(arrived.len(), 1);
    assert_eq!(arrived[0].body, "hello");

    let second = b
        .provision(&r, &ProvisionOptions::default())
        .await
        .expect("provision again");
    assert!(second.tables.values().all(|t| !t.created), "{second:?}");
    assert!(second.queues.values().all(|q| !q.created), "{second:?}");
    assert!(first.topics["news"].created && !second.topics["news"].created);
    assert_eq!(second.topics["news"].arn, first.topics["news"].arn);
    assert!(!second.buckets["exports"].created);
    assert_eq!(second.tables["sorted"].arn, first.tables["sorted"].arn);
    assert_eq!(
        second.queues["work"].physical,
        first.queues["work"].physical
    );
}

/// Provisions the suites' bucket `bucket`; its physical name.
async fn provision_bucket(b: &AwsBackends) -> String {
    let resources = Resources {
        buckets: vec!["bucket".into()],
        ..Resources::default()
    };
    let report = b
        .provision(&resources, &ProvisionOptions::default())
        .await
        .expect("provision the bucket");
    report.buckets["bucket"].physical.clone()
}

#[tokio::test]
async fn objects_conformance_on_moto_s3() {
    let Some((b, _)) = backends(false).await else {
        return;
    };
    let bucket = provision_bucket(&b).await;
    let s3 = b.objects();
    objects::all(s3.as_ref(), "bucket").await;

    // The big object went up in three parts (5 + 5 + 2.5 MiB), and the
    // aborted uploads left nothing behind.
    let big = s3
        .list("bucket", "writer-", 100)
        .await
        .expect("list")
        .into_iter()
        .find(|o| o.key.ends_with("/big.csv"))
        .expect("the big object");
    assert!(
        big.etag.ends_with("-3"),
        "multipart entity tag: {}",
        big.etag
    );
    let uploads = s3
        .client()
        .list_multipart_uploads()
        .bucket(&bucket)
        .send()
        .await
        .expect("ListMultipartUploads");
    assert!(
        uploads.uploads().is_empty(),
        "uploads left: {:?}",
        uploads.uploads()
    );
}

#[tokio::test]
async fn object_writer_dropped_unfinished_aborts_its_upload() {
    let Some((b, _)) = backends(false).await else {
        return;
    };
    let bucket = provision_bucket(&b).await;
    let s3 = b.objects();
    let mut w = s3
        .open_writer("bucket", "dropped.bin", None)
        .await
        .expect("open");
    w.write(&objects::pattern(objects::MIB * 6, 3))
        .await
        .expect("write");
    drop(w);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let uploads = s3
            .client()
            .list_multipart_uploads()
            .bucket(&bucket)
            .send()
            .await
            .expect("ListMultipartUploads");
        if uploads.uploads().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dropped upload is still there"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s3.get("bucket", "dropped.bin").await.expect("get"), None);
}

#[tokio::test]
async fn secrets_from_moto_secrets_manager() {
    let Some((b, prefix)) = backends(false).await else {
        return;
    };
    let name = format!("{prefix}kafka-client-cert");
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    b.secrets()
        .client()
        .create_secret()
        .name(&name)
        .secret_string(pem)
        .send()
        .await
        .expect("CreateSecret");
    assert_eq!(b.get_secret_string(&name).await.expect("secret"), pem);
    let missing = b
        .get_secret_string(&format!("{prefix}missing"))
        .await
        .expect_err("a missing secret");
    assert!(matches!(missing, CapError::NotFound(_)), "{missing}");
}

/// Physical names may be given one by one: a queue by URL, a topic by ARN.
#[tokio::test]
async fn explicit_resource_names() {
    let Some((b, prefix)) = backends(false).await else {
        return;
    };
    let url = create_queue(&b, &format!("{prefix}physical-queue")).await;
    let arn = b
        .topics()
        .client()
        .create_topic()
        .name(format!("{prefix}physical-topic"))
        .send()
        .await
        .expect("CreateTopic")
        .topic_arn
        .expect("ARN");
    let named = AwsBackends::builder()
        .endpoint_url(server("USHER_TEST_AWS").expect("server"))
        .region("us-east-1")
        .credentials("test", "test")
        .resource_name("jobs", url.clone())
        .resource_name("events", arn)
        .resource_name("by-name", format!("{prefix}physical-queue"))
        .build()
        .await
        .expect("backends");
    let sent = named
        .queues()
        .send_batch("jobs", vec![message("one", &[])])
        .await
        .expect("send by URL");
    assert!(sent[0].is_ok(), "{sent:?}");
    assert_eq!(named.queues().queue_url("by-name").await.expect("url"), url);
    let published = named
        .topics()
        .publish_batch("events", vec![message("one", &[])])
        .await
        .expect("publish by ARN");
    assert!(published[0].is_ok(), "{published:?}");
}

/// An endpoint nobody listens on: every backend answers `Unavailable`
/// quickly, never a panic nor a hang.
#[tokio::test]
async fn unreachable_endpoint_is_unavailable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let b = AwsBackends::builder()
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .region("us-east-1")
        .credentials("test", "test")
        .resources(&usher_backend_conformance::resources())
        .connect_timeout(Duration::from_millis(500))
        .operation_timeout(Duration::from_secs(3))
        .max_attempts(2)
        .build()
        .await
        .expect("backends");
    let started = Instant::now();
    let errors = vec![
        (
            "table get",
            b.tables()
                .get("simple", &json!({ table::SIMPLE_KEY: "x" }))
                .await
                .map(|_| ()),
        ),
        (
            "table batch_write",
            b.tables()
                .batch_write(
                    "simple",
                    vec![usher_capabilities::WriteOp::Put(
                        json!({ table::SIMPLE_KEY: "x" }),
                    )],
                )
                .await
                .map(|_| ()),
        ),
        (
            "queue send",
            b.queues()
                .send_batch("q", vec![message("x", &[])])
                .await
                .map(|_| ()),
        ),
        (
            "topic publish",
            b.topics()
                .publish_batch("t", vec![message("x", &[])])
                .await
                .map(|_| ()),
        ),
        (
            "object get",
            b.objects().get("bucket", "k").await.map(|_| ()),
        ),
        (
            "object put",
            b.objects()
                .put("bucket", "k", b"x".to_vec(), None)
                .await
                .map(|_| ()),
        ),
        ("secret", b.get_secret_string("s").await.map(|_| ())),
    ];
    for (what, r) in errors {
        match r {
            Err(e) => assert_eq!(error_kind(&e), "unavailable", "{what}: {e}"),
            Ok(()) => panic!("{what}: succeeded against a closed port"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}
