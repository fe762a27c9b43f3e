use std::path::{Path, PathBuf};

use crate::*;

const ZEROS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const DIGEST_A: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

const RESOURCES: &str = r#"
tables:
  demand-table: { partition_key: PK, sort_key: SK }
  plain: { partition_key: id }
queues:
  save-entries: { visibility_timeout_s: 30, max_receive_count: 3, dead_letter: save-entries-dlq, retention_s: 1209600 }
  save-entries-dlq: {}
  retry-score: { dead_letter: retry-score-dlq }
  retry-score-dlq:
  failures: {}
  campaign-data: {}
topics:
  data: { subscriptions: [ { queue: campaign-data, filter_policy: { type: [CAMPAIGN] } } ] }
buckets: [exports]
event_topics: [prd2011.dmnd.campaigns]
services:
  entries: { url: "http://127.0.0.1:8090", timeout_ms: 3000, retries: 3 }
  users: { url: "https://users.internal/api" }
"#;

const REPLICATION: &str = r#"
# the replication domain
domain: replication
workers:
  save-entries:                       # full name replication/save-entries
    component: { name: replication/save-entries, version: 0.1.0, sha256: "0000000000000000000000000000000000000000000000000000000000000000" }
    trigger: { queue: save-entries }
    batch_size: 10
    limits: { memory_mb: 64, timeout_ms: 5000 }
    grants:
      tables: [demand-table]
      queues: [retry-score]
      services: [entries]
    settings: { table: demand-table, retry_queue: retry-score }
  enqueue-entries:
    component: { version: 0.2.0-rc.1, sha256: "sha256:A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F90" }
    trigger:
      stream: { table: demand-table, on_failure: failures }
    grants: { queues: [save-*], workers: [reports/nightly] }
"#;

const REPORTS: &str = r#"
domain: reports
workers:
  nightly:
    component:
      version: 1.2.3
      sha256: "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
    trigger: { schedule: { cron: "0 0 3 * * *" } }
    limits: { memory_mb: 256, timeout_ms: 900000 }
    grants: { buckets: [exports], events: [prd2011.dmnd.campaigns], cache: true, codec: true }
  lookup:
    component: { version: 0.1.0, sha256: "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90" }
    trigger: { resolver: { type_name: Query, field_name: getEntries } }
  export:
    component: { version: 0.1.0, sha256: "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90" }
    trigger: { http: { route: /exports } }
    grants: { buckets: [exports], topics: [data] }
  direct:
    component: { version: 0.1.0, sha256: "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90" }
    trigger: { invoke: {} }
"#;

/// Writes the given files into a fresh temporary registry directory.
fn registry_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn load(files: &[(&str, &str)]) -> Result<Registry, RegistryError> {
    let dir = registry_dir(files);
    Registry::load(dir.path())
}

/// Loads the good registry with `replace` applied to the replication file
/// and returns the error message.
fn error_with(file: &str, from: &str, to: &str) -> String {
    let (resources, replication, reports) = match file {
        "resources.yaml" => (
            RESOURCES.replacen(from, to, 1),
            REPLICATION.into(),
            REPORTS.into(),
        ),
        "replication.yaml" => (
            RESOURCES.into(),
            REPLICATION.replacen(from, to, 1),
            REPORTS.into(),
        ),
        _ => (
            RESOURCES.into(),
            REPLICATION.into(),
            REPORTS.replacen(from, to, 1),
        ),
    };
    let changed: &String = match file {
        "resources.yaml" => &resources,
        "replication.yaml" => &replication,
        _ => &reports,
    };
    assert!(
        changed.contains(to),
        "test bug: `{from}` not found in {file}"
    );
    let err = load(&[
        ("resources.yaml", &resources),
        ("replication.yaml", &replication),
        ("reports.yaml", &reports),
    ])
    .expect_err("the registry should not load");
    err.to_string()
}

fn assert_names(message: &str, file: &str, worker: &str, needle: &str) {
    assert!(message.contains(file), "no file `{file}` in: {message}");
    assert!(
        message.contains(worker),
        "no worker `{worker}` in: {message}"
    );
    assert!(message.contains(needle), "no `{needle}` in: {message}");
}

#[test]
fn good_registry_loads_with_defaults() {
    let dir = registry_dir(&[
        ("resources.yaml", RESOURCES),
        ("replication.yaml", REPLICATION),
        ("reports.yml", REPORTS),
        ("notes.txt", "not a registry file"),
    ]);
    let reg = Registry::load(dir.path()).unwrap();
    assert_eq!(reg.dir, dir.path());
    assert_eq!(
        reg.workers.keys().collect::<Vec<_>>(),
        [
            "replication/enqueue-entries",
            "replication/save-entries",
            "reports/direct",
            "reports/export",
            "reports/lookup",
            "reports/nightly",
        ]
    );
    assert_eq!(reg.domains(), ["replication", "reports"]);

    let save = reg.worker("replication/save-entries").unwrap();
    assert_eq!(save.domain, "replication");
    assert_eq!(save.key(), "save-entries");
    assert_eq!(save.component.name, "replication/save-entries");
    assert_eq!(save.component.version, semver::Version::new(0, 1, 0));
    assert_eq!(save.component.sha256, ZEROS);
    assert_eq!(
        save.trigger,
        Trigger::Queue {
            queue: "save-entries".into()
        }
    );
    assert_eq!(save.world(), WorldKind::Batch);
    assert_eq!(save.batch_size, 10);
    assert_eq!(save.limits.memory_bytes(), 64 * 1024 * 1024);
    assert_eq!(save.limits.timeout(), std::time::Duration::from_secs(5));
    assert_eq!(save.grants.tables, ["demand-table"]);
    assert_eq!(save.settings["table"], "demand-table");
    assert_eq!(save.settings["retry_queue"], "retry-score");

    let enqueue = reg.worker("replication/enqueue-entries").unwrap();
    assert_eq!(enqueue.component.name, "replication/enqueue-entries");
    assert_eq!(enqueue.component.version.to_string(), "0.2.0-rc.1");
    assert_eq!(enqueue.component.sha256, DIGEST_A);
    assert_eq!(
        enqueue.trigger,
        Trigger::Stream {
            table: "demand-table".into(),
            max_retries: 3,
            on_failure: Some("failures".into()),
            starting_position: StartingPosition::TrimHorizon,
            filter: vec![],
        }
    );
    assert_eq!(enqueue.batch_size, 100);
    assert_eq!(enqueue.limits, Limits::default());
    assert!(enqueue.settings.is_empty());

    let nightly = reg.worker("reports/nightly").unwrap();
    assert_eq!(nightly.world(), WorldKind::Scheduled);
    assert_eq!(nightly.batch_size, 1);
    assert_eq!(nightly.limits.timeout_ms, 900_000);
    assert!(nightly.grants.cache && nightly.grants.codec);
    assert_eq!(
        reg.worker("reports/lookup").unwrap().world(),
        WorldKind::Invoke
    );
    assert_eq!(
        reg.worker("reports/direct").unwrap().trigger,
        Trigger::Invoke
    );
    assert_eq!(
        reg.worker("reports/export").unwrap().world(),
        WorldKind::Http
    );

    assert_eq!(
        reg.worker_for_queue("save-entries")
            .map(|w| w.name.as_str()),
        Some("replication/save-entries")
    );
    assert!(reg.worker_for_queue("failures").is_none());
    assert_eq!(reg.workers_for_stream("demand-table").len(), 1);
    assert_eq!(
        reg.worker_for_route("/exports").map(|w| w.name.as_str()),
        Some("reports/export")
    );
    assert_eq!(
        reg.worker_for_resolver("Query", "getEntries")
            .map(|w| w.name.as_str()),
        Some("reports/lookup")
    );

    let r = &reg.resources;
    assert_eq!(r.tables["plain"].sort_key, None);
    assert_eq!(r.tables["demand-table"].sort_key.as_deref(), Some("SK"));
    assert_eq!(
        r.queues["save-entries"].dead_letter.as_deref(),
        Some("save-entries-dlq")
    );
    assert_eq!(r.queues["retry-score-dlq"], QueueDef::default());
    assert_eq!(r.queues["retry-score"].retention_s, 1_209_600);
    assert_eq!(r.queues["retry-score"].visibility_timeout_s, 30);
    assert_eq!(r.topics["data"].subscriptions[0].queue, "campaign-data");
    assert_eq!(
        r.topics["data"].subscriptions[0].filter_policy,
        Some(serde_json::json!({"type": ["CAMPAIGN"]}))
    );
    assert!(r.has_bucket("exports"));
    assert!(r.has_event_topic("prd2011.dmnd.campaigns"));
    assert_eq!(r.services["users"].timeout_ms, 3000);
    assert_eq!(r.services["users"].retries, 3);
}

#[test]
fn resources_file_is_optional() {
    let reg = load(&[(
        "solo.yaml",
        &format!(
            "domain: solo\nworkers:\n  ping:\n    component: {{ version: 0.1.0, sha256: \"{ZEROS}\" }}\n    trigger: {{ invoke: {{}} }}\n"
        ),
    )])
    .unwrap();
    assert_eq!(reg.resources, Resources::default());
    assert!(reg.workers.contains_key("solo/ping"));

    let empty = load(&[]).unwrap();
    assert!(empty.workers.is_empty());
}

#[test]
fn the_real_registry_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workers");
    let reg = Registry::load(&dir).unwrap();
    let names: Vec<&str> = reg.workers.keys().map(String::as_str).collect();
    for expected in [
        "replication/enqueue-entries",
        "replication/retry-score",
        "replication/save-entries",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let enqueue = reg.worker("replication/enqueue-entries").unwrap();
    assert_eq!(enqueue.batch_size, 100);
    assert_eq!(enqueue.grants.queues, ["save-entries"]);
    let save = reg.worker("replication/save-entries").unwrap();
    assert_eq!(save.grants.services, ["entries"]);
    assert_eq!(
        reg.resources.queues["save-entries"].dead_letter.as_deref(),
        Some("save-entries-dlq")
    );
    // The Entry Service is served by `usher up`'s listener under its route.
    assert_eq!(
        reg.resources.services["entries"].url,
        "http://127.0.0.1:8090/services/entries"
    );
    let entry_service = reg.worker("services/entry-service").unwrap();
    assert_eq!(entry_service.grants.tables, ["entries"]);
}

#[test]
fn the_data_pipeline_runs_one_component_on_five_queues() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workers");
    let reg = Registry::load(&dir).unwrap();
    let send: Vec<&WorkerSpec> = reg
        .workers
        .values()
        .filter(|w| w.component.name == "data-pipeline/send-data")
        .collect();
    let mut queues: Vec<String> = send
        .iter()
        .map(|w| match &w.trigger {
            Trigger::Queue { queue } => queue.clone(),
            other => panic!("{}: {other:?}", w.name),
        })
        .collect();
    queues.sort();
    assert_eq!(
        queues,
        [
            "campaign-queue",
            "evt-mapping-queue",
            "market-queue",
            "reg-markets-queue",
            "registration-queue"
        ]
    );
    // The merged block gives every entry the same grants, settings and limits.
    for w in &send {
        assert_eq!(w.grants, send[0].grants, "{}", w.name);
        assert_eq!(w.settings, send[0].settings, "{}", w.name);
        assert_eq!(w.batch_size, 10, "{}", w.name);
        assert!(w.grants.allows(Capability::Events, "prd2011.dmnd.markets"));
        assert_eq!(
            w.settings["dead_letters"]["MARKET"],
            serde_json::json!("market-queue-dlq")
        );
    }
    // data-sns routes each type to its queue; each queue has a DLQ, 3
    // receives and 14 days.
    let subs = &reg.resources.topics["data-sns"].subscriptions;
    assert_eq!(subs.len(), 5);
    for sub in subs {
        let q = &reg.resources.queues[&sub.queue];
        assert_eq!(q.max_receive_count, 3);
        assert_eq!(q.retention_s, 14 * 24 * 3600);
        assert!(q.dead_letter.is_some());
        assert!(sub
            .filter_policy
            .as_ref()
            .is_some_and(|p| p["type"].is_array()));
    }
    for t in [
        "campaigns",
        "markets",
        "registrations",
        "event-mappings",
        "registered-markets",
    ] {
        assert!(reg.resources.has_event_topic(&format!("prd2011.dmnd.{t}")));
    }

    // `just pin` rewrites each entry's own component line.
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, tmp.path().join(path.file_name().unwrap())).unwrap();
    }
    let digest = "ab".repeat(32);
    let version = semver::Version::new(9, 9, 9);
    for w in &send {
        let (file, key) = crate::locate_worker(tmp.path(), &w.name).unwrap();
        crate::set_component_pin(&file, &key, &version, &digest).unwrap();
    }
    let pinned = Registry::load(tmp.path()).unwrap();
    for w in pinned
        .workers
        .values()
        .filter(|w| w.component.name == "data-pipeline/send-data")
    {
        assert_eq!(w.component.sha256, digest, "{}", w.name);
        assert_eq!(w.component.version, version, "{}", w.name);
    }
}

#[test]
fn unknown_worker_lists_known_names() {
    let reg = load(&[
        ("resources.yaml", RESOURCES),
        ("replication.yaml", REPLICATION),
        ("reports.yaml", REPORTS),
    ])
    .unwrap();
    let err = reg.worker("replication/nope").unwrap_err().to_string();
    assert!(err.contains("replication/nope"), "{err}");
    assert!(err.contains("replication/save-entries, "), "{err}");
    assert!(err.contains("reports/nightly"), "{err}");
}

#[test]
fn missing_trigger_queue_is_reported() {
    let msg = error_with(
        "replication.yaml",
        "trigger: { queue: save-entries }",
        "trigger: { queue: nope }",
    );
    assert_names(
        &msg,
        "replication.yaml",
        "replication/save-entries",
        "trigger.queue `nope`",
    );
    // The line of the worker's key is given.
    assert!(msg.contains("(line 5)"), "{msg}");
}

#[test]
fn missing_stream_table_and_on_failure_queue_are_reported() {
    let msg = error_with(
        "replication.yaml",
        "on_failure: failures",
        "on_failure: gone",
    );
    assert_names(
        &msg,
        "replication.yaml",
        "replication/enqueue-entries",
        "on_failure queue `gone`",
    );
    let msg = error_with(
        "replication.yaml",
        "stream: { table: demand-table",
        "stream: { table: other",
    );
    assert_names(
        &msg,
        "replication.yaml",
        "replication/enqueue-entries",
        "table `other`",
    );
}

#[test]
fn unknown_grants_are_reported() {
    let msg = error_with(
        "replication.yaml",
        "tables: [demand-table]",
        "tables: [demand-table, ghost]",
    );
    assert_names(
        &msg,
        "replication.yaml",
        "replication/save-entries",
        "grants.tables: `ghost`",
    );
    let msg = error_with(
        "reports.yaml",
        "events: [prd2011.dmnd.campaigns]",
        "events: [other.topic]",
    );
    assert_names(
        &msg,
        "reports.yaml",
        "reports/nightly",
        "grants.events: `other.topic`",
    );
    let msg = error_with("reports.yaml", "topics: [data]", "topics: [news]");
    assert_names(
        &msg,
        "reports.yaml",
        "reports/export",
        "grants.topics: `news`",
    );
    let msg = error_with(
        "replication.yaml",
        "services: [entries]",
        "services: [codes]",
    );
    assert_names(
        &msg,
        "replication.yaml",
        "replication/save-entries",
        "grants.services: `codes`",
    );
    let msg = error_with(
        "replication.yaml",
        "workers: [reports/nightly]",
        "workers: [nightly]",
    );
    assert_names(
        &msg,
        "replication.yaml",
        "replication/enqueue-entries",
        "no worker named `nightly`",
    );
    // A wildcard grant is not checked against the resources.
    load(&[
        ("resources.yaml", RESOURCES),
        (
            "replication.yaml",
            &REPLICATION.replace("tables: [demand-table]", "tables: [\"*\"]"),
        ),
        ("reports.yaml", REPORTS),
    ])
    .unwrap();
}

#[test]
fn bad_digest_is_reported() {
    let msg = error_with("reports.yaml", "sha256: \"a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90\"\n    trigger: { schedule", "sha256: \"a1b2\"\n    trigger: { schedule");
    assert_names(&msg, "reports.yaml", "reports/nightly", "component.sha256");
    let msg = error_with(
        "reports.yaml",
        "      sha256: \"a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90\"",
        &format!("      sha256: \"{}\"", "g".repeat(64)),
    );
    assert_names(
        &msg,
        "reports.yaml",
        "reports/nightly",
        "not a SHA-256 digest",
    );
    // An unquoted all-digit digest is read as a number by YAML.
    let msg = error_with(
        "reports.yaml",
        "      sha256: \"a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90\"",
        &format!("      sha256: {}", "1".repeat(64)),
    );
    assert_names(&msg, "reports.yaml", "reports/nightly", "quotes");
}

#[test]
fn bad_version_is_reported() {
    let msg = error_with("reports.yaml", "version: 1.2.3", "version: one");
    assert_names(&msg, "reports.yaml", "reports/nightly", "component.version");
}

#[test]
fn bad_cron_is_reported() {
    let msg = error_with(
        "reports.yaml",
        "cron: \"0 0 3 * * *\"",
        "cron: \"0 3 * * *\"",
    );
    assert_names(&msg, "reports.yaml", "reports/nightly", "has 5 fields");
    let msg = error_with(
        "reports.yaml",
        "cron: \"0 0 3 * * *\"",
        "cron: \"0 0 99 * * *\"",
    );
    assert_names(&msg, "reports.yaml", "reports/nightly", "does not parse");
    // Seven fields (with a year) are accepted.
    load(&[
        ("resources.yaml", RESOURCES),
        ("replication.yaml", REPLICATION),
        (
            "reports.yaml",
            &REPORTS.replace("0 0 3 * * *", "0 30 9 * * Mon-Fri 2030"),
        ),
    ])
    .unwrap();
}

#[test]
fn duplicate_workers_are_reported() {
    let other = format!(
        "domain: replication\nworkers:\n  save-entries:\n    component: {{ version: 0.1.0, sha256: \"{ZEROS}\" }}\n    trigger: {{ invoke: {{}} }}\n"
    );
    let err = load(&[
        ("resources.yaml", RESOURCES),
        ("a.yaml", REPLICATION),
        ("b.yaml", &other),
        ("reports.yaml", REPORTS),
    ])
    .unwrap_err()
    .to_string();
    assert_names(
        &err,
        "b.yaml",
        "replication/save-entries",
        "defined more than once",
    );
    assert!(err.contains("a.yaml"), "{err}");

    // The same key twice in one file is a YAML error naming the file.
    let twice = format!("{REPLICATION}  save-entries:\n    component: {{ version: 0.1.0, sha256: \"{ZEROS}\" }}\n    trigger: {{ invoke: {{}} }}\n");
    let err = load(&[
        ("resources.yaml", RESOURCES),
        ("replication.yaml", &twice),
        ("reports.yaml", REPORTS),
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("replication.yaml"), "{err}");
    assert!(err.contains("save-entries"), "{err}");
}

#[test]
fn unknown_fields_are_reported() {
    let msg = error_with(
        "replication.yaml",
        "    batch_size: 10\n",
        "    batch_size: 10\n    batchsize: 10\n",
    );
    assert_names(
        &msg,
        "replication.yaml",
        "replication/save-entries",
        "unknown field `batchsize`",
    );
    let msg = error_with(
        "replication.yaml",
        "      queues: [retry-score]",
        "      queue: [retry-score]",
    );
    assert_names(
        &msg,
        "replication.yaml",
        "replication/save-entries",
        "grants.queue: unknown field `queue`",
    );
    let msg = error_with(
        "reports.yaml",
        "trigger: { invoke: {} }",
        "trigger: { invoke: { async: true } }",
    );
    assert_names(
        &msg,
        "reports.yaml",
        "reports/direct",
        "unknown field `async`",
    );
    let msg = error_with(
        "replication.yaml",
        "domain: replication",
        "domain: replication\nowner: me",
    );
    assert_names(&msg, "replication.yaml", "owner", "unknown field");
    let msg = error_with(
        "resources.yaml",
        "buckets: [exports]",
        "buckets: [exports]\nbucket: [x]",
    );
    assert_names(&msg, "resources.yaml", "bucket", "unknown field");
    let msg = error_with(
        "resources.yaml",
        "save-entries-dlq: {}",
        "save-entries-dlq: { fifo: true }",
    );
    assert_names(
        &msg,
        "resources.yaml",
        "save-entries-dlq",
        "unknown field `fifo`",
    );
}

#[test]
fn bad_batch_sizes_are_reported() {
    let msg = error_with("replication.yaml", "batch_size: 10", "batch_size: 0");
    assert_names(
        &msg,
        "replication.yaml",
        "replication/save-entries",
        "batch_size 0 is out of range",
    );
    let msg = error_with("replication.yaml", "batch_size: 10", "batch_size: 10001");
    assert_names(
        &msg,
        "replication.yaml",
        "replication/save-entries",
        "(1..=10000)",
    );
    let msg = error_with(
        "reports.yaml",
        "trigger: { invoke: {} }",
        "trigger: { invoke: {} }\n    batch_size: 5",
    );
    assert_names(
        &msg,
        "reports.yaml",
        "reports/direct",
        "one event per invocation",
    );
    let msg = error_with("replication.yaml", "batch_size: 10", "batch_size: -1");
    assert_names(
        &msg,
        "replication.yaml",
        "replication/save-entries",
        "batch_size",
    );
}

#[test]
fn bad_limits_are_reported() {
    let msg = error_with("reports.yaml", "memory_mb: 256", "memory_mb: 8192");
    assert_names(
        &msg,
        "reports.yaml",
        "reports/nightly",
        "limits.memory_mb 8192",
    );
    let msg = error_with("reports.yaml", "timeout_ms: 900000", "timeout_ms: 0");
    assert_names(
        &msg,
        "reports.yaml",
        "reports/nightly",
        "limits.timeout_ms 0",
    );
}

#[test]
fn bad_triggers_are_reported() {
    let msg = error_with(
        "reports.yaml",
        "trigger: { invoke: {} }",
        "trigger: { invoke: {}, queue: failures }",
    );
    assert_names(&msg, "reports.yaml", "reports/direct", "2 triggers given");
    let msg = error_with("reports.yaml", "trigger: { invoke: {} }", "trigger: {}");
    assert_names(&msg, "reports.yaml", "reports/direct", "no trigger given");
    let msg = error_with("reports.yaml", "route: /exports", "route: exports");
    assert_names(
        &msg,
        "reports.yaml",
        "reports/export",
        "must start with `/`",
    );
    let msg = error_with(
        "reports.yaml",
        "trigger: { invoke: {} }",
        "trigger: { http: { route: /exports } }",
    );
    assert_names(
        &msg,
        "reports.yaml",
        "reports/direct",
        "already served by worker reports/export",
    );
    let msg = error_with(
        "replication.yaml",
        "stream: { table: demand-table, on_failure: failures }",
        "queue: save-entries",
    );
    assert!(msg.contains("already triggers worker"), "{msg}");
}

#[test]
fn resource_problems_are_reported() {
    let msg = error_with(
        "resources.yaml",
        "dead_letter: save-entries-dlq",
        "dead_letter: nowhere",
    );
    assert_names(
        &msg,
        "resources.yaml",
        "queue save-entries",
        "dead_letter queue `nowhere`",
    );
    let msg = error_with(
        "resources.yaml",
        "{ queue: campaign-data",
        "{ queue: campaign-datum",
    );
    assert_names(&msg, "resources.yaml", "topic data", "`campaign-datum`");
    let msg = error_with("resources.yaml", "http://127.0.0.1:8090", "not a url");
    assert_names(&msg, "resources.yaml", "service entries", "does not parse");
    let msg = error_with(
        "resources.yaml",
        "max_receive_count: 3",
        "max_receive_count: 0",
    );
    assert_names(
        &msg,
        "resources.yaml",
        "queue save-entries",
        "max_receive_count 0",
    );
    let msg = error_with(
        "resources.yaml",
        "buckets: [exports]",
        "buckets: [exports, exports]",
    );
    assert_names(&msg, "resources.yaml", "bucket exports", "more than once");
}

#[test]
fn every_problem_is_reported_at_once() {
    let bad = REPLICATION
        .replace(
            "trigger: { queue: save-entries }",
            "trigger: { queue: nope }",
        )
        .replace("workers: [reports/nightly]", "workers: [reports/none]");
    let err = load(&[
        ("resources.yaml", RESOURCES),
        ("replication.yaml", &bad),
        ("reports.yaml", REPORTS),
    ])
    .unwrap_err();
    assert_eq!(err.problems().len(), 2, "{err}");
    let msg = err.to_string();
    assert!(msg.starts_with("2 problems"), "{msg}");
    assert!(msg.contains("replication/save-entries"), "{msg}");
    assert!(msg.contains("replication/enqueue-entries"), "{msg}");
}

#[test]
fn grants_allow_and_cover() {
    let grants = Grants {
        tables: vec!["demand-table".into()],
        queues: vec!["save-*".into()],
        services: vec!["*".into()],
        cache: true,
        ..Grants::default()
    };
    assert!(grants.allows(Capability::Table, "demand-table"));
    assert!(!grants.allows(Capability::Table, "demand-table-2"));
    assert!(!grants.allows(Capability::Table, "demand"));
    assert!(grants.allows(Capability::Queue, "save-entries"));
    assert!(grants.allows(Capability::Queue, "save-"));
    assert!(!grants.allows(Capability::Queue, "retry-score"));
    assert!(grants.allows(Capability::Services, "anything"));
    assert!(!grants.allows(Capability::Topic, "data"));
    assert!(!grants.allows(Capability::Objects, "exports"));
    assert!(!grants.allows(Capability::Workers, "reports/nightly"));
    assert!(grants.allows(Capability::Log, ""));
    assert!(grants.allows(Capability::Config, "whatever"));
    assert!(grants.allows(Capability::Cache, "ignored"));
    assert!(!grants.allows(Capability::Codec, "ignored"));

    let covered: Vec<Capability> = Capability::ALL
        .into_iter()
        .filter(|c| grants.covers(*c))
        .collect();
    assert_eq!(
        covered,
        [
            Capability::Log,
            Capability::Config,
            Capability::Table,
            Capability::Queue,
            Capability::Cache,
            Capability::Services,
        ]
    );
    assert!(Grants::default().covers(Capability::Log));
    assert!(!Grants::default().covers(Capability::Workers));
}

#[test]
fn capabilities_from_interface_names() {
    assert_eq!(
        Capability::from_interface("usher:platform/table@0.1.0"),
        Some(Capability::Table)
    );
    assert_eq!(
        Capability::from_interface("usher:platform/table"),
        Some(Capability::Table)
    );
    for cap in Capability::ALL {
        assert_eq!(Capability::from_interface(&cap.interface_name()), Some(cap));
        assert_eq!(
            Capability::from_interface(&format!("{}@0.2.0", cap.interface_name())),
            Some(cap)
        );
    }
    assert_eq!(
        Capability::from_interface("usher:platform/types@0.1.0"),
        None
    );
    assert_eq!(Capability::from_interface("usher:platform/tables"), None);
    assert_eq!(
        Capability::from_interface("wasi:cli/environment@0.2.0"),
        None
    );
    assert_eq!(Capability::from_interface("table"), None);
    assert_eq!(Capability::Objects.to_string(), "objects");
    assert_eq!(Capability::Objects.grant_field(), Some("buckets"));
}

#[test]
fn ungranted_imports_are_listed() {
    let grants = Grants {
        tables: vec!["t".into()],
        ..Grants::default()
    };
    let imports = [
        "wasi:io/streams@0.2.0",
        "usher:platform/types@0.1.0",
        "usher:platform/log@0.1.0",
        "usher:platform/table@0.1.0",
        "usher:platform/queue@0.1.0",
        "usher:platform/mystery@0.1.0",
    ];
    assert_eq!(
        grants.ungranted_imports(imports),
        ["usher:platform/queue@0.1.0", "usher:platform/mystery@0.1.0"]
    );
}

#[test]
fn world_kinds() {
    let cases = [
        (
            Trigger::Queue { queue: "q".into() },
            "batch-worker",
            "usher:platform/batch-handler",
        ),
        (
            Trigger::Stream {
                table: "t".into(),
                max_retries: 3,
                on_failure: None,
                starting_position: StartingPosition::Latest,
                filter: vec![],
            },
            "stream-worker",
            "usher:platform/stream-handler",
        ),
        (
            Trigger::Schedule {
                cron: "0 * * * * *".into(),
            },
            "scheduled-worker",
            "usher:platform/scheduled-handler",
        ),
        (
            Trigger::Invoke,
            "invoke-worker",
            "usher:platform/invoke-handler",
        ),
        (
            Trigger::Resolver {
                type_name: "Query".into(),
                field_name: "f".into(),
            },
            "invoke-worker",
            "usher:platform/invoke-handler",
        ),
        (
            Trigger::Http { route: "/".into() },
            "http-worker",
            "usher:platform/http-handler",
        ),
    ];
    for (trigger, world, export) in cases {
        assert_eq!(trigger.world().world_name(), world);
        assert_eq!(trigger.world().to_string(), world);
        assert_eq!(trigger.world().export_interface(), export);
        assert_eq!(
            WorldKind::from_export_interface(&format!("{export}@0.1.0")),
            Some(trigger.world())
        );
    }
}

#[test]
fn service_url_override() {
    let svc = ServiceDef {
        url: "http://127.0.0.1:8090".into(),
        timeout_ms: 3000,
        retries: 3,
    };
    assert_eq!(
        ServiceDef::url_env_var("entries-v2"),
        "USHER_SERVICE_ENTRIES_V2_URL"
    );
    let env =
        |var: &str| (var == "USHER_SERVICE_ENTRIES_URL").then(|| "http://10.0.0.1".to_string());
    assert_eq!(svc.effective_url_with("entries", env), "http://10.0.0.1");
    assert_eq!(
        svc.effective_url_with("users", env),
        "http://127.0.0.1:8090"
    );
    assert_eq!(
        svc.effective_url_with("entries", |_| Some(" ".into())),
        "http://127.0.0.1:8090"
    );
    // The real environment is read by effective_url (the variable is unique to this test).
    let name = "registry-test-only-service";
    assert_eq!(svc.effective_url(name), "http://127.0.0.1:8090");
}

fn pin_fixture() -> (tempfile::TempDir, PathBuf) {
    let dir = registry_dir(&[
        ("resources.yaml", RESOURCES),
        ("replication.yaml", REPLICATION),
        ("reports.yaml", REPORTS),
    ]);
    let file = dir.path().join("replication.yaml");
    (dir, file)
}

#[test]
fn set_component_pin_flow_style_round_trip() {
    let (dir, file) = pin_fixture();
    let version = semver::Version::parse("0.3.1").unwrap();
    let changed = set_component_pin(
        &file,
        "save-entries",
        &version,
        &format!("sha256:{}", DIGEST_A.to_uppercase()),
    )
    .unwrap();
    assert!(changed);
    let text = std::fs::read_to_string(&file).unwrap();
    // Only the component line changed; comments are kept.
    let before: Vec<&str> = REPLICATION.lines().collect();
    let after: Vec<&str> = text.lines().collect();
    assert_eq!(before.len(), after.len());
    let diff: Vec<usize> = (0..before.len())
        .filter(|&i| before[i] != after[i])
        .collect();
    assert_eq!(diff.len(), 1, "{text}");
    assert_eq!(
        after[diff[0]],
        format!("    component: {{ name: replication/save-entries, version: 0.3.1, sha256: \"{DIGEST_A}\" }}")
    );
    assert!(text.contains("# full name replication/save-entries"));

    let reg = Registry::load(dir.path()).unwrap();
    let save = reg.worker("replication/save-entries").unwrap();
    assert_eq!(save.component.version, version);
    assert_eq!(save.component.sha256, DIGEST_A);
    // The other worker is untouched.
    assert_eq!(
        reg.worker("replication/enqueue-entries")
            .unwrap()
            .component
            .version
            .to_string(),
        "0.2.0-rc.1"
    );

    // Pinning again to the same values changes nothing.
    assert!(!set_component_pin(&file, "save-entries", &version, DIGEST_A).unwrap());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
}

#[test]
fn set_component_pin_block_style_round_trip() {
    let (dir, _) = pin_fixture();
    let file = dir.path().join("reports.yaml");
    let version = semver::Version::new(2, 0, 0);
    assert!(set_component_pin(&file, "nightly", &version, ZEROS).unwrap());
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("      version: 2.0.0\n"), "{text}");
    assert!(
        text.contains(&format!("      sha256: \"{ZEROS}\"\n")),
        "{text}"
    );
    let reg = Registry::load(dir.path()).unwrap();
    let nightly = reg.worker("reports/nightly").unwrap();
    assert_eq!(nightly.component.version, version);
    assert_eq!(nightly.component.sha256, ZEROS);
}

#[test]
fn set_component_pin_adds_missing_keys_and_keeps_comments() {
    let dir = registry_dir(&[]);
    let file = dir.path().join("solo.yaml");
    let original = "domain: solo\r\nworkers:\r\n  ping:\r\n    component:\r\n      name: solo/ping   # the name\r\n      version: 0.0.1 # old\r\n    trigger: { invoke: {} }\r\n";
    std::fs::write(&file, original).unwrap();
    assert!(set_component_pin(&file, "ping", &semver::Version::new(0, 0, 2), DIGEST_A).unwrap());
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        text,
        format!("domain: solo\r\nworkers:\r\n  ping:\r\n    component:\r\n      name: solo/ping   # the name\r\n      version: 0.0.2 # old\r\n      sha256: \"{DIGEST_A}\"\r\n    trigger: {{ invoke: {{}} }}\r\n")
    );
    let reg = Registry::load(dir.path()).unwrap();
    assert_eq!(reg.worker("solo/ping").unwrap().component.sha256, DIGEST_A);

    // Flow style without sha256.
    std::fs::write(&file, "domain: solo\nworkers:\n  ping:\n    component: {version: 0.0.1}  # pin\n    trigger: { invoke: {} }").unwrap();
    assert!(set_component_pin(&file, "ping", &semver::Version::new(1, 0, 0), DIGEST_A).unwrap());
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains(&format!(
            "    component: {{version: 1.0.0, sha256: \"{DIGEST_A}\"}}  # pin\n"
        )),
        "{text}"
    );
    assert!(text.ends_with("trigger: { invoke: {} }"), "{text}");
}

#[test]
fn set_component_pin_errors() {
    let (_dir, file) = pin_fixture();
    let v = semver::Version::new(1, 0, 0);
    let err = set_component_pin(&file, "save-entries", &v, "abc")
        .unwrap_err()
        .to_string();
    assert_names(
        &err,
        "replication.yaml",
        "save-entries",
        "not a SHA-256 digest",
    );
    let err = set_component_pin(&file, "missing", &v, ZEROS)
        .unwrap_err()
        .to_string();
    assert_names(&err, "replication.yaml", "missing", "no such worker");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), REPLICATION);
}

#[test]
fn locate_worker_finds_file_and_key() {
    let (dir, file) = pin_fixture();
    let (found, key) = locate_worker(dir.path(), "replication/save-entries").unwrap();
    assert_eq!(found, file);
    assert_eq!(key, "save-entries");
    let err = locate_worker(dir.path(), "replication/none")
        .unwrap_err()
        .to_string();
    assert!(err.contains("reports/nightly"), "{err}");
}

#[test]
fn yaml_anchors_and_merge_keys_work() {
    let text = format!(
        "domain: solo\nx-defaults: &defaults\n  limits: {{ memory_mb: 32 }}\nworkers:\n  a:\n    <<: *defaults\n    component: {{ version: 0.1.0, sha256: \"{ZEROS}\" }}\n    trigger: {{ invoke: {{}} }}\n"
    );
    // Extra top-level keys are refused, anchors included.
    let err = load(&[("solo.yaml", &text)]).unwrap_err().to_string();
    assert!(err.contains("x-defaults"), "{err}");

    let text = format!(
        "domain: solo\nworkers:\n  a:\n    <<: {{ limits: {{ memory_mb: 32 }} }}\n    component: {{ version: 0.1.0, sha256: \"{ZEROS}\" }}\n    trigger: {{ invoke: {{}} }}\n"
    );
    let reg = load(&[("solo.yaml", &text)]).unwrap();
    assert_eq!(reg.worker("solo/a").unwrap().limits.memory_mb, 32);
}

#[test]
fn build_for_test_checks_references() {
    let text = "domain: d\nworkers:\n  w:\n    component: { version: 0.1.0, sha256: \"0000000000000000000000000000000000000000000000000000000000000000\" }\n    trigger: { queue: q }\n";
    let err = crate::load::build_for_test("", &[(Path::new("d.yaml"), text)])
        .unwrap_err()
        .to_string();
    assert_names(&err, "d.yaml", "d/w", "trigger.queue `q`");
    assert!(err.contains("(none are defined)"), "{err}");
}

#[test]
fn concurrency_defaults_to_one_and_is_checked() {
    let reg = load(&[
        ("resources.yaml", RESOURCES),
        (
            "replication.yaml",
            &REPLICATION.replacen(
                "    batch_size: 10\n",
                "    batch_size: 10\n    concurrency: 8\n",
                1,
            ),
        ),
        ("reports.yaml", REPORTS),
    ])
    .unwrap();
    assert_eq!(
        reg.worker("replication/save-entries").unwrap().concurrency,
        8
    );
    assert_eq!(
        reg.worker("replication/enqueue-entries")
            .unwrap()
            .concurrency,
        1
    );

    let msg = error_with(
        "replication.yaml",
        "    batch_size: 10\n",
        "    concurrency: 0\n",
    );
    assert!(
        msg.contains("concurrency 0 is out of range (1..=64)"),
        "{msg}"
    );
    let msg = error_with(
        "replication.yaml",
        "      stream: { table: demand-table, on_failure: failures }\n",
        "      stream: { table: demand-table, on_failure: failures }\n    concurrency: 2\n",
    );
    assert!(
        msg.contains("replication/enqueue-entries") && msg.contains("only a queue trigger"),
        "{msg}"
    );
}

#[test]
fn http_auth_is_read_and_checked() {
    let api = |auth: &str, settings: &str| {
        format!(
            r#"
domain: api
workers:
  exports:
    component: {{ version: 0.1.0, sha256: "{ZEROS}" }}
    trigger:
      http:
        route: /campaigns
        auth: {auth}
    settings: {settings}
"#
        )
    };
    let good = api(
        "{ jwt: { issuer: usher, audience: exports, keys: [ { alg: HS256, setting: jwt_secret }, { alg: RS256, kid: k1, secret: usher/exports/rsa } ] } }",
        "{ jwt_secret: s3cret }",
    );
    let registry = load(&[("resources.yaml", RESOURCES), ("api.yaml", &good)]).expect("loads");
    let spec = registry.worker("api/exports").expect("worker");
    let auth = spec.http_auth.as_ref().expect("auth");
    assert_eq!((auth.jwt.issuer.as_str(), auth.jwt.leeway_s), ("usher", 5));
    assert_eq!(auth.jwt.keys[1].alg, JwtAlg::RS256);
    assert_eq!(
        auth.jwt.keys[1].secret.as_deref(),
        Some("usher/exports/rsa")
    );

    for (auth, settings, needle) in [
        ("{ jwt: { issuer: usher, audience: exports, keys: [ { alg: HS256, setting: missing } ] } }", "{}", "no setting `missing`"),
        ("{ jwt: { issuer: usher, audience: exports, keys: [] } }", "{}", "at least one key"),
        ("{ jwt: { issuer: '', audience: exports, keys: [ { alg: HS256, secret: s } ] } }", "{}", "issuer must not be empty"),
        ("{ jwt: { issuer: usher, audience: exports, keys: [ { alg: HS256, secret: s, setting: x } ] } }", "{ x: y }", "exactly one of"),
        ("{ jwt: { issuer: usher, audience: exports, keys: [ { alg: none, secret: s } ] } }", "{}", "unknown variant `none`"),
    ] {
        let err = load(&[("resources.yaml", RESOURCES), ("api.yaml", &api(auth, settings))])
            .expect_err("refused")
            .to_string();
        assert_names(&err, "api.yaml", "api/exports", needle);
    }
}

/// The filter of replication/enqueue-entries after its stream trigger is
/// replaced by `trigger` (the registry loaded with it).
fn enqueue_entries_filter(trigger: &str) -> Vec<StreamFilterRule> {
    let replication = REPLICATION.replacen(
        "stream: { table: demand-table, on_failure: failures }",
        trigger,
        1,
    );
    let reg = load(&[
        ("resources.yaml", RESOURCES),
        ("replication.yaml", &replication),
        ("reports.yaml", REPORTS),
    ])
    .unwrap();
    let Trigger::Stream { filter, .. } =
        &reg.worker("replication/enqueue-entries").unwrap().trigger
    else {
        panic!("a stream trigger")
    };
    filter.clone()
}

#[test]
fn stream_filters_load_check_and_match() {
    let filter = &enqueue_entries_filter( "stream: { table: demand-table, on_failure: failures, filter: [ { attribute: SK, equals: [ENTRY] }, { attribute: PK, prefix: [\"SALE#\", \"EVENT#\"] } ] }");
    assert_eq!(filter.len(), 2);
    let entry = serde_json::json!({"PK": "ENTRY#c1#f1", "SK": "ENTRY"});
    let sale = serde_json::json!({"PK": "SALE#s1", "SK": "SALE"});
    let other = serde_json::json!({"PK": "CAMPAIGN#c1", "SK": "META"});
    assert!(StreamFilterRule::passes(filter, Some(&entry), None));
    assert!(StreamFilterRule::passes(filter, Some(&sale), None));
    assert!(!StreamFilterRule::passes(filter, Some(&other), None));
    // A removal has only its old image; a change that leaves the type passes by its old one.
    assert!(StreamFilterRule::passes(filter, None, Some(&sale)));
    assert!(StreamFilterRule::passes(filter, Some(&other), Some(&entry)));
    assert!(!StreamFilterRule::passes(filter, None, None));
    assert!(StreamFilterRule::passes(&[], Some(&other), None));
    // A number is not a string match.
    assert!(!StreamFilterRule::passes(
        filter,
        Some(&serde_json::json!({"SK": 1})),
        None
    ));
    let patterns = StreamFilterRule::lambda_patterns(filter, false);
    assert_eq!(patterns.len(), 4);
    assert_eq!(
        patterns[0],
        serde_json::json!({"dynamodb": {"NewImage": {"SK": {"S": ["ENTRY"]}}}})
    );
    assert_eq!(
        patterns[3],
        serde_json::json!({"dynamodb": {"OldImage": {"PK": {"S": [{"prefix": "SALE#"}, {"prefix": "EVENT#"}]}}}})
    );
    assert_eq!(
        StreamFilterRule::lambda_patterns(filter, true)[1],
        serde_json::json!({"data": {"dynamodb": {"OldImage": {"SK": {"S": ["ENTRY"]}}}}})
    );

    let three = "stream: { table: demand-table, filter: [ { attribute: A, equals: [a] }, { attribute: B, equals: [b] }, { attribute: C, equals: [c] } ] }";
    let msg = error_with(
        "replication.yaml",
        "stream: { table: demand-table, on_failure: failures }",
        three,
    );
    assert!(msg.contains("at most 2"), "{msg}");
    let empty = "stream: { table: demand-table, filter: [ { attribute: SK } ] }";
    let msg = error_with(
        "replication.yaml",
        "stream: { table: demand-table, on_failure: failures }",
        empty,
    );
    assert!(msg.contains("accepts nothing"), "{msg}");
    for (bad, needle) in [
        ("{ events: [UPSERT] }", "unknown event"),
        ("{ equals: [a] }", "needs an attribute"),
        ("{ events: [REMOVE], equals: [a] }", "name it"),
        ("{ attribute: F, is: true, equals: [a] }", "one type"),
    ] {
        let text = format!("stream: {{ table: demand-table, filter: [ {bad} ] }}");
        let msg = error_with(
            "replication.yaml",
            "stream: { table: demand-table, on_failure: failures }",
            &text,
        );
        assert!(msg.contains(needle), "{bad}: {msg}");
    }
}

/// A boolean rule and a rule of events alone (replication/enqueue-entries:
/// `needsReplication` true, or a removal): what passes, and the Lambda
/// filter patterns.
#[test]
fn stream_filters_on_booleans_and_events() {
    let filter = &enqueue_entries_filter( "stream: { table: demand-table, on_failure: failures, filter: [ { attribute: needsReplication, is: true }, { events: [REMOVE] } ] }");
    let flagged = serde_json::json!({"PK": "ENTRY#c#f", "needsReplication": true});
    let cleared = serde_json::json!({"PK": "ENTRY#c#f", "needsReplication": false});
    let text = serde_json::json!({"PK": "ENTRY#c#f", "needsReplication": "true"});
    assert!(StreamFilterRule::passes(filter, Some(&flagged), None));
    assert!(StreamFilterRule::passes(
        filter,
        Some(&flagged),
        Some(&cleared)
    ));
    assert!(StreamFilterRule::passes(
        filter,
        Some(&cleared),
        Some(&flagged)
    ));
    assert!(!StreamFilterRule::passes(
        filter,
        Some(&cleared),
        Some(&cleared)
    ));
    assert!(!StreamFilterRule::passes(filter, Some(&text), None));
    // Every removal passes, whatever its old image.
    assert!(StreamFilterRule::passes(filter, None, Some(&cleared)));
    assert!(StreamFilterRule::passes(filter, None, Some(&text)));
    assert!(!StreamFilterRule::passes(filter, None, None));
    let patterns = StreamFilterRule::lambda_patterns(filter, false);
    assert_eq!(
        patterns,
        vec![
            serde_json::json!({"dynamodb": {"NewImage": {"needsReplication": {"BOOL": [true]}}}}),
            serde_json::json!({"dynamodb": {"OldImage": {"needsReplication": {"BOOL": [true]}}}}),
            serde_json::json!({"eventName": ["REMOVE"]}),
        ]
    );
    // A rule on removals only has no new-image pattern.
    let removed = StreamFilterRule {
        attribute: "SK".into(),
        equals: vec!["ENTRY".into()],
        prefix: Vec::new(),
        is: None,
        events: vec!["REMOVE".into()],
    };
    assert_eq!(
        StreamFilterRule::lambda_patterns(std::slice::from_ref(&removed), true),
        vec![
            serde_json::json!({"data": {"eventName": ["REMOVE"], "dynamodb": {"OldImage": {"SK": {"S": ["ENTRY"]}}}}})
        ]
    );
    let entry = serde_json::json!({"SK": "ENTRY"});
    assert!(removed.passes_rule(None, Some(&entry)));
    assert!(!removed.passes_rule(Some(&entry), Some(&entry)));
}
