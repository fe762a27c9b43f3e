//! The notification domain's records and rules (seed 003's
//! notificationGenerator → getMarketsToNotify → planSends →
//! triggerReminderEmail), shared by the `notification/*` workers.
//!
//! **Which reminders.** Two kinds, each one [`Notification`] per market and
//! *round* (the thing reminded of), recorded once in the `notifications`
//! table by the generator:
//!
//! * [`ReminderKind::Closing`]: an OPEN campaign whose `closesAt` is within
//!   the generator's look-ahead (setting `closing_window_hours`, default
//!   48): every fan registered in the market (the Entry Service's market
//!   entries) is reminded that registration closes. Round: `closesAt` in
//!   epoch milliseconds; due `closing_lead_hours` (default 24) before the
//!   close, or at once when that is past.
//! * [`ReminderKind::Winner`]: a market whose draw stats are FINISHED: every
//!   WINNER of that draw (the Entry Service's market selections) is
//!   reminded to buy with the code it holds. Round: the draw id; due at once.
//!
//! **Records** (table `notifications`, keys `PK`/`SK`):
//!
//! * a notification: `{"PK":"NOTIFICATIONS","SK":"<campaignId>#<marketId>#<kind>#<round>", …}`
//!   ([`Notification`]), written on condition that it does not exist (a
//!   later generator run changes nothing);
//! * a plan's slots: `{"PK":"PLAN#<notificationId>#<planId>","SK":"SLOT#<n, 8 digits>","jobId","sendAt","fans":[…]}`
//!   ([`Slot`]);
//! * the send-rate cursor: `{"PK":"RATE","SK":"RATE","nextFreeMs","version"}`:
//!   every plan reserves its time window there, so plans of different
//!   markets never overlap and the target rate holds over all of them.
//!
//! **The rate.** [`Layout::for_rate`]: at a target of `r` fans per second a
//! plan is a run of jobs (slots) of at most `fansPerJob` fans whose
//! `sendAt`s are `spacingMs` apart, chosen so that no half-open one-second
//! window holds more than `r` fans ([`max_in_window`] checks it).
//!
//! **Once.** Job ids are deterministic (`<notificationId>#<slot>`), a plan is
//! fixed before any job is sent (its slots are written, then the
//! notification says PLANNED with that plan id) and every later attempt
//! sends the same slots, so the User Service's idempotency by job id keeps
//! every fan at one reminder; triggering goes through the service's
//! trigger-once record.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[cfg(feature = "sdk")]
pub mod sdk;

/// The partition of the notification items.
pub const NOTIFICATIONS_PARTITION: &str = "NOTIFICATIONS";
/// The User Service takes at most this many fans in one e-mail job.
pub const MAX_JOB_FANS: usize = 500;
/// The default target rate, fans per second.
pub const DEFAULT_RATE_PER_S: f64 = 10.0;

/// What a reminder is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReminderKind {
    /// Registration closes soon: every registered fan of the market.
    Closing,
    /// The draw is done: every winner, to buy with its code.
    Winner,
}

impl ReminderKind {
    /// `closing` / `winner`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReminderKind::Closing => "closing",
            ReminderKind::Winner => "winner",
        }
    }

    /// The User Service template of the reminder.
    pub fn template_id(self) -> &'static str {
        match self {
            ReminderKind::Closing => "reminder-closing",
            ReminderKind::Winner => "reminder-winner",
        }
    }
}

/// Where a notification is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    /// Recorded, not planned.
    #[default]
    Due,
    /// A plan is being written (`planId`); another attempt may take over.
    Planning,
    /// The plan `planId` is fixed: its slots are the jobs to send.
    Planned,
    /// Every job of the plan is at the User Service.
    Enqueued,
    /// Every job is triggered (or there was nobody to remind).
    Done,
}

/// How the jobs of a plan are spread over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Layout {
    /// At most this many fans per job.
    pub fans_per_job: usize,
    /// Milliseconds between two jobs' `sendAt`.
    pub spacing_ms: i64,
}

impl Layout {
    /// The layout for a target of `rate` fans per second (> 0): `k` jobs per
    /// second (`k = ⌈rate / 500⌉`) of `⌊rate / k⌋` fans, `⌈1000 / k⌉` ms
    /// apart, so a one-second window holds at most `k` jobs (≤ `rate` fans);
    /// below one fan per second, one fan every `⌈1000 / rate⌉` ms.
    pub fn for_rate(rate: f64) -> Result<Layout, String> {
        if !rate.is_finite() || rate <= 0.0 || rate > 1_000_000.0 {
            return Err(format!(
                "target_rate_per_s must be a number above 0 and at most 1000000, not {rate}"
            ));
        }
        if rate < 1.0 {
            return Ok(Layout {
                fans_per_job: 1,
                spacing_ms: (1000.0 / rate).ceil() as i64,
            });
        }
        let per_second = (rate / MAX_JOB_FANS as f64).ceil().max(1.0);
        Ok(Layout {
            fans_per_job: ((rate / per_second).floor() as usize).clamp(1, MAX_JOB_FANS),
            spacing_ms: (1000.0 / per_second).ceil() as i64,
        })
    }

    /// How many jobs `fans` fans take.
    pub fn slots(&self, fans: usize) -> usize {
        fans.div_ceil(self.fans_per_job.max(1))
    }

    /// The length of the window `slots` jobs take from their start.
    pub fn window_ms(&self, slots: usize) -> i64 {
        self.spacing_ms * slots as i64
    }
}

/// The most fans due in any half-open window of `window_ms` among jobs
/// given as `(sendAt ms, fans)`.
pub fn max_in_window(jobs: &[(i64, u64)], window_ms: i64) -> u64 {
    let mut sorted = jobs.to_vec();
    sorted.sort_unstable();
    let (mut best, mut sum, mut lo) = (0, 0u64, 0usize);
    for hi in 0..sorted.len() {
        sum += sorted[hi].1;
        while sorted[hi].0 - sorted[lo].0 >= window_ms {
            sum -= sorted[lo].1;
            lo += 1;
        }
        best = best.max(sum);
    }
    best
}

/// A plan: its id, where its window starts, its layout and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Which attempt wrote it (slot items live under it).
    pub plan_id: String,
    /// The first job's `sendAt`, epoch ms.
    pub start_ms: i64,
    /// The jobs' spacing and size.
    pub layout: Layout,
    /// How many jobs.
    pub slots: u64,
    /// How many fans.
    pub fans: u64,
}

/// A notification item of the `notifications` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// `NOTIFICATIONS`.
    #[serde(rename = "PK")]
    pub pk: String,
    /// `<campaignId>#<marketId>#<kind>#<round>`.
    #[serde(rename = "SK")]
    pub sk: String,
    /// `<kind>#<campaignId>#<marketId>#<round>`: the prefix of its job ids.
    pub notification_id: String,
    /// The reminder.
    pub kind: ReminderKind,
    /// The campaign.
    pub campaign_id: String,
    /// The market.
    pub market_id: String,
    /// What is reminded of (the draw id; the close time in ms).
    pub round: String,
    /// The User Service template.
    pub template_id: String,
    /// When it is due, RFC 3339.
    pub due_at: String,
    /// The fans the generator counted.
    #[serde(default)]
    pub user_count: u64,
    /// Where it is.
    #[serde(default)]
    pub state: State,
    /// The plan being written or fixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    /// The fixed plan (PLANNED and later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// How many of the plan's slots (in order) are triggered.
    #[serde(default)]
    pub triggered_slots: u64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl Notification {
    /// A new, due notification.
    pub fn new(
        kind: ReminderKind,
        campaign: &str,
        market: &str,
        round: &str,
        due_at: &str,
        user_count: u64,
        now: &str,
    ) -> Notification {
        Notification {
            pk: NOTIFICATIONS_PARTITION.into(),
            sk: sort_key(campaign, market, kind, round),
            notification_id: notification_id(kind, campaign, market, round),
            kind,
            campaign_id: campaign.into(),
            market_id: market.into(),
            round: round.into(),
            template_id: kind.template_id().into(),
            due_at: due_at.into(),
            user_count,
            state: State::Due,
            plan_id: None,
            plan: None,
            triggered_slots: 0,
            created_at: now.into(),
            updated_at: now.into(),
        }
    }

    /// Its key.
    pub fn key(&self) -> Value {
        json!({"PK": self.pk, "SK": self.sk})
    }

    /// Whether it is due at `now_ms` and not done.
    pub fn is_due(&self, now_ms: i64) -> bool {
        self.state != State::Done
            && crate::rfc3339::parse_millis(&self.due_at).is_some_and(|d| d <= now_ms)
    }
}

/// `<campaignId>#<marketId>#<kind>#<round>`.
pub fn sort_key(campaign: &str, market: &str, kind: ReminderKind, round: &str) -> String {
    format!("{campaign}#{market}#{}#{round}", kind.as_str())
}

/// The sort-key prefix of a market's notifications.
pub fn market_prefix(campaign: &str, market: &str) -> String {
    format!("{campaign}#{market}#")
}

/// `<kind>#<campaignId>#<marketId>#<round>`.
pub fn notification_id(kind: ReminderKind, campaign: &str, market: &str, round: &str) -> String {
    format!("{}#{campaign}#{market}#{round}", kind.as_str())
}

/// The job id of a plan's slot: `<notificationId>#<slot>`.
pub fn job_id(notification_id: &str, slot: u64) -> String {
    format!("{notification_id}#{slot}")
}

/// The partition of a plan's slots.
pub fn plan_partition(notification_id: &str, plan_id: &str) -> String {
    format!("PLAN#{notification_id}#{plan_id}")
}

/// The key of a plan's slot.
pub fn slot_key(notification_id: &str, plan_id: &str, slot: u64) -> Value {
    json!({"PK": plan_partition(notification_id, plan_id), "SK": format!("SLOT#{slot:08}")})
}

/// The key of the send-rate cursor.
pub fn rate_key() -> Value {
    json!({"PK": "RATE", "SK": "RATE"})
}

/// One job of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Slot {
    /// Its index in the plan.
    pub slot: u64,
    /// The User Service job id.
    pub job_id: String,
    /// RFC 3339.
    pub send_at: String,
    /// The fans (globalUserIds).
    pub fans: Vec<String>,
}

/// The slots of `fans` (in the order given) from `start_ms`.
pub fn slots_of(
    notification_id: &str,
    fans: &[String],
    layout: Layout,
    start_ms: i64,
) -> Vec<Slot> {
    fans.chunks(layout.fans_per_job.max(1))
        .enumerate()
        .map(|(i, chunk)| Slot {
            slot: i as u64,
            job_id: job_id(notification_id, i as u64),
            send_at: crate::rfc3339::format_millis(start_ms + layout.spacing_ms * i as i64),
            fans: chunk.to_vec(),
        })
        .collect()
}

/// `ms` rounded up to a whole second.
pub fn ceil_second(ms: i64) -> i64 {
    ms.div_euclid(1000) * 1000 + if ms.rem_euclid(1000) == 0 { 0 } else { 1000 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_never_exceed_the_rate_in_any_second() {
        for rate in [
            0.3, 1.0, 2.5, 10.0, 33.0, 499.0, 500.0, 501.0, 750.0, 1234.5, 5000.0,
        ] {
            let layout = Layout::for_rate(rate).expect("layout");
            assert!(layout.fans_per_job >= 1 && layout.fans_per_job <= MAX_JOB_FANS);
            let fans: Vec<String> = (0..3000).map(|i| format!("f{i:05}")).collect();
            let slots = slots_of("n", &fans, layout, 1_000_000);
            let jobs: Vec<(i64, u64)> = slots
                .iter()
                .map(|s| {
                    (
                        crate::rfc3339::parse_millis(&s.send_at).expect("time"),
                        s.fans.len() as u64,
                    )
                })
                .collect();
            let most = max_in_window(&jobs, 1000);
            assert!(
                most as f64 <= rate.max(1.0),
                "rate {rate}: {most} in a second ({layout:?})"
            );
            // Not needlessly slow: at least half the target when there is enough.
            assert!(
                most as f64 >= (rate / 2.0).min(rate).floor().min(3000.0),
                "rate {rate}: {most}"
            );
            let n: usize = slots.iter().map(|s| s.fans.len()).sum();
            assert_eq!(n, 3000);
        }
        assert_eq!(
            Layout::for_rate(10.0),
            Ok(Layout {
                fans_per_job: 10,
                spacing_ms: 1000
            })
        );
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(Layout::for_rate(bad).is_err());
        }
    }

    #[test]
    fn window_counting() {
        assert_eq!(max_in_window(&[], 1000), 0);
        assert_eq!(max_in_window(&[(0, 5), (999, 5), (1000, 5)], 1000), 10);
        assert_eq!(max_in_window(&[(0, 5), (1000, 5), (2000, 5)], 1000), 5);
        assert_eq!(max_in_window(&[(2000, 1), (0, 3), (500, 4)], 1000), 7);
    }

    #[test]
    fn keys_ids_and_records() {
        let n = Notification::new(
            ReminderKind::Winner,
            "c1",
            "m1",
            "c1.m1",
            "2026-01-01T00:00:00.000Z",
            7,
            "2026-01-01T00:00:00.000Z",
        );
        assert_eq!(
            n.key(),
            json!({"PK": "NOTIFICATIONS", "SK": "c1#m1#winner#c1.m1"})
        );
        assert_eq!(n.notification_id, "winner#c1#m1#c1.m1");
        assert_eq!(job_id(&n.notification_id, 3), "winner#c1#m1#c1.m1#3");
        assert!(n.sk.starts_with(&market_prefix("c1", "m1")));
        let v = serde_json::to_value(&n).expect("json");
        assert_eq!(v["state"], "DUE");
        assert_eq!(v["kind"], "winner");
        assert_eq!(v["templateId"], "reminder-winner");
        let back: Notification = serde_json::from_value(v).expect("back");
        assert_eq!(back, n);
        let due = crate::rfc3339::parse_millis("2026-01-01T00:00:00.000Z").expect("t");
        assert!(n.is_due(due) && !n.is_due(due - 1));
        assert_eq!(slot_key("n", "p", 12)["SK"], "SLOT#00000012");
        assert_eq!(ceil_second(1000), 1000);
        assert_eq!(ceil_second(1001), 2000);
    }
}
