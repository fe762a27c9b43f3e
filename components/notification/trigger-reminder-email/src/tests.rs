use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use super::*;
use usher_domain::notification::{
    slot_key, slots_of, Layout, Notification, Plan, ReminderKind, State,
};
use usher_domain::rfc3339;
use usher_sdk::fakes::{self, Fakes};
use usher_sdk::json::json;
use usher_sdk::Value;

const T: &str = "notifications";
const START: &str = "2030-01-01T00:00:01.000Z";

fn start() -> i64 {
    rfc3339::parse_millis(START).expect("start")
}

/// A User Service that sends a job on its first trigger only, refuses a
/// trigger before the job's sendAt (409), and may fail every trigger.
#[derive(Clone, Default)]
struct Users {
    send_at: Rc<RefCell<BTreeMap<String, i64>>>,
    sent: Rc<RefCell<BTreeMap<String, u32>>>,
    now: Rc<RefCell<i64>>,
    down: Rc<RefCell<bool>>,
}

impl Users {
    fn install(&self, fakes: Fakes) -> Fakes {
        let me = self.clone();
        fakes.on_service("users", move |r| {
            if *me.down.borrow() {
                return Ok(fakes::json_response(503, &json!({"error": "down"})));
            }
            let id = r
                .path
                .strip_prefix("/email-jobs/")
                .and_then(|p| p.strip_suffix("/trigger"))
                .expect("a trigger path")
                .replace("%23", "#")
                .replace("%2E", ".");
            let Some(at) = me.send_at.borrow().get(&id).copied() else {
                return Ok(fakes::json_response(404, &json!({"error": "no job"})));
            };
            if *me.now.borrow() < at {
                return Ok(fakes::json_response(409, &json!({"error": "not due"})));
            }
            let mut sent = me.sent.borrow_mut();
            let n = sent.entry(id.clone()).or_insert(0);
            *n += 1;
            Ok(fakes::json_response(
                200,
                &json!({"jobId": id, "triggered": *n == 1, "triggeredAt": START, "fans": 10}),
            ))
        })
    }
}

/// An ENQUEUED winner reminder of m1 with 95 fans in 10 slots a second apart.
fn planned(users: &Users) -> Fakes {
    let mut n = Notification::new(ReminderKind::Winner, "c1", "m1", "c1.m1", START, 95, START);
    let layout = Layout::for_rate(10.0).expect("layout");
    let fans: Vec<String> = (0..95).map(|i| format!("fan-{i:03}")).collect();
    let slots = slots_of(&n.notification_id, &fans, layout, start());
    n.state = State::Enqueued;
    n.plan_id = Some("p1".into());
    n.plan = Some(Plan {
        plan_id: "p1".into(),
        start_ms: start(),
        layout,
        slots: 10,
        fans: 95,
    });
    let mut fakes = Fakes::new().with_item(T, serde_json::to_value(&n).expect("json"));
    for s in &slots {
        users.send_at.borrow_mut().insert(
            s.job_id.clone(),
            rfc3339::parse_millis(&s.send_at).expect("t"),
        );
        let mut item = slot_key(&n.notification_id, "p1", s.slot);
        item["slot"] = json!(s.slot);
        item["jobId"] = json!(s.job_id);
        item["sendAt"] = json!(s.send_at);
        item["fans"] = json!(s.fans);
        fakes = fakes.with_item(T, item);
    }
    users.install(fakes)
}

fn note(fakes: &Fakes) -> Notification {
    let key = json!({"PK": "NOTIFICATIONS", "SK": "c1#m1#winner#c1.m1"});
    serde_json::from_value(fakes.item(T, &key).expect("notification")).expect("notification")
}

fn trigger_at(users: &Users, at: i64) -> Value {
    *users.now.borrow_mut() = at;
    run(
        &Settings::default(),
        &json!({"campaignId": "c1", "marketId": "m1"}),
        at,
    )
    .expect("answer")
}

#[test]
fn due_jobs_are_triggered_in_order_and_each_once() {
    let users = Users::default();
    let fakes = planned(&users);
    let _i = fakes.install();
    // Before the first sendAt: nothing.
    let a = trigger_at(&users, start() - 1);
    assert_eq!(
        (a["triggeredCount"].clone(), a["remaining"].clone()),
        (json!(0), json!(95))
    );
    assert_eq!(a["nextSendAt"], START);
    // 3.5 s in: slots 0..=3.
    let a = trigger_at(&users, start() + 3_500);
    assert_eq!(a["jobs"], 4, "{a}");
    assert_eq!(a["triggeredCount"], 40);
    assert_eq!(a["remaining"], 55);
    assert_eq!(a["nextSendAt"], "2030-01-01T00:00:05.000Z");
    assert_eq!(note(&fakes).triggered_slots, 4);
    // Again at the same time: nothing more.
    let a = trigger_at(&users, start() + 3_500);
    assert_eq!(a["jobs"], 0);
    // The end: the rest, then DONE.
    let a = trigger_at(&users, start() + 60_000);
    assert_eq!(a["jobs"], 6, "{a}");
    assert_eq!(a["remaining"], 0);
    assert_eq!(a["nextSendAt"], Value::Null);
    assert_eq!(note(&fakes).state, State::Done);
    assert!(users.sent.borrow().values().all(|n| *n == 1));
    assert_eq!(users.sent.borrow().len(), 10);
}

#[test]
fn a_crash_before_the_cursor_moved_triggers_nothing_twice() {
    let users = Users::default();
    // The cursor update fails: the jobs were triggered, the cursor stays.
    let fakes = planned(&users).intercept(|call, _| match call {
        usher_sdk::fakes::Call::Update { .. } => Some(usher_sdk::Error::Unavailable("down".into())),
        _ => None,
    });
    {
        let _i = fakes.install();
        *users.now.borrow_mut() = start() + 60_000;
        let a = run(
            &Settings::default(),
            &json!({"campaignId": "c1", "marketId": "m1"}),
            start() + 60_000,
        )
        .expect("answer");
        assert_eq!(a["errors"].as_array().map(Vec::len), Some(1), "{a}");
        assert_eq!(users.sent.borrow().len(), 10);
    }
    let item = fakes.items(T).into_iter().collect::<Vec<_>>();
    let mut fresh = Fakes::new();
    for i in item {
        fresh = fresh.with_item(T, i);
    }
    let fresh = users.install(fresh);
    let _i = fresh.install();
    let a = trigger_at(&users, start() + 61_000);
    assert_eq!(a["triggeredCount"], 0, "{a}");
    assert_eq!(a["alreadyTriggered"], 10);
    assert_eq!(note(&fresh).state, State::Done);
    // The service saw each job twice and sent each once.
    assert!(users.sent.borrow().values().all(|n| *n == 2));
}

#[test]
fn a_failing_service_is_an_error_and_the_next_run_goes_on() {
    let users = Users::default();
    let fakes = planned(&users);
    let _i = fakes.install();
    *users.down.borrow_mut() = true;
    let a = trigger_at(&users, start() + 60_000);
    assert_eq!(a["errors"][0]["reason"], "user-service", "{a}");
    assert_eq!(a["remaining"], 95);
    *users.down.borrow_mut() = false;
    let a = trigger_at(&users, start() + 60_000);
    assert_eq!(a["triggeredCount"], 100, "{a}");
    assert_eq!(note(&fakes).state, State::Done);
}

#[test]
fn unplanned_reminders_wait_and_bad_payloads_are_refused() {
    let fakes = Fakes::new().with_item(
        T,
        serde_json::to_value(Notification::new(
            ReminderKind::Closing,
            "c1",
            "m1",
            "1",
            START,
            7,
            START,
        ))
        .expect("json"),
    );
    let _i = fakes.install();
    let a = run(
        &Settings::default(),
        &json!({"campaignId": "c1", "marketId": "m1"}),
        start(),
    )
    .expect("answer");
    assert_eq!(
        (a["triggeredCount"].clone(), a["remaining"].clone()),
        (json!(0), json!(7))
    );
    for bad in [
        json!(1),
        json!({"marketId": "m1"}),
        json!({"campaignId": "", "marketId": "m1"}),
    ] {
        assert_eq!(
            run(&Settings::default(), &bad, start())
                .expect_err("refused")
                .kind,
            "InvalidInput"
        );
    }
}
