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

use usher_sdk::codec::Column;

use crate::image::{kind, str_of, text_of, Image, Kind};
use crate::schema::{Field, FieldType, Pii};

/// The hex SHA-256 of `salt` + `text`.
pub fn hash(salt: &str, text: &str) -> String {
    let mut out = String::with_capacity(64);
    push_hash(&mut out, salt, text);
    out
}

/// Appends the hex SHA-256 of `salt` + `text` to `out`.
fn push_hash(out: &mut String, salt: &str, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::new()
        .chain_update(salt.as_bytes())
        .chain_update(text.as_bytes())
        .finalize();
    let mut hex = [0u8; 64];
    for (pair, b) in hex.chunks_exact_mut(2).zip(digest) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 15)];
    }
    // Hex digits are ASCII.
    out.push_str(std::str::from_utf8(&hex).unwrap_or_default());
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
    // 0x80, so every byte that needs an escape is a whole character. One
    // table load and test per byte.
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let code = ESCAPE[usize::from(b)];
        if code == 0 {
            continue;
        }
        out.push_str(&text[start..i]);
        if code == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        } else {
            out.push('\\');
            out.push(char::from(code));
        }
        start = i + 1;
    }
    out.push_str(&text[start..]);
    out.push('"');
}

/// Per byte: 0 when it is written as it is, else the character after the
/// backslash of its escape (`u` for `\u00XX`).
const ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = b'u';
        b += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// A value's text with an annotation, appended as JSON (a string, or null).
fn push_scrubbed(out: &mut String, pii: Pii, text: &str, salt: &str) {
    match pii {
        Pii::Drop => out.push_str("null"),
        Pii::Hash => {
            // Hex needs no escapes.
            out.push('"');
            push_hash(out, salt, text);
            out.push('"');
        }
        Pii::Mask => push_json_str(out, &mask(text)),
    }
}

/// A value's text with an annotation, appended to its column (`drop`:
/// null; a hash is written as hex straight into the column's text).
fn push_scrubbed_cell(column: &mut Column, pii: Pii, text: &str, salt: &str) {
    match pii {
        Pii::Drop => column.push_null(),
        Pii::Hash => column.push_text_with(|out| push_hash(out, salt, text)),
        Pii::Mask => column.push_str(&mask(text)),
    }
}

/// Appends a string value's own text (its JSON text unescaped) to `out`:
/// copied as it is when it has no escape.
fn push_unescaped(out: &mut String, raw: &RawValue) {
    let text = raw.get().trim();
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) if !inner.contains('\\') => out.push_str(inner),
        _ => {
            if let Some(s) = str_of(raw) {
                out.push_str(&s);
            }
        }
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

/// Appends one validated field's archived value to its column: its PII
/// annotation applied (and its `pii_keys` for a `json` object's keys), a
/// `json` field as its JSON text, a string as its own text, a number or a
/// boolean as itself. The value is validated against the field's type
/// ([`crate::schema::RecordType::validate`]), so it parses.
pub fn push_cell(column: &mut Column, f: &Field, value: Option<&RawValue>, salt: &str) {
    let Some(v) = value else {
        column.push_null();
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
        return push_scrubbed_cell(column, pii, &text, salt);
    }
    if let Some(k) = keyed {
        return column.push_str(&k);
    }
    let raw = v.get().trim();
    match f.ty {
        FieldType::Json => column.push_str(raw),
        FieldType::String => column.push_text_with(|out| push_unescaped(out, v)),
        FieldType::Long => match raw.parse::<i64>() {
            Ok(n) => column.push_long(n),
            Err(_) => column.push_null(),
        },
        FieldType::Double => match raw.parse::<f64>() {
            Ok(n) => column.push_double(n),
            Err(_) => column.push_null(),
        },
        FieldType::Boolean => column.push_bool(raw == "true"),
    }
}
