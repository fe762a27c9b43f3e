//! `notification/notification-generator` (scheduled-worker, daily at
//! 06:00 UTC): finds the campaigns and markets that need reminders and
//! records them in the `notifications` table, one item per market,
//! reminder kind and round, with the time it is due (seed 003's
//! notificationGenerator; the rule is `usher_domain::notification::sdk::generate`):
//!
//! * a market whose draw stats are FINISHED: its winners are reminded to
//!   buy with their code (kind `winner`, due at once);
//! * each market of an OPEN campaign closing within `closing_window_hours`
//!   (48): its registered fans are reminded that registration closes (kind
//!   `closing`, due `closing_lead_hours` (24) before the close).
//!
//! A notification is written on condition that it does not exist, so a
//! later run (or the same tick again) changes nothing recorded. The tick's
//! summary is `{"marketCount","userCount","created","existing","campaigns","errors"}`;
//! a Campaign Service that cannot list the campaigns fails the tick.
//! `notification/generate-notifications` runs the same rule on demand.

use usher_domain::notification::sdk::{generate, GeneratorSettings};
use usher_domain::rfc3339;
use usher_sdk::{ScheduledWorker, Tick, Value};

/// Runs one tick at its scheduled time (the wall clock when it has none).
pub fn run(settings: &GeneratorSettings, tick: &Tick) -> Result<Value, String> {
    let now = rfc3339::parse_millis(&tick.scheduled_time).unwrap_or_else(rfc3339::now_millis);
    generate(settings, now)
}

/// The worker.
pub struct NotificationGenerator;

impl ScheduledWorker for NotificationGenerator {
    fn handle(tick: Tick) -> Result<Value, String> {
        let settings =
            GeneratorSettings::load().map_err(|e| format!("cannot read the settings: {e}"))?;
        run(&settings, &tick)
    }
}

usher_sdk::export_scheduled_worker!(NotificationGenerator);

#[cfg(test)]
mod tests {
    use super::*;
    use usher_sdk::fakes::{self, Fakes};
    use usher_sdk::json::json;

    #[test]
    fn a_tick_records_the_finished_draws_at_its_time() {
        let fakes = Fakes::new().on_service("campaigns", |r| {
            let body = match r.path.as_str() {
                p if p.starts_with("/campaigns?") => {
                    json!({"campaigns": [{"id": "c1", "status": "CLOSED",
                    "closesAt": "2025-01-01T00:00:00Z"}], "next": null})
                }
                "/campaigns/c1/markets" => json!({"markets": [{"id": "m1"}]}),
                "/campaigns/c1/markets/m1/stats" => {
                    json!({"status": "FINISHED", "drawId": "d1", "expected": {"winners": 3}})
                }
                _ => return Ok(fakes::json_response(404, &json!({}))),
            };
            Ok(fakes::json_response(200, &body))
        });
        let _i = fakes.install();
        let tick = Tick {
            schedule: "notification/notification-generator".into(),
            scheduled_time: "2026-01-01T06:00:00Z".into(),
        };
        let summary = run(&GeneratorSettings::default(), &tick).expect("summary");
        assert_eq!(
            (summary["marketCount"].clone(), summary["userCount"].clone()),
            (json!(1), json!(3))
        );
        let items = fakes.items("notifications");
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["dueAt"], "2026-01-01T06:00:00.000Z");
        assert_eq!(items[0]["notificationId"], "winner#c1#m1#d1");
    }

    #[test]
    fn a_campaign_service_down_fails_the_tick() {
        let fakes = Fakes::new().on_service("campaigns", |_| {
            Ok(fakes::json_response(500, &json!({"error": "x"})))
        });
        let _i = fakes.install();
        let tick = Tick {
            schedule: "s".into(),
            scheduled_time: "2026-01-01T06:00:00Z".into(),
        };
        assert!(run(&GeneratorSettings::default(), &tick).is_err());
        assert!(fakes.items("notifications").is_empty());
    }
}
