//! terraform/ against the registry:
//!
//! * no drift: the checked-in files are exactly what the registry and
//!   workflows/ generate;
//! * the HCL, parsed by python-hcl2, holds a resource for every worker,
//!   queue, topic, subscription, table, bucket, workflow and schedule of the
//!   registry, and nothing else (every function, queue, table, topic,
//!   bucket, role, mapping and state machine is accounted for); each
//!   worker's role allows only the resources its grants and trigger name;
//! * checkov passes on terraform/ with no failed check, each skip with its
//!   reason;
//! * generator cases the repository's registry does not have (Kinesis for a
//!   table with three stream readers, wildcard grants, a too-short queue
//!   visibility).
//!
//! python-hcl2 and checkov come from `scripts/pytools` (venvs in the cache;
//! USHER_HCL_PYTHON and USHER_CHECKOV). Without them these two tests say so
//! and pass, unless USHER_REQUIRE_TOOLS=1 (as `just test` sets), when they
//! fail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use usher_registry::{Capability, Registry, StreamFilterRule, Trigger};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn registry() -> Registry {
    Registry::load(&root().join("workers")).expect("the repository's registry")
}

/// The tool named by `var`, or `None` (saying so) when it is not set and
/// tools are not required.
fn tool(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() && Path::new(&v).exists() => Some(v),
        _ => {
            assert!(
                std::env::var("USHER_REQUIRE_TOOLS").as_deref() != Ok("1"),
                "{var} is not set or missing, and USHER_REQUIRE_TOOLS=1: run `bash scripts/pytools install` and `eval \"$(bash scripts/pytools env)\"`"
            );
            eprintln!("SKIPPED: {var} is not set (bash scripts/pytools install; eval \"$(bash scripts/pytools env)\")");
            None
        }
    }
}

#[test]
fn checked_in_terraform_has_no_drift() {
    let files =
        usher_terraform::generate(&registry(), &root().join("workflows")).expect("generate");
    let drift = usher_terraform::drift(&root().join("terraform"), &files).expect("compare");
    assert!(
        drift.is_empty(),
        "terraform/ differs from the registry: run `just terraform`\n{}",
        drift.join("\n")
    );
}

#[test]
fn drift_is_found() {
    let tmp = tempfile::tempdir().expect("tmp");
    let files =
        usher_terraform::generate(&registry(), &root().join("workflows")).expect("generate");
    usher_terraform::write(tmp.path(), &files).expect("write");
    assert!(usher_terraform::drift(tmp.path(), &files)
        .expect("drift")
        .is_empty());
    let queues = tmp.path().join("queues.tf");
    let text = std::fs::read_to_string(&queues).expect("read");
    std::fs::write(
        &queues,
        text.replacen(
            "visibility_timeout_seconds = 30",
            "visibility_timeout_seconds = 31",
            1,
        ),
    )
    .expect("write");
    std::fs::write(tmp.path().join("extra.tf"), "# hand-made\n").expect("write");
    std::fs::remove_file(tmp.path().join("outputs.tf")).expect("rm");
    let drift = usher_terraform::drift(tmp.path(), &files).expect("drift");
    assert_eq!(drift.len(), 3, "{drift:?}");
    assert!(
        drift.iter().any(|d| d.starts_with("queues.tf: differs")),
        "{drift:?}"
    );
    assert!(
        drift
            .iter()
            .any(|d| d.starts_with("extra.tf: not generated")),
        "{drift:?}"
    );
    assert!(
        drift.iter().any(|d| d.starts_with("outputs.tf: missing")),
        "{drift:?}"
    );
}

/// terraform/ parsed by python-hcl2 (tests/hcl_dump.py).
fn parsed(python: &str, dir: &Path) -> Value {
    let out = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hcl_dump.py"))
        .arg(dir)
        .output()
        .expect("run python-hcl2");
    assert!(
        out.status.success(),
        "python-hcl2 could not parse {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("hcl_dump.py prints JSON")
}

fn labels(doc: &Value, kind: &str, rtype: &str) -> BTreeSet<String> {
    doc[kind][rtype]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// A block's body: python-hcl2 gives nested blocks as lists of bodies.
fn block<'a>(body: &'a Value, name: &str) -> &'a Value {
    match &body[name] {
        Value::Array(items) => items.first().unwrap_or(&Value::Null),
        other => other,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The physical name the HCL gives a resource (`${var.prefix}NAME` → NAME).
fn physical(body: &Value, attr: &str) -> String {
    let raw = text(&body[attr]);
    raw.trim_start_matches("${var.prefix}").to_string()
}

/// Every `aws_<kind>.<label>` referenced in a policy document's statements.
fn references(doc: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let statements = match &doc["statement"] {
        Value::Array(s) => s.clone(),
        other => vec![other.clone()],
    };
    let re_types = [
        "aws_dynamodb_table",
        "aws_sqs_queue",
        "aws_sns_topic",
        "aws_s3_bucket",
        "aws_lambda_function",
        "aws_kinesis_stream",
        "aws_secretsmanager_secret",
        "aws_cloudwatch_log_group",
        "aws_kms_key",
        "aws_sfn_state_machine",
    ];
    for s in statements {
        for r in s["resources"].as_array().into_iter().flatten() {
            let r = text(r);
            for t in re_types {
                let mut rest = r.as_str();
                while let Some(i) = rest.find(&format!("{t}.")) {
                    let after = &rest[i + t.len() + 1..];
                    let label: String = after
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                        .collect();
                    out.insert(format!("{t}.{label}"));
                    rest = &after[label.len()..];
                }
            }
        }
    }
    out
}

fn label(name: &str) -> String {
    name.replace(['/', '.'], "_")
}

#[test]
fn the_hcl_holds_the_registry_and_nothing_else() {
    let Some(python) = tool("USHER_HCL_PYTHON") else {
        return;
    };
    let registry = registry();
    let doc = parsed(&python, &root().join("terraform"));
    let r = &registry.resources;
    let res = |t: &str| doc["resource"][t].as_object().cloned().unwrap_or_default();

    // Functions: one per worker, named after it, with its environment, and
    // one compaction task per archive (below).
    let (tasks, functions): (BTreeMap<String, Value>, BTreeMap<String, Value>) =
        res("aws_lambda_function")
            .into_iter()
            .partition(|(_, body)| {
                !block(body, "environment")["variables"]["USHER_TASK"].is_null()
            });
    archive_compaction_functions(&doc, &registry, &tasks);
    let mut by_worker = BTreeMap::new();
    for (l, body) in &functions {
        let env = block(body, "environment");
        let worker = text(&env["variables"]["USHER_WORKER"]);
        assert!(
            registry.workers.contains_key(&worker),
            "function {l} serves `{worker}`, which is not a worker of the registry"
        );
        by_worker.insert(worker, (l.clone(), body.clone()));
    }
    assert_eq!(
        by_worker.keys().cloned().collect::<BTreeSet<_>>(),
        registry.workers.keys().cloned().collect::<BTreeSet<_>>(),
        "one function per worker"
    );
    assert_eq!(functions.len(), registry.workers.len(), "no other function");
    for (name, (l, body)) in &by_worker {
        let spec = &registry.workers[name];
        assert_eq!(
            physical(body, "function_name"),
            format!("{}-{}", spec.domain, spec.key())
        );
        assert_eq!(text(&body["runtime"]), "provided.al2023");
        assert!(
            text(&body["memory_size"])
                .contains(&format!("{} + var.host_memory_mb", spec.limits.memory_mb)),
            "{name}: memory from its limits: {}",
            body["memory_size"]
        );
        let timeout = body["timeout"].as_u64().expect("timeout");
        assert!(
            timeout * 1000 >= spec.limits.timeout_ms && timeout <= 900,
            "{name}: timeout {timeout} s for a limit of {} ms",
            spec.limits.timeout_ms
        );
        let env = &block(body, "environment")["variables"];
        assert!(
            text(&env["USHER_STORE"]).starts_with("s3://"),
            "{name}: {env}"
        );
        assert_eq!(text(&env["USHER_ENV"]), "${var.release_env}");
        assert!(text(&body["role"]).contains(&format!("aws_iam_role.{l}.arn")));

        // The trigger.
        let mappings = res("aws_lambda_event_source_mapping");
        match &spec.trigger {
            Trigger::Queue { queue } => {
                let m = &mappings[l.as_str()];
                assert!(text(&m["event_source_arn"])
                    .contains(&format!("aws_sqs_queue.{}.arn", label(queue))));
                assert_eq!(m["batch_size"].as_u64(), Some(u64::from(spec.batch_size)));
                assert!(m["function_response_types"]
                    .to_string()
                    .contains("ReportBatchItemFailures"));
                if spec.concurrency >= 2 {
                    assert_eq!(
                        block(m, "scaling_config")["maximum_concurrency"].as_u64(),
                        Some(u64::from(spec.concurrency))
                    );
                }
            }
            Trigger::Stream {
                table,
                max_retries,
                on_failure,
                filter,
                ..
            } => {
                let m = &mappings[l.as_str()];
                let source = text(&m["event_source_arn"]);
                assert!(
                    source.contains(&format!(".{}.", label(table))),
                    "{name}: {source}"
                );
                assert_eq!(m["bisect_batch_on_function_error"], Value::Bool(true));
                assert_eq!(
                    m["maximum_retry_attempts"].as_u64(),
                    Some(u64::from(*max_retries))
                );
                if let Some(q) = on_failure {
                    let dest = text(
                        &block(block(m, "destination_config"), "on_failure")["destination_arn"],
                    );
                    assert!(
                        dest.contains(&format!("aws_sqs_queue.{}.arn", label(q))),
                        "{name}: {dest}"
                    );
                }
                // The registry's filter: each rule's Lambda patterns (one
                // per image its changes can have, or one on eventName), in order.
                let criteria = block(m, "filter_criteria");
                if filter.is_empty() {
                    assert!(criteria.is_null(), "{name}: no filter in the registry");
                } else {
                    let filters: Vec<String> = match &criteria["filter"] {
                        Value::Array(items) => items.iter().map(|f| text(&f["pattern"])).collect(),
                        other => vec![text(&other["pattern"])],
                    };
                    let kinesis = source.contains("aws_kinesis_stream");
                    let per_rule: Vec<usize> = filter
                        .iter()
                        .map(|r| {
                            StreamFilterRule::lambda_patterns(std::slice::from_ref(r), kinesis)
                                .len()
                        })
                        .collect();
                    assert_eq!(
                        filters.len(),
                        per_rule.iter().sum::<usize>(),
                        "{name}: {filters:?}"
                    );
                    let mut at = 0;
                    for (rule, n) in filter.iter().zip(per_rule) {
                        for pattern in &filters[at..at + n] {
                            assert!(pattern.contains(&rule.attribute), "{name}: {pattern}");
                            for v in rule.equals.iter().chain(&rule.prefix).chain(&rule.events) {
                                assert!(pattern.contains(v.as_str()), "{name}: {pattern}");
                            }
                            if rule.is.is_some() {
                                assert!(pattern.contains("BOOL"), "{name}: {pattern}");
                            }
                        }
                        at += n;
                    }
                }
            }
            Trigger::Http { .. } => assert!(
                res("aws_lambda_function_url").contains_key(l.as_str()),
                "{name}: a URL"
            ),
            Trigger::Schedule { .. } => {
                let schedule = &res("aws_scheduler_schedule")[l.as_str()];
                // The tick `usher lambda` reads, from the scheduler's context.
                let input = text(&block(schedule, "target")["input"]);
                assert!(
                    input.contains("<aws.scheduler.scheduled-time>")
                        && input.contains("scheduledTime")
                        && input.contains("schedule"),
                    "{name}: the schedule's input is a tick: {input}"
                );
            }
            Trigger::Invoke | Trigger::Resolver { .. } => {}
        }

        // Least privilege: the role's policy names exactly the granted
        // resources (plus its own log group, the store, the key).
        let policy = &doc["data"]["aws_iam_policy_document"][l.as_str()];
        let got = references(policy);
        let mut want: BTreeSet<String> = BTreeSet::new();
        want.insert(format!("aws_cloudwatch_log_group.{l}"));
        want.insert("aws_s3_bucket.component-store".into());
        want.insert("aws_kms_key.usher".into());
        for t in r
            .tables
            .keys()
            .filter(|t| spec.grants.allows(Capability::Table, t))
        {
            want.insert(format!("aws_dynamodb_table.{}", label(t)));
        }
        for q in r
            .queues
            .keys()
            .filter(|q| spec.grants.allows(Capability::Queue, q))
        {
            want.insert(format!("aws_sqs_queue.{}", label(q)));
        }
        for t in r
            .topics
            .keys()
            .filter(|t| spec.grants.allows(Capability::Topic, t))
        {
            want.insert(format!("aws_sns_topic.{}", label(t)));
        }
        for b in r
            .buckets
            .iter()
            .filter(|b| spec.grants.allows(Capability::Objects, b))
        {
            want.insert(format!("aws_s3_bucket.{}", label(b)));
        }
        for w in registry
            .workers
            .keys()
            .filter(|w| spec.grants.allows(Capability::Workers, w))
        {
            want.insert(format!("aws_lambda_function.{}", label(w)));
        }
        if !spec.grants.events.is_empty() {
            want.insert("aws_secretsmanager_secret.kafka-client-cert".into());
        }
        match &spec.trigger {
            Trigger::Queue { queue } => {
                want.insert(format!("aws_sqs_queue.{}", label(queue)));
            }
            Trigger::Stream {
                table, on_failure, ..
            } => {
                let kinesis = format!("aws_kinesis_stream.{}", label(table));
                if got.contains(&kinesis) {
                    want.insert(kinesis);
                } else {
                    want.insert(format!("aws_dynamodb_table.{}", label(table)));
                }
                if let Some(q) = on_failure {
                    want.insert(format!("aws_sqs_queue.{}", label(q)));
                }
            }
            _ => {}
        }
        assert_eq!(
            got, want,
            "{name}: the role's policy names more or less than its grants"
        );
        let role_policies: Vec<String> = res("aws_iam_role_policy")
            .iter()
            .filter(|(_, b)| text(&b["role"]).contains(&format!("aws_iam_role.{l}.")))
            .map(|(k, _)| k.clone())
            .collect();
        assert_eq!(
            role_policies,
            vec![l.clone()],
            "{name}: one inline policy, its grants"
        );
    }

    // Queues: the registry's plus the schedules' dead-letter queue.
    let queues = res("aws_sqs_queue");
    let mut names: BTreeSet<String> = queues.values().map(|b| physical(b, "name")).collect();
    assert!(names.remove("scheduler-dlq"));
    assert_eq!(names, r.queues.keys().cloned().collect(), "queues");
    assert_eq!(queues.len(), r.queues.len() + 1, "no other queue");
    for (name, def) in &r.queues {
        let body = &queues[&label(name)];
        assert_eq!(
            body["visibility_timeout_seconds"].as_u64(),
            Some(u64::from(def.visibility_timeout_s))
        );
        assert_eq!(
            body["message_retention_seconds"].as_u64(),
            Some(def.retention_s)
        );
        match &def.dead_letter {
            Some(dlq) => {
                let redrive = text(&body["redrive_policy"]);
                assert!(
                    redrive.contains(&format!("aws_sqs_queue.{}.arn", label(dlq))),
                    "{name}: {redrive}"
                );
                assert!(
                    redrive.contains(&def.max_receive_count.to_string()),
                    "{name}: {redrive}"
                );
            }
            None => assert!(body.get("redrive_policy").is_none(), "{name}: no redrive"),
        }
    }

    // Tables, topics and their subscriptions, buckets.
    let tables: BTreeSet<String> = res("aws_dynamodb_table")
        .values()
        .map(|b| physical(b, "name"))
        .collect();
    assert_eq!(tables, r.tables.keys().cloned().collect(), "tables");
    let topics: BTreeSet<String> = res("aws_sns_topic")
        .values()
        .map(|b| physical(b, "name"))
        .collect();
    assert_eq!(topics, r.topics.keys().cloned().collect(), "topics");
    let subs = res("aws_sns_topic_subscription");
    let mut want_subs = 0;
    for (topic, def) in &r.topics {
        for sub in &def.subscriptions {
            want_subs += 1;
            let body = &subs[&format!("{}__{}", label(topic), label(&sub.queue))];
            assert!(text(&body["endpoint"])
                .contains(&format!("aws_sqs_queue.{}.arn", label(&sub.queue))));
            if let Some(policy) = &sub.filter_policy {
                let got = text(&body["filter_policy"]);
                for (attr, values) in policy.as_object().expect("policy") {
                    assert!(
                        got.contains(attr.as_str()),
                        "{topic} → {}: {got}",
                        sub.queue
                    );
                    for v in values.as_array().into_iter().flatten() {
                        assert!(got.contains(&text(v)), "{topic} → {}: {got}", sub.queue);
                    }
                }
            }
        }
    }
    assert_eq!(subs.len(), want_subs, "no other subscription");
    let mut buckets: BTreeSet<String> = res("aws_s3_bucket")
        .values()
        .map(|b| physical(b, "bucket"))
        .collect();
    assert!(buckets.remove("component-store") && buckets.remove("access-logs"));
    assert_eq!(buckets, r.buckets.iter().cloned().collect(), "buckets");

    // Workflows and their schedules.
    let mut workflows = BTreeSet::new();
    for entry in std::fs::read_dir(root().join("workflows")).expect("workflows/") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .to_string();
        if let Some(w) = name.strip_suffix(".asl.json") {
            workflows.insert(w.to_string());
        }
    }
    let machines = res("aws_sfn_state_machine");
    let got: BTreeSet<String> = machines
        .values()
        .map(|b| {
            physical(b, "name")
                .trim_start_matches("workflow-")
                .to_string()
        })
        .collect();
    assert_eq!(got, workflows, "one state machine per workflows/*.asl.json");
    for (l, body) in &machines {
        let def = text(&body["definition"]);
        assert!(
            !def.contains("${selection/") && !def.contains("${notification/"),
            "{l}: a task still names a worker: {def}"
        );
    }
    let schedules_text =
        std::fs::read_to_string(root().join("workflows/schedules.yaml")).unwrap_or_default();
    for w in &workflows {
        if schedules_text
            .lines()
            .any(|line| line.starts_with(&format!("{w}:")))
        {
            assert!(
                res("aws_scheduler_schedule").contains_key(&format!("workflow_{}", label(w))),
                "schedule of {w}"
            );
        }
    }

    // Nothing else: every resource type is one the generator is meant to
    // make, and the counts of the per-worker ones follow the registry.
    let allowed: BTreeSet<&str> = [
        "aws_kms_key",
        "aws_kms_alias",
        "aws_s3_object",
        "aws_s3_bucket",
        "aws_s3_bucket_versioning",
        "aws_s3_bucket_server_side_encryption_configuration",
        "aws_s3_bucket_public_access_block",
        "aws_s3_bucket_lifecycle_configuration",
        "aws_s3_bucket_logging",
        "aws_s3_bucket_policy",
        "aws_secretsmanager_secret",
        "aws_dynamodb_table",
        "aws_kinesis_stream",
        "aws_dynamodb_kinesis_streaming_destination",
        "aws_sqs_queue",
        "aws_sqs_queue_redrive_allow_policy",
        "aws_sqs_queue_policy",
        "aws_sns_topic",
        "aws_sns_topic_subscription",
        "aws_cloudwatch_log_group",
        "aws_iam_role",
        "aws_iam_role_policy",
        "aws_iam_role_policy_attachment",
        "aws_lambda_function",
        "aws_lambda_event_source_mapping",
        "aws_lambda_function_url",
        "aws_scheduler_schedule",
        "aws_sfn_state_machine",
    ]
    .into_iter()
    .collect();
    for t in doc["resource"].as_object().expect("resources").keys() {
        assert!(allowed.contains(t.as_str()), "unexpected resource type {t}");
    }
    let triggered = registry
        .workers
        .values()
        .filter(|w| matches!(w.trigger, Trigger::Queue { .. } | Trigger::Stream { .. }))
        .count();
    assert_eq!(
        res("aws_lambda_event_source_mapping").len(),
        triggered,
        "a mapping per queue or stream worker"
    );
    let http = registry
        .workers
        .values()
        .filter(|w| matches!(w.trigger, Trigger::Http { .. }))
        .count();
    assert_eq!(
        res("aws_lambda_function_url").len(),
        http,
        "a URL per http-worker"
    );
    let roles = labels(&doc, "resource", "aws_iam_role");
    let scheduler_roles = roles.iter().filter(|r| r.starts_with("scheduler_")).count();
    assert_eq!(
        roles.len(),
        registry.workers.len() + workflows.len() + tasks.len() + scheduler_roles,
        "a role per worker, per workflow and per compaction task (and the schedulers'): {roles:?}"
    );
}

/// Each archive of the registry is compacted in AWS by `usher lambda`
/// running the `archive-compact` task: hourly on EventBridge Scheduler,
/// with a role that reaches only the archive's own objects.
fn archive_compaction_functions(doc: &Value, registry: &Registry, tasks: &BTreeMap<String, Value>) {
    let res = |t: &str| doc["resource"][t].as_object().cloned().unwrap_or_default();
    let sites = registry.archive_sites();
    assert!(
        !sites.is_empty(),
        "the repository's registry has an archive"
    );
    assert_eq!(
        tasks.len(),
        sites.len(),
        "one compaction task per archive: {:?}",
        tasks.keys()
    );
    for site in &sites {
        let l = format!("{}__compact", label(&site.worker));
        let body = tasks.get(&l).unwrap_or_else(|| panic!("no function {l}"));
        let env = &block(body, "environment")["variables"];
        assert_eq!(text(&env["USHER_TASK"]), "archive-compact");
        assert_eq!(text(&env["USHER_WORKER"]), site.worker);
        assert!(
            env["USHER_STORE"].is_null(),
            "a task runs no component: {env}"
        );
        assert_eq!(body["timeout"].as_u64(), Some(900));
        assert_eq!(body["reserved_concurrent_executions"].as_u64(), Some(1));
        // Scheduled, through the scheduler role that may invoke it.
        let schedule = &res("aws_scheduler_schedule")[l.as_str()];
        assert!(
            text(&schedule["schedule_expression"]).starts_with("cron("),
            "{schedule}"
        );
        let target = block(schedule, "target");
        assert!(text(&target["arn"]).contains(&format!("aws_lambda_function.{l}.arn")));
        assert!(text(&target["role_arn"]).contains("aws_iam_role.scheduler_workers.arn"));
        let scheduler = references(&doc["data"]["aws_iam_policy_document"]["scheduler_workers"]);
        assert!(
            scheduler.contains(&format!("aws_lambda_function.{l}")),
            "{scheduler:?}"
        );
        // Least privilege: its logs, the key, the archive's bucket; objects
        // under the archive's prefix only.
        let policy = &doc["data"]["aws_iam_policy_document"][l.as_str()];
        let want: BTreeSet<String> = [
            format!("aws_cloudwatch_log_group.{l}"),
            "aws_kms_key.usher".into(),
            format!("aws_s3_bucket.{}", label(&site.bucket)),
        ]
        .into_iter()
        .collect();
        assert_eq!(references(policy), want, "{l}: {policy}");
        let objects = policy.to_string();
        assert!(
            objects.contains(&format!("arn}}/{}/*", site.prefix)),
            "{l}: objects under `{}/` only: {objects}",
            site.prefix
        );
    }
}

#[test]
fn checkov_passes_on_terraform() {
    let Some(checkov) = tool("USHER_CHECKOV") else {
        return;
    };
    let dir = root().join("terraform");
    let out = Command::new(&checkov)
        .args(["--directory"])
        .arg(&dir)
        .args([
            "--framework",
            "terraform",
            "--output",
            "json",
            "--compact",
            "--skip-download",
        ])
        .output()
        .expect("run checkov");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "checkov did not print a JSON report ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let reports = match report {
        Value::Array(items) => items,
        single => vec![single],
    };
    let mut passed = 0;
    let mut failed = Vec::new();
    let mut skipped = Vec::new();
    for r in &reports {
        let results = &r["results"];
        passed += r["summary"]["passed"].as_u64().unwrap_or(0);
        assert_eq!(
            r["summary"]["parsing_errors"].as_u64(),
            Some(0),
            "checkov could not parse: {r}"
        );
        assert_eq!(
            r["summary"]["failed"].as_u64(),
            Some(0),
            "checkov failed checks: {}",
            results["failed_checks"]
        );
        for f in results["failed_checks"].as_array().into_iter().flatten() {
            failed.push(format!(
                "{} {} ({}:{})",
                f["check_id"], f["resource"], f["file_path"], f["file_line_range"]
            ));
        }
        for s in results["skipped_checks"].as_array().into_iter().flatten() {
            skipped.push((
                text(&s["check_id"]),
                text(&s["resource"]),
                text(&s["check_result"]["suppress_comment"]),
            ));
        }
    }
    assert!(
        passed > 100,
        "checkov ran {passed} passing checks: did it read terraform/? {stdout}"
    );
    assert!(
        failed.is_empty(),
        "checkov failed checks:\n{}",
        failed.join("\n")
    );
    assert_eq!(
        skipped.len() as u64,
        reports
            .iter()
            .map(|r| r["summary"]["skipped"].as_u64().unwrap_or(0))
            .sum::<u64>(),
        "every skip listed"
    );
    for (id, resource, reason) in &skipped {
        assert!(
            reason.trim().len() >= 20,
            "skip of {id} on {resource} has no reason: `{reason}`"
        );
    }
    eprintln!(
        "checkov: {passed} passed, 0 failed, {} skipped (each with its reason)",
        skipped.len()
    );
}

/// A registry of `files` (name → YAML) in a temporary folder.
fn synthetic(files: &[(&str, &str)]) -> (tempfile::TempDir, Registry) {
    let tmp = tempfile::tempdir().expect("tmp");
    for (name, text) in files {
        std::fs::write(tmp.path().join(name), text).expect("write");
    }
    let registry = Registry::load(tmp.path()).expect("synthetic registry");
    (tmp, registry)
}

const PIN: &str = "sha256: \"0000000000000000000000000000000000000000000000000000000000000000\"";

#[test]
fn a_table_with_three_stream_readers_streams_through_kinesis() {
    let resources = "tables:\n  t: { partition_key: PK, sort_key: SK }\n  u: { partition_key: PK }\nqueues:\n  fails: {}\n  work-1: { visibility_timeout_s: 30 }\n  work-2: {}\nbuckets: [archive]\n";
    let mut domain = String::from("domain: d\nworkers:\n");
    for i in 1..=3 {
        domain.push_str(&format!(
            "  s{i}:\n    component: {{ name: d/s{i}, version: 0.1.0, {PIN} }}\n    trigger:\n      stream: {{ table: t, on_failure: fails }}\n    grants: {{ buckets: [arch*] }}\n"
        ));
    }
    domain.push_str(&format!(
        "  u1:\n    component: {{ name: d/u1, version: 0.1.0, {PIN} }}\n    trigger:\n      stream: {{ table: u }}\n    grants: {{ queues: [\"work-*\"] }}\n"
    ));
    let (tmp, registry) = synthetic(&[("resources.yaml", resources), ("d.yaml", &domain)]);
    let files =
        usher_terraform::generate(&registry, &tmp.path().join("no-workflows")).expect("generate");
    let tables = &files["tables.tf"];
    assert!(
        tables.contains("resource \"aws_kinesis_stream\" \"t\""),
        "{tables}"
    );
    assert!(
        tables.contains("resource \"aws_dynamodb_kinesis_streaming_destination\" \"t\""),
        "{tables}"
    );
    assert!(
        !tables.contains("resource \"aws_kinesis_stream\" \"u\""),
        "{tables}"
    );
    let workers = &files["workers.tf"];
    assert_eq!(
        workers
            .matches("event_source_arn = aws_kinesis_stream.t.arn")
            .count(),
        3,
        "{workers}"
    );
    assert_eq!(
        workers
            .matches("event_source_arn = aws_dynamodb_table.u.stream_arn")
            .count(),
        1,
        "{workers}"
    );
    // The wildcard grants name what they match, nothing more.
    assert!(
        workers.contains("${aws_s3_bucket.archive.arn}/*"),
        "{workers}"
    );
    assert!(
        workers.contains("resources = [aws_sqs_queue.work-1.arn, aws_sqs_queue.work-2.arn]"),
        "{workers}"
    );
    assert!(
        !workers.contains("aws_sqs_queue.fails.arn, aws_sqs_queue.work"),
        "{workers}"
    );
}

#[test]
fn a_queue_shorter_than_its_workers_timeout_is_refused() {
    let resources = "queues:\n  q: { visibility_timeout_s: 10 }\n";
    let domain = format!(
        "domain: d\nworkers:\n  w:\n    component: {{ name: d/w, version: 0.1.0, {PIN} }}\n    trigger: {{ queue: q }}\n    limits: {{ timeout_ms: 20000 }}\n"
    );
    let (tmp, registry) = synthetic(&[("resources.yaml", resources), ("d.yaml", &domain)]);
    let err = usher_terraform::generate(&registry, &tmp.path().join("none")).unwrap_err();
    assert!(
        err.to_string().contains("visibility_timeout_s (10)"),
        "{err}"
    );
}
