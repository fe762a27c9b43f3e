//! `codec`: Avro/Parquet containers encoded by the host.

use serde_json::json;
use usher_registry::Capability;
use usher_world::codec;

use crate::backend::{Column, ColumnValues, Columns, Format};
use crate::call::{check_batch, parse_json, Call, HostResult, Summary};
use crate::CapabilityCtx;

fn format_of(format: codec::Format) -> Format {
    match format {
        codec::Format::Avro => Format::Avro,
        codec::Format::Parquet => Format::Parquet,
    }
}

/// The WIT's columns as the backend takes them (moved, not copied).
fn columns_of(rows: u32, columns: Vec<codec::Column>) -> Columns {
    Columns {
        rows: rows as usize,
        columns: columns
            .into_iter()
            .map(|c| Column {
                name: c.name,
                present: c.present,
                values: match c.values {
                    codec::ColumnValues::Strings(t) => ColumnValues::Strings {
                        text: t.text,
                        ends: t.ends,
                    },
                    codec::ColumnValues::Longs(v) => ColumnValues::Longs(v),
                    codec::ColumnValues::Doubles(v) => ColumnValues::Doubles(v),
                    codec::ColumnValues::Booleans(v) => ColumnValues::Booleans(v),
                },
            })
            .collect(),
    }
}

impl codec::Host for CapabilityCtx {
    async fn encode(
        &mut self,
        format: codec::Format,
        schema: String,
        records: Vec<String>,
    ) -> HostResult<Vec<u8>> {
        let caller = &self.caller;
        let count = records.len();
        let format = format_of(format);
        let work = async {
            check_batch(records.len())?;
            let schema = parse_json(&schema, "schema")?;
            // The records stay JSON text: the backend reads them (and
            // refuses one that is not an object, naming it).
            caller.backends.codec.encode(format, &schema, records).await
        };
        let call = Call::new(Capability::Codec, "encode", "");
        let request = || json!({"format": format, "records": count});
        // Recorded: the size of the container, not its bytes.
        let size = Summary(|bytes: &Vec<u8>| json!(bytes.len()));
        caller.call(call, request, size, work).await
    }

    async fn encode_columns(
        &mut self,
        format: codec::Format,
        schema: String,
        rows: u32,
        columns: Vec<codec::Column>,
    ) -> HostResult<Vec<u8>> {
        let caller = &self.caller;
        let format = format_of(format);
        let work = async {
            check_batch(rows as usize)?;
            let schema = parse_json(&schema, "schema")?;
            let columns = columns_of(rows, columns);
            caller
                .backends
                .codec
                .encode_columns(format, &schema, columns)
                .await
        };
        let call = Call::new(Capability::Codec, "encode-columns", "");
        let request = || json!({"format": format, "records": rows});
        let size = Summary(|bytes: &Vec<u8>| json!(bytes.len()));
        caller.call(call, request, size, work).await
    }
}
