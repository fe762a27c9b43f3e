//! `codec`: Avro/Parquet containers encoded by the host.

use serde_json::json;
use usher_registry::Capability;
use usher_world::codec;

use crate::backend::Format;
use crate::call::{check_batch, parse_json, Call, HostResult, Summary};
use crate::CapabilityCtx;

impl codec::Host for CapabilityCtx {
    async fn encode(
        &mut self,
        format: codec::Format,
        schema: String,
        records: Vec<String>,
    ) -> HostResult<Vec<u8>> {
        let caller = &self.caller;
        let count = records.len();
        let format = match format {
            codec::Format::Avro => Format::Avro,
            codec::Format::Parquet => Format::Parquet,
        };
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
}
