//! `archive/archive-changes` (stream-worker on `demand-table`): the
//! change-data archive, seed 001's dmd-pipeline.
//!
//! For each change of a batch:
//! 1. the image: the new one, or the old one of a REMOVE (a change without
//!    it is rejected, `MissingImage`; an image that is not a JSON object,
//!    `ValidationError`);
//! 2. its record type: the first of `schemas/archive/*.json` whose `match`
//!    the image meets (an item of no type, or of a type not in the setting
//!    `types`, is skipped: success, nothing written);
//! 3. validated against the type's fields (a required field missing, a value
//!    of the wrong type: rejected, `ValidationError`); attributes the schema
//!    does not name are left out;
//! 4. PII scrubbed by the schema's annotations ([`pii`]), nothing else;
//! 5. enriched: `systemId` (setting `system_id`), `reference`
//!    (`type:table:PK:SK`, the keys as archived: a `PK` annotated `hash`
//!    because it holds the user id is hashed here too), `changeType`, `deleted` (true for a REMOVE),
//!    `sequenceNumber`, `changedAt` (the change's approximate creation time).
//!
//! The records are grouped by type and partition date (`dt`, the UTC date
//! of `changedAt`), built as columns as they are read, each group encoded
//! through the `codec` capability (`encode-columns`) with
//! the type's derived Avro schema and written with `objects` to
//! `<prefix>/<type>/dt=YYYY-MM-DD/<firstSeq>-<lastSeq>-<digest>.<avro|parquet>`:
//! named by the group's first and last sequence numbers and a digest of
//! every member's sequence number and keys, so a retried batch overwrites
//! the same object instead of adding one. (The stream's shard id does not
//! reach a worker, and two Kinesis shards' sequence numbers can coincide:
//! the digest keeps their objects apart.) Rejected records, and a group the codec refuses (`EncodeError`),
//! go to `<prefix>/errors/<type>/dt=…/<firstSeq>-<lastSeq>-<digest>.json`, one JSON
//! line per record: `{"sequenceNumber","time","errorType","message",
//! "change"}` with the original change; they are not retried. A group or an
//! errors object that cannot be written (objects or codec unavailable) fails
//! its records: every record from the first of them on is reported failed,
//! and the stream retries from there.
//!
//! A retry that starts in the middle of an earlier attempt's group writes
//! an object with other bounds, so a record may then be in two objects:
//! every record carries its `sequenceNumber` and `reference`, and the
//! compaction (`usher archive compact`) keeps each such pair once.
//!
//! Settings: `bucket` (required), `prefix` (default `archive`), `format`
//! (`parquet` (default) or `avro`), `system_id` (default `usher`),
//! `pii_salt` (default empty), `types` (a list; default every type).

pub mod archive;
pub mod image;
pub mod pii;
pub mod schema;

use usher_sdk::stream_text::{ChangeText, StreamTextWorker};
use usher_sdk::{codec, config, objects, StreamResult};

pub use archive::{process, Format, Outcome, Settings, Sink, SinkError};

/// The settings of the worker's registry entry.
pub fn settings() -> Result<Settings, String> {
    let text = |k: &str, d: &str| config::string_or(k, d).map_err(|e| format!("setting {k}: {e}"));
    let bucket = text("bucket", "")?;
    if bucket.is_empty() {
        return Err("the setting bucket is required".into());
    }
    let format_text = text("format", "parquet")?;
    let format = Format::parse(&format_text)
        .ok_or_else(|| format!("the setting format must be avro or parquet, is {format_text:?}"))?;
    let types: Option<Vec<String>> =
        config::get("types").map_err(|e| format!("setting types: {e}"))?;
    Ok(Settings {
        bucket,
        prefix: text("prefix", "archive")?,
        format,
        system_id: text("system_id", "usher")?,
        pii_salt: text("pii_salt", "")?,
        types,
    })
}

/// The capabilities themselves.
pub struct Capabilities;

/// Objects larger than this go through the multipart writer.
const MULTIPART_OVER: usize = 8 << 20;

fn sink_error(e: usher_sdk::Error) -> SinkError {
    match e {
        usher_sdk::Error::Invalid(m) => SinkError::Invalid(m),
        other => SinkError::Other(other.to_string()),
    }
}

impl Sink for Capabilities {
    fn encode(
        &mut self,
        format: Format,
        schema: &str,
        columns: Vec<codec::Column>,
    ) -> Result<Vec<u8>, SinkError> {
        let format = match format {
            Format::Avro => codec::Format::Avro,
            Format::Parquet => codec::Format::Parquet,
        };
        codec::encode_columns_text(format, schema, columns).map_err(sink_error)
    }

    fn salted_sha256_hex(
        &mut self,
        salt: &str,
        text: String,
        ends: Vec<u32>,
    ) -> Result<String, SinkError> {
        codec::salted_sha256_hex(salt, text, ends).map_err(|e| SinkError::Other(e.to_string()))
    }

    fn put(
        &mut self,
        bucket: &str,
        key: &str,
        body: &[u8],
        content_type: &str,
    ) -> Result<(), SinkError> {
        // A put's failure is retried by the stream, never rejected.
        let other = |e: usher_sdk::Error| SinkError::Other(e.to_string());
        if body.len() <= MULTIPART_OVER {
            return objects::put(bucket, key, body, Some(content_type))
                .map(|_| ())
                .map_err(other);
        }
        let mut writer = objects::Writer::open(bucket, key, Some(content_type)).map_err(other)?;
        for chunk in body.chunks(MULTIPART_OVER) {
            writer.write(chunk).map_err(other)?;
        }
        writer.finish().map(|_| ()).map_err(other)
    }
}

/// The worker. It reads the changes' JSON text itself ([`image`]) and
/// hands the codec each group's records as columns (`codec.encode-columns`,
/// `usher:platform@0.1.2`): no `serde_json::Value` tree, and no JSON
/// between the worker and the encoder (P5 in BENCHMARKS.md).
pub struct ArchiveChanges;

impl StreamTextWorker for ArchiveChanges {
    fn handle(changes: Vec<ChangeText>) -> StreamResult {
        let all = || StreamResult::from_failures(changes.iter().map(|c| c.sequence_number.clone()));
        let settings = match settings() {
            Ok(s) => s,
            Err(e) => {
                usher_sdk::error!(error = e; "bad settings; failing the batch");
                return all();
            }
        };
        let types = match schema::record_types() {
            Ok(t) => t,
            Err(e) => {
                usher_sdk::error!(error = e; "the embedded schemas do not parse; failing the batch");
                return all();
            }
        };
        let outcome = process(&types, &settings, &changes, &mut Capabilities);
        usher_sdk::info!(records = changes.len(), archived = outcome.archived, skipped = outcome.skipped,
            rejected = outcome.rejected, objects = outcome.objects.len(), failed = outcome.failures.len();
            "archive batch done");
        StreamResult::from_failures(outcome.failures)
    }
}

usher_sdk::export_stream_text_worker!(ArchiveChanges);

#[cfg(test)]
mod tests;
