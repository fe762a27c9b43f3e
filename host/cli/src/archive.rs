//! `usher archive`: the change-data archive's schemas (derived files from
//! `schemas/archive/*.json`) and its compaction (a closed day's objects of
//! one record type merged into one; the rule is in `usher_codec::compact`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Subcommand, ValueEnum};
use usher_capabilities::{Format, ObjectBackend};
use usher_registry::Registry;

/// `usher archive …`.
#[derive(Subcommand)]
pub enum ArchiveCommand {
    /// Writes the files derived from the schema sources (`<dir>/*.json` →
    /// `<dir>/derived/<type>.avsc`, `.parquet.txt`, `.parquet.sql`,
    /// `.avro.sql`); with `--check`, writes nothing and fails when a
    /// checked-in derived file differs from its source.
    Schemas {
        /// The folder of the sources.
        #[arg(long, default_value = "schemas/archive")]
        dir: PathBuf,
        /// Only check.
        #[arg(long)]
        check: bool,
        /// The archive's location in the DDL (`s3://bucket/prefix`).
        #[arg(long, default_value = usher_codec::archive::DEFAULT_LOCATION)]
        location: String,
    },
    /// Compacts the archive: for each record type (or `--type`), each
    /// closed day (before today, UTC; or just `--day`) with two objects or
    /// more is merged into one `merged-<hash>` object, each sequence number
    /// once, and its inputs deleted. On the embedded objects of `--data`, or
    /// on S3 with `--aws` (the configuration `usher lambda` uses).
    Compact {
        /// The bucket (a `buckets:` entry of resources.yaml).
        #[arg(long, default_value = "archive")]
        bucket: String,
        /// The archive's key prefix.
        #[arg(long, default_value = "archive")]
        prefix: String,
        /// The archive's format.
        #[arg(long, value_enum, default_value = "parquet")]
        format: FormatArg,
        /// Only this record type.
        #[arg(long = "type")]
        record_type: Option<String>,
        /// Only this day (YYYY-MM-DD), closed or not.
        #[arg(long)]
        day: Option<String>,
        /// The data folder of the embedded backends.
        #[arg(long, env = "USHER_DATA", default_value = ".usher/data")]
        data: PathBuf,
        /// Work on S3 instead of the embedded objects.
        #[arg(long)]
        aws: bool,
        /// The schema sources (for the record types).
        #[arg(long, default_value = "schemas/archive")]
        schemas: PathBuf,
    },
}

/// A format on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum FormatArg {
    /// Avro object container files.
    Avro,
    /// Parquet.
    Parquet,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Avro => Format::Avro,
            FormatArg::Parquet => Format::Parquet,
        }
    }
}

/// Runs `usher archive …`.
pub async fn run(registry_dir: &Path, command: ArchiveCommand) -> Result<()> {
    match command {
        ArchiveCommand::Schemas {
            dir,
            check,
            location,
        } => {
            if check {
                let problems = usher_codec::archive::check(&dir)?;
                if !problems.is_empty() {
                    bail!(
                        "the derived files of {} disagree with their sources (run `usher archive schemas`):\n  {}",
                        dir.display(),
                        problems.join("\n  ")
                    );
                }
                println!("{}: every derived file agrees with its source", dir.display());
            } else {
                for name in usher_codec::archive::write(&dir, &location)? {
                    println!("{}", dir.join("derived").join(name).display());
                }
            }
            Ok(())
        }
        ArchiveCommand::Compact {
            bucket,
            prefix,
            format,
            record_type,
            day,
            data,
            aws,
            schemas,
        } => {
            let registry = Registry::load(registry_dir)
                .with_context(|| format!("loading the registry {}", registry_dir.display()))?;
            let objects: Arc<dyn ObjectBackend> = if aws {
                usher_backend_aws::AwsBackends::from_env(&registry.resources)
                    .await
                    .context("configuring the AWS backends")?
                    .objects()
            } else {
                usher_backend_embedded::Embedded::open(&data, &registry.resources)
                    .with_context(|| format!("opening {}", data.display()))?
                    .objects()
            };
            // (`usher archive compact` on the embedded objects may run
            // while `usher up` runs on the same folder: objects are files.)
            let types: Vec<String> = match record_type {
                Some(t) => vec![t],
                None => usher_codec::archive::load_sources(&schemas)?
                    .into_iter()
                    .map(|s| s.record_type)
                    .collect(),
            };
            let today = today();
            let mut merged = 0usize;
            for t in &types {
                let days = match &day {
                    Some(d) => vec![d.clone()],
                    None => usher_codec::compact::days(objects.as_ref(), &bucket, &prefix, t)
                        .await?
                        .into_iter()
                        .filter(|d| d.as_str() < today.as_str())
                        .collect(),
                };
                for d in days {
                    let report = usher_codec::compact::compact_day(
                        objects.as_ref(),
                        &bucket,
                        &prefix,
                        t,
                        &d,
                        format.into(),
                    )
                    .await
                    .with_context(|| format!("compacting {t} dt={d}"))?;
                    if let Some(out) = &report.output {
                        merged += 1;
                        println!(
                            "{out}: {} objects merged, {} records, {} duplicates dropped",
                            report.inputs.len(),
                            report.records,
                            report.duplicates
                        );
                    }
                }
            }
            println!("{merged} day(s) compacted");
            Ok(())
        }
    }
}

/// Today's UTC date.
fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}
