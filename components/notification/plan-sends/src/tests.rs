use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use super::*;
use usher_domain::notification::{max_in_window, Notification, ReminderKind, State};
use usher_domain::rfc3339;
use usher_sdk::fakes::{self, Fakes};
use usher_sdk::json::json;
use usher_sdk::Value;

const T: &str = "notifications";
const NOW: &str = "2030-01-01T00:00:00.500Z";

fn now() -> i64 {
    rfc3339::parse_millis(NOW).expect("now")
}

fn param<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    path.split_once('?')?.1.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then_some(v)
    })
}

/// The Entry Service's selections of c1's markets: `winners` WINNERs of
/// draw `c1.<market>` and as many LOSERs, paged by globalUserId.
fn entries(fakes: Fakes, winners: usize) -> Fakes {
    fakes.on_service("entries", move |r| {
        let (path, _) = r.path.split_once('?').unwrap_or((&r.path, ""));
        let market = path
            .strip_prefix("/markets/")
            .and_then(|p| p.strip_suffix("/selections"))
            .unwrap_or("");
        let all: Vec<Value> = (0..winners * 2)
            .map(|i| {
                json!({"globalUserId": format!("fan-{i:05}"), "drawId": format!("c1.{market}"),
                       "verdict": if i % 2 == 0 { "WINNER" } else { "LOSER" }})
            })
            .collect();
        let limit: usize = param(&r.path, "limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(1000);
        let after = param(&r.path, "after");
        let rest: Vec<&Value> = all
            .iter()
            .filter(|s| after.is_none_or(|a| s["globalUserId"].as_str().unwrap_or("") > a))
            .collect();
        let page: Vec<&Value> = rest.iter().take(limit).copied().collect();
        let next = (rest.len() > limit).then(|| page.last().map(|s| s["globalUserId"].clone()));
        Ok(fakes::json_response(
            200,
            &json!({"selections": page, "next": next.flatten()}),
        ))
    })
}

/// A User Service holding jobs by id as the real one does: the same job
/// again is a duplicate, the same id with other content a 409.
#[derive(Clone, Default)]
struct Users {
    jobs: Rc<RefCell<BTreeMap<String, Value>>>,
    fail_after: Rc<RefCell<Option<usize>>>,
}

impl Users {
    fn install(&self, fakes: Fakes) -> Fakes {
        let me = self.clone();
        fakes.on_service("users", move |r| {
            let body: Value =
                serde_json::from_str(r.body.as_deref().unwrap_or("{}")).expect("json");
            let mut jobs = me.jobs.borrow_mut();
            if let Some(n) = *me.fail_after.borrow() {
                if jobs.len() >= n {
                    return Ok(fakes::json_response(503, &json!({"error": "down"})));
                }
            }
            let id = body["jobId"].as_str().expect("jobId").to_string();
            let fans = body["fans"].as_array().map_or(0, Vec::len);
            match jobs.get(&id) {
                Some(stored) if stored == &body => Ok(fakes::json_response(
                    200,
                    &json!({"jobId": id, "enqueued": fans, "duplicate": true}),
                )),
                Some(_) => Ok(fakes::json_response(409, &json!({"error": "another job"}))),
                None => {
                    jobs.insert(id.clone(), body);
                    Ok(fakes::json_response(
                        200,
                        &json!({"jobId": id, "enqueued": fans, "duplicate": false}),
                    ))
                }
            }
        })
    }

    /// Every fan's jobs.
    fn fans(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for job in self.jobs.borrow().values() {
            for f in job["fans"].as_array().into_iter().flatten() {
                *out.entry(f.as_str().unwrap_or("").to_string()).or_insert(0) += 1;
            }
        }
        out
    }

    fn times(&self) -> Vec<(i64, u64)> {
        self.jobs
            .borrow()
            .values()
            .map(|j| {
                (
                    rfc3339::parse_millis(j["sendAt"].as_str().unwrap_or("")).expect("sendAt"),
                    j["fans"].as_array().map_or(0, Vec::len) as u64,
                )
            })
            .collect()
    }
}

fn winner_note(market: &str) -> Value {
    serde_json::to_value(Notification::new(
        ReminderKind::Winner,
        "c1",
        market,
        &format!("c1.{market}"),
        "2030-01-01T00:00:00.000Z",
        0,
        "2030-01-01T00:00:00.000Z",
    ))
    .expect("json")
}

fn note(fakes: &Fakes, market: &str) -> Notification {
    let key = json!({"PK": "NOTIFICATIONS", "SK": format!("c1#{market}#winner#c1.{market}")});
    serde_json::from_value(fakes.item(T, &key).expect("notification")).expect("notification")
}

fn plan(payload: Value) -> Value {
    run(&Settings::default(), &payload, now()).expect("answer")
}

#[test]
fn a_market_is_planned_at_the_rate_and_a_retry_sends_the_same_jobs() {
    let users = Users::default();
    let fakes = users.install(entries(Fakes::new(), 95).with_item(T, winner_note("m1")));
    let _i = fakes.install();
    let answer = plan(json!({"campaignId": "c1", "marketId": "m1"}));
    assert_eq!(answer["plannedCount"], 95, "{answer}");
    assert_eq!(answer["jobs"], 10);
    assert_eq!(answer["errors"], json!([]));
    let fans = users.fans();
    assert_eq!(fans.len(), 95);
    assert!(fans.values().all(|n| *n == 1));
    assert!(
        fans.keys()
            .all(|f| f[4..].parse::<u32>().expect("n") % 2 == 0),
        "winners only"
    );
    // 10 fans a second, starting at the next whole second.
    let times = users.times();
    assert_eq!(max_in_window(&times, 1000), 10);
    assert_eq!(times.iter().map(|t| t.0).min(), Some(now() + 500));
    assert_eq!(times.iter().map(|t| t.0).max(), Some(now() + 500 + 9000));
    assert_eq!(note(&fakes, "m1").state, State::Enqueued);
    let jobs = users.jobs.borrow().clone();
    // Again (a retry of the step): nothing new.
    let again = plan(json!({"campaignId": "c1", "marketId": "m1", "now": "2030-01-01T00:00:05Z"}));
    assert_eq!(again["plannedCount"], 95);
    assert_eq!(*users.jobs.borrow(), jobs);
    assert!(users
        .jobs
        .borrow()
        .keys()
        .all(|k| k.starts_with("winner#c1#m1#c1.m1#")));
}

#[test]
fn a_failure_half_way_is_finished_by_the_retry_with_the_same_jobs() {
    let users = Users::default();
    *users.fail_after.borrow_mut() = Some(4);
    let fakes = users.install(entries(Fakes::new(), 95).with_item(T, winner_note("m1")));
    let _i = fakes.install();
    let answer = plan(json!({"campaignId": "c1", "marketId": "m1"}));
    assert_eq!(answer["errors"][0]["reason"], "user-service", "{answer}");
    assert_eq!(note(&fakes, "m1").state, State::Planned);
    let first: BTreeMap<String, Value> = users.jobs.borrow().clone();
    assert_eq!(first.len(), 4);
    *users.fail_after.borrow_mut() = None;
    // Later, with the Entry Service answering other fans: the fixed plan is sent.
    let answer = run(
        &Settings::default(),
        &json!({"campaignId": "c1", "marketId": "m1"}),
        now() + 3_600_000,
    )
    .expect("retry");
    assert_eq!(answer["errors"], json!([]), "{answer}");
    assert_eq!(answer["plannedCount"], 95);
    assert_eq!(answer["duplicates"], 4);
    for (id, job) in &first {
        assert_eq!(users.jobs.borrow().get(id), Some(job));
    }
    assert!(users.fans().values().all(|n| *n == 1));
    assert_eq!(max_in_window(&users.times(), 1000), 10);
}

#[test]
fn a_plan_left_half_written_is_taken_over() {
    let users = Users::default();
    let mut dead = winner_note("m1");
    dead["state"] = json!("PLANNING");
    dead["planId"] = json!("dead");
    let fakes = users.install(
        entries(Fakes::new(), 30)
            .with_item(T, dead)
            .with_item(
                T,
                json!({"PK": "PLAN#winner#c1#m1#c1.m1#dead", "SK": "SLOT#00000000", "slot": 0,
                       "jobId": "winner#c1#m1#c1.m1#0", "sendAt": "2030-01-01T00:00:01.000Z", "fans": ["someone"]}),
            ),
    );
    let _i = fakes.install();
    let answer = plan(json!({"campaignId": "c1", "marketId": "m1"}));
    assert_eq!(answer["plannedCount"], 30, "{answer}");
    let n = note(&fakes, "m1");
    assert_ne!(n.plan.expect("plan").plan_id, "dead");
    assert!(!users.fans().contains_key("someone"));
}

#[test]
fn plans_of_two_markets_never_overlap_and_nobody_is_done_at_once() {
    let users = Users::default();
    let fakes = users.install(
        entries(Fakes::new(), 25)
            .with_item(T, winner_note("m1"))
            .with_item(T, winner_note("m2")),
    );
    let _i = fakes.install();
    plan(json!({"campaignId": "c1", "marketId": "m1"}));
    plan(json!({"campaignId": "c1", "marketId": "m2"}));
    let times = users.times();
    assert_eq!(times.len(), 6);
    assert_eq!(max_in_window(&times, 1000), 10, "{times:?}");
    let (p1, p2) = (
        note(&fakes, "m1").plan.expect("p1"),
        note(&fakes, "m2").plan.expect("p2"),
    );
    assert!(p2.start_ms >= p1.start_ms + 3000, "{p1:?} {p2:?}");
    // A market with no notification: nothing planned.
    let answer = plan(json!({"campaignId": "c1", "marketId": "m9"}));
    assert_eq!(
        (
            answer["plannedCount"].clone(),
            answer["notifications"].clone()
        ),
        (json!(0), json!(0))
    );
}

#[test]
fn bad_payloads_are_refused() {
    let fakes = Fakes::new();
    let _i = fakes.install();
    for bad in [
        json!([]),
        json!({"campaignId": "c1"}),
        json!({"campaignId": "c#1", "marketId": "m1"}),
        json!({"campaignId": "c1", "marketId": 3}),
        json!({"campaignId": "c1", "marketId": "m1", "now": "yesterday"}),
    ] {
        let e = run(&Settings::default(), &bad, now()).expect_err("refused");
        assert_eq!(e.kind, "InvalidInput", "{bad}");
    }
    let s = Settings {
        target_rate_per_s: 0.0,
        ..Settings::default()
    };
    assert!(run(&s, &json!({"campaignId": "c1", "marketId": "m1"}), now()).is_err());
}

#[test]
fn an_attempt_whose_plan_was_taken_over_does_not_take_it_back() {
    let users = Users::default();
    let key = json!({"PK": "NOTIFICATIONS", "SK": "c1#m1#winner#c1.m1"});
    let hook_key = key.clone();
    let mut done = false;
    let fakes = users.install(
        entries(Fakes::new(), 20)
            .with_item(T, winner_note("m1"))
            .intercept(move |call, tables| {
                // While this attempt reads the fans, another one claims the plan.
                if matches!(call, usher_sdk::fakes::Call::Service(_)) && !done {
                    done = true;
                    let mut n = tables.get(T, &hook_key).cloned().expect("notification");
                    n["planId"] = json!("other");
                    tables.insert(T, n);
                }
                None
            }),
    );
    let _i = fakes.install();
    let answer = plan(json!({"campaignId": "c1", "marketId": "m1"}));
    assert_eq!(answer["errors"][0]["reason"], "conflict", "{answer}");
    assert!(users.jobs.borrow().is_empty(), "nothing sent by the loser");
    let n: Notification = serde_json::from_value(fakes.item(T, &key).expect("n")).expect("n");
    assert_eq!(
        (n.state, n.plan_id.as_deref()),
        (State::Planning, Some("other"))
    );
    // The other attempt died: the next run takes over and finishes.
    let answer = plan(json!({"campaignId": "c1", "marketId": "m1"}));
    assert_eq!(answer["plannedCount"], 20, "{answer}");
    assert!(users.fans().values().all(|n| *n == 1));
}
