//! Every refused token, and the accepted ones, against real signatures.

use super::*;
use jsonwebtoken::{encode, EncodingKey, Header};
use usher_registry::JwtKey;

const SECRET: &str = "a-test-secret-of-enough-length-0123456789";
const RSA_PRIVATE: &str = include_str!("../testdata/rsa.pem");
const RSA_PUBLIC: &str = include_str!("../testdata/rsa.pub.pem");
const RSA_OTHER_PRIVATE: &str = include_str!("../testdata/rsa2.pem");
const EC_PRIVATE: &str = include_str!("../testdata/ec.pem");
const EC_PUBLIC: &str = include_str!("../testdata/ec.pub.pem");

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn key(alg: JwtAlg, setting: &str) -> JwtKey {
    JwtKey {
        alg,
        kid: None,
        setting: Some(setting.into()),
        secret: None,
    }
}

fn verifier(keys: Vec<JwtKey>) -> Verifier {
    let auth = JwtAuth {
        issuer: "https://issuer.test/".into(),
        audience: "exports".into(),
        leeway_s: 0,
        keys,
    };
    let mut settings = serde_json::Map::new();
    settings.insert("hs".into(), json!(SECRET));
    settings.insert("rsa".into(), json!(RSA_PUBLIC));
    settings.insert("ec".into(), json!(EC_PUBLIC));
    Verifier::new("exports/export-api", &auth, &settings, &EnvSecrets).expect("verifier")
}

fn all_keys() -> Verifier {
    verifier(vec![
        key(JwtAlg::HS256, "hs"),
        key(JwtAlg::RS256, "rsa"),
        key(JwtAlg::ES256, "ec"),
    ])
}

fn claims() -> Value {
    json!({"sub": "u1", "iss": "https://issuer.test/", "aud": "exports",
           "exp": now() + 300, "permissions": ["REPORT"], "campaigns": ["c1"]})
}

fn with(mut base: Value, name: &str, value: Value) -> Value {
    base[name] = value;
    base
}

fn hs(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

fn rs(claims: &Value, pem: &str) -> String {
    encode(
        &Header::new(Algorithm::RS256),
        claims,
        &EncodingKey::from_rsa_pem(pem.as_bytes()).expect("rsa key"),
    )
    .expect("sign")
}

fn es(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::ES256),
        claims,
        &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).expect("ec key"),
    )
    .expect("sign")
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn valid_tokens_of_each_algorithm_are_accepted_with_their_claims() {
    let v = all_keys();
    for token in [hs(&claims()), rs(&claims(), RSA_PRIVATE), es(&claims())] {
        let got = v.verify(&token).expect("valid");
        assert_eq!(got["sub"], "u1");
        assert_eq!(got["permissions"], json!(["REPORT"]));
    }
}

#[test]
fn expired_and_not_yet_valid_tokens_are_refused() {
    let v = all_keys();
    let expired = with(claims(), "exp", json!(now() - 10));
    assert_eq!(v.verify(&hs(&expired)), Err(AuthError::Expired));
    let future = with(claims(), "nbf", json!(now() + 600));
    assert_eq!(v.verify(&hs(&future)), Err(AuthError::NotYetValid));
    let mut no_exp = claims();
    no_exp.as_object_mut().map(|o| o.remove("exp"));
    assert_eq!(
        v.verify(&hs(&no_exp)),
        Err(AuthError::MissingClaim("exp".into()))
    );
}

#[test]
fn wrong_audience_and_issuer_are_refused() {
    let v = all_keys();
    let aud = with(claims(), "aud", json!("another-api"));
    assert_eq!(v.verify(&hs(&aud)), Err(AuthError::Audience));
    let iss = with(claims(), "iss", json!("https://evil.test/"));
    assert_eq!(v.verify(&rs(&iss, RSA_PRIVATE)), Err(AuthError::Issuer));
    let mut no_aud = claims();
    no_aud.as_object_mut().map(|o| o.remove("aud"));
    assert_eq!(
        v.verify(&hs(&no_aud)),
        Err(AuthError::MissingClaim("aud".into()))
    );
}

#[test]
fn wrongly_signed_tokens_are_refused() {
    let v = all_keys();
    let other_secret = encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(b"another secret"),
    )
    .expect("sign");
    assert_eq!(v.verify(&other_secret), Err(AuthError::Signature));
    assert_eq!(
        v.verify(&rs(&claims(), RSA_OTHER_PRIVATE)),
        Err(AuthError::Signature)
    );
    // A valid token whose payload was changed after signing.
    let token = hs(&claims());
    let parts: Vec<&str> = token.split('.').collect();
    let forged = b64(with(claims(), "campaigns", json!(["*"]))
        .to_string()
        .as_bytes());
    let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
    assert_eq!(v.verify(&tampered), Err(AuthError::Signature));
}

#[test]
fn unsigned_and_alg_none_tokens_are_refused() {
    let v = all_keys();
    let payload = b64(claims().to_string().as_bytes());
    for alg in ["none", "None", "NONE"] {
        let header = b64(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes());
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}"),
        ] {
            match v.verify(&token) {
                Err(AuthError::Algorithm(_)) | Err(AuthError::Malformed(_)) => {}
                other => panic!("alg {alg} accepted: {other:?}"),
            }
        }
    }
    // A well-formed HS256 header with the signature stripped.
    let token = hs(&claims());
    let unsigned = format!("{}.", token.rsplit_once('.').map_or("", |(h, _)| h));
    assert!(matches!(
        v.verify(&unsigned),
        Err(AuthError::Signature) | Err(AuthError::Malformed(_))
    ));
    assert!(matches!(
        v.verify("not-a-jwt"),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused() {
    // The classic confusion: an HS256 token whose HMAC secret is the
    // server's RSA public key. Routes with only the RSA key refuse the
    // algorithm; routes with both never use the PEM as a secret.
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
    )
    .expect("sign");
    let rsa_only = verifier(vec![key(JwtAlg::RS256, "rsa")]);
    assert_eq!(
        rsa_only.verify(&forged),
        Err(AuthError::Algorithm("HS256".into()))
    );
    assert_eq!(all_keys().verify(&forged), Err(AuthError::Signature));
    // And the other way: an RS256 token on a route with only an HMAC key.
    let hs_only = verifier(vec![key(JwtAlg::HS256, "hs")]);
    assert_eq!(
        hs_only.verify(&rs(&claims(), RSA_PRIVATE)),
        Err(AuthError::Algorithm("RS256".into()))
    );
    // An ES256 token on a route with RS256 and HS256 only.
    let no_ec = verifier(vec![key(JwtAlg::HS256, "hs"), key(JwtAlg::RS256, "rsa")]);
    assert_eq!(
        no_ec.verify(&es(&claims())),
        Err(AuthError::Algorithm("ES256".into()))
    );
}

#[test]
fn authorize_strips_a_forged_claims_header_and_sets_the_verified_one() {
    let v = all_keys();
    let mut headers = vec![
        (
            "X-Usher-Claims".to_string(),
            r#"{"permissions":["ADMIN"]}"#.to_string(),
        ),
        (
            "authorization".to_string(),
            format!("Bearer {}", hs(&claims())),
        ),
    ];
    v.authorize(&mut headers).expect("authorized");
    let sent: Vec<&(String, String)> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(CLAIMS_HEADER))
        .collect();
    assert_eq!(sent.len(), 1);
    let claims: Value = serde_json::from_str(&sent[0].1).expect("json");
    assert_eq!(claims["permissions"], json!(["REPORT"]));

    let mut forged_only = vec![(CLAIMS_HEADER.to_string(), "{}".to_string())];
    assert_eq!(v.authorize(&mut forged_only), Err(AuthError::Missing));
    assert!(forged_only.is_empty(), "the forged header is removed");
    let mut basic = vec![("authorization".to_string(), "Basic dTpw".to_string())];
    assert_eq!(v.authorize(&mut basic), Err(AuthError::Missing));
    assert_eq!(
        AuthError::Expired.body(),
        json!({"error": "unauthorized: the token has expired"})
    );
}

#[test]
fn keys_come_from_secrets_and_a_bad_key_fails_at_start() {
    let auth = JwtAuth {
        issuer: "i".into(),
        audience: "a".into(),
        leeway_s: 0,
        keys: vec![JwtKey {
            alg: JwtAlg::HS256,
            kid: Some("k1".into()),
            setting: None,
            secret: Some("usher/exports/jwt".into()),
        }],
    };
    let settings = serde_json::Map::new();
    let missing = Verifier::new("w", &auth, &settings, &MapSecrets::default());
    assert!(matches!(missing, Err(AuthError::Config { .. })));
    let secrets = MapSecrets(BTreeMap::from([(
        "usher/exports/jwt".to_string(),
        SECRET.to_string(),
    )]));
    let v = Verifier::new("w", &auth, &settings, &secrets).expect("verifier");
    let token = v
        .dev_token(&json!({"sub": "dev"}), 60, now())
        .expect("dev token");
    assert_eq!(v.verify(&token).expect("valid")["sub"], "dev");
    assert_eq!(
        secret_env_var("usher/exports/jwt"),
        "USHER_SECRET_USHER_EXPORTS_JWT"
    );

    let mut bad = auth.clone();
    bad.keys[0] = key(JwtAlg::RS256, "rsa");
    let mut settings = serde_json::Map::new();
    settings.insert("rsa".into(), json!("not a pem"));
    assert!(matches!(
        Verifier::new("w", &bad, &settings, &EnvSecrets),
        Err(AuthError::Config { .. })
    ));
}
