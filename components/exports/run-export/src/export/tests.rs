use super::*;
use usher_domain::exports::export_type;
use usher_sdk::fakes::{json_response, Fakes};

fn sources() -> Sources {
    Sources {
        entries: "entries".into(),
        campaigns: "campaigns".into(),
        users: "users".into(),
        codes: "codes".into(),
        draws_table: "draws".into(),
        page_size: 2,
    }
}

/// Entries e0..e4 of market m1 in pages of 2; a fan's name holds a comma,
/// quotes, a newline and non-ASCII text.
fn fakes(fail_page: Option<&'static str>) -> Fakes {
    Fakes::new()
        .on_service("campaigns", |r| {
            Ok(match r.path.as_str() {
                "/campaigns/c1" => json_response(200, &json!({"id": "c1", "fields": [{"name": "size"}]})),
                "/campaigns/c1/markets" => json_response(200, &json!({"markets": [
                    {"id": "m1", "eventName": "Night, one", "venue": "Hall"},
                    {"id": "m2", "eventName": "Day", "venue": "Park"}]})),
                _ => json_response(404, &json!({"error": "no"})),
            })
        })
        .on_service("entries", move |r| {
            if fail_page.is_some_and(|after| r.path.contains(&format!("after={after}"))) {
                return Ok(json_response(500, &json!({"error": "entries table down"})));
            }
            let all: Vec<Value> = (0..5)
                .map(|i| json!({"globalUserId": format!("e{i}"), "marketId": "m1", "email": format!("e{i}@x.io"),
                                "version": i, "score": i * 10, "entry": {"size": if i == 1 { "L, \"tall\"\nñ" } else { "M" }}}))
                .collect();
            let start = r.path.split("after=").nth(1).and_then(|a| a.trim_start_matches('e').parse::<usize>().ok()).map_or(0, |n| n + 1);
            if r.path.contains("/selections") {
                let sel: Vec<Value> = (0..3).map(|i| json!({"globalUserId": format!("e{i}"), "verdict": if i < 2 { "WINNER" } else { "LOSER" }, "code": format!("K{i}"), "drawId": "d"})).collect();
                return Ok(json_response(200, &json!({"selections": sel, "next": null})));
            }
            let page: Vec<Value> = all.iter().skip(start).take(2).cloned().collect();
            let next = if start + 2 < all.len() { json!(format!("e{}", start + 1)) } else { Value::Null };
            Ok(json_response(200, &json!({"entries": page, "next": next})))
        })
        .on_service("users", |r| {
            Ok(match r.path.as_str() {
                "/users/e0" => json_response(200, &json!({"globalUserId": "e0", "email": "zoe@x.io", "firstName": "Zoë", "lastName": "O'Neil"})),
                _ => json_response(404, &json!({"error": "no user"})),
            })
        })
}

fn run(name: &str, market: Option<&str>, f: &Fakes) -> Result<(u64, Vec<u8>), ExportError> {
    let _i = f.install();
    let scope = Scope {
        campaign_id: "c1",
        market_id: market,
    };
    let mut ticks = 0;
    let t = export_type(name).expect("type");
    write_export(t, &sources(), &scope, Vec::new(), &mut || {
        ticks += 1;
        Ok(())
    })
}

#[test]
fn entries_are_quoted_csv_with_a_header_and_field_columns() {
    let f = fakes(None);
    let (rows, bytes) = run("entries", Some("m1"), &f).expect("export");
    assert_eq!(rows, 5);
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(
        header,
        [
            "campaignId",
            "marketId",
            "globalUserId",
            "email",
            "version",
            "createdAt",
            "updatedAt",
            "field:size"
        ]
    );
    let records: Vec<csv::StringRecord> =
        reader.records().collect::<Result<_, _>>().expect("records");
    assert_eq!(records.len(), 5);
    assert_eq!(&records[1][7], "L, \"tall\"\nñ");
    assert_eq!(&records[4][2], "e4");
    let text = String::from_utf8(bytes).expect("utf-8");
    assert!(text.contains("\"L, \"\"tall\"\"\nñ\""), "{text}");
}

#[test]
fn winners_join_the_user_service_and_keep_only_winners() {
    let f = fakes(None);
    let (rows, bytes) = run("winners", Some("m1"), &f).expect("export");
    assert_eq!(rows, 2);
    let text = String::from_utf8(bytes).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "campaignId,marketId,globalUserId,email,firstName,lastName,code,drawId"
    );
    assert_eq!(lines[1], "c1,m1,e0,zoe@x.io,Zoë,O'Neil,K0,d");
    assert_eq!(lines[2], "c1,m1,e1,,,,K1,d");
}

#[test]
fn reminder_email_is_one_zip_of_a_csv_per_market() {
    let f = fakes(None);
    let (rows, bytes) = run("reminder_email", None, &f).expect("export");
    assert_eq!(rows, 4, "two winners in each of two markets");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("zip");
    let names: Vec<String> = archive
        .file_names()
        .map(|n| n.map(|n| n.to_string()))
        .collect::<Result<_, _>>()
        .expect("names");
    assert_eq!(names.len(), 2);
    let mut first = String::new();
    std::io::Read::read_to_string(
        &mut archive.by_name("reminder_email-m1.csv").expect("m1"),
        &mut first,
    )
    .expect("read");
    assert!(
        first.starts_with(
            "email,firstName,lastName,code,marketId,eventName,venue,locale,globalUserId\n"
        ),
        "{first}"
    );
    assert!(
        first.contains("zoe@x.io,Zoë,O'Neil,K0,m1,\"Night, one\",Hall,,e0"),
        "{first}"
    );
}

#[test]
fn a_source_failing_mid_export_is_a_source_error() {
    let f = fakes(Some("e1"));
    let e = run("entries", Some("m1"), &f).expect_err("fails");
    match e {
        ExportError::Source(reason) => assert!(
            reason.contains("answered 500") && reason.contains("entries table down"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_lost_lease_stops_the_export() {
    let f = fakes(None);
    let _i = f.install();
    let scope = Scope {
        campaign_id: "c1",
        market_id: Some("m1"),
    };
    let t = export_type("scoring").expect("type");
    let e = write_export(t, &sources(), &scope, Vec::new(), &mut || {
        Err(ExportError::Lost)
    })
    .expect_err("lost");
    assert_eq!(e, ExportError::Lost);
}
