//! What P8's two per-entry writes cost the embedded store with nothing else
//! running: the lower bound of `usher demo p8` on this machine
//! (BENCHMARKS.md, P8).
//!
//! `cargo bench -p usher-backend-embedded --bench p8_store_floor`
//! (`FLOOR_ROWS`, default 1,000,000: the market's entries; `FLOOR_BATCH`,
//! default 500: items a call, as save-selections sends them;
//! `FLOOR_PRELOAD=shuffled`: the items stored in a random order, as fans
//! register, instead of key order; `FLOOR_ORDER=key`: steps 2–4 in key
//! order, as the draw's fan-ordered batches send them, instead of a
//! draw's rank order).
//!
//! 1. Preload (not timed): `FLOOR_ROWS` demand-table items of P8's shape
//!    (~375 bytes), in key order unless `FLOOR_PRELOAD=shuffled`; the
//!    change log trimmed.
//! 2. **Verdicts**: every item's verdict through `update_many_text`, in a
//!    shuffled order (a draw's ranks), exactly the update `selection/save-selections`
//!    sends (set verdict, drawId, updatedAt; remove accessCode; condition:
//!    exists), each change logged with both images (demand-table has
//!    stream followers).
//! 3. **Selections**: the Entry Service's selection item of every fan
//!    through `batch_write` puts into `entries` (not logged: no stream
//!    follows it), in the same order, as `POST /entries/verdicts` writes
//!    them.
//! 4. **SQLite alone** on demand-table's own file, the store closed: the
//!    same verdicts as one `SELECT`, one `UPDATE` by rowid of a text edit (no
//!    JSON parse) and one change-log `INSERT` each, `FLOOR_BATCH` a
//!    transaction, with the store's pragmas and then `FLOOR_PRAGMAS` (e.g.
//!    `synchronous = OFF`): what no store built on SQLite can go below. The
//!    edit makes each row one byte longer: a first verdict lengthens the
//!    item too, and SQLite rewrites a cell in place only when its size is
//!    unchanged, so an edit of the same size would measure a cheaper write
//!    than P8's.
//!
//! Each step prints its wall time and the process's CPU time per row (the
//! bench is the only thing running; the store's writes run on tokio's
//! blocking threads, so the process's CPU is theirs).

use std::path::Path;
use std::time::Instant;

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Map, Value};
use usher_backend_embedded::Embedded;
use usher_capabilities::{CapError, Condition, TableBackend, UpdateItem, WriteOp};
use usher_registry::{Resources, TableDef};

const DEMAND: &str = "demand-table";
const ENTRIES: &str = "entries";
const CAMPAIGN: &str = "p8-1796670395876";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The process's user + system CPU seconds (`/proc/self/stat`, in clock
/// ticks of 1/100 s).
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields[i].parse::<f64>().expect("stat field");
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    (ticks(11) + ticks(12)) / 100.0
}

struct Step {
    wall: Instant,
    cpu: f64,
}

impl Step {
    fn start() -> Step {
        Step {
            wall: Instant::now(),
            cpu: cpu_s(),
        }
    }

    fn report(self, what: &str, rows: usize) {
        let wall = self.wall.elapsed().as_secs_f64();
        let cpu = cpu_s() - self.cpu;
        let per = |s: f64| s / rows as f64 * 1e6;
        println!(
            "{what:<44} {rows} rows: {wall:7.2} s wall, {cpu:7.2} s CPU, {:5.1} µs wall / {:5.1} µs CPU a row",
            per(wall),
            per(cpu)
        );
    }
}

fn user(i: usize) -> String {
    format!("fan-{i:07}")
}

fn demand_key(i: usize) -> Value {
    json!({"PK": format!("ENTRY#{CAMPAIGN}#{}", user(i)), "SK": "ENTRY"})
}

/// A demand-table item as `usher demo p8` preloads it.
fn image(i: usize) -> Value {
    let u = user(i);
    json!({
        "PK": format!("ENTRY#{CAMPAIGN}#{u}"), "SK": "ENTRY",
        "campaignId": CAMPAIGN, "globalUserId": u, "marketId": "m1",
        "entry": {"firstName": format!("Fan{i}"), "zip": format!("{:05}", 10000 + i % 90000), "age": 18 + i % 60},
        "email": format!("{u}@fans.example"), "verdict": "PENDING", "needsReplication": false,
        "version": 1, "createdAt": "2026-12-07T19:00:00.000Z", "updatedAt": "2026-12-07T19:00:00.000Z",
    })
}

/// A fixed shuffle of `0..n` (from `seed`).
fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    use rand::{seq::SliceRandom, SeedableRng};
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    order
}

/// Panics on a failed call or a failed item of it.
fn check<T>(results: Result<Vec<Result<T, CapError>>, CapError>, what: &str) {
    let first = results.and_then(|r| r.into_iter().find_map(Result::err).map_or(Ok(()), Err));
    if let Err(e) = first {
        panic!("{what}: {e}");
    }
}

fn main() {
    let rows = env_usize("FLOOR_ROWS", 1_000_000);
    let batch = env_usize("FLOOR_BATCH", 500).max(1);
    let dir = tempfile::tempdir().expect("a temporary folder");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    // `FLOOR_ORDER=key`: the verdicts and selections in the entries' key
    // order instead of a draw's.
    let order = match std::env::var("FLOOR_ORDER").as_deref() {
        Ok("key") => (0..rows).collect(),
        _ => shuffled(rows, 0x9E37_79B9_7F4A_7C15),
    };
    // `FLOOR_PRELOAD=shuffled`: the items stored in another random order
    // (fans registering in no order of their ids) instead of key order.
    let preload = match std::env::var("FLOOR_PRELOAD").as_deref() {
        Ok("shuffled") => shuffled(rows, 0x2545_F491_4F6C_DD1D),
        _ => (0..rows).collect(),
    };
    rt.block_on(store_steps(dir.path(), batch, &preload, &order));
    raw_sqlite(dir.path(), rows, batch, &order);
}

async fn store_steps(dir: &Path, batch: usize, preload_order: &[usize], order: &[usize]) {
    let rows = order.len();
    let mut resources = Resources::default();
    for t in [DEMAND, ENTRIES] {
        resources.tables.insert(
            t.into(),
            TableDef {
                partition_key: "PK".into(),
                sort_key: Some("SK".into()),
            },
        );
    }
    let embedded = Embedded::open(dir, &resources).expect("the embedded store");
    let tables = embedded.tables();
    tables.log_changes_only_of([DEMAND]);

    let preload = Step::start();
    for chunk in preload_order.chunks(5000) {
        let writes = chunk.iter().map(|&i| WriteOp::Put(image(i))).collect();
        check(tables.batch_write(DEMAND, writes).await, "preload");
    }
    let log = embedded.change_log();
    let seq = log.latest_seq(DEMAND).await.expect("latest seq");
    log.trim_through(DEMAND, seq).await.expect("trim");
    preload.report("preload (not part of the floor)", rows);

    let verdicts = Step::start();
    for chunk in order.chunks(batch) {
        let updates = chunk
            .iter()
            .map(|&i| {
                let mut set = Map::new();
                set.insert(
                    "verdict".into(),
                    json!(if i % 10 == 0 { "WINNER" } else { "LOSER" }),
                );
                set.insert("drawId".into(), json!("draw-0123456789abcdef"));
                set.insert("updatedAt".into(), json!("2026-12-07T19:05:00.000Z"));
                UpdateItem {
                    key: demand_key(i),
                    set,
                    remove: vec!["accessCode".into()],
                    condition: Some(Condition::Exists),
                }
            })
            .collect();
        check(tables.update_many_text(DEMAND, updates).await, "verdicts");
    }
    verdicts.report("store: demand-table verdicts (logged)", rows);

    let selections = Step::start();
    for chunk in order.chunks(batch) {
        let writes = chunk
            .iter()
            .map(|&i| {
                let u = user(i);
                WriteOp::Put(json!({
                    "PK": format!("SELECTION#{CAMPAIGN}#m1"), "SK": format!("FAN#{u}"),
                    "globalUserId": u, "campaignId": CAMPAIGN, "marketId": "m1",
                    "verdict": if i % 10 == 0 { "WINNER" } else { "LOSER" },
                    "drawId": "draw-0123456789abcdef",
                }))
            })
            .collect();
        check(tables.batch_write(ENTRIES, writes).await, "selections");
    }
    selections.report("store: Entry Service selections (not logged)", rows);
}

/// Step 4: SQLite alone, on demand-table's file (the store closed).
fn raw_sqlite(dir: &Path, rows: usize, batch: usize, order: &[usize]) {
    let file = dir.join("tables").join(format!("{DEMAND}.db"));
    assert!(
        file.exists(),
        "no {} (the store's layout changed?)",
        file.display()
    );
    let mut conn = Connection::open(&file).expect("demand-table's file");
    // The store's pragmas (db.rs).
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -32768;
         PRAGMA mmap_size = 4294967296; PRAGMA wal_autocheckpoint = 8192;",
    )
    .expect("pragmas");
    let extra = std::env::var("FLOOR_PRAGMAS").unwrap_or_default();
    let mut label = "SQLite alone: the same verdicts (no JSON)".to_string();
    if !extra.is_empty() {
        for pragma in extra.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            conn.execute_batch(&format!("PRAGMA {pragma};"))
                .unwrap_or_else(|e| panic!("PRAGMA {pragma}: {e}"));
        }
        label = format!("SQLite alone, {extra}");
    }
    let step = Step::start();
    for chunk in order.chunks(batch) {
        let tx = conn.transaction().expect("a transaction");
        {
            let mut get = tx
                .prepare_cached("SELECT id, item FROM items WHERE tbl = ?1 AND pk = ?2 AND sk = ?3")
                .expect("select");
            let mut update = tx
                .prepare_cached("UPDATE items SET item = ?2 WHERE id = ?1")
                .expect("update");
            let mut append = tx
                .prepare_cached(
                    "INSERT INTO changes (tbl, event_name, keys, new_image, old_image, ts_ms)
                     VALUES (?1, 'MODIFY', ?2, ?3, ?4, 0)",
                )
                .expect("insert");
            for &i in chunk {
                let pk = format!("ENTRY#{CAMPAIGN}#{}", user(i));
                let (id, old): (i64, String) = get
                    .query_row(params![DEMAND, pk, "ENTRY"], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
                    .expect("select")
                    .expect("the item");
                let new = old.replacen("\"verdict\":\"", "\"verdict\":\"X", 1);
                update.execute(params![id, new]).expect("update");
                let keys = format!("{{\"PK\":\"{pk}\",\"SK\":\"ENTRY\"}}");
                append
                    .execute(params![DEMAND, keys, new, old])
                    .expect("append");
            }
        }
        tx.commit().expect("commit");
    }
    step.report(&label, rows);
}
