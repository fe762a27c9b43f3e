//! Container encoding done natively in the host (the `codec` capability).

use serde::Serialize;
use serde_json::Value;

use crate::{json, Result};

/// A container format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Avro object container file.
    Avro,
    /// Apache Parquet file.
    Parquet,
}

/// Encodes records into one container following `schema` (an Avro schema;
/// Parquet columns are derived from it).
pub fn encode<T: Serialize>(format: Format, schema: &Value, records: &[T]) -> Result<Vec<u8>> {
    let schema = json::to_string(schema)?;
    let records = records
        .iter()
        .map(json::to_string)
        .collect::<Result<Vec<_>>>()?;
    sys::encode(format, &schema, &records)
}

#[cfg(target_arch = "wasm32")]
mod sys {
    use super::{Column, Format, Values};
    use crate::bindings::caps::usher::platform::codec as wit;
    use crate::Result;

    fn format_of(format: Format) -> wit::Format {
        match format {
            Format::Avro => wit::Format::Avro,
            Format::Parquet => wit::Format::Parquet,
        }
    }

    pub(super) fn encode(format: Format, schema: &str, records: &[String]) -> Result<Vec<u8>> {
        Ok(wit::encode(format_of(format), schema, records)?)
    }

    pub(super) fn encode_columns(
        format: Format,
        schema: &str,
        rows: u32,
        columns: Vec<Column>,
    ) -> Result<Vec<u8>> {
        let columns: Vec<wit::Column> = columns
            .into_iter()
            .map(|c| wit::Column {
                name: c.name,
                present: c.present,
                values: match c.values {
                    Values::Strings { text, ends } => {
                        wit::ColumnValues::Strings(wit::TextColumn { text, ends })
                    }
                    Values::Longs(v) => wit::ColumnValues::Longs(v),
                    Values::Doubles(v) => wit::ColumnValues::Doubles(v),
                    Values::Booleans(v) => wit::ColumnValues::Booleans(v),
                },
            })
            .collect();
        Ok(wit::encode_columns(
            format_of(format),
            schema,
            rows,
            &columns,
        )?)
    }

    pub(super) fn salted_sha256_hex(salt: &str, text: String, ends: Vec<u32>) -> Result<String> {
        Ok(wit::salted_sha256_hex(
            salt,
            &wit::TextColumn { text, ends },
        )?)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod sys {
    use super::{Column, Format};
    use crate::{Error, Result};

    pub(super) fn encode(_format: Format, _schema: &str, _records: &[String]) -> Result<Vec<u8>> {
        Err(Error::native("codec::encode"))
    }

    pub(super) fn encode_columns(
        _format: Format,
        _schema: &str,
        _rows: u32,
        _columns: Vec<Column>,
    ) -> Result<Vec<u8>> {
        Err(Error::native("codec::encode_columns"))
    }

    pub(super) fn salted_sha256_hex(_salt: &str, _text: String, _ends: Vec<u32>) -> Result<String> {
        Err(Error::native("codec::salted_sha256_hex"))
    }
}

/// [`encode`] for records that are JSON text already (one object each), as
/// a worker that writes its records' text itself has them: nothing is
/// serialized again.
pub fn encode_json(format: Format, schema: &Value, records: &[String]) -> Result<Vec<u8>> {
    let schema = json::to_string(schema)?;
    sys::encode(format, &schema, records)
}

/// A column's values (see [`Column`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Text: every row's string one after another, row i's ending at byte
    /// `ends[i]` (Avro `string` and `enum`).
    Strings {
        /// The rows' strings.
        text: String,
        /// Where each row's string ends.
        ends: Vec<u32>,
    },
    /// Avro `long`, `int` and their logical types (timestamps, `date`).
    Longs(Vec<i64>),
    /// Avro `double` and `float`.
    Doubles(Vec<f64>),
    /// Avro `boolean`.
    Booleans(Vec<bool>),
}

/// One schema field's values for every row, built a row at a time; for
/// [`encode_columns`]. A value of another kind than the column's is
/// written as null and refuses the whole call (`invalid`, naming the
/// column).
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    name: String,
    present: Vec<bool>,
    values: Values,
    mismatch: Option<&'static str>,
}

impl Column {
    fn new(name: &str, values: Values) -> Column {
        Column {
            name: name.to_string(),
            present: Vec::new(),
            values,
            mismatch: None,
        }
    }

    /// A text column.
    pub fn strings(name: &str) -> Column {
        Column::new(
            name,
            Values::Strings {
                text: String::new(),
                ends: Vec::new(),
            },
        )
    }

    /// A column of integers.
    pub fn longs(name: &str) -> Column {
        Column::new(name, Values::Longs(Vec::new()))
    }

    /// A column of floats.
    pub fn doubles(name: &str) -> Column {
        Column::new(name, Values::Doubles(Vec::new()))
    }

    /// A column of booleans.
    pub fn booleans(name: &str) -> Column {
        Column::new(name, Values::Booleans(Vec::new()))
    }

    /// The field's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rows so far.
    pub fn len(&self) -> usize {
        self.present.len()
    }

    /// Whether it has no row yet.
    pub fn is_empty(&self) -> bool {
        self.present.is_empty()
    }

    /// The values so far.
    pub fn values(&self) -> &Values {
        &self.values
    }

    /// Whether row `row` has a value.
    pub fn is_present(&self, row: usize) -> bool {
        self.present.get(row).copied().unwrap_or(false)
    }

    /// Row `row`'s text, for a text column that has it.
    pub fn text(&self, row: usize) -> Option<&str> {
        match &self.values {
            Values::Strings { text, ends } if self.is_present(row) => {
                let start = if row == 0 { 0 } else { ends[row - 1] as usize };
                text.get(start..*ends.get(row)? as usize)
            }
            _ => None,
        }
    }

    /// Appends a row without a value.
    pub fn push_null(&mut self) {
        self.present.push(false);
        match &mut self.values {
            Values::Strings { text, ends } => ends.push(text.len() as u32),
            Values::Longs(v) => v.push(0),
            Values::Doubles(v) => v.push(0.0),
            Values::Booleans(v) => v.push(false),
        }
    }

    fn wrong(&mut self, what: &'static str) {
        self.mismatch.get_or_insert(what);
        self.push_null();
    }

    /// Appends a row's text, written by `write` straight into the column
    /// (no string of its own).
    pub fn push_text_with(&mut self, write: impl FnOnce(&mut String)) {
        match &mut self.values {
            Values::Strings { text, ends } => {
                write(text);
                ends.push(text.len() as u32);
                self.present.push(true);
            }
            _ => self.wrong("text"),
        }
    }

    /// Appends a row's text.
    pub fn push_str(&mut self, value: &str) {
        self.push_text_with(|text| text.push_str(value));
    }

    /// Appends a row's integer.
    pub fn push_long(&mut self, value: i64) {
        match &mut self.values {
            Values::Longs(v) => {
                v.push(value);
                self.present.push(true);
            }
            _ => self.wrong("an integer"),
        }
    }

    /// Appends a row's float.
    pub fn push_double(&mut self, value: f64) {
        match &mut self.values {
            Values::Doubles(v) => {
                v.push(value);
                self.present.push(true);
            }
            _ => self.wrong("a float"),
        }
    }

    /// Appends a row's boolean.
    pub fn push_bool(&mut self, value: bool) {
        match &mut self.values {
            Values::Booleans(v) => {
                v.push(value);
                self.present.push(true);
            }
            _ => self.wrong("a boolean"),
        }
    }

    /// Overwrites parts of the column's text: each patch `(at, with)`
    /// writes `with` over the bytes from byte `at` of all rows' text. For
    /// values written as placeholders and filled in later, such as hashes
    /// the host computes ([`salted_sha256_hex`]). `with` must be ASCII and
    /// the bytes it replaces whole characters (the range starts and ends on
    /// character boundaries), so the text stays UTF-8: the first patch
    /// that is not, or that reaches past the text, is refused with its
    /// index, and the patches before it stay applied. A column of another
    /// kind refuses the first patch.
    pub fn patch_text<'a>(
        &mut self,
        patches: impl IntoIterator<Item = (usize, &'a str)>,
    ) -> std::result::Result<(), usize> {
        let Values::Strings { text, .. } = &mut self.values else {
            return Err(0);
        };
        for (i, (at, with)) in patches.into_iter().enumerate() {
            let end = at.saturating_add(with.len());
            if !(text.is_char_boundary(at) && text.is_char_boundary(end) && is_ascii(with)) {
                return Err(i);
            }
            // SAFETY: the replaced bytes are whole characters (both ends are
            // character boundaries, checked above, and `end` is within the
            // text) and every new byte is ASCII, a character of its own: the
            // text stays UTF-8. (Checking the whole text again after every
            // batch of patches was 1% of P5's archive.)
            let bytes = unsafe { text.as_mut_vec() };
            if let Some(old) = bytes.get_mut(at..end) {
                old.copy_from_slice(with.as_bytes());
            }
        }
        Ok(())
    }

    /// The text of every row so far (a text column's), for the byte
    /// offsets [`Column::patch_text`] takes.
    pub fn text_len(&self) -> usize {
        match &self.values {
            Values::Strings { text, .. } => text.len(),
            _ => 0,
        }
    }

    /// The kind of value pushed to a column of another kind, if any.
    pub fn mismatch(&self) -> Option<&'static str> {
        self.mismatch
    }
}

/// Encodes records given as columns into one container following `schema`
/// (an Avro schema of a flat record; `usher:platform@0.1.2`): no JSON
/// crosses the boundary, the host builds the container's columns straight
/// from these. Every column must have the same number of rows.
pub fn encode_columns(format: Format, schema: &Value, columns: Vec<Column>) -> Result<Vec<u8>> {
    encode_columns_text(format, &json::to_string(schema)?, columns)
}

/// [`encode_columns`] with the schema as JSON text, as a worker that embeds
/// its schema's file has it: nothing parsed or serialized again per call.
pub fn encode_columns_text(format: Format, schema: &str, columns: Vec<Column>) -> Result<Vec<u8>> {
    let rows = columns.first().map_or(0, Column::len);
    for c in &columns {
        if let Some(what) = c.mismatch {
            return Err(crate::Error::Invalid(format!(
                "column {}: {what} pushed to a column of another kind",
                c.name
            )));
        }
        if c.len() != rows {
            return Err(crate::Error::Invalid(format!(
                "column {}: {} rows, column {}: {rows}",
                c.name,
                c.len(),
                columns[0].name
            )));
        }
    }
    let rows = u32::try_from(rows)
        .map_err(|_| crate::Error::Invalid(format!("{rows} rows is too many for one call")))?;
    sys::encode_columns(format, schema, rows, columns)
}

/// Whether every byte is ASCII, eight at a time (wasm32's `usize` is four
/// bytes, which `<[u8]>::is_ascii` steps by).
fn is_ascii(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut words = bytes.chunks_exact(8);
    let words_ok = words.by_ref().all(|w| {
        <[u8; 8]>::try_from(w).is_ok_and(|w| u64::from_le_bytes(w) & 0x8080_8080_8080_8080 == 0)
    });
    words_ok && words.remainder().is_ascii()
}

/// The most values one [`salted_sha256_hex`] call hashes (the host's limit).
pub const MAX_HASH_VALUES: usize = 100_000;

/// The hex SHA-256 of `salt` followed by each value's text, 64 lowercase
/// hex digits a value, one after another (`usher:platform@0.1.4`): PII
/// hashed by the host, with the CPU's SHA instructions, instead of by
/// software SHA-256 in wasm. The values are a text column's layout: every
/// value's text one after another in `text`, value i's ending at byte
/// `ends[i]`. At most [`MAX_HASH_VALUES`] values a call.
pub fn salted_sha256_hex(salt: &str, text: String, ends: Vec<u32>) -> Result<String> {
    sys::salted_sha256_hex(salt, text, ends)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_patched_in_place_with_ascii_only() {
        let mut s = Column::strings("s");
        s.push_str("é");
        let at = s.text_len();
        s.push_text_with(|t| t.push_str("x:0000-00"));
        assert_eq!(s.patch_text([(at + 2, "abcd"), (at + 7, "ef")]), Ok(()));
        assert_eq!(s.text(1), Some("x:abcd-ef"));
        assert_eq!(
            s.patch_text([(at, "y"), (at + 8, "abc")]),
            Err(1),
            "past the text"
        );
        assert_eq!(s.text(1), Some("y:abcd-ef"), "the patches before it stay");
        assert_eq!(s.patch_text([(1, "a")]), Err(0), "inside a character");
        assert_eq!(
            s.patch_text([(0, "a")]),
            Err(0),
            "ending inside a character"
        );
        assert_eq!(
            s.patch_text([(at, "é")]),
            Err(0),
            "with a non-ASCII character"
        );
        assert_eq!(
            s.patch_text([(at, "0123456789abcdeé")]),
            Err(0),
            "after eight bytes"
        );
        assert_eq!(Column::longs("l").patch_text([(0, "")]), Err(0));
        assert_eq!(s.text(0), Some("é"));
        assert_eq!(s.text(1), Some("y:abcd-ef"));
        assert_eq!(
            s.patch_text([(0, "ab")]),
            Ok(()),
            "a whole character replaced"
        );
        assert_eq!((s.text(0), s.text(1)), (Some("ab"), Some("y:abcd-ef")));
        assert!(is_ascii("0123456789abcdef0123") && !is_ascii("0123456789abcdef012é"));
    }

    #[test]
    fn columns_are_built_a_row_at_a_time() {
        let mut s = Column::strings("s");
        s.push_str("ab");
        s.push_null();
        s.push_text_with(|t| t.push_str("é!"));
        assert_eq!(
            s.values(),
            &Values::Strings {
                text: "abé!".into(),
                ends: vec![2, 2, 5]
            }
        );
        assert_eq!(
            (s.text(0), s.text(1), s.text(2)),
            (Some("ab"), None, Some("é!"))
        );
        let mut l = Column::longs("l");
        l.push_long(7);
        l.push_null();
        assert_eq!(l.values(), &Values::Longs(vec![7, 0]));
        assert!(l.is_present(0) && !l.is_present(1));
        assert_eq!(l.mismatch(), None);
        l.push_str("x");
        assert_eq!(l.mismatch(), Some("text"));
        assert_eq!(l.len(), 3);
        let mut b = Column::booleans("b");
        b.push_bool(true);
        b.push_double(1.0);
        assert_eq!(b.mismatch(), Some("a float"));
    }

    #[test]
    fn mismatched_and_ragged_columns_are_refused_before_the_call() {
        let schema = serde_json::json!({"type": "record", "name": "r", "fields": []});
        let mut a = Column::longs("a");
        a.push_long(1);
        let mut bad = Column::booleans("b");
        bad.push_long(1);
        let err = encode_columns(Format::Avro, &schema, vec![a.clone(), bad]).expect_err("kind");
        assert!(
            err.to_string().contains("column b: an integer pushed"),
            "{err}"
        );
        let err =
            encode_columns(Format::Avro, &schema, vec![a, Column::longs("c")]).expect_err("rows");
        assert!(
            err.to_string().contains("column c: 0 rows, column a: 1"),
            "{err}"
        );
    }
}
