//! `codec`: Avro/Parquet containers encoded by the host.

use serde_json::json;
use usher_registry::Capability;
use usher_world::codec;

use crate::backend::{Column, ColumnValues, Columns, Format};
use crate::call::{check_batch, parse_json, Call, HostResult, Summary};
use crate::limits::MAX_HASH_VALUES;
use crate::{CapError, CapabilityCtx};

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

    async fn salted_sha256_hex(
        &mut self,
        salt: String,
        values: codec::TextColumn,
    ) -> HostResult<String> {
        let caller = &self.caller;
        let count = values.ends.len();
        let work = async { salted_sha256_hex(&salt, &values.text, &values.ends) };
        let call = Call::new(Capability::Codec, "salted-sha256-hex", "");
        // Recorded: how many values, never the values (PII) or the salt.
        let request = || json!({"values": count});
        let size = Summary(|hex: &String| json!(hex.len() / 64));
        caller.call(call, request, size, work).await
    }
}

/// The hex SHA-256 of `salt` followed by each value of a text column
/// (`text`, each value ending at its `ends` entry), 64 lowercase digits a
/// value. `sha2` uses the CPU's SHA extensions where there are some.
pub fn salted_sha256_hex(salt: &str, text: &str, ends: &[u32]) -> Result<String, CapError> {
    use sha2::{Digest, Sha256};
    if ends.len() > MAX_HASH_VALUES {
        return Err(CapError::Invalid(format!(
            "a call hashes at most {MAX_HASH_VALUES} values, got {}",
            ends.len()
        )));
    }
    let salted = Sha256::new_with_prefix(salt.as_bytes());
    let mut out = vec![0u8; ends.len() * 64];
    let mut start = 0usize;
    for (i, (&end, hex)) in ends.iter().zip(out.chunks_exact_mut(64)).enumerate() {
        let end = end as usize;
        let Some(value) = text.as_bytes().get(start..end) else {
            return Err(CapError::Invalid(format!(
                "value {i}: end {end} is before its start ({start}) or past the text ({} bytes)",
                text.len()
            )));
        };
        let digest = salted.clone().chain_update(value).finalize();
        hex::encode_to_slice(digest, hex)
            .map_err(|e| CapError::Fault(format!("hex of a digest: {e}")))?;
        start = end;
    }
    String::from_utf8(out).map_err(|e| CapError::Fault(format!("hex digits: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    #[test]
    fn each_value_is_hashed_after_the_salt() {
        // A row's value ends at its end: "a", "" and "bcé" (a 2-byte char).
        let hex = salted_sha256_hex("s", "abcé", &[1, 1, 5]).expect("hashes");
        let one = |v: &str| hex::encode(sha2::Sha256::digest(format!("s{v}").as_bytes()));
        assert_eq!(hex, [one("a"), one(""), one("bcé")].concat());
        // Python's hashlib.sha256(b"sa").hexdigest().
        assert_eq!(
            &hex[..64],
            "4cf6829aa93728e8f3c97df913fb1bfa95fe5810e2933a05943f8312a98d9cf2"
        );
        assert_eq!(salted_sha256_hex("", "", &[]).expect("none"), "");
    }

    #[test]
    fn ends_out_of_order_past_the_text_or_too_many_values_are_invalid() {
        let invalid = |r: Result<String, CapError>| match r {
            Err(CapError::Invalid(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(invalid(salted_sha256_hex("s", "abc", &[2, 1])).contains("value 1"));
        assert!(invalid(salted_sha256_hex("s", "abc", &[4])).contains("past the text"));
        let ends = vec![0; MAX_HASH_VALUES + 1];
        assert!(invalid(salted_sha256_hex("s", "", &ends)).contains("at most"));
        assert!(salted_sha256_hex("s", "", &ends[1..]).is_ok());
    }
}
