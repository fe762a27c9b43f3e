use std::collections::BTreeMap;

use serde_json::{json, Value};
use usher_sdk::stream_text::ChangeText;
use usher_sdk::Change;

use super::*;
use crate::schema::record_types;

/// Objects in memory; the codec writes JSON lines; failures injected by key.
#[derive(Default)]
struct FakeSink {
    objects: BTreeMap<String, Vec<u8>>,
    fail_put_containing: Option<String>,
    refuse_encode: bool,
    fail_hashing: bool,
    hash_calls: usize,
}

/// A group's columns as JSON rows: each column's value for the row (a
/// text column's string, a number, a boolean, or null).
fn rows_of(columns: &[usher_sdk::codec::Column]) -> Vec<Value> {
    use usher_sdk::codec::Values;
    let rows = columns.first().map_or(0, |c| c.len());
    (0..rows)
        .map(|r| {
            let mut row = serde_json::Map::new();
            for c in columns {
                assert_eq!(c.len(), rows, "column {} rows", c.name());
                assert_eq!(c.mismatch(), None, "column {}", c.name());
                let v = match c.values() {
                    _ if !c.is_present(r) => Value::Null,
                    Values::Strings { .. } => json!(c.text(r)),
                    Values::Longs(v) => json!(v[r]),
                    Values::Doubles(v) => json!(v[r]),
                    Values::Booleans(v) => json!(v[r]),
                };
                row.insert(c.name().to_string(), v);
            }
            Value::Object(row)
        })
        .collect()
}

impl Sink for FakeSink {
    fn encode(
        &mut self,
        _format: Format,
        schema: &str,
        columns: Vec<usher_sdk::codec::Column>,
    ) -> Result<Vec<u8>, SinkError> {
        let schema: Value = serde_json::from_str(schema).expect("the schema is JSON");
        if self.refuse_encode {
            return Err(SinkError::Invalid("bad record".into()));
        }
        // Exactly the schema's fields, in its order.
        let names: Vec<&str> = schema["fields"]
            .as_array()
            .map(|f| f.iter().filter_map(|f| f["name"].as_str()).collect())
            .unwrap_or_default();
        let got: Vec<&str> = columns.iter().map(|c| c.name()).collect();
        assert_eq!(got, names, "columns vs schema fields");
        let mut out = Vec::new();
        for r in rows_of(&columns) {
            out.extend_from_slice(r.to_string().as_bytes());
            out.push(b'\n');
        }
        Ok(out)
    }

    fn salted_sha256_hex(
        &mut self,
        salt: &str,
        text: String,
        ends: Vec<u32>,
    ) -> Result<String, SinkError> {
        self.hash_calls += 1;
        if self.fail_hashing {
            return Err(SinkError::Other("unavailable".into()));
        }
        let mut start = 0;
        let mut out = String::new();
        for end in ends {
            out.push_str(&pii::hash(salt, &text[start..end as usize]));
            start = end as usize;
        }
        Ok(out)
    }

    fn put(&mut self, _bucket: &str, key: &str, body: &[u8], _ct: &str) -> Result<(), SinkError> {
        if self
            .fail_put_containing
            .as_deref()
            .is_some_and(|p| key.contains(p))
        {
            return Err(SinkError::Other("unavailable".into()));
        }
        self.objects.insert(key.to_string(), body.to_vec());
        Ok(())
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

impl FakeSink {
    /// The JSON lines of the one object whose key without its digest is `key`.
    fn lines(&self, key: &str) -> Vec<Value> {
        let found: Vec<&String> = self
            .objects
            .keys()
            .filter(|k| undigested(k) == key)
            .collect();
        assert_eq!(found.len(), 1, "{key} in {:?}", self.objects.keys());
        String::from_utf8_lossy(&self.objects[found[0]])
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }
}

fn settings(format: Format) -> Settings {
    Settings {
        bucket: "archive".into(),
        prefix: "cdc".into(),
        format,
        system_id: "usher-test".into(),
        pii_salt: "salt".into(),
        types: None,
    }
}

const DAY1: u64 = 1_764_979_200_000; // 2025-12-06T00:00:00Z

fn entry(i: u32) -> Value {
    json!({
        "PK": format!("ENTRY#c1#fan-{i}"), "SK": "ENTRY", "campaignId": "c1",
        "globalUserId": format!("fan-{i}"), "marketId": "m1",
        "entry": {"firstName": "Alice", "zip": "10001", "phone": "555-1234"},
        "email": format!("fan{i}@example.com"), "verdict": "PENDING", "accessCode": "SECRET",
        "needsReplication": true, "version": 1,
        "createdAt": "2025-12-06T00:00:00Z", "updatedAt": "2025-12-06T00:00:00Z",
        "somethingElse": 42,
    })
}

fn change(kind: &str, seq: u64, ts: u64, new: Option<Value>, old: Option<Value>) -> ChangeText {
    let change: Change = serde_json::from_value(json!({
        "table": "demand-table", "eventName": kind, "keys": {},
        "newImage": new, "oldImage": old,
        "sequenceNumber": format!("{seq:021}"), "timestampMs": ts,
    }))
    .expect("change");
    ChangeText::from(&change)
}

#[test]
fn embedded_sources_parse_and_match_their_derived_schemas() {
    let types = record_types().expect("types");
    assert_eq!(types.len(), 4);
    for t in &types {
        let avro: Value = serde_json::from_str(t.avro).expect("the derived schema is JSON");
        let names: Vec<&str> = avro["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .filter_map(|f| f["name"].as_str())
            .collect();
        for f in &t.fields {
            assert!(
                names.contains(&f.name.as_str()),
                "{}: {} not in the avsc",
                t.name,
                f.name
            );
        }
        assert_eq!(avro["name"], t.name.as_str());
    }
}

#[test]
fn a_batch_is_grouped_by_type_and_day_scrubbed_and_enriched() {
    let types = record_types().expect("types");
    let day2 = DAY1 + 86_400_000 + 5;
    let changes = vec![
        change("INSERT", 10, DAY1 + 1, Some(entry(1)), None),
        change("INSERT", 11, DAY1 + 2, Some(entry(2)), None),
        change("REMOVE", 12, day2, None, Some(entry(1))),
        change(
            "INSERT",
            13,
            DAY1 + 3,
            Some(json!({"PK": "OTHER#x", "SK": "Y"})),
            None,
        ),
        change(
            "INSERT",
            14,
            DAY1 + 4,
            Some(
                json!({"PK": "SALE#s1", "SK": "SALE", "saleId": "s1", "campaignId": "c1", "globalUserId": "fan-1", "quantity": 2, "cardLast4": "4242"}),
            ),
            None,
        ),
    ];
    let mut sink = FakeSink::default();
    let out = process(&types, &settings(Format::Parquet), &changes, &mut sink);
    assert_eq!((out.archived, out.skipped, out.rejected), (4, 1, 0));
    assert!(out.failures.is_empty());
    let k1 = "cdc/demand/dt=2025-12-06/000000000000000000010-000000000000000000011.parquet";
    let k2 = "cdc/demand/dt=2025-12-07/000000000000000000012-000000000000000000012.parquet";
    let k3 = "cdc/sale/dt=2025-12-06/000000000000000000014-000000000000000000014.parquet";
    assert_eq!(
        sink.objects
            .keys()
            .map(|k| undigested(k))
            .collect::<Vec<_>>(),
        vec![k1, k2, k3]
    );
    let day1 = sink.lines(k1);
    let r = &day1[0];
    assert_eq!(r["email"], json!(pii::hash("salt", "fan1@example.com")));
    assert_eq!(r["globalUserId"], json!(pii::hash("salt", "fan-1")));
    assert_eq!(r["accessCode"], Value::Null);
    let inner: Value =
        serde_json::from_str(r["entry"].as_str().expect("json text")).expect("entry");
    assert_eq!(
        inner,
        json!({"firstName": "A****", "zip": "10001", "phone": null})
    );
    assert_eq!(r["systemId"], "usher-test");
    // The PK holds the user id: hashed, in the reference too; the user id
    // is nowhere in the record in clear.
    let pk = pii::hash("salt", "ENTRY#c1#fan-1");
    assert_eq!(r["PK"], json!(pk));
    assert_eq!(r["reference"], format!("demand:demand-table:{pk}:ENTRY"));
    assert!(!r.to_string().contains("fan-1"), "{r}");
    assert_eq!(
        (r["changeType"].clone(), r["deleted"].clone()),
        (json!("INSERT"), json!(false))
    );
    assert_eq!(r["changedAt"], json!(DAY1 + 1));
    assert!(r.get("somethingElse").is_none());
    let removed = &sink.lines(k2)[0];
    assert_eq!(
        (removed["changeType"].clone(), removed["deleted"].clone()),
        (json!("REMOVE"), json!(true))
    );
    assert_eq!(sink.lines(k3)[0]["cardLast4"], Value::Null);
    // A retry of the same batch writes the same objects.
    let mut again = FakeSink::default();
    process(&types, &settings(Format::Parquet), &changes, &mut again);
    assert_eq!(
        again.objects.keys().collect::<Vec<_>>(),
        sink.objects.keys().collect::<Vec<_>>()
    );
    let mut avro = FakeSink::default();
    process(&types, &settings(Format::Avro), &changes, &mut avro);
    assert!(avro.objects.keys().all(|k| k.ends_with(".avro")));
}

#[test]
fn batches_of_two_shards_with_the_same_sequence_numbers_get_their_own_objects() {
    let types = record_types().expect("types");
    let shard = |n: u32| {
        let mut c = change("INSERT", 7, DAY1, Some(entry(n)), None);
        c.keys = json!({"PK": format!("ENTRY#c1#fan-{n}"), "SK": "ENTRY"}).to_string();
        vec![c]
    };
    let mut sink = FakeSink::default();
    process(&types, &settings(Format::Parquet), &shard(1), &mut sink);
    process(&types, &settings(Format::Parquet), &shard(2), &mut sink);
    assert_eq!(sink.objects.len(), 2, "{:?}", sink.objects.keys());
    // The same batch again: the same name.
    process(&types, &settings(Format::Parquet), &shard(2), &mut sink);
    assert_eq!(sink.objects.len(), 2, "{:?}", sink.objects.keys());
}

#[test]
fn invalid_records_go_to_the_errors_prefix_with_their_change() {
    let types = record_types().expect("types");
    let mut bad = entry(3);
    bad["version"] = json!("two");
    let mut missing = entry(4);
    missing
        .as_object_mut()
        .expect("object")
        .remove("campaignId");
    let changes = vec![
        change("INSERT", 1, DAY1, Some(entry(1)), None),
        change("MODIFY", 2, DAY1, Some(bad), Some(entry(3))),
        change("INSERT", 3, DAY1, Some(missing), None),
        change("MODIFY", 4, DAY1, None, None),
    ];
    let mut sink = FakeSink::default();
    let out = process(&types, &settings(Format::Parquet), &changes, &mut sink);
    assert_eq!((out.archived, out.rejected), (1, 3));
    assert!(out.failures.is_empty(), "rejected records are not retried");
    let errors = sink
        .lines("cdc/errors/demand/dt=2025-12-06/000000000000000000002-000000000000000000003.json");
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0]["errorType"], "ValidationError");
    assert!(errors[0]["message"]
        .as_str()
        .expect("message")
        .contains("version"));
    assert_eq!(errors[0]["change"]["newImage"]["version"], "two");
    assert!(errors[1]["message"]
        .as_str()
        .expect("message")
        .contains("campaignId"));
    let unknown = sink
        .lines("cdc/errors/unknown/dt=2025-12-06/000000000000000000004-000000000000000000004.json");
    assert_eq!(unknown[0]["errorType"], "MissingImage");
    assert!(unknown[0]["time"].as_str().is_some());
}

#[test]
fn a_group_the_codec_refuses_is_rejected_not_retried() {
    let types = record_types().expect("types");
    let changes = vec![change("INSERT", 1, DAY1, Some(entry(1)), None)];
    let mut sink = FakeSink {
        refuse_encode: true,
        ..FakeSink::default()
    };
    let out = process(&types, &settings(Format::Avro), &changes, &mut sink);
    assert_eq!((out.archived, out.rejected), (0, 1));
    assert!(out.failures.is_empty());
    let e = sink
        .lines("cdc/errors/demand/dt=2025-12-06/000000000000000000001-000000000000000000001.json");
    assert_eq!(e[0]["errorType"], "EncodeError");
}

#[test]
fn a_failed_write_fails_every_record_from_its_first_on() {
    let types = record_types().expect("types");
    let day2 = DAY1 + 86_400_000;
    let changes = vec![
        change("INSERT", 1, DAY1, Some(entry(1)), None),
        change("INSERT", 2, day2, Some(entry(2)), None),
        change("INSERT", 3, DAY1, Some(entry(3)), None),
        change("INSERT", 4, day2, Some(entry(4)), None),
    ];
    let mut sink = FakeSink {
        fail_put_containing: Some("dt=2025-12-07".into()),
        ..FakeSink::default()
    };
    let out = process(&types, &settings(Format::Parquet), &changes, &mut sink);
    let want: Vec<String> = [2u64, 3, 4].iter().map(|s| format!("{s:021}")).collect();
    assert_eq!(out.failures, want);
    assert_eq!(out.archived, 2);
}

#[test]
fn the_types_setting_filters_and_dates_are_utc() {
    let types = record_types().expect("types");
    let mut s = settings(Format::Parquet);
    s.types = Some(vec!["sale".into()]);
    let changes = vec![change("INSERT", 1, DAY1, Some(entry(1)), None)];
    let mut sink = FakeSink::default();
    let out = process(&types, &s, &changes, &mut sink);
    assert_eq!((out.archived, out.skipped), (0, 1));
    assert!(sink.objects.is_empty());
    assert_eq!(archive::date_of(DAY1 - 1), "2025-12-05");
    assert_eq!(archive::date_of(0), "1970-01-01");
    assert_eq!(pii::mask("Zoë"), "Z**");
    assert_eq!(
        pii::hash("", "abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn records_are_written_from_the_image_text_with_escapes_and_unicode_kept() {
    let types = record_types().expect("types");
    let mut e = entry(5);
    e["entry"] = json!({"firstName": "Zoë \"Z\"", "lastName": "Ng", "email": "a\\b@x", "phone": 1, "zip": "0\n1"});
    e["marketId"] = json!("m\u{1}\t\"é\"");
    e["version"] = json!(-7);
    let changes = vec![change("MODIFY", 1, DAY1, Some(e), Some(entry(5)))];
    let mut sink = FakeSink::default();
    let out = process(&types, &settings(Format::Parquet), &changes, &mut sink);
    assert_eq!((out.archived, out.rejected), (1, 0), "{out:?}");
    let r = &sink
        .lines("cdc/demand/dt=2025-12-06/000000000000000000001-000000000000000000001.parquet")[0];
    assert_eq!(r["marketId"], "m\u{1}\t\"é\"");
    assert_eq!(r["version"], -7);
    assert_eq!(r["changeType"], "MODIFY");
    let inner: Value = serde_json::from_str(r["entry"].as_str().expect("text")).expect("entry");
    assert_eq!(
        inner,
        json!({"firstName": "Z******", "lastName": "N*", "email": pii::hash("salt", "a\\b@x"), "phone": null, "zip": "0\n1"})
    );
    for text in [
        "",
        "plain",
        "q\"b\\s/",
        "\u{0}\u{1f}\u{7f}\n\r\t\u{8}\u{c}",
        "é😀",
    ] {
        let mut out = String::new();
        pii::push_json_str(&mut out, text);
        assert_eq!(out, serde_json::to_string(text).expect("json"), "{text:?}");
    }
}

#[test]
fn an_image_that_is_not_json_and_wrong_numbers_are_rejected_with_reasons() {
    let types = record_types().expect("types");
    let mut not_json = change("INSERT", 1, DAY1, Some(entry(1)), None);
    not_json.new_image = Some("{\"PK\": ".into());
    let mut long_text = entry(2);
    long_text["version"] = json!("é".repeat(40));
    let mut float = entry(3);
    float["version"] = json!(1.0);
    let mut huge = entry(4);
    huge["version"] = json!(12_345_678_901_234_567_890u64);
    let changes = vec![
        not_json,
        change("INSERT", 2, DAY1, Some(long_text), None),
        change("INSERT", 3, DAY1, Some(float), None),
        change("INSERT", 4, DAY1, Some(huge), None),
        change("INSERT", 5, DAY1, Some(entry(5)), None),
    ];
    let mut sink = FakeSink::default();
    let out = process(&types, &settings(Format::Avro), &changes, &mut sink);
    assert_eq!((out.archived, out.rejected), (1, 4), "{out:?}");
    let unknown = sink
        .lines("cdc/errors/unknown/dt=2025-12-06/000000000000000000001-000000000000000000001.json");
    assert_eq!(unknown[0]["errorType"], "ValidationError");
    assert!(unknown[0]["message"]
        .as_str()
        .expect("message")
        .contains("not a JSON object"));
    assert_eq!(unknown[0]["change"]["newImage"], "{\"PK\": ");
    let demand = sink
        .lines("cdc/errors/demand/dt=2025-12-06/000000000000000000002-000000000000000000004.json");
    assert_eq!(demand.len(), 3);
    for d in &demand {
        assert!(
            d["message"]
                .as_str()
                .expect("message")
                .contains("field version must be Long"),
            "{d}"
        );
    }
}

#[test]
fn a_batch_is_hashed_in_one_host_call_and_a_failed_one_fails_every_record() {
    let types = record_types().expect("types");
    // Two groups (two days), three hashes each (PK, globalUserId, email),
    // one of them also inside the `entry` object and in the reference.
    let mut e = entry(2);
    e["entry"]["email"] = json!("inner@example.com");
    let changes = vec![
        change("INSERT", 1, DAY1, Some(entry(1)), None),
        change("INSERT", 2, DAY1 + 86_400_000, Some(e), None),
    ];
    let mut sink = FakeSink::default();
    let out = process(&types, &settings(Format::Parquet), &changes, &mut sink);
    assert_eq!((out.archived, out.rejected), (2, 0), "{out:?}");
    // One call for the batch's PII, one per object's name.
    assert_eq!(sink.hash_calls, 3);
    let r = &sink
        .lines("cdc/demand/dt=2025-12-07/000000000000000000002-000000000000000000002.parquet")[0];
    assert_eq!(r["PK"], json!(pii::hash("salt", "ENTRY#c1#fan-2")));
    assert_eq!(
        r["reference"],
        json!(format!(
            "demand:demand-table:{}:ENTRY",
            pii::hash("salt", "ENTRY#c1#fan-2")
        ))
    );
    let inner: Value = serde_json::from_str(r["entry"].as_str().expect("text")).expect("entry");
    assert_eq!(
        inner["email"],
        json!(pii::hash("salt", "inner@example.com"))
    );
    for line in sink.objects.values() {
        assert!(
            !String::from_utf8_lossy(line).contains(pii::PLACEHOLDER),
            "a placeholder was archived"
        );
    }

    // The host's hashing fails: nothing is written, every record is retried.
    let mut failing = FakeSink {
        fail_hashing: true,
        ..FakeSink::default()
    };
    let out = process(&types, &settings(Format::Parquet), &changes, &mut failing);
    assert_eq!(out.archived, 0);
    assert!(failing.objects.is_empty());
    assert_eq!(
        out.failures,
        vec![format!("{:021}", 1), format!("{:021}", 2)]
    );
}

#[test]
fn more_values_than_one_call_takes_are_hashed_in_several() {
    let mut hashes = pii::Hashes::default();
    let mut sink = FakeSink::default();
    let mut d = pii::Deferred {
        column: 0,
        hashes: &mut hashes,
        sites: &mut Vec::new(),
    };
    let mut column = usher_sdk::codec::Column::strings("c");
    let n = usher_sdk::codec::MAX_HASH_VALUES + 2;
    for i in 0..n {
        let f: crate::schema::Field =
            serde_json::from_value(json!({"name": "c", "type": "string", "pii": "hash"}))
                .expect("field");
        let text = format!("{{\"c\":\"v{i}\"}}");
        let image = crate::image::Image::parse(&text).expect("image");
        pii::push_cell(&mut column, &f, image.get("c"), "salt", &mut d);
    }
    assert_eq!(hashes.len(), n);
    let (text, ends) = hashes.slice(n - 2..n);
    assert_eq!(text, format!("v{}v{}", n - 2, n - 1));
    assert_eq!(ends.last().copied(), Some(text.len() as u32));
    let digits = archive::hash_all(&mut sink, "salt", &hashes).expect("hashed");
    assert_eq!(sink.hash_calls, 2);
    assert_eq!(digits.len(), n * 64);
    assert_eq!(
        &digits[(n - 1) * 64..],
        pii::hash("salt", &format!("v{}", n - 1))
    );
    assert_eq!(&digits[..64], pii::hash("salt", "v0"));
}

#[test]
fn fields_are_found_whatever_the_order_of_the_attributes() {
    let types = record_types().expect("types");
    let t = types.iter().find(|t| t.name == "demand").expect("demand");
    let pk = t.field_index("PK").expect("PK");
    let verdict = t.field_index("verdict").expect("verdict");
    let texts = [
        r#"{"PK":"a","SK":"ENTRY","campaignId":"c","globalUserId":"u","verdict":"W"}"#,
        // Another order, an unknown attribute where a field was, a name twice.
        r#"{"x":1,"verdict":"L","globalUserId":"v","SK":"ENTRY","PK":"b","campaignId":"c","verdict":"X"}"#,
        r#"{"PK":"a","SK":"ENTRY","campaignId":"c","globalUserId":"u","verdict":"W"}"#,
        r#"{"PK":"a","x":1,"campaignId":"c","globalUserId":"u","SK":"ENTRY"}"#,
    ];
    let want = [
        ("\"a\"", Some("\"W\"")),
        ("\"b\"", Some("\"X\"")),
        ("\"a\"", Some("\"W\"")),
        ("\"a\"", None),
    ];
    for (text, (want_pk, want_verdict)) in texts.iter().zip(want) {
        let image = crate::image::Image::parse(text).expect("image");
        let valid = t.validate(&image).expect("valid");
        assert_eq!(valid[pk].map(|v| v.get()), Some(want_pk), "{text}");
        assert_eq!(valid[verdict].map(|v| v.get()), want_verdict, "{text}");
    }
}

#[test]
fn an_objects_names_are_kept_as_written_or_escaped_again_after_decoding() {
    let types = record_types().expect("types");
    let mut e = entry(3);
    // `la\u0073tName` is `lastName` (masked); a quote in a name is escaped again.
    let text = serde_json::to_string(&e).expect("json").replace(
        r#""entry":{"#,
        r#""entry":{"la\u0073tName":"Zed","q\"k":1,"#,
    );
    e = serde_json::from_str(&text).expect("still JSON");
    let mut c = change("INSERT", 1, DAY1, None, None);
    c.new_image = Some(text);
    let mut sink = FakeSink::default();
    let out = process(&types, &settings(Format::Parquet), &[c], &mut sink);
    assert_eq!((out.archived, out.rejected), (1, 0), "{out:?}");
    let r = &sink
        .lines("cdc/demand/dt=2025-12-06/000000000000000000001-000000000000000000001.parquet")[0];
    let inner: Value = serde_json::from_str(r["entry"].as_str().expect("text")).expect("entry");
    assert_eq!(inner["lastName"], "Z**");
    assert_eq!(inner["firstName"], "A****");
    assert_eq!(inner["q\"k"], 1);
    assert_eq!(inner["zip"], e["entry"]["zip"]);
}
