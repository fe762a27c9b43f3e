//! The `services` capability over real HTTP.
//!
//! [`HttpServices`] implements [`ServiceBackend`]: a worker names a service
//! and a path; the host owns everything else —
//! - the base URL per service (the registry's `url`, or the
//!   `USHER_SERVICE_<NAME>_URL` override, see
//!   [`ServiceDef::effective_url`]),
//! - an app-to-app token: `Authorization: Bearer <JWT>` signed HS256, claims
//!   `iss` = `sub` = the app name, `aud` = the service, `iat`, `exp`; cached
//!   per service and minted anew shortly before it expires,
//! - `X-Correlation-Id: <the invocation's correlation id>`,
//! - `traceparent` (W3C) of the call's span when traces are on
//!   (`usher_telemetry`), so the service's spans join the caller's trace,
//! - a timeout per attempt (the service's `timeout_ms`),
//! - retries, up to the service's `retries`, on 429, 502, 503, 504,
//!   connection failures and timeouts, with exponential backoff and jitter;
//!   a `Retry-After` of whole seconds on a 429 or 503 is honoured (capped),
//! - a tracing span per call (`service_call`: service, method, path,
//!   correlation id, status, attempts),
//! - one pooled [`reqwest::Client`] for every service.
//!
//! Outcomes: whatever status the last attempt got (after retries, a 429 or
//! 503 included) comes back as a normal [`ServiceResponse`] and the worker
//! decides; a transport failure or timeout on the last attempt is
//! [`CapError::Unavailable`]. An unknown service is [`CapError::NotFound`].

#![deny(missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use backoff::backoff::Backoff;
use backoff::{ExponentialBackoff, ExponentialBackoffBuilder};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use usher_capabilities::{CapError, Method, ServiceBackend, ServiceRequest, ServiceResponse};
use usher_registry::ServiceDef;

/// The header carrying the invocation's correlation id.
pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// Why the HTTP services backend could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpServicesError {
    /// A service's base URL is not an absolute http(s) URL.
    #[error("service `{service}`: url `{url}`: {reason}")]
    InvalidUrl {
        /// The service.
        service: String,
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The token secret is empty.
    #[error("the app-to-app token secret is empty")]
    EmptySecret,
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// How app-to-app tokens are signed.
#[derive(Clone)]
pub struct JwtConfig {
    /// The calling application's name: the token's `iss` and `sub`.
    pub app_name: String,
    /// The HS256 secret shared with the services.
    pub secret: Vec<u8>,
    /// How long a token is valid (default 15 minutes).
    pub ttl: Duration,
    /// A cached token is replaced this long before it expires (default 60 s).
    pub refresh_before: Duration,
}

impl JwtConfig {
    /// Default token lifetime.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);
    /// Default refresh margin.
    pub const DEFAULT_REFRESH_BEFORE: Duration = Duration::from_secs(60);

    /// A configuration with the default lifetime and refresh margin.
    pub fn new(app_name: impl Into<String>, secret: impl Into<Vec<u8>>) -> JwtConfig {
        JwtConfig {
            app_name: app_name.into(),
            secret: secret.into(),
            ttl: Self::DEFAULT_TTL,
            refresh_before: Self::DEFAULT_REFRESH_BEFORE,
        }
    }
}

impl fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtConfig")
            .field("app_name", &self.app_name)
            .field("secret", &"<redacted>")
            .field("ttl", &self.ttl)
            .field("refresh_before", &self.refresh_before)
            .finish()
    }
}

/// The claims of an app-to-app token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppClaims {
    /// Issuer: the calling app.
    pub iss: String,
    /// Subject: the calling app.
    pub sub: String,
    /// Audience: the service called.
    pub aud: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
}

/// Where and how to reach one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTarget {
    /// The base URL; request paths are appended below it.
    pub base_url: String,
    /// Timeout of one attempt.
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub retries: u32,
}

impl ServiceTarget {
    /// The target of registry service `name`, with its effective URL.
    pub fn from_def(name: &str, def: &ServiceDef) -> ServiceTarget {
        ServiceTarget {
            base_url: def.effective_url(name),
            timeout: Duration::from_millis(def.timeout_ms.max(1)),
            retries: def.retries,
        }
    }
}

/// The backoff between attempts.
///
/// The delays come from the `backoff` crate's [`ExponentialBackoff`]
/// (exponential growth, randomised by `jitter`); the retry loop itself is
/// ours, so that the service's `retries` bounds the attempts and a
/// `Retry-After` can replace a delay.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// The first backoff (default 100 ms).
    pub initial_backoff: Duration,
    /// The largest backoff (default 5 s).
    pub max_backoff: Duration,
    /// Growth per attempt (default 2).
    pub multiplier: f64,
    /// Jitter: each backoff is drawn from ±this fraction (default 0.5).
    pub jitter: f64,
    /// The longest `Retry-After` honoured (default 30 s); longer ones are cut
    /// to this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            multiplier: 2.0,
            jitter: 0.5,
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self) -> ExponentialBackoff {
        ExponentialBackoffBuilder::new()
            .with_initial_interval(self.initial_backoff)
            .with_max_interval(self.max_backoff)
            .with_multiplier(self.multiplier)
            .with_randomization_factor(self.jitter.clamp(0.0, 1.0))
            // The number of attempts bounds the retries, not the clock.
            .with_max_elapsed_time(None)
            .build()
    }
}

struct Target {
    base: Url,
    timeout: Duration,
    retries: u32,
}

impl Target {
    /// The URL of `path` below the base; a path that climbs out of the base
    /// (`..`) is refused.
    fn url(&self, service: &str, path: &str) -> Result<Url, CapError> {
        let joined = format!(
            "{}/{}",
            self.base.as_str().trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        let url = Url::parse(&joined)
            .map_err(|e| CapError::Invalid(format!("service `{service}`: path `{path}`: {e}")))?;
        let base_path = self.base.path().trim_end_matches('/');
        if url.scheme() != self.base.scheme()
            || url.host_str() != self.base.host_str()
            || url.port_or_known_default() != self.base.port_or_known_default()
            || !(url.path() == base_path
                || url
                    .path()
                    .strip_prefix(base_path)
                    .is_some_and(|rest| rest.starts_with('/')))
        {
            return Err(CapError::Invalid(format!(
                "service `{service}`: path `{path}` leaves the service's base URL"
            )));
        }
        Ok(url)
    }
}

struct Tokens {
    config: JwtConfig,
    key: EncodingKey,
    cache: Mutex<HashMap<String, (String, SystemTime)>>,
}

impl Tokens {
    /// A valid token for `audience`: the cached one unless it expires
    /// within the refresh margin.
    fn token(&self, audience: &str) -> Result<String, CapError> {
        let now = SystemTime::now();
        if let Some((token, expires)) = self.cache.lock().get(audience) {
            if now + self.config.refresh_before < *expires {
                return Ok(token.clone());
            }
        }
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let ttl = self.config.ttl.max(Duration::from_secs(1));
        let claims = AppClaims {
            iss: self.config.app_name.clone(),
            sub: self.config.app_name.clone(),
            aud: audience.to_string(),
            iat,
            exp: iat + ttl.as_secs(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.key)
            .map_err(|e| CapError::Fault(format!("signing the app-to-app token: {e}")))?;
        self.cache
            .lock()
            .insert(audience.to_string(), (token.clone(), now + ttl));
        Ok(token)
    }
}

/// The [`ServiceBackend`] over HTTP. See the crate documentation.
pub struct HttpServices {
    client: reqwest::Client,
    targets: BTreeMap<String, Target>,
    tokens: Tokens,
    policy: RetryPolicy,
}

impl fmt::Debug for HttpServices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpServices")
            .field("services", &self.targets.keys().collect::<Vec<_>>())
            .field("app", &self.tokens.config.app_name)
            .field("policy", &self.policy)
            .finish()
    }
}

impl HttpServices {
    /// The registry's services (by name), each at its effective URL.
    pub fn new(
        services: BTreeMap<String, ServiceDef>,
        auth: JwtConfig,
    ) -> Result<HttpServices, HttpServicesError> {
        let targets = services
            .iter()
            .map(|(name, def)| (name.clone(), ServiceTarget::from_def(name, def)))
            .collect();
        Self::from_targets(targets, auth)
    }

    /// Services given by explicit targets.
    pub fn from_targets(
        targets: BTreeMap<String, ServiceTarget>,
        auth: JwtConfig,
    ) -> Result<HttpServices, HttpServicesError> {
        if auth.secret.is_empty() {
            return Err(HttpServicesError::EmptySecret);
        }
        let mut parsed = BTreeMap::new();
        for (name, t) in targets {
            let invalid = |reason: String| HttpServicesError::InvalidUrl {
                service: name.clone(),
                url: t.base_url.clone(),
                reason,
            };
            let base = Url::parse(t.base_url.trim()).map_err(|e| invalid(e.to_string()))?;
            if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
                return Err(invalid("expected an http or https URL with a host".into()));
            }
            if base.query().is_some() || base.fragment().is_some() {
                return Err(invalid("a base URL has no query or fragment".into()));
            }
            parsed.insert(
                name.clone(),
                Target {
                    base,
                    timeout: t.timeout.max(Duration::from_millis(1)),
                    retries: t.retries,
                },
            );
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("usher/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(32)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        Ok(HttpServices {
            client,
            targets: parsed,
            tokens: Tokens {
                key: EncodingKey::from_secret(&auth.secret),
                config: auth,
                cache: Mutex::new(HashMap::new()),
            },
            policy: RetryPolicy::default(),
        })
    }

    /// Replaces the backoff policy.
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> HttpServices {
        self.policy = policy;
        self
    }

    /// The names of the services this backend reaches.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.targets.keys().map(String::as_str)
    }

    /// Builds one attempt.
    fn request(
        &self,
        target: &Target,
        url: &Url,
        req: &ServiceRequest,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<reqwest::RequestBuilder, CapError> {
        let token = self.tokens.token(&req.service)?;
        let mut rb = self
            .client
            .request(method(req.method), url.clone())
            .timeout(target.timeout)
            .bearer_auth(token)
            .header(CORRELATION_HEADER, req.correlation_id.as_str());
        let mut has_content_type = false;
        for (name, value) in headers {
            has_content_type |= *name == CONTENT_TYPE;
            rb = rb.header(name.clone(), value.clone());
        }
        // W3C trace context of the `service_call` span (when traces are
        // on), so the service's spans join the caller's trace.
        for (name, value) in usher_telemetry::propagation::headers_of(&tracing::Span::current()) {
            rb = rb.header(name, value);
        }
        if let Some(body) = &req.body {
            if !has_content_type {
                rb = rb.header(CONTENT_TYPE, "application/json");
            }
            rb = rb.body(body.clone());
        }
        Ok(rb)
    }
}

fn method(m: Method) -> reqwest::Method {
    match m {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        Method::Patch => reqwest::Method::PATCH,
        Method::Delete => reqwest::Method::DELETE,
    }
}

/// The worker's extra headers, minus those the host owns.
fn extra_headers(req: &ServiceRequest) -> Result<Vec<(HeaderName, HeaderValue)>, CapError> {
    let mut out = Vec::with_capacity(req.headers.len());
    for (name, value) in &req.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            CapError::Invalid(format!(
                "service `{}`: `{name}` is not a header name",
                req.service
            ))
        })?;
        if name == AUTHORIZATION
            || name.as_str() == CORRELATION_HEADER
            || name == reqwest::header::HOST
            || name == reqwest::header::CONTENT_LENGTH
        {
            continue;
        }
        let value = HeaderValue::from_str(value).map_err(|_| {
            CapError::Invalid(format!(
                "service `{}`: the value of header `{name}` is not valid",
                req.service
            ))
        })?;
        out.push((name, value));
    }
    Ok(out)
}

fn retryable_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// A `Retry-After` of whole seconds on a 429 or 503 (HTTP dates are not
/// honoured: the backoff applies).
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    if !matches!(resp.status().as_u16(), 429 | 503) {
        return None;
    }
    resp.headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

enum Attempt {
    Done(ServiceResponse),
    RetryStatus(u16, Option<Duration>),
    Transport(reqwest::Error),
}

/// Sends one attempt. A retryable status is answered unread when another
/// attempt may follow, and read like any other on the last one.
async fn attempt(rb: reqwest::RequestBuilder, may_retry: bool) -> Attempt {
    let resp = match rb.send().await {
        Ok(r) => r,
        Err(e) => return Attempt::Transport(e),
    };
    let status = resp.status();
    if may_retry && retryable_status(status.as_u16()) {
        return Attempt::RetryStatus(status.as_u16(), retry_after(&resp));
    }
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    match resp.text().await {
        Ok(body) => Attempt::Done(ServiceResponse {
            status: status.as_u16(),
            headers,
            body,
        }),
        Err(e) => Attempt::Transport(e),
    }
}

/// Whether a transport failure is worth another attempt.
fn retryable_error(e: &reqwest::Error) -> bool {
    e.is_timeout() || e.is_connect()
}

fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[async_trait]
impl ServiceBackend for HttpServices {
    async fn call(&self, request: ServiceRequest) -> Result<ServiceResponse, CapError> {
        let target = self.targets.get(&request.service).ok_or_else(|| {
            CapError::NotFound(format!("service `{}` is not defined", request.service))
        })?;
        let url = target.url(&request.service, &request.path)?;
        let headers = extra_headers(&request)?;
        let span = tracing::info_span!(
            "service_call",
            service = %request.service,
            method = request.method.as_str(),
            path = %request.path,
            correlation_id = %request.correlation_id,
            status = tracing::field::Empty,
            attempts = tracing::field::Empty,
        );
        async {
            let mut backoff = self.policy.backoff();
            let mut attempts: u32 = 0;
            loop {
                attempts += 1;
                let rb = self.request(target, &url, &request, &headers)?;
                let retries_left = attempts <= target.retries;
                let outcome = attempt(rb, retries_left).await;
                let (delay, why) = match outcome {
                    Attempt::Done(resp) => {
                        let span = tracing::Span::current();
                        span.record("status", resp.status);
                        span.record("attempts", attempts);
                        if retryable_status(resp.status) {
                            tracing::warn!(
                                status = resp.status,
                                attempts,
                                "service still failing after retries"
                            );
                        } else {
                            tracing::debug!(status = resp.status, attempts, "service answered");
                        }
                        return Ok(resp);
                    }
                    Attempt::RetryStatus(status, after) => {
                        let delay = match after {
                            Some(d) => d.min(self.policy.max_retry_after),
                            None => backoff.next_backoff().unwrap_or(self.policy.max_backoff),
                        };
                        (delay, format!("status {status}"))
                    }
                    Attempt::Transport(e) if retries_left && retryable_error(&e) => {
                        let delay = backoff.next_backoff().unwrap_or(self.policy.max_backoff);
                        (delay, describe(&e))
                    }
                    Attempt::Transport(e) => {
                        let span = tracing::Span::current();
                        span.record("attempts", attempts);
                        let kind = if e.is_timeout() {
                            "timed out"
                        } else {
                            "failed"
                        };
                        tracing::warn!(attempts, error = %describe(&e), "service call {kind}");
                        return Err(CapError::Unavailable(format!(
                            "service `{}` {kind} after {attempts} attempt(s): {}",
                            request.service,
                            describe(&e)
                        )));
                    }
                };
                tracing::warn!(
                    attempt = attempts,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    reason = %why,
                    "service call will be retried"
                );
                tokio::time::sleep(delay).await;
            }
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(config: JwtConfig) -> Tokens {
        Tokens {
            key: EncodingKey::from_secret(&config.secret),
            config,
            cache: Mutex::new(HashMap::new()),
        }
    }

    #[test]
    fn tokens_are_cached_per_audience_and_refreshed_before_expiry() {
        let t = tokens(JwtConfig::new("app", "secret"));
        let a = t.token("entries").unwrap();
        assert_eq!(t.token("entries").unwrap(), a);
        assert_ne!(t.token("users").unwrap(), a);
        // A cached token inside the refresh margin is replaced.
        t.cache.lock().insert(
            "entries".into(),
            ("stale".into(), SystemTime::now() + Duration::from_secs(30)),
        );
        assert_ne!(t.token("entries").unwrap(), "stale");
        // One outside it is kept.
        t.cache.lock().insert(
            "entries".into(),
            ("fresh".into(), SystemTime::now() + Duration::from_secs(300)),
        );
        assert_eq!(t.token("entries").unwrap(), "fresh");
    }

    #[test]
    fn paths_stay_below_the_base_url() {
        let target = Target {
            base: Url::parse("http://svc.local:8080/api/v1").unwrap(),
            timeout: Duration::from_secs(1),
            retries: 0,
        };
        assert_eq!(
            target.url("s", "/entries/1?x=y").unwrap().as_str(),
            "http://svc.local:8080/api/v1/entries/1?x=y"
        );
        assert_eq!(
            target.url("s", "entries").unwrap().as_str(),
            "http://svc.local:8080/api/v1/entries"
        );
        assert!(target.url("s", "/../../admin").is_err());
        assert!(target.url("s", "../v1x").is_err());
        assert_eq!(
            target.url("s", "//evil.example/x").unwrap().host_str(),
            Some("svc.local")
        );
    }

    #[test]
    fn bad_base_urls_are_refused() {
        for url in ["not a url", "ftp://x/", "http://x/?q=1"] {
            let mut targets = BTreeMap::new();
            targets.insert(
                "s".to_string(),
                ServiceTarget {
                    base_url: url.into(),
                    timeout: Duration::from_secs(1),
                    retries: 0,
                },
            );
            assert!(
                HttpServices::from_targets(targets, JwtConfig::new("a", "k")).is_err(),
                "{url}"
            );
        }
        assert!(matches!(
            HttpServices::from_targets(BTreeMap::new(), JwtConfig::new("a", "")),
            Err(HttpServicesError::EmptySecret)
        ));
    }
}
