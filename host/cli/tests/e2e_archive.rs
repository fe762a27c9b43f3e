//! The change-data archive end to end, read back by clients nobody here
//! wrote (Python duckdb, pyarrow, fastavro and sqlglot, installed by
//! `scripts/pyclients` into the cache; `archive_check.py` beside this file):
//!
//! * `usher up` with the repository's registry (every worker, the archive
//!   among them) on a data folder; fans' entries written into demand-table
//!   (inserted, modified, removed; replication clears their flags
//!   meanwhile), plus sale items (one invalid). duckdb reads the Parquet
//!   archive with hive partitioning until the latest change of every item
//!   is exactly the table's items, PII scrubbed; pyarrow's schema of every
//!   file equals the derived one; sqlglot parses the DDL (Hive dialect).
//!   Then `usher archive compact` merges each day into one object and the
//!   same check passes again. With `format: avro` the same through fastavro.
//! * The AWS path (with the servers of `scripts/servers`): DynamoDB Local's
//!   stream copied into moto's Kinesis, Kinesis-wrapped DynamoDB records
//!   through the real `usher lambda` to S3 on moto; the bucket is
//!   downloaded and read back the same way.
//!
//! The Python clients are installed on first use (PyPI); when that fails
//! the tests say so and pass, unless USHER_REQUIRE_SERVERS=1.

use crate::aws;
use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws::sources::{KinesisSource, SourceStats, StreamSource, StreamTarget};
use aws::{provisioned, Function, Provisioned, Servers};
use common::{bump, remove, root, Platform, TABLE};
use serde_json::{json, Value};
use usher_capabilities::TableBackend;

const SALT: &str = "e2e-salt";

/// The venv python with the clients, or None (skip) when they cannot be
/// installed and USHER_REQUIRE_SERVERS is not 1.
fn python() -> Option<PathBuf> {
    let out = Command::new("bash")
        .arg(root().join("scripts/pyclients"))
        .arg("install")
        .output()
        .expect("bash runs");
    if out.status.success() {
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        return Some(PathBuf::from(path));
    }
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(
        std::env::var("USHER_REQUIRE_SERVERS").as_deref() != Ok("1"),
        "scripts/pyclients install failed: {why}"
    );
    eprintln!("skipped: the Python clients could not be installed: {why}");
    None
}

/// The registry with the archive's settings for this test.
fn edit(format: &'static str) -> impl Fn(&str, String) -> String {
    move |name, text| {
        if name == "archive.yaml" {
            text.replace("format: parquet", &format!("format: {format}"))
                .replace(
                    "system_id: usher",
                    &format!("system_id: usher\n      pii_salt: {SALT}"),
                )
        } else {
            text
        }
    }
}

/// Runs archive_check.py; Ok(summary) or Err(its complaint).
fn check(
    python: &Path,
    format: &str,
    bucket_dir: &Path,
    expected: &Value,
    tmp: &Path,
) -> Result<Value, String> {
    let file = tmp.join("expected.json");
    std::fs::write(&file, expected.to_string()).expect("write expected.json");
    let out = Command::new(python)
        .arg(root().join("host/cli/tests/archive_check.py"))
        .arg(format)
        .arg(bucket_dir)
        .arg("archive")
        .arg(root().join("schemas/archive/derived"))
        .arg(&file)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        json!({"ok": false, "error": format!("{stdout}{}", String::from_utf8_lossy(&out.stderr))})
    });
    if out.status.success() && summary["ok"] == json!(true) {
        Ok(summary)
    } else {
        Err(summary["error"].as_str().unwrap_or_default().to_string())
    }
}

/// Every item of demand-table whose PK starts with `ENTRY#<campaign>#`.
async fn items(tables: &dyn TableBackend, campaign: &str, users: &[String]) -> Vec<Value> {
    let mut out = Vec::new();
    for u in users {
        if let Some(item) = tables
            .get(TABLE, &common::key(campaign, u))
            .await
            .expect("get")
        {
            out.push(item);
        }
    }
    out
}

/// Writes the fans' entries (60 inserted, 20 modified, 10 removed) and 3
/// sale items (one without its required quantity).
async fn write_changes(tables: &dyn TableBackend, campaign: &str) -> Vec<String> {
    let users: Vec<String> = (0..60).map(|n| format!("fan{n:03}")).collect();
    for u in &users {
        bump(tables, campaign, u).await;
    }
    for (n, u) in users.iter().enumerate() {
        if n % 3 == 0 {
            bump(tables, campaign, u).await;
        }
        if n % 6 == 1 {
            remove(tables, campaign, u).await;
        }
    }
    for (i, quantity) in [json!(2), json!(4), Value::Null].into_iter().enumerate() {
        let mut sale = json!({
            "PK": format!("SALE#{campaign}-{i}"), "SK": "SALE", "saleId": format!("{campaign}-{i}"),
            "campaignId": campaign, "globalUserId": "fan000", "email": "fan000@example.com",
            "cardLast4": "4242", "amount": 120.5, "currency": "USD", "quantity": quantity,
        });
        if sale["quantity"].is_null() {
            sale.as_object_mut().expect("object").remove("quantity");
        }
        tables.put(TABLE, sale, None).await.expect("put a sale");
    }
    users
}

/// Polls the check until it passes (the archive follows the stream, and
/// replication keeps modifying the entries for a while).
async fn converge(
    python: &Path,
    format: &str,
    bucket_dir: &Path,
    expected: impl Fn() -> futures::future::BoxFuture<'static, Value>,
    tmp: &Path,
    within: Duration,
    context: impl Fn() -> String,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let want = expected().await;
        match check(python, format, bucket_dir, &want, tmp) {
            Ok(summary) => return summary,
            Err(e) if Instant::now() > deadline => {
                panic!("the archive never matched the table: {e}\n{}", context())
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

async fn archive_on_usher_up(format: &'static str) {
    let Some(python) = python() else { return };
    let campaign = format!("c-archive-{format}");
    let mut platform = Platform::new(edit(format));
    platform.start().await;
    let embedded = platform.embedded();
    let tables = embedded.tables();
    let users = write_changes(tables.as_ref(), &campaign).await;
    let bucket_dir = platform.data.join("objects/archive");
    let expected = {
        let tables = tables.clone();
        let campaign = campaign.clone();
        let users = users.clone();
        move || {
            let tables = tables.clone();
            let campaign = campaign.clone();
            let users = users.clone();
            Box::pin(async move {
                json!({"salt": SALT, "items": items(tables.as_ref(), &campaign, &users).await, "types": {"sale": 2}})
            }) as futures::future::BoxFuture<'static, Value>
        }
    };
    let tmp = platform.tmp.path().to_path_buf();
    let summary = converge(
        &python,
        format,
        &bucket_dir,
        &expected,
        &tmp,
        Duration::from_secs(120),
        || platform.log(),
    )
    .await;
    assert!(summary["files"].as_u64().unwrap_or(0) >= 1, "{summary}");
    // The invalid sale went to the errors prefix, with its change.
    let errors: Vec<PathBuf> = walk(&bucket_dir.join("archive/errors/sale"));
    assert_eq!(errors.len(), 1, "{errors:?}");
    let line: Value = serde_json::from_str(
        std::fs::read_to_string(&errors[0])
            .expect("errors object")
            .lines()
            .next()
            .expect("a line"),
    )
    .expect("json line");
    assert_eq!(line["errorType"], "ValidationError");
    assert!(
        line["message"]
            .as_str()
            .unwrap_or_default()
            .contains("quantity"),
        "{line}"
    );
    assert_eq!(line["change"]["newImage"]["cardLast4"], "4242");
    assert!(platform.stop().await.success(), "{}", platform.log());

    // Compaction: every day of every type into one object, the same records.
    let before = walk(&bucket_dir.join("archive/demand")).len();
    let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let data = platform.data.to_string_lossy().to_string();
    for t in ["demand", "sale"] {
        platform.run(&[
            "archive", "compact", "--data", &data, "--format", format, "--type", t, "--day", &day,
        ]);
    }
    let after = walk(&bucket_dir.join("archive/demand"));
    assert!(
        before >= 1 && after.len() == 1,
        "{before} objects → {after:?}"
    );
    assert!(
        after[0]
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("merged-")),
        "{after:?}"
    );
    let want = expected().await;
    let summary = check(&python, format, &bucket_dir, &want, &tmp)
        .unwrap_or_else(|e| panic!("after compaction: {e}"));
    assert_eq!(summary["files"], json!(2), "{summary}");
}

/// Every file under a folder.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parquet_archive_on_usher_up_reads_back_in_duckdb_and_pyarrow() {
    archive_on_usher_up("parquet").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn avro_archive_on_usher_up_reads_back_in_fastavro() {
    archive_on_usher_up("avro").await;
}

/// The seed's path on the AWS backends: demand-table on DynamoDB Local, its
/// stream copied into a Kinesis stream on moto, the archive worker as the
/// real `usher lambda` fed Kinesis events by a local event-source mapping,
/// its objects on moto's S3; the bucket is downloaded and read back by
/// duckdb and pyarrow.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kinesis_records_through_usher_lambda_to_s3() {
    let Some(servers) = Servers::from_env() else {
        return;
    };
    let Some(python) = python() else { return };
    let campaign = "c-archive-aws";
    let platform = Platform::new(edit("parquet"));
    let deployed = Provisioned::new(&servers, &platform, &["archive/archive-changes"]).await;
    let function_env = deployed.function_env(&platform, &[]);
    let dir = platform.tmp.path().to_path_buf();
    let mut function = Function::start("archive/archive-changes", 1, &function_env, &dir).await;
    let registry = platform.registry();
    let tables = servers
        .backends(&registry.resources, &deployed.prefix)
        .await
        .tables();
    let kinesis_stream = format!("{}demand-table-changes", deployed.prefix);
    let kinesis_arn = servers.kinesis_stream(&kinesis_stream, 2).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let copied = Arc::new(SourceStats::default());
    let delivered = Arc::new(SourceStats::default());
    let table_stream = StreamSource {
        client: servers.streams().await,
        stream_arn: provisioned(&deployed.report, "tables", "demand-table", "arn"),
        batch_size: 100,
        max_retries: 3,
    };
    let mut sources = vec![tokio::spawn(table_stream.run(
        StreamTarget::Kinesis {
            client: servers.kinesis().await,
            stream: kinesis_stream.clone(),
            table: format!("{}demand-table", deployed.prefix),
        },
        copied.clone(),
        stopped.clone(),
    ))];
    sources.push(tokio::spawn(
        KinesisSource {
            client: servers.kinesis().await,
            stream: kinesis_stream,
            stream_arn: kinesis_arn,
            batch_size: 100,
            max_retries: 3,
        }
        .run(function.api.clone(), delivered.clone(), stopped.clone()),
    ));
    let users = write_changes(tables.as_ref(), campaign).await;
    let s3 = servers.s3().await;
    let bucket = deployed.resource("buckets", "archive", "physical");
    let local = dir.join("s3-archive");
    let expected = {
        let tables = tables.clone();
        let users = users.clone();
        move || {
            let tables = tables.clone();
            let users = users.clone();
            Box::pin(async move {
                json!({"salt": SALT, "items": items(tables.as_ref(), campaign, &users).await, "types": {"sale": 2}})
            }) as futures::future::BoxFuture<'static, Value>
        }
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    let summary = loop {
        function.assert_running();
        download(&s3, &bucket, &local).await;
        let want = expected().await;
        match check(&python, "parquet", &local, &want, &dir) {
            Ok(summary) => break summary,
            Err(e) if Instant::now() > deadline => panic!(
                "the S3 archive never matched the table: {e}\ncopied: {}\ndelivered: {}\n{}",
                copied.summary(),
                delivered.summary(),
                function.logs()
            ),
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    };
    assert!(summary["files"].as_u64().unwrap_or(0) >= 1, "{summary}");
    assert_eq!(
        SourceStats::get(&delivered.errors),
        0,
        "{}",
        delivered.summary()
    );
    stop.send(true).expect("stop the sources");
    for s in sources {
        s.await.expect("a source");
    }

    // The compaction in AWS: `usher lambda` running the `archive-compact`
    // task (what the Terraform schedules hourly) on the same bucket.
    let mut compact_env = function_env.clone();
    compact_env.push(("USHER_TASK".into(), "archive-compact".into()));
    let mut compaction = Function::start("archive/archive-changes", 1, &compact_env, &dir).await;
    let invoke = |event: Value| {
        let api = compaction.api.clone();
        async move { api.invoke(event, Duration::from_secs(120)).await }
    };
    // The scheduler's event (the Terraform's tick input): only closed
    // days, and today's is open.
    let tick = json!({"schedule": "arn:aws:scheduler:us-east-1:000000000000:schedule/default/archive-compact", "scheduledTime": "2026-12-06T10:30:00Z"});
    let scheduled = invoke(tick).await.expect("the scheduled run");
    assert_eq!(scheduled["compacted"], json!([]), "{scheduled}");
    let refused = invoke(json!({"day": "yesterday"}))
        .await
        .expect_err("not a day");
    assert!(refused.message.contains("yesterday"), "{refused:?}");
    let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let before = walk_s3(&s3, &bucket, &format!("archive/demand/dt={day}/")).await;
    let answer = invoke(json!({"day": day}))
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", compaction.logs()));
    compaction.assert_running();
    let after = walk_s3(&s3, &bucket, &format!("archive/demand/dt={day}/")).await;
    assert!(
        before.len() >= 2 && after.len() == 1 && after[0].contains("/merged-"),
        "{before:?} → {after:?}: {answer}"
    );
    let merged = answer["compacted"]
        .as_array()
        .expect("compacted")
        .iter()
        .find(|r| r["folder"] == format!("archive/demand/dt={day}/"))
        .unwrap_or_else(|| panic!("demand's day not in {answer}"));
    assert_eq!(merged["inputs"], json!(before.len()), "{answer}");
    download(&s3, &bucket, &local).await;
    let want = expected().await;
    let summary = check(&python, "parquet", &local, &want, &dir)
        .unwrap_or_else(|e| panic!("after compaction: {e}"));
    assert_eq!(summary["files"], json!(2), "one object per type: {summary}");
}

/// The keys under `prefix` in `bucket`, every page.
async fn walk_s3(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .expect("list the archive bucket");
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        token = page.next_continuation_token;
        if token.is_none() {
            return keys;
        }
    }
}

/// Mirrors a bucket into a folder (keys as paths), replacing what was there.
async fn download(s3: &aws_sdk_s3::Client, bucket: &str, dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    for key in walk_s3(s3, bucket, "").await {
        let body = s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .expect("get");
        let bytes = body.body.collect().await.expect("body").into_bytes();
        let path = dir.join(&key);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, &bytes).expect("write");
    }
}
