//! The agent's WebSocket listener for AI06 terminals: one listener per configured address
//! (several terminals may share one; their serial number picks the device entry).

use super::connection;
use super::hub::AifaceHub;
use super::session::{AifaceSession, Timeouts};
use crate::config::peers::PeerRule;
use crate::config::{DeviceConfig, Driver};
use crate::device::punches::PunchLog;
use crate::lifecycle::StopSignal;
use crate::store::Store;
use device_protocols::aiface::UserCredential;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::broadcast;

/// Something a device did on its own that other parts of the agent react to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The device (re)connected and registered.
    Connected {
        /// Configured device id.
        device_id: String,
    },
    /// The device pushed a keypad enrolment (`senduser`): worth a read soon.
    UserPushed {
        /// Configured device id.
        device_id: String,
        /// The enrolled user's id.
        user_id: String,
    },
}

/// One configured AI06 as the listener needs it.
#[derive(Debug, Clone)]
pub(super) struct DeviceEntry {
    pub device_id: String,
    pub send_user_pushes: bool,
    pub timeouts: Timeouts,
    pub allowed_peers: Vec<PeerRule>,
}

/// Shared by every connection of one server.
pub(super) struct Context {
    by_sn: HashMap<String, DeviceEntry>,
    pub hub: Arc<AifaceHub>,
    pub store: Option<Store>,
    pub punches: Option<PunchLog>,
    notices: broadcast::Sender<Notice>,
    /// The device lock the punch backfill takes (`getnewlog` is a device session like a read).
    lock: Option<Arc<dyn crate::sync::lock::DeviceLock>>,
}

impl Context {
    pub(super) fn device_for_sn(&self, sn: &str) -> Option<DeviceEntry> {
        self.by_sn.get(sn).cloned()
    }

    pub(super) fn send_user_pushes(&self, device_id: &str) -> bool {
        self.by_sn
            .values()
            .any(|entry| entry.device_id == device_id && entry.send_user_pushes)
    }

    pub(super) fn user_pushed(&self, device_id: &str, credential: &UserCredential) {
        let _ = self.notices.send(Notice::UserPushed {
            device_id: device_id.to_string(),
            user_id: credential.enrollid.to_string(),
        });
    }

    /// Announces the connection and, when punches are stored, backfills the punches the device
    /// holds as "new" (they may have piled up while it was offline).
    pub(super) fn after_registration(&self, session: &AifaceSession) {
        let _ = self.notices.send(Notice::Connected {
            device_id: session.device_id().to_string(),
        });
        if let (Some(punches), Some(store)) = (self.punches.clone(), self.store.clone()) {
            let session = session.clone();
            let lock = self.lock.clone();
            tokio::spawn(async move {
                let device = session.device_id().to_string();
                let Some(lock) = lock else {
                    return super::backfill::run(session, punches, store).await;
                };
                match lock.acquire(&device).await {
                    Ok(guard) => {
                        if let Err(lost) = guard
                            .run(super::backfill::run(session, punches, store))
                            .await
                        {
                            tracing::warn!(%device, "punch backfill not run: {lost}");
                        }
                    }
                    Err(err) => tracing::warn!(
                        %device,
                        "punch backfill not run now (the punches stay on the terminal and are \
                         read at its next connection): {err}"
                    ),
                }
            });
        }
    }
}

/// The bound listeners, ready to serve.
pub struct AifaceServer {
    listeners: Vec<TcpListener>,
    context: Arc<Context>,
}

impl AifaceServer {
    /// Binds a listener for every distinct `listen` address of the configured AI06 devices.
    /// `store` enables registration records; `punches` enables storing punches (without it a
    /// device's punches are refused and stay on the device, as in `probe`).
    pub async fn bind(
        devices: &[DeviceConfig],
        store: Option<Store>,
        punches: Option<PunchLog>,
    ) -> std::io::Result<Self> {
        Self::bind_locked(devices, store, punches, None).await
    }

    /// [`AifaceServer::bind`] with the device lock every session the server starts on its own
    /// (the punch backfill) takes first: the running agent's wiring.
    pub async fn bind_locked(
        devices: &[DeviceConfig],
        store: Option<Store>,
        punches: Option<PunchLog>,
        lock: Option<Arc<dyn crate::sync::lock::DeviceLock>>,
    ) -> std::io::Result<Self> {
        let mut by_sn = HashMap::new();
        let mut addresses = BTreeSet::new();
        for device in devices.iter().filter(|d| d.driver == Driver::Aiface) {
            addresses.insert(device.effective_listen());
            let normal = device.command_timeout.get();
            let entry = DeviceEntry {
                device_id: device.id.clone(),
                send_user_pushes: device.send_user_pushes,
                allowed_peers: device
                    .allowed_peers
                    .iter()
                    .filter_map(|peer| PeerRule::parse(peer).ok())
                    .collect(),
                timeouts: Timeouts {
                    normal,
                    large: normal.max(Duration::from_secs(30)),
                },
            };
            for sn in &device.allowed_sn {
                by_sn.insert(sn.clone(), entry.clone());
            }
        }
        let mut listeners = Vec::new();
        for address in addresses {
            let listener = TcpListener::bind(address).await.map_err(|err| {
                std::io::Error::new(
                    err.kind(),
                    format!("cannot listen for AI06 terminals on {address}: {err}"),
                )
            })?;
            listeners.push(listener);
        }
        Ok(Self {
            listeners,
            context: Arc::new(Context {
                by_sn,
                hub: Arc::new(AifaceHub::default()),
                store,
                punches,
                notices: broadcast::channel(256).0,
                lock,
            }),
        })
    }

    /// The addresses actually bound (useful with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|listener| listener.local_addr().ok())
            .collect()
    }

    /// The live sessions.
    pub fn hub(&self) -> Arc<AifaceHub> {
        Arc::clone(&self.context.hub)
    }

    /// Subscribes to connections and keypad enrolments.
    pub fn notices(&self) -> broadcast::Receiver<Notice> {
        self.context.notices.subscribe()
    }

    /// Accepts connections until `stop` fires.
    pub async fn run(self, mut stop: StopSignal) {
        let mut accepting = tokio::task::JoinSet::new();
        for listener in self.listeners {
            let context = Arc::clone(&self.context);
            accepting.spawn(async move {
                loop {
                    match listener.accept().await {
                        Ok((stream, peer)) => {
                            let _ = stream.set_nodelay(true);
                            tokio::spawn(connection::serve(stream, peer, Arc::clone(&context)));
                        }
                        Err(err) => {
                            tracing::warn!(%err, "accept failed");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            });
        }
        stop.stopped().await;
        accepting.abort_all();
    }
}
