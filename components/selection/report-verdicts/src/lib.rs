//! `selection/report-verdicts` (batch-worker): reports the verdict counts of
//! saved selection batches to the Campaign Service.
//!
//! Each message of the `verdict-reporter` queue is a
//! [`VerdictReport`](usher_domain::selection::VerdictReport) sent by
//! `selection/save-selections`: `{"campaignId","marketId","reportId","counts"}`.
//! Each becomes `POST /campaigns/{campaignId}/markets/{marketId}/verdict-reports`
//! `{"reportId","counts"}` (ids percent-encoded), every message's request in
//! one `services::call_many`. The service adds a report into the market's
//! `reported` counts once per `reportId`, so a redelivered message is
//! answered `{"counted": false}` and is a success too.
//!
//! Per-message failures: a body that is not a report (or has an empty id)
//! fails alone; so does a call error or a non-2xx answer (a 404 for an
//! unknown campaign or market goes to the dead-letter queue after the
//! queue's retries).
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

/// The request that reports `report`.
pub fn request(service: &str, report: &VerdictReport) -> usher_sdk::Result<Request> {
    Request::new(
        service,
        Method::Post,
        format!(
            "/campaigns/{}/markets/{}/verdict-reports",
            encode_component(&report.campaign_id),
            encode_component(&report.market_id)
        ),
    )
    .json(&json!({"reportId": report.report_id, "counts": report.counts}))
}

/// The services' most requests in one `call_many`.
const CALL_MANY_MAX: usize = 256;

/// Handles a batch (see the crate docs).
pub fn process(service: &str, messages: &[Message]) -> BatchResult {
    let mut failures: Vec<String> = Vec::new();
    // Each report once (a duplicate delivery in one batch shares the answer).
    let mut requests: Vec<Request> = Vec::new();
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
        match request(service, &report) {
            Ok(req) => {
                by_id.insert(id, requests.len());
                requests.push(req);
                senders.push(vec![i]);
            }
            Err(e) => {
                usher_sdk::warn!(message_id = message.id, error = e; "cannot encode the report");
                failures.push(message.id.clone());
            }
        }
    }
    let mut counted = 0usize;
    let mut repeated = 0usize;
    for (chunk, owners) in requests
        .chunks(CALL_MANY_MAX)
        .zip(senders.chunks(CALL_MANY_MAX))
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
            let ids: Vec<String> = owners
                .iter()
                .filter_map(|&i| messages.get(i).map(|m| m.id.clone()))
                .collect();
            match answer {
                Ok(r) if r.is_success() => {
                    match r
                        .json::<Value>()
                        .ok()
                        .and_then(|b| b.get("counted").cloned())
                    {
                        Some(Value::Bool(false)) => {
                            repeated += 1;
                            usher_sdk::info!(message_ids = ids.join(","), path = req.path;
                                "report already counted (a redelivery)");
                        }
                        _ => counted += 1,
                    }
                }
                Ok(r) => {
                    usher_sdk::warn!(message_ids = ids.join(","), path = req.path, status = r.status,
                        body = r.body.chars().take(300).collect::<String>(); "campaign service refused the report");
                    failures.extend(ids);
                }
                Err(e) => {
                    usher_sdk::warn!(message_ids = ids.join(","), path = req.path, error = e;
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
            assert_eq!(parts.len(), 6, "{}", r.path);
            assert_eq!(
                (parts[1], parts[3], parts[5]),
                ("campaigns", "markets", "verdict-reports")
            );
            let market = format!("{}/{}", parts[2], parts[4]);
            let body: Value = serde_json::from_str(r.body.as_deref().unwrap_or("{}"))?;
            let id = body["reportId"].as_str().unwrap_or_default().to_string();
            if s.down_for.contains(&id) {
                return Ok(fakes::json_response(503, &json!({"error": "busy"})));
            }
            if s.unknown.contains(&market) {
                return Ok(fakes::json_response(404, &json!({"error": "no market"})));
            }
            let counts: VerdictCounts = serde_json::from_value(body["counts"].clone())?;
            let counted = s.seen.insert(format!("{market}/{id}"));
            if counted {
                s.reported.entry(market).or_default().add(&counts);
            }
            Ok(fakes::json_response(200, &json!({"counted": counted})))
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
        assert_eq!(fakes.requests().len(), 4, "the duplicate was sent once");
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
            Ok(fakes::json_response(200, &json!({"counted": true})))
        });
        let _installed = fakes.install();
        let r = process("campaigns", &[report("c 1", "m/2", "d#0", 1, 0)]);
        assert!(r.failures.is_empty());
        let req = &fakes.requests()[0];
        assert_eq!(req.path, "/campaigns/c%201/markets/m%2F2/verdict-reports");
        assert_eq!(req.method, Method::Post);
        let body: Value = serde_json::from_str(req.body.as_deref().unwrap_or("")).expect("json");
        assert_eq!(
            body,
            json!({"reportId": "d#0", "counts": {"winners": 1, "losers": 0, "waitlisted": 0}})
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
