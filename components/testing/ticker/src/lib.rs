//! `testing/ticker` (scheduled-worker): records every tick as an item
//! `{"PK": <schedule>, "SK": <scheduledTime>, "schedule", "scheduledTime"}`
//! in the table its `table` setting names (default `ticks`), and answers
//! `{"recorded": <scheduledTime>}`.
//!
//! Settings that make ticks fail, for the host's schedule tests:
//! * `fail: true` — records the tick (with `"failed": true`), then fails it;
//! * `spin: true` — never returns, so the worker's time limit stops the run
//!   (a long run, for the no-overlap rule).

use std::hint::black_box;

use serde_json::{json, Value};
use usher_sdk::{ScheduledWorker, Tick};

/// The item recorded for a tick.
pub fn item(tick: &Tick, failed: bool) -> Value {
    let mut item = json!({
        "PK": tick.schedule,
        "SK": tick.scheduled_time,
        "schedule": tick.schedule,
        "scheduledTime": tick.scheduled_time,
    });
    if failed {
        item["failed"] = Value::Bool(true);
    }
    item
}

/// Counts up forever (through `black_box`, so the loop stays).
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// The ticker worker.
pub struct Ticker;

impl ScheduledWorker for Ticker {
    fn handle(tick: Tick) -> Result<Value, String> {
        let flag = |name: &str| {
            usher_sdk::config::get_or(name, false).map_err(|e| format!("setting {name}: {e}"))
        };
        if flag("spin")? {
            spin();
        }
        let fail = flag("fail")?;
        let table = usher_sdk::config::string_or("table", "ticks").map_err(|e| e.to_string())?;
        usher_sdk::table::put(&table, &item(&tick, fail), None)
            .map_err(|e| format!("recording the tick in {table}: {e}"))?;
        if fail {
            return Err(format!("tick {} failed on request", tick.scheduled_time));
        }
        Ok(json!({ "recorded": tick.scheduled_time }))
    }
}

usher_sdk::export_scheduled_worker!(Ticker);

#[cfg(test)]
mod tests {
    use super::*;

    fn tick() -> Tick {
        Tick {
            schedule: "testing/ticker".into(),
            scheduled_time: "2026-01-01T00:00:01Z".into(),
        }
    }

    #[test]
    fn the_item_is_keyed_by_schedule_and_time() {
        let item = item(&tick(), false);
        assert_eq!(item["PK"], "testing/ticker");
        assert_eq!(item["SK"], "2026-01-01T00:00:01Z");
        assert_eq!(item["scheduledTime"], "2026-01-01T00:00:01Z");
        assert!(item.get("failed").is_none());
    }

    #[test]
    fn a_failed_tick_is_marked() {
        assert_eq!(item(&tick(), true)["failed"], true);
    }

    #[test]
    fn natively_the_settings_are_unavailable() {
        // Outside a component the config capability fails; the tick fails
        // with that error instead of panicking.
        let err = Ticker::handle(tick()).expect_err("native");
        assert!(err.contains("setting spin"), "{err}");
    }
}
