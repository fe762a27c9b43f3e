//! JSON records as `apache-avro` values, guided by the parsed schema (each
//! union resolved to its branch, logical types to their values), so the
//! writer can append them without validating each record again.

use std::collections::HashMap;

use apache_avro::schema::{Name, NamespaceRef, Schema};
use apache_avro::types::Value as Avro;
use serde_json::Value;

use crate::CodecError;

/// Named types of a schema, for `Ref`s.
pub(crate) type Names<'a> = HashMap<Name, &'a Schema>;

fn bad(path: &str, want: &str, got: &Value) -> CodecError {
    let mut text = got.to_string();
    if text.len() > 80 {
        text.truncate(80);
        text.push('…');
    }
    CodecError::Record(format!("{path}: expected {want}, got {text}"))
}

/// The Avro value of `v` under `schema`.
pub(crate) fn to_avro(
    v: &Value,
    schema: &Schema,
    names: &Names<'_>,
    ns: NamespaceRef<'_>,
    path: &str,
) -> Result<Avro, CodecError> {
    Ok(match schema {
        Schema::Null => match v {
            Value::Null => Avro::Null,
            _ => return Err(bad(path, "null", v)),
        },
        Schema::Boolean => Avro::Boolean(v.as_bool().ok_or_else(|| bad(path, "a boolean", v))?),
        Schema::Int => Avro::Int(int(v, path)?),
        Schema::Date => Avro::Date(int(v, path)?),
        Schema::Long => Avro::Long(long(v, path)?),
        Schema::TimestampMillis => Avro::TimestampMillis(long(v, path)?),
        Schema::TimestampMicros => Avro::TimestampMicros(long(v, path)?),
        Schema::Float => Avro::Float(v.as_f64().ok_or_else(|| bad(path, "a number", v))? as f32),
        Schema::Double => Avro::Double(v.as_f64().ok_or_else(|| bad(path, "a number", v))?),
        Schema::String => Avro::String(
            v.as_str()
                .ok_or_else(|| bad(path, "a string", v))?
                .to_string(),
        ),
        Schema::Bytes => Avro::Bytes(
            v.as_str()
                .ok_or_else(|| bad(path, "a string", v))?
                .as_bytes()
                .to_vec(),
        ),
        Schema::Enum(e) => {
            let s = v.as_str().ok_or_else(|| bad(path, "an enum symbol", v))?;
            let i = e
                .symbols
                .iter()
                .position(|x| x == s)
                .ok_or_else(|| bad(path, "one of the enum's symbols", v))?;
            Avro::Enum(i as u32, s.to_string())
        }
        Schema::Array(a) => {
            let items = v.as_array().ok_or_else(|| bad(path, "an array", v))?;
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(to_avro(item, &a.items, names, ns, &format!("{path}[{i}]"))?);
            }
            Avro::Array(out)
        }
        Schema::Map(m) => {
            let obj = v.as_object().ok_or_else(|| bad(path, "an object", v))?;
            let mut out = HashMap::with_capacity(obj.len());
            for (k, item) in obj {
                out.insert(
                    k.clone(),
                    to_avro(item, &m.types, names, ns, &format!("{path}.{k}"))?,
                );
            }
            Avro::Map(out)
        }
        Schema::Union(u) => {
            let variants = u.variants();
            let pick = if v.is_null() {
                variants.iter().position(|s| matches!(s, Schema::Null))
            } else {
                variants.iter().position(|s| !matches!(s, Schema::Null))
            };
            let i = pick.ok_or_else(|| bad(path, "a value of the union", v))?;
            Avro::Union(
                i as u32,
                Box::new(to_avro(v, &variants[i], names, ns, path)?),
            )
        }
        Schema::Record(r) => {
            let obj = v.as_object().ok_or_else(|| bad(path, "an object", v))?;
            let mut out = Vec::with_capacity(r.fields.len());
            for f in &r.fields {
                let value = obj.get(&f.name).unwrap_or(&Value::Null);
                let fp = format!("{path}.{}", f.name);
                out.push((f.name.clone(), to_avro(value, &f.schema, names, ns, &fp)?));
            }
            Avro::Record(out)
        }
        Schema::Ref { name } => {
            let full = name.fully_qualified_name(ns);
            let target = names
                .get(&full)
                .ok_or_else(|| CodecError::Schema(format!("{path}: unknown type {full}")))?;
            to_avro(v, target, names, ns, path)?
        }
        other => {
            return Err(CodecError::Schema(format!(
                "{path}: unsupported Avro type {other:?}"
            )))
        }
    })
}

fn long(v: &Value, path: &str) -> Result<i64, CodecError> {
    v.as_i64().ok_or_else(|| bad(path, "an integer", v))
}

fn int(v: &Value, path: &str) -> Result<i32, CodecError> {
    let n = long(v, path)?;
    i32::try_from(n).map_err(|_| bad(path, "a 32-bit integer", v))
}
