//! The record types, from the one schema source: `schemas/archive/<type>.json`
//! (fields, types, PII annotations, which items are of the type) and its
//! derived Avro schema `schemas/archive/derived/<type>.avsc` (what the
//! codec encodes with), both embedded at build time. The host's
//! `usher archive schemas --check` (a test) keeps the derived files equal to
//! what the sources give.

use serde::Deserialize;
use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::image::{kind, Image, Kind, Raw};

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
    /// The derived Avro schema's JSON text, as embedded (not in the source
    /// file): handed to the codec as it is, never parsed here.
    #[serde(skip)]
    pub avro: &'static str,
    /// The fields' indexes ordered by name (its length first), to find an
    /// attribute's field with a binary search (not in the source file).
    #[serde(skip)]
    by_name: Vec<usize>,
    /// What the attribute at each position of the last image validated
    /// was: images of one table list their attributes in the same order,
    /// so one comparison usually finds an attribute's field.
    #[serde(skip)]
    hints: RefCell<Vec<Hint>>,
}

/// What the attribute at a position of an image was.
#[derive(Debug, Clone, Default)]
enum Hint {
    /// Nothing seen at this position yet.
    #[default]
    Unknown,
    /// The field of this index.
    Field(usize),
    /// An attribute of this name, not a field.
    Other(String),
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
            t.avro = avsc;
            t.by_name = (0..t.fields.len()).collect();
            t.by_name
                .sort_by(|a, b| by_length_then_text(&t.fields[*a].name, &t.fields[*b].name));
            if t.name != *name {
                return Err(format!("source {name} says type {}", t.name));
            }
            Ok(t)
        })
        .collect()
}

/// Names ordered by length, then text: most names differ in length, so
/// most comparisons look at no byte.
fn by_length_then_text(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

impl RecordType {
    /// The index of the field named `name`.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.by_name
            .binary_search_by(|i| by_length_then_text(&self.fields[*i].name, name))
            .ok()
            .map(|at| self.by_name[at])
    }

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
    pub fn validate<'a>(&self, item: &Image<'a>) -> Result<Vec<Option<Raw<'a>>>, String> {
        self.validate_in(item, Vec::new())
    }

    /// [`RecordType::validate`] into the vector of an earlier record, so a
    /// batch allocates it once.
    pub fn validate_in<'a>(
        &self,
        item: &Image<'a>,
        mut out: Vec<Option<Raw<'a>>>,
    ) -> Result<Vec<Option<Raw<'a>>>, String> {
        // One pass over the attributes; a later one of the same name
        // replaces an earlier one, as a parser into a map would keep.
        out.clear();
        out.resize(self.fields.len(), None);
        let mut hints = self.hints.borrow_mut();
        if hints.len() < item.attrs().len() {
            hints.resize(item.attrs().len(), Hint::Unknown);
        }
        for ((name, v), hint) in item.attrs().iter().zip(hints.iter_mut()) {
            let field = match hint {
                Hint::Field(i) if self.fields[*i].name == *name => Some(*i),
                Hint::Other(other) if other == name => None,
                _ => {
                    let found = self.field_index(name);
                    *hint = match found {
                        Some(i) => Hint::Field(i),
                        None => Hint::Other(name.to_string()),
                    };
                    found
                }
            };
            if let Some(i) = field {
                out[i] = Some(*v);
            }
        }
        for (f, slot) in self.fields.iter().zip(&mut out) {
            let Some(v) = slot.filter(|v| kind(*v) != Kind::Null) else {
                if f.required {
                    return Err(format!("required field {} is missing", f.name));
                }
                *slot = None;
                continue;
            };
            let ok = match f.ty {
                FieldType::String => kind(v) == Kind::String,
                // An integer that fits 64 bits (`1.0`, `1e3` are not).
                FieldType::Long => kind(v) == Kind::Number && v.get().parse::<i64>().is_ok(),
                FieldType::Double => kind(v) == Kind::Number,
                FieldType::Boolean => kind(v) == Kind::Bool,
                FieldType::Json => true,
            };
            if !ok {
                let text: String = v.get().chars().take(60).collect();
                return Err(format!("field {} must be {:?}, is {text}", f.name, f.ty));
            }
        }
        Ok(out)
    }
}
