//! The authentication an http route declares (`trigger.http.auth`): the host
//! verifies a bearer JWT before the worker runs (`usher-auth`).
//!
//! ```yaml
//! trigger:
//!   http:
//!     route: /exports
//!     auth:
//!       jwt:
//!         issuer: https://auth.example.com/
//!         audience: usher-exports
//!         leeway_s: 5            # clock skew accepted on exp/nbf (default 5)
//!         keys:
//!           - { alg: HS256, setting: jwt_secret }           # the worker's setting holds the secret
//!           - { alg: RS256, kid: k1, setting: jwt_rsa_pem }  # a PEM public key
//!           - { alg: ES256, secret: usher/exports/es256 }    # a Secrets Manager secret name
//! ```

use serde::{Deserialize, Serialize};

/// The authentication of an http route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpAuth {
    /// Bearer JWTs.
    pub jwt: JwtAuth,
}

/// How a route's bearer JWTs are verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtAuth {
    /// The required `iss`.
    pub issuer: String,
    /// The required `aud` (one of the token's audiences).
    pub audience: String,
    /// The clock skew accepted on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_s: u64,
    /// The keys a token may be signed with; a token's `alg` picks the keys
    /// of that algorithm only (no algorithm confusion).
    pub keys: Vec<JwtKey>,
}

fn default_leeway() -> u64 {
    5
}

/// The accepted signature algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtAlg {
    /// HMAC SHA-256 with a shared secret.
    HS256,
    /// HMAC SHA-384 with a shared secret.
    HS384,
    /// HMAC SHA-512 with a shared secret.
    HS512,
    /// RSA PKCS#1 v1.5 SHA-256 with a PEM public key.
    RS256,
    /// ECDSA P-256 SHA-256 with a PEM public key.
    ES256,
}

impl JwtAlg {
    /// A shared-secret (HMAC) algorithm.
    pub fn is_hmac(self) -> bool {
        matches!(self, JwtAlg::HS256 | JwtAlg::HS384 | JwtAlg::HS512)
    }
}

/// One verification key and where its material comes from: exactly one of
/// `setting` (the worker's setting of that name) or `secret` (a Secrets
/// Manager secret name; under `usher up` the environment variable
/// `USHER_SECRET_<NAME>`, the name upper-cased with every other character
/// than A-Z and 0-9 as `_`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKey {
    /// The algorithm this key verifies.
    pub alg: JwtAlg,
    /// The key id a token names in its `kid` header (optional).
    #[serde(default)]
    pub kid: Option<String>,
    /// The worker's setting holding the key material.
    #[serde(default)]
    pub setting: Option<String>,
    /// The Secrets Manager secret holding the key material.
    #[serde(default)]
    pub secret: Option<String>,
}

impl HttpAuth {
    /// The problems of this declaration for a worker with `settings`.
    pub(crate) fn problems(
        &self,
        settings: &serde_json::Map<String, serde_json::Value>,
    ) -> Vec<String> {
        let jwt = &self.jwt;
        let mut problems = Vec::new();
        if jwt.issuer.trim().is_empty() {
            problems.push("http.auth.jwt.issuer must not be empty".to_string());
        }
        if jwt.audience.trim().is_empty() {
            problems.push("http.auth.jwt.audience must not be empty".to_string());
        }
        if jwt.keys.is_empty() {
            problems.push("http.auth.jwt.keys must name at least one key".to_string());
        }
        for (i, key) in jwt.keys.iter().enumerate() {
            match (&key.setting, &key.secret) {
                (Some(setting), None) => match settings.get(setting) {
                    Some(serde_json::Value::String(s)) if !s.is_empty() => {}
                    Some(_) => problems.push(format!(
                        "http.auth.jwt.keys[{i}]: the setting `{setting}` must be a non-empty string"
                    )),
                    None => problems.push(format!(
                        "http.auth.jwt.keys[{i}]: the worker has no setting `{setting}`"
                    )),
                },
                (None, Some(secret)) if !secret.trim().is_empty() => {}
                _ => problems.push(format!(
                    "http.auth.jwt.keys[{i}]: give exactly one of `setting` or `secret`"
                )),
            }
        }
        problems
    }
}
