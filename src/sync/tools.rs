//! The technician's device-facing commands on the box with the agent stopped: `backup create`,
//! `backup restore [--dry-run]`, `migrate`, and [`open_store`] for the listings (whose work is
//! `crate::mqtt::command::lists`, shared with the running agent's commands). They return data;
//! `crate::cli` parses their arguments and renders what they return.
//!
//! While the agent runs, the on-box commands ask it over its local control socket
//! (`crate::mqtt::command::socket`); these functions are what they do when it is stopped:
//! they work **directly on the store**, because:
//! - sled lets one process open a store; a second opener fails at once with "already open in
//!   another process (is a second edge-agent running?)", so a command can never read a store
//!   that is being written or corrupt it;
//! - the device-facing commands need the terminal's connection (AI06 terminals dial the
//!   agent's port) and its lock, which a running agent holds anyway;
//! - a running agent is asked through its local socket or the MQTT commands of the same names
//!   (M3), which call the same library functions.

use super::backup::BackupInfo;
use super::migrate::DeviceMigration;
use super::restore::RestoreReport;
use super::{Engine, SyncError};
use crate::config::{Config, DeviceConfig, Driver};
use crate::device::aiface::AifaceHub;
use crate::device::punches::PunchLog;
use crate::lifecycle::Tasks;
use crate::store::{Store, StoreError};
use crate::upstream::outbox::Outbox;
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Opens the agent's store for a command, explaining what to do when the agent holds it.
pub fn open_store(config: &Config) -> anyhow::Result<Store> {
    let options = config.store_options();
    match Store::open(&options) {
        Ok(opened) => Ok(opened.store),
        Err(err @ StoreError::AlreadyInUse { .. }) => Err(anyhow::anyhow!(
            "{err}\nAn agent holds the store but does not answer on its control socket {}: it \
             runs without a socket (an older version, or another agent.runtime_dir). Stop it \
             (systemctl stop edge-agent) and try again, or ask it over MQTT (edge-agent ctl)",
            config.control_socket().display()
        )),
        Err(err) => Err(err).context("cannot open the store"),
    }
}

/// The engine the commands use: the running agent's, over the store they opened.
pub fn engine(config: &Config, store: &Store) -> anyhow::Result<Engine> {
    let outbox = Outbox::open(store, config.upstream.outbox_max_bytes.bytes())?;
    Ok(Engine::from_config(config, store, outbox)?)
}

/// The AI06 devices of the config, by id (all of them with `None`).
fn aiface_devices(config: &Config, only: Option<&str>) -> anyhow::Result<Vec<DeviceConfig>> {
    let devices: Vec<_> = config
        .device
        .iter()
        .filter(|d| d.driver == Driver::Aiface && only.is_none_or(|id| id == d.id))
        .cloned()
        .collect();
    match only {
        Some(id) if devices.is_empty() => Err(SyncError::UnknownDevice(id.to_string()).into()),
        _ => Ok(devices),
    }
}

/// Listens for the devices as the agent would (storing their punches), for a command's duration.
async fn listen(
    config: &Config,
    store: &Store,
    devices: &[DeviceConfig],
) -> anyhow::Result<(Tasks, Arc<AifaceHub>)> {
    let outbox = Outbox::open(store, config.upstream.outbox_max_bytes.bytes())?;
    let punches = PunchLog::new(outbox, &config.agent.id);
    let mut tasks = Tasks::new();
    let listener =
        crate::device::listen_aiface(&mut tasks, devices, Some(store.clone()), Some(punches))
            .await?;
    Ok((tasks, listener.hub))
}

async fn connected(
    hub: &AifaceHub,
    device: &str,
    wait: Duration,
) -> Result<crate::device::aiface::AifaceSession, SyncError> {
    eprintln!("waiting up to {wait:?} for {device} to connect");
    hub.session(device, wait)
        .await
        .ok_or_else(|| SyncError::NotConnected {
            device: device.to_string(),
            waited_s: wait.as_secs(),
        })
}

/// `backup create`: a backup of one device now.
pub async fn backup_create(
    config: &Config,
    store: &Store,
    device: &str,
    wait: Duration,
) -> anyhow::Result<BackupInfo> {
    let devices = aiface_devices(config, Some(device))?;
    let (tasks, hub) = listen(config, store, &devices).await?;
    let engine = engine(config, store)?;
    let outcome = async {
        let session = connected(&hub, device, wait).await?;
        engine.backup(&session, &config.backup_dir()).await
    }
    .await;
    tasks.stop(Duration::from_secs(1)).await;
    Ok(outcome?)
}

/// The backup file a technician named: a path, or a file name in the backup directory.
pub fn resolve_backup(config: &Config, name: &Path) -> PathBuf {
    if name.exists() {
        name.to_path_buf()
    } else {
        config.backup_dir().join(name)
    }
}

/// `backup restore [--dry-run]`.
pub async fn backup_restore(
    config: &Config,
    store: &Store,
    device: &str,
    file: &Path,
    dry_run: bool,
    wait: Duration,
) -> anyhow::Result<RestoreReport> {
    let path = resolve_backup(config, file);
    if let Some(zk) = config
        .device
        .iter()
        .find(|d| d.id == device && d.driver == Driver::Zk)
    {
        // The agent dials ZK terminals: a session is made, not waited for. Writes to them are
        // refused by the driver, so only a dry run (or finding nothing missing) succeeds.
        let session =
            crate::device::zk::ZkSession::new(crate::device::zk::ZkSettings::from_config(zk)?);
        let engine = engine(config, store)?;
        return Ok(engine
            .restore(&session, &path, dry_run, "technician")
            .await?);
    }
    let devices = aiface_devices(config, Some(device))?;
    let (tasks, hub) = listen(config, store, &devices).await?;
    let engine = engine(config, store)?;
    let outcome = async {
        let session = connected(&hub, device, wait).await?;
        engine.restore(&session, &path, dry_run, "technician").await
    }
    .await;
    tasks.stop(Duration::from_secs(1)).await;
    Ok(outcome?)
}

/// What `migrate` did.
#[derive(Debug)]
pub struct MigrateOutcome {
    /// Each AI06 device: read and buffered, or why not.
    pub devices: Vec<DeviceMigration>,
    /// Configured devices this build cannot migrate (ZK), by id.
    pub unsupported: Vec<String>,
}

impl MigrateOutcome {
    /// `true` when every configured device was read completely.
    pub fn all_read(&self) -> bool {
        self.unsupported.is_empty() && self.devices.iter().all(|d| d.outcome.is_ok())
    }
}

/// `migrate`: reads every configured AI06 and buffers its users.
pub async fn migrate(
    config: &Config,
    store: &Store,
    wait: Duration,
) -> anyhow::Result<MigrateOutcome> {
    let devices = aiface_devices(config, None)?;
    let ids: Vec<String> = devices.iter().map(|d| d.id.clone()).collect();
    let (tasks, hub) = listen(config, store, &devices).await?;
    let engine = engine(config, store)?;
    let report = engine.migrate(hub.as_ref(), &ids, wait).await;
    tasks.stop(Duration::from_secs(1)).await;
    Ok(MigrateOutcome {
        devices: report,
        unsupported: config
            .device
            .iter()
            .filter(|d| d.driver != Driver::Aiface)
            .map(|d| d.id.clone())
            .collect(),
    })
}
