//! `usher demo <name>`: the demos of `usher-demo`, run on the host `usher up`
//! starts, in this process.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use usher_backend_embedded::EmbeddedTables;
use usher_demo::{BoxError, Demo, Platform};
use usher_trigger_local::CounterSnapshot;

use crate::store_cmds::Paths;
use crate::up::Host;

impl Platform for Host {
    fn base_url(&self) -> String {
        format!("http://{}", self.local_addr())
    }

    fn worker_count(&self) -> usize {
        self.runtime.workers().len()
    }

    fn tables(&self) -> Arc<EmbeddedTables> {
        self.embedded.tables()
    }

    fn row_writes(&self) -> u64 {
        self.embedded.row_writes()
    }

    fn counters(&self) -> BTreeMap<String, CounterSnapshot> {
        self.snapshot()
    }

    fn events(&self) -> Option<Arc<usher_backend_embedded::EmbeddedEvents>> {
        (!self.events_on_kafka).then(|| self.embedded.events())
    }

    async fn shutdown(self) -> Result<(), BoxError> {
        Host::shutdown(self).await.map_err(BoxError::from)
    }
}

/// Runs `demo` on a host started on the data folder and listener address
/// the demo asks for.
pub async fn run(paths: &Paths, demo: Demo) -> Result<()> {
    let registry = paths.registry()?;
    usher_demo::run(demo, &registry.resources, |data, listen| async move {
        crate::up::start(paths, &data, listen)
            .await
            .map_err(BoxError::from)
    })
    .await?;
    Ok(())
}
