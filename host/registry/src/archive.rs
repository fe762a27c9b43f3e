//! The change-data archives of a registry: the workers running the
//! `archive/archive-changes` component, and where they write. The host's
//! archive compaction (`usher up`'s task, `usher archive compact`, the
//! `archive-compact` task of `usher lambda`) and the Terraform that
//! schedules it in AWS read them here, so they agree on what an archive is.

use crate::Registry;

/// The component whose workers write an archive.
pub const ARCHIVE_COMPONENT: &str = "archive/archive-changes";

/// One archive: a worker running [`ARCHIVE_COMPONENT`] and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSite {
    /// The worker.
    pub worker: String,
    /// Its bucket (a `buckets:` entry of the resources).
    pub bucket: String,
    /// Its key prefix, without a trailing `/` (setting `prefix`, default
    /// `archive`).
    pub prefix: String,
    /// Avro (setting `format: avro`) rather than Parquet (the default).
    pub avro: bool,
    /// Its record types (setting `types`); empty: every type found under
    /// the prefix.
    pub types: Vec<String>,
}

impl Registry {
    /// The registry's archives, by worker name; a worker of the archive
    /// component without a `bucket` setting writes nothing and is left out.
    pub fn archive_sites(&self) -> Vec<ArchiveSite> {
        self.workers
            .iter()
            .filter(|(_, spec)| spec.component.name == ARCHIVE_COMPONENT)
            .filter_map(|(name, spec)| {
                let text = |k: &str| spec.settings.get(k).and_then(|v| v.as_str());
                let bucket = text("bucket").filter(|b| !b.is_empty())?;
                let types = spec
                    .settings
                    .get("types")
                    .and_then(|v| v.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|t| t.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                Some(ArchiveSite {
                    worker: name.clone(),
                    bucket: bucket.to_string(),
                    prefix: text("prefix")
                        .unwrap_or("archive")
                        .trim_end_matches('/')
                        .to_string(),
                    avro: text("format") == Some("avro"),
                    types,
                })
            })
            .collect()
    }
}
