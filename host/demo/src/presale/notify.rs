//! The presale's notification round (issue 11), run once after the draws,
//! only through the listener's `/invoke` routes and the User Service:
//!
//! 1. `notification/generate-notifications` records the reminders due (the
//!    daily generator's rule: each market's winners now that its draw is
//!    FINISHED, and — the campaign closing within 48 h — its registered
//!    fans);
//! 2. `notification/plan-sends` per market plans them as User Service
//!    e-mail jobs spread at the target rate;
//! 3. `notification/trigger-reminder-email` per market triggers the jobs
//!    already due (the rest fall due over the following minutes, for the
//!    hourly workflow);
//! 4. the check, from the User Service's recorded jobs (`GET
//!    /email-jobs?campaignId=`, every page, and each job's fans): no
//!    one-second window holds more fans than the target rate, every winner
//!    is in exactly one winner reminder and every registered fan in exactly
//!    one closing reminder, nobody else.
//!
//! Each step is retried as a Step Functions task's `Retry` would (a step
//! answering `errors` is run again; its re-run is safe).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::{failed, Presale};
use crate::{now_ms, DemoError};

/// A path segment or query value, percent-encoded (RFC 3986 unreserved kept).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn millis(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// The most fans due in any half-open one-second window.
fn most_in_a_second(jobs: &[(i64, u64)]) -> u64 {
    let mut sorted = jobs.to_vec();
    sorted.sort_unstable();
    let (mut best, mut sum, mut lo) = (0, 0u64, 0usize);
    for hi in 0..sorted.len() {
        sum += sorted[hi].1;
        while sorted[hi].0 - sorted[lo].0 >= 1000 {
            sum -= sorted[lo].1;
            lo += 1;
        }
        best = best.max(sum);
    }
    best
}

impl Presale {
    /// One notification step through `/invoke`, retried (6 attempts,
    /// backoff 1, 2, 4, 8, 16 s) while it fails or answers `errors`.
    async fn notify_step(&self, worker: &str, body: &Value) -> Result<Value, DemoError> {
        const ATTEMPTS: u32 = 6;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self
                .ok(
                    reqwest::Method::POST,
                    &format!("/invoke/notification/{worker}"),
                    Some(body),
                )
                .await
                .and_then(|answer| match answer["errors"].as_array() {
                    Some(e) if !e.is_empty() => {
                        Err(failed(format!("{worker} reported errors: {answer}")))
                    }
                    _ => Ok(answer),
                });
            match outcome {
                Ok(answer) => return Ok(answer),
                Err(e) if attempt < ATTEMPTS => {
                    let backoff = Duration::from_secs(1 << (attempt - 1));
                    eprintln!(
                        "{worker} {body}, attempt {attempt} failed ({e}); again in {} s",
                        backoff.as_secs()
                    );
                    tokio::time::sleep(backoff).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs the notification round and checks it (see the module docs);
    /// the verification's line.
    pub(super) async fn notification_round(&self) -> Result<String, DemoError> {
        use reqwest::Method;
        let generated = self
            .notify_step("generate-notifications", &json!({}))
            .await?;
        let mut rate = 0.0f64;
        let mut planned = 0u64;
        for m in &self.markets {
            let market = json!({"campaignId": self.campaign, "marketId": m.id});
            let answer = self.notify_step("plan-sends", &market).await?;
            planned += answer["plannedCount"].as_u64().unwrap_or(0);
            rate = answer["targetRatePerS"].as_f64().unwrap_or(rate);
        }
        // Trigger what is due: wait (at most 3 s) for the first sendAt.
        let mut triggered = 0u64;
        for m in &self.markets {
            let market = json!({"campaignId": self.campaign, "marketId": m.id});
            for _ in 0..3 {
                let answer = self.notify_step("trigger-reminder-email", &market).await?;
                triggered += answer["triggeredCount"].as_u64().unwrap_or(0);
                let next = answer["nextSendAt"].as_str().and_then(millis);
                match next {
                    Some(at) if triggered == 0 && at - now_ms() as i64 <= 3_000 => {
                        let wait = (at - now_ms() as i64).clamp(10, 3_000);
                        tokio::time::sleep(Duration::from_millis(wait as u64 + 20)).await;
                    }
                    _ => break,
                }
            }
        }

        // The User Service's jobs of the campaign, every page.
        let mut summaries: Vec<Value> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut path = format!(
                "/services/users/email-jobs?campaignId={}&limit=1000",
                encode(&self.campaign)
            );
            if let Some(a) = &after {
                path.push_str(&format!("&after={}", encode(a)));
            }
            let page = self.ok(Method::GET, &path, None).await?;
            summaries.extend(page["jobs"].as_array().cloned().unwrap_or_default());
            match page["next"].as_str() {
                Some(n) => after = Some(n.to_string()),
                None => break,
            }
        }
        let times: Vec<(i64, u64)> = summaries
            .iter()
            .map(|j| {
                (
                    j["sendAt"].as_str().and_then(millis).unwrap_or(0),
                    j["fans"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        let most = most_in_a_second(&times);
        if rate <= 0.0 || most as f64 > rate {
            return Err(failed(format!(
                "the reminders' jobs have {most} fans due in one second, over the target rate {rate}/s"
            )));
        }
        // Each job's fans, by template.
        let mut fans: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
        let mut triggered_jobs = 0usize;
        for s in &summaries {
            let id = s["jobId"].as_str().unwrap_or_default();
            let job = self
                .ok(
                    Method::GET,
                    &format!("/services/users/email-jobs/{}", encode(id)),
                    None,
                )
                .await?;
            triggered_jobs += usize::from(job["triggeredAt"].is_string());
            let template = job["templateId"].as_str().unwrap_or_default().to_string();
            for f in job["fans"].as_array().into_iter().flatten() {
                *fans
                    .entry(template.clone())
                    .or_default()
                    .entry(f.as_str().unwrap_or_default().to_string())
                    .or_insert(0) += 1;
            }
        }
        let mut winners: BTreeMap<String, u32> = BTreeMap::new();
        let mut registered: BTreeMap<String, u32> = BTreeMap::new();
        for m in &self.markets {
            for s in self.selections(&m.id).await? {
                if s["verdict"] == json!("WINNER") {
                    winners.insert(
                        s["globalUserId"].as_str().unwrap_or_default().to_string(),
                        1,
                    );
                }
            }
            for e in self.market_entries(&m.id).await? {
                registered.insert(
                    e["globalUserId"].as_str().unwrap_or_default().to_string(),
                    1,
                );
            }
        }
        for (template, want) in [
            ("reminder-winner", &winners),
            ("reminder-closing", &registered),
        ] {
            let got = fans.get(template).cloned().unwrap_or_default();
            if &got != want {
                let twice = got.iter().filter(|(_, n)| **n > 1).count();
                return Err(failed(format!(
                    "{template}: {} fans reminded ({twice} more than once), {} expected",
                    got.len(),
                    want.len()
                )));
            }
        }
        let span = times.iter().map(|t| t.0).max().unwrap_or(0)
            - times.iter().map(|t| t.0).min().unwrap_or(0);
        Ok(format!(
            "  notifications       {} reminder(s) generated; {planned} e-mails planned in {} jobs over {:.0} s, at most {most} due in any second (target {rate}/s); every winner and registered fan reminded once; {triggered_jobs} job(s) due so far triggered ({triggered} e-mails)",
            generated["marketCount"],
            summaries.len(),
            span as f64 / 1000.0
        ))
    }
}
