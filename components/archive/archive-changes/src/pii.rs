//! PII scrubbing, driven only by the schema's annotations (seed 001's tech
//! debt #3: no scrubbing code in the record types). `hash`: the hex SHA-256
//! of the setting `pii_salt` followed by the value's text; `mask`: the first
//! character kept and every other one replaced by `*`; `drop`: null. A
//! `json` field's `pii_keys` scrub those keys of its object the same way
//! (the field is then archived as its JSON text).
//!
//! A value's text is a string's own text, or any other value's JSON text.
//!
//! Hashes are computed by the host (`codec.salted-sha256-hex`, with the
//! CPU's SHA instructions; software SHA-256 in wasm was a quarter of the
//! worker's time, P5 in BENCHMARKS.md): a hashed value is written as 64
//! placeholder digits, its text is added to the batch's [`Hashes`] and its
//! place recorded as a [`Site`]; once the batch is read, one host call
//! hashes them all and the sites are patched. Only a field that is hashed
//! as a whole and also has `pii_keys` (none of the schemas has one) hashes
//! its keys in the guest, as its text must be final before it is hashed.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

use usher_sdk::codec::Column;

use crate::image::{kind, str_of, text_of, Image, Kind, Raw};
use crate::schema::{Field, FieldType, Pii};

/// The texts of a batch's hashed values, in a text column's layout, for
/// one `codec.salted-sha256-hex` call.
#[derive(Debug, Default)]
pub struct Hashes {
    text: String,
    ends: Vec<u32>,
}

impl Hashes {
    /// Adds a value's text; its index.
    fn add(&mut self, value: &str) -> usize {
        self.text.push_str(value);
        self.ends
            .push(u32::try_from(self.text.len()).unwrap_or(u32::MAX));
        self.ends.len() - 1
    }

    /// How many values.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Values `range`, as a text column's text and ends.
    pub fn slice(&self, range: std::ops::Range<usize>) -> (String, Vec<u32>) {
        let start = match range.start {
            0 => 0,
            i => self.ends[i - 1],
        };
        let end = match range.end {
            0 => 0,
            i => self.ends[i - 1],
        };
        let text = self.text[start as usize..end as usize].to_string();
        let ends = self.ends[range].iter().map(|e| e - start).collect();
        (text, ends)
    }
}

/// Where a hash goes: the column, the byte offset of its 64 digits in the
/// column's text, and the value's index in the batch's [`Hashes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Site {
    /// The column's index in its group.
    pub column: usize,
    /// The byte offset in the column's text.
    pub at: usize,
    /// The value's index in [`Hashes`].
    pub value: usize,
}

/// What a hash is written as until the host's digits replace it.
pub const PLACEHOLDER: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Where one cell's hashes are deferred to: its column's index, the
/// batch's values and the group's sites.
pub struct Deferred<'a> {
    /// The cell's column.
    pub column: usize,
    /// The batch's values to hash.
    pub hashes: &'a mut Hashes,
    /// The group's sites.
    pub sites: &'a mut Vec<Site>,
}

impl Deferred<'_> {
    /// Appends the placeholder of `text`'s hash to `out`, the column's
    /// whole text (so its length is the site's offset).
    fn hash_into(&mut self, out: &mut String, text: &str) {
        let value = self.hashes.add(text);
        self.sites.push(Site {
            column: self.column,
            at: out.len(),
            value,
        });
        out.push_str(PLACEHOLDER);
    }
}

/// The hex SHA-256 of `salt` + `text`, computed in the guest (the host's
/// `codec.salted-sha256-hex` gives the same digits).
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

/// A value's text with an annotation, appended as JSON (a string, or null);
/// a hash written by `hash` (its 64 hex digits need no escapes).
fn push_scrubbed(out: &mut String, pii: Pii, text: &str, hash: impl FnOnce(&mut String, &str)) {
    match pii {
        Pii::Drop => out.push_str("null"),
        Pii::Hash => {
            out.push('"');
            hash(out, text);
            out.push('"');
        }
        Pii::Mask => push_json_str(out, &mask(text)),
    }
}

/// A value's text with an annotation, appended to its column (`drop`:
/// null; a hash deferred to the host, its placeholder in the column).
fn push_scrubbed_cell(column: &mut Column, pii: Pii, text: &str, deferred: &mut Deferred<'_>) {
    match pii {
        Pii::Drop => column.push_null(),
        Pii::Hash => column.push_text_with(|out| deferred.hash_into(out, text)),
        Pii::Mask => column.push_str(&mask(text)),
    }
}

/// Appends a string value's own text (its JSON text unescaped) to `out`:
/// copied as it is when it has no escape.
fn push_unescaped(out: &mut String, raw: Raw<'_>) {
    if let Some(s) = str_of(raw) {
        out.push_str(&s);
    }
}

/// A `json` object with its `pii_keys` scrubbed, as JSON text (the other
/// keys' values as they were), hashes computed in the guest: for a field
/// that is then hashed as a whole.
fn keyed(f: &Field, object: Raw<'_>, salt: &str) -> Option<String> {
    let image = Image::parse(object.get()).ok()?;
    let mut out = String::with_capacity(object.get().len() + 64);
    write_keyed(&mut out, f, &image, |out, pii, text| {
        push_scrubbed(out, pii, text, |out, t| push_hash(out, salt, t))
    });
    Some(out)
}

/// Writes an object's attributes to `out` as JSON, its `pii_keys`
/// scrubbed by `scrub` (the other keys' values as they were).
fn write_keyed(
    out: &mut String,
    f: &Field,
    image: &Image<'_>,
    mut scrub: impl FnMut(&mut String, Pii, &str),
) {
    out.push('{');
    for (i, (name, value)) in image.attrs().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match name {
            // A name read without escapes needs none: its text as it was.
            Cow::Borrowed(plain) => {
                out.push('"');
                out.push_str(plain);
                out.push('"');
            }
            Cow::Owned(decoded) => push_json_str(out, decoded),
        }
        out.push(':');
        match f.pii_keys.get(name.as_ref()) {
            Some(pii) if kind(*value) != Kind::Null => scrub(out, *pii, &text_of(*value)),
            _ => out.push_str(value.get()),
        }
    }
    out.push('}');
}

/// Appends one validated field's archived value to its column: its PII
/// annotation applied (and its `pii_keys` for a `json` object's keys), a
/// `json` field as its JSON text, a string as its own text, a number or a
/// boolean as itself. The value is validated against the field's type
/// ([`crate::schema::RecordType::validate`]), so it parses. Hashes are
/// deferred (see the module's docs).
pub fn push_cell(
    column: &mut Column,
    f: &Field,
    value: Option<Raw<'_>>,
    salt: &str,
    deferred: &mut Deferred<'_>,
) {
    let Some(v) = value else {
        column.push_null();
        return;
    };
    let keyed_object = !f.pii_keys.is_empty() && kind(v) == Kind::Object;
    if let Some(pii) = f.pii {
        let keyed = if keyed_object {
            keyed(f, v, salt)
        } else {
            None
        };
        let text = match &keyed {
            Some(k) => k.as_str().into(),
            None => text_of(v),
        };
        return push_scrubbed_cell(column, pii, &text, deferred);
    }
    let raw = v.get();
    if keyed_object {
        if let Ok(image) = Image::parse(raw) {
            return column.push_text_with(|out| {
                write_keyed(out, f, &image, |out, pii, text| {
                    push_scrubbed(out, pii, text, |out, t| deferred.hash_into(out, t))
                })
            });
        }
    }
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
