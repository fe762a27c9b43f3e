//! `encode_columns` (`codec.encode-columns`): the same containers as the
//! JSON records path, and clear refusals of columns that do not fit.

use serde_json::{json, Value};
use usher_capabilities::{CapError, CodecBackend, Column, ColumnValues, Columns, Format};
use usher_codec::*;

fn schema() -> Value {
    json!({
        "type": "record", "name": "demand", "namespace": "t", "fields": [
            {"name": "PK", "type": "string"},
            {"name": "version", "type": ["null", "long"], "default": null},
            {"name": "ok", "type": "boolean"},
            {"name": "email", "type": ["null", "string"], "default": null},
            {"name": "score", "type": ["double", "null"]},
            {"name": "small", "type": "int"},
            {"name": "ratio", "type": "float"},
            {"name": "day", "type": {"type": "int", "logicalType": "date"}},
            {"name": "verdict", "type": ["null", {"type": "enum", "name": "verdict", "symbols": ["WINNER", "LOSER"]}]},
            {"name": "changedAt", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        ]
    })
}

fn records(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "PK": format!("ENTRY#c#{i}·é"),
                "version": if i % 3 == 0 { Value::Null } else { json!(i) },
                "ok": i % 2 == 0,
                "email": if i % 5 == 0 { Value::Null } else { json!(format!("h{i}")) },
                "score": if i % 7 == 0 { Value::Null } else { json!(i as f64 / 4.0) },
                "small": i as i64 - 50,
                "ratio": 0.5,
                "day": 20_000 + i as i64,
                "verdict": match i % 3 { 0 => Value::Null, 1 => json!("WINNER"), _ => json!("LOSER") },
                "changedAt": 1_700_000_000_000i64 + i as i64,
            })
        })
        .collect()
}

/// The records as columns, the way a guest builds them.
fn columns(records: &[Value]) -> Columns {
    let kinds = [
        ("PK", "s"),
        ("version", "l"),
        ("ok", "b"),
        ("email", "s"),
        ("score", "d"),
        ("small", "l"),
        ("ratio", "d"),
        ("day", "l"),
        ("verdict", "s"),
        ("changedAt", "l"),
    ];
    let columns = kinds
        .iter()
        .map(|(name, kind)| {
            let present: Vec<bool> = records.iter().map(|r| !r[*name].is_null()).collect();
            let values = match *kind {
                "s" => {
                    let mut text = String::new();
                    let mut ends = Vec::new();
                    for r in records {
                        text.push_str(r[*name].as_str().unwrap_or(""));
                        ends.push(text.len() as u32);
                    }
                    ColumnValues::Strings { text, ends }
                }
                "l" => ColumnValues::Longs(
                    records
                        .iter()
                        .map(|r| r[*name].as_i64().unwrap_or(0))
                        .collect(),
                ),
                "d" => ColumnValues::Doubles(
                    records
                        .iter()
                        .map(|r| r[*name].as_f64().unwrap_or(0.0))
                        .collect(),
                ),
                _ => ColumnValues::Booleans(
                    records
                        .iter()
                        .map(|r| r[*name].as_bool().unwrap_or(false))
                        .collect(),
                ),
            };
            Column {
                name: name.to_string(),
                present,
                values,
            }
        })
        .collect();
    Columns {
        rows: records.len(),
        columns,
    }
}

fn avro_rows(bytes: &[u8]) -> Vec<Value> {
    apache_avro::Reader::new(bytes)
        .expect("avro")
        .map(|r| apache_avro::from_value::<Value>(&r.expect("row")).expect("json"))
        .collect()
}

#[test]
fn parquet_from_columns_is_byte_for_byte_the_json_path() {
    let records = records(1000);
    let from_json = encode_parquet(&schema(), records.clone()).expect("json path");
    let from_columns =
        encode_columns(Format::Parquet, &schema(), columns(&records)).expect("columns");
    assert_eq!(from_columns, from_json);
}

#[test]
fn avro_from_columns_reads_back_as_the_json_path_does() {
    let records = records(1000);
    let from_json = avro_rows(&encode_avro(&schema(), records.clone()).expect("json path"));
    let from_columns =
        avro_rows(&encode_columns(Format::Avro, &schema(), columns(&records)).expect("columns"));
    assert_eq!(from_columns.len(), 1000);
    assert_eq!(from_columns, from_json);
    // Nulls and values where they were.
    assert_eq!(from_columns[3]["version"], Value::Null);
    assert_eq!(from_columns[4]["version"], json!(4));
    assert_eq!(from_columns[1]["PK"], json!("ENTRY#c#1·é"));
}

#[test]
fn a_field_without_a_column_is_null_and_no_rows_make_an_empty_container() {
    let mut cols = columns(&records(10));
    cols.columns
        .retain(|c| c.name != "email" && c.name != "verdict");
    let rows = avro_rows(&encode_columns(Format::Avro, &schema(), cols.clone()).expect("avro"));
    assert!(rows
        .iter()
        .all(|r| r["email"].is_null() && r["verdict"].is_null()));
    encode_columns(Format::Parquet, &schema(), cols).expect("parquet");
    let empty = columns(&[]);
    assert!(
        avro_rows(&encode_columns(Format::Avro, &schema(), empty.clone()).expect("avro"))
            .is_empty()
    );
    encode_columns(Format::Parquet, &schema(), empty).expect("parquet");
}

/// Each bad set of columns, and what the refusal must say.
#[test]
fn columns_that_do_not_fit_are_refused_naming_the_column() {
    let good = || columns(&records(4));
    let with = |f: &dyn Fn(&mut Columns)| {
        let mut c = good();
        f(&mut c);
        c
    };
    let col = |c: &mut Columns, name: &str| -> usize {
        c.columns
            .iter()
            .position(|x| x.name == name)
            .expect("column")
    };
    let cases: Vec<(Columns, &str)> = vec![
        (
            with(&|c| c.columns[0].name = "nope".into()),
            "column nope: the schema has no such field",
        ),
        (
            with(&|c| {
                let d = c.columns[1].clone();
                c.columns.push(d)
            }),
            "column version: given twice",
        ),
        (
            with(&|c| {
                let i = col(c, "ok");
                c.columns[i].values = ColumnValues::Longs(vec![1; 4])
            }),
            "column ok: longs given, the field needs booleans",
        ),
        (with(&|c| c.rows = 5), "column PK: 4 values for 5 rows"),
        (
            with(&|c| {
                let i = col(c, "PK");
                c.columns[i].present = vec![true, false, true, true]
            }),
            "column PK: row 1 has no value, and the field is not nullable",
        ),
        (
            with(&|c| {
                let i = col(c, "email");
                c.columns[i].present = vec![true]
            }),
            "column email: 1 presence flags for 4 rows",
        ),
        (
            with(&|c| {
                let i = col(c, "PK");
                if let ColumnValues::Strings { ends, .. } = &mut c.columns[i].values {
                    ends[2] = 1
                }
            }),
            "column PK: row 2: text end 1 is before",
        ),
        (
            with(&|c| {
                let i = col(c, "PK");
                if let ColumnValues::Strings { ends, .. } = &mut c.columns[i].values {
                    ends[3] = 10_000
                }
            }),
            "column PK: row 3: text end 10000",
        ),
        // Inside the two-byte é of row 0.
        (
            with(&|c| {
                let i = col(c, "PK");
                if let ColumnValues::Strings { ends, .. } = &mut c.columns[i].values {
                    ends[0] -= 1
                }
            }),
            "inside a character",
        ),
        (
            with(&|c| {
                let i = col(c, "small");
                c.columns[i].values = ColumnValues::Longs(vec![0, 1, i64::MAX, 3])
            }),
            "column small: row 2: 9223372036854775807 is out of the int range",
        ),
        (
            with(&|c| {
                let i = col(c, "verdict");
                c.columns[i].values = ColumnValues::Strings {
                    text: "WINNERLOSERMAYBEWINNER".into(),
                    ends: vec![6, 11, 16, 22],
                };
                c.columns[i].present = vec![true; 4]
            }),
            "column verdict: row 2: \"MAYBE\" is not a symbol of the enum",
        ),
        (
            with(&|c| c.columns.retain(|x| x.name != "ok")),
            "column ok: missing, and the field is not nullable",
        ),
    ];
    for format in [Format::Avro, Format::Parquet] {
        for (columns, want) in &cases {
            let err = encode_columns(format, &schema(), columns.clone()).expect_err(want);
            assert!(matches!(err, CodecError::Record(_)), "{want}: {err:?}");
            assert!(
                err.to_string().contains(want),
                "{format:?}: {err} should say {want}"
            );
        }
    }
}

#[test]
fn a_schema_that_is_not_flat_is_refused() {
    for ty in [
        json!({"type": "array", "items": "long"}),
        json!("bytes"),
        json!(["null", "long", "string"]),
    ] {
        let schema = json!({"type": "record", "name": "r", "fields": [{"name": "x", "type": ty}]});
        let err = encode_columns(Format::Parquet, &schema, Columns::default()).expect_err("nested");
        assert!(matches!(err, CodecError::Schema(_)), "{err:?}");
        assert!(
            err.to_string()
                .contains("field x: encode-columns takes flat records"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn the_backend_answers_invalid_for_bad_columns() {
    let mut bad = columns(&records(3));
    bad.rows = 2;
    let err = HostCodec
        .encode_columns(Format::Parquet, &schema(), bad)
        .await
        .expect_err("refused");
    assert!(matches!(err, CapError::Invalid(_)), "{err:?}");
    let ok = HostCodec
        .encode_columns(Format::Avro, &schema(), columns(&records(3)))
        .await
        .expect("encoded");
    assert_eq!(avro_rows(&ok).len(), 3);
}
