//! archive/archive-changes under wasmtime with the host's real codec
//! (`usher-codec`) and the embedded objects: the Parquet and Avro objects
//! it writes are read back with `parquet` and `apache-avro`, and a day of
//! them is compacted.

use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{json, Value};
use usher_capabilities::{Format, ObjectBackend};
use usher_engine::{ChangeRecord, Input, Output};
use usher_testing::{components, TestHost};

const DAY1: u64 = 1_796_515_200_000; // 2026-12-06T00:00:00Z

fn host(format: &str) -> TestHost {
    TestHost::builder()
        .resources(
            "tables: { demand-table: { partition_key: PK, sort_key: SK } }\nbuckets: [archive]\nqueues: { archive-changes-failures: {} }",
        )
        .worker(
            &components::ARCHIVE_ARCHIVE_CHANGES,
            &format!(
                "trigger: {{ stream: {{ table: demand-table, on_failure: archive-changes-failures }} }}\n\
                 limits: {{ memory_mb: 128, timeout_ms: 30000 }}\n\
                 grants: {{ buckets: [archive], codec: true }}\n\
                 settings: {{ bucket: archive, prefix: cdc, format: {format}, system_id: test, pii_salt: s }}"
            ),
        )
        .build()
        .expect("test host")
}

fn entry(i: u64, version: u64) -> Value {
    json!({
        "PK": format!("ENTRY#c1#fan-{i}"), "SK": "ENTRY", "campaignId": "c1",
        "globalUserId": format!("fan-{i}"), "marketId": "m1",
        "entry": {"firstName": "Alice", "zip": "10001"},
        "email": format!("fan{i}@example.com"), "verdict": "PENDING", "accessCode": "CODE-1",
        "needsReplication": true, "version": version,
        "createdAt": "2026-12-06T00:00:00Z", "updatedAt": "2026-12-06T00:00:00Z",
    })
}

fn change(kind: &str, seq: u64, ts: u64, new: Option<Value>, old: Option<Value>) -> ChangeRecord {
    let image = new.clone().or(old.clone()).unwrap_or(Value::Null);
    serde_json::from_value(json!({
        "table": "demand-table", "eventName": kind,
        "keys": {"PK": image["PK"], "SK": image["SK"]},
        "newImage": new, "oldImage": old,
        "sequenceNumber": format!("{seq:021}"), "timestampMs": ts,
    }))
    .expect("change record")
}

/// 20 inserts on day 1, 5 modifications and 2 removals on day 2, one
/// invalid record, one item of no archived type.
fn batch() -> Vec<ChangeRecord> {
    let day2 = DAY1 + 86_400_000 + 1000;
    let mut out: Vec<ChangeRecord> = (0..20)
        .map(|i| change("INSERT", 100 + i, DAY1 + i, Some(entry(i, 1)), None))
        .collect();
    for i in 0..5 {
        out.push(change(
            "MODIFY",
            200 + i,
            day2,
            Some(entry(i, 2)),
            Some(entry(i, 1)),
        ));
    }
    for i in 18..20 {
        out.push(change("REMOVE", 300 + i, day2, None, Some(entry(i, 1))));
    }
    let mut bad = entry(99, 1);
    bad["version"] = json!("not a number");
    out.push(change("INSERT", 400, day2, Some(bad), None));
    out.push(change(
        "INSERT",
        401,
        day2,
        Some(json!({"PK": "STATS#c1", "SK": "X"})),
        None,
    ));
    out
}

async fn run(host: &TestHost, records: Vec<ChangeRecord>) {
    let out = host
        .invoke("archive/archive-changes", Input::Stream(records))
        .await
        .expect("invocation");
    match out.output {
        Output::Stream(s) => assert!(s.failures.is_empty(), "{s:?}"),
        other => panic!("{other:?}"),
    }
}

/// A key without its digest: `…/<first>-<last>-<digest>.<ext>` as
/// `…/<first>-<last>.<ext>`.
fn undigested(key: &str) -> String {
    let (stem, ext) = key.rsplit_once('.').expect("an extension");
    let (name, digest) = stem.rsplit_once('-').expect("a digest");
    assert!(
        digest.len() == 12 && digest.chars().all(|c| c.is_ascii_hexdigit()),
        "{key}"
    );
    format!("{name}.{ext}")
}

async fn keys(host: &TestHost, prefix: &str) -> Vec<String> {
    host.embedded
        .objects()
        .list("archive", prefix, 1000)
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.key)
        .collect()
}

async fn get(host: &TestHost, key: &str) -> Vec<u8> {
    host.embedded
        .objects()
        .get("archive", key)
        .await
        .expect("get")
        .expect("object")
}

/// The rows of a Parquet object as JSON (through arrow's JSON writer is
/// not available here: the columns read one by one).
fn parquet_rows(bytes: Vec<u8>) -> Vec<serde_json::Map<String, Value>> {
    use arrow_array::{Array, BooleanArray, Int64Array, StringArray, TimestampMillisecondArray};
    let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))
        .expect("parquet")
        .build()
        .expect("reader");
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.expect("batch");
        for r in 0..batch.num_rows() {
            let mut row = serde_json::Map::new();
            for (f, col) in batch.schema().fields().iter().zip(batch.columns()) {
                let any = col.as_any();
                let v = if col.is_null(r) {
                    Value::Null
                } else if let Some(a) = any.downcast_ref::<StringArray>() {
                    json!(a.value(r))
                } else if let Some(a) = any.downcast_ref::<Int64Array>() {
                    json!(a.value(r))
                } else if let Some(a) = any.downcast_ref::<BooleanArray>() {
                    json!(a.value(r))
                } else if let Some(a) = any.downcast_ref::<TimestampMillisecondArray>() {
                    json!(a.value(r))
                } else {
                    panic!("unexpected column type {:?}", f.data_type())
                };
                row.insert(f.name().clone(), v);
            }
            rows.push(row);
        }
    }
    rows
}

fn hash(text: &str) -> String {
    archive_hash("s", text)
}

fn archive_hash(salt: &str, text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(
        Sha256::new()
            .chain_update(salt)
            .chain_update(text)
            .finalize(),
    )
}

#[tokio::test]
async fn parquet_objects_hold_the_scrubbed_records_by_type_and_day() {
    let host = host("parquet");
    run(&host, batch()).await;
    let archived = keys(&host, "cdc/demand/").await;
    assert_eq!(
        archived.iter().map(|k| undigested(k)).collect::<Vec<_>>(),
        vec![
            "cdc/demand/dt=2026-12-06/000000000000000000100-000000000000000000119.parquet",
            "cdc/demand/dt=2026-12-07/000000000000000000200-000000000000000000319.parquet",
        ]
    );
    let day1 = parquet_rows(get(&host, &archived[0]).await);
    assert_eq!(day1.len(), 20);
    let r = &day1[3];
    // The PK holds the user id: hashed, in the reference too.
    assert_eq!(r["PK"], json!(hash("ENTRY#c1#fan-3")));
    assert_eq!(
        r["reference"],
        json!(format!("demand:demand-table:{}:ENTRY", hash("ENTRY#c1#fan-3")))
    );
    let text = serde_json::to_string(r).expect("json");
    assert!(!text.contains("fan-3"), "{text}");
    assert_eq!(r["email"], json!(hash("fan3@example.com")));
    assert_eq!(r["globalUserId"], json!(hash("fan-3")));
    assert_eq!(r["accessCode"], Value::Null);
    assert_eq!(
        r["entry"],
        json!("{\"firstName\":\"A****\",\"zip\":\"10001\"}")
    );
    assert_eq!(r["systemId"], "test");
    assert_eq!(r["changeType"], "INSERT");
    assert_eq!(r["deleted"], false);
    assert_eq!(r["changedAt"], json!(DAY1 + 3));
    assert_eq!(r["version"], 1);
    let day2 = parquet_rows(get(&host, &archived[1]).await);
    assert_eq!(day2.len(), 7);
    assert_eq!(day2.iter().filter(|r| r["deleted"] == true).count(), 2);
    // The invalid record went to the errors prefix with its change.
    let errors = keys(&host, "cdc/errors/").await;
    assert_eq!(
        errors.iter().map(|k| undigested(k)).collect::<Vec<_>>(),
        vec!["cdc/errors/demand/dt=2026-12-07/000000000000000000400-000000000000000000400.json"]
    );
    let line: Value = serde_json::from_slice(&get(&host, &errors[0]).await).expect("error line");
    assert_eq!(line["errorType"], "ValidationError");
    assert_eq!(line["change"]["newImage"]["version"], "not a number");
    // A retried batch overwrites the same objects.
    run(&host, batch()).await;
    assert_eq!(keys(&host, "cdc/demand/").await, archived);
}

#[tokio::test]
async fn avro_objects_read_back_with_apache_avro() {
    let host = host("avro");
    run(&host, batch()).await;
    let archived = keys(&host, "cdc/demand/").await;
    assert_eq!(archived.len(), 2);
    assert!(
        archived.iter().all(|k| k.ends_with(".avro")),
        "{archived:?}"
    );
    let bytes = get(&host, &archived[0]).await;
    let reader = apache_avro::Reader::new(&bytes[..]).expect("avro");
    let rows: Vec<Value> = reader
        .map(|r| apache_avro::from_value::<Value>(&r.expect("record")).expect("json"))
        .collect();
    assert_eq!(rows.len(), 20);
    assert_eq!(rows[0]["email"], json!(hash("fan0@example.com")));
    assert_eq!(rows[0]["accessCode"], Value::Null);
}

#[tokio::test]
async fn a_day_compacts_into_one_object_each_record_once() {
    let host = host("parquet");
    let all: Vec<ChangeRecord> = (0..30)
        .map(|i| change("INSERT", 1000 + i, DAY1 + i, Some(entry(i, 1)), None))
        .collect();
    // Three batches, the second a retry that started in the middle of the first.
    run(&host, all[0..12].to_vec()).await;
    run(&host, all[6..20].to_vec()).await;
    run(&host, all[20..30].to_vec()).await;
    let before = keys(&host, "cdc/demand/dt=2026-12-06/").await;
    assert_eq!(before.len(), 3);
    let objects = host.embedded.objects();
    let report = usher_codec::compact::compact_day(
        objects.as_ref(),
        "archive",
        "cdc",
        "demand",
        "2026-12-06",
        Format::Parquet,
    )
    .await
    .expect("compact");
    assert_eq!((report.records, report.duplicates), (30, 6));
    let after = keys(&host, "cdc/demand/dt=2026-12-06/").await;
    assert_eq!(after, vec![report.output.clone().expect("output")]);
    let rows = parquet_rows(get(&host, &after[0]).await);
    let mut seqs: Vec<String> = rows
        .iter()
        .map(|r| r["sequenceNumber"].as_str().expect("seq").to_string())
        .collect();
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), 30);
    // A crash between writing the merged object and deleting its inputs:
    // put an input back; the next run leaves one object, each record once.
    objects
        .put(
            "archive",
            &before[0],
            get_from(&objects, &after[0]).await,
            None,
        )
        .await
        .expect("put back");
    let again = usher_codec::compact::compact_day(
        objects.as_ref(),
        "archive",
        "cdc",
        "demand",
        "2026-12-06",
        Format::Parquet,
    )
    .await
    .expect("again");
    assert_eq!((again.records, again.duplicates), (30, 30));
    let last = keys(&host, "cdc/demand/dt=2026-12-06/").await;
    assert_eq!(last.len(), 1);
    assert_eq!(parquet_rows(get(&host, &last[0]).await).len(), 30);
    // Nothing left to merge: a third run changes nothing.
    let third = usher_codec::compact::compact_day(
        objects.as_ref(),
        "archive",
        "cdc",
        "demand",
        "2026-12-06",
        Format::Parquet,
    )
    .await
    .expect("third");
    assert_eq!(third.output, None);
    assert_eq!(keys(&host, "cdc/demand/dt=2026-12-06/").await, last);
}

async fn get_from(
    objects: &std::sync::Arc<usher_backend_embedded::EmbeddedObjects>,
    key: &str,
) -> Vec<u8> {
    objects
        .get("archive", key)
        .await
        .expect("get")
        .expect("object")
}
