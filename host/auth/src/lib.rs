//! Bearer JWT verification for http routes that declare
//! `trigger.http.auth.jwt` in the registry, like an API gateway authorizer:
//! the host checks the token before the worker runs and hands the worker
//! the verified claims in the request header [`CLAIMS_HEADER`] (JSON),
//! after removing any header of that name the client sent.
//!
//! What is checked: the `Authorization: Bearer <jwt>` header is present;
//! the token's header names an algorithm one of the route's keys is for
//! (`alg: none` and unknown algorithms are refused); the signature with the
//! keys of exactly that algorithm (an RS256/ES256 public key is never used
//! as an HMAC secret: no algorithm confusion), with the key of the token's
//! `kid` when it names one; `exp` (required), `nbf` (when present), `iss`
//! and `aud` (both required), with `leeway_s` of clock skew.
//!
//! `usher up`'s listener and `usher lambda` build their [`Verifier`]s with
//! [`Verifiers::for_workers`] and call [`Verifier::authorize`] the same way.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Value};
use usher_registry::{JwtAlg, JwtAuth, WorkerSpec};

/// The request header carrying the verified claims (JSON) to the worker.
pub const CLAIMS_HEADER: &str = "x-usher-claims";

/// Why a request is refused (401) or a verifier cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer …` header.
    #[error("missing bearer token (Authorization: Bearer <jwt>)")]
    Missing,
    /// The token is not a JWT, or its header cannot be read (`alg: none`
    /// is refused here: it is no algorithm of the route's).
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The token's algorithm is not one of the route's keys.
    #[error("the token's algorithm {0} is not accepted")]
    Algorithm(String),
    /// No key verifies the signature.
    #[error("invalid signature")]
    Signature,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    /// `iss` is not the route's issuer.
    #[error("wrong issuer")]
    Issuer,
    /// `aud` does not hold the route's audience.
    #[error("wrong audience")]
    Audience,
    /// A required claim is missing.
    #[error("the token has no `{0}` claim")]
    MissingClaim(String),
    /// The token is refused for another reason.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The route's configuration cannot be used (start-up error).
    #[error("worker {worker}: {message}")]
    Config {
        /// The worker.
        worker: String,
        /// What is wrong.
        message: String,
    },
}

impl AuthError {
    /// The JSON body of the 401 answer.
    pub fn body(&self) -> Value {
        json!({"error": format!("unauthorized: {self}")})
    }
}

/// Where `secret:` keys come from.
pub trait SecretSource {
    /// The secret's string value.
    fn secret(&self, name: &str) -> Result<String, String>;
}

/// `usher up`'s secrets: the environment variable `USHER_SECRET_<NAME>`
/// ([`secret_env_var`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct EnvSecrets;

/// The environment variable holding the secret `name` under `usher up`:
/// `USHER_SECRET_` and the name upper-cased, every other character than
/// A-Z and 0-9 as `_` (`usher/exports/jwt` → `USHER_SECRET_USHER_EXPORTS_JWT`).
pub fn secret_env_var(name: &str) -> String {
    let tail: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("USHER_SECRET_{tail}")
}

impl SecretSource for EnvSecrets {
    fn secret(&self, name: &str) -> Result<String, String> {
        let var = secret_env_var(name);
        std::env::var(&var).map_err(|_| {
            format!(
                "the secret `{name}` is not set (under `usher up`: the environment variable {var})"
            )
        })
    }
}

/// Secrets read beforehand (`usher lambda` fetches the Secrets Manager
/// secrets the registry names at start-up).
#[derive(Debug, Default, Clone)]
pub struct MapSecrets(pub BTreeMap<String, String>);

impl SecretSource for MapSecrets {
    fn secret(&self, name: &str) -> Result<String, String> {
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| format!("the secret `{name}` was not fetched"))
    }
}

/// Every Secrets Manager secret name the workers' routes use.
pub fn secret_names<'a>(specs: impl IntoIterator<Item = &'a WorkerSpec>) -> Vec<String> {
    let mut names: Vec<String> = specs
        .into_iter()
        .filter_map(|s| s.http_auth.as_ref())
        .flat_map(|a| a.jwt.keys.iter().filter_map(|k| k.secret.clone()))
        .collect();
    names.sort();
    names.dedup();
    names
}

fn algorithm(alg: JwtAlg) -> Algorithm {
    match alg {
        JwtAlg::HS256 => Algorithm::HS256,
        JwtAlg::HS384 => Algorithm::HS384,
        JwtAlg::HS512 => Algorithm::HS512,
        JwtAlg::RS256 => Algorithm::RS256,
        JwtAlg::ES256 => Algorithm::ES256,
    }
}

struct Key {
    alg: Algorithm,
    kid: Option<String>,
    decoding: DecodingKey,
}

/// The verifier of one route.
pub struct Verifier {
    issuer: String,
    audience: String,
    leeway_s: u64,
    keys: Vec<Key>,
    /// The first HMAC key, to sign dev tokens with.
    signing: Option<(Algorithm, Option<String>, EncodingKey)>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl Verifier {
    /// The verifier of `auth` for `worker`, key material from the worker's
    /// `settings` or from `secrets`; a key that cannot be read is an
    /// [`AuthError::Config`].
    pub fn new(
        worker: &str,
        auth: &JwtAuth,
        settings: &serde_json::Map<String, Value>,
        secrets: &dyn SecretSource,
    ) -> Result<Verifier, AuthError> {
        let config = |message: String| AuthError::Config {
            worker: worker.to_string(),
            message,
        };
        let mut keys = Vec::new();
        let mut signing = None;
        for (i, key) in auth.keys.iter().enumerate() {
            let material = match (&key.setting, &key.secret) {
                (Some(setting), None) => settings
                    .get(setting)
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| {
                        config(format!("auth key {i}: no string setting `{setting}`"))
                    })?,
                (None, Some(secret)) => secrets
                    .secret(secret)
                    .map_err(|e| config(format!("auth key {i}: {e}")))?,
                _ => {
                    return Err(config(format!(
                        "auth key {i}: give exactly one of `setting` or `secret`"
                    )))
                }
            };
            let alg = algorithm(key.alg);
            let decoding = match key.alg {
                JwtAlg::HS256 | JwtAlg::HS384 | JwtAlg::HS512 => {
                    if signing.is_none() {
                        signing = Some((
                            alg,
                            key.kid.clone(),
                            EncodingKey::from_secret(material.as_bytes()),
                        ));
                    }
                    DecodingKey::from_secret(material.as_bytes())
                }
                JwtAlg::RS256 => DecodingKey::from_rsa_pem(material.as_bytes()).map_err(|e| {
                    config(format!("auth key {i}: not an RSA public key in PEM: {e}"))
                })?,
                JwtAlg::ES256 => DecodingKey::from_ec_pem(material.as_bytes()).map_err(|e| {
                    config(format!("auth key {i}: not an EC public key in PEM: {e}"))
                })?,
            };
            keys.push(Key {
                alg,
                kid: key.kid.clone(),
                decoding,
            });
        }
        if keys.is_empty() {
            return Err(config("auth: no keys".into()));
        }
        Ok(Verifier {
            issuer: auth.issuer.clone(),
            audience: auth.audience.clone(),
            leeway_s: auth.leeway_s,
            keys,
            signing,
        })
    }

    /// Verifies a compact JWT; its claims when every check passes.
    pub fn verify(&self, token: &str) -> Result<Value, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            ErrorKind::Json(_) if token_alg(token).is_some() => {
                AuthError::Algorithm(token_alg(token).unwrap_or_default())
            }
            _ => AuthError::Malformed(e.to_string()),
        })?;
        let candidates: Vec<&Key> = self
            .keys
            .iter()
            .filter(|k| k.alg == header.alg)
            .filter(|k| match (&header.kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            })
            .collect();
        if candidates.is_empty() {
            return Err(AuthError::Algorithm(format!("{:?}", header.alg)));
        }
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.leeway = self.leeway_s;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[self.issuer.as_str()]);
        validation.set_audience(&[self.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let mut last = AuthError::Signature;
        for key in candidates {
            match jsonwebtoken::decode::<Value>(token, &key.decoding, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => {
                    last = match e.kind() {
                        ErrorKind::InvalidSignature => AuthError::Signature,
                        ErrorKind::ExpiredSignature => return Err(AuthError::Expired),
                        ErrorKind::ImmatureSignature => return Err(AuthError::NotYetValid),
                        ErrorKind::InvalidIssuer => return Err(AuthError::Issuer),
                        ErrorKind::InvalidAudience => return Err(AuthError::Audience),
                        ErrorKind::MissingRequiredClaim(c) => {
                            return Err(AuthError::MissingClaim(c.clone()))
                        }
                        ErrorKind::InvalidAlgorithm => {
                            return Err(AuthError::Algorithm(format!("{:?}", header.alg)))
                        }
                        ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
                            return Err(AuthError::Malformed(e.to_string()))
                        }
                        _ => AuthError::Invalid(e.to_string()),
                    }
                }
            }
        }
        Err(last)
    }

    /// Checks a request's headers (lower- or mixed-case names): removes
    /// every [`CLAIMS_HEADER`] the client sent, verifies the bearer token
    /// and adds the claims as [`CLAIMS_HEADER`] (JSON).
    pub fn authorize(&self, headers: &mut Vec<(String, String)>) -> Result<Value, AuthError> {
        headers.retain(|(name, _)| !name.eq_ignore_ascii_case(CLAIMS_HEADER));
        let token = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
            .map(|(_, value)| value.trim())
            .and_then(|value| {
                let (scheme, rest) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        let claims = self.verify(token)?;
        headers.push((CLAIMS_HEADER.to_string(), claims.to_string()));
        Ok(claims)
    }

    /// A token for development (`usher up --dev-tokens`' `/dev/token`):
    /// `claims` with this route's `iss` and `aud`, `iat`, `exp` = now +
    /// `ttl_s` (unless given), signed with the route's first HMAC key.
    pub fn dev_token(&self, claims: &Value, ttl_s: u64, now_s: u64) -> Result<String, AuthError> {
        let (alg, kid, key) = self.signing.as_ref().ok_or_else(|| AuthError::Config {
            worker: String::new(),
            message: "no HMAC key to sign dev tokens with".into(),
        })?;
        let mut claims = match claims {
            Value::Object(o) => o.clone(),
            Value::Null => serde_json::Map::new(),
            _ => {
                return Err(AuthError::Invalid(
                    "the claims must be a JSON object".into(),
                ))
            }
        };
        claims.insert("iss".into(), json!(self.issuer));
        claims.insert("aud".into(), json!(self.audience));
        claims.insert("iat".into(), json!(now_s));
        claims
            .entry("exp".to_string())
            .or_insert_with(|| json!(now_s + ttl_s));
        let mut header = Header::new(*alg);
        header.kid = kid.clone();
        jsonwebtoken::encode(&header, &Value::Object(claims), key)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }

    /// Whether [`Verifier::dev_token`] can sign.
    pub fn can_sign(&self) -> bool {
        self.signing.is_some()
    }
}

/// The `alg` of a token's header when it is one jsonwebtoken does not know
/// (`none`, `HS1` …), for the error message.
fn token_alg(token: &str) -> Option<String> {
    let head = token.split('.').next()?;
    let bytes = URL_SAFE_NO_PAD.decode(head.trim_end_matches('=')).ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    value.get("alg")?.as_str().map(str::to_string)
}

/// The verifiers of every worker whose http route declares auth.
#[derive(Debug, Default, Clone)]
pub struct Verifiers {
    by_worker: BTreeMap<String, Arc<Verifier>>,
}

impl Verifiers {
    /// The verifier of each worker of `specs` that declares `http.auth`;
    /// the first key that cannot be read fails them all (a protected route
    /// never runs unprotected).
    pub fn for_workers<'a>(
        specs: impl IntoIterator<Item = &'a WorkerSpec>,
        secrets: &dyn SecretSource,
    ) -> Result<Verifiers, AuthError> {
        let mut by_worker = BTreeMap::new();
        for spec in specs {
            if let Some(auth) = &spec.http_auth {
                let verifier = Verifier::new(&spec.name, &auth.jwt, &spec.settings, secrets)?;
                by_worker.insert(spec.name.clone(), Arc::new(verifier));
            }
        }
        Ok(Verifiers { by_worker })
    }

    /// The verifier of `worker`; `None` when its route is open.
    pub fn get(&self, worker: &str) -> Option<&Arc<Verifier>> {
        self.by_worker.get(worker)
    }

    /// Every protected worker and its verifier.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Arc<Verifier>)> {
        self.by_worker.iter().map(|(w, v)| (w.as_str(), v))
    }

    /// Whether no route is protected.
    pub fn is_empty(&self) -> bool {
        self.by_worker.is_empty()
    }
}

#[cfg(test)]
mod tests;
