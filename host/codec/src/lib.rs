//! # usher-codec
//!
//! The host's `codec` capability ([`HostCodec`], a
//! [`CodecBackend`](usher_capabilities::CodecBackend)): JSON records and an
//! Avro schema in, one container out.
//!
//! * **Parquet**: the Avro schema becomes an Arrow schema once per call
//!   ([`columns::arrow_schema`]); the records are decoded by
//!   `arrow-json` into record batches of [`BATCH_ROWS`] rows, each written
//!   to `parquet`'s `ArrowWriter` (snappy) and dropped before the next is
//!   built, so a call holds its JSON records plus one batch, never the
//!   records twice.
//! * **Avro object container files**: the schema is parsed once per call,
//!   each record turned into an Avro value guided by it (unions resolved,
//!   logical types) and appended to `apache-avro`'s writer (snappy blocks).
//!   `apache-avro` 0.22 was measured against `arrow-avro` 60.1 on the same
//!   records (`cargo bench -p usher-codec --features compare-arrow-avro --bench codec`;
//!   see BENCHMARKS.md)
//!   and kept: it was the faster.
//!
//! * **From columns** ([`from_columns`], `codec.encode-columns`): the
//!   same containers from records given column by column, no JSON at all.
//!
//! Errors: a schema the codec cannot write is [`CodecError::Schema`], a
//! record that does not follow it [`CodecError::Record`]; both reach the
//! guest as `invalid`.
//!
//! [`archive`] holds the archive's schema sources (`schemas/archive/*.json`)
//! and everything derived from them (the Avro schema, the Parquet schema and
//! the Athena DDL); [`merge`] merges containers and [`compact`] compacts a
//! closed day of the archive.

#![deny(missing_docs)]

pub mod archive;
mod avro_value;
pub mod columns;
pub mod compact;
pub mod from_columns;
pub mod merge;

use std::sync::Arc;

use apache_avro::schema::{ResolvedSchema, Schema as AvroSchema};
use arrow_array::RecordBatch;
use arrow_json::ReaderBuilder;
use async_trait::async_trait;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::Value;
use usher_capabilities::{CapError, CodecBackend, Columns, Format};

pub use from_columns::encode_columns;

/// Rows per Arrow record batch (and so at most per Parquet row group page
/// flush) while encoding.
pub const BATCH_ROWS: usize = 8192;

/// Why a container could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The schema is not one the codec can write.
    #[error("schema: {0}")]
    Schema(String),
    /// A record does not follow the schema.
    #[error("record: {0}")]
    Record(String),
    /// The encoder failed.
    #[error("encoding: {0}")]
    Encode(String),
}

impl From<CodecError> for CapError {
    fn from(e: CodecError) -> CapError {
        match e {
            CodecError::Schema(_) | CodecError::Record(_) => CapError::Invalid(e.to_string()),
            CodecError::Encode(_) => CapError::Fault(e.to_string()),
        }
    }
}

/// The codec backend of `usher up`, `usher lambda` and the test host.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostCodec;

#[async_trait]
impl CodecBackend for HostCodec {
    async fn encode(
        &self,
        format: Format,
        schema: &Value,
        records: Vec<String>,
    ) -> Result<Vec<u8>, CapError> {
        // CPU work: off the async workers.
        let schema = schema.clone();
        let work = move || match format {
            Format::Parquet => encode_parquet_json(&schema, &records),
            Format::Avro => encode_avro(&schema, parse_records(&records)?),
        };
        off_the_runtime(work).await
    }

    async fn encode_columns(
        &self,
        format: Format,
        schema: &Value,
        columns: Columns,
    ) -> Result<Vec<u8>, CapError> {
        let schema = schema.clone();
        let work = move || encode_columns(format, &schema, columns);
        off_the_runtime(work).await
    }
}

/// Runs codec work off the async workers (CPU-bound), when there is a
/// runtime; its error as the guest sees it.
async fn off_the_runtime<F>(f: F) -> Result<Vec<u8>, CapError>
where
    F: FnOnce() -> Result<Vec<u8>, CodecError> + Send + 'static,
{
    let result = match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle
            .spawn_blocking(f)
            .await
            .map_err(|e| CapError::Fault(format!("codec task: {e}")))?,
        Err(_) => f(),
    };
    Ok(result?)
}

/// The Parquet writer's settings: snappy pages.
pub fn parquet_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(1 << 20))
        .build()
}

/// Records as Arrow record batches of at most [`BATCH_ROWS`] rows, each
/// handed to `sink` as soon as it is decoded; the records are consumed as
/// they go.
pub fn json_batches(
    schema: &Arc<arrow_schema::Schema>,
    records: Vec<Value>,
    mut sink: impl FnMut(RecordBatch) -> Result<(), CodecError>,
) -> Result<(), CodecError> {
    let mut decoder = ReaderBuilder::new(schema.clone())
        .with_batch_size(BATCH_ROWS)
        .with_strict_mode(false)
        .build_decoder()
        .map_err(|e| CodecError::Schema(e.to_string()))?;
    let mut records = records.into_iter();
    let mut chunk = Vec::with_capacity(BATCH_ROWS.min(records.len()));
    let mut first_row = 0usize;
    loop {
        chunk.clear();
        chunk.extend(records.by_ref().take(BATCH_ROWS));
        if chunk.is_empty() {
            return Ok(());
        }
        decoder.serialize(&chunk).map_err(|e| {
            CodecError::Record(format!(
                "records {first_row}..{}: {e}",
                first_row + chunk.len()
            ))
        })?;
        let batch = decoder
            .flush()
            .map_err(|e| CodecError::Record(format!("records from {first_row}: {e}")))?;
        first_row += chunk.len();
        if let Some(batch) = batch {
            sink(batch)?;
        }
    }
}

/// The Arrow schema of an Avro schema, shared.
fn arrow_of(schema: &Value) -> Result<Arc<arrow_schema::Schema>, CodecError> {
    Ok(Arc::new(columns::arrow_schema(schema)?))
}

/// One Parquet file (snappy) of JSON records following an Avro schema.
pub fn encode_parquet(schema: &Value, records: Vec<Value>) -> Result<Vec<u8>, CodecError> {
    let arrow = arrow_of(schema)?;
    let mut writer = ArrowWriter::try_new(Vec::new(), arrow.clone(), Some(parquet_properties()))
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    json_batches(&arrow, records, |batch| {
        writer
            .write(&batch)
            .map_err(|e| CodecError::Encode(e.to_string()))
    })?;
    writer
        .into_inner()
        .map_err(|e| CodecError::Encode(e.to_string()))
}

/// Records given as JSON text, parsed; one that is not a JSON object is
/// refused naming its index.
pub fn parse_records(records: &[String]) -> Result<Vec<Value>, CodecError> {
    records
        .iter()
        .enumerate()
        .map(|(i, text)| match serde_json::from_str::<Value>(text) {
            Ok(v) if v.is_object() => Ok(v),
            Ok(_) => Err(CodecError::Record(format!("record {i}: not a JSON object"))),
            Err(e) => Err(CodecError::Record(format!("record {i}: not JSON: {e}"))),
        })
        .collect()
}

/// One Parquet file (snappy) of records given as JSON text, one object
/// each: arrow-json's tape decoder reads the text itself, no `serde_json`
/// values are built. Anything it cannot take (a record that is not exactly
/// one object, a value of the wrong type) sends the whole group down the
/// values path ([`encode_parquet`]), whose errors name the records.
pub fn encode_parquet_json(schema: &Value, records: &[String]) -> Result<Vec<u8>, CodecError> {
    match parquet_from_text(schema, records) {
        Ok(bytes) => Ok(bytes),
        Err(_) => encode_parquet(schema, parse_records(records)?),
    }
}

fn parquet_from_text(schema: &Value, records: &[String]) -> Result<Vec<u8>, CodecError> {
    let fault = |e: &dyn std::fmt::Display| CodecError::Record(e.to_string());
    let arrow = arrow_of(schema)?;
    let mut decoder = ReaderBuilder::new(arrow.clone())
        .with_batch_size(BATCH_ROWS)
        .with_strict_mode(false)
        .build_decoder()
        .map_err(|e| CodecError::Schema(e.to_string()))?;
    let mut writer = ArrowWriter::try_new(Vec::new(), arrow, Some(parquet_properties()))
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    let mut flush = |decoder: &mut arrow_json::reader::Decoder| -> Result<(), CodecError> {
        if let Some(batch) = decoder.flush().map_err(|e| fault(&e))? {
            writer
                .write(&batch)
                .map_err(|e| CodecError::Encode(e.to_string()))?;
        }
        Ok(())
    };
    for text in records {
        if decoder.len() >= BATCH_ROWS {
            flush(&mut decoder)?;
        }
        let before = decoder.len();
        let bytes = text.as_bytes();
        let read = decoder.decode(bytes).map_err(|e| fault(&e))?;
        // Exactly one whole object per record.
        if read != bytes.len() || decoder.has_partial_record() || decoder.len() != before + 1 {
            return Err(fault(&"not exactly one JSON object"));
        }
    }
    flush(&mut decoder)?;
    writer
        .into_inner()
        .map_err(|e| CodecError::Encode(e.to_string()))
}

/// The Avro codec blocks are compressed with.
pub fn avro_codec() -> apache_avro::Codec {
    apache_avro::Codec::Snappy
}

/// Parses an Avro schema (JSON).
pub fn parse_avro_schema(schema: &Value) -> Result<AvroSchema, CodecError> {
    AvroSchema::parse(schema).map_err(|e| CodecError::Schema(e.to_string()))
}

/// One Avro object container file (snappy blocks) of JSON records, with
/// `apache-avro` (the schema parsed once).
pub fn encode_avro(schema: &Value, records: Vec<Value>) -> Result<Vec<u8>, CodecError> {
    let parsed = parse_avro_schema(schema)?;
    let resolved =
        ResolvedSchema::try_from(&parsed).map_err(|e| CodecError::Schema(e.to_string()))?;
    let names = resolved
        .get_names()
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let ns = parsed.namespace();
    let mut writer = apache_avro::Writer::with_codec(&parsed, Vec::new(), avro_codec())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    for (i, record) in records.into_iter().enumerate() {
        let value = avro_value::to_avro(&record, &parsed, &names, ns, &format!("record {i}"))?;
        writer
            .unvalidated_append_value_ref(&value)
            .map_err(|e| CodecError::Encode(e.to_string()))?;
    }
    writer
        .into_inner()
        .map_err(|e| CodecError::Encode(e.to_string()))
}

/// One Avro object container file (snappy blocks) of JSON records through
/// `arrow-avro` (JSON → Arrow batches → Avro), for the comparison bench.
#[cfg(feature = "compare-arrow-avro")]
pub fn encode_avro_arrow(schema: &Value, records: Vec<Value>) -> Result<Vec<u8>, CodecError> {
    let arrow = arrow_of(schema)?;
    let mut meta = arrow.metadata().clone();
    meta.insert(
        arrow_avro::schema::SCHEMA_METADATA_KEY.to_string(),
        schema.to_string(),
    );
    let with_schema = arrow_schema::Schema::new_with_metadata(arrow.fields().clone(), meta);
    let mut writer = arrow_avro::writer::WriterBuilder::new(with_schema)
        .with_compression(Some(arrow_avro::compression::CompressionCodec::Snappy))
        .build::<_, arrow_avro::writer::format::AvroOcfFormat>(Vec::new())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    json_batches(&arrow, records, |batch| {
        writer
            .write(&batch)
            .map_err(|e| CodecError::Encode(e.to_string()))
    })?;
    writer
        .finish()
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(writer.into_inner())
}
