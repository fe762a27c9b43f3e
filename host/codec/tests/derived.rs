//! The archive's derived files (`schemas/archive/derived/`) agree with their
//! sources (`schemas/archive/*.json`): this test fails when one was edited,
//! or a source changed without `usher archive schemas` being run.

use std::path::PathBuf;

use usher_codec::archive;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/archive")
}

#[test]
fn the_checked_in_derived_files_agree_with_their_sources() {
    let problems = archive::check(&dir()).expect("the sources parse");
    assert!(
        problems.is_empty(),
        "run `usher archive schemas`: {problems:?}"
    );
    let sources = archive::load_sources(&dir()).expect("sources");
    let mut types: Vec<&str> = sources.iter().map(|s| s.record_type.as_str()).collect();
    types.sort_unstable();
    assert_eq!(types, ["demand", "event", "notification", "sale"]);
}

#[test]
fn a_changed_source_or_derived_file_is_caught() {
    let tmp = tempfile::tempdir().expect("tmp");
    let copy = |from: &std::path::Path, to: &std::path::Path| {
        std::fs::create_dir_all(to).expect("mkdir");
        for e in std::fs::read_dir(from).expect("read").flatten() {
            if e.path().is_file() {
                std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
            }
        }
    };
    copy(&dir(), tmp.path());
    copy(&dir().join("derived"), &tmp.path().join("derived"));
    assert!(archive::check(tmp.path()).expect("check").is_empty());
    // A new field in the source: its derived files no longer agree.
    let path = tmp.path().join("sale.json");
    let text = std::fs::read_to_string(&path).expect("sale");
    let changed = text.replace(
        "{ \"name\": \"currency\"",
        "{ \"name\": \"channel\", \"type\": \"string\" },\n    { \"name\": \"currency\"",
    );
    assert_ne!(changed, text);
    std::fs::write(&path, changed).expect("write");
    let problems = archive::check(tmp.path()).expect("check");
    for want in [
        "sale.avsc",
        "sale.parquet.txt",
        "sale.parquet.sql",
        "sale.avro.sql",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(want)),
            "{want}: {problems:?}"
        );
    }
    // Writing them again makes them agree; a hand edit is caught.
    archive::write(tmp.path(), archive::DEFAULT_LOCATION).expect("write");
    assert!(archive::check(tmp.path()).expect("check").is_empty());
    let avsc = tmp.path().join("derived/demand.avsc");
    let edited = std::fs::read_to_string(&avsc)
        .expect("avsc")
        .replace("\"long\"", "\"int\"");
    std::fs::write(&avsc, edited).expect("write");
    assert_eq!(
        archive::check(tmp.path()).expect("check"),
        ["demand.avsc differs from its source"]
    );
    // A source that names a field twice, or an unknown PII action, is refused.
    std::fs::write(
        tmp.path().join("sale.json"),
        text.replace("\"name\": \"currency\"", "\"name\": \"amount\""),
    )
    .expect("write");
    assert!(archive::check(tmp.path()).is_err());
    std::fs::write(
        tmp.path().join("sale.json"),
        text.replace("\"pii\": \"drop\"", "\"pii\": \"encrypt\""),
    )
    .expect("write");
    assert!(archive::check(tmp.path()).is_err());
}

#[test]
fn the_ddl_names_every_column_and_the_partition() {
    let sources = archive::load_sources(&dir()).expect("sources");
    let demand = sources
        .iter()
        .find(|s| s.record_type == "demand")
        .expect("demand");
    let ddl = demand.ddl(archive::Format::Parquet, "s3://b/p");
    assert!(ddl.contains("CREATE EXTERNAL TABLE IF NOT EXISTS `usher_archive`.`demand`"));
    assert!(ddl.contains("PARTITIONED BY (`dt` string)"));
    assert!(ddl.contains("STORED AS PARQUET"));
    assert!(ddl.contains("LOCATION 's3://b/p/demand/'"));
    assert!(ddl.contains("`changedAt` timestamp"));
    for f in &demand.fields {
        assert!(ddl.contains(&format!("`{}` ", f.name)), "{}", f.name);
    }
    let avro = demand.ddl(archive::Format::Avro, "s3://b/p");
    assert!(avro.contains("STORED AS AVRO") && avro.contains("'avro.schema.literal'="));
    assert!(avro.contains("`changedAt` bigint"));
}

/// The archive worker's trigger filter (`workers/archive.yaml`, in AWS the
/// event-source mapping's filter criteria) lets through exactly the items
/// of the record types: an item made from each type's `match` passes it, and
/// an item made from each value the filter accepts is of some type.
#[test]
fn the_archive_trigger_filter_agrees_with_the_record_types() {
    let workers = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../workers");
    let registry = usher_registry::Registry::load(&workers).expect("the registry");
    let spec = registry
        .worker("archive/archive-changes")
        .expect("the archive worker");
    let usher_registry::Trigger::Stream { filter, .. } = &spec.trigger else {
        panic!("a stream trigger")
    };
    assert!(!filter.is_empty(), "the archive worker has a filter");
    let sources = archive::load_sources(&dir()).expect("sources");
    let item = |attribute: &str, value: String| serde_json::json!({ attribute: value });
    for s in &sources {
        let m = &s.matcher;
        let value = format!(
            "{}{}",
            m.equals
                .clone()
                .or_else(|| m.prefix.clone())
                .unwrap_or_default(),
            if m.equals.is_some() { "" } else { "x" }
        );
        let it = item(&m.attribute, value);
        assert!(
            usher_registry::StreamFilterRule::passes(filter, Some(&it), None),
            "{}: {it} does not pass the trigger filter",
            s.record_type
        );
    }
    for rule in filter {
        let values = rule
            .equals
            .iter()
            .cloned()
            .chain(rule.prefix.iter().map(|p| format!("{p}x")));
        for v in values {
            let it = item(&rule.attribute, v);
            assert!(
                sources.iter().any(|s| s.matcher.matches(&it)),
                "{it} passes the trigger filter but is of no record type"
            );
        }
    }
}
