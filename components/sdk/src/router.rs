//! A small router for http-workers: method + path pattern with `{param}`
//! segments, percent-decoded path and query parameters, a JSON body decoded
//! with a 400 when it is not JSON, and JSON answers for 400/404/405 (`{"error":
//! "…"}`, a 405 with an `allow` header).
//!
//! ```
//! use usher_sdk::router::{HttpError, Router};
//! use usher_sdk::{json::json, HttpRequest, HttpResponse};
//!
//! fn handle(request: &HttpRequest) -> HttpResponse {
//!     Router::new()
//!         .get("/campaigns/{campaignId}/entries", |r| {
//!             let limit = r.query("limit")?.unwrap_or_else(|| "100".into());
//!             Ok(HttpResponse::json_ok(&json!({"campaign": r.param("campaignId"), "limit": limit})))
//!         })
//!         .post("/entries", |r| {
//!             let body: usher_sdk::Value = r.json()?;
//!             Err(HttpError::bad_request(format!("not today: {body}")))
//!         })
//!         .handle(request)
//! }
//!
//! let request = HttpRequest { method: "GET".into(), path: "/campaigns/c%201/entries".into(), ..Default::default() };
//! assert_eq!(handle(&request).body, br#"{"campaign":"c 1","limit":"100"}"#);
//! let request = HttpRequest { method: "DELETE".into(), path: "/entries".into(), ..Default::default() };
//! assert_eq!(handle(&request).status, 405);
//! ```
//!
//! Paths match segment by segment, a trailing `/` ignored; a `{param}`
//! segment matches one non-empty segment. Methods compare case-insensitively.
//! Routes are tried in order; the first match answers.

use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::{Error, HttpRequest, HttpResponse};

/// A request that cannot be served: answered as `{"error": message}` with
/// its status (and, for a 405, an `allow` header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// The HTTP status.
    pub status: u16,
    /// What went wrong.
    pub message: String,
    /// The methods the path takes (a 405's `allow` header).
    pub allow: Option<String>,
}

impl HttpError {
    /// An error with this status.
    pub fn new(status: u16, message: impl Into<String>) -> HttpError {
        HttpError {
            status,
            message: message.into(),
            allow: None,
        }
    }

    /// A 400.
    pub fn bad_request(message: impl Into<String>) -> HttpError {
        HttpError::new(400, message)
    }

    /// A 404.
    pub fn not_found(message: impl Into<String>) -> HttpError {
        HttpError::new(404, message)
    }

    /// The answer to a failed capability call (a table's, usually): 400 for
    /// `invalid`, 409 for a lost condition, 503 when the backend is
    /// unavailable or throttled, 500 otherwise; the message is
    /// `"{what}: {error}"`, and the failure is logged at `warn`. Every
    /// http-worker service maps its table errors with this one function.
    ///
    /// ```
    /// use usher_sdk::{router::HttpError, Error};
    /// let e = HttpError::from_table("writing the campaign", &Error::ConditionFailed("version".into()));
    /// assert_eq!(e.status, 409);
    /// assert_eq!(e.message, "writing the campaign: condition-failed: version");
    /// assert_eq!(HttpError::from_table("x", &Error::Throttled("t".into())).status, 503);
    /// assert_eq!(HttpError::from_table("x", &Error::Invalid("k".into())).status, 400);
    /// assert_eq!(HttpError::from_table("x", &Error::Denied("t".into())).status, 500);
    /// ```
    pub fn from_table(what: &str, e: &Error) -> HttpError {
        let status = match e {
            Error::Invalid(_) => 400,
            Error::ConditionFailed(_) => 409,
            Error::Unavailable(_) | Error::Throttled(_) => 503,
            _ => 500,
        };
        crate::warn!(status = status, error = e; "{what} failed");
        HttpError::new(status, format!("{what}: {e}"))
    }

    /// The `{"error": …}` response.
    pub fn response(&self) -> HttpResponse {
        let response = HttpResponse::json_ok(&json!({"error": self.message}));
        let response = HttpResponse {
            status: self.status,
            ..response
        };
        match &self.allow {
            Some(allow) => response.with_header("allow", allow.clone()),
            None => response,
        }
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl std::error::Error for HttpError {}

/// What a route's handler answers: a response, or an error answered as JSON.
pub type Reply = Result<HttpResponse, HttpError>;

/// A handler's JSON document as a `200` reply (an error stays an error).
pub fn json_reply(result: Result<Value, HttpError>) -> Reply {
    result.map(|body| HttpResponse::json_ok(&body))
}

/// An http-worker's entry point: load its settings, then serve the request
/// with them; settings that cannot be read are logged and answered `500
/// {"error": "cannot read the settings: …"}`.
///
/// ```
/// use usher_sdk::{json::json, router, HttpResponse, Error};
/// let failed = router::serve_with(|| Err::<(), _>(Error::Invalid("table".into())), |_| HttpResponse::json_ok(&json!(1)));
/// assert_eq!(failed.status, 500);
/// let served = router::serve_with(|| Ok(7), |n| HttpResponse::json_ok(&json!(n)));
/// assert_eq!(served.body, b"7");
/// ```
pub fn serve_with<S>(
    load: impl FnOnce() -> crate::Result<S>,
    handle: impl FnOnce(&S) -> HttpResponse,
) -> HttpResponse {
    match load() {
        Ok(settings) => handle(&settings),
        Err(e) => {
            crate::error!(error = e; "cannot read the settings");
            HttpError::new(500, format!("cannot read the settings: {e}")).response()
        }
    }
}

type Handler<'a> = Box<dyn Fn(&Routed<'_>) -> Reply + 'a>;

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

struct Route<'a> {
    method: String,
    pattern: Vec<Segment>,
    handler: Handler<'a>,
}

/// The routes of an http-worker; see the [module docs](self).
#[derive(Default)]
pub struct Router<'a> {
    routes: Vec<Route<'a>>,
}

/// A matched request: the request, its decoded path parameters, and
/// decoding helpers whose errors are 400s.
pub struct Routed<'r> {
    request: &'r HttpRequest,
    params: Vec<(String, String)>,
}

impl Routed<'_> {
    /// The request.
    pub fn request(&self) -> &HttpRequest {
        self.request
    }

    /// The decoded path parameter `name` (`""` when the pattern has none of
    /// that name).
    pub fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// The query parameter `name`, percent-decoded (`+` is a space); `None`
    /// when absent; a 400 when it is not valid percent-encoded UTF-8.
    pub fn query(&self, name: &str) -> Result<Option<String>, HttpError> {
        self.request
            .query_param(name)
            .map(|v| decode(&v.replace('+', " ")))
            .transpose()
    }

    /// The body parsed as JSON; a 400 when it is not.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.request.body)
            .map_err(|e| HttpError::bad_request(format!("the body is not JSON: {e}")))
    }

    /// The body as a JSON object; a 400 when it is not JSON or not an object.
    pub fn json_object(&self) -> Result<Value, HttpError> {
        let value: Value = self.json()?;
        if value.is_object() {
            Ok(value)
        } else {
            Err(HttpError::bad_request("the body must be a JSON object"))
        }
    }
}

/// The segments of a path: no leading `/`, a trailing `/` ignored.
fn segments(path: &str) -> Vec<&str> {
    let trimmed = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    trimmed
        .strip_prefix('/')
        .unwrap_or(trimmed)
        .split('/')
        .collect()
}

impl<'a> Router<'a> {
    /// No routes.
    pub fn new() -> Router<'a> {
        Router { routes: Vec::new() }
    }

    /// A route: `method` (any case) and `pattern` (`/a/{name}/b`).
    pub fn route(
        mut self,
        method: &str,
        pattern: &str,
        handler: impl Fn(&Routed<'_>) -> Reply + 'a,
    ) -> Router<'a> {
        let pattern = segments(pattern)
            .into_iter()
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => Segment::Param(name.to_string()),
                    None => Segment::Literal(s.to_string()),
                },
            )
            .collect();
        self.routes.push(Route {
            method: method.to_ascii_uppercase(),
            pattern,
            handler: Box::new(handler),
        });
        self
    }

    /// A `GET` route.
    pub fn get(self, pattern: &str, handler: impl Fn(&Routed<'_>) -> Reply + 'a) -> Router<'a> {
        self.route("GET", pattern, handler)
    }

    /// A `POST` route.
    pub fn post(self, pattern: &str, handler: impl Fn(&Routed<'_>) -> Reply + 'a) -> Router<'a> {
        self.route("POST", pattern, handler)
    }

    /// A `PUT` route.
    pub fn put(self, pattern: &str, handler: impl Fn(&Routed<'_>) -> Reply + 'a) -> Router<'a> {
        self.route("PUT", pattern, handler)
    }

    /// A `PATCH` route.
    pub fn patch(self, pattern: &str, handler: impl Fn(&Routed<'_>) -> Reply + 'a) -> Router<'a> {
        self.route("PATCH", pattern, handler)
    }

    /// A `DELETE` route.
    pub fn delete(self, pattern: &str, handler: impl Fn(&Routed<'_>) -> Reply + 'a) -> Router<'a> {
        self.route("DELETE", pattern, handler)
    }

    /// Serves a request: the first matching route's answer; 404 for an
    /// unknown path, 405 (with `allow`) for a known path with another
    /// method, 400 for a path parameter that is not valid percent-encoded
    /// UTF-8; every error as `{"error": …}`.
    pub fn handle(&self, request: &HttpRequest) -> HttpResponse {
        match self.dispatch(request) {
            Ok(response) => response,
            Err(e) => e.response(),
        }
    }

    /// As [`Router::handle`], with the error not yet turned into a response.
    pub fn dispatch(&self, request: &HttpRequest) -> Reply {
        let path = segments(&request.path);
        let mut allowed: Vec<&str> = Vec::new();
        for route in &self.routes {
            let Some(raw) = matches(&route.pattern, &path) else {
                continue;
            };
            if !route.method.eq_ignore_ascii_case(&request.method) {
                if !allowed.contains(&route.method.as_str()) {
                    allowed.push(&route.method);
                }
                continue;
            }
            let params = raw
                .into_iter()
                .map(|(name, value)| Ok((name.to_string(), decode(value)?)))
                .collect::<Result<Vec<_>, HttpError>>()?;
            return (route.handler)(&Routed { request, params });
        }
        if allowed.is_empty() {
            return Err(HttpError::not_found(format!(
                "no such path: {}",
                request.path
            )));
        }
        let allow = allowed.join(", ");
        Err(HttpError {
            allow: Some(allow.clone()),
            ..HttpError::new(
                405,
                format!("{} takes {allow}, not {}", request.path, request.method),
            )
        })
    }
}

/// The raw parameters when `path` matches `pattern`.
fn matches<'p, 's>(pattern: &'p [Segment], path: &[&'s str]) -> Option<Vec<(&'p str, &'s str)>> {
    if pattern.len() != path.len() {
        return None;
    }
    let mut params = Vec::new();
    for (segment, &part) in pattern.iter().zip(path) {
        match segment {
            Segment::Literal(literal) if literal == part => {}
            Segment::Param(name) if !part.is_empty() => params.push((name.as_str(), part)),
            _ => return None,
        }
    }
    Some(params)
}

/// Percent-decodes a path segment or query value; a 400 for a bad escape or
/// a result that is not UTF-8.
pub fn decode(text: &str) -> Result<String, HttpError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        HttpError::bad_request(format!("bad percent-encoding in {text}"))
                    })?;
                out.push(hex);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| HttpError::bad_request(format!("{text} is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, path: &str, query: &str, body: &str) -> HttpRequest {
        HttpRequest {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            headers: vec![],
            body: body.as_bytes().to_vec(),
        }
    }

    fn router() -> Router<'static> {
        Router::new()
            .post("/entries/batch-upsert", |_| {
                Ok(HttpResponse::json_ok(&json!("upsert")))
            })
            .get("/campaigns/{id}/entries", |r| {
                Ok(HttpResponse::json_ok(
                    &json!({"id": r.param("id"), "limit": r.query("limit")?}),
                ))
            })
            .delete("/campaigns/{id}/entries", |_| Ok(HttpResponse::new(204)))
            .post("/echo", |r| Ok(HttpResponse::json_ok(&r.json_object()?)))
            .get("/", |_| Ok(HttpResponse::text(200, "root")))
    }

    fn answer(method: &str, path: &str, query: &str, body: &str) -> (u16, Value) {
        let response = router().handle(&request(method, path, query, body));
        let value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        (response.status, value)
    }

    #[test]
    fn matches_methods_patterns_and_trailing_slashes() {
        assert_eq!(
            answer("POST", "/entries/batch-upsert", "", ""),
            (200, json!("upsert"))
        );
        assert_eq!(answer("post", "/entries/batch-upsert/", "", "").0, 200);
        assert_eq!(
            answer("GET", "/campaigns/c%201/entries", "limit=5", ""),
            (200, json!({"id": "c 1", "limit": "5"}))
        );
        assert_eq!(
            answer("GET", "/campaigns/c/entries", "", "").1,
            json!({"id": "c", "limit": null})
        );
        assert_eq!(answer("DELETE", "/campaigns/c/entries", "", "").0, 204);
        assert_eq!(router().handle(&request("GET", "/", "", "")).status, 200);
    }

    #[test]
    fn unknown_paths_are_404_and_other_methods_405_as_json() {
        for path in [
            "/nope",
            "/campaigns//entries",
            "/entries",
            "/entries/batch-upsert/x",
        ] {
            let (status, body) = answer("GET", path, "", "");
            assert_eq!(status, 404, "{path}");
            assert!(
                body["error"].as_str().is_some_and(|e| e.contains(path)),
                "{path}"
            );
        }
        let response = router().handle(&request("GET", "/entries/batch-upsert", "", ""));
        assert_eq!(response.status, 405);
        assert!(response.headers.contains(&("allow".into(), "POST".into())));
        assert!(response
            .headers
            .contains(&("content-type".into(), "application/json".into())));
        let response = router().handle(&request("PUT", "/campaigns/c/entries", "", ""));
        assert_eq!(response.status, 405);
        assert!(response
            .headers
            .contains(&("allow".into(), "GET, DELETE".into())));
    }

    #[test]
    fn bad_encodings_and_bad_json_are_400() {
        assert_eq!(answer("GET", "/campaigns/%zz/entries", "", "").0, 400);
        assert_eq!(
            answer("GET", "/campaigns/c/entries", "limit=%ff", "").0,
            400
        );
        assert_eq!(
            answer("GET", "/campaigns/c/entries", "limit=a+b%21", "").1["limit"],
            "a b!"
        );
        let (status, body) = answer("POST", "/echo", "", "{not json");
        assert_eq!(status, 400);
        assert!(body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("the body is not JSON")));
        assert_eq!(answer("POST", "/echo", "", "[]").0, 400);
        assert_eq!(
            answer("POST", "/echo", "", r#"{"a":1}"#),
            (200, json!({"a": 1}))
        );
    }

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(decode("a%2Fb%C3%BC"), Ok("a/bü".to_string()));
        assert!(decode("50%").is_err());
        assert!(decode("%ff").is_err());
    }

    #[test]
    fn handlers_borrow_their_context() {
        let prefix = String::from("hello ");
        let router = Router::new().get("/greet/{name}", |r| {
            Ok(HttpResponse::text(
                200,
                format!("{prefix}{}", r.param("name")),
            ))
        });
        let response = router.handle(&request("GET", "/greet/ada", "", ""));
        assert_eq!(response.body, b"hello ada");
    }
}
