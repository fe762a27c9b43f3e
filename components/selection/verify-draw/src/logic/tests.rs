use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use serde_json::json;
use usher_domain::draw::{DrawCounts, DrawEntry, DrawStatus};
use usher_sdk::fakes::{json_response, Fakes};

use super::*;

/// A draw made by the rule, its record, the Entry Service's entries and
/// saved selections, the Code Service's reservations; each test changes one
/// thing.
struct World {
    entries: Vec<(String, u64)>,
    selections: Vec<Value>,
    reservations: BTreeMap<String, Vec<String>>,
    entries_down: bool,
}

type Shared = Rc<RefCell<World>>;

const SEED: &str = "seed-42";

fn made(n: usize, selection: u64, waitlist: u64) -> (Shared, DrawRecord) {
    let entries: Vec<(String, u64)> = (0..n)
        .map(|i| (format!("fan-{i:04}"), (i as u64 * 7) % 30))
        .collect();
    let inputs = DrawInputs::new(
        entries
            .iter()
            .map(|(id, s)| DrawEntry::new(id.clone(), *s))
            .collect(),
    )
    .expect("inputs");
    let outcome = draw::draw(&inputs, SEED, selection, waitlist);
    let codes: Vec<String> = (0..outcome.counts.winners)
        .map(|i| format!("CODE-{i}"))
        .collect();
    let mut reservations = BTreeMap::new();
    for (i, chunk) in codes.chunks(MAX_RESERVATION).enumerate() {
        reservations.insert(format!("d1#{i}"), chunk.to_vec());
    }
    let selections = outcome
        .order
        .iter()
        .enumerate()
        .map(|(rank, &i)| {
            let verdict = outcome.counts.verdict(rank as u64);
            let mut s = json!({"globalUserId": inputs.entries()[i as usize].global_user_id, "verdict": verdict});
            if verdict == Verdict::Winner {
                s["code"] = json!(codes[rank]);
            }
            s
        })
        .collect();
    let record = DrawRecord {
        draw_id: "d1".into(),
        campaign_id: "c1".into(),
        market_id: "m1".into(),
        rule: RULE.into(),
        seed: SEED.into(),
        selection_count: selection,
        waitlist_count: waitlist,
        entries: n as u64,
        counts: DrawCounts::of(n as u64, selection, waitlist),
        input_digest: inputs.digest().into(),
        result_digest: outcome.result_digest.clone(),
        reservation_id: "d1".into(),
        reservations: reservations.len() as u64,
        created_at: "2026-12-06T10:00:00Z".into(),
        updated_at: "2026-12-06T10:00:00Z".into(),
        status: DrawStatus::Enqueued,
        batch_order: Default::default(),
        other: Default::default(),
    };
    let world = World {
        entries,
        selections,
        reservations,
        entries_down: false,
    };
    (Rc::new(RefCell::new(world)), record)
}

fn query(path: &str, name: &str) -> Option<String> {
    path.split_once('?')?.1.split('&').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

fn fakes(w: &Shared, record: &DrawRecord) -> Fakes {
    let (a, b) = (w.clone(), w.clone());
    Fakes::new()
        .with_item("draws", record.to_item().expect("item"))
        .on_service("entries", move |r| {
            let w = a.borrow();
            if w.entries_down {
                return Ok(json_response(503, &json!({"error": "down"})));
            }
            let limit: usize = query(&r.path, "limit").expect("limit").parse().expect("n");
            let after = query(&r.path, "after");
            let (items, key): (Vec<Value>, &str) = if r.path.starts_with("/markets/m1/entries?") {
                let mut e = w.entries.clone();
                e.sort();
                (
                    e.into_iter()
                        .map(|(id, s)| json!({"globalUserId": id, "score": s, "marketId": "m1"}))
                        .collect(),
                    "entries",
                )
            } else if r.path.starts_with("/markets/m1/selections?") {
                let mut s = w.selections.clone();
                s.sort_by(|x, y| x["globalUserId"].as_str().cmp(&y["globalUserId"].as_str()));
                (s, "selections")
            } else {
                return Ok(json_response(404, &json!({"error": "unknown path"})));
            };
            let page: Vec<Value> = items
                .into_iter()
                .filter(|i| {
                    after
                        .as_deref()
                        .is_none_or(|a| i["globalUserId"].as_str().unwrap_or("") > a)
                })
                .take(limit)
                .collect();
            let next = (page.len() == limit).then(|| page[limit - 1]["globalUserId"].clone());
            Ok(json_response(200, &json!({key: page, "next": next})))
        })
        .on_service("codes", move |r| {
            let w = b.borrow();
            let id = r
                .path
                .strip_prefix("/reservations/")
                .expect("path")
                .replace("%23", "#");
            Ok(match w.reservations.get(&id) {
                Some(codes) => json_response(200, &json!({"reservationId": id, "codes": codes})),
                None => json_response(404, &json!({"error": "no such reservation"})),
            })
        })
}

fn verify(f: &Fakes) -> Value {
    let _i = f.install();
    run(
        &Settings {
            page_size: 7,
            ..Settings::default()
        },
        json!({"drawId": "d1"}),
    )
    .expect("answer")
}

#[test]
fn a_draw_and_its_saved_selections_match() {
    let (w, record) = made(50, 10, 5);
    let answer = verify(&fakes(&w, &record));
    assert_eq!(answer["matches"], true, "{answer}");
    assert_eq!(answer["differences"], json!([]));
    assert_eq!(answer["inputDigest"], json!(record.input_digest));
    assert_eq!(answer["resultDigest"], json!(record.result_digest));
    let s = &answer["selections"];
    assert_eq!(
        (
            s["expected"].as_u64(),
            s["saved"].as_u64(),
            s["agree"].as_u64()
        ),
        (Some(50), Some(50), Some(50))
    );
    assert_eq!(s["complete"], true);
    assert_eq!(s["codesChecked"], 10);
    assert_eq!(answer["recomputed"]["winners"], 10);
}

#[test]
fn selections_not_saved_yet_are_no_difference() {
    let (w, record) = made(50, 10, 5);
    w.borrow_mut().selections.truncate(20);
    let answer = verify(&fakes(&w, &record));
    assert_eq!(answer["matches"], true, "{answer}");
    assert_eq!(answer["selections"]["saved"], 20);
    assert_eq!(answer["selections"]["complete"], false);
    w.borrow_mut().selections.clear();
    let answer = verify(&fakes(&w, &record));
    assert_eq!(answer["matches"], true, "{answer}");
    assert_eq!(answer["selections"]["codesChecked"], 0);
}

fn differences(answer: &Value) -> String {
    answer["differences"].to_string()
}

#[test]
fn changed_entries_do_not_match() {
    let (w, record) = made(50, 10, 5);
    w.borrow_mut().entries[7].1 += 1;
    let answer = verify(&fakes(&w, &record));
    assert_eq!(answer["matches"], false);
    assert!(differences(&answer).contains("input digest"), "{answer}");

    let (w, record) = made(50, 10, 5);
    w.borrow_mut().entries.push(("late-fan".into(), 3));
    let answer = verify(&fakes(&w, &record));
    assert_eq!(answer["matches"], false);
    assert!(
        differences(&answer).contains("50 entries recorded, 51"),
        "{answer}"
    );
}

#[test]
fn a_tampered_record_does_not_match() {
    let (w, mut record) = made(50, 10, 5);
    record.seed = "another-seed".into();
    let answer = verify(&fakes(&w, &record));
    assert_eq!(answer["matches"], false);
    assert!(differences(&answer).contains("result digest"), "{answer}");
    // The saved winners are no longer the recomputed ones either.
    assert!(
        answer["selections"]["disagree"].as_u64().unwrap_or(0) > 0,
        "{answer}"
    );
}

#[test]
fn wrong_saved_selections_do_not_match() {
    // A loser saved as a winner.
    let (w, record) = made(50, 10, 5);
    {
        let mut w = w.borrow_mut();
        let last = w.selections.len() - 1;
        w.selections[last]["verdict"] = json!("WINNER");
        w.selections[last]["code"] = json!("CODE-X");
    }
    let answer = verify(&fakes(&w, &record));
    assert_eq!(answer["matches"], false);
    assert_eq!(answer["selections"]["disagree"], 1, "{answer}");

    // Two winners' codes swapped.
    let (w, record) = made(50, 10, 5);
    {
        let mut w = w.borrow_mut();
        let (a, b) = (
            w.selections[0]["code"].clone(),
            w.selections[1]["code"].clone(),
        );
        w.selections[0]["code"] = b;
        w.selections[1]["code"] = a;
    }
    let answer = verify(&fakes(&w, &record));
    assert_eq!(answer["matches"], false);
    assert_eq!(answer["selections"]["codeMismatches"], 2, "{answer}");

    // One code held twice, a winner without one, a stranger.
    let (w, record) = made(50, 10, 5);
    {
        let mut w = w.borrow_mut();
        let code = w.selections[0]["code"].clone();
        w.selections[1]["code"] = code;
        w.selections[2].as_object_mut().expect("obj").remove("code");
        w.selections
            .push(json!({"globalUserId": "stranger", "verdict": "LOSER"}));
    }
    let answer = verify(&fakes(&w, &record));
    assert_eq!(answer["matches"], false);
    let s = &answer["selections"];
    assert_eq!(
        (
            s["duplicateCodes"].as_u64(),
            s["winnersWithoutCode"].as_u64(),
            s["unknown"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{answer}"
    );

    // The reservation is gone.
    let (w, record) = made(50, 10, 5);
    w.borrow_mut().reservations.clear();
    let answer = verify(&fakes(&w, &record));
    assert_eq!(answer["matches"], false);
    assert!(
        differences(&answer).contains("reservation d1#0 does not exist"),
        "{answer}"
    );
}

#[test]
fn no_record_no_draw_id_and_an_unreadable_service_are_errors() {
    let (w, record) = made(10, 2, 0);
    let f = fakes(&w, &record);
    let _i = f.install();
    let e = run(&Settings::default(), json!({"drawId": "nope"})).expect_err("no record");
    assert_eq!(e.kind, "NotFound");
    let e = run(&Settings::default(), json!({})).expect_err("no id");
    assert_eq!(e.kind, "InvalidInput");
    w.borrow_mut().entries_down = true;
    let e = run(&Settings::default(), json!({"drawId": "d1"})).expect_err("down");
    assert_eq!(e.kind, "ServiceError", "{e}");
}

#[test]
fn more_than_one_reservation_is_read_in_rank_order() {
    let (w, record) = made(45_000, 42_000, 100);
    assert_eq!(w.borrow().reservations.len(), 3);
    let f = fakes(&w, &record);
    let _i = f.install();
    let answer = run(&Settings::default(), json!({"drawId": "d1"})).expect("answer");
    assert_eq!(answer["matches"], true, "{}", answer["differences"]);
    assert_eq!(answer["selections"]["codesChecked"], 42_000);
}
