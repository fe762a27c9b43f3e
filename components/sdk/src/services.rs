//! Named internal HTTP services (the `services` capability).
//!
//! The host owns the base URL, the app-to-app JWT, the `X-Correlation-Id`
//! header, retries with backoff on 429/503/timeouts, and tracing. A non-2xx
//! final status is a [`Response`], not an error; an error means the call
//! could not be made or never got an answer.
//!
//! ```no_run
//! # fn main() -> usher_sdk::Result<()> {
//! use usher_sdk::{json::json, services};
//! let response = services::post_json("entries", "/scores/refresh", &json!({"fans": []}))?;
//! if !response.is_success() { /* … */ }
//! # Ok(()) }
//! ```

use serde::{de::DeserializeOwned, Serialize};

use crate::{json, Error, Result};

/// HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// GET
    Get,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
}

/// A request to a named service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The service's name as granted in the registry (e.g. `entries`).
    pub service: String,
    /// The HTTP method.
    pub method: Method,
    /// Path and query below the service's base URL, starting with `/`.
    pub path: String,
    /// Extra headers (the host sets authorization and correlation headers).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Option<String>,
}

impl Request {
    /// A request without headers or body.
    pub fn new(service: impl Into<String>, method: Method, path: impl Into<String>) -> Request {
        Request {
            service: service.into(),
            method,
            path: path.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets `value` as the JSON body (and the `content-type` header).
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Request> {
        self.body = Some(json::to_string(value)?);
        Ok(self.header("content-type", "application/json"))
    }
}

/// The service's final answer after the host's retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl Response {
    /// True for a 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        json::from_str(&self.body)
    }

    /// The response itself when 2xx, otherwise [`Error::Status`].
    pub fn error_for_status(self) -> Result<Response> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(Error::Status {
                status: self.status,
                body: self.body,
            })
        }
    }

    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Calls a service.
pub fn call(request: &Request) -> Result<Response> {
    sys::call(request)
}

/// Calls services many times in one crossing: the host runs the requests
/// concurrently (each with its own JWT, `X-Correlation-Id`, retries and
/// timeout) and answers one result per request, in order. At most 256
/// requests; more is [`Error::Invalid`] for the whole call. Needs a host of
/// `usher:platform@0.1.1` or later.
///
/// ```no_run
/// # fn main() -> usher_sdk::Result<()> {
/// use usher_sdk::{json::json, services::{self, Method, Request}};
/// let requests = vec![
///     Request::new("entries", Method::Post, "/entries/batch-upsert").json(&json!({"entries": []}))?,
///     Request::new("entries", Method::Post, "/entries/batch-delete").json(&json!({"keys": []}))?,
/// ];
/// for answer in services::call_many(&requests)? {
///     let response = answer?; // this request's own error or response
///     if !response.is_success() { /* … */ }
/// }
/// # Ok(()) }
/// ```
pub fn call_many(requests: &[Request]) -> Result<Vec<Result<Response>>> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    sys::call_many(requests)
}

/// `GET path` on a service.
pub fn get(service: &str, path: &str) -> Result<Response> {
    call(&Request::new(service, Method::Get, path))
}

/// `POST path` on a service with `body` as JSON.
pub fn post_json<T: Serialize + ?Sized>(service: &str, path: &str, body: &T) -> Result<Response> {
    call(&Request::new(service, Method::Post, path).json(body)?)
}

#[cfg(target_arch = "wasm32")]
mod sys {
    use super::{Method, Request, Response};
    use crate::bindings::caps::usher::platform::{services as wit, types::Pair};
    use crate::Result;

    fn to_wit(request: &Request) -> wit::Request {
        let method = match request.method {
            Method::Get => wit::Method::Get,
            Method::Post => wit::Method::Post,
            Method::Put => wit::Method::Put,
            Method::Patch => wit::Method::Patch,
            Method::Delete => wit::Method::Delete,
        };
        wit::Request {
            service: request.service.clone(),
            method,
            path: request.path.clone(),
            headers: request
                .headers
                .iter()
                .map(|(name, value)| Pair {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            body: request.body.clone(),
        }
    }

    fn from_wit(response: wit::Response) -> Response {
        Response {
            status: response.status,
            headers: response
                .headers
                .into_iter()
                .map(|p| (p.name, p.value))
                .collect(),
            body: response.body,
        }
    }

    pub(super) fn call(request: &Request) -> Result<Response> {
        Ok(from_wit(wit::call(&to_wit(request))?))
    }

    pub(super) fn call_many(requests: &[Request]) -> Result<Vec<Result<Response>>> {
        let requests: Vec<wit::Request> = requests.iter().map(to_wit).collect();
        Ok(wit::call_many(&requests)?
            .into_iter()
            .map(|r| r.map(from_wit).map_err(Into::into))
            .collect())
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod sys {
    use super::{Request, Response};
    use crate::{native, Result};

    pub(super) fn call(request: &Request) -> Result<Response> {
        native::with("services::call", |b| b.services_call(request))
    }

    pub(super) fn call_many(requests: &[Request]) -> Result<Vec<Result<Response>>> {
        native::with("services::call_many", |b| b.services_call_many(requests))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: r#"{"ok":true}"#.into(),
        }
    }

    #[test]
    fn success_and_status_errors() {
        assert!(response(204).is_success());
        assert!(!response(302).is_success());
        let err = response(500).error_for_status().expect_err("500");
        assert!(matches!(err, Error::Status { status: 500, .. }));
        assert!(response(200).error_for_status().is_ok());
    }

    #[test]
    fn headers_and_json() {
        let r = response(200);
        assert_eq!(r.header("content-type"), Some("application/json"));
        let v: serde_json::Value = r.json().expect("json");
        assert_eq!(v["ok"], true);
    }

    #[test]
    fn json_request() {
        let r = Request::new("entries", Method::Post, "/x")
            .json(&serde_json::json!({"a": 1}))
            .expect("json");
        assert_eq!(r.body.as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(r.headers[0].0, "content-type");
    }

    #[test]
    fn native_call_is_unsupported() {
        let err = post_json("entries", "/x", &1).expect_err("native");
        assert!(matches!(err, Error::Unsupported(_)));
    }
}
