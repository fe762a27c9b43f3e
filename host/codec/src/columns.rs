//! An Avro schema (JSON) as an Arrow schema: the Parquet columns the codec
//! writes, and the JSON decoder's target.
//!
//! Supported: a top-level `record` whose fields are `null`, `boolean`,
//! `int`, `long`, `float`, `double`, `string`, `bytes`, `enum` (as a
//! string), `array`, `map` (string keys), nested `record`s, unions of
//! `null` and one other type (a nullable column), and the logical types
//! `timestamp-millis`, `timestamp-micros` and `date`. Anything else is an
//! [`CodecError::Schema`] naming the field.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use serde_json::Value;

use crate::CodecError;

/// The Arrow schema of an Avro record schema.
pub fn arrow_schema(avro: &Value) -> Result<Schema, CodecError> {
    match record_fields(avro, "the schema")? {
        Some(fields) => Ok(Schema::new(fields)),
        None => Err(CodecError::Schema(
            "the schema must be an Avro record (type \"record\" with fields)".into(),
        )),
    }
}

fn record_fields(avro: &Value, path: &str) -> Result<Option<Fields>, CodecError> {
    let Some(obj) = avro.as_object() else {
        return Ok(None);
    };
    if obj.get("type").and_then(Value::as_str) != Some("record") {
        return Ok(None);
    }
    let fields = obj
        .get("fields")
        .and_then(Value::as_array)
        .ok_or_else(|| CodecError::Schema(format!("{path}: a record needs a fields array")))?;
    let mut out = Vec::with_capacity(fields.len());
    for f in fields {
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| CodecError::Schema(format!("{path}: a field without a name")))?;
        let ty = f
            .get("type")
            .ok_or_else(|| CodecError::Schema(format!("{path}.{name}: no type")))?;
        out.push(field(name, ty, &format!("{path}.{name}"))?);
    }
    Ok(Some(Fields::from(out)))
}

/// One Arrow field for an Avro type.
fn field(name: &str, ty: &Value, path: &str) -> Result<Field, CodecError> {
    if let Some(branches) = ty.as_array() {
        let non_null: Vec<&Value> = branches
            .iter()
            .filter(|b| b.as_str() != Some("null"))
            .collect();
        let has_null = non_null.len() < branches.len();
        return match non_null.as_slice() {
            [] => Ok(Field::new(name, DataType::Null, true)),
            [one] => Ok(Field::new(name, data_type(one, path)?, has_null)),
            _ => Err(CodecError::Schema(format!(
                "{path}: only unions of null and one type are supported"
            ))),
        };
    }
    let dt = data_type(ty, path)?;
    let nullable = dt == DataType::Null;
    Ok(Field::new(name, dt, nullable))
}

fn data_type(ty: &Value, path: &str) -> Result<DataType, CodecError> {
    let unsupported = |what: &str| CodecError::Schema(format!("{path}: unsupported type {what}"));
    match ty {
        Value::String(s) => primitive(s).ok_or_else(|| unsupported(s)),
        Value::Object(obj) => {
            let t = obj.get("type").and_then(Value::as_str).unwrap_or("");
            match (t, obj.get("logicalType").and_then(Value::as_str)) {
                ("long", Some("timestamp-millis")) => Ok(DataType::Timestamp(
                    TimeUnit::Millisecond,
                    Some("+00:00".into()),
                )),
                ("long", Some("timestamp-micros")) => Ok(DataType::Timestamp(
                    TimeUnit::Microsecond,
                    Some("+00:00".into()),
                )),
                ("int", Some("date")) => Ok(DataType::Date32),
                ("enum", _) => Ok(DataType::Utf8),
                ("array", _) => {
                    let items = obj.get("items").ok_or_else(|| {
                        CodecError::Schema(format!("{path}: array without items"))
                    })?;
                    Ok(DataType::List(Arc::new(field(
                        "item",
                        items,
                        &format!("{path}[]"),
                    )?)))
                }
                ("map", _) => {
                    let values = obj
                        .get("values")
                        .ok_or_else(|| CodecError::Schema(format!("{path}: map without values")))?;
                    let entries = Field::new(
                        "entries",
                        DataType::Struct(Fields::from(vec![
                            Field::new("keys", DataType::Utf8, false),
                            field("values", values, &format!("{path}{{}}"))?,
                        ])),
                        false,
                    );
                    Ok(DataType::Map(Arc::new(entries), false))
                }
                ("record", _) => Ok(DataType::Struct(
                    record_fields(ty, path)?.ok_or_else(|| unsupported("record"))?,
                )),
                (other, _) => primitive(other).ok_or_else(|| unsupported(other)),
            }
        }
        other => Err(unsupported(&other.to_string())),
    }
}

fn primitive(name: &str) -> Option<DataType> {
    Some(match name {
        "null" => DataType::Null,
        "boolean" => DataType::Boolean,
        "int" => DataType::Int32,
        "long" => DataType::Int64,
        "float" => DataType::Float32,
        "double" => DataType::Float64,
        "string" => DataType::Utf8,
        "bytes" => DataType::Binary,
        _ => return None,
    })
}
