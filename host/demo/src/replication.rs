//! `usher demo replication`: on the platform `usher up` starts, in-process,
//! writes fan entries into demand-table (inserts, then modifications with a
//! higher version, then removals) and waits until every remaining entry is
//! cleared (`needsReplication: false`) and the Entry Service holds exactly
//! the table's entries; prints a verification summary. With `--preload`
//! every write is made before the workers start and only the replication is
//! timed (the throughput benchmark).

use std::collections::BTreeMap;
use std::future::Future;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use usher_backend_embedded::{Embedded, EmbeddedTables};
use usher_capabilities::{CapError, TableBackend, WriteOp};
use usher_registry::Resources;

use crate::{now_ms, BoxError, DataDir, DemoError, Platform};

const TABLE: &str = "demand-table";
/// How many keys one `batch_get` reads.
const GET_CHUNK: usize = 100;

/// The arguments of `usher demo replication`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// How many entries to insert.
    #[arg(long, default_value_t = 1000)]
    pub entries: usize,
    /// The data folder (default: a fresh temporary one, removed after).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The HTTP listener's address (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Seconds to wait for replication before failing.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Write every entry (in batch writes) before the workers start and
    /// time the replication alone: the throughput benchmark.
    #[arg(long)]
    pub preload: bool,
}

fn write_error(source: CapError) -> DemoError {
    DemoError::Table {
        what: format!("writing {TABLE}"),
        source,
    }
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
) -> Result<BTreeMap<String, u64>, reqwest::Error> {
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
    tables: &EmbeddedTables,
    campaign: &str,
    expected: &Expected,
) -> Result<usize, DemoError> {
    let keys: Vec<Value> = expected.keys().map(|u| key(campaign, u)).collect();
    let mut n = 0;
    for chunk in keys.chunks(GET_CHUNK) {
        let items = tables
            .batch_get(TABLE, chunk)
            .await
            .map_err(|source| DemoError::Table {
                what: format!("reading {TABLE}"),
                source,
            })?;
        for item in items.into_iter().flatten() {
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

/// Runs the demo on the platform `start` starts.
pub async fn run<P, S, F>(args: Args, resources: &Resources, start: S) -> Result<(), DemoError>
where
    P: Platform,
    S: FnOnce(PathBuf, SocketAddr) -> F,
    F: Future<Output = Result<P, BoxError>>,
{
    if args.entries == 0 {
        return Err(DemoError::Usage("--entries must be at least 1".into()));
    }
    let data = DataDir::new(args.data.as_deref());
    let result = replicate(&args, resources, data.path().to_path_buf(), start).await;
    data.finish();
    result
}

async fn replicate<P, S, F>(
    args: &Args,
    resources: &Resources,
    data: PathBuf,
    start: S,
) -> Result<(), DemoError>
where
    P: Platform,
    S: FnOnce(PathBuf, SocketAddr) -> F,
    F: Future<Output = Result<P, BoxError>>,
{
    let campaign = format!("demo-{}", now_ms());
    let mut preloaded = None;
    if args.preload {
        // Write everything before any worker runs: the run then times the
        // replication alone (the throughput benchmark).
        let embedded = Embedded::open(&data, resources).map_err(|source| DemoError::Open {
            path: data.clone(),
            source,
        })?;
        let started = Instant::now();
        let expected = write(&embedded.tables(), &campaign, args.entries, true).await?;
        preloaded = Some((expected, started.elapsed()));
    }
    let platform = start(data.clone(), args.listen)
        .await
        .map_err(DemoError::Start)?;
    let base = platform.base_url();
    eprintln!(
        "usher demo replication: {} worker(s), data {}, listening on {base}",
        platform.worker_count(),
        data.display()
    );
    let timeout = Duration::from_secs(args.timeout);
    let outcome = drive(
        &platform,
        &data,
        &base,
        &campaign,
        args.entries,
        timeout,
        preloaded,
    )
    .await;
    platform.shutdown().await.map_err(DemoError::Stop)?;
    outcome
}

/// Writes `n` inserts, then ~20% modifications (version 2), then ~10%
/// removals, one write at a time, or with `batched` in batch writes of 500;
/// returns what the table holds afterwards.
async fn write(
    tables: &EmbeddedTables,
    campaign: &str,
    n: usize,
    batched: bool,
) -> Result<Expected, DemoError> {
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
            let results = tables
                .batch_write(TABLE, chunk.to_vec())
                .await
                .map_err(write_error)?;
            if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
                return Err(write_error(e));
            }
            writes.inc(chunk.len() as u64);
        }
    } else {
        for op in ops {
            match op {
                WriteOp::Put(item) => tables.put(TABLE, item, None).await,
                WriteOp::Delete(key) => tables.delete(TABLE, &key, None).await,
            }
            .map_err(write_error)?;
            writes.inc(1);
        }
    }
    writes.finish_and_clear();
    Ok(expected)
}

async fn drive(
    platform: &impl Platform,
    data: &std::path::Path,
    base: &str,
    campaign: &str,
    n: usize,
    timeout: Duration,
    preloaded: Option<(Expected, Duration)>,
) -> Result<(), DemoError> {
    let tables = platform.tables();
    let client = reqwest::Client::new();
    let started = Instant::now();
    let rows_before = platform.row_writes();
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
        return Err(DemoError::NotConverged(format!(
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
        )));
    }

    let secs = elapsed.as_secs_f64();
    let rows = platform.row_writes().saturating_sub(rows_before);
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
    if was_preloaded {
        // The storage bound, measured now on the same data folder: SQLite's
        // row writes per second (entry-sized rows, 100 per transaction)
        // divided by the rows the replication wrote per entry.
        let per_entry = rows as f64 / n as f64;
        match usher_backend_embedded::measure_row_writes(data, 50_000, 420, 100) {
            Ok(rate) => println!(
                "  storage bound       {:.0} entries/s = {rate:.0} SQLite row writes/s on this data folder / {per_entry:.1} rows written per replicated entry ({rows} rows); this run reached {:.0}% of it",
                rate / per_entry.max(f64::EPSILON),
                100.0 * (n as f64 / secs.max(f64::EPSILON)) / (rate / per_entry.max(f64::EPSILON))
            ),
            Err(e) => println!("  storage bound       not measured: {e}"),
        }
    }
    for (worker, c) in platform.counters() {
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
