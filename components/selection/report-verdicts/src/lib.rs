//! `selection/report-verdicts` (batch-worker): reports the verdict counts of
//! saved selection batches to the Campaign Service.
//!
//! Each message of the `verdict-reporter` queue is a
//! [`VerdictReport`](usher_domain::selection::VerdictReport) sent by
//! `selection/save-selections`: `{"campaignId","marketId","reportId","counts"}`.
//! The batch's reports of one campaign and market go together (up to
//! [`REPORTS_PER_REQUEST`] a request) as `POST
//! /campaigns/{campaignId}/markets/{marketId}/verdict-reports/batch`
//! `{"reports":[{"reportId","counts"}…]}` (ids percent-encoded), every
//! request in one `services::call_many`: the service counts them with one
//! write of the market's stats instead of one contended write per report.
//! It adds a report into the market's `reported` counts once per
//! `reportId`, so a redelivered message is answered `{"counted": false}`
//! and is a success too.
//!
//! Per-message failures: a body that is not a report (or has an empty id)
//! fails alone; so does a report the service refuses in its result (409:
//! other counts, another draw). A call error or a non-2xx answer fails
//! every message of the request (a 404 for an unknown campaign or market
//! goes to the dead-letter queue after the queue's retries).
//!
//! Settings: `service` (default `campaigns`).

use std::collections::BTreeMap;

use usher_domain::assignment::encode_component;
use usher_domain::selection::VerdictReport;
use usher_sdk::json::json;
use usher_sdk::services::{self, Method, Request};
use usher_sdk::{config, BatchResult, BatchWorker, Message, Value};

/// The Campaign Service's name when the `service` setting is absent.
pub const DEFAULT_SERVICE: &str = "campaigns";

/// Why a message is not a report.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidReport {
    /// Not JSON or not the shape of a report.
    #[error("the body is not a verdict report: {0}")]
    NotAReport(String),
    /// An empty id.
    #[error("{0} is empty")]
    MissingId(&'static str),
}

/// Parses and checks one message body.
pub fn parse(body: &str) -> Result<VerdictReport, InvalidReport> {
    let report: VerdictReport =
        serde_json::from_str(body).map_err(|e| InvalidReport::NotAReport(e.to_string()))?;
    for (name, value) in [
        ("campaignId", &report.campaign_id),
        ("marketId", &report.market_id),
        ("reportId", &report.report_id),
    ] {
        if value.is_empty() {
            return Err(InvalidReport::MissingId(name));
        }
    }
    Ok(report)
}

/// The request that reports `reports` (all of one campaign and market):
/// `POST /campaigns/{c}/markets/{m}/verdict-reports/batch`.
pub fn request(service: &str, reports: &[&VerdictReport]) -> usher_sdk::Result<Request> {
    let first = reports
        .first()
        .map(|r| (r.campaign_id.as_str(), r.market_id.as_str()));
    let (campaign, market) = first.unwrap_or_default();
    let body: Vec<Value> = reports
        .iter()
        .map(|r| json!({"reportId": r.report_id, "counts": r.counts}))
        .collect();
    Request::new(
        service,
        Method::Post,
        format!(
            "/campaigns/{}/markets/{}/verdict-reports/batch",
            encode_component(campaign),
            encode_component(market)
        ),
    )
    .json(&json!({"reports": body}))
}

/// The services' most requests in one `call_many`.
const CALL_MANY_MAX: usize = 256;
/// Reports per batch request (the service takes at most 1000).
pub const REPORTS_PER_REQUEST: usize = 500;

/// Handles a batch (see the crate docs).
pub fn process(service: &str, messages: &[Message]) -> BatchResult {
    let mut failures: Vec<String> = Vec::new();
    // Each report once (a duplicate delivery in one batch shares the
    // answer), grouped by campaign and market.
    let mut reports: Vec<VerdictReport> = Vec::new();
    let mut senders: Vec<Vec<usize>> = Vec::new();
    let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
    for (i, message) in messages.iter().enumerate() {
        let report = match parse(&message.body) {
            Ok(report) => report,
            Err(reason) => {
                usher_sdk::warn!(message_id = message.id, reason = reason; "bad verdict report failed");
                failures.push(message.id.clone());
                continue;
            }
        };
        let id = serde_json::to_string(&report).unwrap_or_default();
        if let Some(&r) = by_id.get(&id) {
            senders[r].push(i);
            continue;
        }
        by_id.insert(id, reports.len());
        reports.push(report);
        senders.push(vec![i]);
    }
    let mut markets: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for (r, report) in reports.iter().enumerate() {
        markets
            .entry((report.campaign_id.as_str(), report.market_id.as_str()))
            .or_default()
            .push(r);
    }
    // (request, the reports it carries)
    let mut requests: Vec<Request> = Vec::new();
    let mut carried: Vec<Vec<usize>> = Vec::new();
    for group in markets.values() {
        for chunk in group.chunks(REPORTS_PER_REQUEST) {
            let list: Vec<&VerdictReport> = chunk.iter().map(|&r| &reports[r]).collect();
            match request(service, &list) {
                Ok(req) => {
                    requests.push(req);
                    carried.push(chunk.to_vec());
                }
                Err(e) => {
                    for &r in chunk {
                        for &i in &senders[r] {
                            usher_sdk::warn!(message_id = messages[i].id, error = e; "cannot encode the report");
                            failures.push(messages[i].id.clone());
                        }
                    }
                }
            }
        }
    }
    let ids_of = |r: usize| -> Vec<String> {
        senders[r]
            .iter()
            .filter_map(|&i| messages.get(i).map(|m| m.id.clone()))
            .collect()
    };
    let mut counted = 0usize;
    let mut repeated = 0usize;
    for (chunk, owners) in requests
        .chunks(CALL_MANY_MAX)
        .zip(carried.chunks(CALL_MANY_MAX))
    {
        let answers = match services::call_many(chunk) {
            Ok(answers) if answers.len() == chunk.len() => answers
                .into_iter()
                .map(|a| a.map_err(|e| e.to_string()))
                .collect(),
            Ok(answers) => {
                let reason = format!("{} answers for {} requests", answers.len(), chunk.len());
                vec![Err(reason); chunk.len()]
            }
            Err(e) => vec![Err(e.to_string()); chunk.len()],
        };
        for ((req, owners), answer) in chunk.iter().zip(owners).zip(answers) {
            let results: Result<Vec<Value>, String> = match answer {
                Ok(r) if r.is_success() => r
                    .json::<Value>()
                    .ok()
                    .and_then(|b| b.get("results").and_then(Value::as_array).cloned())
                    .filter(|results| results.len() == owners.len())
                    .ok_or_else(|| {
                        format!(
                            "the answer does not have one result per report: {}",
                            r.body.chars().take(300).collect::<String>()
                        )
                    }),
                Ok(r) => Err(format!(
                    "status {}: {}",
                    r.status,
                    r.body.chars().take(300).collect::<String>()
                )),
                Err(e) => Err(e),
            };
            match results {
                Ok(results) => {
                    for (&r, result) in owners.iter().zip(results) {
                        let ids = ids_of(r);
                        match result.get("counted") {
                            Some(Value::Bool(true)) => counted += 1,
                            Some(Value::Bool(false)) => {
                                repeated += 1;
                                usher_sdk::info!(message_ids = ids.join(","), report_id = reports[r].report_id;
                                    "report already counted (a redelivery)");
                            }
                            _ => {
                                usher_sdk::warn!(message_ids = ids.join(","), report_id = reports[r].report_id,
                                    result = result; "campaign service refused the report");
                                failures.extend(ids);
                            }
                        }
                    }
                }
                Err(reason) => {
                    let ids: Vec<String> = owners.iter().flat_map(|&r| ids_of(r)).collect();
                    usher_sdk::warn!(message_ids = ids.join(","), path = req.path, reason = reason;
                        "reporting failed");
                    failures.extend(ids);
                }
            }
        }
    }
    let result = BatchResult::from_failures(messages.len(), failures);
    usher_sdk::info!(received = result.received, processed = result.processed, failed = result.failed,
        counted = counted, already_counted = repeated; "report-verdicts batch done");
    result
}

/// The worker.
pub struct ReportVerdicts;

impl BatchWorker for ReportVerdicts {
    fn handle(messages: Vec<Message>) -> BatchResult {
        match config::string_or("service", DEFAULT_SERVICE) {
            Ok(service) => process(&service, &messages),
            Err(e) => {
                usher_sdk::error!(error = e; "cannot read the settings; failing the batch");
                BatchResult::from_failures(messages.len(), messages.iter().map(|m| m.id.clone()))
            }
        }
    }
}

usher_sdk::export_batch_worker!(ReportVerdicts);

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeSet;
    use std::rc::Rc;

    use super::*;
    use usher_domain::campaign::VerdictCounts;
    use usher_sdk::fakes::{self, Call, Fakes};
    use usher_sdk::Error;

    /// A Campaign Service that adds each report id once per market.
    #[derive(Default)]
    struct Campaigns {
        reported: BTreeMap<String, VerdictCounts>,
        seen: BTreeSet<String>,
        /// Markets it does not know (404).
        unknown: BTreeSet<String>,
        /// Answer 503 for these report ids.
        down_for: BTreeSet<String>,
    }

    fn service(state: &Rc<RefCell<Campaigns>>) -> Fakes {
        let state = state.clone();
        Fakes::new().on_service("campaigns", move |r| {
            let mut s = state.borrow_mut();
            let parts: Vec<&str> = r.path.split('/').collect();
            assert_eq!(parts.len(), 7, "{}", r.path);
            assert_eq!(
                (parts[1], parts[3], parts[5], parts[6]),
                ("campaigns", "markets", "verdict-reports", "batch")
            );
            let market = format!("{}/{}", parts[2], parts[4]);
            let body: Value = serde_json::from_str(r.body.as_deref().unwrap_or("{}"))?;
            if s.unknown.contains(&market) {
                return Ok(fakes::json_response(404, &json!({"error": "no market"})));
            }
            let mut results = Vec::new();
            for report in body["reports"].as_array().cloned().unwrap_or_default() {
                let id = report["reportId"].as_str().unwrap_or_default().to_string();
                if s.down_for.contains(&id) {
                    results.push(json!({"reportId": id, "status": 409, "error": "other counts"}));
                    continue;
                }
                let counts: VerdictCounts = serde_json::from_value(report["counts"].clone())?;
                let counted = s.seen.insert(format!("{market}/{id}"));
                if counted {
                    s.reported.entry(market.clone()).or_default().add(&counts);
                }
                results.push(json!({"reportId": id, "counted": counted}));
            }
            Ok(fakes::json_response(200, &json!({"results": results})))
        })
    }

    fn report(campaign: &str, market: &str, id: &str, w: u64, l: u64) -> Message {
        let r = VerdictReport {
            campaign_id: campaign.into(),
            market_id: market.into(),
            report_id: id.into(),
            counts: VerdictCounts {
                winners: w,
                losers: l,
                waitlisted: 0,
            },
        };
        Message::new(
            format!("msg-{id}"),
            serde_json::to_string(&r).expect("json"),
        )
    }

    #[test]
    fn reports_are_counted_once_and_sent_in_one_call_many() {
        let state = Rc::new(RefCell::new(Campaigns::default()));
        let fakes = service(&state);
        let _installed = fakes.install();
        let batch = vec![
            report("c1", "m1", "d#0", 2, 23),
            report("c1", "m1", "d#1", 3, 22),
            report("c1", "m2", "e#0", 1, 1),
        ];
        let r = process(DEFAULT_SERVICE, &batch);
        assert!(r.failures.is_empty(), "{r:?}");
        assert_eq!(fakes.count("call_many"), 1);
        assert_eq!(fakes.count("call"), 0);
        // Redelivered, twice in one batch: answered counted=false, success.
        let again = vec![
            report("c1", "m1", "d#0", 2, 23),
            report("c1", "m1", "d#0", 2, 23),
        ];
        let r = process(DEFAULT_SERVICE, &again);
        assert!(r.failures.is_empty(), "{r:?}");
        assert_eq!(r.processed, 2);
        assert_eq!(
            fakes.requests().len(),
            3,
            "one request per market; the duplicate was sent once"
        );
        let last: Value =
            serde_json::from_str(fakes.requests()[2].body.as_deref().unwrap_or("")).expect("json");
        assert_eq!(last["reports"].as_array().map(Vec::len), Some(1));
        let s = state.borrow();
        assert_eq!(
            s.reported.get("c1/m1"),
            Some(&VerdictCounts {
                winners: 5,
                losers: 45,
                waitlisted: 0
            })
        );
        assert_eq!(s.reported.get("c1/m2").map(|c| c.winners), Some(1));
    }

    #[test]
    fn ids_are_percent_encoded_in_the_path() {
        let fakes = Fakes::new().on_service("campaigns", |_| {
            Ok(fakes::json_response(
                200,
                &json!({"results": [{"reportId": "d#0", "counted": true}]}),
            ))
        });
        let _installed = fakes.install();
        let r = process("campaigns", &[report("c 1", "m/2", "d#0", 1, 0)]);
        assert!(r.failures.is_empty());
        let req = &fakes.requests()[0];
        assert_eq!(
            req.path,
            "/campaigns/c%201/markets/m%2F2/verdict-reports/batch"
        );
        assert_eq!(req.method, Method::Post);
        let body: Value = serde_json::from_str(req.body.as_deref().unwrap_or("")).expect("json");
        assert_eq!(
            body,
            json!({"reports": [{"reportId": "d#0", "counts": {"winners": 1, "losers": 0, "waitlisted": 0}}]})
        );
    }

    #[test]
    fn failures_are_per_message() {
        let state = Rc::new(RefCell::new(Campaigns::default()));
        state.borrow_mut().unknown.insert("c1/nope".into());
        state.borrow_mut().down_for.insert("d#1".into());
        let fakes = service(&state);
        let _installed = fakes.install();
        let batch = vec![
            report("c1", "m1", "d#0", 1, 0),
            report("c1", "m1", "d#1", 1, 0),
            report("c1", "nope", "x#0", 1, 0),
            Message::new("garbage", "{"),
            Message::new(
                "empty-id",
                json!({"campaignId": "c1", "marketId": "m1", "reportId": "", "counts": {}})
                    .to_string(),
            ),
        ];
        let r = process(DEFAULT_SERVICE, &batch);
        let mut failures = r.failures.clone();
        failures.sort();
        assert_eq!(failures, vec!["empty-id", "garbage", "msg-d#1", "msg-x#0"]);
        assert_eq!(r.processed, 1);
        assert_eq!(
            parse("{}").map_err(|e| matches!(e, InvalidReport::NotAReport(_))),
            Err(true)
        );
    }

    #[test]
    fn a_failed_call_many_fails_every_message() {
        let fakes = Fakes::new()
            .intercept(|call, _| match call {
                Call::Service(_) => Some(Error::Unavailable("down".into())),
                _ => None,
            })
            .on_service("campaigns", |_| Ok(fakes::status(200)));
        let _installed = fakes.install();
        let r = process(
            DEFAULT_SERVICE,
            &[report("c", "m", "a", 1, 0), report("c", "m", "b", 1, 0)],
        );
        assert_eq!(r.failures, vec!["msg-a", "msg-b"]);
    }
}
