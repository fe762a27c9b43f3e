//! `services`: internal HTTP services, one request (`call`) or many run
//! concurrently (`call-many`). The backend owns base URLs, JWTs, the
//! `X-Correlation-Id` header, retries and timeouts.

use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use usher_registry::Capability;
use usher_world::{services, types};

use crate::backend::{Method, ServiceRequest, ServiceResponse};
use crate::call::{pairs, to_pairs, Call, HostResult, Plain, Summary};
use crate::limits::{MAX_SERVICE_CALLS, SERVICE_CALLS_IN_FLIGHT};
use crate::{Caller, CapError, CapabilityCtx};

impl Caller {
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

    /// One request: its grant and path checked, then sent.
    async fn send(&self, req: ServiceRequest) -> Result<ServiceResponse, CapError> {
        let service = req.service.clone();
        let work = async {
            if !req.path.starts_with('/') {
                return Err(CapError::Invalid(format!(
                    "service path must start with '/', got `{}`",
                    req.path
                )));
            }
            self.backends.services.call(req).await
        };
        self.attempt(Call::new(Capability::Services, "call", &service), work)
            .await
    }

    fn recorded_request(&self, req: &ServiceRequest) -> Value {
        self.recorded(|| json!({"method": req.method, "path": req.path, "body": req.body}))
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
        let caller = &self.caller;
        let req = caller.service_request(request);
        let service = req.service.clone();
        let recorded = caller.recorded_request(&req);
        let outcome = caller.send(req).await;
        let call = Call::new(Capability::Services, "call", &service);
        Ok(caller
            .conclude(call, || recorded, Plain, outcome)?
            .map(guest_response))
    }

    async fn call_many(
        &mut self,
        requests: Vec<services::Request>,
    ) -> HostResult<Vec<Result<services::Response, types::Error>>> {
        let caller = &self.caller;
        let call = Call::new(Capability::Services, "call-many", "*");
        if requests.len() > MAX_SERVICE_CALLS {
            let e = CapError::Invalid(format!(
                "a call-many carries at most {MAX_SERVICE_CALLS} requests, got {}",
                requests.len()
            ));
            let nothing = Summary(|_: &Vec<Result<services::Response, types::Error>>| Value::Null);
            return caller.conclude(call, || Value::Null, nothing, Err(e));
        }
        let reqs: Vec<ServiceRequest> = requests
            .into_iter()
            .map(|r| caller.service_request(r))
            .collect();
        let meta: Vec<(String, Value)> = reqs
            .iter()
            .map(|r| (r.service.clone(), caller.recorded_request(r)))
            .collect();
        // Every request runs as `call` does (JWT, correlation id, retries and
        // timeout are the backend's), SERVICE_CALLS_IN_FLIGHT at a time;
        // `buffered` keeps the answers in request order, and each is recorded
        // and answered in that order.
        let outcomes: Vec<Result<ServiceResponse, CapError>> = stream::iter(reqs)
            .map(|req| caller.send(req))
            .buffered(SERVICE_CALLS_IN_FLIGHT)
            .collect()
            .await;
        let mut out = Vec::with_capacity(outcomes.len());
        for ((service, recorded), outcome) in meta.into_iter().zip(outcomes) {
            let call = Call::new(Capability::Services, "call", &service);
            out.push(
                caller
                    .conclude(call, || recorded, Plain, outcome)?
                    .map(guest_response),
            );
        }
        Ok(Ok(out))
    }
}
