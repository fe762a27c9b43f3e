//! The generator: registry + workflows → HCL files.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use usher_registry::{
    ArchiveSite, Capability, Registry, ServiceDef, StartingPosition, StreamFilterRule, Trigger,
    WorkerSpec,
};

use crate::hcl::{json_expr, list, q, t, Writer};
use crate::{Files, TerraformError, HEADER};

/// How many readers DynamoDB Streams serves per shard without throttling: a
/// table followed by more stream-workers streams through Kinesis.
pub const STREAM_READERS_PER_SHARD: usize = 2;

/// The longest `var.prefix` (checked by the variable's validation), so every
/// physical name fits AWS's limits.
const MAX_PREFIX: usize = 16;

/// The Terraform label of a registry name: `/` and `.` become `_`
/// (`replication/save-entries` → `replication_save-entries`).
pub fn label(name: &str) -> String {
    name.chars()
        .map(|c| if c == '/' || c == '.' { '_' } else { c })
        .collect()
}

/// A worker's function name without the prefix: `<domain>-<key>`.
pub fn function_name(spec: &WorkerSpec) -> String {
    format!("{}-{}", spec.domain, spec.key())
}

fn unsupported(what: impl Into<String>, message: impl Into<String>) -> TerraformError {
    TerraformError::Unsupported {
        what: what.into(),
        message: message.into(),
    }
}

/// A six- or seven-field cron with seconds (the registry's and
/// schedules.yaml's) as an EventBridge `cron(min hour dom month dow year)`
/// expression. EventBridge has no seconds (they must be `0`) and needs `?`
/// in one of day-of-month and day-of-week.
pub fn cron_to_eventbridge(cron: &str) -> Result<String, String> {
    let fields: Vec<&str> = cron.split_whitespace().collect();
    if !(6..=7).contains(&fields.len()) {
        return Err(format!(
            "cron `{cron}` has {} fields; expected 6 or 7 (with seconds)",
            fields.len()
        ));
    }
    if fields[0] != "0" {
        return Err(format!(
            "cron `{cron}` fires at second {}; EventBridge schedules fire on whole minutes (use 0)",
            fields[0]
        ));
    }
    let (minute, hour, mut dom, month, mut dow) =
        (fields[1], fields[2], fields[3], fields[4], fields[5]);
    let year = fields.get(6).copied().unwrap_or("*");
    let any = |f: &str| f == "*" || f == "?";
    if any(dow) {
        dow = "?";
    } else if any(dom) {
        dom = "?";
    } else {
        return Err(format!(
            "cron `{cron}` restricts both day-of-month and day-of-week; EventBridge takes one of them"
        ));
    }
    Ok(format!("cron({minute} {hour} {dom} {month} {dow} {year})"))
}

/// What a table's stream goes through.
#[derive(Clone, Copy, PartialEq, Eq)]
enum StreamVia {
    DynamoDb,
    Kinesis,
}

struct Ctx<'a> {
    registry: &'a Registry,
    /// Table → how its stream is read (tables with stream-workers only).
    streams: BTreeMap<&'a str, StreamVia>,
    /// Service → the http-worker serving `/services/<name>`.
    served_by: BTreeMap<String, &'a WorkerSpec>,
    /// Whether the Kafka client certificate secret exists.
    kafka: bool,
    /// Whether any worker uses the cache.
    cache: bool,
    /// Workers run on a schedule, and workflows with a schedule.
    scheduled_workers: Vec<&'a WorkerSpec>,
}

/// The registry's buckets plus the two the deployment owns.
const COMPONENT_STORE: &str = "component-store";
const ACCESS_LOGS: &str = "access-logs";
const SCHEDULER_DLQ: &str = "scheduler-dlq";

pub(crate) fn generate(
    registry: &Registry,
    machines: &BTreeMap<String, Value>,
    schedules: &BTreeMap<String, (String, Value)>,
) -> Result<Files, TerraformError> {
    let ctx = context(registry)?;
    check_names(registry, machines)?;
    let mut files = Files::new();
    files.insert("main.tf".into(), main_tf());
    files.insert("variables.tf".into(), variables_tf(&ctx));
    files.insert("storage.tf".into(), storage_tf(&ctx));
    files.insert("tables.tf".into(), tables_tf(&ctx));
    files.insert("queues.tf".into(), queues_tf(&ctx));
    files.insert("workers.tf".into(), workers_tf(&ctx)?);
    files.insert(
        "workflows.tf".into(),
        workflows_tf(&ctx, machines, schedules)?,
    );
    files.insert("outputs.tf".into(), outputs_tf(&ctx, machines));
    Ok(files)
}

fn context(registry: &Registry) -> Result<Ctx<'_>, TerraformError> {
    let mut readers: BTreeMap<&str, usize> = BTreeMap::new();
    for spec in registry.workers.values() {
        if let Trigger::Stream { table, .. } = &spec.trigger {
            *readers.entry(table.as_str()).or_default() += 1;
        }
    }
    let streams = readers
        .into_iter()
        .map(|(table, n)| {
            let via = if n > STREAM_READERS_PER_SHARD {
                StreamVia::Kinesis
            } else {
                StreamVia::DynamoDb
            };
            (table, via)
        })
        .collect();
    let mut served_by = BTreeMap::new();
    for spec in registry.workers.values() {
        if let Trigger::Http { route } = &spec.trigger {
            if let Some(name) = route.trim_end_matches('/').strip_prefix("/services/") {
                if registry.resources.services.contains_key(name) {
                    served_by.insert(name.to_string(), spec);
                }
            }
        }
    }
    let events_granted = registry
        .workers
        .values()
        .any(|w| !w.grants.events.is_empty());
    Ok(Ctx {
        registry,
        streams,
        served_by,
        kafka: events_granted || !registry.resources.event_topics.is_empty(),
        cache: registry.workers.values().any(|w| w.grants.cache),
        scheduled_workers: registry
            .workers
            .values()
            .filter(|w| matches!(w.trigger, Trigger::Schedule { .. }))
            .collect(),
    })
}

/// Labels must be unique per resource type and physical names must fit
/// AWS's limits with the longest prefix.
fn check_names(
    registry: &Registry,
    machines: &BTreeMap<String, Value>,
) -> Result<(), TerraformError> {
    let r = &registry.resources;
    let mut checks: Vec<(&str, Vec<String>, usize)> = vec![
        ("table", r.tables.keys().cloned().collect(), 255),
        ("queue", r.queues.keys().cloned().collect(), 80),
        ("topic", r.topics.keys().cloned().collect(), 256),
        ("bucket", r.buckets.clone(), 63),
        (
            "worker",
            registry
                .workers
                .values()
                .map(function_name)
                .chain(
                    registry
                        .archive_sites()
                        .iter()
                        .map(compaction_function_name),
                )
                .collect(),
            64,
        ),
        (
            "workflow",
            machines.keys().map(|m| format!("workflow-{m}")).collect(),
            64,
        ),
    ];
    checks[3]
        .1
        .extend([COMPONENT_STORE.to_string(), ACCESS_LOGS.to_string()]);
    checks[1].1.push(SCHEDULER_DLQ.to_string());
    for (kind, names, max) in checks {
        let mut labels = BTreeMap::new();
        for name in &names {
            if name.len() + MAX_PREFIX > max {
                return Err(unsupported(
                    format!("{kind} {name}"),
                    format!(
                        "its AWS name (prefix of up to {MAX_PREFIX} characters + `{name}`) may exceed {max} characters; shorten it"
                    ),
                ));
            }
            if kind == "bucket"
                && name.chars().any(|c| {
                    !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
                })
            {
                return Err(unsupported(
                    format!("bucket {name}"),
                    "S3 bucket names take lowercase letters, digits, `-` and `.` only",
                ));
            }
            if let Some(other) = labels.insert(label(name), name) {
                return Err(unsupported(
                    format!("{kind} {name}"),
                    format!(
                        "its Terraform label `{}` is also `{other}`'s; rename one",
                        label(name)
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn header(text: &str) -> Writer {
    let mut w = Writer::new();
    w.comment(HEADER.trim_start_matches("# "));
    w.comment(text);
    w.blank();
    w
}

fn main_tf() -> String {
    let mut w = header(
        "The provider, the one KMS key of the deployment, the Lambda artifact and\n\
         the Lambda trust policy.",
    );
    w.open("terraform", &[])
        .attr("required_version", q(">= 1.6"));
    w.open("required_providers", &[]);
    w.attr(
        "aws",
        "{\n      source  = \"hashicorp/aws\"\n      version = \"~> 5.80\"\n    }",
    );
    w.close().close().blank();
    w.open("provider", &["aws"])
        .attr("region", "var.aws_region");
    w.open("default_tags", &[]);
    w.attr("tags", "{\n      \"usher:deployment\" = var.prefix\n    }");
    w.close().close().blank();
    w.open("data", &["aws_caller_identity", "current"]).close();
    w.open("data", &["aws_partition", "current"]).close();
    w.open("data", &["aws_region", "current"]).close().blank();

    w.comment(
        "Every table, queue, topic, stream, bucket, secret, log group and\n\
         function environment is encrypted with this key. The account's IAM\n\
         policies govern it (each worker's role names it); the services that\n\
         write into encrypted queues and log groups are allowed here.",
    );
    w.open("resource", &["aws_kms_key", "usher"]);
    w.str("description", "usher: the deployment's data key");
    w.attr("enable_key_rotation", "true");
    w.attr("deletion_window_in_days", "30");
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Account",
                "Effect": "Allow",
                "Principal": {"AWS": "${ROOT}"},
                "Action": "kms:*",
                "Resource": "*"
            },
            {
                "Sid": "SnsIntoEncryptedQueues",
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*"
            },
            {
                "Sid": "SchedulerIntoEncryptedQueues",
                "Effect": "Allow",
                "Principal": {"Service": "scheduler.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*"
            },
            {
                "Sid": "LogGroups",
                "Effect": "Allow",
                "Principal": {"Service": "${LOGS}"},
                "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                "Resource": "*",
                "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": "${LOGS_ARN}"}}
            }
        ]
    });
    let root = t("arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root");
    let logs = t("logs.${data.aws_region.current.name}.amazonaws.com");
    let logs_arn = t("arn:${data.aws_partition.current.partition}:logs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:*");
    let expr = json_expr(&policy, w.depth(), &|s| match s {
        "${ROOT}" => Some(root.clone()),
        "${LOGS}" => Some(logs.clone()),
        "${LOGS_ARN}" => Some(logs_arn.clone()),
        _ => None,
    });
    w.attr("policy", format!("jsonencode({expr})"));
    w.close().blank();
    w.open("resource", &["aws_kms_alias", "usher"]);
    w.attr("name", t("alias/${var.prefix}usher"));
    w.attr("target_key_id", "aws_kms_key.usher.key_id");
    w.close().blank();

    w.comment(
        "The one host artifact: `just package-lambda` builds the `usher` binary as\n\
         the `bootstrap` of a provided.al2023 zip (with workers/ and workflows/);\n\
         it is uploaded once and every function runs it. Components are not\n\
         Terraform's: `usher push` puts them in the component store.",
    );
    w.open("resource", &["aws_s3_object", "lambda_zip"]);
    w.attr("bucket", "aws_s3_bucket.component-store.id");
    w.attr("key", t("${var.store_prefix}/lambda/usher-lambda.zip"));
    w.attr("source", "var.lambda_zip");
    w.attr("source_hash", "filemd5(var.lambda_zip)");
    w.attr("kms_key_id", "aws_kms_key.usher.arn");
    w.close().blank();

    w.open("data", &["aws_iam_policy_document", "lambda_assume"]);
    w.open("statement", &[]);
    w.attr("actions", list([q("sts:AssumeRole")]));
    w.open("principals", &[]);
    w.str("type", "Service");
    w.attr("identifiers", list([q("lambda.amazonaws.com")]));
    w.close().close().close();
    w.finish()
}

fn variable(w: &mut Writer, name: &str, ty: &str, default: Option<&str>, description: &str) {
    w.open("variable", &[name]);
    w.str("description", description);
    w.attr("type", ty);
    if let Some(d) = default {
        w.attr("default", d);
    }
}

fn variables_tf(ctx: &Ctx) -> String {
    let mut w = header("The deployment's settings.");
    variable(
        &mut w,
        "aws_region",
        "string",
        Some(&q("eu-west-1")),
        "The AWS region.",
    );
    w.close().blank();
    variable(
        &mut w,
        "prefix",
        "string",
        Some(&q("usher-")),
        "Put before every registry name to make the AWS name (the functions' USHER_RESOURCE_PREFIX); also the buckets', so it must make them globally unique.",
    );
    w.open("validation", &[]);
    w.attr(
        "condition",
        format!("length(var.prefix) <= {MAX_PREFIX} && can(regex(\"^[a-z0-9-]*$\", var.prefix))"),
    );
    w.str(
        "error_message",
        &format!("prefix: at most {MAX_PREFIX} characters among a-z, 0-9 and -."),
    );
    w.close().close().blank();
    variable(
        &mut w,
        "release_env",
        "string",
        Some(&q("dev")),
        "The release environment the functions serve (USHER_ENV: releases/<env>.json of the component store).",
    );
    w.close().blank();
    variable(
        &mut w,
        "store_prefix",
        "string",
        Some(&q("store")),
        "The component store's key prefix in the component-store bucket (USHER_STORE = s3://<bucket>/<prefix>).",
    );
    w.close().blank();
    variable(
        &mut w,
        "lambda_zip",
        "string",
        Some(&q("../build/lambda/usher-lambda.zip")),
        "The zip `just package-lambda` builds.",
    );
    w.close().blank();
    variable(
        &mut w,
        "lambda_architecture",
        "string",
        Some(&q("x86_64")),
        "The functions' architecture: the one the zip's binary was built for.",
    );
    w.open("validation", &[]);
    w.attr(
        "condition",
        "contains([\"x86_64\", \"arm64\"], var.lambda_architecture)",
    );
    w.str("error_message", "lambda_architecture: x86_64 or arm64.");
    w.close().close().blank();
    variable(
        &mut w,
        "host_memory_mb",
        "number",
        Some("128"),
        "Added to each worker's memory limit (its guest memory) for the host's own memory.",
    );
    w.close().blank();
    variable(
        &mut w,
        "release_check_secs",
        "number",
        Some("30"),
        "How often a function checks the release file between invocations (USHER_RELEASE_CHECK_SECS).",
    );
    w.close().blank();
    variable(
        &mut w,
        "log_retention_days",
        "number",
        Some("365"),
        "How long the log groups keep the functions' and state machines' logs.",
    );
    w.close();
    if ctx.kafka {
        w.blank();
        variable(
            &mut w,
            "kafka_brokers",
            "string",
            None,
            "The Kafka bootstrap brokers (host:port,…) of the events capability (USHER_KAFKA_BROKERS); its TLS client certificate is the kafka-client-cert secret.",
        );
        w.close();
    }
    if ctx.cache {
        w.blank();
        variable(
            &mut w,
            "redis_url",
            "string",
            Some(&q("")),
            "The Redis URL of the cache capability (USHER_REDIS_URL); empty: each function instance caches in memory.",
        );
        w.close();
    }
    let services: Vec<&String> = ctx.registry.resources.services.keys().collect();
    if !services.is_empty() {
        w.blank();
        variable(
            &mut w,
            "service_urls",
            "map(string)",
            None,
            "The base URL of every internal service of the registry, by name (USHER_SERVICE_<NAME>_URL of the workers granted it).",
        );
        w.open("validation", &[]);
        w.attr(
            "condition",
            format!(
                "alltrue([for s in {} : contains(keys(var.service_urls), s)])",
                list(services.iter().map(|s| q(s)))
            ),
        );
        w.str(
            "error_message",
            &format!(
                "service_urls: give a URL for each service of the registry: {}.",
                services
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        w.close().close();
    }
    w.finish()
}

fn bucket(w: &mut Writer, name: &str, comment: &str) {
    let l = label(name);
    w.comment(comment);
    w.open("resource", &["aws_s3_bucket", &l]);
    w.skip(
        "CKV_AWS_144",
        "one region by design; cross-region replication is the operators' choice, not the registry's",
    );
    w.skip(
        "CKV2_AWS_62",
        "nothing consumes S3 event notifications: the workers read and write objects through the objects capability",
    );
    if name == ACCESS_LOGS {
        w.skip(
            "CKV_AWS_18",
            "this is the access-log bucket itself: logging it into itself would loop",
        );
        w.skip(
            "CKV_AWS_145",
            "S3 server access logs can only be delivered to a bucket encrypted with SSE-S3 (AES256), not SSE-KMS",
        );
    }
    w.attr("bucket", t(&format!("${{var.prefix}}{name}")));
    w.close().blank();
    w.open("resource", &["aws_s3_bucket_versioning", &l]);
    w.attr("bucket", format!("aws_s3_bucket.{l}.id"));
    w.open("versioning_configuration", &[])
        .str("status", "Enabled");
    w.close().close().blank();
    w.open(
        "resource",
        &["aws_s3_bucket_server_side_encryption_configuration", &l],
    );
    w.attr("bucket", format!("aws_s3_bucket.{l}.id"));
    w.open("rule", &[]);
    w.open("apply_server_side_encryption_by_default", &[]);
    if name == ACCESS_LOGS {
        w.str("sse_algorithm", "AES256");
    } else {
        w.str("sse_algorithm", "aws:kms");
        w.attr("kms_master_key_id", "aws_kms_key.usher.arn");
    }
    w.close();
    w.attr(
        "bucket_key_enabled",
        if name == ACCESS_LOGS { "false" } else { "true" },
    );
    w.close().close().blank();
    w.open("resource", &["aws_s3_bucket_public_access_block", &l]);
    w.attr("bucket", format!("aws_s3_bucket.{l}.id"));
    for a in [
        "block_public_acls",
        "block_public_policy",
        "ignore_public_acls",
        "restrict_public_buckets",
    ] {
        w.attr(a, "true");
    }
    w.close().blank();
    w.open("resource", &["aws_s3_bucket_lifecycle_configuration", &l]);
    w.attr("bucket", format!("aws_s3_bucket.{l}.id"));
    w.open("rule", &[]);
    w.str("id", "abort-incomplete-uploads-and-old-versions");
    w.str("status", "Enabled");
    w.open("filter", &[]).close();
    w.open("abort_incomplete_multipart_upload", &[]);
    w.attr("days_after_initiation", "7");
    w.close();
    w.open("noncurrent_version_expiration", &[]);
    w.attr("noncurrent_days", "90");
    w.close().close().close().blank();
    if name != ACCESS_LOGS {
        w.open("resource", &["aws_s3_bucket_logging", &l]);
        w.attr("bucket", format!("aws_s3_bucket.{l}.id"));
        w.attr(
            "target_bucket",
            format!("aws_s3_bucket.{}.id", label(ACCESS_LOGS)),
        );
        w.str("target_prefix", &format!("{name}/"));
        w.close().blank();
    }
}

fn storage_tf(ctx: &Ctx) -> String {
    let mut w = header(
        "Buckets: the component store (components, releases and the Lambda\n\
         artifact), every bucket of resources.yaml, and the access-log bucket\n\
         they log to. The Kafka client certificate secret.",
    );
    bucket(
        &mut w,
        COMPONENT_STORE,
        "The component store (USHER_STORE): `usher push` writes it, the functions read it.",
    );
    for name in &ctx.registry.resources.buckets {
        bucket(&mut w, name, &format!("Bucket {name} (resources.yaml)."));
    }
    bucket(
        &mut w,
        ACCESS_LOGS,
        "The server access logs of the buckets above.",
    );
    let l = label(ACCESS_LOGS);
    w.open("data", &["aws_iam_policy_document", &l]);
    w.open("statement", &[]);
    w.str("sid", "S3ServerAccessLogs");
    w.attr("actions", list([q("s3:PutObject")]));
    w.attr(
        "resources",
        list([t(&format!("${{aws_s3_bucket.{l}.arn}}/*"))]),
    );
    w.open("principals", &[]);
    w.str("type", "Service");
    w.attr("identifiers", list([q("logging.s3.amazonaws.com")]));
    w.close();
    w.open("condition", &[]);
    w.str("test", "StringEquals");
    w.str("variable", "aws:SourceAccount");
    w.attr("values", "[data.aws_caller_identity.current.account_id]");
    w.close().close().close().blank();
    w.open("resource", &["aws_s3_bucket_policy", &l]);
    w.attr("bucket", format!("aws_s3_bucket.{l}.id"));
    w.attr("policy", format!("data.aws_iam_policy_document.{l}.json"));
    w.close();
    if ctx.kafka {
        w.blank();
        w.comment(
            "The Kafka client certificate (`{\"cert_pem\",\"key_pem\",\"ca_pem\"}`) of the\n\
             events capability (USHER_KAFKA_CERT_SECRET). Its value is put by the\n\
             operators, never by Terraform; `usher lambda` checks its expiry at start-up.",
        );
        w.open(
            "resource",
            &["aws_secretsmanager_secret", "kafka-client-cert"],
        );
        w.skip(
            "CKV2_AWS_57",
            "the certificate is issued by the Kafka cluster's operators and cannot be rotated by a Lambda; usher checks its expiry at start-up and warns 30 days ahead",
        );
        w.attr("name", t("${var.prefix}kafka-client-cert"));
        w.attr("kms_key_id", "aws_kms_key.usher.arn");
        w.close();
    }
    w.finish()
}

fn tables_tf(ctx: &Ctx) -> String {
    let mut w = header(
        "The tables of resources.yaml (string keys, on demand). A table followed\n\
         by stream-workers has a stream: DynamoDB Streams for up to two readers,\n\
         a Kinesis data stream (DynamoDB's Kinesis streaming destination) beyond.",
    );
    for (name, def) in &ctx.registry.resources.tables {
        let l = label(name);
        w.open("resource", &["aws_dynamodb_table", &l]);
        w.attr("name", t(&format!("${{var.prefix}}{name}")));
        w.str("billing_mode", "PAY_PER_REQUEST");
        w.str("hash_key", &def.partition_key);
        if let Some(sk) = &def.sort_key {
            w.str("range_key", sk);
        }
        let mut keys = vec![def.partition_key.clone()];
        keys.extend(def.sort_key.clone());
        for k in keys {
            w.open("attribute", &[])
                .str("name", &k)
                .str("type", "S")
                .close();
        }
        if ctx.streams.get(name.as_str()) == Some(&StreamVia::DynamoDb) {
            w.attr("stream_enabled", "true");
            w.str("stream_view_type", "NEW_AND_OLD_IMAGES");
        }
        w.attr("deletion_protection_enabled", "true");
        w.open("point_in_time_recovery", &[])
            .attr("enabled", "true")
            .close();
        w.open("server_side_encryption", &[]);
        w.attr("enabled", "true");
        w.attr("kms_key_arn", "aws_kms_key.usher.arn");
        w.close().close().blank();
        if ctx.streams.get(name.as_str()) == Some(&StreamVia::Kinesis) {
            w.open("resource", &["aws_kinesis_stream", &l]);
            w.attr("name", t(&format!("${{var.prefix}}{name}-changes")));
            w.attr("retention_period", "24");
            w.str("encryption_type", "KMS");
            w.attr("kms_key_id", "aws_kms_key.usher.arn");
            w.open("stream_mode_details", &[])
                .str("stream_mode", "ON_DEMAND")
                .close();
            w.close().blank();
            w.open(
                "resource",
                &["aws_dynamodb_kinesis_streaming_destination", &l],
            );
            w.attr("stream_arn", format!("aws_kinesis_stream.{l}.arn"));
            w.attr("table_name", format!("aws_dynamodb_table.{l}.name"));
            w.close().blank();
        }
    }
    w.finish()
}

fn queues_tf(ctx: &Ctx) -> String {
    let r = &ctx.registry.resources;
    let mut w = header(
        "The queues of resources.yaml (with their dead-letter queues and redrive),\n\
         the topics with their filtered queue subscriptions, and the dead-letter\n\
         queue of the schedules.",
    );
    let mut sources: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, def) in &r.queues {
        if let Some(dlq) = &def.dead_letter {
            sources.entry(dlq.as_str()).or_default().push(name.as_str());
        }
    }
    let queue = |w: &mut Writer, name: &str, visibility: u32, retention: u64| {
        w.attr("name", t(&format!("${{var.prefix}}{name}")));
        w.attr("visibility_timeout_seconds", visibility.to_string());
        w.attr("message_retention_seconds", retention.to_string());
        w.attr("kms_master_key_id", "aws_kms_key.usher.arn");
        w.attr("kms_data_key_reuse_period_seconds", "300");
    };
    for (name, def) in &r.queues {
        let l = label(name);
        w.open("resource", &["aws_sqs_queue", &l]);
        queue(&mut w, name, def.visibility_timeout_s, def.retention_s);
        if let Some(dlq) = &def.dead_letter {
            let d = label(dlq);
            w.attr(
                "redrive_policy",
                format!(
                    "jsonencode({{\n    deadLetterTargetArn = aws_sqs_queue.{d}.arn\n    maxReceiveCount     = {}\n  }})",
                    def.max_receive_count
                ),
            );
        }
        w.close().blank();
        if let Some(from) = sources.get(name.as_str()) {
            w.open("resource", &["aws_sqs_queue_redrive_allow_policy", &l]);
            w.attr("queue_url", format!("aws_sqs_queue.{l}.id"));
            let arns: Vec<String> = from
                .iter()
                .map(|s| format!("aws_sqs_queue.{}.arn", label(s)))
                .collect();
            w.attr(
                "redrive_allow_policy",
                format!(
                    "jsonencode({{\n    redrivePermission = \"byQueue\"\n    sourceQueueArns   = {}\n  }})",
                    list(arns)
                ),
            );
            w.close().blank();
        }
    }
    w.comment("Failed deliveries of the EventBridge schedules (workers and workflows).");
    w.open("resource", &["aws_sqs_queue", &label(SCHEDULER_DLQ)]);
    queue(&mut w, SCHEDULER_DLQ, 30, 1_209_600);
    w.close().blank();

    let mut subscribed: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, def) in &r.topics {
        let l = label(name);
        w.open("resource", &["aws_sns_topic", &l]);
        w.attr("name", t(&format!("${{var.prefix}}{name}")));
        w.attr("kms_master_key_id", "aws_kms_key.usher.id");
        w.close().blank();
        for sub in &def.subscriptions {
            subscribed
                .entry(sub.queue.as_str())
                .or_default()
                .push(name.as_str());
            let sl = format!("{l}__{}", label(&sub.queue));
            w.open("resource", &["aws_sns_topic_subscription", &sl]);
            w.attr("topic_arn", format!("aws_sns_topic.{l}.arn"));
            w.str("protocol", "sqs");
            w.attr(
                "endpoint",
                format!("aws_sqs_queue.{}.arn", label(&sub.queue)),
            );
            w.attr("raw_message_delivery", "true");
            if let Some(policy) = &sub.filter_policy {
                w.str("filter_policy_scope", "MessageAttributes");
                w.json("filter_policy", policy);
            }
            w.close().blank();
        }
    }
    for (queue, topics) in &subscribed {
        let l = label(queue);
        let name = format!("{l}__from_topics");
        w.open("data", &["aws_iam_policy_document", &name]);
        w.open("statement", &[]);
        w.str("sid", "FromTopics");
        w.attr("actions", list([q("sqs:SendMessage")]));
        w.attr("resources", list([format!("aws_sqs_queue.{l}.arn")]));
        w.open("principals", &[]);
        w.str("type", "Service");
        w.attr("identifiers", list([q("sns.amazonaws.com")]));
        w.close();
        w.open("condition", &[]);
        w.str("test", "ArnEquals");
        w.str("variable", "aws:SourceArn");
        w.attr(
            "values",
            list(
                topics
                    .iter()
                    .map(|t| format!("aws_sns_topic.{}.arn", label(t))),
            ),
        );
        w.close().close().close().blank();
        w.open("resource", &["aws_sqs_queue_policy", &l]);
        w.attr("queue_url", format!("aws_sqs_queue.{l}.id"));
        w.attr(
            "policy",
            format!("data.aws_iam_policy_document.{name}.json"),
        );
        w.close().blank();
    }
    trim_end(w.finish())
}

fn trim_end(mut text: String) -> String {
    while text.ends_with("\n\n") {
        text.pop();
    }
    text
}

/// The resources of kind `cap` a worker's grants allow, from `names`.
fn granted<'a>(
    spec: &WorkerSpec,
    cap: Capability,
    names: impl Iterator<Item = &'a String>,
) -> Vec<&'a String> {
    names.filter(|n| spec.grants.allows(cap, n)).collect()
}

fn statement(w: &mut Writer, sid: &str, actions: &[&str], resources: Vec<String>) {
    w.open("statement", &[]);
    w.str("sid", sid);
    w.attr("actions", list(actions.iter().map(|a| q(a))));
    w.attr("resources", list(resources));
    w.close();
}

/// The lambda's timeout in seconds: the worker's limit, rounded up, plus
/// one second for the host to report a guest timeout itself.
fn timeout_s(spec: &WorkerSpec) -> u64 {
    (spec.limits.timeout_ms.div_ceil(1000) + 1).min(900)
}

/// The Lambda filter patterns of a stream trigger's `filter` (two per rule:
/// new image, old image), on the DynamoDB record; the caller puts them under
/// `data` for a Kinesis stream.
fn stream_filters(spec: &WorkerSpec) -> Result<Vec<Value>, TerraformError> {
    match &spec.trigger {
        Trigger::Stream { filter, .. } => Ok(StreamFilterRule::lambda_patterns(filter, false)),
        _ => Ok(Vec::new()),
    }
}

fn workers_tf(ctx: &Ctx) -> Result<String, TerraformError> {
    let r = &ctx.registry.resources;
    let mut w = header(
        "One function per worker of the registry, each with its own log group and\n\
         IAM role allowing only what its registry entry grants, and its trigger:\n\
         an event-source mapping (queue, stream), a function URL (http) or a\n\
         schedule.",
    );
    for spec in ctx.registry.workers.values() {
        let l = label(&spec.name);
        let fname = function_name(spec);
        w.comment(&format!(
            "{}: {} on {} (component {} {})",
            spec.name,
            spec.world().world_name(),
            describe_trigger(&spec.trigger),
            spec.component.name,
            spec.component.version
        ));
        log_group_and_role(&mut w, &l, &fname);

        // The grants, each kind resolved against the registry (a `*` grant
        // names what it matches, nothing more).
        w.open("data", &["aws_iam_policy_document", &l]);
        own_logs(&mut w, &l);
        let store = label(COMPONENT_STORE);
        statement(
            &mut w,
            "ComponentStore",
            &["s3:GetObject"],
            vec![
                t(&format!("${{aws_s3_bucket.{store}.arn}}/${{var.store_prefix}}/components/*")),
                t(&format!("${{aws_s3_bucket.{store}.arn}}/${{var.store_prefix}}/precompiled/*")),
                t(&format!(
                    "${{aws_s3_bucket.{store}.arn}}/${{var.store_prefix}}/versions/{}.json",
                    spec.name.replace('/', "~")
                )),
                t(&format!(
                    "${{aws_s3_bucket.{store}.arn}}/${{var.store_prefix}}/releases/${{var.release_env}}.json"
                )),
            ],
        );
        // Without ListBucket S3 answers a missing key (a precompiled
        // artifact not yet made for this engine) with 403, not 404.
        statement(
            &mut w,
            "ComponentStoreMissingKeys",
            &["s3:ListBucket"],
            vec![format!("aws_s3_bucket.{store}.arn")],
        );
        data_key(&mut w);
        let tables = granted(spec, Capability::Table, r.tables.keys());
        if !tables.is_empty() {
            statement(
                &mut w,
                "Tables",
                &[
                    "dynamodb:BatchGetItem",
                    "dynamodb:BatchWriteItem",
                    "dynamodb:ConditionCheckItem",
                    "dynamodb:DeleteItem",
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:Query",
                    "dynamodb:UpdateItem",
                ],
                tables
                    .iter()
                    .map(|n| format!("aws_dynamodb_table.{}.arn", label(n)))
                    .collect(),
            );
        }
        let mut send: BTreeSet<&String> = granted(spec, Capability::Queue, r.queues.keys())
            .into_iter()
            .collect();
        if let Trigger::Stream {
            on_failure: Some(q),
            ..
        } = &spec.trigger
        {
            send.insert(q);
        }
        if !send.is_empty() {
            statement(
                &mut w,
                "SendToQueues",
                &["sqs:GetQueueUrl", "sqs:SendMessage"],
                send.iter()
                    .map(|n| format!("aws_sqs_queue.{}.arn", label(n)))
                    .collect(),
            );
        }
        match &spec.trigger {
            Trigger::Queue { queue } => statement(
                &mut w,
                "TriggerQueue",
                &[
                    "sqs:ChangeMessageVisibility",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                    "sqs:ReceiveMessage",
                ],
                vec![format!("aws_sqs_queue.{}.arn", label(queue))],
            ),
            Trigger::Stream { table, .. } => {
                let tl = label(table);
                match ctx.streams.get(table.as_str()) {
                    Some(StreamVia::Kinesis) => statement(
                        &mut w,
                        "TriggerStream",
                        &[
                            "kinesis:DescribeStream",
                            "kinesis:DescribeStreamSummary",
                            "kinesis:GetRecords",
                            "kinesis:GetShardIterator",
                            "kinesis:ListShards",
                            "kinesis:SubscribeToShard",
                        ],
                        vec![format!("aws_kinesis_stream.{tl}.arn")],
                    ),
                    _ => statement(
                        &mut w,
                        "TriggerStream",
                        &[
                            "dynamodb:DescribeStream",
                            "dynamodb:GetRecords",
                            "dynamodb:GetShardIterator",
                            "dynamodb:ListStreams",
                        ],
                        vec![format!("aws_dynamodb_table.{tl}.stream_arn")],
                    ),
                }
            }
            _ => {}
        }
        let topics = granted(spec, Capability::Topic, r.topics.keys());
        if !topics.is_empty() {
            statement(
                &mut w,
                "PublishToTopics",
                &["sns:Publish"],
                topics
                    .iter()
                    .map(|n| format!("aws_sns_topic.{}.arn", label(n)))
                    .collect(),
            );
        }
        let buckets = granted(spec, Capability::Objects, r.buckets.iter());
        if !buckets.is_empty() {
            bucket_objects(
                &mut w,
                buckets
                    .iter()
                    .map(|n| t(&format!("${{aws_s3_bucket.{}.arn}}/*", label(n))))
                    .collect(),
                buckets
                    .iter()
                    .map(|n| format!("aws_s3_bucket.{}.arn", label(n)))
                    .collect(),
            );
        }
        if !spec.grants.events.is_empty() && ctx.kafka {
            statement(
                &mut w,
                "KafkaClientCertificate",
                &["secretsmanager:GetSecretValue"],
                vec!["aws_secretsmanager_secret.kafka-client-cert.arn".into()],
            );
        }
        let workers = granted(spec, Capability::Workers, ctx.registry.workers.keys());
        if !workers.is_empty() {
            statement(
                &mut w,
                "InvokeWorkers",
                &["lambda:InvokeFunction"],
                workers
                    .iter()
                    .map(|n| format!("aws_lambda_function.{}.arn", label(n)))
                    .collect(),
            );
        }
        w.close().blank();
        role_policy(&mut w, &l);

        function(&mut w, ctx, spec, &l, &fname, &send, &topics)?;
        trigger(&mut w, ctx, spec, &l)?;
    }
    for site in ctx.registry.archive_sites() {
        archive_compaction(&mut w, ctx, &site)?;
    }
    let mut scheduled: Vec<String> = ctx
        .scheduled_workers
        .iter()
        .map(|s| format!("aws_lambda_function.{}.arn", label(&s.name)))
        .collect();
    scheduled.extend(
        ctx.registry
            .archive_sites()
            .iter()
            .map(|s| format!("aws_lambda_function.{}.arn", compaction_label(s))),
    );
    if !scheduled.is_empty() {
        scheduler_role(
            &mut w,
            "scheduler_workers",
            "workers",
            "lambda:InvokeFunction",
            scheduled,
        );
    }
    Ok(trim_end(w.finish()))
}

/// A function's log group and IAM role (its policy document follows).
fn log_group_and_role(w: &mut Writer, l: &str, fname: &str) {
    w.open("resource", &["aws_cloudwatch_log_group", l]);
    w.attr("name", t(&format!("/aws/lambda/${{var.prefix}}{fname}")));
    w.attr("retention_in_days", "var.log_retention_days");
    w.attr("kms_key_id", "aws_kms_key.usher.arn");
    w.close().blank();

    w.open("resource", &["aws_iam_role", l]);
    w.attr("name", t(&format!("${{var.prefix}}{fname}")));
    w.attr(
        "assume_role_policy",
        "data.aws_iam_policy_document.lambda_assume.json",
    );
    w.close().blank();
}

fn own_logs(w: &mut Writer, l: &str) {
    statement(
        w,
        "OwnLogs",
        &["logs:CreateLogStream", "logs:PutLogEvents"],
        vec![t(&format!("${{aws_cloudwatch_log_group.{l}.arn}}:*"))],
    );
}

fn data_key(w: &mut Writer) {
    statement(
        w,
        "DataKey",
        &["kms:Decrypt", "kms:GenerateDataKey"],
        vec!["aws_kms_key.usher.arn".into()],
    );
}

/// Reading, writing and deleting `objects` (ARN patterns), listing
/// `buckets`.
fn bucket_objects(w: &mut Writer, objects: Vec<String>, buckets: Vec<String>) {
    statement(
        w,
        "BucketObjects",
        &[
            "s3:AbortMultipartUpload",
            "s3:DeleteObject",
            "s3:GetObject",
            "s3:ListMultipartUploadParts",
            "s3:PutObject",
        ],
        objects,
    );
    statement(w, "BucketListing", &["s3:ListBucket"], buckets);
}

/// The role's policy from its document, and X-Ray.
fn role_policy(w: &mut Writer, l: &str) {
    w.open("resource", &["aws_iam_role_policy", l]);
    w.str("name", "grants");
    w.attr("role", format!("aws_iam_role.{l}.id"));
    w.attr("policy", format!("data.aws_iam_policy_document.{l}.json"));
    w.close().blank();
    xray(w, l);
}

/// Role `l` may send traces to X-Ray.
fn xray(w: &mut Writer, l: &str) {
    w.open(
        "resource",
        &["aws_iam_role_policy_attachment", &format!("{l}__xray")],
    );
    w.attr("role", format!("aws_iam_role.{l}.name"));
    w.attr(
        "policy_arn",
        t("arn:${data.aws_partition.current.partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"),
    );
    w.close().blank();
}

/// When the archives are compacted in AWS: hourly at :30 (`usher up`'s
/// task runs hourly too); only closed days are merged.
pub const COMPACTION_SCHEDULE: &str = "cron(30 * * * ? *)";

/// The Terraform label of an archive's compaction function.
pub fn compaction_label(site: &ArchiveSite) -> String {
    format!("{}__compact", label(&site.worker))
}

/// An archive's compaction function name without the prefix.
fn compaction_function_name(site: &ArchiveSite) -> String {
    format!("{}-compact", site.worker.replace('/', "-"))
}

/// An archive's compaction in AWS: `usher lambda` running the
/// `archive-compact` task (no component) on a schedule, its role allowed
/// only the archive's objects.
fn archive_compaction(w: &mut Writer, ctx: &Ctx, site: &ArchiveSite) -> Result<(), TerraformError> {
    if !ctx.registry.resources.buckets.contains(&site.bucket) {
        return Err(unsupported(
            format!("worker {}", site.worker),
            format!(
                "its bucket `{}` is not in resources.yaml's buckets",
                site.bucket
            ),
        ));
    }
    let l = compaction_label(site);
    let fname = compaction_function_name(site);
    let b = label(&site.bucket);
    w.comment(&format!(
        "{}'s compaction: a closed day's objects of one record type merged into one, hourly (`usher lambda`, USHER_TASK=archive-compact).",
        site.worker
    ));
    log_group_and_role(w, &l, &fname);
    w.open("data", &["aws_iam_policy_document", &l]);
    own_logs(w, &l);
    data_key(w);
    let objects = if site.prefix.is_empty() {
        format!("${{aws_s3_bucket.{b}.arn}}/*")
    } else {
        format!("${{aws_s3_bucket.{b}.arn}}/{}/*", site.prefix)
    };
    bucket_objects(w, vec![t(&objects)], vec![format!("aws_s3_bucket.{b}.arn")]);
    w.close().blank();
    role_policy(w, &l);
    lambda_function(
        w,
        &LambdaDef {
            label: &l,
            fname: &fname,
            description: format!("usher archive compaction of {}", site.worker),
            memory: "min(10240, max(1024, var.host_memory_mb * 4))".into(),
            timeout_s: 900,
            concurrency: Some(1),
            env: vec![
                ("USHER_TASK".into(), q("archive-compact")),
                ("USHER_WORKER".into(), q(&site.worker)),
                ("USHER_REGISTRY".into(), q("/var/task/workers")),
                ("USHER_RESOURCE_PREFIX".into(), "var.prefix".into()),
                ("USHER_LOG_FORMAT".into(), q("json")),
            ],
        },
    );
    function_schedule(w, &l, &fname, COMPACTION_SCHEDULE);
    Ok(())
}

/// An EventBridge Scheduler schedule invoking function `l` (named `fname`
/// without the prefix) on `expr`. Its input is a schedule tick as `usher
/// lambda` reads it (`{"schedule", "scheduledTime"}`), filled in by the
/// scheduler's context attributes; the archive's compaction ignores it.
fn function_schedule(w: &mut Writer, l: &str, fname: &str, expr: &str) {
    schedule(
        w,
        l,
        &format!("${{var.prefix}}{fname}"),
        expr,
        &format!("aws_lambda_function.{l}.arn"),
        "aws_iam_role.scheduler_workers.arn",
        "jsonencode({ schedule = \"<aws.scheduler.schedule-arn>\", scheduledTime = \"<aws.scheduler.scheduled-time>\" })",
    );
}

/// An EventBridge Scheduler schedule `l` (physical name `name`, a template)
/// starting `target` as `role` with `input` (an HCL expression) on `expr`,
/// with retries and the schedules' dead-letter queue.
fn schedule(
    w: &mut Writer,
    l: &str,
    name: &str,
    expr: &str,
    target: &str,
    role: &str,
    input: &str,
) {
    w.open("resource", &["aws_scheduler_schedule", l]);
    w.attr("name", t(name));
    w.str("schedule_expression", expr);
    w.str("schedule_expression_timezone", "UTC");
    w.attr("kms_key_arn", "aws_kms_key.usher.arn");
    w.open("flexible_time_window", &[])
        .str("mode", "OFF")
        .close();
    w.open("target", &[]);
    w.attr("arn", target);
    w.attr("role_arn", role);
    w.attr("input", input);
    w.open("dead_letter_config", &[]);
    w.attr("arn", format!("aws_sqs_queue.{}.arn", label(SCHEDULER_DLQ)));
    w.close();
    w.open("retry_policy", &[]);
    w.attr("maximum_retry_attempts", "2");
    w.close().close().close().blank();
}

fn describe_trigger(trigger: &Trigger) -> String {
    match trigger {
        Trigger::Queue { queue } => format!("queue {queue}"),
        Trigger::Stream { table, .. } => format!("the stream of table {table}"),
        Trigger::Schedule { cron } => format!("schedule {cron}"),
        Trigger::Invoke => "direct invocation".into(),
        Trigger::Resolver {
            type_name,
            field_name,
        } => format!("resolver {type_name}.{field_name}"),
        Trigger::Http { route } => format!("http {route}"),
    }
}

fn function(
    w: &mut Writer,
    ctx: &Ctx,
    spec: &WorkerSpec,
    l: &str,
    fname: &str,
    send: &BTreeSet<&String>,
    topics: &[&String],
) -> Result<(), TerraformError> {
    let concurrency = match &spec.trigger {
        Trigger::Queue { .. } => Some(spec.concurrency),
        _ => None,
    };
    let mut env: Vec<(String, String)> = vec![
        ("USHER_WORKER".into(), q(&spec.name)),
        (
            "USHER_STORE".into(),
            t(&format!(
                "s3://${{aws_s3_bucket.{}.id}}/${{var.store_prefix}}",
                label(COMPONENT_STORE)
            )),
        ),
        ("USHER_ENV".into(), "var.release_env".into()),
        ("USHER_REGISTRY".into(), q("/var/task/workers")),
        (
            "USHER_RELEASE_CHECK_SECS".into(),
            "tostring(var.release_check_secs)".into(),
        ),
        ("USHER_RESOURCE_PREFIX".into(), "var.prefix".into()),
        ("USHER_LOG_FORMAT".into(), q("json")),
    ];
    // Queue URLs and topic ARNs by name, so the function needs no
    // GetQueueUrl on other queues and no sns:ListTopics.
    let mut names: Vec<String> = send
        .iter()
        .map(|n| format!("{n}=${{aws_sqs_queue.{}.url}}", label(n)))
        .collect();
    names.extend(
        topics
            .iter()
            .map(|n| format!("{n}=${{aws_sns_topic.{}.arn}}", label(n))),
    );
    if !names.is_empty() {
        env.push(("USHER_RESOURCE_NAMES".into(), t(&names.join(","))));
    }
    if !spec.grants.events.is_empty() && ctx.kafka {
        env.push(("USHER_KAFKA_BROKERS".into(), "var.kafka_brokers".into()));
        env.push((
            "USHER_KAFKA_CERT_SECRET".into(),
            "aws_secretsmanager_secret.kafka-client-cert.arn".into(),
        ));
    }
    if spec.grants.cache {
        env.push(("USHER_REDIS_URL".into(), "var.redis_url".into()));
    }
    for service in granted(
        spec,
        Capability::Services,
        ctx.registry.resources.services.keys(),
    ) {
        env.push((
            ServiceDef::url_env_var(service),
            format!("var.service_urls[{}]", q(service)),
        ));
    }
    lambda_function(
        w,
        &LambdaDef {
            label: l,
            fname,
            description: format!("usher worker {} ({})", spec.name, spec.world().world_name()),
            memory: format!(
                "min(10240, max(128, {} + var.host_memory_mb))",
                spec.limits.memory_mb
            ),
            timeout_s: timeout_s(spec),
            concurrency,
            env,
        },
    );
    Ok(())
}

/// What differs between the functions (all run the usher host zip).
struct LambdaDef<'a> {
    label: &'a str,
    /// The name without the prefix.
    fname: &'a str,
    description: String,
    /// An HCL expression (MB).
    memory: String,
    timeout_s: u64,
    /// Reserved concurrency.
    concurrency: Option<u32>,
    /// Environment variables: name → HCL expression.
    env: Vec<(String, String)>,
}

fn lambda_function(w: &mut Writer, def: &LambdaDef) {
    let l = def.label;
    w.open("resource", &["aws_lambda_function", l]);
    w.skip(
        "CKV_AWS_117",
        "the functions reach only AWS APIs (and Kafka over TLS with a client certificate); no VPC resource is in the registry",
    );
    w.skip(
        "CKV_AWS_272",
        "the zip is the usher host built by `just package-lambda`; the code it runs is the components, each verified against its registry sha256 pin",
    );
    w.skip(
        "CKV_AWS_116",
        "event-source mappings, Step Functions and the CLI invoke synchronously and handle failures themselves (batch item failures, on-failure destinations, retries); the schedules have their own dead-letter queue",
    );
    if def.concurrency.is_none() {
        w.skip(
            "CKV_AWS_115",
            "the registry limits concurrency for queue-workers only; a stream runs one batch per shard, other triggers follow their callers",
        );
    }
    w.attr("function_name", t(&format!("${{var.prefix}}{}", def.fname)));
    w.str("description", &def.description);
    w.attr("role", format!("aws_iam_role.{l}.arn"));
    w.str("runtime", "provided.al2023");
    w.str("handler", "bootstrap");
    w.attr("architectures", "[var.lambda_architecture]");
    w.attr("s3_bucket", "aws_s3_object.lambda_zip.bucket");
    w.attr("s3_key", "aws_s3_object.lambda_zip.key");
    w.attr("source_code_hash", "filebase64sha256(var.lambda_zip)");
    w.attr("memory_size", &def.memory);
    w.attr("timeout", def.timeout_s.to_string());
    if let Some(c) = def.concurrency {
        w.attr("reserved_concurrent_executions", c.to_string());
    }
    w.attr("kms_key_arn", "aws_kms_key.usher.arn");
    w.open("tracing_config", &[]).str("mode", "Active").close();
    w.open("logging_config", &[]);
    w.str("log_format", "JSON");
    w.attr("log_group", format!("aws_cloudwatch_log_group.{l}.name"));
    w.close();
    w.open("environment", &[]);
    let env = &def.env;
    let width = env.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let pad = "  ".repeat(w.depth() + 1);
    let mut vars = String::from("{\n");
    for (k, v) in env {
        vars.push_str(&format!("{pad}  {k:<width$} = {v}\n"));
    }
    vars.push_str(&pad);
    vars.push('}');
    w.attr("variables", vars);
    w.close();
    w.attr(
        "depends_on",
        format!("[aws_iam_role_policy.{l}, aws_cloudwatch_log_group.{l}]"),
    );
    w.close().blank();
}

fn trigger(w: &mut Writer, ctx: &Ctx, spec: &WorkerSpec, l: &str) -> Result<(), TerraformError> {
    let r = &ctx.registry.resources;
    match &spec.trigger {
        Trigger::Queue { queue } => {
            if let Some(def) = r.queues.get(queue) {
                if u64::from(def.visibility_timeout_s) < timeout_s(spec) {
                    return Err(unsupported(
                        format!("worker {}", spec.name),
                        format!(
                            "its function's timeout ({} s) exceeds queue {queue}'s visibility_timeout_s ({}); SQS event-source mappings need the visibility timeout at least as long",
                            timeout_s(spec),
                            def.visibility_timeout_s
                        ),
                    ));
                }
            }
            w.open("resource", &["aws_lambda_event_source_mapping", l]);
            w.attr(
                "event_source_arn",
                format!("aws_sqs_queue.{}.arn", label(queue)),
            );
            w.attr("function_name", format!("aws_lambda_function.{l}.arn"));
            w.attr("batch_size", spec.batch_size.to_string());
            if spec.batch_size > 10 {
                // SQS takes more than 10 messages per batch only with a window.
                w.attr("maximum_batching_window_in_seconds", "1");
            }
            w.attr(
                "function_response_types",
                list([q("ReportBatchItemFailures")]),
            );
            if spec.concurrency >= 2 {
                w.open("scaling_config", &[]);
                w.attr("maximum_concurrency", spec.concurrency.to_string());
                w.close();
            }
            w.close().blank();
        }
        Trigger::Stream {
            table,
            max_retries,
            on_failure,
            starting_position,
            ..
        } => {
            let via = ctx.streams.get(table.as_str()).copied();
            let tl = label(table);
            w.open("resource", &["aws_lambda_event_source_mapping", l]);
            match via {
                Some(StreamVia::Kinesis) => {
                    w.attr("event_source_arn", format!("aws_kinesis_stream.{tl}.arn"))
                }
                _ => w.attr(
                    "event_source_arn",
                    format!("aws_dynamodb_table.{tl}.stream_arn"),
                ),
            };
            w.attr("function_name", format!("aws_lambda_function.{l}.arn"));
            w.attr("batch_size", spec.batch_size.to_string());
            w.str(
                "starting_position",
                match starting_position {
                    StartingPosition::Latest => "LATEST",
                    StartingPosition::TrimHorizon => "TRIM_HORIZON",
                },
            );
            w.attr("parallelization_factor", "1");
            w.attr("bisect_batch_on_function_error", "true");
            w.attr("maximum_retry_attempts", max_retries.to_string());
            w.attr(
                "function_response_types",
                list([q("ReportBatchItemFailures")]),
            );
            if let Some(dest) = on_failure {
                w.open("destination_config", &[]);
                w.open("on_failure", &[]);
                w.attr(
                    "destination_arn",
                    format!("aws_sqs_queue.{}.arn", label(dest)),
                );
                w.close().close();
            }
            let filters = stream_filters(spec)?;
            if !filters.is_empty() {
                w.open("filter_criteria", &[]);
                for f in filters {
                    // Kinesis carries the DynamoDB record as JSON in `data`.
                    let pattern = match via {
                        Some(StreamVia::Kinesis) => json!({ "data": f }),
                        _ => f,
                    };
                    w.open("filter", &[]);
                    w.attr(
                        "pattern",
                        format!("jsonencode({})", json_expr(&pattern, w.depth(), &|_| None)),
                    );
                    w.close();
                }
                w.close();
            }
            if via == Some(StreamVia::Kinesis) {
                w.attr(
                    "depends_on",
                    format!("[aws_dynamodb_kinesis_streaming_destination.{tl}]"),
                );
            }
            w.close().blank();
        }
        Trigger::Http { route } => {
            w.comment(&format!(
                "{route}: authentication (JWT) is the host's, as an API gateway authorizer's."
            ));
            w.open("resource", &["aws_lambda_function_url", l]);
            w.skip(
                "CKV_AWS_258",
                "the route is public by design: usher verifies the JWT of protected routes itself (DESIGN.md, decisions), and its callers (workers, services) do not sign requests with SigV4",
            );
            w.attr(
                "function_name",
                format!("aws_lambda_function.{l}.function_name"),
            );
            w.str("authorization_type", "NONE");
            w.close().blank();
        }
        Trigger::Schedule { cron } => {
            let expr = cron_to_eventbridge(cron)
                .map_err(|m| unsupported(format!("worker {}", spec.name), m))?;
            function_schedule(w, l, &function_name(spec), &expr);
        }
        Trigger::Invoke | Trigger::Resolver { .. } => {}
    }
    Ok(())
}

fn scheduler_role(w: &mut Writer, l: &str, what: &str, action: &str, targets: Vec<String>) {
    w.comment(&format!(
        "EventBridge Scheduler: starts the scheduled {what} only."
    ));
    w.open("resource", &["aws_iam_role", l]);
    w.attr(
        "name",
        t(&format!("${{var.prefix}}{}", l.replace('_', "-"))),
    );
    w.attr(
        "assume_role_policy",
        "jsonencode({\n    Version = \"2012-10-17\"\n    Statement = [{\n      Effect    = \"Allow\"\n      Action    = \"sts:AssumeRole\"\n      Principal = { Service = \"scheduler.amazonaws.com\" }\n    }]\n  })",
    );
    w.close().blank();
    w.open("data", &["aws_iam_policy_document", l]);
    statement(w, "Targets", &[action], targets);
    statement(
        w,
        "DeadLetters",
        &["sqs:SendMessage"],
        vec![format!("aws_sqs_queue.{}.arn", label(SCHEDULER_DLQ))],
    );
    statement(
        w,
        "DataKey",
        &["kms:Decrypt", "kms:GenerateDataKey"],
        vec!["aws_kms_key.usher.arn".into()],
    );
    w.close().blank();
    w.open("resource", &["aws_iam_role_policy", l]);
    w.str("name", "targets");
    w.attr("role", format!("aws_iam_role.{l}.id"));
    w.attr("policy", format!("data.aws_iam_policy_document.{l}.json"));
    w.close().blank();
}

/// The registry workers a machine's tasks name as `${domain/worker}`.
fn task_workers(value: &Value, registry: &Registry, out: &mut BTreeSet<String>) {
    match value {
        Value::String(s) => {
            if let Some(name) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
                if registry.workers.contains_key(name) {
                    out.insert(name.to_string());
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| task_workers(v, registry, out)),
        Value::Object(map) => map.values().for_each(|v| task_workers(v, registry, out)),
        _ => {}
    }
}

fn workflows_tf(
    ctx: &Ctx,
    machines: &BTreeMap<String, Value>,
    schedules: &BTreeMap<String, (String, Value)>,
) -> Result<String, TerraformError> {
    let mut w = header(
        "A Step Functions state machine per workflows/*.asl.json (each task's\n\
         `${domain/worker}` becomes that worker's function ARN), its role (invoking\n\
         only those functions) and log group, and the schedules of\n\
         workflows/schedules.yaml.",
    );
    for (name, machine) in machines {
        let l = format!("workflow_{}", label(name));
        let mut tasks = BTreeSet::new();
        task_workers(machine, ctx.registry, &mut tasks);
        w.open("resource", &["aws_cloudwatch_log_group", &l]);
        w.attr(
            "name",
            t(&format!(
                "/aws/vendedlogs/states/${{var.prefix}}workflow-{name}"
            )),
        );
        w.attr("retention_in_days", "var.log_retention_days");
        w.attr("kms_key_id", "aws_kms_key.usher.arn");
        w.close().blank();
        w.open("resource", &["aws_iam_role", &l]);
        w.attr("name", t(&format!("${{var.prefix}}workflow-{name}")));
        w.attr(
            "assume_role_policy",
            "jsonencode({\n    Version = \"2012-10-17\"\n    Statement = [{\n      Effect    = \"Allow\"\n      Action    = \"sts:AssumeRole\"\n      Principal = { Service = \"states.amazonaws.com\" }\n    }]\n  })",
        );
        w.close().blank();
        if !tasks.is_empty() {
            w.open("data", &["aws_iam_policy_document", &l]);
            let mut arns = Vec::new();
            for task in &tasks {
                arns.push(format!("aws_lambda_function.{}.arn", label(task)));
                arns.push(t(&format!(
                    "${{aws_lambda_function.{}.arn}}:*",
                    label(task)
                )));
            }
            statement(
                &mut w,
                "InvokeTaskWorkers",
                &["lambda:InvokeFunction"],
                arns,
            );
            w.close().blank();
            w.open("resource", &["aws_iam_role_policy", &l]);
            w.str("name", "tasks");
            w.attr("role", format!("aws_iam_role.{l}.id"));
            w.attr("policy", format!("data.aws_iam_policy_document.{l}.json"));
            w.close().blank();
        }
        w.comment(
            "Step Functions' log delivery is configured on the account's log\n\
             service, whose actions take no resource but `*` (AWS documents it so).",
        );
        w.open("data", &["aws_iam_policy_document", &format!("{l}__logs")]);
        w.skip(
            "CKV_AWS_111",
            "CloudWatch Logs delivery actions for Step Functions support only Resource \"*\" (AWS Step Functions developer guide, logging IAM policies)",
        );
        w.skip(
            "CKV_AWS_356",
            "CloudWatch Logs delivery actions for Step Functions support only Resource \"*\"",
        );
        statement(
            &mut w,
            "LogDelivery",
            &[
                "logs:CreateLogDelivery",
                "logs:DeleteLogDelivery",
                "logs:DescribeLogGroups",
                "logs:DescribeResourcePolicies",
                "logs:GetLogDelivery",
                "logs:ListLogDeliveries",
                "logs:PutResourcePolicy",
                "logs:UpdateLogDelivery",
            ],
            vec![q("*")],
        );
        w.close().blank();
        w.open("resource", &["aws_iam_role_policy", &format!("{l}__logs")]);
        w.str("name", "log-delivery");
        w.attr("role", format!("aws_iam_role.{l}.id"));
        w.attr(
            "policy",
            format!("data.aws_iam_policy_document.{l}__logs.json"),
        );
        w.close().blank();
        xray(&mut w, &l);
        w.open("resource", &["aws_sfn_state_machine", &l]);
        w.attr("name", t(&format!("${{var.prefix}}workflow-{name}")));
        w.attr("role_arn", format!("aws_iam_role.{l}.arn"));
        w.str("type", "STANDARD");
        let registry = ctx.registry;
        let definition = json_expr(machine, w.depth(), &|s| {
            let name = s.strip_prefix("${")?.strip_suffix('}')?;
            registry
                .workers
                .contains_key(name)
                .then(|| format!("aws_lambda_function.{}.arn", label(name)))
        });
        w.attr("definition", format!("jsonencode({definition})"));
        w.open("logging_configuration", &[]);
        w.attr(
            "log_destination",
            t(&format!("${{aws_cloudwatch_log_group.{l}.arn}}:*")),
        );
        w.attr("include_execution_data", "true");
        w.str("level", "ALL");
        w.close();
        w.open("tracing_configuration", &[])
            .attr("enabled", "true")
            .close();
        w.open("encryption_configuration", &[]);
        w.str("type", "CUSTOMER_MANAGED_KMS_KEY");
        w.attr("kms_key_id", "aws_kms_key.usher.arn");
        w.attr("kms_data_key_reuse_period_seconds", "300");
        w.close();
        w.attr(
            "depends_on",
            if tasks.is_empty() {
                format!("[aws_iam_role_policy.{l}__logs]")
            } else {
                format!("[aws_iam_role_policy.{l}, aws_iam_role_policy.{l}__logs]")
            },
        );
        w.close().blank();
    }
    let scheduled: Vec<(&String, &(String, Value))> = schedules
        .iter()
        .filter(|(name, _)| machines.contains_key(*name))
        .collect();
    for (name, (cron, input)) in &scheduled {
        let l = format!("workflow_{}", label(name));
        let expr =
            cron_to_eventbridge(cron).map_err(|m| unsupported(format!("workflow {name}"), m))?;
        // The input sits in the target block, two levels deep.
        let input = format!("jsonencode({})", json_expr(input, w.depth() + 2, &|_| None));
        schedule(
            &mut w,
            &l,
            &format!("${{var.prefix}}workflow-{name}"),
            &expr,
            &format!("aws_sfn_state_machine.{l}.arn"),
            "aws_iam_role.scheduler_workflows.arn",
            &input,
        );
    }
    if !scheduled.is_empty() {
        scheduler_role(
            &mut w,
            "scheduler_workflows",
            "workflows",
            "states:StartExecution",
            scheduled
                .iter()
                .map(|(name, _)| format!("aws_sfn_state_machine.workflow_{}.arn", label(name)))
                .collect(),
        );
    }
    Ok(trim_end(w.finish()))
}

fn outputs_tf(ctx: &Ctx, machines: &BTreeMap<String, Value>) -> String {
    let mut w = header("What the deployment made, by registry name.");
    let map = |entries: Vec<(String, String)>| -> String {
        if entries.is_empty() {
            return "{}".into();
        }
        let width = entries.iter().map(|(k, _)| k.len() + 2).max().unwrap_or(0);
        let mut s = String::from("{\n");
        for (k, v) in entries {
            s.push_str(&format!("    {:<width$} = {v}\n", q(&k)));
        }
        s.push_str("  }");
        s
    };
    w.open("output", &["functions"]);
    w.str("description", "Worker → function ARN.");
    w.attr(
        "value",
        map(ctx
            .registry
            .workers
            .keys()
            .map(|n| (n.clone(), format!("aws_lambda_function.{}.arn", label(n))))
            .collect()),
    );
    w.close().blank();
    w.open("output", &["queue_urls"]);
    w.str("description", "Queue → URL.");
    w.attr(
        "value",
        map(ctx
            .registry
            .resources
            .queues
            .keys()
            .map(|n| (n.clone(), format!("aws_sqs_queue.{}.url", label(n))))
            .collect()),
    );
    w.close().blank();
    w.open("output", &["function_urls"]);
    w.str("description", "http-worker → function URL.");
    w.attr(
        "value",
        map(ctx
            .registry
            .workers
            .values()
            .filter(|s| matches!(s.trigger, Trigger::Http { .. }))
            .map(|s| {
                (
                    s.name.clone(),
                    format!("aws_lambda_function_url.{}.function_url", label(&s.name)),
                )
            })
            .collect()),
    );
    w.close().blank();
    w.open("output", &["service_routes"]);
    w.str(
        "description",
        "Service → the http-worker's function URL serving it (candidates for var.service_urls).",
    );
    w.attr(
        "value",
        map(ctx
            .served_by
            .iter()
            .map(|(service, spec)| {
                (
                    service.clone(),
                    format!("aws_lambda_function_url.{}.function_url", label(&spec.name)),
                )
            })
            .collect()),
    );
    w.close().blank();
    w.open("output", &["state_machines"]);
    w.str("description", "Workflow → state machine ARN.");
    w.attr(
        "value",
        map(machines
            .keys()
            .map(|n| {
                (
                    n.clone(),
                    format!("aws_sfn_state_machine.workflow_{}.arn", label(n)),
                )
            })
            .collect()),
    );
    w.close().blank();
    w.open("output", &["component_store"]);
    w.str(
        "description",
        "USHER_STORE of `usher push` and `usher promote`.",
    );
    w.attr(
        "value",
        t(&format!(
            "s3://${{aws_s3_bucket.{}.id}}/${{var.store_prefix}}",
            label(COMPONENT_STORE)
        )),
    );
    w.close();
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crons_become_eventbridge_expressions() {
        assert_eq!(
            cron_to_eventbridge("0 0 * * * *").unwrap(),
            "cron(0 * * * ? *)"
        );
        assert_eq!(
            cron_to_eventbridge("0 30 6 * * *").unwrap(),
            "cron(30 6 * * ? *)"
        );
        assert_eq!(
            cron_to_eventbridge("0 0 9 * * MON-FRI").unwrap(),
            "cron(0 9 ? * MON-FRI *)"
        );
        assert_eq!(
            cron_to_eventbridge("0 0 9 1 * * 2030").unwrap(),
            "cron(0 9 1 * ? 2030)"
        );
        assert!(cron_to_eventbridge("*/5 * * * * *")
            .unwrap_err()
            .contains("whole minutes"));
        assert!(cron_to_eventbridge("0 0 9 1 * MON")
            .unwrap_err()
            .contains("both"));
        assert!(cron_to_eventbridge("0 9 * * *")
            .unwrap_err()
            .contains("5 fields"));
    }

    #[test]
    fn labels_replace_slashes_and_dots() {
        assert_eq!(
            label("replication/save-entries"),
            "replication_save-entries"
        );
        assert_eq!(label("prd.dmnd"), "prd_dmnd");
    }
}
