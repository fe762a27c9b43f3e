//! PII scrubbing, driven only by the schema's annotations (seed 001's tech
//! debt #3: no scrubbing code in the record types). `hash`: the hex SHA-256
//! of the setting `pii_salt` followed by the value's text; `mask`: the first
//! character kept and every other one replaced by `*`; `drop`: null. A
//! `json` field's `pii_keys` scrub those keys of its object the same way
//! (the field is then archived as its JSON text).

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::archive::Out;
use crate::schema::{Field, FieldType, Pii};

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

/// One validated field's archived value: its PII annotation applied (and
/// its `pii_keys` for a `json` object's keys), a `json` field as its JSON
/// text, anything else the image's value itself, borrowed.
pub fn scrub<'a>(f: &Field, value: Option<&'a Value>, salt: &str) -> Out<'a> {
    let Some(v) = value else {
        return Out::Null;
    };
    let keyed = match v {
        Value::Object(obj) if !f.pii_keys.is_empty() => {
            let mut obj = obj.clone();
            for (key, pii) in &f.pii_keys {
                if let Some(inner) = obj.get_mut(key) {
                    *inner = apply(*pii, inner, salt);
                }
            }
            Some(Value::Object(obj))
        }
        _ => None,
    };
    let current = keyed.as_ref().unwrap_or(v);
    if let Some(pii) = f.pii {
        return match apply(pii, current, salt) {
            Value::String(text) => Out::Text(text),
            _ => Out::Null,
        };
    }
    if f.ty == FieldType::Json {
        return Out::Text(current.to_string());
    }
    match keyed {
        Some(changed) => Out::Owned(changed),
        None => Out::Same(v),
    }
}
