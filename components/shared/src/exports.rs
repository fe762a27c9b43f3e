//! Export jobs (issue 13): the job item, its states, the export types and
//! their columns, the request's validation and the token's permissions.
//! Shared by `exports/export-api` (creates and lists jobs),
//! `exports/run-export` (claims and runs them) and `exports/expire-exports`
//! (returns abandoned jobs).
//!
//! ## Items of the jobs table (`exports`, keys `PK`/`SK`)
//! - the job: `{"PK":"CAMPAIGN#<c>","SK":"EXPORT#<exportId>", …ExportJob}`;
//!   every write of a job is conditional on its `version` (read before) and
//!   increments it, so a writer that lost the job (another runner's claim,
//!   the expiry) cannot change it any more.
//! - the dedupe item of a job still PENDING or TRIGGERED:
//!   `{"PK":"CAMPAIGN#<c>","SK":"ACTIVE#<fingerprint>","exportId","createdAt"}`,
//!   created `not-exists` before the job: an identical request finds it and
//!   gets the same job.
//! - the index of unfinished jobs: `{"PK":"ACTIVE","SK":"<c>#<exportId>",
//!   "campaignId","exportId"}`, read by the expiry.
//!
//! ## States
//! `PENDING` → `TRIGGERED` (claimed: `lease {owner, expiresAtMs}`, `fencing`
//! grows with every claim) → `FINISHED` | `FAILED` | `EXPIRED`. A TRIGGERED
//! job whose lease expired goes back to PENDING (up to [`MAX_ATTEMPTS`]
//! claims) or to EXPIRED.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// The permission an export needs (the seed's `permissionsEnum.REPORT`).
pub const REPORT_PERMISSION: &str = "REPORT";

/// How many times a job is claimed at most before it is EXPIRED.
pub const MAX_ATTEMPTS: u32 = 3;

/// A runner's lease, in milliseconds; renewed every third of it.
pub const LEASE_MS: i64 = 30_000;

/// The largest request body of `POST …/exports`, in bytes (413 above).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The longest id (campaign, market) accepted.
pub const MAX_ID_LEN: usize = 128;

/// The jobs table's partition of unfinished jobs.
pub const ACTIVE_PARTITION: &str = "ACTIVE";

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ExportState {
    /// Waiting for a runner.
    Pending,
    /// Claimed by a runner (see `lease`).
    Triggered,
    /// Its file is written and complete.
    Finished,
    /// A source failed: see `error`.
    Failed,
    /// Abandoned [`MAX_ATTEMPTS`] times.
    Expired,
}

impl ExportState {
    /// FINISHED, FAILED and EXPIRED never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ExportState::Finished | ExportState::Failed | ExportState::Expired
        )
    }
}

/// A runner's hold on a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    /// Who holds it (the runner's invocation).
    pub owner: String,
    /// When it runs out, in Unix milliseconds.
    pub expires_at_ms: i64,
}

/// Where a job's file is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportFile {
    /// The objects bucket.
    pub bucket: String,
    /// The object key: `exports/<campaignId>/<exportId>/attempt-<fencing>.<ext>`.
    pub key: String,
    /// How to fetch it: the runner's `location_prefix` setting followed by
    /// the key (a local folder under `usher up`, an `s3://bucket/` URL on AWS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// MIME type.
    pub content_type: String,
}

/// The file a runner is about to complete (written before `finish`, so
/// that a runner killed after `finish` leaves its file adoptable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Completing {
    /// The file.
    pub file: ExportFile,
    /// Its data rows.
    pub row_count: u64,
    /// The claim (fencing number) that wrote it.
    pub fencing: u64,
}

/// An export job, as stored (with `PK`/`SK`) and as answered (without).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportJob {
    /// Unique, time-ordered.
    pub export_id: String,
    /// The campaign.
    pub campaign_id: String,
    /// The type's name (see [`ExportType`]).
    pub export_type: String,
    /// One market, or every market of the campaign when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub market_id: Option<String>,
    /// The state.
    pub state: ExportState,
    /// The identity of the request (see [`fingerprint`]).
    pub fingerprint: String,
    /// The token's `sub`.
    #[serde(default)]
    pub requested_by: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Incremented by every write (the condition of the next one).
    pub version: u64,
    /// Incremented by every claim.
    #[serde(default)]
    pub fencing: u64,
    /// Claims so far.
    #[serde(default)]
    pub attempts: u32,
    /// The runner's hold while TRIGGERED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// Data rows written (FINISHED).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_count: Option<u64>,
    /// Bytes (FINISHED).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The file (FINISHED).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<ExportFile>,
    /// A file being completed (TRIGGERED).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completing: Option<Completing>,
    /// Why it FAILED or EXPIRED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it was FINISHED, FAILED or EXPIRED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

impl ExportJob {
    /// The job item's key.
    pub fn key(&self) -> Value {
        job_key(&self.campaign_id, &self.export_id)
    }

    /// The job as stored: with `PK`/`SK`.
    pub fn item(&self) -> Value {
        let mut item = serde_json::to_value(self).unwrap_or(Value::Null);
        if let (Value::Object(o), Value::Object(k)) = (&mut item, self.key()) {
            o.extend(k);
        }
        item
    }

    /// The job from a stored item (ignoring `PK`/`SK`).
    pub fn from_item(item: Value) -> Result<ExportJob, String> {
        serde_json::from_value(item).map_err(|e| format!("not an export job: {e}"))
    }

    /// The answer of the API: the job without internal fields.
    pub fn view(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(o) = &mut v {
            o.remove("fingerprint");
            o.remove("completing");
            o.remove("version");
        }
        v
    }
}

/// The key of a job.
pub fn job_key(campaign_id: &str, export_id: &str) -> Value {
    json!({"PK": campaign_partition(campaign_id), "SK": format!("EXPORT#{export_id}")})
}

/// The partition of a campaign's jobs.
pub fn campaign_partition(campaign_id: &str) -> String {
    format!("CAMPAIGN#{campaign_id}")
}

/// The key of the dedupe item of a request's fingerprint.
pub fn dedupe_key(campaign_id: &str, fingerprint: &str) -> Value {
    json!({"PK": campaign_partition(campaign_id), "SK": format!("ACTIVE#{fingerprint}")})
}

/// The key of a job's entry in the index of unfinished jobs.
pub fn active_key(campaign_id: &str, export_id: &str) -> Value {
    json!({"PK": ACTIVE_PARTITION, "SK": format!("{campaign_id}#{export_id}")})
}

/// The queue message asking a runner to run a job.
pub fn run_message(campaign_id: &str, export_id: &str) -> Value {
    json!({"campaignId": campaign_id, "exportId": export_id})
}

/// The file of a job's claim: `exports/<c>/<exportId>/attempt-<fencing>.<ext>`.
pub fn object_key(campaign_id: &str, export_id: &str, fencing: u64, ext: &str) -> String {
    format!("exports/{campaign_id}/{export_id}/attempt-{fencing}.{ext}")
}

/// A new time-ordered export id: 13 digits of Unix milliseconds, `-`, 12
/// hex characters of a digest of the request and the time.
pub fn new_export_id(now_ms: i64, campaign_id: &str, fingerprint: &str, nonce: &str) -> String {
    let digest = Sha256::digest(format!("{now_ms}\n{campaign_id}\n{fingerprint}\n{nonce}"));
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{now_ms:013}-{hex}")
}

/// Where an export's rows come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Source {
    /// Entry Service `GET /markets/{m}/entries` (paged).
    Entries,
    /// Entry Service entries joined with User Service `GET /users/{id}`.
    EntriesWithUsers,
    /// Entry Service `GET /markets/{m}/selections` (paged).
    Selections,
    /// Selections joined with User Service users.
    SelectionsWithUsers,
    /// Code Service `GET /pools/{c}/{m}/codes` (paged).
    Codes,
    /// Code Service `GET /pools/{c}/{m}`.
    CodePools,
    /// Campaign Service `GET /campaigns/{c}/markets`.
    Markets,
    /// Campaign Service `GET /campaigns/{c}/markets/{m}/stats`.
    MarketStats,
    /// User Service `GET /email-jobs?campaignId=` (paged).
    EmailJobs,
    /// The draw records of the `draws` table (`DRAW#<c>.<m>`).
    Draws,
    /// The campaign itself (Campaign Service `GET /campaigns/{c}`).
    Campaign,
}

/// One export type: its name, columns, source and the verdict it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportType {
    /// The `exportType` of the request.
    pub name: &'static str,
    /// What it holds.
    pub description: &'static str,
    /// The fixed columns, in order (`entries`, `users`: then one column per
    /// campaign field, `field:<name>`).
    pub columns: &'static [&'static str],
    /// The source.
    pub source: Source,
    /// Only selections of this verdict (selection sources).
    pub verdict: Option<&'static str>,
    /// One CSV per market in a zip archive instead of one CSV.
    pub zip_per_market: bool,
    /// Whether the campaign's fields are added as columns.
    pub field_columns: bool,
}

impl ExportType {
    /// The file's extension.
    pub fn extension(&self) -> &'static str {
        if self.zip_per_market {
            "zip"
        } else {
            "csv"
        }
    }

    /// The file's MIME type.
    pub fn content_type(&self) -> &'static str {
        if self.zip_per_market {
            "application/zip"
        } else {
            "text/csv; charset=utf-8"
        }
    }
}

const ENTRY_COLUMNS: &[&str] = &[
    "campaignId",
    "marketId",
    "globalUserId",
    "email",
    "version",
    "createdAt",
    "updatedAt",
];
const USER_COLUMNS: &[&str] = &[
    "campaignId",
    "marketId",
    "globalUserId",
    "email",
    "firstName",
    "lastName",
    "country",
    "locale",
];
const SELECTION_COLUMNS: &[&str] = &[
    "campaignId",
    "marketId",
    "globalUserId",
    "verdict",
    "code",
    "drawId",
];
const PEOPLE_COLUMNS: &[&str] = &[
    "campaignId",
    "marketId",
    "globalUserId",
    "email",
    "firstName",
    "lastName",
    "code",
    "drawId",
];

/// Every export type (14).
pub const EXPORT_TYPES: &[ExportType] = &[
    ExportType {
        name: "entries",
        description: "every entry of the market(s), with the campaign's entry fields",
        columns: ENTRY_COLUMNS,
        source: Source::Entries,
        verdict: None,
        zip_per_market: false,
        field_columns: true,
    },
    ExportType {
        name: "scoring",
        description: "every entry's score",
        columns: &["campaignId", "marketId", "globalUserId", "score", "version"],
        source: Source::Entries,
        verdict: None,
        zip_per_market: false,
        field_columns: false,
    },
    ExportType {
        name: "users",
        description: "the fans who entered, with their User Service record and entry fields",
        columns: USER_COLUMNS,
        source: Source::EntriesWithUsers,
        verdict: None,
        zip_per_market: false,
        field_columns: true,
    },
    ExportType {
        name: "selections",
        description: "every verdict of the draw(s): winners, waitlist, losers",
        columns: SELECTION_COLUMNS,
        source: Source::Selections,
        verdict: None,
        zip_per_market: false,
        field_columns: false,
    },
    ExportType {
        name: "winners",
        description: "the winners, their code and contact",
        columns: PEOPLE_COLUMNS,
        source: Source::SelectionsWithUsers,
        verdict: Some("WINNER"),
        zip_per_market: false,
        field_columns: false,
    },
    ExportType {
        name: "waitlist",
        description: "the waitlisted fans and their contact",
        columns: PEOPLE_COLUMNS,
        source: Source::SelectionsWithUsers,
        verdict: Some("WAITLIST"),
        zip_per_market: false,
        field_columns: false,
    },
    ExportType {
        name: "losers",
        description: "the fans not drawn",
        columns: SELECTION_COLUMNS,
        source: Source::Selections,
        verdict: Some("LOSER"),
        zip_per_market: false,
        field_columns: false,
    },
    ExportType {
        name: "reminder_email",
        description: "one CSV per market of the winners to remind (e-mail, name, code, event), in one zip archive",
        columns: &[
            "email",
            "firstName",
            "lastName",
            "code",
            "marketId",
            "eventName",
            "venue",
            "locale",
            "globalUserId",
        ],
        source: Source::SelectionsWithUsers,
        verdict: Some("WINNER"),
        zip_per_market: true,
        field_columns: false,
    },
    ExportType {
        name: "codes",
        description: "every access code of the market(s)' pools, its state and fan",
        columns: &["campaignId", "marketId", "code", "status", "globalUserId"],
        source: Source::Codes,
        verdict: None,
        zip_per_market: false,
        field_columns: false,
    },
    ExportType {
        name: "code_pools",
        description: "the code counts of each market's pool",
        columns: &[
            "campaignId", "marketId", "total", "available", "reserved", "assigned", "marked",
        ],
        source: Source::CodePools,
        verdict: None,
        zip_per_market: false,
        field_columns: false,
    },
    ExportType {
        name: "markets",
        description: "the campaign's markets",
        columns: &[
            "campaignId",
            "marketId",
            "eventId",
            "eventName",
            "venue",
            "selectionCount",
            "waitlistCount",
        ],
        source: Source::Markets,
        verdict: None,
        zip_per_market: false,
        field_columns: false,
    },
    ExportType {
        name: "market_stats",
        description: "each market's selection stats: expected and reported verdict counts",
        columns: &[
            "campaignId",
            "marketId",
            "status",
            "drawId",
            "entries",
            "expectedWinners",
            "expectedWaitlist",
            "expectedLosers",
            "reportedWinners",
            "reportedWaitlist",
            "reportedLosers",
            "reports",
            "updatedAt",
        ],
        source: Source::MarketStats,
        verdict: None,
        zip_per_market: false,
        field_columns: false,
    },
    ExportType {
        name: "draws",
        description: "each market's draw record (rule, seed, counts, digests)",
        columns: &[
            "campaignId",
            "marketId",
            "drawId",
            "rule",
            "seed",
            "status",
            "entries",
            "winners",
            "waitlist",
            "losers",
            "inputDigest",
            "resultDigest",
            "createdAt",
        ],
        source: Source::Draws,
        verdict: None,
        zip_per_market: false,
        field_columns: false,
    },
    ExportType {
        name: "email_jobs",
        description: "the e-mail jobs sent to the User Service for the campaign (reminders)",
        columns: &[
            "campaignId",
            "marketId",
            "jobId",
            "templateId",
            "fans",
            "sendAt",
            "receivedAt",
            "triggeredAt",
        ],
        source: Source::EmailJobs,
        verdict: None,
        zip_per_market: false,
        field_columns: false,
    },
    ExportType {
        name: "campaign",
        description: "the campaign: one row of its settings and field definitions",
        columns: &[
            "campaignId",
            "slug",
            "name",
            "status",
            "opensAt",
            "closesAt",
            "fields",
            "linkedCampaignId",
        ],
        source: Source::Campaign,
        verdict: None,
        zip_per_market: false,
        field_columns: false,
    },
];

/// The export type named `name`.
pub fn export_type(name: &str) -> Option<&'static ExportType> {
    EXPORT_TYPES.iter().find(|t| t.name == name)
}

/// A validated `POST /campaigns/{c}/exports` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRequest {
    /// The type.
    pub export_type: &'static ExportType,
    /// One market, or all.
    pub market_id: Option<String>,
}

/// Checks an id (campaign, market): 1..=128 characters, no `#`, `/`, or
/// control characters.
pub fn check_id(what: &str, id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(format!("{what} must be 1 to {MAX_ID_LEN} characters"));
    }
    if id.contains(['#', '/']) || id.chars().any(char::is_control) {
        return Err(format!(
            "{what} must not contain `#`, `/` or control characters"
        ));
    }
    Ok(())
}

/// Validates a request body: `{"exportType", "marketId"?}` and nothing
/// else; the reason of the 400 otherwise.
pub fn parse_request(body: &Value) -> Result<ExportRequest, String> {
    let Value::Object(fields) = body else {
        return Err("the body must be a JSON object".into());
    };
    for name in fields.keys() {
        if !["exportType", "marketId"].contains(&name.as_str()) {
            return Err(format!("unknown field `{name}` (exportType, marketId)"));
        }
    }
    let name = match fields.get("exportType") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err("exportType must be a string".into()),
        None => return Err("exportType is required".into()),
    };
    let export_type = export_type(name).ok_or_else(|| {
        format!(
            "unknown exportType `{name}`; one of: {}",
            EXPORT_TYPES
                .iter()
                .map(|t| t.name)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let market_id = match fields.get("marketId") {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) => {
            check_id("marketId", m)?;
            Some(m.clone())
        }
        Some(_) => return Err("marketId must be a string".into()),
    };
    if export_type.source == Source::Campaign && market_id.is_some() {
        return Err(format!("exportType `{name}` takes no marketId"));
    }
    Ok(ExportRequest {
        export_type,
        market_id,
    })
}

/// The identity of a request: two requests with the same fingerprint ask
/// for the same file (campaign, type, market).
pub fn fingerprint(campaign_id: &str, request: &ExportRequest) -> String {
    let digest = Sha256::digest(format!(
        "{campaign_id}\n{}\n{}",
        request.export_type.name,
        request.market_id.as_deref().unwrap_or("*")
    ));
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The verified claims the host hands over (`x-usher-claims`): `sub`,
/// `permissions` (strings), `campaigns` (ids; `"*"` for every campaign).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Claims {
    /// Who.
    #[serde(default)]
    pub sub: String,
    /// What they may do.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// The campaigns in their scope.
    #[serde(default)]
    pub campaigns: Vec<String>,
}

impl Claims {
    /// Reads the claims header's JSON.
    pub fn parse(header: Option<&str>) -> Result<Claims, String> {
        let text = header.ok_or("no verified claims: the route must declare JWT auth")?;
        serde_json::from_str(text).map_err(|e| format!("the claims are not readable: {e}"))
    }

    /// Why these claims may not use `permission` on `campaign_id`, if so
    /// (the 403's reason).
    pub fn refuse(&self, permission: &str, campaign_id: &str) -> Option<String> {
        if !self.permissions.iter().any(|p| p == permission) {
            return Some(format!("the token lacks the {permission} permission"));
        }
        if !self.campaigns.iter().any(|c| c == "*" || c == campaign_id) {
            return Some(format!(
                "campaign {campaign_id} is not in the token's scope"
            ));
        }
        None
    }
}

/// A CSV cell of a JSON value: strings as they are, `null`/absent empty,
/// numbers and booleans as JSON text, arrays and objects as JSON.
pub fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The header of an export with the campaign's field names.
pub fn header(export_type: &ExportType, fields: &[String]) -> Vec<String> {
    let mut header: Vec<String> = export_type
        .columns
        .iter()
        .map(|c| (*c).to_string())
        .collect();
    if export_type.field_columns {
        header.extend(fields.iter().map(|f| format!("field:{f}")));
    }
    header
}

/// The row of `columns` from a JSON object (missing ones empty), then the
/// entry `fields` read from `record["entry"]`.
pub fn row_of(columns: &[&str], fields: &[String], record: &Map<String, Value>) -> Vec<String> {
    let mut row: Vec<String> = columns.iter().map(|c| cell(record.get(*c))).collect();
    let entry = record.get("entry").and_then(Value::as_object);
    row.extend(fields.iter().map(|f| cell(entry.and_then(|e| e.get(f)))));
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fourteen_types_with_distinct_names_and_columns() {
        assert!(EXPORT_TYPES.len() >= 14);
        let mut names: Vec<&str> = EXPORT_TYPES.iter().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EXPORT_TYPES.len());
        for t in EXPORT_TYPES {
            assert!(!t.columns.is_empty(), "{}", t.name);
        }
        assert_eq!(
            export_type("reminder_email").map(ExportType::extension),
            Some("zip")
        );
    }

    #[test]
    fn requests_are_validated_with_a_reason() {
        let ok = parse_request(&json!({"exportType": "entries", "marketId": "m1"})).expect("ok");
        assert_eq!(
            (ok.export_type.name, ok.market_id.as_deref()),
            ("entries", Some("m1"))
        );
        let reasons = [
            (json!([]), "JSON object"),
            (json!({}), "exportType is required"),
            (json!({"exportType": "nope"}), "unknown exportType"),
            (json!({"exportType": 3}), "must be a string"),
            (
                json!({"exportType": "entries", "marketId": "a#b"}),
                "must not contain",
            ),
            (json!({"exportType": "entries", "marketId": ""}), "1 to 128"),
            (
                json!({"exportType": "entries", "other": 1}),
                "unknown field `other`",
            ),
            (
                json!({"exportType": "campaign", "marketId": "m"}),
                "takes no marketId",
            ),
        ];
        for (body, reason) in reasons {
            let e = parse_request(&body).expect_err("refused");
            assert!(e.contains(reason), "{body}: {e}");
        }
    }

    #[test]
    fn fingerprints_tell_requests_apart() {
        let a = parse_request(&json!({"exportType": "entries", "marketId": "m1"})).expect("a");
        let b = parse_request(&json!({"exportType": "entries"})).expect("b");
        assert_eq!(fingerprint("c", &a), fingerprint("c", &a.clone()));
        assert_ne!(fingerprint("c", &a), fingerprint("c", &b));
        assert_ne!(fingerprint("c", &a), fingerprint("d", &a));
    }

    #[test]
    fn claims_need_the_permission_and_the_campaign() {
        let claims = Claims::parse(Some(
            r#"{"sub":"u","permissions":["REPORT"],"campaigns":["c1"]}"#,
        ))
        .expect("claims");
        assert_eq!(claims.refuse(REPORT_PERMISSION, "c1"), None);
        assert!(claims
            .refuse(REPORT_PERMISSION, "c2")
            .is_some_and(|r| r.contains("scope")));
        assert!(claims
            .refuse("ADMIN", "c1")
            .is_some_and(|r| r.contains("permission")));
        let all = Claims {
            permissions: vec!["REPORT".into()],
            campaigns: vec!["*".into()],
            ..Claims::default()
        };
        assert_eq!(all.refuse(REPORT_PERMISSION, "any"), None);
        assert!(Claims::parse(None).is_err());
    }

    #[test]
    fn jobs_round_trip_through_their_item() {
        let job = ExportJob {
            export_id: new_export_id(1_700_000_000_000, "c", "f", "n"),
            campaign_id: "c".into(),
            export_type: "entries".into(),
            market_id: None,
            state: ExportState::Pending,
            fingerprint: "f".into(),
            requested_by: "u".into(),
            created_at: "2026-01-01T00:00:00.000Z".into(),
            updated_at: "2026-01-01T00:00:00.000Z".into(),
            version: 1,
            fencing: 0,
            attempts: 0,
            lease: None,
            row_count: None,
            size: None,
            file: None,
            completing: None,
            error: None,
            finished_at: None,
        };
        assert!(job.export_id.starts_with("1700000000000-"));
        let item = job.item();
        assert_eq!(item["PK"], "CAMPAIGN#c");
        assert_eq!(ExportJob::from_item(item).expect("job"), job);
        assert!(job.view().get("fingerprint").is_none());
    }

    #[test]
    fn rows_take_columns_then_fields() {
        let record = json!({"globalUserId": "u", "score": 7, "entry": {"size": "L"}});
        let row = row_of(
            &["globalUserId", "score", "email"],
            &["size".into()],
            record.as_object().expect("obj"),
        );
        assert_eq!(row, vec!["u", "7", "", "L"]);
    }
}
