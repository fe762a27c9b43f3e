//! The record types, from the one schema source: `schemas/archive/<type>.json`
//! (fields, types, PII annotations, which items are of the type) and its
//! derived Avro schema `schemas/archive/derived/<type>.avsc` (what the
//! codec encodes with), both embedded at build time. The host's
//! `usher archive schemas --check` (a test) keeps the derived files equal to
//! what the sources give.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::BTreeMap;

use crate::image::{kind, Image, Kind};

/// A field's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Text.
    String,
    /// A 64-bit integer.
    Long,
    /// A float.
    Double,
    /// True or false.
    Boolean,
    /// Any JSON, archived as its JSON text.
    Json,
}

/// A PII annotation (see [`crate::pii`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pii {
    /// SHA-256 of the salt and the value, hex.
    Hash,
    /// First character kept, the others `*`.
    Mask,
    /// Not archived.
    Drop,
}

/// One field of a source.
#[derive(Debug, Clone, Deserialize)]
pub struct Field {
    /// Attribute and column name.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub ty: FieldType,
    /// Whether a record without it is invalid.
    #[serde(default)]
    pub required: bool,
    /// Its PII annotation.
    #[serde(default)]
    pub pii: Option<Pii>,
    /// Annotations of a `json` object's keys.
    #[serde(default)]
    pub pii_keys: BTreeMap<String, Pii>,
    /// The name as a record's JSON key, `"name":` (not in the source file).
    #[serde(skip)]
    pub key: String,
}

/// Which items are of the type.
#[derive(Debug, Clone, Deserialize)]
pub struct Match {
    /// The attribute looked at.
    pub attribute: String,
    /// Its exact value.
    #[serde(default)]
    pub equals: Option<String>,
    /// A prefix of its value.
    #[serde(default)]
    pub prefix: Option<String>,
}

/// A record type.
#[derive(Debug, Clone, Deserialize)]
pub struct RecordType {
    /// Its name.
    #[serde(rename = "type")]
    pub name: String,
    /// Which items are of it.
    #[serde(rename = "match")]
    pub matcher: Match,
    /// Its fields.
    pub fields: Vec<Field>,
    /// The derived Avro schema (not in the source file).
    #[serde(skip)]
    pub avro: Value,
}

/// The embedded sources and derived Avro schemas, by type.
const SOURCES: &[(&str, &str, &str)] = &[
    (
        "demand",
        include_str!("../../../../schemas/archive/demand.json"),
        include_str!("../../../../schemas/archive/derived/demand.avsc"),
    ),
    (
        "event",
        include_str!("../../../../schemas/archive/event.json"),
        include_str!("../../../../schemas/archive/derived/event.avsc"),
    ),
    (
        "notification",
        include_str!("../../../../schemas/archive/notification.json"),
        include_str!("../../../../schemas/archive/derived/notification.avsc"),
    ),
    (
        "sale",
        include_str!("../../../../schemas/archive/sale.json"),
        include_str!("../../../../schemas/archive/derived/sale.avsc"),
    ),
];

/// Every record type, parsed from the embedded files.
pub fn record_types() -> Result<Vec<RecordType>, String> {
    SOURCES
        .iter()
        .map(|(name, source, avsc)| {
            let mut t: RecordType =
                serde_json::from_str(source).map_err(|e| format!("source {name}: {e}"))?;
            t.avro = serde_json::from_str(avsc).map_err(|e| format!("avsc {name}: {e}"))?;
            for f in &mut t.fields {
                f.key = format!(
                    "{}:",
                    serde_json::to_string(&f.name).map_err(|e| format!("source {name}: {e}"))?
                );
            }
            if t.name != *name {
                return Err(format!("source {name} says type {}", t.name));
            }
            Ok(t)
        })
        .collect()
}

impl RecordType {
    /// Whether an item is of this type.
    pub fn matches(&self, item: &Image<'_>) -> bool {
        let Some(v) = item.get_str(&self.matcher.attribute) else {
            return false;
        };
        self.matcher.equals.as_deref().is_none_or(|e| v == e)
            && self
                .matcher
                .prefix
                .as_deref()
                .is_none_or(|p| v.starts_with(p))
    }

    /// The item's archived fields, checked against the schema, in the
    /// fields' order (None: missing or null): a required field missing (or
    /// null), or a value of the wrong type, is an error naming the field.
    /// Attributes the schema does not name are left out. Nothing is copied:
    /// each value is the image's own raw text.
    pub fn validate<'a>(&self, item: &Image<'a>) -> Result<Vec<Option<&'a RawValue>>, String> {
        let mut out = Vec::with_capacity(self.fields.len());
        for f in &self.fields {
            let v = item.get(&f.name).filter(|v| kind(v) != Kind::Null);
            let Some(v) = v else {
                if f.required {
                    return Err(format!("required field {} is missing", f.name));
                }
                out.push(None);
                continue;
            };
            let ok = match f.ty {
                FieldType::String => kind(v) == Kind::String,
                // An integer that fits 64 bits (`1.0`, `1e3` are not).
                FieldType::Long => kind(v) == Kind::Number && v.get().trim().parse::<i64>().is_ok(),
                FieldType::Double => kind(v) == Kind::Number,
                FieldType::Boolean => kind(v) == Kind::Bool,
                FieldType::Json => true,
            };
            if !ok {
                let text: String = v.get().trim().chars().take(60).collect();
                return Err(format!("field {} must be {:?}, is {text}", f.name, f.ty));
            }
            out.push(Some(v));
        }
        Ok(out)
    }
}
