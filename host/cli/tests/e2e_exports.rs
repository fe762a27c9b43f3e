//! The export service end to end (issue 13) with two `usher up` instances
//! on one data folder and a `kill -9` of one while it streams an export:
//! every job ends FINISHED with exactly one file (whose rows match the
//! job's row count), a job abandoned by the killed runner is claimed again
//! (fencing grows), none is left PENDING or TRIGGERED; and the listener's
//! JWT check: 401 without or with a bad token, `/heartbeat` open,
//! `/dev/token` only with `--dev-tokens`.

use crate::common;

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::Platform;
use futures::stream::{self, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use usher_capabilities::{ObjectBackend, TableBackend};

const CAMPAIGN: &str = "c-exports";
const FANS: usize = 12_000;

async fn send(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    match req.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        }
        Err(e) => (0, Value::String(e.to_string())),
    }
}

/// A second `usher up` on the platform's data folder, its own port.
fn second_instance(platform: &Platform, port: u16) -> Child {
    let log = std::fs::File::create(platform.tmp.path().join("up-b.log")).expect("log");
    platform
        .usher(&["up"])
        .arg("--data")
        .arg(&platform.data)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env("USHER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("usher up (b) starts")
}

async fn wait_up(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while send(http, Method::GET, &format!("{base}/heartbeat"), None, None)
        .await
        .0
        != 200
    {
        assert!(Instant::now() < deadline, "{base} did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn job(tables: &dyn TableBackend, id: &str) -> Value {
    tables
        .get(
            "exports",
            &json!({"PK": format!("CAMPAIGN#{CAMPAIGN}"), "SK": format!("EXPORT#{id}")}),
        )
        .await
        .expect("get")
        .expect("job")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_and_a_kill9_leave_exactly_one_finished_file_per_job() {
    let mut platform = Platform::new(|name, text| {
        if name != "exports.yaml" {
            return text;
        }
        text.replace("cron: \"0 * * * * *\"", "cron: \"* * * * * *\"")
            .replace("lease_ms: 30000", "lease_ms: 2000")
            .replace("page_size: 5000", "page_size: 200")
            .replace("resend_after_ms: 60000", "resend_after_ms: 3000")
    });
    platform.up_args = vec!["--dev-tokens".into()];
    platform.start().await;
    let http = reqwest::Client::new();
    let a = platform.base.clone();

    // The campaign, two markets, FANS entries in m1 and 10 in m2.
    let campaign = json!({"id": CAMPAIGN, "slug": CAMPAIGN, "name": "Exports", "status": "OPEN",
        "opensAt": "2026-01-01T00:00:00.000Z", "closesAt": "2036-01-01T00:00:00.000Z",
        "gate": {"type": "none"}, "fields": [{"name": "size", "type": "string"}]});
    let put = send(
        &http,
        Method::PUT,
        &format!("{a}/services/campaigns/campaigns/{CAMPAIGN}"),
        None,
        Some(&campaign),
    )
    .await;
    assert_eq!(put.0, 200, "{put:?}");
    for m in ["m1", "m2"] {
        let market = json!({"id": m, "campaignId": CAMPAIGN, "eventId": format!("e-{m}"), "eventName": format!("Show, {m}"), "selectionCount": 10});
        let put = send(
            &http,
            Method::PUT,
            &format!("{a}/services/campaigns/campaigns/{CAMPAIGN}/markets/{m}"),
            None,
            Some(&market),
        )
        .await;
        assert_eq!(put.0, 200, "{put:?}");
    }
    let fans: Vec<(String, &str)> = (0..FANS)
        .map(|i| (format!("fan-{i:05}"), "m1"))
        .chain((0..10).map(|i| (format!("m2-fan-{i}"), "m2")))
        .collect();
    let chunks: Vec<Value> = fans
        .chunks(25)
        .map(|c| json!({"entries": c.iter().map(|(f, m)| json!({"campaignId": CAMPAIGN, "globalUserId": f,
            "marketId": m, "entry": {"size": "L, \"tall\""}, "version": 1})).collect::<Vec<_>>()}))
        .collect();
    let url = format!("{a}/services/entries/entries/batch-upsert");
    stream::iter(chunks.iter())
        .for_each_concurrent(8, |body| {
            let (http, url) = (&http, &url);
            async move {
                let (status, answer) = send(http, Method::POST, url, None, Some(body)).await;
                assert_eq!(status, 200, "{answer}");
            }
        })
        .await;

    // Authentication at the listener.
    let exports = format!("{a}/campaigns/{CAMPAIGN}/exports");
    let body = json!({"exportType": "entries", "marketId": "m1"});
    let (status, answer) = send(&http, Method::POST, &exports, None, Some(&body)).await;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("missing bearer token")),
        "{answer}"
    );
    let (status, answer) = send(
        &http,
        Method::POST,
        &exports,
        Some("not.a.jwt"),
        Some(&body),
    )
    .await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(
        send(&http, Method::GET, &format!("{a}/heartbeat"), None, None)
            .await
            .0,
        200
    );
    let (status, minted) = send(
        &http,
        Method::POST,
        &format!("{a}/dev/token"),
        None,
        Some(&json!({"sub": "tester", "permissions": ["REPORT"], "campaigns": [CAMPAIGN]})),
    )
    .await;
    assert_eq!(status, 200, "{minted}");
    let token = minted["token"].as_str().expect("token").to_string();
    let (status, other) = send(
        &http,
        Method::POST,
        &format!("{a}/dev/token"),
        None,
        Some(&json!({"sub": "x", "permissions": ["REPORT"], "campaigns": ["another"]})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, answer) = send(
        &http,
        Method::POST,
        &exports,
        other["token"].as_str(),
        Some(&body),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    let (status, expired) = send(&http, Method::POST, &format!("{a}/dev/token"),
        None, Some(&json!({"sub": "x", "permissions": ["REPORT"], "campaigns": [CAMPAIGN], "exp": 1_000_000}))).await;
    assert_eq!(status, 200);
    let (status, answer) = send(
        &http,
        Method::GET,
        &exports,
        expired["token"].as_str(),
        None,
    )
    .await;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("expired")),
        "{answer}"
    );

    // The big export, claimed by instance a (the only one running), which is
    // killed while it streams.
    let (status, big) = send(&http, Method::POST, &exports, Some(&token), Some(&body)).await;
    assert_eq!(status, 202, "{big}");
    let big_id = big["exportId"].as_str().expect("id").to_string();
    let tables = platform.embedded().tables();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let j = job(tables.as_ref(), &big_id).await;
        if j["state"] == "TRIGGERED" {
            break;
        }
        assert_ne!(
            j["state"], "FINISHED",
            "the export finished before the kill: make it bigger"
        );
        assert!(
            Instant::now() < deadline,
            "never claimed: {j}\n{}",
            common::tail(&platform.log(), 30)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    platform.kill9();
    let at_kill = job(tables.as_ref(), &big_id).await;
    assert_eq!(at_kill["state"], "TRIGGERED", "{at_kill}");

    // Instance b (without --dev-tokens), then a again: both on the folder.
    let port_b = common::free_port();
    let b = format!("http://127.0.0.1:{port_b}");
    let mut child_b = second_instance(&platform, port_b);
    wait_up(&http, &b).await;
    let (status, _) = send(
        &http,
        Method::POST,
        &format!("{b}/dev/token"),
        None,
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, 404, "no /dev/token without --dev-tokens");
    platform.start().await;

    // More jobs through both instances, racing for the queue.
    let mut ids = vec![big_id.clone()];
    let requests = [
        json!({"exportType": "entries"}),
        json!({"exportType": "scoring", "marketId": "m1"}),
        json!({"exportType": "users", "marketId": "m2"}),
        json!({"exportType": "markets"}),
        json!({"exportType": "campaign"}),
        json!({"exportType": "market_stats"}),
        json!({"exportType": "reminder_email"}),
        json!({"exportType": "codes", "marketId": "m2"}),
    ];
    for (i, request) in requests.iter().enumerate() {
        let base = if i % 2 == 0 { &a } else { &b };
        let (status, created) = send(
            &http,
            Method::POST,
            &format!("{base}/campaigns/{CAMPAIGN}/exports"),
            Some(&token),
            Some(request),
        )
        .await;
        assert_eq!(status, 202, "{request}: {created}");
        ids.push(created["exportId"].as_str().expect("id").to_string());
    }
    // The identical request while the first is unfinished: the same job.
    let (status, same) = send(
        &http,
        Method::POST,
        &format!("{b}/campaigns/{CAMPAIGN}/exports"),
        Some(&token),
        Some(&requests[0]),
    )
    .await;
    assert!(status == 200 || status == 202, "{same}");
    if status == 200 {
        assert_eq!(same["exportId"].as_str(), Some(ids[1].as_str()));
    } else {
        // The first one had finished already: a new job.
        ids.push(same["exportId"].as_str().expect("id").to_string());
    }

    // Every job ends; none stays PENDING or TRIGGERED.
    let deadline = Instant::now() + Duration::from_secs(120);
    let finals: BTreeMap<String, Value> = loop {
        let mut all = BTreeMap::new();
        for id in &ids {
            all.insert(id.clone(), job(tables.as_ref(), id).await);
        }
        if all
            .values()
            .all(|j| j["state"] == "FINISHED" || j["state"] == "FAILED" || j["state"] == "EXPIRED")
        {
            break all;
        }
        assert!(
            Instant::now() < deadline,
            "jobs left unfinished: {:?}\n{}",
            all.values()
                .map(|j| (
                    j["exportType"].clone(),
                    j["state"].clone(),
                    j["attempts"].clone()
                ))
                .collect::<Vec<_>>(),
            common::tail(&platform.log(), 40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let objects = platform.embedded().objects();
    for (id, j) in &finals {
        assert_eq!(j["state"], "FINISHED", "{j}");
        let files = objects
            .list("exports", &format!("exports/{CAMPAIGN}/{id}/"), 10)
            .await
            .expect("list");
        assert_eq!(files.len(), 1, "{id}: exactly one file, not {files:?}");
        assert_eq!(j["file"]["key"], json!(files[0].key));
        assert_eq!(j["size"], json!(files[0].size));
        let bytes = objects
            .get("exports", &files[0].key)
            .await
            .expect("get")
            .expect("file");
        if j["exportType"] != "reminder_email" {
            let mut reader = csv::Reader::from_reader(bytes.as_slice());
            let rows = reader.records().count() as u64;
            assert_eq!(j["rowCount"].as_u64(), Some(rows), "{id}");
        }
    }
    let big = &finals[&big_id];
    assert_eq!(big["rowCount"].as_u64(), Some(FANS as u64));
    assert!(
        big["fencing"].as_u64() >= Some(2),
        "the killed runner's job was claimed again: {big}"
    );
    assert_eq!(
        big["file"]["key"],
        json!(format!(
            "exports/{CAMPAIGN}/{big_id}/attempt-{}.csv",
            big["fencing"]
        ))
    );
    assert_eq!(finals[&ids[1]]["rowCount"].as_u64(), Some(FANS as u64 + 10));
    assert_eq!(
        finals[&ids[3]]["rowCount"].as_u64(),
        Some(10),
        "users of m2"
    );
    // Listing through the API (paged).
    let (status, page) = send(
        &http,
        Method::GET,
        &format!("{b}/campaigns/{CAMPAIGN}/exports?limit=5"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["exports"].as_array().map(Vec::len), Some(5));
    assert!(page["next"].is_string());
    // Nothing is left in the index of unfinished jobs.
    let active = tables
        .query("exports", &json!({"PK": "ACTIVE"}), None, 100, None)
        .await
        .expect("query");
    assert!(active.items.is_empty(), "{:?}", active.items);

    let _ = child_b.kill();
    let _ = child_b.wait();
    platform.stop().await;
}
