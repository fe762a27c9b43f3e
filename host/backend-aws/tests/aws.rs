//! The conformance suites of `usher-backend-conformance` against real
//! servers on 127.0.0.1: DynamoDB Local (`USHER_TEST_DYNAMODB`) and moto
//! (`USHER_TEST_AWS`: SQS, SNS, S3, Secrets Manager), started by
//! `scripts/servers`. Each test creates its own resources under a unique
//! name prefix.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    StreamSpecification, StreamViewType,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::json;
use usher_backend_aws::{AwsBackends, Service};
use usher_backend_conformance::queue::{message, Arrived, QueueProbe};
use usher_backend_conformance::{error_kind, objects, queue, server, table, topic, unique_name};
use usher_capabilities::{CapError, ObjectBackend, QueueBackend, TableBackend, TopicBackend};
use usher_registry::{Resources, TableDef};

/// The registry's side of the test resources.
fn resources() -> Resources {
    let mut r = Resources::default();
    r.tables.insert(
        "sorted".into(),
        TableDef {
            partition_key: table::PARTITION_KEY.into(),
            sort_key: Some(table::SORT_KEY.into()),
        },
    );
    r.tables.insert(
        "simple".into(),
        TableDef {
            partition_key: table::SIMPLE_KEY.into(),
            sort_key: None,
        },
    );
    r
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
        .resources(&resources());
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

async fn create_table(b: &AwsBackends, physical: &str, pk: &str, sk: Option<&str>) {
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("attribute")
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("key")
    };
    let mut req = b
        .tables()
        .client()
        .create_table()
        .table_name(physical)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr(pk))
        .key_schema(key(pk, KeyType::Hash))
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .expect("stream"),
        );
    if let Some(sk) = sk {
        req = req
            .attribute_definitions(attr(sk))
            .key_schema(key(sk, KeyType::Range));
    }
    req.send().await.expect("CreateTable");
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
    let Some((b, prefix)) = backends(true).await else {
        return;
    };
    create_table(
        &b,
        &format!("{prefix}sorted"),
        table::PARTITION_KEY,
        Some(table::SORT_KEY),
    )
    .await;
    create_table(&b, &format!("{prefix}simple"), table::SIMPLE_KEY, None).await;
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
    let Some((b, prefix)) = backends(false).await else {
        return;
    };
    let sns = b.topics();
    let topic_arn = sns
        .client()
        .create_topic()
        .name(format!("{prefix}news"))
        .send()
        .await
        .expect("CreateTopic")
        .topic_arn
        .expect("topic ARN");
    for (queue, policy) in [
        ("all", None),
        ("filtered", Some(topic::filter_policy().to_string())),
    ] {
        let url = create_queue(&b, &format!("{prefix}{queue}")).await;
        let queue_arn = b
            .queues()
            .client()
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("GetQueueAttributes")
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .expect("queue ARN");
        let mut sub = sns
            .client()
            .subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(queue_arn)
            .attributes("RawMessageDelivery", "true");
        if let Some(p) = policy {
            sub = sub.attributes("FilterPolicy", p);
        }
        sub.send().await.expect("Subscribe");
    }
    topic::all(
        sns.as_ref(),
        &SqsProbe(b.clone()),
        "news",
        "all",
        "filtered",
    )
    .await;
}

#[tokio::test]
async fn objects_conformance_on_moto_s3() {
    let Some((b, prefix)) = backends(false).await else {
        return;
    };
    let bucket = format!("{prefix}bucket");
    let s3 = b.objects();
    s3.client()
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("CreateBucket");
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
    let Some((b, prefix)) = backends(false).await else {
        return;
    };
    let bucket = format!("{prefix}bucket");
    let s3 = b.objects();
    s3.client()
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("CreateBucket");
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
        .resources(&resources())
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
