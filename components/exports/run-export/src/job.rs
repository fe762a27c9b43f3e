//! Claiming, leasing and finishing a job (see the crate docs).

use std::io::Write;

use serde_json::{json, Value};
use usher_domain::exports::{
    active_key, dedupe_key, export_type, job_key, object_key, Completing, ExportFile, ExportJob,
    ExportState, Lease, LEASE_MS, MAX_ATTEMPTS,
};
use usher_domain::rfc3339;
use usher_sdk::objects;
use usher_sdk::table::{self, Condition};
use usher_sdk::{config, BatchResult, Error, Message};

use crate::export::{write_export, ExportError, Scope, Sources};

/// The worker's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The jobs table.
    pub table: String,
    /// The bucket of the files.
    pub bucket: String,
    /// Prepended to a file's key in its `location`.
    pub location_prefix: Option<String>,
    /// The lease, in milliseconds.
    pub lease_ms: i64,
    /// The sources.
    pub sources: Sources,
}

impl Settings {
    /// From the registry's settings.
    pub fn load() -> usher_sdk::Result<Settings> {
        let page_size = config::get_or::<u32>("page_size", 5000)?.clamp(1, 5000);
        Ok(Settings {
            table: config::string_or("table", "exports")?,
            bucket: config::string_or("bucket", "exports")?,
            location_prefix: config::get::<String>("location_prefix")?.filter(|p| !p.is_empty()),
            lease_ms: config::get_or::<i64>("lease_ms", LEASE_MS)?.max(1000),
            sources: Sources {
                entries: config::string_or("entries_service", "entries")?,
                campaigns: config::string_or("campaign_service", "campaigns")?,
                users: config::string_or("user_service", "users")?,
                codes: config::string_or("code_service", "codes")?,
                draws_table: config::string_or("draws_table", "draws")?,
                page_size,
            },
        })
    }
}

/// What became of one message's job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written and marked FINISHED by this runner (rows).
    Finished(u64),
    /// A complete file of an earlier claim was adopted.
    Adopted,
    /// Marked FAILED (the reason).
    Failed(String),
    /// Marked EXPIRED (too many claims).
    Expired,
    /// Nothing to do: unknown, already ended, or held by a live lease.
    Skipped(String),
    /// The job was taken by another claim while this runner worked.
    Lost,
}

/// Runs every message's job; a message fails (is retried) only when a
/// table or the objects store failed.
pub fn process(settings: &Settings, messages: &[Message]) -> BatchResult {
    BatchResult::from_results(messages.iter().map(|m| {
        let outcome = run_one(settings, m);
        match &outcome {
            Ok(o) => usher_sdk::info!(message = m.id.as_str(), outcome = format!("{o:?}").as_str(); "export message done"),
            Err(e) => usher_sdk::warn!(message = m.id.as_str(), error = e.as_str(); "export message failed; it is retried"),
        }
        (m.id.clone(), outcome)
    }))
}

fn transient(what: &str) -> impl Fn(Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Runs the job of one message.
pub fn run_one(settings: &Settings, message: &Message) -> Result<Outcome, String> {
    let body: Value = message
        .json()
        .map_err(|e| format!("the message is not JSON: {e}"))?;
    let (Some(campaign_id), Some(export_id)) = (
        body.get("campaignId").and_then(Value::as_str),
        body.get("exportId").and_then(Value::as_str),
    ) else {
        return Ok(Outcome::Skipped(format!("not a run message: {body}")));
    };
    let owner = format!("{}@{}", message.id, rfc3339::now_millis());
    let Some(mut job) = claim(settings, campaign_id, export_id, &owner)? else {
        return Ok(Outcome::Skipped("not claimable".into()));
    };
    if job.state == ExportState::Expired {
        return Ok(Outcome::Expired);
    }
    if let Some(done) = adopt(settings, &mut job)? {
        return Ok(done);
    }
    let Some(export_type) = export_type(&job.export_type) else {
        let reason = format!("unknown export type {}", job.export_type);
        return end(
            settings,
            &mut job,
            ExportState::Failed,
            Some(reason.clone()),
            None,
        )
        .map(|_| Outcome::Failed(reason));
    };
    let key = object_key(campaign_id, export_id, job.fencing, export_type.extension());
    let writer = objects::Writer::open(&settings.bucket, &key, Some(export_type.content_type()))
        .map_err(transient("opening the file"))?;
    let sink = std::io::BufWriter::with_capacity(1024 * 1024, ObjectSink(writer));
    let market_id = job.market_id.clone();
    let scope = Scope {
        campaign_id,
        market_id: market_id.as_deref(),
    };
    let mut renewed_at = rfc3339::now_millis();
    let result = {
        let job = &mut job;
        let mut tick = || -> Result<(), ExportError> {
            let now = rfc3339::now_millis();
            if now - renewed_at < settings.lease_ms / 3 {
                return Ok(());
            }
            match renew(settings, job, None) {
                Ok(true) => {
                    renewed_at = now;
                    Ok(())
                }
                Ok(false) => Err(ExportError::Lost),
                Err(e) => Err(ExportError::Transient(e)),
            }
        };
        write_export(export_type, &settings.sources, &scope, sink, &mut tick)
    };
    let (rows, sink) = match result {
        Ok(done) => done,
        // The writer is dropped unfinished: the upload is aborted.
        Err(ExportError::Lost) => return Ok(Outcome::Lost),
        Err(ExportError::Transient(e)) => return Err(e),
        Err(ExportError::Source(reason)) => {
            return match end(
                settings,
                &mut job,
                ExportState::Failed,
                Some(reason.clone()),
                None,
            )? {
                true => Ok(Outcome::Failed(reason)),
                false => Ok(Outcome::Lost),
            }
        }
    };
    let writer = sink
        .into_inner()
        .map_err(|e| format!("writing the file: {}", e.error()))?
        .0;
    let file = ExportFile {
        bucket: settings.bucket.clone(),
        key: key.clone(),
        location: settings
            .location_prefix
            .as_ref()
            .map(|p| format!("{p}{key}")),
        content_type: export_type.content_type().to_string(),
    };
    let completing = Completing {
        file: file.clone(),
        row_count: rows,
        fencing: job.fencing,
    };
    if !renew(settings, &mut job, Some(&completing))? {
        return Ok(Outcome::Lost);
    }
    let info = writer.finish().map_err(transient("finishing the file"))?;
    match end(
        settings,
        &mut job,
        ExportState::Finished,
        None,
        Some((file, rows, info.size)),
    )? {
        true => Ok(Outcome::Finished(rows)),
        false => Ok(Outcome::Lost),
    }
}

/// Claims the job: `Some(job)` as TRIGGERED by `owner` (or as EXPIRED when
/// it was claimed too often); `None` when it is not claimable.
fn claim(
    settings: &Settings,
    campaign_id: &str,
    export_id: &str,
    owner: &str,
) -> Result<Option<ExportJob>, String> {
    let key = job_key(campaign_id, export_id);
    for _ in 0..5 {
        let Some(item) =
            table::get::<Value>(&settings.table, &key).map_err(transient("reading the job"))?
        else {
            usher_sdk::warn!(export_id = export_id; "no such export job");
            return Ok(None);
        };
        let mut job = ExportJob::from_item(item)?;
        let now = rfc3339::now_millis();
        match job.state {
            s if s.is_terminal() => return Ok(None),
            ExportState::Triggered if job.lease.as_ref().is_some_and(|l| l.expires_at_ms > now) => {
                return Ok(None)
            }
            _ => {}
        }
        if job.attempts >= MAX_ATTEMPTS {
            let reason = format!("abandoned by {} runners (lease expired)", job.attempts);
            return match end(settings, &mut job, ExportState::Expired, Some(reason), None)? {
                true => Ok(Some(job)),
                false => Ok(None),
            };
        }
        let set = json!({
            "state": ExportState::Triggered,
            "version": job.version + 1,
            "fencing": job.fencing + 1,
            "attempts": job.attempts + 1,
            "lease": Lease { owner: owner.to_string(), expires_at_ms: now + settings.lease_ms },
            "updatedAt": rfc3339::format_millis(now),
        });
        match table::update::<Value>(
            &settings.table,
            &key,
            &set,
            &[],
            Some(Condition::AttributeEquals(
                "version".into(),
                json!(job.version),
            )),
        ) {
            Ok(item) => return ExportJob::from_item(item).map(Some),
            Err(Error::ConditionFailed(_)) => continue,
            Err(e) => return Err(format!("claiming the job: {e}")),
        }
    }
    Ok(None)
}

/// Marks the job FINISHED with an earlier claim's complete file, when
/// there is one.
fn adopt(settings: &Settings, job: &mut ExportJob) -> Result<Option<Outcome>, String> {
    let Some(completing) = job.completing.clone() else {
        return Ok(None);
    };
    let found = objects::list(&completing.file.bucket, &completing.file.key, Some(1))
        .map_err(transient("looking for an earlier claim's file"))?;
    let Some(info) = found.into_iter().find(|o| o.key == completing.file.key) else {
        return Ok(None);
    };
    usher_sdk::info!(export_id = job.export_id.as_str(), key = info.key.as_str(); "adopting the complete file of an earlier claim");
    match end(
        settings,
        job,
        ExportState::Finished,
        None,
        Some((completing.file, completing.row_count, info.size)),
    )? {
        true => Ok(Some(Outcome::Adopted)),
        false => Ok(Some(Outcome::Lost)),
    }
}

/// Extends the lease (and records `completing`), conditional on the
/// version this runner last wrote; `false` when the job was taken.
fn renew(
    settings: &Settings,
    job: &mut ExportJob,
    completing: Option<&Completing>,
) -> Result<bool, String> {
    let now = rfc3339::now_millis();
    let lease = Lease {
        owner: job
            .lease
            .as_ref()
            .map(|l| l.owner.clone())
            .unwrap_or_default(),
        expires_at_ms: now + settings.lease_ms,
    };
    let mut set = json!({
        "version": job.version + 1,
        "lease": lease,
        "updatedAt": rfc3339::format_millis(now),
    });
    if let Some(c) = completing {
        set["completing"] = json!(c);
    }
    match table::update::<Value>(
        &settings.table,
        &job.key(),
        &set,
        &[],
        Some(Condition::AttributeEquals(
            "version".into(),
            json!(job.version),
        )),
    ) {
        Ok(item) => {
            *job = ExportJob::from_item(item)?;
            Ok(true)
        }
        Err(Error::ConditionFailed(_)) => Ok(false),
        Err(e) => Err(format!("renewing the lease: {e}")),
    }
}

/// Moves the job to a final state (conditional on the version), then
/// removes its dedupe and index items; `false` when the job was taken.
pub(crate) fn end(
    settings: &Settings,
    job: &mut ExportJob,
    state: ExportState,
    error: Option<String>,
    finished: Option<(ExportFile, u64, u64)>,
) -> Result<bool, String> {
    let now = rfc3339::now();
    let mut set = json!({
        "state": state,
        "version": job.version + 1,
        "updatedAt": now,
        "finishedAt": now,
    });
    if let Some(e) = &error {
        set["error"] = json!(e);
    }
    if let Some((file, rows, size)) = &finished {
        set["file"] = json!(file);
        set["rowCount"] = json!(rows);
        set["size"] = json!(size);
    }
    match table::update::<Value>(
        &settings.table,
        &job.key(),
        &set,
        &["lease", "completing"],
        Some(Condition::AttributeEquals(
            "version".into(),
            json!(job.version),
        )),
    ) {
        Ok(item) => *job = ExportJob::from_item(item)?,
        Err(Error::ConditionFailed(_)) => return Ok(false),
        Err(e) => return Err(format!("ending the job: {e}")),
    }
    release(&settings.table, job)?;
    Ok(true)
}

/// Removes an ended job's dedupe item (when it still names the job) and
/// its index entry.
pub(crate) fn release(table_name: &str, job: &ExportJob) -> Result<(), String> {
    match table::delete(
        table_name,
        &dedupe_key(&job.campaign_id, &job.fingerprint),
        Some(Condition::AttributeEquals(
            "exportId".into(),
            json!(job.export_id),
        )),
    ) {
        Ok(()) | Err(Error::ConditionFailed(_)) => {}
        Err(e) => return Err(format!("removing the dedupe item: {e}")),
    }
    table::delete(
        table_name,
        &active_key(&job.campaign_id, &job.export_id),
        None,
    )
    .map_err(transient("removing the index entry"))
}

/// The objects writer as a [`Write`] (each write crosses to the host).
struct ObjectSink(objects::Writer);

impl Write for ObjectSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .write(buf)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
