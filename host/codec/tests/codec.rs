use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;
use serde_json::Value;
use usher_capabilities::{CapError, CodecBackend, Format};
use usher_codec::*;

fn schema() -> Value {
    json!({
        "type": "record", "name": "demand", "namespace": "t", "fields": [
            {"name": "PK", "type": "string"},
            {"name": "version", "type": ["null", "long"], "default": null},
            {"name": "ok", "type": "boolean"},
            {"name": "email", "type": ["null", "string"], "default": null},
            {"name": "sequenceNumber", "type": "string"},
            {"name": "changedAt", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        ]
    })
}

fn records(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "PK": format!("ENTRY#c#{i}"),
                "version": if i % 3 == 0 { Value::Null } else { json!(i) },
                "ok": i % 2 == 0,
                "email": if i % 5 == 0 { Value::Null } else { json!(format!("h{i}")) },
                "sequenceNumber": format!("{:021}", i),
                "changedAt": 1_700_000_000_000i64 + i as i64,
            })
        })
        .collect()
}

#[test]
fn parquet_round_trips_every_record_in_order() {
    let n = BATCH_ROWS * 2 + 17;
    let bytes = encode_parquet(&schema(), records(n)).expect("encode");
    assert_eq!(&bytes[..4], b"PAR1");
    let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))
        .expect("reader")
        .build()
        .expect("build");
    let mut rows = 0;
    for batch in reader {
        let batch = batch.expect("batch");
        let pk = batch
            .column_by_name("PK")
            .and_then(|c| {
                c.as_any()
                    .downcast_ref::<arrow_array::StringArray>()
                    .cloned()
            })
            .expect("PK");
        for r in 0..batch.num_rows() {
            assert_eq!(pk.value(r), format!("ENTRY#c#{}", rows + r));
        }
        let version = batch.column_by_name("version").expect("version");
        assert_eq!(version.is_null(0), rows % 3 == 0);
        rows += batch.num_rows();
    }
    assert_eq!(rows, n);
}

#[test]
fn avro_round_trips_with_both_writers() {
    #[allow(unused_mut)]
    let mut written = vec![(
        "apache-avro",
        encode_avro(&schema(), records(100)).expect("apache"),
    )];
    // arrow-avro only with the comparison bench's feature.
    #[cfg(feature = "compare-arrow-avro")]
    written.push((
        "arrow-avro",
        usher_codec::encode_avro_arrow(&schema(), records(100)).expect("arrow"),
    ));
    for (name, bytes) in written {
        let reader = apache_avro::Reader::new(&bytes[..]).expect(name);
        let read: Vec<_> = reader.map(|r| r.expect("record")).collect();
        assert_eq!(read.len(), 100, "{name}");
        let want = records(100);
        for (got, want) in read.iter().zip(&want) {
            let got: Value = apache_avro::from_value(got).expect("json");
            assert_eq!(got["PK"], want["PK"], "{name}");
            assert_eq!(got["version"], want["version"], "{name}");
            assert_eq!(got["email"], want["email"], "{name}");
            assert_eq!(got["changedAt"], want["changedAt"], "{name}");
        }
    }
}

#[test]
fn a_record_off_the_schema_is_refused_by_both_formats() {
    let mut bad = records(3);
    bad[1]["ok"] = json!("yes");
    assert!(matches!(
        encode_avro(&schema(), bad.clone()),
        Err(CodecError::Record(_))
    ));
    assert!(encode_parquet(&schema(), bad).is_err());
    let mut missing = records(3);
    missing[2].as_object_mut().expect("object").remove("PK");
    assert!(encode_avro(&schema(), missing.clone()).is_err());
    assert!(encode_parquet(&schema(), missing).is_err());
    assert!(matches!(
        encode_parquet(&json!({"type": "string"}), records(1)),
        Err(CodecError::Schema(_))
    ));
}

#[test]
fn merge_keeps_each_sequence_number_once() {
    for format in [Format::Parquet, Format::Avro] {
        let enc = |r: Vec<Value>| match format {
            Format::Parquet => encode_parquet(&schema(), r).expect("enc"),
            Format::Avro => encode_avro(&schema(), r).expect("enc"),
        };
        let all = records(30);
        let a = enc(all[0..20].to_vec());
        let b = enc(all[10..30].to_vec());
        let merged = merge::merge(format, &[a, b], &["sequenceNumber", "PK"]).expect("merge");
        assert_eq!(merged.records, 30, "{format:?}");
        assert_eq!(merged.duplicates, 10, "{format:?}");
        // Merging the merged file with an input again changes nothing.
        let again = merge::merge(
            format,
            &[merged.bytes.clone(), enc(all[5..8].to_vec())],
            &["sequenceNumber", "PK"],
        )
        .expect("again");
        assert_eq!((again.records, again.duplicates), (30, 3), "{format:?}");
        // Another change with a sequence number seen before (another shard): kept.
        let mut other = all[0..2].to_vec();
        for r in &mut other {
            r["PK"] = json!(format!("{}-other-shard", r["PK"].as_str().expect("PK")));
        }
        let with_other = merge::merge(
            format,
            &[merged.bytes.clone(), enc(other)],
            &["sequenceNumber", "PK"],
        )
        .expect("other shard");
        assert_eq!(
            (with_other.records, with_other.duplicates),
            (32, 0),
            "{format:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_backend_answers_invalid_for_a_bad_record() {
    let codec = HostCodec;
    let ok = codec
        .encode(Format::Avro, &schema(), texts(&records(2)))
        .await
        .expect("ok");
    assert!(!ok.is_empty());
    for format in [Format::Parquet, Format::Avro] {
        let err = codec
            .encode(format, &schema(), texts(&[json!({"PK": 1})]))
            .await
            .expect_err("bad");
        assert!(matches!(err, CapError::Invalid(_)), "{err:?}");
    }
}

fn texts(records: &[Value]) -> Vec<String> {
    records.iter().map(Value::to_string).collect()
}

/// Parquet from the records' JSON text (arrow-json's tape decoder) writes
/// the very bytes the values path writes, across several batches.
#[test]
fn parquet_from_text_is_byte_for_byte_the_values_path() {
    let n = BATCH_ROWS * 2 + 17;
    let from_values = encode_parquet(&schema(), records(n)).expect("values");
    let mut spaced = texts(&records(n));
    spaced[5] = format!("  {}\n", spaced[5]);
    let from_text = encode_parquet_json(&schema(), &spaced).expect("text");
    assert_eq!(from_text, from_values);
}

/// What the tape decoder cannot take goes down the values path, whose
/// errors name the record: not an object, two objects in one record, not
/// JSON, a value of the wrong type.
#[test]
fn parquet_from_text_refuses_bad_records_by_index() {
    let good = texts(&records(3));
    for (bad, expected) in [
        ("[1, 2]".to_string(), "record 1: not a JSON object"),
        (format!("{}{}", good[0], good[2]), "record 1: not JSON"),
        ("{\"PK\": ".to_string(), "record 1: not JSON"),
        (
            "{\"PK\": 7, \"ok\": true, \"sequenceNumber\": \"1\", \"changedAt\": 1}".to_string(),
            "decoding field 'PK'",
        ),
    ] {
        let records = vec![good[0].clone(), bad.clone(), good[2].clone()];
        let err = encode_parquet_json(&schema(), &records).expect_err(&bad);
        assert!(err.to_string().contains(expected), "{bad}: {err}");
    }
}

use arrow_schema::{DataType, TimeUnit};

#[test]
fn converts_the_supported_types() {
    let s = usher_codec::columns::arrow_schema(&json!({
            "type": "record", "name": "r", "fields": [
                {"name": "a", "type": "string"},
                {"name": "b", "type": ["null", "long"]},
                {"name": "c", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                {"name": "d", "type": {"type": "array", "items": "string"}},
                {"name": "e", "type": "boolean"},
                {"name": "f", "type": {"type": "record", "name": "n", "fields": [{"name": "x", "type": "double"}]}},
            ]
        }))
        .expect("schema");
    assert_eq!(s.field(0).data_type(), &DataType::Utf8);
    assert!(!s.field(0).is_nullable());
    assert_eq!(s.field(1).data_type(), &DataType::Int64);
    assert!(s.field(1).is_nullable());
    assert!(matches!(
        s.field(2).data_type(),
        DataType::Timestamp(TimeUnit::Millisecond, _)
    ));
    assert!(matches!(s.field(3).data_type(), DataType::List(_)));
    assert!(matches!(s.field(5).data_type(), DataType::Struct(_)));
}

#[test]
fn refuses_what_it_cannot_write() {
    for bad in [
        json!("string"),
        json!({"type": "record", "name": "r"}),
        json!({"type": "record", "name": "r", "fields": [{"name": "a", "type": ["string", "long"]}]}),
        json!({"type": "record", "name": "r", "fields": [{"name": "a", "type": "fixed"}]}),
        json!({"type": "record", "name": "r", "fields": [{"type": "long"}]}),
    ] {
        assert!(usher_codec::columns::arrow_schema(&bad).is_err(), "{bad}");
    }
}
