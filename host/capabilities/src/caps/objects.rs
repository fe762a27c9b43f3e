//! `objects`: S3-shaped objects, and the streaming `writer` resource whose
//! open writers live in the context's [`wasmtime::component::ResourceTable`].

use serde_json::{json, Value};
use usher_registry::Capability;
use usher_world::objects;
use wasmtime::component::Resource;

use crate::backend::{ObjectInfo, ObjectWriter};
use crate::call::{Call, HostResult, Plain, Summary};
use crate::limits::MAX_PAGE;
use crate::CapabilityCtx;

/// An open writer as the resource table holds it.
pub(crate) struct OpenWriter(Box<dyn ObjectWriter>);

/// The table entry of a guest's writer handle (the handle's rep is the
/// entry's index in the table).
fn entry(handle: &Resource<objects::Writer>) -> Resource<OpenWriter> {
    Resource::new_own(handle.rep())
}

fn unknown_writer(_: wasmtime::component::ResourceTableError) -> wasmtime::Error {
    wasmtime::format_err!("unknown object writer handle")
}

/// Recorded for an opened writer: nothing (the writer is no value).
fn nothing<R>(_: &R) -> Value {
    Value::Null
}

fn info(i: ObjectInfo) -> objects::ObjectInfo {
    objects::ObjectInfo {
        key: i.key,
        size: i.size,
        etag: i.etag,
    }
}

impl objects::Host for CapabilityCtx {
    async fn put(
        &mut self,
        bucket: String,
        key: String,
        body: Vec<u8>,
        content_type: Option<String>,
    ) -> HostResult<objects::ObjectInfo> {
        let caller = &self.caller;
        let size = body.len();
        let work = caller
            .backends
            .objects
            .put(&bucket, &key, body, content_type.as_deref());
        let call = Call::new(Capability::Objects, "put", &bucket);
        let request = || json!({"key": key, "size": size});
        Ok(caller.call(call, request, Plain, work).await?.map(info))
    }

    async fn get(&mut self, bucket: String, key: String) -> HostResult<Option<Vec<u8>>> {
        let caller = &self.caller;
        let work = caller.backends.objects.get(&bucket, &key);
        let call = Call::new(Capability::Objects, "get", &bucket);
        // Recorded: the size of the object, not its bytes.
        let sizes = Summary(|o: &Option<Vec<u8>>| json!(o.as_ref().map(Vec::len)));
        caller.call(call, || json!({"key": key}), sizes, work).await
    }

    async fn list(
        &mut self,
        bucket: String,
        prefix: String,
        limit: Option<u32>,
    ) -> HostResult<Vec<objects::ObjectInfo>> {
        let caller = &self.caller;
        let limit = limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
        let work = caller.backends.objects.list(&bucket, &prefix, limit);
        let call = Call::new(Capability::Objects, "list", &bucket);
        Ok(caller
            .call(call, || json!({"prefix": prefix}), Plain, work)
            .await?
            .map(|list| list.into_iter().map(info).collect()))
    }
}

impl objects::HostWriter for CapabilityCtx {
    async fn open(
        &mut self,
        bucket: String,
        key: String,
        content_type: Option<String>,
    ) -> HostResult<Resource<objects::Writer>> {
        let caller = &self.caller;
        let work = async {
            let writer = caller
                .backends
                .objects
                .open_writer(&bucket, &key, content_type.as_deref())
                .await?;
            Ok(OpenWriter(writer))
        };
        let call = Call::new(Capability::Objects, "writer.open", &bucket);
        let opened = Summary(nothing::<OpenWriter>);
        match caller
            .call(call, || json!({"key": key}), opened, work)
            .await?
        {
            Ok(writer) => {
                let rep = self.writers.push(writer)?.rep();
                Ok(Ok(Resource::new_own(rep)))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    async fn write(&mut self, this: Resource<objects::Writer>, chunk: Vec<u8>) -> HostResult<()> {
        let writer = self
            .writers
            .get_mut(&entry(&this))
            .map_err(unknown_writer)?;
        match writer.0.write(&chunk).await {
            Ok(()) => Ok(Ok(())),
            Err(e) => Ok(Err(e.into_guest()?)),
        }
    }

    async fn finish(&mut self, this: Resource<objects::Writer>) -> HostResult<objects::ObjectInfo> {
        let writer = self.writers.delete(entry(&this)).map_err(unknown_writer)?;
        let caller = &self.caller;
        // The bucket was checked when the writer was opened.
        let call = Call::new(Capability::Objects, "writer.finish", "").unchecked();
        Ok(caller
            .call(call, || Value::Null, Plain, writer.0.finish())
            .await?
            .map(info))
    }

    async fn drop(&mut self, this: Resource<objects::Writer>) -> wasmtime::Result<()> {
        if let Ok(writer) = self.writers.delete(entry(&this)) {
            writer.0.abort().await;
        }
        Ok(())
    }
}
