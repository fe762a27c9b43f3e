//! The Usher worker registry.
//!
//! A registry is a directory of YAML files: one file per domain
//! (`workers/replication.yaml`, …) listing that domain's workers, plus
//! `workers/resources.yaml` describing the infrastructure resources (tables,
//! queues, topics, buckets, Kafka topics, internal services) the workers may
//! be granted. [`Registry::load`] reads and validates the whole directory and
//! reports every problem it finds, each naming its file and worker, so the
//! host can refuse to start with a message a user can act on.
//!
//! ```no_run
//! # fn main() -> Result<(), usher_registry::RegistryError> {
//! let registry = usher_registry::Registry::load(std::path::Path::new("workers"))?;
//! let worker = registry.worker("replication/save-entries")?;
//! assert_eq!(worker.trigger.world().world_name(), "batch-worker");
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod archive;
mod auth;
mod error;
mod grants;
mod load;
mod names;
mod pin;
mod resources;
mod spec;
mod text;

pub use archive::{ArchiveSite, ARCHIVE_COMPONENT};
pub use auth::{HttpAuth, JwtAlg, JwtAuth, JwtKey};
pub use error::RegistryError;
pub use grants::{Capability, Grants, PLATFORM_PACKAGE};
pub use load::{Registry, RESOURCES_FILES};
pub use pin::{locate_worker, set_component_pin};
pub use resources::{QueueDef, Resources, ServiceDef, Subscription, TableDef, TopicDef};
pub use spec::{
    ComponentRef, Limits, StartingPosition, StreamFilterRule, Trigger, WorkerSpec, WorldKind,
};

#[cfg(test)]
mod tests;
