//! PII scrubbing, driven only by the schema's annotations (seed 001's tech
//! debt #3: no scrubbing code in the record types). `hash`: the hex SHA-256
//! of the setting `pii_salt` followed by the value's text; `mask`: the first
//! character kept and every other one replaced by `*`; `drop`: null. A
//! `json` field's `pii_keys` scrub those keys of its object the same way
//! (the field is then archived as its JSON text).

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::schema::{FieldType, Pii, RecordType};

/// The hex SHA-256 of `salt` + `text`.
pub fn hash(salt: &str, text: &str) -> String {
    let digest = Sha256::new()
        .chain_update(salt.as_bytes())
        .chain_update(text.as_bytes())
        .finalize();
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
    }
    out
}

/// The first character, then a `*` for each other one.
pub fn mask(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        None => String::new(),
        Some(first) => std::iter::once(first).chain(chars.map(|_| '*')).collect(),
    }
}

fn apply(pii: Pii, v: &Value, salt: &str) -> Value {
    if v.is_null() {
        return Value::Null;
    }
    match pii {
        Pii::Drop => Value::Null,
        Pii::Hash => Value::String(hash(salt, &text_of(v))),
        Pii::Mask => Value::String(mask(&text_of(v))),
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Scrubs a validated record in place and turns `json` fields into their
/// JSON text.
pub fn scrub(t: &RecordType, record: &mut Map<String, Value>, salt: &str) {
    for f in &t.fields {
        let Some(v) = record.get_mut(&f.name) else {
            continue;
        };
        if let (false, Value::Object(obj)) = (f.pii_keys.is_empty(), &mut *v) {
            for (key, pii) in &f.pii_keys {
                if let Some(inner) = obj.get_mut(key) {
                    *inner = apply(*pii, inner, salt);
                }
            }
        }
        if let Some(pii) = f.pii {
            *v = apply(pii, v, salt);
        } else if f.ty == FieldType::Json && !v.is_null() {
            *v = Value::String(v.to_string());
        }
    }
}
