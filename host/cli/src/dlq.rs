//! `usher dlq ls` and `usher dlq replay`: inspect and replay the dead-letter
//! queues of the embedded backends' data folder (SQLite in WAL mode, so both
//! work while `usher up` runs on the same folder, or when it is stopped).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use usher_backend_embedded::Embedded;
use usher_registry::{Registry, Trigger};

use crate::store_cmds::Paths;

/// How many messages `dlq ls QUEUE` lists.
const LIST_LIMIT: u32 = 10_000;
/// How many characters of a body `dlq ls QUEUE` shows.
const BODY_CHARS: usize = 200;
/// How many messages one replay step moves.
const REPLAY_STEP: u32 = 100;

/// Every dead-letter queue of the registry: a queue's `dead_letter` (value:
/// the source queues) or a stream's `on_failure` (value: empty).
pub(crate) fn dead_letter_queues(registry: &Registry) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, def) in &registry.resources.queues {
        if let Some(dlq) = &def.dead_letter {
            out.entry(dlq.clone()).or_default().push(name.clone());
        }
    }
    for spec in registry.workers.values() {
        if let Trigger::Stream {
            on_failure: Some(q),
            ..
        } = &spec.trigger
        {
            out.entry(q.clone()).or_default();
        }
    }
    out
}

fn open(paths: &Paths, data: &Path) -> Result<(Registry, Embedded)> {
    let registry = paths.registry()?;
    let embedded = Embedded::open(data, &registry.resources)
        .with_context(|| format!("opening the embedded backends in {}", data.display()))?;
    Ok((registry, embedded))
}

fn preview(body: &str) -> String {
    let mut s: String = body.chars().take(BODY_CHARS).collect();
    if body.chars().nth(BODY_CHARS).is_some() {
        s.push('…');
    }
    s
}

pub async fn ls(paths: &Paths, data: &Path, queue: Option<&str>, json_out: bool) -> Result<()> {
    let (registry, embedded) = open(paths, data)?;
    let queues = embedded.queues();
    let dlqs = dead_letter_queues(&registry);
    match queue {
        None => {
            let mut rows = Vec::new();
            for (dlq, sources) in &dlqs {
                let d = queues.depth(dlq).await?;
                rows.push(json!({
                    "queue": dlq,
                    "sources": sources,
                    "depth": d.visible + d.in_flight + d.delayed,
                    "visible": d.visible,
                    "in_flight": d.in_flight,
                    "delayed": d.delayed,
                }));
            }
            if json_out {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("{:<32} {:>8}  SOURCE", "DEAD-LETTER QUEUE", "DEPTH");
                for r in &rows {
                    let sources: Vec<&str> = r["sources"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    let source = if sources.is_empty() {
                        "(stream on_failure)".to_string()
                    } else {
                        sources.join(", ")
                    };
                    println!(
                        "{:<32} {:>8}  {source}",
                        r["queue"].as_str().unwrap_or_default(),
                        r["depth"]
                    );
                }
            }
        }
        Some(q) => {
            if !registry.resources.queues.contains_key(q) {
                bail!("queue `{q}` is not defined in resources.yaml");
            }
            let messages = queues.list(q, LIST_LIMIT).await?;
            if json_out {
                let rows: Vec<Value> = messages
                    .iter()
                    .map(|m| {
                        json!({
                            "id": m.message_id,
                            "receive_count": m.receive_count,
                            "source": m.dead_letter_source,
                            "body": preview(&m.body),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("{:<38} {:>8}  {:<20} BODY", "ID", "RECEIVES", "SOURCE");
                for m in &messages {
                    println!(
                        "{:<38} {:>8}  {:<20} {}",
                        m.message_id,
                        m.receive_count,
                        m.dead_letter_source.as_deref().unwrap_or("-"),
                        preview(&m.body).replace('\n', " ")
                    );
                }
                eprintln!("{} message(s) in {q}", messages.len());
            }
        }
    }
    Ok(())
}

pub async fn replay(paths: &Paths, data: &Path, queue: &str, to: Option<&str>) -> Result<()> {
    let (registry, embedded) = open(paths, data)?;
    if !registry.resources.queues.contains_key(queue) {
        bail!("queue `{queue}` is not defined in resources.yaml");
    }
    let target = match to {
        Some(t) => {
            if !registry.resources.queues.contains_key(t) {
                bail!("--to queue `{t}` is not defined in resources.yaml");
            }
            t.to_string()
        }
        None => {
            let sources = dead_letter_queues(&registry)
                .remove(queue)
                .unwrap_or_default();
            match sources.as_slice() {
                [one] => one.clone(),
                [] => bail!(
                    "cannot tell where to replay `{queue}`: no queue has it as its dead_letter \
                     (a stream's on_failure queue or a plain queue); name the target with --to QUEUE"
                ),
                many => bail!(
                    "cannot tell where to replay `{queue}`: it is the dead_letter of {}; \
                     name the target with --to QUEUE",
                    many.join(", ")
                ),
            }
        }
    };
    if target == queue {
        bail!("cannot replay `{queue}` onto itself");
    }
    let queues = embedded.queues();
    let d = queues.depth(queue).await?;
    let total = d.visible + d.in_flight + d.delayed;
    let bar = ProgressBar::new(total);
    if std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_message(format!("replaying {queue} -> {target}"));
    let mut moved = 0u64;
    loop {
        let n = queues.move_some(queue, &target, REPLAY_STEP).await?;
        if n == 0 {
            break;
        }
        moved += n;
        if moved > bar.length().unwrap_or(0) {
            bar.set_length(moved);
        }
        bar.set_position(moved);
    }
    bar.finish_and_clear();
    println!("replayed {moved} message(s) from {queue} to {target}");
    Ok(())
}
