//! PII scrubbing, driven only by the schema's annotations (seed 001's tech
//! debt #3: no scrubbing code in the record types). `hash`: the hex SHA-256
//! of the setting `pii_salt` followed by the value's text; `mask`: the first
//! character kept and every other one replaced by `*`; `drop`: null. A
//! `json` field's `pii_keys` scrub those keys of its object the same way
//! (the field is then archived as its JSON text).
//!
//! A value's text is a string's own text, or any other value's JSON text.

use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::image::{kind, text_of, Image, Kind};
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

/// Appends `text` to `out` as a JSON string (the escapes `serde_json`
/// writes: `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, other control
/// characters as `\u00XX`).
pub fn push_json_str(out: &mut String, text: &str) {
    out.push('"');
    // Bytes, not chars: no byte of a multi-byte UTF-8 sequence is below
    // 0x80, so every byte that needs an escape is a whole character.
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&text[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&text[start..]);
    out.push('"');
}

/// A value's text with an annotation, appended as JSON (a string, or null).
fn push_scrubbed(out: &mut String, pii: Pii, text: &str, salt: &str) {
    match pii {
        Pii::Drop => out.push_str("null"),
        Pii::Hash => push_json_str(out, &hash(salt, text)),
        Pii::Mask => push_json_str(out, &mask(text)),
    }
}

/// A `json` object with its `pii_keys` scrubbed, as JSON text (the other
/// keys' values as they were).
fn keyed(f: &Field, object: &RawValue, salt: &str) -> Option<String> {
    let image = Image::parse(object.get()).ok()?;
    let mut out = String::with_capacity(object.get().len() + 64);
    out.push('{');
    for (i, (name, value)) in image.attrs().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(&mut out, name);
        out.push(':');
        match f.pii_keys.get(name.as_ref()) {
            Some(pii) if kind(value) != Kind::Null => {
                push_scrubbed(&mut out, *pii, &text_of(value), salt)
            }
            _ => out.push_str(value.get().trim()),
        }
    }
    out.push('}');
    Some(out)
}

/// Appends one validated field's archived value to a record's JSON text:
/// its PII annotation applied (and its `pii_keys` for a `json` object's
/// keys), a `json` field as its JSON text, anything else the image's own
/// text.
pub fn push_field(out: &mut String, f: &Field, value: Option<&RawValue>, salt: &str) {
    let Some(v) = value else {
        out.push_str("null");
        return;
    };
    let keyed = if !f.pii_keys.is_empty() && kind(v) == Kind::Object {
        keyed(f, v, salt)
    } else {
        None
    };
    if let Some(pii) = f.pii {
        let text = match &keyed {
            Some(k) => k.as_str().into(),
            None => text_of(v),
        };
        return push_scrubbed(out, pii, &text, salt);
    }
    match (keyed, f.ty) {
        (Some(k), FieldType::Json) => push_json_str(out, &k),
        (None, FieldType::Json) => push_json_str(out, v.get().trim()),
        (Some(k), _) => out.push_str(&k),
        (None, _) => out.push_str(v.get().trim()),
    }
}
