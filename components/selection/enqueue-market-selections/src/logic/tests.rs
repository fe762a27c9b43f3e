use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use serde_json::json;
use usher_domain::draw::{DrawEntry, DrawInputs};
use usher_sdk::fakes::{json_response, Call, Fakes};
use usher_sdk::services::Request;

use super::*;

/// The services a draw talks to, in memory: the Campaign Service's market
/// and stats, the Entry Service's paged entries, the Code Service's pool and
/// reservations (a reservation id answers the same codes again).
#[derive(Default)]
struct World {
    market: Option<Value>,
    entries: Vec<(String, Value)>,
    pool: Option<Vec<String>>,
    reservations: BTreeMap<String, Vec<String>>,
    stats: Vec<Value>,
    finished_draws: BTreeSet<String>,
    reserve_conflict: bool,
    entry_pages: usize,
    pool_reads: usize,
}

type Shared = Rc<RefCell<World>>;

fn query(path: &str) -> BTreeMap<String, String> {
    path.split_once('?')
        .map(|(_, q)| {
            q.split('&')
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn body(r: &Request) -> Value {
    serde_json::from_str(r.body.as_deref().unwrap_or("null")).expect("json body")
}

fn world(entries: usize, selection: u64, waitlist: u64, codes: usize) -> Shared {
    Rc::new(RefCell::new(World {
        market: Some(json!({
            "id": "m1", "campaignId": "c1", "eventId": "e1",
            "selectionCount": selection, "waitlistCount": waitlist,
        })),
        entries: (0..entries)
            .map(|i| (format!("fan-{i:05}"), json!((i * 13) % 40)))
            .collect(),
        pool: Some((0..codes).map(|i| format!("CODE-{i:05}")).collect()),
        ..World::default()
    }))
}

fn fakes(w: &Shared) -> Fakes {
    let (a, b, c) = (w.clone(), w.clone(), w.clone());
    Fakes::new()
        .on_service("campaigns", move |r| {
            let mut w = a.borrow_mut();
            match (r.method, r.path.as_str()) {
                (Method::Get, "/campaigns/c1/markets/m1") => Ok(match &w.market {
                    Some(m) => json_response(200, m),
                    None => json_response(404, &json!({"error": "no such market"})),
                }),
                (Method::Put, "/campaigns/c1/markets/m1/stats") => {
                    if w.market.is_none() {
                        return Ok(json_response(404, &json!({"error": "no such market"})));
                    }
                    let b = body(r);
                    let draw = b["drawId"].as_str().unwrap_or_default().to_string();
                    if b["status"] == "PROCESSING" && w.finished_draws.contains(&draw) {
                        return Ok(json_response(409, &json!({"error": "finished"})));
                    }
                    if b["status"] == "FINISHED" {
                        w.finished_draws.insert(draw);
                    }
                    w.stats.push(b.clone());
                    Ok(json_response(200, &b))
                }
                _ => Ok(json_response(404, &json!({"error": "unknown path"}))),
            }
        })
        .on_service("entries", move |r| {
            let mut w = b.borrow_mut();
            assert!(r.path.starts_with("/markets/m1/entries?"), "{}", r.path);
            let q = query(&r.path);
            assert_eq!(q.get("campaignId").map(String::as_str), Some("c1"));
            let limit: usize = q["limit"].parse().expect("limit");
            w.entry_pages += 1;
            let mut sorted = w.entries.clone();
            sorted.sort_by(|x, y| x.0.cmp(&y.0));
            let page: Vec<&(String, Value)> = sorted
                .iter()
                .filter(|(id, _)| q.get("after").is_none_or(|a| id > a))
                .take(limit)
                .collect();
            let next = (page.len() == limit).then(|| page[limit - 1].0.clone());
            let entries: Vec<Value> = page
                .iter()
                .map(|(id, score)| {
                    json!({"campaignId": "c1", "globalUserId": id, "marketId": "m1",
                           "entry": {"zip": "10001"}, "score": score})
                })
                .collect();
            Ok(json_response(
                200,
                &json!({"entries": entries, "next": next}),
            ))
        })
        .on_service("codes", move |r| {
            let mut w = c.borrow_mut();
            match (r.method, r.path.as_str()) {
                (Method::Get, "/pools/c1/m1") => {
                    w.pool_reads += 1;
                    Ok(match &w.pool {
                        Some(p) => {
                            json_response(200, &json!({"total": p.len(), "available": p.len()}))
                        }
                        None => json_response(404, &json!({"error": "no pool"})),
                    })
                }
                (Method::Post, "/reservations") => {
                    let b = body(r);
                    let id = b["reservationId"].as_str().expect("id").to_string();
                    let count = b["count"].as_u64().expect("count") as usize;
                    if let Some(codes) = w.reservations.get(&id) {
                        return Ok(json_response(
                            200,
                            &json!({"reservationId": id, "codes": codes}),
                        ));
                    }
                    let available = w.pool.as_ref().map_or(0, Vec::len);
                    if w.reserve_conflict || available < count {
                        return Ok(json_response(
                            409,
                            &json!({"error": "not enough codes", "available": available}),
                        ));
                    }
                    let codes: Vec<String> =
                        w.pool.as_mut().expect("pool").drain(..count).collect();
                    w.reservations.insert(id.clone(), codes.clone());
                    Ok(json_response(
                        200,
                        &json!({"reservationId": id, "codes": codes}),
                    ))
                }
                _ => Ok(json_response(404, &json!({"error": "unknown path"}))),
            }
        })
}

fn settings() -> Settings {
    Settings::default()
}

fn batches(f: &Fakes) -> Vec<SelectionBatch> {
    f.queued("save-selection")
        .iter()
        .map(|m| serde_json::from_str(&m.body).expect("batch"))
        .collect()
}

fn selections(f: &Fakes) -> Vec<Selection> {
    batches(f).into_iter().flat_map(|b| b.selections).collect()
}

/// The winners' codes in rank order (the order of the reservations).
fn by_rank_codes(mut selections: Vec<Selection>) -> Vec<String> {
    selections.sort_by_key(|s| s.rank);
    selections.into_iter().filter_map(|s| s.code).collect()
}

fn record(f: &Fakes, draw: &str) -> DrawRecord {
    DrawRecord::from_item(f.item("draws", &DrawRecord::key(draw)).expect("record")).expect("parse")
}

fn errors(answer: &Value) -> Vec<String> {
    answer["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["reason"].as_str().expect("reason").to_string())
        .collect()
}

#[test]
fn a_draw_records_reserves_enqueues_and_reports() {
    let w = world(60, 10, 5, 20);
    let f = fakes(&w);
    let _i = f.install();
    let answer = run(&settings(), json!({"campaignId": "c1", "marketId": "m1"})).expect("answer");
    assert_eq!(errors(&answer), Vec::<String>::new(), "{answer}");
    let s = &answer["stats"];
    assert_eq!(s["drawId"], "c1.m1");
    assert_eq!(
        (s["entries"].as_u64(), s["winners"].as_u64()),
        (Some(60), Some(10))
    );
    assert_eq!(
        (s["waitlist"].as_u64(), s["losers"].as_u64()),
        (Some(5), Some(45))
    );
    assert_eq!(
        (s["batches"].as_u64(), s["enqueued"].as_u64()),
        (Some(3), Some(60))
    );
    assert_eq!(s["status"], "ENQUEUED");
    assert_eq!(s["finished"], true);

    // The record: the seed and counts, both digests, written before the
    // first reservation and the first message.
    let r = record(&f, "c1.m1");
    assert_eq!(
        (r.selection_count, r.waitlist_count, r.entries),
        (10, 5, 60)
    );
    assert_eq!(r.status, DrawStatus::Enqueued);
    assert_eq!(r.seed.len(), 32);
    let calls = f.calls();
    let put = calls
        .iter()
        .position(|c| matches!(c, Call::Put { table, .. } if table == "draws"));
    let reserve = calls.iter().position(|c| matches!(c, Call::ServiceMany(_)));
    let send = calls.iter().position(|c| matches!(c, Call::Send { .. }));
    assert!(
        put < reserve && reserve < send,
        "{put:?} {reserve:?} {send:?}"
    );

    // The selections are the rule's, recomputed from the record.
    let inputs = DrawInputs::new(
        w.borrow()
            .entries
            .iter()
            .map(|(id, s)| DrawEntry::new(id.clone(), s.as_u64().unwrap_or(0)))
            .collect(),
    )
    .expect("inputs");
    assert_eq!(r.input_digest, inputs.digest());
    let outcome = draw::draw(&inputs, &r.seed, 10, 5);
    assert_eq!(r.result_digest, outcome.result_digest);
    // In fan order (the inputs' `globalUserId` order), each with its rank.
    assert_eq!(r.batch_order, BatchOrder::Fan);
    let got = selections(&f);
    assert_eq!(got.len(), 60);
    let ranks = outcome.ranks();
    for (index, s) in got.iter().enumerate() {
        assert_eq!(s.global_user_id, inputs.entries()[index].global_user_id);
        assert_eq!(s.rank, u64::from(ranks[index]));
        assert_eq!(s.verdict, outcome.counts.verdict(s.rank));
        assert_eq!(s.code.is_some(), s.verdict == Verdict::Winner);
    }
    assert!(got
        .windows(2)
        .all(|w| w[0].global_user_id < w[1].global_user_id));
    let codes: BTreeSet<_> = got.iter().filter_map(|s| s.code.clone()).collect();
    assert_eq!(codes.len(), 10);
    assert!(batches(&f)
        .iter()
        .all(|b| b.selections.len() <= 25 && b.draw_id == "c1.m1"));
    assert_eq!(
        batches(&f).iter().map(|b| b.batch).collect::<Vec<_>>(),
        [0, 1, 2]
    );

    // PROCESSING then FINISHED, with the counts.
    let stats = w.borrow().stats.clone();
    assert_eq!(stats.len(), 2);
    assert_eq!(stats[0]["status"], "PROCESSING");
    assert_eq!(stats[1]["status"], "FINISHED");
    assert_eq!(stats[1]["entries"], 60);
    assert_eq!(
        stats[1]["expected"],
        json!({"winners": 10, "losers": 45, "waitlisted": 5})
    );
    assert_eq!(
        w.borrow().reservations.keys().collect::<Vec<_>>(),
        ["c1.m1#0"]
    );
}

#[test]
fn running_again_gives_the_same_draw_and_reuses_the_reservations() {
    let w = world(60, 10, 5, 20);
    let f = fakes(&w);
    let _i = f.install();
    let payload = json!({"campaignId": "c1", "marketId": "m1"});
    let first = run(&settings(), payload.clone()).expect("first");
    let first_record = record(&f, "c1.m1");
    let first_selections = selections(&f);
    let second = run(&settings(), payload).expect("second");
    assert_eq!(errors(&second), Vec::<String>::new(), "{second}");
    assert_eq!(second["stats"]["existingRecord"], true);
    for field in ["seed", "inputDigest", "resultDigest", "winners"] {
        assert_eq!(first["stats"][field], second["stats"][field], "{field}");
    }
    // The record is the first one (same seed, same creation), the pool is
    // not read again, the same reservation id answers the same codes.
    let again = record(&f, "c1.m1");
    assert_eq!(
        (again.seed.as_str(), again.created_at.as_str()),
        (first_record.seed.as_str(), first_record.created_at.as_str())
    );
    assert_eq!(w.borrow().pool_reads, 1);
    assert_eq!(w.borrow().reservations.len(), 1);
    assert_eq!(w.borrow().pool.as_ref().map(Vec::len), Some(10));
    let all = selections(&f);
    assert_eq!(all.len(), 120);
    assert_eq!(&all[60..], &first_selections[..]);
    assert_eq!(f.count("put"), 1);
}

/// A record written before `batchOrder` existed (a draw begun by an older
/// version, re-run after a swap) is sent by rank again: batch `n` holds the
/// same selections as when it was first sent, so its report id
/// `<drawId>#<n>` still stands for the same counts.
#[test]
fn a_record_without_a_batch_order_is_sent_again_by_rank() {
    let w = world(60, 10, 5, 20);
    let f = fakes(&w);
    let payload = json!({"campaignId": "c1", "marketId": "m1"});
    let (fan_order, mut older) = {
        let _i = f.install();
        run(&settings(), payload.clone()).expect("first");
        let item = f.item("draws", &DrawRecord::key("c1.m1")).expect("record");
        (selections(&f), item)
    };
    older.as_object_mut().expect("an item").remove("batchOrder");
    let g = fakes(&w).with_item("draws", older);
    let _i = g.install();
    let answer = run(&settings(), payload).expect("again");
    assert_eq!(errors(&answer), Vec::<String>::new(), "{answer}");
    assert_eq!(answer["stats"]["existingRecord"], true);
    let by_rank = selections(&g);
    assert_eq!(
        by_rank.iter().map(|s| s.rank).collect::<Vec<_>>(),
        (0..60).collect::<Vec<u64>>()
    );
    assert_eq!(
        batches(&g).iter().map(|b| b.batch).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    // The same selections as the fan-order run, only cut differently.
    let mut fan_sorted = fan_order;
    fan_sorted.sort_by_key(|s| s.rank);
    assert_eq!(by_rank, fan_sorted);
}

#[test]
fn a_crash_between_reservation_and_enqueue_is_finished_by_the_next_run() {
    let w = world(60, 10, 0, 20);
    let queue_down = Rc::new(RefCell::new(true));
    let down = queue_down.clone();
    let sent: Rc<RefCell<Vec<String>>> = Rc::default();
    let kept = sent.clone();
    let f = fakes(&w).on_queue(move |_, messages| {
        if *down.borrow() {
            Err(Error::Unavailable("queue down".into()))
        } else {
            kept.borrow_mut()
                .extend(messages.iter().map(|m| m.body.clone()));
            Ok(messages
                .iter()
                .enumerate()
                .map(|(i, _)| Ok(format!("m{i}")))
                .collect())
        }
    });
    let _i = f.install();
    let payload = json!({"campaignId": "c1", "marketId": "m1"});
    let first = run(&settings(), payload.clone()).expect("first");
    assert!(errors(&first).iter().all(|r| r == "queue"), "{first}");
    assert_eq!(first["stats"]["finished"], false);
    assert_eq!(first["stats"]["status"], "RESERVED");
    assert_eq!(record(&f, "c1.m1").status, DrawStatus::Reserved);
    assert_eq!(w.borrow().stats.len(), 1, "PROCESSING only");
    let reserved = w.borrow().reservations.clone();

    *queue_down.borrow_mut() = false;
    let second = run(&settings(), payload).expect("second");
    assert_eq!(errors(&second), Vec::<String>::new(), "{second}");
    assert_eq!(
        w.borrow().reservations,
        reserved,
        "the same reservation, no second one"
    );
    let got: Vec<Selection> = sent
        .borrow()
        .iter()
        .flat_map(|b| {
            serde_json::from_str::<SelectionBatch>(b)
                .expect("batch")
                .selections
        })
        .collect();
    assert_eq!(by_rank_codes(got), reserved["c1.m1#0"]);
    assert_eq!(record(&f, "c1.m1").status, DrawStatus::Enqueued);
    assert_eq!(
        w.borrow().stats.last().map(|s| s["status"].clone()),
        Some(json!("FINISHED"))
    );
}

#[test]
fn a_code_service_409_enqueues_nothing() {
    let w = world(60, 10, 0, 20);
    w.borrow_mut().reserve_conflict = true;
    let f = fakes(&w);
    let _i = f.install();
    let answer = run(&settings(), json!({"campaignId": "c1", "marketId": "m1"})).expect("answer");
    assert_eq!(errors(&answer), ["not-enough-codes"], "{answer}");
    assert!(answer["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("20 available"));
    assert!(f.sends().is_empty());
    assert_eq!(answer["stats"]["finished"], false);
    // The record stays: loading codes and running again gives the same draw.
    let seed = record(&f, "c1.m1").seed;
    w.borrow_mut().reserve_conflict = false;
    let again = run(&settings(), json!({"campaignId": "c1", "marketId": "m1"})).expect("again");
    assert_eq!(errors(&again), Vec::<String>::new(), "{again}");
    assert_eq!(again["stats"]["seed"], json!(seed));
}

#[test]
fn too_few_codes_or_no_pool_write_nothing() {
    for (pool, reason) in [(Some(9usize), "not-enough-codes"), (None, "no-codes")] {
        let w = world(60, 10, 0, 0);
        w.borrow_mut().pool = pool.map(|n| (0..n).map(|i| format!("C{i}")).collect());
        let f = fakes(&w);
        let _i = f.install();
        let answer =
            run(&settings(), json!({"campaignId": "c1", "marketId": "m1"})).expect("answer");
        assert_eq!(errors(&answer), [reason], "{answer}");
        assert!(f.items("draws").is_empty(), "no record");
        assert!(w.borrow().stats.is_empty(), "no PROCESSING");
        assert!(w.borrow().reservations.is_empty());
        assert!(f.sends().is_empty());
    }
}

#[test]
fn every_page_of_entries_is_read() {
    let w = world(60, 10, 0, 20);
    let f = fakes(&w).setting("page_size", json!(7));
    let _i = f.install();
    let settings = Settings::load().expect("settings");
    assert_eq!(settings.page_size, 7);
    let answer = run(&settings, json!({"campaignId": "c1", "marketId": "m1"})).expect("answer");
    assert_eq!(errors(&answer), Vec::<String>::new(), "{answer}");
    assert_eq!(answer["stats"]["entries"], 60);
    assert_eq!(w.borrow().entry_pages, 9);
    let fans: BTreeSet<String> = selections(&f)
        .into_iter()
        .map(|s| s.global_user_id)
        .collect();
    assert_eq!(fans.len(), 60);
}

#[test]
fn unknown_market_no_entries_and_bad_payloads() {
    let w = world(10, 3, 0, 5);
    w.borrow_mut().market = None;
    let f = fakes(&w);
    let _i = f.install();
    let answer = run(&settings(), json!({"campaignId": "c1", "marketId": "m1"})).expect("answer");
    assert_eq!(errors(&answer), ["unknown-market"], "{answer}");
    assert!(f.items("draws").is_empty());
    drop(_i);

    let w = world(0, 3, 0, 5);
    let f = fakes(&w);
    let _i = f.install();
    let answer = run(&settings(), json!({"campaignId": "c1", "marketId": "m1"})).expect("answer");
    assert_eq!(errors(&answer), ["no-entries"], "{answer}");
    assert!(f.items("draws").is_empty());
    assert!(w.borrow().stats.is_empty());

    for bad in [
        json!([]),
        json!({"marketId": "m1"}),
        json!({"campaignId": "", "marketId": "m1"}),
        json!({"campaignId": "c1", "marketId": "m1", "selectionCount": -1}),
        json!({"campaignId": "c1", "marketId": "m1", "surprise": 1}),
    ] {
        let e = run(&settings(), bad.clone()).expect_err("invalid");
        assert_eq!(e.kind, "InvalidInput", "{bad}");
    }
}

#[test]
fn changed_entries_or_other_counts_are_refused_on_a_re_run() {
    let w = world(40, 10, 0, 20);
    let f = fakes(&w);
    let _i = f.install();
    let payload = json!({"campaignId": "c1", "marketId": "m1", "selectionCount": 10});
    run(&settings(), payload.clone()).expect("first");
    let sent = f.queued("save-selection").len();

    w.borrow_mut().entries[3].1 = json!(999);
    let answer = run(&settings(), payload).expect("changed");
    assert_eq!(errors(&answer), ["entries-changed"], "{answer}");
    assert_eq!(f.queued("save-selection").len(), sent, "nothing enqueued");

    let answer = run(
        &settings(),
        json!({"campaignId": "c1", "marketId": "m1", "selectionCount": 11}),
    )
    .expect("other counts");
    assert_eq!(errors(&answer), ["record-mismatch"], "{answer}");
    let answer = run(
        &settings(),
        json!({"campaignId": "c1", "marketId": "m1", "seed": "other"}),
    )
    .expect("other seed");
    assert_eq!(errors(&answer), ["record-mismatch"], "{answer}");
    assert_eq!(f.queued("save-selection").len(), sent);
}

#[test]
fn a_given_seed_and_counts_need_no_campaign_service_read() {
    let w = world(30, 4, 2, 10);
    let f = fakes(&w);
    let _i = f.install();
    let answer = run(
        &settings(),
        json!({"campaignId": "c1", "marketId": "m1", "selectionCount": 4, "waitlistCount": 2,
               "drawId": "d-7", "seed": "public-seed"}),
    )
    .expect("answer");
    assert_eq!(errors(&answer), Vec::<String>::new(), "{answer}");
    assert!(!f
        .requests()
        .iter()
        .any(|r| r.method == Method::Get && r.service == "campaigns"));
    let r = record(&f, "d-7");
    assert_eq!(r.seed, "public-seed");
    assert_eq!(r.reservation_id, "d-7");
    assert_eq!(
        w.borrow().reservations.keys().collect::<Vec<_>>(),
        ["d-7#0"]
    );
}

#[test]
fn a_concurrent_runs_record_is_followed() {
    let w = world(30, 5, 0, 20);
    let inputs = DrawInputs::new(
        w.borrow()
            .entries
            .iter()
            .map(|(id, s)| DrawEntry::new(id.clone(), s.as_u64().unwrap_or(0)))
            .collect(),
    )
    .expect("inputs");
    // Another run records the same draw with its own seed just before ours.
    let f = fakes(&w).intercept(move |call, tables| {
        if let Call::Put { table, item, .. } = call {
            if table == "draws" && tables.get("draws", item).is_none() {
                let mut theirs = item.clone();
                theirs["seed"] = json!("their-seed");
                theirs["resultDigest"] =
                    json!(draw::draw(&inputs, "their-seed", 5, 0).result_digest);
                tables.insert("draws", theirs);
            }
        }
        None
    });
    let _i = f.install();
    let answer = run(&settings(), json!({"campaignId": "c1", "marketId": "m1"})).expect("answer");
    assert_eq!(errors(&answer), Vec::<String>::new(), "{answer}");
    assert_eq!(answer["stats"]["seed"], "their-seed");
    assert_eq!(answer["stats"]["existingRecord"], true);
    assert_eq!(record(&f, "c1.m1").seed, "their-seed");
    assert_eq!(selections(&f).len(), 30);
}

#[test]
fn fifty_thousand_winners_take_three_reservations_in_rank_order() {
    let w = world(50_050, 50_000, 10, 60_000);
    let f = fakes(&w);
    let _i = f.install();
    let answer = run(&settings(), json!({"campaignId": "c1", "marketId": "m1"})).expect("answer");
    assert_eq!(errors(&answer), Vec::<String>::new());
    let reservations = w.borrow().reservations.clone();
    assert_eq!(
        reservations
            .iter()
            .map(|(k, v)| (k.as_str(), v.len()))
            .collect::<Vec<_>>(),
        [
            ("c1.m1#0", 20_000),
            ("c1.m1#1", 20_000),
            ("c1.m1#2", 10_000)
        ]
    );
    let in_order: Vec<String> = (0..3)
        .flat_map(|i| reservations[&format!("c1.m1#{i}")].clone())
        .collect();
    assert_eq!(by_rank_codes(selections(&f)), in_order);
    assert_eq!(f.count("call_many"), 1);
    assert_eq!(answer["stats"]["batches"], 2002);
}

#[test]
fn times_are_rfc3339() {
    let now = now_rfc3339();
    assert!(usher_domain::rfc3339::is_valid(&now), "{now}");
    assert!(now.starts_with("20"), "{now}");
}
