//! Bringing the configured devices up for a running agent: the AI06 listener bound and serving,
//! and one ZK session per usable ZK device. The sync service receives the result ready-made and
//! only decides when to read; it never binds sockets or builds sessions itself.

use super::aiface::{AifaceHub, AifaceServer, Notice};
use super::punches::PunchLog;
use super::zk::{ZkSession, ZkSettings};
use crate::config::{Config, Driver};
use crate::lifecycle::Tasks;
use crate::store::Store;
use std::collections::HashMap;
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

/// Brings up every configured device: ZK sessions for the ZK devices (a device with unusable
/// settings is logged and left out), and, when AI06 devices are configured, their listener,
/// bound now and served as the `aiface-listener` task, storing punches through `punches`.
/// Fails when a listen address cannot be bound.
pub async fn start(
    tasks: &mut Tasks,
    config: &Config,
    store: &Store,
    punches: PunchLog,
) -> anyhow::Result<Devices> {
    let mut zk = HashMap::new();
    for device in config.device.iter().filter(|d| d.driver == Driver::Zk) {
        match ZkSettings::from_config(device) {
            Ok(settings) => {
                zk.insert(device.id.clone(), Arc::new(ZkSession::new(settings)));
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
    let server = AifaceServer::bind(&aiface, Some(store.clone()), Some(punches)).await?;
    for address in server.local_addrs() {
        tracing::info!(%address, "listening for AI06 terminals");
    }
    let devices = Devices {
        aiface: server.hub(),
        aiface_ids: aiface.into_iter().map(|d| d.id).collect(),
        notices: Some(server.notices()),
        zk,
    };
    tasks.spawn("aiface-listener", move |stop| server.run(stop));
    Ok(devices)
}
