//! The agent's services, built in dependency order and handed their collaborators. This is the
//! one place that decides which service gets which outbox, engine or device; the services
//! themselves only spawn their own tasks.

use crate::config::Config;
use crate::device::{self, punches::PunchLog};
use crate::lifecycle::Tasks;
use crate::live::Live;
use crate::store::Store;
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
    /// The live picture the engine reports into (status, health and metrics read it).
    pub live: Live,
}

/// Starts everything that moves device data, in the order each needs the previous: the outbox,
/// the sync engine, the devices, the sync loops on those devices, and upstream
/// forwarding from the outbox. `agent::run` calls it on the opened store; tests call it to run
/// exactly the agent's wiring without its signals and control plane.
pub async fn start_core(tasks: &mut Tasks, config: &Config, store: &Store) -> anyhow::Result<Core> {
    let outbox = upstream::open_outbox(config, store).context("cannot open the upstream outbox")?;
    let live = Live::default();
    let engine = Arc::new(
        Engine::from_config(config, store, outbox.clone())
            .context("cannot start the device lock")?
            .with_live(live.clone()),
    );
    let punches = PunchLog::new(outbox.clone(), &config.agent.id);
    let devices = device::start(tasks, config, store, punches, engine.lock_handle()).await?;
    let sync = sync::start(tasks, config, Arc::clone(&engine), devices);
    let upstream = upstream::start(tasks, config, outbox, engine);
    Ok(Core {
        upstream,
        sync,
        live,
    })
}
