//! `exports/expire-exports` (scheduled-worker, every minute): looks after
//! the export jobs that are not finished (the `ACTIVE` index of the jobs
//! table, `usher_domain::exports`):
//!
//! - a TRIGGERED job whose lease ran out (its runner crashed or was
//!   killed) goes back to PENDING and its run message is sent again, until
//!   it was claimed [`MAX_ATTEMPTS`] times: then it is EXPIRED (with the
//!   reason). Both moves are conditional on the job's `version`, so a
//!   runner still alive loses the job at its next lease renewal;
//! - a PENDING job not touched for `resend_after_ms` (default 60000: its
//!   run message was lost) gets its run message again;
//! - a job that ended but whose dedupe or index item is left (its runner
//!   died between the two writes) is cleaned up.
//!
//! Nothing stays TRIGGERED for ever. The tick's summary:
//! `{"checked","requeued","expired","resent","cleaned","errors":[…]}`.
//! Settings: `table` (`exports`), `queue` (`run-export`), `resend_after_ms`.

use usher_domain::exports::{
    active_key, dedupe_key, job_key, run_message, ExportJob, ExportState, ACTIVE_PARTITION,
    MAX_ATTEMPTS,
};
use usher_domain::rfc3339;
use usher_sdk::json::json;
use usher_sdk::queue::{self, Outgoing};
use usher_sdk::table::{self, Condition};
use usher_sdk::{config, Error, ScheduledWorker, Tick, Value};

/// The worker's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The jobs table.
    pub table: String,
    /// The runner's queue.
    pub queue: String,
    /// How long a PENDING job waits before its message is sent again.
    pub resend_after_ms: i64,
}

impl Settings {
    /// From the registry's settings.
    pub fn load() -> usher_sdk::Result<Settings> {
        Ok(Settings {
            table: config::string_or("table", "exports")?,
            queue: config::string_or("queue", "run-export")?,
            resend_after_ms: config::get_or::<i64>("resend_after_ms", 60_000)?,
        })
    }
}

/// What one tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Unfinished jobs looked at.
    pub checked: u64,
    /// TRIGGERED jobs put back to PENDING.
    pub requeued: u64,
    /// TRIGGERED jobs EXPIRED.
    pub expired: u64,
    /// PENDING jobs whose message was sent again.
    pub resent: u64,
    /// Leftover items removed.
    pub cleaned: u64,
    /// Per-job problems (the next tick tries again).
    pub errors: Vec<String>,
}

/// One tick at `now_ms`.
pub fn sweep(settings: &Settings, now_ms: i64) -> Result<Summary, String> {
    let mut summary = Summary::default();
    let mut after: Option<Value> = None;
    loop {
        let page = table::query::<Value>(
            &settings.table,
            &json!({"PK": ACTIVE_PARTITION}),
            None,
            Some(500),
            after.as_ref(),
        )
        .map_err(|e| format!("reading the unfinished jobs: {e}"))?;
        for index in &page.items {
            summary.checked += 1;
            let (Some(c), Some(id)) = (
                index.get("campaignId").and_then(Value::as_str),
                index.get("exportId").and_then(Value::as_str),
            ) else {
                continue;
            };
            if let Err(e) = look_after(settings, c, id, now_ms, &mut summary) {
                summary.errors.push(format!("{c}/{id}: {e}"));
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(summary),
        }
    }
}

fn look_after(
    settings: &Settings,
    campaign_id: &str,
    export_id: &str,
    now_ms: i64,
    summary: &mut Summary,
) -> Result<(), String> {
    let item = table::get::<Value>(&settings.table, &job_key(campaign_id, export_id))
        .map_err(|e| format!("reading the job: {e}"))?;
    let Some(item) = item else {
        delete(&settings.table, &active_key(campaign_id, export_id), None)?;
        summary.cleaned += 1;
        return Ok(());
    };
    let job = ExportJob::from_item(item)?;
    let version = Some(Condition::AttributeEquals(
        "version".into(),
        json!(job.version),
    ));
    let now = rfc3339::format_millis(now_ms);
    match job.state {
        s if s.is_terminal() => {
            release(&settings.table, &job)?;
            summary.cleaned += 1;
        }
        ExportState::Triggered => {
            let expired = job.lease.as_ref().is_none_or(|l| l.expires_at_ms <= now_ms);
            if !expired {
                return Ok(());
            }
            if job.attempts >= MAX_ATTEMPTS {
                let set = json!({"state": ExportState::Expired, "version": job.version + 1, "updatedAt": now,
                                 "finishedAt": now, "error": format!("abandoned by {} runners (lease expired)", job.attempts)});
                if update(&settings.table, &job, &set, version)? {
                    release(&settings.table, &job)?;
                    summary.expired += 1;
                }
            } else {
                let set = json!({"state": ExportState::Pending, "version": job.version + 1, "updatedAt": now});
                if update(&settings.table, &job, &set, version)? {
                    send(settings, &job)?;
                    summary.requeued += 1;
                }
            }
        }
        ExportState::Pending => {
            let touched = rfc3339::parse_millis(&job.updated_at).unwrap_or(0);
            if now_ms - touched >= settings.resend_after_ms {
                let set = json!({"version": job.version + 1, "updatedAt": now});
                if update(&settings.table, &job, &set, version)? {
                    send(settings, &job)?;
                    summary.resent += 1;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// A conditional update of the job (removing its lease); `false` when it
/// changed meanwhile (a runner claimed or renewed it).
fn update(
    table_name: &str,
    job: &ExportJob,
    set: &Value,
    condition: Option<Condition>,
) -> Result<bool, String> {
    match table::update::<Value>(table_name, &job.key(), set, &["lease"], condition) {
        Ok(_) => Ok(true),
        Err(Error::ConditionFailed(_)) => Ok(false),
        Err(e) => Err(format!("updating the job: {e}")),
    }
}

fn send(settings: &Settings, job: &ExportJob) -> Result<(), String> {
    let message = Outgoing::json(&run_message(&job.campaign_id, &job.export_id))
        .map_err(|e| e.to_string())?;
    queue::send(&settings.queue, message)
        .map(|_| ())
        .map_err(|e| format!("sending the run message (the next tick sends it again): {e}"))
}

fn delete(table_name: &str, key: &Value, condition: Option<Condition>) -> Result<(), String> {
    match table::delete(table_name, key, condition) {
        Ok(()) | Err(Error::ConditionFailed(_)) => Ok(()),
        Err(e) => Err(format!("deleting {key}: {e}")),
    }
}

fn release(table_name: &str, job: &ExportJob) -> Result<(), String> {
    delete(
        table_name,
        &dedupe_key(&job.campaign_id, &job.fingerprint),
        Some(Condition::AttributeEquals(
            "exportId".into(),
            json!(job.export_id),
        )),
    )?;
    delete(
        table_name,
        &active_key(&job.campaign_id, &job.export_id),
        None,
    )
}

/// Runs one tick; the summary is logged by the host.
pub fn run(_tick: &Tick) -> Result<Value, String> {
    let settings = Settings::load().map_err(|e| format!("cannot read the settings: {e}"))?;
    let s = sweep(&settings, rfc3339::now_millis())?;
    if s.requeued + s.expired + s.resent > 0 || !s.errors.is_empty() {
        usher_sdk::info!(requeued = s.requeued, expired = s.expired, resent = s.resent; "export jobs looked after");
    }
    Ok(
        json!({"checked": s.checked, "requeued": s.requeued, "expired": s.expired,
              "resent": s.resent, "cleaned": s.cleaned, "errors": s.errors}),
    )
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
    use usher_domain::exports::{ExportJob, Lease};
    use usher_sdk::fakes::Fakes;

    fn settings() -> Settings {
        Settings {
            table: "exports".into(),
            queue: "run-export".into(),
            resend_after_ms: 60_000,
        }
    }

    fn job(
        id: &str,
        state: ExportState,
        attempts: u32,
        lease_until: Option<i64>,
        updated_ms: i64,
    ) -> ExportJob {
        ExportJob {
            export_id: id.into(),
            campaign_id: "c".into(),
            export_type: "entries".into(),
            market_id: None,
            state,
            fingerprint: format!("f-{id}"),
            requested_by: "u".into(),
            created_at: rfc3339::format_millis(updated_ms),
            updated_at: rfc3339::format_millis(updated_ms),
            version: 7,
            fencing: u64::from(attempts),
            attempts,
            lease: lease_until.map(|t| Lease {
                owner: "r".into(),
                expires_at_ms: t,
            }),
            row_count: None,
            size: None,
            file: None,
            completing: None,
            error: None,
            finished_at: None,
        }
    }

    fn with_job(f: Fakes, j: &ExportJob) -> Fakes {
        let mut index = active_key(&j.campaign_id, &j.export_id);
        index["campaignId"] = json!(j.campaign_id);
        index["exportId"] = json!(j.export_id);
        let mut dedupe = dedupe_key(&j.campaign_id, &j.fingerprint);
        dedupe["exportId"] = json!(j.export_id);
        f.with_item("exports", j.item())
            .with_item("exports", index)
            .with_item("exports", dedupe)
    }

    #[test]
    fn abandoned_jobs_go_back_to_pending_or_expire_and_live_ones_stay() {
        let now = 1_800_000_000_000;
        let jobs = [
            job(
                "live",
                ExportState::Triggered,
                1,
                Some(now + 5_000),
                now - 1_000,
            ),
            job(
                "dead",
                ExportState::Triggered,
                1,
                Some(now - 1),
                now - 40_000,
            ),
            job(
                "dead3",
                ExportState::Triggered,
                MAX_ATTEMPTS,
                Some(now - 1),
                now - 40_000,
            ),
            job("lost-msg", ExportState::Pending, 0, None, now - 61_000),
            job("fresh", ExportState::Pending, 0, None, now - 1_000),
            job("done", ExportState::Finished, 1, None, now - 1_000),
        ];
        let mut f = Fakes::new();
        for j in &jobs {
            f = with_job(f, j);
        }
        let _i = f.install();
        let s = sweep(&settings(), now).expect("sweep");
        assert_eq!(
            (s.checked, s.requeued, s.expired, s.resent, s.cleaned),
            (6, 1, 1, 1, 1),
            "{s:?}"
        );
        let state = |id: &str| {
            ExportJob::from_item(f.item("exports", &job_key("c", id)).expect("job")).expect("job")
        };
        assert_eq!(state("live").state, ExportState::Triggered);
        assert_eq!(state("dead").state, ExportState::Pending);
        assert!(state("dead").lease.is_none());
        assert_eq!(state("dead3").state, ExportState::Expired);
        assert!(state("dead3")
            .error
            .is_some_and(|e| e.contains("abandoned")));
        assert_eq!(state("fresh").version, 7);
        assert_eq!(state("lost-msg").version, 8);
        let sent: Vec<String> = f
            .queued("run-export")
            .iter()
            .map(|m| m.body.clone())
            .collect();
        assert_eq!(sent.len(), 2);
        assert!(
            sent.iter().any(|b| b.contains("\"dead\""))
                && sent.iter().any(|b| b.contains("lost-msg"))
        );
        // Ended jobs leave no index or dedupe item.
        assert!(f.item("exports", &active_key("c", "dead3")).is_none());
        assert!(f.item("exports", &active_key("c", "done")).is_none());
        assert!(f.item("exports", &dedupe_key("c", "f-dead3")).is_none());
        assert!(f.item("exports", &active_key("c", "dead")).is_some());
    }
}
