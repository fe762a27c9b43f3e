//! The export types' rows: read page by page from their sources and
//! written as CSV (one file, or one per market in a zip archive) to any
//! [`Write`]. The job module passes the objects writer; tests pass a
//! `Vec<u8>`.

use std::io::Write;

use serde_json::{json, Map, Value};
use std::borrow::Cow;

use usher_domain::exports::{cell, header, ExportType, Source};
use usher_sdk::services::{self, Method, Request, Response};
use usher_sdk::table;

/// Why an export stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportError {
    /// A source failed or answered something unreadable: the job FAILS
    /// with this reason.
    Source(String),
    /// The runner lost the job (its lease was taken): stop, write nothing.
    Lost,
    /// A table or the objects store failed: the message is retried.
    Transient(String),
}

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExportError::Source(m) => write!(f, "source failed: {m}"),
            ExportError::Lost => f.write_str("the job's lease was lost"),
            ExportError::Transient(m) => write!(f, "{m}"),
        }
    }
}

fn write_error(e: impl std::fmt::Display) -> ExportError {
    ExportError::Transient(format!("writing the file: {e}"))
}

/// Where the rows come from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Entry Service.
    pub entries: String,
    /// Campaign Service.
    pub campaigns: String,
    /// User Service.
    pub users: String,
    /// Code Service.
    pub codes: String,
    /// The draw records' table.
    pub draws_table: String,
    /// Rows per page (1..=5000).
    pub page_size: u32,
}

/// What one export covers.
#[derive(Debug, Clone)]
pub struct Scope<'a> {
    /// The campaign.
    pub campaign_id: &'a str,
    /// One market, or all of the campaign's.
    pub market_id: Option<&'a str>,
}

/// Percent-encodes a path segment or query value.
pub fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One GET; `Ok(None)` on 404 when `missing_ok`.
fn get(service: &str, path: &str, missing_ok: bool) -> Result<Option<Value>, ExportError> {
    let answer = services::get(service, path)
        .map_err(|e| ExportError::Source(format!("{service} GET {path}: {e}")))?;
    read(service, path, answer, missing_ok)
}

fn read(
    service: &str,
    path: &str,
    answer: Response,
    missing_ok: bool,
) -> Result<Option<Value>, ExportError> {
    match answer.status {
        200 => answer
            .json::<Value>()
            .map(Some)
            .map_err(|e| ExportError::Source(format!("{service} GET {path}: not JSON: {e}"))),
        404 if missing_ok => Ok(None),
        status => Err(ExportError::Source(format!(
            "{service} GET {path} answered {status}: {}",
            answer.body.chars().take(300).collect::<String>()
        ))),
    }
}

/// The cursor of a page answer as a query value (`next` as is when a
/// string, else its JSON text); `None` on the last page.
fn next_cursor(page: &Value) -> Option<String> {
    match page.get("next") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    }
}

/// Every page of a paged list: `path?query&limit=&after=`, the items of
/// `field` of each page to `each`, `tick` after each page.
fn pages(
    service: &str,
    path: &str,
    query: &str,
    field: &str,
    page_size: u32,
    tick: &mut dyn FnMut() -> Result<(), ExportError>,
    each: &mut dyn FnMut(Vec<Value>) -> Result<(), ExportError>,
) -> Result<(), ExportError> {
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{path}?{query}&limit={page_size}");
        if let Some(a) = &after {
            url.push_str("&after=");
            url.push_str(&encode(a));
        }
        let mut page = get(service, &url, false)?.unwrap_or(Value::Null);
        let items = match page.get_mut(field).map(Value::take) {
            Some(Value::Array(items)) => items,
            _ => {
                return Err(ExportError::Source(format!(
                    "{service} GET {url}: the answer has no `{field}` list"
                )))
            }
        };
        each(items)?;
        tick()?;
        match next_cursor(&page) {
            Some(n) if Some(&n) != after.as_ref() => after = Some(n),
            _ => return Ok(()),
        }
    }
}

/// The campaign's markets (`GET /campaigns/{c}/markets`), or the one asked for.
fn markets(sources: &Sources, scope: &Scope<'_>) -> Result<Vec<Map<String, Value>>, ExportError> {
    let c = encode(scope.campaign_id);
    if let Some(m) = scope.market_id {
        let market = get(
            &sources.campaigns,
            &format!("/campaigns/{c}/markets/{}", encode(m)),
            true,
        )?
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_else(|| {
            let mut o = Map::new();
            o.insert("id".into(), json!(m));
            o
        });
        return Ok(vec![market]);
    }
    let answer = get(
        &sources.campaigns,
        &format!("/campaigns/{c}/markets"),
        false,
    )?
    .unwrap_or(Value::Null);
    answer
        .get("markets")
        .and_then(Value::as_array)
        .map(|ms| ms.iter().filter_map(|m| m.as_object().cloned()).collect())
        .ok_or_else(|| {
            ExportError::Source("campaigns: the markets answer has no `markets` list".into())
        })
}

fn market_id(market: &Map<String, Value>) -> String {
    cell(market.get("id"))
}

/// The campaign's entry field names (`GET /campaigns/{c}`), for the types
/// with field columns.
fn campaign(sources: &Sources, scope: &Scope<'_>) -> Result<Value, ExportError> {
    get(
        &sources.campaigns,
        &format!("/campaigns/{}", encode(scope.campaign_id)),
        false,
    )
    .map(Option::unwrap_or_default)
}

fn field_names(campaign: &Value) -> Vec<String> {
    campaign
        .get("fields")
        .and_then(Value::as_array)
        .map(|fs| {
            fs.iter()
                .filter_map(|f| f.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Adds the User Service's record of each fan (`email`, `firstName`,
/// `lastName`, `country`, `locale`) to the records, with `call-many` in
/// chunks of 256 (a fan the service does not know keeps blank columns).
fn join_users(sources: &Sources, records: &mut [Map<String, Value>]) -> Result<(), ExportError> {
    for chunk in records.chunks_mut(256) {
        let requests: Vec<Request> = chunk
            .iter()
            .map(|r| {
                Request::new(
                    &sources.users,
                    Method::Get,
                    format!("/users/{}", encode(&cell(r.get("globalUserId")))),
                )
            })
            .collect();
        let answers = services::call_many(&requests)
            .map_err(|e| ExportError::Source(format!("{} GET /users: {e}", sources.users)))?;
        for ((record, request), answer) in chunk.iter_mut().zip(&requests).zip(answers) {
            let answer = answer.map_err(|e| {
                ExportError::Source(format!("{} GET {}: {e}", sources.users, request.path))
            })?;
            if let Some(user) = read(&sources.users, &request.path, answer, true)? {
                for name in ["email", "firstName", "lastName", "country", "locale"] {
                    if let Some(v) = user.get(name).filter(|v| !v.is_null()) {
                        record.insert(name.to_string(), v.clone());
                    }
                }
            }
        }
    }
    Ok(())
}

/// One CSV cell of a JSON value, borrowed when it is a string (see
/// [`usher_domain::exports::cell`]).
fn cell_bytes(value: Option<&Value>) -> Cow<'_, [u8]> {
    match value {
        None | Some(Value::Null) => Cow::Borrowed(b""),
        Some(Value::String(s)) => Cow::Borrowed(s.as_bytes()),
        Some(other) => Cow::Owned(other.to_string().into_bytes()),
    }
}

/// Writes a record's row: `columns`, then the entry's `fields`.
fn write_row<W: Write>(
    csv: &mut csv::Writer<W>,
    columns: &[&str],
    fields: &[String],
    record: &Map<String, Value>,
) -> Result<(), ExportError> {
    let entry = record.get("entry").and_then(Value::as_object);
    let cells = columns.iter().map(|c| cell_bytes(record.get(*c))).chain(
        fields
            .iter()
            .map(|f| cell_bytes(entry.and_then(|e| e.get(f)))),
    );
    csv.write_record(cells).map_err(write_error)
}

/// Writes one export of `export_type` to `out`; the data rows written.
/// `tick` runs after every page (the lease's renewal).
pub fn write_export<W: Write>(
    export_type: &ExportType,
    sources: &Sources,
    scope: &Scope<'_>,
    out: W,
    tick: &mut dyn FnMut() -> Result<(), ExportError>,
) -> Result<(u64, W), ExportError> {
    let fields = if export_type.field_columns {
        field_names(&campaign(sources, scope)?)
    } else {
        Vec::new()
    };
    let head = header(export_type, &fields);
    if export_type.zip_per_market {
        let markets = markets(sources, scope)?;
        let mut zip = zip::ZipWriter::new_stream(out);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(true);
        let mut rows = 0;
        for market in &markets {
            let name = format!("{}-{}.csv", export_type.name, sanitize(&market_id(market)));
            zip.start_file(name, options).map_err(write_error)?;
            let mut csv = csv::WriterBuilder::new()
                .buffer_capacity(256 * 1024)
                .from_writer(&mut zip);
            csv.write_record(&head).map_err(write_error)?;
            rows += market_rows(
                export_type,
                sources,
                scope,
                market,
                &mut |record| write_row(&mut csv, export_type.columns, &fields, record),
                tick,
            )?;
            csv.flush().map_err(write_error)?;
        }
        let out = zip.finish().map_err(write_error)?.into_inner();
        return Ok((rows, out));
    }
    let mut csv = csv::WriterBuilder::new()
        .buffer_capacity(1024 * 1024)
        .from_writer(out);
    csv.write_record(&head).map_err(write_error)?;
    let mut rows = 0;
    let mut emit =
        |record: &Map<String, Value>| write_row(&mut csv, export_type.columns, &fields, record);
    match export_type.source {
        Source::Campaign => {
            let c = campaign(sources, scope)?;
            let mut record = c.as_object().cloned().unwrap_or_default();
            record.insert("campaignId".into(), json!(scope.campaign_id));
            if let Some(fs) = record.get("fields").cloned() {
                record.insert("fields".into(), json!(fs.to_string()));
            }
            emit(&record)?;
            rows += 1;
        }
        _ => {
            for market in &markets(sources, scope)? {
                rows += market_rows(export_type, sources, scope, market, &mut emit, tick)?;
            }
        }
    }
    let out = csv.into_inner().map_err(|e| write_error(e.error()))?;
    Ok((rows, out))
}

/// A market id as a file name inside the archive.
fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The rows of one market; how many.
fn market_rows(
    export_type: &ExportType,
    sources: &Sources,
    scope: &Scope<'_>,
    market: &Map<String, Value>,
    emit: &mut Emit<'_>,
    tick: &mut dyn FnMut() -> Result<(), ExportError>,
) -> Result<u64, ExportError> {
    let c = scope.campaign_id;
    let m = market_id(market);
    let (ce, me) = (encode(c), encode(&m));
    let mut rows = 0u64;
    let base = |record: &mut Map<String, Value>| {
        record.insert("campaignId".into(), json!(c));
        record.insert("marketId".into(), json!(m));
    };
    let write_records =
        |records: Vec<Map<String, Value>>, emit: &mut Emit<'_>| -> Result<u64, ExportError> {
            let mut n = 0;
            for record in &records {
                emit(record)?;
                n += 1;
            }
            Ok(n)
        };
    let objects = |items: Vec<Value>| -> Vec<Map<String, Value>> {
        items
            .into_iter()
            .filter_map(|v| match v {
                Value::Object(o) => Some(o),
                _ => None,
            })
            .collect()
    };
    match export_type.source {
        Source::Entries | Source::EntriesWithUsers => {
            let with_users = export_type.source == Source::EntriesWithUsers;
            pages(
                &sources.entries,
                &format!("/markets/{me}/entries"),
                &format!("campaignId={ce}"),
                "entries",
                sources.page_size,
                tick,
                &mut |items| {
                    let mut records = objects(items);
                    for r in records.iter_mut() {
                        base(r);
                    }
                    if with_users {
                        join_users(sources, &mut records)?;
                    }
                    rows += write_records(records, emit)?;
                    Ok(())
                },
            )?;
        }
        Source::Selections | Source::SelectionsWithUsers => {
            let with_users = export_type.source == Source::SelectionsWithUsers;
            pages(
                &sources.entries,
                &format!("/markets/{me}/selections"),
                &format!("campaignId={ce}"),
                "selections",
                sources.page_size,
                tick,
                &mut |items| {
                    let mut records: Vec<Map<String, Value>> = objects(items)
                        .into_iter()
                        .filter(|r| {
                            export_type
                                .verdict
                                .is_none_or(|v| r.get("verdict").and_then(Value::as_str) == Some(v))
                        })
                        .collect();
                    for r in records.iter_mut() {
                        base(r);
                        for name in ["eventName", "venue"] {
                            if let Some(v) = market.get(name) {
                                r.insert(name.into(), v.clone());
                            }
                        }
                    }
                    if with_users {
                        join_users(sources, &mut records)?;
                    }
                    rows += write_records(records, emit)?;
                    Ok(())
                },
            )?;
        }
        Source::Codes => {
            pages(
                &sources.codes,
                &format!("/pools/{ce}/{me}/codes"),
                "",
                "codes",
                sources.page_size.min(1000),
                tick,
                &mut |items| {
                    let mut records = objects(items);
                    for r in records.iter_mut() {
                        base(r);
                    }
                    rows += write_records(records, emit)?;
                    Ok(())
                },
            )?;
        }
        Source::CodePools => {
            if let Some(Value::Object(mut pool)) =
                get(&sources.codes, &format!("/pools/{ce}/{me}"), true)?
            {
                base(&mut pool);
                rows += write_records(vec![pool], emit)?;
            }
        }
        Source::Markets => {
            let mut record = market.clone();
            base(&mut record);
            rows += write_records(vec![record], emit)?;
        }
        Source::MarketStats => {
            if let Some(Value::Object(mut stats)) = get(
                &sources.campaigns,
                &format!("/campaigns/{ce}/markets/{me}/stats"),
                true,
            )? {
                for (prefix, field) in [("expected", "expected"), ("reported", "reported")] {
                    let counts = stats.get(field).cloned().unwrap_or_default();
                    for (suffix, name) in [
                        ("Winners", "winners"),
                        ("Waitlist", "waitlisted"),
                        ("Losers", "losers"),
                    ] {
                        stats.insert(
                            format!("{prefix}{suffix}"),
                            counts.get(name).cloned().unwrap_or(Value::Null),
                        );
                    }
                }
                base(&mut stats);
                rows += write_records(vec![stats], emit)?;
            }
        }
        Source::Draws => {
            let draw_id = format!("{c}.{m}");
            let key = json!({"PK": format!("DRAW#{draw_id}"), "SK": "RECORD"});
            let record = table::get::<Value>(&sources.draws_table, &key).map_err(|e| {
                ExportError::Transient(format!("reading the draw record {draw_id}: {e}"))
            })?;
            if let Some(Value::Object(mut record)) = record {
                base(&mut record);
                rows += write_records(vec![record], emit)?;
            }
        }
        Source::EmailJobs => {
            pages(
                &sources.users,
                "/email-jobs",
                &format!("campaignId={ce}&marketId={me}"),
                "jobs",
                sources.page_size.min(1000),
                tick,
                &mut |items| {
                    let mut records = objects(items);
                    for r in records.iter_mut() {
                        base(r);
                    }
                    rows += write_records(records, emit)?;
                    Ok(())
                },
            )?;
        }
        Source::Campaign => {}
    }
    Ok(rows)
}

#[cfg(test)]
mod tests;

/// What receives each row of an export.
type Emit<'a> = dyn FnMut(&Map<String, Value>) -> Result<(), ExportError> + 'a;
