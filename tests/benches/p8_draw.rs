//! P8's draw share (a bench binary, not a timed test): one market of
//! 1,000,000 entries and 100,000 winners through
//! `selection/enqueue-market-selections` under wasmtime, on the repository's
//! registry entry, with the embedded (in-memory SQLite) `draws` table and
//! `save-selection` queue: read 200 pages of 5,000 entries, draw, record,
//! reserve 5 × 20,000 codes, enqueue 40,000 messages. The services are
//! scripted with pre-serialized answers, so the figure is the worker's,
//! the boundary's and the queue's, not a service's.
//!
//! Then the same draw again (a retry, recomputed from the record) and
//! `selection/verify-draw` on it.
//!
//! `cargo bench --workspace --bench p8_draw` (after `just build-components pin`);
//! `P8_ENTRIES` and `P8_WINNERS` change the size.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Value};
use usher_capabilities::Method;
use usher_engine::{Input, Output};
use usher_testing::{json_response, FakeServices, TestHost};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let entries = env_or("P8_ENTRIES", 1_000_000);
    let winners = env_or("P8_WINNERS", 100_000);
    let page_size = 5_000;

    // The Entry Service's pages, by cursor, serialized once.
    let started = Instant::now();
    let ids: Vec<String> = (0..entries).map(|i| format!("user-{i:09}")).collect();
    let mut pages: HashMap<String, String> = HashMap::new();
    for (n, chunk) in ids.chunks(page_size).enumerate() {
        let after = if n == 0 {
            String::new()
        } else {
            ids[n * page_size - 1].clone()
        };
        let list: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, id)| {
                json!({"campaignId": "c1", "globalUserId": id, "marketId": "m1",
                       "entry": {"zip": "10001", "tier": "gold"}, "version": 1,
                       "score": (n * page_size + i) % 97})
            })
            .collect();
        let next = (chunk.len() == page_size && (n + 1) * page_size < entries)
            .then(|| chunk[chunk.len() - 1].clone());
        pages.insert(after, json!({"entries": list, "next": next}).to_string());
    }
    let pages = Arc::new(pages);
    let reserved: Arc<Mutex<usize>> = Arc::default();
    eprintln!(
        "p8: {entries} entries in {} pages prepared in {:.1} s",
        pages.len(),
        started.elapsed().as_secs_f64()
    );

    let services = {
        let pages = pages.clone();
        let reserved = reserved.clone();
        FakeServices::with(move |r| {
            let path = r.path.split('?').next().unwrap_or("");
            Ok(match (r.method, path) {
                (Method::Get, "/markets/m1/entries") => {
                    let after = r
                        .path
                        .split('&')
                        .find_map(|p| p.strip_prefix("after="))
                        .unwrap_or("")
                        .to_string();
                    match pages.get(&after) {
                        Some(body) => json_response(200, body),
                        None => json_response(400, r#"{"error":"unknown cursor"}"#),
                    }
                }
                (Method::Get, "/markets/m1/selections") => {
                    json_response(200, r#"{"selections":[],"next":null}"#)
                }
                (Method::Get, "/campaigns/c1/markets/m1") => json_response(
                    200,
                    &json!({"id": "m1", "campaignId": "c1", "eventId": "e1",
                            "selectionCount": winners, "waitlistCount": 1000})
                    .to_string(),
                ),
                (Method::Put, _) => json_response(200, "{}"),
                (Method::Get, "/pools/c1/m1") => json_response(
                    200,
                    &json!({"total": winners, "available": winners}).to_string(),
                ),
                (Method::Post, "/reservations") => {
                    let body: Value =
                        serde_json::from_str(r.body.as_deref().unwrap_or("{}")).unwrap_or_default();
                    let count = body["count"].as_u64().unwrap_or(0) as usize;
                    let id = body["reservationId"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let mut next = reserved.lock().expect("lock");
                    let codes: Vec<String> = (*next..*next + count)
                        .map(|i| format!("CODE-{i:08}"))
                        .collect();
                    *next += count;
                    json_response(
                        200,
                        &json!({"reservationId": id, "codes": codes}).to_string(),
                    )
                }
                _ => json_response(404, r#"{"error":"unknown path"}"#),
            })
        })
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let host = TestHost::builder()
            .registry_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../workers"))
            .services(services.clone())
            .build()
            .expect("test host");
        let started = Instant::now();
        let out = host
            .invoke(
                "selection/enqueue-market-selections",
                Input::Invoke(json!({"campaignId": "c1", "marketId": "m1"})),
            )
            .await
            .expect("invocation");
        let elapsed = started.elapsed();
        let answer = match out.output {
            Output::Invoke(Ok(v)) => v,
            other => panic!("{other:?}"),
        };
        assert_eq!(answer["errors"], json!([]), "{answer}");
        let depth = host
            .embedded
            .queues()
            .depth("save-selection")
            .await
            .expect("depth");
        println!(
            "p8 draw: {entries} entries, {} winners, {} waitlisted: read + draw + record + reserve + enqueue {:.2} s ({} messages queued, {} service calls)",
            answer["stats"]["winners"],
            answer["stats"]["waitlist"],
            elapsed.as_secs_f64(),
            depth.visible,
            services.calls().len()
        );
        println!("p8 draw: steps (ms) {}", answer["stats"]["timingsMs"]);
        // The same draw again (a retry): recomputed from the record.
        let started = Instant::now();
        let again = host
            .invoke(
                "selection/enqueue-market-selections",
                Input::Invoke(json!({"campaignId": "c1", "marketId": "m1"})),
            )
            .await
            .expect("invocation");
        if let Output::Invoke(Ok(v)) = &again.output {
            assert_eq!(v["stats"]["resultDigest"], answer["stats"]["resultDigest"]);
            println!("p8 draw, re-run: steps (ms) {}", v["stats"]["timingsMs"]);
        }
        println!("p8 draw, re-run from the record: {:.2} s", started.elapsed().as_secs_f64());

        // The verification of the same draw (no selection saved here).
        let started = Instant::now();
        let verified = host
            .invoke(
                "selection/verify-draw",
                Input::Invoke(json!({"drawId": "c1.m1"})),
            )
            .await
            .expect("invocation");
        match &verified.output {
            Output::Invoke(Ok(v)) => assert_eq!(v["matches"], json!(true), "{v}"),
            other => panic!("{other:?}"),
        }
        println!(
            "p8 verify-draw: {entries} entries read and drawn again, matches: {:.2} s",
            started.elapsed().as_secs_f64()
        );
    });
}
