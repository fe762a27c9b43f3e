//! The codec's encoders on the same records: Avro with `apache-avro` 0.22
//! (the one the host uses) against `arrow-avro` 60.1, and Parquet. The
//! records are the archive's demand records (the derived schema of
//! `schemas/archive/demand.json`), 10,000 per container.
//!
//! `cargo bench -p usher-codec --features compare-arrow-avro --bench codec`; figures in
//! BENCHMARKS.md (P5).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::{json, Value};

const RECORDS: usize = 10_000;
const VERDICTS: [&str; 3] = ["PENDING", "WINNER", "LOSER"];

fn schema() -> Value {
    let text = include_str!("../../../schemas/archive/demand.json");
    usher_codec::archive::Source::parse(text)
        .expect("the demand source")
        .avro_schema()
}

/// Archived demand records as the archive worker makes them.
pub fn records(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "PK": format!("ENTRY#campaign-1#fan-{i:07}"), "SK": "ENTRY",
                "campaignId": "campaign-1",
                "globalUserId": format!("{:064x}", i * 7919),
                "marketId": format!("m{}", i % 3),
                "entry": format!("{{\"firstName\":\"F*****\",\"zip\":\"{:05}\",\"age\":{}}}", 10000 + i % 90000, 18 + i % 60),
                "email": format!("{:064x}", i * 104_729),
                "verdict": VERDICTS[i % 3],
                "accessCode": null, "drawId": if i % 3 == 1 { json!("campaign-1.m1") } else { Value::Null },
                "needsReplication": i % 2 == 0, "version": (i % 4) as i64 + 1,
                "transferredFrom": null,
                "createdAt": "2026-12-06T10:00:00Z", "updatedAt": "2026-12-06T10:05:00Z",
                "systemId": "usher", "reference": format!("demand:demand-table:ENTRY#campaign-1#fan-{i:07}:ENTRY"),
                "changeType": "INSERT", "deleted": false,
                "sequenceNumber": format!("{:021}", 1_000_000 + i),
                "changedAt": 1_796_000_000_000i64 + i as i64,
            })
        })
        .collect()
}

fn encoders(c: &mut Criterion) {
    let schema = schema();
    let input = records(RECORDS);
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.sample_size(20);
    group.bench_function("avro/apache-avro", |b| {
        b.iter_batched(
            || input.clone(),
            |r| usher_codec::encode_avro(&schema, r).expect("apache-avro"),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("avro/arrow-avro", |b| {
        b.iter_batched(
            || input.clone(),
            |r| usher_codec::encode_avro_arrow(&schema, r).expect("arrow-avro"),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("parquet/arrow-json+ArrowWriter", |b| {
        b.iter_batched(
            || input.clone(),
            |r| usher_codec::encode_parquet(&schema, r).expect("parquet"),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, encoders);
criterion_main!(benches);
