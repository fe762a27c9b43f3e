//! Reminders end to end on the real `usher up` binary (a child process) and
//! the real reference services: an OPEN campaign closing in 2 hours with
//! 3,000 fans registered in the Entry Service gets a closing reminder
//! (`notification/generate-notifications`); `notification/plan-sends` is
//! `kill -9`'d the moment the reminder leaves DUE (in the middle of
//! planning), `usher up` restarted and the step retried;
//! `notification/trigger-reminder-email` is `kill -9`'d in the middle of
//! triggering, restarted and run until nothing remains. Then, from the User
//! Service's recorded jobs: every fan is in exactly one job, no one-second
//! window holds more than the target rate (set to 100 fans/s here, so the
//! 3,000 e-mails take 30 s), every job is triggered and holds one trigger
//! record.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::Platform;
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use usher_capabilities::TableBackend;

const FANS: usize = 3_000;
const RATE: u64 = 100;
const CAMPAIGN: &str = "notify-c1";

fn edit(name: &str, text: String) -> String {
    if name == "notification.yaml" {
        text.replace(
            "target_rate_per_s: 10",
            &format!("target_rate_per_s: {RATE}"),
        )
    } else {
        text
    }
}

fn rfc3339(offset_ms: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::milliseconds(offset_ms))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn millis(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .expect("RFC 3339")
        .timestamp_millis()
}

async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url);
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

async fn ok(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
) -> Value {
    let (status, answer) = send(http, method.clone(), url, body).await;
    assert_eq!(status, 200, "{method} {url}: {answer}");
    answer
}

/// A step run until it answers without errors (as a workflow's Retry would).
async fn step(http: &reqwest::Client, base: &str, worker: &str, body: &Value) -> Value {
    for _ in 0..10 {
        let (status, answer) = send(
            http,
            reqwest::Method::POST,
            &format!("{base}/invoke/notification/{worker}"),
            Some(body),
        )
        .await;
        if status == 200 && answer["errors"].as_array().is_none_or(Vec::is_empty) {
            return answer;
        }
        eprintln!("{worker}: {status} {answer}; again");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{worker} kept failing");
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reminders_go_out_once_at_the_rate_across_kill_9() {
    let mut platform = Platform::new(edit);
    platform.start().await;
    let http = reqwest::Client::new();
    let base = platform.base.clone();
    use reqwest::Method;

    // The campaign (OPEN, closing in 2 h), its market, 3,000 registered fans.
    let campaign = json!({"id": CAMPAIGN, "slug": CAMPAIGN, "name": "Reminders", "status": "OPEN",
        "opensAt": rfc3339(-3_600_000), "closesAt": rfc3339(2 * 3_600_000),
        "gate": {"type": "none"}, "fields": []});
    ok(
        &http,
        Method::PUT,
        &format!("{base}/services/campaigns/campaigns/{CAMPAIGN}"),
        Some(&campaign),
    )
    .await;
    let market = json!({"id": "m1", "campaignId": CAMPAIGN, "eventId": "e1", "selectionCount": 10});
    ok(
        &http,
        Method::PUT,
        &format!("{base}/services/campaigns/campaigns/{CAMPAIGN}/markets/m1"),
        Some(&market),
    )
    .await;
    let fans: Vec<String> = (0..FANS).map(|i| format!("fan-{i:05}")).collect();
    let chunks: Vec<Value> = fans
        .chunks(25)
        .map(|c| {
            json!({"entries": c.iter().map(|f| json!({"campaignId": CAMPAIGN, "globalUserId": f,
                "marketId": "m1", "entry": {}, "version": 1})).collect::<Vec<_>>()})
        })
        .collect();
    let url = format!("{base}/services/entries/entries/batch-upsert");
    stream::iter(chunks.iter())
        .for_each_concurrent(8, |body| {
            let (http, url) = (&http, &url);
            async move {
                ok(http, Method::POST, url, Some(body)).await;
            }
        })
        .await;

    let generated = step(&http, &base, "generate-notifications", &json!({})).await;
    assert!(generated["marketCount"].as_u64() >= Some(1), "{generated}");
    let due = step(&http, &base, "get-markets-to-notify", &json!({})).await;
    assert!(
        due["markets"]
            .as_array()
            .is_some_and(|m| m.contains(&json!({"campaignId": CAMPAIGN, "marketId": "m1"}))),
        "{due}"
    );

    // plan-sends, killed the moment the reminder leaves DUE.
    let target = json!({"campaignId": CAMPAIGN, "marketId": "m1"});
    let note_key = json!({"PK": "NOTIFICATIONS", "SK": format!("{CAMPAIGN}#m1#closing#{}", millis(campaign["closesAt"].as_str().expect("closesAt")))});
    let tables = platform.embedded().tables();
    let planning = {
        let (http, url, body) = (
            http.clone(),
            format!("{base}/invoke/notification/plan-sends"),
            target.clone(),
        );
        tokio::spawn(async move { send(&http, Method::POST, &url, Some(&body)).await })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let state_at_kill = loop {
        let note: Option<Value> = tables.get("notifications", &note_key).await.ok().flatten();
        let state = note
            .as_ref()
            .and_then(|n| n["state"].as_str())
            .unwrap_or("none")
            .to_string();
        if state != "DUE" && state != "none" {
            platform.kill9();
            break state;
        }
        assert!(
            Instant::now() < deadline,
            "the reminder never left DUE: {note:?}\n{}",
            common::tail(&platform.log(), 40)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let _ = planning.await;
    eprintln!("kill -9 while planning (the reminder was {state_at_kill})");
    tokio::time::sleep(Duration::from_millis(300)).await;
    platform.start().await;
    let planned = step(&http, &base, "plan-sends", &target).await;
    assert_eq!(planned["plannedCount"], FANS as u64, "{planned}");
    let again = step(&http, &base, "plan-sends", &json!({})).await;
    assert!(
        again["plannedCount"].as_u64() >= Some(FANS as u64),
        "{again}"
    );

    // The jobs the User Service holds.
    let list_url =
        format!("{base}/services/users/email-jobs?campaignId={CAMPAIGN}&marketId=m1&limit=1000");
    let jobs = ok(&http, Method::GET, &list_url, None).await["jobs"]
        .as_array()
        .cloned()
        .expect("jobs");
    let expected_jobs = FANS.div_ceil(RATE as usize);
    assert_eq!(jobs.len(), expected_jobs);
    let first_send = jobs
        .iter()
        .map(|j| millis(j["sendAt"].as_str().expect("sendAt")))
        .min()
        .expect("a job");

    // trigger-reminder-email, once every job is due (one call triggers all
    // 30 together), killed the moment the first job's trigger record is
    // written: in the middle of triggering, before the reminder's cursor
    // moves (or, if the call was quicker, after).
    let last_send = jobs
        .iter()
        .map(|j| millis(j["sendAt"].as_str().expect("sendAt")))
        .max()
        .expect("a job");
    let wait = last_send + 200 - chrono::Utc::now().timestamp_millis();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
    let first_job = jobs
        .iter()
        .find(|j| j["sendAt"].as_str().map(millis) == Some(first_send))
        .expect("first job")["jobId"]
        .as_str()
        .expect("jobId")
        .to_string();
    let triggering = {
        let (http, url, body) = (
            http.clone(),
            format!("{base}/invoke/notification/trigger-reminder-email"),
            target.clone(),
        );
        tokio::spawn(async move { send(&http, Method::POST, &url, Some(&body)).await })
    };
    let trigger_key = json!({"PK": format!("JOB#{first_job}"), "SK": "TRIGGER"});
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if tables
            .get("users", &trigger_key)
            .await
            .ok()
            .flatten()
            .is_some()
        {
            platform.kill9();
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no trigger record:\n{}",
            common::tail(&platform.log(), 40)
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let cut = triggering.await.expect("the request task");
    let note: Value = tables
        .get("notifications", &note_key)
        .await
        .expect("read")
        .expect("the reminder");
    let cursor_at_kill = note["triggeredSlots"].as_u64().expect("cursor");
    let mut records_at_kill = 0;
    for j in &jobs {
        let key =
            json!({"PK": format!("JOB#{}", j["jobId"].as_str().expect("jobId")), "SK": "TRIGGER"});
        records_at_kill += usize::from(tables.get("users", &key).await.ok().flatten().is_some());
    }
    eprintln!(
        "kill -9 while triggering: {records_at_kill} of {} jobs sent, the reminder's cursor at {cursor_at_kill} (the cut call: {} {})",
        jobs.len(),
        cut.0,
        cut.1
    );
    platform.start().await;
    let mut seen_first = 0u64;
    let mut already = 0u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let answer = step(&http, &base, "trigger-reminder-email", &target).await;
        seen_first += answer["triggeredCount"].as_u64().expect("count");
        already += answer["alreadyTriggered"].as_u64().unwrap_or(0);
        let Some(next) = answer["nextSendAt"].as_str() else {
            break;
        };
        assert!(
            Instant::now() < deadline,
            "triggering did not end: {answer}"
        );
        let wait = (millis(next) - chrono::Utc::now().timestamp_millis()).clamp(50, 2_000);
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
    eprintln!(
        "after the restart: {seen_first} e-mails sent first, {already} job(s) found sent before"
    );
    // Every e-mail exactly once: those sent after the restart, plus the jobs
    // the retry found sent already, plus those behind the cursor at the kill.
    assert_eq!(
        seen_first + RATE * (already + cursor_at_kill),
        FANS as u64,
        "some e-mails sent twice or never"
    );
    if cursor_at_kill == 0 {
        assert!(
            already as usize >= records_at_kill,
            "jobs sent before the kill not recognised"
        );
    }
    let done = step(&http, &base, "get-markets-to-notify", &json!({})).await;
    assert!(
        !done["markets"]
            .as_array()
            .is_some_and(|m| m.contains(&target)),
        "still due: {done}"
    );

    // From the User Service: the rate, each fan once, every job triggered once.
    let jobs = ok(&http, Method::GET, &list_url, None).await["jobs"]
        .as_array()
        .cloned()
        .expect("jobs");
    assert_eq!(jobs.len(), expected_jobs);
    let mut times: Vec<(i64, u64)> = jobs
        .iter()
        .map(|j| {
            (
                millis(j["sendAt"].as_str().expect("sendAt")),
                j["fans"].as_u64().expect("fans"),
            )
        })
        .collect();
    times.sort_unstable();
    let (mut most, mut sum, mut lo) = (0, 0u64, 0usize);
    for hi in 0..times.len() {
        sum += times[hi].1;
        while times[hi].0 - times[lo].0 >= 1000 {
            sum -= times[lo].1;
            lo += 1;
        }
        most = most.max(sum);
    }
    assert!(most <= RATE, "{most} fans due in one second, target {RATE}");
    assert!(
        times.last().expect("job").0 - times[0].0 >= ((FANS as i64 / RATE as i64) - 1) * 1000,
        "not spread"
    );
    let mut per_fan: BTreeMap<String, u32> = BTreeMap::new();
    for j in &jobs {
        let id = j["jobId"].as_str().expect("jobId");
        let job = ok(
            &http,
            Method::GET,
            &format!("{base}/services/users/email-jobs/{}", encode(id)),
            None,
        )
        .await;
        let triggered_at = job["triggeredAt"]
            .as_str()
            .unwrap_or_else(|| panic!("job {id} not triggered: {job}"));
        assert!(
            millis(triggered_at) >= millis(job["sendAt"].as_str().expect("sendAt")),
            "{job}"
        );
        for f in job["fans"].as_array().expect("fans") {
            *per_fan
                .entry(f.as_str().expect("fan").to_string())
                .or_insert(0) += 1;
        }
        let records = tables
            .query(
                "users",
                &json!({"PK": format!("JOB#{id}")}),
                Some("TRIGGER"),
                10,
                None,
            )
            .await
            .expect("trigger records");
        assert_eq!(records.items.len(), 1, "job {id}");
        assert_eq!(records.items[0]["triggeredAt"].as_str(), Some(triggered_at));
    }
    assert_eq!(per_fan.len(), FANS);
    assert!(per_fan.values().all(|n| *n == 1), "a fan reminded twice");
    eprintln!(
        "{} jobs, at most {most} fans due in any second (target {RATE}/s)",
        jobs.len()
    );

    let status = platform.stop().await;
    assert!(status.success(), "{}", platform.log());
}
