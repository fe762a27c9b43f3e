//! `selection/refresh-selections` (batch-worker): makes a market's
//! demand-table verdicts and codes the Entry Service's again.
//!
//! Each message of the `refresh-selection` queue is
//! `{"campaignId","marketId"}`. For it the worker reads the market's
//! selections from the Entry Service,
//! `GET /markets/{marketId}/selections?campaignId=&limit=&after=` page by
//! page (`limit` = the `page_size` setting), and for each page:
//!
//! 1. reads the fans' demand-table entries with one `table::batch_get`;
//! 2. for each entry whose `verdict` or `accessCode` differs from the
//!    service's, one conditional update (all of the page in one
//!    `table::update_many`): `verdict`, `updatedAt` and the code set (the
//!    code removed when the service has none), under the condition that the
//!    entry's `updatedAt` is still the one read (`Exists` when it has
//!    none), so a write made meanwhile is never overwritten blindly. The
//!    entries whose condition failed are read and compared again once; one
//!    that changed a second time fails the message (it is retried whole:
//!    the refresh only rewrites what still differs, so it is idempotent).
//!    An entry missing from the table is counted and logged, never created.
//!    `needsReplication` is left alone: the Entry Service is the source here.
//!
//! One log line per message says how many selections were read, how many
//! entries changed, how many were already right and how many are not in
//! the table. A bad body, a failed page read, an unreadable page or a
//! failed table call fails the message.
//!
//! Not covered: an entry PENDING in the Entry Service but with a verdict in
//! the demand-table (the selections list only the entries with a verdict,
//! and the table has no index by market to find the others).
//!
//! Settings: `table` (default `demand-table`), `service` (`entries`),
//! `page_size` (1000; the service takes at most 5000).

use serde::Deserialize;
use usher_domain::assignment::{encode_component, now_rfc3339, SelectionsPage, VerdictItem};
use usher_domain::Fan;
use usher_sdk::json::json;
use usher_sdk::services;
use usher_sdk::table::{self, Condition, UpdateItem};
use usher_sdk::{config, BatchResult, BatchWorker, Message, Value};

/// The worker's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The entries table (`table`, default `demand-table`).
    pub table: String,
    /// The Entry Service's name (`service`, default `entries`).
    pub service: String,
    /// Selections per page (`page_size`, default 1000, 1..=5000).
    pub page_size: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            table: "demand-table".into(),
            service: "entries".into(),
            page_size: 1000,
        }
    }
}

impl Settings {
    /// Reads the settings with the config capability, defaults for absent keys.
    pub fn load() -> usher_sdk::Result<Settings> {
        let d = Settings::default();
        Ok(Settings {
            table: config::string_or("table", &d.table)?,
            service: config::string_or("service", &d.service)?,
            page_size: config::get_or("page_size", d.page_size)?.clamp(1, 5000),
        })
    }
}

/// A `refresh-selection` message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Refresh {
    /// The campaign.
    pub campaign_id: String,
    /// The market.
    pub market_id: String,
}

/// Why a market could not be refreshed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The body is not `{"campaignId","marketId"}` with non-empty ids.
    #[error("the body is not a refresh request: {0}")]
    BadRequest(String),
    /// The Entry Service could not be read.
    #[error("reading {path}: {reason}")]
    Service {
        /// The request's path.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A table call failed.
    #[error("{0}")]
    Table(String),
    /// Entries kept changing under the refresh.
    #[error("{0} entries changed again while being refreshed")]
    Raced(usize),
}

/// Parses and checks one message body.
pub fn parse(body: &str) -> Result<Refresh, RefreshError> {
    let r: Refresh =
        serde_json::from_str(body).map_err(|e| RefreshError::BadRequest(e.to_string()))?;
    if r.campaign_id.is_empty() || r.market_id.is_empty() {
        return Err(RefreshError::BadRequest(
            "campaignId and marketId must be non-empty".into(),
        ));
    }
    Ok(r)
}

/// What one refresh did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Selections read from the Entry Service.
    pub read: usize,
    /// Entries rewritten.
    pub changed: usize,
    /// Entries that already agreed.
    pub unchanged: usize,
    /// Selections with no entry in the table.
    pub absent: usize,
    /// Pages read.
    pub pages: usize,
}

/// Handles a batch: each message refreshed on its own.
pub fn process(settings: &Settings, messages: &[Message]) -> BatchResult {
    BatchResult::from_outcomes(messages.iter().map(|m| {
        let outcome = parse(&m.body).and_then(|r| refresh(settings, &r).map(|s| (r, s)));
        match &outcome {
            Ok((r, s)) => usher_sdk::info!(message_id = m.id, campaign_id = r.campaign_id,
                market_id = r.market_id, selections = s.read, changed = s.changed,
                unchanged = s.unchanged, not_in_table = s.absent, pages = s.pages;
                "refreshed the market's demand-table verdicts: {} changed", s.changed),
            Err(e) => usher_sdk::warn!(message_id = m.id, error = e; "refresh failed"),
        }
        (m.id.clone(), outcome.is_ok())
    }))
}

/// Refreshes one market (see the crate docs).
pub fn refresh(settings: &Settings, r: &Refresh) -> Result<Summary, RefreshError> {
    let mut summary = Summary::default();
    let mut after: Option<String> = None;
    loop {
        let page = read_page(settings, r, after.as_deref())?;
        summary.pages += 1;
        summary.read += page.selections.len();
        apply(settings, r, &page.selections, &mut summary)?;
        match page.next_cursor() {
            None => return Ok(summary),
            Some(next) if after.as_deref() == Some(next.as_str()) => {
                return Err(RefreshError::Service {
                    path: format!("/markets/{}/selections", r.market_id),
                    reason: format!("the cursor does not advance ({next})"),
                })
            }
            Some(next) => after = Some(next),
        }
    }
}

fn read_page(
    settings: &Settings,
    r: &Refresh,
    after: Option<&str>,
) -> Result<SelectionsPage, RefreshError> {
    let mut path = format!(
        "/markets/{}/selections?campaignId={}&limit={}",
        encode_component(&r.market_id),
        encode_component(&r.campaign_id),
        settings.page_size
    );
    if let Some(after) = after {
        path.push_str("&after=");
        path.push_str(&encode_component(after));
    }
    let fail = |reason: String| RefreshError::Service {
        path: path.clone(),
        reason,
    };
    let response = services::get(&settings.service, &path).map_err(|e| fail(e.to_string()))?;
    if !response.is_success() {
        return Err(fail(format!(
            "status {}: {}",
            response.status,
            response.body.chars().take(300).collect::<String>()
        )));
    }
    response
        .json::<SelectionsPage>()
        .map_err(|e| fail(format!("unreadable page: {e}")))
}

/// Whether the table's entry already says what the service says.
fn agrees(item: &Value, s: &VerdictItem) -> bool {
    let verdict = serde_json::to_value(s.verdict).unwrap_or(Value::Null);
    item.get("verdict") == Some(&verdict)
        && item.get("accessCode").and_then(Value::as_str) == s.code.as_deref()
}

/// The update that makes `item` say what `s` says, under the condition that
/// it is still as read.
fn rewrite(key: Value, item: &Value, s: &VerdictItem, now: &str) -> UpdateItem {
    let mut set = json!({"verdict": s.verdict, "updatedAt": now});
    let mut remove = Vec::new();
    match &s.code {
        Some(code) => set["accessCode"] = json!(code),
        None => remove.push("accessCode".to_string()),
    }
    let condition = match item.get("updatedAt").filter(|v| !v.is_null()) {
        Some(at) => Condition::AttributeEquals("updatedAt".into(), at.clone()),
        None => Condition::Exists,
    };
    UpdateItem {
        key,
        set,
        remove,
        condition: Some(condition),
    }
}

/// Compares one page with the table and rewrites what differs (twice at
/// most for an entry that changes meanwhile).
fn apply(
    settings: &Settings,
    r: &Refresh,
    selections: &[VerdictItem],
    summary: &mut Summary,
) -> Result<(), RefreshError> {
    let mut pending: Vec<&VerdictItem> = selections
        .iter()
        .filter(|s| !s.global_user_id.is_empty())
        .collect();
    let now = now_rfc3339();
    for round in 0..2 {
        if pending.is_empty() {
            return Ok(());
        }
        let keys: Vec<Value> = pending
            .iter()
            .map(|s| Fan::new(r.campaign_id.clone(), s.global_user_id.clone()).demand_key())
            .collect();
        let items = table::batch_get::<Value, Value>(&settings.table, &keys)
            .map_err(|e| RefreshError::Table(format!("reading {}: {e}", settings.table)))?;
        if items.len() != keys.len() {
            return Err(RefreshError::Table(format!(
                "batch_get answered {} items for {} keys",
                items.len(),
                keys.len()
            )));
        }
        let mut updates = Vec::new();
        let mut updated: Vec<&VerdictItem> = Vec::new();
        for ((s, key), item) in pending.iter().zip(keys).zip(items) {
            match item {
                None => {
                    summary.absent += 1;
                    usher_sdk::warn!(campaign_id = r.campaign_id, global_user_id = s.global_user_id;
                        "a selected fan has no entry in the table");
                }
                Some(item) if agrees(&item, s) => {
                    if round == 0 {
                        summary.unchanged += 1;
                    }
                }
                Some(item) => {
                    updates.push(rewrite(key, &item, s, &now));
                    updated.push(s);
                }
            }
        }
        if updates.is_empty() {
            return Ok(());
        }
        let asked = updates.len();
        let results = table::update_many::<serde::de::IgnoredAny>(&settings.table, updates)
            .map_err(|e| RefreshError::Table(format!("updating {}: {e}", settings.table)))?;
        if results.len() != asked {
            return Err(RefreshError::Table(format!(
                "update_many answered {} results for {asked} updates",
                results.len()
            )));
        }
        let mut raced = Vec::new();
        for (s, result) in updated.into_iter().zip(results) {
            match result {
                Ok(_) => summary.changed += 1,
                Err(e) if e.is_condition_failed() => raced.push(s),
                Err(e) => {
                    return Err(RefreshError::Table(format!(
                        "updating {}'s entry: {e}",
                        s.global_user_id
                    )))
                }
            }
        }
        pending = raced;
    }
    if pending.is_empty() {
        Ok(())
    } else {
        Err(RefreshError::Raced(pending.len()))
    }
}

/// The worker.
pub struct RefreshSelections;

impl BatchWorker for RefreshSelections {
    fn handle(messages: Vec<Message>) -> BatchResult {
        match Settings::load() {
            Ok(settings) => process(&settings, &messages),
            Err(e) => {
                usher_sdk::error!(error = e; "cannot read the settings; failing the batch");
                BatchResult::from_failures(messages.len(), messages.iter().map(|m| m.id.clone()))
            }
        }
    }
}

usher_sdk::export_batch_worker!(RefreshSelections);

#[cfg(test)]
mod tests;
