//! Who may register to a campaign, and with what entry: the rules that
//! `registration/check-eligibility` answers with and that
//! `registration/submit-entry` applies before it writes anything (both call
//! [`evaluate`], so they can never disagree).
//!
//! # The request
//!
//! `{"slug", "marketId"?, "entry": {…}?, "userInfo": {"globalUserId",
//! "email", "country"?, "firstName"?, "lastName"?, "locale"?, …},
//! "doTransfer"?}`, either as it is or inside an AppSync resolver event's
//! `arguments` ([`parse_request`]).
//!
//! # The checks, in order (the first that fails is the reason)
//!
//! | reason | when |
//! | --- | --- |
//! | `INVALID_REQUEST` | the request is malformed: no `slug`, no `userInfo.globalUserId`, an `email` that is not one, `entry` not an object or over [`MAX_ENTRY_BYTES`], a `country` that is not two letters, `marketId` missing on a submission … |
//! | `CAMPAIGN_NOT_FOUND` | no campaign has this slug (a slug that is not `[a-z0-9-]`, 1–128 characters, is not looked up) |
//! | `CAMPAIGN_NOT_OPEN` | the campaign's status is not `OPEN` (`DRAFT`, `CLOSED`) |
//! | `CAMPAIGN_NOT_STARTED` | now is before `opensAt` |
//! | `CAMPAIGN_ENDED` | now is at or after `closesAt` |
//! | `UNKNOWN_MARKET` | `marketId` is given and the campaign has no such market |
//! | `COUNTRY_NOT_ALLOWED` | the gate lists countries and `userInfo.country` is missing or not one of them (case-insensitive) |
//! | `NOT_INVITED` | the gate is invite-only and the Entry Service has no invite for the e-mail (`GET /campaigns/{id}/invites/{email}`, e-mail lower-cased) |
//! | `NO_LINKED_CAMPAIGN` | `doTransfer` is true and the campaign has no `linkedCampaignId` (or names itself) |
//! | `NOTHING_TO_TRANSFER` | `doTransfer` is true and the fan has no entry in the linked campaign (nor one transferred from it already) |
//! | `ALREADY_SELECTED` | the entry to transfer (or, in `submit-entry`, the fan's entry in this campaign) has a verdict other than `PENDING`: the draw has been made and is not undone |
//! | `MISSING_FIELD` | a required field is absent or `null` |
//! | `UNKNOWN_FIELD` | the entry holds a field the campaign does not define |
//! | `INVALID_FIELD` | a field's value has the wrong type or breaks a constraint (`minLength`/`maxLength` on strings, e-mails and dates; `min`/`max` on numbers and integers; `enum` on any type) |
//!
//! A refusal is an answer (`isEligible: false`, `reason`, `message`,
//! `field` for the field reasons), not an error. Errors ([`LookupError`])
//! are what keeps the worker from answering at all: the Campaign Service
//! unreachable while the campaign is not cached, the Entry Service
//! unreachable for an invite check, a campaign whose times cannot be read.
//!
//! # `doTransfer`
//!
//! A campaign may name a `linkedCampaignId`: the campaign whose
//! registrations may be transferred into it (a postponed show's new date, a
//! presale that replaces another). With `doTransfer: true` the fan's entry
//! in the linked campaign (the `demand-table` item
//! `ENTRY#<linkedCampaignId>#<globalUserId>`, still `PENDING`) is the base
//! of the new entry: its fields, overridden by the request's `entry` (which
//! may be empty), are validated against this campaign's fields. The rest of
//! the transfer (writing the entry here with `transferredFrom`, removing the
//! old one) is `submit-entry`'s; `check-eligibility` only says whether it
//! would succeed. A transfer retried after the old entry is gone finds this
//! campaign's entry marked `transferredFrom` the linked campaign and is
//! answered as a resubmission of it.
//!
//! # Campaigns and markets: cache-aside
//!
//! [`campaign_by_slug`] and [`market`] read the cache first (keys
//! [`campaign_key`] `campaign:slug:<slug>` and [`market_key`]
//! `campaign:<campaignId>:market:<marketId>`, TTL [`CACHE_TTL_SECONDS`] =
//! 3600 s), then the Campaign Service (`GET /campaigns/by-slug/{slug}`,
//! `GET /campaigns/{id}/markets/{marketId}`) and store its answer. A 404 is
//! cached too, briefly (negative caching: the value `null` for
//! [`NOT_FOUND_TTL_SECONDS`] = 30 s), so a flood of requests naming a slug
//! that does not exist costs one Campaign Service call per 30 s; a campaign
//! created meanwhile is found at most 30 s late. A cache that fails (read or
//! write) is logged and bypassed: the service answers instead. With the
//! campaign cached, a Campaign Service outage does not stop the answers;
//! without it, the answer is the error `CampaignServiceUnavailable` (never
//! "not found"). A campaign changed in the Campaign Service is seen here
//! when its cache entry expires (at most an hour), as in the seed.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::campaign::{Campaign, CampaignStatus, FieldDef, FieldType, Gate, Market};
use crate::Verdict;

/// How long a campaign or market found in the Campaign Service is cached.
pub const CACHE_TTL_SECONDS: u32 = 3600;
/// How long a campaign or market the Campaign Service does not know (404)
/// is cached.
pub const NOT_FOUND_TTL_SECONDS: u32 = 30;
/// The largest entry (its JSON text) a fan may submit.
pub const MAX_ENTRY_BYTES: usize = 16 * 1024;
/// The longest slug, market id or user id looked up.
pub const MAX_ID_LEN: usize = 128;

/// Why a fan may not register (see the [module docs](self) for when each
/// applies). Its JSON form is the code, e.g. `"CAMPAIGN_NOT_FOUND"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// The request is malformed.
    InvalidRequest,
    /// No campaign has the slug.
    CampaignNotFound,
    /// The campaign's status is not `OPEN`.
    CampaignNotOpen,
    /// The campaign opens later.
    CampaignNotStarted,
    /// The campaign has closed.
    CampaignEnded,
    /// The campaign has no such market.
    UnknownMarket,
    /// The fan's country is not admitted.
    CountryNotAllowed,
    /// The campaign is invite-only and the fan has no invite.
    NotInvited,
    /// `doTransfer` on a campaign without a linked campaign.
    NoLinkedCampaign,
    /// `doTransfer` without an entry in the linked campaign.
    NothingToTransfer,
    /// The entry has a verdict already.
    AlreadySelected,
    /// A required field is missing.
    MissingField,
    /// The entry holds a field the campaign does not define.
    UnknownField,
    /// A field's value is not valid.
    InvalidField,
}

impl Reason {
    /// The code, e.g. `CAMPAIGN_NOT_FOUND`.
    pub fn code(self) -> &'static str {
        match self {
            Reason::InvalidRequest => "INVALID_REQUEST",
            Reason::CampaignNotFound => "CAMPAIGN_NOT_FOUND",
            Reason::CampaignNotOpen => "CAMPAIGN_NOT_OPEN",
            Reason::CampaignNotStarted => "CAMPAIGN_NOT_STARTED",
            Reason::CampaignEnded => "CAMPAIGN_ENDED",
            Reason::UnknownMarket => "UNKNOWN_MARKET",
            Reason::CountryNotAllowed => "COUNTRY_NOT_ALLOWED",
            Reason::NotInvited => "NOT_INVITED",
            Reason::NoLinkedCampaign => "NO_LINKED_CAMPAIGN",
            Reason::NothingToTransfer => "NOTHING_TO_TRANSFER",
            Reason::AlreadySelected => "ALREADY_SELECTED",
            Reason::MissingField => "MISSING_FIELD",
            Reason::UnknownField => "UNKNOWN_FIELD",
            Reason::InvalidField => "INVALID_FIELD",
        }
    }

    /// Every reason, in the order of the checks.
    pub const ALL: [Reason; 14] = [
        Reason::InvalidRequest,
        Reason::CampaignNotFound,
        Reason::CampaignNotOpen,
        Reason::CampaignNotStarted,
        Reason::CampaignEnded,
        Reason::UnknownMarket,
        Reason::CountryNotAllowed,
        Reason::NotInvited,
        Reason::NoLinkedCampaign,
        Reason::NothingToTransfer,
        Reason::AlreadySelected,
        Reason::MissingField,
        Reason::UnknownField,
        Reason::InvalidField,
    ];
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A refusal: the reason, a message for people, and the field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The reason code.
    pub reason: Reason,
    /// What was wrong, for people.
    pub message: String,
    /// The entry field (`MISSING_FIELD`, `UNKNOWN_FIELD`, `INVALID_FIELD`).
    pub field: Option<String>,
}

impl Refusal {
    /// A refusal without a field.
    pub fn new(reason: Reason, message: impl Into<String>) -> Refusal {
        Refusal {
            reason,
            message: message.into(),
            field: None,
        }
    }

    /// A refusal about an entry field.
    pub fn field(reason: Reason, field: &str, message: impl Into<String>) -> Refusal {
        Refusal {
            reason,
            message: message.into(),
            field: Some(field.to_string()),
        }
    }
}

/// What keeps a registration worker from answering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// The Campaign Service could not be reached (and the campaign or market
    /// was not cached).
    CampaignServiceUnavailable(String),
    /// The Campaign Service answered something else than the thing or a 404.
    CampaignServiceError(String),
    /// The Entry Service could not be reached for an invite check.
    EntryServiceUnavailable(String),
    /// The Entry Service answered an invite check with something unexpected.
    EntryServiceError(String),
    /// The campaign's data cannot be used (its times do not parse).
    InvalidCampaign(String),
    /// The `demand-table` could not be read.
    Table(String),
}

impl LookupError {
    /// The error type a resolver answers (`errorType`).
    pub fn kind(&self) -> &'static str {
        match self {
            LookupError::CampaignServiceUnavailable(_) => "CampaignServiceUnavailable",
            LookupError::CampaignServiceError(_) => "CampaignServiceError",
            LookupError::EntryServiceUnavailable(_) => "EntryServiceUnavailable",
            LookupError::EntryServiceError(_) => "EntryServiceError",
            LookupError::InvalidCampaign(_) => "InvalidCampaign",
            LookupError::Table(_) => "Unavailable",
        }
    }
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupError::CampaignServiceUnavailable(m) => {
                write!(f, "the Campaign Service is unavailable: {m}")
            }
            LookupError::CampaignServiceError(m) => write!(f, "the Campaign Service failed: {m}"),
            LookupError::EntryServiceUnavailable(m) => {
                write!(f, "the Entry Service is unavailable: {m}")
            }
            LookupError::EntryServiceError(m) => write!(f, "the Entry Service failed: {m}"),
            LookupError::InvalidCampaign(m) => write!(f, "the campaign cannot be used: {m}"),
            LookupError::Table(m) => write!(f, "the demand-table cannot be read: {m}"),
        }
    }
}

impl std::error::Error for LookupError {}

/// The outside world the checks need, implemented by each worker with the
/// SDK's capabilities (and by tests with fakes). Errors are messages.
pub trait Lookup {
    /// The cached value under `key` (`None`: absent or expired).
    fn cache_get(&mut self, key: &str) -> Result<Option<String>, String>;
    /// Caches `value` under `key` for `ttl_seconds`.
    fn cache_set(&mut self, key: &str, value: &str, ttl_seconds: u32) -> Result<(), String>;
    /// `GET path` on a service: its status and body (`Err`: no answer).
    fn get(&mut self, service: &str, path: &str) -> Result<(u16, String), String>;
    /// The fan's `demand-table` entry item in a campaign, if any.
    fn entry(&mut self, campaign_id: &str, global_user_id: &str) -> Result<Option<Value>, String>;
    /// Logs a warning (a cache that failed and was bypassed).
    fn warn(&mut self, message: &str);
}

/// The names of the services the checks call (registry grants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Services {
    /// The Campaign Service (`campaigns`).
    pub campaigns: String,
    /// The Entry Service (`entries`), for invites.
    pub entries: String,
}

impl Default for Services {
    fn default() -> Self {
        Services {
            campaigns: "campaigns".into(),
            entries: "entries".into(),
        }
    }
}

/// The fan as the request describes it. Its JSON form is the user record
/// the `user-info` queue gets: `{"globalUserId","email","firstName"?,
/// "lastName"?,"country"?,"locale"?, …other attributes}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserInfo {
    /// The fan.
    pub global_user_id: String,
    /// The fan's e-mail.
    pub email: String,
    /// First name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Last name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// ISO 3166-1 alpha-2 (as given; compared case-insensitively).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// The fan's locale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// Every other attribute.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A registration request (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The campaign's slug.
    pub slug: String,
    /// The market the fan registers for.
    pub market_id: Option<String>,
    /// The entry's fields (`{}` when not given).
    pub entry: Map<String, Value>,
    /// The fan.
    pub user_info: UserInfo,
    /// Transfer the fan's entry from the linked campaign.
    pub do_transfer: bool,
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::new(Reason::InvalidRequest, message)
}

fn id_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_ID_LEN && !s.chars().any(char::is_control)
}

/// Whether `s` is an e-mail address, by the User Service's rule
/// ([`crate::user::is_valid_email`]).
pub fn is_email(s: &str) -> bool {
    // The User Service's rule, so that a fan registration accepts is never
    // refused later by registration/upsert-users.
    crate::user::is_valid_email(s)
}

/// Whether `s` is a slug the Campaign Service could hold: `[a-z0-9-]`,
/// 1–128 characters.
pub fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Reads a request: the payload itself, or its `arguments` when it is an
/// AppSync resolver event (an object with an `arguments` object).
pub fn parse_request(payload: &Value) -> Result<Request, Refusal> {
    let args = match payload.get("arguments") {
        Some(Value::Object(_)) => &payload["arguments"],
        _ => payload,
    };
    let Some(args) = args.as_object() else {
        return Err(invalid("the arguments must be a JSON object"));
    };
    let slug = match args.get("slug") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(invalid("`slug` is required (a non-empty string)")),
    };
    let market_id = match args.get("marketId") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if id_ok(s) => Some(s.clone()),
        Some(_) => {
            return Err(invalid(format!(
                "`marketId` must be a non-empty string of at most {MAX_ID_LEN} characters"
            )))
        }
    };
    let entry = match args.get("entry") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(o)) => o.clone(),
        Some(_) => return Err(invalid("`entry` must be a JSON object")),
    };
    check_entry_size(&entry)?;
    let user_info: UserInfo = match args.get("userInfo") {
        Some(v @ Value::Object(_)) => serde_json::from_value(v.clone())
            .map_err(|e| invalid(format!("`userInfo` is not valid: {e}")))?,
        _ => {
            return Err(invalid(
                "`userInfo` is required: {\"globalUserId\", \"email\", …}",
            ))
        }
    };
    if !id_ok(&user_info.global_user_id) {
        return Err(invalid(format!(
            "`userInfo.globalUserId` must be a non-empty string of at most {MAX_ID_LEN} characters"
        )));
    }
    if !is_email(&user_info.email) {
        return Err(invalid(format!(
            "`userInfo.email` is not an e-mail address: {:?}",
            user_info.email
        )));
    }
    if let Some(country) = &user_info.country {
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(invalid(format!(
                "`userInfo.country` must be an ISO 3166-1 alpha-2 code, not {country:?}"
            )));
        }
    }
    let do_transfer = match args.get("doTransfer") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("`doTransfer` must be a boolean")),
    };
    Ok(Request {
        slug,
        market_id,
        entry,
        user_info,
        do_transfer,
    })
}

fn check_entry_size(entry: &Map<String, Value>) -> Result<(), Refusal> {
    let size = serde_json::to_string(entry).map(|s| s.len()).unwrap_or(0);
    if size > MAX_ENTRY_BYTES {
        return Err(invalid(format!(
            "the entry is {size} bytes; at most {MAX_ENTRY_BYTES} are accepted"
        )));
    }
    Ok(())
}

// ------------------------------------------------------------------ time

// One calendar for every worker: the RFC 3339 and date parsing of
// `crate::rfc3339`, under the names this module's callers use.
pub use crate::rfc3339::{
    format_millis as format_rfc3339_ms, parse_date, parse_millis as parse_rfc3339_ms,
};

// ------------------------------------------------------------------ rules

/// The campaign's status and window at `now_ms`.
pub fn check_campaign(campaign: &Campaign, now_ms: i64) -> Result<Option<Refusal>, LookupError> {
    if campaign.status != CampaignStatus::Open {
        let status = serde_json::to_value(campaign.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        return Ok(Some(Refusal::new(
            Reason::CampaignNotOpen,
            format!("the campaign is {status}, not OPEN"),
        )));
    }
    let time = |name: &str, value: &str| {
        parse_rfc3339_ms(value).ok_or_else(|| {
            LookupError::InvalidCampaign(format!(
                "campaign {}: `{name}` is not an RFC 3339 time: {value:?}",
                campaign.id
            ))
        })
    };
    let opens = time("opensAt", &campaign.opens_at)?;
    let closes = time("closesAt", &campaign.closes_at)?;
    if now_ms < opens {
        return Ok(Some(Refusal::new(
            Reason::CampaignNotStarted,
            format!("registrations open at {}", campaign.opens_at),
        )));
    }
    if now_ms >= closes {
        return Ok(Some(Refusal::new(
            Reason::CampaignEnded,
            format!("registrations closed at {}", campaign.closes_at),
        )));
    }
    Ok(None)
}

/// The countries gate (an invite-only gate needs the Entry Service: see
/// [`evaluate`]).
pub fn check_countries(countries: &[String], user: &UserInfo) -> Option<Refusal> {
    match &user.country {
        Some(c) if countries.iter().any(|a| a.eq_ignore_ascii_case(c)) => None,
        Some(c) => Some(Refusal::new(
            Reason::CountryNotAllowed,
            format!(
                "the campaign admits fans from {} only, not {}",
                countries.join(", "),
                c.to_ascii_uppercase()
            ),
        )),
        None => Some(Refusal::new(
            Reason::CountryNotAllowed,
            format!(
                "the campaign admits fans from {} only, and `userInfo.country` is missing",
                countries.join(", ")
            ),
        )),
    }
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whether `value` fits `def` (type, then constraints); the problem when
/// not.
pub fn check_value(def: &FieldDef, value: &Value) -> Result<(), String> {
    let wrong = |what: &str| Err(format!("must be {what}, not {}", describe(value)));
    let is_integer = |v: &Value| {
        v.is_i64()
            || v.is_u64()
            || v.as_f64()
                .is_some_and(|f| f.is_finite() && f.fract() == 0.0)
    };
    match def.field_type {
        FieldType::String if !value.is_string() => return wrong("a string"),
        FieldType::Number if !value.is_number() => return wrong("a number"),
        FieldType::Integer if !is_integer(value) => return wrong("an integer"),
        FieldType::Boolean if !value.is_boolean() => return wrong("a boolean"),
        FieldType::Email => match value.as_str() {
            Some(s) if is_email(s) => {}
            Some(_) => return Err("must be an e-mail address".into()),
            None => return wrong("an e-mail address (a string)"),
        },
        FieldType::Date => match value.as_str() {
            Some(s) if parse_date(s).is_some() => {}
            Some(_) => return Err("must be a date, YYYY-MM-DD".into()),
            None => return wrong("a date (a string, YYYY-MM-DD)"),
        },
        _ => {}
    }
    let c = &def.constraints;
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as u64;
        if let Some(min) = c.min_length {
            if len < u64::from(min) {
                return Err(format!("must have at least {min} characters, not {len}"));
            }
        }
        if let Some(max) = c.max_length {
            if len > u64::from(max) {
                return Err(format!("must have at most {max} characters, not {len}"));
            }
        }
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = c.min {
            if n < min {
                return Err(format!("must be at least {min}, not {n}"));
            }
        }
        if let Some(max) = c.max {
            if n > max {
                return Err(format!("must be at most {max}, not {n}"));
            }
        }
    }
    if let Some(allowed) = &c.one_of {
        let same = |a: &Value| match (a.as_f64(), value.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => a == value,
        };
        if !allowed.iter().any(same) {
            return Err(format!("must be one of {}", Value::Array(allowed.clone())));
        }
    }
    Ok(())
}

/// The entry against the campaign's fields: every required field present
/// (not null), no field the campaign does not define, every value valid.
/// Fields are checked in the campaign's order, unknown ones last.
pub fn check_entry(fields: &[FieldDef], entry: &Map<String, Value>) -> Option<Refusal> {
    for def in fields {
        match entry.get(&def.name) {
            None | Some(Value::Null) => {
                if def.required {
                    return Some(Refusal::field(
                        Reason::MissingField,
                        &def.name,
                        format!("`{}` is required", def.name),
                    ));
                }
            }
            Some(value) => {
                if let Err(problem) = check_value(def, value) {
                    return Some(Refusal::field(
                        Reason::InvalidField,
                        &def.name,
                        format!("`{}` {problem}", def.name),
                    ));
                }
            }
        }
    }
    entry
        .keys()
        .find(|k| !fields.iter().any(|f| &f.name == *k))
        .map(|k| {
            Refusal::field(
                Reason::UnknownField,
                k,
                format!("the campaign has no field `{k}`"),
            )
        })
}

// ------------------------------------------------------------------ lookups

/// A path segment, percent-encoded (every byte but `A-Z a-z 0-9 - . _ ~`).
pub use crate::assignment::encode_component as encode_segment;

/// The cache key of a campaign by slug: `campaign:slug:<slug>`.
pub fn campaign_key(slug: &str) -> String {
    format!("campaign:slug:{slug}")
}

/// The cache key of a market: `campaign:<campaignId>:market:<marketId>`.
pub fn market_key(campaign_id: &str, market_id: &str) -> String {
    format!("campaign:{campaign_id}:market:{market_id}")
}

fn cached<T: serde::de::DeserializeOwned>(
    lookup: &mut dyn Lookup,
    key: &str,
    service: &str,
    path: &str,
) -> Result<Option<T>, LookupError> {
    match lookup.cache_get(key) {
        Ok(Some(text)) => match serde_json::from_str::<Value>(&text) {
            Ok(Value::Null) => return Ok(None),
            Ok(v) => match serde_json::from_value::<T>(v) {
                Ok(t) => return Ok(Some(t)),
                Err(e) => lookup.warn(&format!(
                    "cache entry {key} is not usable ({e}); asking the service"
                )),
            },
            Err(e) => lookup.warn(&format!(
                "cache entry {key} is not JSON ({e}); asking the service"
            )),
        },
        Ok(None) => {}
        Err(e) => lookup.warn(&format!(
            "the cache failed reading {key} ({e}); asking the service"
        )),
    }
    let (status, body) = lookup
        .get(service, path)
        .map_err(|e| LookupError::CampaignServiceUnavailable(format!("GET {path}: {e}")))?;
    let (found, ttl) = match status {
        200..=299 => {
            let t: T = serde_json::from_str(&body).map_err(|e| {
                LookupError::CampaignServiceError(format!("GET {path}: unexpected answer: {e}"))
            })?;
            (Some(t), CACHE_TTL_SECONDS)
        }
        404 => (None, NOT_FOUND_TTL_SECONDS),
        500..=599 | 429 => {
            return Err(LookupError::CampaignServiceUnavailable(format!(
                "GET {path}: {status} {body}"
            )))
        }
        _ => {
            return Err(LookupError::CampaignServiceError(format!(
                "GET {path}: {status} {body}"
            )))
        }
    };
    let value = if found.is_some() {
        body.clone()
    } else {
        "null".to_string()
    };
    if let Err(e) = lookup.cache_set(key, &value, ttl) {
        lookup.warn(&format!("the cache failed writing {key} ({e})"));
    }
    Ok(found)
}

/// The campaign with this slug (cache-aside; see the [module docs](self)).
/// `None` when it does not exist (or the slug cannot be one).
pub fn campaign_by_slug(
    lookup: &mut dyn Lookup,
    services: &Services,
    slug: &str,
) -> Result<Option<Campaign>, LookupError> {
    if !is_slug(slug) {
        return Ok(None);
    }
    cached(
        lookup,
        &campaign_key(slug),
        &services.campaigns,
        &format!("/campaigns/by-slug/{}", encode_segment(slug)),
    )
}

/// A campaign's market (cache-aside). `None` when it does not exist.
pub fn market(
    lookup: &mut dyn Lookup,
    services: &Services,
    campaign_id: &str,
    market_id: &str,
) -> Result<Option<Market>, LookupError> {
    if !id_ok(market_id) {
        return Ok(None);
    }
    let found: Option<Market> = cached(
        lookup,
        &market_key(campaign_id, market_id),
        &services.campaigns,
        &format!(
            "/campaigns/{}/markets/{}",
            encode_segment(campaign_id),
            encode_segment(market_id)
        ),
    )?;
    Ok(found.filter(|m| m.id == market_id && m.campaign_id == campaign_id))
}

/// Whether the Entry Service has an invite for `email` (lower-cased) to
/// the campaign.
pub fn is_invited(
    lookup: &mut dyn Lookup,
    services: &Services,
    campaign_id: &str,
    email: &str,
) -> Result<bool, LookupError> {
    let path = format!(
        "/campaigns/{}/invites/{}",
        encode_segment(campaign_id),
        encode_segment(&email.to_lowercase())
    );
    let (status, body) = lookup
        .get(&services.entries, &path)
        .map_err(|e| LookupError::EntryServiceUnavailable(format!("GET {path}: {e}")))?;
    match status {
        200..=299 => serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v.get("invited").and_then(Value::as_bool))
            .ok_or_else(|| {
                LookupError::EntryServiceError(format!(
                    "GET {path}: expected {{\"invited\": bool}}, got {body}"
                ))
            }),
        500..=599 | 429 => Err(LookupError::EntryServiceUnavailable(format!(
            "GET {path}: {status} {body}"
        ))),
        _ => Err(LookupError::EntryServiceError(format!(
            "GET {path}: {status} {body}"
        ))),
    }
}

fn verdict_of(item: &Value) -> Verdict {
    item.get("verdict")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

// ------------------------------------------------------------------ evaluate

/// A transfer from the linked campaign (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq)]
pub struct Transfer {
    /// The linked campaign the entry comes from.
    pub from: String,
    /// The fan's entry item there (`None` when it was transferred already
    /// and this is a retry).
    pub source: Option<Value>,
}

/// The outcome of the checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The campaign, when found.
    pub campaign: Option<Campaign>,
    /// The market, when one was named and found.
    pub market: Option<Market>,
    /// Why the fan may not register; `None`: eligible.
    pub refusal: Option<Refusal>,
    /// The entry to register: the request's, or with `doTransfer` the
    /// linked campaign's entry overridden by the request's fields.
    pub entry: Map<String, Value>,
    /// With `doTransfer`, where the entry comes from.
    pub transfer: Option<Transfer>,
}

impl Evaluation {
    /// A refusal (for a request refused before [`evaluate`], e.g. by
    /// [`parse_request`]: `Evaluation::refused(None, None, Map::new(), r)`).
    pub fn refused(
        campaign: Option<Campaign>,
        market: Option<Market>,
        entry: Map<String, Value>,
        refusal: Refusal,
    ) -> Evaluation {
        Evaluation {
            campaign,
            market,
            refusal: Some(refusal),
            entry,
            transfer: None,
        }
    }

    /// Whether the fan may register.
    pub fn is_eligible(&self) -> bool {
        self.refusal.is_none()
    }

    /// The resolver's answer: `{"isEligible", "campaignId" (null when not
    /// found), "fields" (the campaign's field definitions, `[]` when not
    /// found), "linkedCampaignId"?, "marketId"?, "transferFrom"?,
    /// "reason"?, "message"?, "field"?}`.
    pub fn answer(&self) -> Value {
        let mut out = Map::new();
        out.insert("isEligible".into(), Value::Bool(self.is_eligible()));
        out.insert(
            "campaignId".into(),
            self.campaign
                .as_ref()
                .map(|c| Value::String(c.id.clone()))
                .unwrap_or(Value::Null),
        );
        out.insert(
            "fields".into(),
            self.campaign
                .as_ref()
                .and_then(|c| serde_json::to_value(&c.fields).ok())
                .unwrap_or_else(|| json!([])),
        );
        if let Some(linked) = self
            .campaign
            .as_ref()
            .and_then(|c| c.linked_campaign_id.clone())
        {
            out.insert("linkedCampaignId".into(), Value::String(linked));
        }
        if let Some(m) = &self.market {
            out.insert("marketId".into(), Value::String(m.id.clone()));
        }
        if let Some(t) = &self.transfer {
            out.insert("transferFrom".into(), Value::String(t.from.clone()));
        }
        if let Some(r) = &self.refusal {
            out.insert("reason".into(), Value::String(r.reason.code().into()));
            out.insert("message".into(), Value::String(r.message.clone()));
            if let Some(f) = &r.field {
                out.insert("field".into(), Value::String(f.clone()));
            }
        }
        Value::Object(out)
    }
}

/// Runs every check of the [module docs](self) on a request, at `now_ms`.
pub fn evaluate(
    lookup: &mut dyn Lookup,
    services: &Services,
    request: &Request,
    now_ms: i64,
) -> Result<Evaluation, LookupError> {
    let entry = request.entry.clone();
    let Some(campaign) = campaign_by_slug(lookup, services, &request.slug)? else {
        return Ok(Evaluation::refused(
            None,
            None,
            entry,
            Refusal::new(
                Reason::CampaignNotFound,
                format!("no campaign has the slug {:?}", request.slug),
            ),
        ));
    };
    if let Some(refusal) = check_campaign(&campaign, now_ms)? {
        return Ok(Evaluation::refused(Some(campaign), None, entry, refusal));
    }
    let mut found_market = None;
    if let Some(mid) = &request.market_id {
        match market(lookup, services, &campaign.id, mid)? {
            Some(m) => found_market = Some(m),
            None => {
                let refusal = Refusal::new(
                    Reason::UnknownMarket,
                    format!("the campaign has no market {mid:?}"),
                );
                return Ok(Evaluation::refused(Some(campaign), None, entry, refusal));
            }
        }
    }
    let gate_refusal = match &campaign.gate {
        Gate::None => None,
        Gate::Countries { countries } => check_countries(countries, &request.user_info),
        Gate::InviteOnly => {
            if is_invited(lookup, services, &campaign.id, &request.user_info.email)? {
                None
            } else {
                Some(Refusal::new(
                    Reason::NotInvited,
                    format!(
                        "the campaign is invite-only and {} has no invite",
                        request.user_info.email.to_lowercase()
                    ),
                ))
            }
        }
    };
    if let Some(refusal) = gate_refusal {
        return Ok(Evaluation::refused(
            Some(campaign),
            found_market,
            entry,
            refusal,
        ));
    }
    let mut entry = entry;
    let mut transfer = None;
    if request.do_transfer {
        match transfer_base(lookup, &campaign, &request.user_info.global_user_id)? {
            Ok((t, base)) => {
                let mut merged = base;
                for (k, v) in entry {
                    merged.insert(k, v);
                }
                entry = merged;
                transfer = Some(t);
            }
            Err(refusal) => {
                return Ok(Evaluation::refused(
                    Some(campaign),
                    found_market,
                    entry,
                    refusal,
                ))
            }
        }
        if let Err(refusal) = check_entry_size(&entry) {
            return Ok(Evaluation::refused(
                Some(campaign),
                found_market,
                entry,
                refusal,
            ));
        }
    }
    let refusal = check_entry(&campaign.fields, &entry);
    Ok(Evaluation {
        campaign: Some(campaign),
        market: found_market,
        refusal,
        entry,
        transfer,
    })
}

type TransferBase = Result<(Transfer, Map<String, Value>), Refusal>;

fn transfer_base(
    lookup: &mut dyn Lookup,
    campaign: &Campaign,
    user: &str,
) -> Result<TransferBase, LookupError> {
    let Some(from) = campaign
        .linked_campaign_id
        .clone()
        .filter(|l| !l.is_empty() && *l != campaign.id)
    else {
        return Ok(Err(Refusal::new(
            Reason::NoLinkedCampaign,
            format!(
                "campaign {} has no linked campaign to transfer from",
                campaign.id
            ),
        )));
    };
    let fields_of = |item: &Value| {
        item.get("entry")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    if let Some(item) = lookup.entry(&from, user).map_err(LookupError::Table)? {
        if verdict_of(&item) != Verdict::Pending {
            return Ok(Err(Refusal::new(
                Reason::AlreadySelected,
                format!(
                    "the entry in campaign {from} has been drawn already and cannot be transferred"
                ),
            )));
        }
        let base = fields_of(&item);
        return Ok(Ok((
            Transfer {
                from,
                source: Some(item),
            },
            base,
        )));
    }
    // A retry after the transfer: this campaign's entry came from `from`.
    if let Some(item) = lookup
        .entry(&campaign.id, user)
        .map_err(LookupError::Table)?
    {
        if item.get("transferredFrom").and_then(Value::as_str) == Some(from.as_str()) {
            let base = fields_of(&item);
            return Ok(Ok((Transfer { from, source: None }, base)));
        }
    }
    Ok(Err(Refusal::new(
        Reason::NothingToTransfer,
        format!("the fan has no entry in the linked campaign {from} to transfer"),
    )))
}

#[cfg(feature = "sdk")]
mod sdk;
#[cfg(feature = "sdk")]
pub use sdk::{now_ms, table_setting, SdkLookup};

#[cfg(test)]
mod tests;
