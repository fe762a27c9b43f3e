//! Containers from records given as columns (`codec.encode-columns`,
//! since `usher:platform@0.1.2`): no JSON between the guest and the
//! encoder.
//!
//! * **Parquet**: each column becomes its Arrow array without copying its
//!   values (a text column's bytes and ends become the array's buffers), the
//!   arrays one record batch, written by `parquet`'s `ArrowWriter`.
//! * **Avro**: one `apache-avro` record value is kept for the whole call and
//!   its fields overwritten row by row (a string field's buffer reused), each
//!   row appended unvalidated: the columns were checked against the schema
//!   once, up front.
//!
//! The schema must be a flat Avro record: fields of `string`, `enum`,
//! `long`, `int`, `double`, `float`, `boolean`, `timestamp-millis`,
//! `timestamp-micros` or `date`, each optionally in a union with `null`.
//! Anything the columns get wrong is a [`CodecError::Record`] naming the
//! column (and the row): a column the schema does not name, or named twice,
//! of the wrong kind, of another length than the rows, a null in a field
//! that is not nullable, an `int` out of range, an unknown enum symbol,
//! text ends out of order, past the text or inside a character.

use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::schema::{RecordSchema, Schema as AvroSchema};
use apache_avro::types::Value as Avro;
use arrow_array::types::{
    Date32Type, Float32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType,
};
use arrow_array::{
    new_null_array, ArrayRef, ArrowPrimitiveType, BooleanArray, PrimitiveArray, RecordBatch,
    StringArray,
};
use parquet::arrow::ArrowWriter;
use serde_json::Value;
use usher_capabilities::{Column, ColumnValues, Columns, Format};

use crate::{avro_codec, columns, parquet_properties, parse_avro_schema, CodecError};

/// What a field holds.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    String,
    Enum(Vec<String>),
    Long,
    Int,
    TimestampMillis,
    TimestampMicros,
    Date,
    Double,
    Float,
    Boolean,
}

impl Kind {
    fn of(schema: &AvroSchema) -> Option<Kind> {
        Some(match schema {
            AvroSchema::String => Kind::String,
            AvroSchema::Enum(e) => Kind::Enum(e.symbols.clone()),
            AvroSchema::Long => Kind::Long,
            AvroSchema::Int => Kind::Int,
            AvroSchema::TimestampMillis => Kind::TimestampMillis,
            AvroSchema::TimestampMicros => Kind::TimestampMicros,
            AvroSchema::Date => Kind::Date,
            AvroSchema::Double => Kind::Double,
            AvroSchema::Float => Kind::Float,
            AvroSchema::Boolean => Kind::Boolean,
            _ => return None,
        })
    }

    /// The column kind that carries it.
    fn column_kind(&self) -> &'static str {
        match self {
            Kind::String | Kind::Enum(_) => "strings",
            Kind::Long | Kind::Int | Kind::TimestampMillis | Kind::TimestampMicros | Kind::Date => {
                "longs"
            }
            Kind::Double | Kind::Float => "doubles",
            Kind::Boolean => "booleans",
        }
    }
}

/// One field of the flat record.
#[derive(Debug, Clone)]
struct FlatField {
    name: String,
    kind: Kind,
    /// The union's branch indexes (null, value) when the field is nullable.
    union: Option<(u32, u32)>,
}

/// The fields of a flat record schema, or a schema error naming the first
/// field the columns cannot carry.
fn flat_fields(schema: &AvroSchema) -> Result<Vec<FlatField>, CodecError> {
    let AvroSchema::Record(RecordSchema { fields, .. }) = schema else {
        return Err(CodecError::Schema(
            "the schema must be an Avro record (type \"record\" with fields)".into(),
        ));
    };
    let unsupported = |name: &str| {
        CodecError::Schema(format!(
            "field {name}: encode-columns takes flat records (string, enum, long, int, double, \
             float, boolean, timestamp-millis, timestamp-micros, date, each optionally in a \
             union with null); use encode for this schema"
        ))
    };
    fields
        .iter()
        .map(|f| {
            let (kind, union) = match &f.schema {
                AvroSchema::Union(u) => {
                    let variants = u.variants();
                    let null = variants.iter().position(|v| *v == AvroSchema::Null);
                    match (variants.len(), null) {
                        (2, Some(n)) => {
                            let other = 1 - n;
                            let kind =
                                Kind::of(&variants[other]).ok_or_else(|| unsupported(&f.name))?;
                            (kind, Some((n as u32, other as u32)))
                        }
                        _ => return Err(unsupported(&f.name)),
                    }
                }
                other => (Kind::of(other).ok_or_else(|| unsupported(&f.name))?, None),
            };
            Ok(FlatField {
                name: f.name.clone(),
                kind,
                union,
            })
        })
        .collect()
}

/// The columns lined up with the schema's fields (None: no column, null
/// throughout), every one checked against its field.
fn line_up(fields: &[FlatField], columns: Columns) -> Result<Vec<Option<Column>>, CodecError> {
    let rows = columns.rows;
    let index: HashMap<&str, usize> = fields
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name.as_str(), i))
        .collect();
    let mut slots: Vec<Option<Column>> = vec![None; fields.len()];
    for column in columns.columns {
        let bad = |what: String| CodecError::Record(format!("column {}: {what}", column.name));
        let Some(&i) = index.get(column.name.as_str()) else {
            return Err(bad("the schema has no such field".into()));
        };
        if slots[i].is_some() {
            return Err(bad("given twice".into()));
        }
        let field = &fields[i];
        if column.values.kind() != field.kind.column_kind() {
            return Err(bad(format!(
                "{} given, the field needs {}",
                column.values.kind(),
                field.kind.column_kind()
            )));
        }
        if column.values.len() != rows {
            return Err(bad(format!(
                "{} values for {rows} rows",
                column.values.len()
            )));
        }
        if !column.present.is_empty() && column.present.len() != rows {
            return Err(bad(format!(
                "{} presence flags for {rows} rows",
                column.present.len()
            )));
        }
        if field.union.is_none() {
            if let Some(row) = column.present.iter().position(|p| !p) {
                return Err(bad(format!(
                    "row {row} has no value, and the field is not nullable"
                )));
            }
        }
        let present = |row: usize| column.present.get(row).copied().unwrap_or(true);
        match (&column.values, &field.kind) {
            (ColumnValues::Strings { text, ends }, kind) => {
                let mut start = 0u32;
                for (row, &end) in ends.iter().enumerate() {
                    if end < start
                        || end as usize > text.len()
                        || !text.is_char_boundary(end as usize)
                    {
                        return Err(bad(format!(
                            "row {row}: text end {end} is before the row's start, past the text \
                             ({} bytes) or inside a character",
                            text.len()
                        )));
                    }
                    if let Kind::Enum(symbols) = kind {
                        let s = &text[start as usize..end as usize];
                        if present(row) && !symbols.iter().any(|x| x == s) {
                            return Err(bad(format!(
                                "row {row}: {s:?} is not a symbol of the enum"
                            )));
                        }
                    }
                    start = end;
                }
                if text.len() > i32::MAX as usize {
                    return Err(bad("more than 2 GiB of text".into()));
                }
            }
            (ColumnValues::Longs(v), Kind::Int | Kind::Date) => {
                if let Some(row) = (0..rows).find(|&r| present(r) && i32::try_from(v[r]).is_err()) {
                    return Err(bad(format!(
                        "row {row}: {} is out of the int range",
                        v[row]
                    )));
                }
            }
            _ => {}
        }
        slots[i] = Some(column);
    }
    for (field, slot) in fields.iter().zip(&slots) {
        if slot.is_none() && field.union.is_none() && rows > 0 {
            return Err(CodecError::Record(format!(
                "column {}: missing, and the field is not nullable",
                field.name
            )));
        }
    }
    Ok(slots)
}

/// One container of records given as columns (see the module docs).
pub fn encode_columns(
    format: Format,
    schema: &Value,
    columns: Columns,
) -> Result<Vec<u8>, CodecError> {
    let parsed = parse_avro_schema(schema)?;
    let fields = flat_fields(&parsed)?;
    let rows = columns.rows;
    let slots = line_up(&fields, columns)?;
    match format {
        Format::Parquet => parquet(schema, &fields, rows, slots),
        Format::Avro => avro(&parsed, &fields, rows, &slots),
    }
}

fn nulls(present: Vec<bool>) -> Option<arrow_buffer::NullBuffer> {
    if present.iter().all(|p| *p) {
        None
    } else {
        Some(arrow_buffer::NullBuffer::from(present))
    }
}

fn primitive<T: ArrowPrimitiveType>(
    values: Vec<T::Native>,
    present: Vec<bool>,
    data_type: &arrow_schema::DataType,
) -> ArrayRef {
    Arc::new(
        PrimitiveArray::<T>::new(values.into(), nulls(present)).with_data_type(data_type.clone()),
    )
}

fn parquet(
    schema: &Value,
    fields: &[FlatField],
    rows: usize,
    slots: Vec<Option<Column>>,
) -> Result<Vec<u8>, CodecError> {
    let arrow = Arc::new(columns::arrow_schema(schema)?);
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(fields.len());
    for ((field, slot), arrow_field) in fields.iter().zip(slots).zip(arrow.fields()) {
        let dt = arrow_field.data_type();
        let Some(column) = slot else {
            arrays.push(new_null_array(dt, rows));
            continue;
        };
        let present = column.present;
        let array: ArrayRef = match (column.values, &field.kind) {
            (ColumnValues::Strings { text, ends }, _) => {
                let mut offsets = Vec::with_capacity(ends.len() + 1);
                offsets.push(0i32);
                // Checked in line_up: ordered, within the text, under 2 GiB.
                offsets.extend(ends.iter().map(|&e| e as i32));
                let offsets = arrow_buffer::OffsetBuffer::new(offsets.into());
                let array = StringArray::try_new(
                    offsets,
                    arrow_buffer::Buffer::from_vec(text.into_bytes()),
                    nulls(present),
                )
                .map_err(|e| CodecError::Record(format!("column {}: {e}", column.name)))?;
                Arc::new(array)
            }
            (ColumnValues::Longs(v), Kind::Int) => {
                primitive::<Int32Type>(v.into_iter().map(|x| x as i32).collect(), present, dt)
            }
            (ColumnValues::Longs(v), Kind::Date) => {
                primitive::<Date32Type>(v.into_iter().map(|x| x as i32).collect(), present, dt)
            }
            (ColumnValues::Longs(v), Kind::TimestampMillis) => {
                primitive::<TimestampMillisecondType>(v, present, dt)
            }
            (ColumnValues::Longs(v), Kind::TimestampMicros) => {
                primitive::<TimestampMicrosecondType>(v, present, dt)
            }
            (ColumnValues::Longs(v), _) => primitive::<Int64Type>(v, present, dt),
            (ColumnValues::Doubles(v), Kind::Float) => {
                primitive::<Float32Type>(v.into_iter().map(|x| x as f32).collect(), present, dt)
            }
            (ColumnValues::Doubles(v), _) => primitive::<Float64Type>(v, present, dt),
            (ColumnValues::Booleans(v), _) => Arc::new(BooleanArray::new(
                arrow_buffer::BooleanBuffer::from(v),
                nulls(present),
            )),
        };
        arrays.push(array);
    }
    let encode = |e: &dyn std::fmt::Display| CodecError::Encode(e.to_string());
    let batch = RecordBatch::try_new(arrow.clone(), arrays).map_err(|e| encode(&e))?;
    let mut writer = ArrowWriter::try_new(Vec::new(), arrow, Some(parquet_properties()))
        .map_err(|e| encode(&e))?;
    writer.write(&batch).map_err(|e| encode(&e))?;
    writer.into_inner().map_err(|e| encode(&e))
}

/// Overwrites `slot` (the field's value in the reused record) with row
/// `row`'s value of a column, reusing a string's buffer; `start` is where
/// the row's text starts in a text column.
fn set(slot: &mut Avro, kind: &Kind, column: &Column, row: usize, start: &mut usize) {
    match (&column.values, kind) {
        (ColumnValues::Strings { text, ends }, kind) => {
            let end = ends[row] as usize;
            let s = &text[*start..end];
            *start = end;
            match (slot, kind) {
                (Avro::Enum(i, sym), Kind::Enum(symbols)) => {
                    // Checked in line_up: a symbol of the enum.
                    *i = symbols.iter().position(|x| x == s).unwrap_or(0) as u32;
                    sym.clear();
                    sym.push_str(s);
                }
                (Avro::String(buf), Kind::String) => {
                    buf.clear();
                    buf.push_str(s);
                }
                (other, Kind::Enum(symbols)) => {
                    let at = symbols.iter().position(|x| x == s).unwrap_or(0);
                    *other = Avro::Enum(at as u32, s.to_string());
                }
                (other, _) => *other = Avro::String(s.to_string()),
            }
        }
        (ColumnValues::Longs(v), Kind::Int) => *slot = Avro::Int(v[row] as i32),
        (ColumnValues::Longs(v), Kind::Date) => *slot = Avro::Date(v[row] as i32),
        (ColumnValues::Longs(v), Kind::TimestampMillis) => *slot = Avro::TimestampMillis(v[row]),
        (ColumnValues::Longs(v), Kind::TimestampMicros) => *slot = Avro::TimestampMicros(v[row]),
        (ColumnValues::Longs(v), _) => *slot = Avro::Long(v[row]),
        (ColumnValues::Doubles(v), Kind::Float) => *slot = Avro::Float(v[row] as f32),
        (ColumnValues::Doubles(v), _) => *slot = Avro::Double(v[row]),
        (ColumnValues::Booleans(v), _) => *slot = Avro::Boolean(v[row]),
    }
}

fn avro(
    parsed: &AvroSchema,
    fields: &[FlatField],
    rows: usize,
    slots: &[Option<Column>],
) -> Result<Vec<u8>, CodecError> {
    let encode = |e: &dyn std::fmt::Display| CodecError::Encode(e.to_string());
    let mut writer = apache_avro::Writer::with_codec(parsed, Vec::new(), avro_codec())
        .map_err(|e| encode(&e))?;
    // The one record value, its fields overwritten for each row (a field
    // without a column stays null).
    let mut value = Avro::Record(
        fields
            .iter()
            .map(|f| {
                let value = match f.union {
                    Some((null, _)) => Avro::Union(null, Box::new(Avro::Null)),
                    None => Avro::Null,
                };
                (f.name.clone(), value)
            })
            .collect(),
    );
    // Where each text column's next row starts.
    let mut starts = vec![0usize; fields.len()];
    for row in 0..rows {
        if let Avro::Record(record) = &mut value {
            for (i, ((field, slot), (_, value))) in
                fields.iter().zip(slots).zip(record.iter_mut()).enumerate()
            {
                let Some(column) = slot else {
                    continue;
                };
                let present = column.present.get(row).copied().unwrap_or(true);
                match (field.union, value) {
                    (Some((_, some)), Avro::Union(branch, inner)) if present => {
                        *branch = some;
                        set(inner, &field.kind, column, row, &mut starts[i]);
                    }
                    (Some((null, _)), Avro::Union(branch, inner)) => {
                        *branch = null;
                        **inner = Avro::Null;
                        // Step past the row's (ignored) text.
                        if let ColumnValues::Strings { ends, .. } = &column.values {
                            starts[i] = ends[row] as usize;
                        }
                    }
                    (_, value) => set(value, &field.kind, column, row, &mut starts[i]),
                }
            }
        }
        writer
            .unvalidated_append_value_ref(&value)
            .map_err(|e| CodecError::Record(format!("row {row}: {e}")))?;
    }
    writer.into_inner().map_err(|e| encode(&e))
}
