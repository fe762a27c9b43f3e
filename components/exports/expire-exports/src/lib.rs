//! `exports/expire-exports` (scheduled-worker): runs every five minutes.
//!
//! Made by `just new-worker`: replace the logic, keep it callable natively
//! (the capability calls reach `usher_sdk::fakes` in the unit tests).

use usher_sdk::json::json;
use usher_sdk::{ScheduledWorker, Tick, Value};

/// Runs one tick; the summary is logged by the host.
pub fn run(tick: &Tick) -> Result<Value, String> {
    Ok(json!({"scheduledTime": tick.scheduled_time}))
}

/// The worker.
pub struct ExpireExports;

impl ScheduledWorker for ExpireExports {
    fn handle(tick: Tick) -> Result<Value, String> {
        run(&tick)
    }
}

usher_sdk::export_scheduled_worker!(ExpireExports);

#[cfg(test)]
mod tests {
    use super::*;
    use usher_sdk::fakes::Fakes;

    #[test]
    fn a_tick_answers_its_time() {
        let fakes = Fakes::new();
        let _installed = fakes.install();
        let tick = Tick {
            schedule: "exports/expire-exports".into(),
            scheduled_time: "2026-01-01T00:05:00Z".into(),
        };
        assert_eq!(
            run(&tick),
            Ok(json!({"scheduledTime": "2026-01-01T00:05:00Z"}))
        );
        assert!(fakes.calls().is_empty());
    }
}
