//! Bringing the configured devices up for a running agent: the AI06 listener bound and serving,
//! and one ZK session per usable ZK device. The sync service receives the result ready-made and
//! only decides when to read; it never binds sockets or builds sessions itself.

use super::aiface::{AifaceHub, AifaceServer, Notice};
use super::punches::PunchLog;
use super::zk::{ZkPunches, ZkSession, ZkSettings};
use crate::config::{Config, DeviceConfig, Driver};
use crate::lifecycle::Tasks;
use crate::store::Store;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::broadcast;

/// The devices of a running agent, as [`start`] brought them up.
pub struct Devices {
    /// Live AI06 sessions (empty, and never filled, without AI06 devices).
    pub aiface: Arc<AifaceHub>,
    /// Ids of the configured AI06 devices the listener serves, in config order.
    pub aiface_ids: Vec<String>,
    /// AI06 connections and keypad enrolments; `None` without AI06 devices.
    pub notices: Option<broadcast::Receiver<Notice>>,
    /// One session per ZK device whose settings are usable, by device id. ZK terminals do not
    /// dial in: the session dials them when asked for a read.
    pub zk: HashMap<String, Arc<ZkSession>>,
}

/// Brings up every configured device: ZK sessions for the ZK devices, storing the punches of
/// their attendance logs through `punches` (a device with unusable settings is logged and left
/// out), and, when AI06 devices are configured, their listener,
/// bound now and served as the `aiface-listener` task, storing punches through `punches`.
/// Fails when a listen address cannot be bound.
pub async fn start(
    tasks: &mut Tasks,
    config: &Config,
    store: &Store,
    punches: PunchLog,
    lock: std::sync::Arc<dyn crate::lock::DeviceLock>,
) -> anyhow::Result<Devices> {
    let mut zk = HashMap::new();
    for device in config.device.iter().filter(|d| d.driver == Driver::Zk) {
        match ZkSettings::from_config(device) {
            Ok(settings) => {
                let session = ZkSession::new(settings)
                    .with_punches(ZkPunches::new(punches.clone(), store.clone()))
                    .with_live_events(device.live_events);
                zk.insert(device.id.clone(), Arc::new(session));
            }
            Err(err) => {
                tracing::error!(device = %device.id, %err, "zk device not synced: its settings are unusable");
            }
        }
    }
    let aiface: Vec<_> = config
        .device
        .iter()
        .filter(|d| d.driver == Driver::Aiface)
        .cloned()
        .collect();
    if aiface.is_empty() {
        return Ok(Devices {
            aiface: Arc::new(AifaceHub::default()),
            aiface_ids: Vec::new(),
            notices: None,
            zk,
        });
    }
    let server =
        AifaceServer::bind_locked(&aiface, Some(store.clone()), Some(punches), Some(lock)).await?;
    let listener = serve_aiface(tasks, server);
    for address in &listener.addresses {
        tracing::info!(%address, "listening for AI06 terminals");
    }
    Ok(Devices {
        aiface: listener.hub,
        aiface_ids: aiface.into_iter().map(|d| d.id).collect(),
        notices: Some(listener.notices),
        zk,
    })
}

/// An AI06 listener bound and serving as the `aiface-listener` task of its [`Tasks`].
pub struct AifaceListener {
    /// Live sessions of the terminals that dialled in.
    pub hub: Arc<AifaceHub>,
    /// Connections and keypad enrolments, for whoever decides when to read.
    pub notices: broadcast::Receiver<Notice>,
    /// Where it listens (to tell a technician, or an emulator where to dial).
    pub addresses: Vec<SocketAddr>,
}

/// Binds the listener for the AI06 `devices` and serves it under `tasks`: the one way anything
/// in the agent (the running agent, the demo, `probe` and the store tools) listens for AI06
/// terminals. With a `store` the listener records each device's contact; with `punches` it
/// stores the punches terminals push.
pub async fn listen_aiface(
    tasks: &mut Tasks,
    devices: &[DeviceConfig],
    store: Option<Store>,
    punches: Option<PunchLog>,
) -> anyhow::Result<AifaceListener> {
    let server = AifaceServer::bind(devices, store, punches).await?;
    Ok(serve_aiface(tasks, server))
}

/// Serves a bound listener as the `aiface-listener` task of `tasks`.
fn serve_aiface(tasks: &mut Tasks, server: AifaceServer) -> AifaceListener {
    let listener = AifaceListener {
        hub: server.hub(),
        notices: server.notices(),
        addresses: server.local_addrs(),
    };
    tasks.spawn("aiface-listener", move |stop| server.run(stop));
    listener
}
