//! The agent's services, built in dependency order and handed their collaborators. This is the
//! one place that decides which service gets which outbox, engine or device; the services
//! themselves only spawn their own tasks.

use crate::config::{Config, LockMode};
use crate::device::{self, punches::PunchLog};
use crate::lifecycle::Tasks;
use crate::store::Store;
use crate::sync::lock::FlockLock;
use crate::sync::ports::UpstreamOutbox;
use crate::sync::{self, Engine, SyncHandle};
use crate::upstream::{self, Upstream};
use anyhow::Context as _;
use std::sync::Arc;

/// The data services of a running agent, for what is started after them (status, MQTT).
pub struct Core {
    /// The outbox and the forwarder's status.
    pub upstream: Upstream,
    /// The sync service and its engine.
    pub sync: SyncHandle,
}

/// Starts everything that moves device data, in the order each needs the previous: the outbox,
/// audit retention, the sync engine, the devices, the sync loops on those devices, and upstream
/// forwarding from the outbox. `agent::run` calls it on the opened store; tests call it to run
/// exactly the agent's wiring without its signals and control plane.
pub async fn start_core(tasks: &mut Tasks, config: &Config, store: &Store) -> anyhow::Result<Core> {
    let outbox = upstream::open_outbox(config, store).context("cannot open the upstream outbox")?;
    crate::audit::spawn_retention(tasks, store, config.buffer.audit_retention.get());
    if config.lock.mode != LockMode::Flock {
        tracing::warn!("[lock] mode = arbiter is not available in this build yet; using flock locks (one box only)");
    }
    let lock = FlockLock::from_config(&config.lock);
    let engine = Arc::new(
        Engine::new(store.clone(), &config.agent.id, Arc::new(lock))
            .with_outbox(Arc::new(UpstreamOutbox::new(outbox.clone()))),
    );
    let punches = PunchLog::new(outbox.clone(), &config.agent.id);
    let devices = device::start(tasks, config, store, punches).await?;
    let sync = sync::start(tasks, config, engine, devices);
    let upstream = upstream::start(tasks, config, outbox);
    Ok(Core { upstream, sync })
}
