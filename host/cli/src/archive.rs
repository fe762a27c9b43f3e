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

/// One archive of the registry: what a worker running the
/// `archive/archive-changes` component writes (its settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSite {
    /// The worker.
    pub worker: String,
    /// Its bucket.
    pub bucket: String,
    /// Its key prefix.
    pub prefix: String,
    /// Its format.
    pub format: Format,
    /// Its record types (the `types` setting; every source's when absent).
    pub types: Vec<String>,
}

/// The archives of a registry.
pub fn sites(registry: &Registry, all_types: &[String]) -> Vec<ArchiveSite> {
    registry
        .workers
        .iter()
        .filter(|(_, spec)| spec.component.name == "archive/archive-changes")
        .filter_map(|(name, spec)| {
            let text = |k: &str, d: &str| {
                spec.settings
                    .get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or(d)
                    .to_string()
            };
            let bucket = text("bucket", "");
            if bucket.is_empty() {
                return None;
            }
            let format = if text("format", "parquet") == "avro" {
                Format::Avro
            } else {
                Format::Parquet
            };
            let types = spec
                .settings
                .get("types")
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_else(|| all_types.to_vec());
            Some(ArchiveSite {
                worker: name.clone(),
                bucket,
                prefix: text("prefix", "archive"),
                format,
                types,
            })
        })
        .collect()
}

/// Compacts every closed day of every type of `site`; the reports of the
/// days merged.
pub async fn compact_closed_days(
    objects: &dyn ObjectBackend,
    site: &ArchiveSite,
) -> Result<Vec<usher_codec::compact::DayReport>> {
    let today = today();
    let mut out = Vec::new();
    let types = if site.types.is_empty() {
        // Every type that has objects: `<prefix>/<type>/dt=…`.
        let lead = format!("{}/", site.prefix.trim_end_matches('/'));
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
        for d in usher_codec::compact::days(objects, &site.bucket, &site.prefix, t).await? {
            if d.as_str() >= today.as_str() {
                continue;
            }
            let report = usher_codec::compact::compact_day(
                objects,
                &site.bucket,
                &site.prefix,
                t,
                &d,
                site.format,
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
                match compact_closed_days(objects.as_ref(), site).await {
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
