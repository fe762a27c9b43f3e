//! The host side of every capability interface: grant check, argument
//! parsing, recording, backend call, and the split of backend errors into
//! guest-visible variants and traps.

use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Map, Value};
use usher_registry::Capability;
use usher_world::{
    cache, codec, config, events, log, objects, queue, services, table, topic, types, workers,
};
use wasmtime::component::Resource;

use crate::backend::{
    Condition, Delivery, Event, Format, Method, ObjectInfo, OutgoingMessage, Page, PutItem,
    ServiceRequest, ServiceResponse, UpdateItem, WriteOp,
};
use crate::{CapError, CapabilityCtx, MAX_BATCH};

/// What every host function returns: a trap, or the guest-visible result.
type HostResult<T> = wasmtime::Result<Result<T, types::Error>>;

/// The largest query page.
const MAX_PAGE: u32 = 1000;

fn parse_json(text: &str, what: &str) -> Result<Value, CapError> {
    serde_json::from_str(text)
        .map_err(|e| CapError::Invalid(format!("{what} is not valid JSON: {e}")))
}

fn parse_object(text: &str, what: &str) -> Result<Map<String, Value>, CapError> {
    match parse_json(text, what)? {
        Value::Object(map) => Ok(map),
        other => Err(CapError::Invalid(format!(
            "{what} must be a JSON object, got {}",
            crate::backend::json_kind(&other)
        ))),
    }
}

fn check_batch(len: usize) -> Result<(), CapError> {
    if len > MAX_BATCH {
        Err(CapError::Invalid(format!(
            "a call carries at most {MAX_BATCH} records, got {len}"
        )))
    } else {
        Ok(())
    }
}

fn pairs(list: Vec<types::Pair>) -> Vec<(String, String)> {
    list.into_iter().map(|p| (p.name, p.value)).collect()
}

fn to_pairs(list: Vec<(String, String)>) -> Vec<types::Pair> {
    list.into_iter()
        .map(|(name, value)| types::Pair { name, value })
        .collect()
}

fn to_string(v: &Value) -> String {
    v.to_string()
}

/// Splits per-item results: errors become guest variants, a fault traps.
fn per_item<T, U>(
    items: Vec<Result<T, CapError>>,
    map: impl Fn(T) -> U,
) -> wasmtime::Result<Vec<Result<U, types::Error>>> {
    items
        .into_iter()
        .map(|r| match r {
            Ok(v) => Ok(Ok(map(v))),
            Err(e) => e.into_guest().map(Err),
        })
        .collect()
}

impl CapabilityCtx {
    /// Records a finished call and converts its outcome for the guest.
    fn conclude<T: Serialize>(
        &self,
        capability: &'static str,
        function: &'static str,
        resource: &str,
        request: impl FnOnce() -> Value,
        outcome: Result<T, CapError>,
    ) -> wasmtime::Result<Result<T, types::Error>> {
        self.record(capability, function, resource, request, &outcome);
        if let Err(e) = &outcome {
            tracing::debug!(
                worker = %self.worker.name,
                correlation_id = %self.correlation_id,
                capability, function, resource, error = %e,
                "capability call failed"
            );
        }
        match outcome {
            Ok(v) => Ok(Ok(v)),
            Err(e) => Ok(Err(e.into_guest()?)),
        }
    }
}

impl CapabilityCtx {
    /// The messages of a send as JSON, built only when calls are recorded.
    fn recorded_messages(&self, msgs: &[OutgoingMessage]) -> Value {
        if self.recorder.is_some() {
            json!({ "messages": msgs })
        } else {
            Value::Null
        }
    }
}

impl types::Host for CapabilityCtx {}

impl log::Host for CapabilityCtx {
    async fn write(
        &mut self,
        level: log::Level,
        message: String,
        fields: Vec<types::Pair>,
    ) -> wasmtime::Result<()> {
        let fields = pairs(fields);
        let rendered = fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        let worker = &self.worker.name;
        let version = &self.worker.version;
        let cid = &self.correlation_id;
        macro_rules! emit {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    worker,
                    version,
                    correlation_id = cid,
                    fields = rendered,
                    "{message}"
                )
            };
        }
        match level {
            log::Level::Trace => emit!(tracing::Level::TRACE),
            log::Level::Debug => emit!(tracing::Level::DEBUG),
            log::Level::Info => emit!(tracing::Level::INFO),
            log::Level::Warn => emit!(tracing::Level::WARN),
            log::Level::Error => emit!(tracing::Level::ERROR),
        }
        let level_name = match level {
            log::Level::Trace => "trace",
            log::Level::Debug => "debug",
            log::Level::Info => "info",
            log::Level::Warn => "warn",
            log::Level::Error => "error",
        };
        self.record(
            "log",
            "write",
            "",
            || json!({"level": level_name, "message": message, "fields": fields}),
            &Ok::<_, CapError>(()),
        );
        Ok(())
    }

    async fn correlation_id(&mut self) -> wasmtime::Result<String> {
        Ok(self.correlation_id.clone())
    }
}

impl config::Host for CapabilityCtx {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.settings.get(&key).map(to_string))
    }

    async fn all(&mut self) -> wasmtime::Result<String> {
        Ok(Value::Object((*self.settings).clone()).to_string())
    }
}

fn condition(c: table::Condition) -> Result<Condition, CapError> {
    Ok(match c {
        table::Condition::NotExists => Condition::NotExists,
        table::Condition::Exists => Condition::Exists,
        table::Condition::AttributeEquals((name, value)) => {
            Condition::AttributeEquals(name, parse_json(&value, "condition value")?)
        }
    })
}

fn opt_condition(c: Option<table::Condition>) -> Result<Option<Condition>, CapError> {
    c.map(condition).transpose()
}

impl table::Host for CapabilityCtx {
    async fn get(&mut self, table: String, key: String) -> HostResult<Option<String>> {
        let outcome = async {
            self.check(Capability::Table, &table)?;
            let key = parse_json(&key, "key")?;
            self.backends.table.get(&table, &key).await
        }
        .await;
        Ok(self
            .conclude("table", "get", &table, || json!({"key": key}), outcome)?
            .map(|v| v.as_ref().map(to_string)))
    }

    async fn batch_get(
        &mut self,
        table: String,
        keys: Vec<String>,
    ) -> HostResult<Vec<Option<String>>> {
        let outcome = async {
            self.check(Capability::Table, &table)?;
            check_batch(keys.len())?;
            let parsed = keys
                .iter()
                .map(|k| parse_json(k, "key"))
                .collect::<Result<Vec<_>, _>>()?;
            self.backends.table.batch_get(&table, &parsed).await
        }
        .await;
        Ok(self
            .conclude(
                "table",
                "batch-get",
                &table,
                || json!({"keys": keys}),
                outcome,
            )?
            .map(|items| items.iter().map(|i| i.as_ref().map(to_string)).collect()))
    }

    async fn put(
        &mut self,
        table: String,
        item: String,
        cond: Option<table::Condition>,
    ) -> HostResult<()> {
        let outcome = async {
            self.check(Capability::Table, &table)?;
            let parsed = Value::Object(parse_object(&item, "item")?);
            let cond = opt_condition(cond)?;
            self.backends.table.put(&table, parsed, cond).await
        }
        .await;
        self.conclude("table", "put", &table, || json!({"item": item}), outcome)
    }

    async fn update(
        &mut self,
        table: String,
        key: String,
        set: String,
        remove: Vec<String>,
        cond: Option<table::Condition>,
    ) -> HostResult<String> {
        let outcome = async {
            self.check(Capability::Table, &table)?;
            let parsed_key = parse_json(&key, "key")?;
            let set_map = parse_object(&set, "set")?;
            let cond = opt_condition(cond)?;
            self.backends
                .table
                .update(&table, &parsed_key, set_map, &remove, cond)
                .await
        }
        .await;
        Ok(self
            .conclude(
                "table",
                "update",
                &table,
                || json!({"key": key, "set": set, "remove": remove}),
                outcome,
            )?
            .map(|v| to_string(&v)))
    }

    async fn delete(
        &mut self,
        table: String,
        key: String,
        cond: Option<table::Condition>,
    ) -> HostResult<()> {
        let outcome = async {
            self.check(Capability::Table, &table)?;
            let parsed = parse_json(&key, "key")?;
            let cond = opt_condition(cond)?;
            self.backends.table.delete(&table, &parsed, cond).await
        }
        .await;
        self.conclude("table", "delete", &table, || json!({"key": key}), outcome)
    }

    async fn query(
        &mut self,
        table: String,
        partition: String,
        sort_prefix: Option<String>,
        limit: Option<u32>,
        start_after: Option<String>,
    ) -> HostResult<table::Page> {
        let outcome: Result<Page, CapError> = async {
            self.check(Capability::Table, &table)?;
            let partition = parse_json(&partition, "partition")?;
            let start = start_after
                .as_deref()
                .map(|s| parse_json(s, "start-after"))
                .transpose()?;
            let limit = limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
            self.backends
                .table
                .query(
                    &table,
                    &partition,
                    sort_prefix.as_deref(),
                    limit,
                    start.as_ref(),
                )
                .await
        }
        .await;
        Ok(self
            .conclude(
                "table",
                "query",
                &table,
                || json!({"partition": partition, "sort_prefix": sort_prefix}),
                outcome,
            )?
            .map(|page| table::Page {
                items: page.items.iter().map(to_string).collect(),
                next: page.next.as_ref().map(to_string),
            }))
    }

    async fn batch_write(
        &mut self,
        table: String,
        writes: Vec<table::Write>,
    ) -> HostResult<Vec<Result<(), types::Error>>> {
        let count = writes.len();
        let outcome = async {
            self.check(Capability::Table, &table)?;
            check_batch(writes.len())?;
            let ops = writes
                .into_iter()
                .map(|w| match w {
                    table::Write::Put(item) => {
                        Ok(WriteOp::Put(Value::Object(parse_object(&item, "item")?)))
                    }
                    table::Write::Delete(key) => Ok(WriteOp::Delete(parse_json(&key, "key")?)),
                })
                .collect::<Result<Vec<_>, CapError>>()?;
            self.backends.table.batch_write(&table, ops).await
        }
        .await;
        self.conclude_many("batch-write", &table, count, outcome, |()| ())
    }

    async fn put_many(
        &mut self,
        table: String,
        puts: Vec<table::PutItem>,
    ) -> HostResult<Vec<Result<(), types::Error>>> {
        let count = puts.len();
        let outcome = async {
            self.check(Capability::Table, &table)?;
            check_batch(puts.len())?;
            let puts = puts
                .into_iter()
                .map(|p| {
                    Ok(PutItem {
                        item: Value::Object(parse_object(&p.item, "item")?),
                        condition: opt_condition(p.condition)?,
                    })
                })
                .collect::<Result<Vec<_>, CapError>>()?;
            self.backends.table.put_many(&table, puts).await
        }
        .await;
        self.conclude_many("put-many", &table, count, outcome, |()| ())
    }

    async fn update_many(
        &mut self,
        table: String,
        updates: Vec<table::UpdateItem>,
    ) -> HostResult<Vec<Result<String, types::Error>>> {
        let count = updates.len();
        let outcome = async {
            self.check(Capability::Table, &table)?;
            check_batch(updates.len())?;
            let updates = updates
                .into_iter()
                .map(|u| {
                    Ok(UpdateItem {
                        key: parse_json(&u.key, "key")?,
                        set: parse_object(&u.set, "set")?,
                        remove: u.remove,
                        condition: opt_condition(u.condition)?,
                    })
                })
                .collect::<Result<Vec<_>, CapError>>()?;
            self.backends.table.update_many(&table, updates).await
        }
        .await;
        self.conclude_many("update-many", &table, count, outcome, |v| to_string(&v))
    }
}

impl CapabilityCtx {
    /// Records a call with one result per record and answers it: the call's
    /// own error (a host fault traps), or the per-record results.
    fn conclude_many<R, T>(
        &mut self,
        function: &'static str,
        table: &str,
        count: usize,
        outcome: Result<Vec<Result<R, CapError>>, CapError>,
        convert: impl Fn(R) -> T,
    ) -> HostResult<Vec<Result<T, types::Error>>> {
        let results = match outcome {
            Ok(results) => {
                let failed = results.iter().filter(|r| r.is_err()).count();
                self.record(
                    "table",
                    function,
                    table,
                    || json!({"records": count}),
                    &Ok::<_, CapError>(json!({"failed": failed})),
                );
                results
            }
            Err(e) => {
                return self
                    .conclude(
                        "table",
                        function,
                        table,
                        || json!({"records": count}),
                        Err::<(), _>(e),
                    )
                    .map(|r| r.map(|()| Vec::new()));
            }
        };
        Ok(Ok(per_item(results, convert)?))
    }
}

fn outgoing(
    body: String,
    attributes: Vec<types::Pair>,
    delay_seconds: Option<u32>,
) -> OutgoingMessage {
    OutgoingMessage {
        body,
        attributes: pairs(attributes),
        delay_seconds,
    }
}

/// Records a batch send whose per-message results are guest-visible.
fn batch_outcome(
    ctx: &CapabilityCtx,
    capability: &'static str,
    function: &'static str,
    resource: &str,
    request: Value,
    outcome: Result<Vec<Result<String, CapError>>, CapError>,
) -> HostResult<Vec<Result<String, types::Error>>> {
    match outcome {
        Ok(results) => {
            let summary: Vec<Value> = results
                .iter()
                .map(|r| match r {
                    Ok(id) => json!({"ok": id}),
                    Err(e) => json!({"error": e.to_string()}),
                })
                .collect();
            ctx.record(
                capability,
                function,
                resource,
                || request,
                &Ok::<_, CapError>(summary),
            );
            Ok(Ok(per_item(results, |id| id)?))
        }
        Err(e) => ctx
            .conclude(capability, function, resource, || request, Err::<(), _>(e))
            .map(|r| r.map(|()| Vec::new())),
    }
}

impl queue::Host for CapabilityCtx {
    async fn send_batch(
        &mut self,
        queue: String,
        messages: Vec<queue::Outgoing>,
    ) -> HostResult<Vec<Result<String, types::Error>>> {
        let msgs: Vec<OutgoingMessage> = messages
            .into_iter()
            .map(|m| outgoing(m.body, m.attributes, m.delay_seconds))
            .collect();
        let request = self.recorded_messages(&msgs);
        let outcome = async {
            self.check(Capability::Queue, &queue)?;
            check_batch(msgs.len())?;
            self.backends.queue.send_batch(&queue, msgs).await
        }
        .await;
        batch_outcome(self, "queue", "send-batch", &queue, request, outcome)
    }
}

impl topic::Host for CapabilityCtx {
    async fn publish_batch(
        &mut self,
        topic: String,
        messages: Vec<topic::Outgoing>,
    ) -> HostResult<Vec<Result<String, types::Error>>> {
        let msgs: Vec<OutgoingMessage> = messages
            .into_iter()
            .map(|m| outgoing(m.body, m.attributes, None))
            .collect();
        let request = self.recorded_messages(&msgs);
        let outcome = async {
            self.check(Capability::Topic, &topic)?;
            check_batch(msgs.len())?;
            self.backends.topic.publish_batch(&topic, msgs).await
        }
        .await;
        batch_outcome(self, "topic", "publish-batch", &topic, request, outcome)
    }
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
        let size = body.len();
        let outcome = async {
            self.check(Capability::Objects, &bucket)?;
            self.backends
                .objects
                .put(&bucket, &key, body, content_type.as_deref())
                .await
        }
        .await;
        Ok(self
            .conclude(
                "objects",
                "put",
                &bucket,
                || json!({"key": key, "size": size}),
                outcome,
            )?
            .map(info))
    }

    async fn get(&mut self, bucket: String, key: String) -> HostResult<Option<Vec<u8>>> {
        let outcome = async {
            self.check(Capability::Objects, &bucket)?;
            self.backends.objects.get(&bucket, &key).await
        }
        .await;
        let sizes = outcome
            .as_ref()
            .map(|o| o.as_ref().map(Vec::len))
            .map_err(Clone::clone);
        self.record("objects", "get", &bucket, || json!({"key": key}), &sizes);
        match outcome {
            Ok(v) => Ok(Ok(v)),
            Err(e) => Ok(Err(e.into_guest()?)),
        }
    }

    async fn list(
        &mut self,
        bucket: String,
        prefix: String,
        limit: Option<u32>,
    ) -> HostResult<Vec<objects::ObjectInfo>> {
        let outcome = async {
            self.check(Capability::Objects, &bucket)?;
            let limit = limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
            self.backends.objects.list(&bucket, &prefix, limit).await
        }
        .await;
        Ok(self
            .conclude(
                "objects",
                "list",
                &bucket,
                || json!({"prefix": prefix}),
                outcome,
            )?
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
        let outcome = async {
            self.check(Capability::Objects, &bucket)?;
            self.backends
                .objects
                .open_writer(&bucket, &key, content_type.as_deref())
                .await
        }
        .await;
        let recorded = outcome.as_ref().map(|_| ()).map_err(Clone::clone);
        self.record(
            "objects",
            "writer.open",
            &bucket,
            || json!({"key": key}),
            &recorded,
        );
        match outcome {
            Ok(writer) => {
                let rep = self.next_writer;
                self.next_writer = self.next_writer.wrapping_add(1);
                self.writers.insert(rep, writer);
                Ok(Ok(Resource::new_own(rep)))
            }
            Err(e) => Ok(Err(e.into_guest()?)),
        }
    }

    async fn write(&mut self, this: Resource<objects::Writer>, chunk: Vec<u8>) -> HostResult<()> {
        let Some(writer) = self.writers.get_mut(&this.rep()) else {
            return Err(wasmtime::format_err!("unknown object writer handle"));
        };
        let outcome = writer.write(&chunk).await;
        match outcome {
            Ok(()) => Ok(Ok(())),
            Err(e) => Ok(Err(e.into_guest()?)),
        }
    }

    async fn finish(&mut self, this: Resource<objects::Writer>) -> HostResult<objects::ObjectInfo> {
        let Some(writer) = self.writers.remove(&this.rep()) else {
            return Err(wasmtime::format_err!("unknown object writer handle"));
        };
        let outcome = writer.finish().await;
        Ok(self
            .conclude("objects", "writer.finish", "", || Value::Null, outcome)?
            .map(info))
    }

    async fn drop(&mut self, this: Resource<objects::Writer>) -> wasmtime::Result<()> {
        if let Some(writer) = self.writers.remove(&this.rep()) {
            writer.abort().await;
        }
        Ok(())
    }
}

impl events::Host for CapabilityCtx {
    async fn produce(
        &mut self,
        topic: String,
        records: Vec<events::Event>,
    ) -> HostResult<Vec<Result<events::Delivery, types::Error>>> {
        let count = records.len();
        let outcome = async {
            self.check(Capability::Events, &topic)?;
            check_batch(records.len())?;
            let evs = records
                .into_iter()
                .map(|e| Event {
                    key: e.key,
                    value: e.value,
                    headers: pairs(e.headers),
                })
                .collect();
            self.backends.events.produce(&topic, evs).await
        }
        .await;
        match outcome {
            Ok(results) => {
                let failed = results.iter().filter(|r| r.is_err()).count();
                self.record(
                    "events",
                    "produce",
                    &topic,
                    || json!({"events": count}),
                    &Ok::<_, CapError>(json!({"failed": failed})),
                );
                Ok(Ok(per_item(results, |d: Delivery| events::Delivery {
                    partition: d.partition,
                    offset: d.offset,
                })?))
            }
            Err(e) => self
                .conclude(
                    "events",
                    "produce",
                    &topic,
                    || json!({"events": count}),
                    Err::<(), _>(e),
                )
                .map(|r| r.map(|()| Vec::new())),
        }
    }
}

impl cache::Host for CapabilityCtx {
    async fn get(&mut self, key: String) -> HostResult<Option<String>> {
        let outcome = async {
            self.check(Capability::Cache, &key)?;
            self.backends.cache.get(&key).await
        }
        .await;
        self.conclude("cache", "get", &key, || Value::Null, outcome)
    }

    async fn set(
        &mut self,
        key: String,
        value: String,
        ttl_seconds: Option<u32>,
    ) -> HostResult<()> {
        let outcome = async {
            self.check(Capability::Cache, &key)?;
            let ttl = ttl_seconds.map(|s| Duration::from_secs(u64::from(s)));
            self.backends.cache.set(&key, &value, ttl).await
        }
        .await;
        self.conclude(
            "cache",
            "set",
            &key,
            || json!({"ttl_seconds": ttl_seconds}),
            outcome,
        )
    }

    async fn delete(&mut self, key: String) -> HostResult<()> {
        let outcome = async {
            self.check(Capability::Cache, &key)?;
            self.backends.cache.delete(&key).await
        }
        .await;
        self.conclude("cache", "delete", &key, || Value::Null, outcome)
    }
}

/// The most requests one `services.call-many` may carry.
pub const MAX_SERVICE_CALLS: usize = 256;

/// How many requests of one `services.call-many` are in flight at once.
pub const SERVICE_CALLS_IN_FLIGHT: usize = 32;

impl CapabilityCtx {
    /// The backend request of a guest request, with the invocation's
    /// correlation id.
    fn service_request(&self, request: services::Request) -> ServiceRequest {
        ServiceRequest {
            service: request.service,
            method: match request.method {
                services::Method::Get => Method::Get,
                services::Method::Post => Method::Post,
                services::Method::Put => Method::Put,
                services::Method::Patch => Method::Patch,
                services::Method::Delete => Method::Delete,
            },
            path: request.path,
            headers: pairs(request.headers),
            body: request.body,
            correlation_id: self.correlation_id.clone(),
        }
    }

    /// Checks the grant and the path of one request: the part of a service
    /// call that needs no I/O.
    fn check_service_request(&self, req: &ServiceRequest) -> Result<(), CapError> {
        self.check(Capability::Services, &req.service)?;
        if !req.path.starts_with('/') {
            return Err(CapError::Invalid(format!(
                "service path must start with '/', got `{}`",
                req.path
            )));
        }
        Ok(())
    }

    fn recorded_service_request(&self, req: &ServiceRequest) -> Value {
        if self.recorder.is_some() {
            json!({"method": req.method, "path": req.path, "body": req.body})
        } else {
            Value::Null
        }
    }
}

fn guest_response(r: ServiceResponse) -> services::Response {
    services::Response {
        status: r.status,
        headers: to_pairs(r.headers),
        body: r.body,
    }
}

impl services::Host for CapabilityCtx {
    async fn call(&mut self, request: services::Request) -> HostResult<services::Response> {
        let req = self.service_request(request);
        let service = req.service.clone();
        let recorded = self.recorded_service_request(&req);
        let outcome: Result<ServiceResponse, CapError> = match self.check_service_request(&req) {
            Ok(()) => self.backends.services.call(req).await,
            Err(e) => Err(e),
        };
        Ok(self
            .conclude("services", "call", &service, || recorded, outcome)?
            .map(guest_response))
    }

    async fn call_many(
        &mut self,
        requests: Vec<services::Request>,
    ) -> HostResult<Vec<Result<services::Response, types::Error>>> {
        use futures::stream::{self, StreamExt};

        if requests.len() > MAX_SERVICE_CALLS {
            let e = CapError::Invalid(format!(
                "a call-many carries at most {MAX_SERVICE_CALLS} requests, got {}",
                requests.len()
            ));
            self.record("services", "call-many", "*", || Value::Null, &Err::<(), _>(e.clone()));
            return Ok(Err(e.into_guest()?));
        }
        let reqs: Vec<ServiceRequest> = requests
            .into_iter()
            .map(|r| self.service_request(r))
            .collect();
        let checked: Vec<Result<ServiceRequest, CapError>> = reqs
            .into_iter()
            .map(|r| self.check_service_request(&r).map(|()| r))
            .collect();
        let meta: Vec<(String, Value)> = checked
            .iter()
            .map(|r| match r {
                Ok(req) => (req.service.clone(), self.recorded_service_request(req)),
                Err(_) => (String::new(), Value::Null),
            })
            .collect();
        let backend = self.backends.services.clone();
        // Every request runs as `call` does (JWT, correlation id, retries and
        // timeout are the backend's), SERVICE_CALLS_IN_FLIGHT at a time;
        // `buffered` keeps the answers in request order.
        let outcomes: Vec<Result<ServiceResponse, CapError>> = stream::iter(checked)
            .map(|r| {
                let backend = backend.clone();
                async move {
                    match r {
                        Ok(req) => backend.call(req).await,
                        Err(e) => Err(e),
                    }
                }
            })
            .buffered(SERVICE_CALLS_IN_FLIGHT)
            .collect()
            .await;
        let mut out = Vec::with_capacity(outcomes.len());
        for ((service, recorded), outcome) in meta.into_iter().zip(outcomes) {
            out.push(
                self.conclude("services", "call", &service, || recorded, outcome)?
                    .map(guest_response),
            );
        }
        Ok(Ok(out))
    }
}

impl codec::Host for CapabilityCtx {
    async fn encode(
        &mut self,
        format: codec::Format,
        schema: String,
        records: Vec<String>,
    ) -> HostResult<Vec<u8>> {
        let count = records.len();
        let format = match format {
            codec::Format::Avro => Format::Avro,
            codec::Format::Parquet => Format::Parquet,
        };
        let outcome = async {
            self.check(Capability::Codec, "")?;
            check_batch(records.len())?;
            let schema = parse_json(&schema, "schema")?;
            let parsed = records
                .iter()
                .map(|r| parse_json(r, "record"))
                .collect::<Result<Vec<_>, _>>()?;
            self.backends.codec.encode(format, &schema, parsed).await
        }
        .await;
        let sizes = outcome.as_ref().map(Vec::len).map_err(Clone::clone);
        self.record(
            "codec",
            "encode",
            "",
            || json!({"format": format, "records": count}),
            &sizes,
        );
        match outcome {
            Ok(v) => Ok(Ok(v)),
            Err(e) => Ok(Err(e.into_guest()?)),
        }
    }
}

impl workers::Host for CapabilityCtx {
    async fn invoke(&mut self, worker: String, payload: String) -> HostResult<String> {
        let outcome = async {
            self.check(Capability::Workers, &worker)?;
            let payload = parse_json(&payload, "payload")?;
            self.backends
                .workers
                .invoke(&worker, payload, &self.correlation_id)
                .await
        }
        .await;
        Ok(self
            .conclude(
                "workers",
                "invoke",
                &worker,
                || json!({"payload": payload}),
                outcome,
            )?
            .map(|v| to_string(&v)))
    }

    async fn invoke_async(&mut self, worker: String, payload: String) -> HostResult<()> {
        let outcome = async {
            self.check(Capability::Workers, &worker)?;
            let payload = parse_json(&payload, "payload")?;
            self.backends
                .workers
                .invoke_async(&worker, payload, &self.correlation_id)
                .await
        }
        .await;
        self.conclude(
            "workers",
            "invoke-async",
            &worker,
            || json!({"payload": payload}),
            outcome,
        )
    }
}
