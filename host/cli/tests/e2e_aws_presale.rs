//! The presale's selection part on the AWS backends, against real servers
//! on 127.0.0.1 (started by `scripts/servers`), every worker the real
//! `usher lambda` binary against a local Lambda Runtime API, its component
//! fetched from an S3 component store (moto):
//!
//! ```text
//! Step Functions task ──► enqueue-market-selections (usher lambda) ──► draws (DynamoDB Local)
//!   {"campaignId","marketId",               ├─► Code/Campaign/Entry Services (usher up)
//!    "selectionCount"}                      └─► moto SQS save-selection
//! save-selection ──► save-selections (usher lambda) ──► Entry Service (codes, verdicts)
//!                                                   ├─► demand-table (DynamoDB Local)
//!                                                   └─► moto SQS verdict-reporter
//! verdict-reporter ──► report-verdicts (usher lambda) ──► Campaign Service
//! demand-table stream ──► mark-assigned-codes (usher lambda) ──► Code Service
//! ```
//!
//! The reference services (Entry, Code, Campaign) run under a `usher up`
//! child on its embedded backends; the functions reach them through
//! `USHER_SERVICE_<NAME>_URL`. The draw is invoked twice with the same
//! payload (a Step Functions retry): the second answer is the same draw
//! (same record, digests and counts), reserves nothing more and sends the
//! same batches again, which are saved and reported once; a third run asking
//! another count is refused (`record-mismatch`). Then every
//! winner has exactly one code, demand-table on DynamoDB holds the Entry
//! Service's verdicts and codes, the Code Service's marked = assigned =
//! winners, the market's stats are FINISHED with reported = expected, and
//! `selection/verify-draw` (as a function too) says the draw matches.
//!
//! Another test kills the draw's function the moment its record is on
//! DynamoDB and checks that the retry on a fresh instance follows the record.
//!
//! A third test runs `registration/submit-entry` and
//! `registration/check-eligibility` as functions invoked with AppSync direct
//! resolver events (submit-entry writing demand-table on DynamoDB Local with
//! conditional writes), and `registration/upsert-users` fed from moto's
//! user-info queue.

use crate::aws;
use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws::sources::{QueueSource, SourceStats, StreamSource, StreamTarget};
use aws::{Function, Provisioned, Servers};
use common::Platform;
use serde_json::{json, Value};
use usher_backend_aws::DynamoTables;
use usher_capabilities::TableBackend;

const MARKET: &str = "m1";
const ENTRIES: usize = 200;
const SELECTION: u64 = 50;
const WAITLIST: u64 = 20;
const CODES: u64 = 60;

/// How long the draw (and verify-draw) may take as a function.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(120);

/// A JSON request to `usher up`'s listener that must succeed (2xx).
async fn ok(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
) -> Value {
    let mut request = http.request(method.clone(), url);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status();
    let text = response.text().await.expect("an answer");
    assert!(status.is_success(), "{method} {url}: {status} {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {url}: not JSON ({e}): {text}"))
}

/// An open campaign with one market (`selection`, `waitlist`) and the
/// fields submit-entry checks.
async fn create_campaign(
    http: &reqwest::Client,
    base: &str,
    campaign: &str,
    selection: u64,
    waitlist: u64,
) {
    let body = json!({
        "id": campaign, "slug": campaign, "name": format!("Presale {campaign}"), "status": "OPEN",
        "opensAt": "2020-01-01T00:00:00Z", "closesAt": "2099-01-01T00:00:00Z",
        "gate": {"type": "none"},
        "fields": [
            {"name": "firstName", "type": "string", "required": true, "constraints": {"minLength": 1, "maxLength": 50}},
            {"name": "age", "type": "integer", "required": true, "constraints": {"min": 16, "max": 120}},
            {"name": "newsletter", "type": "boolean", "required": false},
        ],
    });
    ok(
        http,
        reqwest::Method::PUT,
        &format!("{base}/services/campaigns/campaigns/{campaign}"),
        Some(&body),
    )
    .await;
    let market = json!({
        "id": MARKET, "campaignId": campaign, "eventId": "evt-m1", "eventName": "Show m1",
        "venue": "Usher Arena", "selectionCount": selection, "waitlistCount": waitlist,
    });
    ok(
        http,
        reqwest::Method::PUT,
        &format!("{base}/services/campaigns/campaigns/{campaign}/markets/{MARKET}"),
        Some(&market),
    )
    .await;
}

/// Every page of an Entry Service market listing (`key`: the array).
async fn pages(http: &reqwest::Client, url: &str, key: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut page_url = format!("{url}&limit=1000");
        if let Some(a) = &after {
            page_url.push_str(&format!("&after={a}"));
        }
        let page = ok(http, reqwest::Method::GET, &page_url, None).await;
        out.extend(page[key].as_array().cloned().unwrap_or_default());
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => return out,
        }
    }
}

fn user(n: usize) -> String {
    format!("fan-{n:04}")
}

/// The demand-table key of a fan's entry.
fn key(campaign: &str, user: &str) -> Value {
    json!({"PK": format!("ENTRY#{campaign}#{user}"), "SK": "ENTRY"})
}

/// The `USHER_SERVICE_<NAME>_URL` of a reference service under `usher up`.
fn service_env(base: &str, name: &str) -> (String, String) {
    (
        format!("USHER_SERVICE_{}_URL", name.to_uppercase()),
        format!("{base}/services/{name}"),
    )
}

/// `workers` deployed as `usher lambda` functions on the servers (their
/// resources provisioned, components on S3), the reference services under
/// `usher up` (embedded), the functions' environment reaching `services`
/// there, and the AWS tables for the test.
async fn deploy(
    servers: &Servers,
    workers: &[&str],
    services: &[&str],
) -> (
    Platform,
    Provisioned,
    Vec<(String, String)>,
    Arc<DynamoTables>,
) {
    let mut platform = Platform::new(|_, text| text);
    platform.start().await;
    let registry = platform.registry();
    let deployed = Provisioned::new(servers, &platform, workers).await;
    let services: Vec<(String, String)> = services
        .iter()
        .map(|name| service_env(&platform.base, name))
        .collect();
    let services: Vec<(&str, &str)> = services
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let env = deployed.function_env(&platform, &services);
    let tables = servers
        .backends(&registry.resources, &deployed.prefix)
        .await
        .tables();
    (platform, deployed, env, tables)
}

/// The selection workers deployed (see [`deploy`]), reaching the Entry,
/// Campaign and Code Services.
async fn deploy_selection(
    servers: &Servers,
) -> (
    Platform,
    Provisioned,
    Vec<(String, String)>,
    Arc<DynamoTables>,
) {
    deploy(
        servers,
        &[
            "selection/enqueue-market-selections",
            "selection/save-selections",
            "selection/report-verdicts",
            "selection/mark-assigned-codes",
            "selection/verify-draw",
        ],
        &["entries", "campaigns", "codes"],
    )
    .await
}

/// The campaign (its market asking `SELECTION - 10` winners), the code
/// pool of `CODES`, `ENTRIES` entries with their scores in the Entry Service
/// and the same entries in demand-table (`tables`). Returns the codes.
async fn seed_market(
    http: &reqwest::Client,
    base: &str,
    tables: &dyn TableBackend,
    campaign: &str,
) -> Vec<String> {
    // The market says fewer winners than the Step Functions payload: the
    // payload's count wins (as the seed's payload carries it).
    create_campaign(http, base, campaign, SELECTION - 10, WAITLIST).await;
    let codes: Vec<String> = (0..CODES)
        .map(|n| format!("{campaign}-code-{n:04}"))
        .collect();
    let loaded = ok(
        http,
        reqwest::Method::POST,
        &format!("{base}/services/codes/pools/{campaign}/{MARKET}/codes"),
        Some(&json!({"codes": codes})),
    )
    .await;
    assert_eq!(loaded["loaded"], json!(CODES), "{loaded}");
    let users: Vec<String> = (0..ENTRIES).map(user).collect();
    let entry = |n: usize| {
        // Scores spread over the fields given and the version.
        let mut fields = json!({"firstName": format!("Fan{n}"), "age": 18 + n % 60});
        if n.is_multiple_of(3) {
            fields["newsletter"] = json!(true);
        }
        fields
    };
    for chunk in (0..ENTRIES).collect::<Vec<_>>().chunks(25) {
        let entries: Vec<Value> = chunk
            .iter()
            .map(|&n| {
                json!({
                    "campaignId": campaign, "globalUserId": users[n], "marketId": MARKET,
                    "version": 1 + n % 7, "entry": entry(n),
                })
            })
            .collect();
        let upserted = ok(
            http,
            reqwest::Method::POST,
            &format!("{base}/services/entries/entries/batch-upsert"),
            Some(&json!({"entries": entries, "refreshScores": true})),
        )
        .await;
        assert_eq!(upserted["upserted"], json!(chunk.len()), "{upserted}");
        assert_eq!(upserted["scoreFailures"], json!([]), "{upserted}");
    }
    let listed = pages(
        http,
        &format!("{base}/services/entries/markets/{MARKET}/entries?campaignId={campaign}"),
        "entries",
    )
    .await;
    assert_eq!(listed.len(), ENTRIES);
    assert!(listed.iter().all(|e| e["score"].is_u64()), "{listed:?}");
    for (n, user) in users.iter().enumerate() {
        let mut item = key(campaign, user);
        let fields = json!({
            "campaignId": campaign, "globalUserId": user, "marketId": MARKET,
            "entry": entry(n), "email": format!("{user}@fans.example"), "verdict": "PENDING",
            "needsReplication": false, "version": 1 + n % 7,
            "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z",
        });
        if let (Some(item), Some(fields)) = (item.as_object_mut(), fields.as_object()) {
            item.extend(fields.clone());
        }
        tables
            .put("demand-table", item, None)
            .await
            .expect("a demand-table entry");
    }
    codes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_selection_runs_as_lambda_functions_on_the_aws_backends() {
    let Some(servers) = Servers::from_env() else {
        return;
    };
    let (mut platform, deployed, env, tables) = deploy_selection(&servers).await;
    let base = platform.base.clone();
    let dir = platform.tmp.path().to_path_buf();
    let mut enqueue = Function::start("selection/enqueue-market-selections", 1, &env, &dir).await;
    let mut save = Function::start("selection/save-selections", 2, &env, &dir).await;
    let mut report = Function::start("selection/report-verdicts", 1, &env, &dir).await;
    let mut mark = Function::start("selection/mark-assigned-codes", 1, &env, &dir).await;
    let mut verify = Function::start("selection/verify-draw", 1, &env, &dir).await;

    // The campaign, its market, the code pool, the entries with their
    // scores in the Entry Service and the same entries in demand-table.
    let http = reqwest::Client::new();
    let campaign = format!("c-aws-presale-{}", std::process::id());
    let codes = seed_market(&http, &base, tables.as_ref(), &campaign).await;

    // The event-source mappings: two pollers of save-selection, one of
    // verdict-reporter, the demand-table stream.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let save_stats = Arc::new(SourceStats::default());
    let report_stats = Arc::new(SourceStats::default());
    let stream_stats = Arc::new(SourceStats::default());
    let mut sources = Vec::new();
    for (queue, function, stats, pollers) in [
        ("save-selection", &save, &save_stats, 2),
        ("verdict-reporter", &report, &report_stats, 1),
    ] {
        for _ in 0..pollers {
            sources.push(tokio::spawn(
                QueueSource {
                    client: servers.sqs().await,
                    queue_url: deployed.resource("queues", queue, "physical"),
                    queue_arn: deployed.resource("queues", queue, "arn"),
                    batch_size: 10,
                }
                .run(function.api.clone(), stats.clone(), stopped.clone()),
            ));
        }
    }
    sources.push(tokio::spawn(
        StreamSource {
            client: servers.streams().await,
            stream_arn: deployed.resource("tables", "demand-table", "arn"),
            batch_size: 100,
            max_retries: 3,
        }
        .run(
            StreamTarget::Function(mark.api.clone()),
            stream_stats.clone(),
            stopped.clone(),
        ),
    ));
    let context = |what: &str| {
        format!(
            "{what}\nsave-selection source: {}\nverdict-reporter source: {}\nstream source: {}\n{}\n{}\n{}\n{}\nusher up:\n{}",
            save_stats.summary(),
            report_stats.summary(),
            stream_stats.summary(),
            enqueue.logs(),
            save.logs(),
            report.logs(),
            mark.logs(),
            common::tail(&platform.log(), 30)
        )
    };

    // A payload the draw refuses: an invocation error, nothing drawn.
    let refused = enqueue
        .api
        .invoke(json!({"campaignId": campaign}), INVOKE_TIMEOUT)
        .await;
    let refused = refused.expect_err("a payload without marketId is refused");
    assert_eq!(refused.error_type, "InvalidInput", "{refused:?}");

    // The Step Functions task: the state's input as the payload (the
    // seed's `{campaignId, marketId, selectionCount}`), then the same
    // payload again (a retry after a lost answer).
    let payload = json!({"campaignId": campaign, "marketId": MARKET, "selectionCount": SELECTION});
    let first = enqueue
        .api
        .invoke(payload.clone(), INVOKE_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{}", context(&format!("the draw failed: {e:?}"))));
    assert_eq!(first["errors"], json!([]), "{first}");
    let stats = &first["stats"];
    let draw_id = format!("{campaign}.{MARKET}");
    assert_eq!(stats["drawId"], json!(draw_id), "{first}");
    assert_eq!(stats["existingRecord"], json!(false), "{first}");
    assert_eq!(stats["entries"], json!(ENTRIES), "{first}");
    assert_eq!(stats["winners"], json!(SELECTION), "{first}");
    assert_eq!(stats["waitlist"], json!(WAITLIST), "{first}");
    assert_eq!(
        stats["losers"],
        json!(ENTRIES as u64 - SELECTION - WAITLIST),
        "{first}"
    );
    assert_eq!(stats["reservations"], json!(1), "{first}");
    // Every selection enqueued, in SelectionBatch messages of at most 25.
    assert_eq!(stats["enqueued"], json!(ENTRIES), "{first}");
    assert_eq!(stats["batches"], json!(ENTRIES.div_ceil(25)), "{first}");
    assert_eq!(stats["status"], json!("ENQUEUED"), "{first}");
    assert_eq!(stats["finished"], json!(true), "{first}");

    let again = enqueue
        .api
        .invoke(payload.clone(), INVOKE_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{}", context(&format!("the retried draw failed: {e:?}"))));
    assert_eq!(again["errors"], json!([]), "{again}");
    assert_eq!(again["stats"]["existingRecord"], json!(true), "{again}");
    // The retry sends the same batches again (the save side is idempotent).
    assert_eq!(again["stats"]["enqueued"], json!(ENTRIES), "{again}");
    for field in [
        "drawId",
        "seed",
        "inputDigest",
        "resultDigest",
        "entries",
        "winners",
        "waitlist",
        "losers",
        "reservations",
    ] {
        assert_eq!(
            again["stats"][field], stats[field],
            "{field}: {first}\n{again}"
        );
    }
    // A retry asking another count is refused: the draw is made.
    let mut other = payload.clone();
    other["selectionCount"] = json!(SELECTION - 1);
    let mismatch = enqueue
        .api
        .invoke(other, INVOKE_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{}", context(&format!("the third run failed: {e:?}"))));
    assert_eq!(
        mismatch["errors"][0]["reason"],
        json!("record-mismatch"),
        "{mismatch}"
    );
    // One reservation of the winners' codes, not two.
    let pool_url = format!("{base}/services/codes/pools/{campaign}/{MARKET}");
    let pool = ok(&http, reqwest::Method::GET, &pool_url, None).await;
    assert_eq!(pool["total"], json!(CODES), "{pool}");
    assert_eq!(pool["available"], json!(CODES - SELECTION), "{pool}");
    let second_reservation = http
        .get(format!("{base}/services/codes/reservations/{draw_id}%231"))
        .send()
        .await
        .expect("GET reservation");
    assert_eq!(second_reservation.status().as_u16(), 404);
    // The record on DynamoDB.
    let record = tables
        .get(
            "draws",
            &json!({"PK": format!("DRAW#{draw_id}"), "SK": "RECORD"}),
        )
        .await
        .expect("get the draw record")
        .expect("the draw record on DynamoDB");
    assert_eq!(record["resultDigest"], stats["resultDigest"], "{record}");
    assert_eq!(record["inputDigest"], stats["inputDigest"], "{record}");

    // The codes are assigned and marked, the verdicts reported, both
    // sends of every batch saved (the queues drained).
    let stats_url =
        format!("{base}/services/campaigns/campaigns/{campaign}/markets/{MARKET}/stats");
    let queue_urls: Vec<String> = ["save-selection", "verdict-reporter"]
        .iter()
        .map(|q| deployed.resource("queues", q, "physical"))
        .collect();
    let batches = stats["batches"].as_u64().expect("batches");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let pool = ok(&http, reqwest::Method::GET, &pool_url, None).await;
        let market = ok(&http, reqwest::Method::GET, &stats_url, None).await;
        let mut drained = SourceStats::get(&save_stats.records) >= 2 * batches;
        for url in &queue_urls {
            drained &= servers.depth(url).await == 0;
        }
        if drained
            && pool["marked"] == json!(SELECTION)
            && market["status"] == json!("FINISHED")
            && market["expected"].is_object()
            && market["reported"] == market["expected"]
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            context(&format!(
                "not converged after 180 s: pool {pool}, stats {market}"
            ))
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Every winner exactly one code, no code twice, no code elsewhere.
    let selections = pages(
        &http,
        &format!("{base}/services/entries/markets/{MARKET}/selections?campaignId={campaign}"),
        "selections",
    )
    .await;
    assert_eq!(selections.len(), ENTRIES, "{selections:?}");
    let mut given = BTreeSet::new();
    let mut counts = [0u64; 3];
    for s in &selections {
        match (s["verdict"].as_str(), s["code"].as_str()) {
            (Some("WINNER"), Some(code)) => {
                counts[0] += 1;
                assert!(given.insert(code.to_string()), "{code} given twice");
                assert!(codes.iter().any(|c| c == code), "{code} is not in the pool");
            }
            (Some("WAITLIST"), None) => counts[1] += 1,
            (Some("LOSER"), None) => counts[2] += 1,
            _ => panic!("a selection out of place: {s}"),
        }
        assert_eq!(s["drawId"], json!(draw_id), "{s}");
    }
    assert_eq!(
        counts,
        [SELECTION, WAITLIST, ENTRIES as u64 - SELECTION - WAITLIST]
    );
    // demand-table on DynamoDB: the same verdicts and codes.
    for s in &selections {
        let user = s["globalUserId"].as_str().expect("a fan");
        let item = tables
            .get("demand-table", &key(&campaign, user))
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("{user} is not in demand-table"));
        assert_eq!(item["verdict"], s["verdict"], "{user}: {item} vs {s}");
        assert_eq!(
            item["accessCode"].as_str(),
            s["code"].as_str(),
            "{user}: {item} vs {s}"
        );
        assert_eq!(item["drawId"], json!(draw_id), "{user}: {item}");
    }
    // The Code Service: assigned = marked = winners.
    let pool = ok(&http, reqwest::Method::GET, &pool_url, None).await;
    assert_eq!(pool["assigned"], json!(SELECTION), "{pool}");
    assert_eq!(pool["marked"], json!(SELECTION), "{pool}");
    assert_eq!(pool["reserved"], json!(0), "{pool}");
    // The market's stats: FINISHED, every count the draw's.
    let market = ok(&http, reqwest::Method::GET, &stats_url, None).await;
    assert_eq!(market["status"], json!("FINISHED"), "{market}");
    assert_eq!(market["drawId"], json!(draw_id), "{market}");
    assert_eq!(market["reported"], market["expected"], "{market}");

    // The draw verifies (verify-draw as a function: it reads the draws
    // table on DynamoDB).
    let verified = verify
        .api
        .invoke(json!({"drawId": draw_id}), INVOKE_TIMEOUT)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{}",
                context(&format!("verify-draw failed: {e:?}\n{}", verify.logs()))
            )
        });
    assert_eq!(verified["matches"], json!(true), "{verified}");
    assert_eq!(
        verified["selections"]["complete"],
        json!(true),
        "{verified}"
    );
    let unknown = verify
        .api
        .invoke(
            json!({"drawId": format!("{campaign}.nowhere")}),
            INVOKE_TIMEOUT,
        )
        .await
        .expect_err("no such draw");
    assert_eq!(unknown.error_type, "NotFound", "{unknown:?}");

    // Nothing failed, nothing was given up, no dead letters, the queues
    // are empty.
    for (name, stats) in [
        ("save-selection", &save_stats),
        ("verdict-reporter", &report_stats),
        ("stream", &stream_stats),
    ] {
        assert_eq!(
            SourceStats::get(&stats.errors) + SourceStats::get(&stats.item_failures),
            0,
            "{}",
            context(&format!("{name} had failures"))
        );
    }
    assert_eq!(SourceStats::get(&stream_stats.given_up), 0);
    for queue in [
        "save-selection",
        "save-selection-dlq",
        "verdict-reporter",
        "verdict-reporter-dlq",
    ] {
        let url = deployed.resource("queues", queue, "physical");
        assert_eq!(servers.depth(&url).await, 0, "{queue}");
    }
    for function in [&mut enqueue, &mut save, &mut report, &mut mark, &mut verify] {
        function.assert_running();
    }
    stop.send(true).expect("stop the sources");
    for source in sources {
        source.await.expect("a source");
    }
    platform.stop().await;
}

/// The draw's function is killed (`kill -9`: a crash, or Lambda ending a
/// timed-out invocation) the moment its record is on DynamoDB, in the
/// middle of reserving codes and enqueueing; the Step Functions retry on a
/// fresh instance follows the record: the same draw, one reservation, every
/// selection enqueued, the market FINISHED. (The record's status at the
/// kill is printed: usually DRAWN or RESERVED.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_draw_survives_its_function_killed_mid_draw_on_the_aws_backends() {
    let Some(servers) = Servers::from_env() else {
        return;
    };
    let (mut platform, deployed, env, tables) = deploy_selection(&servers).await;
    let base = platform.base.clone();
    let dir = platform.tmp.path().to_path_buf();
    let http = reqwest::Client::new();
    let campaign = format!("c-aws-crash-{}", std::process::id());
    seed_market(&http, &base, tables.as_ref(), &campaign).await;
    let payload = json!({"campaignId": campaign, "marketId": MARKET, "selectionCount": SELECTION});
    let draw_id = format!("{campaign}.{MARKET}");
    let record_key = json!({"PK": format!("DRAW#{draw_id}"), "SK": "RECORD"});

    let mut crashing = Function::start("selection/enqueue-market-selections", 1, &env, &dir).await;
    let api = crashing.api.clone();
    let first_payload = payload.clone();
    let lost = tokio::spawn(async move { api.invoke(first_payload, INVOKE_TIMEOUT).await });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status_at_kill = loop {
        if let Some(record) = tables.get("draws", &record_key).await.expect("get") {
            crashing.kill();
            break record["status"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no draw record after 60 s:\n{}",
            crashing.logs()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    eprintln!(
        "killed the draw with its record {status_at_kill}; its answer {}",
        if lost.is_finished() {
            "had come"
        } else {
            "never came"
        }
    );
    lost.abort();

    // The retry, on a fresh instance.
    let retry = Function::start("selection/enqueue-market-selections", 1, &env, &dir).await;
    let answer = retry
        .api
        .invoke(payload, INVOKE_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("the retried draw failed: {e:?}\n{}", retry.logs()));
    assert_eq!(answer["errors"], json!([]), "{answer}");
    let stats = &answer["stats"];
    assert_eq!(stats["existingRecord"], json!(true), "{answer}");
    assert_eq!(stats["winners"], json!(SELECTION), "{answer}");
    assert_eq!(stats["enqueued"], json!(ENTRIES), "{answer}");
    assert_eq!(stats["status"], json!("ENQUEUED"), "{answer}");
    let record = tables
        .get("draws", &record_key)
        .await
        .expect("get")
        .expect("the record");
    assert_eq!(record["resultDigest"], stats["resultDigest"], "{record}");
    assert_eq!(record["status"], json!("ENQUEUED"), "{record}");
    // One reservation: the killed run's, reused.
    let pool = ok(
        &http,
        reqwest::Method::GET,
        &format!("{base}/services/codes/pools/{campaign}/{MARKET}"),
        None,
    )
    .await;
    assert_eq!(pool["available"], json!(CODES - SELECTION), "{pool}");
    assert_eq!(pool["reserved"], json!(SELECTION), "{pool}");
    let market = ok(
        &http,
        reqwest::Method::GET,
        &format!("{base}/services/campaigns/campaigns/{campaign}/markets/{MARKET}/stats"),
        None,
    )
    .await;
    assert_eq!(market["status"], json!("FINISHED"), "{market}");
    assert_eq!(market["drawId"], json!(draw_id), "{market}");
    // Every batch is on moto's save-selection queue (the killed run's too,
    // when it got that far: the save side is idempotent).
    let queue = deployed.resource("queues", "save-selection", "physical");
    let batches = stats["batches"].as_u64().expect("batches");
    assert!(servers.depth(&queue).await >= batches);
    platform.stop().await;
}

/// An AppSync direct Lambda resolver event for `Mutation.submitEntry`, as
/// AppSync sends it (aws_lambda_events' `AppSyncDirectResolverEvent`).
fn appsync_event(field: &str, arguments: Value) -> Value {
    json!({
        "arguments": arguments,
        "identity": null,
        "source": null,
        "request": {
            "headers": {"content-type": "application/json", "x-amzn-requestid": "e2e"},
            "domainName": null,
        },
        "info": {
            "selectionSetList": ["isEligible", "reason", "version"],
            "selectionSetGraphQL": "{ isEligible reason version }",
            "parentTypeName": "Mutation",
            "fieldName": field,
            "variables": {},
        },
        "prev": null,
        "stash": {},
    })
}

/// `registration/submit-entry` as an `usher lambda` function (two
/// instances) behind AppSync: direct resolver events, the entry written to
/// demand-table on DynamoDB Local with a conditional write, a resubmission
/// raising the version, an identical one writing nothing, concurrent ones
/// each getting their own version, a refusal writing nothing, the user
/// record through moto's user-info queue to the User Service
/// (`registration/upsert-users` as a function); `Query.checkEligibility`
/// (`registration/check-eligibility`) as a resolver function too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn submit_entry_runs_as_an_appsync_resolver_on_the_aws_backends() {
    let Some(servers) = Servers::from_env() else {
        return;
    };
    let (mut platform, deployed, env, tables) = deploy(
        &servers,
        &[
            "registration/submit-entry",
            "registration/check-eligibility",
            "registration/upsert-users",
        ],
        &["entries", "campaigns"],
    )
    .await;
    let base = platform.base.clone();
    let mut submit =
        Function::start("registration/submit-entry", 2, &env, platform.tmp.path()).await;
    let mut check = Function::start(
        "registration/check-eligibility",
        1,
        &env,
        platform.tmp.path(),
    )
    .await;
    let mut users_env = env.clone();
    users_env.push(service_env(&base, "users"));
    let mut upsert = Function::start(
        "registration/upsert-users",
        1,
        &users_env,
        platform.tmp.path(),
    )
    .await;
    // user-info ──► upsert-users, through the SQS event-source mapping.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let users_stats = Arc::new(SourceStats::default());
    let users_source = tokio::spawn(
        QueueSource {
            client: servers.sqs().await,
            queue_url: deployed.resource("queues", "user-info", "physical"),
            queue_arn: deployed.resource("queues", "user-info", "arn"),
            batch_size: 10,
        }
        .run(upsert.api.clone(), users_stats.clone(), stopped),
    );
    let http = reqwest::Client::new();
    let campaign = format!("c-aws-submit-{}", std::process::id());
    create_campaign(&http, &base, &campaign, 1, 0).await;

    let arguments = |user: &str, first_name: &str| {
        json!({
            "slug": campaign, "marketId": MARKET,
            "entry": {"firstName": first_name, "age": 30},
            "userInfo": {"globalUserId": user, "email": format!("{user}@fans.example"), "country": "US"},
        })
    };
    let call = |event: Value| {
        let api = submit.api.clone();
        async move { api.invoke(event, Duration::from_secs(30)).await }
    };

    // Query.checkEligibility, the same way.
    let mut event = appsync_event("checkEligibility", arguments("ada", "Ada"));
    event["info"]["parentTypeName"] = json!("Query");
    let eligible = check
        .api
        .invoke(event, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", check.logs()));
    assert_eq!(eligible["isEligible"], json!(true), "{eligible}");
    assert_eq!(eligible["campaignId"], json!(campaign), "{eligible}");

    // A new entry: version 1, written under "no such item".
    let created = call(appsync_event("submitEntry", arguments("ada", "Ada")))
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", submit.logs()));
    assert_eq!(created["isEligible"], json!(true), "{created}");
    assert_eq!(created["created"], json!(true), "{created}");
    assert_eq!(created["version"], json!(1), "{created}");
    let item = tables
        .get("demand-table", &key(&campaign, "ada"))
        .await
        .expect("get")
        .expect("the entry on DynamoDB");
    assert_eq!(item["version"], json!(1), "{item}");
    assert_eq!(item["verdict"], json!("PENDING"), "{item}");
    assert_eq!(item["needsReplication"], json!(true), "{item}");
    assert_eq!(item["marketId"], json!(MARKET), "{item}");
    assert_eq!(item["entry"]["firstName"], json!("Ada"), "{item}");
    let created_at = item["createdAt"].clone();

    // The same submission again (a client's retry): nothing written.
    let same = call(appsync_event("submitEntry", arguments("ada", "Ada")))
        .await
        .expect("a retry");
    assert_eq!(same["unchanged"], json!(true), "{same}");
    assert_eq!(same["version"], json!(1), "{same}");

    // A changed resubmission: version 2, createdAt kept.
    let changed = call(appsync_event("submitEntry", arguments("ada", "Augusta")))
        .await
        .expect("a resubmission");
    assert_eq!(changed["created"], json!(false), "{changed}");
    assert_eq!(changed["version"], json!(2), "{changed}");
    let item = tables
        .get("demand-table", &key(&campaign, "ada"))
        .await
        .expect("get")
        .expect("the entry");
    assert_eq!(item["version"], json!(2), "{item}");
    assert_eq!(item["entry"]["firstName"], json!("Augusta"), "{item}");
    assert_eq!(item["createdAt"], created_at, "{item}");

    // Concurrent resubmissions on both instances: each its own version,
    // none lost.
    let names = ["B1", "B2", "B3", "B4", "B5", "B6"];
    let handles: Vec<_> = names
        .iter()
        .map(|name| tokio::spawn(call(appsync_event("submitEntry", arguments("ada", name)))))
        .collect();
    let mut answers = Vec::new();
    for handle in handles {
        answers.push(handle.await.expect("a submission"));
    }
    let mut versions: Vec<u64> = answers
        .iter()
        .map(|a| {
            a.as_ref()
                .map_err(|e| format!("{e:?}"))
                .and_then(|a| a["version"].as_u64().ok_or(a.to_string()))
                .unwrap_or_else(|e| panic!("{e}\n{}", submit.logs()))
        })
        .collect();
    versions.sort_unstable();
    assert_eq!(versions, (3..3 + names.len() as u64).collect::<Vec<_>>());
    let item = tables
        .get("demand-table", &key(&campaign, "ada"))
        .await
        .expect("get")
        .expect("the entry");
    assert_eq!(item["version"], json!(2 + names.len()), "{item}");

    // A refusal: answered, nothing written.
    let mut missing = arguments("bob", "Bob");
    missing["entry"] = json!({"firstName": "Bob"});
    let refused = call(appsync_event("submitEntry", missing))
        .await
        .expect("a refusal is an answer");
    assert_eq!(refused["isEligible"], json!(false), "{refused}");
    assert_eq!(refused["reason"], json!("MISSING_FIELD"), "{refused}");
    assert!(tables
        .get("demand-table", &key(&campaign, "bob"))
        .await
        .expect("get")
        .is_none());

    // An event for another field is not this function's.
    let wrong = call(appsync_event("checkEligibility", arguments("eve", "Eve")))
        .await
        .expect_err("an event for another field");
    assert!(wrong.message.contains("submitEntry"), "{wrong:?}");

    // The user record went through moto's user-info queue to the User
    // Service (upsert-users as a function); the queue drains, nothing in
    // its dead-letter queue.
    let user_url = format!("{base}/services/users/users/ada");
    let users_queue = deployed.resource("queues", "user-info", "physical");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = http.get(&user_url).send().await.expect("GET user");
        if found.status().is_success() && servers.depth(&users_queue).await == 0 {
            let found: Value = found.json().await.expect("a user");
            assert_eq!(found["email"], json!("ada@fans.example"), "{found}");
            assert_eq!(found["country"], json!("US"), "{found}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ada never reached the User Service: {}\n{}",
            users_stats.summary(),
            upsert.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let dlq = deployed.resource("queues", "user-info-dlq", "physical");
    assert_eq!(servers.depth(&dlq).await, 0);
    assert_eq!(
        SourceStats::get(&users_stats.errors) + SourceStats::get(&users_stats.item_failures),
        0,
        "{}\n{}",
        users_stats.summary(),
        upsert.logs()
    );
    for function in [&mut submit, &mut check, &mut upsert] {
        function.assert_running();
    }
    stop.send(true).expect("stop the source");
    users_source.await.expect("the source");
    platform.stop().await;
}
