//! Usher's embedded backends: every capability on one machine, with real
//! semantics and durable state, for `usher up` and for tests.
//!
//! [`Embedded::open`] keeps its state in a data folder:
//!
//! ```text
//! <data>/tables/<table>.db  a table's items and its change log (the stream)
//! <data>/checkpoints.db   the stream followers' checkpoints
//! <data>/queues.db        queue messages (topics deliver into them)
//! <data>/events.db        the Kafka stand-in's topic logs
//! <data>/objects/<bucket>/<key>   objects as files (`objects/.tmp` for writes in progress)
//! ```
//!
//! [`Embedded::in_memory`] keeps everything in memory (objects in a
//! temporary folder removed on drop), for tests.
//!
//! Each SQLite database has one connection (WAL, `synchronous=NORMAL`, busy
//! timeout) used from tokio's blocking pool; every batch call is one
//! transaction. Each table has its own database, so writes to different
//! tables run side by side (SQLite has one writer per database); a data
//! folder of the earlier layout (every table in one `tables.db`) is
//! migrated when it is opened. The cache lives in memory only.

#![deny(missing_docs)]

mod cache;
mod change_log;
mod db;
mod events;
pub mod filter;
mod objects;
mod queue;
mod table;
mod topic;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use usher_capabilities::{Backends, CodecBackend, ServiceBackend, WorkerInvoker};
use usher_registry::Resources;

pub use cache::EmbeddedCache;
pub use change_log::{ChangeKind, ChangeLog, ChangeRow};
pub use db::measure_row_writes;
pub use events::{EmbeddedEvents, EventRecord, MAX_VALUE_BYTES};
pub use filter::FilterPolicy;
pub use objects::{EmbeddedObjects, MAX_KEY_BYTES};
pub use queue::{
    EmbeddedQueues, QueueDepth, QueuedMessage, Received, MAX_BODY_BYTES, MAX_DELAY_SECONDS,
    MAX_RECEIVE,
};
pub use table::EmbeddedTables;
pub use topic::EmbeddedTopics;

/// Why the embedded backends could not open.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// A file or folder could not be created or read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A SQLite database could not be opened or set up.
    #[error("database {database}: {source}")]
    Sqlite {
        /// Which database.
        database: String,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The resources cannot be served (a bad filter policy, a subscription
    /// or dead-letter queue that is not defined …).
    #[error("resources: {0}")]
    Config(String),
}

/// Every embedded backend, opened over the registry's resources.
pub struct Embedded {
    tables: Arc<EmbeddedTables>,
    queues: Arc<EmbeddedQueues>,
    topics: Arc<EmbeddedTopics>,
    objects: Arc<EmbeddedObjects>,
    events: Arc<EmbeddedEvents>,
    cache: Arc<EmbeddedCache>,
}

impl Embedded {
    /// Opens (creating if needed) the backends' state in the data folder
    /// `dir`.
    pub fn open(dir: &Path, resources: &Resources) -> Result<Embedded, EmbeddedError> {
        std::fs::create_dir_all(dir).map_err(|source| EmbeddedError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Self::build(Some(dir), resources)
    }

    /// Backends whose state lives in memory only (objects in a temporary
    /// folder removed when the backends are dropped).
    pub fn in_memory(resources: &Resources) -> Result<Embedded, EmbeddedError> {
        Self::build(None, resources)
    }

    fn build(dir: Option<&Path>, resources: &Resources) -> Result<Embedded, EmbeddedError> {
        let file = |name: &str| dir.map(|d| d.join(name));
        let tables = EmbeddedTables::open(dir, &resources.tables)?;
        let queues = Arc::new(EmbeddedQueues::open(
            file("queues.db").as_deref(),
            &resources.queues,
        )?);
        let topics = EmbeddedTopics::new(Arc::clone(&queues), &resources.topics, |q| {
            resources.has_queue(q)
        })?;
        let objects = EmbeddedObjects::open(file("objects").as_deref(), &resources.buckets)?;
        let events = EmbeddedEvents::open(file("events.db").as_deref(), &resources.event_topics)?;
        Ok(Embedded {
            tables: Arc::new(tables),
            queues,
            topics: Arc::new(topics),
            objects: Arc::new(objects),
            events: Arc::new(events),
            cache: Arc::new(EmbeddedCache::new()),
        })
    }

    /// Rows written to the data folder's databases (tables and their change
    /// log, queues, event log) since they were opened.
    pub fn row_writes(&self) -> u64 {
        self.tables.row_writes() + self.queues.row_writes() + self.events.row_writes()
    }

    /// The tables.
    pub fn tables(&self) -> Arc<EmbeddedTables> {
        Arc::clone(&self.tables)
    }

    /// The tables' change log and the stream followers' checkpoints.
    pub fn change_log(&self) -> ChangeLog {
        self.tables.change_log()
    }

    /// The queues (sending, and the consumer side for pollers).
    pub fn queues(&self) -> Arc<EmbeddedQueues> {
        Arc::clone(&self.queues)
    }

    /// The topics.
    pub fn topics(&self) -> Arc<EmbeddedTopics> {
        Arc::clone(&self.topics)
    }

    /// The object store.
    pub fn objects(&self) -> Arc<EmbeddedObjects> {
        Arc::clone(&self.objects)
    }

    /// The event log.
    pub fn events(&self) -> Arc<EmbeddedEvents> {
        Arc::clone(&self.events)
    }

    /// The cache.
    pub fn cache(&self) -> Arc<EmbeddedCache> {
        Arc::clone(&self.cache)
    }

    /// A full set of backends: tables, queues, topics, objects, events and
    /// cache from these embedded ones; services, codec and workers from the
    /// caller.
    pub fn backends(
        &self,
        services: Arc<dyn ServiceBackend>,
        codec: Arc<dyn CodecBackend>,
        workers: Arc<dyn WorkerInvoker>,
    ) -> Backends {
        Backends {
            table: self.tables(),
            queue: self.queues(),
            topic: self.topics(),
            objects: self.objects(),
            events: self.events(),
            cache: self.cache(),
            services,
            codec,
            workers,
        }
    }
}
