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
    use super::Format;
    use crate::bindings::caps::usher::platform::codec as wit;
    use crate::Result;

    pub(super) fn encode(format: Format, schema: &str, records: &[String]) -> Result<Vec<u8>> {
        let format = match format {
            Format::Avro => wit::Format::Avro,
            Format::Parquet => wit::Format::Parquet,
        };
        Ok(wit::encode(format, schema, records)?)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod sys {
    use super::Format;
    use crate::{Error, Result};

    pub(super) fn encode(_format: Format, _schema: &str, _records: &[String]) -> Result<Vec<u8>> {
        Err(Error::native("codec::encode"))
    }
}

/// [`encode`] for records that are JSON text already (one object each), as
/// a worker that writes its records' text itself has them: nothing is
/// serialized again.
pub fn encode_json(format: Format, schema: &Value, records: &[String]) -> Result<Vec<u8>> {
    let schema = json::to_string(schema)?;
    sys::encode(format, &schema, records)
}
