//! Replication end to end on the AWS backends, against real servers on
//! 127.0.0.1 (started by `scripts/servers`):
//!
//! ```text
//! DynamoDB Local demand-table ──stream──► enqueue-entries (usher lambda)
//!   ──► moto SQS save-entries ──► save-entries (usher lambda, 2 instances)
//!   ──► the Entry Service (usher up) ──► demand-table flag cleared
//! ```
//!
//! Both workers run as the real `usher lambda` binary against a local
//! Lambda Runtime API, their components fetched from an S3 component store
//! (moto) at init; the stream and the queue reach them through locally run
//! event-source mappings that act on `batchItemFailures` as Lambda does.
//! Entries are written, modified and removed on DynamoDB; one oversized
//! entry is refused by the Entry Service, fails alone, and SQS moves it to
//! the dead-letter queue after three receives. Meanwhile a new save-entries
//! is pushed and promoted on S3, and both running instances swap to it
//! between invocations, without a restart.

use crate::aws;
use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws::sources::{KinesisSource, QueueSource, SourceStats, StreamSource, StreamTarget};
use aws::{provisioned, usher_s3, Function, Provisioned, Servers};
use common::{bump, converge_with, remove, root, with_custom_section, Platform};
use serde_json::{json, Value};
use usher_backend_aws::DynamoTables;
use usher_capabilities::TableBackend;

const CAMPAIGN: &str = "c-aws";
const ENTRIES: usize = 300;

/// The replication workers deployed on the local servers: the registry's
/// resources provisioned under a fresh prefix, both components pushed and
/// promoted on an S3 store, enqueue-entries (1 instance) and save-entries
/// (2 instances) running as `usher lambda`, and the Entry Service under
/// `usher up` (its own embedded storage; the replication workers there have
/// nothing to do: their queues and table are the embedded ones, which
/// nobody writes).
struct Deployment {
    servers: Servers,
    platform: Platform,
    prefix: String,
    /// The servers' environment for `usher` commands.
    env: Vec<(String, String)>,
    /// `s3://bucket/components`.
    store: String,
    /// `usher provision --json`.
    report: Value,
    enqueue: Function,
    save: Function,
    tables: Arc<DynamoTables>,
}

async fn deploy(servers: Servers) -> Deployment {
    let mut platform = Platform::new(|_, text| text);
    platform.start().await;
    let registry = platform.registry();

    let provisioned = Provisioned::new(
        &servers,
        &platform,
        &["replication/enqueue-entries", "replication/save-entries"],
    )
    .await;
    let function_env = provisioned.function_env(
        &platform,
        &[("USHER_SERVICE_ENTRIES_URL", &platform.entries_url)],
    );
    let Provisioned {
        prefix,
        env,
        store,
        report,
    } = provisioned;
    let dir = platform.tmp.path().to_path_buf();
    let enqueue = Function::start("replication/enqueue-entries", 1, &function_env, &dir).await;
    let save = Function::start("replication/save-entries", 2, &function_env, &dir).await;
    let tables = servers
        .backends(&registry.resources, &prefix)
        .await
        .tables();
    Deployment {
        servers,
        platform,
        prefix,
        env,
        store,
        report,
        enqueue,
        save,
        tables,
    }
}

impl Deployment {
    /// The demand-table's DynamoDB stream, in batches of 100, 3 retries.
    async fn table_stream(&self) -> StreamSource {
        StreamSource {
            client: self.servers.streams().await,
            stream_arn: provisioned(&self.report, "tables", "demand-table", "arn"),
            batch_size: 100,
            max_retries: 3,
        }
    }

    /// Two pollers of the save-entries queue feeding the save-entries
    /// function.
    async fn queue_sources(
        &self,
        stats: &Arc<SourceStats>,
        stopped: &tokio::sync::watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut sources = Vec::new();
        for _ in 0..2 {
            sources.push(tokio::spawn(
                QueueSource {
                    client: self.servers.sqs().await,
                    queue_url: provisioned(&self.report, "queues", "save-entries", "physical"),
                    queue_arn: provisioned(&self.report, "queues", "save-entries", "arn"),
                    batch_size: 10,
                }
                .run(self.save.api.clone(), stats.clone(), stopped.clone()),
            ));
        }
        sources
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replication_runs_end_to_end_on_the_aws_backends() {
    let Some(servers) = Servers::from_env() else {
        return;
    };
    let mut d = deploy(servers).await;

    // The event-source mappings.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stream_stats = Arc::new(SourceStats::default());
    let queue_stats = Arc::new(SourceStats::default());
    let mut sources = d.queue_sources(&queue_stats, &stopped).await;
    sources.push(tokio::spawn(d.table_stream().await.run(
        StreamTarget::Function(d.enqueue.api.clone()),
        stream_stats.clone(),
        stopped.clone(),
    )));
    let queue_url = provisioned(&d.report, "queues", "save-entries", "physical");
    let Deployment {
        servers,
        platform,
        env,
        store,
        report,
        enqueue,
        save,
        tables,
        ..
    } = &mut d;

    // Writes on DynamoDB: every entry, then a third modified, a tenth
    // removed and some of those re-inserted.
    let users: Vec<String> = (0..ENTRIES).map(|n| format!("u{n:04}")).collect();
    for user in &users {
        bump(tables.as_ref(), CAMPAIGN, user).await;
    }
    // Modifications and removals go on in the background while a new
    // save-entries is pushed and promoted on S3: each running instance
    // notices the release (its ETag, checked every 5 s between
    // invocations), fetches and swaps it in, without a cold start (the
    // same processes keep serving); the writer then keeps bumping entries
    // until both instances have swapped, so invocations continue.
    let swapped = Arc::new(AtomicBool::new(false));
    let writer = {
        let tables = tables.clone();
        let users = users.clone();
        let swapped = swapped.clone();
        tokio::spawn(async move {
            for (n, user) in users.iter().enumerate() {
                if n % 3 == 0 {
                    bump(tables.as_ref(), CAMPAIGN, user).await;
                }
                if n % 10 == 5 {
                    remove(tables.as_ref(), CAMPAIGN, user).await;
                    if n % 20 == 5 {
                        bump(tables.as_ref(), CAMPAIGN, user).await;
                    }
                }
            }
            // Entries that are present (never removed: n % 10 != 5).
            let mut n = 1;
            while !swapped.load(Ordering::SeqCst) {
                bump(tables.as_ref(), CAMPAIGN, &users[n % ENTRIES]).await;
                n += 10;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let built = std::fs::read(root().join("build/components/replication/save-entries.wasm"))
        .expect("the built save-entries component");
    let new = with_custom_section(built, "usher-e2e-aws-swap", b"0.9.0");
    let new_file = platform.tmp.path().join("save-entries-0.9.0.wasm");
    std::fs::write(&new_file, new).expect("write");
    let new_file = new_file.to_string_lossy().to_string();
    let push = [
        "push",
        "replication/save-entries",
        &new_file,
        "--version",
        "0.9.0",
    ];
    usher_s3(platform, store, env, &push);
    usher_s3(
        platform,
        store,
        env,
        &["promote", "replication/save-entries", "0.9.0"],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while save.log_lines("new release swapped in") < 2 {
        assert!(
            Instant::now() < deadline,
            "the save-entries instances did not swap to 0.9.0:\n{}",
            save.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    swapped.store(true, Ordering::SeqCst);
    writer.await.expect("the writer");
    assert!(save.logs().contains("to=0.9.0"), "{}", save.logs());
    save.assert_running();

    // The poison entry: over the Entry Service's 64 KiB limit.
    let poison_user = "poison";
    let mut poison = common::entry("c-aws-poison", poison_user, 1);
    poison["entry"]["essay"] = json!("x".repeat(70_000));
    tables
        .put("demand-table", poison, None)
        .await
        .expect("the poison entry");
    enqueue.assert_running();
    save.assert_running();

    let context = || {
        format!(
            "stream source: {}\nqueue source: {}\n{}\n{}\nusher up:\n{}",
            stream_stats.summary(),
            queue_stats.summary(),
            enqueue.logs(),
            save.logs(),
            common::tail(&platform.log(), 30)
        )
    };
    let state = converge_with(
        &platform.base,
        tables.as_ref(),
        CAMPAIGN,
        &users,
        Duration::from_secs(180),
        context,
    )
    .await;
    let removed = (0..ENTRIES).filter(|n| n % 20 == 15).count();
    assert_eq!(state.len(), ENTRIES - removed, "{}", context());

    // The poison entry ends in the dead-letter queue, alone, and stays
    // flagged; nothing else is left in any queue.
    let dlq_url = &provisioned(report, "queues", "save-entries-dlq", "physical");
    let deadline = Instant::now() + Duration::from_secs(60);
    while servers.depth(dlq_url).await < 1 {
        assert!(
            Instant::now() < deadline,
            "the poison message never reached the dead-letter queue\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let dead = servers
        .sqs()
        .await
        .receive_message()
        .queue_url(dlq_url)
        .max_number_of_messages(10)
        .send()
        .await
        .expect("receive the dead letters");
    let bodies: Vec<Value> = dead
        .messages()
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap_or("null")).expect("JSON body"))
        .collect();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0]["newImage"]["globalUserId"], json!(poison_user));
    let still = tables
        .get("demand-table", &common::key("c-aws-poison", poison_user))
        .await
        .expect("get")
        .expect("the poison entry");
    assert_eq!(still["needsReplication"], json!(true));
    assert_eq!(servers.depth(&queue_url).await, 0, "{}", context());

    // The poison message failed once per receive, three times: as an item
    // failure when it came with others, as an invocation error
    // (`BatchFailed`) when it came alone. Nothing else failed, before,
    // during or after the swap. The stream gave nothing up.
    let failures =
        SourceStats::get(&queue_stats.item_failures) + SourceStats::get(&queue_stats.errors);
    assert_eq!(failures, 3, "{}", context());
    assert_eq!(SourceStats::get(&stream_stats.given_up), 0, "{}", context());
    enqueue.assert_running();
    save.assert_running();

    stop.send(true).expect("stop the sources");
    for source in sources {
        source.await.expect("a source");
    }
    platform.stop().await;
}

/// The seed's path: demand-table changes reach enqueue-entries through a
/// Kinesis data stream (DynamoDB's Kinesis streaming destination, copied
/// here from DynamoDB Local's stream into moto's Kinesis, which DynamoDB
/// Local cannot do itself), so the function receives Kinesis events whose
/// records carry the DynamoDB changes, and reports failures by Kinesis
/// sequence number. Entries are written, modified and removed; everything
/// converges and nothing fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replication_through_kinesis_on_the_aws_backends() {
    const CAMPAIGN: &str = "c-aws-kinesis";
    const ENTRIES: usize = 150;
    let Some(servers) = Servers::from_env() else {
        return;
    };
    let mut d = deploy(servers).await;
    let kinesis_stream = format!("{}demand-table-changes", d.prefix);
    let kinesis_arn = d.servers.kinesis_stream(&kinesis_stream, 2).await;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let copied = Arc::new(SourceStats::default());
    let kinesis_stats = Arc::new(SourceStats::default());
    let queue_stats = Arc::new(SourceStats::default());
    let mut sources = d.queue_sources(&queue_stats, &stopped).await;
    sources.push(tokio::spawn(d.table_stream().await.run(
        StreamTarget::Kinesis {
            client: d.servers.kinesis().await,
            stream: kinesis_stream.clone(),
            table: format!("{}demand-table", d.prefix),
        },
        copied.clone(),
        stopped.clone(),
    )));
    sources.push(tokio::spawn(
        KinesisSource {
            client: d.servers.kinesis().await,
            stream: kinesis_stream,
            stream_arn: kinesis_arn,
            batch_size: 100,
            max_retries: 3,
        }
        .run(
            d.enqueue.api.clone(),
            kinesis_stats.clone(),
            stopped.clone(),
        ),
    ));

    let tables = d.tables.clone();
    let users: Vec<String> = (0..ENTRIES).map(|n| format!("k{n:04}")).collect();
    for user in &users {
        bump(tables.as_ref(), CAMPAIGN, user).await;
    }
    for (n, user) in users.iter().enumerate() {
        if n % 3 == 0 {
            bump(tables.as_ref(), CAMPAIGN, user).await;
        }
        if n % 10 == 5 {
            remove(tables.as_ref(), CAMPAIGN, user).await;
        }
    }
    d.enqueue.assert_running();
    d.save.assert_running();
    let context = || {
        format!(
            "copied to Kinesis: {}\nkinesis source: {}\nqueue source: {}\n{}\n{}",
            copied.summary(),
            kinesis_stats.summary(),
            queue_stats.summary(),
            d.enqueue.logs(),
            d.save.logs()
        )
    };
    let state = converge_with(
        &d.platform.base,
        tables.as_ref(),
        CAMPAIGN,
        &users,
        Duration::from_secs(180),
        context,
    )
    .await;
    assert_eq!(state.len(), ENTRIES - ENTRIES / 10, "{}", context());
    // Every change went through Kinesis: the function receives as many
    // records as were copied (the flag clearings copied last arrive soon
    // after the convergence), with no failure anywhere.
    let deadline = Instant::now() + Duration::from_secs(30);
    while SourceStats::get(&kinesis_stats.records) != SourceStats::get(&copied.records) {
        assert!(Instant::now() < deadline, "{}", context());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for stats in [&kinesis_stats, &queue_stats] {
        assert_eq!(
            SourceStats::get(&stats.errors) + SourceStats::get(&stats.item_failures),
            0,
            "{}",
            context()
        );
    }
    stop.send(true).expect("stop the sources");
    for source in sources {
        source.await.expect("a source");
    }
    d.platform.stop().await;
}

/// An init failure (here an unknown worker) is posted to the Runtime API's
/// `/runtime/init/error` with its type and a message naming the registry's
/// workers, and the process exits 1. No server is needed: init fails
/// before any AWS call.
#[tokio::test]
async fn usher_lambda_reports_init_errors_to_the_runtime_api() {
    let platform = Platform::new(|_, text| text);
    let env: Vec<(String, String)> = [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("USHER_REGISTRY", &platform.registry_dir.to_string_lossy()),
        ("USHER_STORE", &platform.store.to_string_lossy()),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .into();
    let mut function =
        Function::start("replication/no-such-worker", 1, &env, platform.tmp.path()).await;
    let statuses = function.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(statuses[0].code(), Some(1), "{}", function.logs());
    let reported = function.api.init_errors();
    assert_eq!(reported.len(), 1, "{reported:?}\n{}", function.logs());
    assert_eq!(reported[0]["errorType"], json!("UnknownWorker"));
    let message = reported[0]["errorMessage"].as_str().expect("a message");
    assert!(
        message.contains("replication/no-such-worker")
            && message.contains("replication/save-entries"),
        "{message}"
    );

    // A host task it does not have, and the archive task on a worker that
    // is not an archive: refused at init, naming what is wrong.
    for (task, worker, expected) in [
        ("no-such-task", "archive/archive-changes", "archive-compact"),
        (
            "archive-compact",
            "replication/save-entries",
            "not an archive",
        ),
    ] {
        let mut env = env.clone();
        env.push(("USHER_TASK".into(), task.into()));
        let mut function = Function::start(worker, 1, &env, platform.tmp.path()).await;
        let statuses = function.wait_exit(Duration::from_secs(30)).await;
        assert_eq!(statuses[0].code(), Some(1), "{}", function.logs());
        let reported = function.api.init_errors();
        assert_eq!(reported.len(), 1, "{reported:?}\n{}", function.logs());
        let message = reported[0]["errorMessage"].as_str().expect("a message");
        assert!(message.contains(expected), "{task}: {message}");
    }
}
