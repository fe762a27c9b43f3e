//! `usher demo replication`: starts what `usher up` starts, in-process, writes
//! fan entries into demand-table (inserts, then modifications with a higher
//! version, then removals) and waits until every remaining entry is cleared
//! (`needsReplication: false`) and the Entry Service holds exactly the
//! table's entries; prints a verification summary.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use usher_capabilities::TableBackend;

use crate::store_cmds::Paths;

const TABLE: &str = "demand-table";
/// How many keys one `batch_get` reads.
const GET_CHUNK: usize = 100;

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn key(campaign: &str, user: &str) -> Value {
    json!({"PK": format!("ENTRY#{campaign}#{user}"), "SK": "ENTRY"})
}

fn item(campaign: &str, user: &str, i: usize, version: u64, at: &str, created: &str) -> Value {
    json!({
        "PK": format!("ENTRY#{campaign}#{user}"),
        "SK": "ENTRY",
        "campaignId": campaign,
        "globalUserId": user,
        "marketId": "m1",
        "entry": {"firstName": format!("Fan{i}"), "zip": format!("{:05}", 10000 + i % 90000), "answers": {"q1": version}},
        "verdict": "PENDING",
        "needsReplication": true,
        "version": version,
        "createdAt": created,
        "updatedAt": at,
    })
}

/// The expected state: globalUserId → version of every entry left in the table.
type Expected = BTreeMap<String, u64>;

/// The Entry Service's entries of the campaign (globalUserId → version),
/// every page; `None` while it does not answer.
async fn service_entries(
    client: &reqwest::Client,
    base: &str,
    campaign: &str,
) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let mut req = client
            .get(format!(
                "{base}/services/entries/campaigns/{campaign}/entries"
            ))
            .query(&[("limit", "1000")]);
        if let Some(a) = &after {
            req = req.query(&[("after", a.as_str())]);
        }
        let r = req.send().await?.error_for_status()?;
        let body: Value = r.json().await?;
        for e in body["entries"].as_array().into_iter().flatten() {
            let user = e["globalUserId"].as_str().unwrap_or_default().to_string();
            out.insert(user, e["version"].as_u64().unwrap_or(0));
        }
        match body["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    Ok(out)
}

/// How many of the expected entries are cleared in the table.
async fn cleared(
    tables: &usher_backend_embedded::EmbeddedTables,
    campaign: &str,
    expected: &Expected,
) -> Result<usize> {
    let keys: Vec<Value> = expected.keys().map(|u| key(campaign, u)).collect();
    let mut n = 0;
    for chunk in keys.chunks(GET_CHUNK) {
        for item in tables.batch_get(TABLE, chunk).await?.into_iter().flatten() {
            if item["needsReplication"] == json!(false) {
                n += 1;
            }
        }
    }
    Ok(n)
}

fn bar(len: u64, message: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{msg:24} [{bar:40}] {pos}/{len} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_message(message.to_string());
    bar
}

pub async fn replication(
    paths: &Paths,
    data: Option<&Path>,
    listen: SocketAddr,
    entries: usize,
    timeout: Duration,
    preload: bool,
) -> Result<()> {
    if entries == 0 {
        bail!("--entries must be at least 1");
    }
    let (data, temporary): (PathBuf, bool) = match data {
        Some(d) => (d.to_path_buf(), false),
        None => (
            std::env::temp_dir().join(format!("usher-demo-{}-{}", std::process::id(), now_ms())),
            true,
        ),
    };
    let result = run(paths, &data, listen, entries, timeout, preload).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&data);
    }
    result
}

async fn run(
    paths: &Paths,
    data: &Path,
    listen: SocketAddr,
    entries: usize,
    timeout: Duration,
    preload: bool,
) -> Result<()> {
    let campaign = format!("demo-{}", now_ms());
    let mut preloaded = None;
    if preload {
        // Write everything before any worker runs: the run then times the
        // replication alone (the throughput benchmark).
        let registry = paths.registry()?;
        let embedded = usher_backend_embedded::Embedded::open(data, &registry.resources)
            .with_context(|| format!("opening the embedded backends in {}", data.display()))?;
        let started = Instant::now();
        let expected = write(&embedded.tables(), &campaign, entries, true).await?;
        preloaded = Some((expected, started.elapsed()));
    }
    let host = crate::up::start(paths, data, listen, true).await?;
    let base = format!("http://{}", host.local_addr());
    eprintln!(
        "usher demo replication: {} worker(s), data {}, listening on {base}",
        host.runtime.workers().len(),
        data.display()
    );
    let outcome = drive(&host, &base, &campaign, entries, timeout, preloaded).await;
    host.shutdown().await.context("stopping")?;
    outcome
}

/// Writes `n` inserts, then ~20% modifications (version 2), then ~10%
/// removals, one write at a time, or with `batched` in batch writes of 500;
/// returns what the table holds afterwards.
async fn write(
    tables: &usher_backend_embedded::EmbeddedTables,
    campaign: &str,
    n: usize,
    batched: bool,
) -> Result<Expected> {
    use usher_capabilities::WriteOp;
    let users: Vec<String> = (0..n).map(|i| format!("u{i:06}")).collect();
    let stamp = || format!("{}", now_ms());
    let modified: Vec<usize> = (0..n).filter(|i| i % 5 == 0).collect();
    let removed: Vec<usize> = (0..n).filter(|i| i % 10 == 3).collect();
    let writes = bar(
        (n + modified.len() + removed.len()) as u64,
        "writing demand-table",
    );
    let mut expected = Expected::new();
    let mut ops = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let at = stamp();
        ops.push(WriteOp::Put(item(campaign, user, i, 1, &at, &at)));
        expected.insert(user.clone(), 1);
    }
    for &i in &modified {
        let user = &users[i];
        let at = stamp();
        // createdAt stays what the insert wrote (the same clock, earlier).
        ops.push(WriteOp::Put(item(campaign, user, i, 2, &at, &at)));
        expected.insert(user.clone(), 2);
    }
    for &i in &removed {
        ops.push(WriteOp::Delete(key(campaign, &users[i])));
        expected.remove(&users[i]);
    }
    if batched {
        for chunk in ops.chunks(500) {
            let results = tables.batch_write(TABLE, chunk.to_vec()).await?;
            if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
                bail!("writing demand-table: {e}");
            }
            writes.inc(chunk.len() as u64);
        }
    } else {
        for op in ops {
            match op {
                WriteOp::Put(item) => tables.put(TABLE, item, None).await,
                WriteOp::Delete(key) => tables.delete(TABLE, &key, None).await,
            }
            .context("writing demand-table")?;
            writes.inc(1);
        }
    }
    writes.finish_and_clear();
    Ok(expected)
}

async fn drive(
    host: &crate::up::Host,
    base: &str,
    campaign: &str,
    n: usize,
    timeout: Duration,
    preloaded: Option<(Expected, Duration)>,
) -> Result<()> {
    let tables = host.embedded.tables();
    let client = reqwest::Client::new();
    let started = Instant::now();
    let modified = n.div_ceil(5);
    let removed = (0..n).filter(|i| i % 10 == 3).count();
    let was_preloaded = preloaded.is_some();
    let (expected, written_in) = match preloaded {
        Some(p) => p,
        None => {
            let expected = write(&tables, campaign, n, false).await?;
            (expected, started.elapsed())
        }
    };
    eprintln!(
        "wrote {n} insert(s), {modified} modification(s), {removed} removal(s) in {:.2} s{}",
        written_in.as_secs_f64(),
        if was_preloaded {
            " (batch writes, before the workers started)"
        } else {
            ""
        }
    );

    // Wait for replication.
    let progress = bar(expected.len() as u64, "replicating");
    let deadline = started + timeout;
    let mut last_service = BTreeMap::new();
    let mut last_cleared;
    let mut polls: u64 = 0;
    let converged = loop {
        let done = cleared(&tables, campaign, &expected).await?;
        // Listing the Entry Service is the expensive check (every page
        // through the listener): make it once every entry is cleared, or
        // every 2 s for the progress bar.
        let check_service = done == expected.len() || polls.is_multiple_of(10);
        polls += 1;
        let service = if check_service {
            service_entries(&client, base, campaign)
                .await
                .unwrap_or_default()
        } else {
            last_service.clone()
        };
        let matching = expected
            .iter()
            .filter(|(u, v)| service.get(*u) == Some(*v))
            .count();
        progress.set_position(done.min(matching) as u64);
        last_cleared = done;
        if done == expected.len() && service == expected {
            break true;
        }
        last_service = service;
        if Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    progress.finish_and_clear();
    let elapsed = started.elapsed();

    if !converged {
        let missing: Vec<&String> = expected
            .keys()
            .filter(|u| !last_service.contains_key(*u))
            .collect();
        let stale: Vec<&String> = expected
            .iter()
            .filter(|(u, v)| last_service.get(*u).is_some_and(|s| s != *v))
            .map(|(u, _)| u)
            .collect();
        let extra: Vec<&String> = last_service
            .keys()
            .filter(|u| !expected.contains_key(*u))
            .collect();
        let sample = |v: &[&String]| {
            v.iter()
                .take(5)
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        bail!(
            "not converged after {:.1} s: {} of {} entries cleared in demand-table; the Entry Service \
             holds {} entries: {} missing [{}], {} with another version [{}], {} that should be absent [{}]",
            elapsed.as_secs_f64(),
            last_cleared,
            expected.len(),
            last_service.len(),
            missing.len(),
            sample(&missing),
            stale.len(),
            sample(&stale),
            extra.len(),
            sample(&extra),
        );
    }

    let secs = elapsed.as_secs_f64();
    println!("usher demo replication: converged (campaign {campaign})");
    println!("  entries written     {n}");
    println!("  modified            {modified}");
    println!("  removed             {removed}");
    println!(
        "  replicated          {} (all cleared in demand-table; the Entry Service holds exactly these, same versions, none of the removed)",
        expected.len()
    );
    if was_preloaded {
        println!(
            "  replication         {secs:.2} s from the first worker start to the last entry verified (writes before: {:.2} s)",
            written_in.as_secs_f64()
        );
    } else {
        println!(
            "  elapsed             {secs:.2} s from the first write to the last entry verified (writes {:.2} s)",
            written_in.as_secs_f64()
        );
    }
    println!(
        "  throughput          {:.0} entries/s",
        n as f64 / secs.max(f64::EPSILON)
    );
    for (worker, c) in host.snapshot() {
        println!(
            "  {worker:<32} {} record(s) in {} invocation(s), {:.2} s busy{}",
            c.received,
            c.invocations,
            c.busy.as_secs_f64(),
            if c.failed > 0 {
                format!(", {} failed", c.failed)
            } else {
                String::new()
            }
        );
    }
    Ok(())
}
