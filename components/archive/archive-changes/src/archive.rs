//! One batch of changes to archive objects (see the crate docs for the
//! rules). The capability calls go through [`Sink`] so the logic runs
//! natively in the unit tests.

use std::collections::BTreeMap;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use usher_sdk::{Change, ChangeKind};

use crate::pii;
use crate::schema::RecordType;

/// The container format of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Avro object container files (`.avro`).
    Avro,
    /// Parquet (`.parquet`).
    Parquet,
}

impl Format {
    /// The objects' extension (seed 001's tech debt #1: always `.avro` there).
    pub fn extension(self) -> &'static str {
        match self {
            Format::Avro => "avro",
            Format::Parquet => "parquet",
        }
    }

    /// The objects' content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Avro => "avro/binary",
            Format::Parquet => "application/vnd.apache.parquet",
        }
    }

    /// `avro` or `parquet`.
    pub fn parse(text: &str) -> Option<Format> {
        match text {
            "avro" => Some(Format::Avro),
            "parquet" => Some(Format::Parquet),
            _ => None,
        }
    }
}

/// The worker's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The bucket objects go to.
    pub bucket: String,
    /// The key prefix (no trailing `/`).
    pub prefix: String,
    /// The container format.
    pub format: Format,
    /// The `systemId` written on every record.
    pub system_id: String,
    /// The salt of hashed PII.
    pub pii_salt: String,
    /// The record types archived (None: all).
    pub types: Option<Vec<String>>,
}

/// Why a capability call failed, as the archive needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkError {
    /// The records are not encodable (not worth retrying): they go to the
    /// errors prefix.
    Invalid(String),
    /// Anything else: the records fail and the stream retries them.
    Other(String),
}

/// The capabilities the archive uses.
pub trait Sink {
    /// Encodes records into a container.
    fn encode(
        &mut self,
        format: Format,
        schema: &Value,
        records: &[&Record<'_>],
    ) -> Result<Vec<u8>, SinkError>;
    /// Stores an object.
    fn put(
        &mut self,
        bucket: &str,
        key: &str,
        body: &[u8],
        content_type: &str,
    ) -> Result<(), SinkError>;
}

/// A record that cannot be archived, kept with its change.
#[derive(Debug, Clone)]
struct Rejected {
    position: usize,
    record_type: String,
    date: String,
    error_type: &'static str,
    message: String,
}

/// The UTC date (`YYYY-MM-DD`) of a time in milliseconds.
pub fn date_of(millis: u64) -> String {
    let text = usher_domain::rfc3339::format_millis(i64::try_from(millis).unwrap_or(i64::MAX));
    text.chars().take(10).collect()
}

/// `<prefix>/<type>/dt=<date>/<first>-<last>-<digest>.<ext>`: named by the
/// group's first and last sequence numbers and a digest of every member's
/// sequence number and keys, so a retried batch overwrites the same object
/// while two shards' batches (whose sequence numbers may coincide: the
/// shard id does not reach a worker) never share a name.
pub fn object_key<'a>(
    prefix: &str,
    record_type: &str,
    date: &str,
    members: impl IntoIterator<Item = &'a Change>,
    ext: &str,
) -> String {
    let prefix = prefix.trim_end_matches('/');
    let lead = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let mut digest = Sha256::new();
    let mut first: Option<&str> = None;
    let mut last = "";
    for change in members {
        first.get_or_insert(&change.sequence_number);
        last = &change.sequence_number;
        digest.update(change.sequence_number.as_bytes());
        digest.update([0]);
        digest.update(change.keys.to_string().as_bytes());
        digest.update([0]);
    }
    let first = first.unwrap_or_default();
    let digest: String = digest.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{lead}{record_type}/dt={date}/{first}-{last}-{digest}.{ext}")
}

/// What a batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Records archived.
    pub archived: usize,
    /// Records skipped (not of an archived type).
    pub skipped: usize,
    /// Records written to the errors prefix.
    pub rejected: usize,
    /// Objects written (archive and errors).
    pub objects: Vec<String>,
    /// Sequence numbers reported failed: every record from the first that
    /// could not be written on.
    pub failures: Vec<String>,
}

/// A change as archived.
#[derive(Debug, Clone, PartialEq)]
pub struct Archived<'a> {
    /// Its record type (an index into the types).
    pub type_index: usize,
    /// Its partition date.
    pub date: String,
    /// The record.
    pub record: Record<'a>,
}

/// An archived record: the type's fields, then the archive's own columns.
/// Values archived as they are stay borrowed from the change's image, and
/// the record serializes straight to the JSON text the codec takes: no
/// `serde_json::Value` tree is built or cloned per record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<'a> {
    /// Column name → value.
    pub columns: Vec<(&'a str, Out<'a>)>,
}

impl Record<'_> {
    /// A column's value as JSON (tests).
    pub fn get(&self, name: &str) -> Option<Value> {
        self.columns
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| serde_json::to_value(v).unwrap_or(Value::Null))
    }
}

/// One column's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Out<'a> {
    /// Null (missing, or dropped PII).
    Null,
    /// The image's value, unchanged.
    Same(&'a Value),
    /// Text made for the archive (scrubbed PII, a `json` field's text).
    Text(String),
    /// Text borrowed.
    Str(&'a str),
    /// A value changed for the archive.
    Owned(Value),
    /// A flag.
    Bool(bool),
    /// A number.
    Number(u64),
}

impl Serialize for Record<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.columns.len()))?;
        for (name, value) in &self.columns {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl Serialize for Out<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Out::Null => s.serialize_unit(),
            Out::Same(v) => v.serialize(s),
            Out::Owned(v) => v.serialize(s),
            Out::Text(t) => s.serialize_str(t),
            Out::Str(t) => s.serialize_str(t),
            Out::Bool(b) => s.serialize_bool(*b),
            Out::Number(n) => s.serialize_u64(*n),
        }
    }
}

/// Why a change cannot be archived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Its record type (`unknown` without an image).
    pub record_type: String,
    /// `MissingImage`, `ValidationError`.
    pub error_type: &'static str,
    /// What is wrong.
    pub message: String,
}

/// The archived form of a change, or `None` when it is not of an archived
/// type.
pub fn to_record<'a>(
    types: &'a [RecordType],
    settings: &'a Settings,
    change: &'a Change,
) -> Result<Option<Archived<'a>>, Refusal> {
    let deleted = change.kind == ChangeKind::Remove;
    let image = if deleted {
        change.old_image.as_ref()
    } else {
        change.new_image.as_ref()
    };
    let date = date_of(change.timestamp_ms);
    let Some(image) = image else {
        return Err(Refusal {
            record_type: "unknown".into(),
            error_type: "MissingImage",
            message: format!(
                "a {} change without its {} image",
                change.kind.event_name(),
                if deleted { "old" } else { "new" }
            ),
        });
    };
    let Some(index) = types.iter().position(|t| t.matches(image)) else {
        return Ok(None);
    };
    let t = &types[index];
    if let Some(allowed) = &settings.types {
        if !allowed.iter().any(|a| a == &t.name) {
            return Ok(None);
        }
    }
    let valid = t.validate(image).map_err(|message| Refusal {
        record_type: t.name.clone(),
        error_type: "ValidationError",
        message,
    })?;
    let mut columns = Vec::with_capacity(valid.len() + 6);
    for (field, value) in t.fields.iter().zip(valid) {
        columns.push((
            field.name.as_str(),
            pii::scrub(field, value, &settings.pii_salt),
        ));
    }
    let key = |name: &str| image.get(name).and_then(Value::as_str).unwrap_or_default();
    columns.push(("systemId", Out::Str(&settings.system_id)));
    columns.push((
        "reference",
        Out::Text(format!(
            "{}:{}:{}:{}",
            t.name,
            change.table,
            key("PK"),
            key("SK")
        )),
    ));
    columns.push(("changeType", Out::Str(change.kind.event_name())));
    columns.push(("deleted", Out::Bool(deleted)));
    columns.push(("sequenceNumber", Out::Str(&change.sequence_number)));
    columns.push(("changedAt", Out::Number(change.timestamp_ms)));
    let record = Record { columns };
    Ok(Some(Archived {
        type_index: index,
        date,
        record,
    }))
}

/// Archives a batch (see the crate docs).
pub fn process(
    types: &[RecordType],
    settings: &Settings,
    changes: &[Change],
    sink: &mut dyn Sink,
) -> Outcome {
    let mut out = Outcome::default();
    // (type index, date) → positions and records, in batch order.
    let mut groups: BTreeMap<(usize, String), Vec<(usize, Record<'_>)>> = BTreeMap::new();
    let mut rejected: Vec<Rejected> = Vec::new();
    for (position, change) in changes.iter().enumerate() {
        match to_record(types, settings, change) {
            Ok(None) => out.skipped += 1,
            Ok(Some(a)) => groups
                .entry((a.type_index, a.date))
                .or_default()
                .push((position, a.record)),
            Err(r) => rejected.push(Rejected {
                position,
                record_type: r.record_type,
                date: date_of(change.timestamp_ms),
                error_type: r.error_type,
                message: r.message,
            }),
        }
    }
    // The first position that could not be written (reported failed from there on).
    let mut first_failed: Option<usize> = None;
    for ((t, date), members) in &groups {
        let t = &types[*t];
        let records: Vec<&Record<'_>> = members.iter().map(|(_, r)| r).collect();
        let key = object_key(
            &settings.prefix,
            &t.name,
            date,
            members.iter().map(|(p, _)| &changes[*p]),
            settings.format.extension(),
        );
        let written = sink
            .encode(settings.format, &t.avro, &records)
            .and_then(|body| {
                sink.put(
                    &settings.bucket,
                    &key,
                    &body,
                    settings.format.content_type(),
                )
            });
        match written {
            Ok(()) => {
                out.archived += members.len();
                out.objects.push(key);
            }
            Err(SinkError::Invalid(message)) => {
                usher_sdk::warn!(key = key, error = message; "the codec refused a group: its records go to the errors prefix");
                for (position, _) in members {
                    rejected.push(Rejected {
                        position: *position,
                        record_type: t.name.clone(),
                        date: date.clone(),
                        error_type: "EncodeError",
                        message: message.clone(),
                    });
                }
            }
            Err(SinkError::Other(message)) => {
                usher_sdk::warn!(key = key, error = message; "writing a group failed: its records will be retried");
                fail_at(members[0].0, &mut first_failed);
            }
        }
    }
    // Rejected records: one JSON-lines object per type and date.
    let mut error_groups: BTreeMap<(String, String), Vec<&Rejected>> = BTreeMap::new();
    for r in &rejected {
        error_groups
            .entry((r.record_type.clone(), r.date.clone()))
            .or_default()
            .push(r);
    }
    let now = usher_domain::rfc3339::now();
    for ((record_type, date), mut members) in error_groups {
        members.sort_by_key(|r| r.position);
        let mut body = String::new();
        for r in &members {
            let change = &changes[r.position];
            let line = json!({
                "sequenceNumber": change.sequence_number,
                "time": now,
                "errorType": r.error_type,
                "message": r.message,
                "change": change_json(change),
            });
            body.push_str(&line.to_string());
            body.push('\n');
        }
        let prefix = format!("{}/errors", settings.prefix.trim_end_matches('/'));
        let key = object_key(
            &prefix,
            &record_type,
            &date,
            members.iter().map(|r| &changes[r.position]),
            "json",
        );
        match sink.put(
            &settings.bucket,
            &key,
            body.as_bytes(),
            "application/x-ndjson",
        ) {
            Ok(()) => {
                out.rejected += members.len();
                out.objects.push(key);
            }
            Err(SinkError::Invalid(m) | SinkError::Other(m)) => {
                usher_sdk::warn!(key = key, error = m; "writing rejected records failed: they will be retried");
                fail_at(members[0].position, &mut first_failed);
            }
        }
    }
    if let Some(first) = first_failed {
        out.failures = changes[first..]
            .iter()
            .map(|c| c.sequence_number.clone())
            .collect();
    }
    out
}

/// Records `p` as failed when it is before the first failure so far.
fn fail_at(p: usize, first: &mut Option<usize>) {
    *first = Some(first.map_or(p, |f| f.min(p)));
}

/// The original change as JSON (what an errors object keeps).
fn change_json(change: &Change) -> Value {
    json!({
        "table": change.table,
        "eventName": change.kind.event_name(),
        "keys": change.keys,
        "newImage": change.new_image,
        "oldImage": change.old_image,
        "sequenceNumber": change.sequence_number,
        "timestampMs": change.timestamp_ms,
    })
}
