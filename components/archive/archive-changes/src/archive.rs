//! One batch of changes to archive objects (see the crate docs for the
//! rules). The capability calls go through [`Sink`] so the logic runs
//! natively in the unit tests.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::{json, Value};
use usher_sdk::codec::{Column, MAX_HASH_VALUES};
use usher_sdk::stream_text::ChangeText;
use usher_sdk::ChangeKind;

use crate::image::{Image, Raw};
use crate::pii::{self, Hashes, Site};
use crate::schema::{FieldType, Pii, RecordType};

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
    /// Encodes a group's records, given as columns (the type's fields,
    /// then the archive's own), into a container.
    fn encode(
        &mut self,
        format: Format,
        schema: &str,
        columns: Vec<Column>,
    ) -> Result<Vec<u8>, SinkError>;
    /// The hex SHA-256 of `salt` followed by each value (a text column's
    /// text and ends), 64 digits a value (`codec.salted-sha256-hex`).
    fn salted_sha256_hex(
        &mut self,
        salt: &str,
        text: String,
        ends: Vec<u32>,
    ) -> Result<String, SinkError>;
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
/// sequence number and keys (the first 12 hex digits of their SHA-256,
/// computed by the host), so a retried batch overwrites the same object
/// while two shards' batches (whose sequence numbers may coincide: the
/// shard id does not reach a worker) never share a name.
pub fn object_key<'a>(
    sink: &mut dyn Sink,
    prefix: &str,
    record_type: &str,
    date: &str,
    members: impl IntoIterator<Item = &'a ChangeText>,
    ext: &str,
) -> Result<String, SinkError> {
    let prefix = prefix.trim_end_matches('/');
    let lead = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let mut digested = String::new();
    let mut first: Option<&str> = None;
    let mut last = "";
    for change in members {
        first.get_or_insert(&change.sequence_number);
        last = &change.sequence_number;
        digested.push_str(&change.sequence_number);
        digested.push('\0');
        digested.push_str(&change.keys);
        digested.push('\0');
    }
    let first = first.unwrap_or_default();
    let end = u32::try_from(digested.len())
        .map_err(|_| SinkError::Other("a group's keys pass 4 GiB".into()))?;
    let hex = sink.salted_sha256_hex("", digested, vec![end])?;
    let digest = hex.get(..12).unwrap_or_default();
    Ok(format!(
        "{lead}{record_type}/dt={date}/{first}-{last}-{digest}.{ext}"
    ))
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

const DAY_MS: u64 = 86_400_000;

/// The archive's own columns, after the type's fields (the derived
/// schemas' last fields, in this order).
pub const OWN_COLUMNS: [&str; 6] = [
    "systemId",
    "reference",
    "changeType",
    "deleted",
    "sequenceNumber",
    "changedAt",
];

/// The records of one group (a type and a day), as the codec's columns.
pub struct Group {
    /// The batch positions of its changes, in batch order.
    pub positions: Vec<usize>,
    /// Its columns: the type's fields, then [`OWN_COLUMNS`].
    pub columns: Vec<Column>,
    /// The `PK` and `SK` fields' columns, when the type has them (the
    /// reference is built from the archived keys).
    keys: [Option<usize>; 2],
    /// A reused buffer for the reference's text.
    reference: String,
    /// Where the batch's hashes go in its columns.
    pub sites: Vec<Site>,
}

impl Group {
    /// An empty group of a type.
    pub fn new(t: &RecordType) -> Group {
        let mut columns: Vec<Column> = t
            .fields
            .iter()
            .map(|f| match (f.ty, f.pii) {
                (_, Some(Pii::Hash | Pii::Mask)) | (FieldType::String | FieldType::Json, _) => {
                    Column::strings(&f.name)
                }
                (FieldType::Long, _) => Column::longs(&f.name),
                (FieldType::Double, _) => Column::doubles(&f.name),
                (FieldType::Boolean, _) => Column::booleans(&f.name),
            })
            .collect();
        let [system, reference, change_type, deleted, sequence, changed] = OWN_COLUMNS;
        columns.extend([
            Column::strings(system),
            Column::strings(reference),
            Column::strings(change_type),
            Column::booleans(deleted),
            Column::strings(sequence),
            Column::longs(changed),
        ]);
        let key = |name: &str| t.fields.iter().position(|f| f.name == name);
        Group {
            positions: Vec::new(),
            columns,
            keys: [key("PK"), key("SK")],
            reference: String::new(),
            sites: Vec::new(),
        }
    }

    /// Appends one validated change (see the crate docs): its fields as
    /// archived, then the archive's own columns. Hashed values are added
    /// to `hashes` and written as placeholders ([`pii`]).
    fn push(
        &mut self,
        t: &RecordType,
        settings: &Settings,
        change: &ChangeText,
        image: &Image<'_>,
        valid: &[Option<Raw<'_>>],
        hashes: &mut Hashes,
    ) {
        let row = self.columns[0].len();
        let row_sites = self.sites.len();
        for (column, ((field, value), cells)) in t
            .fields
            .iter()
            .zip(valid)
            .zip(&mut self.columns)
            .enumerate()
        {
            let mut deferred = pii::Deferred {
                column,
                hashes,
                sites: &mut self.sites,
            };
            pii::push_cell(cells, field, *value, &settings.pii_salt, &mut deferred);
        }
        let n = t.fields.len();
        self.columns[n].push_str(&settings.system_id);
        // The reference holds the keys as archived: a key with a PII
        // annotation (the user id inside a `PK`) is scrubbed once, for its
        // column and the reference alike (its hash's site is copied).
        let mut reference = std::mem::take(&mut self.reference);
        reference.clear();
        reference.push_str(&t.name);
        reference.push(':');
        reference.push_str(&change.table);
        let base = self.columns[n + 1].text_len();
        for (slot, name) in self.keys.iter().zip(["PK", "SK"]) {
            reference.push(':');
            match slot {
                Some(i) => {
                    let text = self.columns[*i].text(row).unwrap_or_default();
                    let cell = self.columns[*i].text_len() - text.len();
                    let at = base + reference.len();
                    for k in row_sites..self.sites.len() {
                        let site = self.sites[k];
                        if site.column == *i {
                            self.sites.push(Site {
                                column: n + 1,
                                at: at + (site.at - cell),
                                value: site.value,
                            });
                        }
                    }
                    reference.push_str(text);
                }
                None => reference.push_str(&image.get_str(name).unwrap_or_default()),
            }
        }
        self.columns[n + 1].push_str(&reference);
        self.reference = reference;
        self.columns[n + 2].push_str(change.kind.event_name());
        self.columns[n + 3].push_bool(change.kind == ChangeKind::Remove);
        self.columns[n + 4].push_str(&change.sequence_number);
        self.columns[n + 5].push_long(i64::try_from(change.timestamp_ms).unwrap_or(i64::MAX));
    }
}

/// What a change is to the archive: of no archived type (None), or its
/// type's index, its image and its validated values.
type Classified<'a> = Option<(usize, Image<'a>, Vec<Option<Raw<'a>>>)>;

/// A change's record type and validated values (see the crate docs), or
/// why it cannot be archived.
pub fn classify<'a>(
    types: &[RecordType],
    settings: &Settings,
    change: &'a ChangeText,
) -> Result<Classified<'a>, Refusal> {
    classify_in(types, settings, change, &mut Scratch::default())
}

/// The vectors of a batch's last record, reused for the next one.
#[derive(Default)]
pub struct Scratch<'a> {
    attrs: Vec<(Cow<'a, str>, Raw<'a>)>,
    valid: Vec<Option<Raw<'a>>>,
}

impl<'a> Scratch<'a> {
    /// Takes back a record's vectors.
    fn keep(&mut self, image: Image<'a>, valid: Vec<Option<Raw<'a>>>) {
        self.attrs = image.into_attrs();
        self.valid = valid;
    }
}

/// [`classify`] with the vectors of `scratch`.
fn classify_in<'a>(
    types: &[RecordType],
    settings: &Settings,
    change: &'a ChangeText,
    scratch: &mut Scratch<'a>,
) -> Result<Classified<'a>, Refusal> {
    let deleted = change.kind == ChangeKind::Remove;
    let which = if deleted { "old" } else { "new" };
    let text = if deleted {
        change.old_image.as_deref()
    } else {
        change.new_image.as_deref()
    };
    let Some(text) = text else {
        return Err(Refusal {
            record_type: "unknown".into(),
            error_type: "MissingImage",
            message: format!(
                "a {} change without its {which} image",
                change.kind.event_name()
            ),
        });
    };
    let image = Image::parse_in(text, std::mem::take(&mut scratch.attrs)).map_err(|e| Refusal {
        record_type: "unknown".into(),
        error_type: "ValidationError",
        message: format!("the {which} image is not a JSON object: {e}"),
    })?;
    let Some(index) = types.iter().position(|t| t.matches(&image)) else {
        return Ok(None);
    };
    let t = &types[index];
    if let Some(allowed) = &settings.types {
        if !allowed.iter().any(|a| a == &t.name) {
            return Ok(None);
        }
    }
    let valid = t
        .validate_in(&image, std::mem::take(&mut scratch.valid))
        .map_err(|message| Refusal {
            record_type: t.name.clone(),
            error_type: "ValidationError",
            message,
        })?;
    Ok(Some((index, image, valid)))
}

/// Archives a batch (see the crate docs).
pub fn process(
    types: &[RecordType],
    settings: &Settings,
    changes: &[ChangeText],
    sink: &mut dyn Sink,
) -> Outcome {
    let mut out = Outcome::default();
    // (type index, day) → the group's records, in batch order.
    let mut groups: BTreeMap<(usize, u64), Group> = BTreeMap::new();
    let mut rejected: Vec<Rejected> = Vec::new();
    let mut hashes = Hashes::default();
    let mut scratch = Scratch::default();
    for (position, change) in changes.iter().enumerate() {
        match classify_in(types, settings, change, &mut scratch) {
            Ok(None) => out.skipped += 1,
            Ok(Some((index, image, valid))) => {
                let t = &types[index];
                let group = groups
                    .entry((index, change.timestamp_ms / DAY_MS))
                    .or_insert_with(|| Group::new(t));
                group.positions.push(position);
                group.push(t, settings, change, &image, &valid, &mut hashes);
                scratch.keep(image, valid);
            }
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
    // Every hash of the batch in one host call (or a few, of at most
    // MAX_HASH_VALUES); when hashing fails, no group can be written.
    let digits = match hash_all(sink, &settings.pii_salt, &hashes) {
        Ok(d) => d,
        Err(SinkError::Invalid(m) | SinkError::Other(m)) => {
            usher_sdk::warn!(values = hashes.len(), error = m; "hashing the batch's PII failed: its records will be retried");
            for group in groups.values() {
                fail_at(group.positions[0], &mut first_failed);
            }
            groups.clear();
            String::new()
        }
    };
    for ((t, day), mut group) in groups {
        let t = &types[t];
        let members = std::mem::take(&mut group.positions);
        let date = date_of(day * DAY_MS);
        let key = match object_key(
            sink,
            &settings.prefix,
            &t.name,
            &date,
            members.iter().map(|p| &changes[*p]),
            settings.format.extension(),
        ) {
            Ok(key) => key,
            Err(SinkError::Invalid(m) | SinkError::Other(m)) => {
                usher_sdk::warn!(error = m; "naming a group's object failed: its records will be retried");
                fail_at(members[0], &mut first_failed);
                continue;
            }
        };
        if let Err(site) = patch(&mut group, &digits) {
            usher_sdk::error!(key = key, column = site.column, at = site.at; "a hash's placeholder is not where it was written: the group's records will be retried");
            fail_at(members[0], &mut first_failed);
            continue;
        }
        let written = sink
            .encode(settings.format, t.avro, group.columns)
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
                for position in &members {
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
                fail_at(members[0], &mut first_failed);
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
        let key = match object_key(
            sink,
            &prefix,
            &record_type,
            &date,
            members.iter().map(|r| &changes[r.position]),
            "json",
        ) {
            Ok(key) => key,
            Err(SinkError::Invalid(m) | SinkError::Other(m)) => {
                usher_sdk::warn!(error = m; "naming an errors object failed: its records will be retried");
                fail_at(members[0].position, &mut first_failed);
                continue;
            }
        };
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

/// The digits of every value of `hashes` (64 each, in order), hashed by the
/// host in calls of at most [`MAX_HASH_VALUES`].
pub(crate) fn hash_all(
    sink: &mut dyn Sink,
    salt: &str,
    hashes: &Hashes,
) -> Result<String, SinkError> {
    let mut digits = String::with_capacity(hashes.len() * 64);
    let mut start = 0;
    while start < hashes.len() {
        let end = hashes.len().min(start + MAX_HASH_VALUES);
        let (text, ends) = hashes.slice(start..end);
        let part = sink.salted_sha256_hex(salt, text, ends)?;
        if part.len() != (end - start) * 64 {
            return Err(SinkError::Other(format!(
                "{} hex digits for {} values",
                part.len(),
                end - start
            )));
        }
        digits.push_str(&part);
        start = end;
    }
    Ok(digits)
}

/// Writes each of a group's hashes over its placeholder, a column at a
/// time; the first site that cannot be patched.
fn patch(group: &mut Group, digits: &str) -> Result<(), Site> {
    // The sites by column, in one pass.
    let mut by_column: Vec<Vec<(Site, &str)>> = vec![Vec::new(); group.columns.len()];
    for site in &group.sites {
        let hex = digits
            .get(site.value * 64..(site.value + 1) * 64)
            .ok_or(*site)?;
        by_column
            .get_mut(site.column)
            .ok_or(*site)?
            .push((*site, hex));
    }
    for (column, sites) in group.columns.iter_mut().zip(&by_column) {
        if !sites.is_empty() {
            column
                .patch_text(sites.iter().map(|(site, hex)| (site.at, *hex)))
                .map_err(|i| sites[i].0)?;
        }
    }
    Ok(())
}

/// Records `p` as failed when it is before the first failure so far.
fn fail_at(p: usize, first: &mut Option<usize>) {
    *first = Some(first.map_or(p, |f| f.min(p)));
}

/// The original change as JSON (what an errors object keeps): its keys
/// and images as JSON, or as the text that was sent when it is not JSON.
fn change_json(change: &ChangeText) -> Value {
    let parsed = |text: &str| {
        serde_json::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.to_string()))
    };
    json!({
        "table": change.table,
        "eventName": change.kind.event_name(),
        "keys": parsed(&change.keys),
        "newImage": change.new_image.as_deref().map(parsed),
        "oldImage": change.old_image.as_deref().map(parsed),
        "sequenceNumber": change.sequence_number,
        "timestampMs": change.timestamp_ms,
    })
}
