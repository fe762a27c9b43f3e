//! services/code-service under wasmtime on the embedded (SQLite) table: the
//! Code Service's HTTP contract (components/services/code-service/openapi.yaml),
//! a reservation of 20,000 codes, and a property test of concurrent
//! reservers, assigners and markers against the invariants: no code in two
//! reservations, no code assigned to two fans, no fan with two codes of a
//! market, the pool counts equal to the codes' states.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use usher_capabilities::TableBackend;
use usher_engine::{HttpRequest, Input, Output};
use usher_testing::{components, TestHost};

const WORKER: &str = "services/code-service";

fn host() -> TestHost {
    TestHost::builder()
        .resources("tables: { codes: { partition_key: PK, sort_key: SK } }")
        .worker(
            &components::SERVICES_CODE_SERVICE,
            "trigger: { http: { route: /services/codes } }\n\
             grants: { tables: [codes] }\n\
             limits: { memory_mb: 128, timeout_ms: 60000 }\n\
             settings: { table: codes }",
        )
        .build()
        .expect("test host")
}

/// One request; the status and the JSON body.
async fn call(host: &TestHost, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let request = HttpRequest {
        method: method.into(),
        path: path.into(),
        query: String::new(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        },
    };
    let out = host
        .invoke(WORKER, Input::Http(request))
        .await
        .expect("invocation");
    match out.output {
        Output::Http(response) => {
            let body = serde_json::from_slice(&response.body).expect("a JSON answer");
            (response.status, body)
        }
        other => panic!("{other:?}"),
    }
}

async fn load(host: &TestHost, campaign: &str, market: &str, codes: &[String]) -> Value {
    let (status, body) = call(
        host,
        "POST",
        &format!("/pools/{campaign}/{market}/codes"),
        &json!({"codes": codes}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn counts(host: &TestHost, campaign: &str, market: &str) -> Value {
    let (status, body) = call(
        host,
        "GET",
        &format!("/pools/{campaign}/{market}"),
        &Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn reserve(
    host: &TestHost,
    id: &str,
    campaign: &str,
    market: &str,
    count: usize,
) -> (u16, Value) {
    call(
        host,
        "POST",
        "/reservations",
        &json!({"reservationId": id, "campaignId": campaign, "marketId": market, "count": count}),
    )
    .await
}

async fn assign(
    host: &TestHost,
    path: &str,
    campaign: &str,
    market: &str,
    pairs: &[(String, String)],
) -> (u16, Value) {
    let assignments: Vec<Value> = pairs
        .iter()
        .map(|(c, f)| json!({"code": c, "globalUserId": f}))
        .collect();
    call(
        host,
        "POST",
        path,
        &json!({"campaignId": campaign, "marketId": market, "assignments": assignments}),
    )
    .await
}

fn codes_of(body: &Value) -> Vec<String> {
    body["codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("a code").to_string())
        .collect()
}

/// Every item of a pool's partition.
async fn pool_items(host: &TestHost, campaign: &str, market: &str) -> Vec<Value> {
    let tables = host.embedded.tables();
    let partition = json!({"PK": format!("POOL#{campaign}#{market}")});
    let mut items = Vec::new();
    let mut start: Option<Value> = None;
    loop {
        let page = tables
            .query("codes", &partition, None, 1000, start.as_ref())
            .await
            .expect("query");
        items.extend(page.items);
        match page.next {
            Some(n) => start = Some(n),
            None => return items,
        }
    }
}

#[tokio::test]
async fn the_contract_end_to_end() {
    let host = host();
    let codes: Vec<String> = (0..30).map(|i| format!("K{i:03}")).collect();
    assert_eq!(
        load(&host, "c1", "m1", &codes).await,
        json!({"loaded": 30, "duplicates": 0})
    );
    assert_eq!(
        load(&host, "c1", "m1", &codes[..5]).await,
        json!({"loaded": 0, "duplicates": 5})
    );
    let (status, r1) = reserve(&host, "d1", "c1", "m1", 10).await;
    assert_eq!(status, 200, "{r1}");
    let first = codes_of(&r1);
    assert_eq!(first.len(), 10);
    assert_eq!(
        reserve(&host, "d1", "c1", "m1", 10).await,
        (200, r1.clone())
    );
    assert_eq!(
        call(&host, "GET", "/reservations/d1", &Value::Null).await,
        (200, r1.clone())
    );
    let (status, body) = reserve(&host, "d2", "c1", "m1", 25).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["available"], 20);
    assert_eq!(
        call(&host, "GET", "/reservations/d2", &Value::Null).await.0,
        404
    );
    let pairs: Vec<(String, String)> = first
        .iter()
        .take(4)
        .enumerate()
        .map(|(i, c)| (c.clone(), format!("fan{i}")))
        .collect();
    let (status, body) = assign(&host, "/codes/assign", "c1", "m1", &pairs[..2]).await;
    assert_eq!(
        (status, body),
        (200, json!({"assigned": 2, "already": 0, "conflicts": []}))
    );
    let (_, body) = assign(&host, "/codes/mark-assigned", "c1", "m1", &pairs).await;
    assert_eq!(body, json!({"marked": 4, "already": 0, "conflicts": []}));
    // fan0 cannot get a second code; first[0] cannot go to another fan.
    let (_, body) = assign(
        &host,
        "/codes/assign",
        "c1",
        "m1",
        &[
            (first[5].clone(), "fan0".into()),
            (first[0].clone(), "fan9".into()),
        ],
    )
    .await;
    assert_eq!(body["assigned"], 0);
    assert_eq!(
        body["conflicts"].as_array().map(Vec::len),
        Some(2),
        "{body}"
    );
    assert_eq!(
        counts(&host, "c1", "m1").await,
        json!({"campaignId": "c1", "marketId": "m1", "total": 30, "available": 20,
               "reserved": 6, "assigned": 4, "marked": 4})
    );
    let (status, _) = call(&host, "POST", "/pools/c1/m1/codes", &json!({"codes": [""]})).await;
    assert_eq!(status, 400);
    let (status, _) = call(&host, "DELETE", "/reservations", &Value::Null).await;
    assert_eq!(status, 405);
}

/// 20,000 codes reserved in one request, as the draw of a large market does
/// (P8: draw, reservation and save of 100,000 winners within about 10 s).
#[tokio::test]
async fn reserving_20000_codes() {
    let host = host();
    let codes: Vec<String> = (0..25_000).map(|i| format!("BIG-{i:07}")).collect();
    for chunk in codes.chunks(5000) {
        load(&host, "c1", "big", chunk).await;
    }
    let started = Instant::now();
    let (status, body) = reserve(&host, "big-1", "c1", "big", 20_000).await;
    let first = started.elapsed();
    assert_eq!(status, 200);
    let got: BTreeSet<String> = codes_of(&body).into_iter().collect();
    assert_eq!(got.len(), 20_000);
    let started = Instant::now();
    assert_eq!(reserve(&host, "big-1", "c1", "big", 20_000).await.0, 200);
    let again = started.elapsed();
    let (status, body) = reserve(&host, "big-2", "c1", "big", 5_000).await;
    assert_eq!(status, 200);
    assert!(codes_of(&body).iter().all(|c| !got.contains(c)));
    let c = counts(&host, "c1", "big").await;
    assert_eq!(
        (c["available"].clone(), c["reserved"].clone()),
        (json!(0), json!(25_000))
    );
    eprintln!(
        "reserving 20,000 codes: {:.2} s; the same reservation again: {:.2} s",
        first.as_secs_f64(),
        again.as_secs_f64()
    );
    assert!(first.as_secs_f64() < 10.0, "{first:?}");
}

/// A small seeded generator (splitmix64): the same seed, the same case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One operation of a case.
#[derive(Debug, Clone)]
enum Op {
    Reserve {
        id: String,
        count: usize,
    },
    Assign {
        mark: bool,
        pairs: Vec<(String, String)>,
    },
}

fn holder(status: &str) -> Option<&str> {
    status
        .strip_prefix("ASSIGNED#")
        .or_else(|| status.strip_prefix("MARKED#"))
}

/// Runs one random case on its own pool and checks the invariants.
async fn run_case(host: Arc<TestHost>, seed: u64) -> Result<(), String> {
    let mut rng = Rng(seed);
    let campaign = format!("case{seed}");
    let market = "m";
    let total = 20 + rng.below(60) as usize;
    let codes: Vec<String> = (0..total).map(|i| format!("S{seed}-{i:03}")).collect();
    load(&host, &campaign, market, &codes).await;
    // A few reservation ids, each with its own count; drawn several times
    // (retries of the same reservation, also concurrently).
    let ids: Vec<(String, usize)> = (0..1 + rng.below(4))
        .map(|i| {
            (
                format!("{campaign}-r{i}"),
                1 + rng.below(total as u64 / 2) as usize,
            )
        })
        .collect();
    let fans: Vec<String> = (0..3 + rng.below(12)).map(|i| format!("f{i}")).collect();
    let mut ops: Vec<Op> = Vec::new();
    for _ in 0..8 + rng.below(16) {
        if rng.below(3) == 0 {
            let (id, count) = ids[rng.below(ids.len() as u64) as usize].clone();
            ops.push(Op::Reserve { id, count });
        } else {
            let pairs = (0..1 + rng.below(6))
                .map(|_| {
                    (
                        codes[rng.below(codes.len() as u64) as usize].clone(),
                        fans[rng.below(fans.len() as u64) as usize].clone(),
                    )
                })
                .collect();
            ops.push(Op::Assign {
                mark: rng.below(3) == 0,
                pairs,
            });
        }
    }
    // Everything at once, then once more (assignments of codes reserved in
    // the meantime), concurrently.
    let mut answers: Vec<(Op, u16, Value)> = Vec::new();
    for _round in 0..2 {
        let tasks: Vec<_> = ops
            .iter()
            .cloned()
            .map(|op| {
                let host = host.clone();
                let campaign = campaign.clone();
                tokio::spawn(async move {
                    let (status, body) = match &op {
                        Op::Reserve { id, count } => {
                            reserve(&host, id, &campaign, market, *count).await
                        }
                        Op::Assign { mark, pairs } => {
                            let path = if *mark {
                                "/codes/mark-assigned"
                            } else {
                                "/codes/assign"
                            };
                            assign(&host, path, &campaign, market, pairs).await
                        }
                    };
                    (op, status, body)
                })
            })
            .collect();
        for t in tasks {
            answers.push(t.await.map_err(|e| e.to_string())?);
        }
    }
    // Settle pending reservations: every id once more, one after another.
    for (id, count) in &ids {
        let (status, body) = reserve(&host, id, &campaign, market, *count).await;
        answers.push((
            Op::Reserve {
                id: id.clone(),
                count: *count,
            },
            status,
            body,
        ));
    }

    let fail = |what: String| Err(format!("seed {seed}: {what}"));
    // Reservations: one id, one set of codes; two ids, disjoint sets.
    let mut reservations: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (op, status, body) in &answers {
        let Op::Reserve { id, count } = op else {
            continue;
        };
        match *status {
            200 => {
                let got: BTreeSet<String> = codes_of(body).into_iter().collect();
                if got.len() != *count {
                    return fail(format!("{id} answered {} codes for {count}", got.len()));
                }
                if let Some(before) = reservations.get(id) {
                    if *before != got {
                        return fail(format!("{id} answered two different sets of codes"));
                    }
                }
                reservations.insert(id.clone(), got);
            }
            409 if body["available"].is_number() => {}
            503 => {}
            other => return fail(format!("reserve {id}: {other} {body}")),
        }
    }
    let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
    for (id, set) in &reservations {
        for c in set {
            if let Some(other) = owner.insert(c, id) {
                let tables = host.embedded.tables();
                let item = tables
                    .get("codes", &json!({"PK": format!("POOL#{campaign}#{market}"), "SK": format!("CODE#{c}")}))
                    .await
                    .ok()
                    .flatten();
                let mut records = Vec::new();
                for r in [other, id.as_str()] {
                    records.push(
                        tables
                            .get(
                                "codes",
                                &json!({"PK": format!("RESERVATION#{r}"), "SK": "RECORD"}),
                            )
                            .await
                            .ok()
                            .flatten(),
                    );
                }
                let log: Vec<String> = answers
                    .iter()
                    .filter(|(op, _, _)| matches!(op, Op::Reserve { .. }))
                    .map(|(op, status, body)| {
                        let has = body["codes"]
                            .as_array()
                            .is_some_and(|a| a.iter().any(|x| x == c.as_str()));
                        format!(
                            "{op:?} {status} has={has} {}",
                            if *status == 200 {
                                ""
                            } else {
                                body["error"].as_str().unwrap_or("")
                            }
                        )
                    })
                    .collect();
                return fail(format!(
                    "code {c} is in reservations {other} and {id}: item {item:?}, records {records:?}, answers {log:#?}"
                ));
            }
        }
    }
    // Answers of assignments: a code went to one fan at most.
    let mut given: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (op, status, body) in &answers {
        let Op::Assign { pairs, .. } = op else {
            continue;
        };
        if *status != 200 {
            return fail(format!("assign: {status} {body}"));
        }
        let refused: BTreeSet<(String, String)> = body["conflicts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["code"].as_str().unwrap_or("").to_string(),
                    c["globalUserId"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        for p in pairs {
            if !refused.contains(p) {
                given.entry(p.0.clone()).or_default().insert(p.1.clone());
            }
        }
    }
    for (code, to) in &given {
        if to.len() > 1 {
            return fail(format!("code {code} was answered as given to {to:?}"));
        }
    }
    // The items.
    let items = pool_items(&host, &campaign, market).await;
    let mut tally: BTreeMap<&str, i64> = BTreeMap::new();
    let mut fan_codes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut fan_items: BTreeMap<String, String> = BTreeMap::new();
    let mut n_codes = 0;
    for item in &items {
        let sk = item["SK"].as_str().unwrap_or("");
        if let Some(fan) = sk.strip_prefix("FAN#") {
            fan_items.insert(
                fan.to_string(),
                item["code"].as_str().unwrap_or("").to_string(),
            );
            continue;
        }
        let Some(code) = sk.strip_prefix("CODE#") else {
            continue;
        };
        n_codes += 1;
        let status = item["status"].as_str().unwrap_or("");
        if status == "AVAILABLE" {
            *tally.entry("available").or_default() += 1;
        } else if let Some(rest) = status.strip_prefix("RESERVED#") {
            *tally.entry("reserved").or_default() += 1;
            let id = rest.rsplit_once('#').map(|(id, _)| id).unwrap_or("");
            if !reservations.get(id).is_some_and(|s| s.contains(code)) {
                return fail(format!("code {code} is {status} but not in {id}'s answer"));
            }
        } else if let Some(fan) = holder(status) {
            *tally.entry("assigned").or_default() += 1;
            if status.starts_with("MARKED#") {
                *tally.entry("marked").or_default() += 1;
            }
            fan_codes
                .entry(fan.to_string())
                .or_default()
                .push(code.to_string());
            let id = item["reservationId"].as_str().unwrap_or("");
            if !reservations.get(id).is_some_and(|s| s.contains(code)) {
                return fail(format!(
                    "code {code} is {status} but not in {id:?}'s answer"
                ));
            }
        } else {
            return fail(format!("code {code} has status {status:?}"));
        }
    }
    for (fan, held) in &fan_codes {
        if held.len() > 1 {
            return fail(format!("fan {fan} holds {held:?}"));
        }
        if fan_items.get(fan) != Some(&held[0]) {
            return fail(format!(
                "fan {fan} holds {} but its item says {:?}",
                held[0],
                fan_items.get(fan)
            ));
        }
    }
    let c = counts(&host, &campaign, market).await;
    let want = json!({
        "campaignId": campaign, "marketId": market, "total": n_codes,
        "available": tally.get("available").copied().unwrap_or(0),
        "reserved": tally.get("reserved").copied().unwrap_or(0),
        "assigned": tally.get("assigned").copied().unwrap_or(0),
        "marked": tally.get("marked").copied().unwrap_or(0),
    });
    if c != want {
        return fail(format!("counts {c} but the items say {want}"));
    }
    if n_codes != total {
        return fail(format!("{n_codes} code items for {total} loaded"));
    }
    Ok(())
}

/// Many random cases (seeded: a failure names its seed, and
/// `CODE_SERVICE_SEEDS=first..last` reruns chosen ones), each with
/// concurrent reservers (random counts, retried ids), assigners and
/// markers (random, often conflicting fans and codes).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reservers_and_assigners_keep_the_invariants() {
    let host = Arc::new(host());
    let seeds: Vec<u64> = match std::env::var("CODE_SERVICE_SEEDS") {
        Ok(range) => {
            let (a, b) = range.split_once("..").expect("first..last");
            (a.parse().expect("first")..b.parse().expect("last")).collect()
        }
        Err(_) => (1..=64).collect(),
    };
    let mut failures = Vec::new();
    for seeds in seeds.chunks(4) {
        let cases: Vec<_> = seeds
            .iter()
            .map(|&seed| tokio::spawn(run_case(host.clone(), seed)))
            .collect();
        for c in cases {
            if let Err(e) = c.await.expect("case task") {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Many concurrent attempts of two reservations (four each): each answer's
/// codes are exactly the codes its completing attempt holds, the two are
/// disjoint, and nothing else stays reserved. (This found an overtaken
/// attempt taking codes back from the newer one that overtook it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_attempts_of_one_reservation() {
    let host = Arc::new(host());
    for case in 0..12 {
        let campaign = format!("one{case}");
        let codes: Vec<String> = (0..40).map(|i| format!("O{case}-{i:03}")).collect();
        load(&host, &campaign, "m", &codes).await;
        let ids = [format!("{campaign}-a"), format!("{campaign}-b")];
        let tasks: Vec<_> = (0..8)
            .map(|n| {
                let (host, campaign, id) = (host.clone(), campaign.clone(), ids[n % 2].clone());
                tokio::spawn(async move { reserve(&host, &id, &campaign, "m", 12).await })
            })
            .collect();
        let mut log = Vec::new();
        for t in tasks {
            let (status, body) = t.await.expect("task");
            assert!(matches!(status, 200 | 409 | 503), "{status} {body}");
            log.push(format!(
                "{status} {:?} {}",
                body["reservationId"],
                body["codes"]
                    .as_array()
                    .map(|c| format!("{}..{}", c[0], c[c.len() - 1]))
                    .unwrap_or_else(|| body["error"].to_string())
            ));
        }
        let before = pool_items(&host, &campaign, "m").await;
        let before: Vec<String> = before
            .iter()
            .filter_map(|i| Some(format!("{}={}", i["code"].as_str()?, i["status"].as_str()?)))
            .collect();
        let tables = host.embedded.tables();
        for id in &ids {
            let r = tables
                .get(
                    "codes",
                    &json!({"PK": format!("RESERVATION#{id}"), "SK": "RECORD"}),
                )
                .await
                .ok()
                .flatten();
            log.push(format!("{id}: {r:?}"));
        }
        log.push(format!("{before:?}"));
        let mut answer: BTreeSet<String> = BTreeSet::new();
        for id in &ids {
            let (status, body) = reserve(&host, id, &campaign, "m", 12).await;
            assert_eq!(status, 200, "{body}");
            log.push(format!("settle {id}: {}", body["codes"]));
            for c in codes_of(&body) {
                assert!(answer.insert(c.clone()), "case {case}: {c} twice {log:#?}");
            }
        }
        let items = pool_items(&host, &campaign, "m").await;
        let held: BTreeSet<String> = items
            .iter()
            .filter(|i| {
                i["status"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("RESERVED#"))
            })
            .map(|i| i["code"].as_str().unwrap_or("").to_string())
            .collect();
        let statuses: Vec<String> = items
            .iter()
            .filter_map(|i| Some(format!("{}={}", i["code"].as_str()?, i["status"].as_str()?)))
            .collect();
        assert_eq!(held, answer, "case {case}: {statuses:?} {log:#?}");
    }
}
