//! The worker's logic. It calls the SDK's capability functions directly;
//! natively (tests, the bench) they reach the backend installed on the
//! thread (`usher_sdk::fakes`).

use std::collections::{BTreeMap, BTreeSet};

use usher_domain::{Fan, CHUNK_SIZE};
use usher_sdk::json::json;
use usher_sdk::queue::{self, Outgoing};
use usher_sdk::table::{self, Condition, UpdateItem};
use usher_sdk::{config, services, BatchResult, Change, ChangeKind, Error, Message, Value};

/// The worker's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The entries table (`table`, default `demand-table`).
    pub table: String,
    /// The Entry Service's name (`service`, default `entries`).
    pub service: String,
    /// Where failed score refreshes go (`retry_queue`, default `retry-score`).
    pub retry_queue: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            table: "demand-table".into(),
            service: "entries".into(),
            retry_queue: "retry-score".into(),
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
            retry_queue: config::string_or("retry_queue", &d.retry_queue)?,
        })
    }
}

/// What to do with an entry in the Entry Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// Upsert the entry (INSERT, MODIFY).
    Put,
    /// Delete the entry (REMOVE).
    Delete,
}

/// A normalized change: one entry to put or delete.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Put or delete.
    pub op: Op,
    /// Whose entry.
    pub fan: Fan,
    /// The item's table key (`{"PK","SK"}`).
    pub key: Value,
    /// The entry item: the new image of a put, the old image of a delete.
    pub image: Value,
}

/// Why a message cannot be normalized.
#[derive(Debug, thiserror::Error)]
pub enum NormalizeError {
    /// The body is not JSON or not a change record.
    #[error("the body is not a change record: {0}")]
    NotAChange(#[from] serde_json::Error),
    /// The record lacks the image its kind needs.
    #[error("{0} record without {1}")]
    MissingImage(&'static str, &'static str),
    /// The image lacks `campaignId` or `globalUserId`.
    #[error("the {0} is not an entry (needs campaignId and globalUserId strings)")]
    NotAnEntry(&'static str),
}

/// Normalizes one message body into the entry to put or delete.
pub fn normalize(body: &str) -> Result<Entry, NormalizeError> {
    let change: Change = serde_json::from_str(body)?;
    let (op, image, which) = match change.kind {
        ChangeKind::Insert | ChangeKind::Modify => (Op::Put, change.new_image, "newImage"),
        ChangeKind::Remove => (Op::Delete, change.old_image, "oldImage"),
    };
    let image = image
        .filter(|i| !i.is_null())
        .ok_or(NormalizeError::MissingImage(
            change.kind.event_name(),
            which,
        ))?;
    let fan = Fan::of(&image).ok_or(NormalizeError::NotAnEntry(which))?;
    let key = table_key(&change.keys, &image, &fan);
    Ok(Entry {
        op,
        fan,
        key,
        image,
    })
}

/// The record's keys; else the image's `PK`/`SK`; else the key derived
/// from the fan.
fn table_key(keys: &Value, image: &Value, fan: &Fan) -> Value {
    if keys.as_object().is_some_and(|k| !k.is_empty()) {
        return keys.clone();
    }
    if let (Some(pk), Some(sk)) = (image.get("PK"), image.get("SK")) {
        return json!({"PK": pk, "SK": sk});
    }
    fan.demand_key()
}

/// Whether a normalized change is still current given the table's item:
/// a put while the item exists with the image's `version` (or, without a
/// version, the same `updatedAt`); a delete while the item is absent.
pub fn is_current(entry: &Entry, current: Option<&Value>) -> bool {
    match entry.op {
        Op::Delete => current.is_none(),
        Op::Put => current.is_some_and(|item| same_write(&entry.image, item)),
    }
}

fn same_write(image: &Value, item: &Value) -> bool {
    match image.get("version").filter(|v| !v.is_null()) {
        Some(version) => item.get("version").is_some_and(|v| json_eq(v, version)),
        None => image.get("updatedAt") == item.get("updatedAt"),
    }
}

/// JSON equality that treats `3` and `3.0` as equal.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) => x == y,
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
    }
}

/// The condition under which a put's `needsReplication` flag is cleared:
/// the item still has the image's version (`updatedAt` without one).
fn unflag_condition(image: &Value) -> Condition {
    if let Some(version) = image.get("version").filter(|v| !v.is_null()) {
        return Condition::AttributeEquals("version".into(), version.clone());
    }
    match image.get("updatedAt").filter(|v| !v.is_null()) {
        Some(at) => Condition::AttributeEquals("updatedAt".into(), at.clone()),
        None => Condition::Exists,
    }
}

/// One entry to replicate and the messages (indices) that asked for it.
#[derive(Debug, Clone)]
struct Group {
    entry: Entry,
    messages: Vec<usize>,
}

/// The batch's bookkeeping: which messages failed.
struct Outcome<'a> {
    messages: &'a [Message],
    failed: BTreeSet<usize>,
}

impl Outcome<'_> {
    fn fail(&mut self, indices: &[usize]) {
        self.failed.extend(indices.iter().copied());
    }

    fn ids(&self, indices: &[usize]) -> String {
        indices
            .iter()
            .filter_map(|&i| self.messages.get(i).map(|m| m.id.as_str()))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Handles a batch (see the crate docs).
pub fn process(settings: &Settings, messages: &[Message]) -> BatchResult {
    let mut outcome = Outcome {
        messages,
        failed: BTreeSet::new(),
    };

    // 1. Normalize.
    let mut entries = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        match normalize(&message.body) {
            Ok(entry) => entries.push((i, entry)),
            Err(reason) => {
                usher_sdk::warn!(message_id = message.id, reason = reason; "malformed message failed");
                outcome.fail(&[i]);
            }
        }
    }

    // 2. Validate against the table, then merge duplicates of one write.
    let valid = validate(settings, entries, &mut outcome);
    let groups = group(valid);
    let (puts, deletes): (Vec<Group>, Vec<Group>) =
        groups.into_iter().partition(|g| g.entry.op == Op::Put);

    // 3. Replicate: every chunk of upserts (each also refreshing its
    //    entries' scores) and of deletes in one call_many; the entries of
    //    chunks refused with a 4xx again one by one, in one more.
    let Replicated {
        upserted,
        score_failures,
    } = replicate(settings, &puts, &deletes, &mut outcome);

    // 3b. An entry deleted in the table after it was validated above may
    //     have had its delete replicated before this upsert reached the
    //     Entry Service; the upsert would then bring it back there. Re-read
    //     the upserted keys: for each one gone now, send the delete again
    //     (with the version just upserted, so a newer re-insert is kept).
    //     A delete made after this read replicates after the upsert.
    let upserted = recheck_deleted(settings, upserted, &mut outcome);

    // 4. Clear the flag of each upserted entry, unless a newer write set it
    //    (one call for all of them, each update under its own condition).
    let updates: Vec<UpdateItem> = upserted
        .iter()
        .map(|g| UpdateItem {
            key: g.entry.key.clone(),
            set: json!({"needsReplication": false}),
            remove: Vec::new(),
            condition: Some(unflag_condition(&g.entry.image)),
        })
        .collect();
    let asked = updates.len();
    let results = match unflag(&settings.table, updates) {
        Ok(results) if results.len() == asked => results,
        other => {
            let reason = match other {
                Ok(results) => format!(
                    "update_many answered {} results for {asked} updates",
                    results.len()
                ),
                Err(e) => e.to_string(),
            };
            (0..asked)
                .map(|_| Err(Error::Unavailable(reason.clone())))
                .collect()
        }
    };
    for (group, result) in upserted.iter().zip(results) {
        match result {
            Ok(()) => {}
            Err(e) if e.is_condition_failed() => {
                usher_sdk::debug!(message_ids = outcome.ids(&group.messages);
                    "entry changed since; its needsReplication flag is kept");
            }
            Err(e) => {
                usher_sdk::warn!(message_ids = outcome.ids(&group.messages), error = e;
                    "clearing needsReplication failed");
                outcome.fail(&group.messages);
            }
        }
    }

    // 5. Queue a later refresh for the fans whose refresh failed.
    queue_score_retries(settings, &upserted, &score_failures, &mut outcome);

    let result = BatchResult::from_failures(
        messages.len(),
        outcome
            .failed
            .iter()
            .filter_map(|&i| messages.get(i).map(|m| m.id.clone())),
    );
    usher_sdk::info!(received = result.received, processed = result.processed,
        failed = result.failed, upserted = upserted.len(), deleted_groups = deletes.len();
        "save-entries batch done");
    result
}

/// Clears the flags: one `update_many` (none when there is nothing to clear).
fn unflag(
    table_name: &str,
    updates: Vec<UpdateItem>,
) -> usher_sdk::Result<Vec<usher_sdk::Result<()>>> {
    if updates.is_empty() {
        return Ok(Vec::new());
    }
    // The updated items are not needed: skip building them.
    Ok(
        table::update_many::<serde::de::IgnoredAny>(table_name, updates)?
            .into_iter()
            .map(|r| r.map(|_| ()))
            .collect(),
    )
}

/// The Entry Service key of a delete: the fan and the version deleted at the
/// source, so that the service keeps an entry re-inserted (at a newer
/// version) since.
fn delete_key(g: &Group) -> Value {
    let mut key = json!(&g.entry.fan);
    if let Some(v) = g.entry.image.get("version").filter(|v| !v.is_null()) {
        key["version"] = v.clone();
    }
    key
}

/// Re-reads the upserted entries; deletes again in the Entry Service those
/// gone from the table meanwhile (their messages fail when that delete
/// fails, and are retried). Returns the upserted groups still in the table.
fn recheck_deleted<'g>(
    settings: &Settings,
    upserted: Vec<&'g Group>,
    outcome: &mut Outcome<'_>,
) -> Vec<&'g Group> {
    if upserted.is_empty() {
        return upserted;
    }
    let keys: Vec<Value> = upserted.iter().map(|g| g.entry.key.clone()).collect();
    let items = match table::batch_get::<Value, Value>(&settings.table, &keys) {
        Ok(items) if items.len() == keys.len() => items,
        other => {
            let reason = match other {
                Ok(items) => format!("{} items for {} keys", items.len(), keys.len()),
                Err(e) => e.to_string(),
            };
            usher_sdk::warn!(reason = reason; "cannot re-read the upserted entries; failing them");
            for g in &upserted {
                outcome.fail(&g.messages);
            }
            return Vec::new();
        }
    };
    let mut kept = Vec::new();
    let mut gone: Vec<Group> = Vec::new();
    for (g, item) in upserted.into_iter().zip(&items) {
        if item.is_some() {
            kept.push(g);
        } else {
            gone.push(g.clone());
        }
    }
    if !gone.is_empty() {
        usher_sdk::info!(entries = gone.len(); "upserted entries were deleted meanwhile; deleting them again");
        let posts = gone
            .chunks(CHUNK_SIZE)
            .map(|chunk| Post {
                path: DELETE,
                groups: chunk.iter().collect(),
            })
            .collect();
        for (post, answer) in call_all(settings, posts) {
            if !matches!(answer, Ok(r) if r.is_success()) {
                let indices = messages_of(&post.groups);
                usher_sdk::warn!(message_ids = outcome.ids(&indices);
                    "deleting entries removed meanwhile failed");
                outcome.fail(&indices);
            }
        }
    }
    kept
}

/// Keeps the entries that are still current; fails them all when the table
/// cannot be read.
fn validate(
    settings: &Settings,
    entries: Vec<(usize, Entry)>,
    outcome: &mut Outcome<'_>,
) -> Vec<(usize, Entry)> {
    if entries.is_empty() {
        return entries;
    }
    // One batch_get with each key once (two changes of one entry share a key).
    let mut keys: Vec<Value> = Vec::new();
    let mut slot: BTreeMap<String, usize> = BTreeMap::new();
    let slots: Vec<usize> = entries
        .iter()
        .map(|(_, e)| {
            *slot.entry(e.key.to_string()).or_insert_with(|| {
                keys.push(e.key.clone());
                keys.len() - 1
            })
        })
        .collect();
    let all: Vec<usize> = entries.iter().map(|(i, _)| *i).collect();
    let items = match table::batch_get::<Value, Value>(&settings.table, &keys) {
        Ok(items) if items.len() == keys.len() => items,
        Ok(items) => {
            usher_sdk::error!(asked = keys.len(), got = items.len();
                "batch_get answered the wrong number of items; failing the batch");
            outcome.fail(&all);
            return Vec::new();
        }
        Err(e) => {
            usher_sdk::warn!(error = e, messages = all.len(); "cannot read the current items");
            outcome.fail(&all);
            return Vec::new();
        }
    };
    entries
        .into_iter()
        .zip(slots)
        .filter_map(|((i, entry), s)| {
            let current = items.get(s).and_then(Option::as_ref);
            if is_current(&entry, current) {
                Some((i, entry))
            } else {
                usher_sdk::debug!(message_id = outcome.ids(&[i]), key = entry.key;
                    "stale change dropped: a newer write replicates itself");
                None
            }
        })
        .collect()
}

/// Merges valid changes that are the same write (same op and key: at most
/// one write per key can be current), keeping the first one's image.
fn group(valid: Vec<(usize, Entry)>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let mut index: BTreeMap<(Op, String), usize> = BTreeMap::new();
    for (i, entry) in valid {
        let id = (entry.op, entry.key.to_string());
        match index.get(&id) {
            Some(&g) => groups[g].messages.push(i),
            None => {
                index.insert(id, groups.len());
                groups.push(Group {
                    entry,
                    messages: vec![i],
                });
            }
        }
    }
    groups
}

/// The Entry Service's upsert path.
const UPSERT: &str = "/entries/batch-upsert";
/// The Entry Service's delete path.
const DELETE: &str = "/entries/batch-delete";

/// One Entry Service request: its path and the groups it carries.
struct Post<'g> {
    path: &'static str,
    groups: Vec<&'g Group>,
}

impl Post<'_> {
    fn body(&self) -> Value {
        if self.path == UPSERT {
            json!({
                "entries": self.groups.iter().map(|g| &g.entry.image).collect::<Vec<_>>(),
                "refreshScores": true,
            })
        } else {
            json!({"keys": self.groups.iter().map(|g| delete_key(g)).collect::<Vec<_>>()})
        }
    }
}

fn messages_of(groups: &[&Group]) -> Vec<usize> {
    groups
        .iter()
        .flat_map(|g| g.messages.iter().copied())
        .collect()
}

/// Sends every post with one `services::call_many` (the host runs them
/// concurrently); each post with its own answer, or the call's error.
fn call_all<'g>(
    settings: &Settings,
    posts: Vec<Post<'g>>,
) -> Vec<(Post<'g>, Result<services::Response, String>)> {
    let requests: usher_sdk::Result<Vec<services::Request>> = posts
        .iter()
        .map(|p| {
            services::Request::new(&settings.service, services::Method::Post, p.path)
                .json(&p.body())
        })
        .collect();
    let answers = requests.and_then(|requests| services::call_many(&requests));
    match answers {
        Ok(answers) if answers.len() == posts.len() => posts
            .into_iter()
            .zip(answers)
            .map(|(p, a)| (p, a.map_err(|e| e.to_string())))
            .collect(),
        other => {
            let reason = match other {
                Ok(answers) => format!("{} answers for {} requests", answers.len(), posts.len()),
                Err(e) => e.to_string(),
            };
            posts
                .into_iter()
                .map(|p| (p, Err(reason.clone())))
                .collect()
        }
    }
}

/// What the Entry Service took: the upserted groups, and the fans whose
/// score refresh (folded into the upsert) failed.
struct Replicated<'g> {
    upserted: Vec<&'g Group>,
    score_failures: BTreeSet<Fan>,
}

/// Sends the upserts and deletes in chunks, all in one `call_many`.
///
/// A call error or a 5xx fails the chunk's messages (they are retried later,
/// whole). A 4xx means the service refused something *in* the chunk: each
/// group of a larger chunk is then sent alone (all of them in one more
/// `call_many`), so one bad entry (a poison message) fails only its own
/// messages and the rest go through.
fn replicate<'g>(
    settings: &Settings,
    puts: &'g [Group],
    deletes: &'g [Group],
    outcome: &mut Outcome<'_>,
) -> Replicated<'g> {
    let chunks = |path: &'static str, groups: &'g [Group]| {
        groups
            .chunks(CHUNK_SIZE)
            .map(move |chunk| Post {
                path,
                groups: chunk.iter().collect(),
            })
            .collect::<Vec<_>>()
    };
    let mut posts = chunks(UPSERT, puts);
    posts.extend(chunks(DELETE, deletes));
    let mut taken = Replicated {
        upserted: Vec::new(),
        score_failures: BTreeSet::new(),
    };
    let mut one_by_one = Vec::new();
    for round in 0..2 {
        if posts.is_empty() {
            break;
        }
        for (post, answer) in call_all(settings, posts) {
            match answer {
                Ok(r) if r.is_success() => take(&mut taken, post, &r),
                Ok(r) if round == 0 && (400..500).contains(&r.status) && post.groups.len() > 1 => {
                    usher_sdk::warn!(path = post.path, status = r.status, groups = post.groups.len();
                        "entry service refused a chunk; sending its entries one by one");
                    one_by_one.extend(post.groups.into_iter().map(|g| Post {
                        path: post.path,
                        groups: vec![g],
                    }));
                }
                Ok(r) => {
                    let indices = messages_of(&post.groups);
                    usher_sdk::warn!(path = post.path, status = r.status, body = r.body, message_ids = outcome.ids(&indices);
                        "entry service refused a chunk");
                    outcome.fail(&indices);
                }
                Err(e) => {
                    let indices = messages_of(&post.groups);
                    usher_sdk::warn!(path = post.path, error = e, message_ids = outcome.ids(&indices);
                        "entry service call failed");
                    outcome.fail(&indices);
                }
            }
        }
        posts = std::mem::take(&mut one_by_one);
    }
    taken
}

/// Records a post the Entry Service took. An upsert's answer names the fans
/// whose score refresh failed (`scoreFailures`); an answer without that
/// list (a service that ignored `refreshScores`) counts every fan of the
/// chunk as not refreshed.
fn take<'g>(taken: &mut Replicated<'g>, post: Post<'g>, response: &services::Response) {
    if post.path != UPSERT {
        return;
    }
    let failures = response
        .json::<Value>()
        .ok()
        .and_then(|body| body.get("scoreFailures").cloned())
        .and_then(|list| serde_json::from_value::<Vec<Fan>>(list).ok());
    match failures {
        Some(fans) => taken.score_failures.extend(fans),
        None => {
            usher_sdk::warn!(groups = post.groups.len();
                "the upsert's answer has no scoreFailures; queueing every score for retry");
            taken
                .score_failures
                .extend(post.groups.iter().map(|g| g.entry.fan.clone()));
        }
    }
    taken.upserted.extend(post.groups);
}

/// Queues a `retry-score` message for each upserted fan (still in the
/// table) whose score refresh failed; a failed send fails the fan's messages.
fn queue_score_retries(
    settings: &Settings,
    upserted: &[&Group],
    failures: &BTreeSet<Fan>,
    outcome: &mut Outcome<'_>,
) {
    // Each fan once, with every message that upserted it.
    let mut fans: Vec<(&Fan, Vec<usize>)> = Vec::new();
    let mut index: std::collections::HashMap<&Fan, usize> = std::collections::HashMap::new();
    for group in upserted.iter().filter(|g| failures.contains(&g.entry.fan)) {
        match index.get(&group.entry.fan) {
            Some(&i) => fans[i].1.extend(group.messages.iter().copied()),
            None => {
                index.insert(&group.entry.fan, fans.len());
                fans.push((&group.entry.fan, group.messages.clone()));
            }
        }
    }
    if fans.is_empty() {
        return;
    }
    usher_sdk::warn!(fans = fans.len(), queue = settings.retry_queue;
        "score refresh failed; queueing retries");
    queue_retries(settings, &fans, outcome);
}

fn queue_retries(settings: &Settings, chunk: &[(&Fan, Vec<usize>)], outcome: &mut Outcome<'_>) {
    let mut sendable: Vec<&(&Fan, Vec<usize>)> = Vec::new();
    let mut messages = Vec::new();
    for item in chunk {
        match Outgoing::json(item.0) {
            Ok(m) => {
                messages.push(m);
                sendable.push(item);
            }
            Err(e) => {
                usher_sdk::warn!(error = e; "cannot encode a score retry");
                outcome.fail(&item.1);
            }
        }
    }
    if messages.is_empty() {
        return;
    }
    match queue::send_batch(&settings.retry_queue, &messages) {
        Ok(results) => {
            for (n, (_, indices)) in sendable.into_iter().enumerate() {
                match results.get(n) {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        usher_sdk::warn!(message_ids = outcome.ids(indices), error = e;
                            "queueing a score retry failed");
                        outcome.fail(indices);
                    }
                    None => {
                        usher_sdk::warn!(message_ids = outcome.ids(indices);
                            "no send result for a score retry");
                        outcome.fail(indices);
                    }
                }
            }
        }
        Err(e) => {
            for (_, indices) in sendable {
                usher_sdk::warn!(message_ids = outcome.ids(indices), error = e;
                    "queueing score retries failed");
                outcome.fail(indices);
            }
        }
    }
}

#[cfg(test)]
mod tests;
