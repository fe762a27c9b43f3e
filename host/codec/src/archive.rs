//! The change-data archive's one schema source and what derives from it.
//!
//! Each record type has one source file, `schemas/archive/<type>.json`
//! ([`Source`]): which `demand-table` items are of the type (`match`), and
//! its fields with their type, whether they are required, and a PII
//! annotation (`"pii": "hash" | "mask" | "drop"`, and for a `json` field
//! `"pii_keys": {"key": "hash", …}` for keys of the object). From it
//! [`derive`] makes, in `schemas/archive/derived/`:
//!
//! * `<type>.avsc`: the Avro schema the archive worker encodes with (the
//!   source's fields, then the archive's own columns [`ARCHIVE_COLUMNS`]);
//! * `<type>.parquet.txt`: the Parquet schema the codec writes for it;
//! * `<type>.parquet.sql` and `<type>.avro.sql`: the Athena/Glue
//!   `CREATE EXTERNAL TABLE … PARTITIONED BY (dt string) STORED AS …`.
//!
//! `usher archive schemas` writes them; `usher archive schemas --check`
//! (and the test `host/codec/tests/derived.rs`) fails when a checked-in
//! derived file and its source disagree. The archive worker embeds the
//! source (validation, PII) and the derived `.avsc` (encoding).
//!
//! Types: `string`, `long`, `double`, `boolean` and `json` (any JSON value,
//! archived as its JSON text). A field annotated `drop` is always archived
//! as null, so its column is nullable whatever `required` says.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::CodecError;

/// A record type's schema source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The record type (`demand`, …): the folder under the archive prefix
    /// and the Athena table's name.
    #[serde(rename = "type")]
    pub record_type: String,
    /// What the type is.
    pub doc: String,
    /// Which table items are of this type.
    #[serde(rename = "match")]
    pub matcher: Match,
    /// The item's attributes that are archived, in column order.
    pub fields: Vec<SourceField>,
}

/// Which items are of a type: `attribute` equals `equals`, or starts with
/// `prefix`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// The attribute looked at.
    pub attribute: String,
    /// Its exact value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    /// A prefix of its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

impl Match {
    /// Whether an item is of the type.
    pub fn matches(&self, item: &Value) -> bool {
        let Some(v) = item.get(&self.attribute).and_then(Value::as_str) else {
            return false;
        };
        self.equals.as_deref().is_none_or(|e| v == e)
            && self.prefix.as_deref().is_none_or(|p| v.starts_with(p))
    }
}

/// One archived attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceField {
    /// The attribute's name (also the column's).
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub ty: FieldType,
    /// Whether a record without it is invalid.
    #[serde(default)]
    pub required: bool,
    /// How the value is scrubbed before it is archived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pii: Option<Pii>,
    /// For a `json` object: how some of its keys are scrubbed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pii_keys: BTreeMap<String, Pii>,
    /// What it is.
    #[serde(default)]
    pub doc: String,
}

/// A field's type in a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Text.
    String,
    /// A 64-bit integer.
    Long,
    /// A 64-bit float.
    Double,
    /// True or false.
    Boolean,
    /// Any JSON value, archived as its JSON text.
    Json,
}

/// A PII annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pii {
    /// Replaced by the hex SHA-256 of the setting `pii_salt` and the value.
    Hash,
    /// Every character but the first replaced by `*`.
    Mask,
    /// Not archived (null).
    Drop,
}

/// A column the archive worker adds to every record type.
#[derive(Debug, Clone, Copy)]
pub struct ArchiveColumn {
    /// Its name.
    pub name: &'static str,
    /// Its Avro type.
    pub avro: &'static str,
    /// Whether it is a timestamp (milliseconds since the epoch, UTC).
    pub timestamp: bool,
    /// What it is.
    pub doc: &'static str,
}

/// The archive's own columns, after the source's fields, in this order.
pub const ARCHIVE_COLUMNS: &[ArchiveColumn] = &[
    ArchiveColumn {
        name: "systemId",
        avro: "string",
        timestamp: false,
        doc: "The system the record comes from (setting system_id)",
    },
    ArchiveColumn {
        name: "reference",
        avro: "string",
        timestamp: false,
        doc: "The record reference: type, table and key (type:table:PK:SK)",
    },
    ArchiveColumn {
        name: "changeType",
        avro: "string",
        timestamp: false,
        doc: "INSERT, MODIFY or REMOVE",
    },
    ArchiveColumn {
        name: "deleted",
        avro: "boolean",
        timestamp: false,
        doc: "Whether the change removed the item (the record is then its old image)",
    },
    ArchiveColumn {
        name: "sequenceNumber",
        avro: "string",
        timestamp: false,
        doc:
            "The stream sequence number of the change (unique per change; compaction dedupes by it)",
    },
    ArchiveColumn {
        name: "changedAt",
        avro: "long",
        timestamp: true,
        doc: "The approximate creation time of the change; dt is its UTC date",
    },
];

/// The Athena database the DDL creates its tables in.
pub const DATABASE: &str = "usher_archive";

/// The placeholder location of the checked-in DDL (`usher archive schemas
/// --location s3://bucket/prefix` writes a real one).
pub const DEFAULT_LOCATION: &str = "s3://ARCHIVE_BUCKET/archive";

impl Source {
    /// Parses and checks a source.
    pub fn parse(text: &str) -> Result<Source, CodecError> {
        let source: Source =
            serde_json::from_str(text).map_err(|e| CodecError::Schema(e.to_string()))?;
        source.check()?;
        Ok(source)
    }

    fn check(&self) -> Result<(), CodecError> {
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !n.starts_with(|c: char| c.is_ascii_digit())
        };
        if !name_ok(&self.record_type) {
            return Err(CodecError::Schema(format!(
                "type {:?}: letters, digits and _ only",
                self.record_type
            )));
        }
        if self.matcher.equals.is_none() && self.matcher.prefix.is_none() {
            return Err(CodecError::Schema(format!(
                "{}: match needs equals or prefix",
                self.record_type
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        for f in &self.fields {
            if !name_ok(&f.name) {
                return Err(CodecError::Schema(format!(
                    "{}: field {:?}: letters, digits and _ only",
                    self.record_type, f.name
                )));
            }
            if !seen.insert(f.name.to_ascii_lowercase())
                || ARCHIVE_COLUMNS
                    .iter()
                    .any(|c| c.name.eq_ignore_ascii_case(&f.name))
                || f.name.eq_ignore_ascii_case("dt")
            {
                return Err(CodecError::Schema(format!(
                    "{}: field {} is named twice (names are case-insensitive in Athena; dt and the archive's columns are taken)",
                    self.record_type, f.name
                )));
            }
            if !f.pii_keys.is_empty() && f.ty != FieldType::Json {
                return Err(CodecError::Schema(format!(
                    "{}: field {}: pii_keys only on json fields",
                    self.record_type, f.name
                )));
            }
            if f.pii == Some(Pii::Mask) && f.ty != FieldType::String {
                return Err(CodecError::Schema(format!(
                    "{}: field {}: mask only on string fields",
                    self.record_type, f.name
                )));
            }
            if f.pii == Some(Pii::Hash) && !matches!(f.ty, FieldType::String | FieldType::Json) {
                return Err(CodecError::Schema(format!(
                    "{}: field {}: hash only on string or json fields",
                    self.record_type, f.name
                )));
            }
            if f.doc.contains('\'') {
                return Err(CodecError::Schema(format!(
                    "{}: field {}: no single quotes in docs (they go into SQL)",
                    self.record_type, f.name
                )));
            }
        }
        Ok(())
    }

    /// Whether a field's column may be null.
    pub fn nullable(field: &SourceField) -> bool {
        !field.required || field.pii == Some(Pii::Drop)
    }

    /// The Avro schema the archive writes this type with.
    pub fn avro_schema(&self) -> Value {
        let mut fields: Vec<Value> = self
            .fields
            .iter()
            .map(|f| {
                let base = match f.ty {
                    FieldType::String | FieldType::Json => "string",
                    FieldType::Long => "long",
                    FieldType::Double => "double",
                    FieldType::Boolean => "boolean",
                };
                let mut v = if Self::nullable(f) {
                    json!({"name": f.name, "type": ["null", base], "default": null})
                } else {
                    json!({"name": f.name, "type": base})
                };
                if !f.doc.is_empty() {
                    v["doc"] = json!(f.doc);
                }
                v
            })
            .collect();
        for c in ARCHIVE_COLUMNS {
            let ty = if c.timestamp {
                json!({"type": "long", "logicalType": "timestamp-millis"})
            } else {
                json!(c.avro)
            };
            fields.push(json!({"name": c.name, "type": ty, "doc": c.doc}));
        }
        json!({
            "type": "record",
            "name": self.record_type,
            "namespace": "usher.archive",
            "doc": self.doc,
            "fields": fields,
        })
    }

    /// The Parquet schema the codec writes this type with, as text.
    pub fn parquet_schema(&self) -> Result<String, CodecError> {
        let arrow = crate::columns::arrow_schema(&self.avro_schema())?;
        let descr = parquet::arrow::ArrowSchemaConverter::new()
            .convert(&arrow)
            .map_err(|e| CodecError::Schema(e.to_string()))?;
        let mut out = Vec::new();
        parquet::schema::printer::print_schema(&mut out, descr.root_schema());
        String::from_utf8(out).map_err(|e| CodecError::Schema(e.to_string()))
    }

    /// The Athena/Glue DDL of the type's table, for `format` (`PARQUET` or
    /// `AVRO`), its data under `<location>/<type>/dt=YYYY-MM-DD/`.
    pub fn ddl(&self, format: crate::Format, location: &str) -> String {
        let parquet = format == crate::Format::Parquet;
        let mut cols: Vec<(String, &'static str, String)> = self
            .fields
            .iter()
            .map(|f| {
                let ty = match f.ty {
                    FieldType::String | FieldType::Json => "string",
                    FieldType::Long => "bigint",
                    FieldType::Double => "double",
                    FieldType::Boolean => "boolean",
                };
                (f.name.clone(), ty, f.doc.clone())
            })
            .collect();
        for c in ARCHIVE_COLUMNS {
            let ty = match (c.avro, c.timestamp, parquet) {
                (_, true, true) => "timestamp",
                ("long", _, _) => "bigint",
                ("boolean", _, _) => "boolean",
                _ => "string",
            };
            cols.push((c.name.to_string(), ty, c.doc.to_string()));
        }
        let location = format!("{}/{}/", location.trim_end_matches('/'), self.record_type);
        let mut sql = String::new();
        let _ = writeln!(
            sql,
            "-- Derived from schemas/archive/{}.json by `usher archive schemas`: do not edit.",
            self.record_type
        );
        let _ = writeln!(
            sql,
            "CREATE EXTERNAL TABLE IF NOT EXISTS `{DATABASE}`.`{}` (",
            self.record_type
        );
        let n = cols.len();
        for (i, (name, ty, doc)) in cols.iter().enumerate() {
            let comma = if i + 1 < n { "," } else { "" };
            if doc.is_empty() {
                let _ = writeln!(sql, "  `{name}` {ty}{comma}");
            } else {
                let _ = writeln!(sql, "  `{name}` {ty} COMMENT '{doc}'{comma}");
            }
        }
        let _ = writeln!(sql, ")");
        let _ = writeln!(sql, "COMMENT '{}'", self.doc.replace('\'', ""));
        let _ = writeln!(sql, "PARTITIONED BY (`dt` string)");
        let _ = writeln!(
            sql,
            "STORED AS {}",
            if parquet { "PARQUET" } else { "AVRO" }
        );
        let _ = writeln!(sql, "LOCATION '{location}'");
        let _ = writeln!(sql, "TBLPROPERTIES (");
        let mut props = vec![
            ("projection.enabled".to_string(), "true".to_string()),
            ("projection.dt.type".into(), "date".into()),
            ("projection.dt.format".into(), "yyyy-MM-dd".into()),
            ("projection.dt.range".into(), "2020-01-01,NOW".into()),
            (
                "storage.location.template".into(),
                format!("{location}dt=${{dt}}/"),
            ),
        ];
        if parquet {
            props.push(("parquet.compression".into(), "SNAPPY".into()));
        } else {
            let literal = self.avro_schema().to_string().replace('\'', "");
            props.push(("avro.schema.literal".into(), literal));
        }
        let n = props.len();
        for (i, (k, v)) in props.iter().enumerate() {
            let comma = if i + 1 < n { "," } else { "" };
            let _ = writeln!(sql, "  '{k}'='{v}'{comma}");
        }
        let _ = writeln!(sql, ");");
        sql
    }
}

pub use usher_capabilities::Format;

/// Every source of a folder (`*.json`, by file name), parsed and checked;
/// a file's name must be its type's.
pub fn load_sources(dir: &Path) -> Result<Vec<Source>, CodecError> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| CodecError::Schema(format!("{}: {e}", dir.display())))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(&p)
            .map_err(|e| CodecError::Schema(format!("{}: {e}", p.display())))?;
        let source = Source::parse(&text)
            .map_err(|e| CodecError::Schema(format!("{}: {e}", p.display())))?;
        let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        if stem != source.record_type {
            return Err(CodecError::Schema(format!(
                "{}: the file of type {} must be {}.json",
                p.display(),
                source.record_type,
                source.record_type
            )));
        }
        out.push(source);
    }
    Ok(out)
}

/// The derived files of some sources: file name (under `derived/`) →
/// content.
pub fn derive(sources: &[Source], location: &str) -> Result<BTreeMap<String, String>, CodecError> {
    let mut out = BTreeMap::new();
    for s in sources {
        let t = &s.record_type;
        let avsc = serde_json::to_string_pretty(&s.avro_schema())
            .map_err(|e| CodecError::Schema(e.to_string()))?;
        out.insert(format!("{t}.avsc"), format!("{avsc}\n"));
        out.insert(format!("{t}.parquet.txt"), s.parquet_schema()?);
        out.insert(format!("{t}.parquet.sql"), s.ddl(Format::Parquet, location));
        out.insert(format!("{t}.avro.sql"), s.ddl(Format::Avro, location));
    }
    Ok(out)
}

/// The differences between the derived files of `dir`'s sources and those
/// checked in under `dir/derived` (missing, different, or not derived from
/// any source); empty when they agree.
pub fn check(dir: &Path) -> Result<Vec<String>, CodecError> {
    let want = derive(&load_sources(dir)?, DEFAULT_LOCATION)?;
    let derived = dir.join("derived");
    let mut problems = Vec::new();
    for (name, content) in &want {
        match std::fs::read_to_string(derived.join(name)) {
            Ok(have) if &have == content => {}
            Ok(_) => problems.push(format!("{name} differs from its source")),
            Err(_) => problems.push(format!("{name} is missing")),
        }
    }
    if let Ok(entries) = std::fs::read_dir(&derived) {
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().to_string();
            if !want.contains_key(&name) {
                problems.push(format!("{name} is derived from no source"));
            }
        }
    }
    problems.sort();
    Ok(problems)
}

/// Writes the derived files of `dir`'s sources into `dir/derived`,
/// removing stale ones; returns the names written.
pub fn write(dir: &Path, location: &str) -> Result<Vec<String>, CodecError> {
    let want = derive(&load_sources(dir)?, location)?;
    let derived = dir.join("derived");
    std::fs::create_dir_all(&derived)
        .map_err(|e| CodecError::Schema(format!("{}: {e}", derived.display())))?;
    if let Ok(entries) = std::fs::read_dir(&derived) {
        for e in entries.filter_map(Result::ok) {
            if !want.contains_key(&e.file_name().to_string_lossy().to_string()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    for (name, content) in &want {
        std::fs::write(derived.join(name), content)
            .map_err(|e| CodecError::Schema(format!("{name}: {e}")))?;
    }
    Ok(want.into_keys().collect())
}
