//! `usher demo p8`: benchmark P8 end to end (BENCHMARKS.md) — one market of
//! `--entries` entries (default 1,000,000) and `--winners` winners (default
//! 100,000) on the platform `usher up` starts, in this process: the Entry,
//! Code and Campaign services served as http-workers behind the real HTTP
//! listener, every queue and stream worker running on the embedded
//! backends.
//!
//! Not timed (the preload):
//! 1. Before the platform starts, every fan's demand-table entry (as
//!    `registration/submit-entry` writes it, with `needsReplication`
//!    cleared as `replication/save-entries` leaves it) and its Entry Service
//!    items (the entry item with its score and its market index item, as
//!    `POST /entries/batch-upsert {"refreshScores": true}` writes them) go
//!    straight into the tables, in batch writes, the fans in a shuffled
//!    order (registration order is no order of fan ids); the change log
//!    they made is trimmed (the replication stream must not see a preload).
//! 2. The platform starts; the first 25 fans' Entry Service items are
//!    written through the service itself (`batch-upsert`) and compared with
//!    what the preload writes for them: the preload must be exactly what the
//!    service writes.
//! 3. The campaign and the market (selection count `--winners`, waitlist
//!    `--waitlist`) through the Campaign Service, `--winners` + 10% codes
//!    through the Code Service (`POST /pools/…/codes`, 5,000 a call).
//!
//! Timed, from the draw's invocation on:
//! * `POST /invoke/selection/enqueue-market-selections` (campaign and
//!   market, PROCESSING, every entry read, the draw, the record, the
//!   reservations, every selection enqueued to `save-selection`, FINISHED);
//! * `selection/save-selections` draining `save-selection` (it starts with
//!   the first message, during the draw): assign-codes, verdicts,
//!   demand-table updates, one verdict report per message;
//! * `selection/report-verdicts` draining `verdict-reporter`, until the
//!   Campaign Service's market stats are FINISHED with `reported` =
//!   `expected` (every verdict reported).
//!
//! Then the verification (not timed): every fan has a selection, the
//! winners are `--winners`, each holds exactly one code, no code twice; and
//! once `selection/mark-assigned-codes` (from the demand-table stream,
//! alongside, not part of P8) has marked them, the Code Service counts
//! exactly the winners' codes assigned and marked (its time is reported).

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use usher_backend_embedded::{Embedded, EmbeddedTables};
use usher_capabilities::{CapError, TableBackend, WriteOp};
use usher_registry::Resources;

use crate::{failed, now_ms, BoxError, DataDir, DemoError, Platform};

const DEMAND: &str = "demand-table";
const ENTRIES: &str = "entries";
const MARKET: &str = "m1";
/// Items per batch write of the preload.
const PRELOAD_CHUNK: usize = 5000;
/// Entries written through the Entry Service to check the preload's items.
const CHECKED: usize = 25;
/// How often the stages are polled: the times below are this exact. Each
/// poll counts two queues' messages and asks the Campaign Service for the
/// market's stats, work that shares the cores with what is measured (at
/// 50 ms, counting the 40,000 queued messages took 13 CPU-s of a 1,000,000
/// run).
const POLL: Duration = Duration::from_millis(200);

/// The arguments of `usher demo p8`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Entries in the market (env `P8_ENTRIES`).
    #[arg(long, env = "P8_ENTRIES", default_value_t = 1_000_000)]
    pub entries: usize,
    /// Winners (the market's selection count; env `P8_WINNERS`).
    #[arg(long, env = "P8_WINNERS", default_value_t = 100_000)]
    pub winners: usize,
    /// The market's waitlist count.
    #[arg(long, default_value_t = 1000)]
    pub waitlist: usize,
    /// The data folder (default: a fresh temporary one, removed after).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The HTTP listener's address (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Seconds to wait for each asynchronous stage before failing.
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
}

fn table_error(what: &str) -> impl Fn(CapError) -> DemoError + '_ {
    move |source| DemoError::Table {
        what: what.to_string(),
        source,
    }
}

/// Runs the benchmark on the platform `start` starts.
pub async fn run<P, S, F>(args: Args, resources: &Resources, start: S) -> Result<(), DemoError>
where
    P: Platform,
    S: FnOnce(PathBuf, SocketAddr) -> F,
    F: Future<Output = Result<P, BoxError>>,
{
    if args.entries < CHECKED || args.winners == 0 || args.winners > args.entries {
        return Err(DemoError::Usage(format!(
            "--entries must be at least {CHECKED} and --winners from 1 to --entries"
        )));
    }
    let data = DataDir::new(args.data.as_deref());
    let fans = Fans::new(&format!("p8-{}", now_ms()));
    {
        let embedded =
            Embedded::open(data.path(), resources).map_err(|source| DemoError::Open {
                path: data.path().to_path_buf(),
                source,
            })?;
        let started = Instant::now();
        fans.preload(&embedded, args.entries).await?;
        eprintln!(
            "p8: preloaded {} entries (demand-table, Entry Service items and market index) in {:.1} s",
            args.entries,
            started.elapsed().as_secs_f64()
        );
    }
    let platform = start(data.path().to_path_buf(), args.listen)
        .await
        .map_err(DemoError::Start)?;
    eprintln!(
        "p8: {} worker(s), data {}, listening on {}",
        platform.worker_count(),
        data.path().display(),
        platform.base_url()
    );
    let bench = Bench {
        http: reqwest::Client::new(),
        base: platform.base_url(),
        fans,
        args: args.clone(),
    };
    let outcome = bench.drive(&platform, resources, &data).await;
    platform.shutdown().await.map_err(DemoError::Stop)?;
    data.finish();
    outcome
}

/// The campaign and its fans' items.
struct Fans {
    campaign: String,
    at: String,
}

impl Fans {
    fn new(campaign: &str) -> Fans {
        Fans {
            campaign: campaign.to_string(),
            at: chrono::Utc::now()
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string(),
        }
    }

    fn user(i: usize) -> String {
        format!("fan-{i:07}")
    }

    /// The demand-table item `registration/submit-entry` writes for fan `i`
    /// (version 1, `needsReplication: true`): the image replication sends
    /// to the Entry Service.
    fn image(&self, i: usize) -> Value {
        let user = Fans::user(i);
        let mut entry = json!({
            "firstName": format!("Fan{i}"),
            "zip": format!("{:05}", 10000 + i % 90000),
            "age": 18 + (i % 60),
        });
        if i.is_multiple_of(3) {
            entry["newsletter"] = json!(i.is_multiple_of(2));
        }
        json!({
            "PK": format!("ENTRY#{}#{user}", self.campaign), "SK": "ENTRY",
            "campaignId": self.campaign, "globalUserId": user, "marketId": MARKET,
            "entry": entry, "email": format!("{user}@fans.example"),
            "verdict": "PENDING", "needsReplication": true, "version": 1,
            "createdAt": self.at, "updatedAt": self.at,
        })
    }

    /// The Entry Service's score of an entry (entry-service `score`): 10 ×
    /// its non-null top-level attributes but for a draw's outcome and the
    /// replication's bookkeeping (entry-service `UNSCORED_ATTRIBUTES`) +
    /// its version.
    fn score(image: &Value) -> u64 {
        const UNSCORED: [&str; 6] = [
            "verdict",
            "accessCode",
            "drawId",
            "needsReplication",
            "updatedAt",
            "score",
        ];
        let fields = image.as_object().map_or(0, |o| {
            o.iter()
                .filter(|(k, v)| !v.is_null() && !UNSCORED.contains(&k.as_str()))
                .count()
        });
        fields as u64 * 10 + image["version"].as_u64().unwrap_or(0)
    }

    /// The Entry Service's entry item and market index item of an image, as
    /// `batch-upsert` with `refreshScores` writes them.
    fn service_items(&self, image: &Value) -> (Value, Value) {
        let user = image["globalUserId"].as_str().unwrap_or_default();
        let score = Fans::score(image);
        let entry = json!({
            "PK": format!("CAMPAIGN#{}", self.campaign), "SK": format!("FAN#{user}"),
            "entry": image, "marketId": MARKET, "version": image["version"], "score": score,
        });
        let index = json!({
            "PK": format!("MARKET#{}#{MARKET}", self.campaign), "SK": format!("FAN#{user}"),
            "entry": image, "score": score, "version": image["version"],
            "globalUserId": user, "marketId": MARKET,
        });
        (entry, index)
    }

    /// Every fan's demand-table item; the Entry Service's items of every fan
    /// but the first [`CHECKED`] (written through the service later); the
    /// change log trimmed. The fans are written in [`registration_order`],
    /// not in the order of their ids.
    async fn preload(&self, embedded: &Embedded, n: usize) -> Result<(), DemoError> {
        let tables = embedded.tables();
        let mut demand = Vec::with_capacity(PRELOAD_CHUNK);
        let mut service = Vec::with_capacity(2 * PRELOAD_CHUNK);
        for (written, i) in registration_order(n).into_iter().enumerate() {
            let image = self.image(i);
            if i >= CHECKED {
                let (entry, index) = self.service_items(&image);
                service.push(WriteOp::Put(entry));
                service.push(WriteOp::Put(index));
            }
            let mut stored = image;
            stored["needsReplication"] = json!(false);
            demand.push(WriteOp::Put(stored));
            if demand.len() == PRELOAD_CHUNK || written + 1 == n {
                write_all(&tables, DEMAND, std::mem::take(&mut demand)).await?;
                write_all(&tables, ENTRIES, std::mem::take(&mut service)).await?;
            }
        }
        let log = embedded.change_log();
        for table in [DEMAND, ENTRIES] {
            let seq = log
                .latest_seq(table)
                .await
                .map_err(table_error("reading the change log"))?;
            log.trim_through(table, seq)
                .await
                .map_err(table_error("trimming the change log"))?;
        }
        Ok(())
    }
}

/// The order fans `0..n` register in: a fixed shuffle, as fans register in
/// no order of their ids. The embedded tables store items in the order they
/// were first written, so a preload in id order would lay the market out in
/// key order, which no real registration does, and would flatter every
/// write made in key order.
fn registration_order(n: usize) -> Vec<usize> {
    use rand::{seq::SliceRandom, SeedableRng};
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(
        0x2545_F491_4F6C_DD1D,
    ));
    order
}

async fn write_all(
    tables: &EmbeddedTables,
    table: &str,
    writes: Vec<WriteOp>,
) -> Result<(), DemoError> {
    if writes.is_empty() {
        return Ok(());
    }
    let results = tables
        .batch_write(table, writes)
        .await
        .map_err(table_error("preloading"))?;
    match results.into_iter().find_map(Result::err) {
        Some(e) => Err(table_error("preloading")(e)),
        None => Ok(()),
    }
}

struct Bench {
    http: reqwest::Client,
    base: String,
    fans: Fans,
    args: Args,
}

/// What the poller saw at one moment.
#[derive(Debug, Clone, Copy)]
struct Seen {
    save_pending: u64,
    report_pending: u64,
    reported: u64,
    expected: u64,
    finished: bool,
}

impl Bench {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, DemoError> {
        crate::send_ok(&self.http, &self.base, method, path, body).await
    }

    /// The first [`CHECKED`] fans through the Entry Service; their items
    /// must be the preload's.
    async fn check_preload(&self, tables: &EmbeddedTables) -> Result<(), DemoError> {
        let images: Vec<Value> = (0..CHECKED).map(|i| self.fans.image(i)).collect();
        let answer = self
            .send(
                reqwest::Method::POST,
                "/services/entries/entries/batch-upsert",
                Some(&json!({"entries": images, "refreshScores": true})),
            )
            .await?;
        if answer["upserted"] != json!(CHECKED) {
            return Err(failed(format!("batch-upsert answered {answer}")));
        }
        for image in &images {
            let (entry, index) = self.fans.service_items(image);
            for want in [entry, index] {
                let key = json!({"PK": want["PK"], "SK": want["SK"]});
                let got = tables
                    .get(ENTRIES, &key)
                    .await
                    .map_err(table_error("reading the entries"))?;
                if got.as_ref() != Some(&want) {
                    return Err(failed(format!(
                        "the preload does not write what the Entry Service writes: {} vs {want}",
                        got.unwrap_or(Value::Null)
                    )));
                }
            }
        }
        Ok(())
    }

    async fn set_up(&self) -> Result<(), DemoError> {
        use reqwest::Method;
        let c = &self.fans.campaign;
        let time = |hours: i64| {
            (chrono::Utc::now() + chrono::Duration::hours(hours))
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        };
        let campaign = json!({
            "id": c, "slug": c, "name": format!("P8 {c}"), "status": "OPEN",
            "opensAt": time(-1), "closesAt": time(24), "gate": {"type": "none"},
            "fields": [
                {"name": "firstName", "type": "string", "required": true},
                {"name": "zip", "type": "string", "required": true},
                {"name": "age", "type": "integer", "required": true},
                {"name": "newsletter", "type": "boolean", "required": false},
            ],
        });
        self.send(
            Method::PUT,
            &format!("/services/campaigns/campaigns/{c}"),
            Some(&campaign),
        )
        .await?;
        let market = json!({
            "id": MARKET, "campaignId": c, "eventId": "evt-p8", "eventName": "P8",
            "venue": "Usher Arena", "selectionCount": self.args.winners,
            "waitlistCount": self.args.waitlist,
        });
        self.send(
            Method::PUT,
            &format!("/services/campaigns/campaigns/{c}/markets/{MARKET}"),
            Some(&market),
        )
        .await?;
        let codes = self.args.winners + self.args.winners / 10;
        let all: Vec<String> = (0..codes).map(|n| format!("P8-{n:08}")).collect();
        for chunk in all.chunks(5000) {
            self.send(
                Method::POST,
                &format!("/services/codes/pools/{c}/{MARKET}/codes"),
                Some(&json!({"codes": chunk})),
            )
            .await?;
        }
        Ok(())
    }

    async fn seen(
        &self,
        queues: &usher_backend_embedded::EmbeddedQueues,
    ) -> Result<Seen, DemoError> {
        let pending = |d: usher_backend_embedded::QueueDepth| d.visible + d.in_flight + d.delayed;
        let save = queues
            .depth("save-selection")
            .await
            .map_err(table_error("save-selection depth"))?;
        let report = queues
            .depth("verdict-reporter")
            .await
            .map_err(table_error("verdict-reporter depth"))?;
        let stats = self
            .send(
                reqwest::Method::GET,
                &format!(
                    "/services/campaigns/campaigns/{}/markets/{MARKET}/stats",
                    self.fans.campaign
                ),
                None,
            )
            .await
            .unwrap_or(Value::Null);
        let total = |counts: &Value| {
            counts
                .as_object()
                .map_or(0, |o| o.values().filter_map(Value::as_u64).sum::<u64>())
        };
        Ok(Seen {
            save_pending: pending(save),
            report_pending: pending(report),
            reported: total(&stats["reported"]),
            expected: total(&stats["expected"]),
            finished: stats["status"] == json!("FINISHED")
                && stats["expected"].is_object()
                && stats["reported"] == stats["expected"],
        })
    }

    async fn drive(
        &self,
        platform: &impl Platform,
        resources: &Resources,
        data: &DataDir,
    ) -> Result<(), DemoError> {
        let tables = platform.tables();
        self.check_preload(&tables).await?;
        self.set_up().await?;
        // The data folder's queues, read as `usher demo presale --url` reads
        // a running `usher up`'s tables.
        let observer =
            Embedded::open(data.path(), resources).map_err(|source| DemoError::Open {
                path: data.path().to_path_buf(),
                source,
            })?;
        let queues = observer.queues();
        let timeout = Duration::from_secs(self.args.timeout);
        eprintln!(
            "p8: campaign {} market {MARKET}: {} entries, {} winners, {} codes; drawing",
            self.fans.campaign,
            self.args.entries,
            self.args.winners,
            self.args.winners + self.args.winners / 10
        );

        let payload = json!({"campaignId": self.fans.campaign, "marketId": MARKET});
        let started = Instant::now();
        let draw = self.send(
            reqwest::Method::POST,
            "/invoke/selection/enqueue-market-selections",
            Some(&payload),
        );
        tokio::pin!(draw);
        let mut answer: Option<Value> = None;
        let mut drawn_at = None;
        let mut saved_at = None;
        let mut first_report_at = None;
        let mut reporter_drained_at = None;
        let mut last;
        let mut tick = tokio::time::interval(POLL);
        let reported_at = loop {
            tokio::select! {
                a = &mut draw, if answer.is_none() => {
                    let a = a?;
                    if a["errors"].as_array().is_some_and(|e| !e.is_empty()) {
                        return Err(failed(format!("the draw reported errors: {a}")));
                    }
                    drawn_at = Some(started.elapsed());
                    eprintln!("p8: draw done at {:.2} s: {}", started.elapsed().as_secs_f64(), a["stats"]["timingsMs"]);
                    answer = Some(a);
                }
                _ = tick.tick() => {
                    last = self.seen(&queues).await?;
                    if last.reported > 0 && first_report_at.is_none() {
                        first_report_at = Some(started.elapsed());
                    }
                    if answer.is_some() && last.save_pending == 0 && saved_at.is_none() {
                        saved_at = Some(started.elapsed());
                        eprintln!("p8: save-selection drained at {:.2} s", started.elapsed().as_secs_f64());
                    }
                    if saved_at.is_some() && last.report_pending == 0 && reporter_drained_at.is_none() {
                        reporter_drained_at = Some(started.elapsed());
                    }
                    if answer.is_some() && last.finished {
                        break started.elapsed();
                    }
                    if started.elapsed() > timeout {
                        return Err(failed(format!("not done after {} s: {last:?}", timeout.as_secs())));
                    }
                }
            }
        };
        let answer = answer.unwrap_or(Value::Null);
        let stats = &answer["stats"];

        // Verification.
        let selections = self.selections().await?;
        let mut codes: HashSet<String> = HashSet::new();
        let mut winners = 0usize;
        for s in &selections {
            match (s["verdict"].as_str(), s["code"].as_str()) {
                (Some("WINNER"), Some(code)) => {
                    winners += 1;
                    if !codes.insert(code.to_string()) {
                        return Err(failed(format!("code {code} was given twice")));
                    }
                }
                (Some("WINNER"), None) => {
                    return Err(failed(format!("winner {} has no code", s["globalUserId"])))
                }
                (_, Some(code)) => {
                    return Err(failed(format!(
                        "{} is {} and holds code {code}",
                        s["globalUserId"], s["verdict"]
                    )))
                }
                _ => {}
            }
        }
        if winners != self.args.winners || selections.len() != self.args.entries {
            return Err(failed(format!(
                "{winners} winners and {} selections, expected {} winners of {} entries",
                selections.len(),
                self.args.winners,
                self.args.entries
            )));
        }
        // The Code Service learns of the assignments from the demand-table
        // stream (mark-assigned-codes): not part of P8's end, waited for
        // here (untimed) so that it is verified too.
        let pool_path = format!("/services/codes/pools/{}/{MARKET}", self.fans.campaign);
        let pool = loop {
            let pool = self.send(reqwest::Method::GET, &pool_path, None).await?;
            if pool["marked"].as_u64() == Some(winners as u64) {
                break pool;
            }
            if started.elapsed() > timeout {
                return Err(failed(format!(
                    "the Code Service has {} of {winners} codes marked after {} s",
                    pool["marked"],
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let marked_at = started.elapsed();
        if pool["assigned"].as_u64() != Some(winners as u64) {
            return Err(failed(format!(
                "the Code Service counts {} assigned and {} marked codes, {winners} winners",
                pool["assigned"], pool["marked"]
            )));
        }
        let secs = |d: Option<Duration>| {
            d.map_or("-".to_string(), |d| format!("{:.2} s", d.as_secs_f64()))
        };
        println!(
            "usher demo p8: verified: {} entries, {winners} winners each with one code, no code twice, {} selections, {} verdicts reported",
            self.args.entries,
            selections.len(),
            last.reported
        );
        println!(
            "  draw (enqueue-market-selections) returned   {}",
            secs(drawn_at)
        );
        println!(
            "    its steps (ms)                            {}",
            stats["timingsMs"]
        );
        println!(
            "    {} batches enqueued, {} reservations, {} codes",
            stats["batches"], stats["reservations"], stats["codes"]
        );
        println!(
            "  first verdict report counted                {}",
            secs(first_report_at)
        );
        println!(
            "  save-selection drained                      {}",
            secs(saved_at)
        );
        println!(
            "  verdict-reporter drained                    {}",
            secs(reporter_drained_at)
        );
        println!(
            "  every verdict reported (stats FINISHED)     {} ({} of {} expected)",
            secs(Some(reported_at)),
            last.reported,
            last.expected
        );
        println!(
            "  P8 end to end                               {:.2} s (target 10 s)",
            reported_at.as_secs_f64()
        );
        println!(
            "  every code marked in the Code Service       {:.2} s (mark-assigned-codes, from the demand-table stream; not part of P8)",
            marked_at.as_secs_f64()
        );
        for (worker, c) in platform.counters() {
            if c.received > 0 {
                println!(
                    "  {worker:<36} {} record(s) in {} invocation(s){}",
                    c.received,
                    c.invocations,
                    if c.failed > 0 {
                        format!(", {} failed", c.failed)
                    } else {
                        String::new()
                    }
                );
            }
        }
        Ok(())
    }

    async fn selections(&self) -> Result<Vec<Value>, DemoError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut p = format!(
                "/services/entries/markets/{MARKET}/selections?campaignId={}&limit=5000",
                self.fans.campaign
            );
            if let Some(a) = &after {
                p.push_str(&format!("&after={a}"));
            }
            let page = self.send(reqwest::Method::GET, &p, None).await?;
            out.extend(page["selections"].as_array().cloned().unwrap_or_default());
            match page["next"].as_str() {
                Some(n) => after = Some(n.to_string()),
                None => return Ok(out),
            }
        }
    }
}
