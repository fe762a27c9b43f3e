//! The archive's compaction: a closed day's objects of one record type
//! merged into one, idempotently (`usher archive compact`, a host task: the
//! component world has neither a decoder nor a delete, and merging is plain
//! host work on containers the host wrote).
//!
//! The rule, for `<prefix>/<type>/dt=<day>/`:
//! 1. list the day's objects of the format (`*.parquet` or `*.avro`),
//!    small ones and earlier merged ones alike; with fewer than two there is
//!    nothing to do;
//! 2. merge them in key order, keeping each record once (its
//!    `sequenceNumber` and `reference` together: two Kinesis shards may
//!    give different changes one sequence number)
//!    ([`crate::merge`]);
//! 3. write the result as `merged-<h>.<ext>`, `<h>` the first 16 hex digits
//!    of the SHA-256 of the inputs' keys: the same inputs always give the
//!    same name, so a rerun overwrites rather than adds;
//! 4. delete every input (never the output).
//!
//! A crash between 3 and 4 leaves the inputs and the merged object: a
//! reader sees those records twice (same `sequenceNumber`) until the next
//! run, which merges them all again (the duplicates dropped by sequence
//! number) into a new `merged-…` object and deletes every input, the
//! earlier merged one included. So no record is lost (inputs are deleted
//! only after the object holding them is written) and none stays
//! duplicated. A day is closed when it is before today (UTC); the open day
//! is left alone unless asked for by name.

use sha2::{Digest, Sha256};
use usher_capabilities::{CapError, ObjectBackend};

use crate::{merge, Format};

/// The columns that identify an archived record (every record type has them).
pub const IDENTITY: [&str; 2] = ["sequenceNumber", "reference"];

/// What compacting one day did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayReport {
    /// `<prefix>/<type>/dt=<day>/`.
    pub folder: String,
    /// The objects merged (deleted afterwards).
    pub inputs: Vec<String>,
    /// The merged object, when there was something to merge.
    pub output: Option<String>,
    /// Records in it.
    pub records: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
}

/// The extension of a format's objects.
pub fn extension(format: Format) -> &'static str {
    match format {
        Format::Avro => "avro",
        Format::Parquet => "parquet",
    }
}

/// The most objects of one day read at once.
const LIST_LIMIT: u32 = 100_000;

/// Compacts one day of one record type (see the module docs).
pub async fn compact_day(
    objects: &dyn ObjectBackend,
    bucket: &str,
    prefix: &str,
    record_type: &str,
    day: &str,
    format: Format,
) -> Result<DayReport, CapError> {
    let prefix = prefix.trim_end_matches('/');
    let lead = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let folder = format!("{lead}{record_type}/dt={day}/");
    let ext = format!(".{}", extension(format));
    let mut inputs: Vec<String> = objects
        .list(bucket, &folder, LIST_LIMIT)
        .await?
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.ends_with(&ext) && !k[folder.len()..].contains('/'))
        .collect();
    inputs.sort();
    let mut report = DayReport {
        folder: folder.clone(),
        inputs: Vec::new(),
        output: None,
        records: 0,
        duplicates: 0,
    };
    if inputs.len() < 2 {
        return Ok(report);
    }
    let mut bodies = Vec::with_capacity(inputs.len());
    for key in &inputs {
        match objects.get(bucket, key).await? {
            Some(b) => bodies.push(b),
            None => {
                return Err(CapError::Unavailable(format!(
                    "{key} disappeared while compacting (another compaction running?)"
                )))
            }
        }
    }
    let merged = tokio::task::spawn_blocking(move || merge::merge(format, &bodies, &IDENTITY))
        .await
        .map_err(|e| CapError::Fault(format!("merge task: {e}")))??;
    let mut hasher = Sha256::new();
    for key in &inputs {
        hasher.update(key.as_bytes());
        hasher.update(b"\n");
    }
    let digest = hasher.finalize();
    let h: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let output = format!("{folder}merged-{h}{ext}");
    objects
        .put(bucket, &output, merged.bytes, Some(content_type(format)))
        .await?;
    for key in &inputs {
        if key != &output {
            objects.delete(bucket, key).await?;
        }
    }
    report.inputs = inputs;
    report.output = Some(output);
    report.records = merged.records;
    report.duplicates = merged.duplicates;
    Ok(report)
}

fn content_type(format: Format) -> &'static str {
    match format {
        Format::Avro => "avro/binary",
        Format::Parquet => "application/vnd.apache.parquet",
    }
}

/// The days (`YYYY-MM-DD`) that have objects under `<prefix>/<type>/`.
pub async fn days(
    objects: &dyn ObjectBackend,
    bucket: &str,
    prefix: &str,
    record_type: &str,
) -> Result<Vec<String>, CapError> {
    let prefix = prefix.trim_end_matches('/');
    let lead = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let base = format!("{lead}{record_type}/dt=");
    let mut out: Vec<String> = objects
        .list(bucket, &base, LIST_LIMIT)
        .await?
        .into_iter()
        .filter_map(|o| {
            o.key[base.len()..]
                .split_once('/')
                .map(|(d, _)| d.to_string())
        })
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}
