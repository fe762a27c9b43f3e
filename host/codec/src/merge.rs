//! Merging containers of one record type into one (the archive's
//! compaction): records read in input order, each identity once (the first
//! seen wins), written with the first input's schema. The archive's
//! identity is the sequence number and the reference (`type:table:PK:SK`):
//! two Kinesis shards may give different changes the same sequence number.

use std::collections::HashSet;

use arrow_array::{Array, BooleanArray, StringArray};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;

use crate::{parquet_properties, CodecError, Format};

/// What a merge made.
#[derive(Debug)]
pub struct Merged {
    /// The container.
    pub bytes: Vec<u8>,
    /// Records written.
    pub records: u64,
    /// Records dropped as duplicates (an identity seen before).
    pub duplicates: u64,
}

/// Merges `inputs` (containers of `format`, one schema) into one,
/// keeping the first record of each identity: the values of the string
/// columns `keys` together (a record whose key columns are all null is
/// always kept).
pub fn merge(format: Format, inputs: &[Vec<u8>], keys: &[&str]) -> Result<Merged, CodecError> {
    match format {
        Format::Parquet => merge_parquet(inputs, keys),
        Format::Avro => merge_avro(inputs, keys),
    }
}

/// One record's identity from its key columns' values (`None`: all null).
fn identity<'a>(values: impl Iterator<Item = Option<&'a str>>) -> Option<String> {
    let mut id = String::new();
    let mut any = false;
    for (i, v) in values.enumerate() {
        if i > 0 {
            id.push('\u{1f}');
        }
        if let Some(v) = v {
            any = true;
            id.push_str(v);
        }
    }
    any.then_some(id)
}

fn merge_parquet(inputs: &[Vec<u8>], keys: &[&str]) -> Result<Merged, CodecError> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut writer: Option<(ArrowWriter<Vec<u8>>, arrow_schema::SchemaRef)> = None;
    let (mut records, mut duplicates) = (0u64, 0u64);
    for (i, input) in inputs.iter().enumerate() {
        let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(input.clone()))
            .map_err(|e| CodecError::Record(format!("input {i}: {e}")))?
            .build()
            .map_err(|e| CodecError::Record(format!("input {i}: {e}")))?;
        for batch in reader {
            let batch = batch.map_err(|e| CodecError::Record(format!("input {i}: {e}")))?;
            let columns = keys
                .iter()
                .map(|key| {
                    batch
                        .column_by_name(key)
                        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                        .ok_or_else(|| {
                            CodecError::Record(format!("input {i}: no string column {key}"))
                        })
                })
                .collect::<Result<Vec<&StringArray>, CodecError>>()?;
            let keep: BooleanArray = (0..batch.num_rows())
                .map(|r| {
                    let id = identity(columns.iter().map(|c| (!c.is_null(r)).then(|| c.value(r))));
                    Some(id.is_none_or(|id| seen.insert(id)))
                })
                .collect();
            let kept = arrow_select::filter::filter_record_batch(&batch, &keep)
                .map_err(|e| CodecError::Encode(e.to_string()))?;
            duplicates += (batch.num_rows() - kept.num_rows()) as u64;
            records += kept.num_rows() as u64;
            let (w, schema) = match &mut writer {
                Some(w) => w,
                None => writer.insert((
                    ArrowWriter::try_new(Vec::new(), batch.schema(), Some(parquet_properties()))
                        .map_err(|e| CodecError::Encode(e.to_string()))?,
                    batch.schema(),
                )),
            };
            if kept.schema() != *schema {
                return Err(CodecError::Record(format!(
                    "input {i}: its schema differs from the first input's"
                )));
            }
            w.write(&kept)
                .map_err(|e| CodecError::Encode(e.to_string()))?;
        }
    }
    let (writer, _) = writer.ok_or_else(|| CodecError::Record("nothing to merge".into()))?;
    let bytes = writer
        .into_inner()
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(Merged {
        bytes,
        records,
        duplicates,
    })
}

fn merge_avro(inputs: &[Vec<u8>], keys: &[&str]) -> Result<Merged, CodecError> {
    use apache_avro::types::Value as Avro;
    let mut seen: HashSet<String> = HashSet::new();
    let (mut records, mut duplicates) = (0u64, 0u64);
    let first = inputs
        .first()
        .ok_or_else(|| CodecError::Record("nothing to merge".into()))?;
    let schema = apache_avro::Reader::new(&first[..])
        .map_err(|e| CodecError::Record(format!("input 0: {e}")))?
        .writer_schema()
        .clone();
    let mut writer = apache_avro::Writer::with_codec(&schema, Vec::new(), crate::avro_codec())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    for (i, input) in inputs.iter().enumerate() {
        let reader = apache_avro::Reader::new(&input[..])
            .map_err(|e| CodecError::Record(format!("input {i}: {e}")))?;
        if reader.writer_schema() != &schema {
            return Err(CodecError::Record(format!(
                "input {i}: its schema differs from the first input's"
            )));
        }
        for value in reader {
            let value = value.map_err(|e| CodecError::Record(format!("input {i}: {e}")))?;
            let id = match &value {
                Avro::Record(fields) => identity(keys.iter().map(|key| {
                    fields
                        .iter()
                        .find(|(n, _)| n == key)
                        .and_then(|(_, v)| match v {
                            Avro::String(s) => Some(s.as_str()),
                            Avro::Union(_, b) => match b.as_ref() {
                                Avro::String(s) => Some(s.as_str()),
                                _ => None,
                            },
                            _ => None,
                        })
                })),
                _ => None,
            };
            if let Some(id) = id {
                if !seen.insert(id) {
                    duplicates += 1;
                    continue;
                }
            }
            writer
                .append_value_ref(&value)
                .map_err(|e| CodecError::Encode(e.to_string()))?;
            records += 1;
        }
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(Merged {
        bytes,
        records,
        duplicates,
    })
}
