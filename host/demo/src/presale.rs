//! `usher demo presale`: a whole presale on the platform `usher up` starts,
//! in-process, driven only through what a real client would use (the HTTP
//! listener: the reference services, the resolvers and the invoke
//! endpoint).
//!
//! 1. Creates a campaign with `--markets` markets and a code pool per market
//!    through the Campaign and Code services, plus four campaigns that no
//!    fan can register to (invite-only with few invites, a draft, an ended
//!    one, one not open yet).
//! 2. `--fans` fans check their eligibility (`Query.checkEligibility`) and the
//!    eligible ones submit (`Mutation.submitEntry`); a share is ineligible,
//!    every reason code at least once.
//! 3. Replication carries the entries to the Entry Service (with scores).
//! 4. The draw runs through the selection workflow
//!    (`workflows/selection.asl.json`: a Map over the markets, one
//!    `selection/enqueue-market-selections` Task each); save-selections assigns the codes, writes the
//!    verdicts, and mark-assigned-codes marks the codes through the
//!    demand-table stream.
//! 5. It prints a verification: winners per market = selection count (or
//!    every entry when fewer), every winner exactly one code, no code twice,
//!    demand-table verdicts = Entry Service, Code Service marked = assigned,
//!    every draw verifies (`selection/verify-draw`), every market's stats
//!    FINISHED with the reported verdicts = the draw's counts.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use usher_backend_embedded::EmbeddedTables;
use usher_capabilities::TableBackend;
use usher_registry::Resources;

use crate::{failed, now_ms, BoxError, DataDir, DemoError, Platform};

mod notify;

const TABLE: &str = "demand-table";
/// Requests the demo's fans have in flight at once.
const FAN_CONCURRENCY: usize = 16;
/// The allowed countries of the main campaign.
const COUNTRIES: [&str; 4] = ["US", "CA", "GB", "DE"];

/// The arguments of `usher demo presale`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// How many fans register.
    #[arg(long, default_value_t = 2000)]
    pub fans: usize,
    /// How many markets the campaign has.
    #[arg(long, default_value_t = 3)]
    pub markets: usize,
    /// The data folder (default: a fresh temporary one, removed after).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The HTTP listener's address (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Seconds to wait for each asynchronous stage before failing.
    #[arg(long, default_value_t = 180)]
    pub timeout: u64,
    /// Drive an `usher up` that is already running at this base URL
    /// (`http://127.0.0.1:8090`) instead of starting one in this process;
    /// `--data` must then be its data folder (the verification reads
    /// demand-table there). Used by the end-to-end tests that kill and
    /// restart `usher up` in the middle of the presale.
    #[arg(long, requires = "data")]
    pub url: Option<String>,
}

/// An `usher up` running in another process: its listener and its data
/// folder's tables (SQLite, shared between processes).
struct External {
    base: String,
    embedded: usher_backend_embedded::Embedded,
}

impl Platform for External {
    fn base_url(&self) -> String {
        self.base.clone()
    }

    fn worker_count(&self) -> usize {
        0
    }

    fn tables(&self) -> std::sync::Arc<EmbeddedTables> {
        self.embedded.tables()
    }

    fn row_writes(&self) -> u64 {
        self.embedded.row_writes()
    }

    fn counters(&self) -> BTreeMap<String, usher_trigger_local::CounterSnapshot> {
        BTreeMap::new()
    }

    fn events(&self) -> Option<std::sync::Arc<usher_backend_embedded::EmbeddedEvents>> {
        Some(self.embedded.events())
    }

    async fn shutdown(self) -> Result<(), BoxError> {
        Ok(())
    }
}

/// Runs the demo on the platform `start` starts.
pub async fn run<P, S, F>(args: Args, resources: &Resources, start: S) -> Result<(), DemoError>
where
    P: Platform,
    S: FnOnce(PathBuf, SocketAddr) -> F,
    F: Future<Output = Result<P, BoxError>>,
{
    if args.fans == 0 || args.markets == 0 {
        return Err(DemoError::Usage(
            "--fans and --markets must be at least 1".into(),
        ));
    }
    if args.markets > 1000 {
        return Err(DemoError::Usage("--markets must be at most 1000".into()));
    }
    if let (Some(url), Some(data)) = (&args.url, &args.data) {
        let embedded =
            usher_backend_embedded::Embedded::open(data, resources).map_err(|source| {
                DemoError::Open {
                    path: data.clone(),
                    source,
                }
            })?;
        let platform = External {
            base: url.trim_end_matches('/').to_string(),
            embedded,
        };
        eprintln!(
            "usher demo presale: driving the usher up at {} (data {})",
            platform.base,
            data.display()
        );
        return Presale::new(&args, &platform).drive(&platform).await;
    }
    let data = DataDir::new(args.data.as_deref());
    let platform = start(data.path().to_path_buf(), args.listen)
        .await
        .map_err(DemoError::Start)?;
    eprintln!(
        "usher demo presale: {} worker(s), data {}, listening on {}",
        platform.worker_count(),
        data.path().display(),
        platform.base_url()
    );
    let outcome = Presale::new(&args, &platform).drive(&platform).await;
    platform.shutdown().await.map_err(DemoError::Stop)?;
    data.finish();
    outcome
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

fn rfc3339(offset: chrono::Duration) -> String {
    (chrono::Utc::now() + offset)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// What one fan does: which campaign it names, what it sends, and the
/// reason it is expected to be refused with (`None`: eligible).
struct Fan {
    user: String,
    slug: String,
    market: String,
    country: &'static str,
    entry: Value,
    expected_reason: Option<&'static str>,
    /// Only checks its eligibility (the invite-only campaign has no markets
    /// in the draw).
    check_only: bool,
}

/// A fan's registration: its index, the refusal reason, whether it submitted.
type Registered = (usize, Option<String>, bool);

/// One market of the main campaign.
struct MarketPlan {
    id: String,
    selection: u64,
    waitlist: u64,
    codes: u64,
}

struct Presale {
    http: reqwest::Client,
    base: String,
    campaign: String,
    slug: String,
    run: String,
    markets: Vec<MarketPlan>,
    fans: Vec<Fan>,
    timeout: Duration,
}

impl Presale {
    fn new(args: &Args, platform: &impl Platform) -> Presale {
        let run = format!("{}", now_ms());
        let campaign = format!("presale-{run}");
        let slug = format!("presale-{run}");
        let per_market = (args.fans as u64 / args.markets as u64).max(1);
        let markets = (0..args.markets)
            .map(|m| {
                // A quarter of a market's fans win, a tenth is waitlisted; the
                // pool holds a few more codes than winners.
                let selection = (per_market / 4).max(1);
                MarketPlan {
                    id: format!("m{}", m + 1),
                    selection,
                    waitlist: (per_market / 10).max(1),
                    codes: selection + selection / 10 + 5,
                }
            })
            .collect::<Vec<_>>();
        let fans = (0..args.fans)
            .map(|i| Presale::fan(i, &slug, &run, &markets))
            .collect();
        Presale {
            http: reqwest::Client::new(),
            base: platform.base_url(),
            campaign,
            slug,
            run,
            markets,
            fans,
            timeout: Duration::from_secs(args.timeout),
        }
    }

    /// Fan `i`: one in twenty is ineligible, cycling through every reason
    /// (the first twenty fans cover them all).
    fn fan(i: usize, slug: &str, run: &str, markets: &[MarketPlan]) -> Fan {
        let user = format!("fan-{i:06}");
        // Blocks of twenty fans (one of every case below) per market, so
        // every market gets eligible and refused fans alike.
        let market = markets[(i / 20) % markets.len()].id.clone();
        let mut fan = Fan {
            user,
            slug: slug.to_string(),
            market,
            country: COUNTRIES[i % COUNTRIES.len()],
            entry: json!({
                "firstName": format!("Fan{i}"),
                "zip": format!("{:05}", 10000 + i % 90000),
                "age": 18 + (i % 60),
                "newsletter": i.is_multiple_of(2),
            }),
            expected_reason: None,
            check_only: false,
        };
        let case = if i < 20 { i } else { i % 20 };
        match case {
            1 => {
                fan.slug = format!("no-such-{run}");
                fan.expected_reason = Some("CAMPAIGN_NOT_FOUND");
            }
            3 => {
                fan.slug = format!("draft-{run}");
                fan.market = "m1".into();
                fan.expected_reason = Some("CAMPAIGN_NOT_OPEN");
            }
            5 => {
                fan.slug = format!("ended-{run}");
                fan.market = "m1".into();
                fan.expected_reason = Some("CAMPAIGN_ENDED");
            }
            7 => {
                fan.slug = format!("future-{run}");
                fan.market = "m1".into();
                fan.expected_reason = Some("CAMPAIGN_NOT_STARTED");
            }
            9 => {
                fan.slug = format!("invite-{run}");
                fan.market = "m1".into();
                fan.expected_reason = Some("NOT_INVITED");
                fan.check_only = true;
            }
            10 => {
                // Invited: eligible for the invite-only campaign.
                fan.slug = format!("invite-{run}");
                fan.market = "m1".into();
                fan.check_only = true;
            }
            11 => {
                fan.country = "FR";
                fan.expected_reason = Some("COUNTRY_NOT_ALLOWED");
            }
            13 => {
                if let Some(e) = fan.entry.as_object_mut() {
                    e.remove("age");
                }
                fan.expected_reason = Some("MISSING_FIELD");
            }
            15 => {
                fan.entry["age"] = json!(12);
                fan.expected_reason = Some("INVALID_FIELD");
            }
            17 => {
                fan.market = "no-such-market".into();
                fan.expected_reason = Some("UNKNOWN_MARKET");
            }
            _ => {}
        }
        fan
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), DemoError> {
        crate::send(&self.http, &self.base, method, path, body).await
    }

    /// A request that must succeed (2xx).
    async fn ok(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, DemoError> {
        crate::send_ok(&self.http, &self.base, method, path, body).await
    }

    fn fields() -> Value {
        json!([
            {"name": "firstName", "type": "string", "required": true, "constraints": {"minLength": 1, "maxLength": 50}},
            {"name": "zip", "type": "string", "required": true, "constraints": {"minLength": 5, "maxLength": 5}},
            {"name": "age", "type": "integer", "required": true, "constraints": {"min": 16, "max": 120}},
            {"name": "newsletter", "type": "boolean", "required": false},
        ])
    }

    async fn set_up(&self) -> Result<(), DemoError> {
        use reqwest::Method;
        let campaign =
            |id: &str, slug: &str, status: &str, opens: i64, closes: i64, gate: Value| {
                json!({
                    "id": id, "slug": slug, "name": format!("Presale {slug}"), "status": status,
                    "opensAt": rfc3339(chrono::Duration::hours(opens)),
                    "closesAt": rfc3339(chrono::Duration::hours(closes)),
                    "gate": gate, "fields": Presale::fields(),
                })
            };
        let r = &self.run;
        let all = [
            campaign(
                &self.campaign,
                &self.slug,
                "OPEN",
                -1,
                24,
                json!({"type": "countries", "countries": COUNTRIES}),
            ),
            campaign(
                &format!("invite-{r}"),
                &format!("invite-{r}"),
                "OPEN",
                -1,
                24,
                json!({"type": "invite-only"}),
            ),
            campaign(
                &format!("draft-{r}"),
                &format!("draft-{r}"),
                "DRAFT",
                -1,
                24,
                json!({"type": "none"}),
            ),
            campaign(
                &format!("ended-{r}"),
                &format!("ended-{r}"),
                "OPEN",
                -48,
                -24,
                json!({"type": "none"}),
            ),
            campaign(
                &format!("future-{r}"),
                &format!("future-{r}"),
                "OPEN",
                24,
                48,
                json!({"type": "none"}),
            ),
        ];
        for c in &all {
            let id = c["id"].as_str().unwrap_or_default();
            self.ok(
                Method::PUT,
                &format!("/services/campaigns/campaigns/{id}"),
                Some(c),
            )
            .await?;
        }
        // Every campaign a fan may name has a market m1 (so UNKNOWN_MARKET is
        // only the fans naming a market that does not exist).
        for id in [
            format!("invite-{r}"),
            format!("draft-{r}"),
            format!("ended-{r}"),
            format!("future-{r}"),
        ] {
            self.put_market(&id, "m1", 1, 0).await?;
        }
        let invited: Vec<String> = self
            .fans
            .iter()
            .filter(|f| f.slug == format!("invite-{r}") && f.expected_reason.is_none())
            .map(|f| email(&f.user))
            .collect();
        for chunk in invited.chunks(1000) {
            self.ok(
                Method::PUT,
                &format!("/services/entries/campaigns/invite-{r}/invites"),
                Some(&json!({"emails": chunk})),
            )
            .await?;
        }
        for m in &self.markets {
            self.put_market(&self.campaign, &m.id, m.selection, m.waitlist)
                .await?;
            let codes: Vec<String> = (0..m.codes)
                .map(|n| format!("{}-{}-{n:07}", self.run, m.id))
                .collect();
            for chunk in codes.chunks(5000) {
                self.ok(
                    Method::POST,
                    &format!("/services/codes/pools/{}/{}/codes", self.campaign, m.id),
                    Some(&json!({"codes": chunk})),
                )
                .await?;
            }
        }
        eprintln!(
            "created campaign {} ({} markets, {} codes) and 4 campaigns no fan can enter",
            self.campaign,
            self.markets.len(),
            self.markets.iter().map(|m| m.codes).sum::<u64>()
        );
        Ok(())
    }

    async fn put_market(
        &self,
        campaign: &str,
        market: &str,
        selection: u64,
        waitlist: u64,
    ) -> Result<(), DemoError> {
        let body = json!({
            "id": market, "campaignId": campaign, "eventId": format!("evt-{market}"),
            "eventName": format!("Show {market}"), "venue": "Usher Arena",
            "selectionCount": selection, "waitlistCount": waitlist,
        });
        self.ok(
            reqwest::Method::PUT,
            &format!("/services/campaigns/campaigns/{campaign}/markets/{market}"),
            Some(&body),
        )
        .await
        .map(|_| ())
    }

    fn arguments(&self, fan: &Fan) -> Value {
        json!({
            "slug": fan.slug,
            "marketId": fan.market,
            "entry": fan.entry,
            "userInfo": {"globalUserId": fan.user, "email": email(&fan.user), "country": fan.country},
            "doTransfer": false,
        })
    }

    /// Every fan checks; the eligible ones submit. Returns the registered
    /// fans per market and the refusals per reason.
    async fn register(
        &self,
    ) -> Result<(BTreeMap<String, BTreeSet<String>>, BTreeMap<String, usize>), DemoError> {
        let progress = bar(self.fans.len() as u64, "registering");
        let results: Vec<Result<Registered, DemoError>> =
            stream::iter(self.fans.iter().enumerate())
                .map(|(i, fan)| {
                    let progress = &progress;
                    async move {
                        let args = json!({"arguments": self.arguments(fan)});
                        let check = self
                            .resolve("/resolvers/Query/checkEligibility", &args)
                            .await?;
                        let eligible = check["isEligible"].as_bool().unwrap_or(false);
                        let reason = check["reason"].as_str().map(str::to_string);
                        if eligible != fan.expected_reason.is_none()
                            || (!eligible && reason.as_deref() != fan.expected_reason)
                        {
                            return Err(failed(format!(
                                "{}: checkEligibility answered {check}, expected {}",
                                fan.user,
                                fan.expected_reason.unwrap_or("eligible")
                            )));
                        }
                        let mut submitted = false;
                        if eligible && !fan.check_only {
                            self.resolve("/resolvers/Mutation/submitEntry", &args)
                                .await?;
                            submitted = true;
                        } else if !eligible && i % 2 == 1 {
                            // Half of the refused fans try to submit anyway:
                            // submit-entry must refuse them too.
                            let (status, answer) = self
                                .attempts("/resolvers/Mutation/submitEntry", &args)
                                .await?;
                            if (200..300).contains(&status) && answer["reason"].is_null() {
                                return Err(failed(format!(
                                    "{}: submitEntry accepted an ineligible fan: {answer}",
                                    fan.user
                                )));
                            }
                        }
                        progress.inc(1);
                        Ok((i, reason, submitted))
                    }
                })
                .buffer_unordered(FAN_CONCURRENCY)
                .collect()
                .await;
        progress.finish_and_clear();
        let mut registered: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        for r in results {
            let (i, reason, submitted) = r?;
            if let Some(reason) = reason {
                *reasons.entry(reason).or_default() += 1;
            }
            if submitted {
                let fan = &self.fans[i];
                registered
                    .entry(fan.market.clone())
                    .or_default()
                    .insert(fan.user.clone());
            }
        }
        Ok((registered, reasons))
    }

    /// Every page of a paged Entry Service listing (`key` is the array).
    async fn pages(&self, path: &str, key: &str) -> Result<Vec<Value>, DemoError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut p = format!("{path}&limit=5000");
            if let Some(a) = &after {
                p.push_str(&format!("&after={a}"));
            }
            let page = self.ok(reqwest::Method::GET, &p, None).await?;
            out.extend(page[key].as_array().cloned().unwrap_or_default());
            match page["next"].as_str() {
                Some(n) => after = Some(n.to_string()),
                None => return Ok(out),
            }
        }
    }

    async fn market_entries(&self, market: &str) -> Result<Vec<Value>, DemoError> {
        self.pages(
            &format!(
                "/services/entries/markets/{market}/entries?campaignId={}",
                self.campaign
            ),
            "entries",
        )
        .await
    }

    async fn selections(&self, market: &str) -> Result<Vec<Value>, DemoError> {
        self.pages(
            &format!(
                "/services/entries/markets/{market}/selections?campaignId={}",
                self.campaign
            ),
            "selections",
        )
        .await
    }

    /// Waits until `done` says the stage is complete (polled every 250 ms).
    /// A market's code pool as the Code Service reports it (its counts).
    async fn code_pool(&self, market: &str) -> Result<Value, DemoError> {
        self.ok(
            reqwest::Method::GET,
            &format!("/services/codes/pools/{}/{market}", self.campaign),
            None,
        )
        .await
    }

    async fn wait<T, Fut>(
        &self,
        stage: &str,
        total: u64,
        mut poll: impl FnMut() -> Fut,
    ) -> Result<T, DemoError>
    where
        Fut: Future<Output = Result<(u64, Option<T>), DemoError>>,
    {
        let progress = bar(total, stage);
        let deadline = Instant::now() + self.timeout;
        let mut at = 0;
        loop {
            // A failed poll (the platform restarting, a request refused) is
            // not the end: the stage is polled again until the deadline.
            let mut last_error = None;
            match poll().await {
                Ok((now_at, done)) => {
                    at = now_at;
                    progress.set_position(at);
                    if let Some(v) = done {
                        progress.finish_and_clear();
                        return Ok(v);
                    }
                }
                Err(e) => last_error = Some(e),
            }
            if Instant::now() >= deadline {
                progress.finish_and_clear();
                return Err(failed(format!(
                    "{stage}: {at} of {total} after {} s{}",
                    self.timeout.as_secs(),
                    last_error
                        .map(|e| format!(" (last poll: {e})"))
                        .unwrap_or_default()
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// A resolver call as a fan's app makes it: retried (6 attempts, backoff
    /// from 200 ms) while the answer is a 5xx or a typed `…Unavailable`
    /// error (a service behind the resolver is down); the last answer.
    async fn attempts(&self, path: &str, args: &Value) -> Result<(u16, Value), DemoError> {
        const ATTEMPTS: u32 = 6;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (status, answer) = self.send(reqwest::Method::POST, path, Some(args)).await?;
            let transient = status >= 500
                || answer["errorType"]
                    .as_str()
                    .is_some_and(|t| t.ends_with("Unavailable"));
            if !transient || attempt >= ATTEMPTS {
                return Ok((status, answer));
            }
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
    }

    /// A resolver call (see [`Presale::attempts`]) that must succeed (2xx).
    async fn resolve(&self, path: &str, args: &Value) -> Result<Value, DemoError> {
        let (status, answer) = self.attempts(path, args).await?;
        if (200..300).contains(&status) {
            Ok(answer)
        } else {
            Err(failed(format!("POST {path}: {status} {answer}")))
        }
    }

    /// Runs the draw of every market through the selection workflow
    /// (`POST /workflows/selection/executions` with `{campaignId,
    /// marketIds}`; `workflows/selection.asl.json`: a Map over the markets,
    /// each draw a Task retried on transient errors, the Map run again
    /// while a draw answers errors) and polls the execution until it ends.
    /// The platform may be killed and restarted meanwhile: the execution
    /// resumes, so failed polls are retried until the demo's timeout. Each
    /// market's `{marketId, draw}` (`draw`: the worker's answer), in the order
    /// of the markets.
    async fn draws(&self) -> Result<Vec<Value>, DemoError> {
        const START: &str = "/workflows/selection/executions";
        let body = json!({
            "campaignId": self.campaign,
            "marketIds": self.markets.iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
        });
        let deadline = Instant::now() + self.timeout;
        let id = loop {
            match self.ok(reqwest::Method::POST, START, Some(&body)).await {
                Ok(answer) => match answer["executionId"].as_str() {
                    Some(id) => break id.to_string(),
                    None => {
                        return Err(failed(format!("POST {START}: no executionId in {answer}")))
                    }
                },
                Err(e) if Instant::now() < deadline => {
                    eprintln!("starting the selection workflow failed ({e}); again in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e),
            }
        };
        eprintln!("draw: selection workflow execution {id}");
        let path = format!("{START}/{id}");
        let mut last_error = None;
        loop {
            match self.ok(reqwest::Method::GET, &path, None).await {
                Ok(d) => {
                    let e = &d["execution"];
                    match e["status"].as_str() {
                        Some("SUCCEEDED") => {
                            let draws =
                                e["output"]["draws"].as_array().cloned().unwrap_or_default();
                            if draws.len() != self.markets.len() {
                                return Err(failed(format!(
                                    "the selection workflow answered {} draws for {} markets: {}",
                                    draws.len(),
                                    self.markets.len(),
                                    e["output"]
                                )));
                            }
                            return Ok(draws);
                        }
                        Some("RUNNING") => {}
                        _ => {
                            return Err(failed(format!(
                                "the selection workflow execution {id} ended {}: {}: {}",
                                e["status"],
                                e["error"].as_str().unwrap_or(""),
                                e["cause"].as_str().unwrap_or("")
                            )))
                        }
                    }
                }
                Err(e) => last_error = Some(e.to_string()),
            }
            if Instant::now() >= deadline {
                return Err(failed(format!(
                    "the selection workflow execution {id} did not end in {} s{}",
                    self.timeout.as_secs(),
                    last_error
                        .map(|e| format!(" (last poll: {e})"))
                        .unwrap_or_default()
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// demand-table's verdict and code of every selection are the Entry
    /// Service's.
    async fn same_in_demand_table(
        &self,
        tables: &EmbeddedTables,
        selections: &[Value],
    ) -> Result<(), DemoError> {
        for chunk in selections.chunks(100) {
            let keys: Vec<Value> = chunk
                .iter()
                .map(|s| {
                    json!({"PK": format!("ENTRY#{}#{}", self.campaign, s["globalUserId"].as_str().unwrap_or_default()), "SK": "ENTRY"})
                })
                .collect();
            let items =
                tables
                    .batch_get(TABLE, &keys)
                    .await
                    .map_err(|source| DemoError::Table {
                        what: format!("reading {TABLE}"),
                        source,
                    })?;
            for (s, item) in chunk.iter().zip(items) {
                let item = item.unwrap_or(Value::Null);
                if item["verdict"] != s["verdict"]
                    || item["accessCode"].as_str() != s["code"].as_str()
                {
                    return Err(failed(format!(
                        "demand-table disagrees with the Entry Service for {}: {} / {} vs {} / {}",
                        s["globalUserId"],
                        item["verdict"],
                        item["accessCode"],
                        s["verdict"],
                        s["code"]
                    )));
                }
            }
        }
        Ok(())
    }

    /// The data pipeline (campaign-service and submit-entry → data-queue →
    /// process-data → data-sns → send-data → the events capability): waits
    /// until the event log holds, per Kafka topic, a record of every
    /// campaign, market and registration of this run (by key; a retried
    /// request may send a record twice), and reports the counts.
    async fn analytics(
        &self,
        platform: &impl Platform,
        registered: &BTreeMap<String, BTreeSet<String>>,
    ) -> Result<Vec<String>, DemoError> {
        let Some(events) = platform.events() else {
            return Ok(vec![
                "  analytics           not checked (the events go to Kafka)".into(),
            ]);
        };
        let c = &self.campaign;
        let markets: BTreeSet<String> = self
            .markets
            .iter()
            .map(|m| format!("{c}/{}", m.id))
            .collect();
        let expected: BTreeMap<&str, BTreeSet<String>> = [
            ("prd2011.dmnd.campaigns", BTreeSet::from([c.clone()])),
            ("prd2011.dmnd.markets", markets.clone()),
            ("prd2011.dmnd.event-mappings", markets),
            (
                "prd2011.dmnd.registrations",
                registered
                    .values()
                    .flatten()
                    .map(|u| format!("{c}/{u}"))
                    .collect(),
            ),
            (
                "prd2011.dmnd.registered-markets",
                registered
                    .iter()
                    .flat_map(|(m, users)| users.iter().map(move |u| format!("{c}/{m}/{u}")))
                    .collect(),
            ),
        ]
        .into_iter()
        .collect();
        let total = expected.values().map(BTreeSet::len).sum::<usize>() as u64;
        let read_all = |topic: &'static str| {
            let events = events.clone();
            async move {
                let mut records = Vec::new();
                loop {
                    let page = events
                        .read(topic, records.len() as u64, 1000)
                        .await
                        .map_err(|source| DemoError::Table {
                            what: format!("reading the event log of {topic}"),
                            source,
                        })?;
                    if page.is_empty() {
                        return Ok::<_, DemoError>(records);
                    }
                    records.extend(page);
                }
            }
        };
        let counts: BTreeMap<&str, (usize, usize)> = self
            .wait("analytics records", total, || async {
                let mut found = 0u64;
                let mut counts = BTreeMap::new();
                for (topic, want) in &expected {
                    let records = read_all(topic).await?;
                    let keys: BTreeSet<&str> =
                        records.iter().filter_map(|r| r.key.as_deref()).collect();
                    let have = want.iter().filter(|k| keys.contains(k.as_str())).count();
                    found += have as u64;
                    counts.insert(*topic, (records.len(), have));
                }
                let done = counts
                    .iter()
                    .all(|(t, (_, have))| *have == expected[t].len());
                Ok((found, done.then_some(counts)))
            })
            .await?;
        Ok(counts
            .iter()
            .map(|(topic, (records, have))| {
                format!("  {topic:<32} {records:>6} record(s); {have} of this run's keys")
            })
            .collect())
    }

    async fn drive(&self, platform: &impl Platform) -> Result<(), DemoError> {
        let started = Instant::now();
        self.set_up().await?;
        let (registered, reasons) = self.register().await?;
        let submitted: usize = registered.values().map(BTreeSet::len).sum();
        eprintln!(
            "{} fans: {submitted} registered, {} refused ({} reasons) in {:.1} s",
            self.fans.len(),
            reasons.values().sum::<usize>(),
            reasons.len(),
            started.elapsed().as_secs_f64()
        );

        // Replication: every registered fan in the Entry Service, with a score.
        self.wait("replicating", submitted as u64, || async {
            let mut n = 0u64;
            let mut all = true;
            for m in &self.markets {
                let entries = self.market_entries(&m.id).await?;
                let want = registered.get(&m.id).map(BTreeSet::len).unwrap_or(0);
                let scored = entries.iter().filter(|e| e["score"].is_number()).count();
                n += scored.min(want) as u64;
                all &= scored == want && entries.len() == want;
            }
            Ok((n, all.then_some(())))
        })
        .await?;
        eprintln!(
            "replicated {submitted} entries ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
        let analytics = self.analytics(platform, &registered).await?;

        // The draw, per market.
        let mut draws = Vec::new();
        let answers = self.draws().await?;
        for (m, answer) in self.markets.iter().zip(answers) {
            let draw_id = answer["draw"]["stats"]["drawId"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("{}.{}", self.campaign, m.id));
            draws.push((m, draw_id));
        }
        let expected_winners: BTreeMap<&str, u64> = self
            .markets
            .iter()
            .map(|m| {
                let n = registered.get(&m.id).map(BTreeSet::len).unwrap_or(0) as u64;
                (m.id.as_str(), m.selection.min(n))
            })
            .collect();
        let total_winners: u64 = expected_winners.values().sum();

        // Codes assigned and marked through the stream. The pools last read
        // go into the error when the stage times out (what to look at when
        // codes were given but not marked).
        let pools_seen = std::sync::Mutex::new(String::new());
        let assigned = self
            .wait("assigning codes", total_winners, || async {
                let mut marked = 0u64;
                let mut all = true;
                let mut seen = Vec::new();
                for m in &self.markets {
                    let pool = self.code_pool(&m.id).await?;
                    let n = pool["marked"].as_u64().unwrap_or(0);
                    marked += n;
                    all &= n == expected_winners[m.id.as_str()];
                    seen.push(format!("{}: {pool}", m.id));
                }
                if let Ok(mut last) = pools_seen.lock() {
                    *last = seen.join("; ");
                }
                Ok((marked, all.then_some(())))
            })
            .await;
        if let Err(e) = assigned {
            let pools = pools_seen.lock().map(|p| p.clone()).unwrap_or_default();
            return Err(failed(format!("{e}; the code pools last read: {pools}")));
        }
        // The verdict counts reach the Campaign Service's market stats
        // (save-selections → verdict-reporter → report-verdicts): FINISHED,
        // and every batch's report counted once.
        self.wait("reporting verdicts", self.markets.len() as u64, || async {
            let mut done = 0u64;
            for m in &self.markets {
                let stats = self
                    .ok(
                        reqwest::Method::GET,
                        &format!(
                            "/services/campaigns/campaigns/{}/markets/{}/stats",
                            self.campaign, m.id
                        ),
                        None,
                    )
                    .await?;
                if stats["status"] == json!("FINISHED")
                    && stats["expected"].is_object()
                    && stats["reported"] == stats["expected"]
                {
                    done += 1;
                }
            }
            Ok((done, (done == self.markets.len() as u64).then_some(())))
        })
        .await?;
        let elapsed = started.elapsed();

        // Verification.
        let tables = platform.tables();
        let mut codes_seen: BTreeSet<String> = BTreeSet::new();
        let mut lines = Vec::new();
        for (m, draw_id) in &draws {
            let selections = self.selections(&m.id).await?;
            let mut winners = 0u64;
            let mut waitlisted = 0u64;
            for s in &selections {
                let verdict = s["verdict"].as_str().unwrap_or_default();
                let code = s["code"].as_str();
                match (verdict, code) {
                    ("WINNER", Some(c)) => {
                        winners += 1;
                        if !codes_seen.insert(c.to_string()) {
                            return Err(failed(format!("code {c} was given twice")));
                        }
                    }
                    ("WINNER", None) => {
                        return Err(failed(format!("winner {} has no code", s["globalUserId"])))
                    }
                    (_, Some(c)) => {
                        return Err(failed(format!(
                            "{} is {verdict} but holds code {c}",
                            s["globalUserId"]
                        )))
                    }
                    ("WAITLIST", None) => waitlisted += 1,
                    _ => {}
                }
            }
            self.same_in_demand_table(&tables, &selections).await?;
            let entries = registered.get(&m.id).map(BTreeSet::len).unwrap_or(0) as u64;
            if winners != expected_winners[m.id.as_str()] || selections.len() as u64 != entries {
                return Err(failed(format!(
                    "market {}: {winners} winners and {} selections, expected {} winners of {entries} entries",
                    m.id,
                    selections.len(),
                    expected_winners[m.id.as_str()]
                )));
            }
            let pool = self.code_pool(&m.id).await?;
            if pool["assigned"] != pool["marked"] || pool["marked"].as_u64() != Some(winners) {
                return Err(failed(format!(
                    "market {}: the Code Service has {} assigned and {} marked, {winners} winners",
                    m.id, pool["assigned"], pool["marked"]
                )));
            }
            // verify-draw reads every reservation from the Code Service: a
            // service error (503, a timeout) is retried, a mismatch is not
            // (that is a 200 with `matches: false`).
            let mut attempt = 0;
            let verify = loop {
                attempt += 1;
                let (status, answer) = self
                    .send(
                        reqwest::Method::POST,
                        "/invoke/selection/verify-draw",
                        Some(&json!({"drawId": draw_id})),
                    )
                    .await?;
                if (200..300).contains(&status) {
                    break answer;
                }
                let transient = status >= 500
                    || matches!(
                        answer["errorType"].as_str(),
                        Some("Unavailable" | "ServiceError")
                    );
                if !transient || attempt >= 6 {
                    return Err(failed(format!(
                        "POST /invoke/selection/verify-draw: {status} {answer}"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            };
            if verify["matches"] != json!(true) {
                return Err(failed(format!("draw {draw_id} does not verify: {verify}")));
            }
            lines.push(format!(
                "  market {:<6} {entries:>6} entries  {winners:>5} winners (selection count {})  {waitlisted:>4} waitlisted  draw {draw_id} verifies",
                m.id, m.selection
            ));
        }
        lines.push(self.notification_round().await?);

        println!("usher demo presale: verified (campaign {})", self.campaign);
        println!(
            "  fans                {} ({submitted} registered, {} refused)",
            self.fans.len(),
            reasons.values().sum::<usize>()
        );
        for (reason, n) in &reasons {
            println!("    refused {reason:<22} {n}");
        }
        for l in &lines {
            println!("{l}");
        }
        println!(
            "  codes               {} given, none twice; every winner exactly one; Code Service marked = assigned",
            codes_seen.len()
        );
        println!("  demand-table        every verdict and code = the Entry Service's");
        println!("  market stats        FINISHED; verdicts reported = the draw's counts");
        for l in &analytics {
            println!("{l}");
        }
        println!("  elapsed             {:.1} s", elapsed.as_secs_f64());
        for (worker, c) in platform.counters() {
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
        Ok(())
    }
}

fn email(user: &str) -> String {
    format!("{user}@fans.example")
}
