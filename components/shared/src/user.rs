//! Fans' user records, as the User Service stores them
//! (`services/user-service`, `openapi.yaml` beside it) and as
//! `registration/upsert-users` reads them from the `user-info` queue.
//!
//! A user is a JSON object `{"globalUserId", "email", "firstName"?,
//! "lastName"?, "country"?, "locale"?, …}`; attributes not named here are
//! kept as they are. [`validate`] is the one check both use, so that the
//! worker refuses exactly what the service would.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// At most this many users in one `POST /users/batch-upsert` (more is a 413).
pub const MAX_USERS_PER_BATCH: usize = crate::CHUNK_SIZE;

/// The longest `globalUserId` accepted, in bytes.
pub const MAX_USER_ID_BYTES: usize = 256;

/// A fan's user record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// The fan's global id (non-empty).
    pub global_user_id: String,
    /// A valid e-mail address.
    pub email: String,
    /// Given name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Family name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// ISO 3166-1 alpha-2 country code, upper case (`US`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Preferred locale (`en-US`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// Every other attribute.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The officially assigned ISO 3166-1 alpha-2 codes.
const ISO_COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ \
BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ \
CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ \
DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR \
GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY \
HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP \
KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY \
MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ \
NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY \
QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ \
TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ \
VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

/// Whether `code` is an ISO 3166-1 alpha-2 country code (upper case).
pub fn is_country_code(code: &str) -> bool {
    code.len() == 2 && ISO_COUNTRIES.split(' ').any(|c| c == code)
}

/// Whether `email` is a plausible address: one `@`, a local part of 1 to 64
/// characters without spaces or control characters, a domain of dot-separated
/// labels (letters, digits, `-`, not starting or ending with `-`) with at
/// least one dot, at most 254 characters in all.
pub fn is_valid_email(email: &str) -> bool {
    if email.len() > 254 {
        return false;
    }
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    if local.is_empty()
        || local.len() > 64
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
        || local.chars().any(|c| {
            c.is_whitespace()
                || c.is_control()
                || matches!(
                    c,
                    '@' | '"' | '(' | ')' | ',' | ':' | ';' | '<' | '>' | '[' | '\\' | ']'
                )
        })
    {
        return false;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_alphabetic()))
}

/// An optional string attribute: absent or null is `None`; anything but a
/// string is refused.
fn optional_string(object: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("{name} must be a string, not {other}")),
    }
}

/// Checks a user record and answers it normalized (the country in upper
/// case, null optional attributes dropped), or why it is refused: not an
/// object, `globalUserId` missing, empty, not a string or over
/// [`MAX_USER_ID_BYTES`], `email` missing or not an address, `country` not an
/// ISO 3166-1 alpha-2 code, `firstName`/`lastName`/`locale` not strings.
pub fn validate(value: &Value) -> Result<User, String> {
    let object = value
        .as_object()
        .ok_or_else(|| "a user must be a JSON object".to_string())?;
    let id = match object.get("globalUserId") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) => return Err("globalUserId is empty".into()),
        None | Some(Value::Null) => return Err("globalUserId is required".into()),
        Some(other) => return Err(format!("globalUserId must be a string, not {other}")),
    };
    if id.len() > MAX_USER_ID_BYTES {
        return Err(format!(
            "globalUserId is {} bytes, over the limit of {MAX_USER_ID_BYTES}",
            id.len()
        ));
    }
    let email = match object.get("email") {
        Some(Value::String(s)) if is_valid_email(s) => s.clone(),
        Some(Value::String(s)) => return Err(format!("email {s:?} is not a valid address")),
        None | Some(Value::Null) => return Err("email is required".into()),
        Some(other) => return Err(format!("email must be a string, not {other}")),
    };
    let country = match optional_string(object, "country")? {
        None => None,
        Some(c) => {
            let upper = c.to_ascii_uppercase();
            if !is_country_code(&upper) {
                return Err(format!("country {c:?} is not an ISO 3166-1 alpha-2 code"));
            }
            Some(upper)
        }
    };
    let mut other = object.clone();
    for known in [
        "globalUserId",
        "email",
        "firstName",
        "lastName",
        "country",
        "locale",
    ] {
        other.remove(known);
    }
    Ok(User {
        global_user_id: id,
        email,
        first_name: optional_string(object, "firstName")?,
        last_name: optional_string(object, "lastName")?,
        country,
        locale: optional_string(object, "locale")?,
        other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_country_list_is_the_assigned_codes() {
        let codes: Vec<&str> = ISO_COUNTRIES.split(' ').collect();
        assert_eq!(codes.len(), 249);
        let mut sorted = codes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, codes, "sorted and without duplicates");
        for ok in ["US", "GB", "DE", "JP", "BR", "ZW", "AX"] {
            assert!(is_country_code(ok), "{ok}");
        }
        for bad in ["UK", "XX", "us", "USA", "", "EU"] {
            assert!(!is_country_code(bad), "{bad}");
        }
    }

    #[test]
    fn emails() {
        for ok in [
            "a@b.co",
            "first.last+tag@mail.example.com",
            "x_y@sub-domain.io",
        ] {
            assert!(is_valid_email(ok), "{ok}");
        }
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@localhost",
            "a@@b.com",
            "a b@c.com",
            "a@b..com",
            "a@-b.com",
            ".a@b.com",
            "a..b@c.com",
            "a@b.c0m",
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
        assert!(!is_valid_email(&format!("{}@b.com", "a".repeat(65))));
    }

    #[test]
    fn validate_normalizes_and_keeps_other_attributes() {
        let user = validate(&json!({
            "globalUserId": "u1", "email": "a@b.co", "country": "us",
            "firstName": "Ada", "lastName": null, "tier": 3,
        }))
        .expect("valid");
        assert_eq!(user.country.as_deref(), Some("US"));
        assert_eq!(
            serde_json::to_value(&user).expect("json"),
            json!({"globalUserId": "u1", "email": "a@b.co", "country": "US", "firstName": "Ada", "tier": 3})
        );
    }

    #[test]
    fn validate_says_why() {
        let cases = [
            (json!([]), "object"),
            (json!({"email": "a@b.co"}), "globalUserId is required"),
            (json!({"globalUserId": " ", "email": "a@b.co"}), "empty"),
            (
                json!({"globalUserId": 7, "email": "a@b.co"}),
                "must be a string",
            ),
            (json!({"globalUserId": "u"}), "email is required"),
            (
                json!({"globalUserId": "u", "email": "nope"}),
                "not a valid address",
            ),
            (
                json!({"globalUserId": "u", "email": "a@b.co", "country": "XX"}),
                "ISO 3166-1",
            ),
            (
                json!({"globalUserId": "u", "email": "a@b.co", "firstName": 1}),
                "firstName must be a string",
            ),
            (
                json!({"globalUserId": "u".repeat(300), "email": "a@b.co"}),
                "over the limit",
            ),
        ];
        for (value, reason) in cases {
            let err = validate(&value).expect_err("invalid");
            assert!(err.contains(reason), "{value}: {err}");
        }
    }
}
