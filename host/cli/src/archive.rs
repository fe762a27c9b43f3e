//! `usher archive`: the change-data archive's schemas (derived files from
//! `schemas/archive/*.json`) and its compaction (a closed day's objects of
//! one record type merged into one; the rule is in `usher_codec::compact`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Subcommand, ValueEnum};
use usher_capabilities::{Format, ObjectBackend};
use usher_registry::{ArchiveSite, Registry};

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
    /// Compacts the archive: for each record type found under the prefix
    /// (or just `--type`), each closed day (before today, UTC; or just
    /// `--day`) with two objects or more is merged into one `merged-<hash>`
    /// object, each record once, and its inputs deleted. On the embedded objects of `--data`, or
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
                println!(
                    "{}: every derived file agrees with its source",
                    dir.display()
                );
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
            let site = ArchiveSite {
                worker: "usher archive compact".into(),
                bucket,
                prefix: prefix.trim_end_matches('/').to_string(),
                avro: matches!(format, FormatArg::Avro),
                types: record_type.into_iter().collect(),
            };
            let days = match day {
                Some(d) => Days::Only(d),
                None => Days::Closed,
            };
            let reports = compact(objects.as_ref(), &site, &days).await?;
            for report in &reports {
                println!(
                    "{}: {} objects merged, {} records, {} duplicates dropped",
                    report.output.as_deref().unwrap_or_default(),
                    report.inputs.len(),
                    report.records,
                    report.duplicates
                );
            }
            println!("{} day(s) compacted", reports.len());
            Ok(())
        }
    }
}

/// Today's UTC date.
fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

/// Which days [`compact`] merges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Days {
    /// Every closed day: before today (UTC).
    Closed,
    /// Only this day (`YYYY-MM-DD`), closed or not.
    Only(String),
}

/// Compacts the days of every record type of `site` (its `types`, or every
/// type that has objects under its prefix); the reports of the days merged.
pub async fn compact(
    objects: &dyn ObjectBackend,
    site: &ArchiveSite,
    which: &Days,
) -> Result<Vec<usher_codec::compact::DayReport>> {
    if let Days::Only(d) = which {
        if chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_err() {
            bail!("`{d}` is not a day (YYYY-MM-DD)");
        }
    }
    let format = if site.avro {
        Format::Avro
    } else {
        Format::Parquet
    };
    let today = today();
    let mut out = Vec::new();
    let types = if site.types.is_empty() {
        // Every type that has objects: `<prefix>/<type>/dt=…`.
        let lead = if site.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", site.prefix)
        };
        let mut found: Vec<String> = objects
            .list(&site.bucket, &lead, 100_000)
            .await?
            .into_iter()
            .filter_map(|o| {
                let rest = o.key.strip_prefix(&lead)?.to_string();
                let (t, after) = rest.split_once('/')?;
                (after.starts_with("dt=") && t != "errors").then(|| t.to_string())
            })
            .collect();
        found.sort();
        found.dedup();
        found
    } else {
        site.types.clone()
    };
    for t in &types {
        let days = match which {
            Days::Only(d) => vec![d.clone()],
            Days::Closed => usher_codec::compact::days(objects, &site.bucket, &site.prefix, t)
                .await?
                .into_iter()
                .filter(|d| d.as_str() < today.as_str())
                .collect(),
        };
        for d in days {
            let report = usher_codec::compact::compact_day(
                objects,
                &site.bucket,
                &site.prefix,
                t,
                &d,
                format,
            )
            .await
            .with_context(|| format!("compacting {t} dt={d} of {}", site.worker))?;
            if report.output.is_some() {
                out.push(report);
            }
        }
    }
    Ok(out)
}

/// `usher up`'s compaction task: every `every`, the closed days of each
/// archive of the registry (at start-up too). Runs until aborted.
pub fn spawn_compaction(
    objects: Arc<dyn ObjectBackend>,
    sites: Vec<ArchiveSite>,
    every: std::time::Duration,
) -> Option<tokio::task::JoinHandle<()>> {
    if sites.is_empty() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        loop {
            ticker.tick().await;
            for site in &sites {
                match compact(objects.as_ref(), site, &Days::Closed).await {
                    Ok(reports) => {
                        for r in reports {
                            eprintln!(
                                "usher up: archive {} compacted {}: {} objects → {} ({} records, {} duplicates dropped)",
                                site.worker,
                                r.folder,
                                r.inputs.len(),
                                r.output.unwrap_or_default(),
                                r.records,
                                r.duplicates
                            );
                        }
                    }
                    Err(e) => {
                        tracing::warn!(worker = %site.worker, error = %format!("{e:#}"), "archive compaction failed; retried at the next run")
                    }
                }
            }
        }
    }))
}
